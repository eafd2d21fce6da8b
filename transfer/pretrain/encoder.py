"""An encoder of method.md: a ResNet backbone with its projection heads g and p."""
from __future__ import annotations

import torch
from torch import nn

from transfer.backbone import ResNetTrunk
from transfer.pretrain.heads import ProjectionHeads


class Encoder(nn.Module):
    """`backbone` (state dict keys `backbone.<torchvision name>`) and `heads` (`heads.mlp.*`, `heads.dense_mlp.*`,
    `heads.norm.*`, `heads.dense_norm.*`)."""

    def __init__(self, backbone: ResNetTrunk, head_hidden: int = 2048, head_dim: int = 128, dense: bool = True,
                 shared: bool = True, norm: bool = False):
        super().__init__()
        self.backbone = backbone
        self.heads = ProjectionHeads(backbone.out_channels, head_hidden, head_dim, dense=dense, shared=shared,
                                     norm=norm)

    def forward(self, images: torch.Tensor, dense: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """images N x 3 x H x W -> global embedding N x d and (if `dense`) dense embeddings N x hw x d."""
        feature = self.backbone(images)  # N x C x H/32 x W/32
        g = self.heads.global_embedding(feature)
        p = self.heads.dense_embedding(feature) if dense else None
        return g, p
