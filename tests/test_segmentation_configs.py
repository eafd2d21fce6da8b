"""The FCN protocol configs are mmseg's own, with only the keys the MoCo/DenseCL/mmselfsup protocols change."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from transfer.engine.config import load_mm_config
from transfer.segmentation.runner import CONFIGS

# What our configs change in mmseg's own FCN R50-D8 configs of the same protocols (configs/fcn/ of mmseg).
MMSEG_CONFIGS = {"cityscapes": "fcn_r50-d8_4xb2-40k_cityscapes-769x769.py",
                 "voc12aug": "fcn_r50-d8_4xb4-20k_voc12aug-512x512.py"}
CHANGED = {
    "model.backbone.type": "ResNet",  # the standard stem of self-supervised ResNets, not ResNetV1c's deep one
    "model.pretrained": None, "model.backbone.init_cfg": None,  # the runner sets --weights
    "protocol_gpus": 4,  # the protocol's GPUs: the runner keeps the total batch on fewer
    "val_evaluator.type": "PerClassIoUMetric", "test_evaluator.type": "PerClassIoUMetric",
    "custom_imports.imports": ["transfer.segmentation.metric"], "custom_imports.allow_failed_imports": False,
    "default_hooks.checkpoint.max_keep_ckpts": 2,
    "visualizer.name": "<absent>",  # named after each run: a second run in one process logs apart
}
# What the standard-stem ResNet of both FCN configs sets: nothing else of mmseg's ResNetV1c carries over.
BACKBONE = dict(type="ResNet", depth=50, num_stages=4, out_indices=(0, 1, 2, 3), dilations=(1, 1, 2, 4),
                strides=(1, 2, 1, 1), norm_cfg=dict(type="SyncBN", requires_grad=True), norm_eval=False,
                style="pytorch", contract_dilation=True, init_cfg=None)


def flat(node: Any, prefix: str = "") -> dict[str, Any]:
    """`{dotted key: value}` of a config; lists are values; mmengine's `_scope_` marks of inherited dicts dropped."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key != "_scope_":
                out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else
                           {f"{prefix}{key}": flat(value)})
        return out
    if isinstance(node, (list, tuple)):
        return type(node)(flat(v) for v in node)
    return node


@pytest.mark.parametrize("task", sorted(CONFIGS))
def test_config_is_mmsegs_own_but_for_the_protocol_changes(task: str) -> None:
    """Resolved, our config equals mmseg's config of the same protocol except in CHANGED (to CHANGED's values)."""
    import mmseg

    theirs = flat(load_mm_config(Path(mmseg.__file__).parent / ".mim" / "configs" / "fcn" / MMSEG_CONFIGS[task])
                  .to_dict())
    ours = flat(load_mm_config(CONFIGS[task]).to_dict())
    differing = {k for k in theirs.keys() | ours.keys() if theirs.get(k, "<absent>") != ours.get(k, "<absent>")}
    assert differing == set(CHANGED)
    assert {k: ours.get(k, "<absent>") for k in CHANGED} == CHANGED


@pytest.mark.parametrize("task", sorted(CONFIGS))
def test_fcn_configs_use_the_standard_stem(task: str) -> None:
    """Both protocols have the standard-stem ResNet, no ImageNet weights and the torchvision RGB statistics."""
    cfg = load_mm_config(CONFIGS[task])
    assert cfg.model.backbone.to_dict() == BACKBONE and cfg.model.pretrained is None
    preprocessor = cfg.model.data_preprocessor
    assert preprocessor.bgr_to_rgb and preprocessor.mean == [123.675, 116.28, 103.53]
    assert preprocessor.std == [58.395, 57.12, 57.375]
    # mmseg's 769 crops align corners, its 512 ones do not (mmselfsup's VOC12aug numbers are from the latter)
    assert cfg.model.decode_head.align_corners == cfg.model.auxiliary_head.align_corners == (task == "cityscapes")
