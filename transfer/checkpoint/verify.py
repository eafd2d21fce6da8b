"""Loading a converted file into each engine's own ResNet and checking that every backbone weight arrived."""
from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torchvision

from transfer.checkpoint.detectron2_names import to_detectron2_name
from transfer.checkpoint.fit import is_batch_counter, state_dict_fit
from transfer.checkpoint.reading import read_plain_pickle
from transfer.checkpoint.resnet import DEPTHS, STAGE_CHANNELS, reference_shapes
from transfer.checkpoint.targets import MMLAB_PREFIX

# The engines each target is verified with (all that are importable).
ENGINES = {"detectron2": ("detectron2",), "mmlab": ("mmdet", "mmseg"), "torchvision": ("torchvision",)}


@dataclass
class EngineCheck:
    """What loading a converted file into one engine's ResNet did: problems by kind, or why it was skipped."""

    engine: str
    status: str = "ok"  # "ok" | "failed" | "skipped"
    model: str = ""
    loaded: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shape_mismatch: list[str] = field(default_factory=list)
    not_loaded: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def failed(self) -> bool:
        """True when the load was checked and found incomplete (a skipped engine has not failed)."""
        return self.status == "failed"

    def summary(self) -> str:
        """One line: `mmdet ResNet(depth=50): ok, 320 tensors loaded` or the problems found."""
        head = f"{self.engine} {self.model}".strip()
        if self.status == "skipped":
            return f"{head}: skipped ({self.note})"
        problems = [f"{len(v)} {k.replace('_', ' ')} (e.g. {v[0]})"
                    for k, v in (("missing", self.missing), ("unexpected", self.unexpected),
                                 ("shape_mismatch", self.shape_mismatch), ("not_loaded", self.not_loaded)) if v]
        text = f"{head}: {self.status}, {self.loaded} tensors loaded"
        if problems:
            text += "; " + "; ".join(problems)
        if self.note:
            text += f" ({self.note})"
        return text

    def to_dict(self) -> dict[str, Any]:
        """The check as JSON-ready data, for the report."""
        return asdict(self)


def compare_loaded(check: EngineCheck, model_state: Mapping[str, torch.Tensor], file_state: Mapping[str, Any],
                   expected: Mapping[str, torch.Tensor],
                   ignore: Callable[[str], bool] = lambda k: False) -> EngineCheck:
    """Fill `check` from a model's state after loading: keys the file lacks or adds, shapes, and values not loaded.

    `file_state` is what the file holds (engine names), `expected` the values it should
    have put into the model; a batch counter absent from the source is not a problem.
    """
    fit = state_dict_fit(model_state, file_state,
                         optional=lambda k: ignore(k) or (is_batch_counter(k) and k not in expected))
    check.missing, check.unexpected, check.shape_mismatch = fit.missing, fit.unexpected, fit.wrong_shape
    for key, value in expected.items():
        got = model_state.get(key)
        if got is None or got.is_meta or key in check.shape_mismatch or tuple(got.shape) != tuple(value.shape):
            continue
        if torch.equal(got.detach().cpu(), value.to(got.dtype)):
            check.loaded += 1
        else:
            check.not_loaded.append(key)
    if check.missing or check.unexpected or check.shape_mismatch or check.not_loaded:
        check.status = "failed"
    return check


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """Silence the engines' own load logs (we report the result ourselves): std loggers and mmengine's MMLogger."""
    loggers = [logging.getLogger(n) for n in names]
    if "mmengine" in names:
        from mmengine.logging import MMLogger

        loggers.append(MMLogger.get_current_instance())
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # mmengine print()s "Loads checkpoint by ..." with a prefix
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _importable(module: str) -> str | None:
    """None when `module` imports, else the reason it does not."""
    try:
        importlib.import_module(module)
        return None
    except Exception as e:  # noqa: BLE001 -- a broken install is a skip with its reason, not a crash
        return f"{module} is not importable: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def verify_torchvision(path: str | os.PathLike, arch: str, expected: Mapping[str, torch.Tensor]) -> EngineCheck:
    """Load a torchvision state dict file into `torchvision.models.<arch>()` (strict=False: it has no `fc`)."""
    check = EngineCheck("torchvision", model=f"{arch}()")
    model = getattr(torchvision.models, arch)()
    file_state = torch.load(path, map_location="cpu", weights_only=True)
    model_shapes = {k: v.shape for k, v in model.state_dict().items()}
    loadable = {k: v for k, v in file_state.items() if k in model_shapes and v.shape == model_shapes[k]}
    model.load_state_dict(loadable, strict=False)
    compare_loaded(check, model.state_dict(), file_state, expected, ignore=lambda k: k.startswith("fc."))
    check.note = "fc.* is not part of the backbone: load with strict=False or replace model.fc"
    return check


def verify_mmlab(path: str | os.PathLike, arch: str, expected: Mapping[str, torch.Tensor], engine: str,
                 backbone_prefix: bool = False) -> EngineCheck:
    """Build mmdet's or mmseg's standard-stem `ResNet` with `init_cfg=Pretrained(path)`, `init_weights()`, compare."""
    check = EngineCheck(engine, model=f"ResNet(depth={DEPTHS[arch]})")
    reason = _importable(f"{engine}.models.backbones")
    if reason:
        check.status, check.note = "skipped", reason
        return check
    backbones = importlib.import_module(f"{engine}.models.backbones")
    init_cfg = dict(type="Pretrained", checkpoint=str(path))
    if backbone_prefix:
        init_cfg["prefix"] = MMLAB_PREFIX
    model = backbones.ResNet(depth=DEPTHS[arch], init_cfg=init_cfg)
    with _quiet("mmengine"):
        model.init_weights()  # mmengine only logs missing keys: the comparison below is the check
    file_state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    if backbone_prefix:
        file_state = {k[len(MMLAB_PREFIX):]: v for k, v in file_state.items() if k.startswith(MMLAB_PREFIX)}
    return compare_loaded(check, model.state_dict(), file_state, expected)


def detectron2_backbone(arch: str) -> Any:
    """detectron2's `build_resnet_backbone` for `arch`: all four stages, plain BN, stride in the 3x3 (torchvision)."""
    from detectron2.config import get_cfg
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.backbone.resnet import build_resnet_backbone

    cfg = get_cfg()
    depth = DEPTHS[arch]
    cfg.MODEL.RESNETS.DEPTH = depth
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = STAGE_CHANNELS[depth][0]
    cfg.MODEL.RESNETS.STRIDE_IN_1X1 = False
    cfg.MODEL.RESNETS.NORM = "BN"
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.BACKBONE.FREEZE_AT = 0  # frozen stages would become FrozenBatchNorm, with other buffers
    return build_resnet_backbone(cfg, ShapeSpec(channels=3))


def verify_detectron2(path: str | os.PathLike, arch: str, expected: Mapping[str, torch.Tensor]) -> EngineCheck:
    """Load a detectron2 `.pkl` through `DetectionCheckpointer` (matching heuristics) into `build_resnet_backbone`."""
    check = EngineCheck("detectron2", model=f"build_resnet_backbone(DEPTH={DEPTHS[arch]})")
    reason = _importable("detectron2.checkpoint")
    if reason:
        check.status, check.note = "skipped", reason
        return check
    from detectron2.checkpoint import DetectionCheckpointer

    model = detectron2_backbone(arch)
    file_state = read_plain_pickle(path)["model"]
    with _quiet("detectron2", "fvcore"):  # it logs the heuristics' matches and any incompatible keys
        DetectionCheckpointer(model).load(str(path))
    expected_d2 = {to_detectron2_name(k): v for k, v in expected.items()}
    return compare_loaded(check, model.state_dict(), file_state, expected_d2)


def read_converted(path: str | os.PathLike, to: str, backbone_prefix: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of a converted file under their names in that format (detectron2 names for `.pkl`)."""
    if to == "detectron2":
        return {k: torch.from_numpy(v) for k, v in read_plain_pickle(path)["model"].items()}
    state = torch.load(path, map_location="cpu", weights_only=True)
    if to == "mmlab":
        state = state["state_dict"]
        if backbone_prefix:  # a key without the prefix would be invisible to init_cfg prefix='backbone.'
            return {(k[len(MMLAB_PREFIX):] if k.startswith(MMLAB_PREFIX) else "<no prefix>" + k): v
                    for k, v in state.items()}
    return dict(state)


def verify_readback(path: str | os.PathLike, to: str, arch: str, expected: Mapping[str, torch.Tensor],
                    backbone_prefix: bool = False) -> EngineCheck:
    """Read the written file back (no engine needed): exact key set of a standard `arch`, shapes, and every bit."""
    check = EngineCheck("readback", model=f"{to} file of a standard {arch}")
    name = to_detectron2_name if to == "detectron2" else (lambda k: k)
    reference = {name(k): v for k, v in reference_shapes(arch).items()}
    file_state = read_converted(path, to, backbone_prefix)
    # The "model" is the file itself where it has the reference's keys and shapes: names, shapes, bits are checked.
    model_like = {k: file_state[k] if k in file_state and tuple(file_state[k].shape) == shape
                  else torch.empty(shape, device="meta") for k, shape in reference.items()}
    compare_loaded(check, model_like, file_state, {name(k): v for k, v in expected.items()})
    return check


def verify_file(path: str | os.PathLike, to: str, arch: str, expected: Mapping[str, torch.Tensor],
                backbone_prefix: bool = False) -> list[EngineCheck]:
    """Every engine check of a converted file for target `to` (engines that are not importable are skipped)."""
    checks = [verify_readback(path, to, arch, expected, backbone_prefix)]
    if to == "torchvision":
        checks.append(verify_torchvision(path, arch, expected))
    elif to == "mmlab":
        checks += [verify_mmlab(path, arch, expected, engine, backbone_prefix) for engine in ENGINES["mmlab"]]
    elif to == "detectron2":
        checks.append(verify_detectron2(path, arch, expected))
    else:
        raise ValueError(f"unknown target {to!r}")
    return checks


