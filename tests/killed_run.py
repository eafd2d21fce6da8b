"""Run a task of tools/run_transfer.sh in this process and kill it with SIGKILL (as `kill -9` would) part way.

    python tests/killed_run.py --kill-at N -- TASK FLAGS...   # voc, coco, cityscapes, detectron2:
                                                            # right after training iteration N (1-based), once
                                                            # the engine's checkpoint hook has run for it
    python tests/killed_run.py --kill-at N -- linear FLAGS... # the linear probe: after its N-th state file
    python tests/killed_run.py -- TASK FLAGS...              # no kill: the uninterrupted run

Used by tests/test_resume.py; the kill comes from inside at a fixed point, so the test
does not depend on timing. Nothing of the run's own code is changed.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def die() -> None:
    """SIGKILL this process: no exception, no `finally`, no atexit, as with `kill -9`."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def kill_mmengine_after(iteration: int) -> None:
    """Kill after mmengine's CheckpointHook has run for training iteration `iteration` (1-based)."""
    from mmengine.hooks import CheckpointHook

    original = CheckpointHook.after_train_iter

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):  # noqa: ANN001, ANN202
        original(self, runner, batch_idx, data_batch, outputs)
        if runner.iter + 1 == iteration:
            die()

    CheckpointHook.after_train_iter = after_train_iter


def kill_detectron2_after(iteration: int) -> None:
    """Kill after detectron2's PeriodicCheckpointer has run for training iteration `iteration` (1-based)."""
    try:
        from detectron2.engine.hooks import PeriodicCheckpointer
    except ImportError:
        return
    original = PeriodicCheckpointer.after_step

    def after_step(self):  # noqa: ANN001, ANN202
        original(self)
        if self.trainer.iter + 1 == iteration:
            die()

    PeriodicCheckpointer.after_step = after_step


def kill_linear_after(saves: int) -> None:
    """Kill right after the linear probe has written its state file for the `saves`-th time."""
    from transfer.classification import trial_state

    original = trial_state.atomic_path
    count = [0]

    @contextlib.contextmanager
    def atomic_path(path):  # noqa: ANN001, ANN202
        with original(path) as tmp:
            yield tmp
        count[0] += 1
        if count[0] == saves:
            die()

    trial_state.atomic_path = atomic_path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kill-at", type=int, default=None)
    parser.add_argument("argv", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    import torch

    torch.set_num_threads(1)  # 2 shared cores: one thread each is faster than two spinning
    if args.kill_at:
        if argv[0] == "linear":
            kill_linear_after(args.kill_at)
        else:
            kill_mmengine_after(args.kill_at)
            kill_detectron2_after(args.kill_at)
    from transfer.cli import run_main, run_transfer

    run_main(lambda: run_transfer(argv))


if __name__ == "__main__":
    main()
