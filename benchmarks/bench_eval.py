"""Full-ranking evaluation cost versus the bare minimum (chunked matmul + top-k), Gowalla-sized.

    python benchmarks/bench_eval.py [--batch-size 1024] [--repeats 3] [--device cpu]

Data: the LightGCN Gowalla split from $LIVEREC_DATA/lightgcn-gowalla when LIVEREC_DATA is set,
else synthetic data of the same shape (29,858 users, 40,981 items, ~27 train / ~7 test per user).
Embeddings are random (d = 64): the timing does not depend on their values.
Target: evaluate() <= 2x the bare chunked matmul + topk(20).
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from liverec.data.dataset import Dataset
from liverec.data.interactions import Interactions
from liverec.data.vocab import IdVocab
from liverec.evaluate import EvalConfig, evaluate
from liverec.models.base import Recommender

NUM_USERS, NUM_ITEMS = 29_858, 40_981


@dataclass
class DotConfig:
    embedding_dim: int = 64


class DotModel(Recommender):
    """score(u, i) = <user_emb[u], item_emb[i]>; the shape of MF / LightGCN at inference."""

    Config = DotConfig

    def __init__(self, config: DotConfig, num_users: int, num_items: int, seed: int = 0) -> None:
        super().__init__(config, num_users, num_items)
        g = torch.Generator().manual_seed(seed)
        self.user_emb = torch.nn.Parameter(torch.randn(num_users, config.embedding_dim, generator=g))
        self.item_emb = torch.nn.Parameter(torch.randn(num_items, config.embedding_dim, generator=g))

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return (self.user_emb[users][:, None, :] * self.item_emb[items]).sum(-1)

    def score_all(self, users: torch.Tensor) -> torch.Tensor:
        return self.user_emb[users] @ self.item_emb.T


def read_lightgcn(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """`user item item ...` lines -> (users, items) arrays."""
    users, items = [], []
    for line in path.read_text().splitlines():
        ids = np.array(line.split(), dtype=np.int64)
        if ids.size > 1:
            users.append(np.full(ids.size - 1, ids[0]))
            items.append(ids[1:])
    return np.concatenate(users), np.concatenate(items)


def synthetic(seed: int = 0) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """~27 train and ~7 disjoint test items per user, popularity skewed like check-in data."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, NUM_ITEMS + 1) ** 0.7
    p /= p.sum()
    per_user = rng.poisson(34, NUM_USERS).clip(10, None)
    users = np.repeat(np.arange(NUM_USERS), per_user)
    keys = np.unique(users * NUM_ITEMS + rng.choice(NUM_ITEMS, size=users.size, p=p))
    users, items = keys // NUM_ITEMS, keys % NUM_ITEMS
    is_test = rng.random(keys.size) < 0.2
    return (users[~is_test], items[~is_test]), (users[is_test], items[is_test])


def load() -> tuple[Dataset, str]:
    home = os.environ.get("LIVEREC_DATA")
    folder = Path(home) / "lightgcn-gowalla" if home else None
    if folder is not None and (folder / "train.txt").is_file():
        train, test, source = read_lightgcn(folder / "train.txt"), read_lightgcn(folder / "test.txt"), str(folder)
    else:
        (train, test), source = synthetic(), "synthetic"
    n_u = int(max(train[0].max(), test[0].max())) + 1
    n_i = int(max(train[1].max(), test[1].max())) + 1
    ds = Dataset(
        "gowalla-bench", IdVocab(np.arange(n_u)), IdVocab(np.arange(n_i)),
        train=Interactions(train[0], train[1], n_u, n_i), valid=None,
        test=Interactions(test[0], test[1], n_u, n_i),
    )
    return ds, source


def bare(model: DotModel, users: torch.Tensor, batch_size: int, k: int) -> float:
    """Seconds for the unavoidable work: one matmul and one top-k per chunk of users."""
    t0 = time.perf_counter()
    with torch.no_grad():
        for start in range(0, users.numel(), batch_size):
            u = users[start : start + batch_size]
            torch.topk(model.user_emb[u] @ model.item_emb.T, k, dim=1)
    _sync(users.device)
    return time.perf_counter() - t0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3, help="report the fastest of this many runs")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    device = torch.device(args.device)
    ds, source = load()
    model = DotModel(DotConfig(), ds.num_users, ds.num_items).to(device).eval()
    cfg = EvalConfig(ks=(10, 20), batch_size=args.batch_size)
    test_users = torch.from_numpy(ds.test.users_with_interactions()).to(device)
    print(f"data: {source}: {ds.num_users} users, {ds.num_items} items, "
          f"{len(ds.train)} train, {len(ds.test)} test; {test_users.numel()} test users; "
          f"d=64, batch {args.batch_size}, {torch.get_num_threads()} threads, {device}")

    t_bare, t_eval, result = [], [], {}
    for _ in range(args.repeats):
        t_bare.append(bare(model, test_users, args.batch_size, max(cfg.ks)))
        t0 = time.perf_counter()
        result = evaluate(model, ds, "test", cfg, device=device)
        _sync(device)
        t_eval.append(time.perf_counter() - t0)
    a, b = min(t_bare), min(t_eval)
    print(f"{'(a) matmul + topk(20)':<28} {a:8.2f} s")
    print(f"{'(b) evaluate (full)':<28} {b:8.2f} s")
    print(f"{'ratio (b) / (a)':<28} {b / a:8.2f}   (target <= 2)")
    print(f"Recall@20 {result['Recall@20']:.4f}  NDCG@20 {result['NDCG@20']:.4f}  users {result['users']}")


if __name__ == "__main__":
    main()
