"""Procedural scenes: a few shape classes on cluttered, textured backgrounds.

One generator serves every dataset format. `render_objects` makes detection and
classification scenes (instances with visible masks), `render_street` makes
Cityscapes-like street scenes (a label-id map and instance ids). Everything is
drawn from a `numpy.random.Generator`, so a scene is a pure function of its seed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from transfer.data.patterns import pattern_mask

# The object classes, by the shape that draws them.
SHAPES: tuple[str, ...] = ("ellipse", "rectangle", "triangle", "star", "cross")


@dataclass
class Instance:
    """One object of a scene: its class index into SHAPES and its visible mask (H x W bool)."""

    label: int
    mask: np.ndarray


def shape_polygon(shape: str, cx: float, cy: float, r: float, angle: float, aspect: float) -> np.ndarray:
    """The outline of `shape` centred at (cx, cy) with radius r, as a (N, 2) float array of x, y."""
    if shape == "ellipse":
        t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
        pts = np.stack([np.cos(t), np.sin(t) * aspect], 1)
    elif shape == "rectangle":
        pts = np.array([[-1, -aspect], [1, -aspect], [1, aspect], [-1, aspect]], float)
    elif shape == "triangle":
        t = np.deg2rad([-90, 30, 150])
        pts = np.stack([np.cos(t), np.sin(t)], 1)
    elif shape == "star":
        t = np.deg2rad(np.arange(10) * 36 - 90)
        rad = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
        pts = np.stack([np.cos(t) * rad, np.sin(t) * rad], 1)
    elif shape == "cross":
        a, b = 1.0, 0.33
        pts = np.array([[-b, -a], [b, -a], [b, -b], [a, -b], [a, b], [b, b], [b, a], [-b, a],
                        [-b, b], [-a, b], [-a, -b], [-b, -b]], float)
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    return pts @ rot.T * r + np.array([cx, cy])


def polygon_mask(polygon: np.ndarray, width: int, height: int) -> np.ndarray:
    """Rasterise a polygon to an (H, W) bool mask."""
    canvas = Image.new("L", (width, height), 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in polygon.tolist()], fill=1)
    return np.asarray(canvas, dtype=bool)


def texture(rng: np.random.Generator, width: int, height: int, base: np.ndarray | None = None,
            contrast: float = 40.0) -> np.ndarray:
    """A random texture (H, W, 3) uint8: a base colour with noise, stripes or a gradient."""
    color = rng.integers(0, 256, 3).astype(np.float32) if base is None else base.astype(np.float32)
    img = np.broadcast_to(color, (height, width, 3)).copy()
    kind = rng.integers(0, 3)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    if kind == 0:  # speckle noise
        img += rng.normal(0, contrast / 2, (height, width, 1))
    elif kind == 1:  # stripes at a random angle and period
        theta, period = rng.uniform(0, np.pi), rng.uniform(4, 16)
        phase = (xx * np.cos(theta) + yy * np.sin(theta)) / period
        img += (np.sin(2 * np.pi * phase) * contrast)[..., None]
    else:  # linear gradient
        g = rng.normal(0, 1, 2)
        ramp = (xx * g[0] + yy * g[1]) / max(width, height)
        img += (ramp * contrast)[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


def cluttered_background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A textured background with low-contrast clutter (blobs and lines) that belongs to no class."""
    img = texture(rng, width, height, contrast=30.0)
    canvas = Image.fromarray(img)
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(4, 12))):
        x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
        x1, y1 = x0 + rng.uniform(-width / 3, width / 3), y0 + rng.uniform(-height / 3, height / 3)
        color = tuple(int(v) for v in np.clip(img[int(y0) % height, int(x0) % width] + rng.normal(0, 35, 3), 0, 255))
        if rng.random() < 0.5:
            draw.line([(x0, y0), (x1, y1)], fill=color, width=int(rng.integers(1, 4)))
        else:  # an irregular blob, so that no clutter looks like one of the shape classes
            t = np.sort(rng.uniform(0, 2 * np.pi, 9))
            r = rng.uniform(0.3, 1.0, 9) * rng.uniform(0.05, 0.2) * min(width, height)
            draw.polygon([(x0 + a * np.cos(b), y0 + a * np.sin(b)) for a, b in zip(r, t)], fill=color)
    return np.asarray(canvas).copy()


def solid_colour(rng: np.random.Generator, pixels: np.ndarray, min_distance: float = 150.0) -> np.ndarray:
    """A random RGB colour at least `min_distance` (sum of channel differences) from the mean of `pixels` (N x 3)."""
    mean = pixels.reshape(-1, 3).mean(0)
    for _ in range(100):
        colour = rng.integers(0, 256, 3)
        if np.abs(colour - mean).sum() >= min_distance:
            return colour
    return 255 - mean.round().astype(np.int64)  # the complement is always far enough from a mean


# The period of a `pattern` fill, in pixels: 3-4.5 px at the demo's network input (images at about half size),
# where a ResNet-18 trained for a few hundred steps tells the five patterns apart (measured: kNN 98.8 %).
FILL_PERIOD = (6.0, 9.0)


def pattern_fill(rng: np.random.Generator, label: int, width: int, height: int, pixels: np.ndarray) -> np.ndarray:
    """An (H, W, 3) uint8 fill for a shape of class `label`: its class's pattern (`patterns.PATTERNS[label]`)
    in a colour far from the mean of `pixels` (what the shape covers) and that colour's complement."""
    colour = solid_colour(rng, pixels).astype(np.float32)
    mask = pattern_mask(label, (width, height), rng.uniform(*FILL_PERIOD), tuple(rng.uniform(0, 1, 2)))
    img = np.where(mask[..., None], colour, 255 - colour) + rng.normal(0, 8, (height, width, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


FILLS = ("solid", "texture", "pattern")
# A shape's radius as a fraction of the image's shorter side, (smallest, largest): boxes of about 0.15-0.6 of it.
OBJECT_SCALE = (0.08, 0.3)


def render_objects(rng: np.random.Generator, width: int, height: int, num_objects: int,
                   scale: tuple[float, float] = OBJECT_SCALE, labels: list[int] | None = None,
                   min_visible: float = 0.4, min_pixels: int = 64, fill: str = "solid"
                   ) -> tuple[np.ndarray, list[Instance]]:
    """A scene with up to `num_objects` shapes that may occlude each other.

    `fill="solid"`: each shape in one colour (with pixel noise) far from the
    background's, as the object-centric classification images (`objects.py`) draw
    them, so a backbone that learned those sees the same objects here;
    `"texture"`: a random texture (noise, stripes or a gradient) of a random colour;
    `"pattern"`: the shape's class pattern (`pattern_fill`), as the demo's object
    images draw it: class evidence in the outline and in the texture, which a
    short training run learns (the demo's data).

    Objects are painted back to front; an object that would keep less than
    `min_visible` of its area (or fewer than `min_pixels` pixels) after occlusion
    is dropped before painting, so every painted object is labelled.
    Returns the image (H, W, 3) uint8 and the instances, back to front.
    """
    if fill not in FILLS:
        raise ValueError(f"unknown fill {fill!r}; expected one of {', '.join(FILLS)}")
    side = min(width, height)
    drafts = []  # (label, full mask, texture)
    for k in range(num_objects):
        label = int(rng.integers(0, len(SHAPES))) if labels is None else labels[k]
        r = rng.uniform(*scale) * side
        cx, cy = rng.uniform(0.1 * width, 0.9 * width), rng.uniform(0.1 * height, 0.9 * height)
        poly = shape_polygon(SHAPES[label], cx, cy, r, rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 1.0))
        drafts.append((label, polygon_mask(poly, width, height), texture(rng, width, height) if fill == "texture"
                       else None))

    # Drop objects hidden too much by the ones painted after them; dropping one only
    # uncovers the others, so one pass from the front is enough.
    kept: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
    cover = np.zeros((height, width), bool)
    for label, mask, tex in reversed(drafts):
        visible = mask & ~cover
        if mask.sum() > 0 and visible.sum() >= max(min_pixels, min_visible * mask.sum()):
            kept.append((label, mask, tex, visible))
            cover |= mask
    kept.reverse()

    img = cluttered_background(rng, width, height)
    for label, mask, tex, _ in kept:
        # solid and pattern: colours far from what the shape covers, drawn only now (after the background)
        if tex is None and fill == "pattern":
            tex = pattern_fill(rng, label, width, height, img[mask])
        elif tex is None:
            colour = solid_colour(rng, img[mask]) if mask.any() else rng.integers(0, 256, 3)
            tex = np.clip(colour + rng.normal(0, 8, (height, width, 3)), 0, 255).astype(np.uint8)
        img[mask] = tex[mask]
    return img, [Instance(label, visible) for label, _, _, visible in kept]


# Cityscapes label ids (cityscapesscripts.helpers.labels) that the street scenes use.
CS_ID = {"unlabeled": 0, "ego vehicle": 1, "road": 7, "sidewalk": 8, "building": 11, "wall": 12,
         "fence": 13, "pole": 17, "traffic light": 19, "traffic sign": 20, "vegetation": 21,
         "terrain": 22, "sky": 23, "person": 24, "rider": 25, "car": 26, "truck": 27, "bus": 28,
         "bicycle": 33}
# Instance classes of the street scenes (label id * 1000 + k in instanceIds).
CS_THINGS = ("person", "car", "truck", "bus", "bicycle", "rider")
# `render_street(fill="pattern")`: five classes that position does not give away, each drawn with one of the
# object classes' patterns (`patterns.PATTERNS`), so a backbone that learned those patterns sees these classes
STREET_PATTERNS = {"sidewalk": 0, "person": 1, "car": 2, "vegetation": 3, "building": 4}
STREET_FILLS = ("texture", "pattern")


def render_street(rng: np.random.Generator, width: int, height: int, fill: str = "texture"
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A Cityscapes-like street scene.

    `fill="texture"`: every class in a random texture (per scene for stuff, per
    instance for things): a class is told by its place and shape only; `"pattern"`:
    the classes of STREET_PATTERNS in their pattern (`pattern_fill`, random colours),
    the others in random textures.
    Returns the image (H, W, 3) uint8, the label-id map (H, W) uint8 in real
    Cityscapes ids, and the instance-id map (H, W) int32 (label id * 1000 + k for
    things, the label id for stuff), as `gtFine_instanceIds` stores it.
    """
    if fill not in STREET_FILLS:
        raise ValueError(f"unknown street fill {fill!r}; expected one of {', '.join(STREET_FILLS)}")
    labels = np.zeros((height, width), np.uint8)
    img = np.zeros((height, width, 3), np.uint8)
    palette = {}  # (class, instance) -> its texture or pattern

    things = np.zeros((height, width), np.int32)  # instance id where a thing is visible, else 0

    def paint(mask: np.ndarray, name: str, tex: np.ndarray | None = None, instance: int = 0) -> None:
        patterned = fill == "pattern" and name in STREET_PATTERNS
        if tex is None or patterned:  # stuff: one per class and scene (instance 0); patterned things: one each
            if (name, instance) not in palette:  # a pattern: in colours far from what it covers
                covered = img[mask] if mask.any() else img
                palette[name, instance] = (pattern_fill(rng, STREET_PATTERNS[name], width, height, covered)
                                           if patterned else texture(rng, width, height, contrast=25.0))
            tex = palette[name, instance]
        img[mask] = tex[mask]
        labels[mask] = CS_ID[name]
        things[mask] = instance

    yy, xx = np.mgrid[0:height, 0:width]
    horizon = int(height * rng.uniform(0.35, 0.5))
    paint(yy < horizon, "sky")
    # Buildings: a skyline of rectangles reaching above the horizon.
    x = 0
    while x < width:
        w = int(rng.uniform(0.1, 0.3) * width)
        top = int(horizon - rng.uniform(0.1, 0.35) * height)
        paint((xx >= x) & (xx < x + w) & (yy >= top) & (yy < horizon + height // 8),
              "building" if rng.random() < 0.85 else "wall")
        x += w
    for _ in range(int(rng.integers(1, 4))):  # trees
        cx, cy, r = rng.uniform(0, width), horizon - rng.uniform(0, 0.1) * height, rng.uniform(0.05, 0.15) * height
        paint((xx - cx) ** 2 + ((yy - cy) * 1.3) ** 2 < r * r, "vegetation")
    # Ground: road in a trapezoid, sidewalk and terrain beside it.
    ground = yy >= horizon + height // 8
    paint(ground, "sidewalk")
    left = width * rng.uniform(0.3, 0.45) - (yy - horizon) * rng.uniform(0.8, 1.5)
    right = width * rng.uniform(0.55, 0.7) + (yy - horizon) * rng.uniform(0.8, 1.5)
    paint(ground & (xx > left) & (xx < right), "road")
    if rng.random() < 0.5:
        paint(ground & (xx < left - 0.1 * width), "terrain")
    if rng.random() < 0.5:
        paint(ground & (yy < horizon + height // 8 + height // 30) & (xx > right), "fence")

    base_y = horizon + height // 8
    for k in range(int(rng.integers(2, 7))):  # poles with lights or signs
        x = int(rng.uniform(0, width))
        top = int(horizon - rng.uniform(0.05, 0.2) * height)
        paint((xx >= x) & (xx < x + max(2, width // 120)) & (yy >= top) & (yy < base_y + height // 10), "pole")
        head = (np.abs(xx - x) < width // 60 + 2) & (yy >= top - height // 25) & (yy < top + height // 40)
        paint(head, "traffic sign" if k % 2 else "traffic light")
    counts = {name: 0 for name in CS_THINGS}
    for _ in range(int(rng.integers(2, 7))):  # cars, people, ...
        name = CS_THINGS[int(rng.choice(len(CS_THINGS), p=[0.3, 0.4, 0.08, 0.06, 0.08, 0.08]))]
        y = rng.uniform(base_y, height * 0.95)
        depth = (y - horizon) / (height - horizon)
        h = (0.25 if name in ("person", "rider") else 0.18 if name == "car" else 0.28) * height * (0.4 + depth)
        w = h * (0.4 if name in ("person", "rider") else 1.8 if name == "car" else 2.2 if name != "bicycle" else 1.4)
        cx = rng.uniform(0, width)
        if name in ("person", "rider"):
            mask = (((xx - cx) / (w / 2)) ** 2 + ((yy - (y - h * 0.85)) / (h * 0.15)) ** 2 < 1) | \
                   ((np.abs(xx - cx) < w / 2) & (yy > y - h * 0.72) & (yy < y))
        elif name == "bicycle":
            mask = ((xx - (cx - w / 3)) ** 2 + (yy - (y - h / 3)) ** 2 < (h / 3) ** 2) | \
                   ((xx - (cx + w / 3)) ** 2 + (yy - (y - h / 3)) ** 2 < (h / 3) ** 2)
        else:
            mask = (np.abs(xx - cx) < w / 2) & (yy > y - h) & (yy < y) & \
                   ~((yy < y - h * 0.6) & (np.abs(xx - cx) > w * 0.35))
        if mask.sum() < 16:
            continue
        paint(mask, name, texture(rng, width, height), instance=CS_ID[name] * 1000 + counts[name])
        counts[name] += 1
    if rng.random() < 0.3:  # the ego vehicle's bonnet, ignored in training
        paint(yy > height * rng.uniform(0.88, 0.95), "ego vehicle")
    return img, labels, np.where(things > 0, things, labels.astype(np.int32))
