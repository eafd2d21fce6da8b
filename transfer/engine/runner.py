"""The one runner skeleton of `tools/run_transfer.sh {linear,voc,coco,cityscapes}`, whatever the engine.

check the flags -> reuse a finished WORK_DIR -> devices -> check the dataset -> lock WORK_DIR ->
convert the weights -> for each trial: build the config (file, overrides, fitted to the run) and
train + test -> WORK_DIR/metrics.json. An engine plugs in through an `Adapter` (torch linear
probe, mmengine for mmdet/mmseg, detectron2); every task gets the same flags, defaults,
validation, messages and metrics.json schema (README, "metrics.json").
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transfer.data import check_dataset, find_dataset
from transfer.engine.launch import is_main_process, relaunch_with_torchrun, under_torchrun
from transfer.engine.workdir import claim_work_dir, check_output_path
from transfer.errors import UserError
from transfer.overrides import Override, check_range, overrides_text, parse_overrides
from transfer.results import METRICS_FILE, average_trials, write_metrics

MAX_INPUT_SIZE = 4096
# The top-level keys of every metrics.json (README, "metrics.json"), whatever the task and engine.
RECORD_KEYS = frozenset({"schema", "task", "backend", "metrics", "trials", "config", "overrides", "weights",
                         "weights_sha256", "arch", "iterations", "seed", "gpus", "world_size", "notes",
                         "wall_time_s", "command", "machine", "git_commit", "date"})


def say(message: str) -> None:
    """Print a progress line of the runner on stderr (rank 0 only)."""
    if is_main_process():
        print(f"[transfer] {message}", file=sys.stderr, flush=True)


@dataclass
class Run:
    """What the skeleton resolved for a run, handed to the adapter."""

    args: argparse.Namespace
    task: str
    overrides: list[Override]
    data_root: Path
    work_dir: Path
    gpus: int                   # GPUs per node (0: the CPU)
    world_size: int             # processes in the job
    weights: Path | None = None  # the checkpoint in the adapter's format (None: random init)
    arch: str | None = None     # the backbone, as the adapter found it (resnet50, ...)
    notes: list[str] = field(default_factory=list)


class Adapter:
    """One engine's part of the skeleton; subclasses set the attributes and implement the hooks."""

    backend: str = ""
    backends: tuple[str, ...] = ()   # what --backend accepts for this adapter's tasks
    data_format: str = ""            # transfer.data format of the task's dataset
    weights_format: str | None = None  # transfer.checkpoint target format; None: the adapter reads the file itself
    min_input_size: int = 16
    own_launcher: bool = False       # the engine starts its own processes (no torchrun relaunch)
    cpu_distributed: bool = False    # one job over several CPU processes (gloo) under torchrun

    def __init__(self, task: str):
        self.task = task

    def default_config(self) -> Path:
        """The protocol's config file."""
        raise NotImplementedError

    def setup(self, run: Run) -> None:
        """Process-level set-up before the trials (process group, engine checks)."""

    def teardown(self) -> None:
        """Undo `setup`."""

    def check_overrides(self, config_path: Path, overrides: list[Override]) -> None:
        """Load the config file and apply the overrides (keys and types checked), before any work."""
        raise NotImplementedError

    def build_config(self, config_path: Path, run: Run) -> Any:
        """The trial's config: the file, the overrides (typed, checked), fitted to the run; notes go to run.notes."""
        raise NotImplementedError

    def iterations(self, cfg: Any) -> int:
        """The training iterations of the config."""
        raise NotImplementedError

    def run_trial(self, cfg: Any, run: Run, trial_dir: Path, seed: int, resume: bool) -> dict[str, float]:
        """Train and test one trial in `trial_dir`; returns the reported metrics (percent)."""
        raise NotImplementedError


def check_flags(args: argparse.Namespace, adapter: Adapter) -> list[Override]:
    """Every flag in its range, the backend the task's; returns the parsed overrides (typed syntax checked)."""
    check_range("--trials", args.trials, 1)
    check_range("--gpus", args.gpus, 0)
    check_range("--seed", args.seed, 0)
    check_range("--max-iters", args.max_iters, 1)
    check_range("--input-size", args.input_size, adapter.min_input_size, MAX_INPUT_SIZE)
    return parse_overrides(args.overrides or [])


def visible_gpus() -> int:
    """How many GPUs torch sees."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve_devices(requested: int | None, adapter: Adapter) -> tuple[int, int]:
    """(GPUs per node, processes in the job): all visible GPUs by default, 0 = the CPU.

    Under torchrun the job is torchrun's (WORLD_SIZE processes); --gpus must then agree with
    the processes per node, and the CPU only works where the engine runs a gloo job.
    """
    visible = visible_gpus()
    gpus = visible if requested is None else requested
    if gpus > visible:
        raise UserError(f"--gpus {gpus} asked for, but {visible} GPU(s) are visible; "
                        "pass --gpus 0 for the CPU or check CUDA_VISIBLE_DEVICES")
    if not under_torchrun():
        return gpus, max(gpus, 1)
    world, local = int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"]))
    if world > 1 and adapter.own_launcher:
        raise UserError(f"--backend {adapter.backend} starts its own processes: run it without torchrun "
                        "(--gpus N for several GPUs)")
    if world > 1 and gpus == 0 and not adapter.cpu_distributed:
        raise UserError(f"torchrun started {world} processes but {adapter.backend} cannot train one job over "
                        "several CPU processes; run one process (no torchrun) with --gpus 0, or use GPUs")
    if gpus and requested is not None and gpus != local:
        raise UserError(f"torchrun started {local} process(es) per node but --gpus {gpus}; "
                        f"pass --gpus {local} or leave --gpus out")
    return (local if gpus else 0), world


def reuse_finished(work_dir: Path, backend: str, force: bool) -> dict[str, Any] | None:
    """The record of a finished run in `work_dir` (None: run); another backend's record is an error."""
    path = work_dir / METRICS_FILE
    if force or not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{path} cannot be read as a finished run ({e}); pass --force to run again") from None
    if not isinstance(record, dict):
        raise UserError(f"{path} is not a metrics record; pass --force to run again")
    if record.get("backend") not in (None, backend):
        raise UserError(f"{path} holds a {record.get('backend')} run, not {backend}; "
                        "pass another --work-dir (or --force to replace it)")
    say(f"{path} exists: reusing it (pass --force to run again)")
    return record


def run_task(args: argparse.Namespace, adapter: Adapter) -> dict[str, Any]:
    """Run one transfer task end to end; writes WORK_DIR/metrics.json and returns its record."""
    task = adapter.task
    backend = args.backend or adapter.backend
    if backend not in adapter.backends:
        raise UserError(f"--backend {backend}: {task} runs on {' or '.join(adapter.backends)}")
    overrides = check_flags(args, adapter)
    work_dir = Path(args.work_dir or f"work_dirs/{task}")
    check_output_path(work_dir, "--work-dir")
    finished = reuse_finished(work_dir, adapter.backend, args.force)
    if finished is not None:
        return finished
    config_path = Path(args.config) if args.config else adapter.default_config()
    adapter.check_overrides(config_path, overrides)
    gpus, world_size = resolve_devices(args.gpus, adapter)
    if not adapter.own_launcher:
        relaunch_with_torchrun(gpus)  # replaces this process when several GPUs are asked for
    if args.weights and not Path(args.weights).is_file():
        raise UserError(f"--weights {args.weights} does not exist")
    data_root = find_dataset(adapter.data_format, args.data)
    say(f"checking the {adapter.data_format} dataset at {data_root}")
    check_dataset(adapter.data_format, data_root, decode_images=getattr(args, "check_images", False))
    run = Run(args, task, overrides, data_root, work_dir, gpus, world_size)

    with claim_work_dir(work_dir, writer=is_main_process()) as claim:
        adapter.setup(run)
        try:
            return _trials(args, adapter, run, config_path, claim)
        finally:
            adapter.teardown()


def _trials(args: argparse.Namespace, adapter: Adapter, run: Run, config_path: Path, claim: Any) -> dict[str, Any]:
    """Convert the weights, run every trial, write metrics.json (the body of `run_task` inside the claimed work dir)."""
    if args.weights and adapter.weights_format:
        from transfer.checkpoint import ensure_converted

        run.weights = Path(ensure_converted(args.weights, adapter.weights_format, run.work_dir / "converted"))
    elif args.weights:
        run.weights = Path(args.weights)
    trials, notes, iterations = [], [], None
    start = time.perf_counter()
    for trial in range(args.trials):
        run.notes = []
        cfg = adapter.build_config(config_path, run)
        iterations = adapter.iterations(cfg)
        if trial == 0:
            notes = list(run.notes)
            for note in notes:
                say(note)
        trial_dir = run.work_dir if args.trials == 1 else run.work_dir / f"trial{trial}"
        say(f"trial {trial + 1}/{args.trials}: {run.task} on {adapter.backend} with {config_path.name}, "
            f"{iterations} iterations, {'CPU' if run.gpus == 0 else f'{run.gpus} GPU(s)'}"
            f"{f' x {run.world_size} processes' if run.world_size > 1 else ''}, work dir {trial_dir}")
        claim.started()  # from here on, a failure leaves the work dir for --resume
        resume = not (args.no_resume or args.force)  # --force means a fresh run
        trials.append(adapter.run_trial(cfg, run, trial_dir, args.seed + trial, resume))
        say(f"trial {trial + 1}/{args.trials} done: " + ", ".join(f"{k} {v:.2f}" for k, v in trials[-1].items()))

    trials, metrics = average_trials(trials)
    if not is_main_process():
        return {"metrics": metrics}
    path = write_metrics(run.work_dir, task=run.task, backend=adapter.backend, metrics=metrics,
                         config=str(config_path), weights=args.weights, iterations=iterations, trials=trials,
                         extra={"overrides": overrides_text(run.overrides), "arch": run.arch, "seed": args.seed,
                                "gpus": run.gpus, "world_size": run.world_size, "notes": notes,
                                "wall_time_s": round(time.perf_counter() - start, 1)})
    say(f"metrics written to {path}: " + ", ".join(f"{k} {v:.2f}" for k, v in metrics.items()))
    return json.loads(path.read_text())
