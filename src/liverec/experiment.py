"""An experiment from plain objects: data config, model, trainer, evaluator; and run directories.

A run directory holds everything needed to evaluate, recommend or serve again without pickle:
`config.json`, `model.safetensors`, `users.json`, `items.json`, `metrics.json`, `history.jsonl`.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from liverec.data.dataset import Dataset
from liverec.data.interactions import Interactions
from liverec.data.vocab import IdVocab
from liverec.errors import DataNotFoundError, LiverecError
from liverec.evaluate import EvalConfig, evaluate
from liverec.models import MODELS, build_model
from liverec.models.base import Recommender, make_config
from liverec.train.distributed import DistContext
from liverec.train.pairwise import PairBatches, make_sampler, pair_loss
from liverec.train.sequence import make_sequence_batches, sequence_loss
from liverec.train.trainer import TrainConfig, Trainer, resolve_device


def _data_config():
    from liverec.data.split import DataConfig

    return DataConfig()


@dataclass
class RunConfig:
    """Everything that defines a run; recipes (TOML) and --set map onto these fields."""

    model: str  # a key of liverec.models.MODELS
    data: str  # data set name under LIVEREC_DATA, or a path to a folder/file
    seed: int = 0  # seeds data splitting, initialisation, sampling and shuffling
    params: dict[str, Any] = field(default_factory=dict)  # the model's config fields
    dataset: Any = field(default_factory=_data_config)  # liverec.data.split.DataConfig
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_json(self) -> dict:
        return {
            "model": self.model, "data": self.data, "seed": self.seed, "params": self.params,
            "dataset": asdict(self.dataset), "train": asdict(self.train), "eval": asdict(self.eval),
        }

    @classmethod
    def from_json(cls, obj: dict) -> RunConfig:
        from liverec.data.split import DataConfig

        ev = dict(obj.get("eval", {}))
        if "ks" in ev:
            ev["ks"] = tuple(ev["ks"])
        return cls(
            model=obj["model"], data=obj["data"], seed=obj.get("seed", 0),
            params=obj.get("params", {}),
            dataset=make_config(DataConfig, obj.get("dataset", {})),
            train=make_config(TrainConfig, obj.get("train", {})),
            eval=make_config(EvalConfig, ev),
        )


def load_dataset(cfg: RunConfig) -> Dataset:
    """Read the events named by `cfg.data` and apply the configured filters and split."""
    from liverec.data.sources import load_events
    from liverec.data.split import make_dataset

    dataset_cfg = cfg.dataset
    if dataset_cfg.seed != cfg.seed:
        dataset_cfg = type(dataset_cfg)(**{**asdict(dataset_cfg), "seed": cfg.seed})
    return make_dataset(load_events(cfg.data, dataset_cfg.columns), dataset_cfg)


def fit_model(
    cfg: RunConfig, ds: Dataset, history_path: Path | None = None, console=None,
    checkpoint_dir: Path | None = None, dist: DistContext | None = None,
):
    """Build and fit the model of `cfg` on `ds.train`; returns (model, best_epoch, history).

    With a distributed `dist` this process trains on its shard (see liverec.train.distributed) and
    only rank 0 validates; `checkpoint_dir` makes the training resumable (TrainConfig.checkpoint_every).
    """
    if cfg.model not in MODELS:
        raise LiverecError(f"unknown model {cfg.model!r}; available: {', '.join(MODELS)}")
    if dist is None:
        dist = DistContext(device=resolve_device(cfg.train.device))
    device = dist.device
    torch.manual_seed(cfg.seed)  # the entry point owns the seed; models initialise from it
    model = build_model(cfg.model, cfg.params, ds.num_users, ds.num_items).to(device)
    train_csr = ds.train.csr()
    if not model.trainable:
        gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
        model.fit(train_csr, generator=gen)
        return model, 0, []
    if cfg.train.init_from:
        warm_start(model, Path(cfg.train.init_from))
    if hasattr(model, "prepare"):
        model.prepare()
    if hasattr(model, "set_graph"):  # graph models propagate over the training interactions
        model.set_graph(train_csr)  # every rank holds the whole graph (propagation needs it)
    trainer = Trainer(cfg.train, history_path, console, checkpoint_dir, dist)
    if model.sequential:  # next-item prediction over each user's time-ordered training items
        rng = np.random.default_rng(cfg.seed)
        sequence_batches = make_sequence_batches(
            model, ds.train, train_csr, cfg.train, rng, device, shard=dist.shard
        )

        def step(m, b):
            return sequence_loss(m, b, cfg.train)

        def batches(epoch):
            return sequence_batches.for_epoch(cfg.seed, epoch)
    else:
        sampler = make_sampler(cfg.train, train_csr, model)
        pair_batches = PairBatches(
            ds.train, sampler, cfg.train.num_negatives, cfg.train.batch_size, None, device,
            shared=cfg.train.shared_negatives, shard=dist.shard, pair_sampling=cfg.train.pair_sampling,
        )

        def step(m, b):
            return pair_loss(m, b, cfg.train)

        def batches(epoch):
            return pair_batches.for_epoch(cfg.seed, epoch)
    valid_eval = None
    if dist.is_main and ds.valid is not None and len(ds.valid) > 0:
        def valid_eval(m):
            return {k: v for k, v in evaluate(m, ds, "valid", cfg.eval, device=device).items()
                    if k != "users"}
    result = trainer.fit(model, step, batches, valid_eval)
    return model, result.best_epoch, result.history


def warm_start(model: Recommender, run_dir: Path) -> None:
    """Load the weights of a run directory into `model` (the same model options and data)."""
    from safetensors.torch import load_file

    path = run_dir / "model.safetensors"
    if not path.is_file():
        raise DataNotFoundError(f"train.init_from: {run_dir} is not a run directory (no model.safetensors)")
    try:
        model.load_state_dict(load_file(str(path), device=str(next(model.parameters()).device)))
    except RuntimeError as e:
        first = str(e).strip().splitlines()[-1].strip()
        raise LiverecError(
            f"train.init_from: the weights in {run_dir} do not fit this model and data ({first})"
        ) from None


def train_run(cfg: RunConfig, out: Path, console=None, dist: DistContext | None = None) -> dict | None:
    """Train, evaluate on valid and test, and write the run directory `out` atomically.

    The run is built in `.NAME.partial` beside `out`; when a previous attempt of the same config
    left a checkpoint there (a killed worker, an interrupted command), training resumes from it.
    Distributed: rank 0 evaluates and writes; the other ranks return None after a final barrier.
    """
    if dist is None:
        dist = DistContext(device=resolve_device(cfg.train.device))
    if dist.distributed and not MODELS[cfg.model].trainable:
        # closed-form fits run on rank 0 alone; the CLI has said so (no collective is used)
        dist = DistContext(device=dist.device) if dist.is_main else None
        if dist is None:
            return None
    partial = out.parent / f".{out.name}.partial"
    if dist.is_main:
        _prepare_partial(partial, cfg)
    try:
        ds = load_shared_dataset(cfg, out, dist)
        t0 = time.perf_counter()
        model, best_epoch, _ = fit_model(
            cfg, ds, partial / "history.jsonl" if dist.is_main else None, console,
            partial / "checkpoint" if dist.is_main else None, dist,
        )
        train_seconds = time.perf_counter() - t0
        if dist.is_main:
            metrics = _evaluate_and_save(cfg, ds, model, partial, train_seconds, best_epoch, dist)
            if out.exists():
                shutil.rmtree(out)
            os.replace(partial, out)
    except BaseException:
        if dist.is_main and not (partial / "checkpoint").is_dir():
            shutil.rmtree(partial, ignore_errors=True)  # nothing to resume from: leave no debris
        raise
    dist.barrier()  # the other ranks wait for rank 0's evaluation and save
    if dist.distributed and dist.local_rank == 0:
        shutil.rmtree(shared_arrays_dir(out, dist), ignore_errors=True)
    return metrics if dist.is_main else None


def _evaluate_and_save(cfg, ds, model, partial, train_seconds, best_epoch, dist) -> dict:
    device = next(iter(model.state_dict().values())).device
    t0 = time.perf_counter()
    valid = (
        evaluate(model, ds, "valid", cfg.eval, device=device)
        if ds.valid is not None and len(ds.valid) else {}
    )
    test = evaluate(model, ds, "test", cfg.eval, device=device)
    model.set_history(ds.revealed("all"))  # sequence models: saved and served with every user's latest items
    metrics = {
        "model": cfg.model, "data": cfg.data, "valid": valid, "test": test,
        "train_seconds": round(train_seconds, 2),
        "eval_seconds": round(time.perf_counter() - t0, 2),
        "best_epoch": best_epoch, "dataset": ds.summary(), "device": str(device),
        "processes": dist.world_size,
    }
    save_run(partial, cfg, model, ds, metrics)
    shutil.rmtree(partial / "checkpoint", ignore_errors=True)  # the run is complete
    return metrics


def _resume_key(cfg: RunConfig) -> dict:
    """The config fields that must match for a checkpoint to be resumed (not progress bars, device)."""
    obj = cfg.to_json()
    obj["train"] = {k: v for k, v in obj["train"].items() if k not in ("progress", "device")}
    return obj


def _prepare_partial(partial: Path, cfg: RunConfig) -> None:
    """Keep a partial folder whose checkpoint comes from the same config; otherwise start clean."""
    config = partial / "resume-config.json"
    same = (
        (partial / "checkpoint").is_dir() and config.is_file()
        and json.loads(config.read_text()) == json.loads(json.dumps(_resume_key(cfg)))
    )
    if partial.exists() and not same:
        shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    config.write_text(json.dumps(_resume_key(cfg)))


def shared_arrays_dir(out: Path, dist: DistContext) -> Path:
    """Where a node's first rank leaves the training arrays for the node's other ranks."""
    return out.parent / f".{out.name}.node{dist.node_rank}.arrays"


_TRAIN_ARRAYS = ("user", "item", "timestamp", "weight")


def load_shared_dataset(cfg: RunConfig, out: Path, dist: DistContext) -> Dataset:
    """The data set, read once per node: the first rank of each node reads and splits it and saves
    the training arrays as .npy; every rank of the node (that one included) memory-maps them, so
    the OS keeps one copy in its page cache for all of them. Only rank 0 keeps valid/test and the
    id vocabularies (it evaluates); the others get index vocabularies and an empty test part.
    """
    if not dist.distributed:
        return load_dataset(cfg)
    folder = shared_arrays_dir(out, dist)
    ds = None
    if dist.local_rank == 0:
        ds = load_dataset(cfg)
        if folder.exists():
            shutil.rmtree(folder)  # left by a killed attempt
        folder.mkdir(parents=True)
        meta = {"num_users": ds.num_users, "num_items": ds.num_items, "name": ds.name, "arrays": []}
        for name in _TRAIN_ARRAYS:
            if getattr(ds.train, name) is not None:
                np.save(folder / f"{name}.npy", getattr(ds.train, name))
                meta["arrays"].append(name)
        (folder / "meta.json").write_text(json.dumps(meta))
    dist.barrier()
    meta = json.loads((folder / "meta.json").read_text())
    arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in meta["arrays"]}
    train = Interactions(
        arrays["user"], arrays["item"], meta["num_users"], meta["num_items"],
        arrays.get("timestamp"), arrays.get("weight"),
    )
    if ds is not None:
        ds.train = train  # drop the private copy: this rank reads the shared pages too
        return ds
    none = np.zeros(0, dtype=np.int64)
    return Dataset(
        name=meta["name"], users=IdVocab(np.arange(meta["num_users"])),
        items=IdVocab(np.arange(meta["num_items"])), train=train, valid=None,
        test=Interactions(none, none, meta["num_users"], meta["num_items"]),
    )


@contextmanager
def replacing_dir(out: Path) -> Iterator[Path]:
    """Yield an empty `.NAME.partial` folder beside `out`; when the block succeeds it replaces `out`
    in one rename, when it fails it is removed, so `out` is never left half-written."""
    partial = out.parent / f".{out.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    os.replace(partial, out)


def save_run(path: Path, cfg: RunConfig, model: Recommender, ds: Dataset, metrics: dict) -> None:
    """Weights as safetensors (never pickle), config and vocabularies as JSON."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps(cfg.to_json(), indent=2))
    ds.users.save(path / "users.json")
    ds.items.save(path / "items.json")
    (path / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if not (path / "history.jsonl").exists():
        (path / "history.jsonl").write_text("")


def load_run_config(path: str | Path) -> tuple[RunConfig, IdVocab, IdVocab]:
    """A run directory's config and vocabularies, without loading the weights."""
    path = Path(path)
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        raise DataNotFoundError(f"{path} is not a liverec run directory (no config.json/model.safetensors)")
    cfg = RunConfig.from_json(json.loads((path / "config.json").read_text()))
    return cfg, IdVocab.load(path / "users.json"), IdVocab.load(path / "items.json")


def load_run(path: str | Path, device: str = "cpu") -> tuple[RunConfig, Recommender, IdVocab, IdVocab]:
    """Read a run directory back: its config, the model with weights, and the vocabularies.

    A compressed run (liverec.compress) is rebuilt from the steps recorded in its weights file.
    """
    from liverec.compress.artifact import load_into

    path = Path(path)
    cfg, users, items = load_run_config(path)
    model = build_model(cfg.model, cfg.params, len(users), len(items))
    load_into(model, path / "model.safetensors")
    return cfg, model.to(resolve_device(device)).eval(), users, items


def check_same_vocab(ds: Dataset, users: IdVocab, items: IdVocab) -> None:
    """A run evaluated on re-loaded data must see the very same id space."""
    same = (len(ds.users) == len(users) and len(ds.items) == len(items)
            and np.array_equal(ds.users.raw, users.raw) and np.array_equal(ds.items.raw, items.raw))
    if not same:
        raise LiverecError(
            "the data's users/items differ from the ones the model was trained on; "
            "evaluate with the same --data and dataset options as training"
        )
