"""The published reference figures: the table in `shared/docs/paper.md`, and its data copy.

`parse_paper(path)` reads the paper's table into data; `benchmarks/reference.json`
holds the same data (written by `tools/make_benchmarks.py --update-reference`) for
checkouts without `shared/`. Reference rows are published figures, never ours.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from transfer.errors import UserError
from transfer.fileio import write_json
from transfer.report.columns import TASKS

REFERENCE_SCHEMA = 1
# Where reference.json says its figures came from (a path relative to the checkout's parent).
PAPER_SOURCE = "shared/docs/paper.md"

_NUM = r"(\d+(?:\.\d+)?)"
_DASHES = {"", "—", "–", "-", "n/a"}
# How each task's cell is written in the paper: which metrics, in which order.
_CELL_PATTERNS = {
    "linear": [(rf"^{_NUM}$", ("top1",))],
    "voc": [(rf"^{_NUM}$", ("AP",)), (rf"^{_NUM}\s*\(\s*{_NUM}\s*/\s*{_NUM}\s*\)$", ("AP", "AP50", "AP75"))],
    "coco": [(rf"^{_NUM}$", ("bbox_AP",)), (rf"^{_NUM}\s*/\s*{_NUM}$", ("bbox_AP", "segm_AP"))],
    "cityscapes": [(rf"^{_NUM}$", ("mIoU",))],
}
# A header names its task by one of these words (case-insensitive).
_TASK_WORDS = {"linear": "linear", "voc": "voc", "coco": "coco", "cityscapes": "cityscapes"}


def _split_row(line: str) -> list[str]:
    """The cells of a markdown table line `| a | b |`."""
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _task_of(header: str, path: Path) -> str:
    """Which task a column header of the paper's table is about."""
    found = [task for task, word in _TASK_WORDS.items() if word in header.lower()]
    if len(found) != 1:
        raise UserError(f"{path}: cannot tell which benchmark the column '{header}' is "
                        f"(expected one of the words {', '.join(_TASK_WORDS.values())})")
    return found[0]


def _parse_cell(cell: str, task: str, where: str) -> dict[str, float]:
    """A cell of the paper's table -> {metric: value}; {} for a dash."""
    if cell in _DASHES:
        return {}
    for pattern, names in _CELL_PATTERNS[task]:
        match = re.match(pattern, cell)
        if match:
            return {name: float(v) for name, v in zip(names, match.groups())}
    raise UserError(f"{where}: cannot read the cell '{cell}' as a {task} result")


def parse_paper(path: str | Path) -> dict[str, Any]:
    """The published table of paper.md as data: title, setting, columns, rows of metrics, sources."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise UserError(f"{path}: cannot read the paper ({e.strerror})") from e
    start = next((i for i, line in enumerate(lines)
                  if line.lstrip().startswith("|") and _split_row(line)[0].lower() == "method"), None)
    if start is None or start + 1 >= len(lines) or not re.match(r"^\s*\|[\s:|-]+\|\s*$", lines[start + 1]):
        raise UserError(f"{path}: no table whose first column is 'method' (the paper's reference table)")
    end = start + 2
    while end < len(lines) and lines[end].lstrip().startswith("|"):
        end += 1

    heading_at = next((i for i in range(start - 1, -1, -1) if lines[i].startswith("#")), None)
    title = lines[heading_at].lstrip("#").strip() if heading_at is not None else ""
    setting = " ".join(line.strip() for line in lines[(heading_at or -1) + 1:start] if line.strip())
    sources = []
    for line in lines[end:]:
        if sources and not line.strip():
            break
        if sources or line.strip().startswith("Sources:"):
            sources.append(line.strip())
        elif line.strip():
            break

    header = _split_row(lines[start])
    columns = [{"task": _task_of(h, path), "title": h} for h in header[1:]]
    rows = []
    for number, line in enumerate(lines[start + 2:end], start=start + 3):
        cells = _split_row(line)
        if len(cells) != len(header):
            raise UserError(f"{path}:{number}: {len(cells)} cells, the header has {len(header)}")
        metrics = {}
        for column, cell in zip(columns, cells[1:]):
            values = _parse_cell(cell, column["task"], f"{path}:{number}, column '{column['title']}'")
            if values:
                metrics[column["task"]] = values
        rows.append({"method": cells[0], "metrics": metrics})
    if not rows:
        raise UserError(f"{path}: the reference table has no rows")
    return {"schema": REFERENCE_SCHEMA, "published": True, "source": PAPER_SOURCE, "title": title, "setting": setting,
            "columns": columns, "rows": rows, "sources": " ".join(sources)}


def load_reference_json(path: str | Path) -> dict[str, Any]:
    """Read benchmarks/reference.json, checking its schema and shape."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise UserError(f"{path}: cannot read the reference figures ({e.strerror})") from e
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e.msg}, line {e.lineno}); rebuild it with "
                        f"tools/make_benchmarks.py --update-reference") from e
    if not isinstance(data, dict) or data.get("schema") != REFERENCE_SCHEMA:
        raise UserError(f"{path}: not a reference file of schema {REFERENCE_SCHEMA}; rebuild it with "
                        f"tools/make_benchmarks.py --update-reference")
    columns, rows = data.get("columns"), data.get("rows")
    if (not isinstance(columns, list) or not isinstance(rows, list)
            or any(not isinstance(c, dict) or c.get("task") not in TASKS for c in columns)
            or any(not isinstance(r, dict) or not isinstance(r.get("method"), str)
                   or not isinstance(r.get("metrics"), dict) for r in rows)):
        raise UserError(f"{path}: malformed 'columns' or 'rows'; rebuild it with "
                        f"tools/make_benchmarks.py --update-reference")
    return data


def write_reference_json(reference: dict[str, Any], path: str | Path) -> Path:
    """Write the reference figures as data (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, reference)
    return path


def resolve_reference(paper: Path | None, reference_json: Path, paper_required: bool,
                      warn_stale: bool = True) -> tuple[dict[str, Any], str]:
    """The reference figures and where they were read from: paper.md when present, else reference.json.

    `paper_required` (the paper path was given explicitly, or --update-reference)
    makes a missing paper.md an error instead of a fallback; `warn_stale` warns
    when reference.json no longer matches paper.md.
    """
    if paper is not None and paper.is_file():
        reference = parse_paper(paper)
        if reference_json.is_file() and warn_stale:
            try:
                stale = load_reference_json(reference_json) != reference
            except UserError:
                stale = True
            if stale:
                print(f"warning: {reference_json} differs from {paper}; refresh it with "
                      f"tools/make_benchmarks.py --update-reference", file=sys.stderr)
        return reference, str(paper)
    if paper_required:
        raise UserError(f"{paper}: the paper is not there; pass --paper PATH to shared/docs/paper.md")
    if reference_json.is_file():
        return load_reference_json(reference_json), str(reference_json)
    raise UserError(f"neither the paper ({paper}) nor its data copy ({reference_json}) is there; pass "
                    f"--paper PATH to shared/docs/paper.md")
