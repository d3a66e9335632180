"""Where data lives: the data home, name/path resolution, GroupLens downloads, format detection."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from liverec.data.interactions import RawEvents
from liverec.data.readers import (
    read_lightgcn,
    read_movielens_1m,
    read_movielens_100k,
    read_recbole_inter,
    read_sequence_file,
    read_table,
)
from liverec.errors import DataNotFoundError, LiverecError

# name -> (official URL, md5 of the zip). Tests swap this table for a local server.
DOWNLOADS = {
    "ml-100k": (
        "https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        "0e33842e24a9c977be4e0107933c0723",
    ),
    "ml-1m": (
        "https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        "c4d9eecfca2ab87c1945afe126590906",
    ),
}
DOWNLOAD_TIMEOUT_S = 30.0
_TABLE_SUFFIXES = (".csv", ".tsv", ".tab", ".parquet", ".pq")


def data_home() -> Path:
    """$LIVEREC_DATA, else $XDG_CACHE_HOME/liverec, else ~/.cache/liverec."""
    if os.environ.get("LIVEREC_DATA"):
        return Path(os.environ["LIVEREC_DATA"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "liverec"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _local_names(home: Path) -> list[str]:
    if not home.is_dir():
        return []
    return sorted(p.name for p in home.iterdir() if not p.name.startswith(".") and detect_format(p))


def resolve_data(data: str) -> Path:
    """An existing file/folder path as given, else a data set name under data_home().

    ml-100k and ml-1m are downloaded from GroupLens (md5-checked) when absent.
    """
    path = Path(data).expanduser()
    if path.exists():
        return path
    home = data_home()
    if (home / data).exists():
        return home / data
    if data in DOWNLOADS:
        return _download(data, home)
    raise DataNotFoundError(_one_line(
        f"no data set {data!r}: not an existing path and not a folder in {home}; "
        f"available there: {_local_names(home) or 'none'}; downloadable: {', '.join(DOWNLOADS)}; "
        "set LIVEREC_DATA or pass --data PATH"
    ))


def _download(name: str, home: Path) -> Path:
    """Fetch NAME.zip to a temp file, check md5, extract next to it, rename into place."""
    url, md5 = DOWNLOADS[name]
    hint = f"set LIVEREC_DATA=<folder containing {name}/> or pass --data PATH"
    try:
        home.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=home, prefix=f".{name}.", suffix=".part")
    except OSError as exc:
        raise DataNotFoundError(_one_line(f"cannot write {name} to {home} ({exc}); {hint}")) from None
    digest = hashlib.md5()
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as resp:
            while chunk := resp.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
    except OSError as exc:  # URLError, HTTPError, timeouts and refused connections are OSErrors
        os.unlink(tmp)
        reason = getattr(exc, "reason", exc)
        if getattr(exc, "code", None):  # HTTPError: say which status the server gave
            reason = f"HTTP {exc.code} {reason}"
        raise DataNotFoundError(_one_line(f"could not download {name} from {url} ({reason}); {hint}")) from None
    if digest.hexdigest() != md5:
        os.unlink(tmp)
        raise DataNotFoundError(_one_line(
            f"checksum mismatch for {url}: md5 {digest.hexdigest()}, expected {md5}; "
            f"the download was removed; try again, or {hint}"
        ))
    archive = home / f"{name}.zip"
    os.replace(tmp, archive)  # atomic: a complete, verified zip or nothing
    staging = Path(tempfile.mkdtemp(dir=home, prefix=f".{name}."))
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                if member.startswith("/") or ".." in Path(member).parts:
                    raise DataNotFoundError(f"{archive}: unsafe member path {member!r}")
            zf.extractall(staging)
        extracted = staging / name if (staging / name).is_dir() else staging
        target = home / name
        if not target.exists():  # another process may have finished first
            os.replace(extracted, target)
    except zipfile.BadZipFile as exc:
        raise DataNotFoundError(_one_line(f"{archive} is not a valid zip ({exc}); {hint}")) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        archive.unlink(missing_ok=True)
    return target


def detect_format(path: Path) -> str | None:
    """"ml-100k", "ml-1m", "lightgcn", "recbole", "sequence", "table", or None."""
    path = Path(path)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in _TABLE_SUFFIXES:
            return "table"
        return {".inter": "recbole", ".txt": "sequence"}.get(suffix)
    if not path.is_dir():
        return None
    names = {p.name for p in path.iterdir() if p.is_file()}
    if "u.data" in names:
        return "ml-100k"
    if "ratings.dat" in names or "movies.dat" in names:
        return "ml-1m"
    if {"train.txt", "test.txt"} <= names:
        return "lightgcn"
    if any(n.endswith(".inter") for n in names):
        return "recbole"
    if len(_sequence_files(path)) == 1:
        return "sequence"
    if len(_table_files(path)) == 1:
        return "table"
    return None


def _sequence_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.glob("*.txt") if p.is_file() and not p.name.lower().startswith("readme")
    )


def _table_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in _TABLE_SUFFIXES)


def load_events(data: str, columns: dict | None = None) -> RawEvents:
    """Resolve `data` (path or name), detect its format and read it; `columns` maps table columns."""
    path = resolve_data(data)
    fmt = detect_format(path)
    if fmt is None:
        found = sorted(p.name for p in path.iterdir()) if path.is_dir() else [path.name]
        raise LiverecError(_one_line(
            f"{path}: cannot tell the data format from {found}; expected u.data (ml-100k), "
            "ratings.dat (ml-1m), train.txt+test.txt (lightgcn), *.inter (recbole), one .txt "
            "sequence file, or one .csv/.tsv/.parquet table"
        ))
    if columns is not None and fmt != "table":
        raise LiverecError(f"columns={columns} only applies to csv/tsv/parquet tables, not {fmt} data")
    if fmt == "ml-100k":
        ev = read_movielens_100k(path)
    elif fmt == "ml-1m":
        ev = read_movielens_1m(path)
    elif fmt == "lightgcn":
        ev = read_lightgcn(path)
    elif fmt == "recbole":
        ev = read_recbole_inter(path)
    elif fmt == "sequence":
        ev = read_sequence_file(path if path.is_file() else _sequence_files(path)[0])
    else:
        ev = read_table(path if path.is_file() else _table_files(path)[0], columns=columns)
    ev.name = path.name if path.is_dir() else path.name.split(".")[0]
    return ev


def _available(path: Path, fmt: str | None) -> bool:
    if fmt is None:
        return False
    return fmt != "ml-1m" or (path / "ratings.dat").is_file()  # a movies-only ml-1m has no events


def list_datasets() -> list[dict]:
    """Known and local data sets: name, format, available (readable now), downloadable, path."""
    home = data_home()
    names = sorted(set(DOWNLOADS) | set(_local_names(home)))
    out = []
    for name in names:
        path = home / name
        fmt = detect_format(path) if path.exists() else None
        out.append({
            "name": name,
            "format": fmt or (name if name in DOWNLOADS else None),
            "available": _available(path, fmt),
            "downloadable": name in DOWNLOADS,
            "path": str(path),
        })
    return out
