"""Shared fixtures: seeded synthetic data written in a supported file format, real-data lookup."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest


def real_data(name: str) -> Path:
    """The folder of a real data set under LIVEREC_DATA, or skip the test."""
    home = os.environ.get("LIVEREC_DATA")
    if not home or not (Path(home) / name).exists():
        pytest.skip(f"real data set {name} not available (set LIVEREC_DATA)")
    return Path(home) / name


@pytest.fixture
def synthetic_csv(tmp_path: Path) -> Path:
    """A small seeded synthetic data set as CSV (user,item,rating,timestamp)."""
    from liverec.data.synthetic import synthetic_events

    ev = synthetic_events(num_users=120, num_items=150, events_per_user=25, seed=1)
    path = tmp_path / "events.csv"
    rating = ev.rating if ev.rating is not None else np.ones(len(ev))
    lines = ["user,item,rating,timestamp"] + [
        f"{u},{i},{r:g},{t}" for u, i, r, t in zip(ev.user, ev.item, rating, ev.timestamp, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def small_events(tmp_path_factory) -> tuple[Path, list[tuple[int, int, int]]]:
    """60 users x 80 items of seeded synthetic events as user,item,timestamp CSV, and its rows."""
    from liverec.data.synthetic import synthetic_events

    ev = synthetic_events(num_users=60, num_items=80, events_per_user=12, seed=3)
    rows = sorted(set(zip(ev.user.tolist(), ev.item.tolist(), ev.timestamp.tolist(), strict=True)))
    path = tmp_path_factory.mktemp("small-events") / "events.csv"
    path.write_text("user,item,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in rows))
    return path, rows
