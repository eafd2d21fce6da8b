"""tools/convert_ckpt.py: the end-to-end command, its report, and one clear line for every bad input."""
from __future__ import annotations

import datetime
import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from checkpoint_layouts import backbone, layout_path, resnet_state

import transfer.checkpoint.convert as convert_module
from transfer.checkpoint.targets import write_mmlab
from transfer.fileio import sha256_file

REPO = Path(__file__).resolve().parent.parent
TOOL = REPO / "tools" / "convert_ckpt.py"


def run_tool(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, *args: object) -> tuple[int, str, str]:
    """Run the tool in this process (exit code, stdout, stderr): the same code path as the command, minus startup."""
    monkeypatch.setattr(sys, "argv", [str(TOOL), *map(str, args)])
    try:
        runpy.run_path(str(TOOL), run_name="__main__")
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


def run_command(*args: object) -> subprocess.CompletedProcess:
    """Run the tool as a researcher does, in a fresh Python."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=300)


def assert_one_line_error(code: int, err: str, names: Path, *phrases: str) -> None:
    """Exit code 2 and a single `error: ...` line on stderr naming the file, with the given phrases."""
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert str(names) in lines[0]
    for phrase in phrases:
        assert phrase in lines[0], lines[0]


def test_command_converts_and_reports(tmp_path: Path) -> None:
    src = layout_path("moco_v2", "resnet18")
    result = run_command(src, tmp_path / "r18.pkl", "--to", "detectron2", "--report", tmp_path / "report.json")
    assert result.returncode == 0, result.stderr
    assert "backbone:   resnet18, 120 tensors" in result.stdout and "verified:   readback" in result.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["ok"] is True
    assert report["source"]["format"] == "moco" and report["source"]["sha256"] == sha256_file(src)
    assert report["arch"] == "resnet18" and report["num_tensors"] == 120
    assert report["num_parameters"] == 11_176_512  # torchvision resnet18 without its fc
    assert {"state_dict.module.encoder_k", "state_dict.module.queue", "state_dict.module.encoder_q.fc"} \
        <= set(report["dropped"])
    assert report["output"]["sha256"] == sha256_file(tmp_path / "r18.pkl")
    assert {c["engine"] for c in report["verification"]} == {"readback", "detectron2"}
    assert report["time_s"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r18.pkl", "report.json"]


def test_command_refuses_a_file_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("this is not a checkpoint\n")
    result = run_command(tmp_path / "notes.txt", tmp_path / "out.pth", "--to", "mmlab")
    assert_one_line_error(result.returncode, result.stderr, tmp_path / "notes.txt", "is not a checkpoint")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def _vit(path: Path) -> None:
    torch.save({"model": {"cls_token": torch.zeros(1, 1, 8), "pos_embed": torch.zeros(1, 5, 8),
                          "patch_embed.proj.weight": torch.zeros(8, 3, 16, 16),
                          "blocks.0.attn.qkv.weight": torch.zeros(24, 8), "head.weight": torch.zeros(10, 8)}}, path)


def _truncated_zip(path: Path) -> None:
    data = layout_path("torchvision", "resnet18").read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _truncated_pickle(path: Path) -> None:
    data = layout_path("detectron2", "resnet18").read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _with_object(path: Path) -> None:
    torch.save({"state_dict": dict(backbone(resnet_state("resnet18"))), "saved_at": datetime.datetime(2024, 1, 1)},
               path)


BAD_SOURCES = {
    "text": (lambda p: p.write_text("hello"), ["is not a checkpoint"]),
    "empty": (lambda p: p.write_bytes(b""), ["is empty"]),
    "truncated_zip": (_truncated_zip, ["truncated or corrupt", "download it again"]),
    "truncated_pickle": (_truncated_pickle, ["truncated or corrupt", "download it again"]),
    "vit": (_vit, ["Vision Transformer", "only ResNet-18/34/50/101/152"]),
    "no_backbone": (lambda p: torch.save({"state_dict": {"neck.fc.weight": torch.zeros(2, 2)}}, p),
                    ["no ResNet backbone keys"]),
    "no_tensors": (lambda p: torch.save({"epoch": 3, "arch": "resnet50"}, p), ["holds no tensors"]),
    "not_a_dict": (lambda p: torch.save([torch.zeros(2)], p), ["is not a checkpoint", "a list"]),
    "pickled_object": (_with_object, ["datetime.datetime", "--trust-pickle"]),
    "deep_stem": (lambda p: torch.save({**{k: v for k, v in backbone(resnet_state("resnet18")).items()
                                           if not k.startswith("conv1.")}, "conv1.0.weight": torch.zeros(32, 3, 3, 3)},
                                       p), ["deep stem"]),
    "safetensors": (lambda p: p.write_bytes(len(b'{"a":{}}').to_bytes(8, "little") + b'{"a":{}}'), ["safetensors"]),
    "two_encoders": (lambda p: p.write_bytes(layout_path("unknown_two_encoders", "resnet18").read_bytes()),
                     ["2 candidate encoders", "'state_dict.online.'", "--prefix"]),
}


@pytest.mark.parametrize("case", list(BAD_SOURCES))
def test_bad_source_gets_one_line_and_no_output(case: str, tmp_path: Path, capsys: pytest.CaptureFixture,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    make, phrases = BAD_SOURCES[case]
    src = tmp_path / f"{case}.pth"
    make(src)
    out = tmp_path / "out"
    out.mkdir()
    code, _, err = run_tool(capsys, monkeypatch, src, out / "converted.pkl", "--to", "detectron2")
    assert_one_line_error(code, err, src, *phrases)
    assert list(out.iterdir()) == []  # neither DST nor a temporary file


def test_pickled_objects_load_only_when_trusted(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    _with_object(tmp_path / "obj.pth")
    code, out, err = run_tool(capsys, monkeypatch, tmp_path / "obj.pth", tmp_path / "out.pth", "--to", "torchvision",
                              "--trust-pickle")
    assert code == 0, err
    assert "verified:   torchvision resnet18(): ok" in out


def test_prefix_picks_an_encoder(tmp_path: Path, capsys: pytest.CaptureFixture,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = run_tool(capsys, monkeypatch, layout_path("unknown_two_encoders", "resnet18"),
                              tmp_path / "out.pth", "--to", "torchvision", "--prefix", "online.")
    assert code == 0, err
    assert "backbone under 'state_dict.online.'" in out
    state = torch.load(tmp_path / "out.pth", weights_only=True)
    assert torch.equal(state["layer3.1.conv2.weight"], resnet_state("resnet18")["layer3.1.conv2.weight"])


def test_existing_destination_needs_force(tmp_path: Path, capsys: pytest.CaptureFixture,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    dst = tmp_path / "out.pth"
    dst.write_bytes(b"precious")
    src = layout_path("torchvision", "resnet18")
    code, _, err = run_tool(capsys, monkeypatch, src, dst, "--to", "torchvision")
    assert_one_line_error(code, err, dst, "already exists", "--force")
    assert dst.read_bytes() == b"precious" and len(list(tmp_path.iterdir())) == 1
    code, _, err = run_tool(capsys, monkeypatch, src, dst, "--to", "torchvision", "--force")
    assert code == 0, err
    assert set(torch.load(dst, weights_only=True)) == set(backbone(resnet_state("resnet18")))


def test_unwritable_destination(tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "afile").write_text("x")
    dst = tmp_path / "afile" / "out.pth"  # its folder cannot exist: a file is in the way
    code, _, err = run_tool(capsys, monkeypatch, layout_path("torchvision", "resnet18"), dst, "--to", "mmlab")
    assert_one_line_error(code, err, dst.name, "cannot create the folder", "choose a writable destination")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into a read-only folder")
def test_read_only_destination_folder(tmp_path: Path, capsys: pytest.CaptureFixture,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        code, _, err = run_tool(capsys, monkeypatch, layout_path("torchvision", "resnet18"), folder / "out.pth",
                                "--to", "mmlab")
        assert_one_line_error(code, err, folder / "out.pth", "not writable")
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize(("args", "phrases"), [
    (["--to", "detectron2"], ["must end in .pkl"]),
    (["--to", "torchvision", "--backbone-prefix"], ["mmlab target only"]),
])
def test_bad_options(args: list[str], phrases: list[str], tmp_path: Path, capsys: pytest.CaptureFixture,
                     monkeypatch: pytest.MonkeyPatch) -> None:
    dst = tmp_path / "out.pth"
    code, _, err = run_tool(capsys, monkeypatch, layout_path("torchvision", "resnet18"), dst, *args)
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert all(p in err for p in phrases) and not dst.exists()


def test_missing_source(tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run_tool(capsys, monkeypatch, tmp_path / "nope.pth", tmp_path / "out.pth", "--to", "mmlab")
    assert_one_line_error(code, err, tmp_path / "nope.pth", "no such file")


def test_failed_verification_exits_nonzero_with_report(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def drop_a_key(state_dict: dict, path: Path, meta: dict, backbone_prefix: bool = False) -> list[str]:
        return write_mmlab({k: v for k, v in state_dict.items() if k != "layer1.0.bn1.running_var"}, path, meta)

    monkeypatch.setattr(convert_module, "write_mmlab", drop_a_key)
    dst = tmp_path / "out.pth"
    code, out, err = run_tool(capsys, monkeypatch, layout_path("moco_v2", "resnet18"), dst, "--to", "mmlab",
                              "--report", tmp_path / "report.json")
    assert_one_line_error(code, err, dst, "not written", "layer1.0.bn1.running_var")
    assert "failed" in out
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["ok"] is False
    assert any("layer1.0.bn1.running_var" in c["missing"] for c in report["verification"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_config_with_deep_stem_warns(tmp_path: Path, capsys: pytest.CaptureFixture,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mmengine")
    (tmp_path / "fcn.py").write_text("model = dict(type='EncoderDecoder', backbone=dict(type='ResNetV1c', depth=18))\n")
    code, _, err = run_tool(capsys, monkeypatch, layout_path("torchvision", "resnet18"), tmp_path / "out.pth",
                            "--to", "mmlab", "--config", tmp_path / "fcn.py")
    assert code == 0
    assert err.startswith("warning: model.backbone: type=ResNetV1c has a deep stem")


def test_source_is_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run_tool(capsys, monkeypatch, tmp_path, tmp_path / "out.pth", "--to", "mmlab")
    assert_one_line_error(code, err, tmp_path, "is a directory")


