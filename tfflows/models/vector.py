"""Flows on vectors (tabular and 2-D data) with the image models' API."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from tfflows.bijectors.base import check_positive_ints, dropout_config
from tfflows.bijectors.permute import ChannelPermutation
from tfflows.bijectors.transforms import transform_names
from tfflows.deprecation import old_argument_names
from tfflows.layers.actnorm import ActNormLayer
from tfflows.layers.conv1x1 import InvertibleConv1x1Layer
from tfflows.layers.coupling import CouplingLayer
from tfflows.layers.spline import SplineCouplingLayer
from tfflows.layers.standardize import StandardizeLayer
from tfflows.models.arguments import check_conditioner_dropout
from tfflows.models.base import FlowModel
from tfflows.models.registry import ModelEntry, register_model

__all__ = [
    "VECTOR_RENAMES",
    "VectorRealNVP",
    "VectorGlow",
    "VectorNSF",
    "num_features",
    "standardized",
    "vector_defaults",
    "vector_options",
]

VECTOR_RENAMES = {
    "dim": "event_shape",
    "num_layers": "num_steps",
    "hidden_units": "width",
    "num_hidden": "depth",
}
"""The vector models' old argument names and the glossary's names that replace them."""


def num_features(owner: str, event_shape: Any, minimum: int) -> int:
    """D of a vector model's ``event_shape``: an int D or a shape ``(D,)``, at least ``minimum``.

    Raises:
      ValueError: anything else.
    """
    shape = (
        (event_shape,)
        if isinstance(event_shape, (int, np.integer)) and not isinstance(event_shape, bool)
        else event_shape
    )
    try:
        dims = tuple(shape)
    except TypeError:
        dims = ()
    if (
        len(dims) != 1
        or isinstance(dims[0], bool)
        or not isinstance(dims[0], (int, np.integer))
        or dims[0] < minimum
    ):
        why = " to split the features" if minimum == 2 else ""
        raise ValueError(
            f"{owner}: event_shape must be the number of features D >= {minimum}{why} "
            f"(an int or a shape (D,)), got {event_shape!r}."
        )
    return int(dims[0])


def standardized(steps: list, standardize: bool) -> list:
    """``steps`` after a :class:`~tfflows.layers.StandardizeLayer` when ``standardize``."""
    return [StandardizeLayer(name="standardize"), *steps] if standardize else steps


@keras.saving.register_keras_serializable(package="tfflows")
@old_argument_names(VECTOR_RENAMES)
class VectorRealNVP(FlowModel):
    """RealNVP on vectors: affine couplings with MLP conditioners and permutations.

    Data → latent: ``num_steps`` × (half-mask affine coupling with
    s = exp(a ⊙ tanh(h)), then a fixed permutation of the features —
    a reversal, or a seeded shuffle with ``permutation="shuffle"``).

    Args:
      event_shape: the number of features D ≥ 2 (or the shape (D,)).
      num_steps: coupling layers.
      width: width of the MLP conditioners.
      depth: hidden layers per MLP.
      permutation: ``"reverse"`` or ``"shuffle"``.
      num_classes / context_dim: make the model conditional.
      seed: seed of the shuffles.
      standardize: first a :class:`~tfflows.layers.StandardizeLayer` whose
        mean and scale ``initialize(data)`` fits (log_prob stays in data units).
      dropout: dropout rate after each hidden layer of the conditioners while
        training (0: none); small tables need it (see :func:`vector_defaults`).
      dim, num_layers, hidden_units, num_hidden: deprecated old names of
        ``event_shape``, ``num_steps``, ``width`` and ``depth``.

    References:
      Dinh, Sohl-Dickstein, Bengio. Density estimation using Real NVP. ICLR 2017.
    """

    def __init__(
        self,
        event_shape: int | tuple[int] = 2,
        num_steps: int = 8,
        width: int = 64,
        depth: int = 2,
        permutation: str = "reverse",
        num_classes: int | None = None,
        context_dim: int | None = None,
        seed: int = 0,
        standardize: bool = False,
        dropout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        dim = num_features(type(self).__name__, event_shape, 2)
        check_positive_ints(type(self).__name__, num_steps=num_steps, width=width, depth=depth)
        if permutation not in ("reverse", "shuffle"):
            raise ValueError(
                f"{type(self).__name__}: permutation must be 'reverse' or 'shuffle', got {permutation!r}."
            )
        super().__init__((dim,), num_classes=num_classes, context_dim=context_dim, **kwargs)
        self.num_steps = num_steps
        self.width, self.depth = width, depth
        self.permutation, self.seed = permutation, seed
        self.standardize = bool(standardize)
        self.dropout = check_conditioner_dropout(type(self).__name__, dropout, self.backprop)
        self._finish_init()

    def _make_steps(self) -> list:
        steps: list = []
        for i in range(self.num_steps):
            steps.append(
                CouplingLayer(
                    "half",
                    0,
                    scale_fn="tanh",
                    conditioner="mlp",
                    hidden_units=self.width,
                    num_hidden=self.depth,
                    conditioner_options=dropout_config(self.dropout),
                    name=f"coupling_{i}",
                )
            )
            if i < self.num_steps - 1:
                steps.append(
                    ChannelPermutation.reverse(self.num_dims, event_ndims=1)
                    if self.permutation == "reverse"
                    else ChannelPermutation.shuffle(self.num_dims, self.seed + i, event_ndims=1)
                )
        return standardized(steps, self.standardize)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_steps": self.num_steps,
            "width": self.width,
            "depth": self.depth,
            "permutation": self.permutation,
            "seed": self.seed,
            "standardize": self.standardize,
            **dropout_config(self.dropout),
        }


@keras.saving.register_keras_serializable(package="tfflows")
@old_argument_names(VECTOR_RENAMES)
class VectorGlow(FlowModel):
    """Glow steps on vectors: ActNorm → invertible dense (LU) → affine coupling.

    Args:
      event_shape: the number of features D ≥ 2 (or the shape (D,)).
      num_steps: flow steps.
      width: width of the MLP conditioners.
      depth: hidden layers per MLP.
      coupling: ``"affine"`` or ``"additive"``.
      lu: LU-parameterised invertible dense layers.
      num_classes / context_dim: make the model conditional.
      seed: seed of the initial rotations.
      standardize: first a :class:`~tfflows.layers.StandardizeLayer` whose
        mean and scale ``initialize(data)`` fits (log_prob stays in data units).
      dropout: dropout rate after each hidden layer of the conditioners while
        training (0: none); small tables need it (see :func:`vector_defaults`).
      dim, num_layers, hidden_units, num_hidden: deprecated old names of
        ``event_shape``, ``num_steps``, ``width`` and ``depth``.

    References:
      Kingma, Dhariwal. Glow: Generative Flow with Invertible 1x1
        Convolutions. NeurIPS 2018.
    """

    def __init__(
        self,
        event_shape: int | tuple[int] = 2,
        num_steps: int = 8,
        width: int = 64,
        depth: int = 2,
        coupling: str = "affine",
        lu: bool = True,
        num_classes: int | None = None,
        context_dim: int | None = None,
        seed: int = 0,
        standardize: bool = False,
        dropout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        dim = num_features(type(self).__name__, event_shape, 2)
        check_positive_ints(type(self).__name__, num_steps=num_steps, width=width, depth=depth)
        if coupling not in transform_names():
            raise ValueError(
                f"{type(self).__name__}: coupling must be one of {transform_names()}, got {coupling!r}."
            )
        super().__init__((dim,), num_classes=num_classes, context_dim=context_dim, **kwargs)
        self.num_steps = num_steps
        self.width, self.depth = width, depth
        self.coupling, self.lu, self.seed = coupling, lu, seed
        self.standardize = bool(standardize)
        self.dropout = check_conditioner_dropout(type(self).__name__, dropout, self.backprop)
        self._finish_init()

    def _make_steps(self) -> list:
        steps: list = []
        for k in range(self.num_steps):
            steps += [
                ActNormLayer(event_ndims=1, name=f"actnorm_{k}"),
                InvertibleConv1x1Layer(
                    lu=self.lu, seed=self.seed * 1000 + k, event_ndims=1, name=f"dense_{k}"
                ),
                CouplingLayer(
                    "half",
                    0,
                    transform=self.coupling,
                    scale_fn="tanh",
                    conditioner="mlp",
                    hidden_units=self.width,
                    num_hidden=self.depth,
                    conditioner_options=dropout_config(self.dropout),
                    name=f"coupling_{k}",
                ),
            ]
        return standardized(steps, self.standardize)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_steps": self.num_steps,
            "width": self.width,
            "depth": self.depth,
            "coupling": self.coupling,
            "lu": self.lu,
            "seed": self.seed,
            "standardize": self.standardize,
            **dropout_config(self.dropout),
        }


@keras.saving.register_keras_serializable(package="tfflows")
@old_argument_names(VECTOR_RENAMES)
class VectorNSF(FlowModel):
    """Neural Spline Flow on vectors: invertible linear (LU) → rational-quadratic spline coupling.

    Each of ``num_steps`` steps mixes the features with an LU-parameterised
    invertible dense layer, then moves half of them with monotone
    rational-quadratic splines whose bins and slopes an MLP computes from the
    other half (RQ-NSF (C) of the paper). Splines reach sharp densities that
    affine couplings smooth over (e.g. the checkerboard toy).

    Args:
      event_shape: the number of features D ≥ 2 (or the shape (D,)).
      num_steps: coupling steps.
      width: width of the MLP conditioners.
      depth: hidden layers per MLP.
      num_bins: spline bins K.
      bound: splines act on [−bound, bound], identity outside.
      num_classes / context_dim: make the model conditional.
      seed: seed of the initial rotations.
      standardize: first a :class:`~tfflows.layers.StandardizeLayer` whose
        mean and scale ``initialize(data)`` fits (log_prob stays in data units).
      dropout: dropout rate after each hidden layer of the conditioners while
        training (0: none); small tables need it (see :func:`vector_defaults`).
      dim, num_layers, hidden_units, num_hidden: deprecated old names of
        ``event_shape``, ``num_steps``, ``width`` and ``depth``.

    References:
      Durkan, Bekasov, Murray, Papamakarios. Neural Spline Flows. NeurIPS 2019.
    """

    def __init__(
        self,
        event_shape: int | tuple[int] = 2,
        num_steps: int = 6,
        width: int = 64,
        depth: int = 2,
        num_bins: int = 8,
        bound: float = 5.0,
        num_classes: int | None = None,
        context_dim: int | None = None,
        seed: int = 0,
        standardize: bool = False,
        dropout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        dim = num_features(type(self).__name__, event_shape, 2)
        check_positive_ints(
            type(self).__name__, num_steps=num_steps, width=width, depth=depth, num_bins=num_bins
        )
        super().__init__((dim,), num_classes=num_classes, context_dim=context_dim, **kwargs)
        self.num_steps = num_steps
        self.width, self.depth = width, depth
        self.num_bins, self.bound, self.seed = num_bins, float(bound), seed
        self.standardize = bool(standardize)
        self.dropout = check_conditioner_dropout(type(self).__name__, dropout, self.backprop)
        self._finish_init()

    def _make_steps(self) -> list:
        steps: list = []
        for k in range(self.num_steps):
            steps += [
                InvertibleConv1x1Layer(lu=True, seed=self.seed * 1000 + k, event_ndims=1, name=f"linear_{k}"),
                SplineCouplingLayer(
                    "half",
                    k % 2,
                    num_bins=self.num_bins,
                    bound=self.bound,
                    hidden_units=self.width,
                    num_hidden=self.depth,
                    conditioner_options=dropout_config(self.dropout),
                    name=f"spline_{k}",
                ),
            ]
        return standardized(steps, self.standardize)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_steps": self.num_steps,
            "width": self.width,
            "depth": self.depth,
            "num_bins": self.num_bins,
            "bound": self.bound,
            "seed": self.seed,
            "standardize": self.standardize,
            **dropout_config(self.dropout),
        }


SMALL_TABLE_ROWS = 5000
"""Below this many training rows a table counts as small: vector_defaults regularises its model."""

TINY_TABLE_ROWS = 200
"""Below this many training rows vector_defaults drops twice as many units (0.4, not 0.2)."""


def vector_defaults(num_rows: int, num_features: int) -> dict[str, Any]:
    """The conditioner size and dropout of a vector model for a table of ``num_rows`` training rows.

    ``tfflows train`` fills ``--width`` and ``--dropout`` the user leaves out
    from here, and ``bench/tabular.py`` builds its models with them. A small
    table (under :data:`SMALL_TABLE_ROWS` rows) overfits a plain flow within a
    few dozen epochs: it gets wider conditioners that drop a fifth of their
    units in each training step (on breast cancer, 398 rows, a 6-step
    VectorMAF of width 128 reached a test NLL of −34.5 nats without dropout,
    −42.2 with 0.1 and −44.1 with 0.2; ``BENCHMARKS.md``), and a tiny one
    (under :data:`TINY_TABLE_ROWS`) two fifths (on wine, 124 rows, the spline
    VectorMAF's mean validation NLL over five seeds was 18.75 nats with 0.2,
    18.68 with 0.3, 18.66 with 0.4 and 18.67 with 0.5). Larger tables get no
    dropout and a width that grows with the features.

    Returns:
      ``{"width", "depth", "dropout"}``: keyword arguments of every vector model.

    Raises:
      ValueError: a count that is not a positive integer.
    """
    check_positive_ints("vector_defaults", num_rows=num_rows, num_features=num_features)
    if num_rows < SMALL_TABLE_ROWS:
        return {"width": 128, "depth": 2, "dropout": 0.4 if num_rows < TINY_TABLE_ROWS else 0.2}
    return {"width": max(64, min(256, 8 * num_features)), "depth": 2, "dropout": 0.0}


def vector_options(o: Any) -> dict[str, Any]:
    """The keyword arguments every vector model takes from the CLI's options."""
    return dict(
        num_steps=o.num_steps or 8,
        width=o.width,
        depth=o.depth or 2,
        dropout=o.extra.get("dropout", 0.0),
        num_classes=o.num_classes,
        seed=o.seed,
        standardize=o.standardize,
        **o.policy,
    )


register_model(
    ModelEntry(
        name="realnvp",
        data_kind="vector",
        model_class=VectorRealNVP,
        summary="affine couplings with MLP conditioners and permutations",
        build=lambda o: VectorRealNVP(o.event_shape[0], **vector_options(o)),
        tiny=lambda **cond: VectorRealNVP(3, num_steps=2, width=8, **cond),
    )
)
register_model(
    ModelEntry(
        name="glow",
        data_kind="vector",
        model_class=VectorGlow,
        summary="ActNorm, invertible dense layers and couplings on vectors",
        build=lambda o: VectorGlow(o.event_shape[0], coupling=o.coupling, **vector_options(o)),
        tiny=lambda **cond: VectorGlow(3, num_steps=2, width=8, **cond),
    )
)
register_model(
    ModelEntry(
        name="nsf",
        data_kind="vector",
        model_class=VectorNSF,
        summary="rational-quadratic spline couplings (Durkan et al. 2019)",
        build=lambda o: VectorNSF(o.event_shape[0], **vector_options(o)),
        tiny=lambda **cond: VectorNSF(3, num_steps=2, width=8, num_bins=4, **cond),
    )
)
