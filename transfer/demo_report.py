"""What the demo's table means: the chance level of each column, and each row's margin over random init.

A margin counts when it reaches the demo's target (10 points on linear and kNN top-1,
5 on VOC AP50, COCO box AP50 and Cityscapes mIoU) and is more than twice random
init's spread (the std of its figure over the random-init seeds).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

# (task, metric in metrics.json, label, the margin over random init the demo aims at)
TARGETS = (("linear", "top1", "linear top-1", 10.0), ("linear", "knn_top1", "kNN top-1", 10.0),
           ("voc", "AP50", "VOC AP50", 5.0), ("voc", "AP50_present", "VOC AP50, classes present", 5.0),
           ("coco", "bbox_AP50", "COCO box AP50", 5.0),
           ("cityscapes", "mIoU", "Cityscapes mIoU", 5.0))


# Why a column does not separate, and what it would take: measured on the demo's data and plans, kept as data beside
# the archived runs (benchmarks/short_reasons.json, by plan; `methods` shares the demo's). The table and the console
# print it under a column where a row falls short of its target, so a short column is explained, not hidden.
REASONS_FILE = Path(__file__).resolve().parents[1] / "benchmarks" / "short_reasons.json"


def short_reasons(plan: str) -> dict[str, str]:
    """The measured reasons of `plan` (demo, methods, transfer), by task; {} when the file has none for it."""
    reasons = json.loads(REASONS_FILE.read_text())
    return reasons.get("demo" if plan == "methods" else plan, {})


def cityscapes_chance(root: Path) -> float:
    """mIoU (percent) of predicting the most frequent class of the val labels everywhere.

    That class's IoU is its pixel share; every other class present has IoU 0; the
    mean runs over the classes present, as the Cityscapes evaluation's does.
    """
    counts = np.zeros(256, np.int64)
    for path in sorted((root / "gtFine" / "val").glob("*/*_gtFine_labelTrainIds.png")):
        counts += np.bincount(np.asarray(Image.open(path)).ravel(), minlength=256)
    evaluated = counts[:19]
    present = int((evaluated > 0).sum())
    return 100.0 * evaluated.max() / evaluated.sum() / present if present else 0.0


def chance_levels(data: dict[str, Path], tasks: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Chance per task and metric (percent): a uniform guess over the classes for top-1; a detector that has
    learned nothing scores AP ~0; the majority class everywhere for Cityscapes."""
    chance: dict[str, dict[str, float]] = {}
    if "linear" in tasks:
        classes = [d for d in (data["imagefolder"] / "val").iterdir() if d.is_dir()]
        chance["linear"] = {"top1": 100.0 / len(classes), "knn_top1": 100.0 / len(classes)}
    if "voc" in tasks:
        chance["voc"] = {"AP": 0.0, "AP50": 0.0, "AP50_present": 0.0}
    if "coco" in tasks:
        chance["coco"] = {"bbox_AP": 0.0, "bbox_AP50": 0.0}
    if "cityscapes" in tasks:
        chance["cityscapes"] = {"mIoU": round(cityscapes_chance(data["cityscapes"]), 2)}
    return chance


def separation(out: Path, rows: list[dict[str, Any]], chance: dict[str, dict[str, float]],
               random: str = "random", reasons: dict[str, str] | None = None) -> dict[str, Any]:
    """Each pretrained row's margin over the `random` row per TARGETS quantity, and whether it counts; a column
    where some row falls short carries its task's measured reason from `reasons` (`short_reasons(plan)`)."""
    reasons = short_reasons("demo") if reasons is None else reasons
    by_name = {row["name"]: row for row in rows}
    if random not in by_name:
        return {"random": None, "quantities": []}

    def figures(row: dict[str, Any], task: str) -> dict[str, Any] | None:
        path = row["metrics"].get(task)
        return json.loads((out / path).read_text())["metrics"] if path else None

    quantities = []
    for task, metric, label, target in TARGETS:
        base = figures(by_name[random], task)
        if base is None or not isinstance(base.get(metric), (int, float)):
            continue
        spread = float(base.get(f"{metric}_std") or 0.0)
        needed = max(target, 2 * spread)
        cells = []
        for row in rows:
            if row["name"] == random:
                continue
            value = (figures(row, task) or {}).get(metric)
            if isinstance(value, (int, float)):
                margin = value - base[metric]
                cells.append({"row": row["name"], "value": value, "margin": round(margin, 2),
                              "meets": bool(margin >= target and margin > 2 * spread)})
        quantities.append({"task": task, "metric": metric, "label": label,
                           "chance": chance.get(task, {}).get(metric, float("nan")), "random": base[metric],
                           "spread": spread, "target": target, "needed": needed, "rows": cells})
        if task in reasons and not all(cell["meets"] for cell in cells):
            quantities[-1]["short_reason"] = reasons[task]
    return {"random": random, "quantities": quantities}
