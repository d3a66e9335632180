"""Incremental updates of a factor model (MF or iALS; LightGCN and GMF continue as the MF of the
vectors they serve) from micro-batches of events. (Sequence models: `sequence_online`; both share
`StreamState` and are opened by `load_state`.)

Per micro-batch, all as array operations:
 1. events -> confidence (type weight × value) and row indices; unseen users/items get new rows;
 2. the interaction history (a (U, I) sparse matrix of summed confidence) absorbs the batch;
 3. touched items with few users (new ones included) are re-solved from their users' vectors;
 4. touched popular items take one SGD step on the batch plus a sample of the replay buffer (so an
    item is pulled towards today's users without forgetting the older ones);
 5. every touched user is re-solved from their whole history given the item vectors (iALS fold-in).

Id lifecycle, as Monolith does it for its embedding tables (both off by default):
 - frequency filter (`min_count`): an id not in the model yet enters it only with its
   `min_count`-th event; the events before it are counted (in `pending_users` / `pending_items`,
   across batches) but not learned from (`counters.unadmitted`), so one-off ids (typos, crawlers,
   items viewed once) cost no row;
 - expiry (`expire_after`): users and items with no event for `expire_after` seconds of event time
   (measured against the newest event time applied, so replaying old data expires the same ids) are
   removed: their rows, history and replay triples go, published versions no longer list them (an
   item that expired is never recommended again), and an id that comes back starts afresh, as new.
   Ids already in the exported model count as seen when the first event arrives. Ids waiting in
   the frequency filter expire the same way, which bounds that table too.

The state (vectors, history, replay buffer, counters and the log position it reflects) is written
into a registry version as one atomic unit, which is what makes restarts exactly-once.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from liverec.data.vocab import IdVocab
from liverec.errors import LiverecError
from liverec.models import build_model
from liverec.registry import commit_partial, latest_version, load_version, new_partial, prune
from liverec.stream.foldin import Rows, RowSums, solve_rows
from liverec.stream.ids import GrowableIds, KeyTable, admit, pending_table
from liverec.stream.log import Position
from liverec.stream.preprocess import Sessions
from liverec.stream.schema import EventBatch

ONLINE_MODELS = ("mf", "ials")  # learned natively
AS_FACTOR_MODEL = ("lightgcn", "neumf")  # continue as the MF of their served vectors (neumf: gmf only)
SEQUENCE_MODELS = ("sasrec", "gen")  # continue training on the users' fresh sequences


@dataclass
class OnlineConfig:
    # Most events taken from the log per micro-batch. A batch costs about the summed history length
    # of the users it touches, so under a backlog larger batches amortise; when the log is quiet a
    # poll returns what is there, so the size does not delay fresh events.
    batch_size: int = 50_000
    publish_every: int = 50_000  # publish a version after this many events ...
    publish_ms: float = 200.0  # ... or once this long has passed since the last one (events pending)
    keep_versions: int = 5  # older registry versions are deleted after each publish
    view_weight: float = 0.25  # confidence added per event type (times the event's value)
    click_weight: float = 1.0
    purchase_weight: float = 3.0
    interaction_weight: float = 1.0
    rating_weight: float = 1.0  # ratings >= rating_threshold add this much; lower ratings add 0
    rating_threshold: float = 4.0
    l2: float = 0.05  # λ of the fold-in solves for MF (iALS models use their own l2, α0, ν)
    unobserved_weight: float = 0.05  # α0 for MF
    regularization_exponent: float = 0.0  # ν for MF
    cg_steps: int = 3  # 0 = exact Cholesky solves; > 0 = CG steps warm-started at the current vector
    item_fold_in_max: int = 100  # touched items with at most this many users are re-solved
    replay_size: int = 100_000  # (user, item, confidence) triples kept by reservoir sampling
    replay_sample: int = 1024  # replayed triples mixed into each popular-item SGD step
    sgd_lr: float = 0.02  # step size of that SGD step
    init_std: float = 0.01  # new rows start as N(0, init_std²) so that a cold model can bootstrap
    seed: int = 0  # seeds the initialisation of new rows and the replay sampling
    dedupe_seconds: float = 0.0  # drop repeats of (user, item, type) within this many s; 0 = off
    max_user_rate: float = 0.0  # drop a batch's events of users above this many events/s; 0 = off
    session_gap: float = 1800.0  # s of inactivity that end a user's session (0 = no sessions)
    max_session_events: int = 0  # events of one session taken into the model; the rest are dropped; 0 = all
    min_count: int = 1  # events an unknown user or item needs before it gets a row (1 = at once)
    expire_after: float = 0.0  # s of event time without an event after which an id is removed; 0 = never
    seq_lr: float = 1e-4  # sasrec/gen: Adam step size of continued training (0: sequences only grow)
    seq_rows: int = 256  # sasrec/gen: touched users per Adam step
    seq_replay_users: int = 32  # sasrec/gen: other users' whole windows replayed in each step

    def __post_init__(self) -> None:
        if min(self.batch_size, self.publish_every, self.keep_versions) < 1 or self.publish_ms < 0:
            raise LiverecError("online: batch_size, publish_every, keep_versions >= 1, publish_ms >= 0")
        if self.l2 <= 0 or self.unobserved_weight < 0 or self.cg_steps < 0 or self.replay_size < 0:
            raise LiverecError("online: need l2 > 0, unobserved_weight >= 0, cg_steps >= 0, replay_size >= 0")
        if self.session_gap < 0 or self.max_session_events < 0:
            raise LiverecError("online: need session_gap >= 0 and max_session_events >= 0")
        if self.min_count < 1 or self.expire_after < 0:
            raise LiverecError("online: need min_count >= 1 and expire_after >= 0 (0 = never)")
        if self.seq_lr < 0 or self.seq_rows < 1 or self.seq_replay_users < 0:
            raise LiverecError("online: need seq_lr >= 0, seq_rows >= 1 and seq_replay_users >= 0")
        if self.max_session_events and not self.session_gap:
            raise LiverecError("online: max_session_events needs sessions: set session_gap > 0")


@dataclass
class Counters:
    applied: int = 0  # valid events taken into the model (those with zero confidence included)
    ignored: int = 0  # valid events that carry no positive signal (e.g. low ratings)
    dead: int = 0  # invalid events sent to the dead-letter store
    filtered: int = 0  # valid events dropped by preprocessing (duplicates, bursts, session cap)
    unadmitted: int = 0  # applied events not learned from: user or item still under min_count
    expired_users: int = 0  # rows removed by expiry
    expired_items: int = 0
    batches: int = 0


def _grow(t: torch.Tensor, rows: int, std: float, gen: torch.Generator) -> torch.Tensor:
    """`t` with rows appended up to `rows` (new rows ~ N(0, std²))."""
    extra = rows - t.shape[0]
    if extra <= 0:
        return t
    shape = (extra, *t.shape[1:])
    return torch.cat([t, torch.randn(shape, generator=gen, dtype=t.dtype) * std])


class StreamState:
    """What every online state shares: the id maps, the (U, I) history of summed confidence, the
    log position, counters, sessions and frequency-filter tables, and how a version is written.
    `OnlineState` (factor models) and `SequenceOnlineState` (SASRec, gen) add their model."""

    def __init__(self, folder: Path, config: OnlineConfig, art) -> None:
        self.config, self.model_name = config, art.manifest["model"]
        self.run_config = json.loads((folder / "config.json").read_text())
        self.derived_from = art.manifest.get("derived_from")
        self.base_metrics = json.loads((folder / "metrics.json").read_text())
        self.titles, self.data = art.titles, art.manifest.get("data")
        self.users, self.items = GrowableIds(art.users), GrowableIds(art.items)
        self.history = art.seen.astype(np.float32).tocsr()  # confidence; an export's seen pairs = 1
        self.history.sort_indices()
        self.position: Position = {}
        self.counters = Counters()
        self.sessions = Sessions()
        self.pending_users, self.pending_items = pending_table(), pending_table()
        self.clock = -np.inf  # the newest event time applied
        self.swept_at = -np.inf  # clock at the last expiry sweep
        self.saved: dict[str, np.ndarray] = {}  # the version's online arrays (empty for an export)
        self.saved_meta: dict = {}
        if (folder / "online.json").is_file():
            self._load_common(folder)

    def _load_common(self, folder: Path) -> None:
        from safetensors.numpy import load_file

        meta = self.saved_meta = json.loads((folder / "online.json").read_text())
        self.position = {int(p): int(o) for p, o in meta["position"].items()}
        self.counters = Counters(**meta["counters"])
        arrays = self.saved = load_file(str(folder / "online.safetensors"))
        self.history.data = arrays["history"]
        sessions = meta.get("sessions", {})
        self.sessions = Sessions(KeyTable.from_arrays(arrays, "sessions", Sessions().table.columns),
                                 sessions.get("next_id", 0), sessions.get("pruned_at", -np.inf))
        self.pending_users = KeyTable.from_arrays(arrays, "pending_users", pending_table().columns)
        self.pending_items = KeyTable.from_arrays(arrays, "pending_items", pending_table().columns)
        self.clock, self.swept_at = meta.get("clock", -np.inf), meta.get("swept_at", -np.inf)

    @classmethod
    def load(cls, registry: str | Path, config: OnlineConfig):
        """The latest version of `registry` (resuming its online state when it has one)."""
        number = latest_version(registry)
        if number is None:
            raise LiverecError(f"{registry} has no published version; run `liverec export RUN --to {registry}`")
        return cls(Path(registry) / "versions" / str(number), config)

    def confidence(self, batch: EventBatch) -> np.ndarray:
        """(n,) confidence each event adds to its (user, item) pair."""
        c = self.config
        weight = np.select(
            [batch.type == "view", batch.type == "click", batch.type == "purchase", batch.type == "rating"],
            [c.view_weight, c.click_weight, c.purchase_weight, c.rating_weight],
            c.interaction_weight,
        )
        is_rating = batch.type == "rating"
        return np.where(is_rating, weight * (batch.value >= c.rating_threshold), weight * batch.value)

    def _admit(self, batch: EventBatch) -> EventBatch:
        """The events whose user and item are in the model (frequency filter, `min_count`)."""
        if self.config.min_count <= 1:
            return batch
        c = self.config.min_count
        admitted = (admit(self.users, self.pending_users, batch.user, batch.timestamp, c)
                    & admit(self.items, self.pending_items, batch.item, batch.timestamp, c))
        self.counters.unadmitted += int((~admitted).sum())
        return batch.take(admitted)

    def sorted_view(self) -> tuple[IdVocab, np.ndarray, IdVocab, np.ndarray, sp.csr_matrix]:
        """(users, user_perm, items, item_perm, history) in published (sorted id) order."""
        users, user_perm = self.users.sorted_vocab()
        items, item_perm = self.items.sorted_vocab()
        history = self.history[user_perm][:, item_perm].tocsr()
        history.sort_indices()
        return users, user_perm, items, item_perm, history

    def manifest(self, users: int, items: int) -> dict:
        return {
            "model": self.model_name, "data": self.data, "index": "exact", "online": True,
            **({"derived_from": self.derived_from} if self.derived_from else {}),
            "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "users": users, "items": items, "events_applied": self.counters.applied,
        }

    def _write_version(
        self, registry: str | Path, view: tuple, weights: dict[str, torch.Tensor],
        arrays: dict[str, np.ndarray], meta: dict,
    ) -> int:
        """Write `weights`, the history and the online state (`arrays`, `meta` added to the
        common ones) as the next registry version, atomically, and prune old versions."""
        from safetensors.numpy import save_file
        from safetensors.torch import save_file as save_tensors

        registry = Path(registry)
        users, _, items, _, history = view
        partial = new_partial(registry)
        try:
            save_tensors(weights, str(partial / "model.safetensors"))
            popularity = np.bincount(history.indices, minlength=history.shape[1]).astype(np.float32)
            save_file({"indptr": history.indptr.astype(np.int64), "indices": history.indices.astype(np.int64),
                       "popularity": popularity}, str(partial / "seen.safetensors"))
            save_file({"history": history.data.astype(np.float32), **arrays,
                       **self.sessions.table.arrays("sessions"), **self.pending_users.arrays("pending_users"),
                       **self.pending_items.arrays("pending_items")}, str(partial / "online.safetensors"))
            users.save(partial / "users.json")
            items.save(partial / "items.json")
            (partial / "config.json").write_text(json.dumps(self.run_config, indent=2))
            (partial / "metrics.json").write_text(json.dumps(self.base_metrics, indent=2))
            if self.titles:
                (partial / "titles.json").write_text(json.dumps(self.titles))
            (partial / "online.json").write_text(json.dumps({
                "position": {str(p): o for p, o in self.position.items()},
                "counters": asdict(self.counters), **meta,
                "sessions": {"next_id": self.sessions.next_id, "pruned_at": self.sessions.pruned_at},
                "clock": self.clock, "swept_at": self.swept_at,
                "config": asdict(self.config),
            }, indent=2))
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        number = commit_partial(registry, partial, self.manifest(len(users), len(items)))
        prune(registry, self.config.keep_versions)
        return number


def load_state(registry: str | Path, config: OnlineConfig) -> StreamState:
    """The online state of `registry`'s latest version: sequence models continue training
    (`SequenceOnlineState`), factor models fold in (`OnlineState`)."""
    number = latest_version(registry)
    if number is None:
        raise LiverecError(f"{registry} has no published version; run `liverec export RUN --to {registry}`")
    manifest = json.loads((Path(registry) / "versions" / str(number) / "manifest.json").read_text())
    if manifest["model"] in SEQUENCE_MODELS:
        from liverec.stream.sequence_online import SequenceOnlineState

        return SequenceOnlineState.load(registry, config)
    return OnlineState.load(registry, config)


class OnlineState(StreamState):
    """A factor model's online state; `load` from and `publish` to a registry."""

    def __init__(self, folder: Path, config: OnlineConfig) -> None:
        art = load_version(folder.parent.parent, int(folder.name))
        super().__init__(folder, config, art)
        name = self.model_name
        if name not in ONLINE_MODELS:
            self._as_factor_model(art)  # raises for models without user and item vectors
            name = "mf"
        state = {k: v.detach().float().clone() for k, v in art.model.state_dict().items()}
        if name == "mf":
            self.P, self.Q = state["user_emb.weight"], state["item_emb.weight"]
            self.use_bias = "item_bias.weight" in state
            zeros = torch.zeros
            self.user_bias = state["user_bias.weight"][:, 0] if self.use_bias else zeros(len(self.P))
            self.item_bias = state["item_bias.weight"][:, 0] if self.use_bias else zeros(len(self.Q))
            self.global_bias = state.get("global_bias", zeros(1))
            self.l2, self.alpha0 = config.l2, config.unobserved_weight
            self.exponent = config.regularization_exponent
        else:
            self.P, self.Q = state["user_factors"], state["item_factors"]
            self.use_bias = False
            self.user_bias, self.item_bias = torch.zeros(len(self.P)), torch.zeros(len(self.Q))
            mc = art.model.config
            self.l2, self.alpha0, self.exponent = mc.l2, mc.unobserved_weight, mc.regularization_exponent
        self.replay = self.saved.get("replay", np.zeros((0, 3), dtype=np.float64))  # (user, item, confidence)
        self.replay_offered = self.saved_meta.get("replay_offered", 0)
        # (U,) / (I,) event time of each row's newest event
        self.user_seen = self.saved.get("user_seen", np.full(len(self.users), self.clock))
        self.item_seen = self.saved.get("item_seen", np.full(len(self.items), self.clock))
        # users per item, kept current per batch (a bincount over the history would cost O(nnz))
        self.item_users = np.bincount(self.history.indices, minlength=self.history.shape[1])
        self.user_sums, self.item_sums = RowSums.of(self.P, self.user_bias), RowSums.of(self.Q, self.item_bias)
        self.gen = torch.Generator().manual_seed(config.seed + self.counters.batches)
        self.rng = np.random.default_rng([config.seed, self.counters.batches])

    def _as_factor_model(self, art) -> None:
        """A dot-product model other than MF/iALS (LightGCN's propagated embeddings, GMF's p ⊙ h and
        q) continues online as the factor model it serves: the same user and item vectors, hence the
        same scores, published as `mf` without biases (manifest `derived_from`). Re-propagating a
        graph per micro-batch would cost O(nnz·D); the fold-in costs the touched histories only."""
        name = self.model_name
        if art.user_vectors is None or art.item_vectors is None or art.model.sequential:
            raise LiverecError(
                f"online learning needs a factor model: {', '.join(ONLINE_MODELS)} or a model that "
                f"serves user and item vectors (lightgcn, neumf variant gmf); {name!r} does not"
            )
        users, items = np.array(art.user_vectors), np.array(art.item_vectors)
        for vectors, buffer in ((users, "user_degree"), (items, "item_degree")):
            if hasattr(art.model, buffer):  # rows without training edges hold random layer-0 noise
                vectors[getattr(art.model, buffer).cpu().numpy() == 0] = 0.0
        state = {"user_emb.weight": torch.from_numpy(users), "item_emb.weight": torch.from_numpy(items)}
        art.model = build_model("mf", {"embedding_dim": users.shape[1], "use_bias": False},
                                len(users), len(items))
        art.model.load_state_dict(state)
        self.run_config = {**self.run_config, "model": "mf",
                           "params": {"embedding_dim": users.shape[1], "use_bias": False}}
        self.derived_from, self.model_name = name, "mf"

    # ---- one micro-batch ----------------------------------------------------------------------

    @torch.no_grad()
    def apply(self, batch: EventBatch) -> None:
        """Take a batch of valid events into the model."""
        self.counters.applied += len(batch)
        self.counters.batches += 1
        if not len(batch):
            return
        if not np.isfinite(self.clock):  # the stream starts: the exported ids count as seen now
            self.user_seen[:] = self.item_seen[:] = batch.timestamp.min()
        self.clock = max(self.clock, float(batch.timestamp.max()))
        self._learn(self._admit(batch))
        if self.config.expire_after > 0:
            self._expire()

    def _learn(self, batch: EventBatch) -> None:
        conf = self.confidence(batch)
        keep = conf > 0
        self.counters.ignored += int((~keep).sum())
        if self.config.expire_after > 0:
            self._mark_seen(batch)
        if not keep.any():
            return
        users = self.users.add(batch.user[keep])
        items = self.items.add(batch.item[keep])
        self._resize(len(self.users), len(self.items))
        np.maximum.at(self.user_seen, users, batch.timestamp[keep])
        np.maximum.at(self.item_seen, items, batch.timestamp[keep])
        if self.config.min_count > 1:  # now in the model: no longer waiting
            self.pending_users.drop(np.unique(batch.user[keep]))
            self.pending_items.drop(np.unique(batch.item[keep]))
        delta = sp.csr_matrix((conf[keep].astype(np.float32), (users, items)), shape=self.history.shape)
        delta.sum_duplicates()
        self._count_new_pairs(delta)
        self.history = (self.history + delta).tocsr()
        self._offer_replay(users, items, conf[keep])
        touched_items = np.unique(items)
        rare = touched_items[self.item_users[touched_items] <= self.config.item_fold_in_max]
        self._solve_items(rare)
        popular_batch = self.item_users[items] > self.config.item_fold_in_max
        self._sgd_items(users[popular_batch], items[popular_batch], conf[keep][popular_batch])
        self._solve_users(np.unique(users))

    def _mark_seen(self, batch: EventBatch) -> None:
        """Events of ids with rows keep those rows alive (also events that carry no signal)."""
        for ids, seen, text in ((self.users, self.user_seen, batch.user), (self.items, self.item_seen, batch.item)):
            rows = ids.lookup(text)
            known = rows >= 0
            np.maximum.at(seen, rows[known], batch.timestamp[known])

    def _expire(self) -> None:
        """Remove the ids idle for `expire_after` s; sweeps run every tenth of that in event time,
        as each rebuilds the history and the sums over all rows."""
        after = self.config.expire_after
        if self.clock - self.swept_at < after / 10:
            return
        self.swept_at = self.clock
        cutoff = self.clock - after
        for pending in (self.pending_users, self.pending_items):
            pending.keep(pending.columns["last"] >= cutoff)
        user_keep, item_keep = self.user_seen >= cutoff, self.item_seen >= cutoff
        if user_keep.all() and item_keep.all():
            return
        self.counters.expired_users += int((~user_keep).sum())
        self.counters.expired_items += int((~item_keep).sum())
        self.users.keep(user_keep)
        self.items.keep(item_keep)
        self.P, self.user_bias, self.user_seen = self.P[user_keep], self.user_bias[user_keep], self.user_seen[user_keep]
        self.Q, self.item_bias, self.item_seen = self.Q[item_keep], self.item_bias[item_keep], self.item_seen[item_keep]
        self.history = self.history[np.flatnonzero(user_keep)][:, np.flatnonzero(item_keep)].tocsr()
        self.history.sort_indices()
        user_row, item_row = np.cumsum(user_keep) - 1, np.cumsum(item_keep) - 1  # old row -> new row
        u, i = self.replay[:, 0].astype(np.int64), self.replay[:, 1].astype(np.int64)
        alive = user_keep[u] & item_keep[i]
        self.replay = np.stack([user_row[u], item_row[i], self.replay[:, 2]], axis=1)[alive].astype(np.float64)
        self.item_users = np.bincount(self.history.indices, minlength=self.history.shape[1])
        self.user_sums, self.item_sums = RowSums.of(self.P, self.user_bias), RowSums.of(self.Q, self.item_bias)

    def _count_new_pairs(self, delta: sp.csr_matrix) -> None:
        """Add the batch's (user, item) pairs that the history does not hold yet to `item_users`."""
        pairs = delta.tocoo()
        before = np.asarray(self.history[pairs.row, pairs.col]).ravel()  # (pairs,) 0 where new
        self.item_users += np.bincount(pairs.col[before == 0], minlength=len(self.item_users))

    def _resize(self, num_users: int, num_items: int) -> None:
        old_users, old_items = self.history.shape
        if (num_users, num_items) == (old_users, old_items):
            return
        std = self.config.init_std
        self.P, self.Q = _grow(self.P, num_users, std, self.gen), _grow(self.Q, num_items, std, self.gen)
        self.user_bias = _grow(self.user_bias, num_users, 0.0, self.gen)
        self.item_bias = _grow(self.item_bias, num_items, 0.0, self.gen)
        self.user_sums.add(self.P[old_users:], self.user_bias[old_users:])
        self.item_sums.add(self.Q[old_items:], self.item_bias[old_items:])
        self.item_users = np.concatenate([self.item_users, np.zeros(num_items - old_items, np.int64)])
        self.user_seen = np.concatenate([self.user_seen, np.full(num_users - old_users, -np.inf)])
        self.item_seen = np.concatenate([self.item_seen, np.full(num_items - old_items, -np.inf)])
        self.history.resize((num_users, num_items))

    def _set_users(self, idx: torch.Tensor, new: torch.Tensor) -> None:
        """P[idx] = new (idx unique), keeping the running sums over all users current."""
        self.user_sums.replace(self.P[idx], new, self.user_bias[idx])
        self.P[idx] = new

    def _set_items(self, idx: torch.Tensor, new: torch.Tensor) -> None:
        """Q[idx] = new (idx unique), keeping the running sums over all items current."""
        self.item_sums.replace(self.Q[idx], new, self.item_bias[idx])
        self.Q[idx] = new

    def _offer_replay(self, users: np.ndarray, items: np.ndarray, conf: np.ndarray) -> None:
        """Reservoir sampling, vectorised: the k-th triple ever offered is kept with p = size / k."""
        size = self.config.replay_size
        if size == 0:
            return
        triples = np.stack([users, items, conf], axis=1).astype(np.float64)  # (n, 3)
        k = self.replay_offered + np.arange(1, len(triples) + 1)
        self.replay_offered += len(triples)
        fill = max(0, min(size - len(self.replay), len(triples)))
        self.replay = np.concatenate([self.replay, triples[:fill]])
        rest, k = triples[fill:], k[fill:]
        slot = (self.rng.random(len(rest)) * k).astype(np.int64)
        chosen = slot < size
        self.replay[slot[chosen]] = rest[chosen]  # the later of two triples drawing a slot wins

    @staticmethod
    def _rows_of(sub: sp.csr_matrix, bias_of_other: torch.Tensor | None) -> Rows:
        """`sub` (n, other): the interactions of the n rows to solve."""
        other = torch.from_numpy(sub.indices.astype(np.int64))
        target = torch.ones(len(other)) if bias_of_other is None else 1.0 - bias_of_other[other]
        return Rows(crow=torch.from_numpy(sub.indptr.astype(np.int64)), other=other,
                    confidence=torch.from_numpy(sub.data.astype(np.float32)), target=target)

    def _solve_users(self, users: np.ndarray) -> None:
        idx = torch.from_numpy(users)
        rows = self._rows_of(self.history[users], self.item_bias if self.use_bias else None)
        const = -self.alpha0 * self.item_sums.weighted.float().unsqueeze(0)  # (1, D): −α0 Σ_i b_i q_i
        self._set_users(idx, solve_rows(self.Q, self.item_sums.gram, rows, self.P[idx], const, self.l2,
                                        self.alpha0, self.exponent, self.config.cg_steps))

    def _solve_items(self, items: np.ndarray) -> None:
        if not len(items):
            return
        idx = torch.from_numpy(items)
        # only rare items are solved, so their columns are few and short
        rows = self._rows_of(self.history[:, items].T.tocsr(), None)
        bias = self.item_bias[idx]  # (n,) the solved items' own bias
        rows.target = 1.0 - torch.repeat_interleave(bias, rows.crow.diff())
        const = -self.alpha0 * bias.unsqueeze(1) * self.user_sums.total.float().unsqueeze(0)  # (n, D)
        self._set_items(idx, solve_rows(self.P, self.user_sums.gram, rows, self.Q[idx], const, self.l2,
                                        self.alpha0, self.exponent, self.config.cg_steps))

    def _sgd_items(self, users: np.ndarray, items: np.ndarray, conf: np.ndarray) -> None:
        """One weighted least-squares gradient step on popular items: batch + replayed triples,
        plus as many uniformly drawn (user, item) pairs with target 0 (the α0 term)."""
        if not len(items) or self.config.sgd_lr == 0:
            return
        take = min(len(self.replay), self.config.replay_sample)
        old = self.replay[self.rng.choice(len(self.replay), take, replace=False)] if take else self.replay[:0]
        u = torch.from_numpy(np.concatenate([users, old[:, 0].astype(np.int64)]))
        i = torch.from_numpy(np.concatenate([items, old[:, 1].astype(np.int64)]))
        c = torch.from_numpy(np.concatenate([conf, old[:, 2]]).astype(np.float32))
        neg_u = u[torch.randperm(len(u), generator=self.gen)]  # a random user for each item
        p, q, neg = self.P[u], self.Q[i], self.P[neg_u]
        err = c * ((p * q).sum(1) + self.item_bias[i] - 1.0)  # (n,)
        err_neg = self.alpha0 * ((neg * q).sum(1) + self.item_bias[i])  # (n,)
        grad = err.unsqueeze(1) * p + err_neg.unsqueeze(1) * neg + self.l2 * q  # (n, D)
        popular = torch.zeros(len(self.Q), dtype=torch.bool)
        popular[torch.from_numpy(items)] = True
        steer = popular[i]  # replayed triples only steer the items of this batch
        stepped, slot = torch.unique(i[steer], return_inverse=True)  # (m,) items, (n',) their slot
        step = torch.zeros(len(stepped), q.shape[1]).index_add_(0, slot, grad[steer])  # (m, D)
        counts = torch.bincount(slot, minlength=len(stepped)).unsqueeze(1)  # (m, 1) >= 1
        self._set_items(stepped, self.Q[stepped] - self.config.sgd_lr * step / counts)

    # ---- publishing ---------------------------------------------------------------------------

    def state_dict(self, user_perm: np.ndarray, item_perm: np.ndarray) -> dict[str, torch.Tensor]:
        """The model's weights with rows in published (sorted id) order."""
        up, ip = torch.from_numpy(user_perm), torch.from_numpy(item_perm)
        if self.model_name == "ials":
            return {"user_factors": self.P[up].contiguous(), "item_factors": self.Q[ip].contiguous()}
        out = {"user_emb.weight": self.P[up].contiguous(), "item_emb.weight": self.Q[ip].contiguous()}
        if self.use_bias:
            out["user_bias.weight"] = self.user_bias[up].unsqueeze(1).contiguous()
            out["item_bias.weight"] = self.item_bias[ip].unsqueeze(1).contiguous()
            out["global_bias"] = self.global_bias.contiguous()
        return out

    def publish(self, registry: str | Path) -> int:
        """Write the state as the next registry version (atomic) and prune old versions."""
        view = self.sorted_view()
        _, user_perm, _, item_perm, _ = view
        user_rank, item_rank = np.argsort(user_perm), np.argsort(item_perm)  # old row -> new row
        replay = self.replay.copy()
        replay[:, 0] = user_rank[replay[:, 0].astype(np.int64)]
        replay[:, 1] = item_rank[replay[:, 1].astype(np.int64)]
        arrays = {"replay": replay, "user_seen": self.user_seen[user_perm], "item_seen": self.item_seen[item_perm]}
        return self._write_version(registry, view, self.state_dict(user_perm, item_perm), arrays,
                                   {"replay_offered": self.replay_offered})
