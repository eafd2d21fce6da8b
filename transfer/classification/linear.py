"""Linear classification on a frozen backbone: MoCo's main_lincls.py protocol, resumable, on 1..N processes.

The backbone stays in eval mode (BN statistics frozen) without gradients; only
a linear layer on the pooled features is trained: fc ~ N(0, 0.01), bias 0, SGD
(lr 30, momentum 0.9, weight decay 0), lr x gamma at the milestones. With
`precompute_features` the features are computed once (val transform, no
augmentation) and the fc is trained on them: a fast option, not the protocol.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from transfer.classification.trial_state import load_trial_state, save_trial_state
from transfer.distributed import Processes
from transfer.errors import UserError
from transfer.rng import sample_seed

STATE_FILE = "linear_last.pth"


def new_classifier(in_dim: int, num_classes: int) -> nn.Linear:
    """The fc of the protocol: weights N(0, 0.01), bias 0."""
    fc = nn.Linear(in_dim, num_classes)
    nn.init.normal_(fc.weight, mean=0.0, std=0.01)
    nn.init.zeros_(fc.bias)
    return fc


def schedule(epochs: float, iters_per_epoch: int, milestones: list[float],
             max_iters: int | None) -> tuple[int, list[int]]:
    """Total iterations and the milestone iterations; `max_iters` shrinks both in proportion."""
    total = max_iters or max(1, round(epochs * iters_per_epoch))
    return total, [round(m / epochs * total) for m in milestones]


def step_decay_lr(iteration: int, base_lr: float, milestones: list[int], gamma: float) -> float:
    """Step decay: base_lr * gamma ** (milestones passed)."""
    return base_lr * gamma ** sum(iteration >= m for m in milestones)


@torch.no_grad()
def topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> list[int]:
    """How many rows have their label among the top-k logits, for each k (k capped at the class count)."""
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices  # N x maxk
    hit = top == labels.unsqueeze(1)
    return [int(hit[:, :min(k, logits.shape[1])].any(1).sum()) for k in ks]


def sum_over_processes(values: list[float], device: torch.device) -> list[float]:
    """`values` summed over the processes of the job (themselves when there is one)."""
    if not (dist.is_available() and dist.is_initialized()):
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


class SeededSamples(Dataset):
    """Item `(epoch, index)` -> `dataset[index]` with its augmentation drawn from a generator seeded by
    (seed, epoch, index): the same in any worker, with or without persistent workers, and after a resume."""

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        with torch.random.fork_rng(devices=[]):  # the caller's generator (workers=0: this process's) is left as it was
            torch.manual_seed(sample_seed(self.seed, epoch, index))
            return self.dataset[index]


class EpochKeys(Sampler):
    """The order of a DistributedSampler as `(epoch, index)` keys (the sampler runs in the main process)."""

    def __init__(self, sampler: DistributedSampler):
        self.sampler = sampler

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((self.sampler.epoch, index) for index in self.sampler)


class ImageBatches:
    """Each epoch: this process's share of a shuffle of the train images, augmented, through the frozen backbone.

    What an iteration sees depends only on (seed, epoch, batch): the order of an epoch on
    (seed, epoch), each image's augmentation on (seed, epoch, index). A resumed run
    therefore sees the batches the uninterrupted run saw, with any number of workers.
    """

    def __init__(self, backbone: nn.Module, dataset: Dataset, procs: Processes, batch: int, workers: int, seed: int,
                 amp: bool):
        self.backbone, self.procs, self.amp = backbone, procs, amp
        self.sampler = DistributedSampler(dataset, num_replicas=procs.world_size, rank=procs.rank, shuffle=True,
                                          seed=seed)
        self.loader = DataLoader(SeededSamples(dataset, seed), batch_size=batch, sampler=EpochKeys(self.sampler),
                                 num_workers=workers, pin_memory=procs.device.type == "cuda",
                                 persistent_workers=workers > 0)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.sampler.set_epoch(epoch)
        for images, labels in self.loader:
            with torch.no_grad(), torch.autocast(self.procs.device.type, dtype=torch.bfloat16, enabled=self.amp):
                features = self.backbone(images.to(self.procs.device, non_blocking=True))
            yield features.float(), labels.to(self.procs.device)


class FeatureBatches:
    """Each epoch: this process's share of a shuffle of precomputed train features."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor, procs: Processes, batch: int, seed: int):
        self.features, self.labels, self.procs, self.batch, self.seed = features, labels, procs, batch, seed

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.labels), generator=g)
        order = order[self.procs.rank::self.procs.world_size].to(self.features.device)
        for start in range(0, len(order), self.batch):
            index = order[start:start + self.batch]
            yield self.features[index], self.labels[index]


def train_linear(*, in_dim: int, num_classes: int, cfg: dict[str, Any], procs: Processes, work_dir: Path,
                 iters_per_epoch: int, batches: ImageBatches | FeatureBatches,
                 evaluate: Callable[[nn.Module], dict[str, float]], max_iters: int | None = None,
                 resume: bool = True, seed: int = 0, identity: dict[str, Any] | None = None,
                 say: Callable[[str], None] = print) -> dict[str, float]:
    """Train the fc for the schedule of `cfg['linear']`, resuming WORK_DIR/linear_last.pth; returns `evaluate(fc)`.

    `identity` (weights hash, config) is stored in the state file: a state file of
    another run is never resumed.
    """
    lin = cfg["linear"]
    total, milestones = schedule(lin["epochs"], iters_per_epoch, lin["milestones"], max_iters)
    torch.manual_seed(seed)
    fc = new_classifier(in_dim, num_classes).to(procs.device)
    optimizer = torch.optim.SGD(fc.parameters(), lr=lin["lr"], momentum=lin["momentum"],
                                weight_decay=lin["weight_decay"])
    state_path, parts = work_dir / STATE_FILE, {"fc": fc, "optimizer": optimizer}
    iteration = load_trial_state(state_path, identity, parts, "the linear probe", total, say) if resume else 0
    net: nn.Module = fc
    if procs.world_size > 1:
        net = DistributedDataParallel(fc, device_ids=[procs.device.index] if procs.device.type == "cuda" else None)

    def save() -> None:
        save_trial_state(state_path, identity, parts, iteration, procs)

    eval_every = int(lin.get("eval_every") or 0)
    start_time, start_iter = time.perf_counter(), iteration
    while iteration < total:
        epoch = iteration // iters_per_epoch
        loss_sum, correct, seen = 0.0, 0, 0
        for i, (features, labels) in enumerate(batches.epoch(epoch)):
            if i < iteration - epoch * iters_per_epoch:
                continue  # a resumed epoch: skip the batches already trained on
            lr = step_decay_lr(iteration, lin["lr"], milestones, lin["gamma"])
            for group in optimizer.param_groups:
                group["lr"] = lr
            logits = net(features)
            loss = F.cross_entropy(logits, labels)
            if not math.isfinite(loss.item()):
                raise UserError(f"linear probe: loss is {loss.item()} at iteration {iteration}; lower linear.lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(labels)
            correct += int((logits.argmax(1) == labels).sum())
            seen += len(labels)
            iteration += 1
            if iteration >= total:
                break
        loss_sum, correct, seen = sum_over_processes([loss_sum, correct, seen], procs.device)
        save()
        elapsed = time.perf_counter() - start_time
        eta = elapsed / max(1, iteration - start_iter) * (total - iteration)
        line = (f"linear epoch {epoch + 1}: iter {iteration}/{total} | loss {loss_sum / max(seen, 1):.4f} | "
                f"train top-1 {100 * correct / max(seen, 1):.2f} | lr {lr:.4g} | eta {eta:.0f}s")
        if eval_every and (epoch + 1) % eval_every == 0 and iteration < total:
            val = evaluate(fc)
            line += f" | val top-1 {val['top1']:.2f}"
        say(line)
    return evaluate(fc)


def evaluate_images(backbone: nn.Module, fc: nn.Module, dataset: Dataset, procs: Processes, batch: int, workers: int,
                    amp: bool) -> dict[str, float]:
    """Top-1 / top-5 (percent) of backbone + fc on `dataset`, sharded over processes."""
    from transfer.classification.features import shard

    part, _ = shard(dataset, procs)
    loader = DataLoader(part, batch_size=batch, num_workers=workers, pin_memory=procs.device.type == "cuda")
    counts = [0.0, 0.0, 0.0]
    with torch.no_grad():
        for images, labels in loader:
            with torch.autocast(procs.device.type, dtype=torch.bfloat16, enabled=amp):
                features = backbone(images.to(procs.device, non_blocking=True))
            c1, c5 = topk_correct(fc(features.float()), labels.to(procs.device))
            counts = [counts[0] + c1, counts[1] + c5, counts[2] + len(labels)]
    c1, c5, n = sum_over_processes(counts, procs.device)
    return {"top1": 100.0 * c1 / n, "top5": 100.0 * c5 / n}


def evaluate_features(fc: nn.Module, features: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Top-1 / top-5 (percent) of the fc on precomputed features (every process holds all of them)."""
    with torch.no_grad():
        c1, c5 = topk_correct(fc(features), labels)
    return {"top1": 100.0 * c1 / len(labels), "top5": 100.0 * c5 / len(labels)}
