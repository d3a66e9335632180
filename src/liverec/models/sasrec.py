"""SASRec (Kang & McAuley, ICDM 2018): causal self-attention over a user's latest L items.

    x⁽⁰⁾_t = √D · E[s_t] + P[t]                    item embedding (scaled) + learned position
    x⁽ᵇ⁺¹⁾ = x + Attn(LN(x)),  then  x + FFN(LN(x))  b = 1..num_blocks, causal mask, dropout
    h_t    = LN(x⁽ᴮ⁾_t)                              the state after reading s_1..s_t
    score(t, i) = h_t · E[i]                         shared item embeddings as the output layer

Position t of h predicts item s_{t+1}; a user is represented by h at their latest item. Blocks
are pre-norm (LN before each sublayer) by default; `norm = "query"` is the original's
normalised-query residual (same parameters, see `Block`).

Inputs are left-padded (B, W) tensors of *model ids*: item index + 1, with 0 as padding. Positions
count back from the right edge (the latest item always gets P[L-1]; `positions = "left"` counts
from the window's oldest item instead) and padded keys are masked, so the same history gives the
same outputs whatever the padded width — a batch can be cut to its longest real sequence. Losses live in liverec.train.sequence, not here.

Users are scored from their stored latest sequences (`set_history`, a buffer saved with the
weights); `score_sequences` scores sequences passed in directly (fresh events at serving time).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from liverec.data.interactions import Interactions
from liverec.data.sequences import last_items, pad_sequences
from liverec.errors import LiverecError
from liverec.models.base import Recommender


@dataclass
class SASRecConfig:
    max_len: int = 50  # L: how many of the latest items a user's state attends to
    embedding_dim: int = 64  # D: item and position embeddings, hidden size of every block
    num_blocks: int = 2  # stacked attention + feed-forward blocks
    num_heads: int = 1  # attention heads (D must be divisible by it)
    dropout: float = 0.2  # on the input embeddings and on each sublayer's output (and FFN hidden)
    attention_dropout: float = 0.0  # on attention weights (as the original); it roughly doubles
    # the attention cost on CPU, where it forces the (B, H, W, W) weights to be materialised
    norm: str = "pre"  # pre: pre-norm blocks; query: the original's normalised-query residual
    init: str = "xavier"  # xavier: Xavier-normal matrices (reference PyTorch SASRec); normal: N(0, 0.02²)
    # (the SASRec+ / RecBole / GPT-2 initialisation)
    positions: str = "right"  # right: P[L-1] = the latest item; left: P[0] = the window's oldest item
    # (what the reference code's right-padded batches give: a position says how far into the window)

    def __post_init__(self) -> None:
        if self.max_len < 1 or self.embedding_dim < 1 or self.num_blocks < 1 or self.num_heads < 1:
            raise LiverecError("sasrec: max_len, embedding_dim, num_blocks and num_heads must be >= 1")
        if self.embedding_dim % self.num_heads:
            raise LiverecError(
                f"sasrec: embedding_dim={self.embedding_dim} is not divisible by num_heads={self.num_heads}"
            )
        if self.norm not in ("pre", "query"):
            raise LiverecError(f"sasrec: norm must be 'pre' or 'query', got {self.norm!r}")
        if self.positions not in ("right", "left"):
            raise LiverecError(f"sasrec: positions must be 'right' or 'left', got {self.positions!r}")
        if self.init not in ("xavier", "normal"):
            raise LiverecError(f"sasrec: init must be 'xavier' or 'normal', got {self.init!r}")
        for name in ("dropout", "attention_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise LiverecError(f"sasrec: {name} must be in [0, 1), got {getattr(self, name)}")


class CausalSelfAttention(nn.Module):
    """Multi-head attention where position t reads positions <= t (and never a padded key)."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)  # queries, keys and values in one matmul
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, source: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, W, D) queries, `source` (B, W, D) keys and values (default x), mask (B, 1, W, W)
        bool (True = may attend) -> (B, W, D)."""
        b, w, d = x.shape
        if source is None:
            q, k, v = self.qkv(x).view(b, w, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        else:
            w_q, w_kv = self.qkv.weight.split([d, 2 * d])
            b_q, b_kv = self.qkv.bias.split([d, 2 * d])
            q = F.linear(x, w_q, b_q).view(b, w, self.heads, d // self.heads).transpose(1, 2)
            kv = F.linear(source, w_kv, b_kv).view(b, w, 2, self.heads, d // self.heads)
            k, v = kv.permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(  # (B, H, W, D/H)
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.proj(y.transpose(1, 2).reshape(b, w, d))


class Block(nn.Module):
    """Transformer block, FFN with ReLU and width D as in SASRec. norm = "pre": x + Attn(LN(x)), then
    x + FFN(LN(x)). norm = "query", the original SASRec's: q = LN(x); x = q + Attn(q, keys and
    values from x); then x = LN(x) + FFN(LN(x))."""

    def __init__(self, dim: int, heads: int, dropout: float, attention_dropout: float, norm: str = "pre") -> None:
        super().__init__()
        self.norm = norm
        self.ln_attn = nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, heads, attention_dropout)
        self.ln_ffn = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(dim, dim), nn.Dropout(dropout)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.norm == "query":
            q = self.ln_attn(x)
            x = self.ln_ffn(q + self.drop(self.attn(q, mask, source=x)))
            return x + self.ffn(x)
        x = x + self.drop(self.attn(self.ln_attn(x), mask))
        return x + self.ffn(self.ln_ffn(x))


class SASRec(Recommender):
    """Self-attentive sequential recommender; users are their latest `max_len` items."""

    Config = SASRecConfig
    sequential = True

    def __init__(self, config: SASRecConfig, num_users: int, num_items: int) -> None:
        super().__init__(config, num_users, num_items)
        d = config.embedding_dim
        self.item_emb = nn.Embedding(num_items + 1, d, padding_idx=0)  # E: row 0 = padding, (I+1, D)
        self.pos_emb = nn.Embedding(config.max_len, d)  # P: (L, D), P[L-1] = the latest item
        self.emb_drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            Block(d, config.num_heads, config.dropout, config.attention_dropout, config.norm)
            for _ in range(config.num_blocks)
        )
        self.ln_out = nn.LayerNorm(d)
        # each user's latest items as model ids (0 = padding; int32: half the size of an artifact whose
        # file is mostly these sequences), and item counts for users without any
        self.register_buffer("history", torch.zeros(num_users, config.max_len, dtype=torch.int32))
        self.register_buffer("item_count", torch.zeros(num_items))
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Matrices Xavier-normal or N(0, 0.02²) (config.init), zero biases, unit LayerNorms."""
        for name, p in self.named_parameters():
            if p.dim() > 1 and self.config.init == "normal":
                nn.init.normal_(p, std=0.02, generator=generator)
            elif p.dim() > 1:
                nn.init.xavier_normal_(p, generator=generator)
            elif name.endswith("bias"):
                nn.init.zeros_(p)
            else:
                nn.init.ones_(p)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    # ------------------------------------------------------------------ the network
    def encode(self, seq: torch.Tensor) -> torch.Tensor:
        """Hidden states of left-padded model ids: seq (B, W) with W <= max_len -> (B, W, D).

        Row b, column t is the state after reading seq[b, :t+1]; padded columns hold garbage that
        no real column ever attends to.
        """
        b, w = seq.shape
        if w > self.config.max_len:
            raise LiverecError(f"sasrec: sequence width {w} exceeds max_len={self.config.max_len}")
        real = seq > 0  # (B, W)
        x = self.item_emb(seq) * math.sqrt(self.config.embedding_dim)  # (B, W, D)
        if self.config.positions == "right":
            x = x + self.pos_emb.weight[self.config.max_len - w :]  # (W, D) broadcast over rows
        else:  # the k-th real item of a row gets P[k-1]; padding gets P[0] (never attended to)
            x = x + self.pos_emb((real.cumsum(1) - 1).clamp_(min=0))
        x = self.emb_drop(x)
        causal = torch.ones(w, w, dtype=torch.bool, device=seq.device).tril()  # (W, W) key <= query
        eye = torch.eye(w, dtype=torch.bool, device=seq.device)
        # padded keys are hidden from every query; a padded query keeps itself (no empty softmax row)
        mask = (causal & (real[:, None, :] | eye)).unsqueeze(1)  # (B, 1, W, W)
        for block in self.blocks:
            x = block(x, mask)
        return self.ln_out(x)

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        """Output embeddings of catalogue indices: items (...) -> (..., D)."""
        return self.item_emb(items + 1)

    def output_embeddings(self) -> torch.Tensor:
        """(I, D) output layer: the item embeddings without the padding row (trainable view)."""
        return self.item_emb.weight[1:]

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Scores of the whole catalogue: hidden (..., D) -> (..., num_items)."""
        return hidden @ self.output_embeddings().T

    def last_state(self, seq: torch.Tensor, chunk_size: int = 256) -> torch.Tensor:
        """State at the latest item: seq (B, W) model ids -> (B, D).

        Rows are encoded in chunks of similar length, each cut to its longest row (exact: positions
        depend only on the real items): short histories cost little next to long ones.
        """
        lengths = (seq > 0).sum(1)  # (B,)
        if not len(seq):
            return self.item_emb.weight.new_zeros(0, self.config.embedding_dim)
        order = torch.argsort(lengths)
        parts = []
        for rows in order.split(chunk_size):  # a loop over chunks of rows
            width = max(int(lengths[rows[-1]]), 1)
            parts.append(self.encode(seq[rows, -width:])[:, -1])  # (b, D)
        return torch.cat(parts)[torch.argsort(order)]

    # ------------------------------------------------------------------ stored histories
    @torch.no_grad()
    def set_history(self, history: Interactions) -> None:
        """Keep each user's latest max_len items of `history` (time-ordered) as their sequence."""
        if (history.num_users, history.num_items) != (self.num_users, self.num_items):
            raise LiverecError(
                f"sasrec: history covers {history.num_users} users x {history.num_items} items, "
                f"the model {self.num_users} x {self.num_items}"
            )
        seqs = torch.from_numpy(last_items(history, self.config.max_len) + 1)  # PAD (-1) -> 0
        self.history.copy_(seqs)
        self.item_count.copy_(torch.from_numpy(np.bincount(history.item, minlength=self.num_items)))

    def _user_states(self, users: torch.Tensor) -> torch.Tensor:
        return self.last_state(self.history[users])  # (B, D)

    def _cold(self, scores: torch.Tensor, users: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """Users with an empty stored sequence get item counts (popularity) instead of a state
        computed from padding alone."""
        cold = (self.history[users, -1] == 0)[:, None]  # (B, 1)
        if not cold.any():
            return scores
        counts = self.item_count if items is None else self.item_count[items]
        return torch.where(cold, counts.to(scores.dtype).expand_as(scores), scores)

    # ------------------------------------------------------------------ the Recommender protocol
    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """users (B,), items (B, M) -> (B, M), from the users' stored sequences."""
        h = self._user_states(users)  # (B, D)
        scores = torch.bmm(self.item_vectors(items), h.unsqueeze(-1)).squeeze(-1)
        return self._cold(scores, users, items)

    def score_shared(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """users (B,), items (M,) -> (B, M)."""
        scores = self._user_states(users) @ self.item_vectors(items).T
        return self._cold(scores, users, items)

    def score_all(self, users: torch.Tensor) -> torch.Tensor:
        """users (B,) -> (B, I)."""
        return self._cold(self.logits(self._user_states(users)), users)

    def score_sequences(self, sequences: Sequence[Sequence[int]]) -> torch.Tensor:
        """Scores of the catalogue after each given sequence of item indices (oldest first):
        B sequences -> (B, I). Only the latest max_len items count."""
        padded = pad_sequences(list(sequences), self.config.max_len, self.num_items)
        seq = torch.from_numpy(padded + 1).to(self.item_emb.weight.device)
        return self.logits(self.last_state(seq))

    def user_embeddings(self) -> torch.Tensor:
        """(U, D) states of every stored sequence (chunked); score_all = this @ item_embeddings().T
        for every user with a history."""
        with torch.no_grad():
            users = torch.arange(self.num_users, device=self.history.device)
            return torch.cat([self._user_states(chunk) for chunk in users.split(1024)])

    def item_embeddings(self) -> torch.Tensor:
        return self.item_emb.weight[1:].detach()

    def regularization(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Squared L2 norm of the item embeddings a batch touches (weight decay covers the rest)."""
        return self.item_vectors(items).pow(2).sum()
