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


def gbce_loss(pos: torch.Tensor, neg: torch.Tensor, num_items: int, t: float = 0.75) -> torch.Tensor:
    """Generalised BCE of gSASRec (Petrov & Macdonald, RecSys 2023) for N uniform negatives.

    Sampling N of the I - 1 other items makes BCE over-confident on positives; raising the
    positive's probability to the power β calibrates it back, with α = N / (I - 1):

        β = α (t (1 - 1/α) + 1/α)        t = 0: plain BCE (β = 1), t = 1: β = α
        L = 1/(B (1 + N)) * [ sum_b -β log sigmoid(pos_b) + sum_{b, j} -log(1 - sigmoid(neg_{b, j})) ]
    """
    neg = _as_matrix(neg)
    alpha = neg.shape[1] / max(num_items - 1, 1)
    beta = alpha * (t * (1.0 - 1.0 / alpha) + 1.0 / alpha)
    total = beta * F.softplus(-pos).sum() + F.softplus(neg).sum()
    return total / (pos.numel() + neg.numel())


class _ChunkedSoftmaxCE(torch.autograd.Function):
    """Mean softmax cross-entropy of `hidden @ weight.T`, computed over row chunks with the
    gradients formed in the same pass: the (T, I) logits never exist whole, and no large buffer is
    kept for backward (on CPU that halves the time of the unfused version; the fresh (T, I)
    allocations alone cost page faults)."""

    @staticmethod
    def forward(ctx, hidden, weight, target, chunk_size):
        n = hidden.shape[0]
        need_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        total = hidden.new_zeros((), dtype=torch.float64)
        grad_hidden = torch.empty_like(hidden) if need_grad else None
        grad_weight = torch.zeros_like(weight) if need_grad else None
        for start in range(0, n, chunk_size):  # a loop over chunks of rows, not over rows
            h, t = hidden[start : start + chunk_size], target[start : start + chunk_size]
            logits = h @ weight.T  # (c, I)
            lse = torch.logsumexp(logits, dim=1)  # (c,)
            total += (lse - logits.gather(1, t[:, None]).squeeze(1)).sum(dtype=torch.float64)
            if need_grad:
                probs = logits.sub_(lse[:, None]).exp_()  # softmax, in place: d loss / d logits
                probs[torch.arange(t.numel(), device=t.device), t] -= 1.0
                grad_hidden[start : start + chunk_size] = probs @ weight
                grad_weight.addmm_(probs.T, h)
        if need_grad:
            ctx.save_for_backward(grad_hidden / n, grad_weight / n)
        return (total / n).to(hidden.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        grad_hidden, grad_weight = ctx.saved_tensors
        return grad_out * grad_hidden, grad_out * grad_weight, None, None


def full_softmax_loss(
    hidden: torch.Tensor, weight: torch.Tensor, target: torch.Tensor, chunk_size: int = 512
) -> torch.Tensor:
    """`softmax_loss(hidden @ weight.T, target)` without materialising the (T, I) logits.

    `hidden` (T, D) states, `weight` (I, D) output embeddings, `target` (T,) item indices.
    """
    if hidden.shape[0] == 0:
        return hidden.sum() * 0.0
    return _ChunkedSoftmaxCE.apply(hidden, weight, target.long(), chunk_size)
