"""Elastic training for real: torchrun with 2 workers, one is SIGKILLed after the first checkpoint,
TorchElastic restarts the group and the run resumes from that checkpoint and completes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from liverec.serve.process import free_port

EPOCHS = 10


def children(pid: int) -> list[int]:
    """Direct children of `pid` (from /proc; Linux only)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def rank_of(pid: int) -> int | None:
    try:
        env = (Path("/proc") / str(pid) / "environ").read_bytes().split(b"\0")
    except OSError:
        return None
    ranks = [int(e.split(b"=", 1)[1]) for e in env if e.startswith(b"RANK=")]
    return ranks[0] if ranks else None


# slow: ~40-100 s on the shared 2-core machine, and after the restart the new gloo group sometimes
# fails to connect (connectFullMesh "connection refused") or hangs there under heavy load: 2 of 7
# local runs; kept out of the default suite until that is understood
@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the workers through /proc")
def test_killed_worker_resumes_from_checkpoint_and_finishes(synthetic_csv, tmp_path):
    out = tmp_path / "run"
    state = tmp_path / ".run.partial" / "checkpoint" / "state.json"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes=1:2", "--nproc-per-node=2",
        "--max-restarts=2", "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{free_port()}",
        "--rdzv-conf=last_call_timeout=1", "--monitor-interval=0.2",
        "-m", "liverec", "train", "mf", "--data", str(synthetic_csv), "--out", str(out), "--quiet",
        "--set", f"train.epochs={EPOCHS}", "--set", "train.batch_size=64", "--set", "train.lr=0.01",
        "--set", "train.patience=0", "--set", "model.embedding_dim=8",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
                            start_new_session=True)  # its own process group: cleanup reaches the workers
    try:
        deadline = time.monotonic() + 120
        while not state.is_file():  # the first checkpoint (checkpoint_every becomes 1 under restarts)
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
            time.sleep(0.05)
        killed_at = json.loads(state.read_text())["epoch"]
        workers = {rank_of(pid): pid for pid in children(proc.pid)}
        assert set(workers) == {0, 1}, workers
        os.kill(workers[1], signal.SIGKILL)
        try:
            output, _ = proc.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail("the run did not finish after the kill:\n" + proc.communicate()[0])
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, output
    assert killed_at < EPOCHS
    assert "resuming from the checkpoint of epoch" in output, output
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == list(range(1, EPOCHS + 1))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["processes"] == 2
    assert metrics["test"]["Recall@20"] > 20 / 150  # well above a random ranking of 150 items
    assert not (out / "checkpoint").exists() and not list(tmp_path.glob(".run*"))
