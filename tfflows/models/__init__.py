"""Flow models: RealNVP, Glow, TarFlow, Jet and vector flows as Keras models with a TFP distribution."""

from tfflows.models.base import FlowModel, NonFiniteGuard
from tfflows.models.glow import Glow
from tfflows.models.idf import IDF
from tfflows.models.jet import Jet
from tfflows.models.maf import VectorMAF
from tfflows.models.realnvp import RealNVP
from tfflows.models.tarflow import TarFlow
from tfflows.models.vector import VectorGlow, VectorNSF, VectorRealNVP

__all__ = ["FlowModel", "Glow", "IDF", "Jet", "NonFiniteGuard", "RealNVP", "TarFlow", "VectorGlow", "VectorMAF", "VectorNSF", "VectorRealNVP"]
