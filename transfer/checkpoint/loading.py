"""Any supported checkpoint -> the canonical backbone state dict (torchvision ResNet names, no `fc.*`)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from transfer.checkpoint.reading import describe_object, read_checkpoint
from transfer.checkpoint.resnet import detect_arch, parameter_count
from transfer.checkpoint.sources import (SOURCES, SourceFormat, detect_source, find_encoders, flatten_tensors,
                                         no_backbone_message, resolve_prefix, take_backbone)
from transfer.errors import UserError


def load_backbone(path: str | os.PathLike, source: str | None = None, prefix: str | None = None,
                  trust_pickle: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint and return `(state_dict, info)`: the backbone in torchvision names, CPU tensors.

    `source` forces a layout (a key of `SOURCES`), `prefix` picks the encoder by its key
    prefix; `info` holds `source`, `arch`, `prefix`, `dropped` (tensor count per dropped
    group), `num_tensors`, `num_parameters` and the source's own metadata when it has some.
    """
    path = Path(path)
    origin = str(path)
    ckpt = read_checkpoint(path, trust_pickle=trust_pickle)
    if not isinstance(ckpt, dict):
        raise UserError(f"{origin} is not a checkpoint: it holds {describe_object(ckpt)}, not a dict of weights")
    flat = flatten_tensors(ckpt)
    if not flat:
        raise UserError(no_backbone_message(flat, origin))
    fmt, full_prefix = _choose(ckpt, flat, source, prefix, origin)
    state_dict, dropped = take_backbone(flat, full_prefix, fmt.detectron2_names)
    if not state_dict:
        raise UserError(no_backbone_message({}, origin))
    arch = detect_arch(state_dict, origin=f"{origin} (prefix {full_prefix!r})")
    info: dict[str, Any] = {
        "path": origin,
        "source": fmt.name,
        "source_description": fmt.description,
        "arch": arch,
        "prefix": full_prefix,
        "dropped": dropped,
        "num_tensors": len(state_dict),
        "num_parameters": parameter_count(state_dict),
        "dtypes": sorted({str(v.dtype).replace("torch.", "") for v in state_dict.values()}),
    }
    meta = ckpt.get("pretrain", ckpt.get("ssa"))  # "ssa": the metadata's name before the renaming
    if fmt.name == "pretrain" and isinstance(meta, dict):
        info["pretrain"] = {k: v for k, v in meta.items() if isinstance(v, (str, int, float, bool))}
    return state_dict, info


def _choose(ckpt: dict, flat: dict, source: str | None, prefix: str | None, origin: str) -> tuple[SourceFormat, str]:
    """The layout and the full key prefix of the backbone: forced by the user, or detected."""
    if source is not None and source not in SOURCES:
        raise UserError(f"unknown source format {source!r}; choose one of: {', '.join(SOURCES)}")
    if prefix is not None:
        full = resolve_prefix(flat, prefix, origin)
        if source is not None:
            return SOURCES[source], full
        d2 = full + "res2.0.conv1.weight" in flat
        return SourceFormat("generic", f"the encoder under --prefix {prefix!r}", (full,), detectron2_names=d2), full
    if source is None:
        return detect_source(ckpt, flat, origin)
    fmt = SOURCES[source]
    for p in fmt.prefixes:
        anchor = "res2.0.conv1.weight" if fmt.detectron2_names else "layer1.0.conv1.weight"
        if p + anchor in flat:
            return fmt, p
    encoders = find_encoders(flat)
    if not encoders:
        raise UserError(no_backbone_message(flat, origin))
    expected = ", ".join(repr(p) for p in fmt.prefixes)
    found = ", ".join(repr(e) for e in encoders)
    raise UserError(f"{origin} is not a {source} checkpoint (no backbone under {expected}); "
                    f"it has encoders under {found}: drop --from, or pick one with --prefix")
