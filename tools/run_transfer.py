#!/usr/bin/env python
"""Fine-tune and evaluate a pretrained backbone: linear, voc, coco, cityscapes, or the whole demo."""
import argparse
import importlib
import sys

from transfer.cli import add_transfer_flags, run_main

# Each task's runner: `module:function`, called with the parsed flags; it writes WORK_DIR/metrics.json.
TASKS = {
    "linear": "transfer.classification.runner:run",
    "voc": "transfer.detection.runner:run",
    "coco": "transfer.detection.runner:run",
    "cityscapes": "transfer.segmentation.runner:run",
    "demo": "transfer.demo:run",
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="run_transfer.sh", description=__doc__)
    parser.add_argument("task", choices=TASKS)
    args = add_transfer_flags(parser).parse_intermixed_args()
    module, function = TASKS[args.task].split(":")
    getattr(importlib.import_module(module), function)(args)


if __name__ == "__main__":
    sys.exit(run_main(main))
