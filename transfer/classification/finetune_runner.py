"""`tools/run_transfer.sh semisup_1pct` / `semisup_10pct`: full fine-tuning on a label subset of an ImageFolder.

The torch adapter of the runner skeleton for `finetune.py`: each trial loads the backbone
afresh, fine-tunes it with an fc on the subset file's train images (`finetune.subset`,
SimCLR's format, relative to the dataset folder) and reports `top1` / `top5` on val, in percent.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from torchvision.datasets import ImageFolder

from transfer.classification import linear
from transfer.classification.adapter import CONFIGS, TorchAdapter
from transfer.classification.features import load_frozen_backbone
from transfer.classification.finetune import FineTuned, finetune, read_subset
from transfer.classification.runner import FolderWithClasses
from transfer.classification.transforms import train_transform, val_transform
from transfer.data import check_command, image_loader
from transfer.engine.runner import Run, run_task, say
from transfer.errors import UserError
from transfer.fileio import sha256_file

CONFIG = {"semisup_1pct": CONFIGS / "semisup_1pct.yaml", "semisup_10pct": CONFIGS / "semisup_10pct.yaml",
          "finetune_full": CONFIGS / "finetune_full.yaml"}


class FinetuneAdapter(TorchAdapter):
    """The subset and datasets once; per trial the backbone + fc fine-tuned from the weights and tested on val."""

    data_format = "imagefolder"

    def __init__(self, task: str):
        super().__init__(task, CONFIG[task], "finetune")

    def prepare(self, cfg: dict[str, Any], run: Run) -> dict[str, Any]:
        """Train (augmented) and val datasets, the subset's indices, the batch per process."""
        ft, root = cfg["finetune"], run.data_root
        if not (root / "val").is_dir():
            raise UserError(f"{root / 'val'} does not exist: fine-tuning is tested on the val split "
                            f"(expected {root}/val/<class>/<image>)")
        load = image_loader(check_command("imagefolder", root))  # a bad image mid-run: one line naming the file
        train_set = ImageFolder(str(root / "train"), transform=train_transform(ft["crop_size"]), loader=load)
        val_set = FolderWithClasses(str(root / "val"), train_set.class_to_idx,
                                    val_transform(ft["crop_size"], ft["resize_size"]), load)
        if not ft["subset"]:
            subset = list(range(len(train_set)))  # all labels
        else:
            subset = read_subset(root / ft["subset"], train_set.samples, root / "train")
        batch_total = int(ft["batch_size"])
        if batch_total % self.procs.world_size:
            raise UserError(f"finetune.batch_size {batch_total} does not split over {self.procs.world_size} processes")
        notes = [f"{self.task}: full fine-tuning from {run.args.weights or 'random init'} on "
                 f"{len(subset)} of {len(train_set)} train images ({ft['subset'] or 'all labels'}), "
                 f"{len(train_set.classes)} classes, {len(val_set)} val images, crop {ft['crop_size']} "
                 f"(resize {ft['resize_size']}), lr {ft['lr']:g} (fc x{ft['head_lr_mult']:g}), batch {batch_total}"]
        return {"train_set": train_set, "val_set": val_set, "subset": subset, "num_classes": len(train_set.classes),
                "batch": batch_total // self.procs.world_size, "batch_total": batch_total, "notes": notes,
                "weights_sha": sha256_file(run.weights) if run.weights else None}

    def iterations(self, cfg: dict[str, Any]) -> int:
        """Iterations of the schedule (epochs x iterations per epoch of the subset, or --max-iters)."""
        ft, st = cfg["finetune"], self.state
        return linear.schedule(ft["epochs"], -(-len(st["subset"]) // st["batch_total"]), ft["milestones"],
                               self.max_iters)[0]

    def run_trial(self, cfg: dict[str, Any], run: Run, trial_dir: Path, seed: int, resume: bool) -> dict[str, float]:
        """Fine-tune with `seed` (resuming from trial_dir's checkpoint) and test on val."""
        st, procs, ft = self.state, self.procs, cfg["finetune"]
        if procs.is_main:
            trial_dir.mkdir(parents=True, exist_ok=True)
        backbone, info = load_frozen_backbone(run.weights, cfg["model"]["arch"])  # fresh weights every trial
        run.arch = info["arch"]
        model = FineTuned(backbone, st["num_classes"])
        identity = {"weights_sha256": st["weights_sha"], "arch": info["arch"], "config": cfg, "seed": seed,
                    "max_iters": self.max_iters, "world_size": procs.world_size}
        return finetune(model, st["train_set"], st["subset"], ft, procs, trial_dir, st["val_set"], st["batch"],
                        int(ft["workers"]), procs.device.type == "cuda", max_iters=self.max_iters, resume=resume,
                        seed=seed, identity=identity, say=say)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Fine-tune `args.weights` on the task's label subset of `args.data`; writes WORK_DIR/metrics.json."""
    return run_task(args, FinetuneAdapter(args.task))
