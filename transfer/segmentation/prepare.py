"""Make the `*_gtFine_labelTrainIds.png` maps mmseg reads from the `*_gtFine_labelIds.png` of a Cityscapes tree.

The official download has only label ids; cityscapesscripts' `createTrainIdLabelImgs`
makes train ids from the polygons, which is slow and needs the json files. Mapping
the label-id maps through the label table gives the same maps (every pixel's
train id is a function of its label id, and both come from
the same polygons drawn in the same order).
"""
from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from transfer.data.cityscapes import LABEL_SUFFIX, TRAIN_SUFFIX, label_ids_to_train_ids
from transfer.errors import UserError
from transfer.fileio import atomic_path


def label_id_maps(root: str | os.PathLike) -> list[Path]:
    """Every `gtFine/<split>/<city>/*_gtFine_labelIds.png` under the Cityscapes folder `root` (or `root/cityscapes`)."""
    root = Path(root)
    if not (root / "gtFine").is_dir() and (root / "cityscapes" / "gtFine").is_dir():
        root = root / "cityscapes"  # a data root holding the dataset folder, as --data accepts
    gt = root / "gtFine"
    if not gt.is_dir():
        raise UserError(f"{gt} does not exist; pass the Cityscapes folder that holds gtFine/ and leftImg8bit/ "
                        "(or the folder holding cityscapes/)")
    files = sorted(gt.glob(f"*/*/*{LABEL_SUFFIX}"))
    if not files:
        raise UserError(f"no {gt}/<split>/<city>/*{LABEL_SUFFIX} found; unpack gtFine_trainvaltest.zip into {root}")
    return files


def write_train_id_map(label_path: Path, force: bool = False) -> bool:
    """Write the train-id map beside one label-id map, atomically; returns False when it already existed."""
    out = label_path.with_name(label_path.name[: -len(LABEL_SUFFIX)] + TRAIN_SUFFIX)
    if out.is_file() and not force:
        return False
    with Image.open(label_path) as im:
        if im.mode not in ("L", "P"):
            raise UserError(f"{label_path}: expected a one-channel 8-bit label-id map, got mode {im.mode}")
        label_ids = np.asarray(im)
    with atomic_path(out) as tmp:
        Image.fromarray(label_ids_to_train_ids(label_ids)).save(tmp, format="PNG")
    return True


def write_train_id_maps(root: str | os.PathLike, force: bool = False, workers: int = 4,
                        progress: bool = True) -> dict[str, int]:
    """Write every missing `*_gtFine_labelTrainIds.png` under `root` (all of them with `force`); returns counts."""
    files = label_id_maps(root)
    written = skipped = 0
    start = last = time.perf_counter()
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for n, made in enumerate(pool.map(lambda p: write_train_id_map(p, force), files), 1):
            written += made
            skipped += not made
            now = time.perf_counter()
            if progress and (now - last > 2 or n == len(files)):
                eta = (now - start) / n * (len(files) - n)
                print(f"\r{n}/{len(files)} label maps ({written} written, {skipped} already there), "
                      f"ETA {eta:.0f} s", end="\n" if n == len(files) else "", file=sys.stderr, flush=True)
                last = now
    return {"label_maps": len(files), "written": written, "skipped": skipped, "root": str(files[0].parents[3])}
