"""tfflows.codec: lossless image compression with an integer discrete flow and constriction's range coder.

>>> data = tfflows.codec.compress(model, images)          # uint8 [N, H, W, C]
>>> assert (tfflows.codec.decompress(model, data) == images).all()
"""

from tfflows.codec.container import CodecError
from tfflows.codec.coder import Codec, compress, decompress, fingerprint

__all__ = ["Codec", "CodecError", "compress", "decompress", "fingerprint"]
