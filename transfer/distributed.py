"""torch.distributed set-up from torchrun's environment variables (one process without them)."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Processes:
    """Where this process stands: its rank, the world size, its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes checkpoints and logs."""
        return self.rank == 0


def init_processes(use_gpu: bool | None = None) -> Processes:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT), if any.

    NCCL on GPUs, gloo on the CPU. Multi-node works through torchrun's usual
    variables (`--nnodes --node_rank --rdzv_endpoint`).
    """
    use_gpu = torch.cuda.is_available() if use_gpu is None else use_gpu
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_gpu:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_gpu else "gloo", device_id=device if use_gpu else None)
    return Processes(rank, world_size, local_rank, device)


def close_processes() -> None:
    """Leave the process group, if this run joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()

