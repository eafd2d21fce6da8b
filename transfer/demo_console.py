"""The demo's console: one line per stage and a progress bar with ETA; each stage's own output goes to its log file.

The engines (mmengine, detectron2, the pretraining trainer) print a lot: config
dumps, a line per logging interval. The demo sends a stage's stdout and stderr
(the file descriptors, so C-level and subprocess output too) to `LOG` in the
stage's work dir, and keeps the terminal for its own lines and a tqdm bar.
`verbose` leaves the engines' output on the terminal instead.
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

LOG = "console.log"  # a stage's captured stdout and stderr, in its work dir


@contextmanager
def redirect_output(log: Path) -> Iterator[None]:
    """Send file descriptors 1 and 2 (C and subprocess output) and Python's sys.stdout/stderr to `log`, appending.

    Both levels: sys.stdout is not always fd 1 (pytest's capture, an IDE), and a
    logging handler made before the stage holds the old sys.stderr, whose fd is 2.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        with open(log, "a", buffering=1) as sink:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            try:
                with redirect_stdout(sink), redirect_stderr(sink):
                    yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                sink.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        os.close(saved[0])
        os.close(saved[1])


class Console:
    """Stage lines and a progress bar on the terminal, weighted by each stage's expected cost (for the ETA)."""

    def __init__(self, total_cost: float, verbose: bool = False, stream: TextIO | None = None):
        self.verbose = verbose
        # a private handle on the terminal's stderr, so that redirecting fd 2 during a stage leaves the bar visible
        self.stream = stream or os.fdopen(os.dup(2), "w", buffering=1)
        self.bar = tqdm(total=round(total_cost, 1), file=self.stream, unit="", bar_format=(
            "{l_bar}{bar}| {percentage:3.0f}% [{elapsed}<{remaining}]"), dynamic_ncols=True, mininterval=1.0,
            disable=None)  # None: no bar when the terminal is not a tty (a log file, a test)
        self.start = time.perf_counter()
        self.times: dict[str, float] = {}

    def say(self, text: str) -> None:
        """One line above the bar."""
        self.bar.write(f"[demo] {text}", file=self.stream)

    @contextmanager
    def stage(self, name: str, cost: float, log: Path | None = None) -> Iterator[None]:
        """Run one stage: its output to `log` (unless verbose), then one line with its time; the bar advances."""
        self.bar.set_description_str(name)
        t0 = time.perf_counter()
        try:
            if log is None or self.verbose:
                yield
            else:
                with redirect_output(log):
                    yield
        except BaseException:
            if log is not None and not self.verbose:
                self.say(f"{name}: failed; its output is in {log}")
            raise
        self.times[name] = round(time.perf_counter() - t0, 1)
        self.bar.update(round(cost, 1))
        self.say(f"{name}: {self.times[name]:.1f} s (total {time.perf_counter() - self.start:.0f} s)")

    def close(self) -> None:
        """Remove the bar from the terminal and let go of it."""
        self.bar.close()
        self.stream.close()
