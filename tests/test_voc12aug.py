"""VOC12aug FCN transfer: the protocol config, the procedural VOC2012 segmentation tree, its check, and a run."""
from __future__ import annotations

import json
import math
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transfer.data import DatasetError, check_dataset, find_dataset, make_dataset
from transfer.data.voc import IGNORE_INDEX, SEG_CLASSES, SEG_SPLITS, voc_palette
from transfer.engine.config import load_mm_config
from transfer.segmentation.config import set_data_root, set_input_size
from transfer.segmentation.runner import CONFIGS, run

from conftest import run_tool
from detection_helpers import transfer_args
from suite_helpers import r18_checkpoint

REPO = Path(__file__).resolve().parent.parent
CONFIG = CONFIGS["voc12aug"]
# One process, 2 images per iteration, no loader workers: seconds on 2 cores.
CPU = ["--gpus", "0", "protocol_gpus=1", "train_dataloader.batch_size=2", "train_dataloader.num_workers=0",
       "train_dataloader.persistent_workers=False", "test_dataloader.num_workers=0",
       "test_dataloader.persistent_workers=False"]


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root holding a tiny procedural VOC12aug set, `voc12aug/VOC2012` (4 train, 4 aug, 4 val images, 64x64)."""
    root = tmp_path_factory.mktemp("voc12aug_data")
    make_dataset("voc12aug", root / "voc12aug", seed=0, num_images=8, num_val=4, image_size=(64, 64))
    return root


@pytest.fixture()
def voc_copy(voc_root: Path, tmp_path: Path) -> Path:
    """A private copy of the VOC2012 folder, for a test that damages it."""
    return Path(shutil.copytree(voc_root / "voc12aug" / "VOC2012", tmp_path / "VOC2012"))


def test_protocol_config_matches_mmselfsup() -> None:
    """The config holds mmselfsup's VOC12aug benchmark (mmseg's fcn_r50-d8_4xb4-20k_voc12aug-512x512)."""
    cfg = load_mm_config(CONFIG)
    head, aux = cfg.model.decode_head, cfg.model.auxiliary_head
    assert cfg.model.backbone.type == "ResNet" and not cfg.model.backbone.get("deep_stem", False)
    assert head.num_classes == aux.num_classes == 21 and aux.loss_decode.loss_weight == 0.4
    assert (head.in_channels, head.channels, head.num_convs, head.concat_input) == (2048, 512, 2, True)
    assert cfg.crop_size == (512, 512) and cfg.model.data_preprocessor.size == (512, 512)
    assert cfg.model.test_cfg.mode == "whole"
    train_set = cfg.train_dataloader.dataset
    assert train_set.type == "ConcatDataset"
    assert [(d.ann_file, d.data_prefix.seg_map_path) for d in train_set.datasets] == [
        (f"ImageSets/Segmentation/{image_set}.txt", folder) for image_set, folder in SEG_SPLITS[:2]]
    assert cfg.test_dataloader.dataset.ann_file == "ImageSets/Segmentation/val.txt"
    train = {step.type: step for step in train_set.datasets[0].pipeline}
    assert train["RandomResize"].scale == (2048, 512) and train["RandomResize"].ratio_range == (0.5, 2.0)
    assert train["RandomCrop"].crop_size == (512, 512) and train["Pad"].size == (512, 512)
    assert "PhotoMetricDistortion" in train
    assert cfg.optim_wrapper.optimizer == dict(type="SGD", lr=0.01, momentum=0.9, weight_decay=0.0005)
    (poly,) = cfg.param_scheduler
    assert (poly.type, poly.power, poly.eta_min, poly.end) == ("PolyLR", 0.9, 1e-4, 20000)
    assert cfg.train_cfg.max_iters == 20000
    assert (cfg.train_dataloader.batch_size, cfg.protocol_gpus) == (4, 4)


def test_data_root_and_input_size_reach_every_dataset(tmp_path: Path) -> None:
    """set_data_root points both halves of the ConcatDataset and val at the folder; --input-size scales Pad too."""
    cfg = load_mm_config(CONFIG)
    set_data_root(cfg, tmp_path)
    assert {d.data_root for d in cfg.train_dataloader.dataset.datasets} == {str(tmp_path)}
    assert cfg.test_dataloader.dataset.data_root == str(tmp_path)
    note = set_input_size(cfg, 32)
    train = {step.type: step for step in cfg.train_dataloader.dataset.datasets[1].pipeline}
    test = {step.type: step for step in cfg.test_dataloader.dataset.pipeline}
    assert train["RandomCrop"].crop_size == train["Pad"].size == cfg.model.data_preprocessor.size == (32, 32)
    assert train["RandomResize"].scale == test["Resize"].scale == (128, 32)
    assert "(32, 32)" in note


def _boxes(xml: Path) -> list[tuple[int, tuple[int, int, int, int]]]:
    """(class index, 0-based inclusive box) of every object of a VOC annotation."""
    out = []
    for obj in ET.parse(xml).getroot().iter("object"):
        x0, y0, x1, y1 = (int(obj.findtext(f"bndbox/{k}")) - 1 for k in ("xmin", "ymin", "xmax", "ymax"))
        out.append((SEG_CLASSES.index(obj.findtext("name")), (x0, y0, x1, y1)))
    return out


def test_masks_agree_with_the_drawn_objects(voc_root: Path) -> None:
    """Class pixels lie in their class's xml boxes and reach every box's edges; VOC's map is SBD's plus a void band."""
    base = find_dataset("voc12aug", voc_root)
    assert base == voc_root / "voc12aug" / "VOC2012"
    for image_set, folder in SEG_SPLITS:
        for image_id in (base / "ImageSets" / "Segmentation" / f"{image_set}.txt").read_text().split():
            boxes = _boxes(base / "Annotations" / f"{image_id}.xml")
            labels = np.asarray(Image.open(base / "SegmentationClassAug" / f"{image_id}.png"))
            assert labels.shape == (64, 64) and boxes
            for k in set(np.unique(labels)) - {0}:
                inside = np.zeros_like(labels, bool)
                for c, (x0, y0, x1, y1) in boxes:
                    inside[y0:y1 + 1, x0:x1 + 1] |= c == k
                assert not ((labels == k) & ~inside).any(), (image_id, k)
            for c, (x0, y0, x1, y1) in boxes:  # each object's own pixels span its box
                ys, xs = np.nonzero(labels[y0:y1 + 1, x0:x1 + 1] == c)
                assert (xs.min(), ys.min(), xs.max(), ys.max()) == (0, 0, x1 - x0, y1 - y0), (image_id, c)
            if folder == "SegmentationClass":
                voc = Image.open(base / folder / f"{image_id}.png")
                assert voc.mode == "P" and voc.getpalette()[:3 * 256] == voc_palette()
                voc_labels = np.asarray(voc)
                void = voc_labels == IGNORE_INDEX
                assert void.any() and (voc_labels[~void] == labels[~void]).all()
    from mmseg.datasets import PascalVOCDataset

    assert voc_palette()[:3 * len(SEG_CLASSES)] == sum(PascalVOCDataset.METAINFO["palette"], [])


def test_mmseg_reads_the_tree_as_the_protocol_config_does(voc_root: Path) -> None:
    """mmseg's datasets of the config list train + aug and val; LoadAnnotations reads class indices from the PNGs."""
    from mmseg.datasets.transforms import LoadAnnotations
    from mmseg.registry import DATASETS
    from mmseg.utils import register_all_modules

    register_all_modules(init_default_scope=False)
    cfg = load_mm_config(CONFIG)
    set_data_root(cfg, find_dataset("voc12aug", voc_root))
    train, val = DATASETS.build(cfg.train_dataloader.dataset), DATASETS.build(cfg.test_dataloader.dataset)
    assert (len(train), len(val)) == (8, 4)
    assert train.metainfo["classes"] == SEG_CLASSES
    for dataset in (train, val):
        for i in range(len(dataset)):
            info = dataset.get_data_info(i)
            loaded = LoadAnnotations()({**info, "seg_fields": []})["gt_seg_map"]
            assert (loaded == np.asarray(Image.open(info["seg_map_path"]))).all()


def _one_problem(root: Path) -> str:
    """The one line of the DatasetError that the check raises for `root`."""
    with pytest.raises(DatasetError) as info:
        check_dataset("voc12aug", root)
    message = str(info.value)
    assert "\n" not in message and len(info.value.problems) == 1, message
    return message


def test_malformed_trees_are_one_clear_error(voc_copy: Path) -> None:
    """A missing folder, a listed image or map that is missing, a map of the wrong size or values: one line each."""
    check_dataset("voc12aug", voc_copy)
    aug = voc_copy / "SegmentationClassAug"
    shutil.move(aug, voc_copy / "aside")
    message = _one_problem(voc_copy)
    assert f"{aug}: missing folder" in message and "voc_aug.py" in message
    shutil.move(voc_copy / "aside", aug)

    listing = voc_copy / "ImageSets" / "Segmentation" / "aug.txt"
    listing.write_text(listing.read_text() + "2012_999999\n")
    message = _one_problem(voc_copy)
    assert f"{voc_copy / 'JPEGImages' / '2012_999999.jpg'}: missing image and its label map" in message
    assert f"(listed at {listing}:5)" in message
    listing.write_text("".join(listing.read_text().splitlines(keepends=True)[:-1]))

    train_id = (voc_copy / "ImageSets" / "Segmentation" / "train.txt").read_text().split()[0]
    mask = voc_copy / "SegmentationClass" / f"{train_id}.png"
    original = mask.read_bytes()
    Image.open(mask).resize((32, 64)).save(mask)
    assert f"{mask}: label map is 32x64, expected 64x64 like {train_id}.jpg" in _one_problem(voc_copy)
    mask.write_bytes(original)
    labels = np.asarray(Image.open(mask)).copy()
    labels[0, 0] = 21
    Image.fromarray(labels).save(mask)
    message = _one_problem(voc_copy)
    assert f"{mask}: values [21] are not VOC class indices; expected 0-20 and 255 (void)" in message
    mask.unlink()
    assert f"{mask}: missing label map (listed at" in _one_problem(voc_copy)


def test_run_through_run_transfer_sh(voc_root: Path, tmp_path: Path) -> None:
    """tools/run_transfer.sh voc12aug: converts the weights, trains 2 iterations, writes metrics.json with mIoU."""
    work = tmp_path / "work"
    weights = r18_checkpoint(tmp_path / "r18.pth", seed=0)
    done = run_tool("run_transfer.py", "voc12aug", "--weights", weights, "--data", voc_root, "--work-dir", work,
                    "--max-iters", "2", "--input-size", "32", *CPU, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((work / "metrics.json").read_text())
    assert (record["task"], record["backend"], record["iterations"]) == ("voc12aug", "mmseg", 2)
    assert record["config"] == str(CONFIG) and any("ResNet-18" in n for n in record["notes"])
    metrics = record["metrics"]
    per_class = {k[4:]: v for k, v in metrics.items() if k.startswith("IoU.")}
    assert "background" in per_class and set(per_class) <= set(SEG_CLASSES)
    assert all(0 <= v <= 100 for v in per_class.values()) and 0 <= metrics["mIoU"] <= 100
    assert math.isclose(metrics["mIoU"], float(np.mean(list(per_class.values()))), rel_tol=1e-9)


def test_runner_refuses_a_malformed_tree_before_training(voc_copy: Path, tmp_path: Path) -> None:
    """The runner checks the data first: a tree without aug.txt stops with the converter to run, nothing trained."""
    (voc_copy / "ImageSets" / "Segmentation" / "aug.txt").unlink()
    with pytest.raises(DatasetError, match=r"aug\.txt: missing: .*voc_aug\.py"):
        run(transfer_args("voc12aug", "--data", str(voc_copy.parent), "--work-dir", str(tmp_path / "w"), *CPU))
    assert not (tmp_path / "w" / "metrics.json").exists()
