#!/usr/bin/env python
"""Time tools/convert_ckpt.py end to end (a fresh process: Python start, read, write, verify) for a ResNet-50."""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torchvision

from transfer.results import write_benchmark

REPO = Path(__file__).resolve().parent.parent
TARGETS = {"detectron2": ".pkl", "mmlab": ".pth", "torchvision": ".pth"}


def write_moco_checkpoint(path: Path) -> None:
    """A MoCo v2 main_moco.py checkpoint of a random ResNet-50: query and key encoders, MLP heads, queue."""
    torch.manual_seed(0)
    encoder = {k: v for k, v in torchvision.models.resnet50().state_dict().items() if not k.startswith("fc.")}
    state = {}
    for name in ("encoder_q", "encoder_k"):
        state.update({f"module.{name}.{k}": v.clone() for k, v in encoder.items()})
        state.update({f"module.{name}.fc.0.weight": torch.randn(2048, 2048),
                      f"module.{name}.fc.0.bias": torch.zeros(2048),
                      f"module.{name}.fc.2.weight": torch.randn(128, 2048),
                      f"module.{name}.fc.2.bias": torch.zeros(128)})
    state.update({"module.queue": torch.randn(128, 65536), "module.queue_ptr": torch.zeros(1, dtype=torch.long)})
    torch.save({"epoch": 200, "arch": "resnet50", "state_dict": state, "optimizer": {}}, path)


def main() -> None:
    """Time each target `--repeats` times and write benchmarks/results/convert.json."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5, help="runs per target; the median is reported")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    figures = []
    with tempfile.TemporaryDirectory(prefix="bench-convert-") as tmp:
        src = Path(tmp) / "moco_v2_r50.pth.tar"
        write_moco_checkpoint(src)
        size_mb = src.stat().st_size / 2**20
        for to, ext in TARGETS.items():
            walls, inner, cpus = [], [], []
            for _ in range(args.repeats):
                dst, report = Path(tmp) / f"out{ext}", Path(tmp) / "report.json"
                cmd = [sys.executable, str(REPO / "tools" / "convert_ckpt.py"), str(src), str(dst), "--to", to,
                       "--force", "--report", str(report)]
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                start = time.perf_counter()
                subprocess.run(cmd, check=True, capture_output=True, env=env)
                walls.append(time.perf_counter() - start)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                # CPU time says what the work costs even when other jobs share the cores.
                cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
                data = json.loads(report.read_text())
                inner.append(data["time_s"])
            engines = [f"{c['engine']}:{c['status']}" for c in data["verification"]]
            print(f"{to}: wall {', '.join(f'{w:.2f}' for w in walls)} s, cpu {', '.join(f'{c:.2f}' for c in cpus)} s; "
                  f"verified with {', '.join(engines)}")
            figures.append({"label": f"convert ResNet-50 MoCo v2 checkpoint -> {to} (whole process)",
                            "value": statistics.median(walls), "unit": "s", "repeats": args.repeats,
                            "min": min(walls), "max": max(walls), "cpu_median_s": statistics.median(cpus),
                            "in_process_median_s": statistics.median(inner),
                            "source_mb": round(size_mb, 1), "verified_with": engines})
    write_benchmark("convert", figures,
                    notes="Wall time of `python tools/convert_ckpt.py SRC DST --to T` in a fresh process "
                          "(Python start, "
                          "imports, reading, writing, verification in every importable engine, report); "
                          "cpu_median_s is the process's user+system CPU time; in_process_median_s is the "
                          "conversion's own time from the report (no Python start or imports).")


if __name__ == "__main__":
    main()
