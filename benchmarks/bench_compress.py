"""Compression table: size on disk, peak serving memory, p50 top-10 latency and quality per method.

    python benchmarks/bench_compress.py runs/ml1m-ncf-mf --methods int8 int4 fp16 \
        --extra distill-d16=runs/distill-d16 --out runs/bench-compress

Each method is applied with `compress_run` (skipped when its folder exists), published into its own
registry and served by a real `liverec serve` process; latency is measured from a client over
HTTP (sequential GET /v1/recommend?k=10 for random users), memory is the server's peak RSS
(VmHWM). Quality comes from each run's metrics.json (test split, the run's own protocol). Sizes are
given for the whole file and for the weights alone: a sequence model's file also holds every user's
stored latest items (`history`), data that compression does not touch.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import numpy as np

from liverec.serve.process import start_server, stop


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def serve_and_measure(run_dir: Path, work: Path, requests: int, seed: int) -> dict:
    """Publish `run_dir`, serve it, time `requests` top-10 requests; returns latency and memory."""
    import httpx

    from liverec.data.vocab import IdVocab
    from liverec.registry import publish

    registry = work / "registry"
    if not (registry / "latest").is_file():
        publish(run_dir, registry)
    proc, base = start_server(registry, output=subprocess.DEVNULL, timeout=120)
    try:
        users = IdVocab.load(run_dir / "users.json").raw
        rng = np.random.default_rng(seed)
        picks = [str(u) for u in rng.choice(users, size=requests + 20)]
        times = []
        with httpx.Client(base_url=base, timeout=10) as client:
            for i, user in enumerate(picks):
                t0 = time.perf_counter()
                r = client.get("/v1/recommend", params={"user": user, "k": 10})
                elapsed = time.perf_counter() - t0
                r.raise_for_status()
                if i >= 20:  # the first requests warm caches and the allocator
                    times.append(elapsed)
        return {
            "p50_ms": round(1000 * float(np.median(times)), 3),
            "p95_ms": round(1000 * float(np.percentile(times, 95)), 3),
            "peak_rss_mib": round(peak_rss_mib(proc.pid), 1),
        }
    finally:
        stop(proc)


# buffers that hold data, not weights: a sequence model's stored user sequences and item counts
DATA_TENSORS = ("history", "item_count")


def weight_bytes(path: Path) -> int:
    """Bytes of model.safetensors' tensors other than DATA_TENSORS (what compression acts on)."""
    from safetensors import safe_open

    with safe_open(str(path), "np") as f:
        return sum(f.get_tensor(k).nbytes for k in f.keys() if k.split(".")[-1] not in DATA_TENSORS)


def row(name: str, run_dir: Path, reference: dict, work: Path, args) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    size = (run_dir / "model.safetensors").stat().st_size
    weights = weight_bytes(run_dir / "model.safetensors")
    test = metrics["test"]
    params = metrics.get("compression", {}).get("params")
    out = {
        "method": name, "bytes": size, "x_smaller": round(reference["bytes"] / size, 2),
        "weight_bytes": weights, "weights_x_smaller": round(reference["weight_bytes"] / weights, 2),
        "params": params,
        **{k: round(test[k], 4) for k in args.metrics},
        **{f"{k}_rel": round(test[k] / reference["test"][k], 4) for k in args.metrics},
    }
    out.update(serve_and_measure(run_dir, work / name, args.requests, args.seed))
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the uncompressed, trained run directory")
    parser.add_argument("--methods", nargs="*", default=["fp16", "int8", "int4"])
    parser.add_argument("--extra", nargs="*", default=[], help="NAME=RUN_DIR already compressed")
    parser.add_argument("--metrics", nargs="*", default=["HR@10", "NDCG@10"])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-compress"))
    args = parser.parse_args()

    from liverec.compress import compress_run, parse_methods
    from liverec.compress.distill import parameter_count
    from liverec.experiment import load_run

    args.out.mkdir(parents=True, exist_ok=True)
    source = json.loads((args.run / "metrics.json").read_text())
    reference = {"bytes": (args.run / "model.safetensors").stat().st_size, "test": source["test"],
                 "weight_bytes": weight_bytes(args.run / "model.safetensors")}
    runs = {"original (fp32)": args.run}
    for method in args.methods:
        target = args.out / method.replace(",", "+")
        if not target.exists():
            compress_run(args.run, target, parse_methods(method))
        runs[method] = target
    for item in args.extra:
        name, _, path = item.partition("=")
        runs[name] = Path(path)
    rows = [row(name, path, reference, args.out, args) for name, path in runs.items()]
    rows[0]["params"] = parameter_count(load_run(args.run)[1])
    (args.out / "results.json").write_text(json.dumps(rows, indent=2))
    head = ["method", "model.safetensors", "x smaller", "weights (no stored sequences)", "x smaller",
            *args.metrics, "relative", "peak RSS", "p50"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        rel = " / ".join(f"{r[f'{k}_rel'] * 100:.1f}%" for k in args.metrics)
        print(f"| {r['method']} | {r['bytes'] / 1e6:.2f} MB | {r['x_smaller']:.2f}x | "
              f"{r['weight_bytes'] / 1e6:.2f} MB | {r['weights_x_smaller']:.2f}x | "
              + " | ".join(f"{r[k]:.4f}" for k in args.metrics)
              + f" | {rel} | {r['peak_rss_mib']:.0f} MiB | {r['p50_ms']:.2f} ms |")


if __name__ == "__main__":
    main()
