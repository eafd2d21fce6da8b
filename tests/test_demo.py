"""The end-to-end demo at a tiny size: every stage runs, the index and table are written, a re-run reuses them."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from transfer.cli import run_transfer
from transfer.demo import DemoPlan
from transfer.errors import UserError

REPO = Path(__file__).resolve().parent.parent
# the teacher and one student (the student needs the teacher: moco_v2 is pretrained, not reported), and random init
TINY = ["rows=ssa,random", "pretrain_images=40", "val_images=20", "det_images=8", "seg_images=8",
        "pretrain_epochs=1", "teacher_epochs=1", "batch_size=8", "queue_size=32", "linear_iters=5",
        "det_iters=1", "seg_iters=1", "precise_bn_iters=1"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One tiny demo through tools/run_transfer.sh, as `make demo` runs it; returns its work dir and stderr."""
    out = tmp_path_factory.mktemp("demo") / "out"
    proc = subprocess.run(["bash", str(REPO / "tools" / "run_transfer.sh"), "demo", "--work-dir", str(out), *TINY],
                          capture_output=True, text=True, timeout=900,
                          env={**__import__("os").environ, "PYTHON": sys.executable})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stderr


def test_demo_writes_the_index_and_the_table(demo_run: tuple[Path, str]) -> None:
    out, log = demo_run
    index = json.loads((out / "results.json").read_text())
    assert [row["name"] for row in index["rows"]] == ["ssa", "random"]
    ssa, random = index["rows"]
    assert ssa["method"] == "ssa" and ssa["teacher"] == "moco_v2" and random["pretrain"] is None
    # the student distilled from the teacher that the demo pretrained first, with the same data and batch
    teacher = out / "pretrain" / "moco_v2" / "checkpoint_final.pth"
    assert teacher.is_file() and f"teacher.checkpoint={teacher}" in ssa["pretrain"]["overrides"]
    for row in index["rows"]:
        assert set(row["metrics"]) == {"linear", "voc", "coco", "cityscapes"}
        for task, rel in row["metrics"].items():
            record = json.loads((out / rel).read_text())
            assert record["task"] == task and record["metrics"], (row["name"], task)
            assert all(0 <= v <= 100 for v in record["metrics"].values() if isinstance(v, float)), record["metrics"]
    assert index["total_time_s"] > 0 and "pretrain ssa" in index["stage_times_s"]
    for stage in ("data", "pretrain moco_v2", "pretrain ssa", "voc ssa", "cityscapes random", "report"):
        assert f"<<< {stage}:" in log  # each stage prints its time
    table = (out / "benchmarks.md").read_text()
    assert "SSA (MoCo v2 teacher)" in table and "random init" in table and (out / "comparison.png").stat().st_size


def test_demo_rerun_reuses_finished_stages(demo_run: tuple[Path, str]) -> None:
    out, _ = demo_run
    checkpoint = out / "pretrain" / "ssa" / "checkpoint_final.pth"
    metrics = out / "runs" / "random" / "coco" / "metrics.json"
    before = checkpoint.stat().st_mtime_ns, metrics.stat().st_mtime_ns
    run_transfer(["demo", "--work-dir", str(out), *TINY])
    assert (checkpoint.stat().st_mtime_ns, metrics.stat().st_mtime_ns) == before


def test_other_rows_get_their_own_index_and_table(demo_run: tuple[Path, str]) -> None:
    out, _ = demo_run
    tiny = [w for w in TINY if not w.startswith("rows=")]
    teacher = out / "pretrain" / "moco_v2" / "checkpoint_final.pth"
    before = teacher.stat().st_mtime_ns
    index = run_transfer(["demo", "--work-dir", str(out), *tiny, "rows=ssa_rho1", "tasks=linear", "index=abl.json"])
    assert [row["name"] for row in index["rows"]] == ["ssa_rho1"] and (out / "abl.md").is_file()
    # the teacher is reused, not pretrained again, and the default table is left alone
    assert teacher.stat().st_mtime_ns == before
    assert "SSA (MoCo v2 teacher)" in (out / "benchmarks.md").read_text()
    assert json.loads((out / "results.json").read_text())["rows"][0]["name"] == "ssa"


def test_demo_plan_rejects_unknown_settings() -> None:
    with pytest.raises(UserError, match="unknown demo setting 'det_iter'"):
        DemoPlan.from_overrides(["det_iter=3"])
    with pytest.raises(UserError, match="rows=ssa,bogus"):
        DemoPlan.from_overrides(["rows=ssa,bogus"])
    with pytest.raises(UserError, match="index=../x.json"):
        DemoPlan.from_overrides(["index=../x.json"])
    with pytest.raises(UserError, match="det_iters=ten: expected an integer"):
        DemoPlan.from_overrides(["det_iters=ten"])
    with pytest.raises(UserError, match="det_lr=fast: expected a number"):
        DemoPlan.from_overrides(["det_lr=fast"])
    assert DemoPlan.from_overrides(["det_iters=7", "det_lr=1", "tasks=linear,voc"]).det_iters == 7
