"""Scaling study of the `gen` decoder: test NDCG@10 against parameters and training FLOPs.

    python benchmarks/gen_scaling.py [--recipe benchmarks/recipes/ml1m-gen.toml]
        [--sizes 1x32x2 2x64x2 4x128x4 8x256x8] [--set train.epochs=200 ...]
        [--out runs/gen-scaling] [--plot benchmarks/gen_scaling.png]

Each size BLOCKSxWIDTHxHEADS is one real `liverec train` run of the recipe (early stopping on
validation NDCG@10; test evaluated once, on the best epoch). A size whose run directory already
holds metrics.json is not trained again, so the study can be resumed or extended.

Training FLOPs are counted, not measured: per trained position, forward = 2 · (non-embedding
matrix parameters) + 2 · W̄ · D · blocks (attention scores and the weighted sum over the W̄ keys a
position sees on average, the causal half of the window) + 2 · D · I (full-softmax output layer);
training = 3 × forward (backward ≈ 2 × forward); positions = Σ_u min(n_u − 1, L) per epoch, times
the epochs actually run. Embedding lookups are free.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np


def parse_size(text: str) -> tuple[int, int, int]:
    try:
        blocks, width, heads = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"size {text!r} is not BLOCKSxWIDTHxHEADS, e.g. 2x64x2") from None
    return blocks, width, heads


def positions_per_epoch(recipe: Path, overrides: list[str]) -> tuple[int, int, int, str]:
    """(trained positions per epoch, number of items, max_len, data) of the recipe's training split."""
    from liverec.cli import build_run_config
    from liverec.data.sequences import user_sequences
    from liverec.experiment import load_dataset

    cfg = build_run_config(None, None, recipe, None, overrides, None, None)
    ds = load_dataset(cfg)
    indptr, _ = user_sequences(ds.train)
    lengths = np.diff(indptr)
    max_len = int(cfg.params.get("max_len", 200))
    return int(np.minimum(np.maximum(lengths - 1, 0), max_len).sum()), ds.num_items, max_len, str(cfg.data)


def train_flops(params_matrix: int, blocks: int, width: int, items: int, max_len: int,
                positions: int, epochs: int) -> float:
    forward = 2 * params_matrix + 2 * (max_len / 2) * width * blocks * 2 + 2 * width * items
    return 3.0 * forward * positions * epochs


def run_size(size: tuple[int, int, int], args: argparse.Namespace) -> Path:
    blocks, width, heads = size
    out = Path(args.out) / f"gen-{blocks}x{width}x{heads}"
    if (out / "metrics.json").is_file():
        print(f"{out}: already trained", flush=True)
        return out
    command = [
        sys.executable, "-m", "liverec", "train", "--config", str(args.recipe), "--quiet", "--out", str(out),
        "--set", f"model.num_blocks={blocks}", "--set", f"model.embedding_dim={width}",
        "--set", f"model.num_heads={heads}",
    ]
    for s in args.set:
        command += ["--set", s]
    print(" ".join(command), flush=True)
    subprocess.run(command, check=True)
    return out


def summarise(out: Path, size: tuple[int, int, int], positions: int, items: int, max_len: int) -> dict:
    from safetensors.numpy import load_file

    blocks, width, heads = size
    weights = load_file(str(out / "model.safetensors"))
    total = sum(v.size for k, v in weights.items() if k not in ("history", "item_count"))
    matrices = sum(v.size for k, v in weights.items() if v.ndim == 2 and k.startswith("blocks."))
    metrics = json.loads((out / "metrics.json").read_text())
    epochs = sum(1 for _ in (out / "history.jsonl").open())
    return {
        "size": f"{blocks}x{width}x{heads}", "blocks": blocks, "width": width, "heads": heads,
        "parameters": int(total), "block_parameters": int(matrices), "epochs": epochs,
        "best_epoch": metrics.get("best_epoch"), "train_seconds": round(metrics["train_seconds"], 1),
        "train_flops": train_flops(matrices, blocks, width, items, max_len, positions, epochs),
        "NDCG@10": metrics["test"]["NDCG@10"], "HR@10": metrics["test"]["HR@10"],
        "device": metrics.get("device"),
    }


def plot(rows: list[dict], path: str, data: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, key, label in ((axes[0], "parameters", "parameters"), (axes[1], "train_flops", "training FLOPs")):
        ax.plot([r[key] for r in rows], [r["NDCG@10"] for r in rows], "o-")
        for r in rows:
            ax.annotate(r["size"], (r[key], r["NDCG@10"]), textcoords="offset points", xytext=(4, 4))
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(plt.NullFormatter())  # minor labels overlap on a short decade
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test NDCG@10 (full ranking)")
    fig.suptitle(f"gen on {data}: quality against size")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=Path("benchmarks/recipes/ml1m-gen.toml"))
    parser.add_argument("--sizes", nargs="+", default=["1x32x2", "2x64x2", "4x128x4", "8x256x8"])
    parser.add_argument("--set", action="append", default=[], help="extra recipe override, key=value")
    parser.add_argument("--out", default="runs/gen-scaling")
    parser.add_argument("--plot", default=None, help="write the PNG here (needs matplotlib)")
    args = parser.parse_args()
    sizes = [parse_size(s) for s in args.sizes]
    if args.plot:
        try:  # fail before hours of training, not after
            import matplotlib  # noqa: F401
        except ImportError:
            raise SystemExit("--plot needs matplotlib: pip install 'liverec[bench]'") from None
    positions, items, max_len, data = positions_per_epoch(args.recipe, args.set)
    rows = [summarise(run_size(size, args), size, positions, items, max_len) for size in sizes]
    Path(args.out, "scaling.json").write_text(json.dumps(rows, indent=2))
    print("| size (blocks x width x heads) | parameters | block parameters | epochs (best) | train FLOPs "
          "| train s | HR@10 | NDCG@10 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} | {r['parameters']:,} | {r['block_parameters']:,} | {r['epochs']} "
              f"({r['best_epoch']}) | {r['train_flops']:.2e} | {r['train_seconds']} | "
              f"{r['HR@10']:.4f} | {r['NDCG@10']:.4f} |")
    if args.plot:
        plot(rows, args.plot, data)


if __name__ == "__main__":
    main()
