"""Checkpoints in every layout the converter reads, built from a torchvision ResNet (the real key layouts)."""
from __future__ import annotations

import argparse
import atexit
import functools
import pickle
import shutil
import tempfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torchvision


def random_resnet_state(arch: str, seed: int) -> OrderedDict:
    """A randomly initialised torchvision `arch` whose every tensor is distinct (BN affine and statistics randomised).

    A fresh model's BN tensors are all ones or zeros, so swapped BN keys would go unnoticed; here they differ.
    """
    torch.manual_seed(seed)
    model = getattr(torchvision.models, arch)()
    state = model.state_dict()
    g = torch.Generator().manual_seed(seed + 1)
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.randint(1, 10_000, (), generator=g, dtype=torch.long)
        elif key.endswith(("running_var", "bn1.weight", "bn2.weight", "bn3.weight", "downsample.1.weight")):
            state[key] = torch.rand(value.shape, generator=g) + 0.5
        elif key.endswith(("running_mean", ".bias")) and "fc" not in key:
            state[key] = torch.randn(value.shape, generator=g)
    return state


def perturbed(state: dict, seed: int) -> OrderedDict:
    """Another encoder of the same shape whose every value differs (a key/momentum encoder, a teacher)."""
    return OrderedDict((k, v + seed) for k, v in state.items())


def backbone(state: dict) -> OrderedDict:
    """The state without `fc.*`: what every layout stores as its backbone, and what conversion must return."""
    return OrderedDict((k, v) for k, v in state.items() if not k.startswith("fc."))


def _prefixed(prefix: str, state: dict) -> OrderedDict:
    return OrderedDict((prefix + k, v) for k, v in state.items())


def _optimizer(n: int = 2) -> dict:
    return {"state": {i: {"momentum_buffer": torch.randn(3)} for i in range(n)},
            "param_groups": [{"lr": 0.03, "momentum": 0.9, "weight_decay": 1e-4, "params": list(range(n))}]}


def _mlp(prefix: str, dims: tuple[int, ...]) -> OrderedDict:
    out = OrderedDict()
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        out[f"{prefix}{2 * i}.weight"] = torch.randn(b, a) * 0.01
        out[f"{prefix}{2 * i}.bias"] = torch.zeros(b)
    return out


def moco_v2(state: dict, arch: str) -> dict:
    """MoCo v2 main_moco.py: DDP `module.`, query/key encoders with the 2-layer MLP fc, queue, optimizer."""
    dim = state["fc.weight"].shape[1]
    q = backbone(state)
    sd = _prefixed("module.encoder_q.", q)
    sd.update(_mlp("module.encoder_q.fc.", (dim, dim, 128)))
    sd.update(_prefixed("module.encoder_k.", perturbed(q, 1)))
    sd.update(_mlp("module.encoder_k.fc.", (dim, dim, 128)))
    sd["module.queue"] = torch.randn(128, 64)
    sd["module.queue_ptr"] = torch.zeros(1, dtype=torch.long)
    return {"epoch": 200, "arch": arch, "state_dict": sd, "optimizer": _optimizer()}


def moco_v1(state: dict, arch: str) -> dict:
    """MoCo v1: as v2 but a single linear fc to 128."""
    dim = state["fc.weight"].shape[1]
    sd = _prefixed("module.encoder_q.", backbone(state))
    sd["module.encoder_q.fc.weight"], sd["module.encoder_q.fc.bias"] = torch.randn(128, dim), torch.zeros(128)
    sd.update(_prefixed("module.encoder_k.", perturbed(state, 2)))
    sd["module.queue"], sd["module.queue_ptr"] = torch.randn(128, 64), torch.zeros(1, dtype=torch.long)
    return {"epoch": 200, "arch": arch, "state_dict": sd, "optimizer": _optimizer()}


def moco_v3(state: dict, arch: str) -> dict:
    """MoCo v3 ResNet: `module.base_encoder` (fc replaced by an MLP), `module.momentum_encoder`, `module.predictor`."""
    dim = state["fc.weight"].shape[1]
    sd = _prefixed("module.base_encoder.", backbone(state))
    sd.update(_mlp("module.base_encoder.fc.", (dim, 64, 32)))
    sd.update(_prefixed("module.momentum_encoder.", perturbed(backbone(state), 3)))
    sd.update(_mlp("module.predictor.", (32, 64, 32)))
    return {"epoch": 100, "arch": arch, "state_dict": sd, "optimizer": _optimizer(), "scaler": {"scale": 65536.0}}


def pretrain(state: dict, arch: str) -> dict:
    """This project's pretraining checkpoint (contract 2): student backbone and heads, teacher, `pretrain` metadata."""
    sd = _prefixed("student.backbone.", backbone(state))
    sd.update(_mlp("student.global_head.", (state["fc.weight"].shape[1], 64, 32)))
    sd.update(_mlp("student.dense_head.", (state["fc.weight"].shape[1], 32)))
    sd.update(_prefixed("teacher.backbone.", perturbed(backbone(state), 4)))
    sd.update(_mlp("teacher.global_head.", (state["fc.weight"].shape[1], 64, 32)))
    return {"pretrain": {"version": 1, "method": "ssa", "arch": arch, "step": 1000, "epoch": 3},
            "state_dict": sd, "optimizer": _optimizer()}


def densecl(state: dict, arch: str) -> dict:
    """DenseCL / OpenSelfSup: `encoder_q = Sequential(backbone, neck)` aliased as `backbone`, so both names appear."""
    q = backbone(state)
    sd = _prefixed("encoder_q.0.", q)
    sd.update(_mlp("encoder_q.1.mlp.", (state["fc.weight"].shape[1], 64, 32)))
    sd.update(_prefixed("encoder_k.0.", perturbed(q, 5)))
    sd.update(_mlp("encoder_k.1.mlp.", (state["fc.weight"].shape[1], 64, 32)))
    sd.update(_prefixed("backbone.", q))
    sd.update({"queue": torch.randn(128, 64), "queue_ptr": torch.zeros(1, dtype=torch.long),
               "queue2": torch.randn(128, 64), "queue2_ptr": torch.zeros(1, dtype=torch.long)})
    meta = {"epoch": 200, "iter": 250200, "mmcv_version": "0.2.16", "time": "Mon Jan  4 10:00:00 2021"}
    return {"meta": meta, "state_dict": sd, "optimizer": _optimizer()}


def mmselfsup(state: dict, arch: str, ddp: bool = False, with_message_hub: bool = True) -> dict:
    """mmselfsup 1.x (mmengine-saved): backbone/neck/head, EMA target net, numpy objects in `meta` and `message_hub`."""
    pre = "module." if ddp else ""
    q = backbone(state)
    sd = _prefixed(pre + "backbone.", q)
    sd.update(_mlp(pre + "neck.mlp.", (state["fc.weight"].shape[1], 64, 32)))
    sd.update(_prefixed(pre + "target_net.module.0.", perturbed(q, 6)))
    sd[pre + "target_net.steps"] = torch.tensor(1000)
    sd[pre + "head.loss.temperature"] = torch.tensor(0.2)
    meta = {"mmengine_version": "0.7.3", "epoch": 200, "iter": 1000, "seed": np.int64(42),
            "dataset_meta": {"classes": ("a", "b")}, "lr": np.float64(0.3), "hist": np.arange(4, dtype=np.float32),
            "experiment_name": "mocov2_resnet50", "time": "20230101_000000"}
    ckpt = {"meta": meta, "state_dict": sd, "optimizer": _optimizer(),
            "param_schedulers": [{"base_values": [0.03], "last_step": 200}]}
    if with_message_hub:
        from mmengine.logging import HistoryBuffer

        buffer = HistoryBuffer()
        buffer.update(1.5)
        ckpt["message_hub"] = {"log_scalars": {"train/loss": buffer},
                               "runtime_info": {"epoch": 200, "iter": 1000}, "resumed_keys": {"epoch": True}}
    return ckpt


def pixpro(state: dict, arch: str) -> dict:
    """PixPro main_pretrain.py: `{"opt": argparse.Namespace, "model": {module.encoder., module.encoder_k., ...}}`."""
    q = backbone(state)
    sd = _prefixed("module.encoder.", q)
    sd.update(_prefixed("module.encoder_k.", perturbed(q, 7)))
    dim = state["fc.weight"].shape[1]
    for name in ("projector", "projector_k", "projector_instance", "predictor"):
        sd.update(_mlp(f"module.{name}.", (dim, 64, 32)))
    sd["module.value_transform.weight"] = torch.randn(32, 32)
    opt = argparse.Namespace(arch=arch, batch_size=1024, base_lr=1.0, pixpro_p=2.0)
    return {"opt": opt, "model": sd, "optimizer": _optimizer(), "scheduler": {"last_epoch": 100}, "epoch": 100}


def timm_train(state: dict, arch: str) -> dict:
    """timm train.py: `state_dict` (torchvision names), `state_dict_ema` (different values), `args` Namespace."""
    return {"epoch": 99, "arch": arch, "state_dict": OrderedDict(state), "optimizer": _optimizer(), "version": 2,
            "args": argparse.Namespace(model=arch, lr=0.5), "metric": 75.3,
            "state_dict_ema": perturbed(state, 8)}


def torchvision_state(state: dict, arch: str) -> dict:
    """A bare torchvision state dict, classifier included (e.g. `torch.save(model.state_dict())`)."""
    return OrderedDict(state)


def unknown_two_encoders(state: dict, arch: str) -> dict:
    """A layout the converter does not know, with two candidate encoders (`online.`, `target.`)."""
    sd = _prefixed("online.", backbone(state))
    sd.update(_prefixed("target.", perturbed(backbone(state), 9)))
    return {"state_dict": sd}


def detectron2_moco_pkl(state: dict, arch: str) -> dict:
    """What MoCo's convert-pretrain-to-detectron2.py writes (fc keys end up under `stem.`), for the pickle path."""
    out = {}
    for k, v in state.items():
        if "layer" not in k:
            k = "stem." + k
        for t in range(1, 5):
            k = k.replace(f"layer{t}", f"res{t + 1}")
        for t in range(1, 4):
            k = k.replace(f"bn{t}", f"conv{t}.norm")
        k = k.replace("downsample.0", "shortcut").replace("downsample.1", "shortcut.norm")
        out[k] = v.numpy()
    return {"model": out, "__author__": "MOCO", "matching_heuristics": True}


# name -> (builder, file name, expected format name); the backbone of each is `backbone(state)`.
LAYOUTS = {
    "pretrain": (pretrain, "pretrain.pth", "pretrain"),
    "moco_v1": (moco_v1, "moco_v1.pth.tar", "moco"),
    "moco_v2": (moco_v2, "moco_v2.pth.tar", "moco"),
    "moco_v3": (moco_v3, "moco_v3.pth.tar", "moco_v3"),
    "densecl": (densecl, "densecl.pth", "mmselfsup"),
    "mmselfsup": (mmselfsup, "mmselfsup.pth", "mmselfsup"),
    "mmselfsup_ddp": (lambda s, a: mmselfsup(s, a, ddp=True, with_message_hub=False), "mmselfsup_ddp.pth",
                      "mmselfsup"),
    "pixpro": (pixpro, "pixpro.pth", "pixpro"),
    "timm": (timm_train, "timm.pth.tar", "timm"),
    "torchvision": (torchvision_state, "torchvision.pth", "torchvision"),
    "detectron2": (detectron2_moco_pkl, "moco_d2.pkl", "detectron2"),
}


# Layouts outside the conversion matrix (refused without --prefix).
OTHER_LAYOUTS = {"unknown_two_encoders": (unknown_two_encoders, "two_encoders.pth", None)}


def write_layout(name: str, state: dict, arch: str, folder: Path) -> Path:
    """Write the checkpoint of layout `name` into `folder` the way its tool does (torch.save, or pickle for .pkl)."""
    build, filename, _ = {**LAYOUTS, **OTHER_LAYOUTS}[name]
    path = folder / filename
    obj = build(state, arch)
    if filename.endswith(".pkl"):
        with open(path, "wb") as f:
            pickle.dump(obj, f)
    else:
        torch.save(obj, path)
    return path


_FOLDER: list[Path] = []


@functools.lru_cache(maxsize=None)
def resnet_state(arch: str) -> OrderedDict:
    """`random_resnet_state(arch, seed=0)`, built once per test session."""
    return random_resnet_state(arch, seed=0)


@functools.lru_cache(maxsize=None)
def layout_path(name: str, arch: str) -> Path:
    """The checkpoint of layout `name` for `arch`, written once per test session into a temporary folder."""
    if not _FOLDER:
        _FOLDER.append(Path(tempfile.mkdtemp(prefix="convert-layouts-")))
        atexit.register(shutil.rmtree, _FOLDER[0], ignore_errors=True)
    folder = _FOLDER[0] / arch
    folder.mkdir(exist_ok=True)
    return write_layout(name, resnet_state(arch), arch, folder)


def detectron2_key(tv_key: str) -> str:
    """The detectron2 name of a torchvision key, by the string rules of protocols.md (independent of the library)."""
    k = tv_key if "layer" in tv_key else "stem." + tv_key
    for t in range(1, 5):
        k = k.replace(f"layer{t}", f"res{t + 1}")
    for t in range(1, 4):
        k = k.replace(f"bn{t}", f"conv{t}.norm")
    return k.replace("downsample.0", "shortcut").replace("downsample.1", "shortcut.norm")


BLOCKS = {"resnet18": ("basic", (2, 2, 2, 2)), "resnet34": ("basic", (3, 4, 6, 3)),
          "resnet50": ("bottleneck", (3, 4, 6, 3)), "resnet101": ("bottleneck", (3, 4, 23, 3))}
BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def expected_detectron2_keys(arch: str) -> set[str]:
    """Every key detectron2's ResNet backbone has for `arch`, written out from the architecture."""
    block, counts = BLOCKS[arch]
    convs = 3 if block == "bottleneck" else 2
    keys = {"stem.conv1.weight"} | {f"stem.conv1.norm.{s}" for s in BN}
    for stage, n in zip(range(2, 6), counts):
        for b in range(n):
            for c in range(1, convs + 1):
                keys.add(f"res{stage}.{b}.conv{c}.weight")
                keys |= {f"res{stage}.{b}.conv{c}.norm.{s}" for s in BN}
            # The first block of a stage changes width or stride: a projection shortcut (not in res2 of basic nets).
            if b == 0 and (stage > 2 or block == "bottleneck"):
                keys.add(f"res{stage}.{b}.shortcut.weight")
                keys |= {f"res{stage}.{b}.shortcut.norm.{s}" for s in BN}
    return keys
