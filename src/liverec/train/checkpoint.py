"""Resumable training checkpoints as safetensors + JSON (never pickle).

A checkpoint folder holds `model.safetensors` (the current weights), `best.safetensors` (the best
weights so far, when validation runs), `optimizer.safetensors` + the optimiser's JSON part, and
`state.json` (the last finished epoch, early-stopping counters, history). The negative-sampling and
shuffling streams are functions of (seed, epoch, step) (see `distributed.epoch_generators`), so the
epoch number is all the sampler state there is; the torch RNG (dropout) is saved as a tensor.
A new checkpoint is written beside the old one and swapped in with a rename, so a worker killed
mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


@dataclass
class Checkpoint:
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]  # torch's optimizer.state_dict() format
    best: dict[str, torch.Tensor] | None
    state: dict[str, Any]  # epoch, best_epoch, best_score, best_valid, bad_evals, history
    torch_rng: torch.Tensor | None = None


def _cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}


def split_optimizer_state(sd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimizer state_dict -> (tensors keyed "param_index.name", JSON-able rest)."""
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, Any] = {"param_groups": sd["param_groups"], "state": {}}
    for index, entry in sd["state"].items():
        plain = {}
        for name, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{name}"] = value.detach().contiguous().cpu()
            else:
                plain[name] = value
        meta["state"][str(index)] = plain
    return tensors, meta


def join_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Inverse of `split_optimizer_state`."""
    state: dict[int, dict[str, Any]] = {int(i): dict(plain) for i, plain in meta["state"].items()}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(path: Path, ckpt: Checkpoint) -> None:
    """Write `ckpt` to the folder `path`, replacing the previous one atomically."""
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_file(_cpu(ckpt.model), str(tmp / "model.safetensors"))
    if ckpt.best is not None:
        save_file(_cpu(ckpt.best), str(tmp / "best.safetensors"))
    tensors, meta = split_optimizer_state(ckpt.optimizer)
    if ckpt.torch_rng is not None:
        tensors["torch_rng"] = ckpt.torch_rng
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    (tmp / "optimizer.json").write_text(json.dumps(meta))
    (tmp / "state.json").write_text(json.dumps(ckpt.state))  # last: its presence marks completeness
    old = path.with_name(path.name + ".old")
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(path: Path) -> Checkpoint | None:
    """The checkpoint in folder `path`, or None when there is none (or only a half-written one)."""
    from safetensors.torch import load_file

    if not (path / "state.json").is_file():
        old = path.with_name(path.name + ".old")  # killed between the two renames of a save
        if not (old / "state.json").is_file():
            return None
        path = old
    tensors = load_file(str(path / "optimizer.safetensors"))
    torch_rng = tensors.pop("torch_rng", None)
    best = load_file(str(path / "best.safetensors")) if (path / "best.safetensors").is_file() else None
    return Checkpoint(
        model=load_file(str(path / "model.safetensors")),
        optimizer=join_optimizer_state(tensors, json.loads((path / "optimizer.json").read_text())),
        best=best,
        state=json.loads((path / "state.json").read_text()),
        torch_rng=torch_rng,
    )
