"""The res5 shared head of the C4 R-CNN with one more norm layer after it, for mmdet.

MoCo's detection protocol (`Res5ROIHeadsExtraNorm` in detectron2) normalises the
res5 output of the ROI head once more before the box and mask predictors, because
the pretrained backbone is fine-tuned with BN everywhere. mmdet's `ResLayer`
shared head already builds res5 (`layer4`, the same key names as torchvision's
`layer4`, so a torchvision-named checkpoint loads into it without a prefix); this
subclass adds the norm and applies it.
"""
from __future__ import annotations

import torch
from mmcv.cnn import build_norm_layer
from mmdet.models.backbones import ResNet
from mmdet.models.roi_heads.shared_heads import ResLayer
from mmdet.registry import MODELS


@MODELS.register_module()
class ResLayerExtraNorm(ResLayer):
    """mmdet's `ResLayer` shared head (res5 for `stage=3`) followed by one norm layer (`norm.*`)."""

    def __init__(self, depth: int, stage: int = 3, norm_cfg: dict | None = None, **kwargs) -> None:
        norm_cfg = norm_cfg or dict(type="BN", requires_grad=True)
        super().__init__(depth, stage=stage, norm_cfg=norm_cfg, **kwargs)
        block, _ = ResNet.arch_settings[depth]
        out_channels = 64 * 2**stage * block.expansion  # 2048 for ResNet-50, 512 for ResNet-18
        _, norm = build_norm_layer(norm_cfg, out_channels)
        self.add_module("norm", norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """RoI features (N, C_res4, 14, 14) -> res5 + norm (N, C_res5, 7, 7)."""
        return self.norm(super().forward(x))
