#!/usr/bin/env python
"""Training iterations per second of each detection protocol (VOC C4, COCO C4, COCO FPN) on mmdet and detectron2.

The CPU part runs the protocol configs at a small input (--cpu-input-size, which
also shrinks the per-image region counts as `--input-size` does) with a small
batch; the GPU part, when a GPU is visible, at the protocol's size (shorter side
800, 512 RoIs per image) with 2 images per GPU, the protocol's per-GPU batch.
One iteration = fetch a batch + forward + backward + SGD step, on procedural data.
Writes benchmarks/results/detection_cpu.json (and detection_gpu.json on a GPU).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from transfer.data import make_dataset  # noqa: E402
from transfer.results import write_benchmark  # noqa: E402

PROTOCOLS = {  # label -> (task, mmdet config, detectron2 config)
    "VOC07+12 Faster R-CNN C4": ("voc", "faster-rcnn_r50-c4-syncbn_24k_voc0712.py",
                                 "voc0712_faster_rcnn_R_50_C4_24k.yaml"),
    "COCO Mask R-CNN C4": ("coco", "mask-rcnn_r50-c4-syncbn_1x_coco.py", "coco_mask_rcnn_R_50_C4_1x.yaml"),
    "COCO Mask R-CNN FPN": ("coco", "mask-rcnn_r50-fpn-syncbn_1x_coco.py", "coco_mask_rcnn_R_50_FPN_1x.yaml"),
}
CONFIGS = REPO / "configs" / "detection"


def time_steps(step, warmup: int, iters: int, device: str) -> dict[str, float]:
    """Run `step()` warmup + iters times; median wall seconds and mean process CPU seconds per timed step."""
    for _ in range(warmup):
        step()
    walls, cpus = [], []
    for _ in range(iters):
        if device == "cuda":
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter(), time.process_time()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return {"wall_s": statistics.median(walls), "cpu_s": statistics.fmean(cpus)}


def mmdet_step(task: str, config: str, data: Path, depth: int, input_size: int | None, batch: int,
               device: str) -> Callable[[], Any]:
    """A closure running one mmdet training iteration of `config` (SyncBN as BN: one process)."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.optim import build_optim_wrapper
    from mmengine.runner import Runner

    import transfer.detection.mmdet_precise_bn  # noqa: F401
    import transfer.detection.mmdet_shared_head  # noqa: F401
    from transfer.detection.mmdet_config import set_backbone_depth, set_data_root, set_input_size
    from transfer.engine.config import load_mm_config
    from transfer.engine.devices import replace_syncbn

    register_all_modules(init_default_scope=True)
    cfg = load_mm_config(CONFIGS / "mmdet" / config)
    set_data_root(cfg, data / task)
    set_backbone_depth(cfg, depth)
    if input_size:
        set_input_size(cfg, input_size)
    replace_syncbn(cfg._cfg_dict)
    cfg.train_dataloader.update(batch_size=batch, num_workers=0, persistent_workers=False)
    model = MODELS.build(cfg.model).to(device)
    model.init_weights()
    model.train()
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    batches = iter(Runner.build_dataloader(cfg.train_dataloader, seed=0))
    return lambda: model.train_step(next(batches), optim)


def detectron2_step(task: str, config: str, data: Path, depth: int, input_size: int | None, batch: int,
                    device: str) -> Callable[[], None]:
    """A closure running one detectron2 training iteration of `config` (forward, backward, SGD step)."""
    from detectron2.config import get_cfg
    from detectron2.data import build_detection_train_loader
    from detectron2.modeling import build_model
    from detectron2.solver import build_optimizer
    from detectron2.utils.events import EventStorage

    from transfer.detection.detectron2_backend import register_datasets
    from transfer.detection.detectron2_config import replace_syncbn, set_depth, set_input_size

    import transfer.detection.detectron2_roi_heads  # noqa: F401

    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIGS / "detectron2" / config))
    set_depth(cfg, depth)
    if input_size:
        set_input_size(cfg, input_size)
    replace_syncbn(cfg)
    cfg.MODEL.DEVICE = device
    cfg.SOLVER.IMS_PER_BATCH = batch
    cfg.DATALOADER.NUM_WORKERS = 0
    register_datasets(cfg, task, data / task)
    model = build_model(cfg)
    model.train()
    optimizer = build_optimizer(cfg, model)
    batches = iter(build_detection_train_loader(cfg))
    storage = EventStorage(0).__enter__()  # detectron2's models log into the current event storage

    def step() -> None:
        """One training iteration."""
        losses = sum(model(next(batches)).values())
        optimizer.zero_grad()
        losses.backward()
        optimizer.step()
        storage.iter += 1

    return step


def detectron2_available() -> bool:
    """Whether detectron2 (with its compiled ops) imports."""
    try:
        import detectron2._C  # noqa: F401
        return True
    except ImportError:
        return False


def measure(device: str, data: Path, depth: int, input_size: int | None, batch: int, warmup: int,
            iters: int) -> list[dict[str, Any]]:
    """Figures (iterations/s) of every protocol on each available backend, on `device`."""
    backends = {"mmdet": mmdet_step}
    if detectron2_available():
        backends["detectron2"] = detectron2_step
    else:
        print("detectron2 is not importable: timing mmdet only")
    figures = []
    for label, (task, mm_config, d2_config) in PROTOCOLS.items():
        for backend, make_step in backends.items():
            torch.manual_seed(0)
            step = make_step(task, mm_config if backend == "mmdet" else d2_config, data, depth, input_size, batch,
                             device)
            t = time_steps(step, warmup, iters, device)
            size = f"shorter side {input_size}" if input_size else "protocol size (shorter side 640-800)"
            figures.append({"label": f"{label}, {backend}, ResNet-{depth}, {device}", "value": 1 / t["wall_s"],
                            "unit": "it/s", "backend": backend, "protocol": label, "device": device,
                            "batch": batch, "input": size, "depth": depth, "timed_iterations": iters,
                            "cpu_seconds_per_iteration": round(t["cpu_s"], 3)})
            print(f"{figures[-1]['label']}: {figures[-1]['value']:.3g} it/s "
                  f"({t['wall_s']:.2f} s wall, {t['cpu_s']:.2f} s CPU per iteration)", flush=True)
            del step
    return figures


def main() -> None:
    """Time every protocol on the CPU, and on the GPU when one is visible; write the results."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--depth", type=int, default=50, help="ResNet depth (the protocols use 50)")
    parser.add_argument("--cpu-input-size", type=int, default=256, help="shorter side on the CPU")
    parser.add_argument("--cpu-batch", type=int, default=2, help="images per iteration on the CPU")
    parser.add_argument("--cpu-iters", type=int, default=3, help="timed iterations on the CPU (after 1 warmup)")
    parser.add_argument("--gpu-iters", type=int, default=20, help="timed iterations on the GPU (after 5 warmup)")
    parser.add_argument("--skip-cpu", action="store_true", help="time the GPU only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-detection-") as tmp:
        data = Path(tmp)
        make_dataset("voc", data / "voc", seed=0, num_images=32, num_val=8)
        make_dataset("coco", data / "coco", seed=0, num_images=32, num_val=8)
        if not args.skip_cpu:
            torch.set_num_threads(torch.get_num_threads())
            figures = measure("cpu", data, args.depth, args.cpu_input_size, args.cpu_batch, 1, args.cpu_iters)
            write_benchmark("detection_cpu", figures, notes=(
                f"Training iterations/s on the CPU, ResNet-{args.depth}, batch {args.cpu_batch}, shorter side "
                f"{args.cpu_input_size} (per-image regions shrunk with the area, as --input-size does), "
                "SyncBN as BN, procedural data, data loading in the main process; median of "
                f"{args.cpu_iters} iterations after 1 warmup. cpu_seconds_per_iteration is process CPU time "
                "(robust to other jobs sharing the cores, unlike the wall-clock rate)."))
        if torch.cuda.is_available():
            figures = measure("cuda", data, args.depth, None, 2, 5, args.gpu_iters)
            write_benchmark("detection_gpu", figures, notes=(
                f"Training iterations/s on one GPU at the protocol's size and per-GPU batch (2 images), "
                f"ResNet-{args.depth}, SyncBN as BN (one process), procedural data; median of {args.gpu_iters} "
                "iterations after 5 warmup. An 8-GPU protocol run does 16 images per iteration."))
        else:
            print("no GPU visible: skipped the GPU part (protocol-size iterations/s); run this on a GPU machine "
                  "to measure it")


if __name__ == "__main__":
    main()
