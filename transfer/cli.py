"""Command-line conventions shared by every entry point in tools/."""
from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from transfer.errors import UserError
from transfer.tasks import TASKS

# mmengine imports pkg_resources, whose deprecation warning (setuptools >= 80.9) would precede every message
warnings.filterwarnings("ignore", message="pkg_resources is deprecated as an API", category=UserWarning)


def run_main(main: Callable[[], object]) -> None:
    """Run an entry point: a UserError becomes one `error: ...` message on stderr and exit code 2."""
    try:
        main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


def add_transfer_flags(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags every transfer task of tools/run_transfer.sh takes (`transfer.tasks.TASKS`)."""
    parser.add_argument("--weights", help="backbone checkpoint: converted or any format tools/convert_ckpt.py reads"
                                          " (default: none, i.e. random init)")
    parser.add_argument("--data", help="dataset folder, or a root holding it (default: $DETECTRON2_DATASETS, data/)")
    parser.add_argument("--work-dir", help="where checkpoints, logs and metrics.json go (default: work_dirs/TASK)")
    parser.add_argument("--backend", help="engine to run on (" + "; ".join(
        f"{name}: {' or '.join(task.backends)}" for name, task in TASKS.items()) + "; default: the first)")
    parser.add_argument("--config", help="config file to use instead of the task's protocol config")
    parser.add_argument("--gpus", type=int, default=None, help="GPUs to use, >= 0 (default: all visible; 0 = CPU)")
    parser.add_argument("--trials", type=int, default=1, help="runs with seeds SEED, SEED+1, ... (>= 1); "
                                                              "reports mean and std")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first trial (>= 0)")
    parser.add_argument("--max-iters", type=int, default=None, help="shorten the schedule to N >= 1 iterations")
    parser.add_argument("--input-size", type=int, default=None,
                        help="shrink the input (shorter side / crop) to S (detection: voc, coco, cityscapes_ins >= 32; "
                             "the others >= 16)")
    parser.add_argument("--no-resume", action="store_true", help="start over instead of resuming from WORK_DIR")
    parser.add_argument("--force", action="store_true",
                        help="run again from scratch even if WORK_DIR already has metrics.json")
    parser.add_argument("--check-images", action="store_true",
                        help="decode every image before training (default: existence, size and header only)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="typed config overrides (transfer.overrides: numbers, true/false, null, lists; "
                             "the key must exist and the value fit its type)")
    return parser


def add_demo_flags(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags of `tools/run_transfer.sh demo`: it makes its own data and weights and sizes its own runs."""
    parser.add_argument("--work-dir", help="where everything goes (default: demo_out)")
    parser.add_argument("--gpus", type=int, default=None, help="GPUs for the transfer runs (default: all visible)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the data, pretraining and runs (default: 0)")
    parser.add_argument("--force", action="store_true", help="redo every stage instead of reusing finished ones")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show every stage's own output (the engines' logs) live instead of a progress bar")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="the demo plan's settings (transfer.demo.DemoPlan), e.g. det_iters=10 rows=ssa,random")
    return parser


# Each entry of tools/run_transfer.sh: its runner (`module:function`, called with the parsed flags; it
# writes WORK_DIR/metrics.json or an index and returns the record) and its flags (None: the entry parses its
# own command-line words). The transfer tasks are `transfer.tasks.TASKS`.
TRANSFER_TASKS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], argparse.ArgumentParser] | None]] = {
    **{name: (task.runner, add_transfer_flags) for name, task in TASKS.items()},
    "demo": ("transfer.demo:run", add_demo_flags),
    "suite": ("transfer.suite.cli:run", None),
}


def transfer_parser() -> argparse.ArgumentParser:
    """The command line of a transfer task (`transfer.tasks.TASKS`): the task and its flags."""
    parser = argparse.ArgumentParser(prog="run_transfer.sh", description="Fine-tune and evaluate a pretrained "
                                     f"backbone: {', '.join(TASKS)}.")
    parser.add_argument("task", choices=[t for t, (_, flags) in TRANSFER_TASKS.items() if flags is add_transfer_flags])
    return add_transfer_flags(parser)


def run_transfer(argv: Sequence[str]) -> dict[str, Any]:
    """Run one entry of tools/run_transfer.sh, given its command-line words; returns the record it wrote."""
    argv = list(argv)
    if not argv or argv[0] not in TRANSFER_TASKS:
        top = argparse.ArgumentParser(prog="run_transfer.sh", description="Fine-tune and evaluate a pretrained "
                                      f"backbone ({', '.join(TASKS)}), run the whole demo, or the benchmark suite; "
                                      "`run_transfer.sh TASK --help` lists a task's flags.")
        top.add_argument("task", choices=TRANSFER_TASKS)
        top.parse_args(argv[:1])  # prints the usage and exits 2 (or 0 for --help)
    task = argv[0]
    target, flags = TRANSFER_TASKS[task]
    module, function = target.split(":")
    entry = getattr(importlib.import_module(module), function)
    if flags is None:
        return entry(argv[1:])
    args = flags(argparse.ArgumentParser(prog=f"run_transfer.sh {task}")).parse_intermixed_args(argv[1:])
    args.task = task
    return entry(args)
