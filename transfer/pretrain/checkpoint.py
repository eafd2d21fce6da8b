"""The SSA checkpoint (contract 2): the model state, everything a bit-exact resume needs, written atomically.

    {"ssa": {"version": 1, "method": "ssa" | "seed" | "moco_v2", "arch": "resnet18", "step": int,
             "epoch": int, "variant": str, "teacher_arch": str, "teacher": str | None, "config": {...}},
     "state_dict": {"student.backbone.<torchvision key>": ..., "student.heads.*": ...,
                    "teacher.*": ..., "queue.*": ..., "ssa_queue.*": ...},
     "optimizer": <optimizer state dict>, "rng": {...}}

Only tensors, Python scalars, strings, lists and dicts: it loads with
`torch.load(weights_only=True)`. `tools/convert_ckpt.py` reads it as source `ssa`
(it takes `student.backbone.` and never `teacher.`).
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
from transfer.rng import rng_state, set_rng_state  # noqa: F401  (set_rng_state: the trainer restores with it)

VERSION = 1
LAST = "checkpoint_last.pth"    # overwritten every train.save_every steps: what --resume continues from
FINAL = "checkpoint_final.pth"  # the end of the schedule


def save_checkpoint(path: str | os.PathLike, meta: dict[str, Any], state_dict: dict[str, torch.Tensor],
                    optimizer: dict[str, Any] | None = None) -> Path:
    """Write the checkpoint atomically (a crash mid-write leaves the previous file intact)."""
    path = Path(path)
    record = {"ssa": {"version": VERSION, **meta},
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
    """Read an SSA checkpoint (weights only: no code runs), with a clear error if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    verify_archive(path)  # torch.load does not check the archive's CRCs: a damaged byte would resume silently
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same advice
        raise UserError(f"cannot read checkpoint {path}: {e}") from None
    if not isinstance(record, dict) or "ssa" not in record or "state_dict" not in record:
        raise UserError(f"{path} is not an SSA pretraining checkpoint (no 'ssa' metadata); "
                        "resume needs the checkpoint_last.pth a run wrote")
    if record["ssa"].get("version") != VERSION:
        raise UserError(f"{path} has SSA checkpoint version {record['ssa'].get('version')}, this code reads {VERSION}")
    return record
