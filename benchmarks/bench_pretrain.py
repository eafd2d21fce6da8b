#!/usr/bin/env python
"""Training throughput (images/s) of moco_v2, seed and ssa with the same student, teacher and batch, in one run.

CPU part: ResNet-18 student at 64 px (the demo's setting). GPU part (when CUDA is
available): ResNet-50 student and ResNet-50 teacher at 224 px, bf16 autocast,
channels_last. An image is one source image (two views). The inputs are
synthetic tensors: this measures the method's compute (forward, backward,
SGD step, EMA update, queues), not data loading. Methods are timed in turns,
repeatedly, so a change in the machine's load hits them alike; the median step
time is reported. seed and ssa use a frozen teacher of the given arch (random
weights: the cost does not depend on them); moco_v2 its EMA key encoder.

    python benchmarks/bench_pretrain.py [--steps 5] [--repeats 3] [--cpu-batch 64] [--gpu-batch 128]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torchvision

from transfer.pretrain import load_config
from transfer.pretrain.config import PRETRAIN_CONFIGS
from transfer.pretrain.trainer import build_model
from transfer.results import write_benchmark

METHODS = ("moco_v2", "moco_v2_asym", "seed", "ssa")


def build(method: str, arch: str, teacher: Path, device: torch.device, channels_last: bool):
    """The method's model and optimizer as the trainer builds them."""
    overrides = [f"model.arch={arch}"]
    if method in ("seed", "ssa"):
        overrides.append(f"teacher.checkpoint={teacher}")
    cfg = load_config(PRETRAIN_CONFIGS / f"{method}.yaml", overrides)
    model, _ = build_model(cfg)
    model.to(device).train()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.03, momentum=0.9,
                                weight_decay=1e-4)
    return model, optimizer


def time_steps(model, optimizer, views, steps: int, amp: bool) -> list[float]:
    """Seconds of each of `steps` training steps (forward with EMA update, backward, SGD step)."""
    device = views[0].device
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss, _ = model(*views, momentum=0.99)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def measure(device: torch.device, arch: str, size: int, batch: int, steps: int, repeats: int, amp: bool,
            channels_last: bool, tmp: Path) -> dict[str, dict]:
    """Median seconds per step and images/s of each method, timed in turns."""
    teacher = tmp / f"{arch}_teacher.pth"
    torch.save(torchvision.models.__dict__[arch]().state_dict(), teacher)
    g = torch.Generator().manual_seed(0)
    views = [torch.randn(batch, 3, size, size, generator=g).to(device) for _ in range(2)]
    if channels_last:
        views = [v.contiguous(memory_format=torch.channels_last) for v in views]
    models = {m: build(m, arch, teacher, device, channels_last) for m in METHODS}
    for m in METHODS:  # warm-up: allocator, cuDNN autotuning, queue buffers
        time_steps(*models[m], views, 2, amp)
    times: dict[str, list[float]] = {m: [] for m in METHODS}
    for r in range(repeats):
        for m in METHODS:
            times[m] += time_steps(*models[m], views, steps, amp)
        print(f"  repeat {r + 1}/{repeats}: " + ", ".join(f"{m} {statistics.median(times[m]):.3f} s/step"
                                                        for m in METHODS), flush=True)
    out = {}
    for m in METHODS:
        median = statistics.median(times[m])
        out[m] = {"s_per_step": median, "images_per_s": batch / median, "min_s": min(times[m]), "max_s": max(times[m])}
    return out


def figures_of(results: dict[str, dict], context: dict) -> list[dict]:
    """One figure per method (images/s) and the cost ratios SSA / MoCo v2 per image."""
    figs = [{"label": f"{m} training throughput", "value": r["images_per_s"], "unit": "images/s", "method": m,
             "s_per_step": r["s_per_step"], "min_s_per_step": r["min_s"], "max_s_per_step": r["max_s"], **context}
            for m, r in results.items()]
    for base in ("moco_v2", "moco_v2_asym"):
        ratio = results["ssa"]["s_per_step"] / results[base]["s_per_step"]
        figs.append({"label": f"ssa cost per image / {base}", "value": ratio, "unit": "x", "target": 1.3,
                     "meets_target": ratio <= 1.3, **context})
    return figs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per method and repeat")
    parser.add_argument("--repeats", type=int, default=3, help="turns over the methods")
    parser.add_argument("--cpu-batch", type=int, default=64)
    parser.add_argument("--cpu-size", type=int, default=64)
    parser.add_argument("--gpu-batch", type=int, default=128)
    parser.add_argument("--skip-cpu", action="store_true")
    args = parser.parse_args()
    notes = ("Synthetic inputs (compute only: forward + EMA update + backward + SGD step, queues of 65536); "
             "an image is one source image with its two views; moco_v2 is symmetrised (both views as query, the "
             "configs' default), moco_v2_asym is the published one-direction loss (half the student compute). "
             "seed/ssa use a frozen teacher of the same arch. Median over steps x repeats, methods timed in turns.")
    with tempfile.TemporaryDirectory(prefix="bench-pretrain-") as tmp:
        if not args.skip_cpu:
            ctx = {"device": "cpu", "arch": "resnet18", "teacher_arch": "resnet18", "image_size": args.cpu_size,
                   "batch": args.cpu_batch, "threads": torch.get_num_threads(), "amp": False}
            print(f"CPU: ResNet-18, {args.cpu_size} px, batch {args.cpu_batch}, {torch.get_num_threads()} threads")
            results = measure(torch.device("cpu"), "resnet18", args.cpu_size, args.cpu_batch, args.steps,
                              args.repeats, amp=False, channels_last=False, tmp=Path(tmp))
            write_benchmark("pretrain_cpu", figures_of(results, ctx), notes=notes)
        if torch.cuda.is_available():
            ctx = {"device": torch.cuda.get_device_name(0), "arch": "resnet50", "teacher_arch": "resnet50",
                   "image_size": 224, "batch": args.gpu_batch, "amp": "bf16", "channels_last": True}
            print(f"GPU {ctx['device']}: ResNet-50 student and teacher, 224 px, batch {args.gpu_batch}, bf16")
            torch.backends.cudnn.benchmark = True
            results = measure(torch.device("cuda"), "resnet50", 224, args.gpu_batch, args.steps, args.repeats,
                              amp=True, channels_last=True, tmp=Path(tmp))
            write_benchmark("pretrain_gpu", figures_of(results, ctx), notes=notes)
        else:
            print("GPU part skipped: CUDA is not available on this machine (benchmarks/results/pretrain_gpu.json "
                  "is written only where a GPU is)")


if __name__ == "__main__":
    main()
