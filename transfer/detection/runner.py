"""`tools/run_transfer.sh voc|coco|cityscapes_ins`: fine-tune a converted backbone on VOC07+12, COCO or Cityscapes
instances and report AP."""
from __future__ import annotations

import argparse
from typing import Any

from transfer.engine.runner import run_task
from transfer.errors import UserError
from transfer.tasks import task_named

TASKS = ("voc", "coco", "cityscapes_ins")
BACKENDS = ("mmdet", "detectron2")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the detection protocol of `args.task` on `args.backend` (default: the task's first, mmdet); writes
    WORK_DIR/metrics.json."""
    if args.task not in TASKS:
        raise UserError(f"unknown detection task {args.task!r}; expected one of {', '.join(TASKS)}")
    backends = task_named(args.task).backends  # the task table's: cityscapes_ins has no detectron2 wiring
    backend = args.backend or backends[0]
    if backend not in BACKENDS:
        raise UserError(f"--backend {backend}: detection runs on {' or '.join(BACKENDS)}")
    if backend not in backends:
        raise UserError(f"--backend {backend}: {args.task} runs on {' or '.join(backends)} only")
    if backend == "detectron2":
        from transfer.detection.detectron2_backend import Detectron2Adapter

        return run_task(args, Detectron2Adapter(args.task))
    from transfer.detection.mmdet_backend import mmdet_adapter

    return run_task(args, mmdet_adapter(args.task))
