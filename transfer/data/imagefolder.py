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
OPTIONAL_SPLITS = ("val", "test")  # checked where present; one of them must be (the fine-grained sets have both)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
KINDS = {"shapes": SHAPES, "patterns": PATTERNS}  # the class names of each kind of image
SUBSETS = (1, 10)  # percent of the train labels: SimCLR's 1percent.txt and 10percent.txt of ImageNet


def write_imagefolder(root: str | Path, seed: int, num_train: int, num_val: int, size: int = 64,
                      kind: str = "shapes", num_test: int = 0) -> Path:
    """Write `num_train` / `num_val` (/ `num_test`, a `test` split) images, spread evenly over the classes,
    and the label subsets of semi-supervised fine-tuning (`SUBSETS`, as ImageNet's `1percent.txt`);
    returns `root`. `num_val=0` writes no val split (the sets with only train and test).

    `kind="shapes"`: one textured shape on a cluttered background (the scenes of the
    other formats); `"patterns"`: the periodic patterns of `patterns.py`, which a
    short run can learn.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown ImageFolder kind {kind!r}; expected one of {', '.join(KINDS)}")
    root, classes = Path(root), KINDS[kind]
    for split_index, (split, count) in enumerate(zip(("train", "val", "test"), (num_train, num_val, num_test))):
        if split != "train" and not count:
            continue
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
    for percent in SUBSETS:
        write_subset_file(root, percent, seed)
    return root


def write_subset_file(root: str | Path, percent: float, seed: int = 0) -> Path:
    """Write SimCLR's label-subset format for `percent` % of the train images (at least one per class): one train
    image file name a line, as `1percent.txt` / `10percent.txt`; returns the file (`root/{percent}percent.txt`)."""
    root = Path(root)
    rng = np.random.default_rng([seed, 7])
    lines = []
    for folder in sorted(d for d in (root / "train").iterdir() if d.is_dir()):
        images = sorted(f.name for f in folder.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS)
        keep = max(1, round(len(images) * percent / 100))
        lines += sorted(images[i] for i in rng.permutation(len(images))[:keep])
    path = root / f"{percent:g}percent.txt"
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def present_splits(root: str | Path) -> tuple[str, ...]:
    """train, and those of val and test that exist (val when neither does, so that the check reports it)."""
    extra = tuple(s for s in OPTIONAL_SPLITS if (Path(root) / s).is_dir())
    return ("train", *(extra or ("val",)))


def check_imagefolder(root: str | Path, splits: tuple[str, ...] | None = None, decode_images: bool = False) -> None:
    """Raise DatasetError if a split is missing (default: train and val or test, `present_splits`), a class folder
    is empty, val or test has classes train lacks, or an image is unreadable (header of every image;
    `decode_images`: every pixel)."""
    root = Path(root)
    splits = present_splits(root) if splits is None else splits
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
    for split in OPTIONAL_SPLITS:
        if "train" in classes and split in classes and classes[split] - classes["train"]:
            problems.add(root / split, f"classes {sorted(classes[split] - classes['train'])} are not in train")
    check_images(files, problems, decode=decode_images)
    problems.raise_if_any()
