"""Pruning: zero the least important dense weights, and fold rarely used embedding rows into one.

Dense layers use torch.nn.utils.prune and then `prune.remove`, so the zeros are baked into `weight`
(no mask or hook left to save). Embedding rows are pruned by training frequency: users and items
seen fewer than `min_count` times share one fallback row (the mean of the rows they had), reached
through an id remap; rare ids carry little signal and make up most of a long-tailed table.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from liverec.compress.modules import named_of_type, replace_module
from liverec.errors import LiverecError

PRUNE_KINDS = ("magnitude", "structured")


def prune_linear(model: nn.Module, kind: str, amount: float) -> list[str]:
    """Zero `amount` of every nn.Linear's weights, permanently; returns the pruned layer names.

    magnitude: the smallest |w| of each layer (unstructured L1).
    structured: whole output neurons (weight rows) with the smallest L2 norm, which a runtime can
    drop outright; the layer's last neuron is always kept so no layer goes silent.
    """
    if kind not in PRUNE_KINDS:
        raise LiverecError(f"pruning kind must be one of {list(PRUNE_KINDS)}, got {kind!r}")
    if not 0.0 <= amount < 1.0:
        raise LiverecError(f"pruning amount must be in [0, 1), got {amount}")
    layers = list(named_of_type(model, nn.Linear))
    if not layers:
        raise LiverecError(f"{type(model).__name__} has no Linear layer to prune")
    for _, layer in layers:
        if kind == "magnitude":
            torch_prune.l1_unstructured(layer, "weight", amount=amount)
        else:
            rows = min(int(round(amount * layer.out_features)), layer.out_features - 1)
            torch_prune.ln_structured(layer, "weight", amount=rows, n=2, dim=0)
        torch_prune.remove(layer, "weight")  # permanent: weight now holds the zeros, no mask
    return [name for name, _ in layers]


def zero_fraction(model: nn.Module) -> float:
    """Fraction of nn.Linear weights that are exactly zero."""
    weights = [m.weight for _, m in named_of_type(model, nn.Linear)]
    total = sum(w.numel() for w in weights)
    return sum(int((w == 0).sum()) for w in weights) / max(total, 1)


class RemappedEmbedding(nn.Module):
    """An embedding whose rare ids share one fallback row: table[remap[id]].

    `remap` (num_embeddings,) maps every id to its kept row; the fallback is the last row.
    `table` is a plain nn.Embedding, or any compressed drop-in (quantisation can follow pruning).
    """

    def __init__(self, num_embeddings: int, kept_rows: int, embedding_dim: int) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.register_buffer("remap", torch.zeros(num_embeddings, dtype=torch.int32))
        self.table = nn.Embedding(kept_rows + 1, embedding_dim)  # kept rows + the fallback

    @property
    def weight(self) -> torch.Tensor:
        """(num_embeddings, embedding_dim) float copy, rare ids repeating the fallback row."""
        return self.table.weight[self.remap.long()]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.table(self.remap.long()[ids])

    def dot_all(self, queries: torch.Tensor) -> torch.Tensor:
        """queries (B, D) -> (B, num_embeddings): score the kept rows once, then spread by remap."""
        if hasattr(self.table, "dot_all"):
            compact = self.table.dot_all(queries)
        else:
            compact = queries @ self.table.weight.T  # (B, kept + 1)
        return compact[:, self.remap.long()]


def rare_rows_plan(counts: np.ndarray, min_count: int) -> np.ndarray:
    """Remap (N,) int32 for ids with training frequency `counts`: kept ids numbered 0.., rare ids
    (count < min_count) pointing at the fallback row, numbered last."""
    keep = counts >= min_count
    remap = np.full(len(counts), int(keep.sum()), dtype=np.int32)
    remap[keep] = np.arange(int(keep.sum()), dtype=np.int32)
    return remap


def merge_rare_rows(
    model: nn.Module, kept: dict[str, int | list[int]], like: bool = False
) -> None:
    """Swap the named nn.Embedding tables for RemappedEmbedding.

    kept[name]: the remap (list, from `rare_rows_plan`) when compressing; when rebuilding a skeleton
    (`like=True`), the number of kept rows. The fallback row is the mean of the rows it replaces.
    """
    for name, spec in kept.items():
        emb = model.get_submodule(name)
        if not isinstance(emb, nn.Embedding):
            raise LiverecError(f"{name!r} is not an embedding table of {type(model).__name__}")
        if like:
            replace_module(model, name, RemappedEmbedding(emb.num_embeddings, int(spec), emb.embedding_dim))
            continue
        remap = torch.as_tensor(spec, dtype=torch.int32)
        kept_rows = int(remap.max())  # the fallback's index = number of kept rows
        new = RemappedEmbedding(emb.num_embeddings, kept_rows, emb.embedding_dim)
        weight = emb.weight.detach()
        with torch.no_grad():
            new.remap.copy_(remap)
            sums = torch.zeros(kept_rows + 1, emb.embedding_dim).index_add_(0, remap.long(), weight)
            sizes = torch.bincount(remap.long(), minlength=kept_rows + 1).clamp_(min=1)
            new.table.weight.copy_(sums / sizes[:, None])  # kept rows: themselves; fallback: mean
        replace_module(model, name, new)


def row_counts(model: nn.Module, user_counts: np.ndarray, item_counts: np.ndarray) -> dict[str, np.ndarray]:
    """Training frequency of each row of each nn.Embedding, by whether the table is over users or
    items (its name says which when both have the same size)."""
    out = {}
    for name, emb in named_of_type(model, nn.Embedding):
        by_size = {len(user_counts): user_counts, len(item_counts): item_counts}
        if len(user_counts) == len(item_counts):
            counts = user_counts if "user" in name else item_counts
        elif emb.num_embeddings in by_size:
            counts = by_size[emb.num_embeddings]
        else:
            continue
        out[name] = counts
    return out
