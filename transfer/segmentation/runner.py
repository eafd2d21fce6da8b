"""`tools/run_transfer.sh cityscapes`: fine-tune an FCN on Cityscapes with mmseg, report mIoU (DenseCL's protocol)."""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from mmengine.config import Config

from transfer.engine.backbone import backbone_depth
from transfer.engine.runner import Run, run_task
from transfer.engine.task import MMEngineAdapter
from transfer.errors import UserError
from transfer.segmentation.config import (check_backbone_loads, set_backbone_depth, set_data_root,
                                          set_input_size, set_pretrained)

CONFIG_DIR = Path(__file__).resolve().parent.parent.parent / "configs" / "segmentation"
DEFAULT_CONFIG = CONFIG_DIR / "fcn_r50-d8_4xb2-40k_cityscapes-769x769.py"


def prepare(cfg: Config, ctx: Run) -> None:
    """Point the protocol config at the data and the weights, match the backbone depth, apply --input-size."""
    set_data_root(cfg, ctx.data_root)
    depth, state_dict = backbone_depth(ctx.overrides, ctx.weights, ctx.args.weights)
    if depth is not None:
        note = set_backbone_depth(cfg, depth)
        if note:
            ctx.notes.append(note)
    ctx.arch = f"resnet{int(cfg.model.backbone.depth)}"
    set_pretrained(cfg, ctx.weights)
    if state_dict is not None:
        check_backbone_loads(cfg, state_dict, str(ctx.args.weights))
    else:
        ctx.notes.append("no --weights: the backbone starts from random initialisation")
    if ctx.args.input_size is not None:
        ctx.notes.append(set_input_size(cfg, ctx.args.input_size))


def summarize(test_metrics: dict[str, Any]) -> dict[str, float]:
    """mIoU, aAcc, mAcc and IoU.<class> in percent; classes with undefined IoU (nan) are left out."""
    if "mIoU" not in test_metrics:
        raise UserError(f"the test evaluator returned {sorted(test_metrics)}, not mIoU; "
                        "a --config for this task must use PerClassIoUMetric (or IoUMetric) as test_evaluator")
    out = {}
    for key in ("mIoU", "aAcc", "mAcc"):
        if key in test_metrics:
            out[key] = float(test_metrics[key])
    out.update({k: float(v) for k, v in test_metrics.items() if k.startswith("IoU.")})
    return {k: v for k, v in out.items() if not math.isnan(v)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Fine-tune and evaluate on Cityscapes; writes WORK_DIR/metrics.json and returns its record."""
    return run_task(args, MMEngineAdapter("cityscapes", backend="mmseg", backends=("mmseg",), data_format="cityscapes",
                                          config=DEFAULT_CONFIG, prepare=prepare, summarize=summarize))
