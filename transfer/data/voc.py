"""The Pascal VOC format: `VOC2007`/`VOC2012` trees of JPEGImages, Annotations and ImageSets/Main.

The procedural scenes are written with the real 20 VOC class names (the shape
classes stand in for five of them), so a 20-class head, mmdet's `VOCDataset`
and detectron2's VOC loader read them exactly as they read real VOC.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image

from transfer.data.images import check_images
from transfer.data.problems import Problems
from transfer.data.scenes import OBJECT_SCALE, SHAPES, render_objects

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")
SHAPE_TO_VOC: dict[str, str] = {"ellipse": "bottle", "rectangle": "tvmonitor", "triangle": "boat",
                                "star": "bird", "cross": "aeroplane"}
# (year, image set) pairs of the VOC07+12 protocol: train on both trainvals, test on 2007 test.
SPLITS: tuple[tuple[str, str], ...] = (("2007", "trainval"), ("2012", "trainval"), ("2007", "test"))


def _annotation_xml(year: str, image_id: str, width: int, height: int, objects: list[tuple[str, tuple]]) -> str:
    """A VOC annotation file for one image; boxes are 1-based and inclusive, as in VOC."""
    parts = [f"<annotation>\n\t<folder>VOC{year}</folder>\n\t<filename>{image_id}.jpg</filename>",
             "\t<source>\n\t\t<database>procedural scenes</database>\n\t</source>",
             f"\t<size>\n\t\t<width>{width}</width>\n\t\t<height>{height}</height>\n\t\t<depth>3</depth>\n\t</size>",
             "\t<segmented>0</segmented>"]
    for name, (x0, y0, x1, y1) in objects:
        truncated = int(x0 == 1 or y0 == 1 or x1 == width or y1 == height)
        parts.append(f"\t<object>\n\t\t<name>{name}</name>\n\t\t<pose>Unspecified</pose>\n"
                     f"\t\t<truncated>{truncated}</truncated>\n\t\t<difficult>0</difficult>\n"
                     f"\t\t<bndbox>\n\t\t\t<xmin>{x0}</xmin>\n\t\t\t<ymin>{y0}</ymin>\n"
                     f"\t\t\t<xmax>{x1}</xmax>\n\t\t\t<ymax>{y1}</ymax>\n\t\t</bndbox>\n\t</object>")
    return "\n".join(parts) + "\n</annotation>\n"


def write_voc(root: str | Path, seed: int, num_train: int, num_test: int,
              size: tuple[int, int] = (320, 240), objects: tuple[int, int] = (2, 6), fill: str = "solid",
              scale: tuple[float, float] = OBJECT_SCALE) -> Path:
    """Write procedural VOC2007 (trainval, test) and VOC2012 (trainval) trees under `root`; returns `root`."""
    root = Path(root)
    counts = {("2007", "trainval"): num_train - num_train // 2, ("2012", "trainval"): num_train // 2,
              ("2007", "test"): num_test}
    ids: dict[tuple[str, str], list[str]] = {}
    for split_index, (year, image_set) in enumerate(SPLITS):
        base = root / f"VOC{year}"
        for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        ids[year, image_set] = []
        for i in range(counts[year, image_set]):
            rng = np.random.default_rng([seed, 2, split_index, i])
            image_id = f"{i + split_index * 100000:06d}" if year == "2007" else f"{year}_{i:06d}"
            img, instances = render_objects(rng, *size, int(rng.integers(objects[0], objects[1] + 1)), scale,
                                            fill=fill)
            Image.fromarray(img).save(base / "JPEGImages" / f"{image_id}.jpg", quality=92)
            boxes = []
            for inst in instances:
                ys, xs = np.nonzero(inst.mask)
                box = (int(xs.min()) + 1, int(ys.min()) + 1, int(xs.max()) + 1, int(ys.max()) + 1)
                boxes.append((SHAPE_TO_VOC[SHAPES[inst.label]], box))
            (base / "Annotations" / f"{image_id}.xml").write_text(_annotation_xml(year, image_id, *size, boxes))
            ids[year, image_set].append(image_id)
    for year in ("2007", "2012"):
        main = root / f"VOC{year}" / "ImageSets" / "Main"
        trainval = ids[year, "trainval"]
        cut = len(trainval) // 2
        sets = {"trainval": trainval, "train": trainval[:cut], "val": trainval[cut:]}
        if (year, "test") in ids:
            sets["test"] = ids[year, "test"]
        for name, members in sets.items():
            (main / f"{name}.txt").write_text("".join(f"{m}\n" for m in members))
    return root


def _line_of(text: str, needle: str) -> int | None:
    """The 1-based line of the first occurrence of `needle` in `text`."""
    pos = text.find(needle)
    return text.count("\n", 0, pos) + 1 if pos >= 0 else None


def check_voc(root: str | Path, splits: tuple[tuple[str, str], ...] = SPLITS,
              classes: tuple[str, ...] = VOC_CLASSES, decode_images: bool = False) -> None:
    """Raise DatasetError naming every missing file, unreadable image and malformed annotation of a VOC tree.

    Every listed image's header is read; `decode_images` decodes every pixel too.
    """
    root = Path(root)
    problems = Problems("VOC", root)
    image_files: list[Path] = []
    for year, image_set in splits:
        base = root / f"VOC{year}"
        listing = base / "ImageSets" / "Main" / f"{image_set}.txt"
        if not listing.is_file():
            problems.add(listing, f"missing: expected the image set VOC{year} {image_set}")
            continue
        listed = [(lineno, line.strip()) for lineno, line in enumerate(listing.read_text().splitlines(), 1)
                  if line.strip()]
        if not listed:  # the engines would fail later on an empty dataset, with a traceback naming no file
            problems.add(listing, f"lists no image; expected the ids of the VOC{year} {image_set} images, one a line")
        for lineno, image_id in listed:
            image = base / "JPEGImages" / f"{image_id}.jpg"
            if not image.is_file():
                problems.add(image, f"missing image (listed at {listing}:{lineno})")
            else:
                image_files.append(image)
            xml_path = base / "Annotations" / f"{image_id}.xml"
            if not xml_path.is_file():
                problems.add(xml_path, f"missing annotation (listed at {listing}:{lineno})")
                continue
            _check_annotation(xml_path, classes, problems)
    check_images(image_files, problems, decode=decode_images)
    problems.raise_if_any()


def _check_annotation(path: Path, classes: tuple[str, ...], problems: Problems) -> None:
    """Record what is wrong with one VOC annotation xml."""
    text = path.read_text(errors="replace")
    try:
        tree = ET.fromstring(text)
    except ET.ParseError as e:
        problems.add(path, f"does not parse as XML ({e}); expected a VOC annotation",
                     e.position[0])
        return
    try:
        width, height = int(tree.findtext("size/width")), int(tree.findtext("size/height"))
    except (TypeError, ValueError):
        problems.add(path, "no <size> with integer <width> and <height>; expected the image size, "
                           "e.g. <size><width>500</width><height>375</height><depth>3</depth></size>",
                     _line_of(text, "<size") or _line_of(text, "<annotation"))
        return
    for obj in tree.iter("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in classes:
            problems.add(path, f"unknown class name {name!r}; expected one of the {len(classes)} VOC classes",
                         _line_of(text, f"<name>{name}</name>"))
        try:
            x0, y0, x1, y1 = (float(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (TypeError, ValueError):
            problems.add(path, f"object {name!r} has no numeric bndbox xmin/ymin/xmax/ymax", _line_of(text, name))
            continue
        if not (0 <= x0 <= x1 <= width and 0 <= y0 <= y1 <= height):  # a few real VOC boxes start at 0
            problems.add(path, f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) of {name!r} lies outside the {width}x{height} "
                               "image; expected 1 <= xmin <= xmax <= width (1-based)",
                         _line_of(text, f"<xmin>{obj.findtext('bndbox/xmin')}</xmin>"))


def classes_present(root: str | Path, year: str, image_set: str) -> list[str]:
    """The classes with at least one non-difficult object in VOC`year` `image_set`, in VOC_CLASSES order: those
    whose AP the VOC evaluation can score above 0 (a class without ground truth scores 0)."""
    base = Path(root) / f"VOC{year}"
    found = set()
    for image_id in (base / "ImageSets" / "Main" / f"{image_set}.txt").read_text().split():
        for obj in ET.parse(base / "Annotations" / f"{image_id}.xml").getroot().iter("object"):
            if (obj.findtext("difficult") or "0").strip() != "1":
                found.add((obj.findtext("name") or "").strip())
    return [name for name in VOC_CLASSES if name in found]
