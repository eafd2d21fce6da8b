"""Fit an FCN protocol config (Cityscapes, VOC12aug) to a run: data root, backbone weights and depth, input size."""
from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from mmengine.config import Config, ConfigDict

from transfer.checkpoint.fit import state_dict_fit
from transfer.checkpoint.resnet import STAGE_CHANNELS  # output channels of res2..res5 by depth
from transfer.checkpoint.stem_check import stem_mismatch
from transfer.config_tree import walk
from transfer.errors import UserError

# Head widths (auxiliary, FCN) for the basic-block ResNets, as mmseg's own fcn_r18-d8 configs set them;
# the bottleneck ResNets keep the protocol's (256, 512).
_BASIC_BLOCK_HEAD_CHANNELS = (64, 128)


def _leaf_datasets(dataset: Mapping) -> list[Mapping]:
    """The datasets that read files under `dataset`: itself, or those a ConcatDataset or RepeatDataset wraps."""
    if "datasets" in dataset:  # ConcatDataset (VOC12aug: train.txt + aug.txt)
        return [leaf for inner in dataset["datasets"] for leaf in _leaf_datasets(inner)]
    if "dataset" in dataset:  # RepeatDataset and the like
        return _leaf_datasets(dataset["dataset"])
    return [dataset]


def set_data_root(cfg: Config, root: Path) -> None:
    """Point the train, val and test datasets at the dataset folder `root` (Cityscapes', VOC's VOC2012)."""
    for name in ("train_dataloader", "val_dataloader", "test_dataloader"):
        loader = cfg.get(name)
        if loader is not None:
            for dataset in _leaf_datasets(loader.dataset):
                dataset.data_root = str(root)


def _scaled(size: Any, factor: float) -> tuple[int, ...]:
    return tuple(max(1, round(s * factor)) for s in size)


def set_input_size(cfg: Config, size: int) -> str:
    """Scale the protocol's geometry so that the (shorter side of the) crop is `size`; returns a note.

    Train and test resize scales, the crop, the padding sizes (`Pad`, the data
    preprocessor's) and the sliding window with its stride all scale by size / crop,
    so the crop keeps its share of the image (769 of a 2049x1025 image in the
    Cityscapes protocol, 512 of 2048x512 in VOC12aug's).
    """
    if size < 16:
        raise UserError(f"--input-size must be at least 16 (got {size})")
    crop = tuple(cfg.get("crop_size") or ())
    if len(crop) != 2:
        raise UserError("--input-size needs the config to define crop_size = (h, w)")
    factor = size / min(crop)
    new_crop = _scaled(crop, factor)
    # Every resize and crop of the whole config, not only the dataloaders' pipelines: the top-level
    # train_pipeline/test_pipeline are what mmseg's inference API reads from the dumped config.
    for node in walk(cfg):
        if node.get("type") in ("RandomResize", "Resize") and node.get("scale") is not None:
            node["scale"] = _scaled(node["scale"], factor)
        if node.get("type") == "RandomCrop":
            node["crop_size"] = new_crop
        if node.get("type") == "Pad" and node.get("size") is not None:
            node["size"] = _scaled(node["size"], factor)
    cfg.crop_size = new_crop
    for preprocessor in (cfg.model.get("data_preprocessor"), cfg.get("data_preprocessor")):  # model's and top-level
        if preprocessor is not None and preprocessor.get("size") is not None:
            preprocessor.size = new_crop
    test_cfg = cfg.model.get("test_cfg", {})
    if test_cfg.get("mode") == "slide":
        test_cfg.crop_size = _scaled(test_cfg.crop_size, factor)
        test_cfg.stride = _scaled(test_cfg.stride, factor)
    window = f", slide window {tuple(test_cfg.crop_size)} stride {tuple(test_cfg.stride)}" \
        if test_cfg.get("mode") == "slide" else ""
    return f"--input-size {size}: crop {crop} -> {new_crop}, image scales x{factor:.3g}{window}"


def set_backbone_depth(cfg: Config, depth: int) -> str | None:
    """Set the ResNet depth and the heads' channels to match it; returns a note when it changed.

    The heads read the stage outputs (2048/1024 channels for ResNet-50, 512/256
    for ResNet-18); ResNet-18/34 also get mmseg's narrower heads (128/64 channels
    for its fcn_r18-d8 configs) -- override `model.decode_head.channels` to change it.
    """
    if depth not in STAGE_CHANNELS:
        raise UserError(f"ResNet depth {depth} is not supported; expected one of {sorted(STAGE_CHANNELS)}")
    cfg.model.backbone.depth = depth
    aux_in, decode_in = STAGE_CHANNELS[depth][2:]  # the auxiliary head reads res4, the FCN head res5
    old_in = int(cfg.model.decode_head.in_channels)
    if old_in == decode_in:  # the heads already fit this depth
        return None
    cfg.model.decode_head.in_channels = decode_in
    aux = cfg.model.get("auxiliary_head")
    if aux is not None:
        aux.in_channels = aux_in
    widths = ""
    if decode_in < old_in:
        aux_width, decode_width = _BASIC_BLOCK_HEAD_CHANNELS
        cfg.model.decode_head.channels = decode_width
        if aux is not None:
            aux.channels = aux_width
        widths = f", head widths {decode_width} (aux {aux_width}) as in mmseg's fcn_r18-d8"
    return f"backbone ResNet-{depth}: heads read {decode_in} (aux {aux_in}) channels{widths}"


def set_pretrained(cfg: Config, checkpoint: Path | None) -> None:
    """Initialise the backbone from an OpenMMLab checkpoint (torchvision key names), or randomly when None."""
    cfg.model.pretrained = None
    cfg.model.backbone.init_cfg = None if checkpoint is None else ConfigDict(type="Pretrained",
                                                                               checkpoint=str(checkpoint))


def build_backbone(cfg: Config) -> torch.nn.Module:
    """The config's backbone module with its own initialisation (no checkpoint loaded)."""
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    register_all_modules(init_default_scope=False)
    backbone_cfg = copy.deepcopy(cfg.model.backbone)
    backbone_cfg.init_cfg = None
    # the scope decides which package's `ResNet` is built: a detection run earlier in this
    # process (the demo) leaves mmdet's as the default, which lacks mmseg's arguments
    with DefaultScope.overwrite_default_scope("mmseg"):
        return MODELS.build(backbone_cfg)


def check_backbone_loads(cfg: Config, state_dict: Mapping[str, torch.Tensor], origin: str) -> None:
    """Raise a UserError unless every parameter and buffer of the config's backbone is in `state_dict` with its shape.

    mmengine's `Pretrained` init loads non-strictly and only logs what it
    skipped; a deep-stem backbone (`ResNetV1c`) given a standard-stem checkpoint,
    the converse, or a wrong depth would train from random weights without a word.
    This check covers `transfer.checkpoint.check_mmseg_backbone`'s stem check, and
    says which stem is wrong.
    """
    fit = state_dict_fit(build_backbone(cfg).state_dict(), state_dict)
    if fit.fills(allow_unexpected=True):
        return
    kind = cfg.model.backbone.get("type")
    deep = any(k.startswith("stem.") for k in fit.missing)
    wrong_stem = deep or "conv1.weight" in fit.missing and any(k.startswith("stem.") for k in state_dict)
    mismatch = stem_mismatch("The backbone", deep, "the checkpoint", not deep) if wrong_stem else None
    raise UserError(f"{origin} does not fit the config's backbone ({kind}, depth {cfg.model.backbone.depth}): "
                    f"{fit.describe(allow_unexpected=True)}." + (f" {mismatch}." if mismatch else ""))
