"""Verification: the converted file loads completely into each engine's ResNet, and an incomplete load is caught."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from checkpoint_layouts import backbone, expected_detectron2_keys, layout_path, resnet_state

import transfer.checkpoint.convert as convert_module
from transfer.checkpoint import VerificationError, check_mmseg_backbone, convert_checkpoint
from transfer.checkpoint.targets import write_mmlab
from transfer.checkpoint.verify import compare_loaded, EngineCheck, verify_mmlab, verify_readback, verify_torchvision

EXT = {"detectron2": ".pkl", "mmlab": ".pth", "torchvision": ".pth"}


def engines_of(report: dict) -> dict[str, dict]:
    return {c["engine"]: c for c in report["verification"]}


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
@pytest.mark.parametrize("to", ["detectron2", "mmlab", "torchvision"])
def test_converted_file_loads_completely_into_each_engine(to: str, arch: str, tmp_path: Path) -> None:
    n = len(backbone(resnet_state(arch)))
    report = convert_checkpoint(layout_path("moco_v2", arch), tmp_path / f"out{EXT[to]}", to)
    checks = engines_of(report)
    assert checks["readback"]["status"] == "ok" and checks["readback"]["loaded"] == n
    wanted = {"detectron2": ["detectron2"], "mmlab": ["mmdet", "mmseg"], "torchvision": ["torchvision"]}[to]
    for engine in wanted:
        if engine == "detectron2" and checks[engine]["status"] == "skipped":
            assert "not importable" in checks[engine]["note"]  # CI has no detectron2; its own test below skips
            continue
        assert checks[engine]["status"] == "ok", checks[engine]
        assert checks[engine]["loaded"] == n
        assert not (checks[engine]["missing"] or checks[engine]["unexpected"] or checks[engine]["not_loaded"])


def test_mmlab_backbone_prefix_loads_with_init_cfg_prefix(tmp_path: Path) -> None:
    pytest.importorskip("mmdet")
    report = convert_checkpoint(layout_path("pixpro", "resnet18"), tmp_path / "out.pth", "mmlab", backbone_prefix=True)
    assert all(c["status"] == "ok" for c in report["verification"])
    assert {c["engine"] for c in report["verification"]} == {"readback", "mmdet", "mmseg"}


def broken_mmlab_file(path: Path, expected: dict) -> dict:
    """An mmlab file with one key missing, one misnamed, one of the wrong shape and one of other values."""
    state = dict(expected)
    del state["layer4.1.conv2.weight"]
    state["bn1.wieght"] = state.pop("bn1.weight")
    state["layer1.0.conv1.weight"] = torch.zeros(1, 1, 1, 1)
    state["layer2.0.bn1.running_mean"] = state["layer2.0.bn1.running_mean"] + 1
    write_mmlab(state, path, meta={})
    return state


@pytest.mark.parametrize("engine", ["mmdet", "mmseg"])
def test_incomplete_load_is_caught_by_the_mmlab_check(engine: str, tmp_path: Path) -> None:
    pytest.importorskip(engine)
    expected = backbone(resnet_state("resnet18"))
    broken_mmlab_file(tmp_path / "broken.pth", expected)
    check = verify_mmlab(tmp_path / "broken.pth", "resnet18", expected, engine)
    assert check.failed
    assert "layer4.1.conv2.weight" in check.missing and "bn1.weight" in check.missing
    assert check.unexpected == ["bn1.wieght"]
    assert check.shape_mismatch == ["layer1.0.conv1.weight"]
    # mmengine loads what it can and only logs the rest: the comparison of values is what notices.
    assert "layer2.0.bn1.running_mean" in check.not_loaded


def test_incomplete_load_is_caught_by_readback_and_torchvision(tmp_path: Path) -> None:
    expected = backbone(resnet_state("resnet18"))
    state = broken_mmlab_file(tmp_path / "broken.pth", expected)
    check = verify_readback(tmp_path / "broken.pth", "mmlab", "resnet18", expected)
    assert check.failed and "layer4.1.conv2.weight" in check.missing and check.unexpected == ["bn1.wieght"]
    assert check.shape_mismatch == ["layer1.0.conv1.weight"] and check.not_loaded == ["layer2.0.bn1.running_mean"]
    torch.save(state, tmp_path / "broken-tv.pth")
    check = verify_torchvision(tmp_path / "broken-tv.pth", "resnet18", expected)
    assert check.failed and "layer4.1.conv2.weight" in check.missing and check.unexpected == ["bn1.wieght"]
    assert "fc.weight" not in check.missing  # the classifier is not part of a backbone


def test_failed_verification_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def drop_a_key(state_dict: dict, path: Path, meta: dict, backbone_prefix: bool = False) -> list[str]:
        return write_mmlab({k: v for k, v in state_dict.items() if k != "layer3.1.bn2.bias"}, path, meta)

    monkeypatch.setattr(convert_module, "write_mmlab", drop_a_key)
    with pytest.raises(VerificationError, match=r"out\.pth not written.*layer3\.1\.bn2\.bias") as err:
        convert_checkpoint(layout_path("moco_v2", "resnet18"), tmp_path / "out.pth", "mmlab")
    assert err.value.report["ok"] is False
    assert "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temporary


def test_resnetv1c_deep_stem_trap_is_real_and_checked(tmp_path: Path) -> None:
    mmseg_backbones = pytest.importorskip("mmseg.models.backbones")
    expected = backbone(resnet_state("resnet18"))
    write_mmlab(expected, tmp_path / "r18.pth", meta={})
    # The trap itself: mmseg's ResNetV1c takes the standard-stem checkpoint without an error, stem left random.
    model = mmseg_backbones.ResNetV1c(depth=18, init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path / "r18.pth")))
    model.init_weights()
    check = compare_loaded(EngineCheck("mmseg"), model.state_dict(), expected, expected)
    assert check.failed and "stem.0.weight" in check.missing and "conv1.weight" in check.unexpected
    # The check that warns about it.
    v1c = {"model": {"type": "EncoderDecoder", "pretrained": str(tmp_path / "r18.pth"),
                     "backbone": {"type": "ResNetV1c", "depth": 18}}}
    (warning,) = check_mmseg_backbone(v1c)
    assert "model.backbone: type=ResNetV1c has a deep stem" in warning and "type='ResNet'" in warning
    standard = {"model": {"backbone": {"type": "ResNet", "depth": 18, "deep_stem": False,
                                       "init_cfg": {"type": "Pretrained", "checkpoint": str(tmp_path / "r18.pth")}}}}
    assert check_mmseg_backbone(standard) == []
    deep_flag = {"model": {"backbone": {"type": "mmseg.ResNet", "depth": 18, "deep_stem": True}}}
    assert len(check_mmseg_backbone(deep_flag, checkpoint=expected)) == 1
    mmseg_default = {"model": {"pretrained": "open-mmlab://resnet50_v1c", "backbone": {"type": "ResNetV1c"}}}
    assert check_mmseg_backbone(mmseg_default) == []  # a deep-stem checkpoint for a deep-stem model is fine
    converse = {"model": {"pretrained": "open-mmlab://resnet50_v1c", "backbone": {"type": "ResNet"}}}
    assert "has a deep stem (ResNetV1c/d)" in check_mmseg_backbone(converse)[0]
    # A config file, read through mmengine's Config, as the segmentation runner and --config pass it.
    (tmp_path / "fcn.py").write_text(f"model = dict(type='EncoderDecoder', pretrained={str(tmp_path / 'r18.pth')!r}, "
                                     "backbone=dict(type='ResNetV1c', depth=18))\n")
    assert len(check_mmseg_backbone(tmp_path / "fcn.py")) == 1


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_detectron2_key_set_matches_build_resnet_backbone(arch: str) -> None:
    pytest.importorskip("detectron2", reason="detectron2 is not installed (CI runs without it)")
    from transfer.checkpoint.verify import detectron2_backbone

    assert set(detectron2_backbone(arch).state_dict()) == expected_detectron2_keys(arch)
