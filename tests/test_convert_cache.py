"""ensure_converted: converted files pass through as they are, others are converted once into the cache."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from checkpoint_layouts import backbone, layout_path, resnet_state

import transfer.checkpoint.cache as cache_module
from transfer.checkpoint import convert_checkpoint, ensure_converted, is_converted
from transfer.errors import UserError


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The ResNet-18 MoCo checkpoint converted to each target (and mmlab with the `backbone.` prefix)."""
    folder = tmp_path_factory.mktemp("converted")
    src = layout_path("moco_v2", "resnet18")
    out = {"detectron2": folder / "r18.pkl", "mmlab": folder / "r18-mmlab.pth", "torchvision": folder / "r18-tv.pth",
           "mmlab-prefix": folder / "r18-mmlab-prefix.pth"}
    for name, path in out.items():
        convert_checkpoint(src, path, name.split("-")[0], backbone_prefix=name.endswith("prefix"), verify=False)
    return out


def test_converted_files_are_returned_as_they_are(converted: dict[str, Path], tmp_path: Path) -> None:
    for to in ("detectron2", "mmlab", "torchvision"):
        assert ensure_converted(converted[to], to, tmp_path / "cache") == converted[to]
    # mmengine reads a bare torchvision state dict too; detectron2 reads neither.
    assert ensure_converted(converted["torchvision"], "mmlab", tmp_path / "cache") == converted["torchvision"]
    assert not is_converted(converted["mmlab"], "detectron2")
    assert not is_converted(converted["mmlab"], "torchvision")  # under `state_dict`: not a bare state dict
    assert not (tmp_path / "cache").exists()


def test_other_checkpoints_are_converted_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = layout_path("pretrain", "resnet18")
    cache = tmp_path / "cache"
    out = ensure_converted(src, "mmlab", cache)
    assert out.parent == cache and out.suffix == ".pth"
    state = torch.load(out, weights_only=True)["state_dict"]
    assert torch.equal(state["layer2.1.conv1.weight"], backbone(resnet_state("resnet18"))["layer2.1.conv1.weight"])
    mtime = out.stat().st_mtime_ns

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("converted again")

    monkeypatch.setattr(cache_module, "convert_checkpoint", fail)
    assert ensure_converted(src, "mmlab", cache) == out  # a re-run finds it by the source's sha256
    assert out.stat().st_mtime_ns == mtime
    with pytest.raises(AssertionError, match="converted again"):
        ensure_converted(src, "detectron2", cache)  # another target is another file


def test_cache_follows_the_source_content(tmp_path: Path) -> None:
    src = tmp_path / "ckpt.pth"
    state = dict(backbone(resnet_state("resnet18")))
    torch.save({"state_dict": {f"module.encoder_q.{k}": v for k, v in state.items()}}, src)
    first = ensure_converted(src, "detectron2", tmp_path / "cache")
    state["conv1.weight"] = state["conv1.weight"] + 1  # the same name, new weights (e.g. a later epoch)
    torch.save({"state_dict": {f"module.encoder_q.{k}": v for k, v in state.items()}}, src)
    second = ensure_converted(src, "detectron2", tmp_path / "cache")
    assert first != second and first.suffix == second.suffix == ".pkl"


def test_prefixed_mmlab_file_is_reconverted_for_init_cfg(converted: dict[str, Path], tmp_path: Path) -> None:
    # `backbone.` keys suit `load_from`, not a backbone's init_cfg: the runner gets a plain copy.
    out = ensure_converted(converted["mmlab-prefix"], "mmlab", tmp_path / "cache")
    assert out != converted["mmlab-prefix"]
    assert "conv1.weight" in torch.load(out, weights_only=True)["state_dict"]


def test_unreadable_file_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "x.pth").write_text("nope")
    with pytest.raises(UserError, match="is not a checkpoint"):
        ensure_converted(tmp_path / "x.pth", "mmlab", tmp_path / "cache")
    with pytest.raises(UserError, match="unknown target 'caffe'"):
        ensure_converted(layout_path("torchvision", "resnet18"), "caffe", tmp_path / "cache")
