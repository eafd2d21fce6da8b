"""Cityscapes instance annotations in the COCO format that mmdet's `CityscapesDataset` reads.

mmdet makes `annotations/instancesonly_filtered_gtFine_{train,val}.json` from the
`gtFine/<split>/<city>/*_gtFine_instanceIds.png` maps with its dataset converter
(`tools/dataset_converters/cityscapes.py`): one RLE mask per instance of the 8 classes
that have instances and count in the evaluation, ids below 1000 flagged as crowd.
That converter ships as package data (`mmdet/.mim/tools/...`), a script and not an
importable module (`.mim` is no package name), so it is loaded here from its file and
its functions are called as they are: the files are exactly mmdet's.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from transfer.errors import UserError
from transfer.fileio import atomic_path

SPLITS = ("train", "val")  # the protocol's: train on train (fine), evaluate on val
ANNOTATIONS = {split: f"annotations/instancesonly_filtered_gtFine_{split}.json" for split in ("train", "val", "test")}
CONVERTER = Path("tools") / "dataset_converters" / "cityscapes.py"  # inside mmdet's `.mim` folder


def prepare_command(root: str | os.PathLike) -> str:
    """The command that writes the instance annotations of the Cityscapes folder `root`."""
    return f"python tools/prepare_cityscapes.py {root} --instances"


def mmdet_converter() -> ModuleType:
    """mmdet's Cityscapes-to-COCO converter script, loaded from the installed package."""
    import mmdet

    path = Path(mmdet.__file__).resolve().parent / ".mim" / CONVERTER
    if not path.is_file():
        raise UserError(f"mmdet's Cityscapes converter {path} is missing (an mmdet install without its tools); "
                        "reinstall mmdet with pip (mmdet==3.3.0)")
    name = "mmdet_cityscapes_converter"
    if name not in sys.modules:  # by name, so that its worker processes (nproc > 1) can unpickle its functions
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


def write_instance_annotations(root: str | os.PathLike, splits: Iterable[str] = SPLITS, force: bool = False,
                               workers: int = 1) -> dict[str, int | None]:
    """Write `root/ANNOTATIONS[split]` for each split with mmdet's converter (atomically; an existing file is kept
    unless `force`); returns the instances written per split (None: kept)."""
    root = Path(root)
    converter = mmdet_converter()
    counts: dict[str, int | None] = {}
    for split in splits:
        out = root / ANNOTATIONS[split]
        if out.is_file() and not force:
            counts[split] = None
            continue
        img_dir, gt_dir = root / "leftImg8bit" / split, root / "gtFine" / split
        if not any(img_dir.glob("*/*_leftImg8bit.png")):
            raise UserError(f"no {img_dir}/<city>/*_leftImg8bit.png found; unpack leftImg8bit_trainvaltest.zip "
                            f"into {root}")
        # the converter's own path arithmetic: it joins gt_dir + the image's path below img_dir
        files = converter.collect_files(str(img_dir), str(gt_dir))
        missing = [inst for _, inst, _ in files if not Path(inst).is_file()]
        if missing:
            raise UserError(f"{len(missing)} of {len(files)} {split} images have no instance map, e.g. {missing[0]}; "
                            f"unpack gtFine_trainvaltest.zip into {root}")
        infos = converter.collect_annotations(files, nproc=max(1, workers))
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out, suffix=".tmp.json") as tmp:  # mmengine's dump picks the format by the suffix
            written = converter.cvt_annotations(infos, str(tmp))
        counts[split] = len(written.get("annotations", []))
    return counts


def require_annotations(paths: Iterable[Path], root: str | os.PathLike) -> None:
    """Raise one UserError naming the annotation files that do not exist, and the command that writes them."""
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        raise UserError(f"missing Cityscapes instance annotations {', '.join(missing)}; make them with: "
                        f"{prepare_command(root)}")
