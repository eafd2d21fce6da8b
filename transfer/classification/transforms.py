"""The linear-probe image transforms of MoCo's main_lincls.py, at any crop size."""
from __future__ import annotations

import math

import torch
import torchvision.transforms.v2 as T

from transfer.backbone import IMAGENET_MEAN, IMAGENET_STD


def _to_normalized_tensor() -> list:
    return [T.ToImage(), T.ToDtype(torch.float32, scale=True), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]


def train_transform(crop: int) -> T.Compose:
    """RandomResizedCrop(crop) + horizontal flip (torchvision's default scale 0.08-1)."""
    return T.Compose([T.RandomResizedCrop(crop, antialias=True), T.RandomHorizontalFlip(), *_to_normalized_tensor()])


def val_transform(crop: int, resize: int, interpolation: str = "bilinear") -> T.Compose:
    """Resize(resize) of the shorter side + CenterCrop(crop): 256 / 224 in the protocol (`interpolation`:
    bilinear, torchvision's default, or bicubic, as Ericsson et al.'s many-shot features)."""
    mode = T.InterpolationMode(interpolation)
    return T.Compose([T.Resize(resize, interpolation=mode, antialias=True), T.CenterCrop(crop),
                      *_to_normalized_tensor()])


def eval_resize(crop: int, resize: int = 256, base_crop: int = 224) -> int:
    """The resize of the evaluation transform for a crop of `crop`, in a protocol's proportion `resize` /
    `base_crop` (256 for 224, MoCo's main_lincls)."""
    return int(math.floor(crop * resize / base_crop + 0.5))
