"""A FIFO queue of embeddings (MoCo's memory of keys), filled with the keys of every process."""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


@torch.no_grad()
def gather_from_all(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate `tensor` (N x d) from every process in rank order -> (world*N) x d; itself on one process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


class EmbeddingQueue(nn.Module):
    """K x d l2-normalised embeddings; `push` writes the newest over the oldest.

    Both buffers live in the model's state dict, so a resumed run continues with
    the same queue. The start is random unit vectors, as in MoCo; the keys of all
    processes are gathered before they are written, so every replica holds the
    same queue.
    """

    def __init__(self, size: int, dim: int, generator: torch.Generator | None = None):
        super().__init__()
        self.register_buffer("keys", F.normalize(torch.randn(size, dim, generator=generator), dim=1))  # K x d
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))

    def snapshot(self) -> torch.Tensor:
        """The keys as they are now, safe to use in a graph while `push` later writes the buffer."""
        return self.keys.clone()

    @torch.no_grad()
    def push(self, keys: torch.Tensor) -> None:
        """Enqueue this step's keys (N x d) of every process, dequeuing the oldest."""
        keys = gather_from_all(keys.detach().to(self.keys.dtype))  # (world*N) x d
        size = self.keys.shape[0]
        keys = keys[-size:]
        index = (self.pointer + torch.arange(keys.shape[0], device=keys.device)) % size
        self.keys[index] = keys
        self.pointer.copy_((self.pointer + keys.shape[0]) % size)
