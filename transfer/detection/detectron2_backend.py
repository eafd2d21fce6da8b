"""Detection transfer on detectron2 (`--backend detectron2`): the adapter of the runner skeleton.

The skeleton (`transfer.engine.runner`) checks the flags and the dataset and converts the
weights to a detectron2 `.pkl`; this adapter loads the protocol YAML on detectron2's defaults,
applies the typed KEY=VALUE overrides (`transfer.overrides`, checked against the CfgNode's
defaults), fits it to the devices, depth, schedule and input size, and for each trial registers
the datasets from --data under the protocol's names, trains with `DefaultTrainer` (resuming from
the trial's last checkpoint) in detectron2's own `launch`, and evaluates with
`PascalVOCDetectionEvaluator` / `COCOEvaluator`. detectron2 is imported here only, when this backend runs.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
from pathlib import Path
from typing import Any

from transfer.detection.detectron2_config import (add_config_keys, replace_syncbn, set_depth, set_input_size,
                                                  shorten_schedule)
from transfer.data import check_command, guard_mapper
from transfer.detection.detectron2_resume import make_resumable
from transfer.engine.runner import Adapter, Run
from transfer.errors import UserError
from transfer.fileio import write_json
from transfer.overrides import Override, apply_overrides, last_value

CONFIG_DIR = Path(__file__).resolve().parent.parent.parent / "configs" / "detection" / "detectron2"
TRAIN_LOG = "train_log.json"  # detectron2's JSONWriter log (its own default name, metrics.json, is our results file)
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


def build_trainer_class(task: str, hint: str | None = None) -> type:
    """A DefaultTrainer whose evaluator is the protocol's and whose log period suits short runs; `hint` is the
    command that finds every unreadable image (said when one is met)."""
    from detectron2.engine import DefaultTrainer, hooks
    from detectron2.evaluation import COCOEvaluator, PascalVOCDetectionEvaluator

    class Trainer(DefaultTrainer):
        """detectron2's DefaultTrainer with the task's evaluator, a resumable train loader and its test results."""

        def __init__(self, cfg: Any) -> None:
            self.test_results = None  # what the EvalHook's evaluation returned, once it ran
            super().__init__(cfg)
            make_resumable(self, cfg.DATALOADER.NUM_WORKERS)  # a resumed run continues as the uninterrupted one

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

        def build_writers(self) -> list:
            """detectron2's default writers, its JSON log named TRAIN_LOG instead of metrics.json; kept for the
            PeriodicWriter of `build_hooks`."""
            from detectron2.utils.events import CommonMetricPrinter, JSONWriter, TensorboardXWriter

            self.writers = [CommonMetricPrinter(self.max_iter),
                            JSONWriter(os.path.join(self.cfg.OUTPUT_DIR, TRAIN_LOG)),
                            TensorboardXWriter(self.cfg.OUTPUT_DIR)]
            return self.writers

        @classmethod
        def build_train_loader(cls, cfg: Any) -> Any:
            """detectron2's train loader, an image that cannot be decoded raising BadImageError naming the file."""
            from detectron2.data import DatasetMapper, build_detection_train_loader

            return build_detection_train_loader(cfg, mapper=guard_mapper(DatasetMapper(cfg, True), hint))

        @classmethod
        def build_test_loader(cls, cfg: Any, dataset_name: str) -> Any:
            """detectron2's test loader, guarded like the train loader."""
            from detectron2.data import DatasetMapper, build_detection_test_loader

            return build_detection_test_loader(cfg, dataset_name, mapper=guard_mapper(DatasetMapper(cfg, False), hint))

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
    trainer = build_trainer_class(task, check_command(task, data_root))(cfg)
    trainer.resume_or_load(resume=resume)
    trainer.train()
    # The EvalHook evaluates at the end of training and keeps the results (on every rank: {} off rank 0), also
    # for a run that had nothing left to train. Only if it did not run, evaluate here (on every rank).
    results = trainer.test_results
    if results is None:
        results = trainer.test(cfg, trainer.model)
    if comm.is_main_process():
        if task == "voc":
            results["bbox"].update(present_class_means(results["bbox"], cfg.DATASETS.TEST[0], data_root))
        write_json(result_path, {k: {m: float(v) for m, v in d.items()} for k, d in results.items()})


def present_class_means(results: dict[str, float], dataset: str, data_root: Path) -> dict[str, float]:
    """AP, AP50 and AP75 over the classes with ground truth in the VOC test set `dataset` (e.g. voc_2007_test),
    from PascalVOCDetectionEvaluator's means over all 20 classes: a class without ground truth scores AP 0 there
    (its recall is undefined, so no recall level is reached), so the mean over the present ones is the
    all-class mean times 20 / present; `classes_present` says how many (as the mmdet metric reports them)."""
    from transfer.data.voc import VOC_CLASSES, classes_present

    year, split = _VOC_NAME.match(dataset).groups()
    present = len(classes_present(data_root, year, split))
    scale = len(VOC_CLASSES) / present if present else 0.0
    out = {f"{name}_present": results[name] * scale for name in ("AP", "AP50", "AP75") if name in results}
    return {**out, "classes_present": float(present)}


def summarize(task: str, results: dict[str, dict[str, float]], mask_on: bool = False) -> dict[str, float]:
    """detectron2's evaluation results -> our metric names, in percent.

    A model that predicted nothing gets AP 0: COCOEvaluator then reports NaN for the
    boxes and leaves the masks out (it infers its tasks from the predictions).
    """
    kinds = ["bbox"] + (["segm"] if task == "coco" and mask_on else [])
    names = ("AP", "AP50", "AP75", "AP_present", "AP50_present", "AP75_present", "classes_present") \
        if task == "voc" else ("AP", "AP50", "AP75", "APs", "APm", "APl")
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


def load_protocol_config(path: Path, overrides: list[str | Override]) -> Any:
    """The protocol YAML (with its _BASE_) on detectron2's defaults, with typed KEY=VALUE overrides applied.

    The overrides go through `transfer.overrides` (our value syntax; keys and types checked
    against the CfgNode's defaults), not yacs' own parser.
    """
    from detectron2.config import get_cfg

    import transfer.detection.detectron2_roi_heads  # noqa: F401  (the YAML names Res5ROIHeadsExtraNorm)

    if not path.is_file():
        raise UserError(f"config {path} does not exist; pass --config with an existing detectron2 YAML")
    cfg = get_cfg()
    add_config_keys(cfg)
    try:
        cfg.merge_from_file(str(path))
    except (KeyError, ValueError, AssertionError) as e:
        raise UserError(f"config {path}: {type(e).__name__}: {e}") from e
    apply_overrides(cfg, overrides)
    return cfg


def fit_config(cfg: Any, run: Run) -> Any:
    """Fit the config to the run: weights and depth, devices (SyncBN, device, batch), schedule, input size.

    Returns the (possibly new) config; notes saying how the run differs from the protocol go to `run.notes`.
    """
    from detectron2.engine import DefaultTrainer

    args, gpus, notes = run.args, run.gpus, run.notes
    depth_override = last_value(run.overrides, "MODEL.RESNETS.DEPTH")
    if run.weights is not None:
        from transfer.checkpoint import load_backbone

        arch = load_backbone(run.weights)[1]["arch"]
        depth = int(arch.removeprefix("resnet"))
        if depth_override is not None and int(depth_override) != depth:
            raise UserError(f"MODEL.RESNETS.DEPTH={depth_override} was asked for, but {args.weights} holds a {arch}; "
                            "drop the override or pass matching weights")
        note = set_depth(cfg, depth)
        cfg.MODEL.WEIGHTS = str(run.weights)
    else:
        note = set_depth(cfg, cfg.MODEL.RESNETS.DEPTH)
        cfg.MODEL.WEIGHTS = ""
        notes.append("no --weights: the model starts from random initialisation")
    run.arch = f"resnet{cfg.MODEL.RESNETS.DEPTH}"
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
    if args.max_iters is not None:
        note = shorten_schedule(cfg, args.max_iters)
        if note:
            notes.append(note)
    if args.input_size is not None:
        notes.append(set_input_size(cfg, args.input_size))
    return cfg


class Detectron2Adapter(Adapter):
    """detectron2's DefaultTrainer as the skeleton's engine, in processes of its own `launch`."""

    backend = "detectron2"
    backends = ("mmdet", "detectron2")
    weights_format = "detectron2"
    min_input_size = 32
    own_launcher = True

    def __init__(self, task: str):
        super().__init__(task)
        self.data_format = task

    def default_config(self) -> Path:
        """The task's protocol YAML."""
        return DEFAULT_CONFIGS[self.task]

    def setup(self, run: Run) -> None:
        """detectron2 must be importable, with its compiled ops."""
        require_detectron2()

    def check_overrides(self, config_path: Path, overrides: list[Override]) -> None:
        """detectron2 is importable, and its config file loads and takes the overrides."""
        require_detectron2()
        load_protocol_config(config_path, overrides)

    def build_config(self, config_path: Path, run: Run) -> Any:
        """The protocol YAML with the overrides, fitted to the run."""
        require_detectron2()
        return fit_config(load_protocol_config(config_path, run.overrides), run)

    def iterations(self, cfg: Any) -> int:
        """SOLVER.MAX_ITER."""
        return int(cfg.SOLVER.MAX_ITER)

    def run_trial(self, cfg: Any, run: Run, trial_dir: Path, seed: int, resume: bool) -> dict[str, float]:
        """Train and evaluate one trial in detectron2's `launch` (one process per GPU, one on the CPU)."""
        from detectron2.engine import launch

        cfg.OUTPUT_DIR = str(trial_dir)
        cfg.SEED = seed
        cfg.freeze()
        result_path = trial_dir / TRIAL_RESULT
        result_path.unlink(missing_ok=True)
        launch(train_and_test, max(run.gpus, 1), dist_url="auto",
               args=(cfg, self.task, run.data_root, resume, result_path))
        if not result_path.is_file():
            raise RuntimeError(f"detectron2 finished without writing {result_path}")
        return summarize(self.task, json.loads(result_path.read_text()), mask_on=cfg.MODEL.MASK_ON)
