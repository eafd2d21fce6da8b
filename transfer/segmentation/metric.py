"""mmseg's IoUMetric, also returning each class's IoU, summed exactly and unrounded.

mmseg's `IoUMetric` logs a per-class table but returns only aAcc, mIoU and mAcc,
rounded to two decimals, and sums the per-image pixel counts in float32 (which
is no longer exact past 2**24 pixels of a class, i.e. within the first few
Cityscapes images). This subclass keeps mmseg's per-image counting
(`intersect_and_union`) and its log table, sums the counts as int64 and returns
`IoU.<class>` for every class. With predictions in the 19 classes, these are
exactly the official Cityscapes IoUs (tests/test_segmentation_eval.py checks it
against cityscapesscripts): classes with an empty union are nan and left out of
the mean, as the official script does.
"""
from __future__ import annotations

import numpy as np
import torch
from mmseg.evaluation.metrics import IoUMetric
from mmseg.registry import METRICS


def summed_areas(results: list) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sum the per-image (intersect, union, pred, label) pixel counts exactly: four int64 arrays of shape (classes,)."""
    # each per-image count is an integer held exactly in float32 (images under 2**24 pixels)
    return tuple(torch.stack(list(column)).round().to(torch.int64).sum(0).numpy() for column in zip(*results))


@METRICS.register_module()
class PerClassIoUMetric(IoUMetric):
    """IoUMetric that also returns `IoU.<class>` (percent, nan when undefined), all unrounded."""

    def compute_metrics(self, results: list) -> dict[str, float]:
        """aAcc, mIoU, mAcc and IoU.<class>, in percent, from the per-image counts of `process`."""
        summary = super().compute_metrics(results)  # logs mmseg's per-class table
        if self.format_only:
            return summary
        intersect, union, _, label = summed_areas(results)
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = intersect / union  # nan where the class is in neither ground truth nor prediction
            acc = intersect / label
        metrics = {"aAcc": 100 * float(intersect.sum() / max(label.sum(), 1)),
                   "mIoU": 100 * float(np.nanmean(iou)) if not np.isnan(iou).all() else float("nan"),
                   "mAcc": 100 * float(np.nanmean(acc)) if not np.isnan(acc).all() else float("nan")}
        metrics.update({f"IoU.{name}": 100 * float(v) for name, v in zip(self.dataset_meta["classes"], iou)})
        return metrics
