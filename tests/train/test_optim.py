"""Sparse embedding gradients: lazy row updates, checkpoints, clear errors, data parallelism."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_distributed import loss_curve, mf_config, tiny_dataset

from liverec.errors import LiverecError
from liverec.experiment import RunConfig, fit_model
from liverec.models import build_model
from liverec.train import TrainConfig
from liverec.train.optim import SparseDenseAdam, make_optimizer


def test_only_the_rows_a_batch_touches_move():
    model = build_model("mf", {"embedding_dim": 8}, 20, 30)
    opt = make_optimizer(model, TrainConfig(sparse_embeddings=True, lr=0.1))
    assert isinstance(opt, SparseDenseAdam)
    before = model.item_emb.weight.detach().clone()
    for _ in range(2):  # the second step: dense Adam would move row 0 by momentum alone
        items = torch.tensor([[1, 2]]) if _ == 0 else torch.tensor([[3, 4]])
        opt.zero_grad()
        model.score(torch.tensor([0]), items).sum().backward()
        assert model.item_emb.weight.grad.is_sparse
        opt.step()
    moved = (model.item_emb.weight.detach() != before).any(1)
    assert moved.nonzero().ravel().tolist() == [1, 2, 3, 4]


def test_sparse_training_learns_and_resumes_exactly(tmp_path):
    ds = tiny_dataset()
    _, _, dense = fit_model(mf_config(epochs=4), ds)
    _, _, straight = fit_model(mf_config(epochs=4, sparse_embeddings=True), ds)
    losses = [r["loss"] for r in straight]
    assert losses[-1] < 0.8 * losses[0]
    assert straight[-1]["valid"]["NDCG@20"] > 0.5 * dense[-1]["valid"]["NDCG@20"]
    ckpt = tmp_path / "checkpoint"
    fit_model(mf_config(epochs=2, checkpoint_every=1, sparse_embeddings=True), ds, checkpoint_dir=ckpt)
    assert json.loads((ckpt / "state.json").read_text())["epoch"] == 2
    _, _, resumed = fit_model(mf_config(epochs=4, checkpoint_every=1, sparse_embeddings=True), ds,
                              checkpoint_dir=ckpt)
    np.testing.assert_allclose([r["loss"] for r in resumed], losses, rtol=1e-6)


def test_models_that_read_whole_tables_say_so():
    cfg = RunConfig(model="lightgcn", data="synthetic", seed=0, params={"embedding_dim": 8},
                    train=TrainConfig(epochs=1, batch_size=256, sparse_embeddings=True, progress=False))
    with pytest.raises(LiverecError, match="whole tables"):
        fit_model(cfg, tiny_dataset())


@pytest.mark.parametrize("options", [{"optimizer": "sgd"}, {"weight_decay": 0.1}, {"grad_clip": 1.0}])
def test_unsupported_combinations_are_errors(options):
    with pytest.raises(LiverecError, match="sparse_embeddings"):
        TrainConfig(sparse_embeddings=True, **options).validate()


def test_two_processes_all_reduce_sparse_gradients(tmp_path):
    # the same triples on 1 and 2 ranks; float order differs (the sparse all-reduce concatenates
    # the ranks' rows before SparseAdam sums duplicates): 1.4e-4 after 4 epochs, a seed change ~7%
    cfg = mf_config(sparse_embeddings=True)
    one, two = loss_curve(1, cfg, tmp_path), loss_curve(2, cfg, tmp_path)
    assert one[-1] < 0.8 * one[0]
    np.testing.assert_allclose(two, one, rtol=1e-3)
