#!/usr/bin/env python
"""Generate benchmarks.md (and benchmarks/comparison.png) from measured runs; never edit it by hand."""
import argparse

from transfer.cli import run_main
from transfer.report.generate import DEFAULT_BENCH_DIR, DEFAULT_OUT, DEFAULT_PLOT, DEFAULT_REFERENCE, make_benchmarks


def main() -> None:
    """Parse the flags and write benchmarks.md."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--index", nargs="+", action="extend", default=[], metavar="FILE",
                        help="results index of a set of runs (e.g. demo_out/results.json); one table each")
    parser.add_argument("--bench-dir", default=DEFAULT_BENCH_DIR, help="benchmark figures, NAME.json each "
                        "(default: benchmarks/results)")
    parser.add_argument("--reference", default=DEFAULT_REFERENCE, help="the published figures, as data "
                        "(default: benchmarks/reference.json)")
    parser.add_argument("--out", default=DEFAULT_OUT, help="markdown to write (default: benchmarks.md)")
    parser.add_argument("--plot", default=DEFAULT_PLOT, help="PNG to write (default: benchmarks/comparison.png)")
    args = parser.parse_args()
    written = make_benchmarks(args.index, bench_dir=args.bench_dir, out=args.out, plot=args.plot,
                              reference_json=args.reference)
    for kind, path in written.items():
        print(f"{kind:9s} {path}")


if __name__ == "__main__":
    run_main(main)
