"""Serving latency: a real `liverec serve` process under an open-loop load from a separate process.

    python benchmarks/bench_serve.py --items 1000000 --index hnsw --rates 100 250 500 --seconds 10

Builds a synthetic MF artifact (random d=64 vectors for `--users` users and `--items` items; the
timing does not depend on their values), publishes it into a temporary registry, starts the server,
and for each offered rate sends GET /v1/recommend?k=10 at that rate (open loop: requests are sent on
schedule whether or not earlier ones finished) from an asyncio httpx client in this process while the
server runs in its own. Reports p50 / p99 latency, achieved QPS and errors, plus the same top-10
searches made directly on the index (the HTTP overhead) and, for ANN, recall@10 against exact search.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from liverec.serve.process import start_server, stop


def make_artifact(root: Path, users: int, items: int, dim: int, index: str) -> Path:
    """A run directory holding an MF model with random vectors, published as version 1."""
    from safetensors.torch import save_file

    from liverec.data.vocab import IdVocab
    from liverec.experiment import RunConfig
    from liverec.registry import publish_files

    gen = torch.Generator().manual_seed(0)
    run = root / "run"
    run.mkdir(parents=True)
    state = {"user_emb.weight": torch.randn(users, dim, generator=gen) * 0.3,
             "item_emb.weight": torch.randn(items, dim, generator=gen) * 0.3}
    save_file(state, str(run / "model.safetensors"))
    cfg = RunConfig(model="mf", data="synthetic", params={"embedding_dim": dim, "use_bias": False})
    (run / "config.json").write_text(json.dumps(cfg.to_json()))
    IdVocab.from_raw(np.arange(users))[0].save(run / "users.json")
    IdVocab.from_raw(np.arange(items))[0].save(run / "items.json")
    (run / "metrics.json").write_text("{}")
    rng = np.random.default_rng(0)
    cols = rng.integers(0, items, size=users * 20)  # 20 seen items per user, excluded per request
    seen = sp.csr_matrix((np.ones(cols.size, np.float32), (np.repeat(np.arange(users), 20), cols)),
                         shape=(users, items))
    registry = root / "registry"
    publish_files(run, registry, seen, np.ones(items, np.float32), index=index)
    return registry


async def open_loop(base: str, rate: float, seconds: float, users: int) -> dict:
    import httpx

    latencies, errors = [], 0
    rng = np.random.default_rng(1)
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=10) as client:

        async def one(user: int) -> None:
            nonlocal errors
            t0 = time.perf_counter()
            try:
                r = await client.get("/v1/recommend", params={"user": str(user), "k": 10})
                if r.status_code != 200:
                    errors += 1
            except Exception:
                errors += 1
            latencies.append(time.perf_counter() - t0)

        tasks, start = [], time.perf_counter()
        n = int(rate * seconds)
        for i in range(n):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(int(rng.integers(users)))))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    lat = np.array(latencies) * 1000
    return {"offered_rps": rate, "achieved_rps": round(len(lat) / elapsed, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 2),
            "p99_ms": round(float(np.percentile(lat, 99)), 2), "errors": errors, "requests": len(lat)}


def direct_index(registry: Path, users: int, queries: int = 2000) -> dict:
    from liverec.index import build_index, recall_vs_exact
    from liverec.registry import load_version

    art = load_version(registry)
    rng = np.random.default_rng(2)
    picked = rng.integers(users, size=queries)
    t = []
    ids = []
    for u in picked:  # one query at a time, like the server
        t0 = time.perf_counter()
        found, _ = art.index.search(art.user_vectors[u : u + 1], 10, [art.seen_items(u)])
        t.append(time.perf_counter() - t0)
        ids.append(found[0])
    out = {"direct_p50_ms": round(float(np.percentile(t, 50)) * 1000, 3),
           "direct_p99_ms": round(float(np.percentile(t, 99)) * 1000, 3)}
    if art.manifest["index"] != "exact":
        exact = build_index("exact", art.item_vectors)
        truth, _ = exact.search(art.user_vectors[picked], 10, [art.seen_items(u) for u in picked])
        out["recall@10_vs_exact"] = round(recall_vs_exact(np.array(ids), truth), 4)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--index", default="hnsw", choices=["exact", "hnsw", "ivf"])
    p.add_argument("--rates", type=float, nargs="+", default=[100, 250, 500])
    p.add_argument("--seconds", type=float, default=10)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        registry = make_artifact(Path(tmp), args.users, args.items, args.dim, args.index)
        print(f"artifact + {args.index} index built in {time.perf_counter() - t0:.1f} s", flush=True)
        print(json.dumps(direct_index(registry, args.users)), flush=True)
        proc, base = start_server(registry, output=None, timeout=300)
        try:
            for rate in args.rates:
                print(json.dumps(asyncio.run(open_loop(base, rate, args.seconds, args.users))), flush=True)
        finally:
            stop(proc)


if __name__ == "__main__":
    main()
