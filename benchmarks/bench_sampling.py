"""Negatives per second of each sampler on a synthetic 30k users x 40k items, 800k-positive matrix.

    python benchmarks/bench_sampling.py [--batch 4096] [--negatives 64] [--repeats 20]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.sparse as sp

from liverec.sampling import (
    HardNegativeSampler,
    InBatchSampler,
    PopularitySampler,
    UniformSampler,
)


def synthetic_positives(num_users: int, num_items: int, nnz: int, seed: int = 0) -> sp.csr_matrix:
    """Long-tailed (Zipf-like) item popularity, like real interaction data."""
    rng = np.random.default_rng(seed)
    draws = int(nnz * 1.2)  # over-draw, then keep exactly `nnz` distinct pairs
    users = rng.integers(0, num_users, draws)
    item_p = 1.0 / np.arange(1, num_items + 1) ** 0.8
    items = rng.choice(num_items, size=draws, p=item_p / item_p.sum())
    keys = rng.choice(np.unique(users * num_items + items), size=nnz, replace=False)
    data = np.ones(nnz, np.float32)
    return sp.csr_matrix((data, (keys // num_items, keys % num_items)), shape=(num_users, num_items))


def bench(sampler, users_all, pos_all, batch, n, repeats, rng) -> float:
    """Negatives per second over `repeats` batches (after one warm-up batch)."""
    sampler.sample(users_all[:batch], n, rng, pos_items=pos_all[:batch])
    t0 = time.perf_counter()
    for r in range(repeats):
        sl = slice((r * batch) % (len(users_all) - batch), None)
        sampler.sample(users_all[sl][:batch], n, rng, pos_items=pos_all[sl][:batch])
    return repeats * batch * n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--negatives", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()

    pos = synthetic_positives(30_000, 40_000, 800_000)
    coo = pos.tocoo()
    rng = np.random.default_rng(0)
    order = rng.permutation(coo.nnz)  # training batches: shuffled (user, positive item) pairs
    users_all, pos_all = coo.row[order].astype(np.int64), coo.col[order].astype(np.int64)
    item_vecs = rng.standard_normal((40_000, 32)).astype(np.float32)
    user_vecs = rng.standard_normal((30_000, 32)).astype(np.float32)

    def score_fn(u: np.ndarray, cand: np.ndarray) -> np.ndarray:
        return np.einsum("bd,bpd->bp", user_vecs[u], item_vecs[cand])

    samplers = {
        "uniform": UniformSampler(pos),
        "popularity(0.75)": PopularitySampler(pos, alpha=0.75),
        "in-batch": InBatchSampler(pos),
        "hard(pool=256)": HardNegativeSampler(pos, pool_size=256, score_fn=score_fn),
    }
    print(f"positives: {pos.shape[0]} users x {pos.shape[1]} items, {pos.nnz} nnz; "
          f"batch {args.batch} users x {args.negatives} negatives")
    print(f"{'sampler':<18} {'negatives/s':>14}")
    for name, sampler in samplers.items():
        rate = bench(sampler, users_all, pos_all, args.batch, args.negatives, args.repeats, rng)
        print(f"{name:<18} {rate:>14,.0f}")


if __name__ == "__main__":
    main()
