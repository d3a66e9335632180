"""Batches of (user, positive item, negative items) and the loss step for collaborative models."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from liverec import losses
from liverec.data.interactions import Interactions
from liverec.errors import LiverecError
from liverec.models.base import Recommender
from liverec.train.trainer import TrainConfig


@dataclass
class PairBatch:
    users: torch.Tensor  # (B,)
    pos: torch.Tensor  # (B,)
    neg: torch.Tensor  # (B, N) per row, or (N,) shared by every row
    collide: torch.Tensor | None = None  # (B, N) bool: shared negative that is the row's positive

    def to(self, device: torch.device) -> PairBatch:
        collide = None if self.collide is None else self.collide.to(device)
        return PairBatch(self.users.to(device), self.pos.to(device), self.neg.to(device), collide)


def make_sampler(cfg: TrainConfig, positives: sp.csr_matrix, model: Recommender):
    """The negative sampler named by `cfg.sampler`, excluding each user's training positives."""
    from liverec import sampling

    if cfg.sampler == "popularity":
        return sampling.PopularitySampler(positives, alpha=cfg.sampler_alpha)
    if cfg.sampler == "in_batch":
        return sampling.InBatchSampler(positives)
    if cfg.sampler == "hard":

        def score_fn(users: np.ndarray, cand: np.ndarray) -> np.ndarray:
            device = next(model.parameters()).device
            with torch.no_grad():
                s = model.score(torch.as_tensor(users, device=device), torch.as_tensor(cand, device=device))
            return s.float().cpu().numpy()

        return sampling.HardNegativeSampler(positives, pool_size=cfg.hard_pool, score_fn=score_fn)
    return sampling.UniformSampler(positives)


class PairBatches:
    """One epoch of shuffled positives with freshly sampled negatives (seeded by `rng`).

    With `shared=True` each batch draws `num_negatives` items once and every row scores them: one
    (B, D) x (D, N) matmul instead of a (B, N, D) gather, so hundreds of negatives cost little. A
    shared negative that happens to be a row's positive is flagged in `collide` and left out.
    """

    def __init__(
        self, train: Interactions, sampler, num_negatives: int, batch_size: int,
        rng: np.random.Generator, device: torch.device, shared: bool = False,
    ) -> None:
        self.users, self.items = train.user, train.item
        self.sampler, self.n, self.batch_size = sampler, num_negatives, batch_size
        self.rng, self.device, self.shared = rng, device, shared

    def __len__(self) -> int:
        return -(-len(self.users) // self.batch_size)

    def __iter__(self):
        order = self.rng.permutation(len(self.users))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            users, pos = self.users[idx], self.items[idx]
            collide = None
            if self.shared:
                neg = self.sampler.sample_shared(self.n, self.rng)
                collide = torch.from_numpy(self.sampler.shared_collisions(users, neg))
            else:
                neg = self.sampler.sample(users, self.n, self.rng, pos_items=pos)
            yield PairBatch(
                torch.from_numpy(users), torch.from_numpy(pos), torch.from_numpy(neg), collide
            ).to(self.device)


def pair_loss(model: Recommender, batch: PairBatch, cfg: TrainConfig) -> torch.Tensor:
    """Score positives and negatives, then apply the configured loss (+ L2)."""
    if batch.neg.dim() == 1:  # shared negatives
        pos = model.score(batch.users, batch.pos[:, None])[:, 0]  # (B,)
        neg = model.score_shared(batch.users, batch.neg)  # (B, N)
        if batch.collide is not None:
            # a colliding entry scores -1e4: its BPR/BCE/softmax term and gradient vanish
            neg = neg.masked_fill(batch.collide, -1e4)
        items = torch.cat([batch.pos, batch.neg])  # for L2: each shared negative counted once
    else:
        items = torch.cat([batch.pos[:, None], batch.neg], dim=1)  # (B, 1+N)
        scores = model.score(batch.users, items)  # (B, 1+N)
        pos, neg = scores[:, 0], scores[:, 1:]
    if cfg.loss == "ce":  # full softmax over the catalogue; the sampled negatives are unused
        loss = losses.softmax_loss(model.score_all(batch.users), batch.pos)
    else:
        loss = score_loss(pos, neg, cfg, model.num_items)
    if cfg.l2 > 0:
        loss = loss + cfg.l2 * model.regularization(batch.users, items) / len(batch.users)
    return loss


def score_loss(pos: torch.Tensor, neg: torch.Tensor, cfg: TrainConfig, num_items: int) -> torch.Tensor:
    """The configured loss of positive scores (B,) against negative scores (B, N)."""
    if cfg.loss == "bpr":
        return losses.bpr_loss(pos, neg)
    if cfg.loss == "bce":
        return losses.bce_loss(pos, neg)
    if cfg.loss == "gbce":
        return losses.gbce_loss(pos, neg, num_items, cfg.gbce_t)
    if cfg.loss == "softmax":
        return losses.sampled_softmax_loss(pos, neg)
    raise LiverecError(f"train.loss={cfg.loss!r} does not score sampled negatives")
