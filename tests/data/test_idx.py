"""IDX files: round trips for every type code, gzip and plain, and clear refusals."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from equirelax.data.idx import IDX_TYPES, IDXFormatError, read_idx, write_idx


@pytest.mark.parametrize("code", sorted(IDX_TYPES))
@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
def test_round_trip_every_type(tmp_path, code: int, name: str) -> None:
    dtype = IDX_TYPES[code].newbyteorder("=")
    rng = np.random.default_rng(code)
    array = (rng.normal(size=(3, 4, 5)) * 50).astype(dtype)
    path = write_idx(tmp_path / name, array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    back = read_idx(path)
    assert back.dtype == dtype and back.dtype.isnative
    np.testing.assert_array_equal(back, array)


@settings(max_examples=25, deadline=None)
@given(shape=st.lists(st.integers(0, 4), min_size=1, max_size=4), compress=st.booleans())
def test_round_trip_any_shape(tmp_path_factory, shape: list[int], compress: bool) -> None:
    array = np.arange(int(np.prod(shape)), dtype=np.uint8).reshape(shape)
    path = write_idx(tmp_path_factory.mktemp("idx") / "x", array, compress=compress)
    back = read_idx(path)
    assert back.shape == tuple(shape)
    np.testing.assert_array_equal(back, array)


def test_layout_is_the_published_one(tmp_path) -> None:
    """Header bytes as in the MNIST description: 0x00000803 then big-endian sizes."""
    images = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    raw = write_idx(tmp_path / "images", images).read_bytes()
    assert raw[:4] == bytes([0, 0, 0x08, 3])
    assert struct.unpack(">3I", raw[4:16]) == (2, 3, 3)
    assert raw[16:] == images.tobytes()
    # a compressed file is the same payload gzipped, whatever its name
    (tmp_path / "plain-name").write_bytes(gzip.compress(raw))
    np.testing.assert_array_equal(read_idx(tmp_path / "plain-name"), images)


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (b"\x00", "too short"),
        (b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00", "magic number"),
        (b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00", "type code 0x07"),
        (b"\x00\x00\x08\x02" + struct.pack(">I", 1), "truncated inside its header"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 3) + b"\x00\x00", "holds 2 bytes"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 1) + b"\x00\x00", "holds 2 bytes"),
    ],
)
def test_malformed_files_are_refused_naming_the_file(tmp_path, payload: bytes, match: str) -> None:
    path = tmp_path / "bad.idx"
    path.write_bytes(payload)
    with pytest.raises(IDXFormatError, match=match) as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_truncated_gzip_is_refused(tmp_path) -> None:
    path = write_idx(tmp_path / "x.gz", np.zeros((50, 50), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(IDXFormatError, match="cannot decompress"):
        read_idx(path)


def test_write_refuses_unsupported_arrays(tmp_path) -> None:
    with pytest.raises(ValueError, match="got an array of dtype int64"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="1 to 255 dimensions, got 0"):
        write_idx(tmp_path / "x", np.uint8(3))
