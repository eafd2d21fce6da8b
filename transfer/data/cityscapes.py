"""The Cityscapes format: `leftImg8bit/{split}/{city}/*_leftImg8bit.png` with `gtFine` label maps.

Label maps use the real Cityscapes label ids (`*_gtFine_labelIds.png`, what the
official evaluation reads) and the 19 train ids with 255 for ignore
(`*_gtFine_labelTrainIds.png`, what mmseg's `CityscapesDataset` reads); instance maps
(`*_gtFine_instanceIds.png`) and the COCO-style `annotations/instancesonly_filtered_gtFine_*.json` that mmdet's
`CityscapesDataset` reads (`transfer.detection.cityscapes_instances`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from cityscapesscripts.helpers.labels import labels as CS_LABELS
from PIL import Image

from transfer.data.images import check_images
from transfer.data.problems import Problems
from transfer.data.scenes import render_street

CITIES = {"train": ("aachen", "bochum", "bremen"), "val": ("frankfurt", "lindau", "munster")}
SPLITS = ("train", "val")
IMG_SUFFIX, LABEL_SUFFIX, TRAIN_SUFFIX = "_leftImg8bit.png", "_gtFine_labelIds.png", "_gtFine_labelTrainIds.png"
# The 19 evaluated classes, in train-id order.
CLASSES: tuple[str, ...] = tuple(lab.name for lab in sorted(
    (lab for lab in CS_LABELS if 0 <= lab.trainId < 255), key=lambda lab: lab.trainId))


def _train_id_lut() -> np.ndarray:
    """A 256-entry table from label id to train id (255 = ignored)."""
    lut = np.full(256, 255, np.uint8)
    for lab in CS_LABELS:
        if lab.id >= 0 and 0 <= lab.trainId < 255:
            lut[lab.id] = lab.trainId
    return lut


TRAIN_ID_LUT = _train_id_lut()


def label_ids_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Map a Cityscapes label-id map (H, W) to train ids (H, W) uint8, 255 where ignored."""
    return TRAIN_ID_LUT[label_ids]


def write_cityscapes(root: str | Path, seed: int, num_train: int, num_val: int,
                     size: tuple[int, int] = (256, 128), fill: str = "texture") -> Path:
    """Write a procedural Cityscapes-format dataset under `root` (`fill`: `scenes.render_street`'s); returns `root`."""
    root = Path(root)
    for split_index, (split, count) in enumerate(zip(SPLITS, (num_train, num_val))):
        cities = CITIES[split]
        for i in range(count):
            city = cities[i % len(cities)]
            rng = np.random.default_rng([seed, 3, split_index, i])
            img, label_ids, instance_ids = render_street(rng, *size, fill=fill)
            stem = f"{city}_{i // len(cities):06d}_000019"
            img_dir, gt_dir = root / "leftImg8bit" / split / city, root / "gtFine" / split / city
            img_dir.mkdir(parents=True, exist_ok=True)
            gt_dir.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(img_dir / f"{stem}{IMG_SUFFIX}")
            Image.fromarray(label_ids).save(gt_dir / f"{stem}{LABEL_SUFFIX}")
            Image.fromarray(label_ids_to_train_ids(label_ids)).save(gt_dir / f"{stem}{TRAIN_SUFFIX}")
            Image.fromarray(instance_ids.astype(np.uint16)).save(gt_dir / f"{stem}_gtFine_instanceIds.png")
    # and what `tools/prepare_cityscapes.py --instances` makes of the instanceIds maps for the instance task, as the
    # labelTrainIds maps above are what it makes for the semantic one (mmdet's converter: imported only here)
    from transfer.detection.cityscapes_instances import write_instance_annotations

    write_instance_annotations(root)
    return root


def check_cityscapes(root: str | Path, splits: tuple[str, ...] = SPLITS, need_train_ids: bool = True,
                     sample_values: int = 8, decode_images: bool = False) -> None:
    """Raise DatasetError naming every missing, unreadable or malformed image and label map of a Cityscapes tree.

    Every image and label map is read to its header (`decode_images`: every pixel)
    and each map's size checked against its image; the pixel values of the first
    `sample_values` maps of each split are checked too.
    """
    root = Path(root)
    problems = Problems("Cityscapes", root)
    valid_ids = {lab.id for lab in CS_LABELS if lab.id >= 0}
    allowed = {LABEL_SUFFIX: valid_ids, TRAIN_SUFFIX: set(range(19)) | {255}}
    wanted = (LABEL_SUFFIX, TRAIN_SUFFIX) if need_train_ids else (LABEL_SUFFIX,)
    pairs: list[tuple[int, Path, Path, str]] = []  # (index in split, image, label map, suffix)
    images: list[Path] = []
    for split in splits:
        img_root = root / "leftImg8bit" / split
        found = sorted(img_root.glob(f"*/*{IMG_SUFFIX}"))
        if not found:
            problems.add(img_root, f"no images: expected {img_root}/<city>/<name>{IMG_SUFFIX}")
            continue
        images += found
        for n, img_path in enumerate(found):
            stem = img_path.name[: -len(IMG_SUFFIX)]
            gt_dir = root / "gtFine" / split / img_path.parent.name
            for suffix in wanted:
                gt = gt_dir / f"{stem}{suffix}"
                if gt.is_file():
                    pairs.append((n, img_path, gt, suffix))
                else:
                    hint = (" (make it with: python tools/prepare_cityscapes.py DATA_ROOT)"
                            if suffix == TRAIN_SUFFIX else "")
                    problems.add(gt, f"missing label map for {img_path.name}{hint}")
    sizes = check_images(images + [gt for _, _, gt, _ in pairs], problems, decode=decode_images)
    for n, img_path, gt, suffix in pairs:
        if img_path not in sizes or gt not in sizes:
            continue  # already reported as unreadable
        (w, h), (lw, lh) = sizes[img_path], sizes[gt]
        if (lw, lh) != (w, h):
            problems.add(gt, f"label map is {lw}x{lh}, expected {w}x{h} like {img_path.name}")
        elif n < sample_values:
            try:
                with Image.open(gt) as lab:
                    bad = set(np.unique(np.asarray(lab)).tolist()) - allowed[suffix]
            except Exception as e:  # noqa: BLE001 -- a header that reads but pixels that do not
                problems.add(gt, f"unreadable label map: {type(e).__name__}: {e}")
                continue
            if bad:
                problems.add(gt, f"values {sorted(bad)[:5]} are not valid {suffix[8:-4]}")
    problems.raise_if_any()
