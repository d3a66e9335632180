"""Data: readers, id vocabularies, interactions, filters, splits, synthetic data."""

from liverec.data.dataset import Dataset
from liverec.data.filters import binarize, dedupe, k_core
from liverec.data.interactions import Interactions, RawEvents
from liverec.data.readers import (
    read_lightgcn,
    read_movielens_1m,
    read_movielens_100k,
    read_recbole_inter,
    read_sequence_file,
    read_table,
)
from liverec.data.sources import data_home, list_datasets, load_events, resolve_data
from liverec.data.split import (
    DataConfig,
    leave_one_out,
    make_dataset,
    ratio_split,
    temporal_split,
)
from liverec.data.synthetic import synthetic_events
from liverec.data.vocab import IdVocab

__all__ = [
    "DataConfig",
    "Dataset",
    "IdVocab",
    "Interactions",
    "RawEvents",
    "binarize",
    "data_home",
    "dedupe",
    "k_core",
    "leave_one_out",
    "list_datasets",
    "load_events",
    "make_dataset",
    "ratio_split",
    "read_lightgcn",
    "read_movielens_100k",
    "read_movielens_1m",
    "read_recbole_inter",
    "read_sequence_file",
    "read_table",
    "resolve_data",
    "synthetic_events",
    "temporal_split",
]
