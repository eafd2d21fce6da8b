"""Fit a detectron2 detection protocol config (a yacs CfgNode) to a run: devices, depth, schedule, input size."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from transfer.checkpoint.resnet import STAGE_CHANNELS
from transfer.detection.shrink import (REFERENCE_SIZE, numbers_text, precise_bn_iters, region_count, scaled_length,
                                      scaled_lengths)
from transfer.errors import UserError

# Blocks per stage are fixed by the depth; R18/34 need 64 res2 channels (basic blocks), deeper ones 256.
RES2_CHANNELS = {depth: widths[0] for depth, widths in STAGE_CHANNELS.items()}
# (key, floor) of the per-image region counts sized for ~800x1333 images (see mmdet_config.REGION_COUNTS).
REGION_COUNTS = (("MODEL.RPN.POST_NMS_TOPK_TRAIN", 128), ("MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 32),
                 ("MODEL.RPN.POST_NMS_TOPK_TEST", 50))


# The model's settings in pixels of the network input (see `transfer.detection.shrink`): anchor sizes, the RPN's
# minimum proposal side and border allowance (-1: off), and the box side that maps a RoI to FPN level 4.
PIXEL_SETTINGS = ("MODEL.ANCHOR_GENERATOR.SIZES", "MODEL.PROPOSAL_GENERATOR.MIN_SIZE", "MODEL.RPN.BOUNDARY_THRESH",
                  "MODEL.ROI_HEADS.CANONICAL_BOX_SIZE")
# detectron2's StandardROIHeads fixes that box side at 224 (ROIPooler's default); a shrunk run uses
# StandardROIHeadsScaled (transfer.detection.detectron2_roi_heads), which reads it from the config.
CANONICAL_BOX_SIZE = 224
SCALED_HEADS = {"StandardROIHeads": "StandardROIHeadsScaled"}


def add_config_keys(cfg: Any) -> None:
    """Add this project's keys to detectron2's defaults, before a YAML is merged."""
    cfg.MODEL.ROI_HEADS.CANONICAL_BOX_SIZE = CANONICAL_BOX_SIZE


def scale_pixel_settings(cfg: Any, factor: float) -> list[str]:
    """Scale every PIXEL_SETTINGS value by `factor` (in place); returns `KEY old->new` for each that changed.

    An FPN config's StandardROIHeads becomes StandardROIHeadsScaled, so that the scaled
    CANONICAL_BOX_SIZE is used (C4's Res5ROIHeads pools from one level: nothing to map).
    """
    changes = []
    if len(cfg.MODEL.ROI_HEADS.IN_FEATURES) > 1 and cfg.MODEL.ROI_HEADS.NAME in SCALED_HEADS:
        if "CANONICAL_BOX_SIZE" not in cfg.MODEL.ROI_HEADS:
            add_config_keys(cfg)
        old_name = cfg.MODEL.ROI_HEADS.NAME
        cfg.MODEL.ROI_HEADS.NAME = SCALED_HEADS[old_name]
        changes.append(f"ROI_HEADS.NAME {old_name}->{cfg.MODEL.ROI_HEADS.NAME}")
    for path in PIXEL_SETTINGS:
        try:
            old = _get(cfg, path)
        except KeyError:
            continue
        new = scaled_lengths(old, factor) if isinstance(old, (list, tuple)) else scaled_length(old, factor)
        if numbers_text(new) != numbers_text(old):
            _set(cfg, path, new)
            changes.append(f"{path.split('.', 1)[1]} {numbers_text(old)}->{numbers_text(new)}")
    return changes


def _nodes(node: Any, path: str = "") -> Iterator[tuple[str, Any, str]]:
    """(path, parent, key) of every leaf of a CfgNode."""
    for key, value in node.items():
        if isinstance(value, dict):
            yield from _nodes(value, f"{path}{key}.")
        else:
            yield f"{path}{key}", node, key


def _get(cfg: Any, path: str) -> Any:
    node = cfg
    for part in path.split("."):
        node = node[part]
    return node


def _set(cfg: Any, path: str, value: Any) -> None:
    parent, _, key = path.rpartition(".")
    _get(cfg, parent)[key] = value


def replace_syncbn(cfg: Any) -> list[str]:
    """Set every `NORM: SyncBN` to `BN` (one process has nothing to sync); returns the keys changed."""
    changed = []
    for path, parent, key in _nodes(cfg):
        if key == "NORM" and parent[key] == "SyncBN":
            parent[key] = "BN"
            changed.append(path)
    return changed


def set_depth(cfg: Any, depth: int) -> str | None:
    """Set the ResNet depth (and the res2 width it implies); returns a note when it changed."""
    if depth not in RES2_CHANNELS:
        raise UserError(f"ResNet depth {depth} is not supported; expected one of {sorted(RES2_CHANNELS)}")
    old = cfg.MODEL.RESNETS.DEPTH
    cfg.MODEL.RESNETS.DEPTH = depth
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = RES2_CHANNELS[depth]
    return None if old == depth else f"backbone ResNet-{depth} instead of ResNet-{old}"


def shorten_schedule(cfg: Any, max_iters: int) -> str | None:
    """Scale MAX_ITER, the lr steps, warmup, checkpoint and eval periods and precise BN to `max_iters`; a note."""
    if max_iters < 1:
        raise UserError(f"--max-iters must be >= 1 (got {max_iters})")
    full = cfg.SOLVER.MAX_ITER
    if max_iters >= full:
        return None
    factor = max_iters / full
    cfg.SOLVER.MAX_ITER = max_iters
    # fvcore's multi-step schedule wants every step strictly inside (0, MAX_ITER)
    steps = (min(max(1, round(s * factor)), max_iters - 1) for s in cfg.SOLVER.STEPS)
    cfg.SOLVER.STEPS = tuple(dict.fromkeys(s for s in steps if s > 0))
    cfg.SOLVER.WARMUP_ITERS = min(max_iters, max(1, round(cfg.SOLVER.WARMUP_ITERS * factor)))
    cfg.SOLVER.CHECKPOINT_PERIOD = max(1, min(cfg.SOLVER.CHECKPOINT_PERIOD, max_iters // 2))
    if cfg.TEST.EVAL_PERIOD > 0:
        cfg.TEST.EVAL_PERIOD = max(1, round(cfg.TEST.EVAL_PERIOD * factor))
    cfg.TEST.PRECISE_BN.NUM_ITER = precise_bn_iters(cfg.TEST.PRECISE_BN.NUM_ITER, full, max_iters)
    return (f"schedule shortened from {full} to {max_iters} iterations (steps {tuple(cfg.SOLVER.STEPS)}, "
            f"warmup {cfg.SOLVER.WARMUP_ITERS}, precise BN over {cfg.TEST.PRECISE_BN.NUM_ITER} batches)")


def set_input_size(cfg: Any, size: int) -> str:
    """Scale the train and test sizes by size / MIN_SIZE_TEST (800; Cityscapes 1024: the test shorter side becomes
    `size`), every setting in input pixels with them (PIXEL_SETTINGS) and, below that, the per-image region counts
    with the image area (down to a floor), as for mmdet; returns a note."""
    if size < 32:
        raise UserError(f"--input-size must be at least 32 (got {size})")
    factor = size / (cfg.INPUT.MIN_SIZE_TEST or REFERENCE_SIZE)  # MIN_SIZE_TEST 0: no resize at test time
    cfg.INPUT.MIN_SIZE_TRAIN = tuple(dict.fromkeys(max(1, round(s * factor)) for s in cfg.INPUT.MIN_SIZE_TRAIN))
    cfg.INPUT.MAX_SIZE_TRAIN = max(1, round(cfg.INPUT.MAX_SIZE_TRAIN * factor))
    cfg.INPUT.MIN_SIZE_TEST = max(1, round(cfg.INPUT.MIN_SIZE_TEST * factor))
    cfg.INPUT.MAX_SIZE_TEST = max(1, round(cfg.INPUT.MAX_SIZE_TEST * factor))
    train = cfg.INPUT.MIN_SIZE_TRAIN
    note = (f"--input-size {size}: sizes x{factor:.3g}, shorter side {min(train)}..{max(train)} for training, "
            f"{cfg.INPUT.MIN_SIZE_TEST} for testing")
    pixels = scale_pixel_settings(cfg, factor)
    if pixels:
        note += f"; pixel sizes x{factor:.3g}: " + ", ".join(pixels)
    if factor < 1:
        counts = []
        for path, floor in REGION_COUNTS:
            old = int(_get(cfg, path))
            new = region_count(old, factor, floor)
            _set(cfg, path, new)
            counts.append(f"{path.split('.', 1)[1]} {old}->{new}")
        note += "; per-image regions x area: " + ", ".join(counts)
    return note
