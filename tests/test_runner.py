"""The one runner skeleton of tools/run_transfer.sh: same flags, validation, messages, work-dir rules and
metrics.json for every task; each refusal is exit code 2, one line, no traceback, nothing left behind."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from transfer.engine.runner import RECORD_KEYS
from transfer.engine.workdir import LOCK_FILE, claim_work_dir
from transfer.errors import UserError
from transfer.tasks import TASKS

from conftest import run_tool

REPO = Path(__file__).resolve().parent.parent


def refuse(argv: list[str], message: str, tmp_path: Path, env: dict[str, str] | None = None,
           after_progress: bool = False, tool: str = "run_transfer.py") -> None:
    """`tools/TOOL ARGV` exits 2 with exactly one line starting `error: MESSAGE`, and writes nothing."""
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = run_tool(tool, *argv, cwd=tmp_path, env=env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if not (after_progress and line.startswith("[transfer] "))]
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}"), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no work dir, no partial output


@pytest.mark.parametrize("task, flags, message", [
    ("voc", ["--max-iters", "0"], "--max-iters must be an integer >= 1 (got 0)"),
    ("cityscapes", ["--input-size", "0"], "--input-size must be an integer in [16, 4096] (got 0)"),
    ("coco", ["--input-size", "16"], "--input-size must be an integer in [32, 4096] (got 16)"),
    ("linear", ["--trials", "0"], "--trials must be an integer >= 1 (got 0)"),
    ("coco", ["--trials", "0"], "--trials must be an integer >= 1 (got 0)"),
    ("voc", ["--gpus", "-1"], "--gpus must be an integer >= 0 (got -1)"),
    ("linear", ["--seed", "-1"], "--seed must be an integer >= 0 (got -1)"),
    ("cityscapes", ["--backend", "detectron2"], "--backend detectron2: cityscapes runs on mmseg"),
    ("linear", ["--backend", "mmdet"], "--backend mmdet: linear runs on torch"),
    ("voc", ["lr0.1"], "override 'lr0.1' is not key=value"),
])
def test_flags_out_of_range_are_refused_before_any_work(tmp_path, task, flags, message):
    refuse([task, "--work-dir", "w", "--gpus", "0", *flags], message, tmp_path)


@pytest.mark.parametrize("task, override, message", [
    ("voc", "model.backbone.dpeth=50", "override 'model.backbone.dpeth=50': unknown key 'model.backbone.dpeth'"),
    ("cityscapes", "topgun=1", "override 'topgun=1': unknown key 'topgun'"),
    ("voc", "optim_wrapper.optimizer.lr=fast", "optim_wrapper.optimizer.lr=fast: expected a number"),
    ("linear", "linear.lrr=1", "override 'linear.lrr=1': unknown key 'linear.lrr'"),
    ("linear", "linear.epochs=1.5", "linear.epochs=1.5: expected an integer"),
])
def test_a_bad_override_is_refused_before_training_and_leaves_no_folder(demo_data, tmp_path, task, override,
                                                                         message):
    refuse([task, "--data", str(demo_data), "--work-dir", "w", "--gpus", "0", override], message, tmp_path)


def test_output_paths_that_cannot_be_folders_are_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    refuse(["voc", "--work-dir", "file", "--gpus", "0"], "--work-dir file exists and is not a folder", tmp_path)
    refuse(["voc", "--work-dir", "file/sub", "--gpus", "0"], "--work-dir file/sub: file is a file", tmp_path)


def test_a_second_run_on_a_locked_work_dir_is_refused(demo_data, tmp_path):
    work = tmp_path / "w"
    with claim_work_dir(work):  # this process is "the first run", alive
        refuse(["linear", "--data", str(demo_data), "--work-dir", "w", "--gpus", "0"],
               f"--work-dir w is in use by another run (pid {os.getpid()}", tmp_path, after_progress=True)
        assert (work / LOCK_FILE).is_file()
    assert not (work / LOCK_FILE).exists()  # released on exit


def test_pretraining_takes_the_same_lock(tmp_path):
    with claim_work_dir(tmp_path / "w"):
        refuse(["--work-dir", "w", "--data", "nowhere"], "--work-dir w is in use by another run", tmp_path,
               tool="pretrain.py")
    (tmp_path / "f").write_text("x")
    refuse(["--work-dir", "f/sub", "--data", "nowhere"], "--work-dir f/sub: f is a file", tmp_path, tool="pretrain.py")


def test_a_stale_lock_is_taken_over_and_an_early_error_removes_what_the_run_created(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    work = tmp_path / "w"
    work.mkdir()
    (work / LOCK_FILE).write_text(f"{dead.stdout.strip()}\n{os.uname().nodename}\nyesterday")
    with claim_work_dir(work) as claim:
        assert (work / LOCK_FILE).read_text().startswith(f"{os.getpid()}\n")
        claim.started()
    assert work.is_dir() and not (work / LOCK_FILE).exists()
    fresh = tmp_path / "a" / "b"
    with pytest.raises(UserError), claim_work_dir(fresh):
        raise UserError("refused before the first trial")
    assert not (tmp_path / "a").exists()


def test_torchrun_cpu_copies_of_an_mm_task_are_refused(tmp_path):
    env = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"}
    refuse(["voc", "--work-dir", "w", "--gpus", "0"],
           "torchrun started 2 processes but mmdet cannot train one job over several CPU processes", tmp_path, env)
    refuse(["cityscapes", "--work-dir", "w", "--gpus", "0"],
           "torchrun started 2 processes but mmseg cannot", tmp_path, env)


def test_the_shell_entry_point_refuses_with_exit_code_2_and_one_line(tmp_path):
    """The real command line (bash, a fresh interpreter) behaves as the in-process runs of the other tests."""
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(["bash", str(REPO / "tools" / "run_transfer.sh"), "coco", "--data", str(tmp_path / "none"),
                           "--work-dir", str(tmp_path / "w"), "--gpus", "0"], capture_output=True, text=True, env=env)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --data") and "does not exist" in lines[0]
    assert "Traceback" not in proc.stderr and not (tmp_path / "w").exists()


@pytest.mark.parametrize("task", list(TASKS))
def test_a_missing_dataset_is_refused_naming_it(tmp_path, task):
    refuse([task, "--data", "nowhere", "--work-dir", "w", "--gpus", "0"], "--data nowhere", tmp_path)


def test_demo_has_its_own_flags_and_range_checks(tmp_path):
    refuse(["demo", "det_iters=-3"], "det_iters must be an integer >= 1 (got -3)", tmp_path)
    refuse(["demo", "det_lr=0"], "det_lr must be a number > 0 (got 0.0)", tmp_path)
    refuse(["demo", "det_iters=fast"], "det_iters=fast: expected an integer", tmp_path)
    proc = run_tool("run_transfer.py", "demo", "--help")
    assert proc.returncode == 0 and "--force" in proc.stdout and "--max-iters" not in proc.stdout


def test_linear_writes_the_common_metrics_schema_and_reuses_a_finished_run(demo_data, tmp_path, capsys):
    from transfer.cli import run_transfer

    argv = ["linear", "--data", str(demo_data), "--work-dir", str(tmp_path / "w"), "--gpus", "0", "--max-iters", "2",
            "--input-size", "32", "model.arch=resnet18", "linear.workers=0", "linear.batch_size=8",
            "linear.precompute_features=true"]
    record = run_transfer(argv)
    assert set(record) == RECORD_KEYS
    assert record["task"] == "linear" and record["backend"] == "torch" and record["arch"] == "resnet18"
    assert record["trials"] == [record["metrics"]] and record["gpus"] == 0 and record["world_size"] == 1
    assert record["overrides"] == argv[-4:] and record["iterations"] == 2
    assert not (tmp_path / "w" / LOCK_FILE).exists()
    capsys.readouterr()
    assert run_transfer(argv) == record
    err = capsys.readouterr().err
    assert "metrics.json exists: reusing it (pass --force to run again)" in err
    with pytest.raises(UserError, match="holds a torch run, not mmdet"):
        run_transfer(["voc", "--data", str(demo_data), "--work-dir", str(tmp_path / "w"), "--gpus", "0"])
    assert json.loads((tmp_path / "w" / "metrics.json").read_text()) == record
