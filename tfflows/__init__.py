"""tfflows: normalizing flows for TensorFlow, Keras 3 and TensorFlow Probability."""

from tfflows import bijectors

__version__ = "0.1.0"

__all__ = ["bijectors", "__version__"]
