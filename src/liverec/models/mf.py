"""Matrix factorisation (Koren et al. 2009), usually trained with BPR (Rendle et al. 2009).

    score(u, i) = p_u · q_i + b_i + b_u + g

The user bias b_u and the global bias g do not change a user's ranking; they are there for pointwise
losses (BCE), where the absolute level of a score matters.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from liverec.errors import LiverecError
from liverec.models.base import Recommender, dot_all, gather_rows, gathered_dot, squared_rows


@dataclass
class MFConfig:
    embedding_dim: int = 64  # D: size of the user vectors p_u and item vectors q_i
    use_bias: bool = True  # learn item biases b_i, user biases b_u and a global bias g
    init_std: float = 0.1  # std of the normal initialisation of p and q (biases start at 0)

    def __post_init__(self) -> None:
        if self.embedding_dim < 1:
            raise LiverecError(f"mf: embedding_dim must be >= 1, got {self.embedding_dim}")
        if self.init_std < 0:
            raise LiverecError(f"mf: init_std must be >= 0, got {self.init_std}")


class MF(Recommender):
    """Dot-product matrix factorisation with optional biases."""

    Config = MFConfig

    def __init__(self, config: MFConfig, num_users: int, num_items: int) -> None:
        super().__init__(config, num_users, num_items)
        self.user_emb = nn.Embedding(num_users, config.embedding_dim)  # p: (U, D)
        self.item_emb = nn.Embedding(num_items, config.embedding_dim)  # q: (I, D)
        if config.use_bias:
            self.user_bias = nn.Embedding(num_users, 1)  # b_u: (U, 1)
            self.item_bias = nn.Embedding(num_items, 1)  # b_i: (I, 1)
            self.global_bias = nn.Parameter(torch.zeros(1))  # g: (1,)
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Re-draw p and q from N(0, init_std²) and zero the biases (pass a generator to seed)."""
        nn.init.normal_(self.user_emb.weight, 0.0, self.config.init_std, generator=generator)
        nn.init.normal_(self.item_emb.weight, 0.0, self.config.init_std, generator=generator)
        if self.config.use_bias:
            nn.init.zeros_(self.user_bias.weight)
            nn.init.zeros_(self.item_bias.weight)
            nn.init.zeros_(self.global_bias)

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """users (B,), items (B, M) -> (B, M)."""
        p = self.user_emb(users)  # (B, D)
        scores = gathered_dot(self.item_emb, items, p)  # q_items · p_u: (B, M)
        if self.config.use_bias:
            scores = scores + gather_rows(self.item_bias, items).squeeze(-1)  # (B, M)
            scores = scores + self.user_bias(users) + self.global_bias  # (B, 1) broadcast
        return scores

    def score_all(self, users: torch.Tensor) -> torch.Tensor:
        """users (B,) -> (B, I)."""
        scores = dot_all(self.item_emb, self.user_emb(users))  # (B, I)
        if self.config.use_bias:
            scores = scores + self.item_bias.weight.T  # (1, I) broadcast
            scores = scores + self.user_bias(users) + self.global_bias  # (B, 1) broadcast
        return scores

    def score_shared(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """users (B,), items (M,) -> (B, M) as one matmul (no (B, M, D) gather)."""
        scores = self.user_emb(users) @ self.item_emb(items).T  # (B, M)
        if self.config.use_bias:
            scores = scores + self.item_bias(items).T  # (1, M) broadcast
            scores = scores + self.user_bias(users) + self.global_bias  # (B, 1) broadcast
        return scores

    def user_embeddings(self) -> torch.Tensor:
        """(U, D + 1): [p_u, 1], so that the dot product with [q_i, b_i] adds the item bias."""
        p = self.user_emb.weight.detach()  # (U, D)
        if not self.config.use_bias:
            return p
        return torch.cat([p, torch.ones_like(p[:, :1])], dim=1)  # (U, D + 1)

    def item_embeddings(self) -> torch.Tensor:
        """(I, D + 1): [q_i, b_i]; b_u + g is dropped, it is constant within a user's ranking."""
        q = self.item_emb.weight.detach()  # (I, D)
        if not self.config.use_bias:
            return q
        return torch.cat([q, self.item_bias.weight.detach()], dim=1)  # (I, D + 1)

    def regularization(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Sum of squared norms of the rows the batch touches (an item counts once per occurrence)."""
        reg = squared_rows(self.user_emb, users) + squared_rows(self.item_emb, items)
        if self.config.use_bias:
            reg = reg + squared_rows(self.user_bias, users) + squared_rows(self.item_bias, items)
        return reg
