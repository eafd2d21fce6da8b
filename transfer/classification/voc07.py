"""VOC2007 as a multi-label classification set: image ids of an image set and their per-class targets.

The targets are those of VOC's `ImageSets/Main/<class>_<split>.txt`, derived from the
annotations as the devkit derives them: an image is present (1) for a class with a
non-difficult object of it, ignored (-1) when its objects of the class are all difficult
(VOC's "0"), absent (0) otherwise. VISSL's `create_voc_data_files.py` maps VOC's
(1, -1, 0) to these (1, 0, -1).
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from transfer.classification.svm import IGNORE, NEGATIVE, POSITIVE
from transfer.errors import UserError


def read_image_set(voc2007: Path, image_set: str) -> list[str]:
    """The image ids of VOC2007/ImageSets/Main/<image_set>.txt, in file order."""
    listing = voc2007 / "ImageSets" / "Main" / f"{image_set}.txt"
    if not listing.is_file():
        raise UserError(f"{listing} does not exist; the VOC07 protocols need the VOC2007 {image_set} image set")
    return [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]


def image_targets(voc2007: Path, image_ids: Sequence[str], classes: Sequence[str]) -> torch.Tensor:
    """N x K targets (1 present, 0 absent, -1 ignore) of the images from their Annotations/<id>.xml."""
    index = {name: k for k, name in enumerate(classes)}
    targets = torch.full((len(image_ids), len(classes)), NEGATIVE, dtype=torch.long)
    for i, image_id in enumerate(image_ids):
        path = voc2007 / "Annotations" / f"{image_id}.xml"
        for obj in ET.parse(path).getroot().iter("object"):
            k = index.get((obj.findtext("name") or "").strip())
            if k is None:
                continue  # a class outside the evaluated ones
            if (obj.findtext("difficult") or "0").strip() == "1":
                if targets[i, k] != POSITIVE:
                    targets[i, k] = IGNORE
            else:
                targets[i, k] = POSITIVE
    return targets


def check_positives(targets: torch.Tensor, classes: Sequence[str], voc2007: Path, image_set: str) -> None:
    """A UserError naming the classes without a present image in `image_set` (an SVM needs positives)."""
    missing = [c for k, c in enumerate(classes) if not (targets[:, k] == POSITIVE).any()]
    if missing:
        raise UserError(f"{voc2007 / 'ImageSets/Main' / (image_set + '.txt')}: no image of class(es) "
                        f"{', '.join(missing)} (non-difficult object in Annotations/); pass the classes present, "
                        f"e.g. svm.classes=[{','.join(c for c in classes if c not in missing)}]")


class VOCImages(Dataset):
    """The images of a VOC2007 image set: item i -> (transformed image, i)."""

    def __init__(self, voc2007: Path, image_ids: Sequence[str], transform: Any, loader: Any):
        self.paths = [voc2007 / "JPEGImages" / f"{i}.jpg" for i in image_ids]
        self.transform, self.loader = transform, loader

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.loader(str(self.paths[index]))), index
