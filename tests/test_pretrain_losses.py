"""SSA's loss terms, queue, EMA and views against direct reference computations on tiny tensors."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from transfer.pretrain import losses
from transfer.backbone import resnet_trunk
from transfer.pretrain.encoder import Encoder
from transfer.pretrain.heads import ProjectionHeads
from transfer.pretrain.queue import EmbeddingQueue
from transfer.pretrain.model import LossSettings, PretrainModel
from transfer.pretrain.teacher import calibrate_batch_norm, ema_momentum, ema_teacher, ema_update, load_frozen_teacher
from transfer.pretrain.views import MoCoV2Views


def unit(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1)


# ---- reference implementations: loops over samples and locations, straight from method.md -----------------

def ref_softmax(xs: list[float]) -> list[float]:
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    return [v / sum(e) for v in e]


def ref_cd(s, t, queue, tau_s, tau_t):
    soft, nce = 0.0, 0.0
    for i in range(s.shape[0]):
        cands = [t[i]] + [queue[j] for j in range(queue.shape[0])]
        p_t = ref_softmax([float(t[i] @ c) / tau_t for c in cands])
        p_s = ref_softmax([float(s[i] @ c) / tau_s for c in cands])
        soft += -sum(a * math.log(b) for a, b in zip(p_t, p_s))
        nce += -math.log(p_s[0])
    return soft / s.shape[0], nce / s.shape[0]


def ref_nce(q, k, queue, tau):
    total = 0.0
    for i in range(q.shape[0]):
        logits = [float(q[i] @ k[i]) / tau] + [float(q[i] @ queue[j]) / tau for j in range(queue.shape[0])]
        total += -math.log(ref_softmax(logits)[0])
    return total / q.shape[0]


def ref_align(p_s, p_t):
    values = [1 - float(F.cosine_similarity(p_s[n, i], p_t[n, i], dim=0))
              for n in range(p_s.shape[0]) for i in range(p_s.shape[1])]
    return sum(values) / len(values)


def ref_aggregate(p_t, t, p_s, rho, tau_a, weighting):
    """(z_s, z_t) by the letter of method.md: score, keep the top ceil(rho*HW), renormalise, sum, normalise."""
    zs, zt = [], []
    for n in range(p_t.shape[0]):
        hw = p_t.shape[1]
        a = ref_softmax([float(p_t[n, i] @ t[n]) / tau_a for i in range(hw)])
        k = max(1, math.ceil(rho * hw - 1e-9))
        top = sorted(range(hw), key=lambda i: -a[i])[:k]
        w = {i: (1 / k if weighting == "uniform" else a[i] / sum(a[j] for j in top)) for i in top}
        zs.append(F.normalize(sum(w[i] * p_s[n, i] for i in top), dim=0))
        zt.append(F.normalize(sum(w[i] * p_t[n, i] for i in top), dim=0))
    return torch.stack(zs), torch.stack(zt)


# ---- the loss functions -----------------------------------------------------------------------------------

def test_contrastive_distillation_matches_reference():
    s, t, queue = unit(3, 8, seed=1), unit(3, 8, seed=2), unit(5, 8, seed=3)
    soft, nce = losses.contrastive_distillation(s, t, queue, tau_s=0.2, tau_t=0.05)
    ref_soft, ref_nce_value = ref_cd(s, t, queue, 0.2, 0.05)
    assert soft.item() == pytest.approx(ref_soft, rel=1e-9)
    assert nce.item() == pytest.approx(ref_nce_value, rel=1e-9)
    # the soft target is a cross-entropy: at least the InfoNCE part's entropy floor, and equal to it when the
    # teacher's distribution is one-hot (tau_t -> 0)
    soft_sharp, nce_sharp = losses.contrastive_distillation(s, t, queue, tau_s=0.2, tau_t=1e-4)
    assert soft_sharp.item() == pytest.approx(nce_sharp.item(), rel=1e-6)


def test_info_nce_matches_reference():
    q, k, queue = unit(4, 6, seed=4), unit(4, 6, seed=5), unit(7, 6, seed=6)
    assert losses.info_nce(q, k, queue, 0.2).item() == pytest.approx(ref_nce(q, k, queue, 0.2), rel=1e-9)


def test_feature_alignment_matches_reference():
    p_s, p_t = unit(2, 9, 4, seed=7), unit(2, 9, 4, seed=8)
    assert losses.feature_alignment(p_s, p_t).item() == pytest.approx(ref_align(p_s, p_t), rel=1e-9)
    assert losses.feature_alignment(p_t, p_t).item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("weighting", ["uniform", "softmax"])
@pytest.mark.parametrize("rho", [0.25, 0.5, 1.0])
def test_sparse_aggregation_matches_reference(rho, weighting):
    p_t, p_s, t = unit(3, 16, 5, seed=9), unit(3, 16, 5, seed=10), unit(3, 5, seed=11)
    scores = losses.location_scores(p_t, t, tau_a=0.1)
    assert torch.allclose(scores.sum(1), torch.ones(3, dtype=torch.float64))
    index, weight = losses.select_locations(scores, rho, weighting)
    assert index.shape == (3, math.ceil(rho * 16))
    z_s, z_t = losses.aggregate(p_s, index, weight), losses.aggregate(p_t, index, weight)
    ref_s, ref_t = ref_aggregate(p_t, t, p_s, rho, 0.1, weighting)
    assert torch.allclose(z_s, ref_s, atol=1e-12) and torch.allclose(z_t, ref_t, atol=1e-12)


def test_rho_one_is_dense_average_pooling():
    p_t, p_s, t = unit(4, 49, 8, seed=12), unit(4, 49, 8, seed=13), unit(4, 8, seed=14)
    index, weight = losses.select_locations(losses.location_scores(p_t, t, 0.1), rho=1.0)
    assert torch.allclose(losses.aggregate(p_s, index, weight), F.normalize(p_s.mean(1), dim=1), atol=1e-12)
    # and below 1 it is not: the sparse selection changes the pooled vector
    index, weight = losses.select_locations(losses.location_scores(p_t, t, 0.1), rho=0.25)
    assert not torch.allclose(losses.aggregate(p_s, index, weight), F.normalize(p_s.mean(1), dim=1), atol=1e-3)


def test_sparse_spatial_aggregation_is_l_ssa_of_method_md():
    p_t, p_s, t, queue = unit(4, 9, 5, seed=15), unit(4, 9, 5, seed=16), unit(4, 5, seed=17), unit(6, 5, seed=18)
    loss, z_t = losses.sparse_spatial_aggregation(p_s, p_t, t, queue, rho=0.5, tau_a=0.1, tau=0.2,
                                                  weighting="softmax")
    ref_s, ref_t = ref_aggregate(p_t, t, p_s, 0.5, 0.1, "softmax")
    # the student's aggregate of view 1 against the teacher's of view 2, and the other way round
    expected = (ref_nce(ref_s[:2], ref_t[2:], queue, 0.2) + ref_nce(ref_s[2:], ref_t[:2], queue, 0.2)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-9) and torch.allclose(z_t, ref_t, atol=1e-12)


def test_tau_a_matters_only_under_softmax_weighting():
    p_t, p_s, t = unit(3, 16, 5, seed=19), unit(3, 16, 5, seed=20), unit(3, 5, seed=21)

    def pooled(tau_a: float, weighting: str) -> torch.Tensor:
        index, weight = losses.select_locations(losses.location_scores(p_t, t, tau_a), 0.25, weighting)
        return losses.aggregate(p_s, index, weight)

    assert torch.allclose(pooled(0.1, "uniform"), pooled(10.0, "uniform"), atol=1e-12)  # as base.yaml says
    assert not torch.allclose(pooled(0.1, "softmax"), pooled(10.0, "softmax"), atol=1e-3)


def test_selection_keeps_the_locations_the_teacher_scores_highest():
    # location 2 of sample 0 and location 0 of sample 1 point along t: they must be the ones kept at rho=1/4
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p_t = F.normalize(torch.tensor([[[0.0, 1.0], [-1.0, 0.2], [1.0, 0.1], [0.3, 1.0]],
                                    [[0.1, 1.0], [1.0, 0.0], [-1.0, -1.0], [1.0, 1.0]]]), dim=2)
    index, weight = losses.select_locations(losses.location_scores(p_t, t, 0.1), rho=0.25)
    assert index.tolist() == [[2], [0]] and weight.tolist() == [[1.0], [1.0]]
    assert losses.num_kept(0.25, 4) == 1 and losses.num_kept(0.25, 49) == 13 and losses.num_kept(0.01, 4) == 1


# ---- the model: every term wired as method.md says ----------------------------------------------------------

def _tiny_model(settings: LossSettings, seed: int = 0) -> PretrainModel:
    torch.manual_seed(seed)
    student = Encoder(resnet_trunk("resnet18"), head_hidden=32, head_dim=8)
    teacher = ema_teacher(student)
    # a teacher that differs from the student, so the alignment is not trivially 0
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return PretrainModel(student, teacher, settings, queue_size=6, aggregate_queue_size=5, ema=True, seed=seed).double()


def test_model_terms_match_a_direct_computation():
    settings = LossSettings(cd_soft_weight=1.0, cd_nce_weight=0.5, align_weight=2.0, aggregation_weight=3.0, rho=0.5)
    model = _tiny_model(settings).train()
    g = torch.Generator().manual_seed(1)
    v1 = torch.randn(2, 3, 64, 64, generator=g, dtype=torch.float64)  # 64 px -> 2 x 2 feature maps
    v2 = torch.randn(2, 3, 64, 64, generator=g, dtype=torch.float64)
    queue, agg_queue = model.queue.keys.clone(), model.aggregate_queue.keys.clone()
    # the same student pass as the model (train-mode BN over both views together), teacher in eval mode
    student_state = {k: v.clone() for k, v in model.student.state_dict().items()}
    s, p_s = model.student(torch.cat([v1, v2]))
    model.student.load_state_dict(student_state)  # undo the BN running-statistics update of this extra pass
    with torch.no_grad():
        t, p_t = model.teacher.eval()(torch.cat([v1, v2]))
    loss, terms = model(v1, v2)  # no momentum: the teacher is left as it is

    soft12, nce12 = ref_cd(s[:2].detach(), t[2:], queue, 0.2, 0.05)
    soft21, nce21 = ref_cd(s[2:].detach(), t[:2], queue, 0.2, 0.05)
    assert terms["cd_soft"].item() == pytest.approx((soft12 + soft21) / 2, rel=1e-7)
    assert terms["cd_nce"].item() == pytest.approx((nce12 + nce21) / 2, rel=1e-7)
    assert terms["align"].item() == pytest.approx(ref_align(p_s.detach(), p_t), rel=1e-7)
    z_s, z_t = ref_aggregate(p_t, t, p_s.detach(), 0.5, 0.1, "uniform")
    ref_ssa = (ref_nce(z_s[:2], z_t[2:], agg_queue, 0.2) + ref_nce(z_s[2:], z_t[:2], agg_queue, 0.2)) / 2
    assert terms["aggregation"].item() == pytest.approx(ref_ssa, rel=1e-7)
    expected = terms["cd_soft"] + 0.5 * terms["cd_nce"] + 2.0 * terms["align"] + 3.0 * terms["aggregation"]
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)
    # both views' teacher embeddings and aggregates were enqueued, the oldest first out
    assert torch.allclose(model.queue.keys[:4], t) and torch.allclose(model.queue.keys[4:], queue[4:])
    assert torch.allclose(model.aggregate_queue.keys[:4], z_t) and model.aggregate_queue.pointer.item() == 4


def test_method_presets_compute_only_their_terms():
    v = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    seed_terms = _tiny_model(LossSettings(cd_nce_weight=0, align_weight=0, aggregation_weight=0))(v, v)[1]
    moco_terms = _tiny_model(LossSettings(cd_soft_weight=0, align_weight=0, aggregation_weight=0))(v, v)[1]
    asym = _tiny_model(LossSettings(cd_soft_weight=0, align_weight=0, aggregation_weight=0, symmetric=False))
    asym_terms = asym(v, v)[1]
    assert set(seed_terms) == {"cd_soft"} and set(moco_terms) == {"cd_nce"} and set(asym_terms) == {"cd_nce"}
    assert asym.queue.pointer.item() == 2  # one direction: only the keys of view 2 are enqueued
    with pytest.raises(ValueError, match="symmetric"):
        _tiny_model(LossSettings(symmetric=False))


def test_loss_terms_run_in_float32_under_bf16_autocast():
    model = _tiny_model(LossSettings(rho=0.5)).float()
    g = torch.Generator().manual_seed(2)
    s, t = F.normalize(torch.randn(4, 8, generator=g), dim=1), F.normalize(torch.randn(4, 8, generator=g), dim=1)
    p_s = F.normalize(torch.randn(4, 9, 8, generator=g), dim=2)
    p_t = F.normalize(torch.randn(4, 9, 8, generator=g), dim=2)
    plain, z_plain = model.loss_terms(s, t, p_s, p_t)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under, z_under = model.loss_terms(s, t, p_s, p_t)
        bf16_nce = losses.info_nce(s[:2], t[2:], model.queue.keys, 0.2)  # what autocast does to a loss left in it
    assert set(under) == {"cd_soft", "cd_nce", "align", "aggregation"}
    for name, value in plain.items():
        assert under[name].dtype == torch.float32 and torch.equal(under[name], value), name
    assert torch.equal(z_under, z_plain)
    # the check can fail: the same InfoNCE under autocast, outside loss_terms, moves in bf16
    assert bf16_nce.item() != pytest.approx(losses.info_nce(s[:2], t[2:], model.queue.keys, 0.2).item(), rel=1e-6)


def _backward_once(model: PretrainModel) -> None:
    v = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    model.train()
    loss, _ = model(v, v.flip(3), momentum=0.99)
    loss.backward()


def test_backward_leaves_the_teacher_without_gradients():
    ema = _tiny_model(LossSettings())
    _backward_once(ema)
    assert all(p.grad is None for p in ema.teacher.parameters())
    assert all(p.grad is not None for p in ema.student.parameters() if p.requires_grad)


@pytest.mark.parametrize("heads", ["random", "align"])
def test_a_frozen_teachers_gradients_reach_only_its_heads_under_align(heads, tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "teacher.pth"
    torch.save(resnet_trunk("resnet18").state_dict(), path)
    teacher, _ = load_frozen_teacher(path, 32, 8, dense=True, shared=True, heads=heads, seed=1)
    student = Encoder(resnet_trunk("resnet18"), head_hidden=32, head_dim=8)
    model = PretrainModel(student, teacher, LossSettings(), queue_size=6, aggregate_queue_size=5, ema=False).double()
    _backward_once(model)
    assert all(p.grad is None for p in model.teacher.backbone.parameters())
    head_grads = [p.grad for p in model.teacher.heads.parameters()]
    if heads == "align":  # the one gradient into the teacher: L_align into its dense head
        assert all(g is not None and g.abs().sum() > 0 for g in head_grads)
    else:
        assert all(g is None for g in head_grads)


def test_shared_dense_head_is_the_global_mlp_at_every_location():
    heads = ProjectionHeads(16, 32, 8, shared=True).double()
    feature = torch.randn(2, 16, 3, 3, dtype=torch.float64)
    dense = heads.dense_embedding(feature)  # 2 x 9 x 8
    per_location = torch.stack([heads.mlp(feature[:, :, i // 3, i % 3]) for i in range(9)], dim=1)
    assert torch.allclose(dense, F.normalize(per_location, dim=2))
    # a 1x1 map: the dense embedding is the global one
    one = torch.randn(2, 16, 1, 1, dtype=torch.float64)
    assert torch.allclose(heads.dense_embedding(one)[:, 0], heads.global_embedding(one))


def test_head_norm_centres_each_path_with_its_own_statistics():
    heads = ProjectionHeads(16, 32, 8, shared=True, norm=True).double().train()
    feature = torch.rand(6, 16, 3, 3, dtype=torch.float64) + 1  # all positive, like pooled ReLU features
    g = heads.global_embedding(feature)
    # before the l2-norm: the batch mean of each output is 0 (the common component is gone), per path
    raw_global = heads.norm(heads.mlp(feature.mean(dim=(2, 3))))
    raw_dense = heads.dense_norm(heads.mlp(feature.flatten(2).transpose(1, 2)).flatten(0, 1))
    assert raw_global.mean(0).abs().max() < 1e-9 and raw_dense.mean(0).abs().max() < 1e-9
    assert torch.allclose(g, F.normalize(raw_global, dim=1))
    plain = ProjectionHeads(16, 32, 8, shared=True).double()
    plain.load_state_dict(heads.state_dict(), strict=False)
    cos = lambda e: (e @ e.T)[~torch.eye(6, dtype=torch.bool)].mean()  # noqa: E731
    assert cos(plain.global_embedding(feature)) > 0.5 > cos(g)  # without the norm the images' embeddings align
    assert set(heads.state_dict()) >= {"norm.running_mean", "dense_norm.running_var"}
    assert heads.norm.weight is None and heads.dense_norm.weight is None  # no affine: nothing to learn there


def test_a_frozen_teachers_head_norms_are_measured_and_its_backbone_statistics_kept():
    torch.manual_seed(0)
    teacher = Encoder(resnet_trunk("resnet18"), head_hidden=32, head_dim=8, norm=True).eval()
    before = {k: v.clone() for k, v in teacher.backbone.state_dict().items()}
    images = torch.randn(4, 3, 64, 64)
    calibrate_batch_norm(teacher, images, only=teacher.heads)
    assert all(torch.equal(before[k], v) for k, v in teacher.backbone.state_dict().items())
    with torch.no_grad():
        pooled = teacher.heads.mlp(teacher.backbone(images).mean(dim=(2, 3)))
    assert torch.allclose(teacher.heads.norm.running_mean, pooled.mean(0), atol=1e-5)
    assert torch.allclose(teacher.heads.norm.running_var, pooled.var(0), rtol=1e-4)
    assert not teacher.heads.norm.training and teacher.heads.norm.momentum == 0.1


# ---- queue, EMA ------------------------------------------------------------------------------------------------

def test_queue_is_fifo_with_wrap_around():
    queue = EmbeddingQueue(5, 2)
    first = F.normalize(torch.randn(3, 2), dim=1)
    second = F.normalize(torch.randn(3, 2), dim=1)
    queue.push(first)
    queue.push(second)  # writes rows 3, 4, then wraps to row 0
    assert torch.equal(queue.keys[[3, 4, 0]], second) and torch.equal(queue.keys[1:3], first[1:])
    assert queue.pointer.item() == 1
    queue.push(F.normalize(torch.randn(7, 2), dim=1))  # more keys than the queue holds: the newest 5 stay
    assert queue.pointer.item() == 1


def test_ema_update_and_momentum_schedule():
    student = torch.nn.BatchNorm1d(3)
    teacher = ema_teacher(student)
    with torch.no_grad():
        student.weight.fill_(2.0)
        student.running_mean.fill_(4.0)
        student.num_batches_tracked.fill_(7)
    ema_update(teacher, student, 0.75)
    assert torch.allclose(teacher.weight, torch.full((3,), 0.75 * 1 + 0.25 * 2))
    assert torch.allclose(teacher.running_mean, torch.full((3,), 0.25 * 4))
    assert teacher.num_batches_tracked.item() == 7 and not teacher.weight.requires_grad
    assert ema_momentum(0, 100, 0.99, 1.0) == pytest.approx(0.99)
    assert ema_momentum(99, 100, 0.99, 1.0) == pytest.approx(1.0)
    assert 0.99 < ema_momentum(50, 100, 0.99, 1.0) < 1.0
    assert ema_momentum(50, 100, 0.999, 1.0, "constant") == 0.999


# ---- views --------------------------------------------------------------------------------------------------------

def test_view_parameters_are_the_crop_box_and_flip_that_made_the_view():
    # a view whose pixels encode the image coordinates they came from (no photometric change)
    size, width, height = 64, 160, 120
    xs, ys = np.meshgrid(np.arange(width), np.arange(height))
    image = Image.fromarray(np.stack([xs, ys, np.zeros_like(xs)], axis=-1).astype(np.uint8))
    views = MoCoV2Views(size, scale=(0.3, 0.6))
    views.photometric = torch.nn.Identity()
    views.normalize = lambda img: torch.from_numpy(np.asarray(img, dtype=np.float32)).permute(2, 0, 1)
    seen_flip = set()
    for seed in range(6):
        torch.manual_seed(seed)
        view, (top, left, h, w, flipped, image_h, image_w) = views.view(image)
        seen_flip.add(bool(flipped))
        assert (image_h, image_w) == (height, width)
        for vy, vx in ((8, 8), (8, 56), (40, 24)):
            x = left + ((size - 1 - vx if flipped else vx) + 0.5) / size * w  # where the pixel came from
            y = top + (vy + 0.5) / size * h
            assert abs(view[0, vy, vx].item() - x) < w / size + 1 and abs(view[1, vy, vx].item() - y) < h / size + 1
    assert seen_flip == {True, False}


def test_views_depend_only_on_the_seed():
    image = Image.fromarray((np.random.default_rng(0).random((48, 40, 3)) * 255).astype(np.uint8))
    views = MoCoV2Views(32)
    a, b = views(image, 123), views(image, 123)
    torch.manual_seed(5)
    c = views(image, 124)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])
    assert a[0].shape == (3, 32, 32) and a[2].tolist()[5:] == [48.0, 40.0]
