#!/usr/bin/env python
"""The suite's full-size preflight on this machine: per protocol, s/iter, peak memory, ETA and wall time.

Runs `tools/run_transfer.sh suite --preflight-only` with a random torchvision
checkpoint (ResNet-50 by default) on procedural data at the real datasets' image
sizes (`make_demo_data --full-size`), one protocol at a time: 800 px multi-scale
detection, 769 crops and 1024x2048 slide inference, 224 crops, 2 training iterations
and a test on 2 images. On the CPU the batch is CPU-sized (`--cpu-batch`, default one
image per iteration for detection/segmentation, 8 for linear), the input never is.
Prints the preflight table and the wall time of each protocol's preflight;
`--write` stores them as benchmarks/results/preflight_<device>.json.

    nice -n 10 .venv/bin/python benchmarks/bench_preflight.py [--arch resnet50] [--tasks voc,coco,...] [--write]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import torchvision

from transfer.cli import run_transfer
from transfer.data import make_demo_data
from transfer.data.generate import FULL_SIZES
from transfer.results import write_benchmark


def cpu_batch(images: int) -> list[str]:
    """Overrides that give each run `images` images per iteration in one process (detection, segmentation)."""
    out = [f"linear:linear.batch_size={max(8, images)}", "linear:linear.workers=0"]
    for task in ("voc", "coco", "cityscapes"):
        out += [f"{task}:protocol_gpus=1", f"{task}:train_dataloader.batch_size={images}"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="resnet50", help="torchvision ResNet of the random checkpoint")
    parser.add_argument("--tasks", default="linear,voc,coco:c4_1x+fpn_1x,cityscapes")
    parser.add_argument("--cpu-batch", type=int, default=1, help="images per iteration on the CPU (not the input)")
    parser.add_argument("--work-dir", help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--write", action="store_true", help="write benchmarks/results/preflight_<cpu|gpu>.json")
    args = parser.parse_args()

    root = Path(args.work_dir or tempfile.mkdtemp(prefix="bench_preflight_"))
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    t0 = time.perf_counter()
    make_demo_data(root / "data", num_images=16, num_val=10, formats=("imagefolder",), image_sizes=FULL_SIZES)
    make_demo_data(root / "data", num_images=4, num_val=2, formats=("voc", "coco", "cityscapes"),
                   image_sizes=FULL_SIZES)
    print(f"full-size procedural data: {time.perf_counter() - t0:.0f} s", flush=True)
    weights = root / f"{args.arch}.pth"
    torch.manual_seed(0)
    torch.save(getattr(torchvision.models, args.arch)().state_dict(), weights)

    figures = []
    for task in args.tasks.split(","):
        work_dir = root / "suite" / task.replace(":", "_").replace("+", "_")
        start = time.perf_counter()
        run_transfer(["suite", "--weights", str(weights), "--name", args.arch, "--data-root", str(root / "data"),
                      "--tasks", task, "--preflight-only", "--gpus", str(gpus), "--work-dir", str(work_dir),
                      *(cpu_batch(args.cpu_batch) if gpus == 0 else [])])
        wall = time.perf_counter() - start
        for r in json.loads((work_dir / "preflight" / "preflight.json").read_text()):
            context = {"protocol": r["protocol"], "arch": args.arch, "batch": r["batch"], "gpus": gpus}
            figures += [{"label": f"{r['protocol']}: s/iter at full size", "value": r["s_per_iter"],
                         "unit": "s/iter", **context},
                        {"label": f"{r['protocol']}: ETA of the full schedule x trials (training)",
                         "value": r["eta_s"] / 3600, "unit": "h", **context},
                        {"label": f"{r['protocol']}: peak memory ({r['peak_kind']})", "value": r["peak_mib"] / 1024,
                         "unit": "GiB", **context}]
        figures.append({"label": f"{task}: wall time of the whole preflight", "value": wall, "unit": "s",
                        "protocol": task, "arch": args.arch, "gpus": gpus})
        print(f"{task}: preflight wall time {wall:.0f} s", flush=True)
    if args.write:
        write_benchmark(f"preflight_{'gpu' if gpus else 'cpu'}", [f for f in figures if f["value"] is not None],
                        notes=f"{args.arch}, random weights; full-size inputs, 2 iterations, test on 2 images; "
                              f"{'CPU batch ' + str(args.cpu_batch) + ' image(s)/iteration' if not gpus else ''}")


if __name__ == "__main__":
    main()
