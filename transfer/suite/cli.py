"""`tools/run_transfer.sh suite`: the flags, and the runs one after the other here or as SLURM jobs."""
from __future__ import annotations

import argparse
import functools
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transfer.errors import UserError
from transfer.suite.index import load_plan, refresh_index, save_plan, update_index
from transfer.jobs import log_tail, read_state, run_command, transfer_command, write_state
from transfer.suite.plan import (DEFAULT_TASKS, SuitePlan, parse_checkpoints, parse_protocols, parse_task_overrides,
                                 parse_trials)
from transfer.slurm import CommandJob, add_slurm_flags, make_executor
from transfer.suite.status import job_state, print_status
from transfer.tasks import TASKS


def suite_parser() -> argparse.ArgumentParser:
    """The command line of `tools/run_transfer.sh suite`."""
    parser = argparse.ArgumentParser(
        prog="run_transfer.sh suite", description="Every checkpoint on every protocol of the paper's tables, with "
        "its trials; WORK_DIR/results.json and WORK_DIR/benchmarks.md fill in as runs end.")
    parser.add_argument("--weights", action="append", default=[], metavar="CKPT",
                        help="a checkpoint to evaluate (repeat for several); any format tools/convert_ckpt.py reads")
    parser.add_argument("--weights-list", metavar="FILE", help="checkpoints, one `PATH [NAME]` a line")
    parser.add_argument("--name", action="append", default=[], help="row name of the checkpoint of the same rank "
                        "(default: its file name)")
    parser.add_argument("--data-root", help="folder holding imagefolder/ (or imagenet/), voc/ (or VOCdevkit/), "
                        "coco/ and cityscapes/ as the README lays them out (default: $DETECTRON2_DATASETS)")
    parser.add_argument("--tasks", help=f"comma-separated from {','.join(TASKS)} (default: the paper's table, "
                        f"{','.join(DEFAULT_TASKS)}); a task's configs by name: "
                        + "; ".join(f"{t}:{'|'.join(task.variants)}" for t, task in TASKS.items() if task.variants)
                        + " (coco = coco:c4_1x; coco:c4_1x+fpn_1x for several)")
    parser.add_argument("--trials", help="trials per task: N for every task, or TASK=N,... "
                        "(default: the protocols' own, voc=5, 1 else)")
    parser.add_argument("--gpus", type=int, default=None, help="GPUs per run (default: all visible; 0 = CPU)")
    parser.add_argument("--work-dir", default="work_dirs/suite", help="where every run, results.json and "
                        "benchmarks.md go (default: work_dirs/suite)")
    parser.add_argument("--backend", help="detection engine: mmdet (default) or detectron2")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first trial (trial k: seed + k)")
    parser.add_argument("--max-iters", type=int, help="shorten every schedule to N iterations (tests, CPU)")
    parser.add_argument("--input-size", type=int, help="shrink every input to S (tests, CPU)")
    parser.add_argument("--preflight", action="store_true", help="first run every protocol at full size for 2 "
                        "iterations and a test on 2 images; any failure stops the suite before it starts")
    parser.add_argument("--preflight-only", action="store_true", help="the preflight, then stop")
    parser.add_argument("--status", action="store_true", help="print the table so far and what is running or "
                        "queued (reads WORK_DIR; starts nothing)")
    parser.add_argument("--wait", action="store_true", help="--launcher slurm: wait for every job to end")
    parser.add_argument("--resubmit", action="store_true", help="--launcher slurm: submit again the runs already "
                        "submitted that have not ended (e.g. jobs cancelled by hand)")
    parser.add_argument("overrides", nargs="*", help="config overrides for every run as key=value, for one "
                        "task as TASK:key=value (e.g. voc:optim_wrapper.optimizer.lr=0.01), or for one of a task's "
                        "configs as PROTOCOL:key=value (e.g. coco_retinanet_1x:model.test_cfg.nms_pre=100)")
    return add_slurm_flags(parser)


def make_plan(args: argparse.Namespace) -> SuitePlan:
    """The plan of the command line (every input checked before anything runs)."""
    import os

    from transfer.data import find_dataset

    data_root = Path(args.data_root or os.environ.get("DETECTRON2_DATASETS") or "datasets")
    if not data_root.is_dir():
        raise UserError(f"--data-root {data_root} is not a folder")
    protocols = parse_protocols(args.tasks)
    for fmt in sorted({TASKS[p.task].data_format for p in protocols}):
        find_dataset(fmt, data_root)  # a missing dataset is an error now, not hours in
    for protocol in protocols:
        protocol.config(args.backend)  # a config the backend lacks, too
    if args.gpus is not None and args.gpus < 0:
        raise UserError(f"--gpus must be >= 0 (got {args.gpus})")
    return SuitePlan(work_dir=Path(args.work_dir), data_root=data_root.resolve(),
                     checkpoints=parse_checkpoints(args.weights, args.weights_list, args.name), protocols=protocols,
                     trials=parse_trials(args.trials, protocols), seed=args.seed, gpus=args.gpus,
                     backend=args.backend, max_iters=args.max_iters, input_size=args.input_size,
                     overrides=parse_task_overrides(args.overrides))


def execute_local(commands: list[tuple[list[str], Path]]) -> list[int]:
    """Run commands one after the other here; their exit codes."""
    codes = []
    for command, work_dir in commands:
        print(f"[suite] {' '.join(command[1:])}", file=sys.stderr, flush=True)
        codes.append(run_command(command, work_dir))
    return codes


def execute_slurm(args: argparse.Namespace, folder: Path, name: str) -> Any:
    """Run commands as SLURM jobs (one each) and wait for them; their exit codes (1: the job failed)."""
    def execute(commands: list[tuple[list[str], Path]]) -> list[int]:
        executor = make_executor(args, folder, name)
        jobs = [executor.submit(CommandJob(command, work_dir)) for command, work_dir in commands]
        print(f"[suite] {name}: SLURM jobs {', '.join(str(j.job_id) for j in jobs)}; waiting", file=sys.stderr)
        codes = []
        for job in jobs:
            try:
                codes.append(job.result())
            except Exception:  # submitit re-raises the job's failure; its log says why
                codes.append(1)
        return codes
    return execute


def run_local(plan: SuitePlan, command: str) -> None:
    """Run every unfinished job here, one after the other, rebuilding the table after each."""
    failed = []
    for job in plan.jobs():
        state = job_state(job)
        if state == "done":
            continue
        if state == "running" and not read_state(job.work_dir).get("slurm_job_id"):
            print(f"[suite] {job.label}: running in another process (pid {read_state(job.work_dir).get('pid')}), "
                  "skipped", file=sys.stderr)
            continue
        print(f"[suite] {job.label}: tools/run_transfer.sh {shlex.join(plan.argv(job))}", file=sys.stderr,
              flush=True)
        code = run_command(transfer_command(plan.argv(job)), job.work_dir)
        if code:
            failed.append(job)
            print(f"[suite] {job.label} FAILED (exit {code}); log {job.work_dir / 'suite_job.log'}:\n"
                  f"{log_tail(job.work_dir)}", file=sys.stderr, flush=True)
        update_index(plan, command)
    if failed:
        raise UserError(f"{len(failed)} run(s) failed: {', '.join(j.label for j in failed)} "
                        "(their suite_job.log says why; run the suite again to retry them)")


def run_slurm(plan: SuitePlan, command: str, args: argparse.Namespace) -> list[Any]:
    """Submit every unfinished job (one SLURM job each); each rebuilds the table when it ends."""
    executor = make_executor(args, Path(args.slurm_folder or plan.work_dir / "slurm"), f"suite-{plan.work_dir.name}")
    submitted = []
    for job in plan.jobs():
        state = job_state(job)
        if state == "done" or (state in ("queued", "running") and read_state(job.work_dir).get("slurm_job_id")
                               and not args.resubmit):
            continue  # ended, or already submitted (--resubmit: a job that SLURM lost)
        sjob = executor.submit(CommandJob(transfer_command(plan.argv(job)), job.work_dir,
                                          functools.partial(refresh_index, plan.work_dir)))
        write_state(job.work_dir, "queued", slurm_job_id=str(sjob.job_id), submitted=True)
        submitted.append((job, sjob))
        print(f"[suite] {job.label}: SLURM job {sjob.job_id}", file=sys.stderr, flush=True)
    print(f"[suite] {len(submitted)} job(s) submitted; `tools/run_transfer.sh suite --status --work-dir "
          f"{plan.work_dir}` shows the table so far", file=sys.stderr)
    if args.wait:
        failed = []
        for job, sjob in submitted:
            try:
                sjob.result()
            except Exception:
                failed.append(job)
        update_index(plan, command)
        if failed:
            raise UserError(f"{len(failed)} job(s) failed: {', '.join(j.label for j in failed)}")
    return [s for _, s in submitted]


def run(argv: Sequence[str]) -> dict[str, Any]:
    """`tools/run_transfer.sh suite ...`: plan, optionally preflight, run; returns the results index (or {})."""
    import json

    args = suite_parser().parse_intermixed_args(list(argv))
    command = "tools/run_transfer.sh suite " + shlex.join(list(argv))
    if args.status:
        plan, saved_command = load_plan(args.work_dir)
        update_index(plan, saved_command)
        print_status(plan)
        return {}
    plan = make_plan(args)
    plan.work_dir.mkdir(parents=True, exist_ok=True)
    save_plan(plan, command)
    if args.preflight or args.preflight_only:
        from transfer.suite.preflight import run_preflight

        execute = execute_local if args.launcher == "local" else \
            execute_slurm(args, Path(args.slurm_folder or plan.work_dir / "slurm"), "preflight")
        run_preflight(plan, execute)
        if args.preflight_only:
            return {}
    if args.launcher == "slurm":
        run_slurm(plan, command, args)
    else:
        run_local(plan, command)
    index = plan.work_dir / "results.json"
    print_status(plan)
    return json.loads(index.read_text()) if index.is_file() else {}
