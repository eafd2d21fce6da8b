"""The official COCO evaluation of box or mask predictions, by faster-coco-eval or pycocotools.

faster-coco-eval reimplements pycocotools' `COCOeval` in C++; the tests check that
both give identical statistics on the same predictions (box and mask), so the
faster one is the default and pycocotools stays one argument away.
"""
from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

EVALUATORS = ("faster-coco-eval", "pycocotools")
# The first entries of COCOeval.stats (after summarize): AP@[.50:.95], AP50, AP75, APs, APm, APl.
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def coco_stats(gt: dict[str, Any], detections: Sequence[dict[str, Any]], iou_type: str,
               evaluator: str = "faster-coco-eval", img_ids: Sequence[int] | None = None,
               cat_ids: Sequence[int] | None = None) -> np.ndarray:
    """COCOeval's 12 summary statistics (fractions) of `detections` (COCO result dicts) against `gt`.

    `gt` is a COCO annotation dict (as in instances_val2017.json); `iou_type` is
    "bbox" or "segm"; `img_ids`/`cat_ids` restrict the evaluation as COCOeval's
    params do. No detections at all give zeros (nothing was found).
    """
    if evaluator not in EVALUATORS:
        raise ValueError(f"unknown COCO evaluator {evaluator!r}; choose one of {', '.join(EVALUATORS)}")
    if not detections:
        return np.zeros(12)
    detections = copy.deepcopy(list(detections))  # loadRes adds keys (area, id) to the dicts
    if evaluator == "faster-coco-eval":
        from faster_coco_eval import COCO, COCOeval_faster as COCOeval
    else:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    with contextlib.redirect_stdout(io.StringIO()):  # both print their progress and the summary table
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(detections)
        coco_eval = COCOeval(coco_gt, coco_dt, iou_type)
        if img_ids is not None:
            coco_eval.params.imgIds = list(img_ids)
        if cat_ids is not None:
            coco_eval.params.catIds = list(cat_ids)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return np.asarray(coco_eval.stats[:12], dtype=np.float64)
