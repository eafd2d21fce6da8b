"""`tools/run_transfer.sh linear`: linear probe (MoCo protocol) and kNN of a frozen backbone on an ImageFolder.

Writes WORK_DIR/metrics.json with `top1`, `top5` (linear probe on val) and
`knn_top1` (weighted kNN, k=20, T=0.07, train features as the memory), in percent.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import torch
from torchvision.datasets import ImageFolder

from transfer.classification import linear
from transfer.classification.features import extract_features, load_frozen_backbone
from transfer.classification.knn import knn_accuracy
from transfer.classification.transforms import train_transform, val_transform
from transfer.data import check_dataset, find_dataset
from transfer.errors import UserError
from transfer.fileio import sha256_file
from transfer.pretrain.config import REPO, apply_overrides, read_yaml_config
from transfer.pretrain.distributed import Processes, close_processes, init_processes
from transfer.pretrain.views import center_crop_size
from transfer.results import METRICS_FILE, summarize_trials, write_metrics

DEFAULT_CONFIG = REPO / "configs" / "classification" / "linear_moco.yaml"


class _FolderWithClasses(ImageFolder):
    """An ImageFolder split that uses the train split's class indices (val may lack some classes)."""

    def __init__(self, root: str, class_to_idx: dict[str, int], transform: Any):
        self._fixed = class_to_idx
        super().__init__(root, transform=transform)

    def find_classes(self, directory: str | os.PathLike) -> tuple[list[str], dict[str, int]]:
        present = {d.name for d in os.scandir(directory) if d.is_dir()}
        return sorted(present, key=self._fixed.__getitem__), {c: self._fixed[c] for c in present}


def load_linear_config(path: str | os.PathLike | None, overrides: list[str], input_size: int | None) -> dict[str, Any]:
    """The protocol config (or `path`), with key=value overrides and `--input-size S` (crop S, resize S*256/224)."""
    cfg = apply_overrides(read_yaml_config(path or DEFAULT_CONFIG), overrides)
    if input_size:
        cfg["linear"]["crop_size"] = int(input_size)
        cfg["linear"]["resize_size"] = center_crop_size(int(input_size))
    return cfg


def _gpus(requested: int | None) -> int:
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if requested is None:
        return min(visible, 1)  # one GPU by default: the frozen backbone makes the probe cheap; --gpus N for more
    if requested < 0 or requested > visible:
        raise UserError(f"--gpus {requested}: {visible} GPU(s) are visible; pass --gpus 0 for the CPU")
    return requested


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Evaluate `args.weights` by linear probe and kNN on `args.data`; write and return WORK_DIR/metrics.json."""
    work_dir = Path(args.work_dir or "work_dirs/linear")
    metrics_path = work_dir / METRICS_FILE
    if metrics_path.is_file() and not args.force:
        print(f"{metrics_path} exists: skipping (pass --force to run again)", flush=True)
        return json.loads(metrics_path.read_text())
    if getattr(args, "backend", None) not in (None, "torch"):
        raise UserError(f"--backend {args.backend}: linear evaluation runs on torch only")
    cfg = load_linear_config(args.config, list(args.overrides or []), args.input_size)
    root = find_dataset("imagefolder", args.data)
    check_dataset("imagefolder", root)
    if args.weights and not Path(args.weights).is_file():
        raise UserError(f"--weights {args.weights} does not exist")
    gpus = _gpus(args.gpus)
    if gpus > 1:
        from transfer.engine.launch import relaunch_with_torchrun

        relaunch_with_torchrun(gpus)  # replaces this process unless already under torchrun
    procs = init_processes(use_gpu=gpus > 0)
    try:
        return _run(args, cfg, root, work_dir, procs)
    finally:
        close_processes()


def _run(args: argparse.Namespace, cfg: dict[str, Any], root: Path, work_dir: Path, procs: Processes) -> dict[str, Any]:
    """The body of `run` once the processes are set up."""
    say = (lambda text: print(text, flush=True)) if procs.is_main else (lambda text: None)
    if procs.is_main:
        work_dir.mkdir(parents=True, exist_ok=True)
    lin = cfg["linear"]
    amp = procs.device.type == "cuda"
    backbone, info = load_frozen_backbone(args.weights, cfg["model"]["arch"])
    backbone.to(procs.device)
    if amp:
        backbone.to(memory_format=torch.channels_last)
    crop, resize = lin["crop_size"], lin["resize_size"]
    train_aug = ImageFolder(str(root / "train"), transform=train_transform(crop))
    classes = train_aug.class_to_idx
    train_plain = _FolderWithClasses(str(root / "train"), classes, val_transform(crop, resize))
    val_set = _FolderWithClasses(str(root / "val"), classes, val_transform(crop, resize))
    num_classes = len(classes)
    say(f"linear: {info['arch']} from {args.weights or 'random init'} ({info.get('source')}); "
        f"{len(train_aug)} train / {len(val_set)} val images, {num_classes} classes, crop {crop} (resize {resize}); "
        f"{procs.world_size} process(es) on {procs.device.type}"
        f"{'; precomputed features (fast option, no augmentation)' if lin['precompute_features'] else ''}")

    batch_total = int(lin["batch_size"])
    if batch_total % procs.world_size:
        raise UserError(f"linear.batch_size {batch_total} does not split over {procs.world_size} processes")
    batch = batch_total // procs.world_size
    workers = int(lin["workers"])
    need_plain = cfg["knn"]["enabled"] or lin["precompute_features"]
    train_f = train_l = None
    if need_plain:
        train_f, train_l = extract_features(backbone, train_plain, procs, batch, workers, amp)
        val_f, val_l = extract_features(backbone, val_set, procs, batch, workers, amp)
    knn_top1 = None
    if cfg["knn"]["enabled"]:
        knn_top1 = knn_accuracy(train_f, train_l, val_f, val_l, num_classes, cfg["knn"]["k"], cfg["knn"]["temperature"])
        say(f"kNN (k={cfg['knn']['k']}, T={cfg['knn']['temperature']}): top-1 {knn_top1:.2f}")

    iters_per_epoch = -(-len(train_aug) // batch_total)
    weights_sha = sha256_file(args.weights) if args.weights else None
    trial_metrics = []
    for trial in range(max(1, args.trials)):
        seed = args.seed + trial
        trial_dir = work_dir if args.trials <= 1 else work_dir / f"trial{trial}"
        if procs.is_main:
            trial_dir.mkdir(parents=True, exist_ok=True)
        if lin["precompute_features"]:
            batches = linear._FeatureBatches(train_f, train_l, procs, batch, seed)

            def evaluate(fc: torch.nn.Module) -> dict[str, float]:
                return linear.evaluate_features(fc, val_f, val_l)
        else:
            batches = linear._ImageBatches(backbone, train_aug, procs, batch, workers, seed, amp)

            def evaluate(fc: torch.nn.Module) -> dict[str, float]:
                return linear.evaluate_images(backbone, fc, val_set, procs, batch, workers, amp)
        identity = {"weights_sha256": weights_sha, "arch": info["arch"], "config": cfg, "seed": seed,
                    "max_iters": args.max_iters, "world_size": procs.world_size}
        result = linear.train_linear(in_dim=backbone.out_channels, num_classes=num_classes, cfg=cfg, procs=procs,
                                     work_dir=trial_dir, iters_per_epoch=iters_per_epoch, batches=batches,
                                     evaluate=evaluate, max_iters=args.max_iters, resume=not args.no_resume,
                                     seed=seed, identity=identity, say=say)
        if knn_top1 is not None:
            result["knn_top1"] = knn_top1
        say(f"trial {trial} (seed {seed}): top-1 {result['top1']:.2f}, top-5 {result['top5']:.2f}")
        trial_metrics.append(result)

    total_iters, _ = linear.schedule(lin["epochs"], iters_per_epoch, lin["milestones"], args.max_iters)
    if len(trial_metrics) > 1:
        summary = summarize_trials(trial_metrics)
        metrics = {k: v["mean"] for k, v in summary.items()}
        metrics.update({f"{k}_std": v["std"] for k, v in summary.items()})
    else:
        metrics = dict(trial_metrics[0])
    extra = {"arch": info["arch"], "weights_source": info.get("source"), "num_classes": num_classes,
             "num_train": len(train_aug), "num_val": len(val_set), "crop_size": crop, "resize_size": resize,
             "protocol": "fast: precomputed features, no augmentation" if lin["precompute_features"]
             else "MoCo main_lincls", "linear_config": cfg, "world_size": procs.world_size}
    if procs.is_main:
        write_metrics(work_dir, task="linear", backend="torch", metrics=metrics,
                      config=str(args.config or DEFAULT_CONFIG), weights=args.weights, iterations=total_iters,
                      trials=trial_metrics if len(trial_metrics) > 1 else None, extra=extra)
        say(f"wrote {work_dir / METRICS_FILE}: " + ", ".join(f"{k} {v:.2f}" for k, v in metrics.items()))
    return json.loads((work_dir / METRICS_FILE).read_text()) if procs.is_main else {"metrics": metrics}
