"""A small synthetic data set with a known collaborative and sequential signal, for tests and demos."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from liverec.data.interactions import RawEvents
from liverec.errors import LiverecError

_GENRES = ("Drama", "Comedy", "Action", "Sci-Fi", "Romance", "Thriller", "Documentary", "Horror")
_START = 1_600_000_000  # 2020-09-13, so timestamps look like unix seconds


SHARPNESS = 6.0  # affinity dominates popularity: the collaborative signal must be learnable


@dataclass
class SyntheticWorld:
    """The hidden truth behind `synthetic_events`: unit taste vectors, genres and popularity."""

    user_vec: np.ndarray  # (U, D) unit vectors: each user's taste before any drift
    item_vec: np.ndarray  # (I, D) unit vectors
    genre: np.ndarray  # (I,) index into the genre names
    popularity: np.ndarray  # (I,) Zipf-like log-bias added to the affinity

    def preference(self, users: np.ndarray) -> np.ndarray:
        """(n, I) how much each of `users` likes every item (the logits users choose by)."""
        return SHARPNESS * self.user_vec[users] @ self.item_vec.T + self.popularity


def _world(rng: np.random.Generator, num_users: int, num_items: int, dim: int, skew: float) -> SyntheticWorld:
    # Items cluster around a few "genre" centres so that taste is shared between users.
    num_genres = min(len(_GENRES), num_items)
    centres = rng.normal(size=(num_genres, dim))
    genre = rng.integers(num_genres, size=num_items)
    item_vec = centres[genre] + 0.5 * rng.normal(size=(num_items, dim))
    item_vec /= np.linalg.norm(item_vec, axis=1, keepdims=True)  # (I, D)
    user_vec = centres[rng.integers(num_genres, size=num_users)] + 0.5 * rng.normal(size=(num_users, dim))
    user_vec /= np.linalg.norm(user_vec, axis=1, keepdims=True)  # (U, D)
    # Zipf-like popularity: log-bias -skew * log(rank), ranks shuffled over items.
    popularity = -skew * np.log1p(rng.permutation(num_items))  # (I,)
    return SyntheticWorld(user_vec, item_vec, genre, popularity)


def synthetic_world(
    num_users: int = 300, num_items: int = 400, dim: int = 8, popularity_skew: float = 1.0, seed: int = 0
) -> SyntheticWorld:
    """The hidden users and items that `synthetic_events` with the same arguments draws from."""
    if min(num_users, num_items, dim) < 1:
        raise LiverecError("num_users, num_items and dim must be >= 1")
    return _world(np.random.default_rng(seed), num_users, num_items, dim, popularity_skew)


def synthetic_events(
    num_users: int = 300,
    num_items: int = 400,
    events_per_user: int = 30,
    dim: int = 8,
    popularity_skew: float = 1.0,
    drift: float = 0.1,
    seed: int = 0,
) -> RawEvents:
    """Users and items with latent factors; each user consumes `events_per_user` distinct items.

    Choice at each step: softmax over unseen items of affinity + Zipf-like popularity bias. At rate
    `drift` the user's taste moves towards what they just consumed and along a random walk, so
    recent events predict the next ones better than old ones. Ratings 1..5 follow affinity. Deterministic given `seed`; it materialises a
    (num_users, num_items) score block, so keep it small.
    """
    if events_per_user > num_items:
        raise LiverecError(f"events_per_user={events_per_user} > num_items={num_items}: items are not repeated")
    if min(num_users, num_items, events_per_user, dim) < 1 or not 0 <= drift <= 1:
        raise LiverecError("num_users, num_items, events_per_user and dim must be >= 1; drift in [0, 1]")
    rng = np.random.default_rng(seed)
    world = _world(rng, num_users, num_items, dim, popularity_skew)
    user_vec, item_vec, genre, popularity = world.user_vec, world.item_vec, world.genre, world.popularity
    sharpness = SHARPNESS

    seen = np.zeros((num_users, num_items), dtype=bool)
    items = np.empty((num_users, events_per_user), dtype=np.int64)
    affinity = np.empty((num_users, events_per_user))
    rows = np.arange(num_users)
    for step in range(events_per_user):  # a loop over time steps, vectorised over users
        # einsum, not BLAS: tiny products are slower threaded on a busy machine than done inline
        logits = sharpness * np.einsum("ud,id->ui", user_vec, item_vec) + popularity  # (U, I)
        logits[seen] = -np.inf
        choice = np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)  # Gumbel-max sample
        items[:, step] = choice
        affinity[:, step] = np.einsum("ud,ud->u", user_vec, item_vec[choice])
        seen[rows, choice] = True
        # Taste moves towards the item just consumed plus a random-walk step (norm ~2), so after
        # a few dozen steps the early history says less about the next item than the recent one.
        step_noise = 2.0 * rng.normal(size=user_vec.shape) / np.sqrt(dim)
        user_vec = user_vec + drift * (item_vec[choice] + step_noise)
        user_vec /= np.linalg.norm(user_vec, axis=1, keepdims=True)

    # Users start at different times and act every few hours, so global time cuts interleave users.
    start = _START + rng.integers(0, 30 * 86400, size=(num_users, 1))
    gaps = rng.integers(60, 12 * 3600, size=(num_users, events_per_user))
    timestamp = start + np.cumsum(gaps, axis=1)
    z = (affinity - affinity.mean()) / (affinity.std() + 1e-9)
    rating = np.clip(np.rint(3.5 + 1.2 * z + 0.5 * rng.normal(size=z.shape)), 1, 5)

    titles = {int(i): f"{_GENRES[genre[i]]} #{i}" for i in range(num_items)}
    return RawEvents(
        user=np.repeat(np.arange(num_users, dtype=np.int64), events_per_user),
        item=items.reshape(-1),
        rating=rating.reshape(-1).astype(np.float32),
        timestamp=timestamp.reshape(-1).astype(np.int64),
        item_titles=titles,
        name="synthetic",
    )
