"""One conversion, start to finish: read -> canonical backbone -> target file -> verified in each engine -> report."""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from transfer.checkpoint.loading import load_backbone
from transfer.checkpoint.resnet import DEPTHS
from transfer.checkpoint.stem_check import check_mmseg_backbone
from transfer.checkpoint.targets import (AUTHOR, EXTENSIONS, TARGETS, write_detectron2, write_mmlab,
                                         write_torchvision)
from transfer.checkpoint.verify import verify_file
from transfer.errors import UserError
from transfer.fileio import atomic_path, sha256_file


class VerificationError(UserError):
    """A converted file did not load completely into an engine's ResNet; nothing was written. Carries the report."""

    def __init__(self, message: str, report: dict[str, Any]):
        super().__init__(message)
        self.report = report


def check_destination(dst: Path, to: str, force: bool, src: Path) -> None:
    """Refuse a destination that exists (without `force`), is the source, is not writable, or has a wrong extension."""
    if to == "detectron2" and dst.suffix != ".pkl":
        raise UserError(f"{dst}: a detectron2 checkpoint must end in .pkl (detectron2 reads other names with "
                        f"torch.load); use e.g. {dst.with_suffix('.pkl')}")
    if dst.exists() and dst.resolve() == src.resolve():
        raise UserError(f"{dst} is the source checkpoint itself; give another destination")
    if dst.is_dir():
        raise UserError(f"{dst} is a directory; give a file name, e.g. {dst / ('backbone' + EXTENSIONS[to])}")
    if dst.exists() and not force:
        raise UserError(f"{dst} already exists; pass --force to overwrite it")
    parent = dst.parent
    existing = next(p for p in (parent, *parent.parents) if p.exists())  # folders below it are created on writing
    if not existing.is_dir():
        raise UserError(f"cannot create the folder {parent} for {dst.name}: {existing} is a file; "
                        "choose a writable destination")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {dst}: the folder {existing} is not writable; choose a writable destination")


def convert_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, to: str, source: str | None = None,
                       prefix: str | None = None, force: bool = False, backbone_prefix: bool = False,
                       verify: bool = True, config: str | os.PathLike | Mapping | None = None,
                       trust_pickle: bool = False, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Convert checkpoint `src` into `dst` in target format `to` and return the report.

    The file is written to a temporary name, loaded into every importable engine of the
    target (`verify`), and renamed onto `dst` only if every backbone tensor loaded;
    otherwise a `VerificationError` (carrying the report) is raised and nothing is left.
    `backbone_prefix` (mmlab only) writes `backbone.<name>` keys; `config` is an
    OpenMMLab config whose backbone is checked for the ResNetV1c deep-stem trap.
    """
    start = time.perf_counter()
    src, dst = Path(src), Path(dst)
    check_target(to, backbone_prefix)
    check_destination(dst, to, force, src)
    state_dict, info = load_backbone(src, source=source, prefix=prefix, trust_pickle=trust_pickle)
    if log:
        log(f"read {src}: {info['source']} checkpoint, {info['arch']}, {info['num_tensors']} backbone tensors "
            f"under {info['prefix']!r}")
    info["sha256"] = sha256_file(src)
    return write_backbone(state_dict, info, dst, to, force=force, backbone_prefix=backbone_prefix, verify=verify,
                          config=config, start=start)


def check_target(to: str, backbone_prefix: bool = False) -> None:
    """Refuse an unknown target, or the `backbone.` prefix option on a target other than mmlab."""
    if to not in TARGETS:
        raise UserError(f"unknown target {to!r}; choose one of: {', '.join(TARGETS)}")
    if backbone_prefix and to != "mmlab":
        raise UserError("the `backbone.` prefix option applies to the mmlab target only")


def write_backbone(state_dict: Mapping[str, Any], info: dict[str, Any], dst: str | os.PathLike, to: str,
                   force: bool = False, backbone_prefix: bool = False, verify: bool = True,
                   config: str | os.PathLike | Mapping | None = None, start: float | None = None) -> dict[str, Any]:
    """Write a backbone from `load_backbone` (state dict and info) as `dst` in format `to`, verify it, and report.

    The second half of `convert_checkpoint`, for callers that already hold the state dict.
    """
    start = time.perf_counter() if start is None else start
    dst = Path(dst)
    check_target(to, backbone_prefix)
    check_destination(dst, to, force, Path(info.get("path", "")))
    report: dict[str, Any] = {
        "source": {"path": info.get("path"), "format": info["source"], "description": info["source_description"],
                   "prefix": info["prefix"], "sha256": info.get("sha256")},
        "arch": info["arch"],
        "depth": DEPTHS[info["arch"]],
        "num_tensors": info["num_tensors"],
        "num_parameters": info["num_parameters"],
        "dtypes": info["dtypes"],
        "dropped": info["dropped"],
        "target": to,
        "output": {"path": str(dst), "backbone_prefix": backbone_prefix},
        "verification": [],
        "warnings": [],
        "notes": [],
    }
    if "pretrain" in info:
        report["source"]["pretrain"] = info["pretrain"]
    if config is not None:
        report["warnings"] += check_mmseg_backbone(config, checkpoint=state_dict)
    meta = {"converted_by": AUTHOR, "source_format": info["source"], "source_file": Path(info.get("path", "")).name,
            "source_sha256": info.get("sha256"), "arch": info["arch"]}
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(dst, suffix=".tmp" + dst.suffix) as tmp:
            if to == "detectron2":
                report["notes"] += write_detectron2(state_dict, tmp, info["source"])
            elif to == "mmlab":
                report["notes"] += write_mmlab(state_dict, tmp, meta, backbone_prefix)
            else:
                report["notes"] += write_torchvision(state_dict, tmp)
            if verify:
                checks = verify_file(tmp, to, info["arch"], state_dict, backbone_prefix)
                report["verification"] = [c.to_dict() for c in checks]
                failed = [c for c in checks if c.failed]
                if failed:
                    report["ok"] = False
                    report["time_s"] = round(time.perf_counter() - start, 3)
                    raise VerificationError(f"{dst} not written: the converted backbone did not load completely: "
                                            + " | ".join(c.summary() for c in failed), report)
    except OSError as e:
        raise UserError(f"cannot write {dst}: {e.strerror or e}; choose a writable destination with free space") \
            from None
    report["output"].update(sha256=sha256_file(dst), bytes=dst.stat().st_size)
    report["ok"] = True
    report["time_s"] = round(time.perf_counter() - start, 3)
    return report


def format_report(report: dict[str, Any]) -> str:
    """The printed summary of a conversion report, a few lines."""
    src = report["source"]
    lines = [
        f"source:     {src['path']} ({src['format']}, backbone under {src['prefix']!r})",
        f"backbone:   {report['arch']}, {report['num_tensors']} tensors, {report['num_parameters']:,} parameters",
    ]
    if report["dropped"]:
        groups = ", ".join(f"{g} ({n})" for g, n in report["dropped"].items())
        lines.append(f"dropped:    {groups}")
    out = report["output"]
    if "sha256" in out:
        variant = ", backbone. prefix" if out["backbone_prefix"] else ""
        lines.append(f"output:     {out['path']} ({report['target']}{variant}, sha256 {out['sha256']})")
    for check in report["verification"]:
        from transfer.checkpoint.verify import EngineCheck

        lines.append(f"verified:   {EngineCheck(**check).summary()}")
    if not report["verification"]:
        lines.append("verified:   not verified")
    lines += [f"note:       {n}" for n in report["notes"]]
    lines.append(f"time:       {report['time_s']:.2f} s")
    return "\n".join(lines)
