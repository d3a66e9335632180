"""A sequence model behind the real server: posted events change a user's state at once."""

from __future__ import annotations

import os

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from liverec.experiment import RunConfig, train_run  # noqa: E402
from liverec.registry import publish  # noqa: E402
from liverec.serve.process import start_server, stop  # noqa: E402
from liverec.train import TrainConfig  # noqa: E402

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def sasrec_server(tmp_path_factory, small_events):
    root = tmp_path_factory.mktemp("serve-seq")
    data, rows = small_events
    cfg = RunConfig(model="sasrec", data=str(data), params={"max_len": 8, "embedding_dim": 16},
                    train=TrainConfig(epochs=3, loss="ce", progress=False))
    train_run(cfg, root / "sasrec")
    publish(root / "sasrec", root / "registry")
    proc, base = start_server(root / "registry", env={**os.environ, "LIVEREC_TOKEN": TOKEN})
    yield base, rows
    stop(proc)


def top(base: str, user: str, k: int = 10) -> dict:
    r = httpx.get(base + "/v1/recommend", params={"user": user, "k": k})
    assert r.status_code == 200, r.text
    return r.json()


def post(base: str, user: str, items: list[str]) -> None:
    r = httpx.post(base + "/v1/events", headers=AUTH,
                   json={"events": [{"user": user, "item": i, "type": "click"} for i in items]})
    assert r.status_code == 200, r.text


def test_fresh_events_move_a_known_users_recommendations(sasrec_server):
    base, rows = sasrec_server
    seen = {str(i) for u, i, _ in rows if u == 0}
    before = [x["item"] for x in top(base, "0")["items"]]
    fresh = [i for i in map(str, range(80)) if i not in seen and i not in before][:3]
    post(base, "0", fresh)
    after = top(base, "0")
    items = [x["item"] for x in after["items"]]
    assert after["fallback"] is None and len(items) == 10
    assert not set(items) & (seen | set(fresh))  # the fresh items count as seen
    assert items != before  # the state was recomputed from the longer sequence


def test_a_new_user_gets_a_personal_state_from_their_events(sasrec_server):
    base, _ = sasrec_server
    assert top(base, "newcomer")["fallback"] == "popularity"
    post(base, "newcomer", ["5", "17", "42"])
    body = top(base, "newcomer")
    assert body["fallback"] is None
    assert not {x["item"] for x in body["items"]} & {"5", "17", "42"}
    post(base, "other-newcomer", ["64", "3", "71"])  # another sequence, another state
    assert [x["item"] for x in top(base, "other-newcomer")["items"]] != [x["item"] for x in body["items"]]
