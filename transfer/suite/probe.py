"""Run one `tools/run_transfer.sh` command and record its peak memory: `probe.py OUT.json -- TASK ...`.

Each process (each rank under torchrun) writes OUT.rank<R>.json: the largest
resident set of the process and its children (data-loader workers), the CUDA
peak of its GPU and, for the linear probe, the time of its training.
"""
from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path


def peak_memory() -> dict[str, float | None]:
    """Peak RSS (MiB, this process or its largest finished child) and peak CUDA memory allocated (MiB)."""
    rss_kb = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    cuda = None
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda = torch.cuda.max_memory_allocated() / 2**20
    return {"rss_mib": rss_kb / 1024, "cuda_peak_mib": cuda}


def time_linear_training(timing: dict[str, float]) -> None:
    """Time the linear probe's training (its runner logs no per-iteration time): `timing["train_s"]`."""
    from transfer.classification import linear

    train_linear = linear.train_linear

    def timed(**kwargs):
        start = time.perf_counter()
        result = train_linear(**kwargs)
        timing["train_s"] = time.perf_counter() - start  # the iterations and the test on the 2 val images
        return result

    linear.train_linear = timed


def main() -> None:
    """Run the command; whatever happens, write this process's peak memory (and the linear training time)."""
    out, argv = Path(sys.argv[1]), sys.argv[3:]
    rank = int(os.environ.get("RANK", "0"))
    timing: dict[str, float] = {}
    try:
        if argv[:1] == ["linear"]:
            time_linear_training(timing)
        from transfer.cli import run_main, run_transfer

        run_main(lambda: run_transfer(argv))
    finally:
        out.parent.mkdir(parents=True, exist_ok=True)
        record = {"rank": rank, **peak_memory(), **timing}
        out.with_name(f"{out.stem}.rank{rank}.json").write_text(json.dumps(record) + "\n")


if __name__ == "__main__":
    # run as a script (also by torchrun): its own folder must not shadow top-level modules
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
    main()
