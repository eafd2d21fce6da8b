"""The published reference figures: `benchmarks/reference.json`, data in the repository.

It holds the paper's figures (from its abstract) and the published figures of its
peers, each row with the metrics of the columns it has, and where they come from
(`source`, `sources`). It is edited by hand, as data; the report only reads it.
Reference rows are published figures, never ours.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from transfer.errors import UserError
from transfer.report.columns import TASKS
from transfer.report.runs import read_record

REFERENCE_SCHEMA = 1


def load_reference_json(path: str | Path) -> dict[str, Any]:
    """Read benchmarks/reference.json, checking its schema and shape."""
    path = Path(path)
    data = read_record(path, "the reference file", schema=REFERENCE_SCHEMA)
    columns, rows = data.get("columns"), data.get("rows")
    if (not isinstance(columns, list) or not isinstance(rows, list)
            or any(not isinstance(c, dict) or c.get("task") not in TASKS for c in columns)
            or any(not isinstance(r, dict) or not isinstance(r.get("method"), str)
                   or not isinstance(r.get("metrics"), dict) for r in rows)):
        raise UserError(f"{path}: malformed 'columns' or 'rows' (each column needs a 'task' of "
                        f"{', '.join(TASKS)}; each row a 'method' and a 'metrics' mapping)")
    unknown = sorted({task for r in rows for task in r["metrics"]} - {c["task"] for c in columns})
    if unknown:
        raise UserError(f"{path}: rows have figures for {', '.join(unknown)}, which no column shows")
    return data
