#!/usr/bin/env python
"""Segmentation benchmark: Cityscapes evaluation (the official script) and FCN training speed.

1. Evaluation of N procedural 2048x1024 label-id maps against noisy predictions with
   cityscapesscripts' own `evaluateImgLists`: seconds per image.
2. Training iterations/s of the protocol's FCN (`train_step`: data preprocessor, forward,
   backward, SGD step) on synthetic batches: ResNet-50 and ResNet-18 on the CPU at a
   small crop, and ResNet-50 at 769x769 with 2 images per GPU when a GPU is visible.

    .venv/bin/python benchmarks/bench_segmentation.py [--images 20] [--cpu-crop 128]
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from transfer.data import make_dataset
from transfer.data.cityscapes import LABEL_SUFFIX, label_ids_to_train_ids
from transfer.engine.config import load_mm_config
from transfer.engine.devices import replace_syncbn
from transfer.results import write_benchmark
from transfer.segmentation.config import set_backbone_depth, set_input_size
from transfer.segmentation.evaluation import evaluate_official, train_ids_to_label_ids
from transfer.segmentation.runner import DEFAULT_CONFIG


def noisy_predictions(gts: list[Path], out: Path, seed: int = 0) -> list[Path]:
    """Label-id predictions: the ground truth's train ids with a third of the pixels set to random classes."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for gt in gts:
        train_ids = label_ids_to_train_ids(np.asarray(Image.open(gt)))
        pred = np.where(train_ids == 255, 0, train_ids).astype(np.uint8)
        noise = rng.random(pred.shape) < 0.33
        pred[noise] = rng.integers(0, 19, int(noise.sum()))
        path = out / gt.name.replace(LABEL_SUFFIX, "_pred.png")
        Image.fromarray(train_ids_to_label_ids(pred)).save(path)
        paths.append(path)
    return paths


def bench_evaluation(num_images: int, size: tuple[int, int], workdir: Path) -> list[dict]:
    """Time the official evaluation on N procedural label maps against noisy predictions."""
    data = make_dataset("cityscapes", workdir / f"cityscapes_{size[0]}x{size[1]}", seed=0, num_images=1,
                        num_val=num_images, image_size=size)
    gts = sorted((data / "gtFine" / "val").glob(f"*/*{LABEL_SUFFIX}"))
    preds = noisy_predictions(gts, workdir / f"pred_{size[0]}x{size[1]}")
    start = time.perf_counter()
    evaluate_official(preds, gts)
    return [{"label": "Cityscapes evaluation, official cityscapesscripts",
             "value": (time.perf_counter() - start) / len(gts), "unit": "s/image",
             "images": len(gts), "image_size": f"{size[0]}x{size[1]}"}]


def fcn_model(depth: int, crop: int, device: str) -> tuple[torch.nn.Module, object]:
    """The protocol's FCN (BN for one process) at `crop`, and its SGD optim wrapper."""
    from mmengine.optim import build_optim_wrapper
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    register_all_modules()
    cfg = load_mm_config(DEFAULT_CONFIG)
    replace_syncbn(cfg._cfg_dict)
    set_backbone_depth(cfg, depth)
    set_input_size(cfg, crop)
    model = MODELS.build(cfg.model).to(device)
    model.train()
    return model, build_optim_wrapper(model, cfg.optim_wrapper)


def bench_training(depth: int, crop: int, batch: int, iters: int, device: str) -> dict:
    """Training iterations/s of the FCN at `crop` with `batch` images (after 2 warm-up iterations)."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    model, optim = fcn_model(depth, crop, device)
    gen = torch.Generator().manual_seed(0)
    inputs = [torch.randint(0, 256, (3, crop, crop), generator=gen, dtype=torch.uint8) for _ in range(batch)]
    samples = []
    for _ in range(batch):
        sample = SegDataSample(metainfo=dict(img_shape=(crop, crop), ori_shape=(crop, crop)))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 19, (1, crop, crop), generator=gen))
        samples.append(sample)
    data = {"inputs": inputs, "data_samples": samples}
    for _ in range(2):
        model.train_step(data, optim)
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        model.train_step(data, optim)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    where = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    return {"label": f"FCN R{depth}-D8 training, {crop}x{crop} crop, {batch} images/iter, {where}",
            "value": iters / seconds, "unit": "iter/s", "depth": depth, "crop": crop, "batch": batch,
            "device": device, "iterations": iters}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20, help="label maps to evaluate")
    parser.add_argument("--eval-size", type=int, nargs=2, default=(2048, 1024), metavar=("W", "H"))
    parser.add_argument("--cpu-crop", type=int, default=128, help="crop for the CPU training figures")
    parser.add_argument("--cpu-iters", type=int, default=5)
    parser.add_argument("--gpu-iters", type=int, default=20)
    parser.add_argument("--threads", type=int, nargs="+", default=None,
                        help="torch CPU threads to measure training with (default: 1 and torch's default)")
    parser.add_argument("--workdir", help="where the procedural data goes (default: a temporary folder)")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench_segmentation.") as tmp:
        workdir = Path(args.workdir or tmp)
        figures = bench_evaluation(args.images, tuple(args.eval_size), workdir)
    default_threads = torch.get_num_threads()
    for threads in args.threads or sorted({1, default_threads}):
        torch.set_num_threads(threads)
        for depth in (50, 18):
            figures.append(bench_training(depth, args.cpu_crop, 2, args.cpu_iters, "cpu"))
    torch.set_num_threads(default_threads)
    notes = ["CPU figures: the protocol's per-GPU batch of 2 at a small crop (the 769 crop is GPU work);",
             "on a machine shared with other jobs, more threads than free cores can be much slower than 1."]
    if torch.cuda.is_available():
        figures.append(bench_training(50, 769, 2, args.gpu_iters, "cuda"))
    else:
        print("no GPU visible: the GPU training figure (R50, 769x769, 2 images per GPU) was skipped")
        notes.append("GPU part skipped: no GPU visible.")
    notes.append(f"1-minute load average {load_before:.1f} at the start and {os.getloadavg()[0]:.1f} at the end "
                 f"on {os.cpu_count()} cores (above the core count, other jobs shared the CPU and times are inflated).")
    for fig in figures:
        if math.isnan(fig["value"]):
            sys.exit(f"{fig['label']}: no value measured")
    write_benchmark("segmentation_cpu" if not torch.cuda.is_available() else "segmentation_gpu", figures,
                    notes=" ".join(notes))


if __name__ == "__main__":
    main()
