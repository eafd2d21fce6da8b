"""SSA against its baselines at the same budget, computed from a measured table (never asserted).

Rule: every row whose method is `ssa` (a distilled student, an EMA-teacher run) is
compared with every `seed` and `moco_v2` row of the same table, on each quantity
of `columns.QUANTITIES` that both rows measured; a difference is SSA minus the
baseline in points, rounded to 0.1 (a rounded 0.0 is a tie). The SSA / MoCo v2 cost
is MoCo v2's pretraining images/s divided by SSA's: SSA's time per image in units
of MoCo v2's (the target is at most 1.3x).
"""
from __future__ import annotations

from dataclasses import dataclass

from transfer.report.columns import QUANTITIES, Quantity, fmt_delta, fmt_percent, is_number
from transfer.report.runs import MethodRow, TransferTable

SSA_METHOD = "ssa"
BASELINE_METHODS = ("seed", "moco_v2")
COST_TARGET = 1.3  # SSA may cost at most 1.3x MoCo v2's pretraining time per image


@dataclass(frozen=True)
class Term:
    """SSA minus a baseline on one quantity, with each side's trial std where it has one."""

    quantity: Quantity
    delta: float
    ssa_std: float | None
    baseline_std: float | None


def value_of(row: MethodRow, quantity: Quantity) -> tuple[float | None, float | None]:
    """A row's (value, std) for a quantity; (None, None) when not measured."""
    result = row.results.get(quantity.task)
    if result is None or not is_number(result.metrics.get(quantity.metric)):
        return None, None
    std = result.metrics.get(f"{quantity.metric}_std")
    return float(result.metrics[quantity.metric]), float(std) if is_number(std) else None


def compare(ssa: MethodRow, baseline: MethodRow) -> list[Term]:
    """SSA minus the baseline on every quantity both rows measured."""
    terms = []
    for quantity in QUANTITIES:
        (a, a_std), (b, b_std) = value_of(ssa, quantity), value_of(baseline, quantity)
        if a is not None and b is not None:
            terms.append(Term(quantity, a - b, a_std, b_std))
    return terms


def budget_differences(a: MethodRow, b: MethodRow) -> list[str]:
    """The pretraining budget keys on which two rows differ, as `key a vs b`."""
    return [f"{key} {a.budget.get(key)} vs {b.budget.get(key)}"
            for key in sorted(set(a.budget) | set(b.budget)) if a.budget.get(key) != b.budget.get(key)]


def _term_text(term: Term) -> str:
    """`VOC AP +1.2`, with the trial std of each side when there is one."""
    text = f"{term.quantity.label} {fmt_delta(term.delta)}"
    if term.ssa_std is not None or term.baseline_std is not None:
        stds = [fmt_percent(s) if s is not None else "—" for s in (term.ssa_std, term.baseline_std)]
        text += f" (trial std {stds[0]} vs {stds[1]})"
    return text


def comparison_lines(table: TransferTable) -> list[str]:
    """Markdown bullets: per SSA row and baseline row, the signed differences and a tally."""
    ssa_rows = [r for r in table.rows if r.method == SSA_METHOD]
    baselines = [r for r in table.rows if r.method in BASELINE_METHODS]
    if not ssa_rows or not baselines:
        missing = "`ssa` row" if not ssa_rows else "`seed` or `moco_v2` row"
        return [f"- No comparison: this table has no {missing}."]
    lines = []
    for ssa in ssa_rows:
        for baseline in baselines:
            terms = compare(ssa, baseline)
            head = f"- {ssa.label} vs {baseline.label}"
            if not terms:
                lines.append(f"{head}: no benchmark measured for both.")
                continue
            ahead = sum(round(t.delta, 1) > 0 for t in terms)
            behind = sum(round(t.delta, 1) < 0 for t in terms)
            tally = f"SSA ahead on {ahead}, behind on {behind}, tied on {len(terms) - ahead - behind} of {len(terms)}"
            budget = budget_differences(ssa, baseline)
            same = f" Not the same budget: {'; '.join(budget)}." if budget else ""
            lines.append(f"{head}: {', '.join(_term_text(t) for t in terms)}. {tally}.{same}")
    return lines


def cost_ratio(ssa_images_per_s: float, moco_images_per_s: float) -> float:
    """SSA's pretraining time per image in units of MoCo v2's."""
    return moco_images_per_s / ssa_images_per_s


def cost_text(ratio: float) -> str:
    """`1.25x (target <= 1.3x: met)`."""
    verdict = "met" if ratio <= COST_TARGET else "not met"
    return f"{ratio:.2f}x (target ≤ {COST_TARGET}x: {verdict})"


def pretrain_cost_lines(table: TransferTable) -> list[str]:
    """The SSA / MoCo v2 cost from the index rows' pretraining images/s, one bullet per SSA row."""
    moco = next((r for r in table.rows if r.method == "moco_v2" and is_number((r.pretrain or {}).get("images_per_s"))),
                None)
    lines = []
    for ssa in table.rows:
        speed = (ssa.pretrain or {}).get("images_per_s")
        if ssa.method != SSA_METHOD or not is_number(speed) or moco is None or speed <= 0:
            continue
        moco_speed = moco.pretrain["images_per_s"]
        lines.append(f"- Pretraining cost, {ssa.label} vs {moco.label}: {speed:.1f} vs {moco_speed:.1f} images/s, "
                     f"{cost_text(cost_ratio(speed, moco_speed))}.")
    return lines
