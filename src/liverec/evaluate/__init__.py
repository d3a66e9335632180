"""Evaluation: ranking metrics (pure functions) and the chunked full / sampled evaluator."""

from liverec.evaluate.evaluator import EvalConfig, evaluate
from liverec.evaluate.metrics import (
    METRICS,
    hit_rate_at_k,
    item_coverage,
    map_at_k,
    mrr_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)

__all__ = [
    "METRICS",
    "EvalConfig",
    "evaluate",
    "hit_rate_at_k",
    "item_coverage",
    "map_at_k",
    "mrr_at_k",
    "ndcg_at_k",
    "precision_at_k",
    "recall_at_k",
]
