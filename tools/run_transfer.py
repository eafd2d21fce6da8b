#!/usr/bin/env python
"""Fine-tune and evaluate a pretrained backbone on a task of `transfer/tasks.py`, run the demo, or the suite."""
import sys

from transfer.cli import run_main, run_transfer

if __name__ == "__main__":
    run_main(lambda: run_transfer(sys.argv[1:]))
