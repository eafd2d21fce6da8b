"""benchmarks.md as text: published reference figures, measured tables, performance, what was not measured."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from transfer.report.columns import DASH, MEASURED_COLUMNS, NOT_RUN, PAPER_COLUMNS, TASKS, fmt_delta, fmt_percent
from transfer.report.compare import comparison_lines, cost_text, pretrain_cost_lines
from transfer.report.performance import EXPECTED_BENCHMARKS, BenchmarkFile, context_text, cost_pairs, fmt_number
from transfer.report.runs import MethodRow, TransferTable, describe_machine

TASK_NAMES = {"linear": "linear classification", "voc": "VOC detection", "coco": "COCO detection/segmentation",
              "cityscapes": "Cityscapes segmentation"}
_CELL_OF_TASK = {c.task: c.cell for c in PAPER_COLUMNS}


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown table; `|` inside cells is escaped."""
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"
    return [line(header), "|" + "---|" * len(header)] + [line(r) for r in rows]


def shown_path(path: Path, base: Path) -> str:
    """`path` relative to `base` when it lies below it, else as given."""
    try:
        return Path(os.path.relpath(path.resolve(), base.resolve())).as_posix() \
            if path.resolve().is_relative_to(base.resolve()) else str(path)
    except ValueError:
        return str(path)


def reference_section(reference: dict[str, Any], read_from: str) -> list[str]:
    """Section 1: the paper's table as published, never mixed with measured rows."""
    columns = reference["columns"]
    rows = [[r["method"]] + [_CELL_OF_TASK[c["task"]](r["metrics"].get(c["task"], {})) for c in columns]
            for r in reference["rows"]]
    lines = ["## 1. Published reference figures (not measured by this project)", "",
             f"Published figures, copied from the paper and its peers' READMEs; none of them was measured here. "
             f"Read from `{read_from}`.", ""]
    if reference.get("setting"):
        lines += [reference["setting"], ""]
    lines += _table(["method (published)"] + [c["title"] for c in columns], rows)
    if reference.get("sources"):
        lines += ["", reference["sources"]]
    return lines + [""]


def _teacher_text(row: MethodRow, table: TransferTable) -> str:
    """The teacher column: another row's label, the student's own EMA, or none."""
    if row.teacher is None:
        return DASH
    if row.teacher.lower() == "ema":
        return "EMA of the student"
    other = table.row(row.teacher)
    return other.label if other is not None else row.teacher


def _pretrain_text(row: MethodRow) -> str:
    """The pretraining column: epochs x batch, wall time and throughput; `none` for random init."""
    if row.pretrain is None:
        return "none"
    parts = []
    if "epochs" in row.budget:
        parts.append(f"{row.budget['epochs']} ep")
    if "batch_size" in row.budget:
        parts.append(f"batch {row.budget['batch_size']}")
    if row.pretrain.get("wall_time_s") is not None:
        parts.append(duration_text(row.pretrain["wall_time_s"]))
    if row.pretrain.get("images_per_s") is not None:
        parts.append(f"{row.pretrain['images_per_s']:.1f} img/s")
    return ", ".join(parts) or "yes"


def duration_text(seconds: float) -> str:
    """`90 s`, `12.5 min`, `100.0 h`."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def budget_text(budget: dict[str, Any]) -> str:
    """`resnet18, 5 epochs, batch 64, 64 px, 2000 images`."""
    known = {"arch": "{}", "epochs": "{} epochs", "batch_size": "batch {}", "image_size": "{} px",
             "images": "{} images"}
    parts = [fmt.format(budget[k]) for k, fmt in known.items() if k in budget]
    parts += [f"{k}={v}" for k, v in budget.items() if k not in known]
    return ", ".join(parts) or "not stated"


def _run_lines(table: TransferTable) -> list[str]:
    """Where each measured cell came from: file, backend, iterations, trials, machine, date, command."""
    lines = []
    for row in table.rows:
        for task in TASKS:
            result = row.results.get(task)
            if result is None:
                continue
            facts = [f"`{shown_path(result.path, table.path.parent)}`", result.backend or "backend ?",
                     f"{result.iterations} iterations" if result.iterations else None,
                     f"{result.n_trials} trials" if result.n_trials > 1 else None,
                     describe_machine(result.machine), result.date or "date ?",
                     f"commit {result.git_commit[:12]}" if result.git_commit else None]
            command = f"; command: `{result.command}`" if result.command else ""
            lines.append(f"- {row.label}, {task}: {', '.join(f for f in facts if f)}{command}")
    return lines


def _machine_text(table: TransferTable) -> str:
    """The index's machine, or else the machines its metrics files name."""
    if table.machine:
        return describe_machine(table.machine)
    labels = sorted({describe_machine(r.machine) for row in table.rows for r in row.results.values()})
    return "; ".join(labels) or "not recorded"


def table_section(table: TransferTable, out_dir: Path) -> list[str]:
    """One measured table: rows of methods, the paper's columns, provenance and the computed comparison."""
    rows = []
    for row in table.rows:
        cells = [row.label, _teacher_text(row, table), _pretrain_text(row)]
        for column in MEASURED_COLUMNS:
            result = row.results.get(column.task)
            text = column.cell(result.metrics) if result is not None else NOT_RUN
            link = result is not None and table.link_cells
            cells.append(f"[{text}]({shown_path(result.path, out_dir)})" if link else text)
        rows.append(cells)
    lines = [f"### {table.name}", ""]
    if table.procedural:
        lines += ["Procedural data: these numbers come from the small generated datasets and short schedules of "
                  "this project, to compare the methods with each other at one budget. They are not comparable "
                  "with the published figures of section 1.", ""]
    elif table.data:
        lines += [f"Data: {table.data}.", ""]
    lines += _table(["method", "teacher", "pretraining"] + [c.title for c in MEASURED_COLUMNS], rows)
    trials = sorted({(t, r.results[t].n_trials) for r in table.rows for t in r.results if r.results[t].n_trials > 1})
    lines += ["", f"- Index: `{shown_path(table.path, out_dir)}`",
              f"- Command: `{table.command}`" if table.command else "- Command: not recorded",
              f"- Machine: {_machine_text(table)}",
              f"- Date: {table.date or 'not recorded'}",
              f"- Pretraining budget: {budget_text(table.budget)}" +
              (" (every pretrained row)" if all(r.budget == table.budget for r in table.rows)
               else " (rows with their own budget show it in the pretraining column)")]
    if trials:
        lines.append("- `a ± s`: mean and std over trials (" +
                     ", ".join(f"{task}: {n} trials" for task, n in trials) + "; the demo's trials are seeds)")
    lines += chance_lines(table)
    lines += ["", "SSA against the baselines (computed from the rows above: SSA minus baseline, in points):", ""]
    lines += comparison_lines(table) + pretrain_cost_lines(table)
    lines += ["", "<details><summary>Runs behind this table</summary>", ""] + _run_lines(table) + ["", "</details>", ""]
    return lines


def chance_lines(table: TransferTable) -> list[str]:
    """The chance level of each column, then each row's margin over random init (when the index has them)."""
    lines = []
    if table.chance:
        levels = [f"{task} {metric} {fmt_percent(value)}" for task, figures in table.chance.items()
                  for metric, value in figures.items()]
        lines.append("- Chance level: " + ", ".join(levels) + " (top-1: a uniform guess; AP: a detector that "
                     "learned nothing; mIoU: the most frequent class everywhere)")
    quantities = table.separation.get("quantities") or []
    if quantities:
        lines += ["", "Margin over random init, in points (it counts when it reaches the target and is more than "
                  "twice random init's spread over its seeds):", ""]
        header = ["quantity", "chance", "random init ± spread", "target"] + \
            [_label_of(table, cell["row"]) for cell in quantities[0]["rows"]]
        body = []
        for q in quantities:
            cells = {c["row"]: f"{fmt_delta(c['margin'])}" + (" ✓" if c["meets"] else " ✗") for c in q["rows"]}
            body.append([q["label"], fmt_percent(q["chance"]), f"{q['random']:.1f} ± {q['spread']:.1f}",
                         f"+{q['needed']:.1f}"] + [cells.get(c["row"], DASH) for c in quantities[0]["rows"]])
        lines += _table(header, body)
        said: dict[str, str] = {}  # one reason a task: VOC's two AP50 columns share theirs
        for q in quantities:
            if q.get("short_reason") and q["short_reason"] not in said.values():
                said[q["label"]] = q["short_reason"]
        short = [f"- {label}: {reason}." for label, reason in said.items()]
        lines += ["", "Why a column falls short of the bar (measured):", "", *short] if short else []
    return lines


def _label_of(table: TransferTable, name: str) -> str:
    """A row's label from its index name."""
    row = table.row(name)
    return row.label if row is not None else name


def measured_section(tables: list[TransferTable], out_dir: Path, plot_link: str | None) -> list[str]:
    """Section 2: one table per results index, then the comparison plot."""
    lines = ["## 2. Measured transfer results", ""]
    if not tables:
        return lines + ["No transfer runs were given: pass `--index demo_out/results.json` "
                        "(written by `make demo`) or a results index of your own runs.", ""]
    for table in tables:
        lines += table_section(table, out_dir)
    if plot_link:
        lines += [f"![Methods compared on each measured benchmark]({plot_link})", ""]
    return lines


def performance_section(benchmarks: list[BenchmarkFile], bench_dir: str) -> list[str]:
    """Section 3: every benchmark file's figures, then the SSA / MoCo v2 cost."""
    lines = ["## 3. Performance figures", ""]
    if not benchmarks:
        lines += [f"No benchmark results in `{bench_dir}` (run the scripts in `benchmarks/`).", ""]
    for bench in benchmarks:
        lines += [f"### `{bench.name}`", "", f"- Machine: {bench.machine_label}",
                  f"- Date: {bench.date or 'not recorded'}",
                  f"- Command: `{bench.command}`" if bench.command else "- Command: not recorded"]
        if bench.git_commit:
            lines.append(f"- Commit: {bench.git_commit[:12]}")
        if bench.notes:
            lines.append(f"- Notes: {bench.notes}")
        lines += [""] + _table(["figure", "value", "unit", "context"],
                               [[f["label"], fmt_number(f["value"]), f.get("unit", ""), context_text(f)]
                                for f in bench.figures]) + [""]
    pairs = cost_pairs(benchmarks)
    lines += ["### SSA / MoCo v2 pretraining cost", "",
              "Computed from the `pretrain*` figures above: MoCo v2's images/s divided by SSA's, i.e. SSA's "
              "pretraining time per image in units of MoCo v2's, for figures whose labels name `ssa` or "
              "`moco_v2` / `MoCo v2` and whose setting (batch, arch, device, ...) is equal.", ""]
    for p in pairs:
        context = f" ({context_text(p.ssa)})" if context_text(p.ssa) else ""
        lines.append(f"- `{p.bench}`: {p.ssa['label']} {fmt_number(p.ssa['value'])} vs {p.moco['label']} "
                     f"{fmt_number(p.moco['value'])} images/s{context}: {cost_text(p.ratio)}")
    if not pairs:
        lines.append("Not computed: no `pretrain*` benchmark holds images/s figures of both SSA and MoCo v2.")
    return lines + [""]


def not_measured_section(tables: list[TransferTable], benchmarks: list[BenchmarkFile]) -> list[str]:
    """Section 4: what these tables do not show, computed from what is missing."""
    items = []
    if not tables:
        items.append("Transfer results: no results index was given, so no method was measured.")
    for table in tables:
        for task in TASKS:
            missing = [r.label for r in table.rows if task not in r.results]
            if len(missing) == len(table.rows):
                items.append(f"{table.name}: {TASK_NAMES[task]} was not run for any method.")
            elif missing:
                items.append(f"{table.name}: {TASK_NAMES[task]} was not run for {', '.join(missing)}.")
    runs = [r for t in tables for row in t.rows for r in row.results.values()]
    if runs and not any(isinstance(r.machine, dict) and r.machine.get("gpus") for r in runs):
        items.append("No transfer run used a GPU: every measured row ran on CPU.")
    if all(t.procedural for t in tables):
        items.append("The published protocols at full scale (ImageNet-1k pretraining of a ResNet-50, VOC07+12, "
                     "COCO 2017, Cityscapes with the schedules of section 1) were not run: no figure of section 1 "
                     "is reproduced here.")
    names = {b.name for b in benchmarks}
    absent = [n for n in EXPECTED_BENCHMARKS if n not in names]
    if absent:
        items.append(f"Performance: no figures from {', '.join(f'`{n}`' for n in absent)}.")
    if not any(b.gpus for b in benchmarks):
        items.append("No performance figure was measured on a GPU.")
    if not cost_pairs(benchmarks):
        items.append("The SSA / MoCo v2 pretraining cost was not measured by a benchmark script.")
    return ["## 4. Not measured", ""] + [f"- {item}" for item in items or ["Nothing left out."]] + [""]


def render_markdown(*, command: str, reference: dict[str, Any], reference_from: str, tables: list[TransferTable],
                    benchmarks: list[BenchmarkFile], bench_dir: str, out_dir: Path, plot_link: str | None) -> str:
    """The whole of benchmarks.md."""
    lines = [f"> Generated by `{command}` from the runs' metrics.json files and `benchmarks/results/*.json`. "
             "Do not edit by hand: rerun the command.", "",
             "# Benchmarks", ""]
    lines += reference_section(reference, reference_from)
    lines += measured_section(tables, out_dir, plot_link)
    lines += performance_section(benchmarks, bench_dir)
    lines += not_measured_section(tables, benchmarks)
    return "\n".join(lines).rstrip() + "\n"
