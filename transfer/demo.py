"""`make demo` (`tools/run_transfer.sh demo`): the whole project on procedural data, on a CPU in minutes.

1. data: procedural ImageFolder, VOC, COCO and Cityscapes sets in their real formats;
2. pretrain: a MoCo v2 teacher first; SEED and SSA students distilling from that same
   teacher, and an SSA student with an EMA teacher -- same student, data, epochs, batch;
3. transfer: each backbone, and a random init, through the very runners of
   `tools/run_transfer.sh` (linear/kNN, VOC, COCO, Cityscapes), checkpoints converted on the way;
4. report: `results.json` (the index `tools/make_benchmarks.py` reads) and the table.

Every stage is reused when its output exists (`--force` redoes them all), so an
interrupted demo picks up where it stopped. The plan's sizes are overridable as
`key=value` (e.g. `pretrain_epochs=2 det_iters=10`), which is how the tests run a tiny one.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transfer.cli import run_transfer
from transfer.errors import UserError
from transfer.fileio import write_json
from transfer.overrides import check_range, coerce, parse_overrides
from transfer.results import machine_info

TASKS = ("linear", "voc", "coco", "cityscapes")
DEFAULT_ROWS = ("moco_v2", "seed", "ssa", "ssa_ema", "random")  # the comparison; ROWS also has the ablations


@dataclass
class DemoPlan:
    """The sizes of the demo: small enough for 2 CPU cores in 15 minutes, all overridable."""

    seed: int = 0
    arch: str = "resnet18"
    # data
    pretrain_images: int = 1000      # ImageFolder train images (pretraining, linear and kNN memory)
    val_images: int = 300            # ImageFolder val images
    cls_size: int = 64               # ImageFolder side
    det_images: int = 64             # VOC and COCO train images (val/test: a quarter)
    seg_images: int = 32             # Cityscapes train images
    # pretraining: every method gets the same student, data, epochs and batch
    pretrain_epochs: int = 3
    teacher_epochs: int = 3          # the MoCo v2 teacher's own pretraining
    batch_size: int = 64
    queue_size: int = 512             # below the number of images: no image is its own negative
    # transfer
    linear_iters: int = 300
    det_iters: int = 30
    det_input: int = 128
    det_batch: int = 2               # total batch (the protocol's 16 is 8x the compute per iteration)
    det_lr: float = 0.01
    precise_bn_iters: int = 4        # batches for detection's precise BN (the protocol's 200 is a real pass)
    seg_iters: int = 60
    seg_input: int = 64
    tasks: tuple[str, ...] = TASKS
    rows: tuple[str, ...] = DEFAULT_ROWS  # names of ROWS
    index: str = "results.json"      # the results index in WORK_DIR (give another run of other rows its own)

    @classmethod
    def from_overrides(cls, overrides: list[str]) -> DemoPlan:
        """The default plan with typed `key=value` overrides (`transfer.overrides`); unknown keys, wrong types
        and sizes out of range are errors."""
        plan, known = cls(), {f.name for f in dataclasses.fields(cls)}
        for item in parse_overrides(overrides):
            key, value = item.key, item.value
            if key not in known:
                raise UserError(f"unknown demo setting {key!r}; the settings are: {', '.join(sorted(known))}")
            if key in ("tasks", "rows"):
                value = tuple(item.raw.split(",")) if isinstance(value, str) else tuple(value)
                allowed = TASKS if key == "tasks" else tuple(row.name for row in ROWS)
                if not value or set(value) - set(allowed):
                    raise UserError(f"{key}={item.raw}: each must be one of {', '.join(allowed)}")
            else:
                value = coerce(key, value, getattr(plan, key), item.raw)
            if key == "index" and (Path(str(value)).name != str(value) or not str(value).endswith(".json")):
                raise UserError(f"index={value}: a file name ending in .json (it is written in WORK_DIR)")
            if key in PLAN_MINIMUM:
                check_range(key, value, PLAN_MINIMUM[key], integer=isinstance(getattr(plan, key), int),
                            above=key == "det_lr")
            setattr(plan, key, value)
        return plan


# The least each size, count and rate of the plan may be (det_lr: more than 0).
PLAN_MINIMUM = {"seed": 0, "pretrain_images": 1, "val_images": 1, "cls_size": 16, "det_images": 1, "seg_images": 1,
                "pretrain_epochs": 1, "teacher_epochs": 1, "batch_size": 1, "queue_size": 1, "linear_iters": 1,
                "det_iters": 1, "det_input": 32, "det_batch": 1, "det_lr": 0, "precise_bn_iters": 1,
                "seg_iters": 1, "seg_input": 16}


@dataclass(frozen=True)
class Row:
    """One backbone of the comparison: how it is pretrained and what it distils from."""

    name: str
    label: str
    method: str | None       # the method it reports as (`ssa` rows are compared with the baselines), None: random init
    teacher: str | None      # "moco_v2" (that row's checkpoint), "ema", or None
    config: str | None = None  # configs/pretrain/<config>.yaml; default: the method's own


ROWS = (
    Row("moco_v2", "MoCo v2 (the teacher)", "moco_v2", None),
    Row("seed", "SEED (MoCo v2 teacher)", "seed", "moco_v2"),
    Row("ssa", "SSA (MoCo v2 teacher)", "ssa", "moco_v2"),
    Row("ssa_ema", "SSA (EMA teacher)", "ssa", "ema"),
    Row("random", "random init", None, None),
    # ablations (rows=...): SSA from the same teacher with one part switched off
    Row("ssa_no_align", "SSA, a = 0 (no L_align)", "ssa_no_align", "moco_v2", "ssa_no_align"),
    Row("ssa_no_ssa", "SSA, b = 0 (no L_ssa)", "ssa_no_ssa", "moco_v2", "ssa_no_ssa"),
    Row("ssa_rho1", "SSA, rho = 1 (dense average pooling)", "ssa_rho1", "moco_v2", "ssa_rho1"),
)


class Stages:
    """Prints each stage as it starts and ends, with its time, and keeps the times for the report."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self.start = time.perf_counter()

    @contextmanager
    def stage(self, name: str):
        """Time one stage and print its start, end and the elapsed total."""
        print(f"[demo] >>> {name}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        yield
        self.times[name] = round(time.perf_counter() - t0, 1)
        print(f"[demo] <<< {name}: {self.times[name]:.1f} s (total {time.perf_counter() - self.start:.0f} s)",
              file=sys.stderr, flush=True)


def make_data(out: Path, plan: DemoPlan, force: bool) -> dict[str, Path]:
    """Write (or reuse) the four procedural datasets under out/data."""
    from transfer.data import make_dataset

    root = out / "data"
    sets = {"imagefolder": (plan.pretrain_images, plan.val_images, (plan.cls_size, plan.cls_size)),
            "voc": (plan.det_images, max(8, plan.det_images // 4), None),
            "coco": (plan.det_images, max(8, plan.det_images // 4), None),
            "cityscapes": (plan.seg_images, max(8, plan.seg_images // 4), None)}
    return {fmt: make_dataset(fmt, root / fmt, plan.seed, n, n_val, size, overwrite=force)
            for fmt, (n, n_val, size) in sets.items()}


def pretrain(row: Row, out: Path, data: Path, plan: DemoPlan, teacher: Path | None, force: bool) -> dict[str, Any]:
    """Pretrain one row's backbone (reused when its final checkpoint exists); returns its summary."""
    from transfer.pretrain import load_config, train
    from transfer.pretrain.config import PRETRAIN_CONFIGS
    from transfer.pretrain.logs import read_log

    work_dir = out / "pretrain" / row.name
    final = work_dir / "checkpoint_final.pth"
    summary_path = work_dir / "demo_summary.json"
    if final.is_file() and summary_path.is_file() and not force:
        print(f"[demo] reusing {final}", file=sys.stderr)
        return json.loads(summary_path.read_text())
    epochs = plan.teacher_epochs if row.name == "moco_v2" else plan.pretrain_epochs
    overrides = [f"data.root={data}", f"model.arch={plan.arch}", f"data.image_size={plan.cls_size}",
                 f"train.epochs={epochs}", f"train.batch_size={plan.batch_size}", "data.workers=0",
                 f"model.queue_size={plan.queue_size}", f"aggregation.queue_size={plan.queue_size}",
                 f"seed={plan.seed}",
                 "train.log_every=5"]
    if teacher is not None:
        overrides.append(f"teacher.checkpoint={teacher}")
    cfg = load_config(PRETRAIN_CONFIGS / f"{row.config or row.method}.yaml", overrides=overrides)
    t0 = time.perf_counter()
    checkpoint = train(cfg, work_dir, resume=not force)
    wall = time.perf_counter() - t0
    records = read_log(work_dir / "train_log.jsonl")
    speeds = [r["images_per_s"] for r in records if r.get("images_per_s")]
    summary = {"checkpoint": str(Path(checkpoint).resolve().relative_to(out.resolve())),
               "epochs": epochs, "steps": records[-1]["step"] if records else None, "wall_time_s": round(wall, 1),
               "images_per_s": round(sum(speeds) / len(speeds), 1) if speeds else None,
               "overrides": overrides}
    write_json(summary_path, summary)
    return summary


def transfer_task(task: str, weights: Path | None, out: Path, row: Row, data: dict[str, Path], plan: DemoPlan,
                  args: argparse.Namespace) -> Path:
    """Run one task of tools/run_transfer.sh for one row (reused when its metrics.json exists)."""
    work_dir = out / "runs" / row.name / task
    fmt = {"linear": "imagefolder", "voc": "voc", "coco": "coco", "cityscapes": "cityscapes"}[task]
    argv = [task, "--data", str(data[fmt]), "--work-dir", str(work_dir), "--seed", str(plan.seed)]
    argv += ["--weights", str(weights)] if weights else []
    argv += ["--gpus", str(args.gpus)] if args.gpus is not None else []
    argv += ["--force"] if args.force else []
    # a random init has no checkpoint to bring its depth: the engines' configs default to ResNet-50
    random_depth = [] if weights or plan.arch == "resnet50" else [f"model.backbone.depth={plan.arch[6:]}"]
    if task == "linear":
        argv += ["--max-iters", str(plan.linear_iters), "--input-size", str(plan.cls_size),
                 "linear.precompute_features=true", "linear.workers=0"]
        argv += [] if weights else [f"model.arch={plan.arch}"]
    elif task in ("voc", "coco"):
        # a CPU-sized batch: one "GPU" of det_batch images at det_lr instead of the protocol's 8 x 2 at 0.02
        argv += ["--max-iters", str(plan.det_iters), "--input-size", str(plan.det_input), "protocol_gpus=1",
                 f"train_dataloader.batch_size={plan.det_batch}", f"optim_wrapper.optimizer.lr={plan.det_lr}",
                 f"custom_hooks.0.num_iters={plan.precise_bn_iters}", *random_depth]  # [0] is PreciseBNHook
    else:
        argv += ["--max-iters", str(plan.seg_iters), "--input-size", str(plan.seg_input), *random_depth]
    print(f"[demo] tools/run_transfer.sh {' '.join(argv)}", file=sys.stderr, flush=True)
    run_transfer(argv)
    return work_dir / "metrics.json"


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the demo end to end and write WORK_DIR/results.json, WORK_DIR/benchmarks.md and its plot."""
    from transfer.report import make_benchmarks

    plan = DemoPlan.from_overrides(list(args.overrides))
    if args.seed is not None:
        plan.seed = check_range("--seed", args.seed, 0)
    out = Path(args.work_dir or "demo_out")
    out.mkdir(parents=True, exist_ok=True)
    stages = Stages()
    print(f"[demo] plan: {dataclasses.asdict(plan)}", file=sys.stderr)

    with stages.stage("data"):
        data = make_data(out, plan, args.force)
    selected = [row for row in ROWS if row.name in plan.rows]
    needed = {row.teacher for row in selected} | {row.name for row in selected}  # a student needs its teacher
    summaries: dict[str, dict[str, Any] | None] = {}
    for row in ROWS:
        if row.method is None or row.name not in needed:
            summaries[row.name] = None
            continue
        teacher = out / summaries["moco_v2"]["checkpoint"] if row.teacher == "moco_v2" else None
        with stages.stage(f"pretrain {row.name}"):
            summaries[row.name] = pretrain(row, out, data["imagefolder"], plan, teacher, args.force)
    rows = []
    for row in selected:
        summary = summaries[row.name]
        weights = out / summary["checkpoint"] if summary else None
        metrics = {}
        for task in plan.tasks:
            with stages.stage(f"{task} {row.name}"):
                path = transfer_task(task, weights, out, row, data, plan, args)
            metrics[task] = str(path.relative_to(out))
        rows.append({"method": row.method or "random", "name": row.name, "label": row.label,
                     "teacher": row.teacher, "pretrain": summary, "metrics": metrics})

    with stages.stage("report"):
        default = tuple(plan.rows) == DEFAULT_ROWS
        command = " ".join(["tools/run_transfer.sh demo", *(["--work-dir", str(out)] if args.work_dir else []),
                            *args.overrides])
        index = {"schema": 1, "name": "procedural demo" + ("" if default else f" ({', '.join(plan.rows)})"),
                 "command": "make demo" if default and not args.work_dir and not args.overrides else command,
                 "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine_info(), "procedural": True,
                 "budget": {"arch": plan.arch, "epochs": plan.pretrain_epochs, "batch_size": plan.batch_size,
                            "image_size": plan.cls_size, "images": plan.pretrain_images},
                 "plan": dataclasses.asdict(plan), "stage_times_s": stages.times, "rows": rows}
        index_path = out / plan.index
        write_json(index_path, index)
        # the default rows' table is benchmarks.md; another set of rows (index=NAME.json) gets NAME.md beside it
        default_index = plan.index == "results.json"
        table = out / ("benchmarks.md" if default_index else f"{Path(plan.index).stem}.md")
        plot = out / "comparison.png" if default_index else table.with_suffix(".png")
        make_benchmarks([index_path], out=table, plot=plot,
                        command=f"tools/make_benchmarks.py --index {index_path}")
    total = time.perf_counter() - stages.start
    index["stage_times_s"], index["total_time_s"] = stages.times, round(total, 1)
    write_json(index_path, index)
    print(f"[demo] done in {total:.0f} s: {index_path}, {table}", file=sys.stderr)
    return index
