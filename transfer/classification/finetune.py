"""Full fine-tuning of backbone + fc on a label subset: ImageNet semi-supervised classification on SimCLR's 1 % /
10 % subsets, with mmselfsup's `benchmarks/classification/imagenet/imagenet_{1,10}percent` recipe.

The whole network trains (BN in train mode, SyncBN over several GPUs as their `norm_cfg=SyncBN`):
SGD with momentum, weight decay on every parameter, the fc's lr times `head_lr_mult`, the lr
times gamma at the epoch milestones; RandomResizedCrop + flip on the subset's train images,
Resize + CenterCrop on val. A subset file is SimCLR's format (`1percent.txt`): one train image
a line, by file name (`n01440764_10026.JPEG`) or by path under train/ (`n01440764/n01440764_10026.JPEG`).
Resumable from the trial's checkpoint (`finetune_last.pth`, every epoch), as the linear probe.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from transfer.classification.linear import (EpochKeys, SeededSamples, evaluate_images, new_classifier, schedule,
                                            step_decay_lr, sum_over_processes)
from transfer.classification.trial_state import load_trial_state, save_trial_state
from transfer.distributed import Processes
from transfer.errors import UserError

STATE_FILE = "finetune_last.pth"


def read_subset(path: Path, samples: list[tuple[str, int]], train_root: Path) -> list[int]:
    """Indices into `samples` (an ImageFolder's (path, label) list) of the images listed in the subset file `path`.

    A line names an image by file name or by its path under `train_root`; a line naming no
    train image, or a file name that several classes share, is a UserError naming the line.
    """
    if not path.is_file():
        raise UserError(f"subset file {path} does not exist; pass finetune.subset=FILE (SimCLR's 1percent.txt "
                        "format: one train image file name a line), absolute or relative to the dataset folder")
    by_name: dict[str, list[int]] = {}
    by_path: dict[str, int] = {}
    for i, (file, _) in enumerate(samples):
        rel = Path(file).relative_to(train_root).as_posix()
        by_path[rel] = i
        by_name.setdefault(Path(file).name, []).append(i)
    chosen: dict[int, None] = {}  # insertion-ordered set
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        name = line.split()[0]
        if name in by_path:
            chosen[by_path[name]] = None
        elif len(by_name.get(name, [])) == 1:
            chosen[by_name[name][0]] = None
        elif name in by_name:
            raise UserError(f"{path}:{lineno}: {name} is the name of {len(by_name[name])} train images in "
                            f"different classes; write it as CLASS/{name}")
        else:
            raise UserError(f"{path}:{lineno}: {name} is not an image of {train_root}; the subset file must list "
                            "train images of this dataset (fix the line or use the subset file made for it)")
    if not chosen:
        raise UserError(f"subset file {path} lists no image; expected one train image file name a line")
    return list(chosen)


class FineTuned(nn.Module):
    """The backbone (pooled features, N x C) and the fc (N x C -> N x classes), trained together."""

    def __init__(self, backbone: nn.Module, num_classes: int):
        super().__init__()
        self.backbone = backbone.train().requires_grad_(True)
        self.head = new_classifier(backbone.out_channels, num_classes)  # mmcls LinearClsHead: N(0, 0.01), bias 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """N x 3 x H x W -> N x classes logits."""
        return self.head(self.backbone(images))


def make_optimizer(model: FineTuned, cfg: dict[str, Any]) -> torch.optim.SGD:
    """SGD over backbone and fc, the fc at lr x `head_lr_mult` (mmselfsup's paramwise `head` lr_mult)."""
    groups = [{"params": list(model.backbone.parameters()), "lr_mult": 1.0},
              {"params": list(model.head.parameters()), "lr_mult": float(cfg["head_lr_mult"])}]
    return torch.optim.SGD(groups, lr=cfg["lr"], momentum=cfg["momentum"], weight_decay=cfg["weight_decay"],
                           nesterov=bool(cfg["nesterov"]))


def evaluate(model: FineTuned, dataset: Dataset, procs: Processes, batch: int, workers: int,
             amp: bool) -> dict[str, float]:
    """Top-1 / top-5 (percent) of the model in eval mode (BN statistics used, not updated) on `dataset`."""
    model.eval()
    result = evaluate_images(model.backbone, model.head, dataset, procs, batch, workers, amp)
    model.train()
    return result


def finetune(model: FineTuned, train_set: Dataset, subset: list[int], cfg: dict[str, Any], procs: Processes,
             work_dir: Path, val_set: Dataset, batch: int, workers: int, amp: bool, max_iters: int | None = None,
             resume: bool = True, seed: int = 0, identity: dict[str, Any] | None = None,
             say: Callable[[str], None] = print) -> dict[str, float]:
    """Fine-tune `model` on the `subset` of `train_set` for the schedule of `cfg` (the `finetune` section),
    resuming WORK_DIR/finetune_last.pth of the same `identity`; returns its top-1 / top-5 on `val_set`."""
    batch_total = batch * procs.world_size
    iters_per_epoch = -(-len(subset) // batch_total)
    total, milestones = schedule(cfg["epochs"], iters_per_epoch, cfg["milestones"], max_iters)
    model.to(procs.device)
    if procs.world_size > 1 and procs.device.type == "cuda":  # mmselfsup's norm_cfg=SyncBN (CUDA only)
        model.backbone = nn.SyncBatchNorm.convert_sync_batchnorm(model.backbone)
    optimizer = make_optimizer(model, cfg)
    state_path, parts = work_dir / STATE_FILE, {"model": model, "optimizer": optimizer}
    iteration = load_trial_state(state_path, identity, parts, "fine-tuning", total, say) if resume else 0
    net: nn.Module = model
    if procs.world_size > 1:
        net = DistributedDataParallel(model, device_ids=[procs.device.index] if procs.device.type == "cuda" else None)
    # what an iteration sees depends only on (seed, epoch, batch), as the linear probe's batches
    sampler = DistributedSampler(Subset(train_set, subset), num_replicas=procs.world_size, rank=procs.rank,
                                 shuffle=True, seed=seed)
    loader = DataLoader(SeededSamples(Subset(train_set, subset), seed), batch_size=batch, sampler=EpochKeys(sampler),
                        num_workers=workers, pin_memory=procs.device.type == "cuda", persistent_workers=workers > 0)

    start_time, start_iter = time.perf_counter(), iteration
    net.train()
    while iteration < total:
        epoch = iteration // iters_per_epoch
        sampler.set_epoch(epoch)
        loss_sum, seen = 0.0, 0
        for i, (images, labels) in enumerate(loader):
            if i < iteration - epoch * iters_per_epoch:
                continue  # a resumed epoch: skip the batches already trained on
            lr = step_decay_lr(iteration, cfg["lr"], milestones, cfg["gamma"])
            for group in optimizer.param_groups:
                group["lr"] = lr * group["lr_mult"]
            with torch.autocast(procs.device.type, dtype=torch.bfloat16, enabled=amp):
                logits = net(images.to(procs.device, non_blocking=True))
            loss = F.cross_entropy(logits.float(), labels.to(procs.device))
            if not math.isfinite(loss.item()):
                raise UserError(f"fine-tuning: loss is {loss.item()} at iteration {iteration}; lower finetune.lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum, seen = loss_sum + loss.item() * len(labels), seen + len(labels)
            iteration += 1
            if iteration >= total:
                break
        loss_sum, seen = sum_over_processes([loss_sum, seen], procs.device)
        save_trial_state(state_path, identity, parts, iteration, procs)
        eta = (time.perf_counter() - start_time) / max(1, iteration - start_iter) * (total - iteration)
        say(f"fine-tune epoch {epoch + 1}: iter {iteration}/{total} | loss {loss_sum / max(seen, 1):.4f} | "
            f"lr {lr:.4g} | eta {eta:.0f}s")
    return evaluate(model, val_set, procs, batch, workers, amp)
