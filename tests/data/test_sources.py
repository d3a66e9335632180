"""Sources: data home, name resolution, format detection, and downloads from a local HTTP server."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import os
import socket
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from liverec.data import sources
from liverec.data.sources import data_home, detect_format, list_datasets, load_events, resolve_data
from liverec.errors import DataNotFoundError, LiverecError

U_DATA = "1\t10\t5\t100\n2\t10\t3\t200\n1\t11\t4\t300\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "home"
    root.mkdir()
    monkeypatch.setenv("LIVEREC_DATA", str(root))
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)  # the test server is local
    return root


def test_data_home(monkeypatch, tmp_path):
    monkeypatch.setenv("LIVEREC_DATA", str(tmp_path / "d"))
    assert data_home() == tmp_path / "d"
    monkeypatch.delenv("LIVEREC_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert data_home() == tmp_path / "cache" / "liverec"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert data_home() == tmp_path / ".cache" / "liverec"


def test_resolve_paths_and_names(home, tmp_path):
    own = write(tmp_path / "elsewhere" / "ev.csv", "user,item\n1,2\n")
    assert resolve_data(str(own)) == own
    write(home / "mine" / "u.data", U_DATA)
    assert resolve_data("mine") == home / "mine"
    with pytest.raises(DataNotFoundError, match=r"no data set 'nope'.*available there: \['mine'\]") as err:
        resolve_data("nope")
    assert "\n" not in str(err.value)


def test_detect_and_load_every_format(home):
    write(home / "ml100" / "u.data", U_DATA)
    write(home / "ml1" / "ratings.dat", "1::10::5::100\n")
    write(home / "gcn" / "train.txt", "0 1 2\n1 2\n")
    write(home / "gcn" / "test.txt", "0 3\n1 1\n")
    write(home / "gcn" / "user_list.txt", "org_id remap_id\n7 0\n")
    write(home / "rb" / "rb.inter", "user_id:token\titem_id:token\n1\t2\n")
    write(home / "seq" / "README.txt", "not data\n")
    write(home / "seq" / "beauty.txt", "1 5 6\n2 6\n")
    write(home / "tab" / "events.csv", "user,item\n1,2\n")
    expected = {"ml100": "ml-100k", "ml1": "ml-1m", "gcn": "lightgcn", "rb": "recbole",
                "seq": "sequence", "tab": "table"}
    for name, fmt in expected.items():
        assert detect_format(home / name) == fmt
        ev = load_events(name)
        assert ev.name == name and len(ev) > 0
    assert load_events("ml100").rating.tolist() == [5, 3, 4]
    assert load_events("gcn").given_split.tolist() == ["train", "train", "train", "test", "test"]
    assert load_events("seq").timestamp.tolist() == [0, 1, 0]
    ev = load_events(str(home / "seq" / "beauty.txt"))
    assert ev.name == "beauty" and ev.item.tolist() == [5, 6, 6]


def test_load_table_with_columns(home):
    write(home / "t" / "log.tsv", "a\tb\tc\nu1\ti1\t7\n")
    ev = load_events(str(home / "t" / "log.tsv"), columns={"user": "a", "item": "b", "timestamp": "c"})
    assert ev.user.tolist() == ["u1"] and ev.timestamp.tolist() == [7] and ev.name == "log"
    with pytest.raises(LiverecError, match="only applies to csv"):
        write(home / "ml100" / "u.data", U_DATA)
        load_events("ml100", columns={"user": "a", "item": "b"})


def test_unrecognised_folder_lists_its_files(home):
    write(home / "odd" / "a.json", "{}")
    write(home / "odd" / "b.txt", "1 2\n")
    write(home / "odd" / "c.txt", "1 2\n")
    with pytest.raises(LiverecError, match=r"cannot tell the data format from \['a.json', 'b.txt', 'c.txt'\]"):
        load_events("odd")


def test_list_datasets(home):
    write(home / "mine" / "u.data", U_DATA)
    write(home / "ml-1m" / "movies.dat", "1::Toy Story (1995)::Animation\n")
    write(home / "junk" / "notes.md", "x")
    rows = {r["name"]: r for r in list_datasets()}
    assert set(rows) == {"mine", "ml-1m", "ml-100k"}
    assert rows["mine"]["format"] == "ml-100k" and rows["mine"]["available"] and not rows["mine"]["downloadable"]
    assert rows["ml-1m"]["format"] == "ml-1m" and not rows["ml-1m"]["available"]  # no ratings.dat
    assert rows["ml-100k"]["downloadable"] and not rows["ml-100k"]["available"]


# ---------------------------------------------------------------- downloads


def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ml-100k/u.data", U_DATA)
        zf.writestr("ml-100k/u.item", "10|Ten (1990)|x\n11|Eleven (1991)|x\n")
    return buf.getvalue()


@pytest.fixture
def server(tmp_path):
    """A local HTTP server serving tmp_path/www; yields its base URL."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "ml-100k.zip").write_bytes(_zip_bytes())

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_download_checks_md5_and_extracts(home, server, monkeypatch):
    md5 = hashlib.md5(_zip_bytes()).hexdigest()
    monkeypatch.setattr(sources, "DOWNLOADS", {"ml-100k": (f"{server}/ml-100k.zip", md5)})
    ev = load_events("ml-100k")
    assert len(ev) == 3 and ev.item_titles == {10: "Ten (1990)", 11: "Eleven (1991)"}
    assert sorted(os.listdir(home)) == ["ml-100k"]  # no temp files or zip left behind
    assert resolve_data("ml-100k") == home / "ml-100k"  # second call: no download


def test_download_bad_checksum_removes_file(home, server, monkeypatch):
    monkeypatch.setattr(sources, "DOWNLOADS", {"ml-100k": (f"{server}/ml-100k.zip", "0" * 32)})
    with pytest.raises(DataNotFoundError, match="checksum mismatch") as err:
        resolve_data("ml-100k")
    assert "\n" not in str(err.value)
    assert os.listdir(home) == []


def test_download_offline_says_what_to_set(home, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(sources, "DOWNLOADS", {"ml-100k": (f"http://127.0.0.1:{port}/ml-100k.zip", "0" * 32)})
    with pytest.raises(DataNotFoundError) as err:
        resolve_data("ml-100k")
    message = str(err.value)
    assert "\n" not in message and "could not download ml-100k" in message
    assert "LIVEREC_DATA=<folder containing ml-100k/>" in message and "--data PATH" in message
    assert os.listdir(home) == []


def test_download_missing_file_on_server(home, server, monkeypatch):
    monkeypatch.setattr(sources, "DOWNLOADS", {"ml-1m": (f"{server}/ml-1m.zip", "0" * 32)})
    with pytest.raises(DataNotFoundError, match=r"could not download ml-1m .*\(HTTP 404 "):
        resolve_data("ml-1m")


@pytest.mark.data
def test_real_data_sets_load_by_name(monkeypatch):
    root = os.environ.get("LIVEREC_DATA")
    if not root or not (Path(root) / "ml-100k").is_dir():
        pytest.skip("real data not available (set LIVEREC_DATA)")
    ev = load_events("ml-100k")
    assert len(ev) == 100_000 and ev.name == "ml-100k"
    if (Path(root) / "ml-1m-seq").is_dir():
        ev = load_events("ml-1m-seq")
        assert len(ev) == 1_000_209 and ev.item_titles[1] == "Toy Story (1995)"
        assert np.all(ev.timestamp[:3] == [0, 1, 2])
