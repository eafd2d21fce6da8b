"""Performance figures of the benchmark scripts: `benchmarks/results/NAME.json`.

Each file is written by `transfer.results.write_benchmark`: {"schema": 1, "name",
"figures": [{"label", "value", "unit", ...context}], "notes", "command", "machine",
"machine_label", "git_commit", "date"}. Figures are shown as they are; the only
figure computed here is the SSA / MoCo v2 pretraining cost (rule in `cost_pairs`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transfer.errors import UserError
from transfer.report.compare import cost_ratio
from transfer.report.columns import is_number
from transfer.report.runs import describe_machine, read_record

# The benchmark scripts of the project; a name missing here is reported as not measured.
EXPECTED_BENCHMARKS = ("convert", "pretrain_cpu", "detection_cpu", "segmentation_cpu",
                       "pretrain_gpu", "detection_gpu", "segmentation_gpu")
_THROUGHPUT_UNIT = re.compile(r"^\s*(images?|img|imgs)\s*/\s*s(ec)?\s*$", re.IGNORECASE)
_SSA = re.compile(r"(?<![a-z0-9])ssa(?![a-z0-9])", re.IGNORECASE)
_MOCO = re.compile(r"moco[\s_-]?v2", re.IGNORECASE)
_FIGURE_KEYS = ("label", "value", "unit")


@dataclass
class BenchmarkFile:
    """One benchmark script's measured figures and where they were measured."""

    path: Path
    name: str
    figures: list[dict[str, Any]]
    notes: str | None
    command: str | None
    machine_label: str
    gpus: list[str]
    git_commit: str | None
    date: str | None


def load_benchmark(path: Path) -> BenchmarkFile:
    """Read and check one benchmarks/results/NAME.json."""
    record = read_record(path, "the benchmark file")
    figures = record.get("figures")
    if not isinstance(figures, list):
        raise UserError(f"{path}: 'figures' is missing or not a list")
    for number, fig in enumerate(figures, start=1):
        if not isinstance(fig, dict) or not isinstance(fig.get("label"), str) or not is_number(fig.get("value")):
            raise UserError(f"{path}: figure {number} needs a 'label' (text) and a 'value' (number)")
    machine = record.get("machine")
    gpus = list(machine.get("gpus") or []) if isinstance(machine, dict) else []
    return BenchmarkFile(path=path, name=str(record.get("name") or path.stem), figures=figures,
                         notes=record.get("notes"), command=record.get("command"),
                         machine_label=record.get("machine_label") or describe_machine(machine), gpus=gpus,
                         git_commit=record.get("git_commit"), date=record.get("date"))


def load_benchmarks(bench_dir: str | Path) -> list[BenchmarkFile]:
    """Every NAME.json under `bench_dir`, sorted by name; [] when the folder is absent."""
    bench_dir = Path(bench_dir)
    if not bench_dir.is_dir():
        return []
    return sorted((load_benchmark(p) for p in sorted(bench_dir.glob("*.json"))), key=lambda b: b.name)


def fmt_number(value: float) -> str:
    """A performance figure with sensible precision: 1234, 12.3, 1.23, 0.0123."""
    size = abs(value)
    if size >= 1000:
        return f"{value:,.0f}"
    if size >= 100:
        return f"{value:.1f}"
    if size >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def context_text(figure: dict[str, Any]) -> str:
    """The context keys of a figure (batch, image size, device, ...) as `key=value, ...`."""
    parts = []
    for key, value in figure.items():
        if key in _FIGURE_KEYS:
            continue
        if isinstance(value, (list, tuple)):  # sizes read 2048x1024, anything else a+b
            value = ("x" if all(is_number(v) for v in value) else "+").join(map(str, value))
        elif is_number(value) and isinstance(value, float):
            value = fmt_number(value)
        parts.append(f"{key}={value}")
    return ", ".join(parts)


@dataclass(frozen=True)
class CostPair:
    """An SSA and a MoCo v2 throughput figure measured in the same context, and SSA's relative cost."""

    bench: str
    ssa: dict[str, Any]
    moco: dict[str, Any]
    ratio: float


# Keys that describe the measurement itself, not its setting: `method=ssa`, `s_per_step`, `min_s_per_step`, ...
_MEASUREMENT_KEY = re.compile(r"^(method|repeats|(min_|max_)?\w*_per_\w*)$")


def _context_key(figure: dict[str, Any]) -> tuple:
    """The figure's setting (all keys but label, value, unit and the measurement's own), comparable between figures."""
    return tuple(sorted((k, repr(v)) for k, v in figure.items()
                        if k not in _FIGURE_KEYS and not _MEASUREMENT_KEY.match(k)))


def cost_pairs(benchmarks: list[BenchmarkFile]) -> list[CostPair]:
    """SSA / MoCo v2 pretraining cost ratios found in the `pretrain*` benchmark files.

    Rule: in a file whose name starts with `pretrain`, a figure in images/s (unit
    `images/s`, `img/s`) whose label names `ssa` as a word, or `moco_v2` / `MoCo v2`
    (not both), is a throughput of that method; each SSA figure is paired with each
    MoCo v2 figure of the same file whose setting (batch, arch, device, ...; not
    the method or the step-time statistics) is equal, and the ratio is MoCo v2 images/s / SSA images/s.
    """
    pairs = []
    for bench in benchmarks:
        if not bench.name.startswith("pretrain"):
            continue
        speeds = [f for f in bench.figures if _THROUGHPUT_UNIT.match(str(f.get("unit", ""))) and f["value"] > 0]
        ssa = [f for f in speeds if _SSA.search(f["label"]) and not _MOCO.search(f["label"])]
        moco = [f for f in speeds if _MOCO.search(f["label"]) and not _SSA.search(f["label"])]
        for s in ssa:
            for m in moco:
                if _context_key(s) == _context_key(m):
                    pairs.append(CostPair(bench.name, s, m, cost_ratio(s["value"], m["value"])))
    return pairs
