"""Shared fixture: a real `liverec serve` process (uvicorn) over a registry of a trained MF model."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from liverec.experiment import RunConfig, train_run  # noqa: E402
from liverec.registry import publish  # noqa: E402
from liverec.train import TrainConfig  # noqa: E402

TOKEN = "s3cret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from liverec.data.synthetic import synthetic_events

    root = tmp_path_factory.mktemp("serve")
    ev = synthetic_events(num_users=60, num_items=80, events_per_user=12, seed=3)
    rows = sorted(set(zip(ev.user.tolist(), ev.item.tolist(), ev.timestamp.tolist(), strict=True)))
    data = root / "events.csv"
    data.write_text("user,item,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in rows))
    runs = {}
    for name, params in (("mf", {"embedding_dim": 8}), ("ease", {"l2": 10.0})):
        cfg = RunConfig(model=name, data=str(data), params=params,
                        train=TrainConfig(epochs=2, progress=False))
        train_run(cfg, root / name)
        runs[name] = root / name
    registry = root / "registry"
    publish(runs["mf"], registry)
    port = free_port()
    env = {**os.environ, "LIVEREC_TOKEN": TOKEN}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from liverec.cli import app; app()", "serve", str(registry),
         "--port", str(port), "--poll", "0.2"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("server did not start: " + proc.stdout.read().decode()[-2000:])
    yield base, registry, runs, rows
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def auth() -> dict[str, str]:
    """Headers that carry the server's bearer token."""
    return {"Authorization": f"Bearer {TOKEN}"}
