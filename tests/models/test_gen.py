"""The generative decoder: causality, padding invariance (rotary positions), options, training."""

from __future__ import annotations

import pytest
import torch
from test_sasrec import MAX_LEN, NUM_ITEMS, NUM_USERS, ids  # the same left-padded rows

from liverec.errors import LiverecError
from liverec.models import build_model
from liverec.models.gen import Gen, rotary_tables, rotate


def model(**params) -> Gen:
    torch.manual_seed(0)
    params = {"max_len": MAX_LEN, "embedding_dim": 16, "num_heads": 2, **params}
    return build_model("gen", params, NUM_USERS, NUM_ITEMS).eval()


@torch.no_grad()
def test_no_future_leakage_and_padding_is_invisible():
    m = model()
    seq = ids([3, 7, 1, 9, 4, 2, 8, 5])
    changed = seq.clone()
    changed[0, 5:] = torch.tensor([20, 21, 22]) + 1
    a, b = m.encode(seq), m.encode(changed)
    torch.testing.assert_close(a[:, :5], b[:, :5], rtol=0, atol=1e-6)
    assert not torch.allclose(a[:, 5:], b[:, 5:])
    short = m.encode(ids([3, 7, 1], width=3))
    for width in (4, MAX_LEN):  # rotary positions: only distances count, so left padding does not
        torch.testing.assert_close(m.encode(ids([3, 7, 1], width=width))[:, -3:], short, rtol=1e-5, atol=1e-5)


def test_rotary_attention_depends_on_distance_only():
    cos, sin = rotary_tables(12, 8, 10_000.0, "cpu")
    q, k = torch.randn(8), torch.randn(8)

    def score(i, j):
        qi = rotate(q.view(1, 1, 1, 8), cos[i], sin[i])
        kj = rotate(k.view(1, 1, 1, 8), cos[j], sin[j])
        return (qi * kj).sum()

    torch.testing.assert_close(score(5, 2), score(9, 6))
    assert not torch.isclose(score(5, 2), score(5, 4))


@pytest.mark.parametrize("params", [{"embedding_dim": 12, "num_heads": 4}, {"num_blocks": 0},
                                    {"dropout": 1.0}, {"ffn_multiplier": 0}])
def test_bad_options_are_errors(params):
    with pytest.raises(LiverecError, match="gen"):
        model(**params)


def test_width_and_depth_scale_the_parameters():
    small, big = model(), model(embedding_dim=32, num_blocks=4, num_heads=4)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(big) > 3 * count(small)
    assert model().encode(ids([1, 2])).shape == (1, MAX_LEN, 16)
