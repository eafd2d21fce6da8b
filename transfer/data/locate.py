"""Find a dataset where the user or the engines put it, and check it before any training starts."""
from __future__ import annotations

import functools
import os
from pathlib import Path

from transfer.data.cityscapes import check_cityscapes
from transfer.data.coco import check_coco
from transfer.data.imagefolder import check_imagefolder
from transfer.data.voc import VOC07_SPLITS, check_voc, check_voc12aug
from transfer.errors import UserError

# What marks a dataset folder of each format, and the sub-folder names the engines use for it. VOC12aug's
# folder is VOC2012 itself (mmseg's data_root): --data may name it, the VOCdevkit folder or a root holding that.
# `voc07` is a VOC tree of which only VOC2007 is read (trainval and test: the VOC07 SVM protocols).
_MARKER = {"coco": "annotations", "voc": "VOC2007", "voc07": "VOC2007", "cityscapes": "leftImg8bit",
           "imagefolder": "train", "voc12aug": "ImageSets/Segmentation"}
_SUBDIRS = {"coco": ("coco",), "voc": ("voc", "VOCdevkit"), "voc07": ("voc", "VOCdevkit"),
            "cityscapes": ("cityscapes",), "imagefolder": ("imagefolder", "imagenet"),
            "voc12aug": ("VOC2012", "VOCdevkit/VOC2012", "voc12aug/VOC2012")}
_CHECKS = {"coco": check_coco, "voc": check_voc, "voc07": functools.partial(check_voc, splits=VOC07_SPLITS),
           "cityscapes": check_cityscapes, "imagefolder": check_imagefolder, "voc12aug": check_voc12aug}
DATASET_FORMATS = tuple(_CHECKS)  # what find_dataset and check_dataset (tools/check_dataset.py) take


def default_roots() -> list[Path]:
    """Where the engines look for datasets: $DETECTRON2_DATASETS (else ./datasets), then ./data."""
    env = os.environ.get("DETECTRON2_DATASETS")
    return [Path(env) if env else Path("datasets"), Path("data")]


def find_dataset(fmt: str, data: str | os.PathLike | None = None) -> Path:
    """The folder of the `fmt` dataset: `data` itself or one of its engine-named sub-folders.

    Without `data`, the engines' default roots are searched (`default_roots`).
    """
    if fmt not in _MARKER:
        raise UserError(f"unknown dataset format {fmt!r}; expected one of {', '.join(_MARKER)}")
    roots = [Path(data)] if data is not None else default_roots()
    looked = []
    for root in roots:
        for folder in (root, *(root / sub for sub in _SUBDIRS[fmt])):
            looked.append(str(folder))
            if (folder / _MARKER[fmt]).exists():
                return folder
    if data is not None and not Path(data).exists():
        raise UserError(f"--data {data} does not exist; pass the folder that holds the {fmt} dataset")
    raise UserError(f"no {fmt} dataset found (looked for '{_MARKER[fmt]}' in {', '.join(looked)}); "
                    "pass --data DIR, set DETECTRON2_DATASETS, or make a small one with "
                    "`python tools/make_demo_data.py --out DIR`")


def check_dataset(fmt: str, root: str | os.PathLike, decode_images: bool = False, **kwargs) -> None:
    """Raise DatasetError listing what is missing, unreadable or malformed in the `fmt` dataset at `root`.

    Every image the run will read is checked to its header (fast: existence, size,
    header, end marker); `decode_images` (the runners' `--check-images`) decodes
    every pixel, which takes longer on a large set (see README, "Dataset checks").
    """
    if fmt not in _CHECKS:
        raise UserError(f"unknown dataset format {fmt!r}; expected one of {', '.join(_CHECKS)}")
    _CHECKS[fmt](root, decode_images=decode_images, **kwargs)
