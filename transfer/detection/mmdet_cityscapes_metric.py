"""The official Cityscapes instance-segmentation AP for mmdet, in percent, leaving no files behind.

mmdet's `CityScapesMetric` already writes each prediction as the evaluation's PNG
masks and `*_pred.txt` lists and runs cityscapesscripts' evaluation on them; this
subclass keeps all of that and only reports `AP` (mask AP over IoU 0.5:0.95, the mean
over the 8 classes) and `AP50` in percent, as detectron2's `CityscapesInstanceEvaluator`
does, then deletes the results folder (one PNG per predicted instance: up to 100 per
val image) so that a finished run keeps its metrics and logs only.
"""
from __future__ import annotations

import contextlib
import os
import os.path as osp
import shutil
from collections import OrderedDict

from mmdet.evaluation.metrics import CityScapesMetric
from mmdet.registry import METRICS


@METRICS.register_module()
class CityscapesAPMetric(CityScapesMetric):
    """`AP` and `AP50` of the Cityscapes instance evaluation in percent (NaN where undefined); the PNGs and lists
    it evaluates go to `outfile_prefix/results/` (the runner puts that in the work dir) and are removed after."""

    def compute_metrics(self, results: list) -> dict[str, float]:
        """Evaluate the written predictions against the `*_gtFine_instanceIds.png` maps, then remove them."""
        try:
            found = super().compute_metrics(results)
        finally:
            if not self.format_only:
                folder = osp.expanduser(self.outfile_prefix)  # `outfile_prefix/results`
                shutil.rmtree(folder, ignore_errors=True)
                with contextlib.suppress(OSError):  # and the folder it was made in, when nothing else is there
                    os.rmdir(osp.dirname(folder))
        # cityscapesscripts' means over the classes with ground truth, as fractions (NaN stays NaN)
        return OrderedDict((ours, 100.0 * float(found[theirs])) for ours, theirs in (("AP", "mAP"), ("AP50", "AP@50"))
                           if theirs in found)
