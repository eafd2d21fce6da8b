"""The results file every run writes (`WORK_DIR/metrics.json`), and the machine it ran on."""
from __future__ import annotations

import datetime
import os
import platform
import shlex
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from transfer.fileio import sha256_file, write_json

METRICS_FILE = "metrics.json"
SCHEMA_VERSION = 1


def machine_info() -> dict[str, Any]:
    """The machine a run used: CPU model and count, GPU names, torch and CUDA versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {"cpu": cpu, "cpu_count": os.cpu_count(), "gpus": [], "python": platform.python_version()}
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            info["cuda"] = torch.version.cuda
    except ImportError:
        pass
    return info


def machine_label(info: dict[str, Any] | None = None) -> str:
    """A short human label of a machine: `1x NVIDIA H100 ...` or `CPU: <model> (N cores)`."""
    info = info or machine_info()
    if info.get("gpus"):
        return f"{len(info['gpus'])}x {info['gpus'][0]}"
    return f"CPU: {info['cpu']} ({info['cpu_count']} cores)"


def git_commit() -> str | None:
    """The commit of this checkout, with `-dirty` if it has uncommitted changes; None outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True)
        return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def command_line() -> str:
    """The command that started this process, as a shell would read it."""
    return " ".join(shlex.quote(a) for a in sys.argv)


def is_number(value: Any) -> bool:
    """True for an int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def summarize_trials(trials: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and (sample) std of each metric over trials: {name: {"mean": .., "std": .., "n": ..}}."""
    out = {}
    for key in trials[0]:
        values = [t[key] for t in trials if is_number(t.get(key))]
        if values:
            out[key] = {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                        "n": len(values)}
    return out


def average_trials(trials: list[dict[str, Any]]) -> tuple[list[dict[str, float]], dict[str, float]]:
    """(each trial's figures, their mean with `<name>_std` beside it when there are several trials).

    A trial's figures are its numbers, less the `_std` of an average it may itself be.
    The one averaging of the project: a run's trials, the suite's trials, the demo's seeds.
    """
    figures = [{k: v for k, v in t.items() if is_number(v) and not k.endswith("_std")} for t in trials]
    summary = summarize_trials(figures)
    metrics = {k: v["mean"] for k, v in summary.items()}
    if len(figures) > 1:
        metrics.update({f"{k}_std": v["std"] for k, v in summary.items()})
    return figures, metrics


def write_average(work_dir: str | os.PathLike, records: list[dict[str, Any]], *, task: str,
                  weights: str | None = None, extra: dict[str, Any] | None = None) -> Path:
    """WORK_DIR/metrics.json: the average of several runs' metrics.json records (`average_trials`), each run's
    figures kept as its trials; config and iterations are the first run's."""
    trials, metrics = average_trials([r["metrics"] for r in records])
    return write_metrics(work_dir, task=task, backend=records[0].get("backend") or "?", metrics=metrics,
                         config=records[0].get("config"), weights=weights, iterations=records[0].get("iterations"),
                         trials=trials, extra=extra)


def write_metrics(work_dir: str | os.PathLike, *, task: str, backend: str, metrics: dict[str, Any],
                  config: str | None = None, weights: str | None = None, iterations: int | None = None,
                  trials: list[dict[str, Any]] | None = None, extra: dict[str, Any] | None = None) -> Path:
    """Write WORK_DIR/metrics.json atomically and return its path.

    `metrics` holds the reported figures (percent for AP, mIoU, accuracy); with
    several `trials`, it holds their means and `trials` each trial's figures.
    """
    record: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "task": task,
        "backend": backend,
        "metrics": metrics,
        "config": config,
        "weights": str(weights) if weights else None,
        "weights_sha256": sha256_file(weights) if weights and Path(weights).is_file() else None,
        "iterations": iterations,
        "trials": trials,
        "command": command_line(),
        "machine": machine_info(),
        "git_commit": git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if extra:
        record.update(extra)
    path = Path(work_dir) / METRICS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, record)
    return path


BENCHMARK_DIR = Path(__file__).resolve().parent.parent / "benchmarks" / "results"


def write_benchmark(name: str, figures: list[dict[str, Any]], notes: str | None = None,
                    out_dir: str | os.PathLike | None = None) -> Path:
    """Write benchmarks/results/NAME.json, the figures a benchmark script measured, and print them.

    Each figure is {"label": str, "value": float, "unit": str} plus any context
    keys (batch, image size, device). tools/make_benchmarks.py builds
    benchmarks.md from these files.
    """
    record = {"schema": SCHEMA_VERSION, "name": name, "figures": figures, "notes": notes,
              "command": command_line(), "machine": machine_info(), "machine_label": machine_label(),
              "git_commit": git_commit(),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    path = Path(out_dir or BENCHMARK_DIR) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, record)
    for fig in figures:
        print(f"{name}: {fig['label']}: {fig['value']:.4g} {fig.get('unit', '')}")
    return path
