"""Pascal VOC AP, AP50 and AP75 for mmdet, as detectron2's `PascalVOCDetectionEvaluator` defines them.

detectron2 reports, for VOC2007 test (the VOC07 11-point AP; the area under the
curve for VOC2012):
- AP50 / AP75: the mean over ALL classes of the dataset of the per-class AP at IoU
  0.50 / 0.75 (a class without ground truth counts as AP 0),
- AP: the mean of the ten class-means at IoU 0.50, 0.55, ..., 0.95,
in percent, with the legacy `+1` pixel box sizes. Beside them, `AP_present`,
`AP50_present` and `AP75_present` average over the classes that have ground truth
in the test set only (`classes_present` of them): the procedural scenes hold 5 of
the 20 classes, so there the protocol's mean is at most a quarter of a perfect score. mmdet's `VOCMetric` computes the
per-class APs with the same matching (`eval_map`, legacy coordinates, difficult
objects ignored), but averages only over the classes that have ground truth and
rounds to three decimals. This metric reuses `VOCMetric.process` and mmdet's
`eval_map`, and only averages as detectron2 does.
"""
from __future__ import annotations

import os
from collections import OrderedDict

import numpy as np
from mmdet.evaluation.functional import eval_map
from mmdet.evaluation.metrics import VOCMetric
from mmdet.registry import METRICS
from mmengine.logging import MMLogger

# IoU thresholds 0.50:0.95:0.05, as integers in percent (the keys detectron2 uses).
IOU_PERCENTS = tuple(range(50, 100, 5))


@METRICS.register_module()
class PascalVOCAPMetric(VOCMetric):
    """`AP` (mean over IoU 0.50:0.95), `AP50`, `AP75`, in percent, averaged over all classes like detectron2."""

    def __init__(self, eval_mode: str = "11points", **kwargs) -> None:
        kwargs.pop("iou_thrs", None)  # fixed by the definition
        super().__init__(iou_thrs=[p / 100 for p in IOU_PERCENTS], metric="mAP", eval_mode=eval_mode, **kwargs)

    def compute_metrics(self, results: list) -> dict[str, float]:
        """Per-class APs at each IoU threshold from `eval_map`, then detectron2's averages."""
        logger = MMLogger.get_current_instance()
        gts, preds = zip(*results)
        num_classes = len(self.dataset_meta["classes"])
        nproc = max(1, min(4, os.cpu_count() or 1))
        class_means, present_means = {}, {}
        for percent in IOU_PERCENTS:
            _, per_class = eval_map(list(preds), list(gts), iou_thr=percent / 100, logger="silent",
                                    eval_mode=self.eval_mode, use_legacy_coordinate=True, nproc=nproc)
            aps = np.array([float(np.asarray(r["ap"]).item()) for r in per_class])
            assert len(aps) == num_classes
            present = np.array([int(r["num_gts"]) > 0 for r in per_class])  # difficult objects are not counted
            class_means[percent] = 100.0 * float(aps.mean())
            present_means[percent] = 100.0 * float(aps[present].mean()) if present.any() else 0.0
        out = OrderedDict(AP=float(np.mean(list(class_means.values()))), AP50=class_means[50], AP75=class_means[75])
        out.update(AP_present=float(np.mean(list(present_means.values()))), AP50_present=present_means[50],
                   AP75_present=present_means[75], classes_present=int(present.sum()))
        logger.info("VOC (%s, mean over %d classes): AP %.2f, AP50 %.2f, AP75 %.2f; over the %d classes with ground "
                    "truth: AP %.2f, AP50 %.2f, AP75 %.2f", self.eval_mode, num_classes, out["AP"], out["AP50"],
                    out["AP75"], out["classes_present"], out["AP_present"], out["AP50_present"], out["AP75_present"])
        return out
