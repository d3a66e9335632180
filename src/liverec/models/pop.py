"""Popularity: every user gets the items ranked by their number of training interactions.

The non-personalised baseline every table should include; a model that does not beat it has
learned nothing about individual users.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from liverec.errors import LiverecError
from liverec.models.base import Recommender


@dataclass
class PopConfig:
    """Popularity has no options."""


class Pop(Recommender):
    """score(u, i) = number of training interactions of item i, the same for every user."""

    Config = PopConfig
    trainable = False

    def __init__(self, config: PopConfig, num_users: int, num_items: int) -> None:
        super().__init__(config, num_users, num_items)
        self.register_buffer("item_counts", torch.zeros(num_items))  # (I,) float32

    def fit(self, train: sp.csr_matrix, generator: torch.Generator | None = None) -> Pop:
        """Count interactions per item: the column sums of the (U, I) training matrix."""
        if train.shape != (self.num_users, self.num_items):
            raise LiverecError(
                f"pop: training matrix is {train.shape}, model is ({self.num_users}, {self.num_items})"
            )
        counts = np.asarray(train.sum(axis=0), dtype=np.float32).ravel()  # (I,)
        self.item_counts = torch.from_numpy(counts).to(self.item_counts.device)
        return self

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """users (B,), items (B, M) -> (B, M)."""
        return self.item_counts[items]  # (B, M), a fresh tensor

    def score_all(self, users: torch.Tensor) -> torch.Tensor:
        """users (B,) -> (B, I); a copy, so callers may mask it in place."""
        return self.item_counts.expand(users.shape[0], -1).clone()  # (B, I)

    def user_embeddings(self) -> torch.Tensor:
        """(U, 1) of ones."""
        return torch.ones(self.num_users, 1, device=self.item_counts.device)

    def item_embeddings(self) -> torch.Tensor:
        """(I, 1) item counts."""
        return self.item_counts.unsqueeze(1)  # (I, 1)
