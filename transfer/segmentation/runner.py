"""`tools/run_transfer.sh cityscapes|voc12aug`: fine-tune an FCN with mmseg, report mIoU (DenseCL's, mmselfsup's)."""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from transfer.engine.runner import run_task
from transfer.engine.task import ConfigEdits, MMEngineAdapter
from transfer.errors import UserError
from transfer.segmentation.config import (check_backbone_loads, set_backbone_depth, set_data_root,
                                          set_input_size, set_pretrained)
from transfer.tasks import task_named

CONFIG_DIR = Path(__file__).resolve().parent.parent.parent / "configs" / "segmentation"
# Each task's protocol config (its data format and backends: `transfer.tasks`).
CONFIGS: dict[str, Path] = {
    "cityscapes": CONFIG_DIR / "fcn_r50-d8_4xb2-40k_cityscapes-769x769.py",
    "voc12aug": CONFIG_DIR / "fcn_r50-d8_4xb4-20k_voc12aug-512x512.py",
}
DEFAULT_CONFIG = CONFIGS["cityscapes"]


# Point the protocol config at the data and the weights, match the backbone depth, apply --input-size.
EDITS = ConfigEdits(set_data_root, set_backbone_depth, set_pretrained, check_backbone_loads, set_input_size,
                    random_note="no --weights: the backbone starts from random initialisation")


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
    """Fine-tune and evaluate `args.task` (cityscapes, voc12aug); writes WORK_DIR/metrics.json, returns its record."""
    if args.task not in CONFIGS:
        raise UserError(f"unknown segmentation task {args.task!r}; expected one of {', '.join(CONFIGS)}")
    task = task_named(args.task)
    return run_task(args, MMEngineAdapter(args.task, backend="mmseg", backends=task.backends,
                                          data_format=task.data_format, config=CONFIGS[args.task],
                                          prepare=EDITS.apply, summarize=summarize))
