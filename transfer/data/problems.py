"""What a dataset check reports: each problem with its file, line and what was expected."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from transfer.errors import UserError


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset: where (file, optional line) and what was expected."""

    path: Path
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        return f"{where}: {self.message}"


SHOWN = 20  # problems an error message lists; DatasetError.problems keeps them all (tools/check_dataset.py prints them)


class DatasetError(UserError):
    """A dataset that is missing or malformed; the message lists the first SHOWN problems, `problems` all found."""

    def __init__(self, fmt: str, root: Path, problems: list[Problem], more: int = 0):
        self.fmt, self.root, self.problems, self.more = fmt, Path(root), list(problems), more
        if len(problems) == 1 and not more:  # one problem, one line
            super().__init__(f"{fmt} dataset at {root}: {problems[0]}")
            return
        lines = [f"{fmt} dataset at {root} has {len(problems) + more} problems:"]
        lines += [f"  {p}" for p in problems[:SHOWN]]
        if len(problems) + more > SHOWN:
            lines.append(f"  ... and {len(problems) + more - SHOWN} more (tools/check_dataset.py lists them all)")
        super().__init__("\n".join(lines))


class Problems:
    """Collects problems during a check, keeping the first `limit` of them (a bound on memory, not on the report)."""

    def __init__(self, fmt: str, root: Path, limit: int = 100_000):
        self.fmt, self.root, self.limit = fmt, Path(root), limit
        self.items: list[Problem] = []
        self.more = 0

    def add(self, path: Path | str, message: str, line: int | None = None) -> None:
        """Record one problem."""
        if len(self.items) < self.limit:
            self.items.append(Problem(Path(path), message, line))
        else:
            self.more += 1

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self) -> None:
        """Raise a DatasetError listing every recorded problem, if there is one."""
        if self.items:
            raise DatasetError(self.fmt, self.root, self.items, self.more)
