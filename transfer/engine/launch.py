"""Run the current command on several GPUs by re-executing it under torchrun."""
from __future__ import annotations

import os
import sys


def under_torchrun() -> bool:
    """Whether this process was started by torchrun (or another launcher setting the env vars)."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def is_main_process() -> bool:
    """Rank 0, or a single process: the one that writes results."""
    return int(os.environ.get("RANK", "0")) == 0


def relaunch_with_torchrun(gpus: int) -> None:
    """Replace this process by `torchrun --nproc_per_node=gpus <same command>` unless already under torchrun.

    Multi-node runs are launched by the user's own torchrun (its env vars are
    honoured as they are); this covers the one-machine case.
    """
    if gpus <= 1 or under_torchrun():
        return
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}",
            *sys.argv]
    print(f"launching {gpus} processes with torchrun", file=sys.stderr, flush=True)
    os.execv(sys.executable, argv)
