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
        make_dataset("imagefolder", tmp_path / "bad", 0, 4, 2, fill="pattern")
    with pytest.raises(UserError, match="fill"):
        make_dataset("voc", tmp_path / "bad", 0, 4, 2, fill="stripes")
    with pytest.raises(UserError, match="cityscapes fill"):
        make_dataset("cityscapes", tmp_path / "bad", 0, 4, 2, fill="solid")


def test_street_scenes_can_draw_some_classes_with_the_object_patterns(tmp_path: Path) -> None:
    import json

    from transfer.data.cityscapes import check_cityscapes
    from transfer.data.scenes import CS_ID, STREET_PATTERNS, render_street

    plain = make_dataset("cityscapes", tmp_path / "plain", 0, 3, 2)
    pattern = make_dataset("cityscapes", tmp_path / "pattern", 0, 3, 2, fill="pattern")
    check_cityscapes(pattern)
    assert "fill" not in json.loads((plain / "generated.json").read_text())  # the default: old folders still match
    assert json.loads((pattern / "generated.json").read_text())["fill"] == "pattern"
    img, labels, _ = render_street(np.random.default_rng(1), 256, 128, fill="pattern")
    # a pattern class is two colours far apart (its pattern), not one texture around one colour
    for name in ("sidewalk", "building"):
        pixels = img[labels == CS_ID[name]].astype(float)
        assert len(pixels) > 100, name
        dark = pixels.sum(1) < np.median(pixels.sum(1))
        assert np.abs(pixels[dark].mean(0) - pixels[~dark].mean(0)).sum() > 100, name
    assert set(STREET_PATTERNS) <= set(CS_ID)
    with pytest.raises(ValueError, match="street fill"):
        render_street(np.random.default_rng(1), 64, 32, fill="solid")


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


def test_scene_objects_can_be_drawn_larger(tmp_path: Path) -> None:
    import json

    def box_sides(root: Path) -> list[float]:
        annotations = json.loads((root / "annotations" / "instances_train2017.json").read_text())["annotations"]
        return [max(a["bbox"][2], a["bbox"][3]) for a in annotations]

    small = box_sides(make_dataset("coco", tmp_path / "small", 0, 16, 8, objects=(1, 1)))
    large_root = make_dataset("coco", tmp_path / "large", 0, 16, 8, objects=(1, 1), object_scale=(0.3, 0.4))
    large = box_sides(large_root)
    assert json.loads((large_root / "generated.json").read_text())["object_scale"] == [0.3, 0.4]
    # a radius of 0.3-0.4 of the 240 px side (the default: 0.08-0.3), whatever the shape, aspect and image border
    assert min(large) > 60 and np.median(large) > 1.5 * np.median(small)
    with pytest.raises(UserError, match="object_scale="):
        make_dataset("voc", tmp_path / "bad", 0, 4, 4, object_scale=(0.4, 0.3))
    with pytest.raises(UserError, match="object_scale= for voc and coco"):
        make_dataset("cityscapes", tmp_path / "bad", 0, 4, 4, object_scale=(0.1, 0.3))


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


def test_a_column_no_row_separates_in_carries_its_measured_reason(tmp_path: Path) -> None:
    import json

    from transfer.demo import separation_lines
    from transfer.demo_report import separation, short_reasons
    from transfer.report.markdown import chance_lines
    from transfer.report.runs import TransferTable

    def metrics(name: str, figures: dict[str, float]) -> str:
        path = tmp_path / name / "metrics.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"metrics": figures}))
        return str(path.relative_to(tmp_path))

    rows = [{"name": "ssa", "metrics": {"voc": metrics("ssa_voc", {"AP50": 1.0}),
                                        "coco": metrics("ssa_coco", {"bbox_AP50": 9.0})}},
            {"name": "random", "metrics": {"voc": metrics("r_voc", {"AP50": 0.5, "AP50_std": 0.1}),
                                           "coco": metrics("r_coco", {"bbox_AP50": 0.5, "bbox_AP50_std": 0.1})}}]
    voc, coco = separation(tmp_path, rows, {"voc": {"AP50": 0.0}, "coco": {"bbox_AP50": 0.0}})["quantities"]
    # VOC: a row falls short of +5, so the column says why; COCO: every row (SSA, +8.5) reaches it: nothing
    assert not voc["rows"][0]["meets"] and voc["short_reason"] == short_reasons("demo")["voc"]
    assert coco["rows"][0]["meets"] and "short_reason" not in coco
    assert any(line.startswith("  why VOC AP50 does not separate") for line in separation_lines({"quantities": [voc]}))
    table = TransferTable(path=tmp_path, name="demo", command=None, date=None, machine=None, budget={},
                          procedural=True, data=None, rows=[], separation={"quantities": [voc, coco]})
    text = "\n".join(chance_lines(table))
    assert "Why a column falls short of the bar (measured):" in text and f"- VOC AP50: {short_reasons('demo')['voc']}." in text
    assert "- COCO box AP50:" not in text


def test_transfer_benchmark_refuses_a_bad_plan_in_one_line_and_archives_whole(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    bench = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_transfer.py"
    done = subprocess.run([sys.executable, str(bench), "--work-dir", str(tmp_path / "w"), "--archive",
                           str(tmp_path / "a"), "det_scale_max=0.7"], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0 and "det_scale_max" in done.stderr
    assert not (tmp_path / "a").exists()  # refused before any work: nothing archived

    sys.path.insert(0, str(bench.parent))
    from bench_transfer import archive

    work = tmp_path / "w"
    (work / "runs" / "random" / "voc").mkdir(parents=True)
    (work / "runs" / "random" / "voc" / "metrics.json").write_text('{"metrics": {"AP50": 1.0}}')
    (work / "transfer.json").write_text(json.dumps({"rows": [{"name": "random",
                                                             "metrics": {"voc": "runs/random/voc/metrics.json"}}]}))
    (tmp_path / "a" / "stale").mkdir(parents=True)
    index = json.loads(archive(work, "transfer.json", tmp_path / "a", "python bench").read_text())
    assert index["command"] == "python bench" and not (tmp_path / "a" / "stale").exists()  # replaced whole
    assert (tmp_path / "a" / "runs" / "random" / "voc" / "metrics.json").read_text() == '{"metrics": {"AP50": 1.0}}'
    assert {p.name for p in tmp_path.iterdir()} == {"w", "a"}  # no temporary folder left beside the archive
