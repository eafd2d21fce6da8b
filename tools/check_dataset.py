#!/usr/bin/env python
"""Check a dataset before a run: every listed file present, annotations well formed, every image readable.

    python tools/check_dataset.py coco DIR                  # headers of every image (fast)
    python tools/check_dataset.py imagefolder DIR --check-images   # decode every pixel (slower)
"""
import argparse
import sys
import time

from transfer.cli import run_main
from transfer.data import DATASET_FORMATS, DatasetError, check_dataset, find_dataset
from transfer.data.problems import SHOWN


def main() -> None:
    """Parse the command line, find the dataset and check it; prints `ok`, or every problem and exits 2."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("format", choices=DATASET_FORMATS)
    parser.add_argument("data", help="the dataset folder, or a root holding it")
    parser.add_argument("--check-images", action="store_true", help="decode every image fully, not only its header")
    args = parser.parse_args()
    start = time.perf_counter()
    root = find_dataset(args.format, args.data)
    try:
        check_dataset(args.format, root, decode_images=args.check_images)
    except DatasetError as e:
        if len(e.problems) > SHOWN:  # the error lists the first few: the full list goes to stdout
            print("\n".join(str(p) for p in e.problems))
        raise
    print(f"ok: {args.format} dataset at {root} ({time.perf_counter() - start:.1f}s)", file=sys.stderr)


if __name__ == "__main__":
    run_main(main)
