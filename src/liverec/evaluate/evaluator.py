"""Evaluate a Recommender on a held-out stage: full ranking (chunked, fused top-k) or sampled.

Full ranking scores the whole catalogue for a chunk of users at a time, masks the items the user
already revealed (train for "valid", train + valid for "test") with -inf, takes one top-k for the
largest cut-off and derives every metric from the resulting hit matrix. Memory is bounded by one
(batch_size, num_items) score chunk. The sampled protocol ranks each held-out item against N
negatives the user never interacted with, fixed by a seed (or a file) so that every model sees the
very same candidates.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from liverec.data.dataset import Dataset
from liverec.data.interactions import Interactions
from liverec.errors import LiverecError
from liverec.evaluate.metrics import METRICS, item_coverage
from liverec.models.base import Recommender
from liverec.sampling import UniformSampler


@dataclass
class EvalConfig:
    protocol: str = "full"  # "full" (rank the whole catalogue) or "sampled:N" (target vs N negatives)
    ks: tuple[int, ...] = (10, 20)  # cut-offs; every metric is reported at each
    batch_size: int = 1024  # users (full) or targets (sampled) scored per chunk
    negatives_seed: int = 0  # seeds the sampled protocol's negatives (same seed = same negatives)
    negatives_file: str | None = None  # sampled protocol: lines "user neg neg ..." with raw ids

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check the options (and normalise `ks` to a tuple of ints); raise LiverecError."""
        ks = (self.ks,) if isinstance(self.ks, int) else tuple(self.ks)
        if not ks or any(not isinstance(k, (int, np.integer)) or k <= 0 for k in ks):
            raise LiverecError(f"eval ks must be positive integers, got {self.ks!r}")
        self.ks = tuple(int(k) for k in ks)
        if self.batch_size <= 0:
            raise LiverecError(f"eval batch_size must be positive, got {self.batch_size}")
        _ = self.num_negatives  # parses and checks the protocol string
        if self.negatives_file is not None and self.protocol == "full":
            raise LiverecError("negatives_file only applies to protocol 'sampled:N'")

    @property
    def num_negatives(self) -> int | None:
        """N of "sampled:N", or None for the full protocol."""
        if self.protocol == "full":
            return None
        name, _, count = str(self.protocol).partition(":")
        if name != "sampled" or not count.isdigit() or int(count) <= 0:
            raise LiverecError(
                f"unknown eval protocol {self.protocol!r}; use 'full' or 'sampled:N' (e.g. 'sampled:99')"
            )
        return int(count)


def evaluate(
    model: Recommender, ds: Dataset, stage: str, cfg: EvalConfig,
    device: str | torch.device = "cpu", return_rankings: bool = False,
) -> dict:
    """Metrics of `model` on `stage` ("valid" or "test"): {"Recall@20": ..., "users": U, ...}.

    The model must already live on `device`. With `return_rankings`, the result also holds
    `rankings = (user_idx (U,), topk_item_idx (U, kmax))` as numpy arrays (for the sampled protocol,
    one row per held-out target and the top of its candidate list).
    """
    cfg.validate()
    if stage not in ("valid", "test"):
        raise LiverecError(f"stage must be 'valid' or 'test', got {stage!r}")
    part = ds.valid if stage == "valid" else ds.test
    if part is None or len(part) == 0:
        raise LiverecError(f"the split has no {stage} interactions to evaluate on")
    was_training = model.training
    model.eval()
    model.set_history(ds.revealed(stage))  # sequence models read each user's latest items
    try:
        with torch.no_grad():
            if cfg.num_negatives is None:
                return _full(model, ds, stage, part, cfg, torch.device(device), return_rankings)
            return _sampled(model, ds, part, cfg, torch.device(device), return_rankings)
    finally:
        model.train(was_training)


def _full(
    model: Recommender, ds: Dataset, stage: str, part: Interactions, cfg: EvalConfig,
    device: torch.device, return_rankings: bool,
) -> dict:
    num_items, kmax = ds.num_items, max(cfg.ks)
    if kmax > num_items:
        raise LiverecError(f"cut-off k={kmax} exceeds the {num_items} items of the catalogue")
    held = part.csr()
    n_relevant = np.diff(held.indptr)
    users = np.flatnonzero(n_relevant)  # (U,) users with >= 1 held-out item
    known = ds.known_items(stage)
    k_indptr, k_indices = known.indptr.astype(np.int64), known.indices.astype(np.int64)
    held_keys = torch.from_numpy(_sorted_keys(held)).to(device)  # (nnz,) user * I + item
    users_t = torch.from_numpy(users).to(device)
    topk = torch.empty((users.size, kmax), dtype=torch.long, device=device)
    hits = torch.empty((users.size, kmax), dtype=torch.bool, device=device)
    for start in range(0, users.size, cfg.batch_size):
        u = users_t[start : start + cfg.batch_size]  # (B,)
        scores = model.score_all(u)  # (B, I)
        if scores.requires_grad or not scores.is_contiguous() or scores._base is not None:
            scores = scores.detach().clone()  # never write -inf into the model's own memory
        rows, cols = _row_cells(k_indptr, k_indices, users[start : start + cfg.batch_size])
        scores[rows.to(device), cols.to(device)] = -torch.inf
        vals, idx = torch.topk(scores, kmax, dim=1)  # (B, kmax), sorted
        keys = u[:, None] * num_items + idx
        pos = torch.searchsorted(held_keys, keys).clamp_(max=held_keys.numel() - 1)
        # a masked item only reaches the top-k when the user has < kmax unmasked items
        hits[start : start + u.numel()] = (held_keys[pos] == keys) & (vals > -torch.inf)
        topk[start : start + u.numel()] = idx
    n_rel = torch.from_numpy(n_relevant[users]).to(device)
    out = _summarise(hits, n_rel, cfg.ks, group=None)
    for k in cfg.ks:
        out[f"Coverage@{k}"] = item_coverage(topk[:, :k], num_items)
    out["users"] = int(users.size)
    if return_rankings:
        out["rankings"] = (users, topk.cpu().numpy())
    return out


def _sampled(
    model: Recommender, ds: Dataset, part: Interactions, cfg: EvalConfig,
    device: torch.device, return_rankings: bool,
) -> dict:
    n_neg = cfg.num_negatives
    held = part.csr().tocoo()
    order = np.lexsort((held.col, held.row))
    row_users = held.row[order].astype(np.int64)  # (R,) one row per (user, held-out item)
    targets = held.col[order].astype(np.int64)  # (R,)
    if cfg.negatives_file is not None:
        negs = _file_negatives(Path(cfg.negatives_file), ds, row_users, n_neg)
    else:
        negs = _seeded_negatives(ds, row_users, n_neg, cfg.negatives_seed)
    kmax = max(cfg.ks)
    n_rows = row_users.size
    ranks = torch.empty(n_rows, dtype=torch.long, device=device)
    kcand = min(kmax, n_neg + 1)
    top = torch.empty((n_rows, kcand), dtype=torch.long, device=device) if return_rankings else None
    for start in range(0, n_rows, cfg.batch_size):
        sl = slice(start, start + cfg.batch_size)
        u = torch.from_numpy(row_users[sl]).to(device)
        items = torch.from_numpy(np.concatenate([targets[sl, None], negs[sl]], axis=1)).to(device)
        s = model.score(u, items)  # (b, 1 + N)
        ranks[sl] = (s[:, 1:] >= s[:, :1]).sum(1)  # ties count against the target
        if top is not None:
            top[sl] = items.gather(1, torch.topk(s, kcand, dim=1).indices)
    hits = torch.zeros((n_rows, kmax), dtype=torch.bool, device=device)
    inside = ranks < kmax
    hits[torch.nonzero(inside).squeeze(1), ranks[inside]] = True
    users, group = np.unique(row_users, return_inverse=True)
    out = _summarise(hits, torch.ones(n_rows, device=device), cfg.ks, group=group)
    out["users"] = int(users.size)
    if return_rankings:
        out["rankings"] = (row_users, top.cpu().numpy())
    return out


def _summarise(
    hits: torch.Tensor, n_rel: torch.Tensor, ks: tuple[int, ...], group: np.ndarray | None
) -> dict:
    """Mean over users of every metric at every k; `group` maps rows to users (rows averaged first)."""
    out: dict = {}
    for k in ks:
        for name, fn in METRICS.items():
            per_row = fn(hits, n_rel, k).cpu().numpy()
            if group is not None:  # several targets per user: average within the user first
                per_row = np.bincount(group, per_row) / np.bincount(group)
            out[f"{name}@{k}"] = float(per_row.mean()) if per_row.size else 0.0
    return out


def _sorted_keys(csr: sp.csr_matrix) -> np.ndarray:
    """user * num_items + item for every stored cell of a canonical CSR matrix (sorted)."""
    csr.sum_duplicates()
    rows = np.repeat(np.arange(csr.shape[0], dtype=np.int64), np.diff(csr.indptr))
    return rows * csr.shape[1] + csr.indices.astype(np.int64)


def _row_cells(
    indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """(local row, column) of every stored cell in the CSR rows `rows`, without a Python loop.

    Built with numpy: these index arrays are small (~rows x 30) and numpy is far cheaper than
    torch's per-op overhead on CPU; the caller moves them to the scoring device.
    """
    starts = indptr[rows]
    lens = indptr[rows + 1] - starts
    local = np.repeat(np.arange(rows.size), lens)
    offsets = np.arange(local.size) - (np.cumsum(lens) - lens)[local]
    return torch.from_numpy(local), torch.from_numpy(indices[starts[local] + offsets])


def _seeded_negatives(ds: Dataset, row_users: np.ndarray, n_neg: int, seed: int) -> np.ndarray:
    """(R, N) distinct items each user never interacted with in any split, fixed by `seed`."""
    parts = [p for p in (ds.train, ds.valid, ds.test) if p is not None]
    sampler = UniformSampler(Interactions.concat(parts).csr())
    rng = np.random.default_rng(seed)
    negs = sampler.sample(row_users, n_neg, rng)
    for _ in range(10):  # redraw duplicates within a row (a few rounds; rare for N << I)
        negs.sort(axis=1)
        dup = np.zeros_like(negs, dtype=bool)
        dup[:, 1:] = negs[:, 1:] == negs[:, :-1]
        rows, cols = np.nonzero(dup)
        if rows.size == 0:
            break
        negs[rows, cols] = sampler.sample(row_users[rows], 1, rng)[:, 0]
    return negs


def _file_negatives(path: Path, ds: Dataset, row_users: np.ndarray, n_neg: int) -> np.ndarray:
    """(R, N) negatives read from `user neg neg ...` lines (raw ids), one line per user."""
    if not path.is_file():
        raise LiverecError(f"negatives file {path} does not exist")
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    bad = [i for i, tokens in enumerate(lines) if len(tokens) != n_neg + 1]
    if bad:
        raise LiverecError(
            f"{path}: line {bad[0] + 1} has {len(lines[bad[0]]) - 1} negatives, protocol wants {n_neg}"
        )
    table = np.array(lines, dtype=str).reshape(-1, n_neg + 1)
    file_users = ds.users.encode(table[:, 0])
    file_negs = ds.items.encode(table[:, 1:].reshape(-1)).reshape(-1, n_neg)
    if np.unique(file_users).size != file_users.size:
        raise LiverecError(f"{path}: a user appears on more than one line")
    order = np.argsort(file_users)
    pos = np.searchsorted(file_users[order], row_users).clip(max=max(file_users.size - 1, 0))
    missing = file_users.size == 0 or np.any(file_users[order][pos] != row_users)
    if missing:
        raise LiverecError(f"{path}: some evaluated users have no line of negatives")
    return file_negs[order][pos]
