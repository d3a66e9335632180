"""Choose NeuMF's α (the GMF share of the fused output layer, NCF paper Sec. 3.4.1) on validation.

Trains nothing: it fuses a trained GMF run and a trained MLP run for each α and evaluates the fused
model on the validation part of their data. Both runs must have been trained with a validation item
held out (`--set dataset.valid=true`), so nothing here sees the test item.

    liverec train --config benchmarks/recipes/ml1m-ncf-gmf.toml --set dataset.valid=true --out runs/gmf-valid
    liverec train --config benchmarks/recipes/ml1m-ncf-mlp.toml --set dataset.valid=true --out runs/mlp-valid
    python benchmarks/neumf_alpha.py runs/gmf-valid runs/mlp-valid --alphas 0.3 0.5 0.7 0.8 0.9
"""

from __future__ import annotations

import argparse

from liverec.evaluate import evaluate
from liverec.experiment import check_same_vocab, load_dataset, load_run
from liverec.models.neumf import NeuMF, NeuMFConfig, load_pretrained_state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gmf_run")
    parser.add_argument("mlp_run")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.3, 0.5, 0.7, 0.8, 0.9])
    args = parser.parse_args()

    cfg, gmf, users, items = load_run(args.gmf_run)
    mlp_cfg, mlp, _, _ = load_run(args.mlp_run)
    if not (cfg.dataset.valid and mlp_cfg.dataset.valid):
        raise SystemExit("both runs must be trained with dataset.valid=true (α is chosen on validation)")
    ds = load_dataset(cfg)
    check_same_vocab(ds, users, items)
    gmf_state, mlp_state = load_pretrained_state(args.gmf_run), load_pretrained_state(args.mlp_run)
    for name, model in (("gmf", gmf), ("mlp", mlp)):
        model.eval()
        m = evaluate(model, ds, "valid", cfg.eval)
        print(f"{name:>10}  " + "  ".join(f"{k} {v:.4f}" for k, v in m.items() if k.startswith(("HR", "NDCG"))))
    for alpha in args.alphas:
        fused = NeuMF(
            NeuMFConfig(
                variant="neumf", embedding_dim=gmf.config.embedding_dim,
                mlp_layers=mlp.config.mlp_layers, alpha=alpha,
            ),
            gmf.num_users, gmf.num_items,
        )
        fused.init_from_pretrained(gmf_state, mlp_state)
        fused.eval()
        m = evaluate(fused, ds, "valid", cfg.eval)
        print(f"α = {alpha:<5}  " + "  ".join(f"{k} {v:.4f}" for k, v in m.items() if k.startswith(("HR", "NDCG"))))


if __name__ == "__main__":
    main()
