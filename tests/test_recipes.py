"""Every recipe in benchmarks/recipes runs unchanged on another file of its data set's format.

The issues ask that recipes are not fitted to one file: held-out files of the same format will be
run through them. Here each recipe trains for one epoch (the only override) on seeded synthetic
events written as a LightGCN folder (train.txt + test.txt) or a sequence file, and must produce
test metrics; a setting that only fits the published file (a catalogue size, a rank larger than the
data allows) fails here.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from liverec.cli import app
from liverec.data.synthetic import synthetic_events

RECIPES = sorted((Path(__file__).parents[1] / "benchmarks" / "recipes").glob("*.toml"))


@pytest.fixture(scope="module")
def other_files(tmp_path_factory) -> dict[str, Path]:
    """Synthetic events as a LightGCN folder and as a sequence file (ids unlike the real ones)."""
    ev = synthetic_events(num_users=150, num_items=300, events_per_user=20, seed=11)
    order = np.lexsort((ev.timestamp, ev.user))
    users, items = ev.user[order], ev.item[order]
    root = tmp_path_factory.mktemp("other")
    seq_lines, train_lines, test_lines = [], [], []
    for u in np.unique(users):
        seq = items[users == u]
        seq_lines.append(" ".join(str(x) for x in [u + 7, *(seq + 1000)]))
        cut = int(len(seq) * 0.8)  # a per-user later-looking split, as the LightGCN files
        train_lines.append(" ".join(str(x) for x in [u, *seq[:cut]]))
        test_lines.append(" ".join(str(x) for x in [u, *seq[cut:]]))
    (root / "seq.txt").write_text("\n".join(seq_lines) + "\n")
    folder = root / "graph"
    folder.mkdir()
    (folder / "train.txt").write_text("\n".join(train_lines) + "\n")
    (folder / "test.txt").write_text("\n".join(test_lines) + "\n")
    return {"lightgcn": folder, "sequence": root / "seq.txt"}


def train(recipe: Path, data: Path, out: Path, *overrides: str) -> None:
    args = ["train", "--config", str(recipe), "--data", str(data), "--set", "train.epochs=1"]
    for override in overrides:
        args += ["--set", override]
    res = CliRunner().invoke(app, [*args, "--quiet", "--out", str(out)])
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.stem for r in RECIPES])
def test_recipe_runs_unchanged_on_another_file_of_its_format(recipe: Path, other_files, tmp_path):
    config = tomllib.loads(recipe.read_text())
    path = other_files["lightgcn" if config["data"].startswith("lightgcn") else "sequence"]
    overrides = []
    for part in ("gmf", "mlp"):  # NeuMF starts from GMF and MLP runs of its two recipes
        if f"pretrained_{part}" in config.get("params", {}):
            train(recipe.with_name(f"ml1m-ncf-{part}.toml"), path, tmp_path / part)
            overrides.append(f"model.pretrained_{part}={tmp_path / part}")
    out = tmp_path / "run"
    train(recipe, path, out, *overrides)
    test = json.loads((out / "metrics.json").read_text())["test"]
    scores = {k: v for k, v in test.items() if "@" in k}
    assert test["users"] > 0 and scores and all(0.0 <= v <= 1.0 for v in scores.values())
