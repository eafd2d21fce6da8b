"""Write every procedural dataset (COCO, VOC, VOC12aug, Cityscapes, ImageFolder) under one folder."""
from __future__ import annotations

import json
from pathlib import Path

from transfer.data.cityscapes import write_cityscapes
from transfer.data.coco import write_coco
from transfer.data.imagefolder import write_imagefolder
from transfer.data.objects import write_object_images
from transfer.data.scenes import FILLS, OBJECT_SCALE, STREET_FILLS
from transfer.data.voc import write_voc, write_voc12aug
from transfer.errors import UserError
from transfer.fileio import atomic_folder

FORMATS: tuple[str, ...] = ("coco", "voc", "cityscapes", "imagefolder", "voc12aug")
MANIFEST = "generated.json"  # what made a folder; equal parameters mean it can be reused
# The real datasets' image sizes (width, height), for preflights at full size (`make_demo_data.py --full-size`);
# ImageNet's average is about 500x375, the ImageFolder writer makes squares.
FULL_SIZES = {"coco": (640, 480), "voc": (500, 375), "cityscapes": (2048, 1024), "imagefolder": (500, 500),
              "voc12aug": (500, 375)}


def make_dataset(fmt: str, out: str | Path, seed: int = 0, num_images: int = 64, num_val: int | None = None,
                 image_size: tuple[int, int] | None = None, overwrite: bool = False, kind: str | None = None,
                 objects: tuple[int, int] | None = None, fill: str | None = None,
                 object_scale: tuple[float, float] | None = None) -> Path:
    """Write the procedural `fmt` dataset to `out` atomically (a temporary folder renamed at the end).

    `num_images` train images and `num_val` val/test images (default a quarter,
    at least 8); `image_size` is (width, height). ImageFolder's `kind`: `shapes`
    (default), `patterns` or `objects` (one large shape per image, `objects.py`);
    VOC's, VOC12aug's and COCO's `objects`: (fewest, most) shapes per scene (default 2-6), and
    their `fill`: `solid` (default), `texture` or `pattern` (`scenes.render_objects`); Cityscapes'
    `fill`: `texture` (default) or `pattern` (`scenes.render_street`); VOC's, VOC12aug's and COCO's
    `object_scale`: a shape's (smallest, largest) radius over the image's shorter side (default
    `scenes.OBJECT_SCALE`). VOC12aug's train images go half to train.txt, half to aug.txt. An
    existing `out` made with the same parameters is reused; a different one is an
    error unless `overwrite`.
    """
    if fmt not in FORMATS:
        raise UserError(f"unknown dataset format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if num_images < 1 or (num_val is not None and num_val < 1):
        raise UserError(f"--num-images must be at least 1 (got {num_images}, val {num_val})")
    out = Path(out)
    num_val = max(8, num_images // 4) if num_val is None else num_val
    if fmt == "voc12aug" and num_images < 2:
        raise UserError(f"voc12aug needs --num-images >= 2 (half go to train.txt, half to aug.txt; got {num_images})")
    default_size = {"coco": (320, 240), "voc": (320, 240), "cityscapes": (256, 128), "imagefolder": (64, 64),
                    "voc12aug": (320, 240)}[fmt]
    size = tuple(image_size or default_size)
    params = {"format": fmt, "seed": seed, "num_images": num_images, "num_val": num_val, "image_size": list(size)}
    if kind is not None and fmt != "imagefolder" or (objects, object_scale) != (None, None) and \
            fmt not in ("voc", "voc12aug", "coco") or fill is not None and fmt == "imagefolder":
        raise UserError(f"{fmt}: kind= is for imagefolder, objects= and object_scale= for voc and coco (and "
                        "voc12aug), fill= for voc, voc12aug, coco and cityscapes")
    fills = STREET_FILLS if fmt == "cityscapes" else FILLS
    if fill not in (None, *fills):
        raise UserError(f"unknown {fmt} fill {fill!r}; expected one of {', '.join(fills)}")
    if kind not in (None, "shapes", "patterns", "objects"):
        raise UserError(f"unknown ImageFolder kind {kind!r}; expected shapes, patterns or objects")
    if objects is not None and not 1 <= objects[0] <= objects[1]:
        raise UserError(f"objects={objects}: expected (fewest, most) with 1 <= fewest <= most")
    if object_scale is not None and not 0 < object_scale[0] <= object_scale[1] <= 0.5:
        raise UserError(f"object_scale={object_scale}: expected (smallest, largest) radius over the shorter side, "
                        "with 0 < smallest <= largest <= 0.5")
    params.update({"kind": kind} if kind not in (None, "shapes") else {})
    params.update({"objects": list(objects)} if objects is not None else {})
    if object_scale is not None and tuple(object_scale) != OBJECT_SCALE:  # the default keeps old manifests
        params["object_scale"] = list(object_scale)
    params.update({"fill": fill} if fill not in (None, fills[0]) else {})  # the default keeps old manifests
    if out.exists():
        manifest = out / MANIFEST
        if manifest.is_file() and json.loads(manifest.read_text()) == params and not overwrite:
            return out
        if not overwrite:
            raise UserError(f"{out} already exists and was not made with these parameters; "
                            "pass --force to replace it or choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_folder(out) as tmp:  # removes those of killed runs; the usual folder mode, not 0700
        scene = {"objects": tuple(objects)} if objects is not None else {}
        scene.update({"fill": fill} if fill is not None else {})
        scene.update({"scale": tuple(object_scale)} if object_scale is not None else {})
        if fmt == "coco":
            write_coco(tmp, seed, num_images, num_val, size, **scene)
        elif fmt == "voc":
            write_voc(tmp, seed, num_images, num_val, size, **scene)
        elif fmt == "voc12aug":
            write_voc12aug(tmp, seed, num_images, num_val, size, **scene)
        elif fmt == "cityscapes":
            write_cityscapes(tmp, seed, num_images, num_val, size, **scene)
        elif kind == "objects":
            write_object_images(tmp, seed, num_images, num_val, size[0])
        else:
            write_imagefolder(tmp, seed, num_images, num_val, size[0], kind=kind or "shapes")
        (tmp / MANIFEST).write_text(json.dumps(params) + "\n")
    return out


def make_demo_data(out: str | Path, seed: int = 0, num_images: int = 64, num_val: int | None = None,
                   formats: tuple[str, ...] = FORMATS, overwrite: bool = False,
                   image_sizes: dict[str, tuple[int, int]] | None = None) -> dict[str, Path]:
    """Write `out/<format>` for each of `formats` (coco, voc, cityscapes, imagefolder, voc12aug); returns them.

    `image_sizes` maps a format to its (width, height) (e.g. FULL_SIZES); the others keep their small default.
    """
    return {fmt: make_dataset(fmt, Path(out) / fmt, seed, num_images, num_val,
                              image_size=(image_sizes or {}).get(fmt), overwrite=overwrite)
            for fmt in formats}
