"""Row-wise quantisation of embedding tables to 8 or 4 bits, and scoring straight from codes.

Two schemes, each the one that meets its goal (issue 8) at the smallest size:

    symmetric (8 bits):  w[r, j] ≈ scale[r] · code[r, j]                  code ∈ {-127, …, 127}
    affine    (4 bits):  w[r, j] ≈ offset[r] + scale[r] · code[r, j]      code ∈ {0, …, 15}

Every row gets its own scale, so one outlier row does not cost every other row its resolution.

Why symmetric int8 with a 1-byte scale: an affine row at d = 64 carries a float16 scale and offset
(4 bytes) beside its 64 codes, which caps the table at 3.77× smaller than float32 (goal ≥ 3.9×).
Measured on the trained ML-1M MF (d = 64) tables, relative reconstruction error (Frobenius, worst row):

    affine, fp16 scale + offset      5.2e-3, 7.9e-3    3.77×
    symmetric, fp16 scale            5.9e-3, 9.6e-3    3.88×
    symmetric, 1-byte log scale      6.1e-3, 1.1e-2    3.94×   <- used
    symmetric, fp16 scale per 8 rows 7.7e-3, 2.8e-2    3.99×

Trained embedding rows are centred near zero, so dropping the offset costs little; a scale shared by
a group of rows costs the small rows of the group most of their resolution (worst row 2.8e-2). The
1-byte scale is an exponent on a per-table grid, scale[r] = base · 2^(e[r] / 16), always rounded
up, so a row's step is at most 2^(1/16) = 4.4% coarser than its own max|w| / 127 and the error stays
within scale[r] / 2. The 256 codes span 16 octaves of row magnitude; rows smaller than that (and
all-zero rows) use the grid's smallest scale, still within the same bound. 4-bit codes are packed
two to a byte; there the offset is worth its bytes (16 levels, and 7.1× is already met).

Scoring never needs a float copy of the table, because the scale (and offset) factor out of a dot
product, which is exact to the stored codes up to float32 rounding:

    x · w[r] = scale[r] · (x · code[r]) (+ offset[r] · Σ_j x_j)

so `dot_all` casts one chunk of codes at a time and applies scale and offset to the (B, chunk) result.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from liverec.errors import LiverecError

BITS = (8, 4)
SCHEMES = ("symmetric", "affine")
DEFAULT_SCHEME = {8: "symmetric", 4: "affine"}
_CHUNK_ROWS = 8192  # rows of codes cast to float at a time: 8192 × D floats, ~2 MB at D = 64
_STEPS_PER_OCTAVE = 16  # symmetric scale grid: 2^(1/16) apart, 255 / 16 ≈ 16 octaves in a byte
_SYM_MAX = 127  # symmetric codes -127..127: -128 unused so that negating a row is exact


@dataclass
class QuantizedTable:
    """A (rows, dim) float table as per-row codes and scales (and offsets, affine scheme).

    symmetric: codes (rows, dim) int8; scale (rows,) uint8 exponents; base (1,) float32
    affine:    codes (rows, dim) uint8, 4 bits packed (rows, ceil(dim / 2)); scale, offset float16
    """

    codes: torch.Tensor
    scale: torch.Tensor
    offset: torch.Tensor | None
    bits: int
    dim: int
    base: torch.Tensor | None = None

    @property
    def rows(self) -> int:
        return self.codes.shape[0]

    @property
    def scheme(self) -> str:
        return "symmetric" if self.base is not None else "affine"

    def row_scale(self, rows: torch.Tensor | slice = slice(None)) -> torch.Tensor:
        """float32 step of `rows` (decoded from the stored exponents for the symmetric scheme)."""
        if self.base is None:
            return self.scale[rows].float()
        return decode_scales(self.scale[rows], self.base)

    def nbytes(self) -> int:
        parts = (self.codes, self.scale, self.offset, self.base)
        return sum(t.numel() * t.element_size() for t in parts if t is not None)


def decode_scales(exponents: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """uint8 exponents -> float32 scales base · 2^(e / 16); the one formula used everywhere."""
    return base.float() * torch.exp2(exponents.float() / _STEPS_PER_OCTAVE)


def encode_scales(needed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Smallest grid scales >= `needed` (rows,): (uint8 exponents, (1,) float32 base)."""
    top = float(needed.max())
    if top == 0.0:  # an all-zero table: any scale gives codes 0
        return torch.zeros_like(needed, dtype=torch.uint8), torch.ones(1)
    # the top exponent must reach the largest row (1e-6: float32 rounding of exp2)
    floor = top / 2.0 ** (255 / _STEPS_PER_OCTAVE) * (1 + 1e-6)
    base = torch.tensor([max(float(needed[needed > 0].min()), floor)])
    exact = _STEPS_PER_OCTAVE * torch.log2(needed.clamp(min=float(base)) / base)
    e = exact.sub_(1e-4).ceil_().clamp_(0, 255)  # -1e-4: a row exactly on the grid stays there
    short = decode_scales(e, base) < needed  # log2 / exp2 rounding: one step up
    e = torch.where(short, (e + 1).clamp(max=255), e)
    return e.to(torch.uint8), base


def quantize_rows(weight: torch.Tensor, bits: int, scheme: str | None = None) -> QuantizedTable:
    """Quantise a (rows, dim) float table row by row to `bits` (8 or 4) with `scheme`
    (default: symmetric for 8 bits, affine for 4)."""
    if bits not in BITS:
        raise LiverecError(f"quantisation bits must be one of {list(BITS)}, got {bits}")
    scheme = scheme or DEFAULT_SCHEME[bits]
    if scheme not in SCHEMES or (scheme == "symmetric" and bits != 8):
        raise LiverecError(f"quantisation scheme {scheme!r} is not available at {bits} bits")
    if weight.dim() != 2 or weight.numel() == 0:
        raise LiverecError(f"expected a non-empty (rows, dim) table, got shape {list(weight.shape)}")
    w = weight.detach().float().cpu()
    if not torch.isfinite(w).all():
        raise LiverecError("the table has NaN or infinite values; it cannot be quantised")
    if scheme == "symmetric":
        exponents, base = encode_scales(w.abs().max(dim=1).values / _SYM_MAX)
        scale = decode_scales(exponents, base)  # (rows,) > 0
        codes = (w / scale[:, None]).round_().clamp_(-_SYM_MAX, _SYM_MAX).to(torch.int8)
        return QuantizedTable(codes, exponents, None, bits, w.shape[1], base)
    if w.abs().max() > 6.0e4:
        raise LiverecError("the table has values > 6e4; the float16 scales of int4 cannot hold it")
    levels = (1 << bits) - 1
    lo, hi = w.min(dim=1).values, w.max(dim=1).values  # (rows,)
    offset = _nudge(lo.half(), lo, down=True)  # stored offset <= row minimum
    scale = _nudge(((hi - offset.float()) / levels).half(), (hi - offset.float()) / levels, down=False)
    safe = torch.where(scale > 0, scale.float(), torch.ones_like(lo))  # constant rows: all codes 0
    codes = ((w - offset.float()[:, None]) / safe[:, None]).round_().clamp_(0, levels).to(torch.uint8)
    if bits == 4:
        codes = pack_nibbles(codes)
    return QuantizedTable(codes, scale, offset, bits, w.shape[1])


def _nudge(x: torch.Tensor, exact: torch.Tensor, down: bool) -> torch.Tensor:
    """float16 `x` moved one step towards -inf (down) or +inf where it is above (below) `exact`:
    the offset is rounded down and the scale up, so the stored pair still covers the row's range."""
    wrong = x.float() > exact if down else x.float() < exact
    target = torch.full_like(x, -torch.inf if down else torch.inf)
    return torch.where(wrong, torch.nextafter(x, target), x)


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
    out = codes_of(table, index) * table.row_scale(index)[..., None]  # (..., dim)
    if table.offset is not None:
        out += table.offset[index].float()[..., None]
    return out


def dot_all(table: QuantizedTable, queries: torch.Tensor, chunk_rows: int = _CHUNK_ROWS) -> torch.Tensor:
    """queries (B, dim) -> (B, rows) = queries @ dequantize(table).T, one chunk of codes at a time."""
    q = queries.float()
    q_sum = q.sum(dim=1, keepdim=True) if table.offset is not None else None  # (B, 1): × offsets
    out = torch.empty(q.shape[0], table.rows, dtype=torch.float32, device=q.device)
    for start in range(0, table.rows, chunk_rows):
        stop = min(start + chunk_rows, table.rows)
        part = (q @ codes_of(table, slice(start, stop)).T).mul_(table.row_scale(slice(start, stop)))
        if q_sum is not None:
            part += q_sum * table.offset[start:stop].float()
        out[:, start:stop] = part
    return out
