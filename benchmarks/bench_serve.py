"""Serving latency: a real `liverec serve` process under an open-loop load from a separate process.

    python benchmarks/bench_serve.py --items 1000000 --index hnsw --rates 100 250 500 --seconds 10 \\
        --cache ~/.cache/liverec-bench

Builds a synthetic MF artifact (`--users` users, `--items` items, d = `--dim`), publishes it into a
registry (kept under `--cache` and reused by later runs with the same settings: a 1M-item HNSW
build takes minutes), starts the server, and for each offered rate sends GET /v1/recommend?k=10.

The synthetic catalogue imitates trained MF embeddings rather than isotropic noise, because what an
ANN index finds hard depends on the geometry: random Gaussian vectors in 64 dimensions have no
neighbourhood structure at all (every point is about equally far from every other), which is the
worst case for a graph index and nothing like a trained model. Here
- items belong to 1,000 topics of Zipf-distributed size; an item is its topic's centre plus noise,
  so items form clusters, as co-consumed items do after training;
- every direction is scaled by a decaying spectrum (1/sqrt(j+1)), so the vectors have a low
  effective rank, as factor models trained with L2 regularisation do;
- item norms grow with log-popularity (Zipf, exponent 1.1): MF trained on implicit feedback gives
  popular items longer vectors, so inner-product top-k leans towards them;
- users mix the centres of two topics drawn by topic popularity, plus noise;
- every user has 20 seen items, drawn by popularity, which each request excludes.

Load: a separate process (spawned, so it shares nothing with this one) sends requests on a fixed
schedule, i/rate seconds after the start, whether or not earlier answers came back (open loop),
over up to `--connections` keep-alive HTTP/1.1 connections written with raw asyncio streams (an
HTTP client library costs more CPU than the server we measure). Latency is measured from the
*scheduled* send time, so time a request spends waiting for a free connection or for a late
generator counts against the server (no coordinated omission). Reports p50 / p99 latency, achieved
throughput and errors per rate, plus the same top-10 searches made directly on the index (the HTTP
overhead) and, for ANN, recall@10 against exact search on other users than the index was tuned on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from liverec.serve.process import start_server, stop

SEEN_PER_USER = 20
TOPICS = 1000


def synthetic_embeddings(users: int, items: int, dim: int, seed: int = 0):
    """(user vectors (U, D), item vectors (I, D), item popularity (I,)): see the module docstring."""
    rng = np.random.default_rng(seed)
    spectrum = 1 / np.sqrt(np.arange(1, dim + 1))  # (D,) decaying: low effective rank
    centres = rng.standard_normal((TOPICS, dim)) * spectrum  # (T, D)
    topic_share = 1 / np.arange(1, TOPICS + 1)
    topic_share /= topic_share.sum()
    item_topic = rng.choice(TOPICS, size=items, p=topic_share)
    popularity = 1 / rng.permutation(np.arange(1, items + 1)) ** 1.1  # Zipf over a random order
    popularity = np.maximum(np.round(popularity / popularity.max() * 1e5), 1)  # (I,) counts
    log_pop = np.log(popularity) / np.log(popularity.max())  # (I,) in [0, 1]
    item_vecs = centres[item_topic] + 0.5 * rng.standard_normal((items, dim)) * spectrum
    item_vecs *= (0.5 + log_pop)[:, None]
    user_topics = rng.choice(TOPICS, size=(users, 2), p=topic_share)
    user_vecs = centres[user_topics].mean(axis=1) + 0.5 * rng.standard_normal((users, dim)) * spectrum
    return user_vecs.astype(np.float32), item_vecs.astype(np.float32), popularity.astype(np.float32)


def make_artifact(root: Path, users: int, items: int, dim: int, index: str, options: dict) -> Path:
    """A run directory holding an MF model with synthetic vectors, published as version 1."""
    from safetensors.torch import save_file

    from liverec.data.vocab import IdVocab
    from liverec.experiment import RunConfig
    from liverec.registry import publish_files

    user_vecs, item_vecs, popularity = synthetic_embeddings(users, items, dim)
    run = root / "run"
    run.mkdir(parents=True)
    save_file({"user_emb.weight": torch.from_numpy(user_vecs), "item_emb.weight": torch.from_numpy(item_vecs)},
              str(run / "model.safetensors"))
    cfg = RunConfig(model="mf", data="synthetic", params={"embedding_dim": dim, "use_bias": False})
    (run / "config.json").write_text(json.dumps(cfg.to_json()))
    IdVocab.from_raw(np.arange(users))[0].save(run / "users.json")
    IdVocab.from_raw(np.arange(items))[0].save(run / "items.json")
    (run / "metrics.json").write_text("{}")
    rng = np.random.default_rng(1)
    cols = rng.choice(items, size=users * SEEN_PER_USER, p=popularity / popularity.sum())
    rows = np.repeat(np.arange(users), SEEN_PER_USER)
    seen = sp.csr_matrix((np.ones(cols.size, np.float32), (rows, cols)), shape=(users, items))
    registry = root / "registry"
    publish_files(run, registry, seen, popularity, index=index, index_options=options)
    return registry


async def _open_loop(port: int, rate: float, seconds: float, users: int, connections: int) -> dict:
    rng = np.random.default_rng(1)
    n = int(rate * seconds)
    picked = rng.integers(users, size=n)
    pool: asyncio.Queue = asyncio.Queue()
    opened = 0
    latencies = np.full(n, np.nan)
    errors = 0

    async def one(i: int, scheduled: float) -> None:
        nonlocal opened, errors
        if pool.empty() and opened < connections:
            opened += 1
            pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
        reader, writer = await pool.get()
        try:
            writer.write(f"GET /v1/recommend?user={picked[i]}&k=10 HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200"):
                errors += 1
            pool.put_nowait((reader, writer))
        except (OSError, asyncio.IncompleteReadError, IndexError, ValueError):
            errors += 1  # a broken connection is dropped; a fresh one is opened when needed
            opened -= 1
            writer.close()
        latencies[i] = time.perf_counter() - scheduled

    tasks = []
    start = time.perf_counter() + 0.05
    for i in range(n):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, scheduled)))
    done, pending = await asyncio.wait(tasks, timeout=seconds + 30)
    for task in pending:
        task.cancel()
    elapsed = time.perf_counter() - start
    lat = latencies[np.isfinite(latencies)] * 1000
    failed = sum(1 for task in done if task.exception() is not None)  # e.g. a refused connection
    return {"offered_rps": rate, "achieved_rps": round(lat.size / elapsed, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 2), "p99_ms": round(float(np.percentile(lat, 99)), 2),
            "errors": errors + failed + len(pending), "requests": n, "connections_opened": opened}


def load_generator(port: int, rate: float, seconds: float, users: int, connections: int) -> dict:
    """One open-loop run, in the process it is called in (uvloop when installed)."""
    try:
        import uvloop

        return uvloop.run(_open_loop(port, rate, seconds, users, connections))
    except ImportError:
        return asyncio.run(_open_loop(port, rate, seconds, users, connections))


def direct_index(registry: Path, users: int, queries: int = 2000) -> dict:
    """The server's top-10 searches (20 seen items excluded) made directly on the index."""
    from liverec.index import ExactIndex, recall_vs_exact
    from liverec.registry import load_version

    art = load_version(registry)
    picked = np.random.default_rng(2).integers(users, size=queries)
    t, ids = [], []
    for u in picked:  # one query at a time, like the server
        t0 = time.perf_counter()
        found, _ = art.index.search(art.user_vectors[u : u + 1], 10, [art.seen_items(u)])
        t.append(time.perf_counter() - t0)
        ids.append(found[0])
    out = {"direct_p50_ms": round(float(np.percentile(t, 50)) * 1000, 3),
           "direct_p99_ms": round(float(np.percentile(t, 99)) * 1000, 3)}
    if art.manifest["index"] != "exact":
        exact = ExactIndex(art.item_vectors, batch_size=64)
        truth, _ = exact.search(art.user_vectors[picked], 10, [art.seen_items(u) for u in picked])
        out["recall@10_vs_exact"] = round(recall_vs_exact(np.array(ids), truth), 4)
        out.update({k: v for k, v in art.manifest.items() if k.startswith("index_")})
    return out


def cached_registry(args: argparse.Namespace, options: dict, tmp: str) -> Path:
    """The benchmark's registry: reused from `--cache` when one was built with the same settings."""
    key = f"mf-u{args.users}-i{args.items}-d{args.dim}-{args.index}" + "".join(
        f"-{k}{v}" for k, v in sorted(options.items()))
    root = Path(args.cache) / key if args.cache else Path(tmp) / key
    if (root / "registry" / "latest").is_file():
        print(f"reusing {root / 'registry'}", flush=True)
        return root / "registry"
    if root.exists():  # a build that was interrupted
        import shutil

        shutil.rmtree(root)
    t0 = time.perf_counter()
    registry = make_artifact(root, args.users, args.items, args.dim, args.index, options)
    print(f"artifact + {args.index} index built in {time.perf_counter() - t0:.1f} s", flush=True)
    return registry


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--index", default="hnsw", choices=["exact", "hnsw", "ivf"])
    p.add_argument("--hnsw-m", type=int, default=32)
    p.add_argument("--ef-construction", type=int, default=200)  # the library default
    p.add_argument("--rates", type=float, nargs="+", default=[100, 250, 500])
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--connections", type=int, default=64, help="most keep-alive connections the load opens")
    p.add_argument("--cache", default=None, help="directory keeping built registries between runs")
    args = p.parse_args()
    options = {"hnsw_m": args.hnsw_m, "ef_construction": args.ef_construction} if args.index == "hnsw" else {}
    with tempfile.TemporaryDirectory() as tmp:
        registry = cached_registry(args, options, tmp)
        print(json.dumps(direct_index(registry, args.users)), flush=True)
        proc, base = start_server(registry, output=None, timeout=300)
        port = int(base.rsplit(":", 1)[1])
        spawn = multiprocessing.get_context("spawn")
        try:
            with ProcessPoolExecutor(1, mp_context=spawn) as loader:
                for rate in args.rates:
                    result = loader.submit(load_generator, port, rate, args.seconds, args.users,
                                           args.connections).result()
                    print(json.dumps(result), flush=True)
        finally:
            stop(proc)


if __name__ == "__main__":
    main()
