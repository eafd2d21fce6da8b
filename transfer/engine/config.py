"""Load an mmengine config and apply command-line overrides."""
from __future__ import annotations

import ast
from collections.abc import Sequence
from pathlib import Path

from mmengine.config import Config

from transfer.errors import UserError


def parse_overrides(overrides: Sequence[str]) -> dict[str, object]:
    """Turn `key=value` strings into {key: value}; values are Python literals where they parse, else strings."""
    out: dict[str, object] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UserError(f"config override {item!r} is not key=value (e.g. optim_wrapper.optimizer.lr=0.01)")
        try:
            out[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            out[key] = raw
    return out


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> Config:
    """Load the mmengine config at `path` and merge `key=value` overrides into it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config {path} does not exist; pass --config with an existing file")
    try:
        cfg = Config.fromfile(str(path))
    except Exception as e:  # mmengine raises many types for a broken config file
        raise UserError(f"config {path} could not be loaded: {type(e).__name__}: {e}") from e
    # mmengine formats the config with yapf each time it logs or dumps it and at every checkpoint
    # (its text goes into `meta`): seconds per call on a CPU, up to 20 s in a long demo process.
    # The unformatted text is the same valid Python, so skip the formatting. (`Config.fromfile` takes
    # `format_python_code` too, but mmengine 0.10.7 drops it for .py files: the constructor keeps it.)
    cfg = Config(cfg.to_dict(), cfg_text=cfg.text, filename=cfg.filename, env_variables=cfg.env_variables,
                 format_python_code=False)
    if overrides:
        cfg.merge_from_dict(parse_overrides(overrides))
    return cfg
