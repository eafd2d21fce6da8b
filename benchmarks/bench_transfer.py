#!/usr/bin/env python
"""Transfer benchmark: does fine-tuning tell a pretrained backbone from random init on VOC, COCO and Cityscapes?

Runs the demo's `plan=transfer` (`transfer.demo.TRANSFER_PLAN`): the supervised teacher, SEED and SSA students
and random init over 3 seeds, each fine-tuned on VOC (Faster R-CNN C4), COCO (Mask R-CNN C4) and Cityscapes
(FCN) at one budget, through the runners of `tools/run_transfer.sh`. Then it archives the results index and
every metrics.json it names in `benchmarks/runs/transfer/` and prints each column's margins over random init
(the bar: +5 points and more than twice random init's spread). `tools/make_benchmarks.py --index ...` turns the
archive into benchmarks.md's table.

    .venv/bin/python benchmarks/bench_transfer.py [--work-dir work_dirs/bench_transfer] [key=value ...]

The keys are the demo plan's (`DemoPlan`), e.g. `det_iters=600` to measure what a longer schedule gives.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from transfer.cli import run_main, run_transfer  # noqa: E402
from transfer.fileio import atomic_folder, write_json  # noqa: E402


def archive(work_dir: Path, index_name: str, dest: Path, command: str) -> Path:
    """Copy the results index (its command: this benchmark's) and the metrics.json files it names from
    `work_dir` to `dest`, replaced whole."""
    index = json.loads((work_dir / index_name).read_text())
    index.update(name="transfer benchmark (plan=transfer)", command=command)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_folder(dest) as tmp:
        write_json(tmp / index_name, index)
        for row in index["rows"]:
            for rel in row["metrics"].values():
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(work_dir / rel, tmp / rel)
    return dest / index_name


def main() -> None:
    """Run plan=transfer, archive it, print the margins."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", default=str(ROOT / "work_dirs" / "bench_transfer"),
                        help="the demo's work dir for this plan (stages made with the same settings are reused)")
    parser.add_argument("--archive", default=str(ROOT / "benchmarks" / "runs" / "transfer"),
                        help="where the index and its metrics.json files are copied")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="demo plan settings (DemoPlan)")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    index = run_transfer(["demo", "--work-dir", args.work_dir, "plan=transfer", *args.overrides])
    wall = time.perf_counter() - t0
    name = index["plan"]["index"]
    command = " ".join(["python benchmarks/bench_transfer.py", *sys.argv[1:]])
    path = archive(Path(args.work_dir), name, Path(args.archive), command)
    print(f"[bench_transfer] {wall:.0f} s ({wall / 60:.1f} min) on {os.cpu_count()} cores; 1-minute load average "
          f"{load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end; archived: {path}")
    for quantity in index["separation"]["quantities"]:
        cells = ", ".join(f"{c['row']} {c['margin']:+.1f} {'met' if c['meets'] else 'not met'}"
                          for c in quantity["rows"])
        print(f"[bench_transfer] {quantity['label']}: random init {quantity['random']:.1f} ± "
              f"{quantity['spread']:.1f}; {cells}")
    print(f"[bench_transfer] table: python tools/make_benchmarks.py --index ... {path.relative_to(ROOT)}")


if __name__ == "__main__":
    run_main(main)  # a bad key=value: one `error:` line, exit 2, before any work
