"""Procedural datasets load in the engines' own readers, and the checks name what is wrong."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transfer.data import DatasetError, check_dataset, find_dataset, make_dataset
from transfer.data.coco import SHAPE_TO_COCO
from transfer.data.voc import SHAPE_TO_VOC
from transfer.errors import UserError

from conftest import run_tool


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(f.relative_to(folder).as_posix().encode() + f.read_bytes())
    return h.hexdigest()


def test_every_format_passes_its_check(demo_data):
    for fmt in ("coco", "voc", "cityscapes", "imagefolder"):
        assert find_dataset(fmt, demo_data) == demo_data / fmt
        check_dataset(fmt, demo_data / fmt)


def test_generation_is_deterministic(tmp_path):
    a = make_dataset("voc", tmp_path / "a", seed=3, num_images=4, num_val=2)
    b = make_dataset("voc", tmp_path / "b", seed=3, num_images=4, num_val=2)
    c = make_dataset("voc", tmp_path / "c", seed=4, num_images=4, num_val=2)
    assert _digest(a) == _digest(b) != _digest(c)


def test_existing_output_is_reused_or_refused(tmp_path):
    out = make_dataset("imagefolder", tmp_path / "cls", seed=0, num_images=5, num_val=5)
    stamp = (out / "train").stat().st_mtime_ns
    assert make_dataset("imagefolder", out, seed=0, num_images=5, num_val=5) == out
    assert (out / "train").stat().st_mtime_ns == stamp  # reused, not rewritten
    with pytest.raises(UserError, match="--force"):
        make_dataset("imagefolder", out, seed=1, num_images=5, num_val=5)
    make_dataset("imagefolder", out, seed=1, num_images=5, num_val=5, overwrite=True)
    assert json.loads((out / "generated.json").read_text())["seed"] == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_coco_loads_in_pycocotools_and_masks_match_boxes(demo_data):
    from pycocotools.coco import COCO

    coco = COCO(str(demo_data / "coco/annotations/instances_train2017.json"))
    assert len(coco.getImgIds()) == 16
    assert len(coco.getCatIds()) == 80  # the real category list, as real COCO has
    used = {coco.loadCats(a["category_id"])[0]["name"] for a in coco.loadAnns(coco.getAnnIds())}
    assert used <= set(SHAPE_TO_COCO.values()) and len(used) >= 3
    anns = coco.loadAnns(coco.getAnnIds())
    assert len(anns) >= 16
    for ann in anns:
        img = coco.loadImgs(ann["image_id"])[0]
        mask = coco.annToMask(ann)
        assert mask.shape == (img["height"], img["width"])
        assert mask.sum() == pytest.approx(ann["area"], abs=0.5)
        ys, xs = np.nonzero(mask)
        x, y, w, h = ann["bbox"]
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == pytest.approx((x, y, x + w, y + h), abs=1e-6)
        assert ann["iscrowd"] == 0


def test_coco_evaluates_perfectly_against_itself(demo_data):
    """The ground truth scored as detections gives AP 1: the files are what COCOeval expects."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO(str(demo_data / "coco/annotations/instances_val2017.json"))
    dets = gt.loadRes([{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
                        "score": 1.0} for a in gt.loadAnns(gt.getAnnIds())])
    ev = COCOeval(gt, dets, "bbox")
    ev.evaluate(), ev.accumulate(), ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)


def test_voc_loads_in_mmdet(demo_data):
    from mmdet.datasets import VOCDataset

    root = demo_data / "voc"
    for year, image_set, count in (("2007", "trainval", 8), ("2012", "trainval", 8), ("2007", "test", 8)):
        ds = VOCDataset(data_root=str(root), ann_file=f"VOC{year}/ImageSets/Main/{image_set}.txt",
                        data_prefix=dict(sub_data_root=f"VOC{year}/"), pipeline=[], test_mode=True)
        assert len(ds) == count
        classes = ds.metainfo["classes"]
        assert len(classes) == 20
        for item in ds:
            assert Path(item["img_path"]).is_file()
            for inst in item["instances"]:
                x0, y0, x1, y1 = inst["bbox"]
                assert 0 <= x0 < x1 <= item["width"] and 0 <= y0 < y1 <= item["height"]
                assert classes[inst["bbox_label"]] in SHAPE_TO_VOC.values()


def test_voc_boxes_match_coco_style_scenes(demo_data):
    """Boxes enclose a painted object: pixels inside a box differ from the image mean more than outside."""
    import xml.etree.ElementTree as ET

    xml = sorted((demo_data / "voc/VOC2007/Annotations").glob("*.xml"))[0]
    tree = ET.parse(xml)
    w, h = int(tree.findtext("size/width")), int(tree.findtext("size/height"))
    with Image.open(demo_data / "voc/VOC2007/JPEGImages" / f"{xml.stem}.jpg") as im:
        assert im.size == (w, h)
    assert len(tree.findall("object")) >= 1


def test_cityscapes_loads_in_mmseg_and_label_maps_agree(demo_data):
    from mmseg.datasets import CityscapesDataset

    from transfer.data.cityscapes import label_ids_to_train_ids

    root = demo_data / "cityscapes"
    ds = CityscapesDataset(data_root=str(root), data_prefix=dict(img_path="leftImg8bit/val",
                                                                  seg_map_path="gtFine/val"), pipeline=[])
    assert len(ds) == 8
    assert len(ds.metainfo["classes"]) == 19
    for item in ds:
        label_ids = np.asarray(Image.open(item["seg_map_path"].replace("labelTrainIds", "labelIds")))
        train_ids = np.asarray(Image.open(item["seg_map_path"]))
        with Image.open(item["img_path"]) as im:
            assert im.size[::-1] == train_ids.shape
        assert np.array_equal(label_ids_to_train_ids(label_ids), train_ids)
        present = set(np.unique(train_ids).tolist()) - {255}
        assert {0, 10} <= present  # road and sky in every scene
    assert len(list((root / "leftImg8bit/train").iterdir())) == 3  # three cities


def test_imagefolder_loads_in_torchvision(demo_data):
    from torchvision.datasets import ImageFolder

    train = ImageFolder(str(demo_data / "imagefolder/train"))
    val = ImageFolder(str(demo_data / "imagefolder/val"))
    assert train.classes == val.classes == sorted(["ellipse", "rectangle", "triangle", "star", "cross"])
    assert len(train) == 16 and len(val) == 8
    assert np.bincount(train.targets).min() >= 3


def test_make_demo_data_tool(tmp_path):
    out = tmp_path / "d"
    run = run_tool("make_demo_data.py", "--out", out, "--num-images", "3", "--num-val", "2", "--formats", "coco",
                   "imagefolder")
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in out.iterdir()) == ["coco", "imagefolder"]
    bad = run_tool("make_demo_data.py", "--out", out, "--num-images", "0")
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "--num-images" in bad.stderr


# ---- the checks: each names the file, the line where there is one, and what was expected ----

def _problems(fmt: str, root: Path) -> list[str]:
    with pytest.raises(DatasetError) as info:
        check_dataset(fmt, root)
    return [str(p) for p in info.value.problems]


def test_check_missing_image(copy_of):
    root = copy_of("coco")
    victim = sorted((root / "val2017").iterdir())[0]
    victim.unlink()
    (problem,) = _problems("coco", root)
    assert str(victim) in problem and "missing image" in problem


def test_check_json_that_does_not_parse(copy_of):
    root = copy_of("coco")
    path = root / "annotations/instances_train2017.json"
    path.write_text('{"images": [\n  {"id": 1,\n  oops\n')
    (problem,) = _problems("coco", root)
    assert problem.startswith(f"{path}:3: does not parse as JSON")


def test_check_box_outside_image(copy_of):
    root = copy_of("coco")
    path = root / "annotations/instances_val2017.json"
    data = json.loads(path.read_text())
    data["annotations"][0]["bbox"][0] = data["images"][0]["width"] + 5
    path.write_text(json.dumps(data))
    (problem,) = _problems("coco", root)
    assert str(path) in problem and f"annotation id {data['annotations'][0]['id']}" in problem
    assert "outside image" in problem


def test_check_voc_box_outside_image(copy_of):
    root = copy_of("voc")
    xml = sorted((root / "VOC2007/Annotations").glob("*.xml"))[0]
    text = xml.read_text()
    start = text.index("<xmax>") + len("<xmax>")
    xml.write_text(text[:start] + "9999" + text[text.index("</xmax>"):])
    (problem,) = _problems("voc", root)
    assert str(xml) in problem and "outside" in problem


def test_check_unknown_voc_class(copy_of):
    root = copy_of("voc")
    xml = sorted((root / "VOC2012/Annotations").glob("*.xml"))[0]
    text = xml.read_text()
    old = text[text.index("<name>"):text.index("</name>") + 7]
    xml.write_text(text.replace(old, "<name>unicorn</name>", 1))
    (problem,) = _problems("voc", root)
    line = xml.read_text().splitlines().index("\t\t<name>unicorn</name>") + 1
    assert problem.startswith(f"{xml}:{line}: unknown class name 'unicorn'")


def test_check_voc_xml_that_does_not_parse(copy_of):
    root = copy_of("voc")
    xml = sorted((root / "VOC2007/Annotations").glob("*.xml"))[-1]
    xml.write_text("<annotation>\n<size>\n</annotation>\n")
    (problem,) = _problems("voc", root)
    assert problem.startswith(f"{xml}:3: does not parse as XML")


def test_check_label_png_of_wrong_size(copy_of):
    root = copy_of("cityscapes")
    label = sorted((root / "gtFine/train").glob("*/*_gtFine_labelTrainIds.png"))[0]
    Image.new("L", (10, 7)).save(label)
    (problem,) = _problems("cityscapes", root)
    assert str(label) in problem and "is 10x7" in problem


def test_check_missing_train_ids_says_how_to_make_them(copy_of):
    root = copy_of("cityscapes")
    label = sorted((root / "gtFine/val").glob("*/*_gtFine_labelTrainIds.png"))[0]
    label.unlink()
    (problem,) = _problems("cityscapes", root)
    assert str(label) in problem and "prepare_cityscapes" in problem


def test_pattern_imagefolder_is_a_valid_set_and_an_unknown_kind_is_refused(tmp_path):
    from transfer.data.imagefolder import check_imagefolder, write_imagefolder
    from transfer.data.patterns import PATTERNS

    root = write_imagefolder(tmp_path / "patterns", seed=0, num_train=10, num_val=5, size=32, kind="patterns")
    check_imagefolder(root)
    assert sorted(p.name for p in (root / "train").iterdir()) == sorted(PATTERNS)
    image = Image.open(next((root / "val" / "checks").iterdir()))
    assert image.size == (32, 32) and image.mode == "RGB"
    with pytest.raises(ValueError, match="unknown ImageFolder kind 'stripes'"):
        write_imagefolder(tmp_path / "other", seed=0, num_train=1, num_val=1, kind="stripes")
    assert not (tmp_path / "other").exists()  # refused before anything is written


def test_check_imagefolder_empty_class(copy_of):
    root = copy_of("imagefolder")
    for f in (root / "val/star").iterdir():
        f.unlink()
    (problem,) = _problems("imagefolder", root)
    assert str(root / "val/star") in problem


def test_find_dataset_explains_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "d2"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="no coco dataset found.*d2.*make_demo_data"):
        find_dataset("coco")
    with pytest.raises(UserError, match="does not exist"):
        find_dataset("voc", tmp_path / "nowhere")


def test_find_dataset_uses_detectron2_layout(demo_data, monkeypatch):
    """detectron2 keeps VOC2007 directly under $DETECTRON2_DATASETS; that root is accepted as is."""
    monkeypatch.setenv("DETECTRON2_DATASETS", str(demo_data / "voc"))
    assert find_dataset("voc") == demo_data / "voc"
