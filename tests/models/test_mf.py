"""MF's CPU fast paths (gather_rows, squared_rows) give the gradients of the plain embedding path."""

import torch
from torch import nn

from liverec.models.base import gather_rows, squared_rows
from liverec.models.mf import MF, MFConfig


def _grads(model: MF, users: torch.Tensor, items: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad()
    loss = (model.score(users, items) ** 2).sum() + 0.3 * model.regularization(users, items)
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def test_fast_paths_match_plain_embedding_gradients():
    torch.manual_seed(0)
    model = MF(MFConfig(embedding_dim=8, use_bias=True), num_users=5, num_items=7)
    users = torch.tensor([0, 3, 3, 4])
    items = torch.randint(0, 7, (4, 9))  # 36 rows > 7 items: squared_rows takes the bincount path
    fast = _grads(model, users, items)
    plain = MF(MFConfig(embedding_dim=8, use_bias=True), num_users=5, num_items=7)
    plain.load_state_dict(model.state_dict())
    for table in (plain.item_emb, plain.item_bias):
        table.max_norm = 1e9  # not "plain": gather_rows and squared_rows fall back to table(index)
    reference = _grads(plain, users, items)
    assert fast.keys() == reference.keys()
    for name in fast:
        torch.testing.assert_close(fast[name], reference[name], msg=name)


def test_helpers_fall_back_for_sparse_tables():
    table = nn.Embedding(4, 3, sparse=True)
    index = torch.tensor([[0, 1, 1, 3, 2, 2]])
    gather_rows(table, index).sum().backward()
    assert table.weight.grad.is_sparse
    table.weight.grad = None
    squared_rows(table, index).backward()
    assert table.weight.grad.is_sparse
