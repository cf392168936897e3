"""Flows on vectors (tabular and 2-D data) with the image models' API."""

from __future__ import annotations

from typing import Any

import keras

from tfflows.bijectors.base import check_positive_ints
from tfflows.bijectors.permute import ChannelPermutation
from tfflows.layers.actnorm import ActNormLayer
from tfflows.layers.conv1x1 import InvertibleConv1x1Layer
from tfflows.layers.coupling import CouplingLayer
from tfflows.layers.spline import SplineCouplingLayer
from tfflows.layers.standardize import StandardizeLayer
from tfflows.models.base import FlowModel

__all__ = ["VectorRealNVP", "VectorGlow", "VectorNSF", "standardized"]


def standardized(steps: list, standardize: bool) -> list:
    """``steps`` after a :class:`~tfflows.layers.StandardizeLayer` when ``standardize``."""
    return [StandardizeLayer(name="standardize"), *steps] if standardize else steps


@keras.saving.register_keras_serializable(package="tfflows")
class VectorRealNVP(FlowModel):
    """RealNVP on vectors: affine couplings with MLP conditioners and permutations.

    Data → latent: ``num_layers`` × (half-mask affine coupling with
    s = exp(a ⊙ tanh(h)), then a fixed permutation of the features —
    a reversal, or a seeded shuffle with ``permutation="shuffle"``).

    Args:
      dim: number of features D ≥ 2.
      num_layers: coupling layers.
      hidden_units: width of the MLP conditioners.
      num_hidden: hidden layers per MLP.
      permutation: ``"reverse"`` or ``"shuffle"``.
      num_classes / context_dim: make the model conditional.
      seed: seed of the shuffles.
      standardize: first a :class:`~tfflows.layers.StandardizeLayer` whose
        mean and scale ``initialize(data)`` fits (log_prob stays in data units).

    References:
      Dinh, Sohl-Dickstein, Bengio. Density estimation using Real NVP. ICLR 2017.
    """

    def __init__(self, dim: int = 2, num_layers: int = 8, hidden_units: int = 64, num_hidden: int = 2,
                 permutation: str = "reverse", num_classes: int | None = None,
                 context_dim: int | None = None, seed: int = 0, standardize: bool = False,
                 **kwargs: Any) -> None:
        check_positive_ints(type(self).__name__, dim=dim, num_layers=num_layers, hidden_units=hidden_units,
               num_hidden=num_hidden)
        if dim < 2:
            raise ValueError(f"{type(self).__name__}: dim must be >= 2 to split the features, got {dim}.")
        if permutation not in ("reverse", "shuffle"):
            raise ValueError(f"{type(self).__name__}: permutation must be 'reverse' or 'shuffle', "
                             f"got {permutation!r}.")
        super().__init__((dim,), num_classes=num_classes, context_dim=context_dim, **kwargs)
        self.dim, self.num_layers = dim, num_layers
        self.hidden_units, self.num_hidden = hidden_units, num_hidden
        self.permutation, self.seed = permutation, seed
        self.standardize = bool(standardize)
        self._finish_init()

    def _make_steps(self) -> list:
        steps: list = []
        for i in range(self.num_layers):
            steps.append(CouplingLayer("half", 0, scale_fn="tanh", conditioner="mlp",
                                       hidden_units=self.hidden_units, num_hidden=self.num_hidden,
                                       name=f"coupling_{i}"))
            if i < self.num_layers - 1:
                steps.append(ChannelPermutation.reverse(self.dim, event_ndims=1)
                             if self.permutation == "reverse"
                             else ChannelPermutation.shuffle(self.dim, self.seed + i, event_ndims=1))
        return standardized(steps, self.standardize)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "dim": self.dim, "num_layers": self.num_layers,
                "hidden_units": self.hidden_units, "num_hidden": self.num_hidden,
                "permutation": self.permutation, "num_classes": self.num_classes,
                "context_dim": self.context_dim, "seed": self.seed, "standardize": self.standardize}


@keras.saving.register_keras_serializable(package="tfflows")
class VectorGlow(FlowModel):
    """Glow steps on vectors: ActNorm → invertible dense (LU) → affine coupling.

    Args:
      dim: number of features D ≥ 2.
      num_steps: flow steps.
      hidden_units: width of the MLP conditioners.
      num_hidden: hidden layers per MLP.
      coupling: ``"affine"`` or ``"additive"``.
      lu: LU-parameterised invertible dense layers.
      num_classes / context_dim: make the model conditional.
      seed: seed of the initial rotations.
      standardize: first a :class:`~tfflows.layers.StandardizeLayer` whose
        mean and scale ``initialize(data)`` fits (log_prob stays in data units).

    References:
      Kingma, Dhariwal. Glow: Generative Flow with Invertible 1x1
        Convolutions. NeurIPS 2018.
    """

    def __init__(self, dim: int = 2, num_steps: int = 8, hidden_units: int = 64, num_hidden: int = 2,
                 coupling: str = "affine", lu: bool = True, num_classes: int | None = None,
                 context_dim: int | None = None, seed: int = 0, standardize: bool = False,
                 **kwargs: Any) -> None:
        check_positive_ints(type(self).__name__, dim=dim, num_steps=num_steps, hidden_units=hidden_units,
               num_hidden=num_hidden)
        if dim < 2:
            raise ValueError(f"{type(self).__name__}: dim must be >= 2 to split the features, got {dim}.")
        if coupling not in ("affine", "additive"):
            raise ValueError(f"{type(self).__name__}: coupling must be 'affine' or 'additive', got {coupling!r}.")
        super().__init__((dim,), num_classes=num_classes, context_dim=context_dim, **kwargs)
        self.dim, self.num_steps = dim, num_steps
        self.hidden_units, self.num_hidden = hidden_units, num_hidden
        self.coupling, self.lu, self.seed = coupling, lu, seed
        self.standardize = bool(standardize)
        self._finish_init()

    def _make_steps(self) -> list:
        steps: list = []
        for k in range(self.num_steps):
            steps += [
                ActNormLayer(event_ndims=1, name=f"actnorm_{k}"),
                InvertibleConv1x1Layer(lu=self.lu, seed=self.seed * 1000 + k, event_ndims=1,
                                       name=f"dense_{k}"),
                CouplingLayer("half", 0, additive=self.coupling == "additive", scale_fn="tanh",
                              conditioner="mlp", hidden_units=self.hidden_units,
                              num_hidden=self.num_hidden, name=f"coupling_{k}"),
            ]
        return standardized(steps, self.standardize)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "dim": self.dim, "num_steps": self.num_steps,
                "hidden_units": self.hidden_units, "num_hidden": self.num_hidden,
                "coupling": self.coupling, "lu": self.lu, "num_classes": self.num_classes,
                "context_dim": self.context_dim, "seed": self.seed, "standardize": self.standardize}


@keras.saving.register_keras_serializable(package="tfflows")
class VectorNSF(FlowModel):
    """Neural Spline Flow on vectors: invertible linear (LU) → rational-quadratic spline coupling.

    Each of ``num_layers`` steps mixes the features with an LU-parameterised
    invertible dense layer, then moves half of them with monotone
    rational-quadratic splines whose bins and slopes an MLP computes from the
    other half (RQ-NSF (C) of the paper). Splines reach sharp densities that
    affine couplings smooth over (e.g. the checkerboard toy).

    Args:
      dim: number of features D ≥ 2.
      num_layers: coupling steps.
      hidden_units: width of the MLP conditioners.
      num_hidden: hidden layers per MLP.
      num_bins: spline bins K.
      bound: splines act on [−bound, bound], identity outside.
      num_classes / context_dim: make the model conditional.
      seed: seed of the initial rotations.
      standardize: first a :class:`~tfflows.layers.StandardizeLayer` whose
        mean and scale ``initialize(data)`` fits (log_prob stays in data units).

    References:
      Durkan, Bekasov, Murray, Papamakarios. Neural Spline Flows. NeurIPS 2019.
    """

    def __init__(self, dim: int = 2, num_layers: int = 6, hidden_units: int = 64, num_hidden: int = 2,
                 num_bins: int = 8, bound: float = 5.0, num_classes: int | None = None,
                 context_dim: int | None = None, seed: int = 0, standardize: bool = False,
                 **kwargs: Any) -> None:
        check_positive_ints(type(self).__name__, dim=dim, num_layers=num_layers, hidden_units=hidden_units,
               num_hidden=num_hidden, num_bins=num_bins)
        if dim < 2:
            raise ValueError(f"{type(self).__name__}: dim must be >= 2 to split the features, got {dim}.")
        super().__init__((dim,), num_classes=num_classes, context_dim=context_dim, **kwargs)
        self.dim, self.num_layers = dim, num_layers
        self.hidden_units, self.num_hidden = hidden_units, num_hidden
        self.num_bins, self.bound, self.seed = num_bins, float(bound), seed
        self.standardize = bool(standardize)
        self._finish_init()

    def _make_steps(self) -> list:
        steps: list = []
        for k in range(self.num_layers):
            steps += [
                InvertibleConv1x1Layer(lu=True, seed=self.seed * 1000 + k, event_ndims=1,
                                       name=f"linear_{k}"),
                SplineCouplingLayer("half", k % 2, num_bins=self.num_bins, bound=self.bound,
                                    hidden_units=self.hidden_units, num_hidden=self.num_hidden,
                                    name=f"spline_{k}"),
            ]
        return standardized(steps, self.standardize)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "dim": self.dim, "num_layers": self.num_layers,
                "hidden_units": self.hidden_units, "num_hidden": self.num_hidden,
                "num_bins": self.num_bins, "bound": self.bound, "num_classes": self.num_classes,
                "context_dim": self.context_dim, "seed": self.seed, "standardize": self.standardize}
