"""What the suite's tests share: the shrunk run flags and small checkpoints."""
from __future__ import annotations

from pathlib import Path

import torch
import torchvision

# Every run shrunk for the CPU; a CPU-sized detection batch (the protocol's is 8 GPUs x 2).
SHRUNK = ["--gpus", "0", "--max-iters", "2", "--input-size", "64", "linear:linear.workers=0",
          "linear:linear.batch_size=8", "linear:linear.precompute_features=true",
          "voc:protocol_gpus=1", "voc:train_dataloader.batch_size=2", "voc:custom_hooks.0.num_iters=1",
          "coco:protocol_gpus=1", "coco:train_dataloader.batch_size=2", "coco:custom_hooks.0.num_iters=1"]


def r18_checkpoint(path: Path, seed: int) -> Path:
    """A torchvision ResNet-18 state dict with random weights (the runners convert it)."""
    torch.manual_seed(seed)
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return path
