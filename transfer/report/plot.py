"""The comparison plot of benchmarks.md: grouped bars of the methods on each measured benchmark."""
from __future__ import annotations

import io

from transfer.report.columns import QUANTITIES, Quantity
from transfer.report.compare import value_of
from transfer.report.runs import TransferTable

# Fixed colours per method, so the same method looks the same in every panel.
METHOD_COLORS = {"ssa": "#1f77b4", "seed": "#ff7f0e", "moco_v2": "#7f7f7f", "random": "#c7c7c7"}
_OTHER_COLORS = ("#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#d62728")


def measured_quantities(table: TransferTable) -> list[Quantity]:
    """The quantities that at least one row of the table measured, in table order."""
    return [q for q in QUANTITIES if any(value_of(r, q)[0] is not None for r in table.rows)]


def _row_colors(table: TransferTable) -> list[str]:
    """A colour per row: the method's own, then distinct others (ablations, a second SSA run)."""
    used, colors, others = set(), [], iter(_OTHER_COLORS * 4)
    for row in table.rows:
        color = METHOD_COLORS.get(row.method)
        if color is None or color in used:
            color = next(others)
        used.add(color)
        colors.append(color)
    return colors


def render_comparison_png(tables: list[TransferTable]) -> bytes | None:
    """The PNG bytes of one panel per table (bars: rows; groups: measured quantities); None if nothing measured."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = [(t, measured_quantities(t)) for t in tables]
    panels = [(t, qs) for t, qs in panels if qs]
    if not panels:
        return None
    most_rows = max(len(t.rows) for t, _ in panels)
    width = 2.8 + max(len(qs) for _, qs in panels) * (0.25 * most_rows + 0.4)  # inches: bars + legend
    fig = Figure(figsize=(min(max(width, 7.0), 16.0), 4.2 * len(panels)), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    for number, (table, quantities) in enumerate(panels, start=1):
        ax = fig.add_subplot(len(panels), 1, number)
        bar = 0.8 / len(table.rows)
        for i, (row, color) in enumerate(zip(table.rows, _row_colors(table))):
            points = [(j - 0.4 + bar * (i + 0.5), *value_of(row, q)) for j, q in enumerate(quantities)]
            points = [p for p in points if p[1] is not None]  # not run: no bar, the table says "not run"
            if not points:
                ax.bar([], [], color=color, label=row.label)
                continue
            xs, values, stds = zip(*points)
            ax.bar(xs, values, bar * 0.95, color=color, label=row.label)
            with_std = [(x, v, s) for x, v, s in points if s]
            if with_std:
                ax.errorbar([p[0] for p in with_std], [p[1] for p in with_std], yerr=[p[2] for p in with_std],
                            fmt="none", ecolor="black", elinewidth=1, capsize=2)
            for x, value, std in points:
                ax.annotate(f"{value:.1f}", (x, value + (std or 0.0)), xytext=(0, 2), textcoords="offset points",
                            ha="center", va="bottom", fontsize=7, rotation=90)
        labelled = False
        for j, q in enumerate(quantities):  # chance: a dashed line across the quantity's bars
            level = table.chance.get(q.task, {}).get(q.metric)
            if level is not None:
                ax.hlines(level, j - 0.45, j + 0.45, colors="black", linestyles="dashed", linewidth=1,
                          label=None if labelled else "chance")
                labelled = True
        ax.set_xticks(range(len(quantities)), [q.label for q in quantities])
        ax.set_ylabel("percent")
        top = max((value_of(r, q)[0] or 0.0) + (value_of(r, q)[1] or 0.0) for r in table.rows for q in quantities)
        ax.set_ylim(0, max(1.0, top) * 1.18)
        data = "procedural data" if table.procedural else (table.data or "measured")
        has_std = any(value_of(r, q)[1] for r in table.rows for q in quantities)
        ax.set_title(f"{table.name} ({data}; no bar = not run" + ("; error bars: std over trials)" if has_std else ")"),
                     fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()
