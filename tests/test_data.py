"""IDX parsing, data-dir resolution and the checksum-verified download (network mocked)."""
import gzip
import hashlib
import io
import os
import struct
import urllib.error

import numpy as np
import pytest

from hybridref.data import paths
from hybridref.data.idx import IdxError, parse_idx, read_idx
from hybridref.data.mnist import load_mnist


def idx_bytes(arr):
    codes = {np.uint8: 0x08, np.int32: 0x0C}
    header = bytes([0, 0, codes[arr.dtype.type], arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def test_parse_any_count_and_dtype():
    imgs = np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28)
    assert np.array_equal(parse_idx(idx_bytes(imgs)), imgs)
    ints = np.array([[1, -2], [3, 70000]], dtype=np.int32)
    assert np.array_equal(parse_idx(idx_bytes(ints)), ints)


def test_truncated_and_bad_magic_are_refused(tmp_path):
    raw = idx_bytes(np.zeros((5, 28, 28), np.uint8))
    with pytest.raises(IdxError, match="truncated"):
        parse_idx(raw[:-10])
    with pytest.raises(IdxError, match="bad magic"):
        parse_idx(b"\x1f\x8b" + raw[2:])
    gz = gzip.compress(raw)
    (tmp_path / "cut.gz").write_bytes(gz[: len(gz) // 2])
    with pytest.raises(IdxError, match="truncated or corrupted"):
        read_idx(tmp_path / "cut.gz")


class FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def test_offline_and_missing_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HYBRIDREF_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HYBRIDREF_DATA", raising=False)

    def offline(url, timeout):
        raise urllib.error.URLError("network unreachable")
    monkeypatch.setattr(paths.urllib.request, "urlopen", offline)
    with pytest.raises(paths.DataNotFound, match="--data-dir"):
        load_mnist(data_dir=str(tmp_path / "empty"))


def test_download_is_checksum_verified(tmp_path, monkeypatch):
    monkeypatch.setenv("HYBRIDREF_CACHE", str(tmp_path))
    payload = b"the official bytes"
    good = hashlib.sha256(payload).hexdigest()
    monkeypatch.setattr(paths.urllib.request, "urlopen", lambda url, timeout: FakeResponse(payload))
    got = paths.resolve("x", "f.gz", ["http://mirror/f.gz"], good)
    assert got.read_bytes() == payload
    monkeypatch.setattr(paths.urllib.request, "urlopen", lambda url, timeout: FakeResponse(b"tampered"))
    with pytest.raises(paths.DataNotFound, match="checksum mismatch"):
        paths.resolve("y", "f.gz", ["http://mirror/f.gz"], good)
    assert not (tmp_path / "y" / "f.gz").exists() and not (tmp_path / "y" / "f.gz.part").exists()


@pytest.mark.skipif(not os.environ.get("HYBRIDREF_DATA"), reason="HYBRIDREF_DATA is not set")
def test_shared_mnist_loads():
    (tx, ty), (vx, vy) = load_mnist()
    assert tx.shape == (20000, 28, 28) and ty.shape == (20000,)
    assert vx.shape == (10000, 28, 28) and vy.shape == (10000,)
    assert tx.dtype == np.uint8 and set(np.unique(vy)) == set(range(10))
