"""Command-line conventions shared by every entry point in tools/."""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

from transfer.errors import UserError


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
    """The flags every task of tools/run_transfer.sh takes (linear, voc, coco, cityscapes, demo)."""
    parser.add_argument("--weights", help="backbone checkpoint: converted or any format tools/convert_ckpt.py reads"
                                          " (default: none, i.e. random init)")
    parser.add_argument("--data", help="dataset folder, or a root holding it (default: $DETECTRON2_DATASETS, data/)")
    parser.add_argument("--work-dir", help="where checkpoints, logs and metrics.json go (default: work_dirs/TASK)")
    parser.add_argument("--backend", help="engine to run on (detection: mmdet or detectron2)")
    parser.add_argument("--config", help="config file to use instead of the task's protocol config")
    parser.add_argument("--gpus", type=int, default=None, help="GPUs to use (default: all visible; 0 = CPU)")
    parser.add_argument("--trials", type=int, default=1, help="runs with different seeds; reports mean and std")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first trial")
    parser.add_argument("--max-iters", type=int, default=None, help="shorten the schedule to N iterations")
    parser.add_argument("--input-size", type=int, default=None, help="shrink the input (shorter side / crop) to S")
    parser.add_argument("--no-resume", action="store_true", help="start over instead of resuming from WORK_DIR")
    parser.add_argument("--force", action="store_true",
                        help="run again from scratch even if WORK_DIR already has metrics.json")
    parser.add_argument("overrides", nargs="*", help="config overrides as key=value (engine's own key syntax)")
    return parser


# Each task of tools/run_transfer.sh and its runner (`module:function`), called with the parsed
# flags; every runner writes WORK_DIR/metrics.json and returns its record.
TRANSFER_TASKS = {
    "linear": "transfer.classification.runner:run",
    "voc": "transfer.detection.runner:run",
    "coco": "transfer.detection.runner:run",
    "cityscapes": "transfer.segmentation.runner:run",
    "demo": "transfer.demo:run",
    "suite": "transfer.suite.cli:run",  # takes its own command-line words (argv), not the flags above
}


def transfer_parser() -> argparse.ArgumentParser:
    """The command line of tools/run_transfer.sh: a task and the flags every task takes."""
    parser = argparse.ArgumentParser(prog="run_transfer.sh", description="Fine-tune and evaluate a pretrained "
                                     "backbone: linear, voc, coco, cityscapes, or the whole demo.")
    parser.add_argument("task", choices=TRANSFER_TASKS)
    return add_transfer_flags(parser)


def run_transfer(argv: Sequence[str]) -> dict[str, Any]:
    """Run one task of tools/run_transfer.sh, given its command-line words; returns the metrics record."""
    if list(argv)[:1] == ["suite"]:
        return importlib.import_module("transfer.suite.cli").run(list(argv)[1:])
    args = transfer_parser().parse_intermixed_args(list(argv))
    module, function = TRANSFER_TASKS[args.task].split(":")
    return getattr(importlib.import_module(module), function)(args)
