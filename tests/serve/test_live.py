"""Live learning end to end: POST /v1/events -> event log -> `liverec online` -> registry -> hot
swap in `liverec serve` -> /v1/recommend changes. Real processes, real SQLite log, httpx."""

from __future__ import annotations

import subprocess
import time

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from liverec.experiment import RunConfig, train_run  # noqa: E402
from liverec.registry import publish  # noqa: E402
from liverec.serve.process import CLI, free_port, stop, wait_ready  # noqa: E402
from liverec.train import TrainConfig  # noqa: E402


def wait_for(check, what: str, seconds: float = 60.0):
    """Poll `check()` until it returns something truthy (a deadline only guards against hangs)."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def live(tmp_path_factory, small_events):
    root = tmp_path_factory.mktemp("live")
    data, rows = small_events
    cfg = RunConfig(model="mf", data=str(data), params={"embedding_dim": 8},
                    train=TrainConfig(epochs=2, progress=False))
    train_run(cfg, root / "mf")
    registry = root / "registry"
    publish(root / "mf", registry)
    port = free_port()
    db = registry / "events.sqlite"
    server = subprocess.Popen(CLI + ["serve", str(registry), "--port", str(port), "--poll", "0.05",
                                     "--log", f"sqlite://{db}"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    trainer = subprocess.Popen(CLI + ["online", str(registry), "--log", f"sqlite://{db}",
                                      "--set", "publish_ms=20"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    wait_ready(base, [server, trainer])
    yield base, db
    stop(trainer, server)


def recommend(base: str, user: str) -> dict:
    return httpx.get(base + "/v1/recommend", params={"user": user, "k": 5}).json()


def test_clicks_change_the_users_recommendations(live):
    base, _ = live
    before = recommend(base, "4")
    top = before["items"][0]["item"]
    events = [{"user": "4", "item": top, "type": "purchase"}, {"user": "4", "item": top, "type": "click"}]
    assert httpx.post(base + "/v1/events", json={"events": events}).status_code == 200

    def changed():
        now = recommend(base, "4")
        return now if now["model_version"] > before["model_version"] and now["items"] != before["items"] else None

    after = wait_for(changed, "a model version reflecting the purchase")
    assert top not in [x["item"] for x in after["items"]]  # now seen, so excluded
    assert after["fallback"] is None


def test_a_new_user_gets_personal_recommendations(live):
    base, _ = live
    assert recommend(base, "newcomer")["fallback"] == "popularity"
    clicked = ["3", "7", "11"]
    events = [{"user": "newcomer", "item": i, "type": "click"} for i in clicked]
    assert httpx.post(base + "/v1/events", json={"events": events}).status_code == 200
    after = wait_for(lambda: (r := recommend(base, "newcomer"))["fallback"] is None and r, "the new user")
    assert not set(clicked) & {x["item"] for x in after["items"]}


def test_a_new_item_becomes_servable(live):
    base, _ = live
    events = [{"user": str(u), "item": "brand-new-item", "type": "click"} for u in range(5)]
    assert httpx.post(base + "/v1/events", json={"events": events}).status_code == 200

    def similar():
        r = httpx.get(base + "/v1/similar-items", params={"item": "brand-new-item", "k": 3})
        return r.json() if r.status_code == 200 else None

    assert len(wait_for(similar, "the new item")["items"]) == 3
