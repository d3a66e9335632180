"""Spectral initialisation of LightGCN's layer-0 embeddings, written as a run directory to warm-start from.

    python benchmarks/lightgcn_spectral_init.py --out /tmp/exp/lgcn-svd0
    python benchmarks/time_to_quality.py lightgcn ... --set train.init_from=/tmp/exp/lgcn-svd0

Why: the large-batch LightGCN recipe levels off near Recall@20 0.177 on Gowalla whatever the rate,
negatives or batch. Whether the random start is what holds it there is tested by starting from the
top-D singular vectors of R̃ = D_u^-1/2 R D_i^-1/2 (the normalisation of LightGCN's Â): E_u = c U S^β,
E_i = c V S^β, so that E_u E_iᵀ = c² R̃_D at β = 1/2. Â's eigenvectors [u_k; v_k] keep their direction
under propagation, so the initial model is the rank-D low-pass of the graph; c matches the RMS of
the paper's N(0, 0.1²) start. It prints that start's test Recall@20 (a diagnostic; nothing is chosen
on it) and saves `model.safetensors`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    from safetensors.torch import save_file

    from liverec.cli import build_run_config
    from liverec.evaluate import evaluate
    from liverec.experiment import load_dataset
    from liverec.models import build_model
    from liverec.models.sparse import binarize, degree_normalized

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=Path("benchmarks/recipes/gowalla-lightgcn.toml"))
    p.add_argument("--beta", type=float, default=0.5, help="singular-value exponent in E = c U S^beta")
    p.add_argument("--rms", type=float, default=0.1, help="RMS of the initial entries")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()

    cfg = build_run_config(None, None, args.config, None, [], args.seed, "cpu")
    cfg.dataset.valid, cfg.eval.ks = False, (20,)
    ds = load_dataset(cfg)
    torch.manual_seed(args.seed)
    model = build_model(cfg.model, cfg.params, ds.num_users, ds.num_items)
    dim = model.user_emb.weight.shape[1]
    norm = degree_normalized(binarize(ds.train.csr())).tocoo()  # R̃, the user-item block of Â
    a = torch.sparse_coo_tensor(
        np.vstack([norm.row, norm.col]), norm.data, size=norm.shape, dtype=torch.float32, check_invariants=False
    ).coalesce()
    t0 = time.perf_counter()
    torch.manual_seed(args.seed)  # svd_lowrank draws its random projection from the global RNG
    u, s, v = torch.svd_lowrank(a, q=dim + 10, niter=8)
    u, s, v = u[:, :dim], s[:dim], v[:, :dim]
    print(f"randomised SVD {time.perf_counter() - t0:.1f} s; singular values {s[0]:.4f} .. {s[-1]:.4f}")
    eu, ei = u * s**args.beta, v * s**args.beta
    c = args.rms / torch.cat([eu, ei]).pow(2).mean().sqrt()
    with torch.no_grad():
        model.user_emb.weight.copy_(eu * c)
        model.item_emb.weight.copy_(ei * c)
    model.set_graph(ds.train.csr())
    model.eval()
    metrics = evaluate(model, ds, "test", cfg.eval)
    print(f"the start itself: test Recall@20 {metrics['Recall@20']:.4f}, NDCG@20 {metrics['NDCG@20']:.4f}")
    args.out.mkdir(parents=True, exist_ok=True)
    save_file({k: t.contiguous() for k, t in model.state_dict().items()}, str(args.out / "model.safetensors"))


if __name__ == "__main__":
    main()
