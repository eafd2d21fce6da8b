"""The frozen backbone under evaluation, and its pooled features over a dataset (sharded over processes)."""
from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from transfer.distributed import Processes
from transfer.backbone import resnet_trunk


class PooledBackbone(nn.Module):
    """A ResNet trunk followed by global average pooling: images -> N x C (C = 512 for R18, 2048 for R50)."""

    def __init__(self, trunk: nn.Module):
        super().__init__()
        self.trunk = trunk
        self.out_channels = trunk.out_channels

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """N x 3 x H x W -> N x C."""
        return self.trunk(images).mean(dim=(2, 3))


def load_frozen_backbone(weights: str | os.PathLike | None, arch: str) -> tuple[PooledBackbone, dict[str, Any]]:
    """The backbone of any checkpoint the converter reads (arch from the checkpoint), or a random `arch`.

    Frozen: eval mode (BN statistics fixed) and no gradients, as in MoCo's linear protocol.
    """
    if weights:
        from transfer.checkpoint import load_backbone

        state_dict, info = load_backbone(weights)
        trunk = resnet_trunk(info["arch"], state_dict, origin=str(weights))
    else:
        torch.manual_seed(0)  # the random-init baseline is the same network every time
        trunk = resnet_trunk(arch)
        info = {"source": None, "arch": arch}
    model = PooledBackbone(trunk).eval().requires_grad_(False)
    return model, info


def shard(dataset: Dataset, procs: Processes) -> tuple[Subset, int]:
    """This process's contiguous block of `dataset` and the block size (the last block may be shorter)."""
    n = len(dataset)
    block = -(-n // procs.world_size)
    start = min(n, procs.rank * block)
    return Subset(dataset, range(start, min(n, start + block))), block


def gather_blocks(local: torch.Tensor, block: int, total: int) -> torch.Tensor:
    """Concatenate every process's block (padded to `block` rows for all_gather) in rank order, cut to `total`."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return local
    padded = torch.zeros((block, *local.shape[1:]), dtype=local.dtype, device=local.device)
    padded[:local.shape[0]] = local
    parts = [torch.empty_like(padded) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, padded)
    return torch.cat(parts)[:total]


@torch.no_grad()
def extract_features(model: nn.Module, dataset: Dataset, procs: Processes, batch_size: int = 256,
                     workers: int = 4, amp: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(features N x C float32, labels N) of every image of `dataset`, in dataset order, on every process."""
    part, block = shard(dataset, procs)
    loader = DataLoader(part, batch_size=batch_size, shuffle=False, num_workers=workers,
                        pin_memory=procs.device.type == "cuda")
    features, labels = [], []
    for images, target in loader:
        with torch.autocast(procs.device.type, dtype=torch.bfloat16, enabled=amp):
            features.append(model(images.to(procs.device, non_blocking=True)).float())
        labels.append(target.to(procs.device))
    dim = getattr(model, "out_channels", None) or features[0].shape[1]
    local_f = torch.cat(features) if features else torch.zeros(0, dim, device=procs.device)
    local_l = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long, device=procs.device)
    return gather_blocks(local_f, block, len(dataset)), gather_blocks(local_l, block, len(dataset))
