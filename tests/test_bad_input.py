"""Bad input at the command line: exit code 2, one line `error: ...` naming the file, no traceback, nothing
half-written left behind (issue 14: broken data, damaged checkpoints, bad --out)."""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import torch

from conftest import run_tool
from test_data_checks import broken_png, truncate

FAST = ["data.image_size=32", "data.workers=1", "train.batch_size=4", "model.queue_size=16", "aggregation.queue_size=16",
        "model.head_hidden=64", "train.log_every=1"]


def the_error(run: subprocess.CompletedProcess) -> str:
    """The one `error:` line of a failed run, after checking exit code 2 and no traceback."""
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr + run.stdout, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], run.stderr
    return errors[0]


def test_coco_annotations_that_are_a_list(copy_of):
    root = copy_of("coco")
    path = root / "annotations/instances_train2017.json"
    path.write_text("[\n" + path.read_text() + "\n]\n")
    error = the_error(run_tool("check_dataset.py", "coco", str(root)))
    assert error == (f"error: COCO dataset at {root}: {path}:1: the top level is a list; "
                     "expected an object with keys images, annotations, categories")


def test_truncated_cityscapes_val_image_stops_the_run_before_training(copy_of, tmp_path):
    root = copy_of("cityscapes")
    victim = truncate(sorted((root / "leftImg8bit/val").glob("*/*.png"))[-1])
    work_dir = tmp_path / "work"
    error = the_error(run_tool("run_transfer.py", "cityscapes", "--data", str(root), "--work-dir",
                               str(work_dir), "--gpus", "0", "--max-iters", "2"))
    assert error.startswith(f"error: Cityscapes dataset at {root}: {victim}: unreadable image: OSError: image file "
                            "is truncated")
    assert not work_dir.exists()  # refused before anything was written


def test_not_an_image_stops_pretraining_before_any_step(copy_of, tmp_path):
    root = copy_of("imagefolder")
    victim = sorted((root / "train/cross").iterdir())[1]
    victim.write_bytes(b"GIF89a? no, just some bytes")
    work_dir = tmp_path / "work"
    error = the_error(run_tool("pretrain.py", "--method", "moco_v2", "--data", str(root), "--work-dir",
                               str(work_dir), "--max-steps", "2", *FAST))
    assert error == (f"error: ImageFolder dataset at {root}: {victim}: unreadable image: "
                     "not an image (PIL does not recognise its header)")
    assert not [p for p in work_dir.rglob("*") if p.is_file()]


def test_bad_pixels_met_in_pretraining_stop_it_naming_the_file_and_keep_the_checkpoint(copy_of, tmp_path):
    """An image only a full decode finds passes the default check and is met at step 3 (in a loader worker)."""
    from torchvision.datasets import ImageFolder

    from transfer.pretrain import checkpoint as ckpt
    from transfer.pretrain.data import ResumableSampler

    root = copy_of("imagefolder")
    sampler = ResumableSampler(16, 4, seed=0)
    order = [index for index, _ in sampler]
    victim = Path(ImageFolder(str(root / "train")).samples[order[9]][0])  # the 2nd image of the 3rd batch
    broken_png(victim, size=64)
    work_dir = tmp_path / "work"
    error = the_error(run_tool("pretrain.py", "--method", "moco_v2", "--data", str(root), "--work-dir",
                               str(work_dir), "--max-steps", "8", "--save-every", "1", "--seed", "0", *FAST))
    assert error.startswith(f"error: cannot read image {victim} (OSError: broken data stream")
    assert f"tools/check_dataset.py imagefolder {root} --check-images" in error
    assert ckpt.load_checkpoint(work_dir / ckpt.LAST)["pretrain"]["step"] == 2  # the last checkpoint is kept
    assert not [p for p in work_dir.iterdir() if p.name.startswith(".")]
    # and the full decode finds it before any compute
    error = the_error(run_tool("check_dataset.py", "imagefolder", str(root), "--check-images"))
    assert error.startswith(f"error: ImageFolder dataset at {root}: {victim}: unreadable image: OSError")


def test_make_demo_data_onto_an_existing_file(tmp_path):
    out = tmp_path / "taken"
    out.write_text("mine\n")
    error = the_error(run_tool("make_demo_data.py", "--out", str(out), "--num-images", "2"))
    assert error == f"error: --out {out} is a file; expected a folder (it is created if missing)"
    error = the_error(run_tool("make_demo_data.py", "--out", str(out / "sub"), "--num-images", "2"))
    assert error == f"error: --out {out / 'sub'} lies under {out}, which is a file; expected a folder " \
                    "(it is created if missing)"
    assert out.read_text() == "mine\n" and sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_checkpoint_damaged_inside_a_tensor_is_refused_by_the_converter(tmp_path):
    import torchvision

    src = tmp_path / "r18.pth"
    torch.save({"state_dict": torchvision.models.resnet18().state_dict()}, src)
    with zipfile.ZipFile(src) as z:
        entry = max(z.infolist(), key=lambda i: i.file_size)  # the largest tensor
    data = bytearray(src.read_bytes())
    data[entry.header_offset + 4096] ^= 0x01  # one bit inside its data
    src.write_bytes(bytes(data))
    dst = tmp_path / "out" / "r18_mmlab.pth"
    error = the_error(run_tool("convert_ckpt.py", str(src), str(dst), "--to", "mmlab"))
    assert error == (f"error: {src} is corrupt: entry {entry.filename} does not match its CRC-32 checksum "
                     "(damaged bytes); copy or download it again")
    assert not dst.exists() and not (dst.parent.exists() and any(dst.parent.iterdir()))


def test_a_conversion_removes_what_a_killed_one_left_and_writes_mode_0644(tmp_path):
    import stat
    import torchvision

    from transfer.fileio import _HOST

    src = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), src)
    out = tmp_path / "out"
    out.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    left = out / f".r18_tv.pth.{_HOST}.{gone.pid}.k9k9k9k9.tmp.pth"  # what `kill -9` of a conversion leaves
    left.write_bytes(b"\0" * 4096)
    old = os.umask(0o022)
    try:
        run = run_tool("convert_ckpt.py", str(src), str(out / "r18_tv.pth"), "--to", "torchvision")
    finally:
        os.umask(old)
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in out.iterdir()) == ["r18_tv.pth"]
    assert stat.S_IMODE((out / "r18_tv.pth").stat().st_mode) == 0o644


def test_check_dataset_lists_every_unreadable_image(copy_of):
    """More problems than an error message shows (20): the message says how many more, stdout lists them all."""
    root = copy_of("imagefolder")
    victims = sorted(root.rglob("*.png"))[:21]
    for v in victims:
        v.write_bytes(b"")
    run = run_tool("check_dataset.py", "imagefolder", str(root))
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.startswith(f"error: ImageFolder dataset at {root} has 21 problems:\n")
    assert len(run.stderr.splitlines()) == 1 + 20 + 1 and "... and 1 more" in run.stderr
    assert run.stdout.splitlines() == [f"{v}: unreadable image: empty file (0 bytes)" for v in victims]
