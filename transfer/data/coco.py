"""The COCO instances format: `annotations/instances_{split}.json` and `{split}/*.jpg`.

Procedural scenes are written with the real 80 COCO categories (ids and names),
the shape classes standing in for five of them, so an 80-class head and the
COCO evaluation run exactly as on real COCO.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from transfer.data.images import check_images
from transfer.data.problems import Problems
from transfer.data.scenes import OBJECT_SCALE, SHAPES, render_objects

_CATEGORIES = """1 person person|2 bicycle vehicle|3 car vehicle|4 motorcycle vehicle|5 airplane vehicle|
6 bus vehicle|7 train vehicle|8 truck vehicle|9 boat vehicle|10 traffic_light outdoor|11 fire_hydrant outdoor|
13 stop_sign outdoor|14 parking_meter outdoor|15 bench outdoor|16 bird animal|17 cat animal|18 dog animal|
19 horse animal|20 sheep animal|21 cow animal|22 elephant animal|23 bear animal|24 zebra animal|25 giraffe animal|
27 backpack accessory|28 umbrella accessory|31 handbag accessory|32 tie accessory|33 suitcase accessory|
34 frisbee sports|35 skis sports|36 snowboard sports|37 sports_ball sports|38 kite sports|39 baseball_bat sports|
40 baseball_glove sports|41 skateboard sports|42 surfboard sports|43 tennis_racket sports|44 bottle kitchen|
46 wine_glass kitchen|47 cup kitchen|48 fork kitchen|49 knife kitchen|50 spoon kitchen|51 bowl kitchen|
52 banana food|53 apple food|54 sandwich food|55 orange food|56 broccoli food|57 carrot food|58 hot_dog food|
59 pizza food|60 donut food|61 cake food|62 chair furniture|63 couch furniture|64 potted_plant furniture|
65 bed furniture|67 dining_table furniture|70 toilet furniture|72 tv electronic|73 laptop electronic|
74 mouse electronic|75 remote electronic|76 keyboard electronic|77 cell_phone electronic|78 microwave appliance|
79 oven appliance|80 toaster appliance|81 sink appliance|82 refrigerator appliance|84 book indoor|85 clock indoor|
86 vase indoor|87 scissors indoor|88 teddy_bear indoor|89 hair_drier indoor|90 toothbrush indoor"""
# The 80 COCO categories, in id order, as the official annotation files list them.
COCO_CATEGORIES: list[dict] = [
    {"id": int(i), "name": n.replace("_", " "), "supercategory": s}
    for i, n, s in (c.split() for c in _CATEGORIES.replace("\n", "").split("|"))
]
# Which COCO category each procedural shape class is written as.
SHAPE_TO_COCO: dict[str, str] = {"ellipse": "sports ball", "rectangle": "tv", "triangle": "kite",
                                 "star": "frisbee", "cross": "airplane"}
SPLITS = ("train2017", "val2017")


def annotation_file(root: Path, split: str) -> Path:
    """Where COCO keeps the instances json of `split`."""
    return Path(root) / "annotations" / f"instances_{split}.json"


def _polygons(mask: np.ndarray) -> list[list[float]]:
    """The outer contours of a visible mask as COCO polygons (flat x, y lists of >= 3 points)."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]


def write_coco(root: str | Path, seed: int, num_train: int, num_val: int,
               size: tuple[int, int] = (320, 240), objects: tuple[int, int] = (2, 6), fill: str = "solid",
               scale: tuple[float, float] = OBJECT_SCALE) -> Path:
    """Write a procedural COCO-format dataset under `root`; returns `root`."""
    root = Path(root)
    cat_id = {c["name"]: c["id"] for c in COCO_CATEGORIES}
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    ann_id = 1
    for split_index, (split, count) in enumerate(zip(SPLITS, (num_train, num_val))):
        (root / split).mkdir(exist_ok=True)
        images, annotations = [], []
        for i in range(count):
            rng = np.random.default_rng([seed, 1, split_index, i])
            image_id = split_index * 1_000_000 + i + 1
            img, instances = render_objects(rng, *size, int(rng.integers(objects[0], objects[1] + 1)), scale,
                                            fill=fill)
            name = f"{image_id:012d}.jpg"
            Image.fromarray(img).save(root / split / name, quality=92)
            images.append({"id": image_id, "file_name": name, "width": size[0], "height": size[1]})
            for inst in instances:
                polys = _polygons(inst.mask)
                if not polys:
                    continue
                rle = mask_utils.merge(mask_utils.frPyObjects(polys, size[1], size[0]))
                area = float(mask_utils.area(rle))
                if area < 16:
                    continue
                annotations.append({
                    "id": ann_id, "image_id": image_id, "category_id": cat_id[SHAPE_TO_COCO[SHAPES[inst.label]]],
                    "segmentation": polys, "area": area, "bbox": mask_utils.toBbox(rle).tolist(), "iscrowd": 0})
                ann_id += 1
        data = {"info": {"description": f"procedural COCO-format scenes, seed {seed}", "version": "1.0"},
                "licenses": [], "images": images, "annotations": annotations, "categories": COCO_CATEGORIES}
        annotation_file(root, split).write_text(json.dumps(data))
    return root


def check_coco(root: str | Path, splits: tuple[str, ...] = SPLITS, check_files: bool = True,
               decode_images: bool = False) -> None:
    """Raise DatasetError naming every missing file, unreadable image and malformed annotation of a COCO dataset.

    Every listed image's header is read; `decode_images` decodes every pixel too.
    """
    root = Path(root)
    problems = Problems("COCO", root)
    image_files: list[Path] = []
    for split in splits:
        path = annotation_file(root, split)
        if not path.is_file():
            problems.add(path, f"missing: expected the instances json of split {split!r}")
            continue
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            line = getattr(e, "lineno", None)
            problems.add(path, f"does not parse as JSON ({getattr(e, 'msg', e)}); expected a COCO instances file",
                          line)
            continue
        if not isinstance(data, dict):
            problems.add(path, f"the top level is a {type(data).__name__}; expected an object with keys "
                               "images, annotations, categories", 1)
            continue
        missing = [k for k in ("images", "annotations", "categories") if not isinstance(data.get(k), list)]
        if missing:
            problems.add(path, f"no list under {', '.join(repr(k) for k in missing)}; "
                               "expected keys images, annotations, categories (each a list)")
            continue
        image_files += _check_split(root, split, path, data, problems, check_files)
    if check_files:
        check_images(image_files, problems, decode=decode_images)
    problems.raise_if_any()


def _check_split(root: Path, split: str, path: Path, data: dict, problems: Problems, check_files: bool) -> list[Path]:
    """Record what is wrong with the entries of one instances json; return the image files it lists."""
    cats = {c.get("id") for c in data["categories"] if isinstance(c, dict)}
    for i, cat in enumerate(data["categories"]):
        if not (isinstance(cat, dict) and "id" in cat and "name" in cat):
            problems.add(path, f"categories[{i}] is {_short(cat)}; expected an object with id and name")
    images, files = {}, []
    for i, img in enumerate(data["images"]):
        if not (isinstance(img, dict) and {"id", "file_name", "width", "height"} <= img.keys()):
            problems.add(path, f"images[{i}] (id {img.get('id') if isinstance(img, dict) else None}) lacks "
                               "id/file_name/width/height; expected an object with all four")
            continue
        if img["id"] in images:  # the engines would silently merge or double-count the two entries
            first = images[img["id"]]["file_name"]
            problems.add(path, f"images[{i}]: image id {img['id']} is listed twice (also for {first!r}); "
                               "expected each image once, under an id of its own")
            continue
        images[img["id"]] = img
        file = root / split / img["file_name"]
        if check_files and not file.is_file():
            problems.add(file, f"missing image (listed in {path.name}, id {img['id']})")
        else:
            files.append(file)
    degenerate: list[object] = []  # annotation ids with a polygon of fewer than 3 points
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            problems.add(path, f"annotations[{i}] is {_short(ann)}; expected an object")
            continue
        where = f"annotation id {ann.get('id')}"
        img = images.get(ann.get("image_id"))
        if img is None:
            problems.add(path, f"{where}: image_id {ann.get('image_id')} is not in images; "
                               "expected the id of an entry of images")
            continue
        if ann.get("category_id") not in cats:
            problems.add(path, f"{where}: category_id {ann.get('category_id')} is not in categories; "
                               "expected the id of an entry of categories")
        if _check_segmentation(ann.get("segmentation"), where, path, problems):
            degenerate.append(ann.get("id"))
        box = ann.get("bbox")
        if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
            problems.add(path, f"{where}: bbox {box!r} is not [x, y, width, height]")
            continue
        x, y, w, h = box
        eps = 1.0  # COCO's own boxes overhang the image by up to a pixel
        # Zero width or height is allowed: real train2017 has such boxes (annotation 918), which the engines skip.
        if w < 0 or h < 0 or x < -eps or y < -eps or x + w > img["width"] + eps or y + h > img["height"] + eps:
            problems.add(path, f"{where}: bbox {box} lies outside image {img['id']} "
                               f"({img['width']}x{img['height']}); expected 0 <= x, x + w <= width, w >= 0")
        if "iscrowd" not in ann or "area" not in ann:
            problems.add(path, f"{where}: lacks 'iscrowd' or 'area'")
    if degenerate:
        # Real COCO has a few such polygons (detectron2 drops them with a warning, mmdet skips them): not an error.
        print(f"warning: {path}: {len(degenerate)} polygon(s) with fewer than 3 points (annotation id "
              f"{', '.join(map(str, degenerate[:5]))}{', ...' if len(degenerate) > 5 else ''}); the engines drop them",
              file=sys.stderr)
    return files


def _check_segmentation(seg: object, where: str, path: Path, problems: Problems) -> bool:
    """Record a segmentation that is neither polygons nor an RLE (absent is allowed: boxes only); True when a
    polygon has fewer than 3 points (well formed, but no area: a warning, not a problem)."""
    if seg is None or isinstance(seg, dict):  # no mask, or RLE {size, counts}
        if isinstance(seg, dict) and not {"size", "counts"} <= seg.keys():
            problems.add(path, f"{where}: RLE segmentation lacks 'size' or 'counts'")
        return False
    if not isinstance(seg, list):
        problems.add(path, f"{where}: segmentation is {_short(seg)}; expected a list of polygons or an RLE")
        return False
    degenerate = False
    for k, poly in enumerate(seg):
        if not (isinstance(poly, list) and all(isinstance(v, (int, float)) for v in poly)):
            problems.add(path, f"{where}: polygon {k} is {_short(poly)}; expected a flat list [x1, y1, x2, y2, ...]")
        elif len(poly) % 2:
            problems.add(path, f"{where}: polygon {k} has {len(poly)} coordinates; "
                               "expected an even number (x, y pairs)")
        elif len(poly) < 6:
            degenerate = True
    return degenerate


def _short(value: object) -> str:
    """A value for an error message, cut to a readable length."""
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"
