"""Cityscapes evaluation: mmseg's IoUMetric (our subclass) equals the official script."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from transfer.data.cityscapes import CLASSES, LABEL_SUFFIX, TRAIN_SUFFIX, label_ids_to_train_ids
from transfer.errors import UserError
from transfer.segmentation.evaluation import EVAL_LABEL_IDS, evaluate_official, train_ids_to_label_ids

REPO = Path(__file__).resolve().parent.parent
TRAIN_ID = {name: i for i, name in enumerate(CLASSES)}


def gt_files(cityscapes: Path) -> list[Path]:
    """The val label-id maps of a procedural Cityscapes tree."""
    return sorted((cityscapes / "gtFine" / "val").glob(f"*/*{LABEL_SUFFIX}"))


def noisy_train_id_predictions(gts: list[Path], seed: int = 0) -> list[np.ndarray]:
    """Predictions in train ids: the ground truth with a third of the pixels replaced by random classes.

    'train' (absent from the procedural scenes) stays absent from both sides, so its
    IoU is undefined; 'motorcycle' is predicted but never true (IoU 0).
    """
    rng = np.random.default_rng(seed)
    allowed = [i for i in range(19) if i != TRAIN_ID["train"]]
    out = []
    for path in gts:
        train_ids = label_ids_to_train_ids(np.asarray(Image.open(path)))
        pred = np.where(train_ids == 255, rng.choice(allowed, train_ids.shape), train_ids)
        noise = rng.random(train_ids.shape) < 0.33
        pred[noise] = rng.choice(allowed, int(noise.sum()))
        out.append(pred.astype(np.uint8))
    return out


def write_pngs(arrays: list[np.ndarray], gts: list[Path], folder: Path) -> list[Path]:
    """Save label maps as `<city>_<seq>_<frame>_pred.png` in `folder`; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for array, gt in zip(arrays, gts):
        path = folder / (gt.name.replace(LABEL_SUFFIX, "_pred.png"))
        Image.fromarray(array).save(path)
        paths.append(path)
    return paths


def assert_same_ious(ours: dict[str, float], official: dict[str, float], tol: float = 1e-6) -> None:
    """Equal per-class values (percent) to `tol`, nan exactly where the other is nan."""
    assert set(ours) == set(official)
    for name in official:
        a, b = ours[name], official[name]
        assert math.isnan(a) == math.isnan(b), (name, a, b)
        if not math.isnan(b):
            assert abs(a - b) <= tol, (name, a, b)


def test_train_ids_round_trip() -> None:
    """Train ids -> label ids -> train ids is the identity on the 19 classes; 255 becomes 'unlabeled' (0)."""
    train_ids = np.array([[*range(19), 255]], np.uint8)
    label_ids = train_ids_to_label_ids(train_ids)
    assert label_ids[0, -1] == 0 and tuple(label_ids[0, :19]) == EVAL_LABEL_IDS
    assert (label_ids_to_train_ids(label_ids) == train_ids).all()


def test_iou_metric_equals_official(demo_data: Path, tmp_path: Path) -> None:
    """mmseg's IoUMetric (PerClassIoUMetric) on train-id predictions equals cityscapesscripts on the same maps."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    from transfer.segmentation.metric import PerClassIoUMetric

    gts = gt_files(demo_data / "cityscapes")
    preds = noisy_train_id_predictions(gts, seed=2)
    metric = PerClassIoUMetric()
    metric.dataset_meta = {"classes": CLASSES}
    for pred, gt in zip(preds, gts):
        sample = SegDataSample()
        sample.pred_sem_seg = PixelData(data=torch.from_numpy(pred.astype(np.int64))[None])
        train_ids = label_ids_to_train_ids(np.asarray(Image.open(gt)))
        sample.gt_sem_seg = PixelData(data=torch.from_numpy(train_ids.astype(np.int64))[None])
        metric.process({}, [sample.to_dict()])
    ours = metric.evaluate(len(gts))

    official = evaluate_official(write_pngs([train_ids_to_label_ids(p) for p in preds], gts, tmp_path / "p"), gts)
    assert_same_ious({k[4:]: v for k, v in ours.items() if k.startswith("IoU.")}, official["IoU"])
    assert abs(ours["mIoU"] - official["mIoU"]) <= 1e-6
    assert math.isnan(official["IoU"]["train"]) and official["IoU"]["motorcycle"] == 0.0
    assert 20 < official["mIoU"] < 90  # noisy but informative predictions


def test_summed_areas_are_exact() -> None:
    """Per-image counts are summed as integers: a class with more than 2**24 pixels in total is counted exactly."""
    from transfer.segmentation.metric import summed_areas

    per_image = (torch.tensor([2.0**24 - 1]),) * 4
    total = summed_areas([per_image] * 3)
    assert total[0].dtype == np.int64 and int(total[0][0]) == 3 * (2**24 - 1)


def test_official_errors_become_user_errors(tmp_path: Path, demo_data: Path) -> None:
    """A prediction of the wrong size is reported, not a silent exit of the script."""
    gts = gt_files(demo_data / "cityscapes")[:1]
    bad = write_pngs([np.zeros((5, 5), np.uint8)], gts, tmp_path)
    with pytest.raises(UserError, match="not equal"):
        evaluate_official(bad, gts)


def test_prepare_cityscapes_writes_train_ids(demo_data: Path, tmp_path: Path) -> None:
    """tools/prepare_cityscapes.py recreates the labelTrainIds maps bit for bit, with progress; skips existing ones."""
    import shutil

    root = tmp_path / "cityscapes"
    shutil.copytree(demo_data / "cityscapes", root)
    made = sorted(root.glob(f"gtFine/*/*/*{TRAIN_SUFFIX}"))
    expected = {p: np.asarray(Image.open(p)).copy() for p in made}
    for p in made:
        p.unlink()
    cmd = [sys.executable, str(REPO / "tools" / "prepare_cityscapes.py"), str(tmp_path)]  # the parent works too
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"{len(made)} labelTrainIds maps written" in done.stdout
    assert f"{len(made)}/{len(made)} label maps" in done.stderr  # progress
    for p, want in expected.items():
        assert (np.asarray(Image.open(p)) == want).all()
    assert not list(root.rglob("*.tmp"))
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and f"0 labelTrainIds maps written, {len(made)} already there" in again.stdout


def test_prepare_cityscapes_bad_root(tmp_path: Path) -> None:
    """A folder without gtFine/, or with no label maps in it, is one clear error line and exit code 2."""
    tool = [sys.executable, str(REPO / "tools" / "prepare_cityscapes.py")]
    done = subprocess.run([*tool, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and f"{tmp_path / 'gtFine'} does not exist" in done.stderr
    (tmp_path / "gtFine" / "val").mkdir(parents=True)
    done = subprocess.run([*tool, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "gtFine_trainvaltest.zip" in done.stderr
