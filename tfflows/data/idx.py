"""Reading and writing IDX files, the format of MNIST and Fashion-MNIST.

An IDX file is two zero bytes, one dtype code byte, one byte giving the number
of dimensions ``d``, ``d`` big-endian uint32 sizes, then the array in C order
with big-endian items. Files may be gzipped; gzip is detected from the content,
not the file name.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib

import numpy as np

__all__ = ["IDX_DTYPES", "read_idx", "write_idx"]

IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
"""The IDX format's type codes and the big-endian NumPy dtype each stands for."""
_CODES = {dtype.newbyteorder("="): code for code, dtype in IDX_DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        raw = f.read()
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as err:
        raise ValueError(f"IDX file {path!r}: expected a complete gzip stream; got {err}.") from err


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads an IDX file, gzipped or plain, into a numpy array.

    Args:
        path: The file.

    Returns:
        Array with the shape stored in the header and the native-endian form of
        its dtype: uint8, int8, int16, int32, float32 or float64.

    Raises:
        ValueError: If the magic number, dtype code or length is wrong; the
            message names the file, what was expected and what came.
    """
    path = os.fspath(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise ValueError(f"IDX file {path!r}: expected a 4-byte header; got {len(data)} bytes.")
    if data[:2] != b"\x00\x00" or data[2] not in IDX_DTYPES:
        codes = ", ".join(f"0x{code:02X}" for code in IDX_DTYPES)
        raise ValueError(
            f"IDX file {path!r}: expected magic 00 00 <dtype code in {codes}> <ndim>; "
            f"got {data[:4].hex(' ')}."
        )
    dtype, ndim = IDX_DTYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(
            f"IDX file {path!r}: expected {header} header bytes for {ndim} dimensions; "
            f"got {len(data)} bytes (truncated)."
        )
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "trailing bytes"
        raise ValueError(
            f"IDX file {path!r}: expected {expected} bytes for shape {list(shape)} of "
            f"{dtype.newbyteorder('=').name}; got {len(data)} bytes ({what})."
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Writes an array as an IDX file, gzipped when ``path`` ends in ``.gz``.

    Args:
        path: The file to create or overwrite.
        array: Array of dtype uint8, int8, int16, int32, float32 or float64
            with at most 255 dimensions.

    Raises:
        ValueError: If the dtype has no IDX code or there are too many dimensions.
    """
    path = os.fspath(path)
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=")
    if native not in _CODES:
        allowed = sorted(d.name for d in _CODES)
        raise ValueError(f"array dtype must be one of {allowed}; got {array.dtype}.")
    if array.ndim > 255:
        raise ValueError(f"array must have at most 255 dimensions; got {array.ndim}.")
    header = bytes([0, 0, _CODES[native], array.ndim])
    header += struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=native.newbyteorder(">")).tobytes()
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(payload)
