"""Every call into an engine's private API, in one place (torch's; mmengine and detectron2 need none any more).

Each is here because the engine offers no public way to do what we need; each has a
test in tests/test_engine_internals.py that asserts the private name still exists
and does what we rely on, so that an engine upgrade that changes it fails there,
loudly, and not in the middle of a run. Nothing else in the project may call a
private attribute of torch, mmengine, mmdet, mmseg or detectron2.

Replaced by public APIs (and so absent here): mmengine `Config._cfg_dict` (a Config
iterates over its keys), `Config._format_python_code` (`Config.fromfile(...,
format_python_code=False)`), detectron2 `PeriodicWriter._period` (a new
PeriodicWriter with the period) and `DefaultTrainer._last_eval_results` (our own
EvalHook function keeps the results). detectron2's `Res5ROIHeads._build_res5_block`
is a protected method meant for subclasses; ours calls its parent's, and the test
checks that it is still there.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader


def ddp_ignore(model: torch.nn.Module, names: Sequence[str]) -> None:
    """Keep the parameters and buffers `names` of `model` out of DDP's gradient and buffer synchronisation.

    torch has only the private static `DistributedDataParallel._set_params_and_buffers_to_ignore_for_model`
    (it sets `model._ddp_params_and_buffers_to_ignore`, which DDP reads when wrapping); call before wrapping.
    """
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, list(names))


def shutdown_loader_workers(loader: DataLoader) -> None:
    """Stop a DataLoader's persistent worker processes now, not whenever the garbage collector reaps its iterator.

    torch keeps the iterator of persistent workers in the private `DataLoader._iterator`
    and stops them in its private `_shutdown_workers` (also what `__del__` calls).
    """
    iterator = getattr(loader, "_iterator", None)
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()
        loader._iterator = None
