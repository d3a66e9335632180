"""LightGCN (He et al., SIGIR 2020): linear propagation of ID embeddings over the user–item graph.

    Â      = D^-1/2 A D^-1/2,   A = [[0, R], [Rᵀ, 0]]          ((U+I) x (U+I), sparse CSR)
    E⁽ᵏ⁺¹⁾ = Â E⁽ᵏ⁾                                              no transform, no non-linearity
    E      = (E⁽⁰⁾ + E⁽¹⁾ + ... + E⁽ᴷ⁾) / (K + 1)                 layer mean
    score(u, i) = e_u · e_i

Only E⁽⁰⁾ is learned; L2 applies to the layer-0 rows a batch touches, as in the paper. Each layer
costs one sparse-dense product, O(nnz·D), forward and backward (Â is symmetric).

The graph is the training matrix, attached with `set_graph(train)` before training. The propagated
embeddings are cached in the buffers `final_user` / `final_item` whenever the model switches to
eval mode, so a saved model scores (and serves) without the graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from liverec.errors import LiverecError
from liverec.models.base import Recommender, cold_start_fallback
from liverec.models.sparse import binarize, degree_normalized, torch_csr


@dataclass
class LightGCNConfig:
    embedding_dim: int = 64  # D: size of the layer-0 user and item vectors
    num_layers: int = 3  # K: propagation steps
    init_std: float = 0.1  # std of the normal initialisation of E⁽⁰⁾

    def __post_init__(self) -> None:
        if self.embedding_dim < 1:
            raise LiverecError(f"lightgcn: embedding_dim must be >= 1, got {self.embedding_dim}")
        if self.num_layers < 0:
            raise LiverecError(f"lightgcn: num_layers must be >= 0, got {self.num_layers}")
        if self.init_std < 0:
            raise LiverecError(f"lightgcn: init_std must be >= 0, got {self.init_std}")


def normalized_adjacency(train: sp.spmatrix) -> torch.Tensor:
    """Â = D^-1/2 A D^-1/2 of the bipartite graph of `train` (U x I), as a torch sparse CSR tensor.

    Interactions are binarised; nodes without edges get zero rows (no division by zero).
    """
    norm = degree_normalized(binarize(train))  # a node's degree in A is its degree in R
    a = sp.bmat([[None, norm], [norm.T, None]], format="csr", dtype=np.float32)  # (U+I, U+I)
    a.sort_indices()
    return torch_csr(a.indptr, a.indices, a.data, a.shape)


class _SymmetricSpMM(torch.autograd.Function):
    """y = Â x for a symmetric sparse Â; backward is Â g again (no transpose, no grad for Â).

    torch's generic sparse-CSR backward builds Âᵀ on every call; this one measured 2.3-2.6x faster
    per layer (benchmarks/bench_lightgcn.py).
    """

    @staticmethod
    def forward(ctx, adjacency: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adjacency = adjacency
        return adjacency @ x

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return None, ctx.adjacency @ grad


class LightGCN(Recommender):
    """Layer-mean propagation of user/item embeddings over the normalised interaction graph."""

    Config = LightGCNConfig

    def __init__(self, config: LightGCNConfig, num_users: int, num_items: int) -> None:
        super().__init__(config, num_users, num_items)
        self.user_emb = nn.Embedding(num_users, config.embedding_dim)  # E⁽⁰⁾ users: (U, D)
        self.item_emb = nn.Embedding(num_items, config.embedding_dim)  # E⁽⁰⁾ items: (I, D)
        # propagated embeddings, refreshed on eval(); saved with the weights
        self.register_buffer("final_user", torch.zeros(num_users, config.embedding_dim))
        self.register_buffer("final_item", torch.zeros(num_items, config.embedding_dim))
        # training degrees: users/items outside the graph get the popularity fallback
        self.register_buffer("user_degree", torch.zeros(num_users))
        self.register_buffer("item_degree", torch.zeros(num_items))
        self.adjacency_: torch.Tensor | None = None  # Â, set by set_graph
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None  # this step's propagation
        self._frozen: tuple | None = None  # (update key, propagation without grad)
        self._backwards = 0  # backward passes through a training propagation
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        nn.init.normal_(self.user_emb.weight, 0.0, self.config.init_std, generator=generator)
        nn.init.normal_(self.item_emb.weight, 0.0, self.config.init_std, generator=generator)
        self._cache = self._frozen = None
        self._refresh()

    def set_graph(self, train: sp.spmatrix) -> LightGCN:
        """Attach the (num_users, num_items) training matrix as the propagation graph."""
        if train.shape != (self.num_users, self.num_items):
            raise LiverecError(
                f"lightgcn: graph shape {train.shape} != (num_users, num_items) "
                f"({self.num_users}, {self.num_items})"
            )
        binary = binarize(train)
        self.adjacency_ = normalized_adjacency(binary)
        self.user_degree.copy_(torch.from_numpy(np.asarray(binary.sum(axis=1)).ravel()))
        self.item_degree.copy_(torch.from_numpy(np.asarray(binary.sum(axis=0)).ravel()))
        self._cache = self._frozen = None
        self._refresh()
        return self

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(U, D), (I, D) layer-mean embeddings; without a graph, the layer-0 embeddings."""
        e0 = torch.cat([self.user_emb.weight, self.item_emb.weight])  # (U+I, D)
        mean = e0
        if self.adjacency_ is not None and self.config.num_layers > 0:
            if self.adjacency_.device != e0.device:
                self.adjacency_ = self.adjacency_.to(e0.device)
            layer, total = e0, e0
            # float32 propagation even under bf16 autocast: sparse kernels lack bf16 on some devices
            with torch.autocast(e0.device.type, enabled=False):
                for _ in range(self.config.num_layers):
                    layer = _SymmetricSpMM.apply(self.adjacency_, layer)  # (U+I, D), O(nnz·D)
                    total = total + layer
            mean = total / (self.config.num_layers + 1)
        return mean[: self.num_users], mean[self.num_users :]

    def _embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Eval: the cached buffers. Train: one propagation per training step, shared by every
        score call before the backward pass (positives and shared negatives are scored apart)."""
        if not self.training:
            return self.final_user, self.final_item
        if not torch.is_grad_enabled():  # e.g. a hard-negative sampler scoring candidates
            # once per parameter update, however many calls (a sampler scores a batch in blocks).
            # Updates are seen as a backward pass through the propagation (`_backwards`; fused Adam
            # does not bump version counters) or an in-place write such as load_state_dict (versions)
            version = (self._backwards, self.user_emb.weight._version, self.item_emb.weight._version)
            if self._frozen is None or self._frozen[0] != version:
                self._frozen = (version, self.propagate())
            return self._frozen[1]
        if self._cache is None:
            users, items = self.propagate()
            self._cache = (users, items)
            if users.requires_grad:
                # the backward pass consumes this graph and the step then changes E⁽⁰⁾: drop it
                users.register_hook(self._drop_cache)
        return self._cache

    def _drop_cache(self, grad: torch.Tensor) -> None:
        self._cache = None
        self._backwards += 1

    @torch.no_grad()
    def _refresh(self) -> None:
        users, items = self.propagate()
        self.final_user.copy_(users)
        self.final_item.copy_(items)

    def train(self, mode: bool = True) -> LightGCN:
        if not mode and self.training and self.adjacency_ is not None:
            self._refresh()  # leaving training: bake the propagation into the buffers
        self._cache = self._frozen = None
        return super().train(mode)

    def _fallback(self, scores, users, items=None) -> torch.Tensor:
        """At inference, users/items without training edges: popularity (see cold_start_fallback)."""
        if self.training or not self.user_degree.any():
            return scores  # training batches only hold graph nodes; no graph yet: nothing to fall back on
        return cold_start_fallback(scores, users, self.user_degree, self.item_degree, items)

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """users (B,), items (B, M) -> (B, M)."""
        eu, ei = self._embeddings()
        scores = torch.bmm(ei[items], eu[users].unsqueeze(-1)).squeeze(-1)  # (B, M)
        return self._fallback(scores, users, items)

    def score_shared(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """users (B,), items (M,) -> (B, M)."""
        eu, ei = self._embeddings()
        return self._fallback(eu[users] @ ei[items].T, users, items)

    def score_all(self, users: torch.Tensor) -> torch.Tensor:
        """users (B,) -> (B, I)."""
        eu, ei = self._embeddings()
        return self._fallback(eu[users] @ ei.T, users)

    def user_embeddings(self) -> torch.Tensor:
        return self._embeddings()[0].detach()

    def item_embeddings(self) -> torch.Tensor:
        return self._embeddings()[1].detach()

    def regularization(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Squared norms of the layer-0 rows the batch touches (the paper's L2 on E⁽⁰⁾)."""
        return self.user_emb(users).pow(2).sum() + self.item_emb(items).pow(2).sum()
