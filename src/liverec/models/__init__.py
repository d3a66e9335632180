"""The one model table (used by the CLI and the server) and `build_model(name, options, sizes)`."""

from __future__ import annotations

from typing import Any

from liverec.errors import LiverecError
from liverec.models.base import Recommender, make_config
from liverec.models.ease import EASE
from liverec.models.gen import Gen
from liverec.models.gfcf import GFCF
from liverec.models.ials import IALS
from liverec.models.lightgcn import LightGCN
from liverec.models.mf import MF
from liverec.models.neumf import NeuMF
from liverec.models.pop import Pop
from liverec.models.sasrec import SASRec

MODELS: dict[str, type[Recommender]] = {
    "mf": MF,
    "neumf": NeuMF,
    "ease": EASE,
    "ials": IALS,
    "gfcf": GFCF,
    "lightgcn": LightGCN,
    "pop": Pop,
    "sasrec": SASRec,
    "gen": Gen,
}


def build_model(name: str, params: dict[str, Any], num_users: int, num_items: int) -> Recommender:
    """Construct MODELS[name] from its options; unknown names or options raise LiverecError."""
    if name not in MODELS:
        raise LiverecError(f"unknown model {name!r}; valid: {sorted(MODELS)}")
    cls = MODELS[name]
    return cls(make_config(cls.Config, dict(params)), num_users, num_items)


__all__ = ["MODELS", "Recommender", "build_model", "make_config"]
