"""Data-parallel training: shards partition every global batch, 1 and 2 processes (gloo, CPU)
follow the same loss curve, checkpoints resume exactly, and the CLI says what it does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from typer.testing import CliRunner

from liverec.cli import app
from liverec.data.split import DataConfig, make_dataset
from liverec.data.synthetic import synthetic_events
from liverec.experiment import RunConfig, fit_model
from liverec.models import build_model
from liverec.sampling import UniformSampler
from liverec.train import TrainConfig
from liverec.train.distributed import DistContext, KeyedNegatives, Shard
from liverec.train.pairwise import PairBatches
from liverec.train.sequence import make_sequence_batches


def tiny_dataset():
    return make_dataset(synthetic_events(num_users=200, num_items=150, events_per_user=25, seed=1), DataConfig())


def mf_config(**train) -> RunConfig:
    return RunConfig(
        model="mf", data="synthetic", seed=0, params={"embedding_dim": 16},
        train=TrainConfig(**{"epochs": 4, "batch_size": 256, "lr": 0.01, "progress": False, **train}),
    )


def _worker(rank: int, world: int, store: str, cfg: RunConfig, result: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        ctx = DistContext(rank, world, rank, 0, torch.device("cpu"))
        _, _, history = fit_model(cfg, tiny_dataset(), dist=ctx)
        if rank == 0:
            Path(result).write_text(json.dumps([r["loss"] for r in history]))
    finally:
        dist.destroy_process_group()


def loss_curve(world: int, cfg: RunConfig, tmp_path: Path) -> np.ndarray:
    """Per-epoch mean training loss of `cfg` on `world` gloo processes (rank 0's history)."""
    if world == 1:
        _, _, history = fit_model(cfg, tiny_dataset())
        return np.array([r["loss"] for r in history])
    result = tmp_path / f"losses-{world}.json"
    # spawn, not fork: a child forked after the parent started its OpenMP thread pool (any torch op
    # with more than one thread) can deadlock in its first parallel region
    mp.start_processes(_worker, args=(world, str(tmp_path / "store"), cfg, str(result)),
                       nprocs=world, start_method="spawn")
    return np.array(json.loads(result.read_text()))


def test_shards_partition_every_global_batch():
    for n in (1, 2, 7, 256, 257):
        for world in (1, 2, 3):
            rows = [np.arange(n)[Shard(r, world).rows(n)] for r in range(world)]
            assert np.array_equal(np.concatenate(rows), np.arange(n))
            assert max(map(len, rows)) - min(map(len, rows)) <= 1


@pytest.mark.parametrize("block", [512, 16])
def test_ranks_split_the_same_shuffle_and_the_same_negatives(monkeypatch, block):
    # block 16 < the 50 rows a rank gets: each rank draws only the blocks its rows touch
    monkeypatch.setattr(KeyedNegatives, "block", block)
    ds = tiny_dataset()
    sampler = UniformSampler(ds.train.csr())
    cpu = torch.device("cpu")

    def epoch(world, rank):
        b = PairBatches(ds.train, sampler, 3, 100, None, cpu, shard=Shard(rank, world))
        return list(b.for_epoch(seed=3, epoch=2))

    whole = epoch(1, 0)
    halves = [epoch(2, 0), epoch(2, 1)]
    assert len(halves[0]) == len(halves[1]) == len(whole)  # every rank takes every step
    for step, full in enumerate(whole):
        parts = [h[step] for h in halves]
        assert torch.equal(torch.cat([p.users for p in parts]), full.users)
        assert torch.equal(torch.cat([p.pos for p in parts]), full.pos)
        assert torch.equal(torch.cat([p.neg for p in parts]), full.neg)  # world-size independent
        assert not sampler.is_positive(full.users[:, None].numpy(), full.neg.numpy()).any()
    assert not torch.equal(whole[0].neg, whole[1].neg)  # steps differ
    other = list(PairBatches(ds.train, sampler, 3, 100, None, cpu).for_epoch(seed=3, epoch=3))
    assert not torch.equal(other[0].neg, whole[0].neg)  # epochs differ


def sasrec_config(**train) -> RunConfig:
    return RunConfig(
        model="sasrec", data="synthetic", seed=0,
        params={"max_len": 12, "embedding_dim": 16, "dropout": 0.0},
        train=TrainConfig(**{"epochs": 3, "batch_size": 64, "lr": 0.01, "loss": "ce", "progress": False,
                             **train}),
    )


def test_sequence_ranks_split_the_same_global_batches():
    ds = tiny_dataset()
    cpu = torch.device("cpu")
    cfg = sasrec_config(batch_size=30).train

    def epoch(world, rank):
        b = make_sequence_batches(build_model("sasrec", {"max_len": 12}, ds.num_users, ds.num_items),
                                  ds.train, ds.train.csr(), cfg, np.random.default_rng(0), cpu,
                                  shard=Shard(rank, world))
        return list(b.for_epoch(seed=3, epoch=2)), len(b)

    (whole, n1), (half0, n0), (half1, n2) = epoch(1, 0), epoch(2, 0), epoch(2, 1)
    assert len(whole) == n1 and len(half0) == len(half1) == n0 == n2
    for full, a, b in zip(whole, half0, half1, strict=False):
        assert torch.equal(torch.cat([a.users, b.users]), full.users)  # same batches, split in two
    assert len({u for batch in whole for u in batch.users.tolist()}) == sum(len(b.users) for b in whole)


def test_two_processes_train_sasrec_like_one(tmp_path):
    # full cross-entropy, no dropout, rows of equal length: the runs differ only in float
    # summation order (seed 1 instead of 0 moves this curve by ~1%). With rows of unequal length DDP
    # averages the ranks' means over their own target positions, a small reweighting.
    cfg = sasrec_config()
    one, two = loss_curve(1, cfg, tmp_path), loss_curve(2, cfg, tmp_path)
    assert one[-1] < one[0]
    np.testing.assert_allclose(two, one, rtol=1e-4)


def test_global_batch_must_cover_the_ranks():
    ds = tiny_dataset()
    with pytest.raises(ValueError, match="global batch"):
        PairBatches(ds.train, UniformSampler(ds.train.csr()), 1, 1, None, torch.device("cpu"),
                    shard=Shard(0, 2))


def test_two_processes_match_one_exactly_without_sampling_noise(tmp_path):
    # full softmax over the catalogue: no random negatives, so only float summation order differs
    cfg = mf_config(shared_negatives=True, num_negatives=10**6, loss="softmax")
    one, two = loss_curve(1, cfg, tmp_path), loss_curve(2, cfg, tmp_path)
    assert len(one) == len(two) == 4 and one[-1] < one[0]
    np.testing.assert_allclose(two, one, rtol=1e-5)


def test_two_processes_follow_the_same_bpr_loss_curve(tmp_path):
    # negatives are keyed by global row, so both runs train on the same triples; another seed
    # moves this curve by ~7%
    cfg = mf_config()
    one, two = loss_curve(1, cfg, tmp_path), loss_curve(2, cfg, tmp_path)
    assert one[-1] < 0.8 * one[0]
    np.testing.assert_allclose(two, one, rtol=1e-4)


def test_resumed_training_equals_uninterrupted(tmp_path):
    ds = tiny_dataset()
    ckpt = tmp_path / "checkpoint"
    _, _, straight = fit_model(mf_config(epochs=4), ds)
    fit_model(mf_config(epochs=2, checkpoint_every=1), ds, checkpoint_dir=ckpt)  # "killed" after 2
    assert json.loads((ckpt / "state.json").read_text())["epoch"] == 2
    model, best_epoch, resumed = fit_model(mf_config(epochs=4, checkpoint_every=1), ds, checkpoint_dir=ckpt)
    assert [r["epoch"] for r in resumed] == [1, 2, 3, 4]
    np.testing.assert_allclose([r["loss"] for r in resumed], [r["loss"] for r in straight], rtol=1e-6)
    assert best_epoch == max(range(1, 5), key=lambda e: resumed[e - 1]["valid"]["NDCG@20"])
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob("*.old"))


runner = CliRunner()


def test_closed_form_models_ignore_nproc(synthetic_csv, tmp_path):
    res = runner.invoke(app, ["train", "ease", "--data", str(synthetic_csv), "--nproc", "2",
                              "--out", str(tmp_path / "ease"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "closed form" in res.output and "ignored" in res.output
    assert json.loads((tmp_path / "ease" / "metrics.json").read_text())["test"]["NDCG@10"] > 0


def test_torchrun_workers_need_an_explicit_out(synthetic_csv, monkeypatch):
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "test")
    res = runner.invoke(app, ["train", "mf", "--data", str(synthetic_csv), "--quiet"])
    assert res.exit_code == 2 and "--out" in res.output


@pytest.mark.parametrize("options", [["--nproc", "0"], ["--nproc", "2", "--max-restarts=-1"]])
def test_bad_launch_options_are_one_line_errors(synthetic_csv, options):
    res = runner.invoke(app, ["train", "mf", "--data", str(synthetic_csv), *options])
    assert res.exit_code == 2 and "must be >= " in res.output
