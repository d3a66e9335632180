"""Per-user sequences: time order, truncation to the latest L, padding, and the loo split of a sequence file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from liverec.data.interactions import Interactions
from liverec.data.readers import read_sequence_file
from liverec.data.sequences import PAD, last_items, pad_sequences, user_sequences
from liverec.data.split import DataConfig, make_dataset
from liverec.errors import LiverecError


def test_user_sequences_order_by_time_then_array_order() -> None:
    inter = Interactions(
        np.array([1, 0, 1, 1, 0]), np.array([7, 3, 5, 6, 4]), 3, 10, timestamp=np.array([20, 5, 10, 10, 1])
    )
    indptr, items = user_sequences(inter)
    assert indptr.tolist() == [0, 2, 5, 5]
    assert items[0:2].tolist() == [4, 3]  # user 0 by time
    assert items[2:5].tolist() == [5, 6, 7]  # user 1: the tie at time 10 keeps array order (5 before 6)


def test_last_items_truncates_and_left_pads() -> None:
    inter = Interactions(np.array([0, 0, 0, 0, 1]), np.array([1, 2, 3, 4, 9]), 3, 10, timestamp=np.arange(5))
    out = last_items(inter, 3)
    assert out.tolist() == [[2, 3, 4], [PAD, PAD, 9], [PAD, PAD, PAD]]
    with pytest.raises(LiverecError, match=">= 1"):
        last_items(inter, 0)


def test_pad_sequences() -> None:
    assert pad_sequences([[1, 2, 3, 4], [5]], 3, 10).tolist() == [[2, 3, 4], [PAD, PAD, 5]]
    with pytest.raises(LiverecError, match="empty"):
        pad_sequences([[]], 3, 10)
    with pytest.raises(LiverecError, match="0..9"):
        pad_sequences([[1, -2]], 3, 10)


def test_sequence_file_leave_one_out(tmp_path: Path) -> None:
    """Last item = test, second-to-last = valid, the rest train, in line order."""
    path = tmp_path / "seqs.txt"
    path.write_text("1 10 11 12 13 14\n2 20 21 22\n3 30 31\n")
    ds = make_dataset(read_sequence_file(path), DataConfig(split="loo"))

    def by_user(part: Interactions) -> dict:
        order = part.sorted_by_user_time()
        raw_users, raw_items = ds.users.decode(order.user), ds.items.decode(order.item)
        out: dict = {}
        for u, i in zip(raw_users.tolist(), raw_items.tolist(), strict=True):
            out.setdefault(str(u), []).append(str(i))
        return out

    assert by_user(ds.train) == {"1": ["10", "11", "12"], "2": ["20"], "3": ["30"]}
    assert by_user(ds.valid) == {"1": ["13"], "2": ["21"]}
    assert by_user(ds.test) == {"1": ["14"], "2": ["22"], "3": ["31"]}
    seq = last_items(ds.revealed("test"), 3)
    assert [str(i) for i in ds.items.decode(seq[ds.users.encode(["1"])[0]])] == ["11", "12", "13"]
