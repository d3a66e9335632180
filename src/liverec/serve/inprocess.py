"""In-process live learning: `liverec serve REGISTRY --online` runs the online trainer in a thread
of the server, which swaps the served model in memory after every micro-batch.

The path from an event to a changed recommendation is then log → poll → apply → snapshot, with no
registry write, no registry poll and no load in between (the separate-process path pays all three).
Versions are still published to the registry every `publish_every` events or `publish_ms`, for
durability: a restarted server (or a separate `liverec online`) resumes from the latest one exactly
once, as the position travels with the state. Responses name the latest published version in
`model_version`; in between, the served model may be ahead of it by the events since.

The snapshot never shares memory with the trainer's state (weights are re-ordered into copies), so
requests in flight keep the model they started with while the trainer moves on. One trainer per
log and consumer group: do not also run `liverec online` on the same registry.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from liverec.registry import Artifact, latest_version

log = logging.getLogger("liverec.serve")


def artifact_of(state, version: int) -> Artifact:
    """The served form of an online state (what `load_version` would read after a publish).
    A sequence model is served without an index: a request encodes its one user's sequence
    (milliseconds), where an index would need every user's state recomputed per swap."""
    from liverec.experiment import RunConfig
    from liverec.index import build_index
    from liverec.models import build_model

    users, user_perm, items, item_perm, history = state.sorted_view()
    run = RunConfig.from_json(state.run_config)
    model = build_model(run.model, run.params, len(users), len(items))
    model.load_state_dict(state.state_dict(user_perm, item_perm))
    model.eval()
    seen = sp.csr_matrix((np.ones(history.nnz, np.float32), history.indices, history.indptr),
                         shape=history.shape)
    manifest = {**state.manifest(len(users), len(items)), "version": version, "in_process": True}
    index = item_vectors = user_vectors = None
    if not model.sequential:
        item_vectors = model.item_embeddings().float().numpy()
        user_vectors = model.user_embeddings().float().numpy()
        index = build_index("exact", item_vectors)
    return Artifact(
        version=version, model=model, users=users, items=items, seen=seen,
        popularity=np.bincount(history.indices, minlength=len(items)).astype(np.float32),
        manifest=manifest, titles=state.titles, index=index,
        user_vectors=user_vectors, item_vectors=item_vectors,
    )


class EmbeddedTrainer:
    """The online trainer on a background thread, feeding `holder.artifact` (a `ModelHolder`)."""

    def __init__(self, holder, registry: str | Path, log_url: str, config, group: str = "liverec-online") -> None:
        self.holder, self.registry, self.log_url = holder, Path(registry), log_url
        self.config, self.group = config, group
        self.swaps = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Load the latest version's state and start consuming (raises on a bad registry or log)."""
        from liverec.stream import open_log
        from liverec.stream.online import load_state
        from liverec.stream.trainer import OnlineTrainer

        state = load_state(self.registry, self.config)
        self._published = latest_version(self.registry)
        self.events = open_log(self.log_url, group=self.group)
        self.trainer = OnlineTrainer(state, self.events, self.registry, on_apply=self._swap)
        self._thread = threading.Thread(target=self._run, name="liverec-online", daemon=True)
        self._thread.start()

    def _swap(self) -> None:
        version = self.trainer.stats.last_version or self._published
        self.holder.artifact = artifact_of(self.trainer.state, version)  # one reference assignment
        self.swaps += 1

    def _run(self) -> None:
        try:
            self.trainer.run(self._stop)
        except Exception:  # the server keeps answering with the last model; say why learning stopped
            log.exception("in-process online trainer stopped; serving the last model")

    def close(self) -> None:
        """Stop after the current micro-batch, publish what is pending, release the log."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self.events.close()
