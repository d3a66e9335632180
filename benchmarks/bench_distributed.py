"""Data-parallel training throughput: 1 vs N processes (torchrun, gloo on CPU) through `liverec train`.

    python benchmarks/bench_distributed.py [--data ml-100k] [--models mf lightgcn] [--nprocs 1 2]
                                           [--epochs 4] [--batch-size 4096] [--out runs/bench-dist]

Each configuration is a real `liverec train ... [--nproc N]` run (one OMP thread per process).
Throughput = training interactions per second of training, from the per-epoch wall times rank 0
records in history.jsonl (epoch 1 is left out as warm-up; process start-up, data loading and the
final evaluation are not counted). The global batch and learning rate are the same for every N.
Also reports the peak resident memory of the largest process of each run (rank 0: it also holds
the valid/test parts and evaluates).
SASRec's batch is a number of user rows, so it keeps its own (128 rows, L = 50, full cross-entropy)
instead of --batch-size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

MODEL_OPTIONS = {  # configuration name -> liverec train options (the model name is its first word)
    "mf": ["--set", "model.embedding_dim=64"],
    # sparse row gradients + SparseAdam on the tables: the all-reduce carries touched rows only
    "mf-sparse": ["--set", "model.embedding_dim=64", "--set", "train.sparse_embeddings=true"],
    "lightgcn": ["--set", "model.embedding_dim=64", "--set", "model.num_layers=3"],
    "sasrec": ["--set", "model.max_len=50", "--set", "model.embedding_dim=64", "--set", "train.loss=ce",
               "--set", "train.batch_size=128"],
}


_PEAK_RSS = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def run(model: str, nproc: int, args: argparse.Namespace) -> dict:
    out = Path(args.out) / f"{model}-p{nproc}"
    command = [
        sys.executable, "-m", "liverec", "train", model.split("-")[0], "--data", args.data, "--out", str(out),
        "--quiet",
        "--set", f"train.epochs={args.epochs}", "--set", f"train.batch_size={args.batch_size}",
        "--set", "train.lr=0.005", "--set", "train.patience=0",
        "--set", f"train.eval_every={args.epochs}",  # evaluate once, at the end
        *MODEL_OPTIONS[model],  # last: a model's own settings win
    ]
    if nproc > 1:
        command += ["--nproc", str(nproc)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    # a fresh wrapper per run: its RUSAGE_CHILDREN max RSS is the largest process of this run alone
    peak = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS, *command], check=True, env=env, capture_output=True, text=True
    ).stdout.split()[-1]
    wall = time.perf_counter() - t0
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    metrics = json.loads((out / "metrics.json").read_text())
    epoch_seconds = [r["epoch_seconds"] for r in history[1:]] or [history[0]["epoch_seconds"]]
    seconds = sum(epoch_seconds) / len(epoch_seconds)
    train = metrics["dataset"]["train"]
    return {
        "model": model, "nproc": nproc, "train_interactions": train,
        "epoch_seconds": round(seconds, 3), "interactions_per_s": round(train / seconds),
        "wall_seconds": round(wall, 1), "NDCG@10": round(metrics["test"]["NDCG@10"], 4),
        "peak_rss_mb_per_process": round(int(peak) / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="ml-100k")
    parser.add_argument("--models", nargs="+", default=["mf", "lightgcn", "sasrec"], choices=list(MODEL_OPTIONS))
    parser.add_argument("--nprocs", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--out", default="runs/bench-dist")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs visible; load average {os.getloadavg()[0]:.1f} before the runs")
    rows = []
    for model in args.models:
        base = None
        for nproc in args.nprocs:
            row = run(model, nproc, args)
            base = base or row["interactions_per_s"] * 1.0 / row["nproc"]
            row["speedup"] = round(row["interactions_per_s"] / base, 2)  # against 1 process
            row["efficiency"] = round(row["speedup"] / nproc, 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} after the runs")
    print("| model | processes | s / epoch | interactions/s | speed-up | efficiency | peak RSS MB | NDCG@10 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['nproc']} | {r['epoch_seconds']} | {r['interactions_per_s']:,} | "
              f"{r['speedup']} | {r['efficiency']} | {r['peak_rss_mb_per_process']} | {r['NDCG@10']} |")


if __name__ == "__main__":
    main()
