"""The projection heads of method.md: a global MLP g and a dense projector p on the last feature map."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """Embeddings leave autocast in float32 (losses and queues are float32); float64 stays (tests)."""
    return x if x.dtype == torch.float64 else x.float()


def mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """MoCo v2's 2-layer MLP head (Linear-ReLU-Linear); DisCo's point is a wide hidden layer (2048)."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))


class ProjectionHeads(nn.Module):
    """g (global: average-pooled features -> d) and p (dense: the same MLP as 1x1 convolutions, per location).

    With `shared=True` (our default) p uses g's weights: a 1x1 convolution with the
    Linear's weights, applied at each location. method.md says "the same MLP as
    1x1 convolutions"; sharing puts the dense embeddings p(F)[i] in the same space
    as the global embedding g(pool F), which the aggregation scores need
    (a_i = p_T(F_T)[i] . t compares a location with the global embedding). With
    `shared=False` p is a separate MLP of the same shape (DenseCL/PixPro style).
    """

    def __init__(self, in_dim: int, hidden: int = 2048, out_dim: int = 128, dense: bool = True, shared: bool = True):
        super().__init__()
        self.mlp = mlp(in_dim, hidden, out_dim)
        self.shared = shared
        # the separate dense MLP exists only when a loss uses it (DDP needs every parameter to get a gradient)
        self.dense_mlp = mlp(in_dim, hidden, out_dim) if dense and not shared else None

    def global_embedding(self, feature: torch.Tensor) -> torch.Tensor:
        """g: feature map N x C x h x w -> l2-normalised N x d."""
        pooled = feature.mean(dim=(2, 3))  # N x C
        return F.normalize(_at_least_fp32(self.mlp(pooled)), dim=1)

    def dense_embedding(self, feature: torch.Tensor) -> torch.Tensor:
        """p: feature map N x C x h x w -> l2-normalised N x hw x d (locations in row-major order)."""
        # a 1x1 convolution is a Linear applied to the channels of each location
        per_location = feature.flatten(2).transpose(1, 2)  # N x hw x C
        head = self.mlp if self.shared else self.dense_mlp
        return F.normalize(_at_least_fp32(head(per_location)), dim=2)  # N x hw x d
