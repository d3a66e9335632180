"""Row-wise affine quantisation of embedding tables to 8 or 4 bits, and scoring straight from codes.

    w[r, j] ≈ offset[r] + scale[r] · code[r, j]        code ∈ {0, …, 2^bits − 1}

Each row gets its own scale and offset (stored as float16, 4 bytes a row), so one outlier row does
not cost every other row its resolution. 4-bit codes are packed two to a byte (even column in the
low nibble). The offset is rounded down and the scale up when they are cast to float16, so the
stored pair still covers the row's range and the error stays within scale / 2.

Scoring never needs a float copy of the table, because the affine form factors out of a dot product:

    x · w[r] = scale[r] · (x · code[r]) + offset[r] · Σ_j x_j

so `dot_all` casts one chunk of codes at a time and applies scale and offset to the (B, chunk) result.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from liverec.errors import LiverecError

BITS = (8, 4)
_CHUNK_ROWS = 8192  # rows of codes cast to float at a time: 8192 × D floats, ~2 MB at D = 64


@dataclass
class QuantizedTable:
    """A (rows, dim) float table as per-row codes, scales and offsets."""

    codes: torch.Tensor  # (rows, dim) uint8 for 8 bits; (rows, ceil(dim / 2)) packed for 4 bits
    scale: torch.Tensor  # (rows,) float16
    offset: torch.Tensor  # (rows,) float16
    bits: int
    dim: int

    @property
    def rows(self) -> int:
        return self.codes.shape[0]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.codes, self.scale, self.offset))


def _nudge(x: torch.Tensor, exact: torch.Tensor, down: bool) -> torch.Tensor:
    """float16 `x` moved one step towards -inf (down) or +inf where it is above (below) `exact`."""
    wrong = x.float() > exact if down else x.float() < exact
    target = torch.full_like(x, -torch.inf if down else torch.inf)
    return torch.where(wrong, torch.nextafter(x, target), x)


def quantize_rows(weight: torch.Tensor, bits: int) -> QuantizedTable:
    """Quantise a (rows, dim) float table row by row to `bits` (8 or 4)."""
    if bits not in BITS:
        raise LiverecError(f"quantisation bits must be one of {list(BITS)}, got {bits}")
    if weight.dim() != 2 or weight.numel() == 0:
        raise LiverecError(f"expected a non-empty (rows, dim) table, got shape {list(weight.shape)}")
    w = weight.detach().float().cpu()
    if not torch.isfinite(w).all() or w.abs().max() > 6.0e4:
        raise LiverecError("the table has NaN, infinite or > 6e4 values; float16 scales cannot hold it")
    levels = (1 << bits) - 1
    lo, hi = w.min(dim=1).values, w.max(dim=1).values  # (rows,)
    offset = _nudge(lo.half(), lo, down=True)  # stored offset <= row minimum
    scale = _nudge(((hi - offset.float()) / levels).half(), (hi - offset.float()) / levels, down=False)
    safe = torch.where(scale > 0, scale.float(), torch.ones_like(lo))  # constant rows: all codes 0
    codes = ((w - offset.float()[:, None]) / safe[:, None]).round_().clamp_(0, levels).to(torch.uint8)
    if bits == 4:
        codes = pack_nibbles(codes)
    return QuantizedTable(codes, scale, offset, bits, w.shape[1])


def pack_nibbles(codes: torch.Tensor) -> torch.Tensor:
    """(rows, dim) uint8 values < 16 -> (rows, ceil(dim / 2)): column 2j low nibble, 2j+1 high."""
    if codes.shape[1] % 2:
        codes = torch.nn.functional.pad(codes, (0, 1))
    return codes[:, 0::2] | (codes[:, 1::2] << 4)


def unpack_nibbles(packed: torch.Tensor, dim: int) -> torch.Tensor:
    """Inverse of `pack_nibbles`: (..., ceil(dim / 2)) -> (..., dim) uint8."""
    both = torch.stack([packed & 0x0F, packed >> 4], dim=-1)  # (..., ceil(dim / 2), 2)
    return both.flatten(-2)[..., :dim]


def codes_of(table: QuantizedTable, rows: torch.Tensor | slice) -> torch.Tensor:
    """Unpacked codes of `rows` (any index shape) as float32: rows.shape + (dim,)."""
    codes = table.codes[rows]
    if table.bits == 4:
        codes = unpack_nibbles(codes, table.dim)
    return codes.float()


def dequantize(table: QuantizedTable, rows: torch.Tensor | None = None) -> torch.Tensor:
    """Float32 rows (default: the whole table); only the asked rows are expanded."""
    index = slice(None) if rows is None else rows
    codes = codes_of(table, index)  # (..., dim)
    return codes * table.scale[index].float()[..., None] + table.offset[index].float()[..., None]


def dot_all(table: QuantizedTable, queries: torch.Tensor, chunk_rows: int = _CHUNK_ROWS) -> torch.Tensor:
    """queries (B, dim) -> (B, rows) = queries @ dequantize(table).T, one chunk of codes at a time."""
    q = queries.float()
    q_sum = q.sum(dim=1, keepdim=True)  # (B, 1): multiplies the offsets
    out = torch.empty(q.shape[0], table.rows, dtype=torch.float32, device=q.device)
    for start in range(0, table.rows, chunk_rows):
        stop = min(start + chunk_rows, table.rows)
        raw = q @ codes_of(table, slice(start, stop)).T  # (B, chunk)
        out[:, start:stop] = (
            raw * table.scale[start:stop].float() + q_sum * table.offset[start:stop].float()
        )
    return out
