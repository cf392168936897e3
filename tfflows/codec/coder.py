"""compress / decompress: lossless image coding with an integer discrete flow and constriction's range coder.

The model maps each image to integer latents exactly (:class:`tfflows.models.IDF`)
and gives each latent a discretized logistic mixture conditioned on the
latents before it; the range coder spends −log₂ P bits on each. The coder runs
the model in float64 (a twin with the same weights) and rounds every value
it depends on to a grid (:mod:`tfflows.codec.quantize`); an image where any
value lies within the guard band of a rounding boundary is flagged and its
pixels are coded uniformly, with no network involved, so that decoding on
another process, thread count or oneDNN setting gives back the same bits.

Order of the symbols: images go in chunks of :data:`CHUNK`; within a chunk,
each image's fallback flag, then group by group (coding order) each image's
latents, then the flagged images' pixels. The decoder runs the network once
per group for the whole chunk.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from typing import Any

import constriction
import numpy as np
from numpy.typing import ArrayLike

from tfflows.codec import quantize as qz
from tfflows.codec.container import CodecError, Header, pack, unpack

__all__ = ["CHUNK", "FALLBACK_P", "Codec", "compress", "decompress", "fingerprint"]

CHUNK = 64
"""Images run through the network together (bounds the memory of the probability tables)."""
FALLBACK_P = 2.0**-10
"""Probability the coder gives an image's fallback flag (costs 0.0014 bits per normal image)."""
_SMALLEST = 2.0**-24
"""The least probability constriction's range coder (24-bit precision) gives any symbol."""
_CATEGORICAL = constriction.stream.model.Categorical(perfect=False)
_FLAG = constriction.stream.model.Bernoulli(FALLBACK_P, perfect=False)


def _require_idf(model):
    from tfflows.models.idf import IDF

    if not isinstance(model, IDF):
        raise CodecError(
            f"the codec needs an integer discrete flow (tfflows.models.IDF); got a "
            f"{type(model).__name__}, whose likelihood is not exact on integers."
        )
    return model


def fingerprint(model: Any) -> bytes:
    """16 bytes of SHA-256 over the model's configuration, weights and the coder's grid."""
    model = _require_idf(model)
    config = {k: v for k, v in model.get_config().items() if k not in ("name", "trainable", "dtype")}
    h = hashlib.sha256()
    h.update(json.dumps(config, sort_keys=True).encode())
    h.update(
        json.dumps(
            [qz.MEAN_STEPS, qz.LOG_SCALE_STEPS, qz.LOGIT_STEPS, qz.LOGIT_FLOOR, qz.GUARD, FALLBACK_P, CHUNK]
        ).encode()
    )
    for w in model.weights:
        value = np.ascontiguousarray(np.asarray(w.numpy(), dtype=np.float32))
        h.update(f"{w.path}:{value.shape}".encode())
        h.update(value.tobytes())
    return h.digest()[:16]


class Codec:
    """A model ready to code: its float64 twin, its fingerprint and its latent range.

    Build one per model and reuse it (the twin and the tables are built once).

    After :meth:`compress`, ``last_fallback`` marks the images coded without
    the network (a value fell in the guard band) and ``last_information`` holds
    each image's bits under the coder's own quantized probabilities (what an
    ideal coder would spend; the range coder adds its rounding and flush).
    """

    def __init__(self, model: Any) -> None:
        from tfflows.models.idf import IDF

        model = _require_idf(model)
        config = {**model.get_config(), "dtype": "float64"}
        config.pop("name", None)
        self.model = model
        self.twin = IDF.from_config(config)
        self.twin.build()
        self.twin.set_weights([np.asarray(w, dtype=np.float64) for w in model.get_weights()])
        self.fingerprint = fingerprint(model)
        self.lo, self.hi = model.latent_range()
        self.shape = tuple(model.event_shape)
        self.num_bits = model.num_bits
        self.levels = 2**model.num_bits
        self.dtype = np.uint8 if self.num_bits <= 8 else np.uint16
        self.last_fallback = np.zeros(0, dtype=bool)
        self.last_information = np.zeros(0)

    # -- input checks -----------------------------------------------------------------------------

    def check_images(self, images: ArrayLike) -> np.ndarray:
        """``images`` as ``[N, H, W, C]`` of the model's dtype and levels.

        Raises:
          CodecError: one line saying what is wrong (dtype, shape or levels).
        """
        arr = np.asarray(images) if not isinstance(images, np.ndarray) else images
        if arr.dtype != self.dtype:
            raise CodecError(
                f"expected {np.dtype(self.dtype).name} images (pixel levels 0..{self.levels - 1}), "
                f"got dtype {arr.dtype}."
            )
        if arr.ndim == len(self.shape):
            arr = arr[None]
        if arr.ndim != 4 or tuple(arr.shape[1:]) != self.shape:
            raise CodecError(
                f"expected images of shape {self.shape} (one, or a batch [N, "
                f"{', '.join(map(str, self.shape))}]), got shape {tuple(np.shape(images))}."
            )
        if arr.shape[0] == 0:
            raise CodecError("no images to compress (an empty batch).")
        if self.levels < 2 ** (8 * arr.itemsize) and arr.max() >= self.levels:
            raise CodecError(
                f"pixel values must be in 0..{self.levels - 1} (num_bits={self.num_bits}), "
                f"got a maximum of {int(arr.max())}."
            )
        return arr

    # -- the two directions -----------------------------------------------------------------------

    def _plan_chunk(self, x: np.ndarray) -> tuple[np.ndarray, list[tuple[np.ndarray, qz.Quantized]]]:
        """Fallback flags and, per group, the symbols and quantized parameters of the other images."""
        shifts: list = []
        groups = self.twin.groups(x.astype(np.float64), shifts=shifts)
        n = len(x)
        low = np.full(n, np.inf)
        for t in shifts:
            low = np.minimum(low, qz.margin(np.asarray(t)).reshape(n, -1).min(axis=1))
        quantized = []
        for z, params in groups:
            q = qz.quantize(np.asarray(params), self.lo, self.hi)
            low = np.minimum(low, q.margin.reshape(n, -1).min(axis=1))
            quantized.append((np.asarray(z), q))
        fallback = low < qz.GUARD
        keep = np.flatnonzero(~fallback)
        planned = []
        for z, q in quantized if len(keep) else []:
            planned.append(((z[keep] - self.lo).astype(np.int32), _take(q, keep)))
        return fallback, planned

    def _table(self, q: qz.Quantized, row: int) -> np.ndarray:
        """One image's probability table ``[latents, hi − lo + 1]`` for one group.

        Built image by image, where the coder uses it: a chunk's whole table (64
        images × latents × 384 values for 8-bit pixels) is over 100 MB per group,
        and building it at once spent most of the time moving memory. Every entry
        is the same float either way.
        """
        probs = qz.probabilities(_take(q, row), self.lo, self.hi)
        return probs.reshape(-1, probs.shape[-1])

    def _encode_chunk(self, x: np.ndarray, encoders: list) -> tuple[np.ndarray, np.ndarray]:
        """Codes a chunk; returns its fallback flags and each image's bits under the coder's probabilities."""
        fallback, planned = self._plan_chunk(x)
        # Bits per image under the coder's own quantized probabilities (what an ideal coder spends).
        bits = np.where(
            fallback, -np.log2(FALLBACK_P) + x[0].size * np.log2(self.levels), -np.log2(1.0 - FALLBACK_P)
        )
        for i in range(len(x)):
            encoders[i].encode(np.array([int(fallback[i])], dtype=np.int32), _FLAG)
        keep = np.flatnonzero(~fallback)
        for symbols, q in planned:
            for j, image in enumerate(keep):
                probs = self._table(q, j)
                flat = symbols[j].ravel()
                encoders[image].encode(flat, _CATEGORICAL, probs)
                p = probs[np.arange(len(flat)), flat] / probs.sum(-1)
                p = np.maximum(p, _SMALLEST)  # constriction gives every symbol at least this much
                bits[image] += -np.log2(p).sum()
        for k in np.flatnonzero(fallback):
            encoders[k].encode(x[k].astype(np.int32).ravel(), constriction.stream.model.Uniform(self.levels))
        return fallback, bits

    def _decode_chunk(self, n: int, decoders: list) -> np.ndarray:
        fallback = np.array([decoders[i].decode(_FLAG, 1)[0] for i in range(n)], dtype=bool)
        keep = np.flatnonzero(~fallback)
        out = np.zeros((n,) + self.shape, dtype=self.dtype)
        if len(keep):

            def draw(params, index):
                q = qz.quantize(np.asarray(params), self.lo, self.hi)
                z = np.empty(q.mean.shape[:-1], dtype=np.float64)
                for j, i in enumerate(keep):
                    z[j] = decoders[i].decode(_CATEGORICAL, self._table(q, j)).reshape(z.shape[1:]) + self.lo
                return z

            x = np.asarray(self.twin.invert(draw, batch_size=len(keep)))
            if x.min() < 0 or x.max() >= self.levels:
                raise CodecError(
                    "the coded data decode to pixels outside the model's levels: the file was "
                    "not written by this codec and model, or is corrupted."
                )
            out[keep] = np.rint(x).astype(self.dtype)
        size = int(np.prod(self.shape))
        for i in np.flatnonzero(fallback):
            pixels = decoders[i].decode(constriction.stream.model.Uniform(self.levels), size)
            out[i] = pixels.reshape(self.shape).astype(self.dtype)
        return out

    def compress(self, images: ArrayLike, layout: str = "stream") -> bytes:
        """The compressed bytes of ``images`` (uint8 ``[N, H, W, C]`` or one ``[H, W, C]``)."""
        if layout not in ("stream", "random_access"):
            raise CodecError(f"layout must be 'stream' or 'random_access', got {layout!r}.")
        x = self.check_images(images)
        n = len(x)
        if layout == "stream":
            shared = constriction.stream.queue.RangeEncoder()
            encoders = [shared] * n
        else:
            encoders = [constriction.stream.queue.RangeEncoder() for _ in range(n)]
        stats = [
            self._encode_chunk(x[start : start + CHUNK], encoders[start : start + CHUNK])
            for start in range(0, n, CHUNK)
        ]
        self.last_fallback = np.concatenate([f for f, _ in stats])
        self.last_information = np.concatenate([b for _, b in stats])
        messages = [shared.get_compressed()] if layout == "stream" else [e.get_compressed() for e in encoders]
        header = Header(layout, self.num_bits, self.fingerprint, self.shape, n, zlib.crc32(x.tobytes()))
        return pack(header, messages)

    def _check_header(self, header: Header) -> None:
        if header.fingerprint != self.fingerprint:
            raise CodecError(
                f"the file was compressed with another model (fingerprint "
                f"{header.fingerprint.hex()}, this model's is {self.fingerprint.hex()})."
            )
        if header.shape != self.shape or header.num_bits != self.num_bits:
            raise CodecError(
                f"the file holds {header.shape} images of {header.num_bits} bits; this model codes "
                f"{self.shape} of {self.num_bits}."
            )

    def decompress(self, data: bytes, index: int | None = None) -> np.ndarray:
        """The images of ``data`` ``[N, H, W, C]``, or the one at ``index`` (random-access files only)."""
        header, messages = unpack(data)
        self._check_header(header)
        if index is not None:
            if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
                raise CodecError(f"index must be an integer (an image's place in the file), got {index!r}.")
            if header.layout != "random_access":
                raise CodecError(
                    "decoding one image by index needs a random-access file; this one is a "
                    "single stream (decode it whole)."
                )
            if not 0 <= index < header.count:
                raise CodecError(f"index {index} is out of range: the file holds {header.count} images.")
            return self._decode_chunk(1, [_decoder(messages[index])])[0]
        if header.layout == "stream":
            shared = _decoder(messages[0])
            decoders = [shared] * header.count
        else:
            decoders = [_decoder(m) for m in messages]
        parts = [
            self._decode_chunk(min(CHUNK, header.count - start), decoders[start : start + CHUNK])
            for start in range(0, header.count, CHUNK)
        ]
        out = np.concatenate(parts)
        if zlib.crc32(out.tobytes()) != header.pixels_crc:
            raise CodecError(
                "the decoded images do not match the checksum recorded at compression: the file "
                "is corrupted, or this machine computes the model differently."
            )
        return out


def _decoder(words: np.ndarray):
    return constriction.stream.queue.RangeDecoder(np.ascontiguousarray(words, dtype=np.uint32))


def _take(q: qz.Quantized, rows: np.ndarray | int) -> qz.Quantized:
    return qz.Quantized(q.mean[rows], q.log_scale[rows], q.logit[rows], q.margin[rows])


_CODECS: dict[int, Codec] = {}


def _codec(model) -> Codec:
    # One twin per live model; rebuilt when its weights changed (the fingerprint tells).
    codec = _CODECS.get(id(model))
    if codec is None or codec.model is not model or codec.fingerprint != fingerprint(model):
        codec = _CODECS[id(model)] = Codec(model)
    return codec


def compress(model: Any, images: ArrayLike, layout: str = "stream") -> bytes:
    """Losslessly compresses uint8 images with an IDF model.

    Args:
      model: a trained :class:`tfflows.models.IDF`.
      images: ``[N, H, W, C]`` or one ``[H, W, C]`` image of the model's shape, uint8
        (uint16 for ``num_bits`` > 8), levels in 0..2ⁿ−1.
      layout: ``"stream"`` (one message: smallest) or ``"random_access"`` (each image
        decodes on its own by index).

    Returns:
      The file's bytes (see :mod:`tfflows.codec.container`).

    Raises:
      CodecError: (a ValueError) for a model that is not an IDF or images it cannot code.
    """
    return _codec(model).compress(images, layout)


def decompress(model: Any, data: bytes, index: int | None = None) -> np.ndarray:
    """The images that :func:`compress` coded, exactly: ``[N, H, W, C]``, or one image by ``index``.

    Raises:
      CodecError: (a ValueError) for empty, truncated, corrupted or other-model data.
    """
    return _codec(model).decompress(data, index)
