"""`tools/run_transfer.sh suite`: every (checkpoint, protocol, trial) of the paper's tables, its index and table.

plan.py lays the runs out, jobs.py runs one (locally or as a SLURM job, slurm.py),
index.py turns the finished ones into results.json + benchmarks.md, status.py
prints where the suite stands, preflight.py runs each protocol at full size for
two iterations before the long jobs.
"""
