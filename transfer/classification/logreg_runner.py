"""`tools/run_transfer.sh manyshot_logreg`: Ericsson et al.'s many-shot logistic regression on frozen features.

Features of train, val and test (centre crops, `configs/classification/manyshot_logreg.yaml`)
are extracted once per run; each trial searches lambda on val, refits on train + val and
reports `top1` (or `mean_per_class_acc`) on test in percent, and `log10_lambda`, the chosen lambda. The fit
is deterministic: trials repeat one result.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.datasets import ImageFolder

from transfer.classification.adapter import CONFIGS, TorchAdapter, cached_trial
from transfer.classification.features import extract_features
from transfer.classification.logreg import METRICS, logreg_protocol
from transfer.classification.runner import FolderWithClasses
from transfer.classification.transforms import val_transform
from transfer.data import check_command, image_loader
from transfer.engine.runner import Run, run_task, say
from transfer.errors import UserError
from transfer.fileio import sha256_file

CONFIG = CONFIGS / "manyshot_logreg.yaml"
RESULT_FILE = "logreg_result.json"
METRIC_NAMES = {"accuracy": "top1", "mean_per_class_accuracy": "mean_per_class_acc"}


def carve_validation(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, val) indices of a train split without a val split: Ericsson et al.'s `get_train_valid_loader`,
    `np.random.seed(seed); np.random.shuffle(indices)`, the first floor(fraction * n) as val."""
    indices = list(range(n))
    np.random.RandomState(seed).shuffle(indices)
    split = int(np.floor(fraction * n))
    return indices[split:], indices[:split]


class LogRegAdapter(TorchAdapter):
    """Frozen features of the three splits once, then the lambda search and the test score per trial."""

    data_format = "imagefolder"

    def __init__(self, task: str = "manyshot_logreg"):
        super().__init__(task, CONFIG, "features")

    def adjust(self, cfg: dict[str, Any], run: Run) -> None:
        """A known metric; --max-iters caps the L-BFGS iterations of each fit."""
        if cfg["logreg"]["metric"] not in METRICS:
            raise UserError(f"logreg.metric={cfg['logreg']['metric']}: expected one of {', '.join(METRICS)}")
        if run.args.max_iters is not None:
            cfg["logreg"]["max_iter"] = int(run.args.max_iters)

    def prepare(self, cfg: dict[str, Any], run: Run) -> dict[str, Any]:
        """Pooled features of train, val (or the carved part of train) and test."""
        feat, lr = cfg["features"], cfg["logreg"]
        root = run.data_root
        has_val, has_test = (root / "val").is_dir(), (root / "test").is_dir()
        test_split = "test" if has_test else "val"
        backbone, info, amp = self.frozen_backbone(run, cfg["model"]["arch"])
        transform = val_transform(feat["crop_size"], feat["resize_size"], feat["interpolation"])
        load = image_loader(check_command("imagefolder", root))  # a bad image mid-run: one line naming the file
        train_set = ImageFolder(str(root / "train"), transform=transform, loader=load)
        classes = train_set.class_to_idx
        batch = max(1, int(feat["batch_size"]) // self.procs.world_size)

        def features(dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
            f, labels = extract_features(backbone, dataset, self.procs, batch, int(feat["workers"]), amp)
            return f.cpu(), labels.cpu()

        train = features(train_set)
        test = features(FolderWithClasses(str(root / test_split), classes, transform, load))
        if has_val and has_test:
            val = features(FolderWithClasses(str(root / "val"), classes, transform, load))
            split_note = "val split: val/"
        else:
            keep, held = carve_validation(len(train[1]), float(lr["val_fraction"]), int(lr["val_seed"]))
            if not held or not keep:
                raise UserError(f"{root / 'train'}: {len(train[1])} images are too few to carve a validation "
                                f"split of {lr['val_fraction']:g}; add images or a val/ split")
            val, train = (train[0][held], train[1][held]), (train[0][keep], train[1][keep])
            split_note = (f"no val/ split: val is {len(held)} of train's images (fraction {lr['val_fraction']:g}, "
                          f"seed {lr['val_seed']}), train + val is all of train"
                          + ("" if has_test else "; no test/ split: val/ is the test split"))
        notes = [f"{self.task} of {info['arch']} from {run.args.weights or 'random init'} ({info.get('source')}); "
                 f"{len(train[1])} train / {len(val[1])} val / {len(test[1])} test ({test_split}/) images, "
                 f"{len(classes)} classes, {backbone.out_channels}-d pooled features, crop {feat['crop_size']} "
                 f"(resize {feat['resize_size']}, {feat['interpolation']}); {split_note}"]
        return {"splits": (train, val, test), "num_classes": len(classes), "info": info, "notes": notes,
                "weights_sha": sha256_file(run.weights) if run.weights else None}

    def iterations(self, cfg: dict[str, Any]) -> int:
        """The L-BFGS iterations allowed per fit (`logreg.max_iter`, or --max-iters)."""
        return int(cfg["logreg"]["max_iter"])

    def run_trial(self, cfg: dict[str, Any], run: Run, trial_dir: Path, seed: int, resume: bool) -> dict[str, float]:
        """The lambda search and test score (read back from trial_dir when resuming the same run)."""
        st, lr = self.state, cfg["logreg"]
        low, high = (float(v) for v in lr["lambda_log10_range"])
        lambdas = torch.logspace(low, high, int(lr["lambda_count"]), dtype=torch.float64).tolist()
        identity = {"weights_sha256": st["weights_sha"], "arch": st["info"]["arch"], "config": cfg}

        def compute() -> dict[str, Any]:
            out = logreg_protocol(*st["splits"], st["num_classes"], lambdas, lr["metric"], int(lr["max_iter"]),
                                  self.procs.device, say=say)
            return {"metrics": {METRIC_NAMES[lr["metric"]]: out["test"], "log10_lambda": math.log10(out["lambda"])},
                    "val": dict(zip(map(str, lambdas), out["val"]))}

        return cached_trial(trial_dir / RESULT_FILE, identity, resume, self.procs, compute)["metrics"]


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Evaluate `args.weights` by many-shot logistic regression on `args.data`; writes WORK_DIR/metrics.json."""
    return run_task(args, LogRegAdapter(args.task))
