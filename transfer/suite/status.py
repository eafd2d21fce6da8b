"""`--status`: the suite's table so far and the runs still running, queued, interrupted or failed."""
from __future__ import annotations

import json

from transfer.report.columns import coco_cell, cityscapes_cell, knn_cell, linear_cell, metric_text, voc_cell
from transfer.results import METRICS_FILE
from transfer.fileio import pid_alive
from transfer.jobs import read_state
from transfer.suite.plan import Job, SuitePlan
from transfer.tasks import TASKS

CELLS = {"linear": lambda m: f"{linear_cell(m)} (kNN {knn_cell(m)})", "voc": voc_cell, "coco": coco_cell,
         "cityscapes": cityscapes_cell}


def metrics_cell(task: str, metrics: dict) -> str:
    """A task's cell: the paper table's own form, or else its headline metrics (`transfer.tasks`)."""
    if task in CELLS:
        return CELLS[task](metrics)
    return " / ".join(metric_text(metrics, name) for name in TASKS[task].metrics)


def job_state(job: Job) -> str:
    """done | running | queued (submitted or not started) | interrupted (its process is gone) | failed."""
    if (job.work_dir / METRICS_FILE).is_file():
        return "done"
    state = read_state(job.work_dir)
    current = state.get("state", "queued")
    if current == "running" and not state.get("slurm_job_id") and not pid_alive(state.get("pid")):
        return "interrupted"  # a local run whose process died: the next `suite` resumes it
    return "failed" if current == "failed" else current if current in ("running", "queued") else "queued"


def cell_text(plan: SuitePlan, jobs: list[Job]) -> str:
    """A cell of the status table: the metric (mean +- std over finished trials) and what is still to come."""
    states = [job_state(j) for j in jobs]
    done = states.count("done")
    text = ""
    if done:
        first = jobs[0]
        path = (first.work_dir if first.trials == 1 else plan.protocol_dir(first.checkpoint, first.protocol))
        try:
            text = metrics_cell(first.protocol.task, json.loads((path / METRICS_FILE).read_text())["metrics"])
        except (OSError, ValueError, KeyError):
            text = "done"
    if done < len(jobs):
        pending = ", ".join(f"{states.count(s)} {s}" for s in ("running", "queued", "interrupted", "failed")
                            if states.count(s))
        text = f"{text} [{done}/{len(jobs)} trials; {pending}]".strip() if len(jobs) > 1 else text or pending
    return text


def status_text(plan: SuitePlan) -> str:
    """The table of checkpoints x protocols, then each unfinished run with its state and log."""
    by_cell: dict[tuple[str, str], list[Job]] = {}
    for job in plan.jobs():
        by_cell.setdefault((job.checkpoint.name, job.protocol.key), []).append(job)
    header = ["checkpoint"] + [p.title for p in plan.protocols]
    rows = [[c.name] + [cell_text(plan, by_cell[(c.name, p.key)]) for p in plan.protocols] for c in plan.checkpoints]
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header] + rows]
    pending = [(job, job_state(job)) for job in plan.jobs()]
    pending = [(job, state) for job, state in pending if state != "done"]
    done = len(plan.jobs()) - len(pending)
    lines += ["", f"{done}/{len(plan.jobs())} runs done"]
    for job, state in pending:
        facts = read_state(job.work_dir)
        where = f"SLURM job {facts['slurm_job_id']}" if facts.get("slurm_job_id") else \
            f"pid {facts['pid']} on {facts.get('host')}" if state == "running" else ""
        log = job.work_dir / "suite_job.log"
        lines.append(f"  {state:11s} {job.label}  {where}  {log if log.is_file() else ''}".rstrip())
    table = plan.work_dir / "benchmarks.md"
    if table.is_file():
        lines.append(f"table so far: {table}")
    return "\n".join(lines)


def print_status(plan: SuitePlan) -> str:
    """Print and return the status text."""
    text = status_text(plan)
    print(text)
    return text

