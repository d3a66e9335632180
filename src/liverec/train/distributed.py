"""Data-parallel training with torch.distributed under torchrun (TorchElastic).

`liverec train ... --nproc N` re-runs itself as `python -m torch.distributed.run --standalone
--nproc-per-node N -m liverec train ...`; `torchrun ... -m liverec train ...` is the same thing and
also spans nodes (`--nnodes`, `--rdzv-endpoint`). Each worker reads RANK / WORLD_SIZE / LOCAL_RANK
from the environment torchrun sets; without them everything runs in one process.

How the work is split (global batch B = `train.batch_size`, W ranks):
- every rank draws the same permutation of the epoch's positives from (seed, epoch) and cuts it into
  the same global batches; rank r takes slice r of each global batch (`Shard.rows`);
- each rank samples the negatives of its own rows from generators keyed by (seed, epoch, step,
  block of rows) (`KeyedNegatives`): no rank repeats another's work (beyond one partial block), a
  row gets the same negatives for any W, so W processes train on the triples one process would,
  and the stream does not depend on what happened before the epoch, so a run resumed from a
  checkpoint (even with another W) continues with the same shuffles and negatives;
- sequence models (SASRec) split each global batch of user rows the same way; their negatives
  (sampled losses) are drawn per (seed, epoch, rank);
- DistributedDataParallel averages the gradients of the per-rank mean losses, which is the gradient
  of the mean loss over the global batch: one step of W ranks is one step of one process with batch
  B, so `train.lr` needs no rescaling. Slices of a global batch differ by at most one row (the last,
  partial batch of an epoch), where the average is off by that rounding; a last batch with fewer
  rows than ranks is dropped.
- evaluation, history, checkpoints and the run directory are rank 0's; the other ranks wait at the
  end-of-epoch broadcast of the early-stopping decision and at a final barrier.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

from liverec.errors import LiverecError

# A rank waits at most this long for another (e.g. while rank 0 evaluates a large data set).
COLLECTIVE_TIMEOUT = timedelta(hours=2)


@dataclass(frozen=True)
class Shard:
    """Which part of every global batch this process trains on."""

    rank: int = 0
    world_size: int = 1

    def rows(self, n: int) -> slice:
        """Rows of a global batch of `n` rows for this rank: contiguous, sizes differ by <= 1."""
        return slice(n * self.rank // self.world_size, n * (self.rank + 1) // self.world_size)


def epoch_generators(seed: int, epoch: int) -> tuple[np.random.Generator, KeyedNegatives]:
    """(shuffle, negatives) of one epoch: both the same on every rank and for any number of ranks."""
    return np.random.default_rng([seed, epoch]), KeyedNegatives(seed, epoch)


class KeyedNegatives:
    """Negatives as a function of (seed, epoch, step, block of global-batch rows).

    Each block of `block` rows of a global batch draws from its own generator, so row r of step s
    gets the same negatives whatever the number of ranks, and a rank draws only the blocks its rows
    touch (at most one partial block more than its share). One process and N processes therefore
    train on identical (user, positive, negatives) triples: only float summation order differs.
    """

    block = 512  # rows per seeded block: small enough to split a batch over ranks, big enough to
    # keep the per-call overhead of a sampler (~0.1 ms) far below a training step

    def __init__(self, seed: int, epoch: int) -> None:
        self.seed, self.epoch = seed, epoch

    def shared(self, step: int) -> np.random.Generator:
        """The generator of a step's negatives shared by every row (the same on every rank)."""
        return np.random.default_rng([self.seed, self.epoch, 2, step])

    def sample(
        self, sampler, users: np.ndarray, pos: np.ndarray, n: int, step: int, rows: slice
    ) -> np.ndarray:
        """(len(rows), n) negatives for `rows` of the global batch whose users and positives are
        `users`, `pos` (every row of it: in-batch samplers draw from the whole batch's positives)."""
        first, stop = rows.start // self.block, -(-rows.stop // self.block)
        parts = []
        for j in range(first, stop):  # a loop over blocks of rows, not over rows
            lo, hi = j * self.block, min((j + 1) * self.block, len(users))
            rng = np.random.default_rng([self.seed, self.epoch, 1, step, j])
            parts.append(sampler.sample(users[lo:hi], n, rng, pos_items=pos))
        neg = np.concatenate(parts) if parts else np.empty((0, n), dtype=np.int64)
        offset = first * self.block
        return neg[rows.start - offset : rows.stop - offset]


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job; the default is a single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # rank within the node: picks the GPU and who writes the node's shared arrays
    node_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether collectives are needed (a process group exists with more than one rank)."""
        return self.world_size > 1

    @property
    def shard(self) -> Shard:
        return Shard(self.rank, self.world_size)

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def decide(self, flag: bool) -> bool:
        """Rank 0's boolean, on every rank (the others wait here while rank 0 evaluates)."""
        if not self.distributed:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self._comm_device)
        dist.broadcast(t, src=0)
        return bool(t.item())

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over ranks."""
        if not self.distributed:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self._comm_device)
        dist.all_reduce(t)
        return t.tolist()

    def broadcast_object(self, obj):
        """Rank 0's object on every rank (checkpoint state on resume: small, and only once)."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, device=self._comm_device)
        return box[0]

    @property
    def _comm_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")


def under_torchrun() -> bool:
    """Whether this process was started by torchrun / torch.distributed.run."""
    return "TORCHELASTIC_RUN_ID" in os.environ or "WORLD_SIZE" in os.environ


def init_distributed(device: str) -> DistContext:
    """Join the process group torchrun describes (gloo on CPU, NCCL on GPU), or run alone.

    `device` is auto | cpu | cuda; under torchrun with CUDA each process takes GPU LOCAL_RANK.
    """
    from liverec.train.trainer import resolve_device

    base = resolve_device(device)
    if not under_torchrun():
        return DistContext(device=base)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    node_rank = int(os.environ.get("GROUP_RANK", 0))
    if base.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise LiverecError(
                f"local rank {local_rank} has no GPU ({torch.cuda.device_count()} visible): "
                "use --nproc-per-node <= the number of GPUs"
            )
        base = torch.device("cuda", local_rank)
        torch.cuda.set_device(base)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if base.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT)
    return DistContext(rank, world, local_rank, node_rank, base)


def shutdown(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def torchrun_command(nproc: int, max_restarts: int, liverec_args: list[str]) -> list[str]:
    """The command that runs `liverec <liverec_args>` on `nproc` local workers (one node)."""
    import sys

    if nproc < 1:
        raise LiverecError(f"--nproc must be >= 1, got {nproc}")
    if max_restarts < 0:
        raise LiverecError(f"--max-restarts must be >= 0, got {max_restarts}")
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc-per-node={nproc}", f"--max-restarts={max_restarts}",
        "-m", "liverec", *liverec_args,
    ]
