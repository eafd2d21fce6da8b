"""ResNet architectures by their torchvision key names: which depth a state dict is, and whether it is one."""
from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache

import torch
import torchvision

from transfer.checkpoint.fit import state_dict_fit
from transfer.errors import UserError

# (block type, blocks per stage) -> torchvision constructor name.
ARCHS: dict[tuple[str, tuple[int, ...]], str] = {
    ("basic", (2, 2, 2, 2)): "resnet18",
    ("basic", (3, 4, 6, 3)): "resnet34",
    ("bottleneck", (3, 4, 6, 3)): "resnet50",
    ("bottleneck", (3, 4, 23, 3)): "resnet101",
    ("bottleneck", (3, 8, 36, 3)): "resnet152",
}
DEPTHS = {"resnet18": 18, "resnet34": 34, "resnet50": 50, "resnet101": 101, "resnet152": 152}
# Output channels of the four stages (res2..res5) by depth: a basic block keeps its width, a bottleneck
# ends in 4x its width (64, 128, 256, 512 per stage).
STAGE_CHANNELS: dict[int, tuple[int, int, int, int]] = {
    DEPTHS[name]: tuple(width * (4 if block == "bottleneck" else 1) for width in (64, 128, 256, 512))
    for (block, _), name in ARCHS.items()
}
_BLOCK_KEY = re.compile(r"^layer([1-4])\.(\d+)\.")
# BatchNorm buffers: statistics, not learned parameters.
BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")


def is_buffer(key: str) -> bool:
    """True for a BatchNorm statistics key (running mean/var, batch counter)."""
    return key.rsplit(".", 1)[-1] in BUFFER_SUFFIXES


@lru_cache(maxsize=None)
def reference_shapes(arch: str) -> dict[str, tuple[int, ...]]:
    """Every key of torchvision's `arch` except `fc.*`, with its shape (built on the meta device: no memory used)."""
    with torch.device("meta"):
        model = getattr(torchvision.models, arch)()
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.startswith("fc.")}


def detect_arch(state_dict: Mapping[str, torch.Tensor], origin: str = "checkpoint") -> str:
    """The torchvision ResNet name (`resnet50`, ...) of a backbone state dict in torchvision names.

    Read from the block type (a `conv3` means bottleneck) and the block count of each
    stage; raises a UserError when the keys or shapes are not those of a standard ResNet.
    """
    if "conv1.0.weight" in state_dict or "stem.0.weight" in state_dict:
        raise UserError(f"{origin}: the backbone has a deep stem (ResNet-C/D style, e.g. timm resnet50d or mmseg "
                        "ResNetV1c); only the standard 7x7-stem ResNet-18/34/50/101/152 can be converted")
    counts = [0, 0, 0, 0]
    for key in state_dict:
        m = _BLOCK_KEY.match(key)
        if m:
            stage, block = int(m.group(1)) - 1, int(m.group(2))
            counts[stage] = max(counts[stage], block + 1)
    block_type = "bottleneck" if "layer1.0.conv3.weight" in state_dict else "basic"
    arch = ARCHS.get((block_type, tuple(counts)))
    if arch is None:
        raise UserError(f"{origin}: not a standard ResNet ({block_type} blocks, {tuple(counts)} per stage); "
                        "supported: ResNet-18/34/50/101/152")
    fit = state_dict_fit(reference_shapes(arch), state_dict)
    if not fit.fills():
        raise UserError(f"{origin}: looks like a {arch} but is not a standard torchvision {arch}: {fit.describe()} "
                        "(ResNeXt and wide ResNets are not supported)")
    return arch


def parameter_count(state_dict: Mapping[str, torch.Tensor]) -> int:
    """The number of learned values (weights and biases; BatchNorm statistics excluded)."""
    return sum(v.numel() for k, v in state_dict.items() if not is_buffer(k))
