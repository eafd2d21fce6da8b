"""Low-shot VOC07 SVMs (Goyal et al. 2019; VISSL's `SVMLowShotTrainer`, mmselfsup's `eval_svm_lowshot.sh`).

For each k of the toolkits' list (1, 2, 4, 8, 16, 32, 64, 96) and each of 5 independent
samples: per class, k of its present trainval images and (K - 1) k of its absent ones are
drawn (VISSL's `create_voc_low_shot_samples.py`: `sample_symbol(targets, 1, k)` and
`sample_symbol(targets, 0, (num_classes - 1) * k)`), every other image is ignored for that
class; the class's SVM (`svm.fit_linear_svm`, the class weights of the full protocol) is
trained on those at every cost, and tested on all test images (difficult-only ones left
out). The test mAP of each (sample, k, cost) is averaged over the samples, and each k
reports the mean and std over the samples at the cost with the best mean (the toolkits'
`aggregate_low_shot_svm_stats`: the cost is chosen on the test set, as they do).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from transfer.classification.svm import (IGNORE, NEGATIVE, POSITIVE, POSITIVE_WEIGHT, fit_linear_svm,
                                         normalize_features, test_ap, training_signs)
from transfer.rng import sample_seed


def sample_low_shot(targets: torch.Tensor, k: int, generator: torch.Generator,
                    classes: Sequence[str] | None = None) -> tuple[torch.Tensor, list[str]]:
    """Targets N x K with, per class, k present and (K - 1) k absent images kept and the rest set to ignore (-1).

    Where a class has fewer images of a label than asked for, all of them are kept and a
    note says so (small procedural sets; real VOC07 trainval has at least 96 of each).
    """
    n, num_classes = targets.shape
    out = torch.full_like(targets, IGNORE)
    notes = []
    for c in range(num_classes):
        for label, count in ((POSITIVE, k), (NEGATIVE, (num_classes - 1) * k)):
            pool = (targets[:, c] == label).nonzero().flatten()
            if len(pool) < count:
                name = classes[c] if classes else f"class {c}"
                kind = "present" if label == POSITIVE else "absent"
                notes.append(f"{name}: {len(pool)} {kind} images, fewer than the {count} asked for: all kept")
            pick = pool[torch.randperm(len(pool), generator=generator)[:count]]
            out[pick, c] = label
    return out, notes


def low_shot_map(train_features: torch.Tensor, train_targets: torch.Tensor, test_features: torch.Tensor,
                 test_targets: torch.Tensor, costs: Sequence[float], shots: Sequence[int], samples: int, seed: int,
                 positive_weight: float = POSITIVE_WEIGHT, classes: Sequence[str] | None = None,
                 device: torch.device | str | None = None, say: Callable[[str], None] = print) -> dict[str, object]:
    """The low-shot protocol on CPU tensors (the solves run on `device`): {"map": {k: (mean, std)} in percent,
    "cost": {k: chosen cost}, "test_map": ..., "notes": [...]}.

    mAP of each sample at each cost: `test_map[k]` is samples x len(costs) (0..1).
    """
    train_x, test_x = normalize_features(train_features), normalize_features(test_features)
    num_classes = train_targets.shape[1]
    col_class = torch.arange(num_classes).repeat_interleave(len(costs))  # columns ordered (class, cost)
    col_cost = torch.tensor(list(costs), dtype=torch.float64).repeat(num_classes)
    result: dict[str, object] = {"map": {}, "cost": {}, "test_map": {}, "notes": []}
    for k in shots:
        per_sample = []
        for sample in range(samples):
            g = torch.Generator().manual_seed(sample_seed(seed, sample, k))
            sampled, notes = sample_low_shot(train_targets, k, g, classes)
            if sample == 0:
                result["notes"] += [f"k={k}: {n}" for n in notes]
            signs, class_weight = training_signs(sampled, positive_weight)
            kept = (sampled != IGNORE).double()
            w, b = fit_linear_svm(train_x, signs[:, col_class], (class_weight * kept)[:, col_class], col_cost,
                                  device=device)
            ap = torch.stack([test_ap(test_x @ w[:, col_class == c] + b[col_class == c],
                                      test_targets[:, c:c + 1].expand(-1, len(costs)))
                              for c in range(num_classes)])  # K x len(costs)
            per_sample.append(ap.mean(0))
        test_map = torch.stack(per_sample)  # samples x len(costs)
        best = int(test_map.mean(0).argmax())
        mean, std = 100 * float(test_map[:, best].mean()), 100 * float(test_map[:, best].std(unbiased=False))
        result["map"][k], result["cost"][k], result["test_map"][k] = (mean, std), float(costs[best]), test_map
        say(f"low-shot k={k}: mAP {mean:.2f} +- {std:.2f} over {samples} samples (cost {costs[best]:g})")
    return result
