"""One-vs-rest linear SVMs on frozen features: the VOC07 protocol of Goyal et al. 2019 ("Scaling and
Benchmarking Self-Supervised Visual Representation Learning"), as VISSL's `SVMTrainer` and mmselfsup's
`benchmarks/classification/svm_voc07` run it, with the solver written in torch instead of liblinear.

Per class, on l2-normalised features x_i (x / (|x| + 1e-5)) with the bias as one more feature
of value 1 (liblinear's `intercept_scaling=1`, so the bias is regularised too), labels
y_i = +1 (present) or -1 (absent, and for training also ambiguous), and class weights
c_i = 2 for positives, 1 for negatives (`class_weight={1: 2, -1: 1}`), sklearn's `LinearSVC`
(L2 penalty, squared hinge) minimises

    f(w) = 1/2 |w|^2 + C sum_i c_i max(0, 1 - y_i w.x_i)^2.

The cost C of each class is the one of the cost list with the best 3-fold cross-validated AP
on trainval (sklearn's `cross_val_score(..., cv=3, scoring="average_precision")`: stratified
folds, unshuffled); the SVM is then refit on all of trainval at that C, and tested by VOC AP
on the test images, ambiguous (difficult-only) images left out.

Targets use the toolkits' encoding: 1 present, 0 absent, -1 ignore (VOC's "0 = difficult").
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from transfer.classification.ap import ranked_ap, voc_ap

POSITIVE, NEGATIVE, IGNORE = 1, 0, -1
POSITIVE_WEIGHT = 2.0  # class_weight={1: 2, -1: 1} (configs/classification/voc07_svm.yaml lists the costs)


def normalize_features(features: torch.Tensor) -> torch.Tensor:
    """x / (|x|_2 + 1e-5) per row, as the toolkits' `normalize_features` (N x C -> N x C, float64)."""
    features = features.double()
    return features / (features.norm(dim=1, keepdim=True) + 1e-5)


def _conjugate_gradients(hessian: Callable[[torch.Tensor], torch.Tensor], rhs: torch.Tensor, iters: int,
                         rtol: float = 1e-3) -> torch.Tensor:
    """Solve H p = rhs column by column (D x M), H symmetric positive definite given as a product."""
    p_sol = torch.zeros_like(rhs)
    residual, direction = rhs.clone(), rhs.clone()
    rs = (residual * residual).sum(0)  # M
    goal = (rtol * rhs.norm(dim=0)) ** 2
    for _ in range(iters):
        active = rs > goal
        if not active.any():
            break
        h_dir = hessian(direction)
        alpha = torch.where(active, rs / (direction * h_dir).sum(0).clamp(min=1e-300), torch.zeros_like(rs))
        p_sol += alpha * direction
        residual -= alpha * h_dir
        rs_new = (residual * residual).sum(0)
        direction = residual + (rs_new / rs.clamp(min=1e-300)) * direction
        rs = rs_new
    return p_sol


def fit_linear_svm(features: torch.Tensor, signs: torch.Tensor, weights: torch.Tensor, costs: torch.Tensor,
                   tol: float = 1e-6, max_iter: int = 100, cg_iters: int = 200,
                   device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """M independent L2-regularised squared-hinge SVMs (LinearSVC's primal) by Newton's method, batched in torch.

    features N x C (already normalised), signs N x M in {+1, -1}, weights N x M (class
    weight times 1 for the images a column trains on, 0 for the others), costs M.
    Returns (W C x M, b M) on the features' device; the solve runs on `device` (default: the features').
    Column m minimises
    1/2 (|w|^2 + b^2) + C_m sum_i s_im max(0, 1 - y_im (w.x_i + b))^2: a generalised Newton
    step H p = -g with H = I + 2 C X~^T diag(s [r > 0]) X~, solved by conjugate gradients,
    then an Armijo backtracking line search; stops at |g| <= tol |g_0|.
    """
    home = features.device
    features = features.to(device or home, torch.float64)
    x = torch.cat([features, features.new_ones(features.shape[0], 1)], 1)  # N x D
    y = signs.to(x)
    s = weights.to(x) * costs.to(x)  # N x M: C_m * s_im folded into one weight
    w = x.new_zeros(x.shape[1], y.shape[1])  # D x M

    def objective(w_: torch.Tensor) -> torch.Tensor:  # M
        r = (1 - y * (x @ w_)).clamp(min=0)
        return 0.5 * (w_ * w_).sum(0) + (s * r * r).sum(0)

    g0 = None
    for _ in range(max_iter):
        r = (1 - y * (x @ w)).clamp(min=0)  # N x M: the hinge residuals
        grad = w - 2 * x.T @ (s * y * r)  # D x M
        g_norm = grad.norm(dim=0)
        g0 = g_norm if g0 is None else g0
        todo = g_norm > tol * g0.clamp(min=1e-300)
        if not todo.any():
            break
        hess_weight = 2 * s * (r > 0)  # N x M: the generalised Hessian's sample weights
        step = _conjugate_gradients(lambda v: v + x.T @ (hess_weight * (x @ v)), -grad, cg_iters)
        f0, slope = objective(w), (grad * step).sum(0)
        t = torch.ones_like(f0)
        for _ in range(40):  # halve each column's step until it decreases f enough (Armijo, c = 1e-4)
            worse = objective(w + t * step) > f0 + 1e-4 * t * slope
            if not worse.any():
                break
            t = torch.where(worse, t / 2, t)
        w = w + torch.where(todo, t, torch.zeros_like(t)) * step
    return w[:-1].to(home), w[-1].to(home)


def stratified_folds(positive: torch.Tensor, n_folds: int) -> torch.Tensor:
    """Fold index (N, long) of each image for one class, as sklearn's unshuffled `StratifiedKFold`.

    The fold sizes of each label come from dealing the sorted labels round-robin; the
    images of a label then fill the folds in order, a contiguous block each.
    """
    labels = positive.long()  # 0 negative, 1 positive: sklearn's encoding of the sorted labels -1, +1
    ordered = labels.sort().values
    folds = torch.empty_like(labels)
    for label in (0, 1):
        sizes = [int((ordered[i::n_folds] == label).sum()) for i in range(n_folds)]
        members = (labels == label).nonzero().flatten()
        folds[members] = torch.arange(n_folds).repeat_interleave(torch.tensor(sizes))
    return folds


def training_signs(targets: torch.Tensor,
                   positive_weight: float = POSITIVE_WEIGHT) -> tuple[torch.Tensor, torch.Tensor]:
    """(signs, class weights) of the SVM training labels, N x K: +1 / 2 for present; -1 / 1 for absent and ignore.

    As the toolkits' `train_svm_kfold`: `cls_labels[cls_labels == 0] = -1` leaves the ignore
    label -1 in place, so the ambiguous images train as negatives.
    """
    positive = targets == POSITIVE
    signs = torch.where(positive, 1.0, -1.0).double()
    return signs, torch.where(positive, positive_weight, 1.0).double()


def cross_validated_ap(features: torch.Tensor, targets: torch.Tensor, costs: list[float], n_folds: int = 3,
                       positive_weight: float = POSITIVE_WEIGHT, device: torch.device | str | None = None
                       ) -> torch.Tensor:
    """Mean n-fold cross-validated AP (0..1) of each class at each cost: K x len(costs).

    features N x C normalised, targets N x K. All (class, cost, fold) SVMs are fitted in
    one batched solve; a fold without positives is left out of the mean (sklearn gives nan).
    """
    k = targets.shape[1]
    signs, class_weight = training_signs(targets, positive_weight)
    folds = torch.stack([stratified_folds(targets[:, c] == POSITIVE, n_folds) for c in range(k)], 1)  # N x K
    # columns ordered (class, cost, fold)
    col_class = torch.arange(k).repeat_interleave(len(costs) * n_folds)
    col_cost = torch.tensor(costs, dtype=torch.float64).repeat_interleave(n_folds).repeat(k)
    col_fold = torch.arange(n_folds).repeat(k * len(costs))
    held_out = folds[:, col_class] == col_fold  # N x M
    weights = class_weight[:, col_class] * ~held_out
    w, b = fit_linear_svm(features, signs[:, col_class], weights, col_cost, device=device)
    scores = features.double() @ w + b  # N x M
    ap = torch.tensor([ranked_ap(scores[held_out[:, m], m], (targets[held_out[:, m], col_class[m]] == POSITIVE))
                       for m in range(w.shape[1])], dtype=torch.float64)
    return ap.view(k, len(costs), n_folds).nanmean(2)


def test_ap(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """VOC AP (0..1) of each class's scores (N x K) on the test targets (N x K), ignored images left out: K."""
    return torch.tensor([voc_ap(scores[targets[:, c] != IGNORE, c], targets[targets[:, c] != IGNORE, c] == POSITIVE)
                         for c in range(targets.shape[1])], dtype=torch.float64)


def train_and_test_svms(train_features: torch.Tensor, train_targets: torch.Tensor, test_features: torch.Tensor,
                        test_targets: torch.Tensor, costs: list[float], n_folds: int = 3,
                        positive_weight: float = POSITIVE_WEIGHT, device: torch.device | str | None = None,
                        say: Callable[[str], None] = print) -> dict[str, torch.Tensor]:
    """The VOC07 SVM protocol on raw features (CPU tensors; the solves run on `device`): per-class C by
    cross-validation, refit on trainval, test AP.

    Returns {"cv_ap": K x len(costs), "cost": K chosen costs, "ap": K test APs (0..1)}.
    """
    train_x, test_x = normalize_features(train_features), normalize_features(test_features)
    k = train_targets.shape[1]
    say(f"SVM cost search: {k} classes x {len(costs)} costs x {n_folds} folds")
    cv_ap = cross_validated_ap(train_x, train_targets, costs, n_folds, positive_weight, device)
    best = cv_ap.nan_to_num(-1.0).argmax(1)  # the first best cost, as np.argmax
    chosen = torch.tensor(costs, dtype=torch.float64)[best]
    signs, class_weight = training_signs(train_targets, positive_weight)
    say("SVM refit on trainval at each class's chosen cost")
    w, b = fit_linear_svm(train_x, signs, class_weight, chosen, device=device)
    return {"cv_ap": cv_ap, "cost": chosen, "ap": test_ap(test_x @ w + b, test_targets)}
