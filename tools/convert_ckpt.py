#!/usr/bin/env python
"""Convert a self-supervised ResNet checkpoint to detectron2 (.pkl), OpenMMLab or torchvision, and verify it loads."""
import argparse
import sys

from transfer.checkpoint import SOURCES, TARGETS, VerificationError, convert_checkpoint, format_report
from transfer.cli import run_main
from transfer.errors import UserError
from transfer.fileio import write_json


def main() -> None:
    """Parse the command line, convert, print the summary and write the report."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="sources detected automatically:\n"
               + "\n".join(f"  {k:12s} {f.description}" for k, f in SOURCES.items()))
    parser.add_argument("src", help="the checkpoint to convert")
    parser.add_argument("dst", help="the file to write (.pkl for detectron2)")
    parser.add_argument("--to", required=True, choices=TARGETS, help="target format")
    parser.add_argument("--from", dest="source", choices=SOURCES, help="force the source layout (default: detect)")
    parser.add_argument("--prefix", help="key prefix of the encoder to take, for layouts with several"
                                         " (e.g. module.encoder_q.)")
    parser.add_argument("--backbone-prefix", action="store_true",
                        help="mmlab only: write keys as backbone.<name> (for load_from or init_cfg prefix='backbone.')")
    parser.add_argument("--config", help="OpenMMLab config the checkpoint is meant for: warn if its backbone's stem"
                                         " does not match (mmseg ResNetV1c deep-stem trap)")
    parser.add_argument("--force", action="store_true", help="overwrite DST if it exists")
    parser.add_argument("--report", help="also write the conversion report to this JSON file")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="load SRC with full pickle (runs code in the file): only for files you trust")
    args = parser.parse_args()
    try:
        report = convert_checkpoint(args.src, args.dst, args.to, source=args.source, prefix=args.prefix,
                                    force=args.force, backbone_prefix=args.backbone_prefix, config=args.config,
                                    trust_pickle=args.trust_pickle, log=print)
    except VerificationError as e:
        print(format_report(e.report))
        if args.report:
            write_json(args.report, e.report)
        raise
    except UserError as e:
        if args.report:
            write_json(args.report, {"ok": False, "error": str(e), "source": {"path": args.src}, "target": args.to})
        raise
    for warning in report["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    print(format_report(report))
    if args.report:
        write_json(args.report, report)


if __name__ == "__main__":
    run_main(main)
