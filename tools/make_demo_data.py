#!/usr/bin/env python
"""Write the procedural datasets: DIR/coco, DIR/voc, DIR/cityscapes and DIR/imagefolder."""
import argparse
import sys
import time
from pathlib import Path

from transfer.cli import run_main
from transfer.data import FORMATS, make_demo_data
from transfer.data.generate import FULL_SIZES
from transfer.errors import UserError


def check_output_folder(out: str) -> None:
    """Refuse an --out that is a file, or lies under one, before anything is written."""
    path = Path(out)
    for folder in (path, *path.parents):
        if folder.exists():
            if not folder.is_dir():
                what = "is a file" if folder == path else f"lies under {folder}, which is a file"
                raise UserError(f"--out {out} {what}; expected a folder (it is created if missing)")
            return


def main() -> None:
    """Parse the command line and write the datasets."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, help="folder to write the datasets into")
    parser.add_argument("--seed", type=int, default=0, help="random seed; equal seeds give identical files")
    parser.add_argument("--num-images", type=int, default=64, help="train images per dataset")
    parser.add_argument("--num-val", type=int, default=None, help="val/test images per dataset (default N/4, >= 8)")
    parser.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS))
    parser.add_argument("--force", action="store_true", help="replace datasets made with other parameters")
    parser.add_argument("--full-size", action="store_true", help="the real datasets' image sizes (COCO 640x480, "
                        "VOC 500x375, Cityscapes 2048x1024, ImageFolder 500x500), e.g. for the suite's --preflight")
    args = parser.parse_args()
    check_output_folder(args.out)
    start = time.perf_counter()
    try:
        folders = make_demo_data(args.out, args.seed, args.num_images, args.num_val, tuple(args.formats), args.force,
                                 image_sizes=FULL_SIZES if args.full_size else None)
    except OSError as e:  # no space, no permission: the half-written dataset is already removed
        raise UserError(f"cannot write {e.filename or args.out}: {e.strerror or e}") from None
    for fmt, folder in folders.items():
        print(f"{fmt:12s} {folder}")
    print(f"done in {time.perf_counter() - start:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    run_main(main)
