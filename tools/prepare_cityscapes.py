#!/usr/bin/env python
"""Prepare a Cityscapes tree for the transfer tasks: the *_gtFine_labelTrainIds.png maps that mmseg reads (made
from the *_gtFine_labelIds.png) and, with --instances, the COCO-style instance annotations that mmdet reads
(annotations/instancesonly_filtered_gtFine_{train,val}.json, made from the *_gtFine_instanceIds.png by mmdet's
converter)."""
import argparse
import sys

from transfer.cli import run_main
from transfer.data import find_dataset
from transfer.detection.cityscapes_instances import ANNOTATIONS, write_instance_annotations
from transfer.segmentation.prepare import write_train_id_maps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data_root", help="the Cityscapes folder holding gtFine/ (e.g. data/cityscapes), or its parent")
    parser.add_argument("--instances", action="store_true",
                        help="also write the instance annotations of train and val (tools/run_transfer.sh "
                             "cityscapes_ins)")
    parser.add_argument("--force", action="store_true", help="rewrite maps and annotations that already exist")
    parser.add_argument("--workers", type=int, default=4, help="threads reading and writing PNGs")
    args = parser.parse_args()
    counts = write_train_id_maps(args.data_root, force=args.force, workers=args.workers)
    print(f"{counts['written']} labelTrainIds maps written, {counts['skipped']} already there "
          f"({counts['label_maps']} labelIds maps under {counts['root']})")
    if args.instances:
        root = find_dataset("cityscapes", args.data_root)
        for split, written in write_instance_annotations(root, force=args.force, workers=args.workers).items():
            path = root / ANNOTATIONS[split]
            print(f"{path}: already there" if written is None else f"{path}: {written} instances written")


if __name__ == "__main__":
    sys.exit(run_main(main))
