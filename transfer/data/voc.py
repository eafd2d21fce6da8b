"""The Pascal VOC format: `VOC2007`/`VOC2012` trees of JPEGImages, Annotations and ImageSets/Main,
and VOC2012's semantic segmentation with the SBD aug set (`voc12aug`).

The procedural scenes are written with the real 20 VOC class names (the shape
classes stand in for five of them), so a 20-class head, mmdet's `VOCDataset`
and detectron2's VOC loader read them exactly as they read real VOC. The
segmentation tree is the one mmseg's `pascal_voc12_aug.py` reads: class-index
PNGs in `SegmentationClass` (VOC's palette, a void band of 255 along every
object's outline) and `SegmentationClassAug` (SBD's, one channel, no void), and
`ImageSets/Segmentation/{train,val,aug}.txt` (aug: SBD's images not in train or
val, as mmseg's tools/dataset_converters/voc_aug.py writes it).
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from transfer.data.images import check_images
from transfer.data.problems import Problems
from transfer.data.scenes import OBJECT_SCALE, SHAPES, Instance, render_objects

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")
SHAPE_TO_VOC: dict[str, str] = {"ellipse": "bottle", "rectangle": "tvmonitor", "triangle": "boat",
                                "star": "bird", "cross": "aeroplane"}
# (year, image set) pairs of the VOC07+12 protocol: train on both trainvals, test on 2007 test.
SPLITS: tuple[tuple[str, str], ...] = (("2007", "trainval"), ("2012", "trainval"), ("2007", "test"))
VOC07_SPLITS: tuple[tuple[str, str], ...] = (("2007", "trainval"), ("2007", "test"))  # the VOC07 SVM protocols'


def _annotation_xml(year: str, image_id: str, width: int, height: int, objects: list[tuple[str, tuple]],
                    segmented: bool = False) -> str:
    """A VOC annotation file for one image; boxes are 1-based and inclusive, as in VOC."""
    parts = [f"<annotation>\n\t<folder>VOC{year}</folder>\n\t<filename>{image_id}.jpg</filename>",
             "\t<source>\n\t\t<database>procedural scenes</database>\n\t</source>",
             f"\t<size>\n\t\t<width>{width}</width>\n\t\t<height>{height}</height>\n\t\t<depth>3</depth>\n\t</size>",
             f"\t<segmented>{int(segmented)}</segmented>"]
    for name, (x0, y0, x1, y1) in objects:
        truncated = int(x0 == 1 or y0 == 1 or x1 == width or y1 == height)
        parts.append(f"\t<object>\n\t\t<name>{name}</name>\n\t\t<pose>Unspecified</pose>\n"
                     f"\t\t<truncated>{truncated}</truncated>\n\t\t<difficult>0</difficult>\n"
                     f"\t\t<bndbox>\n\t\t\t<xmin>{x0}</xmin>\n\t\t\t<ymin>{y0}</ymin>\n"
                     f"\t\t\t<xmax>{x1}</xmax>\n\t\t\t<ymax>{y1}</ymax>\n\t\t</bndbox>\n\t</object>")
    return "\n".join(parts) + "\n</annotation>\n"


def _write_scene(base: Path, image_id: str, rng: np.random.Generator, size: tuple[int, int],
                 objects: tuple[int, int], scale: tuple[float, float], fill: str, segmented: bool = False
                 ) -> list[Instance]:
    """Render one scene into the `VOC<year>` folder `base`: its JPEG and its annotation xml; returns its instances."""
    img, instances = render_objects(rng, *size, int(rng.integers(objects[0], objects[1] + 1)), scale, fill=fill)
    Image.fromarray(img).save(base / "JPEGImages" / f"{image_id}.jpg", quality=92)
    boxes = []
    for inst in instances:
        ys, xs = np.nonzero(inst.mask)
        box = (int(xs.min()) + 1, int(ys.min()) + 1, int(xs.max()) + 1, int(ys.max()) + 1)
        boxes.append((SHAPE_TO_VOC[SHAPES[inst.label]], box))
    xml = _annotation_xml(base.name[len("VOC"):], image_id, *size, boxes, segmented)
    (base / "Annotations" / f"{image_id}.xml").write_text(xml)
    return instances


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
            image_id = f"{i + split_index * 100000:06d}" if year == "2007" else f"{year}_{i:06d}"
            _write_scene(base, image_id, np.random.default_rng([seed, 2, split_index, i]), size, objects, scale, fill)
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


def _read_image_set(listing: Path, name: str, problems: Problems, missing_hint: str = "") -> list[tuple[int, str]]:
    """The (line number, image id) pairs of an image-set file; a missing or empty one is recorded (and gives [])."""
    if not listing.is_file():
        problems.add(listing, f"missing: expected the image set {name}{missing_hint}")
        return []
    listed = [(lineno, line.strip()) for lineno, line in enumerate(listing.read_text().splitlines(), 1)
              if line.strip()]
    if not listed:  # the engines would fail later on an empty dataset, with a traceback naming no file
        problems.add(listing, f"lists no image; expected the ids of the {name} images, one a line")
    return listed


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
        for lineno, image_id in _read_image_set(listing, f"VOC{year} {image_set}", problems):
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


# ---- VOC2012 semantic segmentation with the SBD aug set (mmseg's pascal_voc12_aug.py) ----

# The segmentation splits the aug protocol reads, with their label-map folders: train on train + aug, test on val.
SEG_SPLITS: tuple[tuple[str, str], ...] = (("train", "SegmentationClass"), ("aug", "SegmentationClassAug"),
                                           ("val", "SegmentationClass"))
SEG_CLASSES: tuple[str, ...] = ("background", *VOC_CLASSES)  # class index = position; 255 = void (ignored)
IGNORE_INDEX = 255
_SBD_HINT = ("; make SegmentationClassAug/ and ImageSets/Segmentation/aug.txt from the SBD download with mmseg's "
             "tools/dataset_converters/voc_aug.py")


def voc_palette() -> list[int]:
    """VOC's 256-colour palette as flat r, g, b: each index's bits spread over the colour's high bits (255: cream)."""
    palette = []
    for index in range(256):
        rgb, c = [0, 0, 0], index
        for bit in range(8):
            for channel in range(3):
                rgb[channel] |= ((c >> channel) & 1) << (7 - bit)
            c >>= 3
        palette += rgb
    return palette


def class_map(instances: list[Instance], size: tuple[int, int]) -> np.ndarray:
    """The class index (SEG_CLASSES) of every pixel of a scene, (H, W) uint8: 0 where no object is visible."""
    labels = np.zeros(size[::-1], np.uint8)
    for inst in instances:  # visible masks do not overlap
        labels[inst.mask] = SEG_CLASSES.index(SHAPE_TO_VOC[SHAPES[inst.label]])
    return labels


def void_outlines(instances: list[Instance], labels: np.ndarray) -> np.ndarray:
    """`labels` with IGNORE_INDEX on a band along every object's outline, as VOC's SegmentationClass marks it.

    VOC's band is about 5 pixels wide on its ~500x375 images; this one scales with the image (at least 2 pixels).
    """
    radius = max(1, round(min(labels.shape) / 150))
    kernel = np.ones((2 * radius + 1,) * 2, np.uint8)
    out = labels.copy()
    for inst in instances:
        out[cv2.morphologyEx(inst.mask.astype(np.uint8), cv2.MORPH_GRADIENT, kernel) > 0] = IGNORE_INDEX
    return out


def write_voc12aug(root: str | Path, seed: int, num_train: int, num_val: int,
                   size: tuple[int, int] = (320, 240), objects: tuple[int, int] = (2, 6), fill: str = "solid",
                   scale: tuple[float, float] = OBJECT_SCALE) -> Path:
    """Write a procedural VOC2012 segmentation tree with the aug split under `root/VOC2012`; returns `root`.

    `num_train` images go half to `train.txt` (SegmentationClass), half to `aug.txt`
    (SegmentationClassAug only, as SBD's); `num_val` to `val.txt`. Every image also
    gets its SegmentationClassAug map (the SBD download covers VOC's train and val
    too) and its annotation xml, the boxes of the same objects.
    """
    base = Path(root) / "VOC2012"
    for sub in ("JPEGImages", "Annotations", "SegmentationClass", "SegmentationClassAug", "ImageSets/Segmentation"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    counts = {"train": num_train - num_train // 2, "aug": num_train // 2, "val": num_val}
    palette = voc_palette()
    ids: dict[str, list[str]] = {}
    for split_index, (image_set, label_dir) in enumerate(SEG_SPLITS):
        ids[image_set] = []
        for i in range(counts[image_set]):
            image_id = f"2012_{i + split_index * 100000:06d}"
            instances = _write_scene(base, image_id, np.random.default_rng([seed, 4, split_index, i]), size,
                                     objects, scale, fill, segmented=label_dir == "SegmentationClass")
            labels = class_map(instances, size)
            Image.fromarray(labels).save(base / "SegmentationClassAug" / f"{image_id}.png")
            if label_dir == "SegmentationClass":
                voc = Image.fromarray(void_outlines(instances, labels))
                voc.putpalette(palette)
                voc.save(base / "SegmentationClass" / f"{image_id}.png")
            ids[image_set].append(image_id)
    sets = {**ids, "trainval": ids["train"] + ids["val"], "trainaug": ids["train"] + ids["aug"]}
    for name, members in sets.items():
        (base / "ImageSets" / "Segmentation" / f"{name}.txt").write_text("".join(f"{m}\n" for m in members))
    return Path(root)


def check_voc12aug(root: str | Path, splits: tuple[tuple[str, str], ...] = SEG_SPLITS, sample_values: int = 8,
                   decode_images: bool = False) -> None:
    """Raise DatasetError naming every missing folder, image and label map, and every malformed map, of a VOC2012
    segmentation tree (`root` is the VOC2012 folder).

    Every listed image and map is read to its header (`decode_images`: every pixel)
    and each map's size checked against its image; the mode and values of the first
    `sample_values` maps of each split are checked too.
    """
    root = Path(root)
    problems = Problems("VOC12aug", root)
    for folder in dict.fromkeys(("JPEGImages", *(label_dir for _, label_dir in splits))):
        if not (root / folder).is_dir():  # one problem for the folder, not one for each file in it
            problems.add(root / folder, "missing folder" + (_SBD_HINT if folder == "SegmentationClassAug" else
                                                            "; expected it from VOCtrainval_11-May-2012.tar"))
    pairs: list[tuple[str, Path, Path]] = []  # (image set, image, label map)
    for image_set, label_dir in splits:
        listing = root / "ImageSets" / "Segmentation" / f"{image_set}.txt"
        hint = _SBD_HINT if image_set == "aug" else ""
        for lineno, image_id in _read_image_set(listing, f"VOC2012 segmentation {image_set}", problems, hint):
            image, label = root / "JPEGImages" / f"{image_id}.jpg", root / label_dir / f"{image_id}.png"
            where = f"(listed at {listing}:{lineno})"
            # a missing folder is reported once, above; an id with neither file is one problem, not two
            if image.is_file() and label.is_file():
                pairs.append((image_set, image, label))
            elif not image.is_file() and image.parent.is_dir():
                both = f" and its label map {label}" if not label.is_file() and label.parent.is_dir() else ""
                problems.add(image, f"missing image{both} {where}")
            elif not label.is_file() and label.parent.is_dir():
                problems.add(label, f"missing label map {where}")
    sizes = {**check_images([image for _, image, _ in pairs], problems, decode=decode_images),
             **check_images([label for _, _, label in pairs], problems, decode=decode_images, what="label map")}
    sampled: dict[str, int] = {}
    for image_set, image, label in pairs:
        if image not in sizes or label not in sizes:
            continue  # already reported as unreadable
        if sizes[label] != sizes[image]:
            problems.add(label, f"label map is {sizes[label][0]}x{sizes[label][1]}, expected "
                                f"{sizes[image][0]}x{sizes[image][1]} like {image.name}")
            continue
        sampled[image_set] = n = sampled.get(image_set, 0) + 1
        if n <= sample_values:
            _check_class_indices(label, problems)
    problems.raise_if_any()


def _check_class_indices(path: Path, problems: Problems) -> None:
    """Record a label map that is not one channel of VOC class indices (0-20) and 255 (void)."""
    try:
        with Image.open(path) as im:
            mode, values = im.mode, np.unique(np.asarray(im))
    except Exception as e:  # noqa: BLE001 -- a header that reads but pixels that do not
        problems.add(path, f"unreadable label map: {type(e).__name__}: {e}")
        return
    if mode not in ("P", "L"):
        problems.add(path, f"a {mode} image; expected one channel of class indices (a palette or grey PNG), not "
                           "colours")
        return
    bad = sorted(set(values.tolist()) - set(range(len(SEG_CLASSES))) - {IGNORE_INDEX})
    if bad:
        problems.add(path, f"values {bad[:5]} are not VOC class indices; expected 0-{len(SEG_CLASSES) - 1} "
                           f"and {IGNORE_INDEX} (void)")
