"""Shorten a protocol's iteration-based schedule for the CPU, tests and demos."""
from __future__ import annotations

from mmengine.config import Config

from transfer.engine.devices import scale_iterations
from transfer.errors import UserError


def shorten_schedule(cfg: Config, max_iters: int) -> list[str]:
    """Scale the whole schedule (lr steps, warmup, poly end) to `max_iters` iterations; returns notes.

    Validation and checkpoint intervals shrink with it, so a short run still
    checkpoints (and can resume) and is evaluated once at the end.
    """
    if max_iters < 1:
        raise UserError(f"--max-iters must be >= 1 (got {max_iters})")
    full = int(cfg.train_cfg.max_iters)
    if max_iters >= full:
        return []
    scale_iterations(cfg, max_iters / full)
    cfg.train_cfg.max_iters = max_iters
    cfg.train_cfg.val_interval = max_iters  # evaluate once, at the end
    ckpt = cfg.default_hooks.get("checkpoint")
    if ckpt is not None:
        ckpt.interval = max(1, min(int(ckpt.get("interval", max_iters)), max(max_iters // 2, 1)))
    logger = cfg.default_hooks.get("logger")
    if logger is not None:
        logger.interval = max(1, min(int(logger.get("interval", 50)), max(max_iters // 10, 1)))
    return [f"schedule shortened from {full} to {max_iters} iterations (milestones scaled)"]
