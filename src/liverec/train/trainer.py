"""One trainer for every gradient-trained model. It knows nothing about any particular model:
it gets a step function (model, batch) -> loss, a batch source per epoch and an evaluation hook.
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from liverec.errors import LiverecError
from liverec.train.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from liverec.train.distributed import DistContext
from liverec.train.optim import make_optimizer

LOSSES = ("bpr", "bce", "softmax", "gbce", "ce")


@dataclass
class TrainConfig:
    """Optimisation settings shared by all gradient-trained models."""

    epochs: int = 100  # maximum passes over the training data; 0 keeps the initial weights (a
    # pre-trained NeuMF, an init_from warm start) when validation says further training only hurts
    # positive interactions per optimiser step: the global batch, split over the ranks of a
    # distributed run (each takes batch_size / world_size), so lr needs no rescaling with --nproc
    batch_size: int = 2048
    lr: float = 1e-3  # learning rate
    optimizer: str = "adam"  # adam | adamw | sgd
    lr_schedule: str = "constant"  # constant | cosine (per step, from lr down to 0 at the last epoch)
    weight_decay: float = 0.0  # decoupled (adamw) or coupled (adam) decay on all parameters
    l2: float = 0.0  # coefficient of the L2 penalty on the embedding rows a batch touches
    # how the L2 is counted: "triple" = (|p_u|² + |q_pos|² + Σ|q_neg|²) / batch, as BPR/LightGCN code;
    # "pair" = per scored (user, item) pair, averaged over pairs, as per-example SGD (NCF, Rendle et
    # al. 2020): a user's row is counted once per item scored against it
    l2_per: str = "triple"
    loss: str = "bpr"  # bpr | bce | softmax (sampled softmax over the negatives) | gbce | ce (full softmax)
    bucket_batches: int = 1  # sequence models: 1 = plain random batches; N > 1 sorts users by length
    # within windows of N batches (less padding, but each batch then holds users of one length, whose
    # per-position mean loss weights short histories' positions more: ML-1M SASRec validation NDCG@10
    # 0.1641 with random batches against 0.1523 with N = 32 at epoch 38)
    sequence_window: str = "latest"  # sequence models: an epoch's row per user is the latest
    # max_len + 1 training items, or "random": a window ending at a random point of the history
    # pair models: an epoch is a shuffle of every training (user, item) pair ("interactions"), or as
    # many pairs drawn with users uniform and a random positive each ("users", the LightGCN/NGCF
    # reference code's sampling: light users weigh as much as heavy ones, as in per-user Recall)
    pair_sampling: str = "interactions"
    gbce_t: float = 0.75  # loss = gbce: calibration t in [0, 1] (0 = plain BCE; gSASRec used 0.75)
    num_negatives: int = 1  # negatives per positive
    sampler: str = "uniform"  # uniform | popularity | in_batch | hard
    sampler_alpha: float = 0.75  # popularity exponent for sampler = popularity
    hard_pool: int = 64  # candidate pool size for sampler = hard
    shared_negatives: bool = False  # one draw of num_negatives per batch, scored by all its rows
    # (num_negatives >= the number of items: every item, i.e. full softmax with loss = softmax)
    eval_every: int = 1  # evaluate on the validation part every N epochs
    patience: int = 10  # evaluations without improvement before stopping; 0 = never stop early
    monitor: str = "auto"  # validation metric for early stopping and the best checkpoint; auto = NDCG at the largest k
    grad_clip: float = 0.0  # max gradient norm; 0 = off
    # embedding tables get sparse row gradients and SparseAdam (lazy Adam) updates, the rest Adam:
    # per step O(batch rows) instead of O(table), and a smaller all-reduce (see train/optim.py)
    sparse_embeddings: bool = False
    device: str = "auto"  # auto (CUDA when present) | cpu | cuda
    bf16: bool = False  # bf16 autocast of the training steps on GPU (ignored on CPU)
    # epochs between resumable checkpoints (safetensors + JSON) in the run's partial folder; 0 = none
    # (under torchrun --max-restarts > 0 it becomes 1, so a restarted worker resumes)
    checkpoint_every: int = 0
    progress: bool = True  # Rich progress bars
    init_from: str = ""  # run directory whose weights start training (warm start; same model and
    # data); the optimizer state is not saved, so Adam starts afresh; "" = random initialisation

    def validate(self) -> None:
        if self.epochs < 0 or self.batch_size < 1:
            raise LiverecError("train.epochs must be >= 0 and train.batch_size >= 1")
        if self.lr <= 0:
            raise LiverecError("train.lr must be > 0")
        if self.l2_per not in ("triple", "pair"):
            raise LiverecError(f"train.l2_per must be triple or pair, not {self.l2_per!r}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise LiverecError(f"train.lr_schedule must be constant or cosine, not {self.lr_schedule!r}")
        if self.optimizer not in ("adam", "adamw", "sgd"):
            raise LiverecError(f"train.optimizer must be adam, adamw or sgd, not {self.optimizer!r}")
        if self.loss not in LOSSES:
            raise LiverecError(f"train.loss must be one of {', '.join(LOSSES)}, not {self.loss!r}")
        if not 0.0 <= self.gbce_t <= 1.0:
            raise LiverecError(f"train.gbce_t must be in [0, 1], got {self.gbce_t}")
        if self.sampler not in ("uniform", "popularity", "in_batch", "hard"):
            raise LiverecError(
                f"train.sampler must be uniform, popularity, in_batch or hard, not {self.sampler!r}"
            )
        if self.shared_negatives and self.sampler not in ("uniform", "popularity"):
            raise LiverecError("train.shared_negatives works with sampler = uniform or popularity")
        if self.num_negatives < 1:
            raise LiverecError("train.num_negatives must be >= 1")
        if self.sparse_embeddings and (self.optimizer != "adam" or self.weight_decay or self.grad_clip):
            raise LiverecError(
                "train.sparse_embeddings works with optimizer = adam, no weight_decay (use train.l2, "
                "on the rows a batch touches) and no grad_clip"
            )
        if self.pair_sampling not in ("interactions", "users"):
            raise LiverecError(f"train.pair_sampling must be interactions or users, not {self.pair_sampling!r}")
        if self.bucket_batches < 1:
            raise LiverecError("train.bucket_batches must be >= 1 (1 = plain random batches)")
        if self.checkpoint_every < 0:
            raise LiverecError("train.checkpoint_every must be >= 0 (0 = no checkpoints)")
        if self.device not in ("auto", "cpu", "cuda"):
            raise LiverecError(f"--device must be auto, cpu or cuda, not {self.device!r}")


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present; 'cuda' without a GPU is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise LiverecError("--device cuda was asked for but no CUDA GPU is available; use auto or cpu")
    return torch.device(name)


def scheduled_lr(cfg: TrainConfig, epoch: int, step: int, steps_per_epoch: int | None) -> float:
    """Learning rate for `step` (0-based) of `epoch` (1-based); cosine reaches 0 after the last epoch."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    done = (epoch - 1 + (step / steps_per_epoch if steps_per_epoch else 0.0)) / cfg.epochs
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * done))


def resolve_monitor(monitor: str, valid: dict[str, float]) -> str:
    """The metric name to monitor: `auto` is NDCG at the largest k computed."""
    if monitor == "auto":
        ndcg = [name for name in valid if name.startswith("NDCG@")]
        if ndcg:
            return max(ndcg, key=lambda name: int(name.split("@")[1]))
    if monitor not in valid:
        raise LiverecError(f"train.monitor {monitor!r} is not computed; choose one of {sorted(valid)}")
    return monitor


@dataclass
class TrainResult:
    best_epoch: int
    best_valid: dict[str, float]
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class _Progress:
    """Where training stands after an epoch: what a checkpoint saves and a resume restores."""

    epoch: int = 0  # last finished epoch
    best_score: float = -math.inf
    best_epoch: int = 0
    best_valid: dict[str, float] = field(default_factory=dict)
    bad_evals: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] | None = None

    def to_json(self) -> dict[str, Any]:
        score = None if math.isinf(self.best_score) else self.best_score  # JSON has no -inf
        return {"epoch": self.epoch, "best_score": score, "best_epoch": self.best_epoch,
                "best_valid": self.best_valid, "bad_evals": self.bad_evals, "history": self.history}

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint) -> _Progress:
        s = ckpt.state
        score = -math.inf if s["best_score"] is None else s["best_score"]
        return cls(s["epoch"], score, s["best_epoch"], s["best_valid"], s["bad_evals"],
                   s["history"], ckpt.best)


class _StepModule(nn.Module):
    """The model and its loss step as one module. DistributedDataParallel arms its gradient
    all-reduce in `forward`, and models score through methods (`score`), not `forward`."""

    def __init__(self, model: nn.Module, step: Callable[[nn.Module, Any], torch.Tensor]) -> None:
        super().__init__()
        self.model, self.step = model, step

    def forward(self, batch: Any) -> torch.Tensor:
        return self.step(self.model, batch)


class Trainer:
    """Epoch loop with optimizer, progress bars, validation, early stopping and history.

    The best model state (by `cfg.monitor` on validation) is restored at the end; with no
    validation hook the last epoch is kept. With `checkpoint_dir` and `cfg.checkpoint_every`, a
    checkpoint is written every that many epochs and `fit` resumes from one found there. With a
    distributed `dist`, the step runs under DistributedDataParallel and rank 0 alone evaluates,
    writes history and checkpoints (see liverec.train.distributed).
    """

    def __init__(
        self, cfg: TrainConfig, history_path: Path | None = None, console=None,
        checkpoint_dir: Path | None = None, dist: DistContext | None = None,
    ) -> None:
        cfg.validate()
        self.cfg = cfg
        self.history_path = history_path
        self.console = console
        self.checkpoint_dir = checkpoint_dir
        self.dist = dist if dist is not None else DistContext()

    def fit(
        self,
        model: nn.Module,
        step: Callable[[nn.Module, Any], torch.Tensor],
        batches: Callable[[int], Iterable[Any]],
        evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
    ) -> TrainResult:
        """Train `model` in place. `batches(epoch)` yields batches already on the model's device
        (this rank's share of them when distributed)."""
        cfg, ctx = self.cfg, self.dist
        opt = make_optimizer(model, cfg)
        state, start = self._resume(model, opt), time.perf_counter()
        if self.history_path is not None:
            self.history_path.write_text("".join(json.dumps(r) + "\n" for r in state.history))
        train_step: nn.Module = _StepModule(model, step)
        if ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel

            # buffers (LightGCN's propagated embeddings, degrees) are derived on every rank from
            # the same weights and graph: re-sending them before each step would be waste
            no_buffer_sync = (
                {"forward_sync_buffers": False}  # newer torch; broadcast_buffers is deprecated there
                if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
                else {"broadcast_buffers": False}
            )
            train_step = DistributedDataParallel(
                train_step, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
                **no_buffer_sync,
            )
        device = next(model.parameters()).device
        use_bf16 = cfg.bf16 and device.type == "cuda"
        with _progress(cfg.progress and ctx.is_main, self.console) as progress:
            epochs_task = progress.add_task("epochs", total=cfg.epochs, completed=state.epoch) if progress else None
            for epoch in range(state.epoch + 1, cfg.epochs + 1):
                model.train()
                t0, total, count = time.perf_counter(), 0.0, 0
                epoch_batches = batches(epoch)
                n = len(epoch_batches) if isinstance(epoch_batches, Sized) else None
                task = progress.add_task(f"epoch {epoch}", total=n) if progress else None
                for i, batch in enumerate(epoch_batches):
                    if cfg.lr_schedule != "constant":
                        for group in opt.param_groups:
                            group["lr"] = scheduled_lr(cfg, epoch, i, n)
                    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16):
                        loss = train_step(batch)
                    if not torch.isfinite(loss):
                        raise LiverecError(
                            f"training diverged at epoch {epoch} (loss {loss.item()}); lower train.lr"
                        )
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    if cfg.grad_clip > 0:
                        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                    opt.step()
                    total += loss.item()
                    count += 1
                    if progress:
                        progress.advance(task)
                if progress:
                    progress.remove_task(task)
                total, count = ctx.sum([total, count])  # every rank's steps: the global mean loss
                record: dict[str, Any] = {
                    "epoch": epoch,
                    "loss": total / max(count, 1),
                    "epoch_seconds": round(time.perf_counter() - t0, 3),
                }
                stop = False
                if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
                    if evaluate is not None:  # only rank 0 is given the hook
                        stop = self._validate(model, evaluate, epoch, state, record)
                    stop = ctx.decide(stop)  # every rank: the others wait here while rank 0 evaluates
                state.history.append(record)
                state.epoch = epoch
                if self.history_path is not None:
                    with self.history_path.open("a") as f:
                        f.write(json.dumps(record) + "\n")
                if ctx.is_main and self._checkpoint_due(epoch):
                    save_checkpoint(self.checkpoint_dir, Checkpoint(
                        model.state_dict(), opt.state_dict(), state.best_state, state.to_json(),
                        torch.get_rng_state(),
                    ))
                if progress:
                    desc = f"epochs  loss {record['loss']:.4f}"
                    if "valid" in record:
                        monitor = resolve_monitor(cfg.monitor, record["valid"])
                        desc += f"  {monitor} {record['valid'][monitor]:.4f}"
                    progress.update(epochs_task, advance=1, description=desc)
                if stop:
                    break
        if state.best_state is not None:
            model.load_state_dict(state.best_state)
        else:
            state.best_epoch = state.history[-1]["epoch"] if state.history else 0
        return TrainResult(state.best_epoch, state.best_valid, state.history, time.perf_counter() - start)

    def _validate(self, model, evaluate, epoch: int, state: _Progress, record: dict) -> bool:
        """Evaluate, track the best state; whether early stopping says stop."""
        valid = evaluate(model)
        record["valid"] = valid
        monitor = resolve_monitor(self.cfg.monitor, valid)
        if valid[monitor] > state.best_score:
            state.best_score, state.best_epoch, state.best_valid = valid[monitor], epoch, valid
            state.best_state = copy.deepcopy(model.state_dict())
            state.bad_evals = 0
            return False
        state.bad_evals += 1
        return self.cfg.patience > 0 and state.bad_evals >= self.cfg.patience

    def _checkpoint_due(self, epoch: int) -> bool:
        every = self.cfg.checkpoint_every
        return self.checkpoint_dir is not None and every > 0 and epoch % every == 0

    def _resume(self, model: nn.Module, opt: torch.optim.Optimizer) -> _Progress:
        """Load the checkpoint in `checkpoint_dir` (read by rank 0, sent to all), if there is one."""
        ckpt = None
        if self.checkpoint_dir is not None and self.dist.is_main:
            ckpt = load_checkpoint(self.checkpoint_dir)
        ckpt = self.dist.broadcast_object(ckpt)
        if ckpt is None:
            return _Progress()
        model.load_state_dict(ckpt.model)
        opt.load_state_dict(ckpt.optimizer)
        if ckpt.torch_rng is not None:
            torch.set_rng_state(ckpt.torch_rng)
        state = _Progress.from_checkpoint(ckpt)
        if self.dist.is_main:
            message = f"resuming from the checkpoint of epoch {state.epoch} in {self.checkpoint_dir}"
            if self.console is not None:
                self.console.print(message)
            else:
                print(message, file=sys.stderr)
        return state


class _progress:
    """Rich progress bars with ETA, or nothing when disabled (tests, logs)."""

    def __init__(self, enabled: bool, console=None) -> None:
        self.enabled, self.console, self.bar = enabled, console, None

    def __enter__(self):
        if not self.enabled:
            return None
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, transient=False,
        )
        self.bar.__enter__()
        return self.bar

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)
