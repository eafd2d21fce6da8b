"""A trial's training state file (`linear_last.pth`, `finetune_last.pth`): modules, optimizer, iteration, generators.

Written atomically by rank 0 at every epoch's end, with the run's identity (weights hash,
config, seed, ...): a resumed run continues from it only when the identity matches, so a
state file of another run is never resumed.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from transfer.distributed import Processes
from transfer.fileio import atomic_path
from transfer.rng import rng_state, set_rng_state


def load_trial_state(path: Path, identity: dict[str, Any] | None, parts: Mapping[str, Any], what: str, total: int,
                     say: Callable[[str], None] = print) -> int:
    """Load `parts` (name -> module or optimizer) and the generators from `path` if it holds this run (same
    `identity`); returns the iteration to continue from (0: start over)."""
    if not path.is_file():
        return 0
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("identity") != identity:
        say(f"{path} belongs to another run (other weights or settings): starting over")
        return 0
    for name, part in parts.items():
        part.load_state_dict(state[name])
    if "rng" in state:
        set_rng_state(state["rng"])  # the generators as the uninterrupted run had them here
    say(f"resumed {what} from {path} at iteration {int(state['iteration'])}/{total}")
    return int(state["iteration"])


def save_trial_state(path: Path, identity: dict[str, Any] | None, parts: Mapping[str, Any], iteration: int,
                     procs: Processes) -> None:
    """Write `parts`' state dicts, the iteration, the identity and the generators to `path` (rank 0, atomically)."""
    if procs.is_main:
        with atomic_path(path) as tmp:
            torch.save({**{name: part.state_dict() for name, part in parts.items()}, "iteration": iteration,
                        "identity": identity, "rng": rng_state()}, tmp)
