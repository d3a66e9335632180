"""A compressed run published into a registry is served by a real `liverec serve` process."""

from __future__ import annotations

import pytest

from liverec.compress import compress_run
from liverec.registry import load_version, publish
from liverec.serve.process import start_server, stop

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")


def test_int4_registry_serves_recommendations(runs, tmp_path):
    compress_run(runs["mf"], tmp_path / "int4", ["int4"])
    registry = tmp_path / "registry"
    assert publish(tmp_path / "int4", registry) == 1
    art = load_version(registry)
    assert art.index is not None  # built from the dequantised item vectors
    proc, base = start_server(registry)
    try:
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
        stop(proc)
