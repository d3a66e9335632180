"""Knowledge distillation: a small student learns the ground truth and its teacher's ranking.

Factor teachers (MF, LightGCN, NeuMF, ...) teach an MF student:

    loss = ground-truth loss (the teacher's own recipe: BPR / BCE / softmax over sampled negatives)
         + kd_weight · T² · KL( softmax(teacher / T) || softmax(student / T) )  over C items per row

C = the teacher's top_k items for the user (where its knowledge is: which near-misses rank high)
plus random_items uniform items (so the student also learns what the teacher ranks low). The KD
term is per user, not per interaction: each step distils `kd_users` users drawn uniformly, apart
from the batch's interactions. Giving it to every interaction row visited a heavy user hundreds of
times an epoch and cost 5× the ground-truth step (scoring B × C candidates); sampled users cost a
fraction of that and give light users, who have the least ground truth, as much of the teacher. The
teacher is any trained run, MF or LightGCN or anything with `score`; it stays frozen. Training goes
through the one Trainer with the run's batches; only the step function differs.

Sequence teachers (SASRec, gen) teach the same architecture at a smaller `dim`, on the teacher's
soft next-item distribution over the whole catalogue:

    loss = next-item cross-entropy over every target position (the teacher's recipe)
         + kd_weight · T² · KL( softmax(teacher_t / T) || softmax(student_t / T) )

where t runs over `kd_positions` target positions drawn per batch (each costs a (1, I) row of
teacher and student logits, so the draw bounds the step's cost on large catalogues).
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from liverec.errors import LiverecError

_TOPK_USERS = 1024  # users per teacher score_all chunk when collecting its scores and top items
# Up to this many teacher scores (U × I, float32: 256 MB) are computed once and looked up after:
# re-scoring every batch's candidates with a d = 128 teacher gathered B × C × 128 floats a step and
# was most of the distillation's time. Larger catalogues score the candidates batch by batch.
_DENSE_SCORES = 64_000_000


class TeacherScores:
    """The frozen teacher's scores: a precomputed (U, I) matrix when it fits, else the model."""

    def __init__(self, teacher, num_users: int, num_items: int) -> None:
        self.teacher, self.num_users = teacher, num_users
        self.dense: torch.Tensor | None = None
        if num_users * num_items <= _DENSE_SCORES:
            self.dense = torch.cat([chunk for _, chunk in self._chunks()])  # (U, I)

    @torch.no_grad()
    def _chunks(self):
        """(users, their (n, I) scores), _TOPK_USERS users at a time: never the whole U × I at once."""
        for start in range(0, self.num_users, _TOPK_USERS):
            users = torch.arange(start, min(start + _TOPK_USERS, self.num_users))
            yield users, (self.dense[users] if self.dense is not None else self.teacher.score_all(users))

    @torch.no_grad()
    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """users (B,), items (B, C) -> (B, C), as `teacher.score`."""
        if self.dense is not None:
            return self.dense[users[:, None], items]
        return self.teacher.score(users, items)

    def top_items(self, k: int) -> torch.Tensor:
        """(U, k) the teacher's highest-scored items per user."""
        return torch.cat([scores.topk(k, dim=1).indices for _, scores in self._chunks()])


def distillation_loss(
    student, teacher, users: torch.Tensor, candidates: torch.Tensor, temperature: float
) -> torch.Tensor:
    """T² · KL(teacher || student) over candidates (B, C) of users (B,), mean over the batch."""
    with torch.no_grad():
        target = F.log_softmax(teacher.score(users, candidates) / temperature, dim=1)  # (B, C)
    pred = F.log_softmax(student.score(users, candidates) / temperature, dim=1)  # (B, C)
    # T² keeps the gradient scale independent of T (Hinton et al. 2015)
    return F.kl_div(pred, target, log_target=True, reduction="batchmean") * temperature**2


def sequence_distillation_loss(
    student, teacher, inputs: torch.Tensor, targets: torch.Tensor, kd_positions: int, temperature: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(ground-truth full cross-entropy, T² · KL over `kd_positions` drawn target positions) of
    left-padded `inputs` (B, W) with `targets` (B, W) (-1 = no target)."""
    from liverec.losses import full_softmax_loss

    has = targets >= 0
    hidden = student.encode(inputs)[has]  # (T, D) row-major
    truth = full_softmax_loss(hidden, student.output_embeddings(), targets[has])
    pick = torch.randperm(hidden.shape[0], generator=generator)[:kd_positions]  # (P,)
    with torch.no_grad():
        soft = F.log_softmax(teacher.logits(teacher.encode(inputs)[has][pick]) / temperature, dim=1)
    pred = F.log_softmax(student.logits(hidden[pick]) / temperature, dim=1)  # (P, I)
    return truth, F.kl_div(pred, soft, log_target=True, reduction="batchmean") * temperature**2


def parameter_count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def distill_run(teacher_dir: Path, out: Path, options, console=None) -> dict:
    """Train a student of `options.dim` on the teacher run's data and soft ranking; write `out`.
    The student is MF, or the teacher's own architecture for sequence teachers."""
    from liverec.evaluate import evaluate
    from liverec.experiment import (
        RunConfig,
        check_same_vocab,
        load_dataset,
        load_run,
        replacing_dir,
        save_run,
    )
    from liverec.models import build_model
    from liverec.train.pairwise import PairBatches, make_sampler, pair_loss
    from liverec.train.sequence import make_sequence_batches
    from liverec.train.trainer import Trainer

    cfg, teacher, users, items = load_run(teacher_dir, device="cpu")
    if out.resolve() == teacher_dir.resolve():
        raise LiverecError("--out must differ from the teacher's run directory")
    if options.top_k > len(items):
        raise LiverecError(f"top_k={options.top_k} exceeds the {len(items)} items of the catalogue")
    ds = load_dataset(cfg)
    check_same_vocab(ds, users, items)
    train_cfg = copy.deepcopy(cfg.train)
    train_cfg.epochs = options.epochs or train_cfg.epochs
    train_cfg.lr = options.lr or train_cfg.lr
    train_cfg.device, train_cfg.progress = "cpu", console is not None
    if teacher.sequential:  # the same architecture, narrower (heads that no longer divide: 1)
        params = {**cfg.params, "embedding_dim": options.dim}
        if options.dim % int(params.get("num_heads", 1)):
            params["num_heads"] = 1
        student_cfg = RunConfig(model=cfg.model, data=cfg.data, seed=cfg.seed, params=params,
                                dataset=cfg.dataset, train=train_cfg, eval=cfg.eval)
        if train_cfg.loss != "ce":
            raise LiverecError(f"distilling {cfg.model} needs a teacher trained with loss 'ce', not {train_cfg.loss!r}")
    else:
        student_cfg = RunConfig(
            model="mf", data=cfg.data, seed=cfg.seed, params={"embedding_dim": options.dim},
            dataset=cfg.dataset, train=train_cfg, eval=cfg.eval,
        )
    torch.manual_seed(cfg.seed)  # the entry point owns the seed, as in fit_model
    student = build_model(student_cfg.model, student_cfg.params, len(users), len(items))
    if parameter_count(student) >= parameter_count(teacher):
        raise LiverecError(f"a student with dim={options.dim} is not smaller than the teacher")

    teacher.eval()
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    train_csr = ds.train.csr()
    if teacher.sequential:
        batches = make_sequence_batches(student, ds.train, train_csr, train_cfg, rng, torch.device("cpu"))

        def step(model, batch) -> torch.Tensor:
            truth, kd = sequence_distillation_loss(model, teacher, batch.inputs, batch.targets,
                                                   options.kd_positions, options.temperature, gen)
            return truth + options.kd_weight * kd
    else:
        soft = TeacherScores(teacher, len(users), len(items))
        top = soft.top_items(options.top_k)  # (U, top_k)

        def step(model, batch) -> torch.Tensor:
            kd_users = torch.randint(len(users), (options.kd_users,), generator=gen)  # (K,)
            rand = torch.randint(len(items), (options.kd_users, options.random_items), generator=gen)
            candidates = torch.cat([top[kd_users], rand], dim=1)  # (K, top_k + random_items)
            kd = distillation_loss(model, soft, kd_users, candidates, options.temperature)
            return pair_loss(model, batch, train_cfg) + options.kd_weight * kd

        batches = PairBatches(
            ds.train, make_sampler(train_cfg, train_csr, student), train_cfg.num_negatives,
            train_cfg.batch_size, rng, torch.device("cpu"), shared=train_cfg.shared_negatives,
            pair_sampling=train_cfg.pair_sampling,
        )
    valid_eval = None
    if ds.valid is not None and len(ds.valid) > 0:
        def valid_eval(m):
            return {k: v for k, v in evaluate(m, ds, "valid", cfg.eval).items() if k != "users"}
    result = Trainer(train_cfg, console=console).fit(student, step, lambda epoch: batches, valid_eval)
    student.eval()
    test = {k: v for k, v in evaluate(student, ds, "test", cfg.eval).items() if k != "users"}
    if student.sequential:
        student.set_history(ds.revealed("all"))  # saved and served with every user's latest items
    reference = json.loads((teacher_dir / "metrics.json").read_text())
    with replacing_dir(out) as partial:
        metrics = {
            "model": student_cfg.model, "data": cfg.data, "valid": result.best_valid, "test": test,
            "train_seconds": round(result.seconds, 2), "best_epoch": result.best_epoch,
            "compression": {
                "methods": ["distill"], "options": asdict(options),
                "source": str(teacher_dir.resolve()), "source_model": cfg.model,
                "params": parameter_count(student), "source_params": parameter_count(teacher),
                "source_bytes": (teacher_dir / "model.safetensors").stat().st_size,
                "source_test": reference.get("test", {}),
            },
        }
        save_run(partial, student_cfg, student, ds, metrics)
        metrics["compression"]["bytes"] = (partial / "model.safetensors").stat().st_size
        (partial / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
