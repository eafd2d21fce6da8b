"""The checkpoint layouts the converter reads, and how each one's backbone is found.

Every tensor of a checkpoint is named by its path through the nested dicts
(`state_dict.module.encoder_q.conv1.weight`); a layout is the prefix under which
its backbone sits. Known layouts follow their own convention (MoCo: the query
encoder, never the key encoder; our pretraining: the student, never the teacher).
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from transfer.checkpoint.detectron2_names import to_torchvision_name
from transfer.errors import UserError

# A ResNet encoder is recognised by this key under its prefix (torchvision and detectron2 names).
_TV_ANCHOR = "layer1.0.conv1.weight"
_D2_ANCHOR = "res2.0.conv1.weight"
# The first name of a torchvision ResNet key.
_BACKBONE_ROOT = re.compile(r"^(conv1|bn1|layer[1-4]|fc)$")
# Where training scripts keep the model state inside a checkpoint dict.
CONTAINERS = ("state_dict", "model", "state_dict_ema", "model_ema", "module", "net", "network", "teacher")


@dataclass(frozen=True)
class SourceFormat:
    """A known checkpoint layout: its name, what writes it, and the prefixes its backbone may sit under."""

    name: str
    description: str
    prefixes: tuple[str, ...]
    # Extra condition on the checkpoint object for automatic detection (e.g. the `pretrain` metadata).
    marker: Callable[[Any], bool] = field(default=lambda ckpt: True)
    detectron2_names: bool = False


def _top(ckpt: Any, *keys: str) -> bool:
    """True when the checkpoint dict has any of `keys` at its top level."""
    return isinstance(ckpt, Mapping) and any(k in ckpt for k in keys)


def _timm_marker(ckpt: Any) -> bool:
    """Whether a checkpoint looks written by timm's train.py."""
    # timm's train.py saves {"epoch", "arch", "state_dict", "optimizer", "version", "args", ["state_dict_ema"]}.
    return _top(ckpt, "state_dict_ema", "model_ema") or (_top(ckpt, "state_dict") and _top(ckpt, "version", "metric"))


_TV_PREFIXES = ("", "module.", "state_dict.", "state_dict.module.", "model.", "model.module.")

# Order matters: the first format whose marker holds and whose prefix holds a ResNet wins.
SOURCES: dict[str, SourceFormat] = {f.name: f for f in (
    SourceFormat("pretrain", "this project's pretraining checkpoints (SSA, SEED, MoCo v2 runs): the student backbone",
                 ("state_dict.student.backbone.", "state_dict.module.student.backbone."),
                 marker=lambda c: _top(c, "pretrain", "ssa")),  # "ssa": the metadata's name before the renaming
    SourceFormat("moco", "MoCo v1/v2 main_moco.py: the query encoder `module.encoder_q.`",
                 ("state_dict.module.encoder_q.", "state_dict.encoder_q.")),
    SourceFormat("moco_v3", "MoCo v3 ResNet: the base encoder `module.base_encoder.`",
                 ("state_dict.module.base_encoder.", "state_dict.base_encoder.")),
    SourceFormat("pixpro", "PixPro: the online encoder `module.encoder.` under `model`",
                 ("model.module.encoder.", "model.encoder.")),
    SourceFormat("mmselfsup", "DenseCL / OpenSelfSup / mmselfsup (OpenMMLab): `backbone.` under `state_dict`",
                 ("state_dict.backbone.", "state_dict.module.backbone.", "backbone.")),
    SourceFormat("detectron2", "detectron2 .pkl in the MoCo convention (`stem.`, `res2..5`)",
                 ("model.", ""), detectron2_names=True),
    SourceFormat("timm", "timm ResNet (train.py checkpoint or state dict; torchvision names)",
                 ("state_dict.", "state_dict_ema.", "model_ema.", "state_dict.module.", ""), marker=_timm_marker),
    SourceFormat("torchvision", "torchvision ResNet state dict (bare, or under `state_dict`/`model`)", _TV_PREFIXES),
)}


def flatten_tensors(obj: Any, prefix: str = "") -> dict[str, torch.Tensor | np.ndarray]:
    """Every tensor or numpy array in nested dicts, keyed by its dotted path."""
    out: dict[str, Any] = {}
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        out[prefix[:-1]] = obj
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            out.update(flatten_tensors(v, f"{prefix}{k}."))
    return out


def find_encoders(flat: Mapping[str, Any]) -> list[str]:
    """The prefixes under which a ResNet encoder sits (torchvision or detectron2 names), in file order."""
    found = []
    for key in flat:
        for anchor in (_TV_ANCHOR, _D2_ANCHOR):
            if key.endswith(anchor) and (len(key) == len(anchor) or key[-len(anchor) - 1] == "."):
                found.append(key[: len(key) - len(anchor)])
    return found


def _is_d2(flat: Mapping[str, Any], prefix: str) -> bool:
    return prefix + _D2_ANCHOR in flat


def _has_encoder(flat: Mapping[str, Any], prefix: str) -> bool:
    return prefix + _TV_ANCHOR in flat or prefix + _D2_ANCHOR in flat


def detect_source(ckpt: Any, flat: Mapping[str, Any], origin: str) -> tuple[SourceFormat, str]:
    """The known layout of a checkpoint and the full prefix of its backbone; refuses an ambiguous unknown one."""
    for fmt in SOURCES.values():
        if not fmt.marker(ckpt):
            continue
        for p in fmt.prefixes:
            if _has_encoder(flat, p) and _is_d2(flat, p) == fmt.detectron2_names:
                return fmt, p
    encoders = find_encoders(flat)
    if len(encoders) == 1:
        generic = SourceFormat("generic", "an unknown layout with a single ResNet encoder", (encoders[0],),
                               detectron2_names=_is_d2(flat, encoders[0]))
        return generic, encoders[0]
    if not encoders:
        raise UserError(no_backbone_message(flat, origin))
    raise UserError(f"{origin}: unknown checkpoint layout with {len(encoders)} candidate encoders "
                    f"({', '.join(repr(e) for e in encoders)}); pick one with --prefix (e.g. --prefix {encoders[0]!r})")


def resolve_prefix(flat: Mapping[str, Any], prefix: str, origin: str) -> str:
    """The full path prefix meant by a user's `--prefix` (given with or without its container, e.g. `state_dict.`)."""
    prefix = prefix if not prefix or prefix.endswith(".") else prefix + "."
    options = [prefix] + [f"{c}.{prefix}" for c in CONTAINERS]
    for p in options:
        if _has_encoder(flat, p):
            return p
    encoders = find_encoders(flat)
    hint = f"candidate encoders: {', '.join(repr(e) for e in encoders)}" if encoders else "it holds no ResNet encoder"
    raise UserError(f"{origin}: no ResNet backbone under prefix {prefix!r} ({hint})")


def no_backbone_message(flat: Mapping[str, Any], origin: str) -> str:
    """Why a checkpoint has no usable backbone: no tensors at all, or tensors of some other model."""
    if not flat:
        return f"{origin} holds no tensors (no model weights); give the checkpoint the pretraining wrote"
    names = list(flat)
    if any(re.search(r"(^|\.)(blocks|cls_token|pos_embed|patch_embed)(\.|$)", k) for k in names):
        kind = "a Vision Transformer"
    else:
        kind = "no ResNet"
    sample = ", ".join(names[:3])
    return (f"{origin} holds {kind} ({len(names)} tensors, e.g. {sample}); no ResNet backbone keys "
            "(`layer1.0.conv1.weight`) found: only ResNet-18/34/50/101/152 checkpoints can be converted")


def take_backbone(flat: Mapping[str, Any], prefix: str,
                  d2_names: bool) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """The backbone under `prefix` in torchvision names (no `fc.*`), and the dropped tensors counted by group."""
    backbone: dict[str, torch.Tensor] = {}
    dropped: Counter[str] = Counter()
    for key, value in flat.items():
        if not key.startswith(prefix):
            dropped[_group(key)] += 1
            continue
        name = key[len(prefix):]
        if d2_names:
            try:
                name = to_torchvision_name(name)
            except KeyError:
                dropped[prefix + name.split(".", 1)[0] + (".fc" if ".fc." in name else "")] += 1
                continue
        if name.startswith("fc.") or name == "fc":
            dropped[prefix + "fc"] += 1
            continue
        backbone[name] = _as_tensor(value)
    return backbone, dict(dropped)


def _as_tensor(value: torch.Tensor | np.ndarray) -> torch.Tensor:
    """A CPU tensor with the same bits (numpy arrays from detectron2 .pkl files become tensors)."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.array(value, copy=True))
    value = value.detach().cpu()
    if value.untyped_storage().nbytes() != value.numel() * value.element_size() or not value.is_contiguous():
        value = value.clone(memory_format=torch.contiguous_format)  # a view would save its whole storage
    return value


def _group(key: str) -> str:
    """The group a dropped key belongs to: `state_dict.module.encoder_k`, `state_dict.module.queue`, `optimizer`."""
    parts = key.split(".")
    i = 0
    if parts[0] in CONTAINERS and len(parts) > 1:
        if _BACKBONE_ROOT.match(parts[1]):
            return parts[0]  # a whole second state dict, e.g. timm's `state_dict_ema`
        i += 1
    if i < len(parts) - 1 and parts[i] == "module":
        i += 1
    if i < len(parts) - 2 and parts[i] in ("student", "teacher"):
        i += 1  # SSA: `student.global_head` versus `student.backbone`
    return ".".join(parts[: i + 1])
