"""Readers: files on disk -> RawEvents, parsed with whole-file numpy operations (no loop per line).

Every reader raises LiverecError("path:line: what is wrong") on malformed input and
DataNotFoundError when a required file is missing. Raw ids come back as int64 when every id is
an integer, else as str.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from liverec.data.interactions import RawEvents
from liverec.errors import DataNotFoundError, LiverecError

# bytes.split() splits on exactly these; the byte-level token map below must agree with it.
_WS_TABLE = np.zeros(256, dtype=bool)
_WS_TABLE[list(b" \t\n\r\x0b\x0c")] = True
_UNIT_SEP = b"\x1f"  # stands in for multi-byte separators such as "::"

COLUMN_NAMES = {
    "user": ("user", "user_id", "userid", "uid"),
    "item": ("item", "item_id", "itemid", "movieid", "movie_id", "iid"),
    "rating": ("rating", "weight", "score"),
    "timestamp": ("timestamp", "time", "ts"),
}


# ---------------------------------------------------------------- low-level parsing
def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise DataNotFoundError(f"{path} not found")
    data = path.read_bytes().replace(b"\r\n", b"\n")
    if data.startswith(b"\xef\xbb\xbf"):  # UTF-8 byte-order mark written by spreadsheet tools
        data = data[3:]
    if not data.strip():
        raise LiverecError(f"{path}:1: empty file, no events")
    return data


def _split_ws(data: bytes) -> tuple[np.ndarray, np.ndarray, int]:
    """Whitespace tokens (bytes array), the 0-based line of each token, and the line count."""
    arr = np.frombuffer(data, dtype=np.uint8)
    ws = _WS_TABLE[arr]
    starts = np.flatnonzero(~ws & np.r_[True, ws[:-1]])
    newlines = np.flatnonzero(arr == 10)
    line = np.searchsorted(newlines, starts)  # newlines before a token = its line index
    tokens = np.array(data.split())
    return tokens, line, len(newlines) + 1


def _split_sep(data: bytes, sep: bytes) -> tuple[np.ndarray, np.ndarray, int]:
    """Like _split_ws for a one-byte separator; empty fields are kept, blank lines dropped."""
    if not data.endswith(b"\n"):
        data += b"\n"
    arr = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(arr == 10)
    n_lines = len(newlines)
    fields = np.bincount(np.searchsorted(newlines, np.flatnonzero(arr == sep[0])), minlength=n_lines) + 1
    content = np.bincount(np.searchsorted(newlines, np.flatnonzero(~_WS_TABLE[arr])), minlength=n_lines)
    tokens = np.array(data[:-1].replace(b"\n", sep).split(sep))
    line = np.repeat(np.arange(n_lines), fields)
    keep = np.repeat(content > 0, fields)
    return tokens[keep], line[keep], n_lines


def _rows(tokens: np.ndarray, line: np.ndarray, n_lines: int, k: int, path: Path):
    """Reshape tokens to (rows, k), failing on the first line with another field count."""
    counts = np.bincount(line, minlength=n_lines)
    bad = np.flatnonzero((counts != k) & (counts != 0))
    if bad.size:
        i = int(bad[0])
        raise LiverecError(f"{path}:{i + 1}: expected {k} fields, found {counts[i]}")
    return tokens.reshape(-1, k), line[::k]


def _ints(a: np.ndarray) -> np.ndarray:
    if a.dtype.kind == "f" and not np.all(np.isfinite(a) & (a == np.floor(a))):
        raise ValueError("not an integer")
    return a.astype(np.int64)


def _floats(a: np.ndarray) -> np.ndarray:
    out = a.astype(np.float64)
    if not np.all(np.isfinite(out)):
        raise ValueError("not a finite number")
    return out.astype(np.float32)


def _times(a: np.ndarray) -> np.ndarray:
    """Integers, floats (rounded) or ISO dates ("2020-01-31T12:00:00") -> unix seconds."""
    if a.dtype.kind == "M":
        return a.astype("datetime64[s]").astype(np.int64)
    if a.dtype.kind != "f":
        try:
            return a.astype(np.int64)
        except (ValueError, OverflowError):
            pass
    try:
        out = a.astype(np.float64)  # float64, not float32: unix seconds need ~31 bits
    except ValueError:
        strs = np.char.decode(a, "utf-8") if a.dtype.kind == "S" else a.astype(str)
        return np.asarray(np.char.strip(strs), dtype="datetime64[s]").astype(np.int64)
    if not np.all(np.isfinite(out)):
        raise ValueError("not a finite number")
    return np.rint(out).astype(np.int64)


_EXPECT = {_ints: "an integer", _floats: "a number", _times: "a time (number or ISO date)"}


def _convert(values: np.ndarray, lines: np.ndarray | None, path: Path, what: str, fn):
    """fn(values); on failure name the first offending line (only the error path loops)."""
    try:
        return fn(values)
    except (ValueError, TypeError, OverflowError):
        pass
    for i in range(len(values)):
        try:
            fn(values[i : i + 1])
        except (ValueError, TypeError, OverflowError):
            v = values[i]
            v = v.decode("utf-8", "replace") if isinstance(v, bytes) else v
            where = f"{path}:{lines[i] + 1}" if lines is not None else f"{path}: row {i + 1}"
            raise LiverecError(f"{where}: {what} {v!r} is not {_EXPECT[fn]}") from None
    raise LiverecError(f"{path}: column {what} could not be converted")


def _ids(a: np.ndarray, lines, path: Path, what: str, ints_only: bool = False) -> np.ndarray:
    """int64 ids when every value is an integer, else stripped strings (or an error)."""
    try:
        return _ints(a)
    except (ValueError, TypeError, OverflowError):
        if ints_only:
            return _convert(a, lines, path, f"{what} id", _ints)
    if a.dtype.kind == "S":
        return np.char.strip(np.char.decode(a, "utf-8", "replace"))
    return np.char.strip(a.astype(str))


def _read_titles(path: Path, sep: str) -> dict:
    """`id<sep>title<sep>...` lines (latin-1, as GroupLens ships them) -> {int id: title}."""
    if not path.is_file():
        return {}
    titles = {}
    for row in path.read_bytes().decode("latin-1").splitlines():  # a few thousand items
        parts = row.split(sep, 2)
        if len(parts) >= 2 and parts[0].strip().isdigit():
            titles[int(parts[0])] = parts[1]
    return titles


def _token_lines(path: Path, ints_only: bool):
    """`user item item ...` lines -> (user per event, item per event, position in line)."""
    tokens, line, _ = _split_ws(_read_bytes(path))
    first = np.r_[True, line[1:] != line[:-1]]  # the user id opening each line
    group = np.cumsum(first) - 1
    starts = np.flatnonzero(first)
    ev = ~first
    users = _ids(tokens[first], line[first], path, "user", ints_only)[group[ev]]
    items = _ids(tokens[ev], line[ev], path, "item", ints_only)
    position = (np.arange(len(tokens)) - starts[group])[ev] - 1
    return users, items, position.astype(np.int64)


def _concat(parts: list[RawEvents], splits: list[str]) -> RawEvents:
    """Join the events of split files; ids fall back to str if any file has string ids."""

    def cat(arrs):
        if any(a is None for a in arrs):
            return None
        kinds = {a.dtype.kind for a in arrs}
        return np.concatenate([a.astype(str) for a in arrs] if len(kinds) > 1 else arrs)

    given = np.repeat(np.array(splits), [len(p) for p in parts])
    fields = [cat([getattr(p, f) for p in parts]) for f in ("user", "item", "rating", "timestamp")]
    return RawEvents(*fields, given_split=given)


# ---------------------------------------------------------------- MovieLens
def _movielens_ratings(path: Path, data: bytes) -> RawEvents:
    tokens, line, n_lines = _split_ws(data)
    rows, row_line = _rows(tokens, line, n_lines, 4, path)
    return RawEvents(
        user=_ids(rows[:, 0], row_line, path, "user", ints_only=True),
        item=_ids(rows[:, 1], row_line, path, "item", ints_only=True),
        rating=_convert(rows[:, 2], row_line, path, "rating", _floats),
        timestamp=_convert(rows[:, 3], row_line, path, "timestamp", _ints),
    )


def read_movielens_100k(folder: str | Path) -> RawEvents:
    """GroupLens ML-100K: u.data (user, item, rating, timestamp; tabs) and titles from u.item."""
    folder = Path(folder)
    ev = _movielens_ratings(folder / "u.data", _read_bytes(folder / "u.data"))
    ev.item_titles = _read_titles(folder / "u.item", "|")
    ev.name = folder.name
    return ev


def read_movielens_1m(folder: str | Path) -> RawEvents:
    """GroupLens ML-1M: ratings.dat (UserID::MovieID::Rating::Timestamp), titles from movies.dat."""
    folder = Path(folder)
    path = folder / "ratings.dat"
    if not path.is_file():
        found = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        raise DataNotFoundError(
            f"{path} not found: this ml-1m folder has no ratings (it holds {found}); put GroupLens "
            "ratings.dat there, or use ml-1m-seq for the same interactions in time order"
        )
    # "::" -> " ": every field is a number, so whitespace tokenising is exact and fast.
    ev = _movielens_ratings(path, _read_bytes(path).replace(b"::", b" "))
    ev.item_titles = _read_titles(folder / "movies.dat", "::")
    ev.name = folder.name
    return ev


# ---------------------------------------------------------------- id lists and sequences
def read_lightgcn(folder: str | Path) -> RawEvents:
    """LightGCN/NGCF split: train.txt, test.txt (and valid.txt), lines `user item item ...`."""
    folder = Path(folder)
    parts, splits = [], []
    for split in ("train", "valid", "test"):
        path = folder / f"{split}.txt"
        if split == "valid" and not path.exists():
            continue
        user, item, _ = _token_lines(path, ints_only=True)
        parts.append(RawEvents(user, item))
        splits.append(split)
    ev = _concat(parts, splits)
    if len(ev) == 0:
        raise LiverecError(f"{folder}: train.txt and test.txt list no items, no events")
    ev.name = folder.name
    return ev


def read_sequence_file(path: str | Path) -> RawEvents:
    """One line per user, `user item item ...` oldest first; timestamp = position in the line."""
    path = Path(path)
    user, item, position = _token_lines(path, ints_only=False)
    titles = {}
    sibling = path.parent.parent / "ml-1m" / "movies.dat"
    if path.parent.name == "ml-1m-seq" and sibling.is_file():  # its README: titles live there
        titles = _read_titles(sibling, "::")
    return RawEvents(user, item, timestamp=position, item_titles=titles, name=path.stem)


# ---------------------------------------------------------------- tables
def _pick_columns(names: list[str], columns: dict | None, path: Path) -> dict[str, int]:
    """Role ("user", "item", "rating", "timestamp") -> column index."""
    picked = {}
    if columns is not None:
        unknown = sorted(set(columns) - set(COLUMN_NAMES))
        if unknown:
            raise LiverecError(f"unknown column role(s) {unknown}; use {sorted(COLUMN_NAMES)}")
        for role, col in columns.items():
            if col not in names:
                raise LiverecError(f"{path}: no column {col!r} (for {role}); available columns: {names}")
            picked[role] = names.index(col)
    else:
        lower = {n.lower(): i for i, n in reversed(list(enumerate(names)))}
        for role, candidates in COLUMN_NAMES.items():
            hit = next((lower[c] for c in candidates if c in lower), None)
            if hit is not None:
                picked[role] = hit
    missing = [r for r in ("user", "item") if r not in picked]
    if missing:
        raise LiverecError(
            f"{path}: cannot tell the {' and '.join(missing)} column; available columns: {names}; "
            'pass columns={"user": ..., "item": ...}'
        )
    return picked


def _events_from_columns(cols: dict, lines, path: Path) -> RawEvents:
    rating, timestamp = cols.get("rating"), cols.get("timestamp")
    return RawEvents(
        user=_ids(cols["user"], lines, path, "user"),
        item=_ids(cols["item"], lines, path, "item"),
        rating=None if rating is None else _convert(rating, lines, path, "rating", _floats),
        timestamp=None if timestamp is None else _convert(timestamp, lines, path, "timestamp", _times),
        name=path.name.split(".")[0],
    )


def _delimited(path: Path, sep: str, data: bytes) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(header names, rows (n, k) of bytes/str, 0-based line of each row)."""
    if b'"' in data:
        # Quoted fields may hold separators; the csv module (C) handles them, one row at a time.
        reader = csv.reader(io.StringIO(data.decode("utf-8", "replace")), delimiter=sep)
        rows, lines = [], []
        for row in reader:
            if any(f.strip() for f in row):
                rows.append(row)
                lines.append(reader.line_num - 1)
        k = len(rows[0])
        for row, ln in zip(rows, lines, strict=True):
            if len(row) != k:
                raise LiverecError(f"{path}:{ln + 1}: expected {k} fields, found {len(row)}")
        table = np.array(rows, dtype=str)
        return [n.strip() for n in table[0]], table[1:], np.array(lines[1:])
    raw_sep = sep.encode()
    if len(raw_sep) > 1:
        data, raw_sep = data.replace(raw_sep, _UNIT_SEP), _UNIT_SEP
    tokens, line, n_lines = _split_sep(data, raw_sep)
    header = line == line[0]
    names = [n.decode("utf-8").strip() for n in tokens[header]]
    rows, row_line = _rows(tokens[~header], line[~header], n_lines, len(names), path)
    return names, rows, row_line


def _detect_sep(path: Path, data: bytes) -> str:
    if path.suffix.lower() in (".tsv", ".tab", ".inter"):
        return "\t"
    first = data.lstrip().split(b"\n", 1)[0]
    counts = {s: first.count(s.encode()) for s in (",", "\t", ";", "|")}
    best = max(counts, key=counts.get)
    if counts[best] == 0:
        raise LiverecError(f"{path}:1: cannot tell the column separator; pass sep=")
    return best


def read_table(path: str | Path, columns: dict | None = None, sep: str | None = None) -> RawEvents:
    """CSV/TSV (header row) or Parquet; `columns` maps roles to names, else common names are used."""
    path = Path(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        return _read_parquet(path, columns)
    data = _read_bytes(path)
    names, rows, lines = _delimited(path, sep or _detect_sep(path, data), data)
    if len(rows) == 0:
        raise LiverecError(f"{path}:2: no rows after the header")
    picked = _pick_columns(names, columns, path)
    return _events_from_columns({r: rows[:, i] for r, i in picked.items()}, lines, path)


def _read_parquet(path: Path, columns: dict | None) -> RawEvents:
    if not path.is_file():
        raise DataNotFoundError(f"{path} not found")
    try:
        import pyarrow.parquet as pq  # optional dependency: only Parquet users need it
    except ImportError:
        raise LiverecError("reading Parquet needs pyarrow: pip install 'liverec[parquet]'") from None
    table = pq.read_table(path)
    if table.num_rows == 0:
        raise LiverecError(f"{path}: no rows")
    picked = _pick_columns(table.column_names, columns, path)
    cols = {}
    for role, i in picked.items():
        col = table.column(i)
        if col.null_count:
            raise LiverecError(f"{path}: column {table.column_names[i]!r} has {col.null_count} missing values")
        cols[role] = col.to_numpy()
    return _events_from_columns(cols, None, path)


# ---------------------------------------------------------------- RecBole atomic files
def _read_inter_file(path: Path) -> RawEvents:
    names, rows, lines = _delimited(path, "\t", _read_bytes(path))
    if len(rows) == 0:
        raise LiverecError(f"{path}:2: no rows after the header")
    fields = [n.split(":", 1)[0] for n in names]  # "user_id:token" -> "user_id"
    picked = _pick_columns(fields, None, path)
    return _events_from_columns({r: rows[:, i] for r, i in picked.items()}, lines, path)


def read_recbole_inter(path: str | Path) -> RawEvents:
    """A RecBole .inter file, or a folder with NAME.inter or NAME.{train,valid,test}.inter."""
    path = Path(path)
    if path.is_file():
        ev = _read_inter_file(path)
        ev.name = path.name.split(".")[0]
        return ev
    if not path.is_dir():
        raise DataNotFoundError(f"{path} not found")
    found = sorted(path.glob("*.inter"))
    by_split = {s: [p for p in found if p.name.endswith(f".{s}.inter")] for s in ("train", "valid", "test")}
    if by_split["train"] or by_split["test"]:
        if not (by_split["train"] and by_split["test"]):
            raise LiverecError(f"{path}: a RecBole split needs NAME.train.inter and NAME.test.inter")
        splits = [s for s in ("train", "valid", "test") if by_split[s]]
        ev = _concat([_read_inter_file(by_split[s][0]) for s in splits], splits)
    elif len(found) == 1:
        ev = _read_inter_file(found[0])
    else:
        raise LiverecError(f"{path}: expected one .inter file or a train/test pair, found {[p.name for p in found]}")
    ev.name = path.name
    return ev
