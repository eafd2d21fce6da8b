"""The dataset checks catch annotation files of the wrong shape and unreadable images, naming file, line or id;
a bad image met during a run stops it with the file's name; interrupted writes leave nothing behind."""
from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from transfer.data import BadImageError, DatasetError, check_dataset, guard_image_folder, image_loader, read_rgb
from transfer.data.images import scan_images
from transfer.errors import UserError
from transfer.fileio import atomic_path, remove_stale_temporaries, temporary_folder_beside


def broken_png(path: Path, size: int = 48) -> Path:
    """A PNG whose header and end marker are intact but whose pixel data is not: only a full decode finds it."""
    img = (np.random.default_rng(0).random((size, size, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    start = data.index(b"IDAT") + 200
    data[start:start + 60] = bytes(60)
    path.write_bytes(bytes(data))
    return path


def truncate(path: Path, keep: float = 0.6) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])
    return path


def problems_of(fmt: str, root: Path, **kwargs) -> list[str]:
    with pytest.raises(DatasetError) as info:
        check_dataset(fmt, root, **kwargs)
    return [str(p) for p in info.value.problems]


# ---- annotation files of the wrong shape ----

def _edit_json(path: Path, edit) -> dict:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return data


def test_coco_top_level_list(copy_of):
    root = copy_of("coco")
    path = root / "annotations/instances_val2017.json"
    path.write_text(json.dumps(json.loads(path.read_text())["images"]))
    (problem,) = problems_of("coco", root)
    assert problem == f"{path}:1: the top level is a list; expected an object with keys images, annotations, categories"


def test_coco_missing_categories(copy_of):
    root = copy_of("coco")
    path = root / "annotations/instances_train2017.json"
    _edit_json(path, lambda d: d.pop("categories"))
    (problem,) = problems_of("coco", root)
    assert problem.startswith(f"{path}: no list under 'categories'; expected keys images, annotations, categories")


def test_coco_annotation_with_unknown_image_and_category(copy_of):
    root = copy_of("coco")
    path = root / "annotations/instances_val2017.json"

    def edit(d):
        d["annotations"][0]["image_id"] = 424242
        d["annotations"][1]["category_id"] = 12  # 12 is one of the ids real COCO skips
    data = _edit_json(path, edit)
    first, second = problems_of("coco", root)
    assert first == (f"{path}: annotation id {data['annotations'][0]['id']}: image_id 424242 is not in images; "
                     "expected the id of an entry of images")
    assert second.startswith(f"{path}: annotation id {data['annotations'][1]['id']}: category_id 12 is not in "
                             "categories")


def test_coco_polygon_with_odd_coordinates(copy_of):
    root = copy_of("coco")
    path = root / "annotations/instances_val2017.json"
    data = _edit_json(path, lambda d: d["annotations"][2].update(segmentation=[[1.0, 2.0, 30.0, 40.0, 5.0]]))
    (problem,) = problems_of("coco", root)
    assert problem == (f"{path}: annotation id {data['annotations'][2]['id']}: polygon 0 has 5 coordinates; "
                       "expected an even number (x, y pairs)")


def test_coco_polygon_with_two_points_is_a_warning(copy_of, capsys):
    """Real COCO has a few polygons of < 3 points, which the engines drop: reported, not refused."""
    root = copy_of("coco")
    path = root / "annotations/instances_val2017.json"
    data = _edit_json(path, lambda d: d["annotations"][2].update(segmentation=[[1.0, 2.0, 30.0, 40.0]]))
    check_dataset("coco", root)
    err = capsys.readouterr().err
    assert f"warning: {path}: 1 polygon(s) with fewer than 3 points (annotation id {data['annotations'][2]['id']})" in err


def test_coco_image_id_listed_twice_is_refused_in_one_line_naming_the_id(copy_of):
    root = copy_of("coco")
    path = root / "annotations/instances_val2017.json"
    data = _edit_json(path, lambda d: d["images"].append(dict(d["images"][0])))
    first = data["images"][0]
    with pytest.raises(DatasetError) as info:
        check_dataset("coco", root)
    assert str(info.value) == (f"COCO dataset at {root}: {path}: images[{len(data['images']) - 1}]: image id "
                               f"{first['id']} is listed twice (also for {first['file_name']!r}); expected each "
                               "image once, under an id of its own")


def test_voc_split_file_without_an_image_is_refused_in_one_line_naming_the_file(copy_of):
    root = copy_of("voc")
    listing = root / "VOC2012/ImageSets/Main/trainval.txt"
    listing.write_text("\n  \n")
    with pytest.raises(DatasetError) as info:
        check_dataset("voc", root)
    assert str(info.value) == (f"VOC dataset at {root}: {listing}: lists no image; expected the ids of the VOC2012 "
                               "trainval images, one a line")


def test_voc_xml_without_size(copy_of):
    root = copy_of("voc")
    xml = sorted((root / "VOC2007/Annotations").glob("*.xml"))[0]
    text = xml.read_text()
    xml.write_text(text[:text.index("\t<size>")] + text[text.index("</size>") + len("</size>\n"):])
    (problem,) = problems_of("voc", root)
    assert problem.startswith(f"{xml}:1: no <size> with integer <width> and <height>; expected the image size")


# ---- unreadable images ----

def test_truncated_cityscapes_val_image_is_found_by_the_default_check(copy_of):
    root = copy_of("cityscapes")
    victim = truncate(sorted((root / "leftImg8bit/val").glob("*/*.png"))[3])
    (problem,) = problems_of("cityscapes", root)
    assert problem.startswith(f"{victim}: unreadable image: OSError: image file is truncated")


def test_not_an_image_in_imagefolder(copy_of):
    root = copy_of("imagefolder")
    victim = sorted((root / "train/star").iterdir())[0]
    victim.write_text("<html>404 not found</html>\n")
    (problem,) = problems_of("imagefolder", root)
    assert problem == f"{victim}: unreadable image: not an image (PIL does not recognise its header)"


def test_empty_and_truncated_jpeg_in_coco_and_voc(copy_of):
    coco = copy_of("coco")
    empty = sorted((coco / "train2017").iterdir())[0]
    empty.write_bytes(b"")
    (problem,) = problems_of("coco", coco)
    assert problem == f"{empty}: unreadable image: empty file (0 bytes)"
    voc = copy_of("voc")
    victim = truncate(sorted((voc / "VOC2012/JPEGImages").iterdir())[1])
    (problem,) = problems_of("voc", voc)
    assert problem.startswith(f"{victim}: unreadable image: OSError: image file is truncated")


def test_damaged_pixels_need_the_full_decode(copy_of):
    root = copy_of("imagefolder")
    victim = broken_png(sorted((root / "val/cross").iterdir())[0])
    check_dataset("imagefolder", root)  # header and end marker are fine: the fast check passes
    (problem,) = problems_of("imagefolder", root, decode_images=True)
    assert problem.startswith(f"{victim}: unreadable image: OSError: broken data stream")


def test_bytes_after_the_jpeg_end_are_not_an_error(tmp_path):
    path = tmp_path / "a.jpg"
    Image.new("RGB", (40, 30), (10, 200, 30)).save(path)
    path.write_bytes(path.read_bytes() + b"trailing camera data" * 10)
    (info,) = scan_images([path])
    assert info.problem is None and info.size == (40, 30)


def test_scan_keeps_order_over_threads(tmp_path):
    paths = []
    for i in range(50):
        paths.append(tmp_path / f"{i}.png")
        Image.new("L", (i + 1, 3)).save(paths[-1])
    truncate(paths[17])
    infos = scan_images(paths, workers=4)
    assert [i.path for i in infos] == paths
    assert [i.size[0] if i.size else None for i in infos] == [i + 1 if i != 17 else None for i in range(50)]


def test_dataset_error_with_one_problem_is_one_line(copy_of):
    root = copy_of("imagefolder")
    victim = sorted((root / "val/star").iterdir())[0]
    victim.write_bytes(b"\x00" * 10)
    with pytest.raises(DatasetError) as info:
        check_dataset("imagefolder", root)
    assert "\n" not in str(info.value) and str(victim) in str(info.value)


# ---- a bad image met during a run ----

def _zeros(image: Image.Image) -> torch.Tensor:
    return torch.zeros(1)


def test_bad_image_in_a_dataloader_worker_is_one_line_naming_the_file(copy_of):
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder

    root = copy_of("imagefolder")
    victim = broken_png(sorted((root / "train/ellipse").iterdir())[0])
    hint = "python tools/check_dataset.py imagefolder X --check-images"
    wrapped = guard_image_folder(ImageFolder(str(root / "train"), transform=_zeros), hint=hint)
    with_loader = ImageFolder(str(root / "train"), transform=_zeros, loader=image_loader(hint))
    for dataset, workers in ((wrapped, 0), (wrapped, 1), (with_loader, 1)):
        with pytest.raises(BadImageError) as info:
            for _ in DataLoader(dataset, batch_size=4, num_workers=workers):
                pass
        message = str(info.value)
        assert "\n" not in message and "Traceback" not in message
        assert message.startswith(f"cannot read image {victim} (OSError: broken data stream")
        assert "tools/check_dataset.py imagefolder X --check-images" in message


def test_read_rgb_names_the_file(tmp_path):
    path = tmp_path / "x.jpg"
    path.write_text("not an image")
    with pytest.raises(BadImageError, match=f"cannot read image {path} \\(UnidentifiedImageError: not an image\\)"):
        read_rgb(path)
    Image.new("L", (4, 4)).save(path, format="PNG")
    assert read_rgb(path).mode == "RGB"


def test_mmcv_pipeline_names_a_file_opencv_cannot_decode(tmp_path):
    pytest.importorskip("mmcv")
    from mmengine.config import Config
    from mmengine.dataset import Compose

    from transfer.data.mm_loading import GUARD, guard_pipelines

    cfg = Config(dict(train_dataloader=dict(dataset=dict(type="RepeatDataset", times=2, dataset=dict(
        pipeline=[dict(type="LoadImageFromFile"), dict(type="PackInputs")]))),
        val_dataloader=dict(dataset=dict(pipeline=[dict(type="LoadImageFromFile")]))))
    assert guard_pipelines(cfg, hint="the check") == 2 and guard_pipelines(cfg) == 0  # wrapping twice: no-op
    assert cfg.train_dataloader.dataset.dataset.pipeline[0]["type"] == GUARD
    pipeline = Compose(cfg.val_dataloader.dataset.pipeline)
    good = tmp_path / "good.png"
    Image.new("RGB", (8, 6)).save(good)
    assert pipeline(dict(img_path=str(good)))["img"].shape == (6, 8, 3)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 garbage")
    with pytest.raises(BadImageError) as info:
        pipeline(dict(img_path=str(bad)))
    assert str(info.value) == (f"cannot read image {bad} (AssertionError: failed to load image); "
                               "find every unreadable image with: the check")


def test_detectron2_style_mapper_names_the_file(tmp_path):
    from transfer.data import guard_mapper

    def mapper(record: dict) -> tuple:  # detectron2's DatasetMapper reads the image with PIL (utils.read_image)
        with Image.open(record["file_name"]) as im:
            im.load()
            return im.size
    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    Image.new("RGB", (5, 4)).save(good)
    truncate(broken_png(bad), 0.9)
    guarded = guard_mapper(mapper, hint="the check")
    assert guarded({"file_name": str(good)}) == (5, 4)
    with pytest.raises(BadImageError, match=f"^cannot read image {bad} \\(OSError: .*the check$"):
        guarded({"file_name": str(bad)})


# ---- checkpoint integrity ----

def test_flipped_byte_inside_a_tensor_is_refused(tmp_path):
    from transfer.checkpoint.reading import read_checkpoint, verify_archive

    path = tmp_path / "w.pth"
    torch.save({"weight": torch.arange(4096, dtype=torch.float32)}, path)
    read_checkpoint(path)
    with zipfile.ZipFile(path) as z:
        info = next(i for i in z.infolist() if "/data/" in i.filename)
    data = bytearray(path.read_bytes())
    with open(path, "rb") as f:  # the entry's data begins after its 30-byte local header, name and extra field
        f.seek(info.header_offset + 26)
        name_len, extra_len = (int.from_bytes(f.read(2), "little") for _ in range(2))
    at = info.header_offset + 30 + name_len + extra_len + 1000
    data[at] ^= 0x40
    path.write_bytes(bytes(data))
    assert not torch.equal(torch.load(path, weights_only=True)["weight"], torch.arange(4096.0))  # torch loads it
    with pytest.raises(UserError, match=f"{path} is corrupt: entry .*/data/0 does not match its CRC-32"):
        verify_archive(path)
    with pytest.raises(UserError, match="CRC-32"):
        read_checkpoint(path)


# ---- interrupted writes ----

def test_outputs_get_the_usual_mode(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "out.json") as tmp:
            tmp.write_text("{}")
        folder = temporary_folder_beside(tmp_path / "data")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.json").stat().st_mode) == 0o644
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temporaries_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    from transfer.fileio import _HOST

    dead = tmp_path / f".ckpt.pth.{_HOST}.{_dead_pid()}.abcd1234.tmp"
    live = tmp_path / f".ckpt.pth.{_HOST}.{os.getppid()}.abcd1234.tmp"
    other = tmp_path / ".keep.me.tmp"  # not one of ours
    folder = tmp_path / f".data.{_HOST}.{_dead_pid()}.zz99zz99.tmp"
    for f in (dead, live, other):
        f.write_bytes(b"x" * 100)
    (folder / "sub").mkdir(parents=True)
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted([dead, folder])
    assert live.exists() and other.exists() and not dead.exists() and not folder.exists()


def test_kill_9_during_a_write_leaves_nothing_after_the_next_run(tmp_path):
    script = ("import sys, time\nfrom transfer.fileio import atomic_path\n"
              "with atomic_path(sys.argv[1]) as tmp:\n"
              "    tmp.write_bytes(b'x' * 1000)\n    print('writing', flush=True)\n    time.sleep(60)\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "out.bin")], stdout=subprocess.PIPE,
                            env=env)
    assert proc.stdout.readline() == b"writing\n"
    proc.kill()
    proc.wait()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.bin.")]  # the killed write's file
    with atomic_path(tmp_path / "out.bin") as tmp:
        tmp.write_bytes(b"done")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_coco_box_of_zero_height_passes_as_in_real_coco(copy_of):
    """Real train2017 holds a box of height 0 (annotation 918); mmdet and detectron2 skip it, the check must not stop."""
    root = copy_of("coco")
    path = root / "annotations/instances_val2017.json"
    _edit_json(path, lambda d: d["annotations"][0].update(bbox=[10.0, 20.0, 1.03, 0.0], area=0.0))
    check_dataset("coco", root)
    _edit_json(path, lambda d: d["annotations"][0].update(bbox=[10.0, 20.0, 5.0, -2.0]))
    (problem,) = problems_of("coco", root)
    assert "bbox [10.0, 20.0, 5.0, -2.0] lies outside image" in problem


def test_mmseg_label_map_that_does_not_decode_is_named(tmp_path):
    pytest.importorskip("mmseg")
    import mmseg.datasets  # noqa: F401 -- registers mmseg's transforms
    from mmengine.config import Config
    from mmengine.dataset import Compose
    from mmengine.registry import DefaultScope

    from transfer.data.mm_loading import guard_pipelines

    cfg = Config(dict(default_scope="mmseg", test_dataloader=dict(dataset=dict(
        pipeline=[dict(type="LoadImageFromFile"), dict(type="LoadAnnotations"), dict(type="PackSegInputs")]))))
    assert guard_pipelines(cfg, hint="the check") == 2
    with DefaultScope.overwrite_default_scope("mmseg"):
        pipeline = Compose(cfg.test_dataloader.dataset.pipeline)
    image, label = tmp_path / "x_leftImg8bit.png", broken_png(tmp_path / "x_gtFine_labelTrainIds.png")
    Image.new("RGB", (48, 48)).save(image)
    with pytest.raises(BadImageError) as info:
        pipeline(dict(img_path=str(image), seg_map_path=str(label), reduce_zero_label=False, seg_fields=[]))
    assert str(info.value).startswith(f"cannot read image {label} (")
