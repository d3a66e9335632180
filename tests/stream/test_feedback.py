"""The feedback-loop demo's pieces: hidden likes, one round of simulated users, bad options."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from liverec.errors import LiverecError
from liverec.stream.feedback import LoopConfig, hidden_likes, one_round


class StubServer:
    """Answers /v1/recommend with items 0..k-1 and records the posted events."""

    def __init__(self) -> None:
        self.posted: list[dict] = []

    def get(self, path: str, params: dict):
        assert path == "/v1/recommend" and params["exclude_seen"] == "false"
        return _Response({"items": [{"item": str(i)} for i in range(params["k"])], "model_version": 7})

    def post(self, path: str, json: dict):
        assert path == "/v1/events"
        self.posted += json["events"]
        return _Response({})


class _Response:
    def __init__(self, body: dict) -> None:
        self.body = body

    def json(self) -> dict:
        return self.body

    def raise_for_status(self) -> None:
        pass


def test_each_user_likes_the_configured_share_of_items():
    likes = hidden_likes(LoopConfig(users=30, items=100, users_per_round=5, liked_fraction=0.1))
    assert likes.shape == (30, 100) and (likes.sum(1) == 10).all()


def test_a_round_clicks_exactly_the_liked_items_when_clicks_are_certain():
    config = LoopConfig(users=20, items=50, users_per_round=5, k=4, click_prob=1.0, noise_click_prob=0.0)
    likes = hidden_likes(config)
    server = StubServer()
    shown, clicks, version = one_round(server, config, likes, np.random.default_rng(0))
    assert (shown, version) == (5 * 4, 7)
    assert clicks == len(server.posted) and all(e["type"] == "click" for e in server.posted)
    assert all(likes[int(e["user"]), int(e["item"])] for e in server.posted)
    users = {int(e["user"]) for e in server.posted}
    assert sum(int(likes[u, :4].sum()) for u in users) == clicks  # every liked shown item was clicked


def test_bad_options_are_errors():
    with pytest.raises(LiverecError, match="users_per_round"):
        LoopConfig(users=3, users_per_round=10)
    r = subprocess.run([sys.executable, "-c", "from liverec.cli import app; app()", "demo-loop", "--seconds", "0"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "seconds > 0" in r.stderr and "Traceback" not in r.stderr
