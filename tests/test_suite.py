"""tools/run_transfer.sh suite: the plan, one checkpoint over every task end to end, reuse, status."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from transfer.cli import run_transfer
from transfer.errors import UserError
from transfer.suite.index import load_plan
from transfer.jobs import write_state
from transfer.suite.plan import Protocol, parse_checkpoints, parse_protocols, parse_task_overrides, parse_trials
from transfer.suite.status import status_text
from transfer.tasks import TASKS

from suite_helpers import SHRUNK, r18_checkpoint


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("weights")
    return [r18_checkpoint(folder / "alpha.pth", 0)]


def test_protocols_trials_and_names(tmp_path: Path) -> None:
    assert parse_protocols(None) == [Protocol("linear"), Protocol("voc"), Protocol("coco", "c4_1x"),
                                     Protocol("cityscapes")]
    assert parse_protocols("coco:c4_2x+fpn_1x,voc") == [Protocol("coco", "c4_2x"), Protocol("coco", "fpn_1x"),
                                                        Protocol("voc")]
    protocols = parse_protocols("linear,voc,coco")
    assert parse_trials(None, protocols) == {"linear": 1, "voc": 5, "coco": 1}  # VOC's protocol: 5 seeds
    assert parse_trials("voc=2", protocols)["voc"] == 2 and parse_trials("3", protocols)["coco"] == 3
    for bad in ("imagenet", "voc:c4_1x", "coco:c5"):
        with pytest.raises(UserError):
            parse_protocols(bad)
    a, b = r18_checkpoint(tmp_path / "a.pth", 0), tmp_path / "b.pth"
    b.write_bytes(a.read_bytes())
    (tmp_path / "list.txt").write_text(f"{b} second  # the other one\n")
    assert [c.name for c in parse_checkpoints([str(a)], str(tmp_path / "list.txt"), [])] == ["a", "second"]
    assert [c.name for c in parse_checkpoints([str(a), str(b)], None, ["x"])] == ["x", "b"]
    with pytest.raises(UserError, match="two checkpoints are named"):
        parse_checkpoints([str(a), str(a)], None, [])
    with pytest.raises(UserError, match="does not exist"):
        parse_checkpoints([str(tmp_path / "missing.pth")], None, [])
    overrides = parse_task_overrides(["voc:optim_wrapper.optimizer.lr=0.01", "seed_everything=1",
                                      "coco_retinanet_1x:model.test_cfg.nms_pre=100"])
    assert overrides["voc"] == ["optim_wrapper.optimizer.lr=0.01", "seed_everything=1"]
    assert overrides["linear"] == ["seed_everything=1"] and overrides["coco_retinanet_1x"] == ["model.test_cfg.nms_pre=100"]
    with pytest.raises(UserError, match="no detectron2 config"):
        Protocol("coco", "retinanet_1x").config("detectron2")


def test_suite_of_one_checkpoint_over_every_task(demo_data: Path, checkpoints: list[Path], tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    """Every task of `transfer.tasks` (COCO: its first config and RetinaNet) end to end through the suite."""
    out = tmp_path / "suite"
    tasks = ",".join(["coco:c4_1x+retinanet_1x" if name == "coco" else name for name in TASKS])
    argv = ["suite", "--weights", str(checkpoints[0]), "--name", "ssa", "--data-root", str(demo_data),
            "--tasks", tasks, "--trials", "voc=2", "--work-dir", str(out), *SHRUNK]
    index = run_transfer(argv)
    assert [row["label"] for row in index["rows"]] == ["ssa", "ssa (COCO RetinaNet 1x)"]
    main, retinanet = index["rows"]
    assert set(main["metrics"]) == {"linear", "voc", "coco", "cityscapes"} and set(retinanet["metrics"]) == {"coco"}
    further = [name for name in TASKS if name not in main["metrics"]]
    assert sorted(main.get("further", {})) == sorted(further)
    for task, rel in [*main["metrics"].items(), *main.get("further", {}).items()]:
        assert json.loads((out / rel).read_text())["task"] == task
    voc = json.loads((out / "runs" / "ssa" / "voc" / "metrics.json").read_text())
    assert len(voc["trials"]) == 2 and voc["seeds"] == [0, 1] and "AP_std" in voc["metrics"]
    trial_aps = [json.loads((out / "runs" / "ssa" / "voc" / f"trial{k}" / "metrics.json").read_text())
                 ["metrics"]["AP"] for k in range(2)]
    assert voc["metrics"]["AP"] == pytest.approx(sum(trial_aps) / 2)
    table = (out / "benchmarks.md").read_text()
    # one row per checkpoint, each measured cell a link to its metrics.json, the published rows beside them
    assert re.search(r"\| ssa \|.*\]\(runs/ssa/voc/metrics.json\)", table)
    assert "](runs/ssa/cityscapes/metrics.json)" in table and "Published reference figures" in table
    assert "](runs/ssa/coco_retinanet_1x/metrics.json)" in table
    for name in further:  # the protocols outside the paper's table: their own section, linked
        assert f"](runs/ssa/{name}/metrics.json)" in table.split("## Further protocols (measured)")[1]
    assert (out / "comparison.png").stat().st_size > 0
    runs = len(TASKS) + 2  # voc's second trial, coco's second config
    assert f"{runs}/{runs} runs done" in capsys.readouterr().out

    # a finished suite runs nothing again
    stamp = (out / "runs" / "ssa" / "coco_c4_1x" / "metrics.json").stat().st_mtime_ns
    run_transfer(argv)
    assert (out / "runs" / "ssa" / "coco_c4_1x" / "metrics.json").stat().st_mtime_ns == stamp

    # a run whose process died shows as interrupted, and the next suite runs it again (resuming its work dir)
    (out / "runs" / "ssa" / "linear" / "metrics.json").unlink()
    write_state(out / "runs" / "ssa" / "linear", "running", pid=2**22 + 12345, host="here")
    plan, _ = load_plan(out)
    text = status_text(plan)
    assert "interrupted ssa/linear" in text and f"{runs - 1}/{runs} runs done" in text
    run_transfer(argv)
    assert (out / "runs" / "ssa" / "linear" / "metrics.json").is_file()


def test_status_while_runs_are_missing(demo_data: Path, checkpoints: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "suite"
    argv = ["suite", "--weights", str(checkpoints[0]), "--data-root", str(demo_data), "--tasks", "linear,voc",
            "--trials", "voc=2", "--work-dir", str(out), *SHRUNK]
    from transfer.suite.cli import make_plan, suite_parser
    from transfer.suite.index import save_plan, update_index

    plan = make_plan(suite_parser().parse_intermixed_args(argv[1:]))
    save_plan(plan, "test")
    run_transfer(plan.argv(plan.jobs()[0]))  # only linear has run: the table shows it, voc is queued
    assert update_index(plan, "test") is not None
    index = json.loads((out / "results.json").read_text())
    assert index["rows"][0]["metrics"] == {"linear": "runs/alpha/linear/metrics.json"}
    text = status_text(plan)
    assert "1/3 runs done" in text and "queued      alpha/voc/trial0" in text
    assert re.search(r"alpha\s+\S+ \(kNN \S+\)\s+\[0/2 trials; 2 queued\]", text)


def test_suite_refuses_bad_input_before_running(demo_data: Path, checkpoints: list[Path], tmp_path: Path) -> None:
    base = ["suite", "--weights", str(checkpoints[0]), "--work-dir", str(tmp_path / "s")]
    with pytest.raises(UserError, match="no cityscapes dataset found"):
        run_transfer([*base, "--data-root", str(demo_data / "voc")])
    with pytest.raises(UserError, match="unknown task"):
        run_transfer([*base, "--data-root", str(demo_data), "--tasks", "linear,imagenet"])
    assert not (tmp_path / "s" / "runs").exists()
