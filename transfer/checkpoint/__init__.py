"""Checkpoint conversion: any self-supervised ResNet checkpoint -> detectron2 `.pkl`, OpenMMLab, torchvision.

The path of a checkpoint is read (`reading`) -> canonical backbone state dict in
torchvision names (`sources`, `loading`) -> target file (`targets`) -> loaded into each
engine's ResNet (`verify`); `convert` runs it once, `cache` on demand for the runners.
"""
from transfer.checkpoint.cache import ensure_converted, is_converted
from transfer.checkpoint.convert import VerificationError, convert_checkpoint, format_report, write_backbone
from transfer.checkpoint.loading import load_backbone
from transfer.checkpoint.reading import read_checkpoint
from transfer.checkpoint.resnet import detect_arch
from transfer.checkpoint.sources import SOURCES
from transfer.checkpoint.stem_check import check_mmseg_backbone
from transfer.checkpoint.targets import TARGETS

__all__ = ["load_backbone", "convert_checkpoint", "ensure_converted", "is_converted", "check_mmseg_backbone",
           "read_checkpoint", "detect_arch", "format_report", "write_backbone", "VerificationError", "SOURCES",
           "TARGETS"]
