"""Fit a protocol's config to the devices at hand (GPUs or the CPU)."""
from __future__ import annotations

from typing import Any

from mmengine.config import Config, ConfigDict

from transfer.config_tree import walk
from transfer.errors import UserError


def replace_syncbn(node: Any) -> int:
    """Replace every `type='SyncBN'` norm config by `BN` in place (one process has nothing to sync); returns the count."""
    count = 0
    for found in walk(node):
        if found.get("type") == "SyncBN":
            found["type"] = "BN"
            count += 1
    return count


def adapt_to_devices(cfg: Config, gpus: int, keep_total_batch: bool = True, processes: int | None = None) -> list[str]:
    """Fit `cfg` (whose `train_dataloader.batch_size` is per GPU for `cfg.protocol_gpus` GPUs) to `gpus` per node
    and `processes` in the job (default: one per GPU, one on the CPU).

    The protocol's total batch is kept by putting more images on each GPU
    (`keep_total_batch`, the default); otherwise the per-GPU batch is kept and the
    lr is scaled down and the schedule up linearly. Returns notes that say what changed.
    """
    notes: list[str] = []
    processes = processes or max(gpus, 1)
    if processes == 1:
        n = replace_syncbn(cfg)
        if n:
            notes.append(f"one process: {n} SyncBN layer config(s) run as BN")
    cfg.launcher = "pytorch" if processes > 1 else "none"
    if gpus == 0:
        cfg.setdefault("env_cfg", ConfigDict())
        cfg.env_cfg.setdefault("dist_cfg", ConfigDict(backend="gloo"))
    protocol_gpus = int(cfg.get("protocol_gpus", processes))
    per_gpu = int(cfg.train_dataloader.batch_size)
    total = per_gpu * protocol_gpus
    if processes == protocol_gpus:
        return notes
    if keep_total_batch:
        if total % processes:
            raise UserError(f"total batch {total} does not split over {processes} process(es); "
                            "pass --gpus that divides it or train_dataloader.batch_size=N")
        cfg.train_dataloader.batch_size = total // processes
        notes.append(f"{processes} process(es) instead of {protocol_gpus}: {total // processes} images each, "
                     f"keeping the protocol's total batch of {total}")
    else:
        factor = processes / protocol_gpus
        cfg.optim_wrapper.optimizer.lr *= factor
        scale_iterations(cfg, 1 / factor)
        notes.append(f"{processes} process(es) instead of {protocol_gpus}: total batch {per_gpu * processes}, "
                     f"lr x{factor:g} and schedule x{1 / factor:g} (linear scaling)")
    return notes


def scale_iterations(cfg: Config, factor: float) -> None:
    """Multiply the iteration counts of an iteration-based schedule (max_iters, milestones, ends) by `factor`."""
    cfg.train_cfg.max_iters = max(1, round(cfg.train_cfg.max_iters * factor))
    schedulers = cfg.param_scheduler if isinstance(cfg.param_scheduler, list) else [cfg.param_scheduler]
    for sched in schedulers:
        if sched.get("by_epoch", True):
            continue
        for key in ("begin", "end"):
            if isinstance(sched.get(key), int) and sched[key] < 10**8:
                sched[key] = max(0 if key == "begin" else 1, round(sched[key] * factor))
        if isinstance(sched.get("end"), int) and sched["end"] < 10**8:
            # mmengine's LinearLR steps (end - begin - 1) times: a warmup squeezed to one iteration would
            # stay at start_factor for the whole run, so keep at least two
            sched["end"] = max(sched["end"], int(sched.get("begin", 0)) + 2)
        if "milestones" in sched:
            sched.milestones = [max(1, round(m * factor)) for m in sched.milestones]
