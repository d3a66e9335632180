"""A closed feedback loop: simulated users see what the live server recommends and click on it.

Users and items come from `liverec.data.synthetic` (hidden taste vectors). A model is trained on a
thin warm-up history (a few events per user) and exported; then `liverec serve` and
`liverec online` run as separate processes on one embedded SQLite log, and rounds of simulated
users

    GET /v1/recommend  ->  click what they like  ->  POST /v1/events  ->  liverec online  ->  hot swap

while the hit rate (clicks per shown item) is printed over time. A user likes the items in the top
`liked_fraction` of their hidden preference and clicks a shown item they like with probability
`click_prob` (anything else with `noise_click_prob`). Users re-consume favourites (think of a music
stream), so the server is asked with exclude_seen=false and the best possible hit rate stays
`click_prob` instead of falling as favourites run out.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from liverec.errors import LiverecError
from liverec.serve.process import CLI, free_port, stop, wait_ready


@dataclass
class LoopConfig:
    users: int = 200  # simulated users (all known to the warm-up model)
    items: int = 400  # catalogue size
    warmup_events: int = 3  # events per user in the warm-up history the first model is trained on
    seconds: float = 60.0  # how long the loop runs
    users_per_round: int = 40  # users asking for recommendations in one round
    k: int = 10  # items shown per request
    liked_fraction: float = 0.05  # each user likes the top 5% of the catalogue (hidden)
    click_prob: float = 0.9  # chance to click a shown item the user likes ...
    noise_click_prob: float = 0.01  # ... and one they do not
    report_seconds: float = 5.0  # one progress line this often
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.users, self.items, self.warmup_events, self.users_per_round, self.k) < 1:
            raise LiverecError("demo-loop: users, items, warmup_events, users_per_round and k must be >= 1")
        if self.warmup_events > self.items or self.users_per_round > self.users:
            raise LiverecError("demo-loop: need warmup_events <= items and users_per_round <= users")
        if not 0 < self.liked_fraction <= 1 or self.seconds <= 0:
            raise LiverecError("demo-loop: need 0 < liked_fraction <= 1 and seconds > 0")


def hidden_likes(config: LoopConfig) -> np.ndarray:
    """(users, items) bool: the items each user likes (top `liked_fraction` of their preference)."""
    from liverec.data.synthetic import synthetic_world

    world = synthetic_world(config.users, config.items, seed=config.seed)
    pref = world.preference(np.arange(config.users))  # (U, I): the demo is small by design
    top = max(1, int(round(config.liked_fraction * config.items)))
    cutoff = -np.sort(-pref, axis=1)[:, top - 1 : top]  # (U, 1) the top-th largest preference
    return pref >= cutoff


def train_warmup(config: LoopConfig, out: Path) -> Path:
    """Train iALS on the warm-up history drawn from the same hidden world; export; the registry."""
    from liverec.data.synthetic import synthetic_events
    from liverec.experiment import RunConfig, train_run
    from liverec.registry import publish

    ev = synthetic_events(config.users, config.items, config.warmup_events, drift=0.0, seed=config.seed)
    table = out / "warmup.csv"
    table.write_text("user,item,timestamp\n" + "".join(
        f"{u},{i},{t}\n" for u, i, t in zip(ev.user.tolist(), ev.item.tolist(), ev.timestamp.tolist(), strict=True)))
    cfg = RunConfig(model="ials", data=str(table), params={"embedding_dim": 16, "epochs": 8})
    cfg.dataset.valid = False
    train_run(cfg, out / "warmup-run")
    registry = out / "registry"
    publish(out / "warmup-run", registry)
    return registry


def _start(registry: Path, log_url: str, port: int, out: Path) -> list[subprocess.Popen]:
    """`liverec serve` and `liverec online` as child processes (their output in OUT/*.log)."""
    serve = [*CLI, "serve", str(registry), "--port", str(port), "--poll", "0.05", "--log", log_url]
    online = [*CLI, "online", str(registry), "--log", log_url, "--start", "latest",
              "--set", "publish_ms=200", "--set", "keep_versions=3"]
    procs = []
    for name, cmd in (("serve", serve), ("online", online)):
        with open(out / f"{name}.log", "w") as sink:
            procs.append(subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT))
    return procs


def one_round(client, config: LoopConfig, likes: np.ndarray, rng: np.random.Generator) -> tuple[int, int, int]:
    """One round of users: (items shown, clicks, newest model version served)."""
    users = rng.choice(config.users, config.users_per_round, replace=False)
    shown_users, shown_items, version = [], [], 0
    for user in users.tolist():  # one HTTP request per simulated user, as real clients do
        body = client.get("/v1/recommend", params={"user": user, "k": config.k, "exclude_seen": "false"}).json()
        items = [int(x["item"]) for x in body["items"]]
        shown_users += [user] * len(items)
        shown_items += items
        version = max(version, body["model_version"])
    u, i = np.array(shown_users, dtype=np.int64), np.array(shown_items, dtype=np.int64)
    prob = np.where(likes[u, i], config.click_prob, config.noise_click_prob)
    clicked = rng.random(len(u)) < prob
    events = [{"user": str(a), "item": str(b), "type": "click"}
              for a, b in zip(u[clicked].tolist(), i[clicked].tolist(), strict=True)]
    if events:
        client.post("/v1/events", json={"events": events}).raise_for_status()
    return len(u), int(clicked.sum()), version


def run_loop(config: LoopConfig, out: Path, print_line=print) -> list[tuple[float, float]]:
    """Train, start serve + online, run rounds for `config.seconds`; (elapsed s, hit rate) per report."""
    import httpx

    out.mkdir(parents=True, exist_ok=True)
    for old in ("registry", "warmup-run", "events.sqlite", "events.sqlite-wal", "events.sqlite-shm"):
        target = out / old  # a fresh start each time: the old log would replay into the new model
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    likes = hidden_likes(config)
    print_line(f"demo-loop: {config.users} simulated users x {config.items} items; each likes "
               f"{int(likes.sum(1).mean())} items (hidden); training iALS on {config.warmup_events} events/user")
    registry = train_warmup(config, out)
    port = free_port()
    procs = _start(registry, f"sqlite://{(out / 'events.sqlite').resolve()}", port, out)
    rng = np.random.default_rng(config.seed)
    reports = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            try:
                wait_ready(str(client.base_url).rstrip("/"), procs, timeout=120)
            except LiverecError as e:
                raise LiverecError(f"demo-loop: {e}; see {out}/serve.log and online.log") from None
            start = last = time.monotonic()
            shown = clicks = 0
            while time.monotonic() - start < config.seconds:
                n, c, version = one_round(client, config, likes, rng)
                if not reports and shown == 0:  # the warm-up model alone, before any feedback
                    print_line(f"  first round, model v{version}: hit rate {c / max(n, 1):.3f} ({c} clicks / {n} shown)")
                shown, clicks = shown + n, clicks + c
                if time.monotonic() - last >= config.report_seconds:
                    elapsed = time.monotonic() - start
                    reports.append((elapsed, clicks / max(shown, 1)))
                    print_line(f"  t={elapsed:5.1f}s  model v{version:<4d} hit rate {clicks / max(shown, 1):.3f} "
                               f"({clicks} clicks / {shown} shown)")
                    last, shown, clicks = time.monotonic(), 0, 0
    finally:
        stop(*procs)
    return reports
