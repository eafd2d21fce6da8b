"""OpenMMLab pipelines: a file that fails to load stops the run with its name instead of an AssertionError.

mmcv's `LoadImageFromFile` decodes with OpenCV, which returns None for a damaged
file; mmcv then fails with `AssertionError: failed to load image` deep in a
DataLoader worker, possibly after training, at evaluation. `guard_pipelines(cfg)`
wraps every loading transform of a config's dataloaders in `TransferGuardedLoad`,
registered in mmengine's root TRANSFORMS registry so that mmdet and mmseg find it.
"""
from __future__ import annotations

from typing import Any

from mmcv.transforms import BaseTransform
from mmengine.registry import TRANSFORMS

from transfer.data.bad_images import bad_image

GUARD = "TransferGuardedLoad"
_LOADERS = ("LoadImageFromFile", "LoadAnnotations")  # the loading transforms that read a file (mmcv, mmdet, mmseg)


@TRANSFORMS.register_module(name=GUARD)
class GuardedLoad(BaseTransform):
    """Run the loading transform `transform`; if reading its file fails, raise BadImageError naming the file."""

    def __init__(self, transform: dict, hint: str | None = None):
        self.inner = TRANSFORMS.build(transform)
        self.hint = hint

    def transform(self, results: dict) -> Any:
        """The wrapped transform's output; a failure to read the image (or label map) becomes a BadImageError."""
        try:
            return self.inner(results)
        except Exception as e:  # noqa: BLE001 -- OpenCV/PIL/mmcv raise assorted types (AssertionError included)
            if "Annotations" in type(self.inner).__name__:
                path = results.get("seg_map_path")  # mmseg reads a label map; mmdet's annotations come from json
                if not path:
                    raise
            else:
                path = results.get("img_path")
            raise bad_image(path, e, self.hint) from None

    def __repr__(self) -> str:
        return f"{GUARD}({self.inner!r})"


def _is_loader(step: Any) -> bool:
    return isinstance(step, dict) and str(step.get("type", "")).rpartition(".")[2] in _LOADERS


def guard_pipelines(cfg: Any, hint: str | None = None) -> int:
    """Wrap every file-loading step of the train/val/test dataloaders' pipelines in place; returns how many.

    `hint` is the command that finds every unreadable file (`bad_images.check_command`).
    Nested datasets (RepeatDataset, ConcatDataset) are followed; wrapping twice is a no-op.
    """
    count = 0
    scope = cfg.get("default_scope")

    def visit(node: Any) -> None:
        nonlocal count
        if isinstance(node, dict):
            pipeline = node.get("pipeline")
            if isinstance(pipeline, list):
                for i, step in enumerate(pipeline):
                    if _is_loader(step):
                        inner = dict(step)
                        if scope and "." not in str(inner["type"]):  # built by us: name the config's registry
                            inner.setdefault("_scope_", scope)
                        pipeline[i] = dict(type=GUARD, transform=inner, hint=hint)
                        count += 1
            for key in ("dataset", "datasets"):
                if key in node:
                    visit(node[key])
        elif isinstance(node, (list, tuple)):
            for item in node:
                visit(item)

    for name in ("train_dataloader", "val_dataloader", "test_dataloader"):
        loader = cfg.get(name)
        if loader is not None:
            visit(loader.get("dataset"))
    return count


__all__ = ["GuardedLoad", "guard_pipelines"]
