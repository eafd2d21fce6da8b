"""The pretraining checkpoint (contract 2): the model state, everything a bit-exact resume needs, written atomically.

    {"pretrain": {"version": 1, "method": "ssa" | "seed" | "moco_v2", "arch": "resnet18", "step": int,
                  "epoch": int, "variant": str, "teacher_arch": str, "teacher": str | None, "config": {...}},
     "state_dict": {"student.backbone.<torchvision key>": ..., "student.heads.*": ...,
                    "teacher.*": ..., "queue.*": ..., "aggregate_queue.*": ...},
     "optimizer": <optimizer state dict>, "rng": {...}}

Every method writes it (the metadata says which). Only tensors, Python scalars,
strings, lists and dicts: it loads with `torch.load(weights_only=True)`.
`tools/convert_ckpt.py` reads it as source `pretrain` (it takes `student.backbone.`
and never `teacher.`). Checkpoints written before the renaming (metadata `ssa`,
queue `ssa_queue.*`, config section `ssa` and `loss.ssa_weight`) are read through
`upgrade_record`.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch

from transfer.checkpoint.reading import verify_archive
from transfer.errors import UserError
from transfer.fileio import atomic_path
from transfer.rng import rng_state

VERSION = 1
META = "pretrain"  # the top-level key of the metadata
# Names before the renaming -> now, for the checkpoints written before it.
_OLD_META = "ssa"
_OLD_STATE_PREFIXES = {"ssa_queue.": "aggregate_queue."}
LAST = "checkpoint_last.pth"    # overwritten every train.save_every steps: what --resume continues from
FINAL = "checkpoint_final.pth"  # the end of the schedule


def save_checkpoint(path: str | os.PathLike, meta: dict[str, Any], state_dict: dict[str, torch.Tensor],
                    optimizer: dict[str, Any] | None = None) -> Path:
    """Write the checkpoint atomically (a crash mid-write leaves the previous file intact)."""
    path = Path(path)
    record = {META: {"version": VERSION, **meta},
              "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
              "optimizer": optimizer, "rng": rng_state()}
    with atomic_path(path) as tmp:
        torch.save(record, tmp)
    return path


def link_checkpoint(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Make `dst` the same checkpoint as `src` without writing it again (a hard link; a copy where links fail)."""
    src, dst = Path(src), Path(dst)
    with atomic_path(dst) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
    return dst


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a pretraining checkpoint (weights only: no code runs), with a clear error if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    verify_archive(path)  # torch.load does not check the archive's CRCs: a damaged byte would resume silently
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same advice
        raise UserError(f"cannot read checkpoint {path}: {e}") from None
    if not isinstance(record, dict) or not ({META, _OLD_META} & set(record)) or "state_dict" not in record:
        raise UserError(f"{path} is not a pretraining checkpoint (no {META!r} metadata); "
                        "resume needs the checkpoint_last.pth a run wrote")
    record = upgrade_record(record)
    if record[META].get("version") != VERSION:
        raise UserError(f"{path} has pretraining checkpoint version {record[META].get('version')}, "
                        f"this code reads {VERSION}")
    return record


def upgrade_record(record: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint written before the renaming, under today's names (a current one is returned as it is)."""
    if _OLD_META not in record or META in record:
        return record
    record = dict(record)
    meta = dict(record.pop(_OLD_META))
    config = meta.get("config")
    if isinstance(config, dict) and "ssa" in config:
        config = {("aggregation" if k == "ssa" else k): v for k, v in config.items()}
        loss = config.get("loss", {})
        config["loss"] = {("aggregation_weight" if k == "ssa_weight" else k): v for k, v in loss.items()}
        meta["config"] = config
    record[META] = meta
    state = {}
    for key, value in record["state_dict"].items():
        for old, new in _OLD_STATE_PREFIXES.items():
            if key.startswith(old):
                key = new + key[len(old):]
        state[key] = value
    record["state_dict"] = state
    return record
