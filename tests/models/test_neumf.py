"""NeuMF pretraining (He et al. 2017, Sec. 3.4.1): start from trained GMF and MLP weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from liverec.errors import DataNotFoundError, LiverecError
from liverec.models import neumf
from liverec.models.neumf import NeuMF, NeuMFConfig

NUM_USERS, NUM_ITEMS = 12, 30
LAYERS = (16, 8, 4)


def saved_run(tmp_path: Path, name: str, config: NeuMFConfig, seed: int) -> tuple[NeuMF, str]:
    """A model with random weights (biases too) saved as a run directory."""
    model = NeuMF(config, NUM_USERS, NUM_ITEMS)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    run_dir = tmp_path / name
    run_dir.mkdir()
    save_file(model.state_dict(), str(run_dir / "model.safetensors"))
    return model.eval(), str(run_dir)


@torch.no_grad()
def test_pretrained_neumf_is_the_alpha_mix_of_gmf_and_mlp_logits(tmp_path: Path) -> None:
    gmf, gmf_dir = saved_run(tmp_path, "gmf", NeuMFConfig(variant="gmf", embedding_dim=6), 0)
    mlp, mlp_dir = saved_run(tmp_path, "mlp", NeuMFConfig(variant="mlp", mlp_layers=LAYERS), 1)
    config = NeuMFConfig(
        embedding_dim=6,
        mlp_layers=LAYERS,
        pretrained_gmf=gmf_dir,
        pretrained_mlp=mlp_dir,
        alpha=0.3,
    )
    model = NeuMF(config, NUM_USERS, NUM_ITEMS)
    model.prepare()
    model.eval()
    assert torch.equal(model.gmf_user.weight, gmf.gmf_user.weight)
    assert torch.equal(model.mlp_item.weight, mlp.mlp_item.weight)
    assert torch.equal(model.mlp[0].weight, mlp.mlp[0].weight)
    users = torch.arange(NUM_USERS)
    items = torch.randint(NUM_ITEMS, (NUM_USERS, 5), generator=torch.Generator().manual_seed(2))
    expected = 0.3 * gmf.score(users, items) + 0.7 * mlp.score(users, items)
    torch.testing.assert_close(model.score(users, items), expected)


def test_prepare_without_pretrained_paths_changes_nothing() -> None:
    model = NeuMF(NeuMFConfig(), NUM_USERS, NUM_ITEMS)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.prepare()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_missing_run_directory_is_a_clear_error(tmp_path: Path) -> None:
    config = NeuMFConfig(pretrained_gmf=str(tmp_path / "nope"), pretrained_mlp=str(tmp_path))
    with pytest.raises(DataNotFoundError, match="model.safetensors"):
        NeuMF(config, NUM_USERS, NUM_ITEMS).prepare()


def test_pretrained_shape_mismatch_is_a_clear_error(tmp_path: Path) -> None:
    _, gmf_dir = saved_run(tmp_path, "gmf", NeuMFConfig(variant="gmf", embedding_dim=4), 0)
    _, mlp_dir = saved_run(tmp_path, "mlp", NeuMFConfig(variant="mlp", mlp_layers=LAYERS), 1)
    config = NeuMFConfig(
        embedding_dim=6, mlp_layers=LAYERS, pretrained_gmf=gmf_dir, pretrained_mlp=mlp_dir
    )
    with pytest.raises(LiverecError, match="embedding_dim"):
        NeuMF(config, NUM_USERS, NUM_ITEMS).prepare()


def test_pretrained_paths_need_each_other_and_the_neumf_variant() -> None:
    with pytest.raises(LiverecError, match="together"):
        NeuMFConfig(pretrained_gmf="runs/gmf")
    with pytest.raises(LiverecError, match="together"):
        NeuMFConfig(variant="gmf", pretrained_gmf="a", pretrained_mlp="b")
    with pytest.raises(LiverecError, match="even"):
        NeuMFConfig(mlp_layers=(15, 8))


@torch.no_grad()
def test_score_all_in_many_chunks_matches_score(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(neumf, "_SCORE_ALL_BUDGET", 64)  # a few items per chunk
    model = NeuMF(NeuMFConfig(mlp_layers=LAYERS), NUM_USERS, NUM_ITEMS).eval()
    users = torch.tensor([0, 3, 7])
    every = model.score_all(users)
    torch.testing.assert_close(every, model.score(users, torch.arange(NUM_ITEMS).expand(3, -1)))



def test_fixed_h_gmf_is_mf_without_biases_and_h_never_moves() -> None:
    model = NeuMF(NeuMFConfig(variant="gmf", embedding_dim=4, fixed_h=True), NUM_USERS, NUM_ITEMS)
    model.reset_parameters(torch.Generator().manual_seed(0))
    assert torch.equal(model.output.weight, torch.ones(1, 4))
    users, items = torch.tensor([0, 1, 2]), torch.tensor([[3], [4], [5]])
    expected = (model.gmf_user(users)[:, None] * model.gmf_item(items)).sum(-1) + model.output.bias
    assert torch.allclose(model.score(users, items), expected)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.score(users, items).sum().backward()
    opt.step()
    assert torch.equal(model.output.weight, torch.ones(1, 4))
    with pytest.raises(LiverecError, match="fixed_h"):
        NeuMFConfig(variant="neumf", fixed_h=True)
