"""SASRec: causal mask, padding invariance, stored histories, sequence scoring, losses, training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from liverec.data.interactions import Interactions
from liverec.data.split import DataConfig, make_dataset
from liverec.data.synthetic import synthetic_events
from liverec.errors import LiverecError
from liverec.evaluate import EvalConfig, evaluate
from liverec.experiment import RunConfig, fit_model
from liverec.models import build_model
from liverec.models.sasrec import SASRec
from liverec.train.sequence import SequenceBatches, sequence_loss
from liverec.train.trainer import TrainConfig

NUM_USERS, NUM_ITEMS, MAX_LEN = 5, 30, 8


def model(**params) -> SASRec:
    torch.manual_seed(0)
    params = {"max_len": MAX_LEN, "embedding_dim": 16, "num_heads": 2, **params}
    return build_model("sasrec", params, NUM_USERS, NUM_ITEMS).eval()


def ids(items: list[int], width: int = MAX_LEN) -> torch.Tensor:
    """Catalogue indices -> one left-padded row of model ids (index + 1, 0 = padding)."""
    row = torch.zeros(1, width, dtype=torch.long)
    row[0, width - len(items) :] = torch.tensor(items) + 1
    return row


@pytest.mark.parametrize(("norm", "positions"), [("pre", "right"), ("query", "right"), ("pre", "left")])
@torch.no_grad()
def test_causal_mask_no_future_leakage(norm: str, positions: str) -> None:
    m = model(norm=norm, positions=positions)
    seq = ids([3, 7, 1, 9, 4, 2, 8, 5])
    changed = seq.clone()
    changed[0, 5:] = torch.tensor([20, 21, 22]) + 1  # rewrite the last three items
    a, b = m.encode(seq), m.encode(changed)
    torch.testing.assert_close(a[:, :5], b[:, :5], rtol=0, atol=1e-6)  # earlier states unchanged
    assert not torch.allclose(a[:, 5:], b[:, 5:])  # the rewritten positions do change


@pytest.mark.parametrize(("norm", "positions"), [("pre", "right"), ("query", "right"), ("pre", "left")])
@torch.no_grad()
def test_left_padding_does_not_change_outputs(norm: str, positions: str) -> None:
    m = model(norm=norm, positions=positions)
    items = [3, 7, 1, 9]
    reference = m.encode(ids(items, width=4))  # no padding at all
    for width in (5, MAX_LEN):
        padded = m.encode(ids(items, width=width))
        torch.testing.assert_close(padded[:, -4:], reference, rtol=1e-5, atol=1e-5)
    # a batch mixing lengths gives each row what it gets alone
    batch = torch.cat([ids(items), ids([5, 6, 7, 8, 9, 10, 11, 12])])
    torch.testing.assert_close(m.last_state(batch)[0], reference[0, -1], rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_stored_history_is_the_latest_items_in_time_order() -> None:
    m = model(max_len=3)
    # user 0: items 4, 2, 9, 6 at times 40, 10, 30, 20 (array order is not time order); user 1: one item
    history = Interactions(
        np.array([0, 0, 0, 0, 1]), np.array([4, 2, 9, 6, 1]), NUM_USERS, NUM_ITEMS,
        timestamp=np.array([40, 10, 30, 20, 5]),
    )
    m.set_history(history)
    assert m.history[0].tolist() == [6 + 1, 9 + 1, 4 + 1]  # oldest first, latest last
    assert m.history[1].tolist() == [0, 0, 1 + 1]
    assert m.history[2].tolist() == [0, 0, 0]
    users = torch.tensor([0, 1])
    torch.testing.assert_close(m.score_all(users), m.score_sequences([[2, 6, 9, 4], [1]]))
    # a user with no history gets popularity instead of a state computed from padding
    torch.testing.assert_close(m.score_all(torch.tensor([2]))[0], m.item_count)


def test_score_sequences_rejects_bad_input() -> None:
    m = model()
    with pytest.raises(LiverecError, match="empty"):
        m.score_sequences([[1, 2], []])
    with pytest.raises(LiverecError, match="0..29"):
        m.score_sequences([[1, NUM_ITEMS]])
    with pytest.raises(LiverecError, match="divisible"):
        build_model("sasrec", {"embedding_dim": 10, "num_heads": 3}, 2, 2)
    with pytest.raises(LiverecError, match="max_len"):
        m.encode(torch.ones(1, MAX_LEN + 1, dtype=torch.long))
    with pytest.raises(LiverecError, match="positions"):
        build_model("sasrec", {"positions": "middle"}, 2, 2)


@torch.no_grad()
def test_left_positions_count_from_the_oldest_item() -> None:
    """positions = "left": the k-th item of a window gets P[k-1] whatever the padding, so a short
    history's latest item is not at P[L-1]; "right" gives it P[L-1]."""
    left, right = model(positions="left"), model(positions="right")
    right.load_state_dict(left.state_dict())
    items = [3, 7, 1]
    x = left.item_emb(ids(items)) * 4.0  # sqrt(embedding_dim = 16)
    p_left = left.pos_emb.weight[[0, 1, 2]]
    p_right = right.pos_emb.weight[[MAX_LEN - 3, MAX_LEN - 2, MAX_LEN - 1]]
    # with dropout off, encode's first step is x + P; compare through a zero-block model
    for m, p in ((left, p_left), (right, p_right)):
        m.blocks = torch.nn.ModuleList()
        torch.testing.assert_close(m.encode(ids(items))[0, -3:], m.ln_out(x[0, -3:] + p))
    with pytest.raises(LiverecError, match="history covers"):
        m.set_history(Interactions(np.array([0]), np.array([0]), NUM_USERS + 1, NUM_ITEMS))


def sequences(rows: dict[int, list[int]]) -> Interactions:
    users = np.concatenate([[u] * len(items) for u, items in rows.items()]).astype(np.int64)
    items = np.concatenate(list(rows.values())).astype(np.int64)
    return Interactions(users, items, NUM_USERS, NUM_ITEMS, timestamp=np.arange(len(items)))


def test_batches_pair_each_position_with_the_next_item() -> None:
    train = sequences({0: [5, 6, 7, 8, 9], 1: [3, 4], 2: [11], 4: [1, 2, 3]})
    cfg = TrainConfig(loss="bce", batch_size=2, num_negatives=1)
    from liverec.sampling import UniformSampler

    sampler = UniformSampler(train.csr())
    batches = SequenceBatches(train, 3, sampler, cfg, np.random.default_rng(0), torch.device("cpu"))
    seen = {}
    for b in batches:
        for u, x, y in zip(b.users.tolist(), b.inputs.tolist(), b.targets.tolist(), strict=True):
            seen[u] = ([i - 1 for i in x if i > 0], [t for t in y if t >= 0])
        assert b.negatives.shape == (int((b.targets >= 0).sum()), 1)
        owners = b.users.repeat_interleave((b.targets >= 0).sum(1))
        assert not sampler.is_positive(owners.numpy()[:, None], b.negatives.numpy()).any()
    # user 0 keeps the latest L + 1 = 4 items; user 2 (one item) has nothing to predict
    assert seen == {0: ([6, 7, 8], [7, 8, 9]), 1: ([3], [4]), 4: ([1, 2], [2, 3])}
    assert len(batches) == 2


def test_length_buckets_only_regroup_users() -> None:
    lengths = np.array([2 + (u * 7) % 11 for u in range(40)])  # 2..12 items each
    users = np.repeat(np.arange(40), lengths)
    items = np.concatenate([np.arange(n) for n in lengths])
    train = Interactions(users, items, 40, NUM_ITEMS, timestamp=np.arange(len(items)))
    widths = {}
    for buckets in (1, 8):
        cfg = TrainConfig(loss="ce", batch_size=5, bucket_batches=buckets)
        batches = list(SequenceBatches(train, 12, None, cfg, np.random.default_rng(0), torch.device("cpu")))
        users = sorted(u for b in batches for u in b.users.tolist())
        assert users == list(range(40))  # every user once per epoch, either way
        widths[buckets] = sum(b.inputs.shape[1] * len(b.users) for b in batches)  # padded positions
    assert widths[8] < widths[1]  # sorting by length within windows cuts the padding


@pytest.mark.parametrize(
    "loss,negatives,shared", [("bce", 1, False), ("bpr", 2, False), ("softmax", 8, True), ("gbce", 8, True), ("ce", 1, False)]
)
def test_every_loss_trains_all_positions(loss: str, negatives: int, shared: bool) -> None:
    train = sequences({0: [5, 6, 7, 8, 9], 1: [3, 4, 5], 3: [10, 11, 12, 13]})
    cfg = TrainConfig(loss=loss, batch_size=4, num_negatives=negatives, shared_negatives=shared)
    from liverec.train.sequence import make_sequence_batches

    m = model().train()
    batch = next(iter(make_sequence_batches(m, train, train.csr(), cfg, np.random.default_rng(0), torch.device("cpu"))))
    value = sequence_loss(m, batch, cfg)
    value.backward()
    assert torch.isfinite(value) and m.item_emb.weight.grad.abs().sum() > 0
    assert m.pos_emb.weight.grad[:-4].abs().sum() == 0  # batch width 4: unused positions get nothing
    if loss == "ce":  # the chunked loss equals plain cross-entropy over every target position
        m.eval()
        h = m.encode(batch.inputs)[batch.targets >= 0]
        expected = F.cross_entropy(m.logits(h), batch.targets[batch.targets >= 0])
        torch.testing.assert_close(sequence_loss(m, batch, cfg), expected, rtol=1e-5, atol=1e-6)


def test_sequence_options_are_checked() -> None:
    ds = make_dataset(synthetic_events(num_users=20, num_items=30, events_per_user=6, seed=0), DataConfig())
    for bad, message in (({"sampler": "hard"}, "sampler"), ({"l2": 1e-4}, "weight_decay")):
        cfg = RunConfig(model="sasrec", data="x", train=TrainConfig(epochs=1, progress=False, **bad))
        with pytest.raises(LiverecError, match=message):
            fit_model(cfg, ds)


def test_fit_and_evaluate_reveal_history_by_stage() -> None:
    """End to end on synthetic sequences: the trainer learns (beats popularity on validation), and
    the evaluator hands the model train for "valid" and train + valid for "test"."""
    ds = make_dataset(synthetic_events(num_users=150, num_items=60, events_per_user=20, seed=2), DataConfig())
    cfg = RunConfig(
        model="sasrec", data="synthetic", params={"max_len": 10, "embedding_dim": 16, "dropout": 0.1},
        train=TrainConfig(epochs=15, batch_size=32, lr=5e-3, loss="ce", progress=False, patience=0),
        eval=EvalConfig(ks=(10,)),
    )
    m, best_epoch, history = fit_model(cfg, ds)
    assert len(history) == 15 and 1 <= best_epoch <= 15
    pop = build_model("pop", {}, ds.num_users, ds.num_items).fit(ds.train.csr())
    ours, base = evaluate(m, ds, "valid", cfg.eval), evaluate(pop, ds, "valid", cfg.eval)
    assert ours["NDCG@10"] > base["NDCG@10"]
    def latest(part: Interactions, user: int) -> int:  # by hand: the user's newest event
        mine = part.user == user
        return int(part.item[mine][np.argmax(part.timestamp[mine])])

    users = np.unique(ds.valid.user)
    assert [int(m.history[u, -1]) - 1 for u in users] == [latest(ds.train, u) for u in users]
    evaluate(m, ds, "test", EvalConfig(protocol="sampled:20", ks=(10,)))
    assert [int(m.history[u, -1]) - 1 for u in users] == [latest(ds.valid, u) for u in users]
    assert [int(m.history[u, -2]) - 1 for u in users] == [latest(ds.train, u) for u in users]


def test_saved_run_holds_every_users_latest_sequence(tmp_path) -> None:
    """A trained run is saved (and published) knowing each user's latest item, the test one included."""
    from liverec.experiment import load_run, train_run
    from liverec.registry import load_version, publish

    ev = synthetic_events(num_users=40, num_items=50, events_per_user=8, seed=4)
    data = tmp_path / "events.csv"
    data.write_text("user,item,timestamp\n" + "".join(
        f"{u},{i},{t}\n" for u, i, t in zip(ev.user, ev.item, ev.timestamp, strict=True)))
    cfg = RunConfig(model="sasrec", data=str(data), params={"max_len": 5, "embedding_dim": 8},
                    train=TrainConfig(epochs=1, progress=False), eval=EvalConfig(ks=(5,)))
    train_run(cfg, tmp_path / "run")
    _, m, users, items = load_run(tmp_path / "run")
    newest = {}
    for u, i, t in zip(ev.user.tolist(), ev.item.tolist(), ev.timestamp.tolist(), strict=True):
        if t >= newest.get(u, (-1, None))[0]:
            newest[u] = (t, i)
    uidx = users.encode(np.array(sorted(newest)))
    expected = items.encode(np.array([newest[u][1] for u in sorted(newest)]))
    np.testing.assert_array_equal(m.history[uidx, -1].numpy() - 1, expected)
    art = load_version(tmp_path / "reg", publish(tmp_path / "run", tmp_path / "reg"))
    scores = torch.from_numpy(art.user_vectors[:3] @ art.item_vectors.T)
    torch.testing.assert_close(scores, m.score_all(torch.arange(3)), rtol=1e-4, atol=1e-4)


def test_warm_start_from_a_run(tmp_path) -> None:
    from liverec.experiment import load_run, train_run

    ev = synthetic_events(num_users=30, num_items=40, events_per_user=6, seed=5)
    data = tmp_path / "events.csv"
    data.write_text("user,item,timestamp\n" + "".join(
        f"{u},{i},{t}\n" for u, i, t in zip(ev.user, ev.item, ev.timestamp, strict=True)))
    params = {"max_len": 4, "embedding_dim": 8}
    first = RunConfig(model="sasrec", data=str(data), params=params, train=TrainConfig(epochs=1, progress=False))
    train_run(first, tmp_path / "a")
    _, trained, _, _ = load_run(tmp_path / "a")
    again = RunConfig(model="sasrec", data=str(data), params=params,
                      train=TrainConfig(epochs=1, lr=1e-12, progress=False, init_from=str(tmp_path / "a")))
    train_run(again, tmp_path / "b")
    _, continued, _, _ = load_run(tmp_path / "b")
    torch.testing.assert_close(continued.item_emb.weight, trained.item_emb.weight, rtol=0, atol=1e-6)
    wrong = RunConfig(model="sasrec", data=str(data), params={**params, "embedding_dim": 16},
                      train=TrainConfig(epochs=1, progress=False, init_from=str(tmp_path / "a")))
    with pytest.raises(LiverecError, match="do not fit"):
        train_run(wrong, tmp_path / "c")


def test_random_windows_cover_long_histories() -> None:
    from liverec.sampling import UniformSampler

    train = sequences({0: list(range(10)), 1: [20, 21]})
    cfg = TrainConfig(loss="ce", batch_size=8, sequence_window="random")
    batches = SequenceBatches(train, 3, UniformSampler(train.csr()), cfg, np.random.default_rng(0), torch.device("cpu"))
    ends = set()
    for _ in range(60):
        for b in batches:
            x, y = b.inputs[b.users == 0][0], b.targets[b.users == 0][0]
            assert (x > 0).all() and x.tolist() == [i + 1 for i in range(x[0] - 1, x[0] + 2)]
            assert y.tolist() == [i - 1 for i in x[1:].tolist()] + [int(x[-1])]  # next items
            ends.add(int(y[-1]))
            assert b.targets[b.users == 1][0][-1] == 21  # a short history is always whole
    assert ends == set(range(3, 10))  # every window of 4 consecutive items occurs
