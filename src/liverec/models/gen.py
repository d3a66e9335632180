"""`gen`: a generative decoder over item ids, scalable in depth, width and heads.

    x⁽⁰⁾_t = E[s_t]                                    item embedding (no position embedding)
    x⁽ᵇ⁺¹⁾ = x + Attn(RMSNorm(x)),  then  x + SwiGLU(RMSNorm(x))   causal, rotary positions on q, k
    h_t    = RMSNorm(x⁽ᴮ⁾_t),   score(t, i) = h_t · E[i]          tied output embeddings

The block is the modern decoder's (Llama/Qwen-style): pre-norm RMSNorm, rotary position
embeddings (RoPE: attention depends on the distance between items, not on absolute slots, so the
left padding of a batch is invisible), SwiGLU feed-forward of width `ffn_multiplier` · D (rounded up
to a multiple of 8), no biases. Trained like SASRec with next-item cross-entropy on every position
(liverec.train.sequence); users are scored from their latest `max_len` items, and everything about
stored histories, cold users and scoring sequences passed in directly is SASRec's (this class reuses
it and replaces only the network).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from liverec.errors import LiverecError
from liverec.models.base import Recommender
from liverec.models.sasrec import SASRec


@dataclass
class GenConfig:
    max_len: int = 200  # L: how many of the latest items a user's state attends to
    embedding_dim: int = 64  # D: width of the residual stream and of the item embeddings
    num_blocks: int = 2  # decoder blocks
    num_heads: int = 2  # attention heads (D / heads must be even, for the rotation pairs)
    ffn_multiplier: float = 8 / 3  # SwiGLU hidden width / D (8/3 keeps the parameters of a 4x MLP)
    dropout: float = 0.1  # on the input embeddings and each sublayer's output
    rope_base: float = 10_000.0  # rotary frequency base
    init_std: float = 0.02  # N(0, std²) for every matrix; output projections scaled by 1/√(2B)

    def __post_init__(self) -> None:
        if min(self.max_len, self.embedding_dim, self.num_blocks, self.num_heads) < 1:
            raise LiverecError("gen: max_len, embedding_dim, num_blocks and num_heads must be >= 1")
        if self.embedding_dim % self.num_heads or (self.embedding_dim // self.num_heads) % 2:
            raise LiverecError(
                f"gen: embedding_dim={self.embedding_dim} / num_heads={self.num_heads} must be an even integer"
            )
        if not 0.0 <= self.dropout < 1.0 or self.ffn_multiplier <= 0 or self.init_std <= 0:
            raise LiverecError("gen: need 0 <= dropout < 1, ffn_multiplier > 0 and init_std > 0")


def rotary_tables(width: int, head_dim: int, base: float, device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape (width, head_dim / 2) for positions 0..width-1."""
    inv = base ** (-torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    angles = torch.arange(width, device=device, dtype=torch.float32)[:, None] * inv[None, :]
    return angles.cos(), angles.sin()


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Apply RoPE to x (B, H, W, Dh): each (even, odd) pair turned by its position's angle."""
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2)


class DecoderBlock(nn.Module):
    """x + Attn(RMSNorm(x)) with RoPE, then x + SwiGLU(RMSNorm(x)); no biases."""

    def __init__(self, dim: int, heads: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm_attn, self.norm_ffn = nn.RMSNorm(dim), nn.RMSNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)
        self.gate_up = nn.Linear(dim, 2 * hidden, bias=False)  # SwiGLU's gate and up projections
        self.down = nn.Linear(hidden, dim, bias=False)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, w, d = x.shape
        q, k, v = self.qkv(self.norm_attn(x)).view(b, w, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(rotate(q, cos, sin), rotate(k, cos, sin), v, attn_mask=mask)
        x = x + self.drop(self.out(y.transpose(1, 2).reshape(b, w, d)))
        gate, up = self.gate_up(self.norm_ffn(x)).chunk(2, dim=-1)
        return x + self.drop(self.down(F.silu(gate) * up))


class Gen(SASRec):
    """Decoder-only next-item model (RMSNorm, RoPE, SwiGLU); SASRec's history and scoring."""

    Config = GenConfig

    def __init__(self, config: GenConfig, num_users: int, num_items: int) -> None:
        Recommender.__init__(self, config, num_users, num_items)  # SASRec's network is replaced;
        # its buffers, stored histories and scoring are kept
        d = config.embedding_dim
        hidden = 8 * math.ceil(config.ffn_multiplier * d / 8)
        self.item_emb = nn.Embedding(num_items + 1, d, padding_idx=0)  # row 0 = padding
        self.emb_drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            DecoderBlock(d, config.num_heads, hidden, config.dropout) for _ in range(config.num_blocks)
        )
        self.ln_out = nn.RMSNorm(d)
        self.register_buffer("history", torch.zeros(num_users, config.max_len, dtype=torch.int32))
        self.register_buffer("item_count", torch.zeros(num_items))
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """N(0, init_std²) matrices, output projections (attention out, SwiGLU down) scaled by
        1/√(2·blocks) as in GPT-2, unit norms."""
        std = self.config.init_std
        for name, p in self.named_parameters():
            if p.dim() < 2:
                nn.init.ones_(p)
            elif name.endswith(("out.weight", "down.weight")):
                nn.init.normal_(p, std=std / math.sqrt(2 * self.config.num_blocks), generator=generator)
            else:
                nn.init.normal_(p, std=std, generator=generator)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def encode(self, seq: torch.Tensor) -> torch.Tensor:
        """Hidden states of left-padded model ids: seq (B, W), W <= max_len -> (B, W, D)."""
        b, w = seq.shape
        if w > self.config.max_len:
            raise LiverecError(f"gen: sequence width {w} exceeds max_len={self.config.max_len}")
        real = seq > 0
        x = self.emb_drop(self.item_emb(seq))
        causal = torch.ones(w, w, dtype=torch.bool, device=seq.device).tril()
        eye = torch.eye(w, dtype=torch.bool, device=seq.device)
        mask = (causal & (real[:, None, :] | eye)).unsqueeze(1)  # padded keys hidden; no empty row
        cos, sin = rotary_tables(w, self.config.embedding_dim // self.config.num_heads,
                                 self.config.rope_base, seq.device)
        for block in self.blocks:
            x = block(x, mask, cos, sin)
        return self.ln_out(x)
