"""Helpers shared by the detection tests: run `tools/run_transfer.sh voc|coco` in-process with small settings."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
import torchvision

from transfer.cli import transfer_parser

REPO = Path(__file__).resolve().parent.parent
# CPU-sized runs: 2 images per iteration (at the protocol's lr), 16 RoIs per training image, 10 proposals and
# at most 20 detections per test image (the res5 head of C4 runs once per RoI, the mask head once per detection),
# no data-loader worker processes.
MMDET_SMALL = ["protocol_gpus=1", "train_dataloader.batch_size=2", "model.train_cfg.rcnn.sampler.num=16",
               "model.test_cfg.rpn.max_per_img=10", "model.test_cfg.rcnn.max_per_img=20"] + [
    f"{loader}.{key}" for loader in ("train_dataloader", "test_dataloader")
    for key in ("num_workers=0", "persistent_workers=False")]
DETECTRON2_SMALL = ["SOLVER.IMS_PER_BATCH=2", "DATALOADER.NUM_WORKERS=0", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE=16",
                    "MODEL.RPN.POST_NMS_TOPK_TEST=10", "TEST.DETECTIONS_PER_IMAGE=20"]


def transfer_args(task: str, *argv: str) -> argparse.Namespace:
    """The flags of `tools/run_transfer.sh TASK argv...`, parsed as the tool parses them."""
    return transfer_parser().parse_intermixed_args([task, *argv])


# RetinaNet has no RPN or RoI head: the same batch and workers, at most 100 boxes per level before NMS.
MMDET_ONE_STAGE_SMALL = [w for w in MMDET_SMALL if ".rcnn." not in w and ".rpn." not in w] + [
    "model.test_cfg.nms_pre=100", "model.test_cfg.max_per_img=20"]


def run_detection(task: str, data: Path, work_dir: Path, *extra: str, max_iters: int = 2, input_size: int = 96,
                  backend: str = "mmdet", small: list[str] | None = None) -> dict[str, Any]:
    """Run the detection runner on the CPU with a short schedule and small inputs (`small`: the CPU-sized
    settings, default the backend's two-stage ones); returns the metrics.json record."""
    from transfer.detection.runner import run

    small = small if small is not None else MMDET_SMALL if backend == "mmdet" else DETECTRON2_SMALL
    # the small settings first: a test's own overrides (in `extra`) win
    args = transfer_args(task, "--data", str(data), "--work-dir", str(work_dir), "--gpus", "0",
                         "--backend", backend, "--max-iters", str(max_iters), "--input-size", str(input_size),
                         *small, *extra)
    return run(args)


def write_resnet_checkpoint(path: Path, arch: str = "resnet18", seed: int = 0) -> Path:
    """A torchvision ResNet backbone (random weights, no fc) saved as an OpenMMLab checkpoint (`state_dict`)."""
    torch.manual_seed(seed)
    model = getattr(torchvision.models, arch)()
    state_dict = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    torch.save({"state_dict": state_dict}, path)
    return path
