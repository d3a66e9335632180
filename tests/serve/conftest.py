"""Shared fixture: a real `liverec serve` process (uvicorn) over a registry of a trained MF model."""

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


@pytest.fixture(scope="module")
def server(tmp_path_factory, small_events):
    root = tmp_path_factory.mktemp("serve")
    data, rows = small_events
    runs = {}
    for name, params in (("mf", {"embedding_dim": 8}), ("ease", {"l2": 10.0})):
        cfg = RunConfig(model=name, data=str(data), params=params,
                        train=TrainConfig(epochs=2, progress=False))
        train_run(cfg, root / name)
        runs[name] = root / name
    registry = root / "registry"
    publish(runs["mf"], registry)
    proc, base = start_server(registry, "--poll", "0.2", env={**os.environ, "LIVEREC_TOKEN": TOKEN})
    yield base, registry, runs, rows
    stop(proc)


@pytest.fixture
def auth() -> dict[str, str]:
    """Headers that carry the server's bearer token."""
    return {"Authorization": f"Bearer {TOKEN}"}
