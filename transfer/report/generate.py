"""Build benchmarks.md (and its comparison plot) from measured runs: validate everything, then write."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transfer.fileio import atomic_path, write_json
from transfer.report.markdown import render_markdown, shown_path
from transfer.report.performance import load_benchmarks
from transfer.report.plot import render_comparison_png
from transfer.report.reference import load_reference_json
from transfer.report.runs import load_index
from transfer.results import command_line

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "benchmarks.md"
DEFAULT_PLOT = REPO / "benchmarks" / "comparison.png"
DEFAULT_BENCH_DIR = REPO / "benchmarks" / "results"
DEFAULT_REFERENCE = REPO / "benchmarks" / "reference.json"  # the published figures: the report's only source


def _write_bytes(path: Path, data: bytes) -> None:
    """Write a file atomically, making its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def make_benchmarks(index_paths: Sequence[str | os.PathLike] = (), *, bench_dir: str | os.PathLike = DEFAULT_BENCH_DIR,
                    out: str | os.PathLike = DEFAULT_OUT,
                    plot: str | os.PathLike = DEFAULT_PLOT, reference_json: str | os.PathLike = DEFAULT_REFERENCE,
                    command: str | None = None, appendix: Sequence[str] = ()) -> dict[str, Path]:
    """Write benchmarks.md and the comparison plot (when a table has numbers); return the paths written.

    Every input is read and checked before anything is written, so bad input (a
    UserError naming the file) leaves every output as it was. `appendix`: lines that end the document.
    """
    out, plot, bench_dir, reference_json = Path(out), Path(plot), Path(bench_dir), Path(reference_json)
    reference = load_reference_json(reference_json)
    read_from = shown_path(reference_json, out.parent)
    tables = [load_index(p) for p in index_paths]
    benchmarks = load_benchmarks(bench_dir)
    png = render_comparison_png(tables)
    plot_link = Path(os.path.relpath(plot.resolve(), out.resolve().parent)).as_posix() if png else None
    text = render_markdown(command=command or command_line(), reference=reference, reference_from=read_from,
                           tables=tables, benchmarks=benchmarks, bench_dir=shown_path(bench_dir, out.parent),
                           out_dir=out.parent, plot_link=plot_link)
    if appendix:
        text = text.rstrip("\n") + "\n" + "\n".join(appendix) + "\n"

    written = {}
    if png is not None:
        _write_bytes(plot, png)
        written["plot"] = plot
    _write_bytes(out, text.encode("utf-8"))
    written["markdown"] = out
    return written


def publish_index(path: str | os.PathLike, index: dict[str, Any], *, table: str | os.PathLike,
                  plot: str | os.PathLike, bench_dir: str | os.PathLike = DEFAULT_BENCH_DIR,
                  appendix: Sequence[str] = ()) -> dict[str, Path]:
    """Write a results index (`runs.new_index`) and the benchmarks.md and plot made from it; return the paths."""
    write_json(path, index)
    return make_benchmarks([path], out=table, plot=plot, bench_dir=bench_dir, appendix=appendix,
                           command=f"tools/make_benchmarks.py --index {path}")
