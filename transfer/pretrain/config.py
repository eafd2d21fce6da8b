"""Pretraining configs: `configs/pretrain/<method>.yaml` (each inherits `base.yaml` through mmengine's `_base_`),
then command-line flags, then typed `key=value` overrides (`transfer.overrides`)."""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mmengine.config import Config

from transfer.engine.config import read_config_file
from transfer.errors import UserError
from transfer.overrides import Override, apply_overrides, from_values, parse_value

REPO = Path(__file__).resolve().parents[2]
PRETRAIN_CONFIGS = REPO / "configs" / "pretrain"


def load_config(config: str | os.PathLike | None = None, overrides: Iterable[str] = (),
                method: str | None = None, values: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A pretraining config: `config` file (default `configs/pretrain/<method>.yaml`), then `values`
    (dotted key -> Python value, e.g. from command-line flags), then `key=value` overrides.

    Every key the file, a flag or an override sets must be one of base.yaml's, with the type of its
    default there; a mistake is a UserError before anything runs.
    """
    if config is None:
        name = method or "ssa"
        config = PRETRAIN_CONFIGS / f"{name}.yaml"
        if not config.is_file():
            known = sorted(p.stem for p in PRETRAIN_CONFIGS.glob("*.yaml") if p.stem != "base")
            raise UserError(f"no config for method {name!r} ({config}); known: {', '.join(known)}")
    base = read_config_file(PRETRAIN_CONFIGS / "base.yaml").to_dict()
    own = read_config_file(config).to_dict()
    unknown = sorted(unknown_keys(own, base))
    if unknown:
        raise UserError(f"config {config} has keys the trainer does not know: {', '.join(unknown)} "
                        f"(see {PRETRAIN_CONFIGS / 'base.yaml'} for every key)")
    # the file's values go through the same typed checks as overrides (a config that does not
    # inherit base.yaml still gets every key)
    cfg = apply_overrides(Config(base), file_values(own, base, str(config)))
    apply_overrides(cfg, [*from_values(values or {}), *overrides])
    out = cfg.to_dict()
    if method is not None and out.get("method") != method:
        raise UserError(f"--method {method} but config {config} is for method {out.get('method')!r}; "
                        "drop one of them")
    out["name"] = Path(config).stem
    return out


def file_values(config: Mapping[str, Any], reference: Mapping[str, Any], origin: str,
                prefix: tuple[str, ...] = ()) -> list[Override]:
    """The leaves of a config file as overrides of `reference` (YAML 1.1 reads `3e-2` as a word: typed here)."""
    out = []
    for key, value in config.items():
        path = (*prefix, key)
        if isinstance(value, Mapping) and isinstance(reference.get(key), Mapping):
            out += file_values(value, reference[key], origin, path)
        else:
            typed = parse_value(value) if isinstance(value, str) else value
            out.append(Override(path, typed, str(value), f"{'.'.join(path)}: {value} (in {origin})"))
    return out


def unknown_keys(config: Mapping[str, Any], reference: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys of `config` that `reference` does not have (typos in a config file)."""
    out = []
    for key, value in config.items():
        if key not in reference and key != "name":
            out.append(prefix + key)
        elif isinstance(value, Mapping) and isinstance(reference.get(key), Mapping):
            out += unknown_keys(value, reference[key], f"{prefix}{key}.")
    return out
