"""Converting on demand: runners hand over any checkpoint and get a file their engine reads."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from transfer.checkpoint.convert import convert_checkpoint
from transfer.checkpoint.loading import load_backbone
from transfer.checkpoint.targets import EXTENSIONS, TARGETS
from transfer.errors import UserError
from transfer.fileio import sha256_file


def is_converted(path: str | os.PathLike, to: str) -> bool:
    """True when `path` is already a backbone file the `to` engine loads as is (UserError if it is unreadable)."""
    path = Path(path)
    _, info = load_backbone(path)
    d2 = info["source"] == "detectron2"
    if to == "detectron2":
        return d2 and info["prefix"] == "model." and path.suffix == ".pkl"
    if to == "mmlab":  # mmengine reads a bare state dict or one under `state_dict`
        return not d2 and info["prefix"] in ("", "state_dict.") and path.suffix != ".pkl"
    if to == "torchvision":
        return not d2 and info["prefix"] == "" and path.suffix != ".pkl"
    raise UserError(f"unknown target {to!r}; choose one of: {', '.join(TARGETS)}")


def ensure_converted(path: str | os.PathLike, to: str, cache_dir: str | os.PathLike, source: str | None = None,
                     prefix: str | None = None) -> Path:
    """`path` itself when it is already in format `to`, else its conversion in `cache_dir` (once per source sha256)."""
    path = Path(path)
    if to not in TARGETS:
        raise UserError(f"unknown target {to!r}; choose one of: {', '.join(TARGETS)}")
    if source is None and prefix is None and is_converted(path, to):
        return path
    digest = sha256_file(path)[:16]
    if source is not None or prefix is not None:
        digest += "-" + hashlib.sha256(f"{source}|{prefix}".encode()).hexdigest()[:8]
    out = Path(cache_dir) / f"{path.stem}-{digest}-{to}{EXTENSIONS[to]}"
    if out.is_file():
        return out
    # force: another process (a torchrun rank) may have finished the same conversion meanwhile; the bytes agree.
    convert_checkpoint(path, out, to, source=source, prefix=prefix, force=True)
    return out
