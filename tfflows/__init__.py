"""tfflows: normalizing flows for TensorFlow, Keras 3 and TensorFlow Probability.

The heavy names load on first use (PEP 562), so ``import tfflows`` and the
``tfflows`` command line's ``--help`` do not import TensorFlow;
``from tfflows import Glow`` and ``tfflows.Glow`` work as usual.

``keras.models.load_model`` finds tfflows' classes once ``tfflows.models``
and ``tfflows.training`` (the learning-rate schedule of a compiled model)
are imported. ``import tfflows`` does that at once when TensorFlow or Keras
is already imported (it then costs little); otherwise import those two
first, or use any of their names.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> the module that defines it ("" for a subpackage of that name).
_LAZY: dict[str, str] = {
    "FlowModel": "tfflows.models",
    "Glow": "tfflows.models",
    "RealNVP": "tfflows.models",
    "VectorGlow": "tfflows.models",
    "VectorNSF": "tfflows.models",
    "VectorRealNVP": "tfflows.models",
    "WarmupSchedule": "tfflows.training",
    "export_saved_model": "tfflows.export",
    "make_optimizer": "tfflows.training",
    "bijectors": "",
    "layers": "",
    "models": "",
}

__all__ = [
    "FlowModel",
    "Glow",
    "RealNVP",
    "VectorGlow",
    "VectorNSF",
    "VectorRealNVP",
    "WarmupSchedule",
    "__version__",
    "bijectors",
    "export_saved_model",
    "layers",
    "make_optimizer",
    "models",
]

if TYPE_CHECKING:
    from tfflows import bijectors, layers, models
    from tfflows.export import export_saved_model
    from tfflows.models import FlowModel, Glow, RealNVP, VectorGlow, VectorNSF, VectorRealNVP
    from tfflows.training import WarmupSchedule, make_optimizer


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'tfflows' has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name] or f"tfflows.{name}")
    value = module if not _LAZY[name] else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


# Every module that registers Keras-serializable objects a saved model may name
# (models bring layers and bijectors; training has the learning-rate schedule).
_SERIALIZABLE = ("tfflows.models", "tfflows.training")


def _register_keras_objects() -> None:
    """Imports every tfflows class that ``keras.models.load_model`` may need."""
    for module in _SERIALIZABLE:
        importlib.import_module(module)


def _register_if_tensorflow_is_loaded() -> None:
    import sys

    if "tensorflow" in sys.modules or "keras" in sys.modules:
        _register_keras_objects()


_register_if_tensorflow_is_loaded()
