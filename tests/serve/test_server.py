"""The HTTP API against a real `liverec serve` process (uvicorn), queried with httpx."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from liverec.registry import publish  # noqa: E402


def seen_of(rows, user: int) -> set[str]:
    return {str(i) for u, i, _ in rows if u == user}


def test_recommend_known_user_excludes_seen(server):
    base, _, _, rows = server
    r = httpx.get(base + "/v1/recommend", params={"user": "0", "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    items = [x["item"] for x in body["items"]]
    assert len(items) == 5 and not set(items) & seen_of(rows, 0)
    assert body["fallback"] is None and body["model_version"] >= 1
    scores = [x["score"] for x in body["items"]]
    assert scores == sorted(scores, reverse=True)
    post = httpx.post(base + "/v1/recommend", json={"user": "0", "k": 5}).json()
    assert [x["item"] for x in post["items"]] == items


def test_concurrent_requests_searched_together_answer_as_alone(server):
    # requests arriving together are searched as one batch on the event loop (LoopBatcher): each
    # must still get its own user, k, exclusion and fallback
    import asyncio

    base, _, _, rows = server
    asks = [{"user": str(u % 30), "k": 3 + u % 5, "exclude_seen": u % 3 != 0} for u in range(40)]
    asks += [{"user": "nobody-" + str(u), "k": 4} for u in range(3)]
    alone = [httpx.get(base + "/v1/recommend", params=a).json() for a in asks]

    async def together():
        async with httpx.AsyncClient(base_url=base) as client:
            return await asyncio.gather(*(client.get("/v1/recommend", params=a) for a in asks))

    answers = asyncio.run(together())
    assert all(r.status_code == 200 for r in answers)
    metrics = httpx.get(base + "/metrics").text
    count = float(next(line.split()[-1] for line in metrics.splitlines()
                       if line.startswith("liverec_inline_batch_requests_count")))
    total = float(next(line.split()[-1] for line in metrics.splitlines()
                       if line.startswith("liverec_inline_batch_requests_sum")))
    assert total > count  # some flush answered more than one request
    for r, a in zip(answers, alone, strict=True):  # the same items; scores to float32 rounding
        assert [x["item"] for x in r.json()["items"]] == [x["item"] for x in a["items"]]
        assert [x["score"] for x in r.json()["items"]] == pytest.approx([x["score"] for x in a["items"]], rel=1e-5)
    assert [r.json()["fallback"] for r in answers][-3:] == ["popularity"] * 3
    for ask, body in zip(asks[:40], alone[:40], strict=True):
        assert len(body["items"]) == ask["k"]
        if ask["exclude_seen"]:
            assert not {x["item"] for x in body["items"]} & seen_of(rows, int(ask["user"]))


def test_allow_deny_and_unknown_items(server):
    base, _, _, rows = server
    unseen = sorted({str(i) for _, i, _ in rows} - seen_of(rows, 1))
    r = httpx.post(base + "/v1/recommend", json={
        "user": "1", "k": 3, "allow": unseen[:4] + ["no-such-item"], "deny": [unseen[0]],
    })
    body = r.json()
    assert r.status_code == 200 and body["unknown_items"] == ["no-such-item"]
    assert {x["item"] for x in body["items"]} <= set(unseen[1:4]) and len(body["items"]) == 3


def test_unknown_user_gets_marked_popularity(server):
    base, *_ = server
    body = httpx.get(base + "/v1/recommend", params={"user": "nobody", "k": 3}).json()
    assert body["fallback"] == "popularity" and len(body["items"]) == 3


@pytest.mark.parametrize("params", [{"user": "0", "k": 0}, {"user": "0", "k": 1001}, {"k": 5}])
def test_bad_get_requests_are_422(server, params):
    base, *_ = server
    r = httpx.get(base + "/v1/recommend", params=params)
    assert r.status_code == 422 and "detail" in r.json()


def test_bad_bodies_are_4xx_without_traces(server):
    base, *_ = server
    r = httpx.post(base + "/v1/recommend", json={"user": "0", "k": 5, "colour": "red"})
    assert r.status_code == 422
    r = httpx.post(base + "/v1/recommend", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "Traceback" not in r.text
    r = httpx.post(base + "/v1/recommend", content=b"x" * (2 << 20), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_similar_items(server):
    base, *_ = server
    body = httpx.get(base + "/v1/similar-items", params={"item": "3", "k": 4}).json()
    assert len(body["items"]) == 4 and "3" not in [x["item"] for x in body["items"]]
    assert httpx.get(base + "/v1/similar-items", params={"item": "zzz"}).status_code == 404


def test_events_need_the_token_and_land_in_sqlite(server, auth):
    base, registry, *_ = server
    event = {"events": [{"user": "0", "item": "5", "type": "click"}]}
    assert httpx.post(base + "/v1/events", json=event).status_code == 401
    r = httpx.post(base + "/v1/events", json=event, headers=auth)
    assert r.status_code == 200 and r.json()["accepted"] == 1
    with sqlite3.connect(registry / "events.sqlite") as db:
        assert ("0", "5", "click") in db.execute("SELECT user, item, type FROM events").fetchall()
    bad = {"events": [{"user": "0", "item": "5", "value": "NaN"}]}
    assert httpx.post(base + "/v1/events", json=bad, headers=auth).status_code == 422


def test_health_metrics_and_docs(server):
    base, *_ = server
    assert httpx.get(base + "/healthz").json() == {"status": "ok"}
    text = httpx.get(base + "/metrics").text
    assert "liverec_requests_total" in text and "liverec_model_version" in text
    assert httpx.get(base + "/openapi.json").status_code == 200


def test_hot_swap_under_load_fails_no_request(server):
    base, registry, runs, _ = server
    before = httpx.get(base + "/readyz").json()["model_version"]
    failures, done, stop = [], [0], threading.Event()

    def client():
        with httpx.Client(timeout=10) as c:
            while not stop.is_set():
                r = c.get(base + "/v1/recommend", params={"user": "2", "k": 5})
                if r.status_code != 200 or len(r.json()["items"]) != 5:
                    failures.append(r.status_code)
                done[0] += 1

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    new_version = publish(runs["ease"], registry)
    deadline = time.time() + 30
    while httpx.get(base + "/readyz").json()["model_version"] != new_version and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join()
    assert new_version > before
    assert httpx.get(base + "/readyz").json()["model_version"] == new_version
    assert failures == [] and done[0] > 20


def test_serve_refuses_public_bind_without_token(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "LIVEREC_TOKEN"}
    r = subprocess.run(
        [sys.executable, "-c", "from liverec.cli import app; app()", "serve", str(tmp_path),
         "--host", "0.0.0.0"], env=env, capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 2 and "--token" in r.stderr and "Traceback" not in r.stderr
