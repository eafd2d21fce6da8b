#!/usr/bin/env python
"""Time the dataset check's image pass per 10k images: headers (always on) and full decode (--check-images).

Writes `--num` procedural JPEGs of ImageNet's typical size (500x375, about 100 kB,
like an ImageNet photo) to a temporary folder and scans them with
`transfer.data.images.scan_images` on 1 thread and on `--threads`, reporting wall
and CPU time (the CPU time does not depend on how busy the machine is; the wall time
on N free cores is about CPU time / N). The page cache is warm (the files were just
written): on a cold disk, add the time to read them.
"""
import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from transfer.data.images import scan_images


def write_images(folder: Path, num: int, size: tuple[int, int] = (500, 375)) -> list[Path]:
    """`num` photo-like JPEGs: smooth colour fields with texture noise, quality 90."""
    rng = np.random.default_rng(0)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    paths = []
    for i in range(num):
        base = np.stack([np.sin(xx / rng.uniform(10, 80) + rng.uniform(0, 6)) * np.cos(yy / rng.uniform(10, 80))
                         for _ in range(3)], -1)
        img = np.clip(128 + 90 * base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
        path = folder / f"{i:06d}.JPEG"
        Image.fromarray(img).save(path, quality=90)
        paths.append(path)
    return paths


def main() -> None:
    """Print seconds per 10k images for each mode and thread count."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--num", type=int, default=400)
    parser.add_argument("--threads", type=int, default=None, help="default: 2 x the CPUs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_images(Path(tmp), args.num)
        mean_kb = sum(p.stat().st_size for p in paths) / len(paths) / 1024
        print(f"{len(paths)} JPEGs of 500x375, mean {mean_kb:.0f} kB")
        for decode in (False, True):
            for threads in (1, args.threads):
                scan_images(paths[:20], decode, workers=threads)  # warm up
                start, cpu = time.perf_counter(), time.process_time()
                infos = scan_images(paths, decode, workers=threads)
                took, cpu = time.perf_counter() - start, time.process_time() - cpu
                assert all(i.problem is None for i in infos)
                # CPU seconds are what a busy machine does not distort; wall time ~ CPU time / free cores
                print(f"{'decode ' if decode else 'headers'} threads={threads or 'auto'}: "
                      f"{took / len(paths) * 1e4:.1f} s wall, {cpu / len(paths) * 1e4:.1f} CPU-s per 10k images "
                      f"(ImageNet train, 1.28M images: {cpu / len(paths) * 1.281e6 / 60:.1f} CPU-min)")


if __name__ == "__main__":
    main()
