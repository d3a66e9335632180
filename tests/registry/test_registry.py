"""Registry: export is atomic and versioned, loading needs no pickle, and the artifact ranks like the run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from liverec.errors import DataNotFoundError, LiverecError
from liverec.experiment import RunConfig, train_run
from liverec.registry import latest_version, load_version, publish
from liverec.train import TrainConfig


def train_small(data: Path, out: Path, model: str = "mf") -> Path:
    params = {"embedding_dim": 8} if model == "mf" else {"l2": 10.0}
    cfg = RunConfig(model=model, data=str(data), params=params,
                    train=TrainConfig(epochs=2, progress=False))
    cfg.eval.ks = (10,)
    train_run(cfg, out)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from liverec.data.synthetic import synthetic_events

    root = tmp_path_factory.mktemp("reg")
    ev = synthetic_events(num_users=60, num_items=80, events_per_user=12, seed=3)
    data = root / "events.csv"
    rows = sorted(set(zip(ev.user.tolist(), ev.item.tolist(), ev.timestamp.tolist(), strict=True)))
    data.write_text("user,item,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in rows))
    return train_small(data, root / "mf"), train_small(data, root / "ease", "ease")


def test_versions_count_up_and_latest_moves_last(runs, tmp_path):
    mf_run, ease_run = runs
    registry = tmp_path / "registry"
    assert latest_version(registry) is None
    assert publish(mf_run, registry) == 1
    assert publish(ease_run, registry) == 2
    assert latest_version(registry) == 2
    assert sorted(p.name for p in (registry / "versions").iterdir()) == ["1", "2"]  # no partials
    manifest = json.loads((registry / "versions" / "1" / "manifest.json").read_text())
    assert manifest["model"] == "mf" and manifest["version"] == 1
    assert not list((registry / "versions" / "1").glob("*.pt*")) and not list(registry.rglob("*.pkl"))


@pytest.mark.parametrize("kind", ["exact", "hnsw"])
def test_loaded_artifact_ranks_like_the_model(runs, tmp_path, kind):
    pytest.importorskip("faiss")
    mf_run, _ = runs
    registry = tmp_path / "registry"
    publish(mf_run, registry, index=kind)
    art = load_version(registry)
    assert art.index is not None and art.user_vectors is not None
    users = np.arange(10)
    exclude = [art.seen_items(u) for u in users]
    ids, _ = art.index.search(art.user_vectors[users], 5, exclude)
    with torch.no_grad():
        scores = art.model.score_all(torch.from_numpy(users)).numpy()
    for row, u in enumerate(users):
        scores[row, art.seen_items(u)] = -np.inf
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :5]
    agree = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(ids, expected, strict=True)])
    assert agree >= (0.999 if kind == "exact" else 0.9)
    if kind == "hnsw":  # tuned at export for recall@10 >= 0.95; the server searches with that effort
        assert art.manifest["index_recall@10"] >= 0.95
        assert art.index.search_params == art.manifest["index_params"]
    assert art.popularity.shape == (len(art.items),) and art.popularity.sum() > 0


def test_models_without_embeddings_have_no_index(runs, tmp_path):
    _, ease_run = runs
    registry = tmp_path / "registry"
    publish(ease_run, registry)
    assert load_version(registry).index is None
    with pytest.raises(LiverecError, match="no item embeddings"):
        publish(ease_run, registry, index="hnsw")


def test_publish_files_checks_shapes(runs, tmp_path):
    import scipy.sparse as sp

    from liverec.registry import publish_files

    with pytest.raises(LiverecError, match="do not match"):
        publish_files(runs[0], tmp_path / "registry", sp.csr_matrix((3, 3)), np.ones(3, np.float32))


def test_bad_inputs_are_clear(runs, tmp_path):
    with pytest.raises(DataNotFoundError, match="no published version"):
        load_version(tmp_path / "empty")
    with pytest.raises(DataNotFoundError, match="not a liverec run directory"):
        publish(tmp_path, tmp_path / "registry")
    with pytest.raises(LiverecError, match="--index"):
        publish(runs[0], tmp_path / "registry", index="annoy")
    publish(runs[0], tmp_path / "registry")
    with pytest.raises(DataNotFoundError, match="version 7 not found"):
        load_version(tmp_path / "registry", 7)
    assert not list((tmp_path / "registry" / "versions").glob(".*"))  # failures leave no partials


def test_prune_keeps_the_newest_versions_and_clears_stale_partials(runs, tmp_path):
    import os

    from liverec.registry import prune

    registry = tmp_path / "registry"
    for _ in range(3):
        publish(runs[0], registry)
    stale = registry / "versions" / ".123-456.partial"
    stale.mkdir()
    os.utime(stale, (0, 0))
    fresh = registry / "versions" / ".123-789.partial"
    fresh.mkdir()  # may belong to a publisher that is still writing
    assert prune(registry, keep=2) == [1]
    assert sorted(p.name for p in (registry / "versions").iterdir()) == [".123-789.partial", "2", "3"]
    assert load_version(registry).version == 3
