"""Distillation: the KL term on hand-made scores, and a student run trained through the Trainer."""

from __future__ import annotations

import json

import pytest
import torch

from liverec.compress import CompressOptions, compress_run
from liverec.compress.distill import distillation_loss, parameter_count, sequence_distillation_loss
from liverec.experiment import load_run


class FixedScores(torch.nn.Module):
    """score(users, items) = table[users, items]: a model whose scores are written by hand."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = table

    def score(self, users, items):
        return self.table[users[:, None], items]


def test_kl_is_zero_for_a_copy_and_matches_the_formula():
    teacher = FixedScores(torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]]))
    users, cand = torch.tensor([0, 1]), torch.tensor([[0, 1, 2], [0, 1, 2]])
    assert distillation_loss(teacher, teacher, users, cand, 2.0).item() == pytest.approx(0.0, abs=1e-7)
    student = FixedScores(torch.zeros(2, 3))  # uniform: KL(p || u) = log 3 - H(p)
    p = torch.softmax(teacher.table, dim=1)
    expected = (torch.log(torch.tensor(3.0)) + (p * p.log()).sum(1)).mean()
    got = distillation_loss(student, teacher, users, cand, 1.0)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def test_distilled_student_is_a_small_plain_mf_run(runs, tmp_path):
    options = CompressOptions(dim=4, top_k=10, random_items=10, kd_users=16, epochs=2)
    metrics = compress_run(runs["mf"], tmp_path / "s", ["distill"], options)
    _, teacher, _, _ = load_run(runs["mf"])
    cfg, student, _, _ = load_run(tmp_path / "s")  # an ordinary run directory
    assert cfg.model == "mf" and student.config.embedding_dim == 4
    assert parameter_count(student) <= parameter_count(teacher) / 4
    info = json.loads((tmp_path / "s" / "metrics.json").read_text())["compression"]
    assert info["params"] == parameter_count(student) and info["source_model"] == "mf"
    assert 0.0 <= metrics["test"]["NDCG@10"] <= 1.0
    with torch.no_grad():
        assert torch.isfinite(student.score_all(torch.arange(3))).all()


def test_precomputed_teacher_scores_match_the_model(runs, monkeypatch):
    from liverec.compress import distill

    _, teacher, users, items = load_run(runs["mf"])
    dense = distill.TeacherScores(teacher, len(users), len(items))
    monkeypatch.setattr(distill, "_DENSE_SCORES", 0)  # a catalogue too large to precompute
    live = distill.TeacherScores(teacher, len(users), len(items))
    assert dense.dense is not None and dense.dense.shape == (len(users), len(items))
    assert live.dense is None
    u = torch.arange(len(users))
    cand = torch.randint(len(items), (len(users), 7), generator=torch.Generator().manual_seed(0))
    assert torch.allclose(dense.score(u, cand), live.score(u, cand), atol=1e-5)
    assert torch.equal(dense.top_items(5), live.top_items(5))


def test_sequence_kd_term_is_zero_for_a_copy(runs):
    _, teacher, _, _ = load_run(runs["sasrec"])
    teacher.eval()
    inputs = torch.tensor([[0, 0, 3, 5, 9], [1, 2, 3, 4, 5]])  # model ids, left-padded
    targets = torch.tensor([[-1, -1, 4, 8, 10], [1, 2, 3, 4, 20]])
    gen = torch.Generator().manual_seed(0)
    truth, kd = sequence_distillation_loss(teacher, teacher, inputs, targets, 4, 2.0, gen)
    assert kd.item() == pytest.approx(0.0, abs=1e-6) and truth.item() > 0


def test_sasrec_distils_into_a_narrower_sasrec_run(runs, tmp_path):
    options = CompressOptions(dim=8, kd_positions=64, epochs=2)
    metrics = compress_run(runs["sasrec"], tmp_path / "s", ["distill"], options)
    _, teacher, _, _ = load_run(runs["sasrec"])
    cfg, student, _, _ = load_run(tmp_path / "s")
    assert cfg.model == "sasrec" and student.config.embedding_dim == 8 and student.config.max_len == 8
    assert parameter_count(student) <= parameter_count(teacher) / 4
    assert torch.equal(student.history, teacher.history)  # every user's latest items, as the teacher
    assert 0.0 <= metrics["test"]["NDCG@10"] <= 1.0
    with torch.no_grad():
        assert torch.isfinite(student.score_all(torch.arange(3))).all()
