"""Detection transfer on mmdet: the task hooks of the mmengine adapter (`transfer.engine.task`)."""
from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmengine.config import Config

from transfer.detection.mmdet_config import (check_weights_load, set_backbone_depth, set_data_root,
                                             set_input_size, set_precise_bn_iters, set_pretrained)
from transfer.engine.runner import Run
from transfer.engine.task import ConfigEdits, MMEngineAdapter
from transfer.errors import UserError

CONFIG_DIR = Path(__file__).resolve().parent.parent.parent / "configs" / "detection" / "mmdet"
DEFAULT_CONFIGS = {
    "voc": CONFIG_DIR / "faster-rcnn_r50-c4-syncbn_24k_voc0712.py",
    "coco": CONFIG_DIR / "mask-rcnn_r50-c4-syncbn_1x_coco.py",
}
# What each task reports, and the mmdet test-metric keys it comes from (our metrics, prefixed by the evaluator).
REPORTED = {
    "voc": {name: f"pascal_voc/{name}" for name in ("AP", "AP50", "AP75", "AP_present", "AP50_present",
                                                     "AP75_present", "classes_present")},
    "coco": {f"{kind}_{name}": f"coco/{kind}_{name}" for kind in ("bbox", "segm")
             for name in ("AP", "AP50", "AP75", "APs", "APm", "APl")},
}
REQUIRED = {"voc": ("AP", "AP50", "AP75"), "coco": ("bbox_AP", "bbox_AP50", "bbox_AP75")}


EDITS = ConfigEdits(set_data_root, set_backbone_depth, set_pretrained, check_weights_load, set_input_size,
                    random_note="no --weights: backbone and heads start from random initialisation")


def prepare(cfg: Config, ctx: Run) -> None:
    """Point the protocol config at the data and the weights (backbone and res5 head), match the depth, apply
    --input-size and shrink precise BN with --max-iters."""
    EDITS.apply(cfg, ctx)
    if ctx.args.max_iters is not None:
        note = set_precise_bn_iters(cfg, ctx.args.max_iters)
        if note:
            ctx.notes.append(note)


def summarizer(task: str) -> Callable[[dict[str, Any]], dict[str, float]]:
    """The `summarize(test_metrics)` of `task`: mmdet's metric names -> ours (percent), NaN left out."""

    def summarize(test_metrics: dict[str, Any]) -> dict[str, float]:
        """Our names and values of the metrics; a UserError when the evaluator is not the task's."""
        out = {ours: float(test_metrics[theirs]) for ours, theirs in REPORTED[task].items() if theirs in test_metrics}
        missing = [k for k in REQUIRED[task] if k not in out]
        if missing:
            raise UserError(f"the test evaluator returned {sorted(test_metrics)}, not {missing}; a --config for "
                            f"{task} must use {'PascalVOCAPMetric' if task == 'voc' else 'CocoAPMetric'} "
                            "as test_evaluator")
        return {k: v for k, v in out.items() if not math.isnan(v)}

    return summarize


def mmdet_adapter(task: str) -> MMEngineAdapter:
    """The skeleton's adapter for `task` (voc or coco) on mmdet."""
    return MMEngineAdapter(task, backend="mmdet", backends=("mmdet", "detectron2"), data_format=task,
                           config=DEFAULT_CONFIGS[task], prepare=prepare, summarize=summarizer(task),
                           min_input_size=32)
