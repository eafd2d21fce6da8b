"""Run one command of the suite (a transfer run, a preflight probe) and record its state beside its outputs.

The state file (`suite_job.json` in the run's work dir) says queued / running /
done / failed, where and since when; `--status` reads it. The same function runs a
job in this process's child (local launcher) and inside a SLURM job (slurm.py).
"""
from __future__ import annotations

import datetime
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from transfer.fileio import write_json

REPO = Path(__file__).resolve().parents[1]
STATE_FILE = "suite_job.json"
LOG_FILE = "suite_job.log"


def now() -> str:
    """The time in UTC, ISO 8601, to the second."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def read_state(work_dir: Path) -> dict[str, Any]:
    """The job state recorded in `work_dir` ({} when none)."""
    try:
        return json.loads((Path(work_dir) / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}


def write_state(work_dir: Path, state: str, **facts: Any) -> None:
    """Record `state` (queued, running, done, failed) and facts about it, keeping the earlier facts."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    write_json(work_dir / STATE_FILE, {**read_state(work_dir), **facts, "state": state, "updated": now()})


def transfer_command(argv: list[str]) -> list[str]:
    """The process that runs `tools/run_transfer.sh ARGV` with this interpreter."""
    return [sys.executable, str(REPO / "tools" / "run_transfer.py"), *argv]


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment with the checkout first on PYTHONPATH (the tools import `transfer`)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def run_command(command: list[str], work_dir: Path, env: dict[str, str] | None = None,
                record: bool = True) -> int:
    """Run `command`, its output appended to WORK_DIR/suite_job.log; returns its exit code.

    With `record`, the state file says running (with host and pid) and then done or failed.
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    rank = int(os.environ.get("RANK", "0"))
    log = work_dir / (LOG_FILE if rank == 0 else f"suite_job.rank{rank}.log")
    with open(log, "a") as out:
        out.write(f"[suite] {now()} on {socket.gethostname()}: {' '.join(command)}\n")
        out.flush()
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env or child_env(),
                                cwd=str(REPO))
        if record and rank == 0:
            slurm = {"slurm_job_id": os.environ["SLURM_JOB_ID"]} if "SLURM_JOB_ID" in os.environ else {}
            write_state(work_dir, "running", host=socket.gethostname(), pid=proc.pid, started=now(), **slurm)
        code = proc.wait()
    if record and rank == 0:
        write_state(work_dir, "done" if code == 0 else "failed", returncode=code, pid=None)
    return code


def log_tail(work_dir: Path, lines: int = 15) -> str:
    """The last lines of a job's log, to show why it failed."""
    try:
        return "\n".join((Path(work_dir) / LOG_FILE).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


