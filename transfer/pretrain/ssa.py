"""SSA: contrastive distillation with sparse spatial aggregation (method.md), and its baselines in one module.

    Loss = w_soft * L_cd_soft + w_nce * L_cd_nce + a * L_align + b * L_ssa

- `ssa`:     all terms (w_soft = w_nce = a = b = 1);
- `seed`:    SEED's soft target only (w_soft = 1, the rest 0);
- `moco_v2`: InfoNCE against a momentum (EMA) key encoder and a queue (w_nce = 1, the rest 0).

The student is trained; the teacher is frozen (loaded from a checkpoint) or an EMA
of the student, and runs in eval mode without gradients. The state dict holds
`student.backbone.*` (torchvision names), `student.heads.*`, `teacher.*`,
`queue.*` and `ssa_queue.*`: the SSA checkpoint format (contract 2).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from transfer.pretrain import losses
from transfer.pretrain.encoder import Encoder
from transfer.pretrain.queue import EmbeddingQueue
from transfer.pretrain.teacher import calibrate_batch_norm, ema_update


@dataclass(frozen=True)
class LossSettings:
    """The weights and temperatures of the loss (the config's `loss` and `ssa` sections)."""

    cd_soft_weight: float = 1.0   # SEED's soft target (part of L_cd)
    cd_nce_weight: float = 1.0    # InfoNCE of s against t (part of L_cd)
    align_weight: float = 1.0     # a
    ssa_weight: float = 1.0       # b
    tau_s: float = 0.2
    tau_t: float = 0.05
    symmetric: bool = True        # both views through both networks, loss averaged over the two directions
    rho: float = 0.25             # fraction of locations the aggregation keeps
    tau_a: float = 0.1            # temperature of the location scores a_i
    weighting: str = "uniform"    # aggregation weights of the kept locations: uniform | softmax
    ssa_tau: float = 0.2          # temperature of the aggregates' InfoNCE

    @property
    def dense(self) -> bool:
        """Whether a term uses the dense embeddings (the alignment or the aggregation)."""
        return self.align_weight > 0 or self.ssa_weight > 0


class PretrainModel(nn.Module):
    """Student S, teacher T and the queues; `forward(view1, view2)` returns the loss and its terms."""

    def __init__(self, student: Encoder, teacher: Encoder, settings: LossSettings, queue_size: int,
                 ssa_queue_size: int, ema: bool, seed: int = 0):
        super().__init__()
        if not settings.symmetric and settings.dense:
            raise ValueError("loss.symmetric=false (MoCo v2's one-direction loss) cannot use the alignment or "
                             "aggregation terms, which need both networks on the same view; set them to 0")
        self.student, self.teacher, self.settings, self.ema = student, teacher, settings, ema
        dim = student.heads.mlp[-1].out_features
        generator = torch.Generator().manual_seed(seed)  # the same random start on every process
        self.queue = EmbeddingQueue(queue_size, dim, generator)  # teacher embeddings t
        self.ssa_queue = EmbeddingQueue(ssa_queue_size, dim, generator) if settings.ssa_weight > 0 else None

    def train(self, mode: bool = True) -> PretrainModel:
        """Train mode for the student only: the teacher always runs in eval mode (frozen BN statistics)."""
        super().train(mode)
        self.teacher.eval()
        return self

    @torch.no_grad()
    def start_teacher(self, view1: torch.Tensor, view2: torch.Tensor) -> None:
        """Before the first step: measure the initial BN statistics (EMA teacher: all, started from the student;
        frozen teacher: its new heads' norms only)."""
        images = torch.cat([view1, view2])
        if self.ema:
            calibrate_batch_norm(self.student, images)
            self.teacher.load_state_dict(self.student.state_dict())
        else:
            calibrate_batch_norm(self.teacher, images, only=self.teacher.heads)

    def forward(self, view1: torch.Tensor, view2: torch.Tensor,
                momentum: float | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Views N x 3 x S x S each -> (weighted loss, {term name: unweighted value}).

        The EMA teacher is updated first, with `momentum`: inside forward, after DDP
        has broadcast the student's buffers, so every replica computes the same teacher.
        """
        if self.ema and momentum is not None:
            ema_update(self.teacher, self.student, momentum)
        if not self.settings.symmetric:
            return self._moco_one_direction(view1, view2)
        cfg = self.settings
        images = torch.cat([view1, view2])  # 2N x 3 x S x S: both views in one pass

        # compute student embeddings: s 2N x d, p_s 2N x hw x d
        s, p_s = self.student(images, dense=cfg.dense)

        # compute teacher embeddings, without gradients: t 2N x d, p_t 2N x hw x d
        with torch.no_grad():
            f_t = self.teacher.backbone(images)  # 2N x C_T x hw
            t = self.teacher.heads.global_embedding(f_t)
        p_t_trained = None
        if cfg.align_weight > 0 and any(p.requires_grad for p in self.teacher.heads.parameters()):
            # teacher.heads=align: the alignment term is the one gradient into the teacher's dense head
            p_t_trained = self.teacher.heads.dense_embedding(f_t)
            p_t = p_t_trained.detach()
        elif cfg.dense:
            with torch.no_grad():
                p_t = self.teacher.heads.dense_embedding(f_t)

        s1, s2 = s.chunk(2)  # N x d each
        t1, t2 = t.chunk(2)
        terms: dict[str, torch.Tensor] = {}

        # 1. contrastive distillation: s of one view against t of the other, with the queue of teacher embeddings
        if cfg.cd_soft_weight > 0 or cfg.cd_nce_weight > 0:
            queue = self.queue.snapshot()  # K x d
            soft12, nce12 = losses.contrastive_distillation(s1, t2, queue, cfg.tau_s, cfg.tau_t)
            soft21, nce21 = losses.contrastive_distillation(s2, t1, queue, cfg.tau_s, cfg.tau_t)
            if cfg.cd_soft_weight > 0:
                terms["cd_soft"] = (soft12 + soft21) / 2
            if cfg.cd_nce_weight > 0:
                terms["cd_nce"] = (nce12 + nce21) / 2

        # 2. feature alignment: student and teacher dense embeddings of the same view, location by location
        if cfg.align_weight > 0:
            terms["align"] = losses.feature_alignment(p_s, p_t_trained if p_t_trained is not None else p_t)

        # 3. sparse spatial aggregation: pool the top-rho locations by the teacher's score, contrast across views
        if cfg.ssa_weight > 0:
            scores = losses.location_scores(p_t, t, cfg.tau_a)  # 2N x hw
            index, weight = losses.select_locations(scores, cfg.rho, cfg.weighting)  # 2N x k each
            z_s = losses.aggregate(p_s, index, weight)  # 2N x d: student pooled where the teacher looks
            z_t = losses.aggregate(p_t, index, weight)  # 2N x d
            zs1, zs2 = z_s.chunk(2)
            zt1, zt2 = z_t.chunk(2)
            ssa_queue = self.ssa_queue.snapshot()  # K' x d
            terms["ssa"] = (losses.info_nce(zs1, zt2, ssa_queue, cfg.ssa_tau)
                            + losses.info_nce(zs2, zt1, ssa_queue, cfg.ssa_tau)) / 2
            self.ssa_queue.push(z_t)

        # dequeue and enqueue: both views' teacher embeddings
        self.queue.push(t)
        weights = {"cd_soft": cfg.cd_soft_weight, "cd_nce": cfg.cd_nce_weight, "align": cfg.align_weight,
                   "ssa": cfg.ssa_weight}
        loss = sum(weights[name] * value for name, value in terms.items())
        return loss, terms

    def _moco_one_direction(self, view1: torch.Tensor, view2: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """MoCo v2 as published: query q = S(view1), key k = T(view2), one direction."""
        cfg = self.settings
        q, _ = self.student(view1, dense=False)  # N x d
        with torch.no_grad():
            k, _ = self.teacher(view2, dense=False)  # N x d
        queue = self.queue.snapshot()
        terms: dict[str, torch.Tensor] = {}
        if cfg.cd_soft_weight > 0 or cfg.cd_nce_weight > 0:
            soft, nce = losses.contrastive_distillation(q, k, queue, cfg.tau_s, cfg.tau_t)
            if cfg.cd_soft_weight > 0:
                terms["cd_soft"] = soft
            if cfg.cd_nce_weight > 0:
                terms["cd_nce"] = nce
        self.queue.push(k)
        loss = sum({"cd_soft": cfg.cd_soft_weight, "cd_nce": cfg.cd_nce_weight}[n] * v for n, v in terms.items())
        return loss, terms
