"""An independent SASRec on the ML-1M sequence file, sharing no code with liverec: a cross-check.

    OMP_NUM_THREADS=1 python benchmarks/sasrec_crosscheck.py --epochs 100 --out runs/sasrec-crosscheck.json

Why: liverec's `sasrec` recipe ends under the SASRec+ figure (Klenitskiy & Vasilev 2023) on
`ml-1m-seq`. If a second, minimal implementation written the way that paper's setup describes (the
original SASRec block: normalised-query residual, attention-weight dropout; right-padded batches with
positions counted from the oldest item; N(0, 0.02²) init; full cross-entropy over the catalogue plus
the padding class; Adam 1e-3, batches of 128 random users, L = 200, D = 64, 2 blocks, 1 head,
dropout 0.1) scores the same on this file, the gap lies in the data, not in liverec's model,
trainer or evaluator. Everything here is plain numpy/PyTorch: its own reader, 5-core filter,
leave-one-out split, training loop and full-ranking metric (earlier items masked).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def read_sequences(path: Path, min_item_users: int = 5) -> tuple[list[np.ndarray], int]:
    """One line per user (`user item item ...`, oldest first) -> per-user arrays of ids 1..I."""
    rows = [
        np.array(line.split()[1:], dtype=np.int64)
        for line in path.read_text().splitlines()
        if line.strip()
    ]
    items, counts = np.unique(np.concatenate(rows), return_counts=True)
    kept = items[counts >= min_item_users]
    lookup = {int(m): i + 1 for i, m in enumerate(kept)}  # 0 is padding
    seqs = [np.array([lookup[int(m)] for m in r if int(m) in lookup], dtype=np.int64) for r in rows]
    return seqs, len(kept)


class Block(nn.Module):
    """The original SASRec block: q = LN(x); x = q + Attn(q, x, x); x = LN(x); x = x + FFN(x)."""

    def __init__(self, d: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.ln_q, self.ln_f = nn.LayerNorm(d, eps=1e-8), nn.LayerNorm(d, eps=1e-8)
        self.attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(
            nn.Linear(d, d), nn.Dropout(dropout), nn.ReLU(), nn.Linear(d, d), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor, causal: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        q = self.ln_q(x)
        x = q + self.attn(q, x, x, attn_mask=causal, need_weights=False)[0]
        x = self.ln_f(x)
        return (x + self.ffn(x)) * ~pad


class Model(nn.Module):
    def __init__(
        self, num_items: int, max_len: int, d: int, blocks: int, heads: int, dropout: float
    ) -> None:
        super().__init__()
        self.item = nn.Embedding(num_items + 1, d, padding_idx=0)
        self.pos = nn.Embedding(max_len, d)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(d, heads, dropout) for _ in range(blocks))
        self.ln = nn.LayerNorm(d, eps=1e-8)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
                if isinstance(m, nn.Linear) and m.bias is not None:
                    nn.init.zeros_(m.bias)
        with torch.no_grad():
            self.item.weight[0].zero_()

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """Right-padded ids (B, W) -> scores (B, W, I + 1) of the next item at every position."""
        w = seq.shape[1]
        pad = (seq == 0).unsqueeze(-1)
        x = self.item(seq) * math.sqrt(self.item.embedding_dim) + self.pos.weight[:w]
        x = self.drop(x) * ~pad
        # True = may not attend: position t sees items 0..t only
        causal = torch.ones(w, w, dtype=torch.bool, device=seq.device).triu(1)
        for block in self.blocks:
            x = block(x, causal, pad)
        return self.ln(x) @ self.item.weight.T


def right_pad(rows: list[np.ndarray], value: int) -> torch.Tensor:
    out = np.full((len(rows), max(len(r) for r in rows)), value, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return torch.from_numpy(out)


@torch.no_grad()
def ndcg_hr_at_10(
    model: Model,
    inputs: list[np.ndarray],
    seen: list[np.ndarray],
    targets: np.ndarray,
    max_len: int,
) -> tuple[float, float]:
    model.eval()
    ranks = []
    for s in range(0, len(inputs), 256):
        rows = [r[-max_len:] for r in inputs[s : s + 256]]
        scores = model(right_pad(rows, 0))
        last = torch.tensor([len(r) - 1 for r in rows])
        scores = scores[torch.arange(len(rows)), last]  # (b, I + 1)
        scores[:, 0] = -torch.inf
        for i, h in enumerate(seen[s : s + 256]):
            scores[i, torch.from_numpy(h)] = -torch.inf
        target = torch.from_numpy(targets[s : s + 256])
        ranks.append((scores > scores.gather(1, target[:, None])).sum(1))
    rank = torch.cat(ranks).double()
    hit = rank < 10
    model.train()
    return float((hit / torch.log2(rank + 2)).mean()), float(hit.double().mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--data",
        type=Path,
        default=Path(os.environ.get("LIVEREC_DATA", "../shared/data")) / "ml-1m-seq/ml-1m.seq.txt",
    )
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--eval-every", type=int, default=2)
    p.add_argument(
        "--patience", type=int, default=10, help="evaluations without a better validation NDCG@10"
    )
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    max_len, batch = 200, 128
    seqs, num_items = read_sequences(a.data)
    train = [s[:-2] for s in seqs]
    valid_in, valid_y = train, np.array([s[-2] for s in seqs])
    test_in, test_y = [s[:-1] for s in seqs], np.array([s[-1] for s in seqs])
    windows = [s[-max_len - 1 :] for s in train]
    print(f"{len(seqs)} users, {num_items} items, {sum(map(len, seqs))} interactions", flush=True)
    model = Model(num_items, max_len, 64, 2, 1, 0.1)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    best, best_state, since, log = -1.0, None, 0, []
    t_start = time.perf_counter()
    for epoch in range(1, a.epochs + 1):
        t0, total = time.perf_counter(), 0.0
        batches = np.array_split(rng.permutation(len(windows)), math.ceil(len(windows) / batch))
        for idx in batches:
            rows = [windows[i] for i in idx]
            x, y = right_pad([r[:-1] for r in rows], 0), right_pad([r[1:] for r in rows], -100)
            loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten(), ignore_index=-100)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.detach().item()
        line = {
            "epoch": epoch,
            "loss": round(total / len(batches), 4),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        if epoch % a.eval_every == 0:
            line["valid_ndcg10"], line["valid_hr10"] = ndcg_hr_at_10(
                model, valid_in, valid_in, valid_y, max_len
            )
            if line["valid_ndcg10"] > best:
                best, since = line["valid_ndcg10"], 0
                best_state = {k: v.clone() for k, v in model.state_dict().items()}
            else:
                since += 1
        log.append(line)
        print(json.dumps(line), flush=True)
        if a.patience and since >= a.patience:
            break
    model.load_state_dict(best_state)
    ndcg, hr = ndcg_hr_at_10(model, test_in, test_in, test_y, max_len)
    result = {
        "best_valid_ndcg10": best,
        "test_ndcg10": ndcg,
        "test_hr10": hr,
        "train_seconds": round(time.perf_counter() - t_start, 1),
        "epochs": log,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "epochs"}), flush=True)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
