"""tfflows: normalizing flows for TensorFlow, Keras 3 and TensorFlow Probability.

``import tfflows`` imports the models, and so registers every class that
``keras.models.load_model`` may need, as Keras users expect. Only the
``tfflows`` command (and ``python -m tfflows.cli``) starts lazily: its
``--help`` and argument errors answer without importing TensorFlow, and the
heavy names load on first use (PEP 562); the command registers the classes
itself before it loads a model.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> the module that defines it ("" for a subpackage of that name).
_LAZY: dict[str, str] = {
    "FlowDistribution": "tfflows.distribution",
    "FlowModel": "tfflows.models",
    "Glow": "tfflows.models",
    "IDF": "tfflows.models",
    "Jet": "tfflows.models",
    "LiveBijector": "tfflows.distribution",
    "MonteCarloEstimate": "tfflows.estimates",
    "RealNVP": "tfflows.models",
    "TarFlow": "tfflows.models",
    "VectorGlow": "tfflows.models",
    "VectorMAF": "tfflows.models",
    "VectorNSF": "tfflows.models",
    "VectorRealNVP": "tfflows.models",
    "ScheduledAdam": "tfflows.training",
    "WarmupSchedule": "tfflows.training",
    "export_saved_model": "tfflows.export",
    "make_optimizer": "tfflows.training",
    "monte_carlo_entropy": "tfflows.estimates",
    "monte_carlo_kl": "tfflows.estimates",
    "pretrained": "tfflows.zoo",
    "bijectors": "",
    "codec": "",
    "layers": "",
    "models": "",
    "ood": "",
}

__all__ = [
    "FlowDistribution",
    "FlowModel",
    "Glow",
    "IDF",
    "Jet",
    "LiveBijector",
    "MonteCarloEstimate",
    "RealNVP",
    "TarFlow",
    "VectorGlow",
    "VectorMAF",
    "VectorNSF",
    "VectorRealNVP",
    "ScheduledAdam",
    "WarmupSchedule",
    "__version__",
    "register_keras_objects",
    "bijectors",
    "codec",
    "export_saved_model",
    "layers",
    "make_optimizer",
    "models",
    "monte_carlo_entropy",
    "monte_carlo_kl",
    "ood",
    "pretrained",
]

if TYPE_CHECKING:
    from tfflows import bijectors, codec, layers, models, ood
    from tfflows.distribution import FlowDistribution, LiveBijector
    from tfflows.estimates import MonteCarloEstimate, monte_carlo_entropy, monte_carlo_kl
    from tfflows.export import export_saved_model
    from tfflows.models import (
        IDF,
        FlowModel,
        Glow,
        Jet,
        RealNVP,
        TarFlow,
        VectorGlow,
        VectorMAF,
        VectorNSF,
        VectorRealNVP,
    )
    from tfflows.training import ScheduledAdam, WarmupSchedule, make_optimizer
    from tfflows.zoo import pretrained


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
_SERIALIZABLE = ("tfflows.training",)


def register_keras_objects() -> None:
    """Imports every tfflows class that ``keras.models.load_model`` may need: each registered model."""
    from tfflows.models import registry

    registry.entries()  # imports every built-in model's module
    for module in _SERIALIZABLE:
        importlib.import_module(module)


def _starting_the_command_line() -> bool:
    """True while the ``tfflows`` console script or ``python -m tfflows.cli`` imports us."""
    import os
    import sys

    argv0 = sys.argv[0] if sys.argv else ""
    # ``python -m`` sets argv[0] to "-m" while it imports the module's package.
    return os.path.basename(argv0) in ("tfflows", "tfflows.exe") or argv0 == "-m"


def _register_unless_starting_the_command_line() -> None:
    import sys

    if not _starting_the_command_line() or "tensorflow" in sys.modules or "keras" in sys.modules:
        register_keras_objects()


_register_unless_starting_the_command_line()
