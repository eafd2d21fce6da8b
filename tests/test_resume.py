"""Resume means the same result: a run killed with SIGKILL and started again ends, on the CPU, with the very
weights and metrics of an uninterrupted run (one test per engine: mmdet, mmseg, the linear probe, detectron2)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
KILLED_RUN = REPO / "tests" / "killed_run.py"


def run_task(*argv: str, kill_at: int | None = None) -> subprocess.CompletedProcess:
    """`tools/run_transfer.sh argv...` in a child process, SIGKILLed after iteration `kill_at` when given."""
    cmd = [sys.executable, str(KILLED_RUN), *(["--kill-at", str(kill_at)] if kill_at else []), "--", *argv]
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def assert_same_tensors(a: dict, b: dict, what: str) -> None:
    """Every tensor of `a` equals (bit for bit) the one of the same name in `b`."""
    assert a.keys() == b.keys(), what
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"{what}: {len(differ)} of {len(a)} tensors differ, e.g. {differ[:3]}"


def killed_and_resumed(tmp_path: Path, task: str, argv: list[str], kill_at: int, last_saved: str) -> tuple[Path, Path]:
    """Run `task` uninterrupted in one work dir, and killed after iteration `kill_at` then started again in another;
    returns both work dirs. `last_saved` is the file the killed run must have left (its resume point)."""
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    done = run_task(task, "--work-dir", str(whole), *argv)
    assert done.returncode == 0, done.stderr[-3000:]
    killed = run_task(task, "--work-dir", str(resumed), *argv, kill_at=kill_at)
    assert killed.returncode == -9, killed.stderr[-3000:]  # killed, not finished or failed
    assert (resumed / last_saved).is_file() and not (resumed / "metrics.json").exists()
    again = run_task(task, "--work-dir", str(resumed), *argv)
    assert again.returncode == 0, again.stderr[-3000:]
    metrics = [json.loads((d / "metrics.json").read_text())["metrics"] for d in (whole, resumed)]
    assert metrics[0] == metrics[1]
    return whole, resumed


def mmengine_weights(work_dir: Path, iteration: int) -> dict[str, torch.Tensor]:
    return torch.load(work_dir / f"iter_{iteration}.pth", map_location="cpu", weights_only=False)["state_dict"]


def test_mmdet_voc_killed_and_resumed_ends_as_uninterrupted(demo_data: Path, tmp_path: Path) -> None:
    """VOC on mmdet, data loaded in the main process: killed after iteration 5, resumed from iteration 4."""
    from detection_helpers import MMDET_SMALL

    argv = ["--data", str(demo_data), "--gpus", "0", "--max-iters", "6", "--input-size", "96", *MMDET_SMALL,
            "model.backbone.depth=18", "default_hooks.checkpoint.interval=2",
            "custom_hooks=[{'type': 'PreciseBNHook', 'num_iters': 1}]"]
    whole, resumed = killed_and_resumed(tmp_path, "voc", argv, kill_at=5, last_saved="iter_4.pth")
    assert "resumed epoch: 0, iter: 4" in "".join(p.read_text() for p in resumed.glob("*/*.log"))
    assert_same_tensors(mmengine_weights(whole, 6), mmengine_weights(resumed, 6), "final mmdet weights")


def test_mmseg_cityscapes_killed_and_resumed_ends_as_uninterrupted(demo_data: Path, tmp_path: Path) -> None:
    """Cityscapes on mmseg, with its two persistent loader workers: killed after iteration 3, resumed from 2."""
    argv = ["--data", str(demo_data), "--gpus", "0", "--max-iters", "4", "--input-size", "64", "protocol_gpus=1",
            "train_dataloader.batch_size=2", "val_cfg=None", "val_dataloader=None", "val_evaluator=None",
            "model.backbone.depth=18", "default_hooks.checkpoint.interval=2"]
    whole, resumed = killed_and_resumed(tmp_path, "cityscapes", argv, kill_at=3, last_saved="iter_2.pth")
    assert_same_tensors(mmengine_weights(whole, 4), mmengine_weights(resumed, 4), "final mmseg weights")


def test_linear_probe_killed_and_resumed_ends_as_uninterrupted(demo_data: Path, tmp_path: Path) -> None:
    """The linear probe with augmentation (no precomputed features): killed after its first epoch's state file."""
    from transfer.classification.linear import STATE_FILE

    argv = ["--data", str(demo_data), "--gpus", "0", "--max-iters", "6", "--input-size", "32", "model.arch=resnet18",
            "linear.workers=0", "linear.batch_size=8", "knn.enabled=false"]
    whole, resumed = killed_and_resumed(tmp_path, "linear", argv, kill_at=1, last_saved=STATE_FILE)
    fc = [torch.load(d / STATE_FILE, map_location="cpu", weights_only=True)["fc"] for d in (whole, resumed)]
    assert_same_tensors(fc[0], fc[1], "final linear probe")


def test_detectron2_voc_killed_and_resumed_ends_as_uninterrupted(demo_data: Path, tmp_path: Path) -> None:
    """VOC on detectron2: killed after iteration 3, resumed from its iteration-2 checkpoint (model_0000001.pth)."""
    pytest.importorskip("detectron2")
    from detection_helpers import DETECTRON2_SMALL

    argv = ["--backend", "detectron2", "--data", str(demo_data), "--gpus", "0", "--max-iters", "4",
            "--input-size", "96", *DETECTRON2_SMALL, "MODEL.RESNETS.DEPTH=18", "SOLVER.CHECKPOINT_PERIOD=2",
            "TEST.PRECISE_BN.NUM_ITER=1"]
    whole, resumed = killed_and_resumed(tmp_path, "voc", argv, kill_at=3,
                                        last_saved="detectron2/model_0000001.pth")
    final = [torch.load(d / "detectron2" / "model_final.pth", map_location="cpu", weights_only=False)["model"]
             for d in (whole, resumed)]
    assert_same_tensors(final[0], final[1], "final detectron2 weights")


def test_resumable_loader_skips_what_was_trained_and_restores_the_generators() -> None:
    """detectron2's train-loader wrapper, without detectron2: a checkpoint taken after 3 batches, loaded by a fresh
    run, goes on with the batches and the draws of the uninterrupted run."""
    from torch.utils.data import DataLoader, IterableDataset

    from transfer.detection.detectron2_resume import ResumableLoader

    class Augmented(IterableDataset):
        """An endless stream (as detectron2's) whose every sample draws from the torch generator."""

        def __iter__(self):  # noqa: ANN204
            while True:
                yield torch.rand(2)

    def train(steps: int, resume_from: dict | None = None) -> tuple[list[torch.Tensor], dict | None]:
        torch.manual_seed(0)  # what default_setup does in every run
        loader = ResumableLoader(DataLoader(Augmented(), batch_size=2), num_workers=0)
        if resume_from is not None:
            loader.load_state_dict(resume_from)
        seen, saved = [], None
        batches = iter(loader)
        for step in range(loader.batches, steps):
            seen.append(torch.cat([next(batches).flatten(), torch.rand(1)]))  # a batch, and the model's own draw
            if step == 2:
                saved = loader.state_dict()
        return seen, saved

    whole, checkpoint = train(6)
    assert checkpoint is not None and checkpoint["batches"] == 3
    resumed, _ = train(6, resume_from=checkpoint)
    assert len(resumed) == 3 and all(torch.equal(a, b) for a, b in zip(whole[3:], resumed))
