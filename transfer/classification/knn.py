"""Weighted k-nearest-neighbour classification on frozen features (InstDisc; DINO's eval_knn).

For a query q and the l2-normalised train features, take the k most cosine-similar
train images; each votes for its label with weight exp(sim / T); the class with the
largest sum wins. k = 20 and T = 0.07 by default.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def knn_predict(train_features: torch.Tensor, train_labels: torch.Tensor, queries: torch.Tensor, num_classes: int,
                k: int = 20, temperature: float = 0.07, chunk: int = 1024) -> torch.Tensor:
    """Class scores of each query: N_train x C, N_train, N_q x C -> N_q x num_classes (summed vote weights)."""
    bank = F.normalize(train_features.float(), dim=1)  # N_train x C
    k = min(k, bank.shape[0])
    out = []
    for start in range(0, queries.shape[0], chunk):
        q = F.normalize(queries[start:start + chunk].float(), dim=1)  # B x C
        sims, index = (q @ bank.T).topk(k, dim=1)  # B x k
        votes = torch.zeros(q.shape[0], num_classes, device=q.device)  # B x num_classes
        votes.scatter_add_(1, train_labels[index], (sims / temperature).exp())
        out.append(votes)
    return torch.cat(out)


def knn_accuracy(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                 test_labels: torch.Tensor, num_classes: int, k: int = 20, temperature: float = 0.07) -> float:
    """Top-1 accuracy in percent of the weighted kNN classifier."""
    scores = knn_predict(train_features, train_labels, test_features, num_classes, k, temperature)
    correct = int((scores.argmax(1) == test_labels.to(scores.device)).sum())
    return 100.0 * correct / len(test_labels)
