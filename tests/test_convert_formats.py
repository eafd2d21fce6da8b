"""Every source layout -> every target, bit for bit; layout and depth detection; refusing what is not a ResNet."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from checkpoint_layouts import (LAYOUTS, backbone, detectron2_key, expected_detectron2_keys, layout_path,
                                perturbed, resnet_state)

from transfer.checkpoint import convert_checkpoint, detect_arch, load_backbone
from transfer.checkpoint.convert import write_backbone
from transfer.errors import UserError

ARCHS = ["resnet18", "resnet50"]
# (target, backbone. prefix)
TARGETS = [("detectron2", False), ("mmlab", False), ("mmlab", True), ("torchvision", False)]


def assert_same_tensors(got: dict, expected: dict) -> None:
    """Same keys, and every tensor with the same dtype, shape and bits."""
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key].dtype == value.dtype, key
        assert torch.equal(got[key], value), key


def check_target_file(path: Path, to: str, prefix: bool, expected: dict, arch: str) -> None:
    """Read a converted file the way its engine would and compare it with the expected backbone."""
    if to == "detectron2":
        with open(path, "rb") as f:
            obj = pickle.load(f)  # noqa: S301 -- our own test output
        assert set(obj) == {"model", "__author__", "matching_heuristics"}
        assert obj["matching_heuristics"] is True
        assert isinstance(obj["__author__"], str) and obj["__author__"] != "Caffe2"  # Caffe2 would trigger renaming
        assert set(obj["model"]) == expected_detectron2_keys(arch)
        assert all(isinstance(v, np.ndarray) for v in obj["model"].values())
        got = {k: torch.from_numpy(v) for k, v in obj["model"].items()}
        assert_same_tensors(got, {detectron2_key(k): v for k, v in expected.items()})
        return
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if to == "mmlab":
        assert set(obj) == {"state_dict", "meta"}
        json.dumps(obj["meta"])  # JSON-safe metadata, nothing pickled besides tensors
        assert obj["meta"]["arch"] == arch
        names = {("backbone." if prefix else "") + k: v for k, v in expected.items()}
        assert_same_tensors(dict(obj["state_dict"]), names)
    else:
        assert_same_tensors(dict(obj), expected)


def matrix() -> list[tuple[str, str, list[tuple[str, bool]]]]:
    """(layout, arch, targets): ResNet-18 from every layout to every target; ResNet-50 from every layout to one
    target in turn (each target from 2-3 layouts), which keeps the suite's time in budget."""
    cases = [(layout, "resnet18", TARGETS) for layout in LAYOUTS]
    cases += [(layout, "resnet50", [TARGETS[i % len(TARGETS)]]) for i, layout in enumerate(LAYOUTS)]
    return cases


@pytest.mark.parametrize(("layout", "arch", "targets"), matrix(),
                         ids=[f"{c[0]}-{c[1]}-{'+'.join(t[0] + ('-prefix' if t[1] else '') for t in c[2])}"
                              for c in matrix()])
def test_every_layout_to_every_target_is_bit_identical(layout: str, arch: str, targets: list, tmp_path: Path) -> None:
    expected = backbone(resnet_state(arch))
    src = layout_path(layout, arch)
    state_dict, info = load_backbone(src)
    assert info["source"] == LAYOUTS[layout][2]
    assert info["arch"] == arch
    assert_same_tensors(state_dict, expected)
    for to, prefix in targets:
        dst = tmp_path / f"{to}{'-prefix' if prefix else ''}{'.pkl' if to == 'detectron2' else '.pth'}"
        # convert_checkpoint = load_backbone + write_backbone; the source is read once here to save time.
        report = write_backbone(state_dict, info, dst, to, backbone_prefix=prefix, verify=False)
        assert report["ok"] and report["arch"] == arch and report["num_tensors"] == len(expected)
        check_target_file(dst, to, prefix, expected, arch)
    assert len(list(tmp_path.iterdir())) == len(targets)  # no temporary files left


def test_query_encoder_student_and_online_encoder_are_taken_never_the_others() -> None:
    expected = backbone(resnet_state("resnet18"))
    for layout, other in [("moco_v2", "state_dict.module.encoder_k"), ("pretrain", "state_dict.teacher.backbone"),
                          ("pixpro", "model.module.encoder_k"), ("densecl", "state_dict.encoder_k"),
                          ("moco_v3", "state_dict.module.momentum_encoder"), ("timm", "state_dict_ema")]:
        state_dict, info = load_backbone(layout_path(layout, "resnet18"))
        assert torch.equal(state_dict["conv1.weight"], expected["conv1.weight"]), layout
        assert other in info["dropped"], (layout, info["dropped"])


def test_dropped_groups_and_counts_are_reported() -> None:
    _, info = load_backbone(layout_path("moco_v2", "resnet18"))
    assert info["dropped"]["state_dict.module.encoder_q.fc"] == 4  # the v2 MLP head: 2 weights, 2 biases
    assert info["dropped"]["state_dict.module.encoder_k"] == len(backbone(resnet_state("resnet18"))) + 4
    assert {"state_dict.module.queue", "state_dict.module.queue_ptr"} <= set(info["dropped"])
    assert info["num_parameters"] == sum(p.numel() for n, p in torchvision.models.resnet18().named_parameters()
                                         if not n.startswith("fc."))
    _, info = load_backbone(layout_path("pretrain", "resnet18"))
    assert {"state_dict.student.global_head", "state_dict.student.dense_head", "state_dict.teacher.backbone"} \
        <= set(info["dropped"])
    assert info["pretrain"]["method"] == "ssa"


def test_a_pretraining_checkpoint_from_before_the_renaming_still_reads(tmp_path) -> None:
    record = torch.load(layout_path("pretrain", "resnet18"), weights_only=True)
    record["ssa"] = record.pop("pretrain")  # the metadata's old name
    torch.save(record, tmp_path / "old.pth")
    state, info = load_backbone(tmp_path / "old.pth")
    assert info["source"] == "pretrain" and info["pretrain"]["method"] == "ssa"
    assert torch.equal(state["conv1.weight"], record["state_dict"]["student.backbone.conv1.weight"])


def test_unknown_layout_with_two_encoders_is_refused_and_prefix_picks_one() -> None:
    src = layout_path("unknown_two_encoders", "resnet18")
    refused = r"2 candidate encoders.*'state_dict\.online\.'.*'state_dict\.target\.'.*--prefix"
    with pytest.raises(UserError, match=refused):
        load_backbone(src)
    expected = backbone(resnet_state("resnet18"))
    state_dict, info = load_backbone(src, prefix="online.")  # container `state_dict.` is found by itself
    assert_same_tensors(state_dict, expected)
    assert info["source"] == "generic" and info["prefix"] == "state_dict.online."
    state_dict, _ = load_backbone(src, prefix="state_dict.target")
    assert_same_tensors(state_dict, perturbed(expected, 9))
    with pytest.raises(UserError, match="no ResNet backbone under prefix 'neck.'.*candidate encoders"):
        load_backbone(src, prefix="neck.")


def test_single_unknown_encoder_is_taken(tmp_path: Path) -> None:
    expected = backbone(resnet_state("resnet18"))
    torch.save({"state_dict": {f"encoder.{k}": v for k, v in expected.items()} | {"head.weight": torch.ones(2)}},
               tmp_path / "simclr.pth")
    state_dict, info = load_backbone(tmp_path / "simclr.pth")
    assert info["source"] == "generic" and info["prefix"] == "state_dict.encoder."
    assert_same_tensors(state_dict, expected)


def test_forced_source_format() -> None:
    state_dict, info = load_backbone(layout_path("torchvision", "resnet18"), source="timm")
    assert info["source"] == "timm"
    assert_same_tensors(state_dict, backbone(resnet_state("resnet18")))
    with pytest.raises(UserError, match=r"is not a moco checkpoint.*'model\.module\.encoder\.'.*--prefix"):
        load_backbone(layout_path("pixpro", "resnet18"), source="moco")
    with pytest.raises(UserError, match="unknown source format 'byol'"):
        load_backbone(layout_path("pixpro", "resnet18"), source="byol")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_comes_through(dtype: torch.dtype, tmp_path: Path) -> None:
    expected = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in backbone(resnet_state("resnet18")).items()}
    torch.save(expected, tmp_path / "half.pth")
    report = convert_checkpoint(tmp_path / "half.pth", tmp_path / "half-tv.pth", "torchvision", verify=False)
    assert report["dtypes"] == sorted([str(dtype).replace("torch.", ""), "int64"])
    check_target_file(tmp_path / "half-tv.pth", "torchvision", False, expected, "resnet18")
    report = convert_checkpoint(tmp_path / "half.pth", tmp_path / "half.pkl", "detectron2")
    with open(tmp_path / "half.pkl", "rb") as f:
        model = pickle.load(f)["model"]  # noqa: S301
    if dtype == torch.float16:
        assert model["stem.conv1.weight"].dtype == np.float16 and not report["notes"]
    else:  # numpy has no bfloat16: stored as float32, which holds every bfloat16 exactly, and said so
        assert model["stem.conv1.weight"].dtype == np.float32 and "bfloat16" in report["notes"][0]
    for key, value in expected.items():
        assert torch.equal(torch.from_numpy(model[detectron2_key(key)]), value.float() if value.is_floating_point()
                           else value)


@pytest.mark.parametrize("arch", ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"])
def test_depth_is_detected_from_the_keys(arch: str) -> None:
    with torch.device("meta"):
        state = getattr(torchvision.models, arch)().state_dict()
    assert detect_arch(backbone(state)) == arch


@pytest.mark.parametrize("arch", ["wide_resnet50_2", "resnext50_32x4d"])
def test_resnet_variants_with_other_widths_are_refused(arch: str) -> None:
    with torch.device("meta"):
        state = getattr(torchvision.models, arch)().state_dict()
    with pytest.raises(UserError, match="not a standard torchvision resnet50.*with another shape"):
        detect_arch(backbone(state))


def test_deep_stem_is_refused(tmp_path: Path) -> None:
    state = backbone(resnet_state("resnet18"))
    deep = {k: v for k, v in state.items() if not k.startswith(("conv1.", "bn1."))}
    deep.update({"conv1.0.weight": torch.zeros(32, 3, 3, 3), "conv1.1.weight": torch.zeros(32)})  # timm resnet18d
    torch.save(deep, tmp_path / "resnet18d.pth")
    with pytest.raises(UserError, match="deep stem"):
        load_backbone(tmp_path / "resnet18d.pth")


def test_legacy_torch_format_and_views(tmp_path: Path) -> None:
    from checkpoint_layouts import moco_v2

    state = resnet_state("resnet18")
    torch.save(moco_v2(state, "resnet18"), tmp_path / "old.pth.tar", _use_new_zipfile_serialization=False)
    state_dict, info = load_backbone(tmp_path / "old.pth.tar")  # torch < 1.6 files, e.g. MoCo's released ones
    assert info["source"] == "moco"
    assert_same_tensors(state_dict, backbone(state))
    flat = torch.cat([v.flatten().float() for v in backbone(state).values()])  # all weights as views of one buffer
    views, offset = {}, 0
    for key, value in backbone(state).items():
        views[key] = flat[offset: offset + value.numel()].view(value.shape).to(value.dtype) \
            if value.is_floating_point() else value
        offset += value.numel()
    torch.save(views, tmp_path / "views.pth")
    report = convert_checkpoint(tmp_path / "views.pth", tmp_path / "out.pth", "torchvision", verify=False)
    assert report["output"]["bytes"] < 1.1 * sum(v.numel() * v.element_size() for v in views.values())


def test_safe_loading_allows_only_listed_objects(tmp_path: Path) -> None:
    from mmengine.logging import HistoryBuffer

    state = dict(backbone(resnet_state("resnet18")))
    # mmengine's HistoryBuffer needs getattr(HistoryBuffer, name): allowed for it, refused for anything else.
    torch.save({"state_dict": state, "message_hub": {"h": HistoryBuffer()}, "hook": torch.zeros(1).add},
               tmp_path / "x.pth")
    with pytest.raises(UserError, match=r"pickled Python object \(builtins\.getattr\).*--trust-pickle"):
        load_backbone(tmp_path / "x.pth")
    state_dict, _ = load_backbone(tmp_path / "x.pth", trust_pickle=True)
    assert_same_tensors(state_dict, state)


def test_missing_destination_folders_are_created(tmp_path: Path) -> None:
    dst = tmp_path / "a" / "b" / "r18.pkl"
    convert_checkpoint(layout_path("torchvision", "resnet18"), dst, "detectron2", verify=False)
    assert dst.is_file() and list(dst.parent.iterdir()) == [dst]
