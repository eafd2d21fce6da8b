"""A run's output folder: refused when it cannot be one, locked while a run writes it, removed after an early error."""
from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from transfer.errors import UserError
from transfer.fileio import pid_alive

LOCK_FILE = ".transfer.lock"


def check_output_path(path: Path, flag: str) -> None:
    """Refuse an output folder that exists as a file, or below a file, before any work."""
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} exists and is not a folder")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{flag} {path}: {parent} is a file, not a folder")
            break


def _read_lock(path: Path) -> tuple[int | None, str, str]:
    """(pid, host, since) written in a lock file; pid None when unreadable."""
    try:
        pid, host, since = (path.read_text().split("\n") + ["", "", ""])[:3]
        return int(pid), host, since
    except (OSError, ValueError):
        return None, "", ""


def acquire_lock(folder: Path) -> Path:
    """Create folder/LOCK_FILE holding this pid, or refuse while a live run holds it (a dead holder's is taken over)."""
    lock = folder / LOCK_FILE
    text = f"{os.getpid()}\n{socket.gethostname()}\n{time.strftime('%Y-%m-%dT%H:%M:%S%z')}"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            pid, host, since = _read_lock(lock)
            if pid is not None and host == socket.gethostname() and not pid_alive(pid):
                lock.unlink(missing_ok=True)  # stale: its run died without releasing it
                continue
            if pid is None and time.time() - lock.stat().st_mtime > 60:
                lock.unlink(missing_ok=True)  # unreadable and old: a crash while writing it
                continue
            holder = f"pid {pid} on {host}, since {since}" if pid is not None else "a run being set up"
            raise UserError(f"--work-dir {folder} is in use by another run ({holder}); wait for it to finish "
                            f"or pass another --work-dir (remove {lock} if that run is gone)") from None
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return lock
    raise UserError(f"--work-dir {folder}: could not take {lock}")


class Claim:
    """The state of a claimed work dir: whether the run got past its set-up (after that, its files stay)."""

    def __init__(self) -> None:
        self.running = False

    def started(self) -> None:
        """The first trial starts: from now on an error leaves the folder (checkpoints to resume from)."""
        self.running = True


@contextmanager
def claim_work_dir(folder: Path, writer: bool = True) -> Iterator[Claim]:
    """Create and lock `folder` for one run (the writer process only); release the lock on exit.

    An error before `Claim.started()` removes the folder again if this run created it, so that a
    refused run leaves nothing behind.
    """
    claim = Claim()
    if not writer:
        yield claim
        return
    created = None  # the topmost folder this run creates
    if not folder.exists():
        created = folder
        while not created.parent.exists():
            created = created.parent
    folder.mkdir(parents=True, exist_ok=True)
    lock = acquire_lock(folder)
    try:
        yield claim
    except BaseException:
        if created is not None and not claim.running:
            lock.unlink(missing_ok=True)
            shutil.rmtree(created, ignore_errors=True)
        raise
    finally:
        lock.unlink(missing_ok=True)


CHECKPOINT_SUFFIXES = (".pth", ".pkl", ".pt")


def drop_checkpoints(work_dir: Path) -> None:
    """Delete a finished run's checkpoints (and converted weights) once its metrics.json exists; its metrics and
    logs stay. For runs nobody resumes: the demo's fine-tuning, the suite's preflight (an R50 with optimizer
    state per protocol and iteration, 2.5 GB for the four protocols)."""
    if not (work_dir / "metrics.json").is_file():
        return
    for path in list(work_dir.rglob("*")):
        if path.is_file() and (path.suffix in CHECKPOINT_SUFFIXES or path.name == "last_checkpoint"):
            path.unlink()
