"""The suite's table so far: trials averaged, WORK_DIR/results.json (the index) and benchmarks.md rebuilt.

Called after every run ends (locally or inside a SLURM job) and by `--status`;
a file lock keeps two jobs that end at once from interleaving their writes.
"""
from __future__ import annotations

import fcntl
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from transfer.fileio import write_json
from transfer.report.columns import TASKS as TABLE_TASKS, metric_text
from transfer.results import METRICS_FILE, write_average
from transfer.suite.plan import Checkpoint, Job, Protocol, SuitePlan
from transfer.tasks import TASKS

PLAN_FILE = "suite.json"
INDEX_FILE = "results.json"
TABLE_FILE = "benchmarks.md"
PLOT_FILE = "comparison.png"
FIGURES_DIR = "figures"  # the preflight's figures (benchmarks/results format), shown in benchmarks.md


def save_plan(plan: SuitePlan, command: str) -> Path:
    """Write WORK_DIR/suite.json: what the suite runs, so that --status and SLURM jobs can rebuild the table."""
    record = {"schema": 1, "command": command, "work_dir": str(plan.work_dir), "data_root": str(plan.data_root),
              "checkpoints": [{"name": c.name, "weights": str(c.weights)} for c in plan.checkpoints],
              "protocols": [[p.task, p.variant] for p in plan.protocols], "trials": plan.trials, "seed": plan.seed,
              "gpus": plan.gpus, "backend": plan.backend, "max_iters": plan.max_iters, "input_size": plan.input_size,
              "overrides": plan.overrides}
    path = plan.work_dir / PLAN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, record)
    return path


def load_plan(work_dir: str | Path) -> tuple[SuitePlan, str]:
    """The plan (and the command that made it) saved in WORK_DIR/suite.json."""
    from transfer.errors import UserError

    path = Path(work_dir) / PLAN_FILE
    if not path.is_file():
        raise UserError(f"{path} does not exist: {work_dir} is not the work dir of a suite")
    r = json.loads(path.read_text())
    plan = SuitePlan(work_dir=Path(work_dir), data_root=Path(r["data_root"]),
                     checkpoints=[Checkpoint(c["name"], Path(c["weights"])) for c in r["checkpoints"]],
                     protocols=[Protocol(t, v) for t, v in r["protocols"]], trials=r["trials"], seed=r["seed"],
                     gpus=r["gpus"], backend=r["backend"], max_iters=r["max_iters"], input_size=r["input_size"],
                     overrides=r["overrides"])
    return plan, r["command"]


@contextmanager
def locked(work_dir: Path):
    """Hold WORK_DIR/.index.lock (an flock: released when the process dies)."""
    with open(Path(work_dir) / ".index.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def finished(job: Job) -> bool:
    """Whether the job's run has written its metrics.json."""
    return (job.work_dir / METRICS_FILE).is_file()


def merge_trials(plan: SuitePlan, jobs: list[Job]) -> Path | None:
    """Average a protocol's finished trials into its own metrics.json (mean, `<metric>_std`); None when none ended.

    Rewritten only when the set of finished trials changed, so its date is that of the last trial's end.
    """
    done = [j for j in jobs if finished(j)]
    if not done:
        return None
    first = jobs[0]
    if first.trials == 1:
        return first.work_dir / METRICS_FILE
    out_dir = plan.protocol_dir(first.checkpoint, first.protocol)
    dirs = [str(j.work_dir.relative_to(out_dir)) for j in done]
    path = out_dir / METRICS_FILE
    if path.is_file() and json.loads(path.read_text()).get("trial_dirs") == dirs:
        return path
    records = [json.loads((j.work_dir / METRICS_FILE).read_text()) for j in done]
    return write_average(out_dir, records, task=first.protocol.task, weights=str(first.checkpoint.weights),
                         extra={"trial_dirs": dirs, "seeds": [j.seed for j in done], "trials_planned": first.trials,
                                "trial_machines": [r.get("machine") for r in records]})


def is_procedural(data_root: Path) -> bool:
    """Whether the data root holds this project's generated datasets (each has a generated.json)."""
    from transfer.data.generate import MANIFEST

    return any(data_root.glob(f"*/{MANIFEST}")) or (data_root / MANIFEST).is_file()


def cells(plan: SuitePlan) -> dict[tuple[str, str], Path]:
    """(checkpoint, protocol key) -> its metrics.json (trials averaged), for every cell with a finished run."""
    by_cell: dict[tuple[str, str], list[Job]] = {}
    for job in plan.jobs():
        by_cell.setdefault((job.checkpoint.name, job.protocol.key), []).append(job)
    found = {cell: merge_trials(plan, jobs) for cell, jobs in by_cell.items()}
    return {cell: path for cell, path in found.items() if path is not None}


def build_rows(plan: SuitePlan) -> list[dict[str, Any]]:
    """One row per checkpoint (COCO: its first config), one more per further COCO config; finished cells only.

    The paper's columns are under `metrics`; the protocols outside the paper's table under `further`
    (protocol key -> metrics.json).
    """
    done = cells(plan)
    coco = [p for p in plan.protocols if p.task == "coco"]
    further = [p for p in plan.protocols if p.task not in TABLE_TASKS]
    rows = []
    for checkpoint in plan.checkpoints:
        groups = [(checkpoint.name, [p for p in plan.protocols
                                     if p.task in TABLE_TASKS and (p.task != "coco" or p == coco[0])])]
        groups += [(f"{checkpoint.name} ({p.title})", [p]) for p in coco[1:]]
        for label, protocols in groups:
            metrics = {p.task: str(done[(checkpoint.name, p.key)].relative_to(plan.work_dir))
                       for p in protocols if (checkpoint.name, p.key) in done}
            rows.append({"method": checkpoint.name, "name": checkpoint.name, "label": label, "teacher": None,
                         "pretrain": {"checkpoint": str(checkpoint.weights)}, "metrics": metrics})
        rows[-1 - len(coco[1:])]["further"] = {p.key: str(done[(checkpoint.name, p.key)].relative_to(plan.work_dir))
                                               for p in further if (checkpoint.name, p.key) in done}
    return rows


def further_section(plan: SuitePlan, rows: list[dict[str, Any]]) -> list[str]:
    """benchmarks.md's table of the protocols outside the paper's: each checkpoint's headline metrics, linked."""
    protocols = [p for p in plan.protocols if p.task not in TABLE_TASKS]
    if not protocols:
        return []
    header = ["checkpoint"] + [f"{p.title} {name}" for p in protocols for name in TASKS[p.task].metrics]
    lines = ["", "## Further protocols (measured)", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        if "further" not in row:
            continue
        cells_text = [row["name"]]
        for protocol in protocols:
            rel = row["further"].get(protocol.key)
            metrics = json.loads((plan.work_dir / rel).read_text())["metrics"] if rel else {}
            cells_text += [f"[{metric_text(metrics, name)}]({rel})" if rel else "not run"
                           for name in TASKS[protocol.task].metrics]
        lines.append("| " + " | ".join(cells_text) + " |")
    return lines


def update_index(plan: SuitePlan, command: str) -> Path | None:
    """Rewrite WORK_DIR/results.json and benchmarks.md (+ comparison.png) from the finished runs; None if none ended."""
    from transfer.report import new_index, publish_index

    with locked(plan.work_dir):
        rows = build_rows(plan)
        if not any(row["metrics"] or row.get("further") for row in rows):
            return None
        procedural = is_procedural(plan.data_root)
        index = new_index(f"suite {plan.work_dir.resolve().name}", command, rows, procedural=procedural,
                          link_cells=True, data=f"{plan.data_root}" + (" (procedural)" if procedural else ""),
                          budget={k: v for k, v in (("max_iters", plan.max_iters), ("input_size", plan.input_size))
                                  if v})
        path = plan.work_dir / INDEX_FILE
        publish_index(path, index, table=plan.work_dir / TABLE_FILE, plot=plan.work_dir / PLOT_FILE,
                      bench_dir=plan.work_dir / FIGURES_DIR, appendix=further_section(plan, rows))
        return path


def refresh_index(work_dir: Path) -> Path | None:
    """`update_index` of the suite saved in `work_dir` (what a SLURM job runs when it ends: the table fills in)."""
    return update_index(*load_plan(work_dir))
