#!/usr/bin/env python
"""Check a dataset before a run: every listed file present, annotations well formed, every image readable.

    python tools/check_dataset.py coco DIR                  # headers of every image (fast)
    python tools/check_dataset.py imagefolder DIR --check-images   # decode every pixel (slower)
"""
import argparse
import sys
import time

from transfer.cli import run_main
from transfer.data import FORMATS, check_dataset, find_dataset


def main() -> None:
    """Parse the command line, find the dataset and check it; prints `ok` or exits 2 listing the problems."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("format", choices=FORMATS)
    parser.add_argument("data", help="the dataset folder, or a root holding it")
    parser.add_argument("--check-images", action="store_true", help="decode every image fully, not only its header")
    args = parser.parse_args()
    start = time.perf_counter()
    root = find_dataset(args.format, args.data)
    check_dataset(args.format, root, decode_images=args.check_images)
    print(f"ok: {args.format} dataset at {root} ({time.perf_counter() - start:.1f}s)", file=sys.stderr)


if __name__ == "__main__":
    run_main(main)
