"""`suite --preflight`: every selected protocol at its full size for 2 iterations and a test on 2 images.

Nothing is shrunk (800 px multi-scale detection, 769 crops and 1024x2048 slide
inference, 224 crops): the runs go through the very runners and devices of the
suite, with `--max-iters 2` and the test set cut to 2 images. Each checks the
data (the dataset checks), the weights (the runners refuse a backbone key that
the checkpoint lacks), the config, and measures s/iter and peak memory; the ETA
is s/iter x the protocol's full schedule x its trials. Any failure stops the suite.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transfer.data import check_dataset, find_dataset
from transfer.data.imagefolder import IMAGE_EXTENSIONS
from transfer.engine.workdir import drop_checkpoints
from transfer.errors import UserError
from transfer.fileio import write_json
from transfer.results import METRICS_FILE, machine_label, write_benchmark
from transfer.suite.index import FIGURES_DIR
from transfer.jobs import REPO, log_tail
from transfer.suite.plan import Checkpoint, Job, Protocol, SuitePlan
from transfer.tasks import TASKS

ITERS = 2
EVAL_IMAGES = 2
# By backend: mmengine's BaseDataset keeps the first N samples with `indices=N` (mmdet's and mmseg's datasets are
# ones); the protocol configs do not set it, so the override adds the key (`+`). detectron2's test set has no
# override to cut it: its preflight tests on the whole test set.
EVAL_SUBSET = {"mmdet": [f"+test_dataloader.dataset.indices={EVAL_IMAGES}"],
               "mmseg": [f"+test_dataloader.dataset.indices={EVAL_IMAGES}"]}
LINEAR_SUBSET = ["knn.enabled=false"]  # linear: a 2-image val folder (below); kNN would embed all of train


@dataclass
class PreflightResult:
    """What one protocol's preflight measured for one checkpoint."""

    checkpoint: str
    protocol: Protocol
    ok: bool
    error: str | None = None
    s_per_iter: float | None = None
    full_iters: int | None = None
    trials: int = 1
    peak_mib: float | None = None
    peak_kind: str = "RSS"
    batch: str = "?"
    work_dir: Path | None = None

    @property
    def eta_s(self) -> float | None:
        """The training time of the full schedule, all trials (evaluation not included)."""
        if self.s_per_iter is None or self.full_iters is None:
            return None
        return self.s_per_iter * self.full_iters * self.trials


def duration(seconds: float | None) -> str:
    """`3 d 4 h`, `5 h 12 min`, `42 min`, `12 s`, or `?`."""
    if seconds is None:
        return "?"
    if seconds >= 86400:
        return f"{seconds // 86400:.0f} d {seconds % 86400 / 3600:.0f} h"
    if seconds >= 3600:
        return f"{seconds // 3600:.0f} h {seconds % 3600 / 60:.0f} min"
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def linear_subset(root: Path, out: Path, train_images: int) -> tuple[Path, int]:
    """A folder of links to `train_images` train images (round robin over classes) and 2 val images of those classes.

    Returns the folder and the number of train images of the full set (for the ETA).
    """
    classes = sorted(d.name for d in os.scandir(root / "train") if d.is_dir())
    files = {c: sorted(f.name for f in os.scandir(root / "train" / c) if f.name.lower().endswith(IMAGE_EXTENSIONS))
             for c in classes}
    total = sum(len(v) for v in files.values())
    picked: list[tuple[str, str]] = []
    depth = 0
    while len(picked) < min(train_images, total):
        for c in classes:
            if depth < len(files[c]) and len(picked) < train_images:
                picked.append((c, files[c][depth]))
        depth += 1
    if out.exists():
        shutil.rmtree(out)
    for c, name in picked:
        (out / "train" / c).mkdir(parents=True, exist_ok=True)
        (out / "train" / c / name).symlink_to((root / "train" / c / name).resolve())
    val = 0
    for c in sorted({c for c, _ in picked}):
        folder = root / "val" / c
        for f in sorted(os.scandir(folder), key=lambda f: f.name) if folder.is_dir() else []:
            if val < EVAL_IMAGES and f.name.lower().endswith(IMAGE_EXTENSIONS):
                (out / "val" / c).mkdir(parents=True, exist_ok=True)
                (out / "val" / c / f.name).symlink_to(Path(f.path).resolve())
                val += 1
    if val == 0:
        raise UserError(f"{root}/val has no image of the classes {sorted({c for c, _ in picked})[:5]}...")
    return out, total


def linear_batch(plan: SuitePlan) -> int:
    """The linear protocol's total batch (config and overrides)."""
    from transfer.classification.runner import load_linear_config

    return int(load_linear_config(None, plan.overrides.get("linear", []), None)["linear"]["batch_size"])


def mmengine_seconds_per_iter(work_dir: Path) -> tuple[float | None, float | None]:
    """s/iter of the last logged iteration, and mmengine's CUDA `memory` (MiB), from the newest run's scalars.json."""
    logs = sorted(work_dir.glob("*/vis_data/scalars.json"))
    if not logs:
        return None, None
    records = [json.loads(line) for line in logs[-1].read_text().splitlines() if line.strip()]
    records = [r for r in records if "time" in r]
    if not records:
        return None, None
    return float(records[-1]["time"]), records[-1].get("memory")


def full_iterations(record: dict[str, Any]) -> int | None:
    """The protocol's full schedule, from the runner's note `schedule shortened from N to 2 iterations`."""
    for note in record.get("notes") or []:
        match = re.search(r"schedule shortened from (\d+) to", note)
        if match:
            return int(match.group(1))
    return None


def mmengine_batch(work_dir: Path, record: dict[str, Any]) -> str:
    """The images per iteration of the run that happened, from the config it dumped in its work dir:
    `N` in one process, `B/process x P` in P processes; `?` without a dumped config."""
    from transfer.engine.config import read_config_file

    dumped = work_dir / Path(record["config"]).name
    if not dumped.is_file():
        return "?"
    per_process = int(read_config_file(dumped).train_dataloader.batch_size)
    processes = int(record.get("world_size") or 1)
    return str(per_process) if processes == 1 else f"{per_process}/process x {processes}"


def plan_preflight(plan: SuitePlan, checkpoint: Checkpoint, protocol: Protocol) -> tuple[list[str], Path, dict]:
    """The words of one preflight run, its work dir, and facts for the report (linear's full train set size)."""
    work_dir = plan.work_dir / "preflight" / checkpoint.name / protocol.key
    job = Job(checkpoint, protocol, 0, 1, plan.seed, work_dir)
    backend = plan.backend if plan.backend in TASKS[protocol.task].backends else TASKS[protocol.task].backends[0]
    subset = LINEAR_SUBSET if protocol.task == "linear" else EVAL_SUBSET.get(backend, [])
    extra = ["--max-iters", str(ITERS), "--force", *subset]
    argv = plan.argv(job, extra, full_size=True)
    facts: dict[str, Any] = {}
    if protocol.task == "linear":
        batch = linear_batch(plan)
        root = find_dataset("imagefolder", plan.data_root)
        subset, facts["train_images"] = linear_subset(root, plan.work_dir / "preflight" / "linear_data", ITERS * batch)
        argv[argv.index("--data") + 1] = str(subset)
        facts["batch"] = batch
    return argv, work_dir, facts


def check_data(plan: SuitePlan) -> None:
    """Run the dataset checks of every selected task on the data root (a UserError names what is wrong)."""
    for fmt in sorted({TASKS[p.task].data_format for p in plan.protocols}):  # each dataset once
        root = find_dataset(fmt, plan.data_root)
        print(f"[preflight] checking the {fmt} dataset at {root}", file=sys.stderr, flush=True)
        check_dataset(fmt, root)


def measure(plan: SuitePlan, checkpoint: Checkpoint, protocol: Protocol, work_dir: Path, facts: dict,
            code: int) -> PreflightResult:
    """Read back what one preflight run wrote."""
    result = PreflightResult(checkpoint.name, protocol, ok=code == 0, trials=plan.trials[protocol.task],
                             work_dir=work_dir)
    if code != 0:
        result.error = log_tail(work_dir, 8)
        return result
    record = json.loads((work_dir / METRICS_FILE).read_text())
    cuda = None
    peaks = [json.loads(p.read_text()) for p in sorted(work_dir.glob("probe.rank*.json"))]
    if protocol.task == "linear":  # the 2 iterations' mean, with the first one's warm-up and the 2-image test
        timed = [p["train_s"] for p in peaks if p.get("train_s")]
        result.s_per_iter = max(timed) / ITERS if timed else None
        from transfer.classification.runner import load_linear_config

        epochs = load_linear_config(record["config"], record.get("overrides") or [], None)["linear"]["epochs"]
        result.full_iters = int(epochs * -(-facts["train_images"] // facts["batch"]))  # over the full train set
        result.batch = str(facts["batch"])
    else:
        result.s_per_iter, cuda = mmengine_seconds_per_iter(work_dir)
        result.full_iters = full_iterations(record)
        result.batch = mmengine_batch(work_dir, record)
    cuda_peaks = [p["cuda_peak_mib"] for p in peaks if p.get("cuda_peak_mib")]
    if cuda_peaks or cuda:
        result.peak_mib, result.peak_kind = max(cuda_peaks or [cuda]), "GPU"
    elif peaks:
        result.peak_mib = max(p["rss_mib"] for p in peaks)
    return result


def preflight_table(results: list[PreflightResult]) -> str:
    """The preflight's table: one line per (protocol, checkpoint)."""
    header = ["protocol", "checkpoint", "result", "batch", "s/iter", "full schedule", "trials", "ETA (train)",
              "peak memory"]
    rows = [[r.protocol.title, r.checkpoint, "ok" if r.ok else "FAILED", r.batch,
             f"{r.s_per_iter:.2f}" if r.s_per_iter is not None else "?",
             f"{r.full_iters} it" if r.full_iters else "?", str(r.trials), duration(r.eta_s),
             f"{r.peak_mib / 1024:.1f} GiB {'per GPU' if r.peak_kind == 'GPU' else 'RSS'}" if r.peak_mib else "?"]
            for r in results]
    widths = [max(len(x[i]) for x in [header] + rows) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header] + rows)


def run_preflight(plan: SuitePlan,
                  execute: Callable[[list[tuple[list[str], Path]]], list[int]]) -> list[PreflightResult]:
    """Preflight every (protocol, checkpoint); `execute` runs the probe commands (here or as SLURM jobs) -> exit codes.

    Prints the table, writes WORK_DIR/preflight/preflight.json and WORK_DIR/figures/preflight.json
    (shown in the suite's benchmarks.md); raises a UserError naming each failure.
    """
    check_data(plan)
    planned = []
    for protocol in plan.protocols:
        for checkpoint in plan.checkpoints:
            argv, work_dir, facts = plan_preflight(plan, checkpoint, protocol)
            for old in work_dir.glob("probe.rank*.json"):
                old.unlink()
            command = [sys.executable, str(REPO / "transfer" / "suite" / "probe.py"),
                       str(work_dir / "probe.json"), "--", *argv]
            planned.append((checkpoint, protocol, work_dir, facts, command))
    codes = execute([(command, work_dir) for _, _, work_dir, _, command in planned])
    results = [measure(plan, c, p, w, f, code) for (c, p, w, f, _), code in zip(planned, codes)]
    for _, _, work_dir, _, _ in planned:  # each run is redone (--force) by the next preflight: keep only its figures
        drop_checkpoints(work_dir)
    print(preflight_table(results))
    write_json(plan.work_dir / "preflight" / "preflight.json",
               [{"protocol": r.protocol.key, "checkpoint": r.checkpoint, "ok": r.ok, "error": r.error,
                 "s_per_iter": r.s_per_iter, "full_iters": r.full_iters, "trials": r.trials, "eta_s": r.eta_s,
                 "peak_mib": r.peak_mib, "peak_kind": r.peak_kind, "batch": r.batch} for r in results])
    figures = [fig for r in results if r.ok for fig in (
        {"label": f"preflight {r.protocol.title}, {r.checkpoint}: s/iter at full size", "value": r.s_per_iter,
         "unit": "s/iter", "batch": r.batch, "device": machine_label()},
        {"label": f"preflight {r.protocol.title}, {r.checkpoint}: peak memory", "value": r.peak_mib,
         "unit": f"MiB {r.peak_kind}"}) if fig["value"] is not None]
    if figures:
        write_benchmark("preflight", figures, notes="full-size protocol, 2 iterations, test on 2 images",
                        out_dir=plan.work_dir / FIGURES_DIR)
    failed = [r for r in results if not r.ok]
    if failed:
        raise UserError("preflight failed, nothing started:\n" + "\n".join(
            f"- {r.protocol.title} with {r.checkpoint} ({r.work_dir / 'suite_job.log'}):\n{r.error}" for r in failed))
    return results
