"""How `--input-size` and `--max-iters` shrink a detection protocol, the same on mmdet and detectron2."""
from __future__ import annotations

REFERENCE_SIZE = 800  # MIN_SIZE_TEST of the protocols: --input-size S scales every image size by S / 800


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
