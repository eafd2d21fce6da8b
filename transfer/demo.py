"""`make demo` (`tools/run_transfer.sh demo`): the whole project on procedural data, on a CPU in minutes.

1. data: object-centric shape images (ImageFolder), VOC and COCO scenes of the same
   shapes with the same class patterns, and Cityscapes street scenes whose sidewalk,
   buildings, trees, people and cars wear those patterns, in their real formats;
2. pretrain: a supervised ResNet trained with the labels (the teacher: a stand-in for the
   paper's large pretrained model, which cannot be downloaded offline); SEED and SSA
   students distilling from it; MoCo v2 and SSA with an EMA teacher from scratch -- same
   student, data, epochs, batch;
3. transfer: each backbone, and a random init over `random_seeds` seeds (its spread is the
   noise a margin must beat), through the very runners of `tools/run_transfer.sh`
   (linear/kNN, VOC, COCO, Cityscapes);
4. report: `results.json` (the index `tools/make_benchmarks.py` reads), the table with the
   chance level of each column, and each row's margin over random init.

The console shows one line per stage and a progress bar; each stage's own output goes to
`console.log` in its work dir (`verbose=true` shows it live). A fine-tuning run keeps its
metrics.json and logs, not its checkpoints. Every stage is reused when it was made with the
same settings (its `demo_stage.json`; a changed setting redoes the stages it changes and
those made from them; `--force` redoes them all). The plan's sizes are overridable as `key=value` (e.g.
`pretrain_epochs=2 det_iters=10`), which is how the tests run a tiny one; `plan=methods` is
the longer method comparison (`METHODS_PLAN`), `plan=transfer` the fine-tuning benchmark (`TRANSFER_PLAN`).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transfer.cli import run_transfer
from transfer.demo_console import LOG, Console
from transfer.engine.workdir import drop_checkpoints
from transfer.errors import UserError
from transfer.fileio import write_json
from transfer.overrides import check_range, coerce, parse_overrides
from transfer.report.columns import TASKS as TABLE_TASKS
from transfer.results import machine_info, write_average
from transfer.tasks import TASKS as ALL_TASKS

TASKS = TABLE_TASKS  # the paper's four columns
DEFAULT_ROWS = ("teacher", "seed", "ssa", "moco_v2", "random")  # the comparison; ROWS also has the others
# `plan=methods`: the method comparison beside the demo (SSA, SEED, MoCo v2, the three ablations and SSA at
# batch 32 vs 256), every row from the same teacher, data and budget, over 3 pretraining seeds
METHODS_PLAN: dict[str, Any] = {
    "rows": ("seed", "ssa", "moco_v2", "ssa_no_align", "ssa_no_ssa", "ssa_rho1", "ssa_b32", "ssa_b256", "random"),
    "seeds": 3, "tasks": ("linear", "cityscapes"), "index": "methods.json"}
# `plan=transfer`: the fine-tuning columns at a budget where they separate (`benchmarks/bench_transfer.py`): the
# teacher, SEED and SSA against random init over 3 seeds, with longer schedules, scenes whose objects span a few
# stride-16 cells at the shrunk input, and more evaluation images (measured: benchmarks.md, section 2)
TRANSFER_PLAN: dict[str, Any] = {
    "rows": ("teacher", "seed", "ssa", "random"), "tasks": TASKS, "random_seeds": 3, "index": "transfer.json",
    "det_iters": 300, "det_val": 48, "det_scale_min": 0.15, "det_scale_max": 0.4, "seg_iters": 150, "seg_val": 24}
PRESETS: dict[str, dict[str, Any]] = {"methods": METHODS_PLAN, "transfer": TRANSFER_PLAN}
PLANS = ("demo", *PRESETS)


@dataclass
class DemoPlan:
    """The sizes of the demo: small enough for 2 CPU cores in 15 minutes, all overridable."""

    plan: str = "demo"               # demo | methods | transfer (PRESETS: their keys first; other keys still apply)
    seed: int = 0
    arch: str = "resnet18"
    # data: the ImageFolder images are one large shape each; the scenes hold a few of the same shapes
    pretrain_images: int = 2000      # ImageFolder train images (teacher, pretraining, linear and kNN memory)
    val_images: int = 500            # ImageFolder val images
    cls_image_size: int = 64         # ImageFolder images' side
    cls_size: int = 32               # the networks' input for pretraining and linear/kNN (views, crops)
    det_images: int = 64             # VOC and COCO train images (val/test: a quarter)
    det_val: int = 16                # VOC test and COCO val images (the AP's noise falls with their number)
    det_objects: int = 3             # at most this many shapes per detection scene (at least 1)
    det_scale_min: float = 0.08      # a scene shape's radius over the image's shorter side: smallest ...
    det_scale_max: float = 0.3       # ... and largest (`scenes.OBJECT_SCALE`)
    seg_images: int = 32             # Cityscapes train images
    seg_val: int = 8                 # Cityscapes val images
    # pretraining: every method gets the same student, data, epochs and batch
    teacher_epochs: int = 8          # the supervised teacher's epochs over pretrain_images
    teacher_lr: float = 0.001        # AdamW (transfer/pretrain/supervised.py)
    pretrain_epochs: int = 5
    batch_size: int = 64
    queue_size: int = 1024           # below the number of images: no image is its own negative
    pretrain_lr: float = 0.3         # per 256 images (the configs' optim.lr)
    seeds: int = 1                   # pretraining seeds per pretrained row (the rows' metrics: mean and std)
    random_seeds: int = 3            # random inits measured: their spread is the noise a margin must beat
    # transfer
    linear_iters: int = 300
    det_iters: int = 5               # an end-to-end check only: detection does not separate in the demo's budget
                                     # (measured: benchmarks/short_reasons.json, README)
    det_input: int = 128
    det_batch: int = 2               # total batch (the protocol's 16 is 8x the compute per iteration)
    det_lr: float = 0.02
    det_rois: int = 16               # RoIs sampled per training image (the protocol's 512): the res5 head runs per RoI,
                                     # most of an iteration's compute (64 -> 16: 2.8 -> 1.0 s/iter, measured beside another job)
    det_proposals: int = 50          # proposals per test image (1000; scenes hold at most det_objects shapes)
    precise_bn_iters: int = 4        # batches for detection's precise BN (the protocol's 200 is a real pass)
    seg_iters: int = 60
    seg_input: int = 64
    tasks: tuple[str, ...] = TASKS
    rows: tuple[str, ...] = DEFAULT_ROWS  # names of ROWS
    index: str = "results.json"      # the results index in WORK_DIR (give another run of other rows its own)
    verbose: bool = False            # show every stage's own output (engines' logs) instead of a progress bar

    @classmethod
    def from_overrides(cls, overrides: list[str]) -> DemoPlan:
        """The default plan with typed `key=value` overrides (`transfer.overrides`); unknown keys, wrong types
        and sizes out of range are errors."""
        plan, known = cls(), {f.name for f in dataclasses.fields(cls)}
        items = parse_overrides(overrides)
        chosen = {item.key: item.value for item in items}
        if chosen.get("plan", "demo") not in PLANS:
            raise UserError(f"plan={chosen['plan']}: one of {', '.join(PLANS)}")
        for key, value in PRESETS.get(chosen.get("plan", "demo"), {}).items():
            setattr(plan, key, value)  # the preset first, so that other keys can still change it
        for item in items:
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
                check_range(key, value, PLAN_MINIMUM[key], PLAN_MAXIMUM.get(key),
                            integer=isinstance(getattr(plan, key), int), above=key in RATES)
            setattr(plan, key, value)
        if plan.det_scale_min > plan.det_scale_max:
            raise UserError(f"det_scale_min={plan.det_scale_min} is above det_scale_max={plan.det_scale_max}")
        return plan


# The least each size, count and rate of the plan may be (the rates: more than 0).
PLAN_MINIMUM = {"seed": 0, "pretrain_images": 1, "val_images": 1, "cls_image_size": 16, "cls_size": 16,
                "det_images": 1, "det_val": 1, "det_objects": 1, "det_scale_min": 0, "det_scale_max": 0,
                "seg_images": 1, "seg_val": 1, "pretrain_epochs": 1, "teacher_epochs": 1, "teacher_lr": 0,
                "batch_size": 1, "queue_size": 1, "pretrain_lr": 0, "seeds": 1, "random_seeds": 1,
                "linear_iters": 1, "det_iters": 1, "det_input": 32, "det_batch": 1, "det_lr": 0, "det_rois": 1,
                "det_proposals": 1, "precise_bn_iters": 1, "seg_iters": 1, "seg_input": 16}
RATES = ("teacher_lr", "pretrain_lr", "det_lr", "det_scale_min", "det_scale_max")
PLAN_MAXIMUM = {"det_scale_min": 0.5, "det_scale_max": 0.5}  # a radius of half the shorter side fills the image


@dataclass(frozen=True)
class Row:
    """One backbone of the comparison: how it is pretrained and what it distils from."""

    name: str
    label: str
    method: str | None       # the method it reports as (`ssa` rows are compared with the baselines), None: random init
    teacher: str | None      # "teacher" (that row's checkpoint), "ema", or None
    config: str | None = None  # configs/pretrain/<config>.yaml; default: the method's own
    overrides: tuple[str, ...] = ()  # the row's own pretraining settings, after the plan's


ROWS = (
    Row("teacher", "supervised R18 (teacher; stand-in for a large pretrained model)", "supervised", None),
    Row("seed", "SEED (supervised teacher)", "seed", "teacher"),
    Row("ssa", "SSA (supervised teacher)", "ssa", "teacher"),
    Row("moco_v2", "MoCo v2 (from scratch)", "moco_v2", None),
    Row("ssa_ema", "SSA (EMA teacher, from scratch)", "ssa", "ema"),
    Row("random", "random init", None, None),
    # ablations (rows=...): SSA from the same teacher with one part switched off
    Row("ssa_no_align", "SSA, a = 0 (no L_align)", "ssa_no_align", "teacher", "ssa_no_align"),
    Row("ssa_no_ssa", "SSA, b = 0 (no L_ssa)", "ssa_no_ssa", "teacher", "ssa_no_ssa"),
    Row("ssa_rho1", "SSA, rho = 1 (dense average pooling)", "ssa_rho1", "teacher", "ssa_rho1"),
    # the paper's small-batch claim: SSA at batch 32 against 256, same epochs (lr scaled per 256)
    Row("ssa_b32", "SSA, batch 32", "ssa_b32", "teacher", "ssa", ("train.batch_size=32",)),
    Row("ssa_b256", "SSA, batch 256", "ssa_b256", "teacher", "ssa", ("train.batch_size=256",)),
)
ROW_BY_NAME = {row.name: row for row in ROWS}

# Seconds per stage on 2 cores at the default plan (measured, 2-core AMD EPYC): the progress bar's weights, so its
# ETA means something.
COST = {"data": 10, "teacher": 66, "pretrain": 80, "linear": 4, "voc": 15, "coco": 13, "cityscapes": 23, "report": 1}


def stage_cost(task: str, plan: DemoPlan) -> float:
    """COST of one fine-tuning stage, scaled to the plan's schedule (measured: ~0.35 s a detection image-iteration
    at 128 px, ~0.3 s a Cityscapes iteration, ~0.25 s a detection test image)."""
    base = DemoPlan()  # COST was measured at the default plan's sizes
    if task in ("voc", "coco"):
        return COST[task] + 0.35 * plan.det_batch * (plan.det_iters - base.det_iters) + \
            0.25 * (plan.det_val - base.det_val)
    if task == "cityscapes":
        return COST[task] + 0.3 * (plan.seg_iters - base.seg_iters) + 0.5 * (plan.seg_val - base.seg_val)
    return COST[task]


def make_data(out: Path, plan: DemoPlan, force: bool) -> dict[str, Path]:
    """Write (or reuse) the four procedural datasets under out/data."""
    from transfer.data import make_dataset

    root = out / "data"
    objects = {"objects": (1, plan.det_objects), "fill": "pattern",  # the shapes as the object images draw them
               "object_scale": (plan.det_scale_min, plan.det_scale_max)}
    sets = {"imagefolder": (plan.pretrain_images, plan.val_images, (plan.cls_image_size,) * 2, {"kind": "objects"}),
            "voc": (plan.det_images, plan.det_val, None, objects),
            "coco": (plan.det_images, plan.det_val, None, objects),
            "cityscapes": (plan.seg_images, plan.seg_val, None, {"fill": "pattern"})}
    return {fmt: make_dataset(fmt, root / fmt, plan.seed, n, n_val, size, overwrite=force, **extra)
            for fmt, (n, n_val, size, extra) in sets.items()}


def train_teacher(out: Path, data: Path, plan: DemoPlan, force: bool) -> dict[str, Any]:
    """Train the supervised teacher (or reuse it when it was made with the same settings); returns its summary."""
    from torchvision.datasets import ImageFolder

    from transfer.pretrain.supervised import train_supervised

    work_dir = out / "pretrain" / "teacher"
    summary_path = work_dir / "demo_summary.json"
    steps = max(1, plan.teacher_epochs * len(ImageFolder(str(data / "train"))) // plan.batch_size)
    settings = {"arch": plan.arch, "image_size": plan.cls_size, "steps": steps, "batch_size": plan.batch_size,
                "lr": plan.teacher_lr, "seed": plan.seed}
    if not force and is_current(work_dir, settings) and summary_path.is_file():
        return json.loads(summary_path.read_text())
    t0 = time.perf_counter()
    checkpoint = train_supervised(data, work_dir / "checkpoint_final.pth", arch=plan.arch,
                                  image_size=plan.cls_size, steps=steps, batch_size=plan.batch_size,
                                  lr=plan.teacher_lr, seed=plan.seed)
    wall = time.perf_counter() - t0
    summary = {"checkpoint": str(checkpoint.resolve().relative_to(out.resolve())), "epochs": plan.teacher_epochs,
               "steps": steps, "wall_time_s": round(wall, 1),
               "images_per_s": round(steps * plan.batch_size / wall, 1), "method": "supervised (labels)"}
    write_json(summary_path, summary)
    mark_current(work_dir, settings)
    return summary


def pretrain(row: Row, work_dir: Path, out: Path, data: Path, plan: DemoPlan, seed: int, teacher: Path | None,
             force: bool) -> dict[str, Any]:
    """Pretrain one row's backbone (reused when it was made with the same settings); returns its summary."""
    from transfer.pretrain import load_config, train
    from transfer.pretrain.config import PRETRAIN_CONFIGS
    from transfer.pretrain.logs import read_log

    backbone = work_dir / BACKBONE
    summary_path = work_dir / "demo_summary.json"
    overrides = [f"data.root={data}", f"model.arch={plan.arch}", f"data.image_size={plan.cls_size}",
                 f"train.epochs={plan.pretrain_epochs}", f"train.batch_size={plan.batch_size}", "data.workers=0",
                 f"model.queue_size={plan.queue_size}", f"aggregation.queue_size={plan.queue_size}", f"seed={seed}",
                 f"optim.lr={plan.pretrain_lr}", "train.log_every=5", *row.overrides]
    if teacher is not None:
        overrides.append(f"teacher.checkpoint={teacher}")
    # a student of a retrained teacher is stale too: the teacher's own settings are part of the student's
    settings = {"config": row.config or row.method, "overrides": overrides,
                "teacher": stage_settings(teacher.parent) if teacher is not None else None}
    if not force and is_current(work_dir, settings) and backbone.is_file() and summary_path.is_file():
        return json.loads(summary_path.read_text())
    cfg = load_config(PRETRAIN_CONFIGS / f"{row.config or row.method}.yaml", overrides=overrides)
    t0 = time.perf_counter()
    stale = not force and (work_dir / STAGE_FILE).is_file()  # made with other settings: start over
    (work_dir / STAGE_FILE).unlink(missing_ok=True)  # until this run ends, an interrupted one resumes
    checkpoint = train(cfg, work_dir, resume=not (force or stale))
    wall = time.perf_counter() - t0
    records = read_log(work_dir / "train_log.jsonl")
    speeds = [r["images_per_s"] for r in records if r.get("images_per_s")]
    keep_backbone(Path(checkpoint), backbone)
    summary = {"checkpoint": str(backbone.resolve().relative_to(out.resolve())),
               "epochs": plan.pretrain_epochs, "steps": records[-1]["step"] if records else None,
               "wall_time_s": round(wall, 1),
               "images_per_s": round(sum(speeds) / len(speeds), 1) if speeds else None,
               "overrides": overrides}
    write_json(summary_path, summary)
    mark_current(work_dir, settings)
    return summary


BACKBONE = "backbone_final.pth"  # what a pretraining run keeps: its final student backbone, torchvision names


def keep_backbone(checkpoint: Path, backbone: Path) -> None:
    """Write the final checkpoint's student backbone to `backbone` and delete the run's full checkpoints.

    A full SSA checkpoint of a ResNet-18 holds the student, the frozen teacher, heads,
    queues and optimizer state (150 MB); the transfer runs need only the student
    backbone (45 MB), and `demo_out/` has a 300 MB budget.
    """
    import torch

    from transfer.checkpoint import load_backbone
    from transfer.fileio import atomic_path

    state_dict, _ = load_backbone(checkpoint)
    with atomic_path(backbone) as tmp:
        torch.save(state_dict, tmp)
    for name in ("checkpoint_final.pth", "checkpoint_last.pth"):
        (backbone.parent / name).unlink(missing_ok=True)


def random_init(out: Path, arch: str, seed: int) -> Path:
    """A torchvision `arch` at its own initialisation under `seed`: the random-init row goes through the same
    weight-loading path as every pretrained row, and each seed is a different network."""
    import torch
    import torchvision

    from transfer.fileio import atomic_path

    path = out / "pretrain" / "random" / f"{arch}_seed{seed}.pth"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(seed)
        state = {k: v for k, v in getattr(torchvision.models, arch)().state_dict().items() if not k.startswith("fc.")}
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
    return path


def transfer_task(task: str, weights: Path, work_dir: Path, data: dict[str, Path], plan: DemoPlan, seed: int,
                  args: argparse.Namespace) -> Path:
    """Run one task of tools/run_transfer.sh for one backbone (reused when it ran with the same settings)."""
    fmt = ALL_TASKS[task].data_format
    argv = [task, "--data", str(data[fmt]), "--work-dir", str(work_dir), "--seed", str(seed), "--weights", str(weights)]
    argv += ["--gpus", str(args.gpus)] if args.gpus is not None else []
    if task == "linear":
        argv += ["--max-iters", str(plan.linear_iters), "--input-size", str(plan.cls_size),
                 "linear.precompute_features=true", "linear.workers=0"]
    elif task in ("voc", "coco"):
        # a CPU-sized batch: one "GPU" of det_batch images at det_lr instead of the protocol's 8 x 2 at 0.02
        argv += ["--max-iters", str(plan.det_iters), "--input-size", str(plan.det_input), "protocol_gpus=1",
                 f"train_dataloader.batch_size={plan.det_batch}", f"optim_wrapper.optimizer.lr={plan.det_lr}",
                 f"custom_hooks.0.num_iters={plan.precise_bn_iters}",  # [0] is PreciseBNHook
                 f"model.train_cfg.rcnn.sampler.num={plan.det_rois}",
                 f"model.test_cfg.rpn.max_per_img={plan.det_proposals}"]
    else:
        argv += ["--max-iters", str(plan.seg_iters), "--input-size", str(plan.seg_input)]
    settings = {"argv": argv, "weights": stage_settings(weights.parent)}  # a retrained backbone redoes its runs
    redo = args.force or not is_current(work_dir, settings) and (work_dir / "metrics.json").is_file()
    argv += ["--force"] if redo else []
    print(f"[demo] tools/run_transfer.sh {' '.join(argv)}", flush=True)  # to the run's console.log
    run_transfer(argv)
    drop_checkpoints(work_dir)  # demo_out's 300 MB budget
    mark_current(work_dir, settings)
    return work_dir / "metrics.json"


# A stage's settings, beside its output: a stage is reused only when the plan would run it the same way
# (a changed `det_iters` or `teacher_epochs` redoes the stages it changes, and only those).
STAGE_FILE = "demo_stage.json"


def stage_settings(work_dir: Path) -> Any:
    """The settings the finished stage in `work_dir` was made with (None: none recorded)."""
    try:
        return json.loads((work_dir / STAGE_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def is_current(work_dir: Path, settings: dict[str, Any]) -> bool:
    """Whether the stage in `work_dir` was made with `settings` (False when it was never made)."""
    return stage_settings(work_dir) == json.loads(json.dumps(settings))


def mark_current(work_dir: Path, settings: dict[str, Any]) -> None:
    """Record the settings a finished stage in `work_dir` was made with."""
    write_json(work_dir / STAGE_FILE, settings)


def aggregate(paths: list[Path], task: str, work_dir: Path) -> Path:
    """One metrics.json with the mean of each figure over seeds, `<name>_std` beside it, and every seed's figures."""
    if len(paths) == 1:
        return paths[0]
    return write_average(work_dir, [json.loads(p.read_text()) for p in paths], task=task,
                         extra={"seeds": [str(p.parent.parent.name) for p in paths]})


def rows_and_seeds(plan: DemoPlan) -> tuple[list[Row], list[Row], dict[str, list[int]]]:
    """The rows asked for, the pretrainings they need (a student needs its teacher's), and each row's seeds."""
    selected = [ROW_BY_NAME[name] for name in plan.rows]
    needed = {row.teacher for row in selected} | {row.name for row in selected}
    pretrained = [row for row in ROWS if row.method is not None and row.name in needed and row.name != "teacher"]
    count = {"random": plan.random_seeds, "teacher": 1}  # one teacher: every student distils the same one
    seeds = {row.name: [plan.seed + k for k in range(count.get(row.name, plan.seeds))] for row in selected}
    if "teacher" in needed:
        seeds.setdefault("teacher", [plan.seed])
    return selected, pretrained, seeds


def demo_cost(plan: DemoPlan, selected: list[Row], pretrained: list[Row], seeds: dict[str, list[int]]) -> float:
    """The whole demo's cost in the progress bar's units (`COST`)."""
    backbones = sum(len(seeds[row.name]) for row in selected)
    return COST["data"] + COST["teacher"] * ("teacher" in seeds) + COST["report"] + \
        COST["pretrain"] * plan.seeds * len(pretrained) + backbones * sum(stage_cost(t, plan) for t in plan.tasks)


def pretrain_rows(out: Path, data: dict[str, Path], plan: DemoPlan, pretrained: list[Row],
                  seeds: dict[str, list[int]], console: Console, force: bool
                  ) -> tuple[dict[tuple[str, int], Path], dict[str, list[dict[str, Any]]]]:
    """Train the teacher (when a row needs it) and every pretrained row over its seeds: their backbones by
    (row, seed) and their pretraining summaries by row."""
    checkpoints: dict[tuple[str, int], Path] = {}
    summaries: dict[str, list[dict[str, Any]]] = {}
    if "teacher" in seeds:
        with console.stage("pretrain teacher (supervised)", COST["teacher"], out / "pretrain" / "teacher" / LOG):
            summary = train_teacher(out, data["imagefolder"], plan, force)
        summaries["teacher"] = [summary]
        for seed in seeds["teacher"]:
            checkpoints["teacher", seed] = out / summary["checkpoint"]
    teacher_ckpt = checkpoints.get(("teacher", plan.seed))
    for row in pretrained:
        for seed in [plan.seed + k for k in range(plan.seeds)]:
            work_dir = out / "pretrain" / row.name / (f"seed{seed}" if plan.seeds > 1 else "")
            teacher = teacher_ckpt if row.teacher == "teacher" else None
            name = f"pretrain {row.name}" + (f" seed {seed}" if plan.seeds > 1 else "")
            with console.stage(name, COST["pretrain"], work_dir / LOG):
                summary = pretrain(row, work_dir, out, data["imagefolder"], plan, seed, teacher, force)
            summaries.setdefault(row.name, []).append(summary)
            checkpoints[row.name, seed] = out / summary["checkpoint"]
    return checkpoints, summaries


def pretrain_summary(runs: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    """A row's pretraining column: its one run, or the first of several seeds with the mean speed and time."""
    if runs is None or len(runs) == 1:
        return None if runs is None else runs[0]
    summary = {**runs[0], "seeds": len(runs)}
    for key in ("wall_time_s", "images_per_s"):
        values = [r[key] for r in runs if r.get(key) is not None]
        summary[key] = round(statistics.fmean(values), 1) if values else None
    return summary


def transfer_row(row: Row, out: Path, data: dict[str, Path], plan: DemoPlan, seeds: list[int],
                 checkpoints: dict[tuple[str, int], Path], summary: dict[str, Any] | None, console: Console,
                 args: argparse.Namespace) -> dict[str, Any]:
    """Run every task of the plan on a row's backbones (one per seed); returns the row of the index."""
    metrics = {}
    several = len(seeds) > 1
    for task in plan.tasks:
        paths = []
        for seed in seeds:
            work_dir = out / "runs" / row.name / (f"seed{seed}" if several else "") / task
            name = f"{task} {row.name}" + (f" seed {seed}" if several else "")
            with console.stage(name, stage_cost(task, plan), work_dir / LOG):
                paths.append(transfer_task(task, checkpoints[row.name, seed], work_dir, data, plan, seed, args))
        # over several seeds, the mean goes beside the seeds' runs (one seed is its own figure): a one-seed
        # run of the same row (the default plan's, in the same work dir) keeps its runs/ROW/TASK/metrics.json
        mean_dir = out / "runs" / row.name / f"mean{len(paths)}" / task
        metrics[task] = str(aggregate(paths, task, mean_dir).relative_to(out))
    record = {"method": row.method or "random", "name": row.name,
              "label": row.label + (f" ({len(seeds)} seeds)" if several else ""),
              "teacher": row.teacher, "pretrain": summary, "metrics": metrics}
    # a row's own budget where it differs from the plan's (the table's pretraining column shows it)
    own = {item.key: item.value for item in parse_overrides(list(row.overrides))}
    budget = {key: own[f"train.{key}"] for key in ("epochs", "batch_size") if f"train.{key}" in own}
    if row.name == "teacher":
        budget = {"epochs": plan.teacher_epochs}
    if budget:
        record["budget"] = budget
    if row.method is None:  # a random init is remade from its seed in a moment: not worth 45 MB a seed
        for seed in seeds:
            checkpoints[row.name, seed].unlink(missing_ok=True)
    return record


def write_report(out: Path, plan: DemoPlan, data: dict[str, Path], rows: list[dict[str, Any]], console: Console,
                 args: argparse.Namespace) -> tuple[dict[str, Any], Path, Path]:
    """The index (with chance levels and margins over random init), its table and plot: (index, its path, table)."""
    from transfer.demo_report import chance_levels, separation, short_reasons
    from transfer.report import new_index, publish_index

    default = plan.plan == "demo" and tuple(plan.rows) == DEFAULT_ROWS
    command = " ".join(["tools/run_transfer.sh demo", *(["--work-dir", str(out)] if args.work_dir else []),
                        *args.overrides])
    chance = chance_levels(data, plan.tasks)
    index = new_index("procedural demo" + ("" if default else f" ({', '.join(plan.rows)})"),
                      "make demo" if default and not args.work_dir and not args.overrides else command, rows,
                      machine=machine_info(), procedural=True,
                      budget={"arch": plan.arch, "epochs": plan.pretrain_epochs, "batch_size": plan.batch_size,
                              "image_size": plan.cls_size, "images": plan.pretrain_images},
                      plan=dataclasses.asdict(plan), stage_times_s=console.times, chance=chance,
                      separation=separation(out, rows, chance, reasons=short_reasons(plan.plan)))
    index_path = out / plan.index
    # the default rows' table is benchmarks.md; another set of rows (index=NAME.json) gets NAME.md beside it
    default_index = plan.index == "results.json"
    table = out / ("benchmarks.md" if default_index else f"{Path(plan.index).stem}.md")
    publish_index(index_path, index, table=table,
                  plot=out / "comparison.png" if default_index else table.with_suffix(".png"))
    return index, index_path, table


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the demo end to end and write WORK_DIR/results.json, WORK_DIR/benchmarks.md and its plot."""
    plan = DemoPlan.from_overrides(list(args.overrides))
    if args.seed is not None:
        plan.seed = check_range("--seed", args.seed, 0)
    out = Path(args.work_dir or "demo_out")
    out.mkdir(parents=True, exist_ok=True)
    selected, pretrained, seeds = rows_and_seeds(plan)
    console = Console(demo_cost(plan, selected, pretrained, seeds),
                      verbose=plan.verbose or bool(getattr(args, "verbose", False)))
    console.say(f"plan {plan.plan}: rows {', '.join(plan.rows)}; tasks {', '.join(plan.tasks)}; "
                f"{sum(len(seeds[row.name]) for row in selected)} backbones; work dir {out} "
                f"(each stage's output: its {LOG})")
    with console.stage("data", COST["data"], out / "data" / LOG):
        data = make_data(out, plan, args.force)
    checkpoints, summaries = pretrain_rows(out, data, plan, pretrained, seeds, console, args.force)
    for row in selected:
        if row.method is None:
            for seed in seeds[row.name]:
                checkpoints[row.name, seed] = random_init(out, plan.arch, seed)
    rows = [transfer_row(row, out, data, plan, seeds[row.name], checkpoints, pretrain_summary(summaries.get(row.name)),
                         console, args) for row in selected]
    with console.stage("report", COST["report"]):
        index, index_path, table = write_report(out, plan, data, rows, console, args)
    total_s = time.perf_counter() - console.start
    index["stage_times_s"], index["total_time_s"] = console.times, round(total_s, 1)
    write_json(index_path, index)
    for line in separation_lines(index["separation"]):
        console.say(line)
    console.say(f"done in {total_s:.0f} s: {index_path}, {table}")
    console.close()
    return index


def separation_lines(separation: dict[str, Any]) -> list[str]:
    """The console's summary: each row's margin over random init per quantity, and whether it counts."""
    lines = []
    for quantity in separation.get("quantities", []):
        cells = [f"{r['row']} {r['margin']:+.1f}" + ("" if r["meets"] else " (short)") for r in quantity["rows"]]
        lines.append(f"{quantity['label']}: chance {quantity['chance']:.1f}, random init {quantity['random']:.1f} "
                     f"± {quantity['spread']:.1f}; margin needed {quantity['needed']:.1f}: " + ", ".join(cells))
        if quantity.get("short_reason"):
            lines.append(f"  why {quantity['label']} does not separate: {quantity['short_reason']}")
    return lines
