"""MF-BPR training-step cost on Gowalla, split into sampling, forward, backward and optimizer.

    python benchmarks/bench_mf_step.py [--negatives 300] [--batch-size 256] [--steps 30] [--threads 1]

Uses the `gowalla-mf-bpr` recipe with uniform negatives and L2 per scored pair (the settings of the
BARS-style run in BENCHMARKS.md, d=64), `--negatives` per positive; times `--steps` steps after 10 warm-up
steps and prints milliseconds per step for each phase and the implied seconds per epoch.
Needs LIVEREC_DATA with lightgcn-gowalla.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from liverec.cli import build_run_config
from liverec.experiment import load_dataset
from liverec.models import build_model
from liverec.train.pairwise import PairBatches, make_sampler, pair_loss
from liverec.train.trainer import make_optimizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--negatives", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    recipe = Path(__file__).parent / "recipes" / "gowalla-mf-bpr.toml"
    # d=64, as the BARS run and the before/after table in BENCHMARKS.md (the recipe now uses d=128)
    overrides = ["params.embedding_dim=64", "train.sampler=uniform", f"train.num_negatives={args.negatives}",
                 f"train.batch_size={args.batch_size}", "train.l2_per=pair"]
    cfg = build_run_config(None, None, recipe, None, overrides, None, "auto")
    ds = load_dataset(cfg)
    model = build_model(cfg.model, cfg.params, ds.num_users, ds.num_items)
    batches = PairBatches(ds.train, make_sampler(cfg.train, ds.train.csr(), model), args.negatives,
                          args.batch_size, np.random.default_rng(0), torch.device("cpu"))
    optimizer = make_optimizer(model, cfg.train)
    phases = dict.fromkeys(("sampling", "forward", "backward", "optimizer"), 0.0)
    it = iter(batches)
    for step in range(10 + args.steps):
        t0 = time.perf_counter()
        batch = next(it)
        t1 = time.perf_counter()
        loss = pair_loss(model, batch, cfg.train)
        t2 = time.perf_counter()
        optimizer.zero_grad()
        loss.backward()
        t3 = time.perf_counter()
        optimizer.step()
        t4 = time.perf_counter()
        if step >= 10:
            for name, dt in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                phases[name] += dt
    per_step = {k: 1000 * v / args.steps for k, v in phases.items()}
    total = sum(per_step.values())
    print(" ".join(f"{k} {v:.1f} ms" for k, v in per_step.items()), f"| step {total:.1f} ms",
          f"| {len(batches)} steps/epoch -> {total * len(batches) / 1000:.0f} s/epoch")


if __name__ == "__main__":
    main()
