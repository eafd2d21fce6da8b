"""The runner skeleton that every mmengine-based transfer task shares.

check the dataset -> convert the weights -> load the protocol config -> fit it to
the devices and the schedule -> for each trial: train and test with mmengine's
Runner (resuming from the last checkpoint of the trial's work dir) -> write
WORK_DIR/metrics.json. A task supplies only what differs: its config edits
(`prepare`) and how its test metrics are named (`summarize`).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmengine.config import Config

from transfer.data import check_dataset, find_dataset
from transfer.engine.compat import trust_checkpoints_in
from transfer.engine.config import load_config, parse_overrides
from transfer.engine.devices import adapt_to_devices, resolve_gpus
from transfer.engine.internals import shutdown_loader_workers
from transfer.engine.launch import is_main_process, relaunch_with_torchrun
from transfer.engine.rng_state import add_rng_state_hook
from transfer.engine.schedule import shorten_schedule
from transfer.errors import UserError
from transfer.results import METRICS_FILE, summarize_trials, write_metrics


@dataclass
class TaskContext:
    """What a task's `prepare` hook gets besides the config."""

    args: argparse.Namespace
    data_root: Path
    weights: Path | None  # the converted (mmlab) checkpoint, or None for random init
    work_dir: Path
    gpus: int
    notes: list[str] = field(default_factory=list)


def say(message: str) -> None:
    """Print a progress line of the runner (rank 0 only)."""
    if is_main_process():
        print(f"[transfer] {message}", file=sys.stderr, flush=True)


def prepare_weights(weights: str | None, work_dir: Path) -> Path | None:
    """The checkpoint to initialise from in OpenMMLab format, converting (and caching) when needed."""
    if not weights:
        return None
    from transfer.checkpoint import ensure_converted

    return Path(ensure_converted(weights, "mmlab", work_dir / "converted"))


def run_mm_task(args: argparse.Namespace, *, task: str, fmt: str, backend: str, default_config: Path,
                prepare: Callable[[Config, TaskContext], None],
                summarize: Callable[[dict[str, Any]], dict[str, float]],
                check_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run one transfer task end to end with mmengine and return the metrics.json record.

    `prepare(cfg, ctx)` points the config at the data and weights and applies
    task-specific flags (e.g. --input-size); `summarize(test_metrics)` maps the
    engine's metric names to the reported ones (percent).
    """
    work_dir = Path(args.work_dir or f"work_dirs/{task}")
    metrics_path = work_dir / METRICS_FILE
    if metrics_path.is_file() and not args.force:
        say(f"{metrics_path} exists: reusing it (pass --force to run again)")
        return json.loads(metrics_path.read_text())
    gpus = resolve_gpus(args.gpus)
    relaunch_with_torchrun(gpus)  # replaces this process when several GPUs are asked for
    if args.trials < 1:
        raise UserError(f"--trials must be >= 1 (got {args.trials})")

    data_root = find_dataset(fmt, args.data)
    say(f"checking the {fmt} dataset at {data_root}")
    check_dataset(fmt, data_root, **(check_kwargs or {}))
    work_dir.mkdir(parents=True, exist_ok=True)
    weights = prepare_weights(args.weights, work_dir)
    trust_checkpoints_in(work_dir)  # resuming reads back this run's own checkpoints

    config_path = Path(args.config) if args.config else default_config
    trials, iterations, notes = [], None, []
    start = time.perf_counter()
    for trial in range(args.trials):
        # Overrides go in before `prepare` (so it sees e.g. model.backbone.depth=18) and again
        # after it, so that what the user asked for wins over the task's own edits.
        cfg = load_config(config_path, args.overrides)
        ctx = TaskContext(args, data_root, weights, work_dir, gpus)
        prepare(cfg, ctx)
        cfg.merge_from_dict(parse_overrides(args.overrides))
        ctx.notes += adapt_to_devices(cfg, gpus)
        if args.max_iters:
            ctx.notes += shorten_schedule(cfg, args.max_iters)
        ctx.notes += drop_final_only_validation(cfg)
        trial_dir = work_dir if args.trials == 1 else work_dir / f"trial{trial}"
        cfg.work_dir = str(trial_dir)
        cfg.randomness = dict(seed=args.seed + trial, deterministic=False)
        cfg.resume = not (args.no_resume or args.force)  # --force means a fresh run
        cfg.load_from = None
        iterations = int(cfg.train_cfg.max_iters)
        if trial == 0:
            notes = ctx.notes
            for note in notes:
                say(note)
        say(f"trial {trial + 1}/{args.trials}: {task} with {config_path.name}, {iterations} iterations, "
            f"{'CPU' if gpus == 0 else f'{gpus} GPU(s)'}, work dir {trial_dir}")
        trials.append(summarize(train_and_test(cfg)))
        say(f"trial {trial + 1}/{args.trials} done: " + ", ".join(f"{k} {v:.2f}" for k, v in trials[-1].items()))

    summary = summarize_trials(trials)
    metrics = {k: v["mean"] for k, v in summary.items()}
    if args.trials > 1:
        metrics.update({f"{k}_std": v["std"] for k, v in summary.items()})
    if not is_main_process():
        return {"metrics": metrics}
    path = write_metrics(work_dir, task=task, backend=backend, metrics=metrics, config=str(config_path),
                         weights=args.weights, iterations=iterations,
                         trials=trials if args.trials > 1 else None,
                         extra={"notes": notes, "gpus": gpus, "seed": args.seed,
                                "overrides": list(args.overrides),
                                "wall_time_s": round(time.perf_counter() - start, 1)})
    say(f"metrics written to {path}")
    return json.loads(path.read_text())


def drop_final_only_validation(cfg: Config) -> list[str]:
    """Turn off a validation loop that would run only at the last iteration: the test right after repeats it."""
    interval = cfg.train_cfg.get("val_interval", 1)
    if cfg.get("val_dataloader") is None or interval < cfg.train_cfg.max_iters:
        return []
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    return ["validation during training off: it would only repeat the final test"]


def train_and_test(cfg: Config) -> dict[str, Any]:
    """Train with mmengine's Runner, resuming from the work dir's last checkpoint, then test; returns test metrics."""
    from mmengine.runner import Runner

    add_rng_state_hook(cfg)  # a resumed run continues with the generators' states of its checkpoint
    runner = Runner.from_cfg(cfg)
    try:
        runner.train()
        return runner.test()
    finally:
        stop_loader_workers(runner)


def stop_loader_workers(runner: Any) -> None:
    """Shut down the runner's persistent data-loader workers now, not whenever the garbage collector gets to them.

    Left to `__del__`, they are reaped in the middle of the next run in the same
    process (the demo, the tests) and each can hold it up for seconds.
    """
    for name in ("_train_loop", "_val_loop", "_test_loop"):
        loader = getattr(getattr(runner, name, None), "dataloader", None)
        if loader is not None:
            shutdown_loader_workers(loader)
