"""Training losses as pure functions of scores (logits), so any model and trainer can use them.

Shapes: `pos` (B,) scores of the positive items, `neg` (B, N) scores of N negatives per positive
(a (B,) `neg` is read as N = 1). All losses return a scalar mean.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _as_matrix(neg: torch.Tensor) -> torch.Tensor:
    return neg[:, None] if neg.dim() == 1 else neg


def bpr_loss(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Bayesian personalised ranking (Rendle et al., 2009).

        L = 1/(B N) * sum_{b, j} -log sigmoid(pos_b - neg_{b, j})
    """
    neg = _as_matrix(neg)
    return -F.logsigmoid(pos[:, None] - neg).mean()


def bce_loss(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with positives labelled 1 and negatives 0 (the NCF pointwise loss).

    Every sampled negative is one training instance of the same weight as a positive, as in NCF
    (He et al., 2017), so the mean is over all B (1 + N) terms:

        L = 1/(B (1 + N)) * [ sum_b -log sigmoid(pos_b) + sum_{b, j} -log(1 - sigmoid(neg_{b, j})) ]

    using -log sigmoid(x) = softplus(-x) and -log(1 - sigmoid(x)) = softplus(x) for stability.
    """
    neg = _as_matrix(neg)
    total = F.softplus(-pos).sum() + F.softplus(neg).sum()
    return total / (pos.numel() + neg.numel())


def sampled_softmax_loss(
    pos: torch.Tensor,
    neg: torch.Tensor,
    log_q_pos: torch.Tensor | None = None,
    log_q_neg: torch.Tensor | None = None,
) -> torch.Tensor:
    """Softmax cross-entropy of each positive against its N sampled negatives.

        L = 1/B * sum_b [ -s_b0 + log( exp(s_b0) + sum_j exp(s_bj) ) ]
        with s_b0 = pos_b - log q(pos_b),  s_bj = neg_{b, j} - log q(neg_{b, j})

    The logQ correction (Yi et al., 2019) subtracts the log sampling probability of each item so
    that popular (often-sampled) items are not over-penalised; omit `log_q_*` for none.
    `log_q_neg` may be (B, N) or (N,) (shared negatives); `log_q_pos` (B,).
    """
    neg = _as_matrix(neg)
    if log_q_pos is not None:
        pos = pos - log_q_pos
    if log_q_neg is not None:
        neg = neg - log_q_neg
    logits = torch.cat([pos[:, None], neg], dim=1)  # (B, 1 + N)
    return (torch.logsumexp(logits, dim=1) - logits[:, 0]).mean()


def softmax_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Full softmax cross-entropy over the catalogue (e.g. next-item prediction).

        L = 1/B * sum_b [ -logits_{b, t_b} + log sum_i exp(logits_{b, i}) ]

    `logits` (B, I), `target` (B,) item indices.
    """
    return F.cross_entropy(logits, target.long())
