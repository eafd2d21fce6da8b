"""COCO box and mask AP for mmdet from the official COCO evaluation, unrounded, in percent.

mmdet's `CocoMetric` already turns predictions into COCO result dicts
(`results2json`) and holds the ground truth; this subclass keeps all of that and
only runs the evaluation with `transfer.detection.coco_eval.coco_stats`
(faster-coco-eval by default, pycocotools on request), reporting full-precision
percentages instead of fractions rounded to three decimals.
"""
from __future__ import annotations

import os.path as osp
import tempfile
from collections import OrderedDict

from mmdet.datasets.api_wrappers import COCO
from mmdet.evaluation.metrics import CocoMetric
from mmdet.registry import METRICS
from mmengine.fileio import load
from mmengine.logging import MMLogger

from transfer.detection.coco_eval import EVALUATORS, STAT_NAMES, coco_stats


@METRICS.register_module()
class CocoAPMetric(CocoMetric):
    """`bbox_AP`, `bbox_AP50`, ..., `segm_APl` in percent (NaN where undefined), from faster-coco-eval or
    pycocotools (`evaluator`)."""

    def __init__(self, *args, evaluator: str = "faster-coco-eval", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if evaluator not in EVALUATORS:
            raise ValueError(f"unknown COCO evaluator {evaluator!r}; choose one of {', '.join(EVALUATORS)}")
        unsupported = [m for m in self.metrics if m not in ("bbox", "segm")]
        if unsupported:
            raise ValueError(f"CocoAPMetric evaluates bbox and segm, not {unsupported}")
        self.evaluator = evaluator

    def compute_metrics(self, results: list) -> dict[str, float]:
        """Evaluate the collected predictions of every metric (bbox, segm) against the ground truth."""
        logger = MMLogger.get_current_instance()
        gts, preds = zip(*results)
        out: dict[str, float] = OrderedDict()
        with tempfile.TemporaryDirectory() as tmp:
            prefix = osp.join(tmp, "results")
            if self._coco_api is None:  # no ann_file: mmdet's own conversion of the collected ground truth
                self._coco_api = COCO(self.gt_to_coco_json(gt_dicts=gts, outfile_prefix=prefix))
            if self.cat_ids is None:
                self.cat_ids = self._coco_api.get_cat_ids(cat_names=self.dataset_meta["classes"])
            if self.img_ids is None:
                self.img_ids = self._coco_api.get_img_ids()
            files = self.results2json(preds, prefix)
            for metric in self.metrics:
                detections = load(files[metric])
                if metric == "segm":
                    for det in detections:  # with a box, COCO would take the box's area for the size ranges
                        det.pop("bbox", None)
                stats = coco_stats(self._coco_api.dataset, detections, metric, self.evaluator,
                                   img_ids=self.img_ids, cat_ids=self.cat_ids)
                for name, value in zip(STAT_NAMES, stats):
                    # COCOeval's -1: no ground truth in that size range, the AP is undefined
                    out[f"{metric}_{name}"] = 100.0 * float(value) if value >= 0 else float("nan")
                logger.info("COCO %s (%s, %d images): %s", metric, self.evaluator, len(self.img_ids),
                            ", ".join(f"{n} {out[f'{metric}_{n}']:.2f}" for n in STAT_NAMES))
        return out
