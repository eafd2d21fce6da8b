"""Key names of a ResNet backbone in detectron2 versus torchvision (the MoCo conversion convention)."""
from __future__ import annotations

import re

# torchvision `layer1..4` are detectron2 `res2..5`; `bn{k}` is `conv{k}.norm`; `downsample.0/1` is `shortcut`/`.norm`.
_TV_BLOCK = re.compile(r"^layer([1-4])\.(\d+)\.(conv\d|bn\d|downsample\.0|downsample\.1)\.(\w+)$")
_D2_BLOCK = re.compile(r"^res([2-5])\.(\d+)\.(conv\d|conv\d\.norm|shortcut|shortcut\.norm)\.(\w+)$")


def to_detectron2_name(key: str) -> str:
    """`layer1.0.bn2.weight` -> `res2.0.conv2.norm.weight`; `bn1.bias` -> `stem.conv1.norm.bias`."""
    if key.startswith("conv1."):
        return "stem." + key
    if key.startswith("bn1."):
        return "stem.conv1.norm." + key[len("bn1."):]
    m = _TV_BLOCK.match(key)
    if not m:
        raise KeyError(f"not a torchvision ResNet backbone key: {key}")
    stage, block, part, leaf = m.groups()
    if part.startswith("bn"):
        part = f"conv{part[2:]}.norm"
    elif part == "downsample.0":
        part = "shortcut"
    elif part == "downsample.1":
        part = "shortcut.norm"
    return f"res{int(stage) + 1}.{block}.{part}.{leaf}"


def to_torchvision_name(key: str) -> str:
    """The inverse of `to_detectron2_name`: `res2.0.conv2.norm.weight` -> `layer1.0.bn2.weight`."""
    if key.startswith("stem.conv1.norm."):
        return "bn1." + key[len("stem.conv1.norm."):]
    if key.startswith("stem.conv1."):
        return key[len("stem."):]
    m = _D2_BLOCK.match(key)
    if not m:
        raise KeyError(f"not a detectron2 ResNet backbone key: {key}")
    stage, block, part, leaf = m.groups()
    if part.endswith(".norm") and part.startswith("conv"):
        part = "bn" + part[len("conv"):-len(".norm")]
    elif part == "shortcut":
        part = "downsample.0"
    elif part == "shortcut.norm":
        part = "downsample.1"
    return f"layer{int(stage) - 1}.{block}.{part}.{leaf}"
