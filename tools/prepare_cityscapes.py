#!/usr/bin/env python
"""Write the *_gtFine_labelTrainIds.png maps that mmseg reads, from the *_gtFine_labelIds.png of a Cityscapes tree."""
import argparse
import sys

from transfer.cli import run_main
from transfer.segmentation.prepare import write_train_id_maps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data_root", help="the Cityscapes folder holding gtFine/ (e.g. data/cityscapes), or its parent")
    parser.add_argument("--force", action="store_true", help="rewrite maps that already exist")
    parser.add_argument("--workers", type=int, default=4, help="threads reading and writing PNGs")
    args = parser.parse_args()
    counts = write_train_id_maps(args.data_root, force=args.force, workers=args.workers)
    print(f"{counts['written']} labelTrainIds maps written, {counts['skipped']} already there "
          f"({counts['label_maps']} labelIds maps under {counts['root']})")


if __name__ == "__main__":
    sys.exit(run_main(main))
