"""Dataset: a split of encoded interactions with the id vocabularies and item metadata."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from liverec.data.interactions import Interactions
from liverec.data.vocab import IdVocab


@dataclass
class Dataset:
    """What models, trainers and evaluators consume. All splits share one id space.

    `valid` is None when the split has no validation part (e.g. a shipped train/test split).
    """

    name: str
    users: IdVocab
    items: IdVocab
    train: Interactions
    valid: Interactions | None
    test: Interactions
    item_titles: dict = field(default_factory=dict)  # raw item id -> title

    @property
    def num_users(self) -> int:
        return len(self.users)

    @property
    def num_items(self) -> int:
        return len(self.items)

    def revealed(self, stage: str) -> Interactions:
        """What a model may know when ranking for `stage`: train for "valid"; train+valid for
        "test"; every split for "all" (recommending after the data set's end)."""
        parts = [self.train]
        if stage in ("test", "all") and self.valid is not None:
            parts.append(self.valid)
        if stage == "all":
            parts.append(self.test)
        return Interactions.concat(parts)

    def known_items(self, stage: str) -> sp.csr_matrix:
        """Items to mask when ranking for `stage`: train for "valid"; train+valid for "test"."""
        return self.revealed(stage).csr()

    def title(self, raw_item) -> str:
        return str(self.item_titles.get(raw_item, raw_item))

    def summary(self) -> dict:
        return {
            "users": self.num_users,
            "items": self.num_items,
            "train": len(self.train),
            "valid": 0 if self.valid is None else len(self.valid),
            "test": len(self.test),
        }


def stage_items(ds: Dataset, stage: str) -> Interactions:
    """The held-out interactions of `stage` ("valid" or "test")."""
    part = ds.valid if stage == "valid" else ds.test
    if part is None:
        raise ValueError(f"the split has no {stage} part")
    return part


def user_positives(csr: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """(indptr, indices) of a CSR matrix as int64 arrays, handy for vectorised membership."""
    return csr.indptr.astype(np.int64), csr.indices.astype(np.int64)
