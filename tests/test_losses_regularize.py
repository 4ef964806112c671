"""Losses and regularisers against hand computations on tiny tensors (milliseconds each)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from deeprecipe.train.losses import classification_loss, distillation_loss
from deeprecipe.train.regularize import apply_max_norm, clip_gradients, loss_penalty, weight_tensors

LOGITS = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
TARGET = torch.tensor([0, 1])


def _log_softmax(row):
    z = math.log(sum(math.exp(v) for v in row))
    return [v - z for v in row]


def _ce_by_hand(logits, target, eps=0.0):
    total = 0.0
    for row, t in zip(logits.tolist(), target.tolist()):
        lp = _log_softmax(row)
        total += -(1 - eps) * lp[t] - eps * sum(lp) / len(lp)
    return total / len(target)


def test_cross_entropy_with_and_without_label_smoothing():
    assert classification_loss(LOGITS, TARGET).item() == pytest.approx(_ce_by_hand(LOGITS, TARGET))
    assert classification_loss(LOGITS, TARGET, 0.1).item() == pytest.approx(_ce_by_hand(LOGITS, TARGET, 0.1))


def test_cross_entropy_of_soft_targets_and_low_precision_logits():
    soft = torch.tensor([[0.7, 0.3, 0.0], [0.0, 0.5, 0.5]])
    by_hand = -sum(sum(p * l for p, l in zip(s, _log_softmax(r))) for s, r in zip(soft.tolist(), LOGITS.tolist())) / 2
    assert classification_loss(LOGITS, soft).item() == pytest.approx(by_hand)
    out = classification_loss(LOGITS.to(torch.bfloat16), TARGET)
    assert out.dtype == torch.float32  # computed in float32 whatever the autocast dtype
    assert out.item() == pytest.approx(_ce_by_hand(LOGITS.to(torch.bfloat16).float(), TARGET), rel=1e-6)


def test_distillation_is_the_hinton_mix():
    teacher = torch.tensor([[1.0, 0.0, 0.5], [0.0, 2.0, 1.0]])
    for t, alpha, eps in ((2.0, 0.3, 0.0), (4.0, 0.9, 0.1), (1.0, 0.0, 0.0)):
        kl = 0.0
        for s_row, t_row in zip(LOGITS.tolist(), teacher.tolist()):
            ls = _log_softmax([v / t for v in s_row])
            lt = _log_softmax([v / t for v in t_row])
            kl += sum(math.exp(b) * (b - a) for a, b in zip(ls, lt))
        expected = (1 - alpha) * _ce_by_hand(LOGITS, TARGET, eps) + alpha * t * t * kl / 2
        got = distillation_loss(LOGITS, teacher, TARGET, temperature=t, alpha=alpha, label_smoothing=eps)
        assert got.item() == pytest.approx(expected, rel=1e-6)
    half = distillation_loss(LOGITS.half(), teacher.half(), TARGET, 2.0, 0.5)
    assert half.dtype == torch.float32
    assert distillation_loss(LOGITS, teacher, TARGET, 2.0, 0.5).item() == pytest.approx(
        distillation_loss(LOGITS, teacher, TARGET, 2.0, 0.5, 0.0).item())


# ------------------------------------------------------------------------------------------ regularisers
def _model():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2, 3))
    m[3].bias.requires_grad_(False)
    return m


def test_weight_tensors_are_trainable_tensors_of_two_or_more_dims():
    m = _model()
    assert [tuple(p.shape) for p in weight_tensors(m)] == [(2, 1, 3, 3), (3, 2)]
    m[3].weight.requires_grad_(False)
    assert [tuple(p.shape) for p in weight_tensors(m)] == [(2, 1, 3, 3)]


def test_penalty_is_l1_plus_half_l2_over_weights_only():
    m = _model()
    conv, lin = m[0].weight, m[3].weight
    assert loss_penalty(m, 0.0, 0.0) == 0.0 and isinstance(loss_penalty(m, 0, 0), float)
    l1 = (conv.abs().sum() + lin.abs().sum()).item()
    l2 = (conv.pow(2).sum() + lin.pow(2).sum()).item()
    assert loss_penalty(m, 0.01, 0.0).item() == pytest.approx(0.01 * l1)
    assert loss_penalty(m, 0.0, 0.1).item() == pytest.approx(0.05 * l2)
    assert loss_penalty(m, 0.01, 0.1).item() == pytest.approx(0.01 * l1 + 0.05 * l2)
    penalty = loss_penalty(m, 0.0, 1.0)
    penalty.backward()
    assert torch.allclose(lin.grad, lin.detach())  # d(½‖w‖²)/dw = w: the penalty keeps the graph


def test_max_norm_caps_each_unit_and_leaves_the_rest():
    lin = nn.Linear(2, 3, bias=False)
    conv1, conv3 = nn.Conv1d(1, 2, 2, bias=False), nn.Conv3d(1, 1, 1, bias=False)
    bn = nn.BatchNorm1d(2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]]))
        conv1.weight.copy_(torch.tensor([[[6.0, 8.0]], [[0.6, 0.8]]]))
        conv3.weight.fill_(5.0)
        bn.weight.fill_(7.0)
    m = nn.Sequential(lin, conv1, conv3, bn)
    apply_max_norm(m, 2.0)
    assert torch.allclose(lin.weight, torch.tensor([[1.2, 1.6], [0.3, 0.4], [0.0, 0.0]]))  # a zero row stays 0
    assert torch.allclose(conv1.weight, torch.tensor([[[1.2, 1.6]], [[0.6, 0.8]]]))
    assert torch.allclose(conv3.weight, torch.full((1, 1, 1, 1, 1), 2.0))
    assert torch.all(bn.weight == 7.0)
    conv = nn.Conv2d(1, 2, 2, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)  # each unit: norm 2 (four ones)
    apply_max_norm(conv, 1.0)
    assert torch.allclose(conv.weight, torch.full((2, 1, 2, 2), 0.5))
    assert conv.weight.grad_fn is None


def _params(*grads):
    ps = []
    for g in grads:
        p = nn.Parameter(torch.zeros(len(g)))
        p.grad = torch.tensor(g)
        ps.append(p)
    return ps


def test_clipping_by_norm_then_by_value():
    a, b = _params([3.0], [4.0])
    clip_gradients([a, b], 1.0, 0.7)
    assert a.grad.item() == pytest.approx(0.6) and b.grad.item() == pytest.approx(0.7)  # value clip came last
    a, b = _params([3.0], [4.0])
    clip_gradients(iter([a, b]), 1.0, None)
    assert (a.grad.item(), b.grad.item()) == pytest.approx((0.6, 0.8))
    a, b = _params([3.0], [-4.0])
    clip_gradients([a, b], None, 2.0)
    assert (a.grad.item(), b.grad.item()) == (2.0, -2.0)
    a, = _params([3.0])
    clip_gradients([a], 0.0, 0.0)
    assert a.grad.item() == 3.0
    a, = _params([3.0])
    clip_gradients([a], 10.0, 5.0)  # under both limits: untouched
    assert a.grad.item() == 3.0


def test_clipping_skips_parameters_without_gradients(monkeypatch):
    a, = _params([3.0])
    frozen = nn.Parameter(torch.zeros(1))
    seen = []
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda ps, n: seen.append(list(ps)))
    monkeypatch.setattr(torch.nn.utils, "clip_grad_value_", lambda ps, v: seen.append(list(ps)))
    clip_gradients([a, frozen], 1.0, 1.0)
    assert seen == [[a], [a]]


def test_smoothed_loss_floor_is_the_least_loss_a_perfect_model_reaches():
    from deeprecipe.train.losses import smoothed_loss_floor
    for eps, c in ((0.1, 10), (0.2, 3), (0.05, 100), (0.1, 2)):
        target = torch.full((1, c), eps / c)
        target[0, 0] += 1 - eps
        best = classification_loss(target.log(), torch.tensor([0]), eps).item()  # logits = log of the target itself
        assert smoothed_loss_floor(eps, c) == pytest.approx(best, rel=1e-5)
    assert smoothed_loss_floor(0.1, 10) == pytest.approx(0.5003, abs=1e-4)
    assert smoothed_loss_floor(0.1, None) == smoothed_loss_floor(0.1, 1) == smoothed_loss_floor(0.1, 10)
    assert smoothed_loss_floor(0.0, 10) == 0.0 and smoothed_loss_floor(-0.1, 10) == 0.0
