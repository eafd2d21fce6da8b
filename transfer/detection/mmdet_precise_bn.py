"""Precise BN for mmengine: recompute BatchNorm statistics before each evaluation (`TEST.PRECISE_BN`).

The detection protocols fine-tune with BN in every layer; their running
statistics, an exponential average over the last iterations of a changing model,
are noisy. detectron2's PreciseBN hook replaces them, before each evaluation and
at the end of training, by the plain average over a number of training batches
(200) of the final model. mmdet has no such hook; this one does the same with
PyTorch's own cumulative average (`momentum=None` after `reset_running_stats`).
"""
from __future__ import annotations

from typing import Any

import torch
from mmdet.registry import HOOKS
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from torch.nn.modules.batchnorm import _BatchNorm


def update_bn_stats(model: torch.nn.Module, batches: Any, num_iters: int) -> int:
    """Set the running mean/var of every training-mode BN layer of an mmengine `model` to their average over
    `num_iters` batches drawn from the iterator `batches`; returns the number of BN layers updated."""
    model.train()
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.training and m.track_running_stats]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: after n batches, running stats = mean of the n batch stats
    try:
        with torch.no_grad():
            for _ in range(num_iters):
                data = model.data_preprocessor(next(batches), True)
                model(**data, mode="loss")  # the training forward: the BN layers see training batches
    finally:
        for m, momentum in zip(bns, momenta):
            m.momentum = momentum
    return len(bns)


@HOOKS.register_module()
class PreciseBNHook(Hook):
    """Recompute BN statistics over `num_iters` training batches at each validation point and at the end of training."""

    priority = "NORMAL"  # after the optimizer step, before CheckpointHook saves and before validation runs

    def __init__(self, num_iters: int = 200) -> None:
        self.num_iters = num_iters

    def after_train_iter(self, runner, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        """At the last iteration, and wherever the train loop validates, replace BN statistics by precise ones."""
        loop = runner.train_loop
        interval = getattr(loop, "val_interval", 0)
        due = self.is_last_train_iter(runner) or (interval and self.every_n_train_iters(runner, interval))
        if not due or self.num_iters < 1:
            return
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        # iteration-based loops hold an endless iterator of the training data; epoch-based ones get a fresh one
        batches = getattr(loop, "dataloader_iterator", None) or iter(runner.train_dataloader)
        num_iters = min(self.num_iters, runner.max_iters)  # shortened schedules get a proportionate pass
        count = update_bn_stats(model, batches, num_iters)
        runner.logger.info(f"precise BN: statistics of {count} BN layers recomputed over {num_iters} batches")
