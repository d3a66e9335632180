"""The trainer: learns, early-stops, restores the best state, writes history, fails clearly."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from liverec.errors import LiverecError
from liverec.train import TrainConfig, Trainer


class Line(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))


def quadratic_step(model: Line, batch: torch.Tensor) -> torch.Tensor:
    return ((model.w - batch) ** 2).mean()


def test_trainer_minimises_and_writes_history(tmp_path):
    cfg = TrainConfig(epochs=30, lr=0.1, progress=False)
    hist = tmp_path / "history.jsonl"
    model = Line()
    result = Trainer(cfg, history_path=hist).fit(model, quadratic_step, lambda e: [torch.tensor([3.0])] * 5)
    assert abs(model.w.item() - 3.0) < 0.05
    lines = [json.loads(x) for x in hist.read_text().splitlines()]
    assert [r["epoch"] for r in lines] == list(range(1, 31))
    assert lines[-1]["loss"] < lines[0]["loss"]
    assert result.best_epoch == 30


def test_zero_epochs_keep_the_initial_weights(tmp_path):
    model = Line()
    with torch.no_grad():
        model.w.fill_(1.5)  # e.g. a pre-trained NeuMF that validation says not to fine-tune
    hist = tmp_path / "history.jsonl"
    result = Trainer(TrainConfig(epochs=0, progress=False), history_path=hist).fit(
        model, quadratic_step, lambda e: [torch.tensor([3.0])]
    )
    assert model.w.item() == 1.5
    assert result.best_epoch == 0 and result.history == [] and hist.read_text() == ""


def test_early_stopping_restores_best_state():
    # validation score peaks at epoch 3, then only gets worse: stop after `patience` evaluations
    scores = iter([0.1, 0.2, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0])
    seen_w = []

    def evaluate(m):
        seen_w.append(m.w.item())
        return {"NDCG@20": next(scores)}

    cfg = TrainConfig(epochs=8, lr=0.1, patience=2, progress=False)
    model = Line()
    result = Trainer(cfg).fit(model, quadratic_step, lambda e: [torch.tensor([3.0])], evaluate)
    assert result.best_epoch == 3
    assert len(result.history) == 5  # epochs 4 and 5 did not improve -> stop
    assert model.w.item() == pytest.approx(seen_w[2])


def test_divergence_and_bad_monitor_are_user_errors():
    cfg = TrainConfig(epochs=2, progress=False)
    with pytest.raises(LiverecError, match="diverged"):
        Trainer(cfg).fit(Line(), lambda m, b: m.w.sum() * float("nan"), lambda e: [0])
    cfg = TrainConfig(epochs=2, progress=False, monitor="Recall@5")
    with pytest.raises(LiverecError, match="monitor"):
        Trainer(cfg).fit(Line(), quadratic_step, lambda e: [torch.tensor([1.0])], lambda m: {"NDCG@20": 0.0})


@pytest.mark.parametrize(
    "field,value", [("lr", 0.0), ("epochs", -1), ("optimizer", "lbfgs"), ("loss", "hinge"),
                    ("sampler", "magic"), ("device", "tpu")],
)
def test_invalid_config_is_rejected(field, value):
    with pytest.raises(LiverecError):
        TrainConfig(**{field: value}).validate()


def test_shared_negatives_match_per_row_loss_and_drop_collisions():
    """Shared negatives give the per-row loss on the same items; a collision adds nothing."""
    import numpy as np
    import scipy.sparse as sp

    from liverec.models.mf import MF, MFConfig
    from liverec.sampling import UniformSampler
    from liverec.train.pairwise import PairBatch, pair_loss

    torch.manual_seed(0)
    model = MF(MFConfig(embedding_dim=8), num_users=4, num_items=10)
    users, pos = torch.tensor([0, 1, 2, 3]), torch.tensor([1, 2, 3, 4])
    neg = torch.tensor([5, 6, 7])
    for loss in ("bpr", "bce", "softmax"):
        cfg = TrainConfig(loss=loss, l2=0.0)
        shared = pair_loss(model, PairBatch(users, pos, neg), cfg)
        per_row = pair_loss(model, PairBatch(users, pos, neg[None, :].expand(4, -1)), cfg)
        assert shared.item() == pytest.approx(per_row.item(), rel=1e-5)
    # user 0's positive 5 is also a shared negative: its term is dropped, not counted against it
    positives = sp.csr_matrix((np.ones(5), ([0, 0, 1, 2, 3], [1, 5, 2, 3, 4])), shape=(4, 10))
    collide = torch.from_numpy(UniformSampler(positives).is_positive(users.numpy()[:, None], neg.numpy()[None, :]))
    assert collide.sum().item() == 1 and collide[0, 0]
    cfg = TrainConfig(loss="bpr")
    masked = pair_loss(model, PairBatch(users, pos, neg, collide), cfg)
    with torch.no_grad():
        p = model.score(users, pos[:, None])[:, 0]
        n = model.score_shared(users, neg)
    terms = torch.nn.functional.softplus(n - p[:, None])
    expected = terms[~collide].sum() / terms.numel()
    assert masked.item() == pytest.approx(expected.item(), rel=1e-4)


def test_shared_negatives_as_large_as_the_catalogue_score_every_item():
    """num_negatives >= items: each batch scores the whole catalogue; each row's positives masked."""
    import numpy as np

    from liverec.data.interactions import Interactions
    from liverec.sampling import UniformSampler
    from liverec.train.pairwise import PairBatches

    train = Interactions(np.array([0, 0, 1, 2]), np.array([1, 5, 2, 3]), num_users=3, num_items=6)
    sampler = UniformSampler(train.csr())
    batches = PairBatches(train, sampler, 100, 2, np.random.default_rng(0), torch.device("cpu"), shared=True)
    seen = []
    for batch in batches:
        assert batch.neg.tolist() == list(range(6))
        for row, user in enumerate(batch.users.tolist()):
            seen.append(user)
            own = set(train.csr()[user].indices.tolist())
            assert {j for j in range(6) if batch.collide[row, j]} == own
    assert sorted(seen) == [0, 0, 1, 2]


def test_shared_negatives_need_uniform_or_popularity():
    with pytest.raises(LiverecError, match="shared_negatives"):
        TrainConfig(shared_negatives=True, sampler="hard").validate()


def test_auto_monitor_is_ndcg_at_largest_k():
    from liverec.train.trainer import resolve_monitor

    assert resolve_monitor("auto", {"HR@10": 0.5, "NDCG@10": 0.2, "NDCG@50": 0.3}) == "NDCG@50"
    assert resolve_monitor("HR@10", {"HR@10": 0.5}) == "HR@10"
    with pytest.raises(LiverecError, match="not computed"):
        resolve_monitor("auto", {"HR@10": 0.5})


def test_cosine_schedule_decays_to_zero_over_training():
    from liverec.train.trainer import scheduled_lr

    cfg = TrainConfig(epochs=4, lr=0.2, lr_schedule="cosine")
    lrs = [scheduled_lr(cfg, e, i, 2) for e in range(1, 5) for i in range(2)]
    assert lrs[0] == pytest.approx(0.2) and lrs == sorted(lrs, reverse=True)
    assert scheduled_lr(cfg, 3, 0, 2) == pytest.approx(0.1)  # half way: half the rate
    assert 0 < lrs[-1] < 0.01
    assert scheduled_lr(TrainConfig(lr=0.2), 3, 1, 2) == 0.2
    with pytest.raises(LiverecError, match="lr_schedule"):
        TrainConfig(lr_schedule="step").validate()


@pytest.mark.parametrize("shared", [False, True])
def test_pair_l2_counts_every_scored_pair(shared):
    """l2_per = pair equals the mean over scored (user, item) pairs of |p_u|² + |q_i|²."""
    from liverec.models.mf import MF, MFConfig
    from liverec.train.pairwise import PairBatch, l2_penalty

    torch.manual_seed(0)
    model = MF(MFConfig(embedding_dim=4), num_users=3, num_items=10)
    users, pos = torch.tensor([0, 1, 2]), torch.tensor([1, 2, 3])
    if shared:
        neg = torch.tensor([4, 5])
        items, rows = torch.cat([pos, neg]), [torch.cat([pos[b : b + 1], neg]) for b in range(3)]
    else:
        neg = torch.tensor([[4, 5], [6, 7], [8, 9]])
        items = torch.cat([pos[:, None], neg], dim=1)
        rows = list(items)
    pairs = [model.regularization(users[b : b + 1], item.view(1)) for b in range(3) for item in rows[b]]
    expected = torch.stack(pairs).mean()
    got = l2_penalty(model, PairBatch(users, pos, neg), items, "pair")
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_user_pair_sampling_weights_users_alike_and_draws_their_own_positives():
    """pair_sampling = users: as many pairs as interactions, users uniform (a heavy user is not
    drawn more often), each pair one of that user's training positives; the default shuffles every
    pair exactly once."""
    import numpy as np

    from liverec.data.interactions import Interactions
    from liverec.sampling import UniformSampler
    from liverec.train.pairwise import PairBatches

    # user 0 has 90 positives, users 1..9 one each (user 10 has none and is never drawn)
    users = np.array([0] * 90 + list(range(1, 10)))
    items = np.array(list(range(90)) + list(range(90, 99)))
    train = Interactions(users, items, num_users=11, num_items=120)
    csr = train.csr()
    sampler = UniformSampler(csr)

    def epoch_pairs(mode, epoch):
        b = PairBatches(train, sampler, 1, 32, None, torch.device("cpu"), pair_sampling=mode)
        steps = list(b.for_epoch(seed=0, epoch=epoch))
        return torch.cat([s.users for s in steps]).numpy(), torch.cat([s.pos for s in steps]).numpy()

    u, p = epoch_pairs("interactions", 1)
    assert sorted(zip(u.tolist(), p.tolist(), strict=True)) == sorted(zip(users.tolist(), items.tolist(), strict=True))

    drawn = [epoch_pairs("users", e) for e in range(1, 41)]
    u = np.concatenate([d[0] for d in drawn])
    p = np.concatenate([d[1] for d in drawn])
    assert all(len(d[0]) == len(users) for d in drawn)  # an epoch keeps the number of pairs
    assert np.asarray(csr[u, p]).ravel().all()  # every pair is a training positive of its user
    share = np.bincount(u, minlength=11) / len(u)
    assert share[10] == 0
    assert np.allclose(share[:10], 0.1, atol=0.02)  # 3,960 draws: user 0 at 10%, not 91%
    assert len(np.unique(p[u == 0])) > 80  # user 0's positives are all reachable
    with pytest.raises(LiverecError, match="pair_sampling"):
        TrainConfig(pair_sampling="items").validate()
