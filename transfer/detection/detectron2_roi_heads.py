"""This project's detectron2 ROI heads, registered in detectron2's `ROI_HEADS_REGISTRY` on import.

`Res5ROIHeadsExtraNorm`: detectron2's C4 ROI heads with one more norm layer after res5.

The MoCo detection protocol (`ROI_HEADS.NAME: Res5ROIHeadsExtraNorm` in
`Base-RCNN-C4-BN`) normalises the res5 output of the ROI head once more, with the
backbone's norm (`RESNETS.NORM`), before the box and mask predictors. Importing
this module registers the head in detectron2's `ROI_HEADS_REGISTRY`.

detectron2's own res5 head is made of bottleneck blocks only; for ResNet-18/34
the res5 stage is built from basic blocks instead (2 or 3 of them, as the
backbone's), so that a converted ResNet-18 checkpoint's `res5.*` loads into it.

`StandardROIHeadsScaled`: detectron2's FPN ROI heads with the box side that maps a
RoI to pyramid level 4 read from `MODEL.ROI_HEADS.CANONICAL_BOX_SIZE` (224 in
detectron2, fixed there), so that a run shrunk by `--input-size` keeps the
protocol's level assignment (`transfer.detection.detectron2_config`).
"""
from __future__ import annotations

from detectron2.layers import get_norm
from detectron2.modeling.backbone.resnet import BasicBlock, ResNet
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, Res5ROIHeads, StandardROIHeads
from torch import nn

# Basic blocks in res5 for the shallow ResNets.
BASIC_RES5_BLOCKS = {18: 2, 34: 3}


@ROI_HEADS_REGISTRY.register()
class Res5ROIHeadsExtraNorm(Res5ROIHeads):
    """Res5ROIHeads whose res5 block is followed by a norm layer (`res5.norm`); ResNet-18/34 get basic blocks."""

    @classmethod
    def _build_res5_block(cls, cfg) -> tuple[nn.Sequential, int]:
        """res5 (bottleneck or basic blocks, first one with stride 2) + norm; returns (module, output channels)."""
        depth = cfg.MODEL.RESNETS.DEPTH
        if depth in BASIC_RES5_BLOCKS:
            out_channels = cfg.MODEL.RESNETS.RES2_OUT_CHANNELS * 8  # 512: res5 is 8x res2
            num_blocks = BASIC_RES5_BLOCKS[depth]
            blocks = ResNet.make_stage(BasicBlock, num_blocks, stride_per_block=[2] + [1] * (num_blocks - 1),
                                       in_channels=out_channels // 2, out_channels=out_channels,
                                       norm=cfg.MODEL.RESNETS.NORM)
            seq = nn.Sequential(*blocks)
        else:
            seq, out_channels = super()._build_res5_block(cfg)
        seq.add_module("norm", get_norm(cfg.MODEL.RESNETS.NORM, out_channels))
        return seq, out_channels


@ROI_HEADS_REGISTRY.register()
class StandardROIHeadsScaled(StandardROIHeads):
    """StandardROIHeads whose box and mask poolers use `MODEL.ROI_HEADS.CANONICAL_BOX_SIZE` (input pixels)."""

    @classmethod
    def from_config(cls, cfg, input_shape) -> dict:
        """StandardROIHeads' arguments, with every pooler's canonical box size set from the config."""
        ret = super().from_config(cfg, input_shape)
        for name in ("box_pooler", "mask_pooler", "keypoint_pooler"):
            if ret.get(name) is not None:
                ret[name].canonical_box_size = cfg.MODEL.ROI_HEADS.CANONICAL_BOX_SIZE
        return ret
