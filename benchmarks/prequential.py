"""Prequential (test-then-train) evaluation of the online trainer on time-ordered data.

    python benchmarks/prequential.py [--data ml-100k] [--model ials|mf|sasrec] [--prefix 0.5]
                                     [--chunk 1000] [--order time|progress] [--set KEY VALUE]
                                     [--plot benchmarks/prequential_ml-100k.png]

Events are sorted by timestamp. A model is trained once on the first `--prefix` of them (the normal
batch path: `train_run` + export; leave-one-out, so each prefix user's latest prefix event is held
out of training) and exported to a registry. The rest of the stream is replayed in chunks of
`--chunk` events; every chunk is first *tested* — for each event, is its item in the top 10 of its
user, given everything the user consumed before the chunk (excluded from the ranking)? — and then
*trained on*: the live model applies it with the online state's `apply`, the code path of
`liverec online`. Three rankers are tested on the same events:

    live    the online model, updated after every chunk (new users and items grow in);
    frozen  the same exported model, never updated (users it does not know get the prefix's most
            popular items; items it does not know cannot be recommended). For a sequence model
            (`--model sasrec`) the frozen network reads the same up-to-date sequences as the live
            one (as `liverec serve` does with the events it is sent), so the comparison isolates
            what continued training adds;
    popular the live item popularity (users per item), as a floor.

Prints HR@10 / NDCG@10 per fifth of the stream and overall (markdown), and writes a PNG of both
metrics over time (a rolling window of chunks).
"""

from __future__ import annotations

import argparse
import copy
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from liverec.data import load_events
from liverec.experiment import RunConfig, train_run
from liverec.registry import publish
from liverec.stream.online import OnlineConfig, OnlineState, StreamState, load_state
from liverec.stream.schema import make_batch, validate
from liverec.stream.sequence_online import SequenceOnlineState
from liverec.train import TrainConfig

K = 10
RANKERS = ("live", "frozen", "popular")
MODEL_PARAMS = {  # models as trained once on the prefix
    "ials": ({"embedding_dim": 64, "l2": 0.005, "unobserved_weight": 0.1, "epochs": 16}, TrainConfig(progress=False)),
    "mf": ({"embedding_dim": 64}, TrainConfig(epochs=30, lr=5e-3, patience=0, progress=False)),
    "sasrec": ({"embedding_dim": 64, "max_len": 50, "dropout": 0.2},
               TrainConfig(epochs=30, batch_size=128, lr=1e-3, loss="ce", patience=0, progress=False)),
}


@dataclass
class Frozen:
    """The exported model as it was before the stream: vectors and the prefix popularity."""

    P: torch.Tensor  # (U0, D)
    Q: torch.Tensor  # (I0, D)
    item_bias: torch.Tensor  # (I0,)
    popularity: np.ndarray  # (I0,) users per item in the prefix


@dataclass
class Scores:
    """Per chunk: events tested and summed HR / NDCG per ranker."""

    events: list[int] = field(default_factory=list)
    hr: dict[str, list[float]] = field(default_factory=lambda: {r: [] for r in RANKERS})
    ndcg: dict[str, list[float]] = field(default_factory=lambda: {r: [] for r in RANKERS})


def time_ordered(data: str, order: str = "time") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user, item, timestamp) as text/int arrays in stream order (stable: ties keep file order).

    order = "time": by timestamp. order = "progress", for sequence files whose "timestamps" are
    positions (ml-1m-seq): by how far into their own history each event is (k / n_u), so every user
    is active over the whole stream; each user's events stay in their order."""
    ev = load_events(data)
    if ev.timestamp is None:
        raise SystemExit(f"{data} has no timestamps")
    key = ev.timestamp.astype(np.float64)
    if order == "progress":
        by_user = np.lexsort((key, ev.user))  # each user's events in time order
        _, start, count = np.unique(ev.user[by_user], return_index=True, return_counts=True)
        rank = np.arange(len(key)) - np.repeat(start, count)  # 0.. within the user
        key = np.empty(len(key))
        key[by_user] = rank / np.repeat(count, count)
    order_idx = np.argsort(key, kind="stable")
    return ev.user[order_idx].astype(str), ev.item[order_idx].astype(str), ev.timestamp[order_idx]


def train_prefix(model: str, user, item, stamp, root: Path) -> Path:
    """Train `model` on the prefix events, export it, return the registry."""
    table = root / "prefix.csv"
    table.write_text("user,item,timestamp\n" + "".join(
        f"{u},{i},{t}\n" for u, i, t in zip(user.tolist(), item.tolist(), stamp.tolist(), strict=True)))
    params, train = MODEL_PARAMS[model]
    cfg = RunConfig(model=model, data=str(table), params=params, train=train)
    cfg.dataset.valid = False
    t0 = time.perf_counter()
    train_run(cfg, root / "run")
    publish(root / "run", root / "registry")
    print(f"trained {model} on {len(user):,} prefix events in {time.perf_counter() - t0:.1f}s", flush=True)
    return root / "registry"


def ranks(scores: torch.Tensor, target: torch.Tensor, seen_rows: np.ndarray, seen_cols: np.ndarray) -> torch.Tensor:
    """(n,) 0-based rank of each row's target among its unseen items; K (a miss) where target < 0.

    scores (n, I); seen (row, col) pairs are excluded; ties count against the target."""
    scores = scores.clone()
    scores[torch.from_numpy(seen_rows), torch.from_numpy(seen_cols)] = -torch.inf
    valid = target >= 0
    own = scores.gather(1, target.clamp_min(0).unsqueeze(1))  # (n, 1)
    rank = (scores >= own).sum(1) - 1  # items scoring at least the target's, itself excluded
    return torch.where(valid & torch.isfinite(own[:, 0]), rank, torch.full_like(rank, K))


def seen_of(state: StreamState, rows: np.ndarray, num_items: int) -> tuple[np.ndarray, np.ndarray]:
    """(chunk row, item) pairs consumed before the chunk by the users at `rows` (-1 = unknown)."""
    known = np.flatnonzero(rows >= 0)
    sub = state.history[rows[known]]
    chunk_row = np.repeat(known, np.diff(sub.indptr))
    keep = sub.indices < num_items
    return chunk_row[keep], sub.indices[keep]


def popularity_scores(counts: np.ndarray, n: int) -> torch.Tensor:
    return torch.from_numpy(counts.astype(np.float32)).expand(n, len(counts))


def test_chunk(state: OnlineState, frozen: Frozen, user: np.ndarray, item: np.ndarray) -> dict[str, torch.Tensor]:
    """Ranks (n,) of each event's item under every ranker, before the chunk is applied."""
    u, i = state.users.lookup(user), state.items.lookup(item)
    n, num_items = len(user), len(state.items)
    target = torch.from_numpy(i)
    seen = seen_of(state, u, num_items)
    popular = popularity_scores(state.item_users, n)
    live = popular.clone()  # users the live model has not met yet get the popular items
    known = torch.from_numpy(u >= 0)
    if known.any():
        idx = torch.from_numpy(u[u >= 0])
        live[known] = state.P[idx] @ state.Q.T + state.item_bias  # (n_known, I)
    out = {"live": ranks(live, target, *seen), "popular": ranks(popular, target, *seen)}
    u0, i0 = len(frozen.P), len(frozen.Q)
    old_target = torch.where(target < i0, target, torch.full_like(target, -1))
    frozen_scores = popularity_scores(frozen.popularity, n).clone()
    old_user = torch.from_numpy((u >= 0) & (u < u0))
    if old_user.any():
        idx = torch.from_numpy(u[(u >= 0) & (u < u0)])
        frozen_scores[old_user] = frozen.P[idx] @ frozen.Q.T + frozen.item_bias
    rows, cols = seen
    keep = cols < i0
    out["frozen"] = ranks(frozen_scores, old_target, rows[keep], cols[keep])
    return out


def test_sequence_chunk(state: SequenceOnlineState, frozen, user: np.ndarray, item: np.ndarray) -> dict[str, torch.Tensor]:
    """`test_chunk` for a sequence model; `frozen` = (the exported network, prefix popularity)."""
    model, prefix_pop = frozen
    u, i = state.users.lookup(user), state.items.lookup(item)
    n, num_items = len(user), len(state.items)
    target = torch.from_numpy(i)
    seen = seen_of(state, u, num_items)
    popular = popularity_scores(np.bincount(state.history.indices, minlength=num_items), n)
    rows = np.flatnonzero(u >= 0)
    seq = state.sequences[u[rows], 1:]  # (k, L) latest L items as model ids
    live = popular.clone()
    state.model.eval()
    live[torch.from_numpy(rows)] = state.model.logits(state.model.last_state(torch.from_numpy(seq)))
    state.model.train()
    out = {"live": ranks(live, target, *seen), "popular": ranks(popular, target, *seen)}
    i0 = model.num_items
    old = np.where(seq <= i0, seq, 0)  # items the frozen network never saw are dropped ...
    old = np.take_along_axis(old, np.argsort(old > 0, axis=1, kind="stable"), axis=1)  # ... re-left-padded
    frozen_scores = popularity_scores(prefix_pop, n).clone()
    has = (old[:, -1] > 0)
    frozen_scores[torch.from_numpy(rows[has])] = model.logits(model.last_state(torch.from_numpy(old[has])))
    old_target = torch.where(target < i0, target, torch.full_like(target, -1))
    r, c = seen
    keep = c < i0
    out["frozen"] = ranks(frozen_scores, old_target, r[keep], c[keep])
    return out


def replay(state: StreamState, frozen, user, item, stamp, chunk: int) -> tuple[Scores, float]:
    """Test then train, chunk by chunk; returns the scores and the seconds spent applying."""
    scores, apply_s = Scores(), 0.0
    for start in range(0, len(user), chunk):
        sl = slice(start, start + chunk)
        with torch.no_grad():
            tester = test_sequence_chunk if isinstance(state, SequenceOnlineState) else test_chunk
            rank = tester(state, frozen, user[sl], item[sl])
        scores.events.append(len(user[sl]))
        for name, r in rank.items():
            hit = r < K
            scores.hr[name].append(float(hit.sum()))
            scores.ndcg[name].append(float((hit / torch.log2(r.clamp_max(K).float() + 2)).sum()))
        n = len(user[sl])
        columns = {"user": user[sl].tolist(), "item": item[sl].tolist(), "type": ["interaction"] * n,
                   "value": [1.0] * n, "timestamp": stamp[sl].astype(float).tolist(), "context": [None] * n}
        batch, reason = make_batch(columns, np.zeros(n, np.int64), np.arange(start, start + n))
        t0 = time.perf_counter()
        state.apply(validate(batch, reason)[0])
        apply_s += time.perf_counter() - t0
    return scores, apply_s


def table(scores: Scores, parts: int = 5) -> str:
    """Markdown: HR@10 / NDCG@10 per ranker for each of `parts` consecutive parts, then overall."""
    events = np.array(scores.events)
    bounds = np.linspace(0, len(events), parts + 1).astype(int)
    spans = [(f"part {p + 1}/{parts}", slice(bounds[p], bounds[p + 1])) for p in range(parts)]
    spans.append(("**all**", slice(0, len(events))))
    head = "| stream part | events | " + " | ".join(f"{r} HR@10 | {r} NDCG@10" for r in RANKERS) + " |"
    lines = [head, "|" + "---|" * (2 + 2 * len(RANKERS))]
    for label, sl in spans:
        n = events[sl].sum()
        cells = [f"{np.sum(scores.hr[r][sl]) / n:.4f} | {np.sum(scores.ndcg[r][sl]) / n:.4f}" for r in RANKERS]
        lines.append(f"| {label} | {n:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(scores: Scores, path: Path, title: str, window: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    events = np.array(scores.events, dtype=float)
    seen = np.cumsum(events)
    kernel = np.ones(window)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric, name in ((axes[0], scores.hr, "HR@10"), (axes[1], scores.ndcg, "NDCG@10")):
        for r in RANKERS:
            rolled = np.convolve(metric[r], kernel, "valid") / np.convolve(events, kernel, "valid")
            ax.plot(seen[window - 1:], rolled, label=r)
        ax.set_xlabel("stream events tested (after the training prefix)")
        ax.set_ylabel(f"{name}, rolling over {window} chunks")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="ml-100k")
    parser.add_argument("--model", default="ials", choices=sorted(MODEL_PARAMS))
    parser.add_argument("--prefix", type=float, default=0.5, help="fraction of events trained on once")
    parser.add_argument("--chunk", type=int, default=100, help="events tested, then applied, at a time")
    parser.add_argument("--window", type=int, default=50, help="chunks per point of the plot")
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--order", choices=["time", "progress"], default="time",
                        help="stream order: timestamps, or each user's progress through their history")
    parser.add_argument("--set", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                        type=str, help="an OnlineConfig option (numbers), e.g. --set seq_lr 3e-4")
    args = parser.parse_args()
    args.set = [(k, float(v) if "." in v or "e" in v else int(v)) for k, v in args.set]
    user, item, stamp = time_ordered(args.data, args.order)
    cut = int(len(user) * args.prefix)
    root = Path(tempfile.mkdtemp(prefix="prequential-"))
    try:
        registry = train_prefix(args.model, user[:cut], item[:cut], stamp[:cut], root)
        state = load_state(registry, OnlineConfig(**dict(args.set)))
        if isinstance(state, OnlineState):
            frozen = Frozen(state.P.clone(), state.Q.clone(), state.item_bias.clone(), state.item_users.copy())
        else:
            pop = np.bincount(state.history.indices, minlength=len(state.items))
            frozen = (copy.deepcopy(state.model).eval(), pop)
        t0 = time.perf_counter()
        scores, apply_s = replay(state, frozen, user[cut:], item[cut:], stamp[cut:], args.chunk)
        n = len(user) - cut
        print(f"{args.model} on {args.data}: {cut:,} prefix events, {n:,} stream events in chunks of "
              f"{args.chunk}; replay {time.perf_counter() - t0:.1f}s (apply {apply_s:.1f}s = "
              f"{n / apply_s:,.0f} events/s); {len(state.users):,} users x {len(state.items):,} items at the end\n")
        print(table(scores))
        if args.plot is not None:
            title = f"Prequential HR@10 / NDCG@10, {args.model} on {args.data} ({args.order} order)"
            plot(scores, args.plot, title, args.window)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
