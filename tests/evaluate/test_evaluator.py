"""The evaluator on a tiny hand-made dataset and a model with fixed scores."""

from __future__ import annotations

from dataclasses import dataclass
from math import log2
from pathlib import Path

import numpy as np
import pytest
import torch

from liverec.data.dataset import Dataset
from liverec.data.interactions import Interactions
from liverec.data.vocab import IdVocab
from liverec.errors import LiverecError
from liverec.evaluate import EvalConfig, evaluate
from liverec.models.base import Recommender


@dataclass
class TableConfig:
    pass


class TableModel(Recommender):
    """Scores read from a fixed (num_users, num_items) table; records the candidates it scores."""

    Config = TableConfig
    trainable = False

    def __init__(self, table: np.ndarray) -> None:
        super().__init__(TableConfig(), *table.shape)
        self.register_buffer("table", torch.as_tensor(table, dtype=torch.float32))
        self.scored: list[np.ndarray] = []

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        self.scored.append(items.numpy().copy())
        return self.table[users[:, None], items]

    def score_all(self, users: torch.Tensor) -> torch.Tensor:
        return self.table[users]


class PopularityModel(TableModel):
    """Same scores for everyone, returned as an expanded view of one buffer row."""

    def score_all(self, users: torch.Tensor) -> torch.Tensor:
        return self.table[0].expand(len(users), -1)


def interactions(pairs: list[tuple[int, int]], num_users: int, num_items: int) -> Interactions:
    u = np.array([p[0] for p in pairs], dtype=np.int64)
    i = np.array([p[1] for p in pairs], dtype=np.int64)
    return Interactions(u, i, num_users, num_items)


def tiny() -> tuple[Dataset, TableModel]:
    """4 users x 6 items; raw ids differ from indices (users 10.., items 100..)."""
    n_u, n_i = 4, 6
    ds = Dataset(
        name="tiny",
        users=IdVocab(np.arange(10, 14)),
        items=IdVocab(np.arange(100, 106)),
        train=interactions([(0, 0), (0, 1), (1, 2), (2, 0), (3, 5)], n_u, n_i),
        valid=interactions([(0, 2), (1, 3), (3, 4)], n_u, n_i),
        test=interactions([(0, 3), (0, 4), (1, 0), (2, 1)], n_u, n_i),
    )
    table = np.array(
        [
            [9, 8, 7, 1, 5, 3],
            [5, 6, 9, 4, 8, 7],
            [9, 6, 1, 2, 3, 7],
            [1, 2, 3, 4, 5, 6],
        ],
        dtype=np.float32,
    )
    return ds, TableModel(table)


def test_full_ranking_test_stage_hand_computed():
    ds, model = tiny()
    out = evaluate(model, ds, "test", EvalConfig(ks=(1, 3)), return_rankings=True)
    users, topk = out["rankings"]
    # train and valid items are masked: u0 ranks 4, 5, 3; u1 ranks 4, 5, 1; u2 ranks 5, 1, 4
    np.testing.assert_array_equal(users, [0, 1, 2])
    np.testing.assert_array_equal(topk, [[4, 5, 3], [4, 5, 1], [5, 1, 4]])
    # hits: u0 [1, 0, 1] of 2 relevant; u1 [0, 0, 0] of 1; u2 [0, 1, 0] of 1
    d2, d3 = 1 / log2(3), 1 / log2(4)
    expected = {
        "Recall@1": (1 / 2) / 3, "Recall@3": (1 + 0 + 1) / 3,
        "Precision@1": 1 / 3, "Precision@3": (2 / 3 + 0 + 1 / 3) / 3,
        "HR@1": 1 / 3, "HR@3": 2 / 3,
        "NDCG@1": 1 / 3, "NDCG@3": ((1 + d3) / (1 + d2) + 0 + d2) / 3,
        "MRR@1": 1 / 3, "MRR@3": (1 + 0 + 1 / 2) / 3,
        "MAP@1": 1 / 3, "MAP@3": ((1 + 2 / 3) / 2 + 0 + 1 / 2) / 3,
        "Coverage@1": 2 / 6, "Coverage@3": 4 / 6,
    }
    for name, value in expected.items():
        assert out[name] == pytest.approx(value, rel=1e-9), name
    assert out["users"] == 3
    assert set(out) == set(expected) | {"users", "rankings"}


def test_full_ranking_valid_stage_masks_train_only():
    ds, model = tiny()
    out = evaluate(model, ds, "valid", EvalConfig(ks=(1,)), return_rankings=True)
    users, topk = out["rankings"]
    np.testing.assert_array_equal(users, [0, 1, 3])
    # u0's best unmasked item is 2: a valid item, kept when validating (masked when testing)
    np.testing.assert_array_equal(topk[:, 0], [2, 4, 4])
    assert out["Recall@1"] == pytest.approx(2 / 3)
    assert out["users"] == 3


def test_model_memory_untouched_and_mode_restored():
    ds, _ = tiny()
    model = PopularityModel(np.tile(np.arange(6, dtype=np.float32), (4, 1)))
    before = model.table.clone()
    model.train()
    out = evaluate(model, ds, "test", EvalConfig(ks=(2,)), return_rankings=True)
    assert torch.equal(model.table, before) and model.training
    # u0: masked 0, 1, 2 -> ranks 5, 4 (hit 4 at rank 2); u1: 5, 4; u2: 5, 4
    np.testing.assert_array_equal(out["rankings"][1], [[5, 4], [5, 4], [5, 4]])
    assert out["HR@2"] == pytest.approx(1 / 3)


def test_too_few_items_left_never_counts_masked_items():
    # one user, 3 items: 2 known (one of which is also held out), k = 3 reaches masked items
    ds = Dataset(
        "overlap", IdVocab(np.arange(1)), IdVocab(np.arange(3)),
        train=interactions([(0, 0), (0, 1)], 1, 3), valid=None,
        test=interactions([(0, 1)], 1, 3),
    )
    out = evaluate(TableModel(np.array([[3.0, 2.0, 1.0]])), ds, "test", EvalConfig(ks=(3,)))
    assert out["HR@3"] == 0.0


def test_sampled_protocol_with_negatives_file_hand_computed(tmp_path: Path):
    ds, model = tiny()
    path = tmp_path / "negatives.txt"
    # raw ids: user 10 -> items 105, 102; user 11 -> 101, 105; user 12 -> 102, 103; user 13 unused
    path.write_text("10 105 102\n11 101 105\n12 102 103\n13 100 101\n")
    cfg = EvalConfig(protocol="sampled:2", ks=(1, 2), negatives_file=str(path))
    out = evaluate(model, ds, "test", cfg)
    # ranks (# negatives scoring >= target): u0 target 3 -> 2, target 4 -> 1; u1 -> 2; u2 -> 0
    # per-target metrics are averaged within the user first
    assert out["HR@1"] == pytest.approx((0 + 0 + 1) / 3)
    assert out["HR@2"] == pytest.approx(((0 + 1) / 2 + 0 + 1) / 3)
    assert out["NDCG@2"] == pytest.approx(((0 + 1 / log2(3)) / 2 + 0 + 1) / 3)
    assert out["MRR@2"] == pytest.approx(((0 + 1 / 2) / 2 + 0 + 1) / 3)
    assert out["Recall@2"] == pytest.approx(out["HR@2"])
    assert out["users"] == 3
    assert not any(name.startswith("Coverage") for name in out)


def test_sampled_ties_count_against_target():
    ds, _ = tiny()
    flat = TableModel(np.zeros((4, 6), dtype=np.float32))
    out = evaluate(flat, ds, "test", EvalConfig(protocol="sampled:1", ks=(1,)))
    assert out["HR@1"] == 0.0


def random_dataset(seed: int = 0, n_u: int = 25, n_i: int = 40) -> tuple[Dataset, np.ndarray]:
    rng = np.random.default_rng(seed)
    cells = rng.permutation(n_u * n_i)[: n_u * 12]  # distinct (user, item) cells
    u, i = cells // n_i, cells % n_i
    part = rng.integers(0, 3, cells.size)  # 0 train, 1 valid, 2 test
    split = [Interactions(u[part == p], i[part == p], n_u, n_i) for p in range(3)]
    ds = Dataset("random", IdVocab(np.arange(n_u)), IdVocab(np.arange(n_i)), *split)
    return ds, rng.standard_normal((n_u, n_i)).astype(np.float32)


def test_sampled_negatives_are_seeded_valid_and_model_independent():
    ds, table = random_dataset()
    cfg = EvalConfig(protocol="sampled:5", ks=(3,), negatives_seed=7)
    a, b = TableModel(table), TableModel(-table)
    out_a = evaluate(a, ds, "test", cfg)
    evaluate(b, ds, "test", cfg)
    cand = np.concatenate(a.scored)
    np.testing.assert_array_equal(cand, np.concatenate(b.scored))
    # column 0 is the target, one row per held-out (user, item); negatives are never interacted
    test = ds.test.csr().tocoo()
    order = np.lexsort((test.col, test.row))
    np.testing.assert_array_equal(cand[:, 0], test.col[order])
    seen = (ds.train.csr() + ds.valid.csr() + ds.test.csr()).toarray() > 0
    users = test.row[order]
    assert not seen[users[:, None], cand[:, 1:]].any()
    assert all(len(set(row)) == 5 for row in cand[:, 1:])
    # hand check of HR@3: rank = # negatives scoring >= target, averaged within users first
    scores = table[users[:, None], cand]
    hit = ((scores[:, 1:] >= scores[:, :1]).sum(1) < 3).astype(float)
    per_user = [hit[users == u].mean() for u in np.unique(users)]
    assert out_a["HR@3"] == pytest.approx(np.mean(per_user))
    c = TableModel(table)
    evaluate(c, ds, "test", EvalConfig(protocol="sampled:5", ks=(3,), negatives_seed=8))
    assert not np.array_equal(np.concatenate(c.scored), cand)


@pytest.mark.parametrize("protocol", ["full", "sampled:4"])
def test_chunking_does_not_change_results(protocol):
    ds, table = random_dataset(seed=3)
    model = TableModel(table)
    small = evaluate(model, ds, "test", EvalConfig(protocol=protocol, batch_size=1), return_rankings=True)
    big = evaluate(model, ds, "test", EvalConfig(protocol=protocol, batch_size=4096), return_rankings=True)
    for key in ("users", "Recall@10", "NDCG@20", "MAP@20", "MRR@10"):
        assert small[key] == big[key]
    for a, b in zip(small["rankings"], big["rankings"], strict=True):
        np.testing.assert_array_equal(a, b)


def test_rankings_reproduce_metrics_independently():
    ds, table = random_dataset(seed=5)
    out = evaluate(TableModel(table), ds, "test", EvalConfig(ks=(5,)), return_rankings=True)
    users, topk = out["rankings"]
    known = (ds.train.csr() + ds.valid.csr()).toarray() > 0
    held = ds.test.csr().toarray() > 0
    recalls, ndcgs = [], []
    for u, items in zip(users, topk, strict=True):
        assert not known[u, items].any()
        unmasked = np.flatnonzero(~known[u])
        best = unmasked[np.argsort(-table[u, unmasked], kind="stable")[:5]]
        np.testing.assert_array_equal(items, best)
        rel = held[u, items]
        recalls.append(rel.sum() / held[u].sum())
        ideal = sum(1 / log2(r + 2) for r in range(min(5, held[u].sum())))
        ndcgs.append(sum(1 / log2(r + 2) for r in np.flatnonzero(rel)) / ideal)
    np.testing.assert_array_equal(users, np.flatnonzero(held.any(1)))
    assert out["Recall@5"] == pytest.approx(np.mean(recalls))
    assert out["NDCG@5"] == pytest.approx(np.mean(ndcgs))
    assert out["Coverage@5"] == pytest.approx(len(np.unique(topk)) / ds.num_items)


@pytest.mark.parametrize(
    "options",
    [
        {"ks": (0, 10)}, {"ks": (-1,)}, {"ks": ()}, {"protocol": "sampled"},
        {"protocol": "sampled:x"}, {"protocol": "sampled:0"}, {"protocol": "loo"},
        {"batch_size": 0}, {"negatives_file": "negs.txt"},
    ],
)
def test_bad_config_raises(options):
    with pytest.raises(LiverecError):
        EvalConfig(**options)


def test_config_revalidated_at_evaluate_and_bad_inputs():
    ds, model = tiny()
    cfg = EvalConfig()
    cfg.ks = (0,)
    with pytest.raises(LiverecError):
        evaluate(model, ds, "test", cfg)
    with pytest.raises(LiverecError, match="exceeds"):
        evaluate(model, ds, "test", EvalConfig(ks=(7,)))
    with pytest.raises(LiverecError, match="stage"):
        evaluate(model, ds, "train", EvalConfig())
    with pytest.raises(LiverecError, match="does not exist"):
        evaluate(model, ds, "test", EvalConfig(protocol="sampled:2", negatives_file="/nonexistent"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10 105\n11 101 105\n12 102 103\n", "line 1 has 1 negatives"),
        ("10 105 102\n11 101 105\n", "no line"),
        ("10 105 102\n10 101 105\n11 101 105\n12 102 103\n", "more than one line"),
        ("10 105 999\n11 101 105\n12 102 103\n", "unknown id"),
    ],
)
def test_bad_negatives_file_raises(tmp_path: Path, text: str, message: str):
    ds, model = tiny()
    path = tmp_path / "negatives.txt"
    path.write_text(text)
    cfg = EvalConfig(protocol="sampled:2", ks=(1,), negatives_file=str(path))
    with pytest.raises(LiverecError, match=message):
        evaluate(model, ds, "test", cfg)
