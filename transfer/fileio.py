"""Writing files so that nothing half-written is ever left behind.

A write goes to a hidden temporary file beside its target, named
`.<target>.<host>.<pid>.<random><suffix>`, and is renamed onto the target when
complete. A writer killed outright (`kill -9`, out of memory) cannot delete its
temporary file, so every write first removes the ones of writers that are gone:
same host and a process id that no longer runs, or untouched for an hour.
Outputs get the usual mode (0666 less the umask, 0644 by default), not the 0600
of a temporary file.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0]) or "host"
# Our temporary names; the random part is mkstemp's (8 characters of [a-z0-9_]).
_TEMPORARY = re.compile(r"^\.(?P<target>.+)\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[a-z0-9_]{8}(?P<suffix>\.tmp.*)$")
# Names written before the host and pid were part of them: removed by age only.
_OLD_TEMPORARY = re.compile(r"^\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp(\.\w+)?$")
STALE_AFTER_S = 3600.0  # a writer touches its file while it writes; an hour without a write means it is gone


def _umask() -> int:
    """The process umask (read without changing it where /proc allows)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a new file gets under the current umask (0644 under the usual 022)."""
    return 0o666 & ~_umask()


def folder_mode() -> int:
    """The mode a new folder gets under the current umask (0755 under the usual 022)."""
    return 0o777 & ~_umask()


def pid_alive(pid: Any) -> bool:
    """Whether a process of this id (an int) runs on this host; the one liveness check of the project."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that interrupted writes left in `folder`; returns what was removed."""
    removed = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith("."):
            continue
        match = _TEMPORARY.match(entry.name)
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
            if not (is_dir or entry.is_file(follow_symlinks=False)):
                continue
            # a folder's mtime changes only when its own entries do: give folders a day
            old = now - entry.stat(follow_symlinks=False).st_mtime > STALE_AFTER_S * (24 if is_dir else 1)
            if match:
                pid = int(match["pid"])
                stale = old or (match["host"] == _HOST and pid != os.getpid() and not pid_alive(pid))
            else:
                stale = old and not is_dir and _OLD_TEMPORARY.match(entry.name) is not None
            if stale and is_dir:
                shutil.rmtree(entry.path)
            elif stale:
                os.unlink(entry.path)
            if stale:
                removed.append(Path(entry.path))
        except OSError:  # another process removed it first, or we may not: leave it
            continue
    return removed


def temporary_folder_beside(path: str | os.PathLike) -> Path:
    """A new hidden folder beside `path` (with the usual mode) to fill and rename onto `path`.

    The caller removes it on error; folders of killed writers are removed here, as in `atomic_path`.
    """
    path = Path(path)
    remove_stale_temporaries(path.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{_HOST}.{os.getpid()}.", suffix=".tmp", dir=path.parent))
    tmp.chmod(folder_mode())  # mkdtemp makes it 0700
    return tmp


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside `path` to fill; on success it replaces `path` whole, and it is removed
    in any case (the folder counterpart of `atomic_path`)."""
    path = Path(path)
    tmp = temporary_folder_beside(path)
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it onto `path`, on error delete it.

    `suffix` ends the temporary name (e.g. `.tmp.pkl` for readers that choose by extension).
    Temporary files of earlier, killed writes in the same folder are removed first.
    """
    path = Path(path)
    remove_stale_temporaries(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_HOST}.{os.getpid()}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with contextlib.suppress(OSError):  # mkstemp made it 0600; the output gets the usual mode
            os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text`, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as indented JSON, atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """The hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
