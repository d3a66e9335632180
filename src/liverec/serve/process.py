"""`liverec serve` as a child process: what tests, benchmarks and the feedback demo use to talk to a
real server over HTTP."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from liverec.errors import LiverecError

CLI = [sys.executable, "-c", "from liverec.cli import app; app()"]  # `liverec` of this interpreter


def free_port() -> int:
    """A TCP port on loopback that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(base: str, procs: Sequence[subprocess.Popen] = (), timeout: float = 60.0) -> None:
    """Poll GET {base}/readyz until it answers 200; fail if one of `procs` exits or time runs out."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise LiverecError(f"a process behind {base} exited before the server was ready")
        try:
            if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise LiverecError(f"the server at {base} was not ready within {timeout:.0f} s")


def stop(*procs: subprocess.Popen, timeout: float = 30.0) -> None:
    """Terminate the processes, killing any that outlive `timeout`."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_server(
    registry: str | Path, *args: str, env: dict | None = None, output=subprocess.PIPE,
    timeout: float = 60.0,
) -> tuple[subprocess.Popen, str]:
    """Start `liverec serve REGISTRY --port P ARGS...` and wait until ready; (process, base URL).

    On failure the process is stopped and the error carries the end of its output (when piped).
    """
    port = free_port()
    proc = subprocess.Popen(CLI + ["serve", str(registry), "--port", str(port), *args], env=env,
                            stdout=output, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, [proc], timeout)
    except LiverecError as e:
        stop(proc)
        tail = proc.stdout.read().decode(errors="replace")[-2000:] if proc.stdout else ""
        raise LiverecError(f"{e}\n{tail}") from None
    return proc, base
