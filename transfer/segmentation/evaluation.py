"""Cityscapes pixel-level evaluation by the official script (cityscapesscripts `evalPixelLevelSemanticLabeling`).

Training runs evaluate with mmseg's IoUMetric (`transfer.segmentation.metric`);
`evaluate_official` runs the official script on prediction PNGs, so the tests can
hold mmseg's numbers against it. `train_ids_to_label_ids` turns mmseg's train-id
predictions into the label ids the script reads.
"""
from __future__ import annotations

import copy
import io
import os
from collections.abc import Sequence
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
from cityscapesscripts.helpers.labels import labels as CS_LABELS

from transfer.data.cityscapes import CLASSES
from transfer.errors import UserError

# Label id of each train id (0..18), in train-id order; train id 255 (ignore) becomes 0 ("unlabeled").
EVAL_LABEL_IDS: tuple[int, ...] = tuple(next(lab.id for lab in CS_LABELS if lab.trainId == t) for t in range(19))
_TRAIN_TO_LABEL = np.zeros(256, np.uint8)
_TRAIN_TO_LABEL[:19] = EVAL_LABEL_IDS


def train_ids_to_label_ids(train_ids: np.ndarray) -> np.ndarray:
    """Map a train-id map (H, W) to Cityscapes label ids (H, W) uint8, as the official script reads them."""
    return _TRAIN_TO_LABEL[train_ids]


def evaluate_official(pred_files: Sequence[str | os.PathLike], gt_files: Sequence[str | os.PathLike]) -> dict:
    """Run cityscapesscripts' own pixel-level evaluation on the file lists.

    Returns {"mIoU": percent, "IoU": {class: percent or nan}, "confusion": (34, 34) label-id matrix}.

    The script's module-level settings are copied, not changed, and nothing is
    read from or written to the environment or disk besides the images.
    """
    import cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling as cs_eval

    args = copy.copy(cs_eval.args)
    args.evalInstLevelScore = False  # the instance-weighted iIoU needs instanceIds and is not the mIoU
    args.evalPixelAccuracy = False
    args.JSONOutput = False
    args.quiet = True
    args.colorized = False
    args.bold = args.nocol = ""
    out = io.StringIO()
    try:
        with redirect_stdout(out):  # the script prints even when quiet and exits on errors
            result = cs_eval.evaluateImgLists([str(p) for p in pred_files], [str(p) for p in gt_files], args)
    except SystemExit as e:
        raise UserError(f"cityscapesscripts evaluation failed: {out.getvalue().strip()}") from e
    ious = {name: float(result["classScores"][name]) for name in CLASSES}
    return {"mIoU": 100 * float(result["averageScoreClasses"]), "IoU": {k: 100 * v for k, v in ious.items()},
            "confusion": np.asarray(result["confMatrix"], np.int64)}


def prediction_files(pred_dir: str | os.PathLike, gt_files: Sequence[str | os.PathLike]) -> list[Path]:
    """The prediction PNG `<city>_<seq>_<frame>*.png` in `pred_dir` for each ground-truth label map, in order."""
    pred_dir = Path(pred_dir)
    by_stem = {}
    for p in pred_dir.rglob("*.png"):
        by_stem.setdefault("_".join(p.name.split("_")[:3]), []).append(p)
    out, missing = [], []
    for gt in gt_files:
        stem = "_".join(Path(gt).name.split("_")[:3])
        found = by_stem.get(stem, [])
        if len(found) != 1:
            missing.append(f"{stem} ({len(found)} found)")
        else:
            out.append(found[0])
    if missing:
        raise UserError(f"{pred_dir}: expected one prediction <city>_<seq>_<frame>*.png for each ground truth; "
                        f"not so for {len(missing)}: {', '.join(missing[:5])}")
    return out
