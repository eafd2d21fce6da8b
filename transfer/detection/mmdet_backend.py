"""Detection transfer on mmdet: the task hooks of the mmengine adapter (`transfer.engine.task`)."""
from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmengine.config import Config

from transfer.detection.mmdet_config import (check_weights_load, set_backbone_depth, set_data_root,
                                             set_evaluation_dir, set_input_size, set_precise_bn_iters,
                                             set_pretrained)
from transfer.engine.runner import Run
from transfer.engine.task import ConfigEdits, MMEngineAdapter
from transfer.errors import UserError
from transfer.tasks import task_named

CONFIG_DIR = Path(__file__).resolve().parent.parent.parent / "configs" / "detection" / "mmdet"
DEFAULT_CONFIGS = {
    "voc": CONFIG_DIR / "faster-rcnn_r50-c4-syncbn_24k_voc0712.py",
    "coco": CONFIG_DIR / "mask-rcnn_r50-c4-syncbn_1x_coco.py",
    "cityscapes_ins": CONFIG_DIR / "mask-rcnn_r50-fpn-syncbn_24k_cityscapes.py",
}
# What each task reports, and the mmdet test-metric keys it comes from (our metrics, prefixed by the evaluator).
COCO_REPORTED = {f"{kind}_{name}": f"coco/{kind}_{name}" for kind in ("bbox", "segm")
                 for name in ("AP", "AP50", "AP75", "APs", "APm", "APl")}
REPORTED = {
    "voc": {name: f"pascal_voc/{name}" for name in ("AP", "AP50", "AP75", "AP_present", "AP50_present",
                                                     "AP75_present", "classes_present")},
    "coco": COCO_REPORTED,
    # COCO-style AP on the val annotations, and the official Cityscapes instance AP (MoCo's AP^mk)
    "cityscapes_ins": {**COCO_REPORTED, "cityscapes_AP": "cityscapes/AP", "cityscapes_AP50": "cityscapes/AP50"},
}
REQUIRED = {"voc": ("AP", "AP50", "AP75"), "coco": ("bbox_AP", "bbox_AP50", "bbox_AP75"),
            "cityscapes_ins": ("bbox_AP", "segm_AP", "cityscapes_AP", "cityscapes_AP50")}
EVALUATORS = {"voc": "PascalVOCAPMetric", "coco": "CocoAPMetric",
              "cityscapes_ins": "CocoAPMetric and CityscapesAPMetric"}  # what a --config must test with
EVALUATION_DIR = "cityscapes_eval"  # in the work dir: the Cityscapes evaluation's PNGs, removed after it


EDITS = ConfigEdits(set_data_root, set_backbone_depth, set_pretrained, check_weights_load, set_input_size,
                    random_note="no --weights: backbone and heads start from random initialisation")


def prepare(cfg: Config, ctx: Run) -> None:
    """Point the protocol config at the data and the weights (backbone and res5 head), match the depth, apply
    --input-size, put the Cityscapes evaluation's files in the work dir and shrink precise BN with --max-iters."""
    EDITS.apply(cfg, ctx)
    set_evaluation_dir(cfg, ctx.work_dir / EVALUATION_DIR)
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
                            f"{task} must use {EVALUATORS[task]} as test_evaluator")
        return {k: v for k, v in out.items() if not math.isnan(v)}

    return summarize


def mmdet_adapter(task: str) -> MMEngineAdapter:
    """The skeleton's adapter for `task` (voc, coco or cityscapes_ins) on mmdet; its data format and backends
    are the task table's (`transfer.tasks`)."""
    entry = task_named(task)
    return MMEngineAdapter(task, backend="mmdet", backends=entry.backends, data_format=entry.data_format,
                           config=DEFAULT_CONFIGS[task], prepare=prepare, summarize=summarizer(task),
                           min_input_size=32)
