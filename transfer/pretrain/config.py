"""YAML configs as data: a file inherits `_BASE_` files and overrides a few keys; `key.sub=value` overrides."""
from __future__ import annotations

import copy
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from transfer.errors import UserError

REPO = Path(__file__).resolve().parents[2]
PRETRAIN_CONFIGS = REPO / "configs" / "pretrain"


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of `base` with `update` merged in (nested dicts merge key by key, anything else replaces)."""
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_yaml_config(path: str | os.PathLike, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a YAML config, resolving `_BASE_` (one path or a list, relative to the file) depth first."""
    path = Path(path).resolve()
    if not path.is_file():
        raise UserError(f"config file {path} does not exist")
    if path in _seen:
        raise UserError(f"config {path} inherits itself through _BASE_ ({' -> '.join(map(str, _seen))})")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserError(f"config {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise UserError(f"config {path} must hold a mapping of keys, not {type(data).__name__}")
    bases = data.pop("_BASE_", [])
    merged: dict[str, Any] = {}
    for base in [bases] if isinstance(bases, str) else bases:
        merged = merge(merged, read_yaml_config(path.parent / base, (*_seen, path)))
    return merge(merged, data)


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b=value` -> (["a", "b"], value parsed as YAML: numbers, booleans, null, lists)."""
    if "=" not in text:
        raise UserError(f"override {text!r} is not key=value (e.g. loss.ssa_weight=0 or ssa.rho=1.0)")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(config: dict[str, Any], overrides: Iterable[str], strict: bool = True,
                    values: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Apply `values` ({"a.b": value}) then `a.b=value` overrides; with `strict`, an unknown key is an error."""
    config = copy.deepcopy(config)
    items = [(key.split("."), value, f"{key}={value}") for key, value in (values or {}).items()]
    items += [(*parse_override(text), text) for text in overrides]
    for keys, value, text in items:
        node = config
        for i, key in enumerate(keys[:-1]):
            if not isinstance(node.get(key), dict):
                if strict:
                    raise UserError(f"override {text!r}: no section {'.'.join(keys[:i + 1])!r} in the config; "
                                    f"sections are: {', '.join(k for k, v in node.items() if isinstance(v, dict))}")
                node[key] = {}
            node = node[key]
        if strict and keys[-1] not in node:
            raise UserError(f"override {text!r}: unknown key {'.'.join(keys)!r}; "
                            f"known keys here: {', '.join(sorted(node))}")
        node[keys[-1]] = value
    return config


def load_config(config: str | os.PathLike | None = None, overrides: Iterable[str] = (),
                method: str | None = None, values: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A pretraining config: `config` file (default `configs/pretrain/<method>.yaml`), then `values`
    (dotted key -> Python value, e.g. from command-line flags), then `key=value` overrides."""
    if config is None:
        name = method or "ssa"
        config = PRETRAIN_CONFIGS / f"{name}.yaml"
        if not config.is_file():
            known = sorted(p.stem for p in PRETRAIN_CONFIGS.glob("*.yaml") if p.stem != "base")
            raise UserError(f"no config for method {name!r} ({config}); known: {', '.join(known)}")
    base = read_yaml_config(PRETRAIN_CONFIGS / "base.yaml")
    cfg = merge(base, read_yaml_config(config))  # a config that does not inherit base.yaml still gets every key
    unknown = sorted(unknown_keys(cfg, base))
    if unknown:
        raise UserError(f"config {config} has keys the trainer does not know: {', '.join(unknown)} "
                        f"(see {PRETRAIN_CONFIGS / 'base.yaml'} for every key)")
    cfg = apply_overrides(cfg, overrides, values={k: v for k, v in (values or {}).items() if v is not None})
    if method is not None and cfg.get("method") != method:
        raise UserError(f"--method {method} but config {config} is for method {cfg.get('method')!r}; "
                        "drop one of them")
    cfg["name"] = Path(config).stem
    return cfg


def unknown_keys(config: Mapping[str, Any], reference: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys of `config` that `reference` does not have (typos in a config file)."""
    out = []
    for key, value in config.items():
        if key not in reference and key != "name":
            out.append(prefix + key)
        elif isinstance(value, Mapping) and isinstance(reference.get(key), Mapping):
            out += unknown_keys(value, reference[key], f"{prefix}{key}.")
    return out
