"""LightGCN: the propagation is the paper's formula, gradients reach layer 0, saved models need no graph."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from liverec.errors import LiverecError
from liverec.models.lightgcn import LightGCN, LightGCNConfig, normalized_adjacency


def small_graph() -> sp.csr_matrix:
    # user 3 and item 4 have no edges: their rows of Â must be zero, not NaN
    rows, cols = [0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 3, 0]
    return sp.csr_matrix((np.ones(6), (rows, cols)), shape=(4, 5))


def dense_reference(r: np.ndarray, e0: np.ndarray, layers: int) -> np.ndarray:
    u, i = r.shape
    a = np.zeros((u + i, u + i))
    a[:u, u:], a[u:, :u] = r, r.T
    deg = a.sum(1)
    d = np.where(deg > 0, 1 / np.sqrt(np.maximum(deg, 1e-12)), 0.0)
    a_hat = d[:, None] * a * d[None, :]
    out, layer = e0.copy(), e0.copy()
    for _ in range(layers):
        layer = a_hat @ layer
        out += layer
    return out / (layers + 1)


def test_normalized_adjacency_matches_dense_formula():
    r = small_graph()
    a = normalized_adjacency(r).to_dense().numpy()
    assert np.isfinite(a).all() and np.allclose(a, a.T)
    # entry (user 0, item 1): 1 / sqrt(deg(u0) * deg(i1)) = 1 / sqrt(2 * 2)
    assert a[0, 4 + 1] == pytest.approx(0.5)
    assert not a[3].any() and not a[4 + 4].any()


@pytest.mark.parametrize("layers", [0, 1, 3])
def test_propagation_is_the_layer_mean(layers):
    r = small_graph()
    model = LightGCN(LightGCNConfig(embedding_dim=3, num_layers=layers), 4, 5).set_graph(r)
    e0 = torch.cat([model.user_emb.weight, model.item_emb.weight]).detach().double().numpy()
    expected = dense_reference(r.toarray(), e0, layers)
    users, items = model.propagate()
    got = torch.cat([users, items]).detach().double().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_gradients_reach_layer0_and_one_propagation_per_step():
    model = LightGCN(LightGCNConfig(embedding_dim=4, num_layers=2), 4, 5).set_graph(small_graph())
    model.train()
    users, items = torch.tensor([0, 2]), torch.tensor([[1, 3], [2, 4]])
    loss = model.score(users, items).sum() + model.score_shared(users, torch.tensor([0, 1])).sum()
    assert model._cache is not None  # both calls shared one propagation
    cached = model._cache
    loss.backward()
    assert model._cache is None and cached is not None  # backward consumed it: next step re-propagates
    # item 4 has no edges: only reachable through its own score, so its layer-0 grad is nonzero
    assert model.item_emb.weight.grad.abs().sum() > 0 and model.user_emb.weight.grad[3].abs().sum() == 0


def test_scoring_without_grad_propagates_once_per_parameter_update(monkeypatch):
    # a hard-negative sampler scores a batch in several blocks under no_grad: one propagation each step
    model = LightGCN(LightGCNConfig(embedding_dim=4, num_layers=2), 4, 5).set_graph(small_graph())
    model.train()
    calls = []
    propagate = model.propagate
    monkeypatch.setattr(model, "propagate", lambda: calls.append(1) or propagate())
    users, items = torch.tensor([0, 2]), torch.tensor([[1, 3], [2, 4]])
    with torch.no_grad():
        first = model.score(users, items)
        assert torch.equal(model.score(users, items), first) and len(calls) == 1
    opt = torch.optim.Adam(model.parameters(), lr=0.1, fused=True)  # fused: no version bump
    model.score(users, items).sum().backward()
    opt.step()
    with torch.no_grad():
        after = model.score(users, items)
    assert len(calls) == 3  # the training step's own propagation, then one fresh no-grad one
    assert not torch.equal(after, first)
    model.load_state_dict({k: v + 1 for k, v in model.state_dict().items()})
    with torch.no_grad():
        model.score(users, items)
    assert len(calls) == 4  # new weights written in place: propagated again


def test_eval_bakes_embeddings_so_a_loaded_model_needs_no_graph():
    torch.manual_seed(0)
    model = LightGCN(LightGCNConfig(embedding_dim=4, num_layers=2), 4, 5).set_graph(small_graph())
    model.eval()
    fresh = LightGCN(LightGCNConfig(embedding_dim=4, num_layers=2), 4, 5)
    fresh.load_state_dict(model.state_dict())
    fresh.eval()
    users = torch.arange(4)
    assert torch.equal(fresh.score_all(users), model.score_all(users))
    expected = model.propagate()[0][users] @ model.propagate()[1].T
    torch.testing.assert_close(model.score_all(users)[:3, :4], expected[:3, :4])  # warm part


def test_bad_config_and_graph_shape_raise():
    with pytest.raises(LiverecError, match="num_layers"):
        LightGCNConfig(num_layers=-1)
    with pytest.raises(LiverecError, match="graph shape"):
        LightGCN(LightGCNConfig(), 3, 5).set_graph(small_graph())


def test_gradient_matches_dense_propagation():
    r = small_graph()
    model = LightGCN(LightGCNConfig(embedding_dim=3, num_layers=2), 4, 5).set_graph(r)
    weights = torch.linspace(-1, 1, 9 * 3).reshape(9, 3)
    users, items = model.propagate()
    (torch.cat([users, items]) * weights).sum().backward()
    sparse_grad = torch.cat([model.user_emb.weight.grad, model.item_emb.weight.grad])
    a_hat = normalized_adjacency(r).to_dense()
    e0 = torch.cat([model.user_emb.weight, model.item_emb.weight]).detach().requires_grad_()
    layer, total = e0, e0
    for _ in range(2):
        layer = a_hat @ layer
        total = total + layer
    ((total / 3) * weights).sum().backward()
    torch.testing.assert_close(sparse_grad, e0.grad)


@pytest.mark.parametrize("name", ["lightgcn", "gfcf"])
def test_cold_users_get_popularity_and_cold_items_rank_last(name):
    from liverec.models import build_model

    r = small_graph()  # user 3 and item 4 have no training interaction
    model = build_model(name, {"num_factors": 2} if name == "gfcf" else {}, 4, 5)
    if name == "lightgcn":
        model.set_graph(r)
    else:
        model.fit(r, torch.Generator().manual_seed(0))
    model.eval()
    scores = model.score_all(torch.arange(4))
    popularity = torch.tensor(np.asarray(r.sum(axis=0)).ravel(), dtype=scores.dtype)
    torch.testing.assert_close(scores[3, :4], popularity[:4])  # cold user: item popularity
    assert (scores[:, 4] < scores[:, :4].min(dim=1).values).all()  # cold item: last for everyone
    items = torch.tensor([[4, 0], [1, 4], [2, 3], [0, 4]])
    torch.testing.assert_close(model.score(torch.arange(4), items), scores.gather(1, items))
