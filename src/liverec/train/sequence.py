"""Batches of user sequences and the loss step for sequence models (next-item prediction).

Each user's latest max_len + 1 training items form one row: inputs are the first max_len, and the
target of input position t is the item at t + 1. One forward pass scores every position of every
row at once (causal attention keeps position t blind to later items), so an epoch is one pass over
the users, as in SASRec.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from liverec import losses
from liverec.data.interactions import Interactions
from liverec.data.sequences import PAD, user_sequences
from liverec.errors import LiverecError
from liverec.models.base import Recommender
from liverec.train.distributed import Shard
from liverec.train.pairwise import score_loss
from liverec.train.trainer import TrainConfig

COLLIDE_SCORE = -1e4  # a shared negative equal to the target: its loss term and gradient vanish


@dataclass
class SequenceBatch:
    users: torch.Tensor  # (B,)
    inputs: torch.Tensor  # (B, W) model ids: item index + 1, 0 = padding (left)
    targets: torch.Tensor  # (B, W) item index to predict at each position, -1 = none
    negatives: torch.Tensor | None = None  # (T, N) per target (row-major order) or (N,) shared

    def to(self, device: torch.device) -> SequenceBatch:
        neg = None if self.negatives is None else self.negatives.to(device)
        return SequenceBatch(self.users.to(device), self.inputs.to(device), self.targets.to(device), neg)


def check_sequence_options(cfg: TrainConfig) -> None:
    """Options the sequence trainer cannot honour are an error, not silently ignored."""
    if cfg.sampler not in ("uniform", "popularity"):
        raise LiverecError(
            f"train.sampler={cfg.sampler!r} is not supported for sequence models; use uniform or popularity"
        )
    if cfg.l2 > 0:
        raise LiverecError("train.l2 is not used by sequence models; use train.weight_decay")
    if cfg.sequence_window not in ("latest", "random"):
        raise LiverecError(f"train.sequence_window must be latest or random, not {cfg.sequence_window!r}")


class SequenceBatches:
    """One epoch of shuffled user rows with negatives drawn per target position (or per batch).

    Negatives per position exclude the user's training items (as SasRec samples them); with
    `cfg.shared_negatives` one draw of `num_negatives` serves the whole batch as a (T, D) x (D, N)
    matmul, the way to afford hundreds of negatives (sampled softmax, gBCE). Full cross-entropy
    (`loss = "ce"`) draws none. Every batch is cut to its longest row (exact for SASRec, whose
    positions count from the right). Batches are random by default; with `train.bucket_batches`
    N > 1 the shuffled users are sorted by length within windows of N batches, cut into batches, and
    the batches are shuffled, so little compute goes to padding (ML-1M at L = 200: a random batch is
    ~half padding) at a cost in quality (see TrainConfig.bucket_batches).
    """

    def __init__(
        self, train: Interactions, max_len: int, sampler, cfg: TrainConfig,
        rng: np.random.Generator, device: torch.device, shard: Shard = Shard(),
    ) -> None:
        if cfg.batch_size < shard.world_size:
            raise LiverecError(
                f"train.batch_size={cfg.batch_size} is the global batch: it must be >= the number of "
                f"processes ({shard.world_size})"
            )
        self.indptr, self.items = user_sequences(train)  # ragged, time-ordered
        lengths = np.diff(self.indptr)
        self.users = np.flatnonzero(lengths >= 2)  # users with at least one (input, target) pair
        if self.users.size == 0:
            raise LiverecError("no user has two training events: a sequence model has nothing to learn")
        self.lengths, self.span = lengths[self.users], max_len + 1
        self.sampler, self.cfg, self.rng, self.device = sampler, cfg, rng, device
        self.shard, self.neg_rng = shard, rng

    def __len__(self) -> int:
        steps = -(-self.users.size // self.cfg.batch_size)
        last = self.users.size - (steps - 1) * self.cfg.batch_size
        return steps - 1 if last < self.shard.world_size else steps  # see __iter__

    def for_epoch(self, seed: int, epoch: int) -> SequenceBatches:
        """This epoch's batches from generators keyed by (seed, epoch): the same windows and batches
        on every rank (each takes its slice of every global batch), resumable at any epoch; the
        negatives of sampled losses come from (seed, epoch, rank)."""
        epoch_batches = copy.copy(self)  # shares the arrays; only the generators differ
        epoch_batches.rng = np.random.default_rng([seed, epoch])
        epoch_batches.neg_rng = np.random.default_rng([seed, epoch, 3, self.shard.rank])
        return epoch_batches

    def _windows(self) -> np.ndarray:
        """(users, L+1) this epoch's row per user, left-padded with PAD: the latest L+1 training
        items, or with `sequence_window = "random"` a window ending at a uniformly drawn position
        (at least L+1 items in), so every part of a long history is trained on over the epochs."""
        end = self.lengths  # (U,) exclusive end of each window within the user's sequence
        if self.cfg.sequence_window == "random":
            low = np.minimum(self.lengths, self.span)
            end = low + (self.rng.random(self.lengths.size) * (self.lengths - low + 1)).astype(np.int64)
        offset = end[:, None] - self.span + np.arange(self.span)  # (U, L+1) position in the sequence
        inside = offset >= 0
        flat = self.indptr[self.users][:, None] + np.where(inside, offset, 0)
        return np.where(inside, self.items[flat], PAD)

    def __iter__(self):
        windows = self._windows()
        for rows in self._batches(windows):
            if len(rows) < self.shard.world_size:
                continue  # some rank would get no row: every rank skips this (last, tiny) batch
            rows = rows[self.shard.rows(len(rows))]  # this rank's slice of the global batch
            w = windows[rows]  # (B, L+1)
            real_input = w[:, :-1] != PAD
            first = int(np.argmax(real_input.any(0)))  # columns before are padding in every row
            inputs = np.where(real_input, w[:, :-1] + 1, 0)[:, first:]  # (B, W)
            targets = np.where(real_input, w[:, 1:], -1)[:, first:]  # (B, W)
            yield SequenceBatch(
                torch.from_numpy(self.users[rows]), torch.from_numpy(inputs), torch.from_numpy(targets),
                self._negatives(self.users[rows], targets),
            ).to(self.device)

    def _batches(self, windows: np.ndarray) -> list[np.ndarray]:
        """Row indices of each batch of one epoch (shuffled; bucketed by length when asked)."""
        size, order = self.cfg.batch_size, self.rng.permutation(self.users.size)
        length = (windows != PAD).sum(1)
        window = size * self.cfg.bucket_batches
        batches = []
        for start in range(0, order.size, window):  # a loop over windows of batches
            chunk = order[start : start + window]
            chunk = chunk[np.argsort(length[chunk], kind="stable")]
            batches.extend(chunk[i : i + size] for i in range(0, chunk.size, size))
        return [batches[i] for i in self.rng.permutation(len(batches))]

    def _negatives(self, users: np.ndarray, targets: np.ndarray) -> torch.Tensor | None:
        if self.cfg.loss == "ce":
            return None
        if self.cfg.shared_negatives:
            return torch.from_numpy(self.sampler.sample_shared(self.cfg.num_negatives, self.neg_rng))
        owner = np.repeat(users, (targets >= 0).sum(1))  # (T,) row-major, as the loss reads targets
        return torch.from_numpy(self.sampler.sample(owner, self.cfg.num_negatives, self.neg_rng))


def make_sequence_batches(
    model: Recommender, train: Interactions, train_csr: sp.csr_matrix, cfg: TrainConfig,
    rng: np.random.Generator, device: torch.device, shard: Shard = Shard(),
) -> SequenceBatches:
    """Batches for `model` (its config's max_len) with the sampler named by `cfg`."""
    from liverec import sampling

    check_sequence_options(cfg)
    if cfg.sampler == "popularity":
        sampler = sampling.PopularitySampler(train_csr, alpha=cfg.sampler_alpha)
    else:
        sampler = sampling.UniformSampler(train_csr)
    return SequenceBatches(train, model.config.max_len, sampler, cfg, rng, device, shard)


def sequence_loss(model: Recommender, batch: SequenceBatch, cfg: TrainConfig) -> torch.Tensor:
    """Next-item loss over every position with a target, all rows and positions in one pass."""
    hidden = model.encode(batch.inputs)  # (B, W, D)
    has_target = batch.targets >= 0  # (B, W)
    h = hidden[has_target]  # (T, D), row-major
    target = batch.targets[has_target]  # (T,)
    if cfg.loss == "ce":  # softmax over the whole catalogue
        return losses.full_softmax_loss(h, model.output_embeddings(), target)
    pos = (h * model.item_vectors(target)).sum(-1)  # (T,)
    if batch.negatives.dim() == 1:  # shared by the batch
        neg = h @ model.item_vectors(batch.negatives).T  # (T, N)
        neg = neg.masked_fill(batch.negatives[None, :] == target[:, None], COLLIDE_SCORE)
    else:
        neg = (model.item_vectors(batch.negatives) @ h[:, :, None]).squeeze(-1)  # (T, N)
    return score_loss(pos, neg, cfg, model.num_items)
