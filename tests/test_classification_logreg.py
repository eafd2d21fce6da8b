"""Many-shot logistic regression (Ericsson et al.): the fit, the lambda search, the val split, the task end to end."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import minimize

from transfer.classification.logreg import fit_logreg, logreg_protocol, score
from transfer.classification.logreg_runner import carve_validation
from transfer.cli import run_transfer
from transfer.data.imagefolder import check_imagefolder, write_imagefolder
from transfer.data.problems import DatasetError
from transfer.errors import UserError

LAMBDAS = torch.logspace(-6, 5, 12, dtype=torch.float64).tolist()


def blobs(n: int, centres: torch.Tensor, seed: int, classes: list[int] | None = None,
          noise: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """n points around the centres of `classes` (default all), taken in turn."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.tensor(classes or list(range(len(centres))))[torch.arange(n) % len(classes or centres)]
    return centres[labels] + noise * torch.randn(n, centres.shape[1], generator=g), labels


def test_fit_is_sklearns_objective_minimum():
    x, y = blobs(60, torch.randn(3, 5, generator=torch.Generator().manual_seed(0)), seed=1, noise=1.5)
    x = x.double()
    lam = 3.0
    w, b = fit_logreg(x, y, 3, lam, max_iter=500, tol=1e-10)

    def objective(v):  # 1/N sum CE + lambda / (2N) |W|^2, the bias unregularised
        vw = torch.tensor(v[:15].reshape(3, 5), requires_grad=True)
        vb = torch.tensor(v[15:], requires_grad=True)
        loss = F.cross_entropy(x.double() @ vw.T + vb, y) + lam / 120 * (vw * vw).sum()
        loss.backward()
        return loss.item(), np.concatenate([vw.grad.numpy().ravel(), vb.grad.numpy()])
    ref = minimize(objective, np.zeros(18), jac=True, method="L-BFGS-B", options={"gtol": 1e-12, "ftol": 1e-16})
    assert objective(np.concatenate([w.numpy().ravel(), b.numpy()]))[0] == pytest.approx(ref.fun, rel=1e-8)


def test_search_picks_the_best_val_lambda_and_refits_on_train_and_val():
    centres = 3 * torch.eye(3, 6, dtype=torch.float64)
    train = blobs(60, centres, seed=0, classes=[0, 0, 1])  # train holds classes 0 (two thirds) and 1 only ...
    val_x, val_y = blobs(30, centres, seed=1)  # ... val and test all three
    test = blobs(30, centres, seed=2)
    out = logreg_protocol(train, (val_x, val_y), test, 3, LAMBDAS, "accuracy", say=lambda _: None)
    assert out["lambda"] == LAMBDAS[int(np.argmax(out["val"]))]  # the first best value
    assert max(out["val"]) <= 100 * 2 / 3 + 1e-9  # trained on train only, class 2 is never predicted on val
    assert out["test"] == 100.0  # refit on train + val: class 2 learned from val
    # lambda 1e5 shrinks the weights to nothing: the (unregularised) bias predicts train's majority class
    assert out["val"][-1] == pytest.approx(100 / 3) and out["val"][-1] < max(out["val"])


def test_mean_per_class_accuracy():
    w, b = torch.eye(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    x = torch.tensor([[1.0, 0], [1, 0], [1, 0], [0, 1]])  # predicted 0, 0, 0, 1
    y = torch.tensor([0, 0, 1, 1])
    assert score((w, b), x, y, "accuracy") == 75.0
    assert score((w, b), x, y, "mean_per_class_accuracy") == pytest.approx(100 * (1 + 0.5) / 2)


def test_carved_validation_is_theirs():
    train, val = carve_validation(10, 0.2, 0)
    indices = list(range(10))
    np.random.seed(0)
    np.random.shuffle(indices)
    assert val == indices[:2] and train == indices[2:] and sorted(train + val) == list(range(10))


@pytest.fixture(scope="module")
def train_test(tmp_path_factory):
    """An ImageFolder with train/ and test/ only (the Cars, Pets, Food layout)."""
    return write_imagefolder(tmp_path_factory.mktemp("logreg") / "data", 0, 40, 0, size=32, kind="patterns",
                             num_test=15)


def test_manyshot_logreg_runs_end_to_end(train_test, tmp_path):
    check_imagefolder(train_test)  # train + test is a valid layout
    argv = ["manyshot_logreg", "--data", str(train_test), "--gpus", "0", "--input-size", "32",
            "model.arch=resnet18", "features.workers=0", "logreg.lambda_count=6"]
    record = run_transfer([*argv, "--work-dir", str(tmp_path / "a")])
    assert set(record["metrics"]) == {"top1", "log10_lambda"} and record["task"] == "manyshot_logreg"
    assert -6 <= record["metrics"]["log10_lambda"] <= 5
    assert any("val is 8 of train's images" in n and "test/" in n for n in record["notes"])
    per_class = run_transfer([*argv, "--work-dir", str(tmp_path / "b"), "logreg.metric=mean_per_class_accuracy"])
    assert set(per_class["metrics"]) == {"mean_per_class_acc", "log10_lambda"}
    with pytest.raises(UserError, match="logreg.metric=top5: expected one of accuracy, mean_per_class_accuracy"):
        run_transfer([*argv, "--work-dir", str(tmp_path / "c"), "logreg.metric=top5"])


def test_imagefolder_check_needs_val_or_test_and_known_test_classes(tmp_path):
    root = write_imagefolder(tmp_path / "d", 0, 10, 0, size=16, kind="patterns")
    with pytest.raises(DatasetError, match="missing split folder"):
        check_imagefolder(root)  # train alone
    first = sorted((root / "train").iterdir())[0]
    shutil.copytree(first, root / "test" / "unseen")
    with pytest.raises(DatasetError, match=r"classes \['unseen'\] are not in train"):
        check_imagefolder(root)
