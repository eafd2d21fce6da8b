"""The mmseg ResNetV1c trap: a deep-stem backbone given a standard-stem checkpoint keeps a random stem."""
from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from transfer.checkpoint.reading import read_checkpoint
from transfer.checkpoint.sources import flatten_tensors
from transfer.config_tree import walk_paths
from transfer.errors import UserError

_DEEP_STEM_TYPES = ("ResNetV1c", "ResNetV1d")
_DEEP_STEM_KEYS = ("stem.0.weight", "conv1.0.weight")


def _backbones(node: Any, where: str = "model") -> Iterator[tuple[str, Mapping]]:
    """Every dict under the model config whose `type` names a ResNet, with its dotted location."""
    for path, found in walk_paths(node, where):
        if "ResNet" in str(found.get("type", "")).rsplit(".", 1)[-1]:
            yield path, found


def _pretrained(cfg: Mapping, backbone: Mapping) -> str | None:
    """The checkpoint a backbone is initialised from: its `init_cfg` Pretrained, its or the model's `pretrained`."""
    init = backbone.get("init_cfg")
    for item in (init if isinstance(init, (list, tuple)) else [init]):
        if isinstance(item, Mapping) and item.get("type") == "Pretrained" and item.get("checkpoint"):
            return str(item["checkpoint"])
    for owner in (backbone, cfg.get("model", {})):
        if isinstance(owner, Mapping) and owner.get("pretrained"):
            return str(owner["pretrained"])
    return None


def _has_deep_stem(checkpoint: str | os.PathLike | Mapping) -> bool | None:
    """Whether a checkpoint (path or state dict) has the 3-conv deep stem; None when it cannot be told."""
    if isinstance(checkpoint, Mapping):
        keys = list(flatten_tensors(checkpoint))
    else:
        name = str(checkpoint)
        if not Path(name).is_file():  # a URL such as open-mmlab://resnet50_v1c: judge by its name
            base = name.rsplit("/", 1)[-1].lower()
            return True if any(tag in base for tag in ("v1c", "v1d")) else None
        try:
            keys = list(flatten_tensors(read_checkpoint(name)))
        except UserError:
            return None
    if any(k.endswith(s) for k in keys for s in _DEEP_STEM_KEYS):
        return True
    if any(k.endswith("conv1.weight") and "layer" not in k for k in keys):
        return False
    return None


def check_mmseg_backbone(config: str | os.PathLike | Mapping, checkpoint: str | os.PathLike | Mapping | None = None
                         ) -> list[str]:
    """Warnings (empty when fine) for a ResNet backbone whose stem does not match its pretrained checkpoint.

    `config` is an OpenMMLab config (file or dict); `checkpoint` the checkpoint to be loaded
    (path or state dict), else the one the config names. mmseg's default `ResNetV1c` (and
    `deep_stem=True`) has a 3-conv stem; an SSL checkpoint has the standard 7x7 stem, so the
    stem would silently stay random (mmengine only logs missing keys). The converse is
    caught too. Call it before training; print or raise on what it returns.
    """
    if not isinstance(config, Mapping):
        from mmengine.config import Config

        config = Config.fromfile(str(config))
    warnings = []
    model = config.get("model", config)
    for where, backbone in _backbones(model):
        kind = str(backbone.get("type", "")).rsplit(".", 1)[-1]
        deep = kind in _DEEP_STEM_TYPES or bool(backbone.get("deep_stem", False))
        ckpt = checkpoint if checkpoint is not None else _pretrained(config, backbone)
        if ckpt is None:
            continue
        ckpt_deep = _has_deep_stem(ckpt)
        name = "the given checkpoint" if isinstance(ckpt, Mapping) else str(ckpt)
        mismatch = stem_mismatch(f"{where}: type={kind}", deep, name, ckpt_deep)
        if mismatch:
            warnings.append(mismatch)
    return warnings


def stem_mismatch(backbone: str, deep: bool, checkpoint: str, checkpoint_deep: bool | None) -> str | None:
    """The one message for a backbone and a checkpoint whose stems differ (None: they match, or cannot be told)."""
    if deep and checkpoint_deep is False:
        return (f"{backbone} has a deep stem (3 convs) but {checkpoint} has the standard 7x7 stem, so the stem "
                "would stay randomly initialised (mmengine only logs the missing keys): use type='ResNet' with "
                "deep_stem=False (not ResNetV1c/V1d), as the MoCo/DenseCL protocol does")
    if not deep and checkpoint_deep is True:
        return (f"{backbone} has the standard stem but {checkpoint} has a deep stem (ResNetV1c/d), so conv1 would "
                "stay randomly initialised: use a ResNetV1c backbone or a standard-stem checkpoint")
    return None
