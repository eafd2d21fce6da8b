"""SLURM through submitit: each run a job, requeued on preemption, one process per GPU across nodes.

Every process of a job gets torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT, from submitit's `TorchDistributedEnvironment`), so the
runners see what torchrun would give them: mmengine's `pytorch` launcher for
detection and segmentation, and `transfer.pretrain.distributed` for linear and
pretraining, do not relaunch. A preempted or timed-out job is requeued as it was
(`checkpoint`), and the run resumes from the last checkpoint in its work dir.
`--cluster local` runs the same path through submitit's local executor (the tests).
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transfer.errors import UserError
from transfer.jobs import REPO, child_env, log_tail, run_command

LAUNCHER_FLAGS = ("--launcher", "--partition", "--time", "--gpus-per-node", "--nodes", "--cpus-per-task",
                  "--cluster", "--slurm-folder")


def add_slurm_flags(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The launcher flags of `suite` and tools/pretrain.py."""
    group = parser.add_argument_group("cluster (--launcher slurm, through submitit)")
    group.add_argument("--launcher", choices=("local", "slurm"), default="local",
                       help="local: run here, one run after the other; slurm: one SLURM job per run")
    group.add_argument("--partition", help="SLURM partition")
    group.add_argument("--time", default="72:00:00", help="time limit of each job: minutes, HH:MM:SS or D-HH:MM:SS "
                       "(a job that reaches it is requeued and resumes)")
    group.add_argument("--gpus-per-node", type=int, default=8, help="GPUs (= processes) per node")
    group.add_argument("--nodes", type=int, default=1, help="nodes per job")
    group.add_argument("--cpus-per-task", type=int, default=10, help="CPU cores per process (data loading)")
    group.add_argument("--slurm-folder", help="submitit's logs and pickles (default: WORK_DIR/slurm)")
    group.add_argument("--cluster", choices=("slurm", "local"), default="slurm",
                       help=argparse.SUPPRESS)  # local: submitit's local executor, which the tests use
    return parser


def time_minutes(text: str) -> int:
    """`90`, `12:00:00` or `2-00:00:00` -> minutes."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+):(\d{2}):(\d{2})", text)
    if match:
        days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
        return days * 1440 + hours * 60 + minutes + (seconds > 0)
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise UserError(f"--time {text}: expected minutes, HH:MM:SS or D-HH:MM:SS")


def make_executor(args: argparse.Namespace, folder: Path, name: str) -> Any:
    """A submitit executor for jobs of `args.nodes` x `args.gpus_per_node` processes."""
    try:
        import submitit
    except ImportError as e:
        raise UserError("--launcher slurm needs submitit: pip install submitit") from e
    if args.nodes < 1 or args.gpus_per_node < 0:
        raise UserError(f"--nodes {args.nodes} --gpus-per-node {args.gpus_per_node}: need nodes >= 1, gpus >= 0")
    executor = submitit.AutoExecutor(folder=str(folder / "%j"), cluster=args.cluster)
    params: dict[str, Any] = {"name": name, "timeout_min": time_minutes(args.time), "nodes": args.nodes,
                              "tasks_per_node": max(1, args.gpus_per_node), "gpus_per_node": args.gpus_per_node,
                              "cpus_per_task": args.cpus_per_task}
    if args.cluster == "slurm":
        params["slurm_signal_delay_s"] = 120  # time to leave a checkpoint behind before the requeue
        if args.partition:
            params["slurm_partition"] = args.partition
    elif args.nodes > 1:
        raise UserError("submitit's local executor runs one node: drop --nodes")
    executor.update_parameters(**params)
    return executor


class CommandJob:
    """A SLURM job: one command per process with torchrun's variables set, then `then()` on rank 0 (a module-level
    function or a partial of one, so that the job pickles; e.g. the suite's index update)."""

    def __init__(self, command: list[str], work_dir: Path, then: Callable[[], Any] | None = None,
                 record: bool = True):
        self.command, self.work_dir, self.then, self.record = command, Path(work_dir), then, record

    def __call__(self) -> int:
        import submitit

        env = submitit.JobEnvironment()
        if env.num_tasks > 1:  # one process per GPU: the runners find torchrun's variables and do not relaunch
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
            os.environ["LOCAL_WORLD_SIZE"] = str(env.num_tasks // env.num_nodes)
        code = run_command(self.command, self.work_dir, child_env(), record=self.record)
        if env.global_rank == 0 and self.then is not None:
            self.then()
        if code:
            raise RuntimeError(f"{' '.join(self.command)} exited with {code}:\n{log_tail(self.work_dir)}")
        return code

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """On preemption or timeout: requeue the same command; the run resumes from its work dir."""
        import submitit

        return submitit.helpers.DelayedSubmission(CommandJob(self.command, self.work_dir, self.then, self.record))


def strip_launcher_flags(argv: list[str]) -> list[str]:
    """`argv` without the launcher flags (and their values), i.e. the command each job runs."""
    out, skip = [], False
    for word in argv:
        if skip:
            skip = False
            continue
        flag = word.split("=", 1)[0]
        if flag in LAUNCHER_FLAGS:
            skip = "=" not in word
            continue
        out.append(word)
    return out


def submit_pretrain(args: argparse.Namespace, argv: list[str]) -> Any:
    """`tools/pretrain.py --launcher slurm ...`: submit the same command as one job (resuming when requeued)."""
    command = [sys.executable, str(REPO / "tools" / "pretrain.py"), *strip_launcher_flags(argv)]
    if not any(w == "--resume" or w.startswith("--resume=") for w in command):
        command.append("--resume")  # a requeued job continues WORK_DIR/checkpoint_last.pth (none yet: a fresh start)
    work_dir = Path(args.work_dir)
    executor = make_executor(args, Path(args.slurm_folder or work_dir / "slurm"), f"pretrain-{work_dir.name}")
    job = executor.submit(CommandJob(command, work_dir))
    print(f"submitted SLURM job {job.job_id}: {' '.join(command)} (log: {work_dir / 'suite_job.log'})")
    return job
