"""Small trained runs (MF with biases, NeuMF) on synthetic data, shared by the compression tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from liverec.experiment import RunConfig, train_run
from liverec.train import TrainConfig


@pytest.fixture(scope="package")
def runs(tmp_path_factory) -> dict[str, Path]:
    from liverec.data.synthetic import synthetic_events

    root = tmp_path_factory.mktemp("compress")
    ev = synthetic_events(num_users=80, num_items=120, events_per_user=15, seed=5)
    rows = sorted(set(zip(ev.user.tolist(), ev.item.tolist(), ev.timestamp.tolist(), strict=True)))
    data = root / "events.csv"
    data.write_text("user,item,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in rows))
    out = {}
    for name, params in (
        ("mf", {"embedding_dim": 32}),
        ("neumf", {"embedding_dim": 8, "mlp_layers": [32, 16, 8]}),
        ("sasrec", {"embedding_dim": 32, "max_len": 8, "num_heads": 2}),
    ):
        loss = {"loss": "ce"} if name == "sasrec" else {"loss": "bce", "num_negatives": 2}
        cfg = RunConfig(model=name, data=str(data), params=params,
                        train=TrainConfig(epochs=3, progress=False, **loss))
        cfg.dataset.split = "loo"
        train_run(cfg, root / name)
        out[name] = root / name
    return out
