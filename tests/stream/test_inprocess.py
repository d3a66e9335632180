"""`liverec serve --online`: the trainer runs inside the server and swaps the served model in memory;
checked through the real HTTP API of a real server process."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import httpx
import pytest

from liverec.registry import latest_version, load_version
from liverec.serve.process import start_server, stop


def recommended(client: httpx.Client, user: str) -> dict:
    response = client.get("/v1/recommend", params={"user": user, "k": 5})
    assert response.status_code == 200, response.text
    return response.json()


def test_an_event_changes_the_served_recommendations_in_process(registries, tmp_path):
    registry = tmp_path / "registry"
    shutil.copytree(registries["mf"], registry)
    first = latest_version(registry)
    user = str(load_version(registry).users.raw[0])
    server, base = start_server(registry, "--online", "--set", "publish_ms=0", "--poll", "3600")
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            before = recommended(client, user)
            top = before["items"][0]["item"]
            assert recommended(client, "stranger")["fallback"] == "popularity"
            events = [{"user": user, "item": top, "type": "purchase"}, {"user": "stranger", "item": top}]
            assert client.post("/v1/events", json={"events": events}).status_code == 200
            deadline = time.monotonic() + 30
            while top in [r["item"] for r in recommended(client, user)["items"]]:
                assert time.monotonic() < deadline, "the purchase never reached the served model"
                time.sleep(0.01)
            assert recommended(client, "stranger")["fallback"] is None  # a new user, learned in place
        # no registry poll can have done it (once an hour); the version is still published for durability
        while latest_version(registry) == first:
            assert time.monotonic() < deadline, "nothing was published"
            time.sleep(0.05)
    finally:
        stop(server)
    output = server.stdout.read().decode(errors="replace")
    assert server.returncode in (0, -15) and "Traceback" not in output, output[-3000:]  # uvicorn re-raises SIGTERM
    art = load_version(registry)
    assert art.manifest["events_applied"] == 2 and "stranger" in art.users.raw.astype(str).tolist()


@pytest.mark.parametrize(("args", "message"), [
    (["--online", "--set", "batch_sise=3"], "batch_sise"),
    (["--set", "batch_size=3"], "add --online"),
])
def test_online_serve_options_are_checked(registries, args, message):
    r = subprocess.run([sys.executable, "-c", "from liverec.cli import app; app()", "serve",
                        str(registries["mf"]), *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_online_serve_needs_an_online_model(registries):
    r = subprocess.run([sys.executable, "-c", "from liverec.cli import app; app()", "serve",
                        str(registries["ease"]), "--online"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "'ease'" in r.stderr and "Traceback" not in r.stderr


def test_sasrec_learns_a_new_item_in_process(registries, tmp_path):
    """A sequence model continues training inside the server: an event on a brand-new item makes
    it part of the served catalogue at once (the version poll is once an hour)."""
    registry = tmp_path / "registry"
    shutil.copytree(registries["sasrec"], registry)
    user = str(load_version(registry).users.raw[0])
    server, base = start_server(registry, "--online", "--set", "publish_ms=0", "--poll", "3600")
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            def allowed() -> dict:
                r = client.post("/v1/recommend", json={"user": user, "k": 5, "allow": ["brand-new"]})
                assert r.status_code == 200, r.text
                return r.json()

            assert allowed()["unknown_items"] == ["brand-new"]
            events = [{"user": user, "item": "brand-new", "type": "click"}, {"user": "stranger", "item": "brand-new"}]
            assert client.post("/v1/events", json={"events": events}).status_code == 200
            deadline = time.monotonic() + 30
            while allowed()["unknown_items"]:
                assert time.monotonic() < deadline, "the new item never reached the served model"
                time.sleep(0.01)
            assert recommended(client, "stranger")["fallback"] is None
    finally:
        stop(server)
    output = server.stdout.read().decode(errors="replace")
    assert server.returncode in (0, -15) and "Traceback" not in output, output[-3000:]
    art = load_version(registry)
    assert art.manifest["model"] == "sasrec" and "brand-new" in art.items.raw.astype(str).tolist()
