"""Measured transfer results: a results index (one table) and the metrics.json files it names.

A results index (e.g. `demo_out/results.json`, written by the demo, or by hand for
GPU runs) is
    {"schema": 1, "name": str, "command": str, "date": str, "machine": {...},
     "budget": {"arch": .., "epochs": .., "batch_size": .., "image_size": .., "images": ..},
     "procedural": true,              # optional, default true: the runs used procedural data
     "data": str,                     # optional: what data the runs used, in words
     "rows": [{"method": "ssa", "label": "SSA (MoCo v2 teacher)", "teacher": "moco_v2" | "ema" | null,
               "pretrain": {"images_per_s": .., "wall_time_s": .., "checkpoint": ..} | null,
               "budget": {...},       # optional: this row's budget where it differs
               "metrics": {"linear": "runs/ssa/linear/metrics.json", "voc": .., "coco": .., "cityscapes": ..}}]}
Paths in `metrics` are relative to the index file's folder; a task left out is "not run".
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transfer.errors import UserError
from transfer.report.columns import REQUIRED_METRICS, TASKS, is_number

SCHEMA = 1


def new_index(name: str, command: str, rows: list[dict[str, Any]], **facts: Any) -> dict[str, Any]:
    """A results index (the format above) of `rows`, dated now; `facts`: its other keys (machine, budget, ...)."""
    return {"schema": SCHEMA, "name": name, "command": command, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **facts, "rows": rows}


@dataclass
class TaskResult:
    """One task's metrics.json: the figures (percent) and where, how and when they were measured."""

    task: str
    path: Path
    metrics: dict[str, Any]
    n_trials: int
    backend: str | None
    config: str | None
    iterations: int | None
    command: str | None
    machine: dict[str, Any] | None
    date: str | None
    git_commit: str | None


@dataclass
class MethodRow:
    """One row of a measured table: a pretraining method and its transfer results."""

    method: str
    label: str
    teacher: str | None
    pretrain: dict[str, Any] | None
    budget: dict[str, Any]
    results: dict[str, TaskResult] = field(default_factory=dict)
    name: str | None = None  # the index's `name` of the row (what another row's `teacher` refers to)


@dataclass
class TransferTable:
    """One results index: rows of methods measured side by side at one budget."""

    path: Path
    name: str
    command: str | None
    date: str | None
    machine: dict[str, Any] | None
    budget: dict[str, Any]
    procedural: bool
    data: str | None
    rows: list[MethodRow]
    link_cells: bool = False  # each measured cell links to its metrics.json (the suite's index asks for it)
    chance: dict[str, dict[str, float]] = field(default_factory=dict)  # per task and metric, when the index has it
    separation: dict[str, Any] = field(default_factory=dict)  # the demo's margins over random init

    def row(self, method: str) -> MethodRow | None:
        """The row named `method`, else the first row of that method, or None."""
        return next((r for r in self.rows if r.name == method), None) or \
            next((r for r in self.rows if r.method == method), None)


def describe_machine(info: Any) -> str:
    """A short label of a machine dict (as `transfer.results.machine_info` writes it), tolerant of gaps."""
    if not isinstance(info, dict):
        return "unknown machine"
    gpus = info.get("gpus") or []
    if gpus:
        names = sorted(set(map(str, gpus)))
        return f"{len(gpus)}x {names[0]}" if len(names) == 1 else f"{len(gpus)} GPUs: {', '.join(names)}"
    cpu = info.get("cpu") or "unknown CPU"
    count = info.get("cpu_count")
    return f"CPU: {cpu}" + (f" ({count} cores)" if count else "")


def read_json(path: Path, what: str) -> Any:
    """Parse a JSON file, with an error naming the file for a missing or malformed one."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise UserError(f"{path}: {what} does not exist") from e
    except OSError as e:
        raise UserError(f"{path}: cannot read {what} ({e.strerror})") from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: {what} is not valid JSON ({e.msg}, line {e.lineno})") from e


def read_record(path: Path, what: str, schema: int = SCHEMA) -> dict[str, Any]:
    """A JSON object of the given `schema` (`what` names it in errors, e.g. "the metrics file")."""
    record = read_json(path, what)
    if not isinstance(record, dict):
        raise UserError(f"{path}: {what} must be a JSON object")
    if record.get("schema") != schema:
        raise UserError(f"{path}: {what} has schema {record.get('schema')!r}, which is not supported "
                        f"(expected {schema})")
    return record


def load_task_result(path: Path, task: str, where: str) -> TaskResult:
    """Read and check one metrics.json written by `transfer.results.write_metrics` for `task`."""
    if not path.is_file():
        raise UserError(f"{path}: the metrics file named by {where} does not exist")
    record = read_record(path, "the metrics file")
    if record.get("task") != task:
        raise UserError(f"{path}: holds task {record.get('task')!r}, but {where} lists it as {task!r}")
    metrics = record.get("metrics")
    if not isinstance(metrics, dict):
        raise UserError(f"{path}: 'metrics' is missing or not an object")
    if not any(is_number(metrics.get(name)) for name in REQUIRED_METRICS[task]):
        raise UserError(f"{path}: 'metrics' has no number for {' or '.join(REQUIRED_METRICS[task])}")
    trials = record.get("trials")
    return TaskResult(
        task=task, path=path, metrics=metrics, n_trials=len(trials) if isinstance(trials, list) else 1,
        backend=record.get("backend"), config=record.get("config"), iterations=record.get("iterations"),
        command=record.get("command"), machine=record.get("machine"), date=record.get("date"),
        git_commit=record.get("git_commit"))


def _check_row(row: Any, number: int, path: Path) -> None:
    """Reject a row of the index that lacks what a table row needs."""
    where = f"{path}: row {number}"
    if not isinstance(row, dict) or not isinstance(row.get("method"), str) or not row["method"]:
        raise UserError(f"{where}: expected an object with a 'method' name")
    for key, kind in (("label", str), ("teacher", str), ("pretrain", dict), ("budget", dict), ("metrics", dict)):
        if row.get(key) is not None and not isinstance(row[key], kind):
            raise UserError(f"{where} ({row['method']}): '{key}' must be a {kind.__name__} or null")
    for key in ("images_per_s", "wall_time_s"):
        value = (row.get("pretrain") or {}).get(key)
        if value is not None and not is_number(value):
            raise UserError(f"{where} ({row['method']}): pretrain '{key}' must be a number")
    for task, target in (row.get("metrics") or {}).items():
        if task not in TASKS:
            raise UserError(f"{where} ({row['method']}): unknown task {task!r} (expected one of {', '.join(TASKS)})")
        if not isinstance(target, str):
            raise UserError(f"{where} ({row['method']}): the {task} metrics entry must be a path")


def load_index(path: str | Path) -> TransferTable:
    """Read a results index and every metrics.json it names; any bad input is a UserError naming the file."""
    path = Path(path)
    index = read_record(path, "the results index")
    raw_rows = index.get("rows")
    if not isinstance(raw_rows, list) or not raw_rows:
        raise UserError(f"{path}: 'rows' is missing or empty")
    budget = index.get("budget") or {}
    if not isinstance(budget, dict):
        raise UserError(f"{path}: 'budget' must be an object")
    rows, labels = [], set()
    for number, raw in enumerate(raw_rows, start=1):
        _check_row(raw, number, path)
        label = raw.get("label") or raw["method"]
        if label in labels:
            raise UserError(f"{path}: two rows are labelled {label!r}; give each a distinct 'label'")
        labels.add(label)
        row = MethodRow(method=raw["method"], label=label, teacher=raw.get("teacher"), pretrain=raw.get("pretrain"),
                        budget={**budget, **(raw.get("budget") or {})}, name=raw.get("name"))
        for task in TASKS:
            target = (raw.get("metrics") or {}).get(task)
            if target is not None:
                row.results[task] = load_task_result(path.parent / target, task, f"{path} (row {label!r}, {task})")
        rows.append(row)
    return TransferTable(path=path, name=str(index.get("name") or path.parent.name), command=index.get("command"),
                         date=index.get("date"), machine=index.get("machine"), budget=budget,
                         procedural=index.get("procedural", True) is not False, data=index.get("data"), rows=rows,
                         link_cells=index.get("link_cells") is True, chance=index.get("chance") or {},
                         separation=index.get("separation") or {})
