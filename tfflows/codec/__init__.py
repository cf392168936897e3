"""tfflows.codec: lossless image compression with an integer discrete flow and constriction's range coder.

>>> data = tfflows.codec.compress(model, images)          # uint8 [N, H, W, C]
>>> assert (tfflows.codec.decompress(model, data) == images).all()

The names load on first use, so that ``tfflows --help`` (which reads
:mod:`tfflows.codec.cli`) imports no TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["Codec", "CodecError", "compress", "decompress", "fingerprint"]

_LAZY = {
    "Codec": "tfflows.codec.coder",
    "CodecError": "tfflows.codec.container",
    "compress": "tfflows.codec.coder",
    "decompress": "tfflows.codec.coder",
    "fingerprint": "tfflows.codec.coder",
}

if TYPE_CHECKING:
    from tfflows.codec.coder import Codec, compress, decompress, fingerprint
    from tfflows.codec.container import CodecError


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'tfflows.codec' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
