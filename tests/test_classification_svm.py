"""VOC07 SVM and low-shot SVM protocols: the solver, the folds, the APs, the sampling, and both tasks end to end."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from transfer.classification.ap import ranked_ap, voc_ap
from transfer.classification.lowshot import low_shot_map, sample_low_shot
from transfer.classification.svm import (IGNORE, NEGATIVE, POSITIVE, cross_validated_ap, fit_linear_svm,
                                         normalize_features, stratified_folds, train_and_test_svms)
from transfer.classification.voc07 import image_targets
from transfer.cli import run_transfer
from transfer.data import DatasetError, check_dataset, make_dataset
from transfer.engine.config import read_yaml_config
from transfer.errors import UserError

SHAPE_CLASSES = "svm.classes=[bottle,tvmonitor,boat,bird,aeroplane]"  # the VOC classes the procedural scenes hold
COSTS = [1.0, 10.0, 100.0, 0.0625, 0.001953125]


def multilabel_features(n: int, k: int, seed: int, noise: float = 0.3) -> tuple[torch.Tensor, torch.Tensor]:
    """Features that separate k classes (one direction each, plus noise) and their targets (1 present, 0 absent)."""
    g = torch.Generator().manual_seed(seed)
    targets = (torch.rand(n, k, generator=g) < 0.35).long()
    features = torch.cat([targets.float(), torch.zeros(n, 6)], 1) + noise * torch.randn(n, k + 6, generator=g)
    return features, targets


def test_solver_reaches_the_liblinear_objective_minimum():
    g = torch.Generator().manual_seed(0)
    x = normalize_features(torch.randn(120, 12, generator=g) + 0.3)
    y = torch.where(torch.rand(120, generator=g) < 0.3, 1.0, -1.0).double()
    weights = torch.where(y > 0, 2.0, 1.0)
    costs = torch.tensor([0.5 ** 10, 1.0, 100.0])
    w, b = fit_linear_svm(x, y[:, None].expand(-1, 3), weights[:, None].expand(-1, 3), costs)
    xa = np.hstack([x.numpy(), np.ones((120, 1))])  # the bias is a regularised feature of value 1

    for m, cost in enumerate(costs.tolist()):
        def objective(v):
            r = np.maximum(0, 1 - y.numpy() * (xa @ v))
            s = cost * weights.numpy()
            return 0.5 * v @ v + (s * r * r).sum(), v - 2 * xa.T @ (s * y.numpy() * r)
        ref = minimize(objective, np.zeros(13), jac=True, method="L-BFGS-B",
                       options={"maxiter": 10000, "gtol": 1e-12, "ftol": 1e-16})
        ours = objective(np.concatenate([w[:, m].numpy(), b[m:m + 1].numpy()]))[0]
        assert ours == pytest.approx(ref.fun, rel=1e-7)


def test_stratified_folds_as_sklearn():
    positive = torch.tensor([1, 0, 0, 1, 0, 0, 0, 1, 1, 0]).bool()
    # sklearn StratifiedKFold(3).split(np.zeros(10), y) gives these test folds for this y
    assert stratified_folds(positive, 3).tolist() == [0, 0, 0, 0, 1, 1, 2, 1, 2, 2]


def test_average_precisions():
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5])
    assert ranked_ap(scores, torch.tensor([1, 0, 1, 0, 1]).bool()) == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    # where the envelope matters: P = 0, 1/2, 2/3 at R = 0, 1/2, 1
    scores, positive = torch.tensor([0.9, 0.8, 0.7]), torch.tensor([0, 1, 1]).bool()
    assert ranked_ap(scores, positive) == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)
    assert voc_ap(scores, positive) == pytest.approx(2 / 3)
    assert np.isnan(voc_ap(scores, torch.zeros(3).bool()))


def test_svms_separate_what_separates_and_not_shuffled_labels():
    train_x, train_t = multilabel_features(150, 3, seed=0, noise=0.2)
    test_x, test_t = multilabel_features(90, 3, seed=1, noise=0.2)
    test_t[:5, 0] = IGNORE  # difficult-only images: left out of the test AP
    out = train_and_test_svms(train_x, train_t, test_x, test_t, COSTS, say=lambda _: None)
    assert out["ap"].min() > 0.95
    assert all(c in COSTS for c in out["cost"].tolist())
    # the chosen cost of each class is the one with the best cross-validated AP
    assert out["cost"].tolist() == [COSTS[i] for i in out["cv_ap"].argmax(1).tolist()]
    assert torch.allclose(out["cv_ap"], cross_validated_ap(normalize_features(train_x), train_t, COSTS))
    shuffled = train_t[torch.randperm(150, generator=torch.Generator().manual_seed(2))]
    chance = train_and_test_svms(train_x, shuffled, test_x, test_t, COSTS, say=lambda _: None)
    assert chance["ap"].mean() < 0.6  # about the positive rate, 0.35


def test_low_shot_samples_have_k_positives_and_differ():
    _, targets = multilabel_features(200, 4, seed=3)
    samples = []
    for s in range(3):
        sampled, notes = sample_low_shot(targets, 4, torch.Generator().manual_seed(s))
        assert notes == []
        assert ((sampled == POSITIVE).sum(0) == 4).all() and ((sampled == NEGATIVE).sum(0) == 12).all()
        assert (targets[sampled == POSITIVE] == POSITIVE).all() and (targets[sampled == NEGATIVE] == NEGATIVE).all()
        samples.append(sampled)
    assert not torch.equal(samples[0], samples[1]) and not torch.equal(samples[1], samples[2])
    clipped, notes = sample_low_shot(targets, 96, torch.Generator().manual_seed(0), ["a", "b", "c", "d"])
    assert ((clipped == POSITIVE).sum(0) == (targets == POSITIVE).sum(0)).all()  # all present images kept
    assert any(n.startswith("a: ") and "fewer than the 96" in n for n in notes)


def test_low_shot_map_improves_with_k_and_reports_every_k():
    train_x, train_t = multilabel_features(300, 3, seed=4, noise=0.6)
    test_x, test_t = multilabel_features(150, 3, seed=5, noise=0.6)
    out = low_shot_map(train_x, train_t, test_x, test_t, COSTS, [1, 32], samples=5, seed=0, say=lambda _: None)
    assert set(out["map"]) == {1, 32} and out["test_map"][1].shape == (5, len(COSTS))
    (m1, s1), (m32, s32) = out["map"][1], out["map"][32]
    assert m32 > m1 and s1 > 0  # samples differ, so their mAPs do
    assert out["cost"][32] == COSTS[int(out["test_map"][32].mean(0).argmax())]


# ---- the tasks end to end: tools/run_transfer.sh voc07_svm / voc07_lowshot_svm -----------------------------------

@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    return make_dataset("voc", tmp_path_factory.mktemp("voc07") / "voc", seed=0, num_images=32, num_val=16,
                        image_size=(64, 48))


def _argv(task: str, voc, work, *extra: str) -> list[str]:
    return [task, "--data", str(voc), "--work-dir", str(work), "--gpus", "0", "--input-size", "32",
            "model.arch=resnet18", "features.workers=0", *extra]


def test_voc07_svm_runs_end_to_end_and_resumes(voc, tmp_path, capsys):
    work = tmp_path / "svm"
    record = run_transfer(_argv("voc07_svm", voc, work, SHAPE_CLASSES))
    names = ["bottle", "tvmonitor", "boat", "bird", "aeroplane"]
    assert set(record["metrics"]) == {"map", *(f"ap_{c}" for c in names)}
    assert record["task"] == "voc07_svm" and record["arch"] == "resnet18"
    assert record["metrics"]["map"] == pytest.approx(np.mean([record["metrics"][f"ap_{c}"] for c in names]))
    stored = json.loads((work / "svm_result.json").read_text())["result"]
    costs = read_yaml_config(record["config"])["svm"]["costs"]
    assert set(stored["cost"]) == set(names) and all(c in costs for c in stored["cost"].values())
    assert json.loads((work / "metrics.json").read_text())["metrics"] == record["metrics"]
    (work / "metrics.json").unlink()
    capsys.readouterr()
    again = run_transfer(_argv("voc07_svm", voc, work, SHAPE_CLASSES))
    assert "holds this trial's result" in capsys.readouterr().err and again["metrics"] == record["metrics"]


def test_voc07_lowshot_runs_end_to_end(voc, tmp_path):
    record = run_transfer(_argv("voc07_lowshot_svm", voc, tmp_path / "low", SHAPE_CLASSES, "lowshot.shots=[1,2,64]",
                                "lowshot.samples=3"))
    assert set(record["metrics"]) == {f"map_k{k}{s}" for k in (1, 2, 64) for s in ("", "_sample_sd")}
    assert any("low-shot k=64" in n and "clipped" in n for n in record["notes"])
    assert record["metrics"]["map_k1_sample_sd"] > 0  # three different samples


def test_voc07_svm_needs_voc2007_only(voc, tmp_path):
    """A VOCdevkit with VOC2007 alone (no VOC2012) is what the SVM protocols read; the detection check refuses it."""
    only = tmp_path / "VOCdevkit"
    shutil.copytree(voc / "VOC2007", only / "VOC2007")
    record = run_transfer(_argv("voc07_svm", only, tmp_path / "svm", SHAPE_CLASSES))
    assert record["metrics"]["map"] >= 0
    with pytest.raises(DatasetError, match="VOC2012"):
        check_dataset("voc", only)


def test_voc07_svm_refuses_bad_input(voc, tmp_path):
    with pytest.raises(UserError, match=r"trainval.txt: no image of class\(es\) bicycle, bus.*svm.classes=\["):
        run_transfer(_argv("voc07_svm", voc, tmp_path / "a"))  # the 20 VOC classes: the scenes hold 5
    with pytest.raises(UserError, match="svm.classes: dragon not VOC classes"):
        run_transfer(_argv("voc07_svm", voc, tmp_path / "b", "svm.classes=[bird,dragon]"))
    with pytest.raises(UserError, match="ImageSets/Main/minival.txt does not exist"):
        run_transfer(_argv("voc07_svm", voc, tmp_path / "c", SHAPE_CLASSES, "svm.test_set=minival"))


def test_targets_from_annotations_mark_difficult_only_images_ignored(tmp_path):
    voc2007 = tmp_path / "VOC2007"
    (voc2007 / "Annotations").mkdir(parents=True)
    objects = {"a": [("bird", 0), ("boat", 1)], "b": [("bird", 1), ("bird", 0)], "c": [("boat", 1), ("cat", 0)]}
    for image_id, objs in objects.items():
        body = "".join(f"<object><name>{n}</name><difficult>{d}</difficult></object>" for n, d in objs)
        (voc2007 / "Annotations" / f"{image_id}.xml").write_text(f"<annotation>{body}</annotation>")
    targets = image_targets(voc2007, ["a", "b", "c"], ["bird", "boat", "bottle"])
    # bird: present, present (one non-difficult), absent; boat: difficult only -> ignored; bottle: absent
    assert targets.tolist() == [[POSITIVE, IGNORE, NEGATIVE], [POSITIVE, NEGATIVE, NEGATIVE],
                                [NEGATIVE, IGNORE, NEGATIVE]]
