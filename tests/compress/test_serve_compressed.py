"""A compressed run published into a registry is served by a real `liverec serve` process."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from liverec.compress import compress_run
from liverec.registry import load_version, publish

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_int4_registry_serves_recommendations(runs, tmp_path):
    compress_run(runs["mf"], tmp_path / "int4", ["int4"])
    registry = tmp_path / "registry"
    assert publish(tmp_path / "int4", registry) == 1
    art = load_version(registry)
    assert art.index is not None  # built from the dequantised item vectors
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from liverec.cli import app; app()", "serve", str(registry),
         "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            pytest.fail("server did not start: " + proc.stdout.read().decode()[-2000:])
        user = str(art.users.raw[0])
        body = httpx.get(base + "/v1/recommend", params={"user": user, "k": 10}).json()
        assert body["model_version"] == 1 and len(body["items"]) == 10
        seen = set(art.items.decode(art.seen_items(0)).astype(str).tolist())
        assert not seen & {r["item"] for r in body["items"]}
        scores = [r["score"] for r in body["items"]]
        assert scores == sorted(scores, reverse=True)
        similar = httpx.get(base + "/v1/similar-items", params={"item": str(art.items.raw[0]), "k": 5})
        assert similar.status_code == 200 and len(similar.json()["items"]) == 5
    finally:
        proc.terminate()
        proc.wait(timeout=10)
