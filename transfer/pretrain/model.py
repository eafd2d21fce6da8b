"""The pretraining model: student, teacher and queues, and the loss of method.md for SSA and its baselines.

    Loss = w_soft * L_cd_soft + w_nce * L_cd_nce + a * L_align + b * L_ssa

- `ssa`:     all terms (w_soft = w_nce = a = b = 1);
- `seed`:    SEED's soft target only (w_soft = 1, the rest 0);
- `moco_v2`: InfoNCE against a momentum (EMA) key encoder and a queue (w_nce = 1, the rest 0).

Each term is a function of `transfer.pretrain.losses` named after it. The student
is trained; the teacher is frozen (loaded from a checkpoint) or an EMA of the
student, and runs in eval mode without gradients. The state dict holds
`student.backbone.*` (torchvision names), `student.heads.*`, `teacher.*`,
`queue.*` and `aggregate_queue.*` (the pretraining checkpoint, contract 2).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from transfer.pretrain import losses
from transfer.pretrain.encoder import Encoder
from transfer.pretrain.queue import EmbeddingQueue
from transfer.pretrain.teacher import calibrate_batch_norm, ema_update

# The loss terms by their log name, in the order of method.md.
TERMS = ("cd_soft", "cd_nce", "align", "aggregation")


@dataclass(frozen=True)
class LossSettings:
    """The weights and temperatures of the loss (the config's `loss` and `aggregation` sections)."""

    cd_soft_weight: float = 1.0     # SEED's soft target (part of L_cd)
    cd_nce_weight: float = 1.0      # InfoNCE of s against t (part of L_cd)
    align_weight: float = 1.0       # a: L_align
    aggregation_weight: float = 1.0  # b: L_ssa
    tau_s: float = 0.2
    tau_t: float = 0.05
    symmetric: bool = True          # both views through both networks, loss averaged over the two directions
    rho: float = 0.25               # fraction of locations the aggregation keeps
    tau_a: float = 0.1              # temperature of the location scores a_i (only weighting="softmax" uses it)
    weighting: str = "uniform"      # aggregation weights of the kept locations: uniform | softmax
    aggregation_tau: float = 0.2    # temperature of the aggregates' InfoNCE

    @property
    def dense(self) -> bool:
        """Whether a term uses the dense embeddings (the alignment or the aggregation)."""
        return self.align_weight > 0 or self.aggregation_weight > 0

    def weight(self, term: str) -> float:
        """The weight of a loss term, by its log name (`TERMS`)."""
        return {"cd_soft": self.cd_soft_weight, "cd_nce": self.cd_nce_weight, "align": self.align_weight,
                "aggregation": self.aggregation_weight}[term]


class PretrainModel(nn.Module):
    """Student S, teacher T and the queues; `forward(view1, view2)` returns the loss and its terms."""

    def __init__(self, student: Encoder, teacher: Encoder, settings: LossSettings, queue_size: int,
                 aggregate_queue_size: int, ema: bool, seed: int = 0):
        super().__init__()
        if not settings.symmetric and settings.dense:
            raise ValueError("loss.symmetric=false (MoCo v2's one-direction loss) cannot use the alignment or "
                             "aggregation terms, which need both networks on the same view; set them to 0")
        self.student, self.teacher, self.settings, self.ema = student, teacher, settings, ema
        dim = student.heads.mlp[-1].out_features
        generator = torch.Generator().manual_seed(seed)  # the same random start on every process
        self.queue = EmbeddingQueue(queue_size, dim, generator)  # teacher embeddings t
        self.aggregate_queue = (EmbeddingQueue(aggregate_queue_size, dim, generator)  # teacher aggregates z_T
                                if settings.aggregation_weight > 0 else None)

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
        The networks run under the caller's autocast; the loss terms do not (`loss_terms`).
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
        p_t = p_t_trained = None
        if cfg.align_weight > 0 and any(p.requires_grad for p in self.teacher.heads.parameters()):
            # teacher.heads=align: the alignment term is the one gradient into the teacher's dense head
            p_t_trained = self.teacher.heads.dense_embedding(f_t)
            p_t = p_t_trained.detach()
        elif cfg.dense:
            with torch.no_grad():
                p_t = self.teacher.heads.dense_embedding(f_t)

        terms, z_t = self.loss_terms(s, t, p_s, p_t, p_t_trained)

        # dequeue and enqueue: both views' teacher embeddings (and aggregates)
        self.queue.push(t)
        if z_t is not None:
            self.aggregate_queue.push(z_t)
        return self.weighted_sum(terms), terms

    def loss_terms(self, s: torch.Tensor, t: torch.Tensor, p_s: torch.Tensor | None, p_t: torch.Tensor | None,
                   p_t_trained: torch.Tensor | None = None
                   ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """The unweighted terms from both views' embeddings, in float32 even under bf16 autocast.

        s, t 2N x d and p_s, p_t 2N x hw x d hold [view 1; view 2]; `p_t_trained` is
        p_t with its graph (teacher.heads=align). Returns the terms and the teacher
        aggregates z_T (2N x d) to enqueue, or None without L_ssa. Autocast is off here:
        under it `s @ Q.T` and the aggregation would run in bf16 beside float32 positives.
        """
        cfg = self.settings
        terms: dict[str, torch.Tensor] = {}
        z_t = None
        with torch.autocast(s.device.type, enabled=False):
            s1, s2 = s.chunk(2)  # N x d each
            t1, t2 = t.chunk(2)

            # 1. contrastive distillation: s of one view against t of the other, with the queue of teacher embeddings
            self._distillation_terms([(s1, t2), (s2, t1)], terms)

            # 2. feature alignment: student and teacher dense embeddings of the same view, location by location
            if cfg.align_weight > 0:
                terms["align"] = losses.feature_alignment(p_s, p_t_trained if p_t_trained is not None else p_t)

            # 3. sparse spatial aggregation: pool the top-rho locations by the teacher's score, contrast across views
            if cfg.aggregation_weight > 0:
                terms["aggregation"], z_t = losses.sparse_spatial_aggregation(
                    p_s, p_t, t, self.aggregate_queue.snapshot(), cfg.rho, cfg.tau_a, cfg.aggregation_tau,
                    cfg.weighting)
        return terms, z_t

    def weighted_sum(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """The loss: each term times its weight."""
        return sum(self.settings.weight(name) * value for name, value in terms.items())

    def _distillation_terms(self, pairs: list[tuple[torch.Tensor, torch.Tensor]],
                            terms: dict[str, torch.Tensor]) -> None:
        """L_cd's parts (those with a weight) into `terms`, averaged over the (student, teacher) pairs."""
        cfg = self.settings
        if cfg.cd_soft_weight <= 0 and cfg.cd_nce_weight <= 0:
            return
        queue = self.queue.snapshot()  # K x d
        parts = [losses.contrastive_distillation(s, t, queue, cfg.tau_s, cfg.tau_t) for s, t in pairs]
        if cfg.cd_soft_weight > 0:
            terms["cd_soft"] = sum(soft for soft, _ in parts) / len(parts)
        if cfg.cd_nce_weight > 0:
            terms["cd_nce"] = sum(nce for _, nce in parts) / len(parts)

    def _moco_one_direction(self, view1: torch.Tensor, view2: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """MoCo v2's one direction: query q = S(view1), key k = T(view2).

        Unlike MoCo, the key encoder runs in eval mode (EMA'd BN statistics), so it
        needs no shuffle BN (configs/pretrain/moco_v2_asym.yaml says so).
        """
        q, _ = self.student(view1, dense=False)  # N x d
        with torch.no_grad():
            k, _ = self.teacher(view2, dense=False)  # N x d
        terms: dict[str, torch.Tensor] = {}
        with torch.autocast(q.device.type, enabled=False):
            self._distillation_terms([(q, k)], terms)
        self.queue.push(k)
        return self.weighted_sum(terms), terms
