"""The pretraining trainer end to end on CPU: every method and ablation, checkpoints, resume, NaN stop, CLI."""
from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torchvision

from transfer.errors import UserError
from transfer.pretrain import TrainingDiverged, load_config, logs, losses, train
from transfer.pretrain.checkpoint import load_checkpoint
from transfer.pretrain.config import PRETRAIN_CONFIGS
from transfer.pretrain.model import TERMS
from transfer.pretrain.trainer import build_model

from conftest import run_tool

REPO = Path(__file__).resolve().parent.parent
# Small and fast: 32 px views (a 1 x 1 feature map), 4 images a step, tiny queues and head.
FAST = ["data.image_size=32", "data.workers=0", "train.batch_size=4", "model.queue_size=16",
        "aggregation.queue_size=16",
        "model.head_hidden=64", "train.log_every=1", "optim.lr=0.3"]
CONFIGS = sorted(p.stem for p in PRETRAIN_CONFIGS.glob("*.yaml") if p.stem != "base")


@pytest.fixture(scope="module")
def images(demo_data: Path) -> Path:
    return demo_data / "imagefolder"  # 16 train images, 5 classes, 64 x 64


def config(images: Path, name: str = "ssa", *extra: str) -> dict:
    return load_config(PRETRAIN_CONFIGS / f"{name}.yaml", [*FAST, f"data.root={images}", *extra])


def read_log(work_dir: Path) -> list[dict]:
    return logs.read_log(work_dir / logs.LOG_FILE)


@pytest.mark.parametrize("name", CONFIGS)
def test_every_method_and_ablation_trains(name, images, tmp_path):
    cfg = config(images, name, "train.max_steps=2")
    init, _ = build_model(cfg)
    final = train(cfg, tmp_path)
    record = torch.load(final, weights_only=True)  # contract 2: plain data only
    meta = record["pretrain"]
    assert (meta["version"], meta["method"], meta["variant"], meta["arch"], meta["step"]) == \
        (1, cfg["method"], name, "resnet18", 2)
    log = read_log(tmp_path)
    assert [r["step"] for r in log] == [1, 2]
    expected = {"ssa": set(TERMS), "ssa_no_ssa": {"cd_soft", "cd_nce", "align"},
                "ssa_no_align": {"cd_soft", "cd_nce", "aggregation"}, "ssa_rho1": set(TERMS),
                "seed": {"cd_soft"}, "moco_v2": {"cd_nce"}, "moco_v2_asym": {"cd_nce"}}[name]
    for r in log:
        assert expected <= set(r) and not (set(TERMS) - expected) & set(r)
        assert all(math.isfinite(r[k]) for k in expected) and r["lr"] > 0 and r["images_per_s"] >= 0
    # the student learned something, the EMA teacher followed it
    state = record["state_dict"]
    assert not torch.equal(state["student.backbone.conv1.weight"], init.state_dict()["student.backbone.conv1.weight"])
    assert (tmp_path / "checkpoint_last.pth").is_file() and (tmp_path / "loss_curves.png").stat().st_size > 0
    assert any((tmp_path / "tb").iterdir())


def test_checkpoint_is_what_the_converter_reads(images, tmp_path):
    from transfer.checkpoint import convert_checkpoint, load_backbone

    final = train(config(images, "ssa", "train.max_steps=1"), tmp_path / "run")
    record = torch.load(final, weights_only=True)
    keys = record["state_dict"].keys()
    assert {k.split(".")[0] for k in keys} == {"student", "teacher", "queue", "aggregate_queue"}
    assert not any(k.startswith("student.backbone.fc") for k in keys)
    backbone, info = load_backbone(final)
    assert info["source"] == "pretrain" and info["arch"] == "resnet18"
    student = {k[len("student.backbone."):]: v for k, v in record["state_dict"].items()
               if k.startswith("student.backbone.")}
    assert backbone.keys() == student.keys() and all(torch.equal(backbone[k], student[k]) for k in student)
    # and it converts into a torchvision ResNet-18 state dict
    out = tmp_path / "r18_torchvision.pth"
    convert_checkpoint(final, out, to="torchvision")
    converted = torch.load(out, weights_only=True)
    converted = converted.get("state_dict", converted)
    model = torchvision.models.resnet18()
    missing, unexpected = model.load_state_dict(converted, strict=False)
    assert set(missing) <= {"fc.weight", "fc.bias"} and not unexpected
    assert torch.equal(model.layer4[1].conv2.weight, student["layer4.1.conv2.weight"])


def test_frozen_teacher_of_another_arch(images, tmp_path):
    # an R50 teacher (a torchvision state dict file) distilled into an R18 student
    teacher_file = tmp_path / "r50.pth"
    torch.manual_seed(3)
    torch.save(torchvision.models.resnet50().state_dict(), teacher_file)
    cfg = config(images, "ssa", "train.max_steps=2", f"teacher.checkpoint={teacher_file}")
    record = torch.load(train(cfg, tmp_path / "run"), weights_only=True)
    assert record["pretrain"]["teacher_arch"] == "resnet50" and record["pretrain"]["teacher_kind"] == "frozen"
    original = torch.load(teacher_file, weights_only=True)
    state = record["state_dict"]
    # frozen: the teacher's backbone (BN statistics included) is exactly the file's
    assert all(torch.equal(state[f"teacher.backbone.{k}"], v) for k, v in original.items() if not k.startswith("fc."))
    assert state["teacher.heads.mlp.0.weight"].shape[1] == 2048 and state["student.heads.mlp.0.weight"].shape[1] == 512


def test_a_checkpoint_from_before_the_renaming_reads_under_the_new_names(tmp_path):
    old = {"ssa": {"version": 1, "step": 4, "config": {"loss": {"ssa_weight": 0.5, "tau_s": 0.2},
                                                        "ssa": {"rho": 0.25}, "seed": 0}},
           "state_dict": {"ssa_queue.keys": torch.ones(2, 3), "queue.keys": torch.zeros(2, 3)}}
    torch.save(old, tmp_path / "old.pth")
    record = load_checkpoint(tmp_path / "old.pth")
    assert "ssa" not in record and record["pretrain"]["step"] == 4
    assert record["pretrain"]["config"] == {"loss": {"aggregation_weight": 0.5, "tau_s": 0.2},
                                            "aggregation": {"rho": 0.25}, "seed": 0}
    assert set(record["state_dict"]) == {"aggregate_queue.keys", "queue.keys"}


def test_moco_refuses_a_teacher_and_configs_refuse_typos(images, tmp_path):
    with pytest.raises(UserError, match="drop --teacher"):
        train(config(images, "moco_v2", f"teacher.checkpoint={tmp_path / 'x.pth'}"), tmp_path / "a")
    with pytest.raises(UserError, match="unknown key 'aggregation.rh'"):
        config(images, "ssa", "aggregation.rh=1")
    with pytest.raises(UserError, match="rho"):
        train(config(images, "ssa", "aggregation.rho=0"), tmp_path / "b")
    with pytest.raises(UserError, match="model.head_norm must be bn or none"):
        train(config(images, "ssa", "model.head_norm=batchnorm"), tmp_path / "c")
    with pytest.raises(UserError, match="batch of one"):
        train(config(images, "moco_v2_asym", "model.head_norm=bn", "train.batch_size=1"), tmp_path / "d")


def test_nan_loss_stops_with_the_step_and_term(images, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = losses.feature_alignment

    def blows_up_at_step_3(p_s, p_t):
        calls["n"] += 1
        value = real(p_s, p_t)
        return value * float("nan") if calls["n"] == 3 else value

    monkeypatch.setattr(losses, "feature_alignment", blows_up_at_step_3)
    with pytest.raises(TrainingDiverged, match=r"step 3: loss term 'align' is nan.*checkpoint_last\.pth \(step 2\)"):
        train(config(images, "ssa", "train.max_steps=5", "train.save_every=2"), tmp_path)
    record = torch.load(tmp_path / "checkpoint_last.pth", weights_only=True)
    assert record["pretrain"]["step"] == 2
    assert all(torch.isfinite(v).all() for v in record["state_dict"].values() if v.is_floating_point())
    assert not (tmp_path / "checkpoint_final.pth").exists()


def test_resume_after_kill_is_bit_exact(images, tmp_path):
    # 7 steps over two epochs (4 steps each), two data-loading workers, a checkpoint every 3 steps
    overrides = [*FAST, f"data.root={images}", "train.max_steps=7", "train.save_every=3", "data.workers=2"]
    straight = train(load_config(method="ssa", overrides=overrides), tmp_path / "straight")

    # the same run in another process, killed with SIGKILL right after its checkpoint at step 3
    killed = tmp_path / "killed"
    script = textwrap.dedent(f"""
        import os, signal
        from transfer.pretrain import checkpoint, load_config, train
        save = checkpoint.save_checkpoint
        def save_then_die(path, meta, *args, **kwargs):
            out = save(path, meta, *args, **kwargs)
            if meta["step"] == 3:
                os.kill(os.getpid(), signal.SIGKILL)
            return out
        checkpoint.save_checkpoint = save_then_die
        train(load_config(method="ssa", overrides={overrides!r}), {str(killed)!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == -9, proc.stderr
    assert torch.load(killed / "checkpoint_last.pth", weights_only=True)["pretrain"]["step"] == 3
    assert not (killed / "checkpoint_final.pth").exists()

    resumed = train(load_config(method="ssa", overrides=overrides), killed, resume=True)
    a, b = torch.load(straight, weights_only=True), torch.load(resumed, weights_only=True)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    for pa, pb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(pa["momentum_buffer"], pb["momentum_buffer"])
    assert [r["step"] for r in read_log(killed)] == list(range(1, 8))
    assert [r["loss"] for r in read_log(killed)] == [r["loss"] for r in read_log(tmp_path / "straight")]
    # a finished run resumed again returns at once; without --resume the folder is refused
    assert train(load_config(method="ssa", overrides=overrides), killed, resume=True) == resumed
    with pytest.raises(UserError, match="--resume"):
        train(load_config(method="ssa", overrides=overrides), killed)


def test_cli(images, tmp_path):
    work = tmp_path / "cli"
    proc = run_tool("pretrain.py", "--method", "seed", "--data", images, "--work-dir", work, "--arch", "resnet18",
                    "--image-size", "32", "--batch-size", "4", "--max-steps", "1", "--workers", "0",
                    "model.queue_size=8", "model.head_hidden=32", cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "[seed] step 1/1" in proc.stdout and (work / "checkpoint_final.pth").is_file()
    bad = run_tool("pretrain.py", "--data", tmp_path / "missing", "--work-dir", tmp_path / "w2", cwd=REPO)
    assert bad.returncode == 2 and bad.stderr.startswith("error:") and "missing" in bad.stderr
