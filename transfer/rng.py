"""The state of every random number generator a run draws from, as plain data a weights-only load accepts.

torch (CPU and each CUDA device), numpy's global generator and Python's `random`:
saved with a checkpoint and restored on resume, a killed run continues with the
very draws the uninterrupted run would have made (pretraining, the mmengine and
detectron2 engines, the linear probe).
"""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def rng_state() -> dict[str, Any]:
    """The state of every RNG a run touches (torch CPU and CUDA, numpy, Python), as plain tensors and lists."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": py_state[0], "state": list(py_state[1]), "gauss_next": py_state[2]},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], torch_only: bool = False) -> None:
    """Restore what `rng_state` saved (with `torch_only`, torch's CPU and CUDA generators only).

    The states may have been loaded onto a GPU (a checkpoint read with map_location): torch takes them on the CPU.
    """
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    if torch_only:
        return
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].cpu().numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss_next"]))


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for the augmentation of image `index` in `epoch` of the run seeded `seed` (the same draws
    whether the run was resumed or not)."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(2, np.uint64)[0] >> np.uint64(1))
