"""Average precision of one binary classifier's scores: the VOC area (test) and the ranked sum (cross-validation).

Both rank the images by score (highest first) and read precision P_n and recall R_n
after the n-th image:

- `voc_ap`, the test metric of Goyal et al.'s benchmark (VISSL's and mmselfsup's
  `get_precision_recall` + `calculate_ap`): the area under the precision envelope,
  AP = sum_n (R_n - R_{n-1}) * max_{m >= n} P_m, with R_0 = 0 and the curve closed at R = 1.
- `ranked_ap`, the `average_precision` scoring of sklearn's `cross_val_score` that the
  toolkits use to choose the SVM cost: AP = sum_n (R_n - R_{n-1}) * P_n over the distinct
  scores (tied scores count as one threshold), no envelope.
"""
from __future__ import annotations

import torch


def _ranked_counts(scores: torch.Tensor, positive: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cumulative true and false positives down the ranking (N, N): scores N, positive N bool."""
    order = scores.argsort(descending=True, stable=True)
    hits = positive[order].double()
    return hits.cumsum(0), (1 - hits).cumsum(0)


def voc_ap(scores: torch.Tensor, positive: torch.Tensor) -> float:
    """VOC AP (0..1) of `scores` (N) for the images marked `positive` (N bool); nan when none is positive."""
    n_pos = int(positive.sum())
    if n_pos == 0:
        return float("nan")
    tp, fp = _ranked_counts(scores, positive)
    precision = torch.cat([tp.new_zeros(1), tp / (tp + fp), tp.new_zeros(1)])
    recall = torch.cat([tp.new_zeros(1), tp / n_pos, tp.new_ones(1)])
    # the envelope: each precision raised to the best precision at any higher recall
    precision = precision.flip(0).cummax(0).values.flip(0)
    step = recall[1:] != recall[:-1]
    return float(((recall[1:] - recall[:-1]) * precision[1:])[step].sum())


def ranked_ap(scores: torch.Tensor, positive: torch.Tensor) -> float:
    """sklearn's `average_precision_score` (0..1): ranked sum over distinct scores; nan when none is positive."""
    n_pos = int(positive.sum())
    if n_pos == 0:
        return float("nan")
    tp, fp = _ranked_counts(scores, positive)
    ranked = scores[scores.argsort(descending=True, stable=True)]
    last = torch.ones_like(ranked, dtype=torch.bool)  # the last image of each group of tied scores
    last[:-1] = ranked[1:] != ranked[:-1]
    tp, fp = tp[last], fp[last]
    recall = torch.cat([tp.new_zeros(1), tp / n_pos])
    return float(((recall[1:] - recall[:-1]) * tp / (tp + fp)).sum())
