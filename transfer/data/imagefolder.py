"""The ImageFolder classification format: `{split}/{class}/*.png`, one shape (or pattern) class per image."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from transfer.data.patterns import PATTERNS, render_pattern
from transfer.data.images import check_images
from transfer.data.problems import Problems
from transfer.data.scenes import SHAPES, render_objects

SPLITS = ("train", "val")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
KINDS = {"shapes": SHAPES, "patterns": PATTERNS}  # the class names of each kind of image


def write_imagefolder(root: str | Path, seed: int, num_train: int, num_val: int, size: int = 64,
                      kind: str = "shapes") -> Path:
    """Write `num_train` / `num_val` images per split, spread evenly over the classes; returns `root`.

    `kind="shapes"`: one textured shape on a cluttered background (the scenes of the
    other formats); `"patterns"`: the periodic patterns of `patterns.py`, which a
    short run can learn.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown ImageFolder kind {kind!r}; expected one of {', '.join(KINDS)}")
    root, classes = Path(root), KINDS[kind]
    for split_index, (split, count) in enumerate(zip(SPLITS, (num_train, num_val))):
        for name in classes:
            (root / split / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            label = i % len(classes)
            if kind == "shapes":
                rng = np.random.default_rng([seed, 4, split_index, i])
                img, _ = render_objects(rng, size, size, 1, scale=(0.25, 0.45), labels=[label],
                                        min_visible=0.0, min_pixels=0)
            else:
                img = render_pattern(np.random.default_rng([seed, 5, split_index, i]), label, size)
            Image.fromarray(img).save(root / split / classes[label] / f"{i:06d}.png")
    return root


def check_imagefolder(root: str | Path, splits: tuple[str, ...] = SPLITS, decode_images: bool = False) -> None:
    """Raise DatasetError if a split is missing, a class folder is empty, val has classes train lacks, or an image
    is unreadable (header of every image; `decode_images`: every pixel)."""
    root = Path(root)
    problems = Problems("ImageFolder", root)
    classes: dict[str, set[str]] = {}
    files: list[Path] = []
    for split in splits:
        folder = root / split
        if not folder.is_dir():
            problems.add(folder, f"missing split folder: expected {folder}/<class>/<image>")
            continue
        classes[split] = {d.name for d in folder.iterdir() if d.is_dir()}
        if not classes[split]:
            problems.add(folder, "no class folders: expected one folder per class")
        for name in sorted(classes[split]):
            # the files torchvision's ImageFolder takes: by extension, anywhere under the class folder
            images = sorted(f for f in (folder / name).rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS)
            if not images:
                problems.add(folder / name, f"class folder has no images ({', '.join(IMAGE_EXTENSIONS[:3])}, ...)")
            files += images
    if "train" in classes and "val" in classes and classes["val"] - classes["train"]:
        problems.add(root / "val", f"classes {sorted(classes['val'] - classes['train'])} are not in train")
    check_images(files, problems, decode=decode_images)
    problems.raise_if_any()
