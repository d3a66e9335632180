"""Time-to-quality of a gradient-trained model: test Recall@20 / NDCG@20 against wall seconds.

    python benchmarks/time_to_quality.py lightgcn --data lightgcn-gowalla --epochs 100 \
        --set train.batch_size=16384 --set train.lr=0.01 --eval-every 5 --out benchmarks/results/lgcn.json

The run trains on the full training split (no validation carve-out) and evaluates the *test* split
every `--eval-every` epochs only to draw the curve: nothing is selected on it (no early stopping;
the time spent evaluating is excluded from the wall-clock axis). `--plot FILE.png` draws the curves
of one or more result files (needs matplotlib).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def run(args: argparse.Namespace) -> dict:
    from liverec.cli import build_run_config
    from liverec.evaluate import evaluate
    from liverec.experiment import load_dataset
    from liverec.models import build_model
    from liverec.train.pairwise import PairBatches, make_sampler, pair_loss
    from liverec.train.trainer import Trainer, resolve_device

    cfg = build_run_config(args.model, args.data, None, "given", args.set, args.seed, "auto")
    cfg.dataset.valid = False
    cfg.train.epochs, cfg.train.eval_every, cfg.train.patience = args.epochs, args.eval_every, 0
    cfg.train.progress = False
    cfg.eval.ks = (20,)
    ds = load_dataset(cfg)
    device = resolve_device(cfg.train.device)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, cfg.params, ds.num_users, ds.num_items).to(device)
    if cfg.train.init_from:  # a second phase from a saved run (its training time is not counted here)
        from liverec.experiment import warm_start

        warm_start(model, Path(cfg.train.init_from))
    train_csr = ds.train.csr()
    if hasattr(model, "set_graph"):
        model.set_graph(train_csr)
    rng = np.random.default_rng(cfg.seed)
    batches = PairBatches(ds.train, make_sampler(cfg.train, train_csr, model), cfg.train.num_negatives,
                          cfg.train.batch_size, rng, device, shared=cfg.train.shared_negatives,
                          pair_sampling=cfg.train.pair_sampling)
    curve, clock = [], {"eval": 0.0, "start": time.perf_counter()}

    def test_curve(m) -> dict:
        t0 = time.perf_counter()
        train_seconds = t0 - clock["start"] - clock["eval"]  # evaluation time excluded
        metrics = evaluate(m, ds, "test", cfg.eval, device=device)
        clock["eval"] += time.perf_counter() - t0
        point = {"epoch": min((len(curve) + 1) * args.eval_every, args.epochs),
                 "train_seconds": round(train_seconds, 1),
                 "Recall@20": metrics["Recall@20"], "NDCG@20": metrics["NDCG@20"]}
        curve.append(point)
        print(json.dumps(point), flush=True)
        return {"NDCG@20": metrics["NDCG@20"]}

    Trainer(cfg.train).fit(model, lambda m, b: pair_loss(m, b, cfg.train), lambda e: batches, test_curve)
    target = args.target
    reached = next((p for p in curve if p["Recall@20"] >= target), None)
    return {"model": cfg.model, "data": cfg.data, "settings": args.set, "curve": curve,
            "target_recall": target, "reached_at": reached}


def plot(files: list[Path], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for f in files:
        res = json.loads(f.read_text())
        xs = [p["train_seconds"] for p in res["curve"]]
        ax.plot(xs, [p["Recall@20"] for p in res["curve"]], marker="o", ms=3,
                label=f.stem)  # the file name; the settings are in the JSON
        target = res["target_recall"]
    ax.axhline(target, color="grey", ls="--", lw=1, label=f"paper {target}")
    ax.set_xlabel("training wall seconds (2 CPU cores, evaluation excluded)")
    ax.set_ylabel("test Recall@20")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?")
    p.add_argument("--data", default="lightgcn-gowalla")
    p.add_argument("--set", action="append", default=[], help="section.key=value, as in `liverec train`")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--eval-every", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--target", type=float, default=0.1830)
    p.add_argument("--out", type=Path, help="write the curve as JSON")
    p.add_argument("--plot", type=Path, help="draw a PNG from the JSON files given with --curves")
    p.add_argument("--curves", type=Path, nargs="*", default=[])
    args = p.parse_args()
    if args.plot:
        plot(args.curves, args.plot)
        return
    result = run(args)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
