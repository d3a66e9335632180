"""Row-wise quantisers: error bounds on random tables, nibble packing, scoring from codes."""

from __future__ import annotations

import pytest
import torch

from liverec.compress import quantize as q
from liverec.compress.modules import QuantizedEmbedding
from liverec.compress.quantize import (
    dequantize,
    dot_all,
    pack_nibbles,
    quantize_rows,
    unpack_nibbles,
)
from liverec.errors import LiverecError


def random_table(rows: int, dim: int, seed: int) -> torch.Tensor:
    """Rows of very different ranges and centres, as trained tables have (plus a constant row)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, dim, generator=g) * torch.rand(rows, 1, generator=g).mul(5).exp()
    w = w + torch.randn(rows, 1, generator=g) * 3
    w[0] = 0.25  # constant row: scale 0, must come back exactly
    return w


@pytest.mark.parametrize(("bits", "scheme"), [(8, "symmetric"), (8, "affine"), (4, "affine")])
@pytest.mark.parametrize("dim", [1, 7, 64])
def test_round_trip_error_is_within_half_a_step_per_row(bits, scheme, dim):
    w = random_table(300, dim, seed=bits + dim)
    table = quantize_rows(w, bits, scheme)
    assert table.scheme == scheme
    back = dequantize(table)
    assert back.shape == w.shape and back.dtype == torch.float32
    err = (back - w).abs().max(dim=1).values  # (rows,)
    step = table.row_scale()
    slack = 1e-6 * w.abs().max(dim=1).values + 1e-7  # float32 arithmetic, not the quantiser
    assert (err <= step / 2 + slack).all()
    if scheme == "symmetric":
        # step = the row's max|w| / 127 rounded up to the 2^(1/16) grid: never finer, ≤ 4.4% coarser
        needed = w.abs().max(dim=1).values / 127
        assert (step >= needed * (1 - 1e-6)).all()
        assert (step[1:] <= needed[1:] * 2 ** (1 / 16) * (1 + 1e-5)).all()
        assert table.codes.dtype == torch.int8 and table.codes.abs().max() <= 127
        assert table.scale.dtype == torch.uint8 and table.offset is None
        return
    assert err[0] == 0  # affine: a constant row is its offset, exactly
    # the step is the row's range over 2^bits - 1 levels, up to float16 rounding
    covered = step * ((1 << bits) - 1)
    span = w.max(dim=1).values - w.min(dim=1).values
    assert (covered >= span * (1 - 1e-6)).all()
    assert (covered <= span * 1.002 + 2e-3 * w.abs().max(dim=1).values).all()


def test_symmetric_int8_costs_one_byte_a_row_beside_its_codes():
    # the goal at d = 64: ≥ 3.9× smaller than float32 (affine's 4-byte scale + offset reach 3.76×)
    table = quantize_rows(random_table(1000, 64, seed=2), 8)
    assert table.nbytes() == 1000 * (64 + 1) + 4
    assert 1000 * 64 * 4 / table.nbytes() >= 3.9


def test_symmetric_scales_span_sixteen_octaves_and_clamp_below():
    # rows 2^20 apart: the smallest rows fall below the grid and use its smallest scale, which
    # still bounds their error by half a step; an all-zero table comes back as zeros
    w = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    w[1] *= 2.0**-20
    w[2] = 0
    table = quantize_rows(w, 8)
    step = table.row_scale()
    assert step[1] == float(table.base) and (dequantize(table) - w).abs()[1].max() <= step[1] / 2
    assert torch.equal(dequantize(table)[2], torch.zeros(8))
    assert torch.equal(dequantize(quantize_rows(torch.zeros(3, 5), 8)), torch.zeros(3, 5))


def test_packing_is_two_codes_per_byte_and_invertible():
    codes = torch.randint(0, 16, (5, 9), dtype=torch.uint8)
    packed = pack_nibbles(codes)
    assert packed.shape == (5, 5)
    assert torch.equal(unpack_nibbles(packed, 9), codes)
    assert torch.equal(unpack_nibbles(packed[2], 9), codes[2])  # one row (a lookup) too
    assert quantize_rows(random_table(10, 64, 0), 4).codes.shape == (10, 32)


@pytest.mark.parametrize(("bits", "scheme"), [(8, "symmetric"), (8, "affine"), (4, "affine")])
def test_dot_all_equals_scoring_the_dequantised_table(bits, scheme):
    table = quantize_rows(random_table(1000, 24, seed=3), bits, scheme)
    queries = torch.randn(6, 24, generator=torch.Generator().manual_seed(1))
    expected = queries @ dequantize(table).T
    got = dot_all(table, queries, chunk_rows=128)  # several chunks and a ragged last one
    assert got.shape == (6, 1000)
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-3)


def test_lookup_expands_only_the_asked_rows():
    w = random_table(50, 16, seed=4)
    emb = QuantizedEmbedding.from_float(w, 8)
    ids = torch.tensor([[3, 7], [49, 0]])
    assert emb(ids).shape == (2, 2, 16)
    assert torch.allclose(emb(ids), emb.weight[ids])
    bias = QuantizedEmbedding.from_float(w[:, :1], 8)  # a bias column: one scale for all rows
    assert bias.codes.shape == (1, 50) and bias(ids).shape == (2, 2, 1)
    assert (bias.weight - w[:, :1]).abs().max() <= bias.table().row_scale()[0] / 2 + 1e-6
    assert emb.codes.dtype == torch.int8 and emb.scheme == "symmetric"
    old = QuantizedEmbedding.from_float(w, 8, "affine")  # artifacts written before symmetric int8
    assert old.codes.dtype == torch.uint8 and old.offset.dtype == torch.float16
    assert torch.allclose(old(ids), q.dequantize(old.table(), ids))


def test_bad_tables_are_clear_errors():
    with pytest.raises(LiverecError, match="bits"):
        quantize_rows(torch.zeros(3, 4), 2)
    with pytest.raises(LiverecError, match="not available at 4 bits"):
        quantize_rows(torch.zeros(3, 4), 4, "symmetric")
    with pytest.raises(LiverecError, match="NaN"):
        quantize_rows(torch.tensor([[1.0, float("nan")]]), 8)
    with pytest.raises(LiverecError, match="rows, dim"):
        quantize_rows(torch.zeros(3), 8)
