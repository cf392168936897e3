"""Flow models: RealNVP, Glow, TarFlow, Jet and vector flows as Keras models with a TFP distribution.

Every model registers in :mod:`tfflows.models.registry`, which the command
line reads without importing TensorFlow; the model classes load on first use
(PEP 562), so ``import tfflows.models.registry`` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "FlowModel",
    "Glow",
    "IDF",
    "Jet",
    "NonFiniteGuard",
    "RealNVP",
    "TarFlow",
    "VectorGlow",
    "VectorMAF",
    "VectorNSF",
    "VectorRealNVP",
]

# name -> the module that defines it.
_LAZY = {
    "FlowModel": "tfflows.models.base",
    "NonFiniteGuard": "tfflows.training.step",
    "Glow": "tfflows.models.glow",
    "IDF": "tfflows.models.idf",
    "Jet": "tfflows.models.jet",
    "RealNVP": "tfflows.models.realnvp",
    "TarFlow": "tfflows.models.tarflow",
    "VectorGlow": "tfflows.models.vector",
    "VectorMAF": "tfflows.models.maf",
    "VectorNSF": "tfflows.models.vector",
    "VectorRealNVP": "tfflows.models.vector",
}

if TYPE_CHECKING:
    from tfflows.models.base import FlowModel
    from tfflows.models.glow import Glow
    from tfflows.models.idf import IDF
    from tfflows.models.jet import Jet
    from tfflows.models.maf import VectorMAF
    from tfflows.models.realnvp import RealNVP
    from tfflows.models.tarflow import TarFlow
    from tfflows.models.vector import VectorGlow, VectorNSF, VectorRealNVP
    from tfflows.training.step import NonFiniteGuard


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'tfflows.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
