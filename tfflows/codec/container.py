"""The compressed file: a fixed header, the coded words, a CRC-32 over everything before it.

Layout (little-endian)::

    magic "TFFC" | version u8 | layout u8 (0 stream, 1 random access) | num_bits u8 | 0 u8
    fingerprint 16 bytes (the model's) | H u32 | W u32 | C u32 | count u32 | pixels CRC-32 u32
    stream:        u32 words of one range-coder message
    random access: count lengths (LEB128 varints, words per image) | each image's u32 words
    CRC-32 u32 of all the bytes above

Every field is checked before anything is allocated from it, so a truncated,
bit-flipped or hostile file is refused with one line (:class:`CodecError`)
instead of decoding garbage, hanging or allocating without bound.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

__all__ = ["CodecError", "Header", "LAYOUTS", "MAGIC", "MAX_EXPANSION", "VERSION", "pack", "unpack"]

MAGIC = b"TFFC"
VERSION = 1
LAYOUTS = ("stream", "random_access")
MAX_EXPANSION = 4096
"""A file may decode to at most this many pixel bytes per compressed byte (or 64 MiB), never more."""
_HEAD = struct.Struct("<4sBBBB16sIIIII")


class CodecError(ValueError):
    """A compressed file that cannot be decoded with this model: the message says why, in one line."""


@dataclass(frozen=True)
class Header:
    """What a compressed file says about itself."""

    layout: str
    num_bits: int
    fingerprint: bytes
    shape: tuple[int, int, int]
    count: int
    pixels_crc: int


def _varints(values: list[int]) -> bytes:
    out = bytearray()
    for v in values:
        while True:
            byte = v & 0x7F
            v >>= 7
            out.append(byte | (0x80 if v else 0))
            if not v:
                break
    return bytes(out)


def pack(header: Header, messages: list[np.ndarray]) -> bytes:
    """The file's bytes: header, one message (stream) or one per image (random access), CRC."""
    head = _HEAD.pack(
        MAGIC,
        VERSION,
        LAYOUTS.index(header.layout),
        header.num_bits,
        0,
        header.fingerprint,
        *header.shape,
        header.count,
        header.pixels_crc,
    )
    if header.layout == "stream":
        body = messages[0].astype("<u4").tobytes()
    else:
        body = _varints([len(m) for m in messages]) + b"".join(m.astype("<u4").tobytes() for m in messages)
    data = head + body
    return data + struct.pack("<I", zlib.crc32(data))


def unpack(data: bytes) -> tuple[Header, list[np.ndarray]]:
    """Checks and splits a file; raises :class:`CodecError` naming the first thing wrong."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError(f"expected the bytes of a compressed file, got {type(data).__name__}.")
    data = bytes(data)
    if not data:
        raise CodecError("the compressed data is empty (0 bytes).")
    if not data.startswith(MAGIC[: min(len(data), 4)]) or len(data) < 4:
        raise CodecError(f"not a tfflows codec file: it starts with {data[:4]!r}, expected {MAGIC!r}.")
    if len(data) < _HEAD.size + 4:
        raise CodecError(
            f"the file is truncated: {len(data)} bytes, shorter than the {_HEAD.size + 4}-byte "
            "header and checksum."
        )
    (_magic, version, layout, num_bits, _, fingerprint, h, w, c, count, pixels_crc) = _HEAD.unpack_from(data)
    if version != VERSION:
        raise CodecError(f"the file is codec version {version}; this tfflows reads version {VERSION}.")
    body, (crc,) = data[_HEAD.size : -4], struct.unpack("<I", data[-4:])
    if zlib.crc32(data[:-4]) != crc:
        raise CodecError("the file is corrupted or truncated: its CRC-32 does not match its contents.")
    if layout >= len(LAYOUTS):
        raise CodecError(f"unknown layout {layout} in the header (expected 0 or 1).")
    header = Header(LAYOUTS[layout], num_bits, fingerprint, (h, w, c), count, pixels_crc)
    pixels = count * h * w * c * (2 if num_bits > 8 else 1)
    if count < 1 or min(h, w, c) < 1 or pixels > max(MAX_EXPANSION * len(data), 1 << 26):
        raise CodecError(
            f"the header claims {count} images of {h}×{w}×{c} from {len(data)} bytes: "
            "not a file this codec wrote."
        )
    if header.layout == "stream":
        if len(body) % 4:
            raise CodecError(f"the coded stream is {len(body)} bytes, not whole 32-bit words: truncated.")
        return header, [np.frombuffer(body, dtype="<u4").astype(np.uint32)]
    lengths, pos = [], 0
    for _ in range(count):
        value, shift = 0, 0
        while True:
            if pos >= len(body) or shift > 28:
                raise CodecError("the random-access index is truncated or malformed.")
            byte = body[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        lengths.append(value)
    if 4 * sum(lengths) != len(body) - pos:
        raise CodecError(
            f"the random-access index lists {4 * sum(lengths)} bytes of images, the file holds "
            f"{len(body) - pos}."
        )
    words = (
        np.frombuffer(body, dtype="<u4", offset=pos).astype(np.uint32)
        if len(body) > pos
        else np.zeros(0, np.uint32)
    )
    ends = np.cumsum([0] + lengths)
    return header, [words[ends[i] : ends[i + 1]] for i in range(count)]
