"""Losses against values computed by hand (math.log / math.exp)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from liverec.losses import bce_loss, bpr_loss, sampled_softmax_loss, softmax_loss


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


POS = torch.tensor([2.0, 0.0], dtype=torch.float64)
NEG = torch.tensor([[1.0, 3.0], [0.0, -1.0]], dtype=torch.float64)


def test_bpr_hand_computed():
    diffs = [2 - 1, 2 - 3, 0 - 0, 0 + 1]
    expected = sum(-math.log(sigmoid(d)) for d in diffs) / 4
    assert bpr_loss(POS, NEG).item() == pytest.approx(expected, rel=1e-12)


def test_bpr_single_negative_vector():
    expected = -math.log(sigmoid(1.0))
    assert bpr_loss(torch.tensor([1.0]), torch.tensor([0.0])).item() == pytest.approx(expected, rel=1e-6)


def test_bce_mean_over_all_terms():
    terms = [-math.log(sigmoid(2.0)), -math.log(sigmoid(0.0))]  # positives, label 1
    terms += [-math.log(1 - sigmoid(x)) for x in (1.0, 3.0, 0.0, -1.0)]  # negatives, label 0
    assert bce_loss(POS, NEG).item() == pytest.approx(sum(terms) / 6, rel=1e-12)


def test_bce_is_stable_for_large_logits():
    loss = bce_loss(torch.tensor([100.0]), torch.tensor([[-100.0]]))
    assert torch.isfinite(loss) and loss.item() == pytest.approx(0.0, abs=1e-30)


def test_sampled_softmax_hand_computed():
    rows = [(2.0, [1.0, 3.0]), (0.0, [0.0, -1.0])]
    expected = sum(
        -p + math.log(math.exp(p) + sum(math.exp(n) for n in ns)) for p, ns in rows
    ) / 2
    assert sampled_softmax_loss(POS, NEG).item() == pytest.approx(expected, rel=1e-12)


def test_sampled_softmax_logq_correction():
    log_q_pos = torch.tensor([math.log(0.5), math.log(0.1)], dtype=torch.float64)
    log_q_neg = torch.tensor([math.log(0.2), math.log(0.4)], dtype=torch.float64)  # shared (N,)
    rows = [
        (2.0 - math.log(0.5), [1.0 - math.log(0.2), 3.0 - math.log(0.4)]),
        (0.0 - math.log(0.1), [0.0 - math.log(0.2), -1.0 - math.log(0.4)]),
    ]
    expected = sum(-p + math.log(math.exp(p) + sum(math.exp(n) for n in ns)) for p, ns in rows) / 2
    got = sampled_softmax_loss(POS, NEG, log_q_pos=log_q_pos, log_q_neg=log_q_neg)
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_full_softmax_hand_computed():
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    target = torch.tensor([2, 0])
    lse0 = math.log(math.exp(1) + math.exp(2) + math.exp(3))
    expected = ((lse0 - 3.0) + math.log(3.0)) / 2
    assert softmax_loss(logits, target).item() == pytest.approx(expected, rel=1e-12)


def test_losses_backpropagate():
    pos = torch.tensor([0.5, -0.2], requires_grad=True)
    neg = torch.tensor([[0.1], [0.3]], requires_grad=True)
    for fn in (bpr_loss, bce_loss, sampled_softmax_loss):
        fn(pos, neg).backward()
    assert pos.grad is not None and torch.all(pos.grad < 0)  # raising positives lowers every loss


def test_gbce_reduces_to_bce_at_t0_and_weights_positives() -> None:
    from liverec.losses import gbce_loss

    pos, neg = torch.tensor([0.5, -1.0]), torch.tensor([[0.2, 0.1], [1.0, -2.0]])
    torch.testing.assert_close(gbce_loss(pos, neg, num_items=100, t=0.0), bce_loss(pos, neg))
    # t = 1: beta = alpha = N / (I - 1) scales the positives' terms
    alpha = 2 / 99
    expected = (alpha * F.softplus(-pos).sum() + F.softplus(neg).sum()) / 6
    torch.testing.assert_close(gbce_loss(pos, neg, num_items=100, t=1.0), expected)


def test_full_softmax_loss_matches_cross_entropy_with_gradients() -> None:
    from liverec.losses import full_softmax_loss

    g = torch.Generator().manual_seed(0)
    h = torch.randn(37, 8, generator=g, requires_grad=True)
    w = torch.randn(11, 8, generator=g, requires_grad=True)
    t = torch.randint(11, (37,), generator=g)
    ours = full_softmax_loss(h, w, t, chunk_size=5)
    (ours * 3).backward()
    gh, gw = h.grad.clone(), w.grad.clone()
    h.grad = w.grad = None
    ref = F.cross_entropy(h @ w.T, t)
    (ref * 3).backward()
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(gh, h.grad)
    torch.testing.assert_close(gw, w.grad)


def test_pair_loss_full_softmax_and_gbce_paths() -> None:
    from liverec.losses import gbce_loss
    from liverec.models import build_model
    from liverec.train.pairwise import PairBatch, pair_loss
    from liverec.train.trainer import TrainConfig

    torch.manual_seed(0)
    mf = build_model("mf", {"embedding_dim": 4}, 3, 6)
    batch = PairBatch(torch.tensor([0, 2]), torch.tensor([1, 5]), torch.tensor([[2, 3], [0, 4]]))
    ce = pair_loss(mf, batch, TrainConfig(loss="ce"))
    torch.testing.assert_close(ce, F.cross_entropy(mf.score_all(batch.users), batch.pos))
    scores = mf.score(batch.users, torch.cat([batch.pos[:, None], batch.neg], 1))
    expected = gbce_loss(scores[:, 0], scores[:, 1:], num_items=6, t=0.5)
    torch.testing.assert_close(pair_loss(mf, batch, TrainConfig(loss="gbce", gbce_t=0.5)), expected)
