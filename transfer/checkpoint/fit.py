"""Whether a state dict fills a module: the keys it lacks, the keys it adds, the shapes that differ.

The one comparison behind every load check of the project: the converter's
architecture check, the engines' verification, the detection and segmentation
configs' weight checks and the pretraining trunk.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


def is_batch_counter(key: str) -> bool:
    """BatchNorm's `num_batches_tracked`: a counter no checkpoint needs to carry (it changes no output)."""
    return key.endswith("num_batches_tracked")


def _shape(value: Any) -> tuple[int, ...]:
    """A tensor's or an array's shape, or a shape given as such."""
    return tuple(value.shape) if hasattr(value, "shape") else tuple(value)


@dataclass
class StateDictFit:
    """How a state dict fits a module's: `missing` (the module's keys it lacks), `unexpected` (its keys the module
    has not), `wrong_shape` (keys whose shapes differ; `shapes[key]` = (given, wanted))."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    wrong_shape: list[str] = field(default_factory=list)
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)

    def fills(self, allow_unexpected: bool = False) -> bool:
        """True when every wanted tensor is there with its shape (and, unless allowed, nothing else is)."""
        return not (self.missing or self.wrong_shape or (self.unexpected and not allow_unexpected))

    def describe(self, allow_unexpected: bool = False, examples: int = 3) -> str:
        """`2 tensors missing (e.g. a, b), 1 with another shape (e.g. c (1,) vs (2,))`: the problems, for a message."""
        parts = []
        shaped = [f"{k} {self.shapes[k][0]} vs {self.shapes[k][1]}" for k in self.wrong_shape]
        for what, keys in (("missing", self.missing), ("unexpected", [] if allow_unexpected else self.unexpected),
                           ("with another shape", shaped)):
            if keys:
                parts.append(f"{len(keys)} {'tensor' if len(keys) == 1 else 'tensors'} {what} "
                             f"(e.g. {', '.join(keys[:examples])}{', ...' if len(keys) > examples else ''})")
        return "; ".join(parts)


def state_dict_fit(wanted: Mapping[str, Any], given: Mapping[str, Any],
                   optional: Callable[[str], bool] = is_batch_counter) -> StateDictFit:
    """Compare `given` (a state dict) with `wanted` (the module's state dict, or key -> shape).

    A wanted key for which `optional` holds may be absent (by default BN batch counters).
    """
    fit = StateDictFit()
    for key, value in wanted.items():
        if key not in given:
            if not optional(key):
                fit.missing.append(key)
        elif _shape(given[key]) != _shape(value):
            fit.wrong_shape.append(key)
            fit.shapes[key] = (_shape(given[key]), _shape(value))
    fit.unexpected = [key for key in given if key not in wanted]
    return fit
