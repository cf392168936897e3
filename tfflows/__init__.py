"""tfflows: normalizing flows for TensorFlow, Keras 3 and TensorFlow Probability."""

from tfflows import bijectors, layers, models
from tfflows.models import FlowModel, Glow, RealNVP, VectorGlow, VectorNSF, VectorRealNVP
from tfflows.export import export_saved_model
from tfflows.training import WarmupSchedule, make_optimizer

__version__ = "0.1.0"

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
