"""IdVocab: round trips (property tests), unknown ids, persistence."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liverec.data.vocab import IdVocab
from liverec.errors import LiverecError

int_ids = st.lists(st.integers(-(2**62), 2**62), min_size=1, max_size=60)
str_ids = st.lists(st.text(min_size=1, max_size=8).filter(lambda s: s == s.strip() and "\x00" not in s),
                   min_size=1, max_size=60)


@settings(max_examples=60, deadline=None)
@given(int_ids)
def test_int_round_trip(values):
    vocab, encoded = IdVocab.from_raw(np.array(values, dtype=np.int64))
    assert len(vocab) == len(set(values))
    assert encoded.min() >= 0 and encoded.max() < len(vocab)
    assert vocab.decode(encoded).tolist() == values
    assert vocab.encode(values).tolist() == encoded.tolist()
    assert vocab.encode(vocab.raw).tolist() == list(range(len(vocab)))


@settings(max_examples=60, deadline=None)
@given(str_ids)
def test_str_round_trip(values):
    vocab, encoded = IdVocab.from_raw(np.array(values))
    assert vocab.decode(encoded).tolist() == values
    assert vocab.encode(np.array(values)).tolist() == encoded.tolist()
    assert IdVocab.from_json(vocab.to_json()).raw.tolist() == vocab.raw.tolist()


@settings(max_examples=40, deadline=None)
@given(int_ids, st.lists(st.integers(-(2**62), 2**62), max_size=20))
def test_unknown_ids_masked(values, queries):
    vocab, _ = IdVocab.from_raw(np.array(values, dtype=np.int64))
    got = vocab.encode(np.array(queries, dtype=np.int64), missing="mask")
    known = set(values)
    for q, g in zip(queries, got.tolist(), strict=True):
        assert (g == -1) == (q not in known)
        if g != -1:
            assert vocab.raw[g] == q


@settings(max_examples=40, deadline=None)
@given(int_ids)
def test_text_ids_match_one_by_one(values):
    # ids typed as text (CLI, HTTP): a non-integer among them is unknown, the others still match
    vocab, encoded = IdVocab.from_raw(np.array(values, dtype=np.int64))
    queries = [str(v) for v in values] + ["x", "1.5", "", "99999999999999999999"]
    got = vocab.encode(queries, missing="mask").tolist()
    assert got == encoded.tolist() + [-1, -1, -1, -1]


def test_sorted_indices_and_errors(tmp_path):
    vocab, encoded = IdVocab.from_raw(np.array([30, 10, 20, 10]))
    assert vocab.raw.tolist() == [10, 20, 30] and encoded.tolist() == [2, 0, 1, 0]
    assert vocab.encode(["20"]).tolist() == [1]  # ids typed as text (CLI, HTTP) still match
    with pytest.raises(LiverecError, match="unknown id"):
        vocab.encode([40])
    assert vocab.encode(["x"], missing="mask").tolist() == [-1]
    vocab.save(tmp_path / "v.json")
    assert IdVocab.load(tmp_path / "v.json").raw.tolist() == [10, 20, 30]
    strs, _ = IdVocab.from_raw(np.array(["b", "a"]))
    assert strs.encode([1], missing="mask").tolist() == [-1]


def test_only_ascii_digit_text_matches_an_integer_id():
    vocab, _ = IdVocab.from_raw(np.arange(5))
    queries = ["3", " 3", "-0", "\uff11", "\u0663", "", "-", "1 2", "Infinity", "1e3", "2.0", "\x006"]
    assert vocab.encode(queries, missing="mask").tolist() == [3, 3, 0, -1, -1, -1, -1, -1, -1, -1, -1, -1]
