"""How `--input-size` and `--max-iters` shrink a detection protocol, the same on mmdet and detectron2.

A shrunk run stays the protocol at a smaller size: every setting measured in
pixels of the network input scales with the images, so that objects meet the same
anchors, proposal filters and pyramid levels as at full size. Those are the anchor
sizes (C4 and FPN), the RPN's minimum proposal size and border allowance, and the
box size that picks an FPN level (`PIXEL_SETTINGS` of each backend). Settings in
feature-map cells (RoI output sizes, mask sizes) or network strides do not change.
"""
from __future__ import annotations

from collections.abc import Sequence

# MIN_SIZE_TEST of the VOC and COCO protocols: --input-size S scales every image size by S / the protocol's test
# shorter side (this, or Cityscapes' 1024), so that the test images' shorter side becomes S
REFERENCE_SIZE = 800


def region_count(old: int, factor: float, floor: int) -> int:
    """A per-image region count (proposals kept, RoIs sampled) for images `factor` times the protocol's side:
    in proportion to the area, not below `floor`, never above `old`.

    The protocols size these for ~800x1333 images; on a small CPU run the res5 head
    of C4 runs once per RoI and would dominate the run.
    """
    return min(old, max(floor, round(old * factor**2)))


def precise_bn_iters(full: int, full_iters: int, max_iters: int) -> int:
    """Batches for precise BN when a `full_iters` schedule with `full` precise-BN batches is cut to `max_iters`:
    in proportion, but at least 20 (the statistics of a couple of small batches are worse than the running
    average they replace) and at most the run's length."""
    return max(1, min(full, max_iters, max(20, round(full * max_iters / full_iters))))


def scaled_length(value: float, factor: float) -> float:
    """A length in input pixels at images `factor` times the protocol's side (3 significant digits);
    a negative value (detectron2's and mmdet's 'off') and 0 stay as they are."""
    return value if value <= 0 else float(f"{value * factor:.3g}")


def scaled_lengths(values: Sequence, factor: float) -> list:
    """`scaled_length` of every number in a (nested) list, e.g. detectron2's ANCHOR_GENERATOR.SIZES."""
    return [scaled_lengths(v, factor) if isinstance(v, (list, tuple)) else scaled_length(v, factor) for v in values]


def numbers_text(value: float | Sequence) -> str:
    """A number or (nested) list of numbers as a config shows it, for notes: `[2, 4, 8]`, `0.32`."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(numbers_text(v) for v in value) + "]"
    return f"{value:g}"
