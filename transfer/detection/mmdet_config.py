"""Fit an mmdet detection protocol config to a run: data root, backbone depth and weights, input size."""
from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from mmengine.config import Config, ConfigDict

from transfer.checkpoint.fit import StateDictFit, state_dict_fit
from transfer.checkpoint.resnet import STAGE_CHANNELS  # output channels of res2..res5 by depth
from transfer.config_tree import walk, walk_paths
from transfer.detection.cityscapes_instances import require_annotations
from transfer.detection.shrink import (REFERENCE_SIZE, numbers_text, precise_bn_iters, region_count,
                                      scaled_length, scaled_lengths)
from transfer.errors import UserError

DATASET_TYPES = ("VOCDataset", "CocoDataset", "CityscapesDataset")
CITYSCAPES_METRICS = ("CityScapesMetric", "CityscapesAPMetric")  # mmdet's and ours (percent, no files left)


def set_data_root(cfg: Config, root: Path) -> None:
    """Point every VOC/COCO/Cityscapes dataset of the config, the COCO evaluators' annotation files and the
    Cityscapes evaluators' ground truth at `root`; a Cityscapes dataset's missing annotation file is a UserError
    naming the command that makes it."""
    data_root = str(root).rstrip("/") + "/"
    old_root = cfg.get("data_root")
    cfg.data_root = data_root
    cityscapes_anns = []
    for node in walk(cfg):
        if node.get("type") in DATASET_TYPES:
            node["data_root"] = data_root
            if node["type"] == "CityscapesDataset" and node.get("ann_file"):
                cityscapes_anns.append(Path(data_root) / node["ann_file"])
    test_ann = cfg.test_dataloader.dataset.get("ann_file")
    for name in ("val_evaluator", "test_evaluator"):
        evaluator = cfg.get(name)
        for node in walk(evaluator):
            if "ann_file" in node and test_ann:
                node["ann_file"] = data_root + test_ann
            # the Cityscapes evaluation's gtFine/val, written in the config as data_root + 'gtFine/val'
            prefix = node.get("seg_prefix")
            if isinstance(prefix, str) and old_root and prefix.startswith(old_root):
                node["seg_prefix"] = data_root + prefix[len(old_root):]
    require_annotations(dict.fromkeys(cityscapes_anns), root)


def set_evaluation_dir(cfg: Config, folder: Path) -> None:
    """Write the Cityscapes evaluation's files (a PNG per predicted instance) under `folder`, not the config's
    path relative to wherever the run was started."""
    for name in ("val_evaluator", "test_evaluator"):
        for node in walk(cfg.get(name)):
            if node.get("type") in CITYSCAPES_METRICS:
                node["outfile_prefix"] = str(folder)


def set_backbone_depth(cfg: Config, depth: int) -> str | None:
    """Set the ResNet depth of the backbone (and C4 shared head) and every input width that follows from it.

    C4: the RPN and RoI extractor read res4, the box and mask heads res5; FPN: the
    neck reads res2..res5. Returns a note when the depth changed.
    """
    if depth not in STAGE_CHANNELS:
        raise UserError(f"ResNet depth {depth} is not supported; expected one of {sorted(STAGE_CHANNELS)}")
    model = cfg.model
    old = int(model.backbone.depth)
    res2, res3, res4, res5 = STAGE_CHANNELS[depth]
    model.backbone.depth = depth
    roi = model.get("roi_head", {})
    if roi.get("shared_head") is not None:  # C4
        roi.shared_head.depth = depth
        model.rpn_head.in_channels = res4
        model.rpn_head.feat_channels = res4
        roi.bbox_roi_extractor.out_channels = res4
        roi.bbox_head.in_channels = res5
        if roi.get("mask_head") is not None:
            roi.mask_head.in_channels = res5
    elif model.get("neck") is not None:  # FPN
        model.neck.in_channels = [res2, res3, res4, res5]
    if old == depth:
        return None
    return f"backbone ResNet-{depth} instead of ResNet-{old} (input widths of the heads adjusted)"


def pretrained_modules(cfg: Config) -> list[str]:
    """The config paths of the modules initialised from the backbone checkpoint: the backbone, and res5 in C4."""
    names = ["model.backbone"]
    if cfg.model.get("roi_head", {}).get("shared_head") is not None:
        names.append("model.roi_head.shared_head")
    return names


def _node(cfg: Config, path: str) -> ConfigDict:
    node = cfg
    for part in path.split("."):
        node = node[part]
    return node


def set_pretrained(cfg: Config, checkpoint: Path | None) -> None:
    """Initialise the backbone (and the C4 res5 head) from an OpenMMLab checkpoint, or randomly when None.

    The checkpoint holds torchvision key names: the backbone's `conv1`, `layer1..3`
    and the shared head's `layer4` are exactly those names, so no prefix is needed.
    """
    init = None if checkpoint is None else ConfigDict(type="Pretrained", checkpoint=str(checkpoint))
    for path in pretrained_modules(cfg):
        _node(cfg, path).init_cfg = copy.deepcopy(init)
    cfg.model.pop("pretrained", None)


def build_module(cfg: Config, path: str) -> torch.nn.Module:
    """The module at config path `path` (e.g. model.backbone), built with BN and no initialisation loaded."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.registry import DefaultScope

    import transfer.detection.mmdet_shared_head  # noqa: F401  (registers ResLayerExtraNorm)
    from transfer.engine.devices import replace_syncbn

    register_all_modules(init_default_scope=False)
    module_cfg = copy.deepcopy(_node(cfg, path))
    module_cfg.init_cfg = None
    replace_syncbn(module_cfg)  # BN has SyncBN's state dict keys and needs no process group
    with DefaultScope.overwrite_default_scope("mmdet"):  # not mmseg's ResNet if a segmentation run came first
        return MODELS.build(module_cfg)


def weight_coverage(cfg: Config, state_dict: Mapping[str, torch.Tensor]) -> dict[str, StateDictFit]:
    """For each pretrained module of the config: how `state_dict` fills it (BN batch counters may be missing)."""
    return {path: state_dict_fit(build_module(cfg, path).state_dict(), state_dict) for path in pretrained_modules(cfg)}


def check_weights_load(cfg: Config, state_dict: Mapping[str, torch.Tensor], origin: str) -> None:
    """Raise a UserError unless the checkpoint fills every tensor of the backbone and of the C4 res5 head.

    mmengine's `Pretrained` init loads non-strictly and only logs what it skipped, so
    a wrong depth or a prefix would otherwise train from random weights in silence.
    The one tensor group no backbone checkpoint has is the res5 head's extra norm (`norm.*`).
    """
    problems = []
    for path, fit in weight_coverage(cfg, state_dict).items():
        if path.endswith("shared_head"):
            fit.missing = [k for k in fit.missing if not k.startswith("norm.")]
        if not fit.fills(allow_unexpected=True):  # the checkpoint also holds the other module's tensors
            problems.append(f"{path}: {fit.describe(allow_unexpected=True)}")
    if problems:
        raise UserError(f"{origin} does not fit the config (ResNet-{cfg.model.backbone.depth}): "
                        + "; ".join(problems))


def _scaled(scale: Any, factor: float) -> tuple[int, int]:
    return tuple(max(1, round(s * factor)) for s in scale)


# (config path, floor) of the per-image region counts that the protocols size for ~800x1333 images:
# proposals kept after the RPN (train, test) and RoIs sampled per image for the box/mask heads.
REGION_COUNTS = (("model.train_cfg.rpn_proposal.max_per_img", 128), ("model.train_cfg.rcnn.sampler.num", 32),
                 ("model.test_cfg.rpn.max_per_img", 50))


# The model's settings in pixels of the network input, by the type of the node that holds them (None: any node):
# anchor sizes (AnchorGenerator: stride x scale; RetinaNet's octave_base_scale), the RPN's minimum proposal side
# and border allowance, and the box side that maps a RoI to its FPN level (SingleRoIExtractor.finest_scale).
PIXEL_SETTINGS = (("AnchorGenerator", "scales"), ("AnchorGenerator", "octave_base_scale"),
                  (None, "min_bbox_size"), (None, "allowed_border"), ("SingleRoIExtractor", "finest_scale"))
FINEST_SCALE = 56  # SingleRoIExtractor's default, for a config that leaves it out


def scale_pixel_settings(cfg: Config, factor: float) -> list[str]:
    """Scale every PIXEL_SETTINGS value of `cfg.model` by `factor` (in place); returns `path old->new` for each
    that changed, for the run's notes."""
    changes = []
    for path, node in walk_paths(cfg.model, "model"):
        for kind, key in PIXEL_SETTINGS:
            if kind is not None and node.get("type") != kind:
                continue
            if key == "finest_scale" and key not in node and len(node.get("featmap_strides", ())) > 1:
                node[key] = FINEST_SCALE
            old = node.get(key)
            if old is None or isinstance(old, bool):
                continue
            new = scaled_lengths(old, factor) if isinstance(old, (list, tuple)) else scaled_length(old, factor)
            if numbers_text(new) != numbers_text(old):
                node[key] = new
                changes.append(f"{path}.{key} {numbers_text(old)}->{numbers_text(new)}")
    return changes


def protocol_test_side(cfg: Config) -> int:
    """The shorter side of the test images in the protocol (its test Resize: 800 for VOC and COCO, 1024 for
    Cityscapes); REFERENCE_SIZE when the test pipeline has no fixed resize."""
    sides = [min(node["scale"]) for node in walk(cfg.get("test_dataloader"))
             if node.get("type") == "Resize" and node.get("scale") is not None]
    return min(sides) if sides else REFERENCE_SIZE


def set_input_size(cfg: Config, size: int) -> str:
    """Shrink a run's geometry to shorter side `size` (for the CPU and tests); returns a note.

    Every resize of the train and test pipelines scales by size / the protocol's test
    shorter side (`protocol_test_side`: 800, Cityscapes 1024), so the test shorter side
    becomes `size` and the multi-scale training range keeps its proportions (VOC
    480..800 -> 0.6*size..size), as do the long-side caps (1333, Cityscapes 2048).
    Every setting of the model in input pixels scales by the same factor
    (`PIXEL_SETTINGS`: anchor sizes, minimum proposal size, FPN level box size), so the
    shrunk run is the protocol at a smaller size. Below the protocol's size the per-image
    region counts (proposals kept, RoIs sampled) shrink with the image area, down to a floor
    (`transfer.detection.shrink.region_count`).
    """
    if size < 32:
        raise UserError(f"--input-size must be at least 32 (got {size})")
    factor = size / protocol_test_side(cfg)
    train_sides, test_sides = set(), set()
    # Every resize of the whole config, not only the dataloaders' pipelines: the top-level
    # train_pipeline/test_pipeline are what mmdet's inference API reads from the dumped config.
    for path, node in walk_paths(cfg):
        kind = node.get("type")
        if kind == "RandomChoiceResize":
            scales = list(dict.fromkeys(_scaled(s, factor) for s in node["scales"]))
            node["scales"] = scales
            train_sides.update(min(s) for s in scales)
        elif kind == "RandomResize" and node.get("scale") is not None:  # mmdet's Cityscapes: a range of scales
            ranged = isinstance(node["scale"][0], (list, tuple))
            scales = [_scaled(s, factor) for s in node["scale"]] if ranged else [_scaled(node["scale"], factor)]
            node["scale"] = scales if ranged else scales[0]
            train_sides.update(min(s) for s in scales)
        elif kind == "Resize" and node.get("scale") is not None:
            node["scale"] = _scaled(node["scale"], factor)
            (train_sides if path.startswith("train") else test_sides).add(min(node["scale"]))
    train = f"{min(train_sides)}..{max(train_sides)}" if train_sides else "-"
    test = ", ".join(str(s) for s in sorted(test_sides)) or "-"
    note = f"--input-size {size}: image scales x{factor:.3g}, shorter side {train} for training, {test} for testing"
    pixels = scale_pixel_settings(cfg, factor)
    if pixels:
        note += "; pixel sizes x" + f"{factor:.3g}: " + ", ".join(pixels)
    if factor < 1:
        counts = []
        for path, floor in REGION_COUNTS:
            parent, _, key = path.rpartition(".")
            try:
                node = _node(cfg, parent)
            except (KeyError, AttributeError):
                continue
            if node.get(key) is not None:
                old = int(node[key])
                node[key] = region_count(old, factor, floor)
                counts.append(f"{path.split('.', 2)[-1]} {old}->{node[key]}")
        if counts:
            note += "; per-image regions x area: " + ", ".join(counts)
    return note


def set_precise_bn_iters(cfg: Config, max_iters: int) -> str | None:
    """Shrink the precise-BN pass when the schedule is shortened to `max_iters` (see `precise_bn_iters`)."""
    full_iters = int(cfg.train_cfg.max_iters)
    for hook in cfg.get("custom_hooks", []) or []:
        if hook.get("type") == "PreciseBNHook" and max_iters < full_iters:
            old = int(hook.get("num_iters", 200))
            hook["num_iters"] = precise_bn_iters(old, full_iters, max_iters)
            return f"precise BN over {hook['num_iters']} batches instead of {old}"
    return None
