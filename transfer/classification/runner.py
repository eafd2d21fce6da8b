"""`tools/run_transfer.sh linear`: linear probe (MoCo protocol) and kNN of a frozen backbone on an ImageFolder.

The torch adapter of the runner skeleton (`transfer.engine.runner`). Reports `top1`, `top5`
(linear probe on val) and `knn_top1` (weighted kNN, k=20, T=0.07, train features as the memory),
in percent.
"""
from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torchvision.datasets import ImageFolder

from transfer.classification import linear
from transfer.classification.adapter import CONFIGS, TorchAdapter, load_protocol_config
from transfer.classification.features import extract_features
from transfer.classification.knn import knn_accuracy
from transfer.classification.transforms import train_transform, val_transform
from transfer.data import check_command, image_loader
from transfer.engine.runner import Run, run_task, say
from transfer.errors import UserError
from transfer.fileio import sha256_file
from transfer.overrides import Override

DEFAULT_CONFIG = CONFIGS / "linear_moco.yaml"


class FolderWithClasses(ImageFolder):
    """An ImageFolder split that uses the train split's class indices (val may lack some classes)."""

    def __init__(self, root: str, class_to_idx: dict[str, int], transform: Any, loader: Any):
        self._fixed = class_to_idx
        super().__init__(root, transform=transform, loader=loader)

    def find_classes(self, directory: str | os.PathLike) -> tuple[list[str], dict[str, int]]:
        present = {d.name for d in os.scandir(directory) if d.is_dir()}
        return sorted(present, key=self._fixed.__getitem__), {c: self._fixed[c] for c in present}


def load_linear_config(path: str | os.PathLike | None, overrides: Sequence[str | Override],
                       input_size: int | None) -> dict[str, Any]:
    """The protocol config (or `path`), typed key=value overrides, `--input-size S` (crop S, resize S*256/224)."""
    return load_protocol_config(path or DEFAULT_CONFIG, overrides, input_size, "linear")


class LinearAdapter(TorchAdapter):
    """The frozen backbone's features, kNN once, and one linear probe per trial, in torch (gloo/NCCL under torchrun)."""

    data_format = "imagefolder"

    def __init__(self, task: str = "linear"):
        super().__init__(task, DEFAULT_CONFIG, "linear")

    def prepare(self, cfg: dict[str, Any], run: Run) -> dict[str, Any]:
        """Backbone, datasets, features and kNN: what every trial shares."""
        procs, lin = self.procs, cfg["linear"]
        backbone, info, amp = self.frozen_backbone(run, cfg["model"]["arch"])
        crop, resize = lin["crop_size"], lin["resize_size"]
        root = run.data_root
        if not (root / "val").is_dir():
            raise UserError(f"{root / 'val'} does not exist: the linear probe is tested on the val split "
                            f"(expected {root}/val/<class>/<image>)")
        load = image_loader(check_command("imagefolder", root))  # a bad image mid-run: one line naming the file
        train_aug = ImageFolder(str(root / "train"), transform=train_transform(crop), loader=load)
        classes = train_aug.class_to_idx
        train_plain = FolderWithClasses(str(root / "train"), classes, val_transform(crop, resize), load)
        val_set = FolderWithClasses(str(root / "val"), classes, val_transform(crop, resize), load)
        notes = [f"linear probe of {info['arch']} from {run.args.weights or 'random init'} ({info.get('source')}); "
                 f"{len(train_aug)} train / {len(val_set)} val images, {len(classes)} classes, crop {crop} "
                 f"(resize {resize}); "
                 + ("fast option: precomputed features, no augmentation" if lin["precompute_features"]
                    else "MoCo main_lincls protocol")]
        batch_total = int(lin["batch_size"])
        if batch_total % procs.world_size:
            raise UserError(f"linear.batch_size {batch_total} does not split over {procs.world_size} processes")
        batch = batch_total // procs.world_size
        workers = int(lin["workers"])
        features = None
        if cfg["knn"]["enabled"] or lin["precompute_features"]:
            features = (*extract_features(backbone, train_plain, procs, batch, workers, amp),
                        *extract_features(backbone, val_set, procs, batch, workers, amp))
        knn_top1 = None
        if cfg["knn"]["enabled"]:
            knn_top1 = knn_accuracy(*features, len(classes), cfg["knn"]["k"], cfg["knn"]["temperature"])
            say(f"kNN (k={cfg['knn']['k']}, T={cfg['knn']['temperature']}): top-1 {knn_top1:.2f}")
        return {"backbone": backbone, "info": info, "amp": amp, "train_aug": train_aug, "val_set": val_set,
                "num_classes": len(classes), "batch": batch, "batch_total": batch_total, "workers": workers,
                "features": features, "knn_top1": knn_top1, "notes": notes,
                "iters_per_epoch": -(-len(train_aug) // batch_total),
                "weights_sha": sha256_file(run.weights) if run.weights else None}

    def iterations(self, cfg: dict[str, Any]) -> int:
        """Iterations of the probe's schedule (epochs x iterations per epoch, or --max-iters)."""
        lin = cfg["linear"]
        return linear.schedule(lin["epochs"], self.state["iters_per_epoch"], lin["milestones"],
                               self.max_iters)[0]

    def run_trial(self, cfg: dict[str, Any], run: Run, trial_dir: Path, seed: int, resume: bool) -> dict[str, float]:
        """Train the linear probe with `seed` (resuming from trial_dir's probe checkpoint) and evaluate it."""
        st, procs, lin = self.state, self.procs, cfg["linear"]
        backbone, amp, batch, workers = st["backbone"], st["amp"], st["batch"], st["workers"]
        if procs.is_main:
            trial_dir.mkdir(parents=True, exist_ok=True)
        if lin["precompute_features"]:
            train_f, train_l, val_f, val_l = st["features"]
            batches = linear.FeatureBatches(train_f, train_l, procs, batch, seed)

            def evaluate(fc: torch.nn.Module) -> dict[str, float]:
                return linear.evaluate_features(fc, val_f, val_l)
        else:
            batches = linear.ImageBatches(backbone, st["train_aug"], procs, batch, workers, seed, amp)

            def evaluate(fc: torch.nn.Module) -> dict[str, float]:
                return linear.evaluate_images(backbone, fc, st["val_set"], procs, batch, workers, amp)
        identity = {"weights_sha256": st["weights_sha"], "arch": st["info"]["arch"], "config": cfg, "seed": seed,
                    "max_iters": run.args.max_iters, "world_size": procs.world_size}
        result = linear.train_linear(in_dim=backbone.out_channels, num_classes=st["num_classes"], cfg=cfg, procs=procs,
                                     work_dir=trial_dir, iters_per_epoch=st["iters_per_epoch"], batches=batches,
                                     evaluate=evaluate, max_iters=run.args.max_iters, resume=resume, seed=seed,
                                     identity=identity, say=say)
        if st["knn_top1"] is not None:
            result["knn_top1"] = st["knn_top1"]
        return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Evaluate `args.weights` by linear probe and kNN on `args.data`; write and return WORK_DIR/metrics.json."""
    return run_task(args, LinearAdapter())
