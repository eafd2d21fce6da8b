"""Cityscapes pixel-level evaluation: the official script, and a vectorised path that computes the same numbers.

The official definition (cityscapesscripts `evalPixelLevelSemanticLabeling`):
a confusion matrix over label ids (rows ground truth, columns prediction, every
pixel counted); for each of the 19 evaluated classes c, TP = C[c, c],
FN = row sum - TP (a pixel of c predicted as anything else, ignored labels
included), FP = column sum over the rows of evaluated labels - TP (pixels whose
ground truth is ignored never count); IoU = TP / (TP + FP + FN), undefined (nan)
when that is 0; mIoU is the mean over the defined classes.

`evaluate_official` runs the script itself on prediction PNGs; `evaluate_label_maps`
builds the same matrix with one `numpy.bincount` per image instead of the script's
`np.unique` over every pixel (its Cython extension is not in the PyPI wheel), and
reads images in threads. With numpy 2 both are fast and PNG decoding dominates
(benchmarks/bench_segmentation.py); the second is an independent implementation
of the definition, which the tests hold against the script.
"""
from __future__ import annotations

import copy
import io
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
from cityscapesscripts.helpers.labels import labels as CS_LABELS
from PIL import Image

from transfer.data.cityscapes import CLASSES
from transfer.errors import UserError

NUM_LABEL_IDS = max(lab.id for lab in CS_LABELS) + 1  # 34: the official confusion matrix is 34 x 34
# Label id of each train id (0..18), in train-id order; train id 255 (ignore) becomes 0 ("unlabeled").
EVAL_LABEL_IDS: tuple[int, ...] = tuple(next(lab.id for lab in CS_LABELS if lab.trainId == t) for t in range(19))
# Rows of the confusion matrix whose ground truth is evaluated (ignoreInEval False).
_EVALUATED_ROWS = np.zeros(NUM_LABEL_IDS, bool)
_EVALUATED_ROWS[[lab.id for lab in CS_LABELS if lab.id >= 0 and not lab.ignoreInEval]] = True
_TRAIN_TO_LABEL = np.zeros(256, np.uint8)
_TRAIN_TO_LABEL[:19] = EVAL_LABEL_IDS


def train_ids_to_label_ids(train_ids: np.ndarray) -> np.ndarray:
    """Map a train-id map (H, W) to Cityscapes label ids (H, W) uint8, as the official script reads them."""
    return _TRAIN_TO_LABEL[train_ids]


def confusion_matrix(gt_label_ids: np.ndarray, pred_label_ids: np.ndarray) -> np.ndarray:
    """The (34, 34) int64 confusion matrix of one image pair of label-id maps (rows ground truth)."""
    if gt_label_ids.shape != pred_label_ids.shape:
        raise ValueError(f"ground truth {gt_label_ids.shape} and prediction {pred_label_ids.shape} differ in size")
    top = max(int(gt_label_ids.max(initial=0)), int(pred_label_ids.max(initial=0)))
    if top >= NUM_LABEL_IDS or min(int(gt_label_ids.min(initial=0)), int(pred_label_ids.min(initial=0))) < 0:
        raise ValueError(f"label ids must be in 0..{NUM_LABEL_IDS - 1} (got up to {top}); "
                         "predictions must be label ids, not train ids with 255")
    # one code per (ground truth, prediction) pair: 34 * 34 codes fit in uint16
    codes = gt_label_ids.astype(np.uint16) * np.uint16(NUM_LABEL_IDS)
    codes += pred_label_ids.astype(np.uint16, copy=False)
    counts = np.bincount(codes.ravel(), minlength=NUM_LABEL_IDS * NUM_LABEL_IDS)
    return counts.reshape(NUM_LABEL_IDS, NUM_LABEL_IDS).astype(np.int64)


def class_iou(confusion: np.ndarray) -> dict[str, float]:
    """IoU (0-1, nan when undefined) of each of the 19 classes from a label-id confusion matrix, official definition."""
    confusion = confusion.astype(np.int64)
    ids = np.array(EVAL_LABEL_IDS)
    tp = confusion[ids, ids]
    fn = confusion[ids, :].sum(1) - tp
    fp = confusion[_EVALUATED_ROWS, :].sum(0)[ids] - tp  # column sums over evaluated ground truth only
    denom = tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(denom > 0, tp / np.maximum(denom, 1), np.nan)
    return dict(zip(CLASSES, iou.tolist()))


def mean_iou(ious: dict[str, float]) -> float:
    """The mean of the defined (non-nan) class IoUs, nan when none is defined (the official average)."""
    values = [v for v in ious.values() if not np.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def _read_label_map(path: str | os.PathLike) -> np.ndarray:
    with Image.open(path) as im:
        if im.mode not in ("L", "P", "I", "I;16"):
            raise UserError(f"{path}: a label map must have one channel, not mode {im.mode}")
        return np.asarray(im)


def evaluate_label_maps(pred_files: Sequence[str | os.PathLike], gt_files: Sequence[str | os.PathLike],
                        workers: int = min(4, os.cpu_count() or 1)) -> dict:
    """Evaluate label-id prediction PNGs against `*_gtFine_labelIds.png` files, as the official script does.

    Returns {"mIoU": percent, "IoU": {class: percent or nan}, "confusion": (34, 34) array}.
    Images are read in `workers` threads (PNG decoding releases the GIL).
    """
    if len(pred_files) != len(gt_files):
        raise UserError(f"{len(pred_files)} predictions for {len(gt_files)} ground-truth label maps")

    def one(pair: tuple) -> np.ndarray:
        pred_path, gt_path = pair
        pred, gt = _read_label_map(pred_path), _read_label_map(gt_path)
        if pred.shape != gt.shape:
            raise UserError(f"{pred_path} is {pred.shape[1]}x{pred.shape[0]}, "
                            f"but its ground truth {gt_path} is {gt.shape[1]}x{gt.shape[0]}")
        try:
            return confusion_matrix(gt, pred)
        except ValueError as e:
            raise UserError(f"{pred_path} against {gt_path}: {e}") from e

    total = np.zeros((NUM_LABEL_IDS, NUM_LABEL_IDS), np.int64)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for conf in pool.map(one, zip(pred_files, gt_files)):
            total += conf
    ious = class_iou(total)
    return {"mIoU": 100 * mean_iou(ious), "IoU": {k: 100 * v for k, v in ious.items()}, "confusion": total}


def evaluate_official(pred_files: Sequence[str | os.PathLike], gt_files: Sequence[str | os.PathLike]) -> dict:
    """Run cityscapesscripts' own pixel-level evaluation on the file lists; same result layout as `evaluate_label_maps`.

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
