"""Each engine's fine-tuning starts from the given weights: at iteration 0 every backbone tensor is the checkpoint's.

The demo's margins over random init mean something only if the pretrained weights
reach the model that trains: a path that dropped them, or an engine that
re-initialised a layer after loading, would train a random init and leave the
table unchanged. Each test runs the task through `run_transfer` (as the demo and
`tools/run_transfer.sh` do) with a checkpoint whose every tensor (BN statistics too)
is noise no initialiser makes, and compares the model at the first training
iteration with it.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from transfer.cli import run_transfer

SMALL = [f"{loader}.{key}" for loader in ("train_dataloader", "test_dataloader")
         for key in ("num_workers=0", "persistent_workers=False")]


@pytest.fixture(scope="module")
def noisy_r18(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A ResNet-18 backbone (torchvision names, OpenMMLab `state_dict`) with every float tensor set to noise."""
    gen = torch.Generator().manual_seed(123)
    state = {}
    for key, value in torchvision.models.resnet18().state_dict().items():
        if key.startswith("fc.") or key.endswith("num_batches_tracked"):
            continue
        noise = torch.randn(value.shape, generator=gen) * 0.05
        state[key] = noise.abs() + 0.5 if key.endswith("running_var") else noise
    path = tmp_path_factory.mktemp("weights") / "noisy_r18.pth"
    torch.save({"state_dict": state}, path)
    return path, state


def model_at_first_iteration(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, torch.Tensor]]:
    """Patch mmengine's Runner so that the model's state dict is copied at the first `before_train_iter`."""
    from mmengine.runner import Runner

    seen: dict[str, dict[str, torch.Tensor]] = {}
    call_hook = Runner.call_hook

    def spy(self, fn_name: str, **kwargs):
        if fn_name == "before_train_iter" and "state" not in seen:
            model = self.model.module if hasattr(self.model, "module") else self.model
            seen["state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return call_hook(self, fn_name, **kwargs)

    monkeypatch.setattr(Runner, "call_hook", spy)
    return seen


def differing(state: dict[str, torch.Tensor], checkpoint: dict[str, torch.Tensor], where) -> list[str]:
    """Checkpoint keys whose tensor in the model (at `where(key)`) is absent or not equal."""
    return [k for k, v in checkpoint.items() if where(k) not in state or not torch.equal(state[where(k)], v)]


@pytest.mark.parametrize("task", ["voc", "coco"])
def test_mmdet_starts_from_the_checkpoint(task, demo_data, noisy_r18, tmp_path, monkeypatch):
    path, checkpoint = noisy_r18
    seen = model_at_first_iteration(monkeypatch)
    run_transfer([task, "--data", str(demo_data / task), "--work-dir", str(tmp_path / task), "--gpus", "0",
                  "--weights", str(path), "--max-iters", "1", "--input-size", "64", "protocol_gpus=1",
                  "train_dataloader.batch_size=1", *SMALL])
    state = seen["state"]
    # C4: res5 (torchvision's layer4) is the RoI head's shared head, the rest is the backbone
    c4 = any(k.startswith("roi_head.shared_head.layer4.") for k in state)
    assert c4
    assert differing(state, checkpoint, lambda k: f"roi_head.shared_head.{k}" if k.startswith("layer4.")
                     else f"backbone.{k}") == []


def test_mmseg_starts_from_the_checkpoint(demo_data, noisy_r18, tmp_path, monkeypatch):
    path, checkpoint = noisy_r18
    seen = model_at_first_iteration(monkeypatch)
    run_transfer(["cityscapes", "--data", str(demo_data / "cityscapes"), "--work-dir", str(tmp_path / "seg"),
                  "--gpus", "0", "--weights", str(path), "--max-iters", "1", "--input-size", "64"])
    assert differing(seen["state"], checkpoint, lambda k: f"backbone.{k}") == []


def test_linear_probe_starts_from_the_checkpoint(demo_data, noisy_r18, tmp_path, monkeypatch):
    from transfer.classification import features

    path, checkpoint = noisy_r18
    seen: dict[str, dict[str, torch.Tensor]] = {}
    forward = features.PooledBackbone.forward

    def spy(self, images):
        seen.setdefault("state", {k: v.detach().clone() for k, v in self.trunk.state_dict().items()})
        return forward(self, images)

    monkeypatch.setattr(features.PooledBackbone, "forward", spy)
    run_transfer(["linear", "--data", str(demo_data / "imagefolder"), "--work-dir", str(tmp_path / "linear"),
                  "--gpus", "0", "--weights", str(path), "--max-iters", "2", "--input-size", "32",
                  "linear.precompute_features=true", "linear.workers=0"])
    assert differing(seen["state"], checkpoint, lambda k: k) == []


def test_detectron2_starts_from_the_checkpoint(demo_data, noisy_r18, tmp_path, monkeypatch):
    pytest.importorskip("detectron2")
    from detectron2.engine import SimpleTrainer

    path, checkpoint = noisy_r18
    seen: dict[str, dict[str, torch.Tensor]] = {}
    run_step = SimpleTrainer.run_step

    def spy(self):
        model = self.model.module if hasattr(self.model, "module") else self.model
        seen.setdefault("state", {k: v.detach().clone() for k, v in model.state_dict().items()})
        return run_step(self)

    monkeypatch.setattr(SimpleTrainer, "run_step", spy)
    run_transfer(["voc", "--backend", "detectron2", "--data", str(demo_data / "voc"), "--work-dir",
                  str(tmp_path / "d2"), "--gpus", "0", "--weights", str(path), "--max-iters", "1",
                  "--input-size", "64", "SOLVER.IMS_PER_BATCH=1", "DATALOADER.NUM_WORKERS=0"])
    from transfer.checkpoint.detectron2_names import to_detectron2_name

    def where(key: str) -> str:  # detectron2 C4: res2-res4 in the backbone, res5 in the RoI heads
        name = to_detectron2_name(key)
        return f"roi_heads.{name}" if name.startswith("res5.") else f"backbone.{name}"

    assert differing(seen["state"], checkpoint, where) == []
