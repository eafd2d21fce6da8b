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

    With `norm=True` each path ends in a BatchNorm without affine parameters before
    the l2-normalisation (MoCo v3's and SimSiam's projector end), with its own
    statistics per path (pooled vectors and single locations differ in scale).
    Why: the pooled features of a ResNet are all positive, so the embeddings of an
    MLP head share one large common component. Measured (R18 at 32 px, a frozen
    supervised R18 teacher with a random head): the teacher's embeddings of different
    images had cosine 0.76, of two views of one image 0.80, so its targets said
    almost nothing; on the pattern images (`transfer/data/patterns.py`) the student's
    loss stayed at ln(K+1) and its kNN fell below its random init (31.8 vs 45.0),
    with the norm the same 150-step run reached 65.2 (tests/test_pretrain_learning.py).
    """

    def __init__(self, in_dim: int, hidden: int = 2048, out_dim: int = 128, dense: bool = True, shared: bool = True,
                 norm: bool = False):
        super().__init__()
        self.mlp = mlp(in_dim, hidden, out_dim)
        self.shared = shared
        self.dense = dense
        # the separate dense MLP exists only when a loss uses it (DDP needs every parameter to get a gradient)
        self.dense_mlp = mlp(in_dim, hidden, out_dim) if dense and not shared else None
        self.norm = nn.BatchNorm1d(out_dim, affine=False) if norm else None
        self.dense_norm = nn.BatchNorm1d(out_dim, affine=False) if norm and dense else None

    def global_embedding(self, feature: torch.Tensor) -> torch.Tensor:
        """g: feature map N x C x h x w -> l2-normalised N x d."""
        pooled = feature.mean(dim=(2, 3))  # N x C
        z = _at_least_fp32(self.mlp(pooled))  # N x d
        if self.norm is not None:
            z = self.norm(z)
        return F.normalize(z, dim=1)

    def dense_embedding(self, feature: torch.Tensor) -> torch.Tensor:
        """p: feature map N x C x h x w -> l2-normalised N x hw x d (locations in row-major order)."""
        # a 1x1 convolution is a Linear applied to the channels of each location
        per_location = feature.flatten(2).transpose(1, 2)  # N x hw x C
        head = self.mlp if self.shared else self.dense_mlp
        z = _at_least_fp32(head(per_location))  # N x hw x d
        if self.dense_norm is not None:
            z = self.dense_norm(z.flatten(0, 1)).view_as(z)  # statistics over all N*hw locations
        return F.normalize(z, dim=2)
