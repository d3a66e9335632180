"""HTTP recommendation service: `create_app(registry)` builds the FastAPI app.

The current artifact lives in one attribute; a request takes a reference to it once, so a hot swap
(a background task that loads each newly published version and then replaces the reference) never
changes the model under a request in flight.

The recommendation endpoints are the hot path (a top-10 from an index is ~1 ms of work), so they
avoid the framework's per-request costs that dwarf it: the JSON body is encoded directly from plain
lists (the response models still document it in OpenAPI, but FastAPI does not re-validate what it
did not build), the metrics middleware is plain ASGI rather than `BaseHTTPMiddleware` (which runs
every request through an extra task and memory streams), and small exact searches run on the event
loop rather than hopping to the thread pool and back (`runs_inline`), the requests of one loop
iteration searched together (`LoopBatcher`).
"""


import asyncio
import contextlib
import gc
import json
import threading
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from liverec.registry import Artifact, latest_version, load_version
from liverec.serve.schemas import (
    EventsIn,
    EventsOut,
    RecommendIn,
    RecommendOut,
    SimilarOut,
    error_responses,
)

MAX_BODY_BYTES = 1 << 20  # 1 MiB per request body


class ModelHolder:
    """The served artifact plus the registry it comes from; `swap_if_newer` is the hot swap."""

    def __init__(self, registry: Path) -> None:
        self.registry = registry
        self.artifact: Artifact | None = None

    def swap_if_newer(self) -> bool:
        newest = latest_version(self.registry)
        if newest is None or (self.artifact is not None and newest <= self.artifact.version):
            return False
        artifact = load_version(self.registry, newest)  # loaded fully before anyone sees it
        self.artifact = artifact  # one reference assignment: atomic for readers
        return True


# Exact search over a catalogue this small takes under a millisecond: cheaper on the event loop than
# a round trip through the thread pool. Everything else goes to the pool: FAISS and torch release the
# GIL while they search, so on a second core the search overlaps the loop's HTTP work (1M-item HNSW
# at 500 req/s on 2 cores: saturated at ~430 req/s on the loop, p99 7.4 ms through the pool), and a
# whole-catalogue model scoring (tens of ms) does not hold up every other request. (Exact search of
# 40,981 items at 500 req/s through the pool: p99 443 ms, against 33 ms on the loop.)
INLINE_EXACT_ITEMS = 50_000


def runs_inline(art: Artifact, req: RecommendIn) -> bool:
    """Whether `recommend(art, req)` is cheap enough to run on the event loop."""
    if art.index is None or req.allow is not None:
        return False
    return art.manifest.get("index", "exact") == "exact" and art.index.num_items <= INLINE_EXACT_ITEMS


class RecentItems:
    """Items posted to /v1/events, per user, for sequence models: a sequence model's state is a
    function of the user's latest items, so recomputing it from the stored sequence plus these makes
    fresh events count at once, without training (and gives new users a personal state).

    Bounded: the latest `per_user` items of the `max_users` most recently active users. Raw ids are
    kept, so a hot-swapped version reads them with its own vocabulary.
    """

    def __init__(self, per_user: int = 200, max_users: int = 100_000) -> None:
        self.per_user, self.max_users = per_user, max_users
        self.items: OrderedDict[str, tuple[str, ...]] = OrderedDict()
        self.lock = threading.Lock()  # events arrive on pool threads, reads on the event loop

    def add(self, users: list[str], items: list[str]) -> None:
        with self.lock:
            for user, item in zip(users, items, strict=True):  # a request's few events
                recent = self.items.pop(user, ())
                self.items[user] = (*recent, item)[-self.per_user :]
            while len(self.items) > self.max_users:
                self.items.popitem(last=False)

    def get(self, user: str) -> list[str]:
        with self.lock:
            return list(self.items.get(user, ()))


def absorbed(stored: np.ndarray, fresh: np.ndarray) -> int:
    """How many of the first `fresh` items already end `stored`: a version trained online since
    they were posted (`liverec online`, `serve --online`) holds them in its sequences, and reading
    them twice would tell the model the user repeated them."""
    for n in range(min(len(stored), len(fresh)), 0, -1):  # <= max_len tries, only for fresh users
        if np.array_equal(stored[-n:], fresh[:n]):
            return n
    return 0


def sequence_state(art: Artifact, user: int, fresh: np.ndarray) -> np.ndarray:
    """(D,) state of a sequence model for `user` (-1: unknown) after `fresh` items: read from the
    user's stored latest items followed by the fresh ones not stored yet, the latest max_len."""
    from liverec.data.sequences import pad_sequences

    model = art.model
    stored = model.history[user].numpy() - 1 if user >= 0 else np.zeros(0, np.int64)
    stored = stored[stored >= 0]
    seq = np.concatenate([stored, fresh[absorbed(stored, fresh):]])[-model.config.max_len :]
    padded = torch.from_numpy(pad_sequences([seq], model.config.max_len, model.num_items) + 1)
    with torch.no_grad():
        return model.last_state(padded)[0].float().numpy()


def recommend(art: Artifact, req: RecommendIn, fresh: list[str] | None = None) -> dict:
    """Top-k for one request against one artifact (no global state): a `RecommendOut` as a dict.

    `fresh`: raw ids of items the user interacted with since this version was built; a sequence
    model recomputes the user's state from them (they are also excluded with the seen items)."""
    items = art.items
    unknown: list[str] = []

    def encode(raw_ids: list[str] | None) -> np.ndarray | None:
        if raw_ids is None:
            return None
        idx = items.encode(raw_ids, missing="mask")
        unknown.extend(r for r, i in zip(raw_ids, idx, strict=True) if i < 0)
        return idx[idx >= 0]

    allow, deny = encode(req.allow), encode(req.deny)
    uidx = int(art.users.encode([req.user], missing="mask")[0])
    fallback, state = None, None
    seen = art.seen_items(uidx) if uidx >= 0 else np.zeros(0, np.int64)
    if fresh and art.model.sequential:
        new = items.encode(fresh, missing="mask")
        if (new >= 0).any():
            state = sequence_state(art, uidx, new[new >= 0])
            seen = np.concatenate([seen, new[new >= 0]])
    if uidx < 0 and state is None:
        fallback = "popularity"
        scores = torch.from_numpy(art.popularity.astype(np.float32)).clone()
    elif art.index is not None and allow is None:
        exclude = seen if req.exclude_seen else np.zeros(0, np.int64)
        if deny is not None and deny.size:
            exclude = np.concatenate([exclude, deny])
        query = art.user_vectors[uidx : uidx + 1] if state is None else state[None]
        ids, sc = art.index.search(query, req.k, [exclude])
        keep = ids[0] >= 0
        return _payload(art, ids[0][keep], sc[0][keep], None, unknown)
    else:
        with torch.no_grad():
            if state is None:
                scores = art.model.score_all(torch.tensor([uidx]))[0].float().clone()
            else:
                scores = art.model.logits(torch.from_numpy(state)[None])[0].float().clone()
    mask = torch.zeros(len(items), dtype=torch.bool)
    if req.exclude_seen:
        mask[torch.from_numpy(seen.astype(np.int64))] = True
    if deny is not None:
        mask[torch.from_numpy(deny)] = True
    if allow is not None:
        allowed = torch.zeros(len(items), dtype=torch.bool)
        allowed[torch.from_numpy(allow)] = True
        mask |= ~allowed
    scores[mask] = -torch.inf
    k = min(req.k, int((~mask).sum()))
    top = torch.topk(scores, k)
    return _payload(art, top.indices.numpy(), top.values.numpy(), fallback, unknown)


def recommend_many(art: Artifact, reqs: list[RecommendIn]) -> list[dict]:
    """`recommend` for several requests against one artifact: known users without allow/deny
    lists share one index search (one pass over the item vectors for the whole group)."""
    out: list[dict | None] = [None] * len(reqs)
    if art.index is not None:
        users = art.users.encode([r.user for r in reqs], missing="mask")
        rows = [i for i, r in enumerate(reqs) if users[i] >= 0 and r.allow is None and not r.deny]
        if rows:
            exclude = [art.seen_items(int(users[i])) if reqs[i].exclude_seen else np.zeros(0, np.int64)
                       for i in rows]
            k = max(reqs[i].k for i in rows)  # the top-k lists are sorted: a shorter k is a prefix
            ids, scores = art.index.search(art.user_vectors[users[rows]], k, exclude)
            for row, i in enumerate(rows):
                top, sc = ids[row, : reqs[i].k], scores[row, : reqs[i].k]
                out[i] = _payload(art, top[top >= 0], sc[top >= 0], None, [])
    return [recommend(art, r) if o is None else o for r, o in zip(reqs, out, strict=True)]


class LoopBatcher:
    """Gathers the inline (small exact) recommendation requests of one event-loop iteration and
    answers them with one `recommend_many` per artifact.

    The first request of an iteration schedules a flush with `call_soon`, which runs after the
    callbacks already ready — the other requests parsed in the same iteration — so nothing waits
    for a timer: a lone request is answered as before, and a burst that queued behind a slow step
    costs one (B, D) x (D, I) product instead of B passes over the item matrix.
    """

    def __init__(self, observe=None) -> None:
        self.pending: list[tuple[Artifact, RecommendIn, asyncio.Future]] = []
        self.observe = observe  # called with each flush's number of requests (a metrics histogram)

    def submit(self, art: Artifact, req: RecommendIn) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.pending.append((art, req, future))
        if len(self.pending) == 1:
            loop.call_soon(self.flush)
        return future

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        if self.observe is not None:
            self.observe(len(pending))
        groups: dict[int, list[tuple[Artifact, RecommendIn, asyncio.Future]]] = {}
        for entry in pending:  # a hot swap may fall between two requests: group by artifact
            groups.setdefault(id(entry[0]), []).append(entry)
        for group in groups.values():
            try:
                results = recommend_many(group[0][0], [req for _, req, _ in group])
            except Exception as error:  # noqa: BLE001 - each caller gets the error of its group
                for *_, future in group:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (*_, future), result in zip(group, results, strict=True):
                if not future.done():  # the client may have gone
                    future.set_result(result)


def _items(art: Artifact, idx: np.ndarray, scores: np.ndarray) -> list[dict]:
    """`Recommendation` dicts for item indices `idx` with their scores, best first."""
    raw = art.items.decode(idx).astype(str).tolist() if len(idx) else []
    values = np.asarray(scores, dtype=np.float64)
    values = values.tolist() if np.isfinite(values).all() else \
        [v if np.isfinite(v) else None for v in values.tolist()]  # JSON has no inf (pydantic: null)
    titles = art.titles
    return [{"item": r, "score": v, "title": titles.get(r)} for r, v in zip(raw, values, strict=True)]


def _payload(art: Artifact, idx, scores, fallback: str | None, unknown: list[str]) -> dict:
    return {"items": _items(art, idx, scores), "model_version": art.version, "fallback": fallback,
            "unknown_items": unknown}


def json_response(payload: dict):
    """A 200 JSON response from plain data, not re-validated (the endpoint's model documents it)."""
    from fastapi.responses import Response

    return Response(json.dumps(payload, separators=(",", ":")).encode(), media_type="application/json")


class LimitsAndMetrics:
    """ASGI middleware: rejects over-long bodies (413), turns crashes into a bare JSON 500 (never a
    stack trace) and records request counts and latency per route in Prometheus metrics."""

    def __init__(self, app, requests_total, latency, routes: frozenset[str]) -> None:
        self.app, self.requests_total, self.latency, self.routes = app, requests_total, latency, routes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        started = False

        async def send_noting_status(message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
            await send(message)

        size = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if size is not None and (not size.isdigit() or int(size) > MAX_BODY_BYTES):
            await _send_json(send_noting_status, 413, {"detail": f"request body over {MAX_BODY_BYTES} bytes"})
        else:
            try:
                await self.app(scope, receive, send_noting_status)
            except Exception:
                if started:  # too late for an error response: the client sees a cut connection
                    raise
                await _send_json(send_noting_status, 500, {"detail": "internal error"})
        # label by route, not raw path: a scan of random URLs must not grow the metrics without bound
        endpoint = scope["path"] if scope["path"] in self.routes else "other"
        self.requests_total.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(time.perf_counter() - start)


async def _send_json(send, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


def create_app(
    registry: str | Path, token: str | None = None, poll_seconds: float = 1.0,
    events_path: str | Path | None = None, log_url: str | None = None,
    online=None, online_group: str = "liverec-online",
):
    """The FastAPI app serving the latest version of `registry` (hot-swapped as versions appear).

    `token`: when set, POST /v1/events requires `Authorization: Bearer <token>`.
    `events_path`: the SQLite event log (default REGISTRY/events.sqlite).
    `log_url`: send events to this log instead (`sqlite:///path.db` or `kafka://host:port/topic`),
    where `liverec online` reads them.
    `online`: an `OnlineConfig`: learn from that log in this process (`liverec.serve.inprocess`),
    swapping the served model in memory after every micro-batch instead of polling the registry.
    """
    from fastapi import Depends, FastAPI, HTTPException, Query, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import JSONResponse, PlainTextResponse, Response
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        CollectorRegistry,
        Counter,
        Gauge,
        Histogram,
        generate_latest,
    )

    from liverec.stream import Event, SQLiteEventLog, open_log

    holder = ModelHolder(Path(registry))
    metrics = CollectorRegistry()  # per app: several apps in one process do not collide
    requests_total = Counter("liverec_requests_total", "Requests", ["endpoint", "status"], registry=metrics)
    latency = Histogram(
        "liverec_request_seconds", "Request latency", ["endpoint"], registry=metrics,
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
    )
    version_gauge = Gauge("liverec_model_version", "Served model version", registry=metrics)
    swaps = Counter("liverec_model_swaps_total", "Hot swaps performed", registry=metrics)

    async def poll_registry() -> None:
        while True:
            await asyncio.sleep(poll_seconds)
            with contextlib.suppress(Exception):  # a broken publish must not kill the server
                if await asyncio.to_thread(holder.swap_if_newer):
                    swaps.inc()
                    version_gauge.set(holder.artifact.version)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        with contextlib.suppress(Exception):  # an empty registry: /readyz says 503 until a publish
            await asyncio.to_thread(holder.swap_if_newer)
        if holder.artifact is not None:
            version_gauge.set(holder.artifact.version)
        if log_url is not None:
            app.state.events = open_log(log_url)
        else:
            app.state.events = SQLiteEventLog(events_path or Path(registry) / "events.sqlite")
        embedded = None
        if online is not None:  # the trainer feeds the holder: nothing to poll for
            from liverec.serve.inprocess import EmbeddedTrainer

            url = log_url or f"sqlite://{Path(events_path or Path(registry) / 'events.sqlite').resolve()}"
            embedded = EmbeddedTrainer(holder, registry, url, online, online_group)
            await asyncio.to_thread(embedded.start)
            task = None
        else:
            task = asyncio.create_task(poll_registry())
        # what is alive now (libraries, the first model) lives as long as the server: keep it out of
        # the cyclic collector, whose first full pass over it otherwise stalls a request ~0.2 s
        gc.collect()
        gc.freeze()
        yield
        if task is not None:
            task.cancel()
        if embedded is not None:
            await asyncio.to_thread(embedded.close)
        app.state.events.close()

    app = FastAPI(title="liverec", version="1", lifespan=lifespan)

    def current() -> Artifact:
        art = holder.artifact
        if art is None:
            raise HTTPException(503, "no model published yet; run `liverec export`")
        return art

    def require_token(request: Request) -> None:
        if token is not None and request.headers.get("authorization") != f"Bearer {token}":
            raise HTTPException(401, "missing or wrong bearer token")

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", responses=error_responses(503))
    def readyz():
        art = holder.artifact
        if art is None:
            return JSONResponse({"status": "no model"}, 503)
        return {"status": "ready", "model_version": art.version, "model": art.manifest.get("model")}

    @app.get("/metrics", response_class=PlainTextResponse,
             responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}})
    def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics), media_type=CONTENT_TYPE_LATEST)

    batch_sizes = Histogram(
        "liverec_inline_batch_requests", "Requests searched together on the event loop",
        registry=metrics, buckets=(1, 2, 4, 8, 16, 32, 64, 128),
    )
    batcher = LoopBatcher(batch_sizes.observe)
    recent = RecentItems()

    async def answer(req: RecommendIn) -> Response:
        art = current()
        fresh = recent.get(req.user) if art.model.sequential else None
        if fresh:  # a forward pass over the user's sequence: off the event loop
            return json_response(await run_in_threadpool(recommend, art, req, fresh))
        if runs_inline(art, req):
            return json_response(await batcher.submit(art, req))
        return json_response(await run_in_threadpool(recommend, art, req))

    @app.post("/v1/recommend", response_model=RecommendOut, responses=error_responses(400, 413, 503))
    async def recommend_post(req: RecommendIn) -> Response:
        return await answer(req)

    @app.get("/v1/recommend", response_model=RecommendOut, responses=error_responses(503))
    async def recommend_get(
        user: str = Query(..., min_length=1, max_length=256),
        k: int = Query(10, ge=1, le=1000),
        exclude_seen: bool = True,
    ) -> Response:
        return await answer(RecommendIn(user=user, k=k, exclude_seen=exclude_seen))

    @app.get("/v1/similar-items", response_model=SimilarOut, responses=error_responses(404, 409, 503))
    def similar_items(
        item: str = Query(..., min_length=1, max_length=256), k: int = Query(10, ge=1, le=1000)
    ) -> Response:
        art = current()
        idx = int(art.items.encode([item], missing="mask")[0])
        if idx < 0:
            raise HTTPException(404, f"item {item!r} is unknown to model version {art.version}")
        if art.index is None:
            raise HTTPException(409, f"{art.manifest.get('model')} has no item embeddings")
        ids, sc = art.index.search(art.item_vectors[idx : idx + 1], k, [np.array([idx])])
        keep = ids[0] >= 0
        return json_response({"item": item, "items": _items(art, ids[0][keep], sc[0][keep]),
                              "model_version": art.version})

    @app.post(
        "/v1/events", response_model=EventsOut, dependencies=[Depends(require_token)],
        responses=error_responses(400, 401, 413),
    )
    def post_events(body: EventsIn, request: Request) -> EventsOut:
        events = [Event(e.user, e.item, e.type, e.value, e.timestamp, e.context) for e in body.events]
        offsets = request.app.state.events.append(events)  # Kafka assigns offsets per partition
        art = holder.artifact
        if art is not None and art.model.sequential:  # their next answer reads these at once
            recent.add([e.user for e in events], [e.item for e in events])
        first = offsets[0] if offsets else None
        return EventsOut(accepted=len(events), first_offset=first)

    routes = frozenset(route.path for route in app.routes)
    app.add_middleware(LimitsAndMetrics, requests_total=requests_total, latency=latency, routes=routes)
    return app
