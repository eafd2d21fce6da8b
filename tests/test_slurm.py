"""--launcher slurm through submitit's local executor: the same jobs, torchrun's variables, requeue, the index."""
from __future__ import annotations

import functools
import json
import pickle
import sys
from pathlib import Path

import pytest

submitit = pytest.importorskip("submitit")

from transfer.errors import UserError  # noqa: E402
from transfer.suite.cli import make_plan, run_slurm, suite_parser  # noqa: E402
from transfer.suite.index import refresh_index, save_plan  # noqa: E402
from transfer.jobs import read_state  # noqa: E402
from transfer.slurm import CommandJob, strip_launcher_flags, time_minutes  # noqa: E402

from suite_helpers import SHRUNK, r18_checkpoint  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def test_time_and_flags() -> None:
    assert time_minutes("90") == 90 and time_minutes("12:00:00") == 720 and time_minutes("1-00:30:00") == 1470
    with pytest.raises(UserError):
        time_minutes("soon")
    assert strip_launcher_flags(["--method", "ssa", "--launcher", "slurm", "--nodes=2", "--partition", "p", "x=1"]) \
        == ["--method", "ssa", "x=1"]


def test_suite_jobs_fill_the_index_as_they_end(demo_data: Path, tmp_path: Path) -> None:
    weights = [r18_checkpoint(tmp_path / f"r18_{k}.pth", k) for k in range(2)]
    out = tmp_path / "suite"
    argv = ["--weights", str(weights[0]), "--weights", str(weights[1]), "--data-root", str(demo_data),
            "--tasks", "linear",
            "--work-dir", str(out), "--launcher", "slurm", "--cluster", "local", "--gpus-per-node", "0",
            "--time", "20", *SHRUNK]
    args = suite_parser().parse_intermixed_args(argv)
    plan = make_plan(args)
    plan.work_dir.mkdir(parents=True)
    save_plan(plan, "test")
    jobs = run_slurm(plan, "test", args)
    assert len(jobs) == 2 and read_state(plan.jobs()[0].work_dir)["slurm_job_id"] == str(jobs[0].job_id)
    for job in jobs:
        assert job.result() == 0
    # each job rebuilt the index when it ended (nobody else did: no --wait)
    index = json.loads((out / "results.json").read_text())
    assert [row["metrics"] for row in index["rows"]] == [{"linear": f"runs/r18_{k}/linear/metrics.json"}
                                                          for k in range(2)]
    assert read_state(plan.jobs()[1].work_dir)["state"] == "done"
    assert (out / "benchmarks.md").is_file()
    # a second submission skips what is done
    assert run_slurm(plan, "test", args) == []


def test_preempted_job_is_requeued_as_the_same_command(tmp_path: Path) -> None:
    job = CommandJob([sys.executable, "-c", "print(1)"], tmp_path / "w", functools.partial(refresh_index, tmp_path))
    again = job.checkpoint()
    assert isinstance(again, submitit.helpers.DelayedSubmission)
    assert again.function.command == job.command and again.function.work_dir == job.work_dir
    assert again.function.then == job.then and pickle.loads(pickle.dumps(job)).then.args == (tmp_path,)


def test_pretrain_launcher_slurm_runs_through_submitit(demo_data: Path, tmp_path: Path) -> None:
    """tools/pretrain.py --launcher slurm submits the same command (with --resume) as a job, which trains."""
    work = tmp_path / "pretrain"
    job = pretrain_main(["--method", "ssa", "--arch", "resnet18", "--data", str(demo_data / "imagefolder"),
                         "--work-dir", str(work), "--max-steps", "2", "--batch-size", "4", "--image-size", "32",
                         "--workers", "0", "model.queue_size=16", "aggregation.queue_size=16", "model.head_hidden=64",
                         "--launcher", "slurm", "--cluster", "local", "--gpus-per-node", "0", "--time", "20"])
    assert job.result() == 0
    assert (work / "checkpoint_final.pth").is_file()
    assert read_state(work)["state"] == "done"  # the job recorded itself
    log = (work / "suite_job.log").read_text()
    assert "--resume" in log and "--launcher" not in log


def pretrain_main(argv: list[str]):
    """Run tools/pretrain.py's main with `argv`; returns what it returns (the submitted job)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("pretrain_tool", REPO / "tools" / "pretrain.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    old = sys.argv
    sys.argv = ["pretrain.py", *argv]
    try:
        return module.main()
    finally:
        sys.argv = old


def test_each_process_of_a_job_gets_torchruns_variables(tmp_path: Path) -> None:
    """Two tasks per node (as for two GPUs): each runs the command with its RANK and the shared rendezvous."""
    executor = submitit.AutoExecutor(folder=str(tmp_path / "slurm"), cluster="local")
    executor.update_parameters(tasks_per_node=2, nodes=1, gpus_per_node=0, timeout_min=5)
    show = "import os; print('ENV', *(os.environ[k] for k in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_PORT')))"
    job = executor.submit(CommandJob([sys.executable, "-c", show], tmp_path / "w"))
    assert job.results() == [0, 0]
    lines = [line.split() for log in sorted((tmp_path / "w").glob("suite_job*.log"))
             for line in log.read_text().splitlines() if line.startswith("ENV")]
    assert sorted(line[1:3] for line in lines) == [["0", "2"], ["1", "2"]] and len({line[4] for line in lines}) == 1
