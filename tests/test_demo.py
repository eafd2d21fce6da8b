"""The demo at a tiny size: every stage runs quietly, the index and table are written, a re-run reuses them."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from transfer.cli import run_transfer
from transfer.demo import BACKBONE, DemoPlan
from transfer.errors import UserError

REPO = Path(__file__).resolve().parent.parent
# one student (it needs the supervised teacher, trained but not reported here) and random init over 2 seeds
TINY = ["rows=ssa,random", "pretrain_images=40", "val_images=20", "det_images=8", "seg_images=8",
        "pretrain_epochs=1", "teacher_epochs=1", "batch_size=8", "queue_size=32", "linear_iters=5",
        "det_iters=1", "seg_iters=1", "precise_bn_iters=1", "random_seeds=2", "cls_image_size=32"]


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
    assert ssa["method"] == "ssa" and ssa["teacher"] == "teacher" and random["pretrain"] is None
    # the student distilled from the supervised teacher that the demo trained first
    teacher = out / "pretrain" / "teacher" / "checkpoint_final.pth"
    assert teacher.is_file() and f"teacher.checkpoint={teacher}" in ssa["pretrain"]["overrides"]
    for row in index["rows"]:
        assert set(row["metrics"]) == {"linear", "voc", "coco", "cityscapes"}
        for task, rel in row["metrics"].items():
            record = json.loads((out / rel).read_text())
            assert record["task"] == task and record["metrics"], (row["name"], task)
            assert all(0 <= v <= 100 for v in record["metrics"].values() if isinstance(v, float)), record["metrics"]
    assert index["total_time_s"] > 0 and "pretrain ssa" in index["stage_times_s"]
    for stage in ("data", "pretrain teacher (supervised)", "pretrain ssa", "voc ssa", "cityscapes random seed 1",
                  "report"):
        assert f"[demo] {stage}: " in log  # each stage prints one line with its time
    # random init: one run per seed, and the row's metrics are their mean with the spread beside it
    record = json.loads((out / random["metrics"]["linear"]).read_text())
    assert len(record["trials"]) == 2 and "knn_top1_std" in record["metrics"]
    assert index["chance"]["linear"]["top1"] == 20.0 and 0 < index["chance"]["cityscapes"]["mIoU"] < 100
    labels = [q["label"] for q in index["separation"]["quantities"]]
    assert labels == ["linear top-1", "kNN top-1", "VOC AP50", "VOC AP50, classes present", "COCO box AP50",
                      "Cityscapes mIoU"]
    table = (out / "benchmarks.md").read_text()
    assert "SSA (supervised teacher)" in table and "random init (2 seeds)" in table and "Chance level" in table
    assert (out / "comparison.png").stat().st_size


def test_demo_console_is_quiet_and_runs_keep_no_checkpoints(demo_run: tuple[Path, str]) -> None:
    out, log = demo_run
    # the engines' own output (mmengine's config dumps and iteration lines) is in each run's log, not on the console
    assert len(log.splitlines()) <= 40 and "Iter(train)" not in log and "Epoch(" not in log
    engine_log = (out / "runs" / "ssa" / "voc" / "console.log").read_text()
    assert "tools/run_transfer.sh voc" in engine_log and len(engine_log.splitlines()) > 20
    assert "step" in (out / "pretrain" / "ssa" / "console.log").read_text()
    left = [p for p in (out / "runs").rglob("*") if p.suffix in (".pth", ".pkl", ".pt")]
    assert left == [] and (out / "runs" / "ssa" / "voc" / "metrics.json").is_file()
    # pretraining keeps its final backbone, not the full checkpoint (student, teacher, heads, optimizer)
    assert (out / "pretrain" / "ssa" / "backbone_final.pth").is_file()
    assert [p.parent.name for p in (out / "pretrain").rglob("checkpoint_*.pth")] == ["teacher"]


def test_demo_rerun_reuses_finished_stages(demo_run: tuple[Path, str]) -> None:
    out, _ = demo_run
    checkpoint = out / "pretrain" / "ssa" / "backbone_final.pth"
    metrics = out / "runs" / "random" / "seed1" / "coco" / "metrics.json"
    before = checkpoint.stat().st_mtime_ns, metrics.stat().st_mtime_ns
    run_transfer(["demo", "--work-dir", str(out), *TINY])
    assert (checkpoint.stat().st_mtime_ns, metrics.stat().st_mtime_ns) == before


def test_other_rows_get_their_own_index_and_table(demo_run: tuple[Path, str]) -> None:
    out, _ = demo_run
    tiny = [w for w in TINY if not w.startswith("rows=")]
    teacher = out / "pretrain" / "teacher" / "checkpoint_final.pth"
    before = teacher.stat().st_mtime_ns
    index = run_transfer(["demo", "--work-dir", str(out), *tiny, "rows=ssa_rho1", "tasks=linear", "index=abl.json"])
    assert [row["name"] for row in index["rows"]] == ["ssa_rho1"] and (out / "abl.md").is_file()
    # the teacher is reused, not pretrained again, and the default table is left alone
    assert teacher.stat().st_mtime_ns == before
    assert "SSA (supervised teacher)" in (out / "benchmarks.md").read_text()
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
    with pytest.raises(UserError, match="verbose=3: expected true or false"):
        DemoPlan.from_overrides(["verbose=3"])
    with pytest.raises(UserError, match="plan=fast"):
        DemoPlan.from_overrides(["plan=fast"])
    assert DemoPlan.from_overrides(["det_iters=7", "det_lr=1", "tasks=linear,voc"]).det_iters == 7


def test_methods_plan_compares_every_method_over_three_seeds() -> None:
    plan = DemoPlan.from_overrides(["plan=methods", "tasks=linear"])  # the preset first, then the other keys
    assert plan.seeds == 3 and plan.tasks == ("linear",) and plan.index == "methods.json"
    assert set(plan.rows) >= {"ssa", "seed", "moco_v2", "ssa_no_align", "ssa_no_ssa", "ssa_rho1", "ssa_b32",
                              "ssa_b256", "random"}


def test_transfer_plan_fine_tunes_every_task_against_three_random_seeds() -> None:
    plan = DemoPlan.from_overrides(["plan=transfer", "det_iters=7"])  # the preset first, then the other keys
    assert plan.rows == ("teacher", "seed", "ssa", "random") and plan.random_seeds == 3
    assert set(plan.tasks) >= {"voc", "coco", "cityscapes"} and plan.index == "transfer.json" and plan.det_iters == 7
    default = DemoPlan()
    assert plan.seg_iters > default.seg_iters and plan.det_val > default.det_val
    assert plan.det_scale_min > default.det_scale_min  # scenes whose objects span a few stride-16 cells
    with pytest.raises(UserError, match="det_scale_min=0.3 is above det_scale_max=0.2"):
        DemoPlan.from_overrides(["det_scale_min=0.3", "det_scale_max=0.2"])
    with pytest.raises(UserError, match="det_scale_max"):
        DemoPlan.from_overrides(["det_scale_max=0.7"])


def test_methods_plan_runs_tiny(demo_run: tuple[Path, str]) -> None:
    out, _ = demo_run
    tiny = [w for w in TINY if not w.startswith("rows=")]
    before = (out / "runs" / "ssa" / "linear" / "metrics.json").read_text()
    index = run_transfer(["demo", "--work-dir", str(out), *tiny, "plan=methods", "rows=ssa_b32,ssa,random", "seeds=2",
                          "tasks=linear"])
    assert (out / "methods.json").is_file() and (out / "methods.md").is_file()
    # the batch-32 row's pretraining column gives its own batch, not the plan's
    assert next(line for line in (out / "methods.md").read_text().splitlines()
                if line.startswith("| SSA, batch 32")).count("batch 32") == 2
    # the demo's one-seed ssa row keeps its figures; the methods' ssa row is the mean of its own 2 seeds
    assert (out / "runs" / "ssa" / "linear" / "metrics.json").read_text() == before
    assert len(json.loads((out / index["rows"][1]["metrics"]["linear"]).read_text())["trials"]) == 2
    row = index["rows"][0]
    assert row["name"] == "ssa_b32" and row["teacher"] == "teacher" and row["pretrain"]["seeds"] == 2
    record = json.loads((out / row["metrics"]["linear"]).read_text())
    assert len(record["trials"]) == 2  # one pretraining per seed, each probed
    for seed in (0, 1):
        summary = json.loads((out / "pretrain" / "ssa_b32" / f"seed{seed}" / "demo_summary.json").read_text())
        assert f"seed={seed}" in summary["overrides"] and "train.batch_size=32" in summary["overrides"]


def test_a_changed_setting_redoes_the_stages_it_changes(demo_run: tuple[Path, str]) -> None:
    out, _ = demo_run
    tiny = [w for w in TINY if not w.startswith(("rows=", "det_iters=", "teacher_epochs="))]
    teacher, ssa = out / "pretrain" / "teacher" / "checkpoint_final.pth", out / "pretrain" / "ssa" / BACKBONE
    voc, coco = (out / "runs" / "random" / "seed1" / task / "metrics.json" for task in ("voc", "coco"))
    linear = out / "runs" / "ssa" / "linear" / "metrics.json"
    before = {path: path.stat().st_mtime_ns for path in (teacher, ssa, coco, linear)}
    # a detection budget: the detection runs are redone at it, nothing else
    run_transfer(["demo", "--work-dir", str(out), *tiny, "teacher_epochs=1", "rows=random", "tasks=voc,coco",
                  "det_iters=2", "index=det2.json"])
    assert json.loads(voc.read_text())["iterations"] == 2 and json.loads(coco.read_text())["iterations"] == 2
    assert all(path.stat().st_mtime_ns == before[path] for path in (teacher, ssa, linear))
    # another teacher: it, its student and the student's runs are redone
    run_transfer(["demo", "--work-dir", str(out), *tiny, "teacher_epochs=2", "rows=ssa", "tasks=linear",
                  "index=teacher2.json"])
    assert all(path.stat().st_mtime_ns != before[path] for path in (teacher, ssa, linear))
    assert json.loads((out / "pretrain" / "teacher" / "demo_summary.json").read_text())["epochs"] == 2
