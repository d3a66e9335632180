"""One conformance suite every model in MODELS must pass (plus a few extra option variants).

Each case is trained on the same block-structured data (users of group g like items of group g):
closed-form models by `fit`, gradient models by a tiny BPR loop written here. The checks are the
protocol's promises: score agrees with score_all, embeddings reproduce the ranking, a state dict
survives safetensors into a fresh model, and the model learns the block structure.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from liverec.data.interactions import Interactions
from liverec.errors import LiverecError
from liverec.models import MODELS, build_model

NUM_USERS, NUM_ITEMS, GROUPS = 200, 40, 4
# Small-data settings; a model not listed here is tested with its defaults.
PARAMS: dict[str, dict] = {
    "mf": {"embedding_dim": 16},
    "ease": {"l2": 50.0},
    "ials": {"embedding_dim": 8, "epochs": 8, "l2": 0.01},
    "lightgcn": {"embedding_dim": 16, "num_layers": 2},
    "gfcf": {"num_factors": 8},
    "sasrec": {"max_len": 8, "embedding_dim": 16, "dropout": 0.1},
    "gen": {"max_len": 8, "embedding_dim": 16, "num_heads": 2},
}
EXTRA_CASES = [
    ("mf", {"embedding_dim": 16, "use_bias": False}),
    ("neumf", {"variant": "gmf"}),
    ("neumf", {"variant": "mlp", "mlp_layers": [32, 16, 8], "dropout": 0.1}),
    ("ials", {"embedding_dim": 8, "epochs": 8, "l2": 0.01, "cg_steps": 3}),
    ("ease", {"l2": 50.0, "dtype": "float64"}),
    ("sasrec", {"max_len": 4, "embedding_dim": 16, "num_blocks": 1, "num_heads": 2, "positions": "left"}),
    ("sasrec", {"max_len": 8, "embedding_dim": 16, "norm": "query", "init": "normal"}),
    ("gen", {"max_len": 4, "embedding_dim": 32, "num_blocks": 3, "num_heads": 4}),
]
CASES = [(name, PARAMS.get(name, {})) for name in MODELS] + EXTRA_CASES
NON_PERSONALISED = {"pop"}  # same ranking for every user: checked against counts instead


def case_id(case: tuple[str, dict]) -> str:
    name, params = case
    return "-".join([name] + [f"{k}={v}" for k, v in params.items()])


def block_data(seed: int = 0) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """(U, I) binary matrix: each user has about half of their group's items, none of the others."""
    rng = np.random.default_rng(seed)
    user_group = np.arange(NUM_USERS) % GROUPS  # (U,)
    item_group = np.arange(NUM_ITEMS) % GROUPS  # (I,)
    same = user_group[:, None] == item_group[None, :]  # (U, I)
    dense = same & (rng.random((NUM_USERS, NUM_ITEMS)) < 0.5)
    for u in range(NUM_USERS):  # test-data setup: every user keeps >= 2 seen and >= 1 unseen
        mine = rng.permutation(np.flatnonzero(same[u]))
        dense[u, mine[:2]] = True
        dense[u, mine[2]] = False
    return sp.csr_matrix(dense.astype(np.float32)), user_group, item_group


def as_interactions(x: sp.csr_matrix) -> Interactions:
    """The matrix's cells as events, each user's in column order (the sequence models' order)."""
    coo = x.tocoo()
    return Interactions(coo.row.astype(np.int64), coo.col.astype(np.int64), *x.shape)


def train_bpr(model: torch.nn.Module, x: sp.csr_matrix, steps: int = 300, seed: int = 0) -> None:
    """A few hundred Adam steps of BPR with uniform negatives; regularisation as the trainer adds it."""
    g = torch.Generator().manual_seed(seed)
    if hasattr(model, "reset_parameters"):
        model.reset_parameters(g)
    coo = x.tocoo()
    users, items = torch.from_numpy(coo.row).long(), torch.from_numpy(coo.col).long()
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    model.train()
    batch = 128
    with torch.random.fork_rng():  # dropout draws from the global RNG: seed it, leak nothing
        torch.manual_seed(seed)
        for _ in range(steps):
            pick = torch.randint(len(users), (batch,), generator=g)
            negatives = torch.randint(model.num_items, (batch,), generator=g)
            u, pair = users[pick], torch.stack([items[pick], negatives], dim=1)  # (B,), (B, 2)
            s = model.score(u, pair)  # (B, 2)
            bpr = -F.logsigmoid(s[:, 0] - s[:, 1]).mean()
            loss = bpr + 1e-3 * model.regularization(u, pair) / batch
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()


@pytest.fixture(scope="module", params=CASES, ids=[case_id(c) for c in CASES])
def trained(request: pytest.FixtureRequest):
    """(name, params, model fitted on the block data, the data)."""
    name, params = request.param
    x, user_group, item_group = block_data()
    model = build_model(name, params, NUM_USERS, NUM_ITEMS)
    if hasattr(model, "set_graph"):
        model.set_graph(x)
    model.set_history(as_interactions(x))  # sequence models score users from these items
    if model.trainable:
        train_bpr(model, x)
    else:
        model.fit(x, torch.Generator().manual_seed(0))
    model.eval()
    return name, params, model, (x, user_group, item_group)


USERS = torch.tensor([0, 5, 11, 30, 47])


@torch.no_grad()
def test_score_agrees_with_score_all(trained) -> None:
    _, _, model, _ = trained
    items = torch.randint(NUM_ITEMS, (len(USERS), 7), generator=torch.Generator().manual_seed(1))
    some, every = model.score(USERS, items), model.score_all(USERS)
    assert some.shape == (len(USERS), 7) and every.shape == (len(USERS), NUM_ITEMS)
    assert some.is_floating_point() and some.dtype == every.dtype
    assert torch.isfinite(every).all()
    torch.testing.assert_close(some, every.gather(1, items), rtol=1e-5, atol=1e-5)
    shared = items[0]  # the same items for every user (shared negatives)
    torch.testing.assert_close(
        model.score_shared(USERS, shared), every[:, shared], rtol=1e-5, atol=1e-5
    )


@torch.no_grad()
def test_embeddings_reproduce_ranking(trained) -> None:
    _, _, model, _ = trained
    users_emb, items_emb = model.user_embeddings(), model.item_embeddings()
    assert (users_emb is None) == (items_emb is None)
    if users_emb is None:
        return
    assert users_emb.shape[0] == NUM_USERS and items_emb.shape[0] == NUM_ITEMS
    assert users_emb.shape[1] == items_emb.shape[1]
    diff = model.score_all(USERS) - users_emb[USERS] @ items_emb.T  # (B, I): constant per user
    torch.testing.assert_close(diff, diff[:, :1].expand_as(diff), rtol=0, atol=1e-4)


@torch.no_grad()
def test_state_dict_round_trip(trained, tmp_path) -> None:
    name, params, model, _ = trained
    save_file(model.state_dict(), str(tmp_path / "model.safetensors"))  # flat, dense, no sharing
    fresh = build_model(name, params, NUM_USERS, NUM_ITEMS)
    fresh.load_state_dict(load_file(str(tmp_path / "model.safetensors")))
    fresh.eval()
    assert torch.equal(fresh.score_all(USERS), model.score_all(USERS))


def test_regularization_is_a_scalar(trained) -> None:
    _, _, model, _ = trained
    items = torch.tensor([[1, 2], [3, 4], [5, 6], [7, 8], [9, 10]])
    reg = model.regularization(USERS, items)
    assert reg.shape == () and torch.isfinite(reg) and reg >= 0
    if model.trainable:
        assert reg > 0 and reg.requires_grad


@torch.no_grad()
def test_learns_the_block_structure(trained) -> None:
    name, _, model, (x, user_group, item_group) = trained
    if name in NON_PERSONALISED:
        pytest.skip("non-personalised; see test_popularity_follows_counts")
    scores = model.score_all(torch.arange(NUM_USERS)).numpy()  # (U, I)
    in_group = user_group[:, None] == item_group[None, :]  # (U, I)
    unseen_mine = in_group & (x.toarray() == 0)  # (U, I)
    pairs = unseen_mine[:, :, None] & ~in_group[:, None, :]  # (U, I, I): (unseen in-group, other)
    above = scores[:, :, None] > scores[:, None, :]  # (U, I, I)
    auc = (above & pairs).sum((1, 2)) / pairs.sum((1, 2))  # (U,) per-user AUC
    assert auc.mean() > 0.95, auc
    assert auc.min() > 0.5, auc  # every user better than random


@torch.no_grad()
def test_popularity_follows_counts() -> None:
    x, _, _ = block_data()
    model = build_model("pop", {}, NUM_USERS, NUM_ITEMS).fit(x)
    counts = torch.from_numpy(np.asarray(x.sum(axis=0)).ravel())
    assert torch.equal(model.score_all(USERS), counts.expand(len(USERS), -1))


def test_build_model_rejects_unknown_names_and_options() -> None:
    with pytest.raises(LiverecError, match="valid:.*'ease'"):
        build_model("nope", {}, 3, 4)
    with pytest.raises(LiverecError, match="embeding_dim"):
        build_model("mf", {"embeding_dim": 8}, 3, 4)
    with pytest.raises(LiverecError, match="variant"):
        build_model("neumf", {"variant": "ncf"}, 3, 4)


def test_closed_form_models_check_the_matrix_shape() -> None:
    x, _, _ = block_data()
    for name, cls in MODELS.items():
        if not cls.trainable:
            with pytest.raises(LiverecError, match="training matrix"):
                build_model(name, PARAMS.get(name, {}), NUM_USERS + 1, NUM_ITEMS).fit(x)
