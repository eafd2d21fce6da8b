"""The ResNet depth of a transfer run: the one its weights hold, or the user's `model.backbone.depth=N`."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from transfer.checkpoint.resnet import DEPTHS
from transfer.errors import UserError
from transfer.overrides import Override, last_value

if TYPE_CHECKING:
    from transfer.engine.runner import Run

DEPTH_KEY = "model.backbone.depth"


def depth_of_arch(arch: str) -> int:
    """The depth of a torchvision ResNet name (`resnet50` -> 50)."""
    digits = "".join(c for c in str(arch) if c.isdigit())
    if not str(arch).startswith("resnet") or not digits or int(digits) not in DEPTHS.values():
        raise UserError(f"backbone architecture {arch!r} is not supported; expected one of {', '.join(DEPTHS)}")
    return int(digits)


def backbone_depth(overrides: Sequence[str | Override], weights: Path | None,
                   origin: str | None) -> tuple[int | None, dict[str, torch.Tensor] | None]:
    """(depth, backbone state dict) for a run: the weights' depth, which a `model.backbone.depth` override must
    match; without weights the override's depth (None: the config's own) and no state dict.

    `weights` is the converted checkpoint, `origin` what the user passed (named in errors).
    """
    override = last_value(overrides, DEPTH_KEY)
    depth = int(override) if override is not None else None
    if weights is None:
        return depth, None
    from transfer.checkpoint import load_backbone

    state_dict, info = load_backbone(weights)
    weights_depth = depth_of_arch(info["arch"])
    if depth is not None and depth != weights_depth:
        raise UserError(f"{DEPTH_KEY}={depth} was asked for, but {origin} holds a {info['arch']}; "
                        "drop the override or pass matching weights")
    return weights_depth, state_dict


def fit_backbone(cfg: Any, run: Run, *, set_depth: Callable[[Any, int], str | None],
                 set_pretrained: Callable[[Any, Path | None], None],
                 check_loads: Callable[[Any, dict[str, torch.Tensor], str], None], random_note: str) -> None:
    """Give an mmengine config the run's backbone: its depth (weights or override), its weights, and a check that
    they fill the model (else `random_note`); notes go to run.notes and the arch to run.arch."""
    depth, state_dict = backbone_depth(run.overrides, run.weights, run.args.weights)
    if depth is not None:
        note = set_depth(cfg, depth)
        if note:
            run.notes.append(note)
    run.arch = f"resnet{int(cfg.model.backbone.depth)}"
    set_pretrained(cfg, run.weights)
    if state_dict is not None:
        check_loads(cfg, state_dict, str(run.args.weights))
    else:
        run.notes.append(random_note)
