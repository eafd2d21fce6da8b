"""Writing the canonical backbone state dict in each target format: detectron2 `.pkl`, OpenMMLab, torchvision."""
from __future__ import annotations

import os
import pickle
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from transfer.checkpoint.detectron2_names import to_detectron2_name

TARGETS = ("detectron2", "mmlab", "torchvision")
# The extension each engine expects (detectron2's checkpointer reads `.pkl` with pickle, anything else with torch).
EXTENSIONS = {"detectron2": ".pkl", "mmlab": ".pth", "torchvision": ".pth"}
AUTHOR = "transfer.checkpoint"
MMLAB_PREFIX = "backbone."


def detectron2_model(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict[str, np.ndarray], list[str]]:
    """The detectron2 `model` dict (detectron2 names, numpy arrays), and notes on any dtype change."""
    model, notes = {}, []
    for key, value in state_dict.items():
        if value.dtype == torch.bfloat16:  # numpy has no bfloat16: float32 holds every bf16 value exactly
            value = value.float()
            if not notes:
                notes.append("bfloat16 tensors stored as float32 (exact) in the detectron2 .pkl")
        model[to_detectron2_name(key)] = value.contiguous().numpy()
    return model, notes


def write_detectron2(state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike, source: str) -> list[str]:
    """Pickle `{"model", "__author__", "matching_heuristics": True}` (MoCo's convention); return notes."""
    model, notes = detectron2_model(state_dict)
    record = {"model": model, "__author__": f"{AUTHOR} (from {source})", "matching_heuristics": True}
    with open(path, "wb") as f:
        pickle.dump(record, f, protocol=4)  # what MoCo's script writes; any Python 3 reads it
    return notes


def write_mmlab(state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike, meta: dict[str, Any],
                backbone_prefix: bool = False) -> list[str]:
    """torch.save `{"state_dict": torchvision names (or `backbone.<name>`), "meta": json-safe}`; return notes."""
    prefix = MMLAB_PREFIX if backbone_prefix else ""
    sd = OrderedDict((prefix + k, v) for k, v in state_dict.items())
    with open(path, "wb") as f:  # a file object, not a name: the bytes then do not depend on the file name
        torch.save({"state_dict": sd, "meta": meta}, f)
    return []


def write_torchvision(state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike) -> list[str]:
    """torch.save the bare state dict (torchvision names, no `fc.*`); return notes."""
    with open(path, "wb") as f:
        torch.save(OrderedDict(state_dict), f)
    return []
