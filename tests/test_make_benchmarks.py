"""tools/make_benchmarks.py: benchmarks.md holds exactly the measured numbers, in the right cells, and nothing else."""
from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest
from PIL import Image

from transfer.errors import UserError
from transfer.report import generate
from transfer.report.generate import make_benchmarks
from transfer.report.reference import load_reference_json

REPO = Path(__file__).resolve().parent.parent
TOOL = REPO / "tools" / "make_benchmarks.py"
MACHINE = {"cpu": "Test CPU 9000", "cpu_count": 2, "gpus": [], "torch": "2.13.0"}

# The published figures as data (benchmarks/reference.json's format).
REFERENCE = {
    "schema": 1, "published": True, "source": "the A and B READMEs", "title": "The paper's table",
    "setting": "ResNet-50, ImageNet-1k pretraining. Published figures.",
    "columns": [{"task": "linear", "title": "IN-1k linear top-1"}, {"task": "voc", "title": "VOC07+12 AP (AP50/AP75)"},
                {"task": "coco", "title": "COCO box/mask AP"}, {"task": "cityscapes", "title": "Cityscapes FCN mIoU"}],
    "rows": [{"method": "Method A", "metrics": {"linear": {"top1": 71.6}, "voc": {"AP": 57.6},
                                               "coco": {"bbox_AP": 39.8, "segm_AP": 34.8},
                                               "cityscapes": {"mIoU": 75.8}}},
             {"method": "Method B", "metrics": {"linear": {"top1": 67.5},
                                               "voc": {"AP": 57.0, "AP50": 82.4, "AP75": 63.6},
                                               "coco": {"bbox_AP": 38.9, "segm_AP": 34.1}}},
             {"method": "Method C", "metrics": {"cityscapes": {"mIoU": 74.6}}}],
    "sources": "Sources: the A README, the B README.",
}

# Distinct numbers per method and metric, so a number in the wrong cell cannot pass.
NUMBERS = {
    "moco_v2": {"linear": {"top1": 40.04, "top5": 80.0, "knn_top1": 35.11},
                "voc": {"AP": 20.02, "AP50": 40.12, "AP75": 16.23, "AP_std": 0.41},
                "coco": {"bbox_AP": 10.04, "segm_AP": 9.06},
                "cityscapes": {"mIoU": 30.07}},
    "seed": {"linear": {"top1": 42.08, "top5": 81.0, "knn_top1": 36.24},
             "voc": {"AP": 21.13, "AP50": 42.21, "AP75": 16.82, "AP_std": 0.32},
             "coco": {"bbox_AP": 10.52, "segm_AP": 9.47},
             "cityscapes": {"mIoU": 31.02}},
    "random": {"linear": {"top1": 20.0, "top5": 50.0, "knn_top1": 18.33},
               "voc": {"AP": 5.01, "AP50": 10.02, "AP75": 4.03, "AP_std": 0.14},
               "cityscapes": {"mIoU": 15.04}},
}
SSA_BETTER = {"linear": {"top1": 44.54, "top5": 82.0, "knn_top1": 36.74},
              "voc": {"AP": 22.33, "AP50": 44.61, "AP75": 17.84, "AP_std": 0.22},
              "coco": {"bbox_AP": 10.71, "segm_AP": 9.94},
              "cityscapes": {"mIoU": 31.55}}
SSA_WORSE = {"linear": {"top1": 39.12, "top5": 79.0, "knn_top1": 30.01},
             "voc": {"AP": 19.54, "AP50": 39.0, "AP75": 15.0, "AP_std": 0.51},
             "coco": {"bbox_AP": 9.02, "segm_AP": 8.01},
             "cityscapes": {"mIoU": 28.0}}
LABELS = {"moco_v2": "MoCo v2 (teacher)", "seed": "SEED (MoCo v2 teacher)", "ssa": "SSA (MoCo v2 teacher)",
          "random": "random init"}


def write_metrics_file(path: Path, task: str, metrics: dict, trials: int = 1) -> None:
    """A metrics.json as transfer.results.write_metrics writes it, with known numbers."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "schema": 1, "task": task, "backend": "mmdet", "metrics": metrics, "config": f"configs/{task}.py",
        "weights": "w.pth", "weights_sha256": "0" * 64, "iterations": 20,
        "trials": [metrics] * trials if trials > 1 else None,
        "command": f"tools/run_transfer.sh {task} --weights w.pth", "machine": MACHINE,
        "git_commit": "feedbeefcafe0000", "date": "2025-03-04T05:06:07+00:00"}))


def make_index(root: Path, ssa: dict, name: str = "procedural demo") -> Path:
    """A results index of four methods (ssa, seed and moco_v2 at one budget, random init) and their metrics files."""
    rows = []
    for method, numbers in {"moco_v2": NUMBERS["moco_v2"], "seed": NUMBERS["seed"], "ssa": ssa,
                            "random": NUMBERS["random"]}.items():
        files = {}
        for task, metrics in numbers.items():
            rel = f"runs/{method}/{task}/metrics.json"
            write_metrics_file(root / rel, task, metrics, trials=3 if task == "voc" else 1)
            files[task] = rel
        rows.append({"method": method, "label": LABELS[method],
                     "teacher": "moco_v2" if method in ("seed", "ssa") else None,
                     "pretrain": None if method == "random" else
                     {"images_per_s": {"moco_v2": 120.0, "seed": 100.0, "ssa": 96.0}[method], "wall_time_s": 90.0},
                     "metrics": files})
    index = root / "results.json"
    index.write_text(json.dumps({"schema": 1, "name": name, "command": "make demo", "date": "2025-03-04T06:00:00+00:00",
                                 "machine": MACHINE, "rows": rows,
                                 "budget": {"arch": "resnet18", "epochs": 5, "batch_size": 64, "images": 2000}}))
    return index


def write_bench(bench_dir: Path, name: str, figures: list[dict], gpus: list | None = None) -> Path:
    """A benchmarks/results/NAME.json as transfer.results.write_benchmark writes it."""
    bench_dir.mkdir(parents=True, exist_ok=True)
    path = bench_dir / f"{name}.json"
    path.write_text(json.dumps({"schema": 1, "name": name, "figures": figures, "notes": f"{name} notes",
                                "command": f"benchmarks/bench_{name}.py", "machine": {**MACHINE, "gpus": gpus or []},
                                "machine_label": "CPU: Test CPU 9000 (2 cores)", "git_commit": "abc",
                                "date": "2025-03-05T00:00:00+00:00"}))
    return path


@pytest.fixture
def reference(tmp_path: Path) -> Path:
    path = tmp_path / "reference.json"
    path.write_text(json.dumps(REFERENCE))
    return path


def build(tmp_path: Path, reference: Path, indexes: list[Path], bench_dir: Path | None = None) -> str:
    """Run the generator into tmp_path and return the markdown."""
    make_benchmarks(indexes, bench_dir=bench_dir or tmp_path / "no_bench", out=tmp_path / "benchmarks.md",
                    plot=tmp_path / "benchmarks" / "comparison.png", reference_json=reference,
                    command="tools/make_benchmarks.py --test")
    return (tmp_path / "benchmarks.md").read_text()


def section(md: str, title: str) -> str:
    """The text of the `## N. title...` section."""
    start = next(i for i, line in enumerate(md.splitlines()) if line.startswith("## ") and title in line)
    lines = md.splitlines()[start + 1:]
    end = next((i for i, line in enumerate(lines) if line.startswith("## ")), len(lines))
    return "\n".join(lines[:end])


def table(text: str) -> list[dict[str, str]]:
    """The first markdown table in `text`, as a dict per row keyed by the header cells."""
    all_lines = text.splitlines()
    start = next(i for i, line in enumerate(all_lines) if line.startswith("|"))
    end = next((i for i in range(start, len(all_lines)) if not all_lines[i].startswith("|")), len(all_lines))
    lines = all_lines[start:end]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in lines[2:]]


def test_measured_table_holds_each_number_in_its_cell(tmp_path, reference):
    md = build(tmp_path, reference, [make_index(tmp_path / "demo", SSA_BETTER)])
    assert md.startswith("> Generated by `tools/make_benchmarks.py --test`")
    assert "Do not edit by hand" in md.splitlines()[0]
    measured = section(md, "Measured transfer results")
    rows = {r["method"]: r for r in table(measured)}
    assert list(rows) == list(LABELS[m] for m in ("moco_v2", "seed", "ssa", "random"))
    assert rows["SSA (MoCo v2 teacher)"] == {
        "method": "SSA (MoCo v2 teacher)", "teacher": "MoCo v2 (teacher)",
        "pretraining": "5 ep, batch 64, 90 s, 96.0 img/s",
        "linear top-1": "44.5", "kNN top-1": "36.7", "VOC AP (AP50 / AP75)": "22.3 ± 0.2 (44.6 / 17.8)",
        "COCO box / mask AP": "10.7 / 9.9", "Cityscapes mIoU": "31.6"}
    assert rows["MoCo v2 (teacher)"]["VOC AP (AP50 / AP75)"] == "20.0 ± 0.4 (40.1 / 16.2)"
    assert rows["MoCo v2 (teacher)"]["teacher"] == "—"
    assert rows["SEED (MoCo v2 teacher)"]["linear top-1"] == "42.1"
    assert rows["SEED (MoCo v2 teacher)"]["Cityscapes mIoU"] == "31.0"
    assert rows["random init"]["COCO box / mask AP"] == "not run"
    assert rows["random init"]["pretraining"] == "none"
    assert rows["random init"]["kNN top-1"] == "18.3"
    # Provenance under the table, and the procedural-data caveat.
    assert "- Command: `make demo`" in measured and "- Machine: CPU: Test CPU 9000 (2 cores)" in measured
    assert "- Date: 2025-03-04T06:00:00+00:00" in measured and "voc: 3 trials" in measured
    assert "not comparable with the published figures" in measured
    assert "`runs/ssa/voc/metrics.json`, mmdet, 20 iterations, 3 trials" in measured
    assert "![Methods compared on each measured benchmark](benchmarks/comparison.png)" in measured
    # Measured rows never appear among the published ones, and vice versa.
    assert "SSA (MoCo v2 teacher)" not in section(md, "Published reference figures")
    assert "Method A" not in measured
    not_measured = section(md, "Not measured")
    assert "procedural demo: COCO detection/segmentation was not run for random init." in not_measured
    assert "No transfer run used a GPU" in not_measured
    # Same inputs, same document.
    assert build(tmp_path, reference, [make_index(tmp_path / "demo", SSA_BETTER)]) == md


@pytest.mark.parametrize("ssa, expected, tally", [
    (SSA_BETTER, {"seed": "linear top-1 +2.5, kNN top-1 +0.5, VOC AP +1.2 (trial std 0.2 vs 0.3), COCO box AP +0.2, "
                          "COCO mask AP +0.5, Cityscapes mIoU +0.5",
                  "moco_v2": "linear top-1 +4.5, kNN top-1 +1.6, VOC AP +2.3 (trial std 0.2 vs 0.4), COCO box AP +0.7, "
                             "COCO mask AP +0.9, Cityscapes mIoU +1.5"},
     {"seed": "SSA ahead on 6, behind on 0, tied on 0 of 6", "moco_v2": "SSA ahead on 6, behind on 0, tied on 0 of 6"}),
    (SSA_WORSE, {"seed": "linear top-1 -3.0, kNN top-1 -6.2, VOC AP -1.6 (trial std 0.5 vs 0.3), COCO box AP -1.5, "
                         "COCO mask AP -1.5, Cityscapes mIoU -3.0",
                 "moco_v2": "linear top-1 -0.9, kNN top-1 -5.1, VOC AP -0.5 (trial std 0.5 vs 0.4), COCO box AP -1.0, "
                            "COCO mask AP -1.1, Cityscapes mIoU -2.1"},
     {"seed": "SSA ahead on 0, behind on 6, tied on 0 of 6", "moco_v2": "SSA ahead on 0, behind on 6, tied on 0 of 6"}),
], ids=["ssa-better", "ssa-worse"])
def test_comparison_is_computed_from_the_numbers(tmp_path, reference, ssa, expected, tally):
    md = build(tmp_path, reference, [make_index(tmp_path / "demo", ssa)])
    lines = [line for line in section(md, "Measured transfer results").splitlines()
             if line.startswith("- SSA (MoCo v2 teacher) vs ")]
    assert lines == [f"- SSA (MoCo v2 teacher) vs {LABELS['moco_v2']}: {expected['moco_v2']}. {tally['moco_v2']}.",
                     f"- SSA (MoCo v2 teacher) vs {LABELS['seed']}: {expected['seed']}. {tally['seed']}."]
    # The index's pretraining speeds give SSA's cost: 120 / 96 images/s.
    assert "- Pretraining cost, SSA (MoCo v2 teacher) vs MoCo v2 (teacher): 96.0 vs 120.0 images/s, " \
           "1.25x (target ≤ 1.3x: met)." in md


def test_comparison_flags_a_different_budget(tmp_path, reference):
    index = make_index(tmp_path / "demo", SSA_BETTER)
    data = json.loads(index.read_text())
    data["rows"][2]["budget"] = {"epochs": 10}
    index.write_text(json.dumps(data))
    md = build(tmp_path, reference, [index])
    assert "Not the same budget: epochs 10 vs 5." in md
    assert "| SSA (MoCo v2 teacher) | MoCo v2 (teacher) | 10 ep, batch 64," in md


def test_reference_section_reproduces_the_paper_table(tmp_path, reference):
    md = build(tmp_path, reference, [])
    published = section(md, "Published reference figures")
    assert table(published) == [
        {"method (published)": "Method A", "IN-1k linear top-1": "71.6", "VOC07+12 AP (AP50/AP75)": "57.6",
         "COCO box/mask AP": "39.8 / 34.8", "Cityscapes FCN mIoU": "75.8"},
        {"method (published)": "Method B", "IN-1k linear top-1": "67.5",
         "VOC07+12 AP (AP50/AP75)": "57.0 (82.4 / 63.6)",
         "COCO box/mask AP": "38.9 / 34.1", "Cityscapes FCN mIoU": "—"},
        {"method (published)": "Method C", "IN-1k linear top-1": "—", "VOC07+12 AP (AP50/AP75)": "—",
         "COCO box/mask AP": "—", "Cityscapes FCN mIoU": "74.6"}]
    assert "Sources: the A README, the B README." in published
    assert "ResNet-50, ImageNet-1k pretraining. Published figures." in published
    assert "Read from `reference.json`." in published


def test_committed_reference_figures_are_the_papers_and_render(tmp_path):
    """benchmarks/reference.json, in the repository, is the report's one source of published figures."""
    committed = load_reference_json(generate.DEFAULT_REFERENCE)
    ssa = next(r for r in committed["rows"] if r["method"] == "SSA (the paper)")
    # the figures of the paper's abstract: 71.6 Acc@1, 57.6 AP, 75.8 mIoU, 39.8/34.8 AP
    assert ssa["metrics"] == {"linear": {"top1": 71.6}, "voc": {"AP": 57.6}, "coco": {"bbox_AP": 39.8, "segm_AP": 34.8},
                              "cityscapes": {"mIoU": 75.8}}
    assert committed["published"] is True and committed["sources"].startswith("Sources:")
    md = build(tmp_path, generate.DEFAULT_REFERENCE, [])
    rows = table(section(md, "Published reference figures"))
    assert [r["method (published)"] for r in rows] == [r["method"] for r in committed["rows"]]
    assert rows[0][committed["columns"][3]["title"]] == "75.8"


def test_performance_figures_and_cost_ratio(tmp_path, reference):
    bench = tmp_path / "bench"
    write_bench(bench, "pretrain_cpu", [
        {"label": "moco_v2 throughput", "value": 50.0, "unit": "images/s", "batch": 32},
        {"label": "ssa throughput", "value": 40.0, "unit": "images/s", "batch": 32},
        {"label": "seed throughput", "value": 45.0, "unit": "images/s", "batch": 32},
        {"label": "ssa throughput", "value": 10.0, "unit": "images/s", "batch": 8},  # no MoCo v2 at batch 8: unpaired
    ])
    write_bench(bench, "convert",
                [{"label": "resnet50 -> detectron2", "value": 1.234, "unit": "s", "size": [224, 224]}])
    md = build(tmp_path, reference, [], bench_dir=bench)
    perf = section(md, "Performance figures")
    assert table(perf.split("### `convert`")[1]) == [
        {"figure": "resnet50 -> detectron2", "value": "1.23", "unit": "s", "context": "size=224x224"}]
    pretrain = perf.split("### `pretrain_cpu`")[1]
    assert "- Machine: CPU: Test CPU 9000 (2 cores)" in pretrain
    assert "- Command: `benchmarks/bench_pretrain_cpu.py`" in pretrain
    assert {"figure": "seed throughput", "value": "45.00", "unit": "images/s", "context": "batch=32"} in table(pretrain)
    ratios = [line for line in perf.splitlines() if line.startswith("- `pretrain_cpu`:")]
    assert ratios == ["- `pretrain_cpu`: ssa throughput 40.00 vs moco_v2 throughput 50.00 images/s (batch=32): "
                      "1.25x (target ≤ 1.3x: met)"]
    not_measured = section(md, "Not measured")
    assert "`pretrain_gpu`" in not_measured and "`convert`" not in not_measured
    assert "No performance figure was measured on a GPU." in not_measured
    assert "Transfer results: no results index was given" in not_measured
    assert "No transfer runs were given" in section(md, "Measured transfer results")


def test_cost_above_target_is_reported_as_missed(tmp_path, reference):
    bench = tmp_path / "bench"
    write_bench(bench, "pretrain_gpu", [{"label": "MoCo v2", "value": 1000.0, "unit": "img/s"},
                                        {"label": "SSA", "value": 500.0, "unit": "img/s"}], gpus=["NVIDIA H100"])
    md = build(tmp_path, reference, [], bench_dir=bench)
    assert "SSA 500.0 vs MoCo v2 1,000 images/s: 2.00x (target ≤ 1.3x: not met)" in md
    assert "No performance figure was measured on a GPU." not in md


def test_plot_is_a_png_of_the_measured_benchmarks(tmp_path, reference):
    build(tmp_path, reference, [make_index(tmp_path / "a", SSA_BETTER, "run A"),
                            make_index(tmp_path / "b", SSA_WORSE, "run B")])
    png = tmp_path / "benchmarks" / "comparison.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as image:
        image.verify()
    with Image.open(png) as image:
        width, height = image.size
    assert width > 600 and height > 800  # one panel per table, stacked


def make_bad(kind: str, root: Path) -> Path:
    """Write an index with one defect of the given kind; return the file the error must name."""
    index = make_index(root, SSA_BETTER)
    data = json.loads(index.read_text())
    culprit = index
    if kind == "index-not-json":
        index.write_text("{not json")
    elif kind == "index-schema":
        data["schema"] = 2
        index.write_text(json.dumps(data))
    elif kind == "missing-metrics":
        culprit = root / "runs/ssa/voc/metrics.json"
        culprit.unlink()
    elif kind == "metrics-not-json":
        culprit = root / "runs/seed/coco/metrics.json"
        culprit.write_text("[1, 2")
    elif kind == "metrics-schema":
        culprit = root / "runs/seed/linear/metrics.json"
        culprit.write_text(json.dumps({**json.loads(culprit.read_text()), "schema": 7}))
    elif kind == "metrics-without-number":
        culprit = root / "runs/moco_v2/cityscapes/metrics.json"
        culprit.write_text(json.dumps({**json.loads(culprit.read_text()), "metrics": {"mIoU": "high"}}))
    elif kind == "task-mismatch":
        data["rows"][0]["metrics"]["voc"] = data["rows"][0]["metrics"]["coco"]
        index.write_text(json.dumps(data))
    elif kind == "unknown-task":
        data["rows"][1]["metrics"]["imagenet"] = "x.json"
        index.write_text(json.dumps(data))
    elif kind == "bench-malformed":
        culprit = write_bench(root / "bench", "pretrain_cpu", [{"label": "ssa", "value": "fast"}])
    return culprit


BAD_KINDS = ["index-not-json", "index-schema", "missing-metrics", "metrics-not-json", "metrics-schema",
             "metrics-without-number", "task-mismatch", "unknown-task", "bench-malformed"]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_input_is_one_error_line_and_nothing_written(tmp_path, reference, kind, monkeypatch, capsys):
    root = tmp_path / "demo"
    culprit = make_bad(kind, root)
    out, plot, ref = tmp_path / "benchmarks.md", tmp_path / "comparison.png", reference
    out.write_text("previous benchmarks.md\n")
    plot.write_bytes(b"previous png")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    monkeypatch.setattr(sys, "argv", [str(TOOL), "--index", str(root / "results.json"),
                                      "--bench-dir", str(root / "bench"),
                                      "--out", str(out), "--plot", str(plot), "--reference", str(ref)])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(TOOL), run_name="__main__")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and str(culprit) in err
    assert out.read_text() == "previous benchmarks.md\n" and plot.read_bytes() == b"previous png"
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # no temp file left


def test_absent_or_malformed_reference_is_an_error_and_nothing_written(tmp_path):
    with pytest.raises(UserError, match="absent.json: the reference file does not exist"):
        make_benchmarks([], out=tmp_path / "b.md", bench_dir=tmp_path, reference_json=tmp_path / "absent.json")
    bad = tmp_path / "r.json"
    bad.write_text(json.dumps({**REFERENCE, "columns": REFERENCE["columns"][:2]}))  # rows name coco, cityscapes
    with pytest.raises(UserError, match="figures for cityscapes, coco, which no column shows"):
        make_benchmarks([], out=tmp_path / "b.md", bench_dir=tmp_path, reference_json=bad)
    assert not (tmp_path / "b.md").exists()


def test_reads_what_the_project_writers_write(tmp_path, reference):
    from transfer.results import write_benchmark, write_metrics

    root = tmp_path / "demo"
    write_metrics(root / "ssa_voc", task="voc", backend="mmdet", metrics={"AP": 12.34, "AP50": 30.0, "AP75": 10.0,
                                                                          "AP_std": 0.25},
                  trials=[{"AP": 12.0}, {"AP": 12.68}], iterations=10)
    write_metrics(root / "moco_voc", task="voc", backend="mmdet", metrics={"AP": 11.11, "AP50": 29.0, "AP75": 9.0})
    (root / "results.json").write_text(json.dumps({"schema": 1, "name": "writers", "rows": [
        {"method": "moco_v2", "metrics": {"voc": "moco_voc/metrics.json"}},
        {"method": "ssa", "teacher": "moco_v2", "metrics": {"voc": "ssa_voc/metrics.json"}}]}))
    write_benchmark("pretrain_cpu", [{"label": "ssa", "value": 8.0, "unit": "images/s"},
                                     {"label": "moco_v2", "value": 10.0, "unit": "images/s"}],
                    out_dir=tmp_path / "bench")
    md = build(tmp_path, reference, [root / "results.json"], bench_dir=tmp_path / "bench")
    rows = {r["method"]: r for r in table(section(md, "Measured transfer results"))}
    assert rows["ssa"]["VOC AP (AP50 / AP75)"] == "12.3 ± 0.2 (30.0 / 10.0)"
    assert rows["ssa"]["teacher"] == "moco_v2" and rows["ssa"]["linear top-1"] == "not run"
    assert "- ssa vs moco_v2: VOC AP +1.2 (trial std 0.2 vs —). SSA ahead on 1, behind on 0, tied on 0 of 1." in md
    assert "voc: 2 trials" in md
    assert "1.25x (target ≤ 1.3x: met)" in md
