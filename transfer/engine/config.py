"""Config files through mmengine's `Config`: the mmengine tasks' Python configs and the YAML configs of
pretraining and the linear probe (both with `_base_` inheritance), with typed `key=value` overrides."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mmengine.config import Config

from transfer.errors import UserError
from transfer.overrides import Override, apply_overrides


def read_config_file(path: str | Path) -> Config:
    """mmengine's Config of `path` (.py, .yaml, .json), its `_base_` files merged in; a UserError if it cannot be."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config {path} does not exist; pass --config with an existing file")
    try:
        return Config.fromfile(str(path))
    except Exception as e:  # mmengine raises many types for a broken config file
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise UserError(f"config {path} could not be loaded: {type(e).__name__}: {first}") from e


def load_mm_config(path: str | Path, overrides: Iterable[str | Override] = ()) -> Config:
    """The mmengine config at `path` with typed `key=value` overrides applied (unknown keys and wrong types refused)."""
    cfg = read_config_file(path)
    # mmengine formats the config with yapf each time it logs or dumps it and at every checkpoint
    # (its text goes into `meta`): seconds per call on a CPU, up to 20 s in a long demo process.
    # The unformatted text is the same valid Python, so skip the formatting. (`Config.fromfile` takes
    # `format_python_code` too, but mmengine 0.10.7 drops it for .py files: the constructor keeps it.)
    cfg = Config(cfg.to_dict(), cfg_text=cfg.text, filename=cfg.filename, env_variables=cfg.env_variables,
                 format_python_code=False)
    apply_overrides(cfg, overrides)
    return cfg


def read_yaml_config(path: str | Path) -> dict[str, Any]:
    """A YAML config (pretraining, linear probe) as plain nested dicts, `_base_` files merged in by mmengine."""
    return read_config_file(path).to_dict()
