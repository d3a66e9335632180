"""Top-k recommendation for one user, shared by the CLI (and later the server)."""

from __future__ import annotations

import numpy as np
import torch

from liverec.data.dataset import Dataset
from liverec.data.interactions import Interactions
from liverec.models.base import Recommender


def user_history(ds: Dataset, user: int) -> np.ndarray:
    """The user's items across all splits in time order (oldest first)."""
    parts = [p for p in (ds.train, ds.valid, ds.test) if p is not None]
    allx = Interactions.concat(parts)
    mask = allx.user == user
    items = allx.item[mask]
    if allx.timestamp is not None:
        items = items[np.argsort(allx.timestamp[mask], kind="stable")]
    return items


@torch.no_grad()
def recommend_for_user(model: Recommender, ds: Dataset, user: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k unseen items (indices) and their scores for one user."""
    device = next(iter(model.state_dict().values())).device
    model.eval()
    history = user_history(ds, user)
    if model.sequential and history.size:  # the user's latest sequence, whatever the model stored
        scores = model.score_sequences([history])[0].float()
    else:
        scores = model.score_all(torch.tensor([user], device=device))[0].float()
    seen = torch.as_tensor(history, device=device)
    scores[seen] = -torch.inf
    k = min(k, int(torch.isfinite(scores).sum()))
    top = torch.topk(scores, k)
    return top.indices.cpu().numpy(), top.values.cpu().numpy()
