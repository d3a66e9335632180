"""The small protocol every model implements (RecBole's good part: loss inputs, score some, score all).

A model is a config dataclass plus a pure `nn.Module`: ids in, scores out; no I/O, no dataset
object. Sizes (`num_users`, `num_items`) come from the vocabulary at the entry point.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import TYPE_CHECKING, Any, ClassVar

import scipy.sparse as sp
import torch
from torch import nn

from liverec.errors import LiverecError

if TYPE_CHECKING:
    from liverec.data.interactions import Interactions


class Recommender(nn.Module):
    """Base class. Subclasses set `Config` (a dataclass) and implement `score` and `score_all`.

    - Gradient-trained models (`trainable = True`) are fitted by `liverec.train.Trainer`.
    - Closed-form / statistical models (`trainable = False`) implement `fit(train_csr)`.
    - Sequence models (`sequential = True`) represent a user by their latest items: they are
      trained on per-user sequences (liverec.train.sequence), told the history revealed so far with
      `set_history`, and can score sequences passed in directly (`score_sequences`).
    """

    Config: ClassVar[type]
    trainable: ClassVar[bool] = True
    sequential: ClassVar[bool] = False

    def __init__(self, config: Any, num_users: int, num_items: int) -> None:
        super().__init__()
        self.config = config
        self.num_users = num_users
        self.num_items = num_items

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores of (user, item) pairs: users (B,), items (B, M) -> (B, M)."""
        raise NotImplementedError

    def score_all(self, users: torch.Tensor) -> torch.Tensor:
        """Scores of the whole catalogue: users (B,) -> (B, num_items)."""
        raise NotImplementedError

    def set_history(self, history: Interactions) -> None:
        """Condition on the interactions revealed so far (the evaluator passes train for "valid",
        train + valid for "test"). Sequence models keep each user's latest items; others ignore it."""

    def score_sequences(self, sequences: Sequence[Sequence[int]]) -> torch.Tensor:
        """Scores of the catalogue after each sequence of item indices (oldest first): -> (B, num_items)."""
        raise LiverecError(f"{type(self).__name__} is not a sequence model; it scores known users only")

    def score_shared(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores of every user against the same items: users (B,), items (M,) -> (B, M).

        Used for negatives shared across a batch; models with embeddings override it with a matmul.
        """
        return self.score(users, items[None, :].expand(len(users), -1))

    def user_embeddings(self) -> torch.Tensor | None:
        """(num_users, D) such that score_all = user_emb @ item_emb.T (ranking-equivalent), or None."""
        return None

    def item_embeddings(self) -> torch.Tensor | None:
        """(num_items, D) counterpart of `user_embeddings`, or None."""
        return None

    def regularization(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Squared L2 norm of the parameters a batch touches (users (B,), items (B, M)), summed."""
        return torch.zeros((), device=users.device)

    def fit(self, train: sp.csr_matrix, generator: torch.Generator | None = None) -> Recommender:
        """Closed-form fit on the (num_users, num_items) training matrix; returns self."""
        raise NotImplementedError(f"{type(self).__name__} is trained by the Trainer, not fit()")


def dot_all(table: nn.Module, queries: torch.Tensor) -> torch.Tensor:
    """queries (B, D) against every row of an embedding table -> (B, rows).

    Compressed tables (liverec.compress) provide `dot_all` and score straight from their codes,
    without first expanding a float copy of the whole table.
    """
    if hasattr(table, "dot_all"):
        return table.dot_all(queries)
    return queries @ table.weight.T


class _GatherRows(torch.autograd.Function):
    """weight[index] whose backward is one index_add_ into a zero table."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(index)
        ctx.rows = weight.shape[0]
        return weight.index_select(0, index.reshape(-1)).view(*index.shape, weight.shape[1])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (index,) = ctx.saved_tensors
        out = grad.new_zeros(ctx.rows, grad.shape[-1])
        out.index_add_(0, index.reshape(-1), grad.reshape(-1, grad.shape[-1]))
        return out, None


class _GatheredDot(torch.autograd.Function):
    """(weight[index] · query) per row: (B, M) from index (B, M) and query (B, D), with elementwise
    products instead of batched mat-vecs (bmm of (M, D) x (D, 1) is slow on CPU) and an index_add_
    backward into the table."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, index: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        rows = weight.index_select(0, index.reshape(-1)).view(*index.shape, weight.shape[1])
        ctx.save_for_backward(index, query, rows)
        ctx.rows = weight.shape[0]
        return (rows * query.unsqueeze(1)).sum(-1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        index, query, rows = ctx.saved_tensors
        grad_weight = grad_query = None
        if ctx.needs_input_grad[0]:
            grad_rows = grad.unsqueeze(-1) * query.unsqueeze(1)  # (B, M, D)
            grad_weight = grad.new_zeros(ctx.rows, rows.shape[-1])
            grad_weight.index_add_(0, index.reshape(-1), grad_rows.reshape(-1, rows.shape[-1]))
        if ctx.needs_input_grad[2]:
            grad_query = torch.bmm(grad.unsqueeze(1), rows).squeeze(1)  # (B, D)
        return grad_weight, None, grad_query


def _plain_dense_cpu(table: nn.Module) -> bool:
    return (type(table) is nn.Embedding and not table.sparse and table.max_norm is None
            and table.padding_idx is None and table.weight.device.type == "cpu")


# PyTorch's CPU embedding backward costs about twice an index_add_ of the same rows, and bmm
# mat-vecs more than the elementwise products; with hundreds of negatives per positive the two
# dominated an MF step (Gowalla, batch 256 x 301 items, one thread: 159 -> 113 ms with gather_rows
# alone). Sparse (SparseAdam), compressed and CUDA tables keep their own path.


def gather_rows(table: nn.Module, index: torch.Tensor) -> torch.Tensor:
    """table(index), with a cheaper backward for a plain dense embedding table on CPU."""
    if _plain_dense_cpu(table) and torch.is_grad_enabled() and table.weight.requires_grad:
        return _GatherRows.apply(table.weight, index)
    return table(index)


def gathered_dot(table: nn.Module, index: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """table(index) (B, M, D) dotted with query (B, D) -> (B, M)."""
    if _plain_dense_cpu(table) and torch.is_grad_enabled() and table.weight.requires_grad:
        return _GatheredDot.apply(table.weight, index, query)
    return torch.bmm(table(index), query.unsqueeze(-1)).squeeze(-1)


def squared_rows(table: nn.Module, index: torch.Tensor) -> torch.Tensor:
    """Σ_k |table[index_k]|², each occurrence counted, without gathering the rows when the table is
    plain, dense and on CPU: counts · row norms over the table (one bincount, no scatter)."""
    if _plain_dense_cpu(table) and index.numel() > table.num_embeddings:
        counts = torch.bincount(index.reshape(-1), minlength=table.num_embeddings)
        return (counts.to(table.weight.dtype) * table.weight.pow(2).sum(1)).sum()
    return table(index).pow(2).sum()


COLD_ITEM_SCORE = -1e30  # below any real score, still finite (top-k and metrics stay well defined)


def cold_start_fallback(
    scores: torch.Tensor, users: torch.Tensor, user_degree: torch.Tensor,
    item_degree: torch.Tensor, items: torch.Tensor | None = None,
) -> torch.Tensor:
    """Rank for users and items the training data never saw, instead of trusting random vectors.

    scores (B, M) for `users` (B,) and `items` (M,) or (B, M) (None: the whole catalogue). A user with
    no training interaction gets item popularity (training degree) as scores; an item with none
    scores below every seen item for everybody, so it is recommended only when nothing else is left.
    """
    item_deg = item_degree if items is None else item_degree[items]  # (I,) or (M,) or (B, M)
    if item_deg.dim() == 1:
        item_deg = item_deg.unsqueeze(0).expand_as(scores)
    cold_user = (user_degree[users] == 0).unsqueeze(1)  # (B, 1)
    scores = torch.where(cold_user, item_deg.to(scores.dtype), scores)
    return torch.where(item_deg == 0, torch.full_like(scores, COLD_ITEM_SCORE), scores)


def make_config(config_cls: type, params: dict[str, Any]) -> Any:
    """Build a config dataclass from a dict; unknown keys are an error, not silently ignored."""
    names = {f.name for f in fields(config_cls)}
    unknown = sorted(set(params) - names)
    if unknown:
        raise LiverecError(
            f"unknown option(s) {unknown} for {config_cls.__name__}; valid: {sorted(names)}"
        )
    return config_cls(**params)
