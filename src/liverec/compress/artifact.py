"""Compressed models on disk: the list of steps travels in the safetensors header.

A compressed run directory looks like any run (config.json, model.safetensors, users/items.json,
metrics.json), so `publish`, `load_run` and `liverec serve` need nothing new. The steps applied
(e.g. merge rare rows, then 8-bit embeddings) are written as JSON into the safetensors metadata;
loading builds the model from config.json, replays each step on the untrained skeleton to get the
compressed shapes, then loads the tensors. Safetensors only: nothing is unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from liverec.compress import modules, prune
from liverec.errors import LiverecError

METADATA_KEY = "liverec.compress"
_CAST = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def apply_step(model: nn.Module, step: dict[str, Any], like: bool) -> None:
    """Apply one compression step; `like=True` only reshapes an untrained skeleton for loading."""
    op = step["op"]
    if op == "quantize_embeddings":
        # steps written before symmetric int8 carry no scheme: they are affine at 8 bits too
        modules.quantize_embeddings(model, step["bits"], like=like, scheme=step.get("scheme", "affine"))
    elif op == "dynamic_int8":
        modules.dynamic_int8_linear(model)
    elif op == "merge_rare":
        prune.merge_rare_rows(model, step["kept"], like=like)
    elif op == "cast":
        if not like:  # at load time the float32 model simply copies the narrower values in
            modules.cast_floats(model, _CAST[step["dtype"]])
    elif op == "prune_linear":
        if not like:  # pruning is made permanent: the layers keep their shapes, with zeros
            prune.prune_linear(model, step["kind"], step["amount"])
    else:
        raise LiverecError(f"unknown compression step {op!r}; is this artifact from a newer liverec?")


def _is_dynamic_key(key: str, dynamic: set[str]) -> bool:
    return key.rpartition(".")[0].removesuffix("._packed_params") in dynamic


def _dynamic_names(model: nn.Module) -> set[str]:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    return {name for name, _ in modules.named_of_type(model, DynamicLinear)}


def state_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every tensor of a (possibly compressed) model as plain, contiguous CPU tensors."""
    dynamic = _dynamic_names(model)
    state = {
        k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()
        if not _is_dynamic_key(k, dynamic)
    }
    state.update(modules.dynamic_linear_state(model))
    return state


def save_model(model: nn.Module, steps: list[dict[str, Any]], path: str | Path) -> None:
    """Write `model` and the steps that produced it to one safetensors file."""
    from safetensors.torch import save_file

    save_file(state_of(model), str(path), metadata={METADATA_KEY: json.dumps(steps)})


def steps_in(path: str | Path) -> list[dict[str, Any]]:
    """The compression steps recorded in a model.safetensors header ([] for a plain model)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    return json.loads(meta[METADATA_KEY]) if METADATA_KEY in meta else []


def load_into(model: nn.Module, path: str | Path) -> nn.Module:
    """Load `path` into a freshly built `model`, replaying its compression steps first."""
    from safetensors.torch import load_file

    state = load_file(str(path))
    for step in steps_in(path):
        apply_step(model, step, like=True)
    modules.load_dynamic_linear_state(model, state)  # pops its tensors from `state`
    # the int8 layers are set; park them while the rest loads strictly (their own loader wants
    # torch's pickled packed params, which this format never stores)
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    parked = list(modules.named_of_type(model, DynamicLinear))
    for name, _ in parked:
        modules.replace_module(model, name, nn.Identity())
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise LiverecError(f"{path} does not fit its config.json ({str(e)[:300]})") from None
    finally:
        for name, layer in parked:
            modules.replace_module(model, name, layer)
    return model
