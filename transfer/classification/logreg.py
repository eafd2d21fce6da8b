"""Many-shot linear evaluation by multinomial logistic regression (Ericsson et al. 2021, "How Well Do
Self-Supervised Models Transfer?", their `linear.py`), with sklearn's L-BFGS fit written in torch.

On frozen features x_i (no normalisation) with labels y_i, sklearn's
`LogisticRegression(solver="lbfgs", multi_class="multinomial", C=1/lambda)` minimises

    L(W, b) = 1/N sum_i CE(W x_i + b, y_i) + lambda / (2 N) |W|_F^2

(C sum_i CE + 1/2 |W|^2 scaled by 1/(C N); the bias is not regularised), to a max-abs
gradient of 1e-4 or 100 iterations (sklearn's defaults). lambda is searched over
`logspace(-6, 5, 45)` on the validation split, keeping the first best score (their `>`);
each fit starts from the previous one (their `warm_start=True`, the grid in increasing
order, then the final fit), and the final model is fitted on train + val at the best lambda
and scored on test: top-1 accuracy, or mean per-class accuracy for the sets that report it.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

METRICS = ("accuracy", "mean_per_class_accuracy")


def fit_logreg(features: torch.Tensor, labels: torch.Tensor, num_classes: int, lam: float,
               init: tuple[torch.Tensor, torch.Tensor] | None = None, max_iter: int = 100,
               tol: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor]:
    """(W num_classes x C, b num_classes) minimising L above by L-BFGS (float64), from `init` or zero."""
    x = features.double()
    n = x.shape[0]
    w = (init[0].clone() if init else x.new_zeros(num_classes, x.shape[1])).requires_grad_(True)
    b = (init[1].clone() if init else x.new_zeros(num_classes)).requires_grad_(True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, history_size=10, tolerance_grad=tol,
                            tolerance_change=64 * torch.finfo(torch.float64).eps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(x @ w.T + b, labels) + lam / (2 * n) * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def score(weights: tuple[torch.Tensor, torch.Tensor], features: torch.Tensor, labels: torch.Tensor,
          metric: str) -> float:
    """Top-1 accuracy or mean per-class accuracy (percent; the mean over the classes present in `labels`)."""
    pred = (features.double() @ weights[0].T + weights[1]).argmax(1)
    if metric == "accuracy":
        return 100.0 * float((pred == labels).double().mean())
    per_class = [float((pred[labels == c] == c).double().mean()) for c in labels.unique()]
    return 100.0 * sum(per_class) / len(per_class)


def logreg_protocol(train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor],
                    test: tuple[torch.Tensor, torch.Tensor], num_classes: int, lambdas: Sequence[float],
                    metric: str, max_iter: int = 100, device: torch.device | str = "cpu",
                    say: Callable[[str], None] = print) -> dict[str, object]:
    """Search lambda on val, refit on train + val, score on test; each split is (features N x C, labels N),
    the fits run on `device`.

    Returns {"lambda": best, "val": [score per lambda], "test": test score (percent)}.
    """
    train, val, test = ((f.to(device), y.to(device)) for f, y in (train, val, test))
    best, best_score, val_scores, last = lambdas[0], -1.0, [], None
    for i, lam in enumerate(lambdas):
        last = fit_logreg(*train, num_classes, lam, init=last, max_iter=max_iter)
        val_scores.append(score(last, *val, metric))
        if val_scores[-1] > best_score:  # strictly: the first best value wins, as their `>`
            best, best_score = lam, val_scores[-1]
        if (i + 1) % 5 == 0 or i + 1 == len(lambdas):
            say(f"logistic regression: {i + 1}/{len(lambdas)} regularisation values, best so far lambda {best:.3g} "
                f"(val {metric} {best_score:.2f})")
    trainval = (torch.cat([train[0], val[0]]), torch.cat([train[1], val[1]]))
    final = fit_logreg(*trainval, num_classes, best, init=last, max_iter=max_iter)
    return {"lambda": best, "val": val_scores, "test": score(final, *test, metric)}
