"""LightGCN training-step cost against the number of graph edges (random subsamples of Gowalla train).

    python benchmarks/bench_lightgcn.py [--fractions 0.25 0.5 1.0] [--batch-size 16384] [--steps 10]

First, one propagation layer forward + backward on the full graph (one thread): torch's generic
sparse-CSR backward against LightGCN's symmetric one, and the bare Â @ E. Then, per fraction: nnz of
the (U+I)² adjacency, seconds per training step (propagation forward and
backward + BPR on one batch + Adam) and the implied seconds per epoch. Without LIVEREC_DATA, synthetic
data of Gowalla's shape is used. Expected: time per step grows linearly with nnz (O(nnz·D) per layer).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import scipy.sparse as sp
import torch

from liverec.models.lightgcn import LightGCN, LightGCNConfig, _SymmetricSpMM, normalized_adjacency
from liverec.train.pairwise import PairBatch, pair_loss
from liverec.train.trainer import TrainConfig, make_optimizer


def gowalla_train() -> sp.csr_matrix:
    home = os.environ.get("LIVEREC_DATA")
    if home and os.path.isdir(os.path.join(home, "lightgcn-gowalla")):
        from liverec.data.sources import load_events
        from liverec.data.split import DataConfig, make_dataset

        ds = make_dataset(load_events("lightgcn-gowalla"), DataConfig(split="given", valid=False))
        return ds.train.csr()
    rng = np.random.default_rng(0)
    users, items, nnz = 29_858, 40_981, 810_128
    return sp.csr_matrix((np.ones(nnz), (rng.integers(0, users, nnz), rng.integers(0, items, nnz))),
                         shape=(users, items))


def layer_costs(train: sp.csr_matrix, dim: int, reps: int = 5) -> None:
    adjacency = normalized_adjacency(train)
    emb = torch.randn(adjacency.shape[0], dim, requires_grad=True)

    def seconds(fn) -> float:
        fn()
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        return (time.perf_counter() - t0) / reps

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    generic = seconds(lambda: torch.sparse.mm(adjacency, emb).sum().backward())
    custom = seconds(lambda: _SymmetricSpMM.apply(adjacency, emb).sum().backward())
    with torch.no_grad():
        bare = seconds(lambda: adjacency @ emb)
    torch.set_num_threads(threads)
    print(f"one layer, 1 thread: generic fwd+bwd {generic:.3f} s, symmetric fwd+bwd {custom:.3f} s, "
          f"A @ E alone {bare:.3f} s")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    p.add_argument("--batch-size", type=int, default=16384)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--dim", type=int, default=64)
    args = p.parse_args()
    train_full = gowalla_train()
    layer_costs(train_full, args.dim)
    full = train_full.tocoo()
    rng = np.random.default_rng(0)
    print(f"threads={torch.get_num_threads()} batch={args.batch_size} d={args.dim}")
    print("| fraction | train edges | adjacency nnz | s/step | steps/epoch | s/epoch |")
    print("|---|---|---|---|---|---|")
    for frac in args.fractions:
        keep = rng.random(full.nnz) < frac
        train = sp.csr_matrix((full.data[keep], (full.row[keep], full.col[keep])), shape=full.shape)
        model = LightGCN(LightGCNConfig(embedding_dim=args.dim), *train.shape).set_graph(train)
        cfg = TrainConfig(lr=0.01, l2=5e-5, progress=False)
        opt = make_optimizer(model, cfg)
        coo = train.tocoo()
        model.train()
        times = []
        for step in range(args.steps + 2):
            pick = rng.integers(0, coo.nnz, args.batch_size)
            batch = PairBatch(torch.from_numpy(coo.row[pick].astype(np.int64)),
                              torch.from_numpy(coo.col[pick].astype(np.int64)),
                              torch.from_numpy(rng.integers(0, train.shape[1], (args.batch_size, 1))))
            t0 = time.perf_counter()
            loss = pair_loss(model, batch, cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step >= 2:  # the first steps warm up allocators
                times.append(time.perf_counter() - t0)
        per_step = float(np.median(times))
        steps = -(-train.nnz // args.batch_size)
        nnz = model.adjacency_.values().numel()
        print(f"| {frac:g} | {train.nnz:,} | {nnz:,} | {per_step:.3f} | {steps} | {per_step * steps:.1f} |")


if __name__ == "__main__":
    main()
