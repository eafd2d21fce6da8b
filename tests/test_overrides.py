"""The one key=value language of every tool: typed values, keys that must exist, types checked against defaults."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
from mmengine.config import Config

from transfer.errors import UserError
from transfer.overrides import apply_overrides, check_range, parse_override, parse_value

from conftest import run_tool

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("text, value", [
    ("3e-2", 0.03), ("1e-4", 1e-4), ("1.0e-4", 1e-4), ("-2.5", -2.5), (".5", 0.5), ("1_000", 1000), ("0x10", 16),
    ("007", 7), ("12", 12), ("true", True), ("False", False), ("TRUE", True), ("null", None), ("None", None),
    ("~", None), ("SyncBN", "SyncBN"), ("'12'", "12"), ('"a b"', "a b"), ("[1, 2]", [1, 2]), ("(1, 2)", (1, 2)),
    ("[1e-4, 3]", [1e-4, 3]), ("[true, null, 3e-2]", [True, None, 0.03]), ("[a, b]", ["a", "b"]),
    ("{type: BN}", {"type": "BN"}), ("{'type': 'BN', 'eps': 1e-5}", {"type": "BN", "eps": 1e-5}),
    ("data/x.yaml", "data/x.yaml"), ("", ""),
])
def test_values_read_as_what_they_say(text, value):
    parsed = parse_value(text)
    assert parsed == value and type(parsed) is type(value)


def test_inf_and_nan_are_numbers():
    assert parse_value("inf") == math.inf and math.isnan(parse_value("nan"))


def test_an_override_needs_a_key_and_an_equals_sign():
    for bad in ("lr0.1", "=3", "a..b=1", "a.=1"):
        with pytest.raises(UserError, match="is not key=value"):
            parse_override(bad)
    assert parse_override("optim.lr=3e-2").path == ("optim", "lr")


def _cfg() -> dict:
    return {"optim": {"lr": 0.03, "epochs": 200, "nesterov": False, "schedule": "cosine", "milestones": [60, 80],
                      "scale": (0.2, 1.0), "root": None, "norm": {"type": "BN"}},
            "model": {"backbone": {"depth": 50}}, "hooks": [{"type": "A", "num_iters": 200}], "head_norm": "bn"}


def test_values_are_checked_and_converted_against_the_default():
    cfg = apply_overrides(_cfg(), ["optim.lr=1e-4", "optim.epochs=1e3", "optim.nesterov=true", "optim.lr=3",
                                   "optim.milestones=(6, 8)", "optim.scale=[0.1, 1]", "optim.root=/data",
                                   "hooks.0.num_iters=4", "head_norm=none", "optim.norm=null", "+optim.new=1"])
    o = cfg["optim"]
    assert o["lr"] == 3.0 and type(o["lr"]) is float
    assert o["epochs"] == 1000 and type(o["epochs"]) is int and o["nesterov"] is True
    assert o["milestones"] == [6, 8] and o["scale"] == (0.1, 1) and o["root"] == "/data"
    assert cfg["hooks"][0]["num_iters"] == 4 and cfg["head_norm"] == "none" and o["norm"] is None and o["new"] == 1


@pytest.mark.parametrize("override, message", [
    ("optim.lr=fast", "optim.lr=fast: expected a number"),
    ("optim.epochs=2.5", "optim.epochs=2.5: expected an integer"),
    ("optim.epochs=true", "optim.epochs=true: expected an integer"),
    ("optim.nesterov=1", "optim.nesterov=1: expected true or false"),
    ("optim.milestones=60", "optim.milestones=60: expected a list of numbers"),
    ("optim.milestones=[a, b]", "expected a list of numbers"),
    ("optim.norm=3", "expected a mapping"),
    ("model.backbone.dpeth=50", "unknown key 'model.backbone.dpeth'; keys under model.backbone: depth"),
    ("modle.backbone.depth=50", "unknown key 'modle'"),
    ("model.backbone.depth.x=1", "model.backbone.depth is 50, not a section"),
    ("hooks.3.num_iters=1", "unknown key 'hooks.3'"),
    ("toplevel=1", "unknown key 'toplevel'; keys under the top level"),
])
def test_mistakes_are_one_line_errors_naming_key_value_and_type(override, message):
    with pytest.raises(UserError, match="^[^\n]*$") as e:
        apply_overrides(_cfg(), [override])
    assert message in str(e.value)


def test_mmengine_configs_take_the_same_overrides():
    cfg = Config(dict(model=dict(backbone=dict(depth=50, norm_cfg=dict(type="SyncBN"))),
                      custom_hooks=[dict(type="PreciseBNHook", num_iters=200)], protocol_gpus=8))
    apply_overrides(cfg, ["model.backbone.depth=18", "custom_hooks.0.num_iters=4", "protocol_gpus=1",
                          "model.backbone.norm_cfg.type=BN"])
    assert cfg.model.backbone.depth == 18 and cfg.custom_hooks[0].num_iters == 4 and cfg.protocol_gpus == 1
    with pytest.raises(UserError, match="unknown key 'model.backbone.dpeth'"):
        apply_overrides(cfg, ["model.backbone.dpeth=50"])
    with pytest.raises(UserError, match="unknown key 'protocol_gpu'"):
        apply_overrides(cfg, ["protocol_gpu=1"])


def test_ranges():
    assert check_range("--trials", 3, 1) == 3 and check_range("--max-iters", None, 1) is None
    with pytest.raises(UserError, match=r"^--max-iters must be an integer >= 1 \(got 0\)$"):
        check_range("--max-iters", 0, 1)
    with pytest.raises(UserError, match=r"^--input-size must be an integer in \[32, 4096\] \(got 5000\)$"):
        check_range("--input-size", 5000, 32, 4096)
    with pytest.raises(UserError, match=r"^det_lr must be a number > 0 \(got 0\)$"):
        check_range("det_lr", 0, 0, integer=False, above=True)


def test_pretraining_overrides_are_typed_before_anything_runs():
    from transfer.pretrain import load_config

    cfg = load_config(method="ssa", overrides=["optim.lr=3e-2", "optim.weight_decay=1e-4", "train.max_steps=10",
                                               "model.head_norm=none", "train.amp=false"])
    assert cfg["optim"]["lr"] == 0.03 and isinstance(cfg["optim"]["weight_decay"], float)
    assert cfg["train"]["max_steps"] == 10 and cfg["model"]["head_norm"] == "none" and cfg["train"]["amp"] is False
    assert cfg["method"] == "ssa" and cfg["name"] == "ssa" and cfg["aggregation"]["rho"] == 0.25  # base.yaml via _base_
    with pytest.raises(UserError, match="optim.lr=fast: expected a number"):
        load_config(method="ssa", overrides=["optim.lr=fast"])
    with pytest.raises(UserError, match="unknown key 'model.dpeth'"):
        load_config(method="ssa", overrides=["model.dpeth=50"])


def test_pretraining_config_files_are_typed_too(tmp_path):
    from transfer.pretrain import load_config
    from transfer.pretrain.config import PRETRAIN_CONFIGS

    good = tmp_path / "mine.yaml"
    good.write_text(f"_base_: {PRETRAIN_CONFIGS / 'ssa.yaml'}\noptim:\n  lr: 3e-2\n")  # YAML 1.1 reads 3e-2 as a word
    assert load_config(good)["optim"]["lr"] == 0.03
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"_base_: {PRETRAIN_CONFIGS / 'ssa.yaml'}\noptim:\n  lr: fast\n")
    with pytest.raises(UserError, match="optim.lr: fast"):
        load_config(bad)


@pytest.mark.parametrize("argv, message", [
    (["optim.lr=fast"], "error: optim.lr=fast: expected a number (the default is 0.03)"),
    (["model.dpeth=50"], "error: override 'model.dpeth=50': unknown key 'model.dpeth'"),
    (["--epochs", "0"], "error: --epochs must be an integer >= 1 (got 0)"),
    (["--workers", "-1"], "error: --workers must be an integer >= 0 (got -1)"),
])
def test_pretrain_cli_refuses_with_one_line_and_exit_2(tmp_path, argv, message):
    work = tmp_path / "w"
    proc = run_tool("pretrain.py", "--work-dir", work, *argv, cwd=REPO)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and proc.stderr.startswith(message)
    assert "Traceback" not in proc.stderr and not work.exists()
