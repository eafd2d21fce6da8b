"""The three loss terms of method.md, each a function of its name: L_cd, L_align, L_ssa.

    Loss = L_cd + a * L_align + b * L_ssa
- `contrastive_distillation`: L_cd (SEED's soft target and the InfoNCE of s against t);
- `feature_alignment`:        L_align;
- `sparse_spatial_aggregation`: L_ssa, built from `location_scores`, `select_locations`
  and `aggregate`.

Notation: s, t are l2-normalised student / teacher embeddings (N x d), Q a queue
of teacher embeddings (K x d), P a dense embedding map (N x HW x d, l2-normalised
per location). Every function returns the mean over the batch. The model calls them
with autocast off, so they run in the embeddings' dtype (float32) even in a bf16 run.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def contrastive_distillation(s: torch.Tensor, t: torch.Tensor, queue: torch.Tensor, tau_s: float,
                             tau_t: float) -> tuple[torch.Tensor, torch.Tensor]:
    """L_cd's two parts: SEED's soft target and the InfoNCE of s against its positive t.

    p_T = softmax(t . [t, Q] / tau_T),  p_S = softmax(s . [t, Q] / tau_S)
    soft = -sum p_T log p_S;  nce = -log p_S[positive]  (the positive is column 0).
    """
    # similarities with the candidates [t, Q]: N x (1+K), the own teacher embedding first
    teacher_logits = torch.cat([(t * t).sum(1, keepdim=True), t @ queue.T], dim=1) / tau_t  # N x (1+K)
    student_logits = torch.cat([(s * t).sum(1, keepdim=True), s @ queue.T], dim=1) / tau_s  # N x (1+K)
    log_p_s = F.log_softmax(student_logits, dim=1)
    p_t = F.softmax(teacher_logits, dim=1)
    soft = -(p_t * log_p_s).sum(1).mean()
    nce = -log_p_s[:, 0].mean()
    return soft, nce


def info_nce(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, tau: float) -> torch.Tensor:
    """MoCo's InfoNCE: q against its positive k, with the queue as negatives."""
    positive = (q * k).sum(1, keepdim=True)  # N x 1
    negatives = q @ queue.T  # N x K
    logits = torch.cat([positive, negatives], dim=1) / tau  # N x (1+K)
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))


def feature_alignment(p_s: torch.Tensor, p_t: torch.Tensor) -> torch.Tensor:
    """L_align: mean over locations of 1 - cos(p_S(F_S)[i], p_T(F_T)[i]) (inputs already l2-normalised)."""
    return (1 - (p_s * p_t).sum(dim=2)).mean()  # N x HW cosines -> scalar


def location_scores(p_t: torch.Tensor, t: torch.Tensor, tau_a: float) -> torch.Tensor:
    """a_i = softmax_i(p_T(F_T)[i] . t / tau_a): how much each location agrees with the global embedding.

    p_t: N x HW x d, t: N x d -> N x HW (each row sums to 1). The softmax keeps the
    order of the locations, so the top-rho selection is the same at any tau_a: tau_a
    matters only where the kept a_i are the weights (`weighting="softmax"`).
    """
    return F.softmax(torch.einsum("nld,nd->nl", p_t, t) / tau_a, dim=1)


def num_kept(rho: float, locations: int) -> int:
    """How many locations the top-rho selection keeps: ceil(rho * HW), at least 1."""
    return min(locations, max(1, math.ceil(rho * locations - 1e-9)))


def select_locations(scores: torch.Tensor, rho: float, weighting: str = "uniform") -> tuple[torch.Tensor, torch.Tensor]:
    """The top rho*HW locations by teacher score, and their aggregation weights (each row sums to 1).

    scores: N x HW -> (index N x k, weight N x k). `weighting="uniform"` averages the
    kept locations (so rho = 1 is exactly dense average pooling); `"softmax"` keeps
    the teacher's a_i, renormalised over the kept locations.
    """
    k = num_kept(rho, scores.shape[1])
    top, index = scores.topk(k, dim=1)  # N x k
    if weighting == "uniform":
        weight = torch.full_like(top, 1.0 / k)
    elif weighting == "softmax":
        weight = top / top.sum(dim=1, keepdim=True)
    else:
        raise ValueError(f"unknown aggregation weighting {weighting!r} (uniform or softmax)")
    return index, weight


def aggregate(dense: torch.Tensor, index: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """z = normalise(sum_{i in top} w_i P[i]): dense N x HW x d, index/weight N x k -> N x d."""
    picked = dense.gather(1, index.unsqueeze(2).expand(-1, -1, dense.shape[2]))  # N x k x d
    return F.normalize((weight.unsqueeze(2) * picked).sum(dim=1), dim=1)  # N x d


def sparse_spatial_aggregation(p_s: torch.Tensor, p_t: torch.Tensor, t: torch.Tensor, queue: torch.Tensor,
                               rho: float, tau_a: float, tau: float,
                               weighting: str = "uniform") -> tuple[torch.Tensor, torch.Tensor]:
    """L_ssa of both directions, and the teacher aggregates z_T to enqueue.

    Inputs hold both views stacked, [view 1; view 2]: p_s, p_t 2N x HW x d, t 2N x d,
    queue K' x d of teacher aggregates. The teacher's scores a_i pick the top rho*HW
    locations of each view; the student and the teacher are pooled there (z_S, z_T),
    and z_S of one view is contrasted with z_T of the other (InfoNCE against the queue):
        L_ssa = (InfoNCE(z_S1, z_T2) + InfoNCE(z_S2, z_T1)) / 2.
    """
    scores = location_scores(p_t, t, tau_a)  # 2N x HW
    index, weight = select_locations(scores, rho, weighting)  # 2N x k each
    z_s = aggregate(p_s, index, weight)  # 2N x d: the student pooled where the teacher looks
    z_t = aggregate(p_t, index, weight)  # 2N x d
    zs1, zs2 = z_s.chunk(2)
    zt1, zt2 = z_t.chunk(2)
    loss = (info_nce(zs1, zt2, queue, tau) + info_nce(zs2, zt1, queue, tau)) / 2
    return loss, z_t
