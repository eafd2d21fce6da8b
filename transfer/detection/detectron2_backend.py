"""Detection transfer on detectron2 (`--backend detectron2`): its own DefaultTrainer, launch and evaluators.

check the dataset -> convert the weights to a detectron2 `.pkl` -> load the
protocol YAML + KEY=VALUE overrides -> fit it to the devices, depth, schedule and
input size -> for each trial: register the datasets from --data under the
protocol's names, train with `DefaultTrainer` (resuming from the trial's last
checkpoint), evaluate with `PascalVOCDetectionEvaluator` / `COCOEvaluator` ->
WORK_DIR/metrics.json. detectron2 is imported here only, when this backend runs.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import time
from pathlib import Path
from typing import Any

from transfer.data import check_dataset, find_dataset
from transfer.detection.detectron2_config import (override_list, replace_syncbn, set_depth, set_input_size,
                                                  shorten_schedule)
from transfer.detection.detectron2_resume import make_resumable
from transfer.errors import UserError
from transfer.fileio import write_json
from transfer.results import METRICS_FILE, summarize_trials, write_metrics

CONFIG_DIR = Path(__file__).resolve().parent.parent.parent / "configs" / "detection" / "detectron2"
DEFAULT_CONFIGS = {
    "voc": CONFIG_DIR / "voc0712_faster_rcnn_R_50_C4_24k.yaml",
    "coco": CONFIG_DIR / "coco_mask_rcnn_R_50_C4_1x.yaml",
}
PROTOCOL_GPUS = 8  # SOLVER.IMS_PER_BATCH is the total batch (16) of the protocol's 8 GPUs
TRIAL_RESULT = "test_results.json"  # detectron2's evaluation results of one trial, written by rank 0
INSTALL_HINT = ("install it from its repository: pip install --no-build-isolation "
                "'git+https://github.com/facebookresearch/detectron2.git' (see README), or use --backend mmdet")
_VOC_NAME = re.compile(r"^voc_(\d{4})_(\w+)$")
_COCO_NAME = re.compile(r"^coco_(\d{4})_(\w+)$")


def say(message: str) -> None:
    """Print a progress line of the runner."""
    from transfer.engine.task import say as engine_say

    engine_say(message)


def require_detectron2() -> None:
    """Raise a UserError with install instructions when detectron2 cannot be imported."""
    try:
        import detectron2  # noqa: F401
        from detectron2 import _C  # noqa: F401  (the compiled ops: a source tree without a build has none)
    except ImportError as e:
        raise UserError(f"--backend detectron2: detectron2 is not importable ({e}); {INSTALL_HINT}") from e


def register_datasets(cfg: Any, task: str, data_root: Path) -> list[str]:
    """(Re-)register the config's train and test datasets, by their protocol names, at `data_root`.

    `voc_<year>_<split>` -> `data_root/VOC<year>` with `register_pascal_voc`;
    `coco_<year>_<split>` -> `data_root/<split><year>` and
    `data_root/annotations/instances_<split><year>.json` with `register_coco_instances`.
    detectron2 registers the same names at import under $DETECTRON2_DATASETS; those
    entries are replaced so that --data decides. Returns the names registered.
    """
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets import register_coco_instances, register_pascal_voc

    names = []
    for name in [*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST]:
        voc, coco = _VOC_NAME.match(name), _COCO_NAME.match(name)
        if (task == "voc" and not voc) or (task == "coco" and not coco):
            raise UserError(f"dataset {name!r} in the config is not a {task} name "
                            f"({'voc_<year>_<split>' if task == 'voc' else 'coco_<year>_<split>'})")
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
        if voc:
            year, split = voc.groups()
            register_pascal_voc(name, str(data_root / f"VOC{year}"), split, int(year))
        else:
            year, split = coco.groups()
            register_coco_instances(name, {}, str(data_root / "annotations" / f"instances_{split}{year}.json"),
                                    str(data_root / f"{split}{year}"))
        names.append(name)
    return names


def build_trainer_class(task: str) -> type:
    """A DefaultTrainer whose evaluator is the protocol's and whose log period suits short runs."""
    from detectron2.engine import DefaultTrainer, hooks
    from detectron2.evaluation import COCOEvaluator, PascalVOCDetectionEvaluator

    class Trainer(DefaultTrainer):
        """detectron2's DefaultTrainer with the task's evaluator, a resumable train loader and its test results."""

        def __init__(self, cfg: Any) -> None:
            self.test_results = None  # what the EvalHook's evaluation returned, once it ran
            super().__init__(cfg)
            make_resumable(self, cfg.DATALOADER.NUM_WORKERS)  # a resumed run continues as the uninterrupted one

        def build_writers(self) -> list:
            """detectron2's writers, kept for the PeriodicWriter of `build_hooks`."""
            self.writers = super().build_writers()
            return self.writers

        def test_and_keep(self) -> Any:
            """Evaluate (the EvalHook's function) and keep the results."""
            self.test_results = self.test(self.cfg, self.model)
            return self.test_results

        @classmethod
        def build_evaluator(cls, cfg, dataset_name, output_folder=None) -> Any:
            """PascalVOCDetectionEvaluator for VOC, COCOEvaluator (box and mask) for COCO."""
            if task == "voc":
                return PascalVOCDetectionEvaluator(dataset_name)
            return COCOEvaluator(dataset_name, output_dir=output_folder or str(Path(cfg.OUTPUT_DIR) / "inference"))

        def build_hooks(self) -> list:
            """DefaultTrainer's hooks; short runs print progress (loss, ETA) every tenth of the run, not every 20,
            and the EvalHook keeps its results in `test_results`."""
            built = super().build_hooks()  # (its PeriodicWriter takes its period only in the constructor: rebuilt)
            period = max(1, min(20, self.cfg.SOLVER.MAX_ITER // 10))
            for i, hook in enumerate(built):
                if isinstance(hook, hooks.PeriodicWriter):
                    built[i] = hooks.PeriodicWriter(self.writers, period=period)
                elif isinstance(hook, hooks.EvalHook):
                    built[i] = hooks.EvalHook(self.cfg.TEST.EVAL_PERIOD, self.test_and_keep)
            return built

    return Trainer


def train_and_test(cfg: Any, task: str, data_root: Path, resume: bool, result_path: Path) -> None:
    """One trial in one process (of `launch`): register data, train (resuming), evaluate; rank 0 writes results."""
    from detectron2.engine import default_setup
    from detectron2.utils import comm

    import transfer.detection.detectron2_roi_heads  # noqa: F401  (registers Res5ROIHeadsExtraNorm)

    register_datasets(cfg, task, data_root)
    default_setup(cfg, argparse.Namespace(task=task, data=str(data_root), resume=resume))
    trainer = build_trainer_class(task)(cfg)
    trainer.resume_or_load(resume=resume)
    trainer.train()
    # The EvalHook evaluates at the end of training and keeps the results (on every rank: {} off rank 0), also
    # for a run that had nothing left to train. Only if it did not run, evaluate here (on every rank).
    results = trainer.test_results
    if results is None:
        results = trainer.test(cfg, trainer.model)
    if comm.is_main_process():
        write_json(result_path, {k: {m: float(v) for m, v in d.items()} for k, d in results.items()})


def summarize(task: str, results: dict[str, dict[str, float]], mask_on: bool = False) -> dict[str, float]:
    """detectron2's evaluation results -> our metric names, in percent.

    A model that predicted nothing gets AP 0: COCOEvaluator then reports NaN for the
    boxes and leaves the masks out (it infers its tasks from the predictions).
    """
    kinds = ["bbox"] + (["segm"] if task == "coco" and mask_on else [])
    names = ("AP", "AP50", "AP75") if task == "voc" else ("AP", "AP50", "AP75", "APs", "APm", "APl")
    out = {}
    for kind in kinds:
        found = results.get(kind, {})
        for name in names:
            value = found.get(name, float("nan"))
            if math.isnan(value) and name in ("AP", "AP50", "AP75") and not any(
                    not math.isnan(v) for k, v in found.items() if k in ("AP", "AP50", "AP75")):
                value = 0.0  # nothing predicted: nothing found
            if not math.isnan(value):
                out[name if task == "voc" else f"{kind}_{name}"] = float(value)
    return out


def load_protocol_config(path: Path, overrides: list[str]) -> Any:
    """The protocol YAML (with its _BASE_) on detectron2's defaults, with KEY=VALUE overrides merged."""
    from detectron2.config import get_cfg

    import transfer.detection.detectron2_roi_heads  # noqa: F401  (the YAML names Res5ROIHeadsExtraNorm)

    if not path.is_file():
        raise UserError(f"config {path} does not exist; pass --config with an existing detectron2 YAML")
    cfg = get_cfg()
    try:
        cfg.merge_from_file(str(path))
        cfg.merge_from_list(override_list(overrides))
    except (KeyError, ValueError, AssertionError) as e:
        raise UserError(f"config {path} with overrides {overrides}: {type(e).__name__}: {e}") from e
    return cfg


def fit_config(cfg: Any, args: argparse.Namespace, gpus: int, weights: Path | None) -> tuple[Any, list[str]]:
    """Fit the config to the run: weights and depth, devices (SyncBN, device, batch), schedule, input size.

    Returns the (possibly new) config and notes saying how the run differs from the protocol.
    """
    from detectron2.engine import DefaultTrainer

    notes = []
    depth_override = next((o for o in args.overrides if o.startswith("MODEL.RESNETS.DEPTH=")), None)
    if weights is not None:
        from transfer.checkpoint import load_backbone

        arch = load_backbone(weights)[1]["arch"]
        depth = int(arch.removeprefix("resnet"))
        if depth_override and int(depth_override.split("=", 1)[1]) != depth:
            raise UserError(f"{depth_override} was asked for, but {args.weights} holds a {arch}; "
                            "drop the override or pass matching weights")
        note = set_depth(cfg, depth)
        cfg.MODEL.WEIGHTS = str(weights)
    else:
        note = set_depth(cfg, cfg.MODEL.RESNETS.DEPTH)
        cfg.MODEL.WEIGHTS = ""
        notes.append("no --weights: the model starts from random initialisation")
    if note:
        notes.append(note)
    processes = max(gpus, 1)
    if processes == 1:
        changed = replace_syncbn(cfg)
        if changed:
            notes.append(f"one process: SyncBN runs as BN ({', '.join(changed)})")
    if gpus == 0:
        cfg.MODEL.DEVICE = "cpu"
    cfg.DATALOADER.NUM_WORKERS = min(cfg.DATALOADER.NUM_WORKERS, os.cpu_count() or 1)  # 4 loaders on 2 cores thrash
    reference = cfg.SOLVER.REFERENCE_WORLD_SIZE
    if reference and reference != processes:
        # detectron2's own linear scaling: per-GPU batch kept, lr and schedule scaled
        before = (cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_ITER)
        cfg = DefaultTrainer.auto_scale_workers(cfg, processes)
        notes.append(f"{processes} process(es) instead of SOLVER.REFERENCE_WORLD_SIZE {reference}: "
                     f"batch {before[0]} -> {cfg.SOLVER.IMS_PER_BATCH}, lr {before[1]:g} -> {cfg.SOLVER.BASE_LR:g}, "
                     f"{before[2]} -> {cfg.SOLVER.MAX_ITER} iterations (linear scaling)")
    elif processes != PROTOCOL_GPUS:
        total = cfg.SOLVER.IMS_PER_BATCH
        if total % processes:
            raise UserError(f"SOLVER.IMS_PER_BATCH {total} does not split over {processes} process(es); "
                            "pass --gpus that divides it or SOLVER.IMS_PER_BATCH=N")
        notes.append(f"{processes} process(es) instead of {PROTOCOL_GPUS}: {total // processes} images each, "
                     f"total batch {total} (SOLVER.IMS_PER_BATCH is the total in detectron2)")
    if args.max_iters:
        note = shorten_schedule(cfg, args.max_iters)
        if note:
            notes.append(note)
    if args.input_size:
        notes.append(set_input_size(cfg, args.input_size))
    return cfg, notes


def run_detectron2(args: argparse.Namespace) -> dict[str, Any]:
    """Fine-tune and evaluate with detectron2; writes WORK_DIR/metrics.json and returns its record."""
    require_detectron2()
    from detectron2.engine import launch

    from transfer.engine.devices import resolve_gpus

    task = args.task
    work_dir = Path(args.work_dir or f"work_dirs/{task}_detectron2")
    metrics_path = work_dir / METRICS_FILE
    if metrics_path.is_file() and not args.force:
        say(f"{metrics_path} exists: reusing it (pass --force to run again)")
        return json.loads(metrics_path.read_text())
    if args.trials < 1:
        raise UserError(f"--trials must be >= 1 (got {args.trials})")
    gpus = resolve_gpus(args.gpus)
    data_root = find_dataset(task, args.data)
    say(f"checking the {task} dataset at {data_root}")
    check_dataset(task, data_root)
    work_dir.mkdir(parents=True, exist_ok=True)
    weights = None
    if args.weights:
        from transfer.checkpoint import ensure_converted

        weights = Path(ensure_converted(args.weights, "detectron2", work_dir / "converted"))
    config_path = Path(args.config) if args.config else DEFAULT_CONFIGS[task]

    trials, notes, iterations = [], [], None
    start = time.perf_counter()
    for trial in range(args.trials):
        cfg = load_protocol_config(config_path, list(args.overrides))
        cfg, trial_notes = fit_config(cfg, args, gpus, weights)
        # detectron2 writes its own training log as OUTPUT_DIR/metrics.json: keep it out of WORK_DIR's top level
        trial_dir = work_dir / ("detectron2" if args.trials == 1 else f"trial{trial}")
        cfg.OUTPUT_DIR = str(trial_dir)
        cfg.SEED = args.seed + trial
        cfg.freeze()
        iterations = cfg.SOLVER.MAX_ITER
        if trial == 0:
            notes = trial_notes
            for note in notes:
                say(note)
        say(f"trial {trial + 1}/{args.trials}: {task} with {config_path.name}, {iterations} iterations, "
            f"{'CPU' if gpus == 0 else f'{gpus} GPU(s)'}, output {trial_dir}")
        result_path = trial_dir / TRIAL_RESULT
        result_path.unlink(missing_ok=True)
        launch(train_and_test, max(gpus, 1), dist_url="auto",
               args=(cfg, task, data_root, not (args.no_resume or args.force), result_path))  # --force: fresh
        if not result_path.is_file():
            raise RuntimeError(f"detectron2 finished without writing {result_path}")
        trials.append(summarize(task, json.loads(result_path.read_text()), mask_on=cfg.MODEL.MASK_ON))
        say(f"trial {trial + 1}/{args.trials} done: " + ", ".join(f"{k} {v:.2f}" for k, v in trials[-1].items()))

    summary = summarize_trials(trials)
    metrics = {k: v["mean"] for k, v in summary.items()}
    if args.trials > 1:
        metrics.update({f"{k}_std": v["std"] for k, v in summary.items()})
    path = write_metrics(work_dir, task=task, backend="detectron2", metrics=metrics, config=str(config_path),
                         weights=args.weights, iterations=iterations, trials=trials if args.trials > 1 else None,
                         extra={"notes": notes, "gpus": gpus, "seed": args.seed, "overrides": list(args.overrides),
                                "converted_weights": str(weights) if weights else None,
                                "wall_time_s": round(time.perf_counter() - start, 1)})
    say(f"metrics written to {path}")
    return json.loads(path.read_text())
