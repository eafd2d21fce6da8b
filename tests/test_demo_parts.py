"""The demo's parts: object-centric shape images, scenes with few shapes, the quiet console, chance levels."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transfer.data import make_dataset
from transfer.data.imagefolder import check_imagefolder
from transfer.data.objects import render_object_image
from transfer.data.patterns import PATTERNS
from transfer.data.scenes import SHAPES, pattern_fill
from transfer.demo_console import redirect_output
from transfer.demo_report import chance_levels
from transfer.errors import UserError


def test_object_images_are_one_large_shape_each(tmp_path: Path) -> None:
    root = make_dataset("imagefolder", tmp_path / "objects", 0, 10, 5, (48, 48), kind="objects")
    check_imagefolder(root)
    assert sorted(d.name for d in (root / "train").iterdir()) == sorted(SHAPES)
    assert len(list(root.glob("train/*/*.png"))) == 10 and Image.open(next(root.glob("val/*/*.png"))).size == (48, 48)
    # the shape is filled with its pattern in two colours far apart; the background's corner is one texture
    img = render_object_image(np.random.default_rng(0), 0, 64).astype(float)
    centre, corner = img[26:38, 26:38].reshape(-1, 3), img[:6, :6].reshape(-1, 3)
    assert centre.std(0).sum() > 3 * corner.std(0).sum()


def test_a_pattern_fill_draws_its_class_pattern() -> None:
    rng = np.random.default_rng(0)
    covered = np.full((10, 3), 128)
    h = pattern_fill(rng, PATTERNS.index("hstripes"), 64, 48, covered).astype(float)  # (48, 64, 3)
    v = pattern_fill(rng, PATTERNS.index("vstripes"), 64, 48, covered).astype(float)
    assert h.shape == v.shape == (48, 64, 3)
    # horizontal stripes change down a column, not along a row; vertical ones the other way round
    assert h.std(1).mean() * 3 < h.std(0).mean() and v.std(0).mean() * 3 < v.std(1).mean()


def test_scenes_can_be_drawn_with_the_class_patterns(tmp_path: Path) -> None:
    import json

    solid = make_dataset("voc", tmp_path / "solid", 0, 4, 2, objects=(1, 2))
    pattern = make_dataset("voc", tmp_path / "pattern", 0, 4, 2, objects=(1, 2), fill="pattern")
    assert json.loads((pattern / "generated.json").read_text())["fill"] == "pattern"
    # the same scenes (boxes) with other fills
    name = "VOC2007/Annotations/000000.xml"
    assert (solid / name).read_text() == (pattern / name).read_text()
    image = "VOC2007/JPEGImages/000000.jpg"
    assert not np.array_equal(np.asarray(Image.open(solid / image)), np.asarray(Image.open(pattern / image)))
    with pytest.raises(UserError, match="fill"):
        make_dataset("cityscapes", tmp_path / "bad", 0, 4, 2, fill="pattern")
    with pytest.raises(UserError, match="fill"):
        make_dataset("voc", tmp_path / "bad", 0, 4, 2, fill="stripes")


def test_scenes_hold_at_most_the_objects_asked_for(tmp_path: Path) -> None:
    import json

    root = make_dataset("coco", tmp_path / "coco", 0, 12, 4, objects=(1, 2))
    annotations = json.loads((root / "annotations" / "instances_train2017.json").read_text())["annotations"]
    per_image: dict[int, int] = {}
    for a in annotations:
        per_image[a["image_id"]] = per_image.get(a["image_id"], 0) + 1
    assert max(per_image.values()) <= 2
    with pytest.raises(UserError, match="objects="):
        make_dataset("coco", tmp_path / "bad", 0, 4, 4, objects=(0, 2))
    with pytest.raises(UserError, match="kind= is for imagefolder"):
        make_dataset("coco", tmp_path / "bad", 0, 4, 4, kind="objects")


def test_redirect_output_sends_python_and_c_output_to_the_log(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    log = tmp_path / "stage" / "console.log"
    with redirect_output(log):
        print("from python")
        print("to stderr", file=sys.stderr)
        os.write(1, b"from a file descriptor\n")
    print("after")
    captured = capfd.readouterr()
    assert captured.out == "after\n" and captured.err == ""
    assert log.read_text().splitlines() == ["from python", "to stderr", "from a file descriptor"]


def test_chance_levels(demo_data: Path) -> None:
    chance = chance_levels({"imagefolder": demo_data / "imagefolder", "cityscapes": demo_data / "cityscapes"},
                           ("linear", "voc", "cityscapes"))
    assert chance["linear"] == {"top1": 20.0, "knn_top1": 20.0} and chance["voc"]["AP50"] == 0.0
    assert 0 < chance["cityscapes"]["mIoU"] < 100 / 2  # the majority class's share over at least two classes
