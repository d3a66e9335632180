"""Continued training of a sequence model (SASRec, gen) from micro-batches of events.

Per micro-batch, all as array operations (no loop per user or per event):
 1. events with a positive confidence (the factor models' weighting; e.g. low ratings do not count)
    get row indices; unseen users and items get new rows (a new item a new embedding row);
 2. each touched user's latest max_len + 1 items absorb their events in time order (one stable
    sort per batch compacts old and new items);
 3. the touched users' windows take Adam steps of next-item cross-entropy over the whole
    catalogue, `seq_rows` users per step, with the loss on the *fresh* positions only (the targets
    that arrived in this batch), mixed with `seq_replay_users` random other users' windows trained
    on all positions, against forgetting;
 4. the served sequences are the updated ones, so recommendations move both through the new
    inputs and the new weights.

The state written with each version: the weights, the Adam moments, every user's latest
max_len + 1 items, the history, and the log position, as one atomic unit, so restarts apply every
event exactly once (dropout is seeded per batch from `seed` and the batch count).
Expiry of idle ids (`expire_after`) is a factor-model feature and is refused here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from liverec.errors import LiverecError
from liverec.registry import load_version
from liverec.stream.online import OnlineConfig, StreamState
from liverec.stream.schema import EventBatch
from liverec.train.sequence import SequenceBatch, sequence_loss
from liverec.train.trainer import TrainConfig

CE = TrainConfig(loss="ce", progress=False)  # the loss options sequence_loss reads


class SequenceOnlineState(StreamState):
    """A sequence model's online state; `load` from and `publish` to a registry."""

    def __init__(self, folder: Path, config: OnlineConfig) -> None:
        art = load_version(folder.parent.parent, int(folder.name))
        super().__init__(folder, config, art)
        if config.expire_after > 0:
            raise LiverecError("online: expire_after is supported for factor models, not for sasrec/gen")
        self.model = art.model.float().cpu()
        self.model.train()
        width = self.model.config.max_len + 1  # a window of L inputs and their L targets
        if "sequences" in self.saved:
            self.sequences = self.saved["sequences"].astype(np.int64)
        else:  # from an export: the stored latest L items, one older column unknown
            self.sequences = np.zeros((len(self.users), width), np.int64)
            self.sequences[:, 1:] = self.model.history.numpy()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.seq_lr)
        if "adam_step" in self.saved:
            self._load_adam()
        self.rng = np.random.default_rng([config.seed, self.counters.batches])

    # ---- one micro-batch ----------------------------------------------------------------------

    def apply(self, batch: EventBatch) -> None:
        """Take a batch of valid events into the model."""
        self.counters.applied += len(batch)
        self.counters.batches += 1
        if not len(batch):
            return
        self.clock = max(self.clock, float(batch.timestamp.max()))
        batch = self._admit(batch)
        conf = self.confidence(batch)
        keep = conf > 0
        self.counters.ignored += int((~keep).sum())
        if not keep.any():
            return
        if self.config.min_count > 1:  # now in the model: no longer waiting
            self.pending_users.drop(np.unique(batch.user[keep]))
            self.pending_items.drop(np.unique(batch.item[keep]))
        users, items = self.users.add(batch.user[keep]), self.items.add(batch.item[keep])
        self._resize(len(self.users), len(self.items))
        delta = sp.csr_matrix((conf[keep].astype(np.float32), (users, items)), shape=self.history.shape)
        self.history = (self.history + delta).tocsr()
        touched, fresh = self._append(users, items, batch.timestamp[keep])
        self._train(touched, fresh)

    def _resize(self, num_users: int, num_items: int) -> None:
        old_users, old_items = self.history.shape
        if num_users > old_users:
            grow = np.zeros((num_users - old_users, self.sequences.shape[1]), np.int64)
            self.sequences = np.concatenate([self.sequences, grow])
        if num_items > old_items:
            self._grow_items(num_items)
        self.history.resize((num_users, num_items))

    def _grow_items(self, num_items: int) -> None:
        """New embedding rows ~ N(0, init_std²); Adam's moments grow with zero rows."""
        old = self.model.item_emb.weight
        extra = num_items + 1 - old.shape[0]  # row 0 is padding
        gen = torch.Generator().manual_seed(self.config.seed + self.counters.batches)
        rows = torch.randn(extra, old.shape[1], generator=gen) * self.config.init_std
        new = nn.Parameter(torch.cat([old.detach(), rows]))
        moments = self.optimizer.state.pop(old, None)
        self.model.item_emb.weight = new
        self.model.item_emb.num_embeddings = num_items + 1
        self.model.num_items = num_items
        group = self.optimizer.param_groups[0]
        group["params"] = [new if p is old else p for p in group["params"]]
        if moments:
            zeros = torch.zeros(extra, old.shape[1])
            self.optimizer.state[new] = {
                k: torch.cat([v, zeros]) if k in ("exp_avg", "exp_avg_sq") else v for k, v in moments.items()
            }

    def _append(self, users: np.ndarray, items: np.ndarray, stamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Append each user's events (time order; ties in log order) to their latest window.
        Returns the touched users and how many of each one's targets are new."""
        width = self.sequences.shape[1]
        order = np.lexsort((np.arange(len(users)), stamps, users))  # by user, time, log order
        u, i = users[order], items[order]
        touched, start, counts = np.unique(u, return_index=True, return_counts=True)
        slot = np.repeat(np.arange(len(touched)), counts)
        from_end = np.repeat(start + counts, counts) - 1 - np.arange(len(u))  # 0 = the user's latest
        m = int(min(counts.max(), width))
        new = np.zeros((len(touched), m), np.int64)
        kept = from_end < m
        new[slot[kept], m - 1 - from_end[kept]] = i[kept] + 1  # model ids, right-aligned
        joined = np.concatenate([self.sequences[touched], new], axis=1)  # padding gap in the middle
        compact = np.argsort(joined > 0, axis=1, kind="stable")  # padding first, real items in order
        self.sequences[touched] = np.take_along_axis(joined, compact, axis=1)[:, -width:]
        return touched, np.minimum(counts, width - 1)

    def _train(self, touched: np.ndarray, fresh: np.ndarray) -> None:
        """Adam steps on the touched users' fresh targets (+ replayed users' whole windows)."""
        cfg = self.config
        if cfg.seq_lr == 0:
            return
        width = self.sequences.shape[1] - 1
        has_items = np.flatnonzero(self.sequences[:, -1] > 0)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed * 1_000_003 + self.counters.batches)  # dropout, reproducibly
            for lo in range(0, len(touched), cfg.seq_rows):  # a loop over chunks of users
                rows, first = touched[lo : lo + cfg.seq_rows], width - fresh[lo : lo + cfg.seq_rows]
                if cfg.seq_replay_users and len(has_items):
                    extra = self.rng.choice(has_items, min(cfg.seq_replay_users, len(has_items)), replace=False)
                    rows, first = np.concatenate([rows, extra]), np.concatenate([first, np.zeros(len(extra), int)])
                self._step(rows, first)

    def _step(self, rows: np.ndarray, first: np.ndarray) -> None:
        """One Adam step on `rows`' windows, the loss on target positions >= first (per row)."""
        window = torch.from_numpy(self.sequences[rows])  # (B, L+1) model ids
        inputs, targets = window[:, :-1], window[:, 1:] - 1  # targets: catalogue index, -1 = none
        position = torch.arange(inputs.shape[1])
        use = (position[None, :] >= torch.from_numpy(first)[:, None]) & (inputs > 0) & (targets >= 0)
        if not use.any():
            return
        targets = torch.where(use, targets, torch.full_like(targets, -1))
        cut = int((inputs > 0).sum(1).max())  # batches cut to the longest real row (exact)
        batch = SequenceBatch(torch.from_numpy(rows), inputs[:, -cut:], targets[:, -cut:])
        loss = sequence_loss(self.model, batch, CE)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            self.model.item_emb.weight[0].zero_()  # the padding row stays zero

    # ---- publishing ---------------------------------------------------------------------------

    def state_dict(self, user_perm: np.ndarray, item_perm: np.ndarray) -> dict[str, torch.Tensor]:
        """The model's weights and buffers with rows in published (sorted id) order."""
        out = {k: v.detach().clone() for k, v in self.model.state_dict().items()
               if k not in ("history", "item_count")}
        emb = out["item_emb.weight"]
        out["item_emb.weight"] = torch.cat([emb[:1], emb[1:][torch.from_numpy(item_perm)]])
        out["history"] = torch.from_numpy(self._published_sequences(user_perm, item_perm)[:, 1:].astype(np.int32))
        users_per_item = np.bincount(self.history.indices, minlength=self.history.shape[1])
        out["item_count"] = torch.from_numpy(users_per_item[item_perm].astype(np.float32))
        return out

    def _published_sequences(self, user_perm: np.ndarray, item_perm: np.ndarray) -> np.ndarray:
        """(U, L+1) windows in published user order, with published model ids."""
        new_id = np.concatenate([[0], np.argsort(item_perm) + 1])  # old model id -> new model id
        return new_id[self.sequences[user_perm]]

    def _adam_arrays(self, item_perm: np.ndarray) -> dict[str, np.ndarray]:
        order = torch.from_numpy(np.concatenate([[0], item_perm + 1]))
        arrays: dict[str, np.ndarray] = {}
        for name, p in self.model.named_parameters():
            moments = self.optimizer.state.get(p)
            if not moments:
                continue
            for key in ("exp_avg", "exp_avg_sq"):
                value = moments[key][order] if name == "item_emb.weight" else moments[key]
                arrays[f"adam.{name}.{key}"] = value.numpy().copy()
            arrays["adam_step"] = np.array([float(moments["step"])])
        return arrays

    def _load_adam(self) -> None:
        step = torch.tensor(float(self.saved["adam_step"][0]))
        for name, p in self.model.named_parameters():
            if f"adam.{name}.exp_avg" in self.saved:
                self.optimizer.state[p] = {
                    "step": step.clone(),
                    "exp_avg": torch.from_numpy(self.saved[f"adam.{name}.exp_avg"].copy()),
                    "exp_avg_sq": torch.from_numpy(self.saved[f"adam.{name}.exp_avg_sq"].copy()),
                }

    def publish(self, registry: str | Path) -> int:
        """Write the state as the next registry version (atomic) and prune old versions."""
        view = self.sorted_view()
        _, user_perm, _, item_perm, _ = view
        arrays = {"sequences": self._published_sequences(user_perm, item_perm).astype(np.int32),
                  **self._adam_arrays(item_perm)}
        return self._write_version(registry, view, self.state_dict(user_perm, item_perm), arrays, {})
