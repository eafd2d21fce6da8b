"""A bad image met while a run trains or evaluates: stop with the file's name and how to find the others.

The dataset check before a run reads every image's header (and with
`--check-images` decodes every pixel); a file that is damaged in a way only a
full decode shows gets here. The run stops with one line naming the file; the
checkpoints written so far stay where they are (nothing here deletes them).
"""
from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

from PIL import Image
from transfer.errors import UserError


# What PIL, OpenCV and the file system raise for a damaged, missing or non-image file (PIL: SyntaxError for a
# broken PNG). A wrapper that catches these around a whole item names the item's file.
_READ_ERRORS = (OSError, SyntaxError, Image.DecompressionBombError)


def check_command(fmt: str, root: str | os.PathLike) -> str:
    """The command that lists every unreadable image of a dataset."""
    return f"python tools/check_dataset.py {fmt} {root} --check-images"


class BadImageError(UserError):
    """An image that could not be read during a run (one line: the file, why, and the check to run)."""

    def __init__(self, message: str):
        super().__init__(_unwrap(message))


def _unwrap(message: str) -> str:
    """The original one-line message, also when a DataLoader worker re-raised it with its traceback around it."""
    if "\n" not in message:
        return message
    # torch's ExceptionWrapper rebuilds the error as BadImageError("Caught ... Original Traceback ...\n...: <msg>")
    for line in reversed(message.splitlines()):
        head, sep, rest = line.partition("BadImageError: ")
        if sep and (not head or head.endswith(".")):
            return rest
    return message.strip().splitlines()[-1]


def bad_image(path: str | os.PathLike, error: BaseException, hint: str | None = None) -> BadImageError:
    """The error to raise for `path`, which failed to load with `error`; `hint` is the check to run."""
    if isinstance(error, BadImageError):
        return error
    reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
    reason = reason.replace(f": {path}", "").replace(f"'{path}'", "it").replace(str(path), "it")  # named once
    if isinstance(error, Image.UnidentifiedImageError):
        reason = "not an image"
    elif isinstance(error, OSError) and error.strerror:
        reason = error.strerror
    message = f"cannot read image {path} ({type(error).__name__}{': ' + reason if reason else ''})"
    return BadImageError(message + f"; find every unreadable image with: {hint or check_command('FORMAT', 'DIR')}")


def read_rgb(path: str | os.PathLike, hint: str | None = None) -> Image.Image:
    """Open an image as RGB the way torchvision's ImageFolder does, or raise BadImageError naming it."""
    try:
        with open(path, "rb") as f:
            image = Image.open(f)
            return image.convert("RGB")
    except Exception as e:  # noqa: BLE001 -- PIL raises many types on damaged files; all mean "bad image"
        raise bad_image(path, e, hint) from None


def image_loader(hint: str | None = None) -> Callable[[str], Image.Image]:
    """A `loader=` for torchvision's ImageFolder: `read_rgb` with `hint` (picklable, for DataLoader workers)."""
    return functools.partial(read_rgb, hint=hint)


class GuardedDataset:
    """A dataset whose items that fail to load raise BadImageError naming the file (`path_of(index)`).

    A plain map-style dataset (what a DataLoader takes), so that importing this needs no torch.
    """

    def __init__(self, dataset: Any, path_of: Callable[[int], str | os.PathLike], hint: str | None = None):
        self.dataset, self.path_of, self.hint = dataset, path_of, hint

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str) -> Any:  # the wrapped dataset's attributes (classes, samples, ...)
        if name in ("dataset", "path_of", "hint"):
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, index: int) -> Any:
        try:
            return self.dataset[index]
        except _READ_ERRORS as e:
            raise bad_image(self.path_of(index), e, self.hint) from None


def guard_image_folder(dataset: Any, hint: str | None = None) -> GuardedDataset:
    """A torchvision ImageFolder (or DatasetFolder) that names the file of an item that fails to load."""
    return GuardedDataset(dataset, _SamplePath(dataset), hint)


class _SamplePath:
    """index -> file of an ImageFolder sample (a class, not a lambda, so that spawned workers can unpickle it)."""

    def __init__(self, dataset: Any):
        self.dataset = dataset

    def __call__(self, index: int) -> str:
        return self.dataset.samples[index][0]


def guard_mapper(mapper: Callable[[dict], Any], hint: str | None = None) -> Callable[[dict], Any]:
    """A detectron2 dataset mapper that names `file_name` (or `sem_seg_file_name`) when reading it fails."""
    def guarded(record: dict) -> Any:
        try:
            return mapper(record)
        except _READ_ERRORS as e:
            raise bad_image(record.get("file_name", "?"), e, hint) from None
    return guarded


__all__ = ["BadImageError", "GuardedDataset", "bad_image", "check_command", "guard_image_folder", "guard_mapper",
           "image_loader", "read_rgb"]
