"""The teacher T: a frozen pretrained ResNet loaded from a checkpoint, or an EMA copy of the student."""
from __future__ import annotations

import copy
import math
import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from transfer.backbone import resnet_trunk
from transfer.pretrain.encoder import Encoder


def load_frozen_teacher(path: str | os.PathLike, head_hidden: int, head_dim: int, dense: bool, shared: bool,
                        heads: str, seed: int, norm: bool = False) -> tuple[Encoder, dict[str, Any]]:
    """A frozen teacher from any checkpoint the converter reads, with its own heads g_T, p_T.

    The checkpoint gives only the backbone (its SSL heads, if any, are dropped by the
    converter), so the heads are new: `heads="random"` (our default) keeps them a fixed
    random projection, seeded by `seed`, so the teacher's targets never move and old
    queue entries stay valid; `heads="align"` lets the alignment term train them (the
    only term with a gradient into the teacher).
    """
    from transfer.checkpoint import load_backbone  # the converter's reader (contract 1)

    state_dict, info = load_backbone(path)
    backbone = resnet_trunk(info["arch"], state_dict, origin=str(path))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        teacher = Encoder(backbone, head_hidden, head_dim, dense=dense, shared=shared, norm=norm)
    teacher.requires_grad_(False)
    if heads == "align":
        teacher.heads.requires_grad_(True)
    elif heads != "random":
        raise ValueError(f"teacher.heads must be 'random' or 'align', not {heads!r}")
    return teacher, info


def ema_teacher(student: Encoder) -> Encoder:
    """The EMA teacher's start: an exact copy of the student, with no gradients."""
    teacher = copy.deepcopy(student)
    teacher.requires_grad_(False)
    return teacher


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """teacher = momentum * teacher + (1 - momentum) * student, for parameters and BN running statistics.

    The teacher runs in eval mode (method.md), so its BN layers normalise with
    running statistics; averaging them like the weights keeps them consistent with
    the averaged weights. Their start must be right too: `calibrate_batch_norm`
    measures the initial network's statistics before the first step. Eval mode,
    unlike MoCo's train-mode key encoder, has no batch statistics that could leak
    which keys belong to the current batch, so no shuffle BN is needed.
    Integer buffers (BN's batch counters) are copied.
    """
    t_params = list(teacher.parameters())
    s_params = [p.detach() for p in student.parameters()]
    torch._foreach_mul_(t_params, momentum)
    torch._foreach_add_(t_params, s_params, alpha=1 - momentum)
    for t_buf, s_buf in zip(teacher.buffers(), student.buffers()):
        if t_buf.dtype.is_floating_point:
            t_buf.mul_(momentum).add_(s_buf, alpha=1 - momentum)
        else:
            t_buf.copy_(s_buf)


@torch.no_grad()
def calibrate_batch_norm(encoder: Encoder, images: torch.Tensor, only: nn.Module | None = None) -> None:
    """Set the running statistics of every BN layer of `encoder` (or of its part `only`) to their exact statistics on
    `images` (averaged over processes).

    A new network's running statistics are mean 0, variance 1, far from its real
    activations: in eval mode it is unnormalised and all its embeddings coincide.
    An EMA teacher made from it would give no usable target for hundreds of steps
    (the runs collapsed, we measured it); one pass over the first batch fixes that.
    A frozen teacher keeps its pretrained backbone statistics: `only=teacher.heads`
    measures just its new heads' norms (`model.head_norm=bn`).
    """
    norms = [m for m in (only or encoder).modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    saved = [(m.momentum, m.training) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: after one batch, exactly its statistics
        m.train()
    encoder(images, dense=encoder.heads.dense)  # both paths, so both heads' norms are measured
    for m, (momentum, training) in zip(norms, saved):
        m.momentum = momentum
        m.train(training)
        if dist.is_available() and dist.is_initialized():
            for buf in (m.running_mean, m.running_var):
                dist.all_reduce(buf)
                buf /= dist.get_world_size()


def ema_momentum(step: int, total_steps: int, start: float, end: float, schedule: str = "cosine") -> float:
    """The EMA momentum at `step`: `start` rising to `end` on a half cosine (BYOL), or constant `start` (MoCo)."""
    if schedule == "constant" or total_steps <= 1:
        return start
    if schedule != "cosine":
        raise ValueError(f"unknown teacher.momentum_schedule {schedule!r} (cosine or constant)")
    progress = min(step / (total_steps - 1), 1.0)
    return end - (end - start) * (math.cos(math.pi * progress) + 1) / 2
