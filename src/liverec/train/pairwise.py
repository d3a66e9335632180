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
from liverec.train.distributed import KeyedNegatives, Shard, epoch_generators
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
    """One epoch of shuffled positives with freshly sampled negatives.

    With `shared=True` each batch draws `num_negatives` items once and every row scores them: one
    (B, D) x (D, N) matmul instead of a (B, N, D) gather, so hundreds of negatives cost little. A
    shared negative that happens to be a row's positive is flagged in `collide` and left out.
    When `num_negatives` reaches the catalogue size, the whole catalogue is used instead of a draw:
    sampled softmax becomes the full softmax over every item the user has not interacted with.

    Iterating uses `rng` for the shuffle and for the key of the negatives. `for_epoch(seed, epoch)`
    instead draws from generators keyed by (seed, epoch, step, block of rows): resumable at any epoch, and with a
    `shard` each rank keeps its slice of every global batch of `batch_size` rows and draws only its
    rows' negatives, the same ones a single process draws for them (liverec.train.distributed).
    """

    def __init__(
        self, train: Interactions, sampler, num_negatives: int, batch_size: int,
        rng: np.random.Generator | None, device: torch.device, shared: bool = False,
        shard: Shard = Shard(), pair_sampling: str = "interactions",
    ) -> None:
        if batch_size < shard.world_size:
            raise LiverecError(
                f"train.batch_size={batch_size} is the global batch: it must be >= the number of "
                f"processes ({shard.world_size})"
            )
        if pair_sampling not in ("interactions", "users"):
            raise LiverecError(f"train.pair_sampling must be interactions or users, not {pair_sampling!r}")
        self.users, self.items = train.user, train.item
        self.by_user = pair_sampling == "users"
        if self.by_user:  # the positives grouped by user, to draw a user's random positive in O(1)
            by_user = np.argsort(self.users, kind="stable")
            self.user_items = self.items[by_user]
            counts = np.bincount(self.users, minlength=train.num_users)
            self.indptr = np.concatenate([[0], np.cumsum(counts)])
            self.active = np.flatnonzero(counts)  # users with at least one training positive
        self.sampler, self.n, self.batch_size = sampler, num_negatives, batch_size
        self.rng, self.device, self.shared, self.shard = rng, device, shared, shard
        full = shared and num_negatives >= sampler.num_items
        self.catalogue = np.arange(sampler.num_items, dtype=np.int64) if full else None

    def __len__(self) -> int:
        steps = -(-len(self.users) // self.batch_size)
        last = len(self.users) - (steps - 1) * self.batch_size
        return steps - 1 if 0 < last < self.shard.world_size else steps  # see _batches

    def __iter__(self):
        # the same keyed negatives as for_epoch, keyed by a draw from `rng`: one sampling path
        return self._batches(self.rng, KeyedNegatives(int(self.rng.integers(2**63)), 0))

    def for_epoch(self, seed: int, epoch: int) -> _Epoch:
        """The batches of `epoch` (1-based), from generators keyed by (seed, epoch, step, block)."""
        return _Epoch(self, seed, epoch)

    def _epoch_pairs(self, shuffle: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """This epoch's (users, positives), as many as there are training pairs (the same on every
        rank): a shuffle of every pair, or with pair_sampling = "users" users drawn uniformly (with
        replacement) and one uniform positive of each, as the LightGCN/NGCF reference code samples.
        The second weights every user alike, where the first weights users by their activity."""
        n = len(self.users)
        if not self.by_user:
            order = shuffle.permutation(n)
            return self.users[order], self.items[order]
        users = self.active[shuffle.integers(0, len(self.active), size=n)]
        degree = self.indptr[users + 1] - self.indptr[users]
        pick = self.indptr[users] + (shuffle.random(n) * degree).astype(np.int64)
        return users, self.user_items[pick]

    def _batches(self, shuffle: np.random.Generator, negatives: KeyedNegatives):
        epoch_users, epoch_items = self._epoch_pairs(shuffle)
        for step, start in enumerate(range(0, len(epoch_users), self.batch_size)):
            batch_users = epoch_users[start : start + self.batch_size]
            batch_items = epoch_items[start : start + self.batch_size]
            if len(batch_users) < self.shard.world_size:
                break  # some rank would get no row (and a NaN mean loss): drop this remainder
            rows = self.shard.rows(len(batch_users))
            users, pos = batch_users[rows], batch_items[rows]
            collide = None
            if self.shared:
                neg = self.catalogue
                if neg is None:
                    neg = self.sampler.sample_shared(self.n, negatives.shared(step))
                collide = torch.from_numpy(self.sampler.shared_collisions(users, neg))
            else:
                neg = negatives.sample(self.sampler, batch_users, batch_items, self.n, step, rows)
            yield PairBatch(
                torch.from_numpy(users), torch.from_numpy(pos), torch.from_numpy(neg), collide
            ).to(self.device)


class _Epoch:
    """`PairBatches.for_epoch`: sized (progress bars, cosine schedule) and iterable once per epoch."""

    def __init__(self, batches: PairBatches, seed: int, epoch: int) -> None:
        self.batches, self.seed, self.epoch = batches, seed, epoch

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        shuffle, negatives = epoch_generators(self.seed, self.epoch)
        return self.batches._batches(shuffle, negatives)


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
        loss = loss + cfg.l2 * l2_penalty(model, batch, items, cfg.l2_per)
    return loss


def l2_penalty(model: Recommender, batch: PairBatch, items: torch.Tensor, per: str) -> torch.Tensor:
    """Squared norms of the touched rows, counted per training triple or per scored pair (see l2_per)."""
    if per == "triple":
        return model.regularization(batch.users, items) / len(batch.users)
    b = len(batch.users)
    none = batch.users[:0]
    if batch.neg.dim() == 1:  # shared: every row scores its positive and all N shared negatives
        n = batch.neg.numel()
        item_part = model.regularization(none, batch.pos) + b * model.regularization(none, batch.neg)
    else:
        n = batch.neg.shape[1]
        item_part = model.regularization(none, items)
    user_part = (1 + n) * model.regularization(batch.users, items[:0])
    return (user_part + item_part) / (b * (1 + n))


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
