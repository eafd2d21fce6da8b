"""Linear probe (MoCo protocol) and kNN evaluation: the math, the frozen backbone, the runner and its files."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torchvision.datasets import ImageFolder

from transfer.classification import knn_accuracy, knn_predict
from transfer.classification import linear
from transfer.classification.features import load_frozen_backbone
from transfer.classification.runner import run
from transfer.classification.transforms import train_transform
from transfer.cli import add_transfer_flags
from transfer.errors import UserError
from transfer.pretrain import load_config
from transfer.pretrain.checkpoint import save_checkpoint
from transfer.distributed import Processes
from transfer.pretrain.trainer import build_model

from conftest import run_tool

REPO = Path(__file__).resolve().parent.parent
CPU = Processes(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
FAST = ["model.arch=resnet18", "linear.workers=0", "linear.batch_size=8"]


def parse(*argv: str) -> argparse.Namespace:
    args = add_transfer_flags(argparse.ArgumentParser()).parse_intermixed_args(list(argv))
    args.task = "linear"
    return args


# ---- kNN ------------------------------------------------------------------------------------------------------

def test_knn_matches_reference():
    g = torch.Generator().manual_seed(0)
    bank, labels = torch.randn(30, 6, generator=g), torch.randint(0, 4, (30,), generator=g)
    queries = torch.randn(7, 6, generator=g)
    scores = knn_predict(bank, labels, queries, num_classes=4, k=5, temperature=0.07, chunk=3)
    for q in range(7):
        sims = F.cosine_similarity(queries[q:q + 1], bank)  # 30
        top = sims.argsort(descending=True)[:5]
        expected = torch.zeros(4)
        for i in top:
            expected[labels[i]] += math.exp(sims[i].item() / 0.07)
        assert torch.allclose(scores[q], expected, rtol=1e-4)


def test_knn_accuracy_on_clusters():
    centres = F.normalize(torch.randn(3, 16), dim=1) * 5
    labels = torch.arange(3).repeat_interleave(10)
    bank = centres[labels] + 0.1 * torch.randn(30, 16)
    queries = centres[labels[::2]] + 0.1 * torch.randn(15, 16)
    assert knn_accuracy(bank, labels, queries, labels[::2], num_classes=3) == 100.0
    assert knn_accuracy(bank, labels, queries, (labels[::2] + 1) % 3, num_classes=3) == 0.0


# ---- linear probe pieces ----------------------------------------------------------------------------------------

def test_schedule_and_step_decay():
    assert linear.schedule(100, 10, [60, 80], None) == (1000, [600, 800])
    assert linear.schedule(100, 10, [60, 80], 50) == (50, [30, 40])  # --max-iters scales the milestones
    assert [linear.step_decay_lr(i, 30.0, [6, 8], 0.1) for i in (0, 5, 6, 8)] == pytest.approx([30, 30, 3, 0.3])
    fc = linear.new_classifier(512, 10)
    assert fc.bias.abs().sum() == 0 and 0.005 < fc.weight.std().item() < 0.015


def test_topk_correct():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.15, 0.05], [0.35, 0.25, 0.4]])
    assert linear.topk_correct(logits, torch.tensor([1, 2, 0]), ks=(1, 2)) == [1, 2]
    assert linear.topk_correct(logits, torch.tensor([1, 2, 0]), ks=(1, 5)) == [1, 3]  # k capped at 3 classes


def test_probe_learns_separable_features(tmp_path):
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(4).repeat(16)
    features = F.one_hot(labels, 4).float() * 3 + 0.2 * torch.randn(64, 4, generator=g)
    cfg = {"linear": {"epochs": 20, "milestones": [12, 16], "lr": 1.0, "momentum": 0.9, "weight_decay": 0.0,
                      "gamma": 0.1}}
    result = linear.train_linear(in_dim=4, num_classes=4, cfg=cfg, procs=CPU, work_dir=tmp_path, iters_per_epoch=4,
                                 batches=linear.FeatureBatches(features, labels, CPU, 16, seed=0),
                                 evaluate=lambda fc: linear.evaluate_features(fc, features, labels))
    assert result["top1"] == 100.0 and result["top5"] == 100.0
    assert (tmp_path / linear.STATE_FILE).is_file()


def test_backbone_stays_frozen_during_the_probe(demo_data, tmp_path):
    backbone, info = load_frozen_backbone(None, "resnet18")
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    train_set = ImageFolder(str(demo_data / "imagefolder" / "train"), transform=train_transform(32))
    cfg = {"linear": {"epochs": 1, "milestones": [], "lr": 30.0, "momentum": 0.9, "weight_decay": 0.0, "gamma": 0.1}}
    batches = linear.ImageBatches(backbone, train_set, CPU, batch=8, workers=0, seed=0, amp=False)
    linear.train_linear(in_dim=512, num_classes=5, cfg=cfg, procs=CPU, work_dir=tmp_path, iters_per_epoch=2,
                        batches=batches, evaluate=lambda fc: {"top1": 0.0, "top5": 0.0})
    assert not backbone.training
    after = backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN statistics untouched


# ---- the runner: tools/run_transfer.sh linear ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def ssa_checkpoint(tmp_path_factory) -> Path:
    """An SSA checkpoint (contract 2) of a ResNet-18 student, as the pretraining writes it."""
    cfg = load_config(method="ssa", overrides=["model.queue_size=8", "aggregation.queue_size=8",
                                               "model.head_hidden=32"])
    model, _ = build_model(cfg)
    path = tmp_path_factory.mktemp("ssa") / "checkpoint_final.pth"
    save_checkpoint(path, {"method": "ssa", "arch": "resnet18", "step": 1, "epoch": 0, "config": cfg},
                    model.state_dict())
    return path


def test_runner_writes_metrics_and_skips_a_finished_run(demo_data, tmp_path, capsys):
    work = tmp_path / "random"
    args = parse("--data", str(demo_data), "--work-dir", str(work), "--gpus", "0", "--max-iters", "3",
                 "--input-size", "32", *FAST)
    record = run(args)
    m = record["metrics"]
    assert set(m) == {"top1", "top5", "knn_top1"} and all(0 <= v <= 100 for v in m.values())
    assert m["top5"] == 100.0  # 5 classes: the top 5 always hold the label
    assert record["task"] == "linear" and record["iterations"] == 3 and record["weights"] is None
    assert record["arch"] == "resnet18" and any("crop 32 (resize 37)" in n for n in record["notes"])
    mtime = (work / "metrics.json").stat().st_mtime_ns
    assert run(args)["metrics"] == m and (work / "metrics.json").stat().st_mtime_ns == mtime
    assert "exists: reusing it" in capsys.readouterr().err


def test_runner_evaluates_an_ssa_checkpoint_and_resumes(demo_data, ssa_checkpoint, tmp_path, capsys):
    work = tmp_path / "ssa"
    argv = ["--weights", str(ssa_checkpoint), "--data", str(demo_data / "imagefolder"), "--work-dir", str(work),
            "--gpus", "0", "--max-iters", "4", "--input-size", "32", *FAST, "linear.precompute_features=true"]
    first = run(parse(*argv))
    assert first["arch"] == "resnet18" and "(pretrain)" in first["notes"][0]
    assert "fast option" in first["notes"][0]
    (work / "metrics.json").unlink()  # as if the run had been interrupted after its last probe checkpoint
    capsys.readouterr()
    again = run(parse(*argv))
    assert "resumed the linear probe" in capsys.readouterr().err
    assert again["metrics"] == first["metrics"]
    third = run(parse(*argv, "--force", "--no-resume"))
    assert "resumed" not in capsys.readouterr().err and third["metrics"] == first["metrics"]  # deterministic


def test_runner_rejects_bad_input(demo_data, tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        run(parse("--weights", str(tmp_path / "none.pth"), "--data", str(demo_data), "--work-dir", str(tmp_path / "a"),
                  "--gpus", "0"))
    with pytest.raises(UserError, match="imagefolder"):
        run(parse("--data", str(tmp_path), "--work-dir", str(tmp_path / "b"), "--gpus", "0"))
    with pytest.raises(UserError, match="unknown key"):
        run(parse("--data", str(demo_data), "--work-dir", str(tmp_path / "c"), "--gpus", "0", "linear.lrr=1"))


def test_run_transfer_linear_through_the_tool(demo_data, ssa_checkpoint, tmp_path):
    work = tmp_path / "cli"
    proc = run_tool("run_transfer.py", "linear", "--weights", ssa_checkpoint, "--data", demo_data, "--work-dir", work,
                    "--gpus", "0", "--max-iters", "2", "--input-size", "32", *FAST, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((work / "metrics.json").read_text())["metrics"]
    assert set(metrics) == {"top1", "top5", "knn_top1"}
    assert "kNN (k=20, T=0.07)" in proc.stderr
