"""`key=value` overrides: one typed language for every tool (pretraining, every transfer task, the demo).

A value reads as what it says: `3e-2`, `1e-4`, `1_000`, `0x10` are numbers, `true`/`false` booleans
(any case), `null`/`none`/`~` null, `[1, 2]` / `(1, 2)` / `{type: BN}` containers (Python or YAML
flow syntax), `'quoted'` a string, anything else a string. Before anything runs, each override is
checked against the config it changes: the key must exist at every depth (`+key=value` adds a new
last key to an existing section), and the value must have the type of the key's default:
- a bool default takes true/false only; an int default an integer (or an integral `1e3`);
- a float default any number; a str default any word (`head_norm=none` is the word "none");
- a list/tuple default a list or tuple (numbers where the default holds numbers);
- a dict, list or None default may be set to null (turning a section off); a None default takes anything.
Every mistake is a one-line `UserError` naming the key, the value and what was expected.
"""
from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from transfer.errors import UserError
from transfer.results import is_number

_BOOLS = {"true": True, "false": False}
_NULLS = ("null", "none", "~")
_INT = re.compile(r"^[+-]?(\d[\d_]*|0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+)$")
_FLOAT = re.compile(r"^[+-]?(\d[\d_]*\.?[\d_]*|\.\d[\d_]*)([eE][+-]?\d+)?$|^[+-]?(inf|infinity|nan)$", re.I)


@dataclass(frozen=True)
class Override:
    """One parsed `key=value`: the key's path, the typed value, and the text it came from."""

    path: tuple[str, ...]
    value: Any
    raw: str          # the value's text as written
    text: str         # the whole `key=value`, for messages
    add: bool = False  # `+key=value`: the last key may be new

    @property
    def key(self) -> str:
        """The dotted key (`optim.lr`)."""
        return ".".join(self.path)


def parse_scalar(text: str) -> Any:
    """One word -> bool, None, int, float or str (see the module docstring)."""
    s = text.strip()
    low = s.lower()
    if low in _BOOLS:
        return _BOOLS[low]
    if low in _NULLS:
        return None
    if _INT.match(s):
        digits = s.replace("_", "")
        try:
            return int(digits, 0)
        except ValueError:  # leading zeros, e.g. 007
            return int(digits, 10)
    if _FLOAT.match(s) and any(c.isdigit() for c in s) or low.lstrip("+-") in ("inf", "infinity", "nan"):
        return float(s.replace("_", ""))
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
        return s[1:-1]
    return s


def _words_to_values(node: Any) -> Any:
    """Turn the strings inside a YAML-parsed container into numbers, booleans and null where they read as such."""
    if isinstance(node, str):
        return parse_scalar(node)
    if isinstance(node, list):
        return [_words_to_values(v) for v in node]
    if isinstance(node, dict):
        return {k: _words_to_values(v) for k, v in node.items()}
    return node


def parse_value(text: str) -> Any:
    """The typed value of an override's text (see the module docstring)."""
    s = text.strip()
    if s[:1] in ("[", "(", "{"):
        try:
            return ast.literal_eval(s)  # Python syntax: [1e-4, 2], (1, 2), {'type': 'BN'}, [True, None]
        except (ValueError, SyntaxError):
            pass
        try:
            loaded = yaml.safe_load(s)  # YAML flow syntax: [true, null], {type: BN}, [a, b]
        except yaml.YAMLError as e:
            raise UserError(f"value {text!r} is not a valid list or mapping ({str(e).splitlines()[0]})") from None
        if isinstance(loaded, (list, dict)):
            return _words_to_values(loaded)
    return parse_scalar(s)


def parse_override(text: str) -> Override:
    """`a.b=value` -> Override; a word without `=` or with an empty key is an error."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    add = key.startswith("+")
    key = key.lstrip("+")
    if not sep or not key or any(not part for part in key.split(".")):
        raise UserError(f"override {text!r} is not key=value (e.g. optim.lr=3e-2 or model.backbone.depth=18)")
    return Override(tuple(key.split(".")), parse_value(raw), raw.strip(), text, add)


def parse_overrides(items: Iterable[str | Override]) -> list[Override]:
    """Parse `key=value` words (Override objects pass through)."""
    return [item if isinstance(item, Override) else parse_override(item) for item in items]


def from_values(values: Mapping[str, Any], origin: str = "flag") -> list[Override]:
    """Overrides from already-typed values ({"train.epochs": 3}, e.g. command-line flags); None values are left out."""
    return [Override(tuple(k.split(".")), v, str(v), f"{k}={v} (from {origin})")
            for k, v in values.items() if v is not None]


def last_value(items: Iterable[str | Override], key: str) -> Any:
    """The value the last override of `key` gives it, or None."""
    found = None
    for item in parse_overrides(items):
        if item.key == key:
            found = item.value
    return found


def _type_name(default: Any) -> str:
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, int):
        return "an integer"
    if isinstance(default, float):
        return "a number"
    if isinstance(default, (list, tuple)):
        return "a list" + (" of numbers" if default and all(is_number(v) for v in default) else "")
    if isinstance(default, Mapping):
        return "a mapping or null"
    return f"a {type(default).__name__}"


def coerce(key: str, value: Any, default: Any, raw: str | None = None, label: str | None = None) -> Any:
    """`value` checked against (and converted to) the type of `default`; a UserError naming key and value if not
    (`label` names them instead of `key=raw`, e.g. for a value read from a file)."""
    shown = label or f"{key}={raw if raw is not None else repr(value)}"

    def refuse() -> UserError:
        return UserError(f"{shown}: expected {_type_name(default)} (the default is {default!r})")

    if default is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise refuse()
        return value
    if isinstance(default, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise refuse()
        return value
    if isinstance(default, float):
        if not is_number(value):
            raise refuse()
        return float(value)
    if isinstance(default, str):
        if isinstance(value, (str, bool)):
            return value  # bool: keys documented as auto | true | false
        return raw if raw is not None else str(value)  # `arch=18`, `head_norm=none`: the word as written
    if isinstance(default, (list, tuple)):
        if value is None:
            return None
        if not isinstance(value, (list, tuple)):
            raise refuse()
        if default and all(is_number(v) for v in default) and not all(is_number(v) for v in value):
            raise refuse()
        return type(default)(value) if type(default) in (list, tuple) else value
    if isinstance(default, Mapping):
        if value is not None and not isinstance(value, Mapping):
            raise refuse()
        return value
    return value


def _keys(node: Any) -> list[str]:
    if isinstance(node, (list, tuple)):
        return [str(i) for i in range(len(node))]
    return [str(k) for k in node.keys()]


def _child(node: Any, part: str) -> tuple[bool, Any]:
    """(exists, value) of `part` inside `node` (a mapping, a Config or a list indexed by number)."""
    if isinstance(node, (list, tuple)):
        if part.lstrip("-").isdigit() and -len(node) <= int(part) < len(node):
            return True, node[int(part)]
        return False, None
    if hasattr(node, "keys") and part in node:
        return True, node[part]
    return False, None


def _unknown(item: Override, depth: int, node: Any) -> UserError:
    where = ".".join(item.path[:depth]) or "the top level"
    known = _keys(node)
    shown = ", ".join(sorted(known)[:25]) + (", ..." if len(known) > 25 else "")
    return UserError(f"override {item.text!r}: unknown key {'.'.join(item.path[:depth + 1])!r}; "
                     f"keys under {where}: {shown or '(none)'}")


def apply_overrides(tree: Any, items: Iterable[str | Override]) -> Any:
    """Apply overrides to a nested config in place (dict, mmengine Config/ConfigDict, yacs CfgNode; lists by index).

    Every key must exist (`+key` may add the last one) and every value fit the type of the
    default it replaces (`coerce`). Returns `tree`.
    """
    for item in parse_overrides(items):
        node = tree
        for depth, part in enumerate(item.path[:-1]):
            exists, child = _child(node, part)
            if not exists or not (hasattr(child, "keys") or isinstance(child, (list, tuple))):
                if exists:
                    raise UserError(f"override {item.text!r}: {'.'.join(item.path[:depth + 1])} is "
                                    f"{child!r}, not a section with keys")
                raise _unknown(item, depth, node)
            node = child
        last = item.path[-1]
        exists, default = _child(node, last)
        if not exists and not (item.add and hasattr(node, "keys")):
            raise _unknown(item, len(item.path) - 1, node)
        value = coerce(item.key, item.value, default, item.raw, item.text) if exists else item.value
        if isinstance(node, tuple):
            raise UserError(f"override {item.text!r}: {'.'.join(item.path[:-1])} is a tuple; set it whole")
        node[int(last) if isinstance(node, list) else last] = value
    return tree


def check_range(name: str, value: Any, low: float | None = None, high: float | None = None,
                integer: bool = True, above: bool = False) -> Any:
    """`value` if it is a number (an integer when `integer`) in [low, high] (low excluded when `above`);
    else a UserError naming `name` and the accepted range. None passes (a flag left out)."""
    if value is None:
        return None
    kind = "an integer" if integer else "a number"
    ok = isinstance(value, int) if integer else is_number(value)
    too_low = low is not None and (value <= low if above else value < low) if ok else False
    if isinstance(value, bool) or not ok or too_low or (ok and high is not None and value > high):
        if low is None:
            bounds = f"<= {high}"
        elif high is None:
            bounds = f"{'>' if above else '>='} {low}"
        else:
            bounds = f"in {'(' if above else '['}{low}, {high}]"
        raise UserError(f"{name} must be {kind} {bounds} (got {value})")
    return value


def overrides_text(items: Sequence[str | Override]) -> list[str]:
    """The overrides as the user wrote them (for metrics.json and logs)."""
    return [item.text if isinstance(item, Override) else str(item) for item in items]
