"""The benchmark columns of the paper's table, and how a cell of each is written.

One definition serves the published reference rows and the measured rows, so the
two tables read alike: a cell is made from a task's metrics dict (percent) in the
names `transfer.results.write_metrics` uses (`top1`, `AP`, `bbox_AP`, `mIoU`, ...).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from transfer.results import is_number

DASH = "—"
NOT_RUN = "not run"

# The tasks of tools/run_transfer.sh, in the paper's column order.
TASKS = ("linear", "voc", "coco", "cityscapes")  # of `transfer.tasks.TASKS`, those the paper's table has

# The metric a task's metrics.json must hold for its row to be shown (one of them).
REQUIRED_METRICS = {"linear": ("top1", "knn_top1"), "voc": ("AP",), "coco": ("bbox_AP",), "cityscapes": ("mIoU",)}


@dataclass(frozen=True)
class Quantity:
    """One number compared across methods (a bar of the plot, a term of the SSA comparison)."""

    task: str
    metric: str
    label: str


# Every quantity compared between methods, in table order.
QUANTITIES = (
    Quantity("linear", "top1", "linear top-1"),
    Quantity("linear", "knn_top1", "kNN top-1"),
    Quantity("voc", "AP", "VOC AP"),
    Quantity("coco", "bbox_AP", "COCO box AP"),
    Quantity("coco", "segm_AP", "COCO mask AP"),
    Quantity("cityscapes", "mIoU", "Cityscapes mIoU"),
)


def fmt_percent(value: float) -> str:
    """A percent figure to one decimal, as the paper writes it."""
    return "nan" if math.isnan(value) else f"{value:.1f}"


def fmt_delta(delta: float) -> str:
    """A signed difference in points to one decimal: `+1.2`, `-0.3`, `+0.0`."""
    rounded = round(delta, 1)
    return f"{rounded:+.1f}".replace("-0.0", "+0.0")


def metric_text(metrics: dict[str, Any], name: str, with_std: bool = True) -> str:
    """`57.6`, or `57.6 ± 0.3` when the metrics hold `<name>_std` (several trials); `—` when absent."""
    value = metrics.get(name)
    if not is_number(value):
        return DASH
    text = fmt_percent(value)
    std = metrics.get(f"{name}_std")
    if with_std and is_number(std):
        text += f" ± {fmt_percent(std)}"
    return text


def linear_cell(metrics: dict[str, Any]) -> str:
    """Linear top-1."""
    return metric_text(metrics, "top1")


def knn_cell(metrics: dict[str, Any]) -> str:
    """kNN top-1 (measured rows only; the paper does not report it)."""
    return metric_text(metrics, "knn_top1")


def voc_cell(metrics: dict[str, Any]) -> str:
    """VOC `AP (AP50 / AP75)`, or `AP` alone when AP50/AP75 are absent (as in the paper's SSA row)."""
    text = metric_text(metrics, "AP")
    if is_number(metrics.get("AP50")) or is_number(metrics.get("AP75")):
        text += f" ({metric_text(metrics, 'AP50', False)} / {metric_text(metrics, 'AP75', False)})"
    return text


def coco_cell(metrics: dict[str, Any]) -> str:
    """COCO `box AP / mask AP`; `—` when neither was measured."""
    if not is_number(metrics.get("bbox_AP")) and not is_number(metrics.get("segm_AP")):
        return DASH
    return f"{metric_text(metrics, 'bbox_AP')} / {metric_text(metrics, 'segm_AP')}"


def cityscapes_cell(metrics: dict[str, Any]) -> str:
    """Cityscapes mIoU."""
    return metric_text(metrics, "mIoU")


@dataclass(frozen=True)
class Column:
    """A table column: the task it reads, its title, and its cell writer."""

    task: str
    title: str
    cell: Any  # Callable[[dict], str]


# The paper's four columns, with kNN top-1 beside linear top-1 in the measured table.
PAPER_COLUMNS = (
    Column("linear", "linear top-1", linear_cell),
    Column("voc", "VOC AP (AP50 / AP75)", voc_cell),
    Column("coco", "COCO box / mask AP", coco_cell),
    Column("cityscapes", "Cityscapes mIoU", cityscapes_cell),
)
MEASURED_COLUMNS = (PAPER_COLUMNS[0], Column("linear", "kNN top-1", knn_cell)) + PAPER_COLUMNS[1:]
