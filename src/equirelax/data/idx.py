"""The IDX file format of MNIST and Fashion-MNIST: read and write n-dimensional arrays.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions),
one big-endian 32-bit size per dimension, then the values in C order, big-endian. The
published data sets ship gzip-compressed (``train-images-idx3-ubyte.gz``); both the compressed
and the plain file are read, told apart by gzip's own magic bytes rather than by the name.
:func:`write_idx` exists so that tests and users can make small files of the same layout.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np

__all__ = ["IDX_TYPES", "IDXFormatError", "read_idx", "write_idx"]

#: IDX type code -> numpy dtype (big-endian, as stored)
IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"


class IDXFormatError(ValueError):
    """A file that is not a well-formed IDX file (names the file and what is wrong)."""


def _read_bytes(path: Path) -> bytes:
    with path.open("rb") as f:
        head = f.read(2)
    opener = gzip.open if head == _GZIP_MAGIC else open
    try:
        with opener(path, "rb") as f:
            return f.read()
    except (OSError, EOFError) as err:  # a truncated or corrupt gzip stream
        raise IDXFormatError(f"cannot decompress {path}: {err}") from err


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """The array stored in an IDX file (gzip-compressed or plain), in native byte order.

    Raises :class:`IDXFormatError` naming the file when the magic number, the type code or
    the length of the data does not match the header.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise IDXFormatError(f"{path} is too short for an IDX header ({len(raw)} bytes)")
    zero, code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0:
        raise IDXFormatError(
            f"{path} is not an IDX file: its magic number starts {raw[:2].hex()}, expected 0000"
        )
    if code not in IDX_TYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_TYPES)
        raise IDXFormatError(f"{path} has IDX type code 0x{code:02X}; expected one of {known}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IDXFormatError(f"{path} is truncated inside its header of {ndim} sizes")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = IDX_TYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise IDXFormatError(
            f"{path} holds {len(raw) - header} bytes of data; its header {tuple(shape)} of "
            f"{dtype.name} needs {expected}"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write ``array`` as an IDX file; gzip-compressed when ``compress`` (default: when the
    name ends in ``.gz``). The dtype must be one of :data:`IDX_TYPES` (uint8 for images and
    labels)."""
    path = Path(path)
    array = np.asarray(array)
    codes = {dtype.newbyteorder("="): code for code, dtype in IDX_TYPES.items()}
    code = codes.get(array.dtype.newbyteorder("="))
    if code is None:
        allowed = ", ".join(sorted(d.newbyteorder("=").name for d in IDX_TYPES.values()))
        raise ValueError(f"IDX stores {allowed}; got an array of dtype {array.dtype}")
    if not 0 < array.ndim < 256:
        raise ValueError(f"IDX stores arrays of 1 to 255 dimensions, got {array.ndim}")
    payload = struct.pack(">HBB", 0, code, array.ndim)
    payload += struct.pack(f">{array.ndim}I", *array.shape)
    payload += np.ascontiguousarray(array, dtype=IDX_TYPES[code]).tobytes()
    if compress is None:
        compress = path.suffix == ".gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload, mtime=0) if compress else payload)
    return path
