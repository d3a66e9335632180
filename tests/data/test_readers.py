"""Readers: every format on small hand-written files, malformed input, and the real data sets."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from liverec.data.readers import (
    read_lightgcn,
    read_movielens_1m,
    read_movielens_100k,
    read_recbole_inter,
    read_sequence_file,
    read_table,
)
from liverec.errors import DataNotFoundError, LiverecError


def real_data(name: str) -> Path:
    """A real data set folder under LIVEREC_DATA, or skip."""
    home = os.environ.get("LIVEREC_DATA")
    if not home or not (Path(home) / name).is_dir():
        pytest.skip(f"real data set {name} not available (set LIVEREC_DATA)")
    return Path(home) / name


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


# ---------------------------------------------------------------- MovieLens


def test_movielens_100k(tmp_path):
    write(tmp_path / "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n")
    write(tmp_path / "u.item", b"242|Kolya (1996)|24-Jan-1997||http://x|0|0\n"
          b"302|L.A. Confidential (1997)|x\n377|Caf\xe9 au lait (1994)|x\n")  # latin-1
    ev = read_movielens_100k(tmp_path)
    assert ev.user.tolist() == [196, 186, 22] and ev.user.dtype == np.int64
    assert ev.item.tolist() == [242, 302, 377]
    assert ev.rating.tolist() == [3.0, 3.0, 1.0] and ev.rating.dtype == np.float32
    assert ev.timestamp.tolist() == [881250949, 891717742, 878887116]
    assert ev.item_titles == {242: "Kolya (1996)", 302: "L.A. Confidential (1997)", 377: "Café au lait (1994)"}
    assert ev.given_split is None


def test_movielens_100k_wrong_field_count(tmp_path):
    write(tmp_path / "u.data", "1\t2\t3\t4\n1\t2\t3\n")
    with pytest.raises(LiverecError, match=r"u\.data:2: expected 4 fields, found 3"):
        read_movielens_100k(tmp_path)


def test_movielens_100k_non_numeric_id(tmp_path):
    write(tmp_path / "u.data", "1\t2\t3\t4\n\n1\t2\t3\t4\nabc\t2\t3\t4\n")
    with pytest.raises(LiverecError, match=r"u\.data:4: user id 'abc' is not an integer"):
        read_movielens_100k(tmp_path)


def test_movielens_100k_bad_rating_and_empty_file(tmp_path):
    write(tmp_path / "u.data", "1\t2\t3\t4\n1\t2\tfive\t4\n")
    with pytest.raises(LiverecError, match=r"u\.data:2: rating 'five' is not a number"):
        read_movielens_100k(tmp_path)
    write(tmp_path / "u.data", "\n  \n")
    with pytest.raises(LiverecError, match=r"u\.data:1: empty file"):
        read_movielens_100k(tmp_path)


def test_movielens_1m(tmp_path):
    write(tmp_path / "ratings.dat", "1::1193::5::978300760\r\n1::661::3::978302109\r\n2::1193::4::978298413")
    write(tmp_path / "movies.dat", b"1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n661::Jos\xe9 (1996)::x\n")
    ev = read_movielens_1m(tmp_path)
    assert ev.user.tolist() == [1, 1, 2]
    assert ev.item.tolist() == [1193, 661, 1193]
    assert ev.rating.tolist() == [5, 3, 4]
    assert ev.timestamp.tolist() == [978300760, 978302109, 978298413]
    assert ev.item_titles[661] == "José (1996)"
    assert ev.name == tmp_path.name


def test_movielens_1m_without_ratings(tmp_path):
    write(tmp_path / "movies.dat", "1::Toy Story (1995)::Animation\n")
    with pytest.raises(DataNotFoundError, match="ratings.dat"):
        read_movielens_1m(tmp_path)


def test_movielens_1m_malformed(tmp_path):
    write(tmp_path / "ratings.dat", "1::2::3::4\n1::2::3::4::5\n")
    with pytest.raises(LiverecError, match=r"ratings\.dat:2: expected 4 fields, found 5"):
        read_movielens_1m(tmp_path)


# ---------------------------------------------------------------- LightGCN


def test_lightgcn_tolerates_tabs_trailing_spaces_and_empty_users(tmp_path):
    write(tmp_path / "train.txt", "0 10 11 12\n1\t13  14 \n2\n3 10\n")
    write(tmp_path / "test.txt", "0 13\n1 10\n3 \n")
    ev = read_lightgcn(tmp_path)
    assert ev.user.tolist() == [0, 0, 0, 1, 1, 3, 0, 1]
    assert ev.item.tolist() == [10, 11, 12, 13, 14, 10, 13, 10]
    assert ev.given_split.tolist() == ["train"] * 6 + ["test"] * 2
    assert ev.timestamp is None and ev.rating is None
    assert ev.user.dtype == np.int64 and ev.item.dtype == np.int64


def test_lightgcn_valid_part(tmp_path):
    write(tmp_path / "train.txt", "0 1 2\n")
    write(tmp_path / "valid.txt", "0 3\n")
    write(tmp_path / "test.txt", "0 4\n")
    ev = read_lightgcn(tmp_path)
    assert list(zip(ev.item.tolist(), ev.given_split.tolist(), strict=True)) == [
        (1, "train"), (2, "train"), (3, "valid"), (4, "test")]


def test_lightgcn_malformed(tmp_path):
    write(tmp_path / "train.txt", "0 1 2\n1 3 x4\n")
    write(tmp_path / "test.txt", "0 5\n")
    with pytest.raises(LiverecError, match=r"train\.txt:2: item id 'x4' is not an integer"):
        read_lightgcn(tmp_path)
    write(tmp_path / "train.txt", "0 1 2\n")
    (tmp_path / "test.txt").unlink()
    with pytest.raises(DataNotFoundError, match="test.txt"):
        read_lightgcn(tmp_path)


# ---------------------------------------------------------------- sequences


def test_sequence_file_positions_are_timestamps(tmp_path):
    path = write(tmp_path / "seqs.txt", "1 5 3 9\n2 3\n3 7 7 1\n")
    ev = read_sequence_file(path)
    assert ev.user.tolist() == [1, 1, 1, 2, 3, 3, 3]
    assert ev.item.tolist() == [5, 3, 9, 3, 7, 7, 1]
    assert ev.timestamp.tolist() == [0, 1, 2, 0, 0, 1, 2]
    assert ev.name == "seqs"


def test_sequence_file_string_ids(tmp_path):
    path = write(tmp_path / "s.txt", "alice B001 B002\nbob B002\n")
    ev = read_sequence_file(path)
    assert ev.user.tolist() == ["alice", "alice", "bob"]
    assert ev.item.tolist() == ["B001", "B002", "B002"]
    assert ev.item.dtype.kind == "U"


def test_sequence_titles_from_sibling_ml_1m(tmp_path):
    write(tmp_path / "ml-1m" / "movies.dat", "3186::Girl, Interrupted (1999)::Drama\n")
    path = write(tmp_path / "ml-1m-seq" / "ml-1m.seq.txt", "1 3186\n")
    assert read_sequence_file(path).item_titles == {3186: "Girl, Interrupted (1999)"}
    other = write(tmp_path / "elsewhere" / "ml-1m.seq.txt", "1 3186\n")
    assert read_sequence_file(other).item_titles == {}


# ---------------------------------------------------------------- tables


def test_csv_detects_common_column_names(tmp_path):
    path = write(tmp_path / "ev.csv", "userId,movieId,rating,timestamp\n1,10,4.5,100\n2,10,3,90\n")
    ev = read_table(path)
    assert ev.user.tolist() == [1, 2] and ev.item.tolist() == [10, 10]
    assert ev.rating.tolist() == [4.5, 3.0] and ev.timestamp.tolist() == [100, 90]
    assert ev.name == "ev"


def test_tsv_and_semicolon_and_explicit_sep(tmp_path):
    tsv = write(tmp_path / "a.tsv", "uid\tiid\nu1\ti1\nu2\ti2\n")
    ev = read_table(tsv)
    assert ev.user.tolist() == ["u1", "u2"] and ev.rating is None and ev.timestamp is None
    semi = write(tmp_path / "b.txt", "user;item;score\n1;2;0.5\n")
    assert read_table(semi).rating.tolist() == [0.5]
    pipe = write(tmp_path / "c.csv", "user|item\n1|2\n")
    assert read_table(pipe, sep="|").item.tolist() == [2]


def test_column_mapping_and_unknown_column(tmp_path):
    path = write(tmp_path / "ev.csv", "who,what,stars,when\na,x,5,2020-01-01T00:00:01\nb,y,1,2020-01-02\n")
    ev = read_table(path, columns={"user": "who", "item": "what", "rating": "stars", "timestamp": "when"})
    assert ev.user.tolist() == ["a", "b"]
    assert ev.timestamp.tolist() == [1577836801, 1577923200]  # ISO dates -> unix seconds
    with pytest.raises(LiverecError, match=r"no column 'usr'.*available columns: \['who', 'what', 'stars', 'when'\]"):
        read_table(path, columns={"user": "usr", "item": "what"})
    with pytest.raises(LiverecError, match="cannot tell the user and item column"):
        read_table(path)
    with pytest.raises(LiverecError, match="unknown column role"):
        read_table(path, columns={"user": "who", "item": "what", "label": "stars"})


def test_csv_quoted_fields(tmp_path):
    path = write(tmp_path / "q.csv", 'user,item,rating\n1,"Hello, World",4\n\n2,"say ""hi""",3\n')
    ev = read_table(path)
    assert ev.item.tolist() == ["Hello, World", 'say "hi"']
    assert ev.rating.tolist() == [4, 3]
    bad = write(tmp_path / "bad.csv", 'user,item\n1,"a"\n2\n')
    with pytest.raises(LiverecError, match=r"bad\.csv:3: expected 2 fields, found 1"):
        read_table(bad)


def test_csv_malformed_lines(tmp_path):
    path = write(tmp_path / "m.csv", "user,item,rating\n1,2,3\n1,3\n")
    with pytest.raises(LiverecError, match=r"m\.csv:3: expected 3 fields, found 2"):
        read_table(path)
    path = write(tmp_path / "r.csv", "user,item,rating\n1,2,3\n1,3,\n")
    with pytest.raises(LiverecError, match=r"r\.csv:3: rating '' is not a number"):
        read_table(path)
    path = write(tmp_path / "t.csv", "user,item,timestamp\n1,2,3\n1,3,yesterday\n")
    with pytest.raises(LiverecError, match=r"t\.csv:3: timestamp 'yesterday' is not a time"):
        read_table(path)
    with pytest.raises(LiverecError, match=r"h\.csv:2: no rows"):
        read_table(write(tmp_path / "h.csv", "user,item\n"))
    with pytest.raises(LiverecError, match=r"e\.csv:1: empty file"):
        read_table(write(tmp_path / "e.csv", ""))
    with pytest.raises(DataNotFoundError):
        read_table(tmp_path / "missing.csv")


def test_parquet_round_trip(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table({"user_id": ["a", "b"], "item_id": [3, 4], "rating": [1.0, 2.0], "ts": [10, 20]})
    pq.write_table(table, tmp_path / "ev.parquet")
    ev = read_table(tmp_path / "ev.parquet")
    assert ev.user.tolist() == ["a", "b"] and ev.item.tolist() == [3, 4]
    assert ev.item.dtype == np.int64 and ev.rating.tolist() == [1.0, 2.0]
    assert ev.timestamp.tolist() == [10, 20]
    with pytest.raises(LiverecError, match="available columns"):
        read_table(tmp_path / "ev.parquet", columns={"user": "nope", "item": "item_id"})


# ---------------------------------------------------------------- RecBole


def test_recbole_single_file(tmp_path):
    path = write(tmp_path / "ml.inter",
                 "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t2\t5\t100.0\n3\t4\t2\t99\n")
    ev = read_recbole_inter(path)
    assert ev.user.tolist() == [1, 3] and ev.item.tolist() == [2, 4]
    assert ev.rating.tolist() == [5, 2] and ev.timestamp.tolist() == [100, 99]
    assert ev.given_split is None


def test_recbole_split_folder(tmp_path):
    head = "user_id:token\titem_id:token\n"
    write(tmp_path / "g" / "g.train.inter", head + "0\t1\n0\t2\n")
    write(tmp_path / "g" / "g.valid.inter", head + "0\t3\n")
    write(tmp_path / "g" / "g.test.inter", head + "0\t4\n")
    ev = read_recbole_inter(tmp_path / "g")
    assert ev.item.tolist() == [1, 2, 3, 4]
    assert ev.given_split.tolist() == ["train", "train", "valid", "test"]
    assert ev.name == "g"


def test_recbole_malformed(tmp_path):
    path = write(tmp_path / "x.inter", "user_id:token\titem_id:token\trating:float\n1\t2\t5\n1\t2\n")
    with pytest.raises(LiverecError, match=r"x\.inter:3: expected 3 fields, found 2"):
        read_recbole_inter(path)


# ---------------------------------------------------------------- real data


@pytest.mark.data
def test_real_gowalla():
    folder = real_data("lightgcn-gowalla")
    start = time.perf_counter()
    ev = read_lightgcn(folder)
    elapsed = time.perf_counter() - start
    assert len(np.unique(ev.user)) == 29_858 and len(np.unique(ev.item)) == 40_981
    assert (ev.given_split == "train").sum() == 810_128
    assert (ev.given_split == "test").sum() == 217_242
    assert elapsed < 4.0  # ~0.4 s on one core; the bound leaves room for a busy machine


@pytest.mark.data
def test_real_ml_100k():
    ev = read_movielens_100k(real_data("ml-100k"))
    assert len(ev) == 100_000
    assert len(np.unique(ev.user)) == 943 and len(np.unique(ev.item)) == 1_682
    assert np.bincount(ev.rating.astype(int)).tolist() == [0, 6_110, 11_370, 27_145, 34_174, 21_201]
    assert ev.item_titles[1] == "Toy Story (1995)"


@pytest.mark.data
def test_real_ml_1m_seq():
    start = time.perf_counter()
    ev = read_sequence_file(real_data("ml-1m-seq") / "ml-1m.seq.txt")
    elapsed = time.perf_counter() - start
    assert len(ev) == 1_000_209
    assert len(np.unique(ev.user)) == 6_040 and len(np.unique(ev.item)) == 3_706
    assert ev.item[:3].tolist() == [3186, 1721, 1022] and ev.timestamp[:3].tolist() == [0, 1, 2]
    assert elapsed < 4.0


@pytest.mark.data
def test_real_seq_beauty():
    ev = read_sequence_file(real_data("seq-beauty") / "Beauty.txt")
    assert len(ev) == 198_502
    assert len(np.unique(ev.user)) == 22_363 and len(np.unique(ev.item)) == 12_101
    assert ev.item[:5].tolist() == [1, 2, 3, 4, 5]
