"""Versioned model artifacts: publish a run into a registry, find the latest, load it without pickle.

    REGISTRY/versions/N/   config.json  model.safetensors  users.json  items.json  metrics.json
                           seen.safetensors (every known interaction, CSR)  manifest.json
                           titles.json (when the data has titles)  index.faiss (ANN kinds only)
    REGISTRY/latest        the newest complete version number, replaced last

A version is written into a hidden `.N.partial` folder and renamed into place; `latest` is then
replaced atomically, so a reader following `latest` never sees a half-written version.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from liverec.data.vocab import IdVocab
from liverec.errors import DataNotFoundError, LiverecError
from liverec.index import INDEX_KINDS, Index, build_index
from liverec.models.base import Recommender

_RUN_FILES = ("config.json", "model.safetensors", "users.json", "items.json", "metrics.json")


@dataclass
class Artifact:
    """A loaded registry version: everything the server needs to answer requests."""

    version: int
    model: Recommender
    users: IdVocab
    items: IdVocab
    seen: sp.csr_matrix  # (U, I) every interaction known at export (excluded by default)
    popularity: np.ndarray  # (I,) interaction counts: the fallback ranking for unknown users
    manifest: dict
    titles: dict = field(default_factory=dict)  # raw item id (as str) -> title
    index: Index | None = None  # over item embeddings; None: score the catalogue with the model
    user_vectors: np.ndarray | None = None  # (U, D) queries for `index`
    item_vectors: np.ndarray | None = None  # (I, D) the indexed vectors (similar-item queries)

    def seen_items(self, user: int) -> np.ndarray:
        """Item indices `user` interacted with (a view into `seen`, no copy)."""
        return self.seen.indices[self.seen.indptr[user] : self.seen.indptr[user + 1]]


def latest_version(registry: str | Path) -> int | None:
    """The number in REGISTRY/latest, or None when nothing was published yet."""
    path = Path(registry) / "latest"
    if not path.is_file():
        return None
    text = path.read_text().strip()
    if not text.isdigit():
        raise LiverecError(f"{path} should hold a version number, found {text[:40]!r}")
    return int(text)


def _next_slot(versions: Path) -> int:
    taken = [int(p.name) for p in versions.iterdir() if p.name.isdigit()] if versions.is_dir() else []
    return max(taken, default=0) + 1


TUNE_QUERIES = 1000  # user vectors an ANN index is tuned on at export


def publish(
    run_dir: str | Path, registry: str | Path, index: str = "exact", target_recall: float = 0.95
) -> int:
    """Export the run directory `run_dir` as the next version of `registry`; returns its number.

    The run's data set is read again for what serving needs besides the weights: every known
    interaction (excluded from recommendations by default), training popularity and item titles.
    """
    from liverec.data.interactions import Interactions
    from liverec.experiment import check_same_vocab, load_dataset, load_run_config

    if index not in INDEX_KINDS:  # fail before reading the data set
        raise LiverecError(f"--index must be one of {list(INDEX_KINDS)}, got {index!r}")
    cfg, users, items = load_run_config(run_dir)  # the weights are loaded once, by publish_files
    ds = load_dataset(cfg)
    check_same_vocab(ds, users, items)
    seen = Interactions.concat([p for p in (ds.train, ds.valid, ds.test) if p is not None and len(p)]).csr()
    popularity = np.asarray((ds.train.csr() > 0).sum(axis=0)).ravel().astype(np.float32)
    titles = {str(raw): ds.item_titles[raw] for raw in ds.items.raw.tolist() if raw in ds.item_titles}
    return publish_files(run_dir, registry, seen, popularity, titles, index=index,
                         target_recall=target_recall)


def publish_files(
    run_dir: str | Path, registry: str | Path, seen: sp.spmatrix, popularity: np.ndarray,
    titles: dict[str, str] | None = None, index: str = "exact", target_recall: float = 0.95,
    index_options: dict | None = None,
) -> int:
    """Publish a run directory with explicit serving data: `seen` (U, I) interactions to exclude,
    `popularity` (I,) fallback scores, optional titles. Atomic; returns the version number.

    An ANN index (`index_options` go to its constructor, e.g. hnsw_m, ef_construction) gets the
    smallest search effort whose recall@10 against exact search, on up to 1,000 of the model's user
    vectors, reaches `target_recall`; the manifest records that effort and the recall measured."""
    from liverec.experiment import load_run

    if index not in INDEX_KINDS:
        raise LiverecError(f"--index must be one of {list(INDEX_KINDS)}, got {index!r}")
    run_dir, registry = Path(run_dir), Path(registry)
    cfg, model, users, items = load_run(run_dir)
    seen = sp.csr_matrix(seen, dtype=np.float32, copy=True)
    seen.sum_duplicates()
    if seen.shape != (len(users), len(items)) or popularity.shape != (len(items),):
        raise LiverecError(
            f"seen {seen.shape} / popularity {popularity.shape} do not match the run's "
            f"{len(users)} users x {len(items)} items"
        )
    item_vectors = model.item_embeddings()
    if index != "exact" and item_vectors is None:
        raise LiverecError(
            f"{cfg.model} has no item embeddings for an ANN index; export with --index exact"
        )
    partial = new_partial(registry)
    try:
        for name in _RUN_FILES:
            shutil.copy2(run_dir / name, partial / name)
        from safetensors.torch import save_file

        save_file(
            {
                "indptr": torch.from_numpy(seen.indptr.astype(np.int64)),
                "indices": torch.from_numpy(seen.indices.astype(np.int64)),
                "popularity": torch.from_numpy(np.ascontiguousarray(popularity, dtype=np.float32)),
            },
            str(partial / "seen.safetensors"),
        )
        if titles:
            (partial / "titles.json").write_text(json.dumps(titles))
        manifest = {
            "model": cfg.model, "data": cfg.data, "index": index,
            "run": str(run_dir.resolve()), "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "users": len(users), "items": len(items),
        }
        if index != "exact":
            manifest.update(_write_ann_index(partial, index, model, item_vectors, target_recall,
                                             index_options or {}))
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return commit_partial(registry, partial, manifest)


def _write_ann_index(
    folder: Path, kind: str, model: Recommender, item_vectors: torch.Tensor, target_recall: float,
    options: dict,
) -> dict:
    """Build, tune and write `folder/index.faiss`; the manifest entries describing it."""
    import faiss

    vectors = item_vectors.float().cpu().numpy()
    start = time.perf_counter()
    built = build_index(kind, vectors, **options)
    build_seconds = time.perf_counter() - start
    user_vectors = model.user_embeddings()
    entries: dict = {"index_build_seconds": round(build_seconds, 1)}
    if user_vectors is not None:
        users = user_vectors.float().cpu().numpy()
        # a fixed sample: the same export tunes the same way
        sample = np.random.default_rng(0).choice(len(users), min(TUNE_QUERIES, len(users)), replace=False)
        recall = built.tune(vectors, users[np.sort(sample)], k=10, target_recall=target_recall)
        entries.update({"index_recall@10": round(recall, 4), "index_tuned_on": int(sample.size)})
    entries["index_params"] = built.search_params
    faiss.write_index(built.index, str(folder / "index.faiss"))
    return entries


def new_partial(registry: str | Path) -> Path:
    """A hidden folder inside REGISTRY/versions to write a version into (then `commit_partial`)."""
    versions = Path(registry) / "versions"
    versions.mkdir(parents=True, exist_ok=True)
    partial = versions / f".{os.getpid()}-{time.time_ns()}.partial"
    partial.mkdir()
    return partial


def commit_partial(registry: str | Path, partial: Path, manifest: dict) -> int:
    """Give a fully written `partial` folder the next version number (one rename, so readers see
    all of it or nothing), then move `latest`. Returns the number; `partial` is gone either way."""
    registry = Path(registry)
    versions = registry / "versions"
    try:
        while True:  # claim the next number; a concurrent publisher makes the rename fail
            number = _next_slot(versions)
            manifest["version"] = number
            (partial / "manifest.json").write_text(json.dumps(manifest, indent=2))
            try:
                os.rename(partial, versions / str(number))
                break
            except OSError:
                if not (versions / str(number)).exists():
                    raise
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    tmp = registry / f".latest.{os.getpid()}"
    tmp.write_text(f"{number}\n")
    current = latest_version(registry)
    if current is None or number > current:
        os.replace(tmp, registry / "latest")
    else:
        tmp.unlink()
    return number


STALE_PARTIAL_SECONDS = 300.0  # a partial folder this old was left by a killed publisher


def prune(registry: str | Path, keep: int) -> list[int]:
    """Delete all but the newest `keep` versions (a server still loading one retries the newest),
    and partial folders that a killed publisher left behind."""
    versions = Path(registry) / "versions"
    for partial in versions.glob(".*.partial"):
        with contextlib.suppress(OSError):  # another publisher may finish or remove it meanwhile
            if time.time() - partial.stat().st_mtime > STALE_PARTIAL_SECONDS:
                shutil.rmtree(partial)
    numbers = sorted(int(p.name) for p in versions.iterdir() if p.name.isdigit())
    doomed = numbers[:-keep] if keep > 0 else []
    for number in doomed:
        shutil.rmtree(versions / str(number), ignore_errors=True)
    return doomed


def load_version(registry: str | Path, version: int | None = None, device: str = "cpu") -> Artifact:
    """Load `version` (default: latest) of `registry`: safetensors and JSON only, never pickle."""
    from safetensors.torch import load_file

    from liverec.experiment import load_run

    registry = Path(registry)
    number = latest_version(registry) if version is None else version
    if number is None:
        raise DataNotFoundError(f"{registry} has no published version; run `liverec export RUN --to {registry}`")
    folder = registry / "versions" / str(number)
    if not (folder / "manifest.json").is_file():
        raise DataNotFoundError(f"version {number} not found in {registry}")
    manifest = json.loads((folder / "manifest.json").read_text())
    _, model, users, items = load_run(folder, device=device)
    seen_state = load_file(str(folder / "seen.safetensors"))
    seen = sp.csr_matrix(
        (np.ones(seen_state["indices"].numel(), dtype=np.float32), seen_state["indices"].numpy(),
         seen_state["indptr"].numpy()),
        shape=(len(users), len(items)),
    )
    titles = json.loads((folder / "titles.json").read_text()) if (folder / "titles.json").is_file() else {}
    item_vectors, user_vectors, index = model.item_embeddings(), model.user_embeddings(), None
    if item_vectors is not None and user_vectors is not None:
        item_vectors = item_vectors.float().cpu().numpy()
        user_vectors = user_vectors.float().cpu().numpy()
        if manifest.get("index", "exact") == "exact":
            index = build_index("exact", item_vectors)
        else:
            from liverec.index.faiss_index import FaissIndex

            index = FaissIndex.from_file(folder / "index.faiss", kind=manifest["index"],
                                         **manifest.get("index_params", {}))
    else:
        item_vectors = user_vectors = None
    return Artifact(
        version=number, model=model, users=users, items=items, seen=seen,
        popularity=seen_state["popularity"].numpy(), manifest=manifest, titles=titles,
        index=index, user_vectors=user_vectors, item_vectors=item_vectors,
    )
