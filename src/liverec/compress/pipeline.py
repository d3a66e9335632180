"""`compress_run`: a trained run directory in, a compressed run directory out (what the CLI calls).

Methods chain (e.g. `merge-rare,int4`) and always run in a fixed order, the one in which they
compose: rows are merged before tables are quantised, Linear layers pruned before they turn int8.
The output is evaluated with the run's own protocol, so its metrics sit next to the original's.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from liverec.compress import artifact, prune, quantize
from liverec.errors import LiverecError

# canonical order; "distill" trains a new model and stands alone
METHODS = (
    "merge-rare", "prune-magnitude", "prune-structured", "int8", "int4", "linear-int8",
    "fp16", "bf16", "distill",
)
_CASTS = {"fp16": "float16", "bf16": "bfloat16"}


@dataclass
class CompressOptions:
    """Options of the compression methods (CLI: --set name=value); each names its method."""

    amount: float = 0.5  # prune-*: fraction of weights (magnitude) or output neurons (structured)
    min_count: int = 5  # merge-rare: ids seen fewer times in training share one fallback row
    dim: int = 16  # distill: the student's embedding_dim (MF; sequence teachers: their own model)
    kd_weight: float = 1.0  # distill: weight of the distillation term next to the ground-truth loss
    temperature: float = 1.0  # distill: softmax temperature applied to teacher and student scores
    top_k: int = 50  # distill: the teacher's top items per user, part of every soft-label set
    random_items: int = 50  # distill: uniform random items added to each soft-label set
    kd_users: int = 256  # distill: users drawn per step for the distillation term
    kd_positions: int = 1024  # distill, sequence teachers: target positions per batch given the
    # teacher's whole next-item distribution
    epochs: int = 0  # distill: training epochs of the student; 0 = the teacher's
    lr: float = 0.0  # distill: student learning rate; 0 = the teacher's

    def __post_init__(self) -> None:
        if min(self.min_count, self.dim, self.top_k, self.kd_users, self.kd_positions) < 1 or self.random_items < 0:
            raise LiverecError("min_count, dim, top_k, kd_users and kd_positions must be >= 1, random_items >= 0")
        if self.temperature <= 0 or self.kd_weight < 0 or self.epochs < 0 or self.lr < 0:
            raise LiverecError("temperature must be > 0; kd_weight, epochs and lr >= 0")


def parse_methods(text: str) -> list[str]:
    """'merge-rare,int8' -> the methods in the order they are applied, or a clear error."""
    methods = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if not methods or unknown:
        raise LiverecError(f"unknown --method {unknown or text!r}; choose from {list(METHODS)}")
    if len(set(methods)) != len(methods):
        raise LiverecError(f"--method lists a method twice: {text!r}")
    if len(methods) > 1 and any(m in ("distill", "fp16", "bf16") for m in methods):
        raise LiverecError("distill, fp16 and bf16 cannot be combined with other methods")
    if {"int8", "int4"} <= set(methods) or {"prune-magnitude", "prune-structured"} <= set(methods):
        raise LiverecError("choose one of int8 / int4 and one of prune-magnitude / prune-structured")
    return sorted(methods, key=METHODS.index)


def _step(model, method: str, options: CompressOptions, counts) -> dict[str, Any]:
    """Apply one method to `model` in place; returns the step as recorded in the artifact."""
    if method == "merge-rare":
        plans = {name: prune.rare_rows_plan(c, options.min_count) for name, c in counts().items()}
        if not plans:
            raise LiverecError("the model has no user or item embedding table to merge rows of")
        prune.merge_rare_rows(model, {name: plan.tolist() for name, plan in plans.items()})
        return {"op": "merge_rare", "kept": {name: int(plan.max()) for name, plan in plans.items()}}
    if method.startswith("prune-"):
        step = {"op": "prune_linear", "kind": method.removeprefix("prune-"), "amount": options.amount}
        artifact.apply_step(model, step, like=False)
        return {**step, "zero_fraction": round(prune.zero_fraction(model), 4)}  # for the report
    if method in ("int8", "int4"):
        bits = 8 if method == "int8" else 4
        step = {"op": "quantize_embeddings", "bits": bits, "scheme": quantize.DEFAULT_SCHEME[bits]}
    elif method == "linear-int8":
        step = {"op": "dynamic_int8"}
    else:
        step = {"op": "cast", "dtype": _CASTS[method]}
    artifact.apply_step(model, step, like=False)
    return step


def compress_run(
    run_dir: str | Path, out: str | Path, methods: list[str], options: CompressOptions | None = None,
    console=None,
) -> dict:
    """Compress the trained run `run_dir` into the run directory `out`; returns its metrics."""
    from liverec.evaluate import evaluate
    from liverec.experiment import check_same_vocab, load_dataset, load_run, replacing_dir

    options = options or CompressOptions()
    run_dir, out = Path(run_dir), Path(out)
    if methods == ["distill"]:
        from liverec.compress.distill import distill_run

        return distill_run(run_dir, out, options, console=console)
    if artifact.steps_in(run_dir / "model.safetensors"):
        raise LiverecError(f"{run_dir} is already compressed; compress the original run instead")
    if out.resolve() == run_dir.resolve():
        raise LiverecError("--out must differ from the run directory being compressed")
    cfg, model, users, items = load_run(run_dir, device="cpu")
    ds = load_dataset(cfg)
    check_same_vocab(ds, users, items)

    def counts() -> dict[str, np.ndarray]:
        train = ds.train.csr()
        user_counts = np.diff(train.indptr)
        item_counts = np.bincount(train.indices, minlength=len(items))
        return prune.row_counts(model, user_counts, item_counts)

    steps = [_step(model, method, options, counts) for method in methods]
    model.eval()
    test = {k: v for k, v in evaluate(model, ds, "test", cfg.eval, device="cpu").items() if k != "users"}
    reference = json.loads((run_dir / "metrics.json").read_text())
    with replacing_dir(out) as partial:
        artifact.save_model(model, steps, partial / "model.safetensors")
        for name in ("config.json", "users.json", "items.json"):
            shutil.copy2(run_dir / name, partial / name)
        metrics = {
            "model": cfg.model, "data": cfg.data, "valid": {}, "test": test,
            "compression": {
                "methods": methods, "steps": steps,
                "options": asdict(options), "source": str(run_dir.resolve()),
                "bytes": (partial / "model.safetensors").stat().st_size,
                "source_bytes": (run_dir / "model.safetensors").stat().st_size,
                "source_test": reference.get("test", {}),
                "linear_zero_fraction": next(
                    (s["zero_fraction"] for s in steps if s["op"] == "prune_linear"), None
                ),
            },
        }
        (partial / "metrics.json").write_text(json.dumps(metrics, indent=2))
        (partial / "history.jsonl").write_text("")
    return metrics


def model_bytes(model) -> int:
    """Bytes of every tensor a model would save (compressed modules included)."""
    return sum(t.numel() * t.element_size() for t in artifact.state_of(model).values())


__all__ = ["METHODS", "CompressOptions", "compress_run", "model_bytes", "parse_methods"]
