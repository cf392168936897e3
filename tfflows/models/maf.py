"""Masked autoregressive flow (and its inverse, IAF) on vectors."""

from __future__ import annotations

from typing import Any

import keras

from tfflows.bijectors.autoregressive import DIRECTIONS, make_transform
from tfflows.bijectors.base import check_positive_ints, dropout_config
from tfflows.deprecation import old_argument_names
from tfflows.layers.autoregressive import MaskedAutoregressiveLayer
from tfflows.models.arguments import check_conditioner_dropout
from tfflows.models.base import FlowModel
from tfflows.models.registry import ModelEntry, register_model
from tfflows.models.vector import VECTOR_RENAMES, num_features, standardized, vector_options

__all__ = ["VectorMAF"]

MAF_ORDERINGS = ("natural", "random")


@keras.saving.register_keras_serializable(package="tfflows")
@old_argument_names(VECTOR_RENAMES)
class VectorMAF(FlowModel):
    """Masked Autoregressive Flow: a stack of MADE-conditioned autoregressive steps.

    Data → latent: ``num_steps`` × z = (x − μ(x<)) · exp(−α(x<)) (affine,
    Papamakarios et al.) or zᵢ = gᵢ(xᵢ; θᵢ(x<ᵢ)), a monotone
    rational-quadratic spline on [−B, B] per feature (``transform="spline"``,
    the autoregressive neural spline flow of Durkan et al.), each step
    with its own ordering of the features — alternately natural and
    reversed (``ordering="natural"``), or a seeded random permutation per
    step (``ordering="random"``). With ``direction="maf"`` the density takes
    one MADE pass per step and sampling D passes; ``direction="iaf"`` swaps
    them (fast sampling, density in D passes per step).

    Args:
      event_shape: the number of features D ≥ 1 (or the shape (D,)).
      num_steps: autoregressive steps.
      width: width of the MADE conditioners.
      depth: hidden layers per MADE.
      ordering: ``"natural"`` (alternating with its reverse) or ``"random"``.
      direction: ``"maf"`` or ``"iaf"``.
      num_classes / context_dim: make the model conditional.
      seed: seed of random orderings.
      standardize: first a :class:`~tfflows.layers.StandardizeLayer` whose
        mean and scale ``initialize(data)`` fits (log_prob stays in data units).
      transform: ``"affine"`` or ``"spline"``.
      num_bins: K, spline bins (the MADE emits 3K − 1 parameters per feature).
      bound: B, the splines' interval [−B, B] (identity outside).
      dropout: dropout rate after each hidden layer of the MADEs while training
        (0: none); small tables need it (see :func:`~tfflows.models.vector.vector_defaults`).
      dim, num_layers, hidden_units, num_hidden: deprecated old names of
        ``event_shape``, ``num_steps``, ``width`` and ``depth``.

    References:
      Papamakarios, Pavlakou, Murray. Masked Autoregressive Flow for Density
        Estimation. NeurIPS 2017.
      Kingma et al. Improved Variational Inference with Inverse
        Autoregressive Flow. NeurIPS 2016.
      Durkan, Bekasov, Murray, Papamakarios. Neural Spline Flows. NeurIPS 2019.
    """

    def __init__(
        self,
        event_shape: int | tuple[int] = 2,
        num_steps: int = 5,
        width: int = 64,
        depth: int = 2,
        ordering: str = "natural",
        direction: str = "maf",
        num_classes: int | None = None,
        context_dim: int | None = None,
        seed: int = 0,
        standardize: bool = False,
        transform: str = "affine",
        num_bins: int = 8,
        bound: float = 4.0,
        dropout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        name = type(self).__name__
        dim = num_features(name, event_shape, 1)
        check_positive_ints(name, num_steps=num_steps, width=width, depth=depth)
        if ordering not in MAF_ORDERINGS:
            raise ValueError(f"{name}: ordering must be one of {MAF_ORDERINGS}, got {ordering!r}.")
        if direction not in DIRECTIONS:
            raise ValueError(f"{name}: direction must be one of {DIRECTIONS}, got {direction!r}.")
        make_transform(transform, num_bins, bound, name)  # rejects bad arguments here
        super().__init__((dim,), num_classes=num_classes, context_dim=context_dim, **kwargs)
        self.num_steps = num_steps
        self.width, self.depth = width, depth
        self.ordering, self.direction = ordering, direction
        self.seed, self.standardize = seed, bool(standardize)
        self.transform, self.num_bins, self.bound = transform, num_bins, float(bound)
        self.dropout = check_conditioner_dropout(name, dropout, self.backprop)
        self._finish_init()

    def _make_steps(self) -> list:
        steps = []
        for k in range(self.num_steps):
            ordering = "random" if self.ordering == "random" else ("natural" if k % 2 == 0 else "reversed")
            steps.append(
                MaskedAutoregressiveLayer(
                    self.width,
                    self.depth,
                    ordering,
                    self.direction,
                    seed=self.seed * 1000 + k,
                    transform=self.transform,
                    num_bins=self.num_bins,
                    bound=self.bound,
                    dropout=self.dropout,
                    name=f"{self.direction}_{k}",
                )
            )
        return standardized(steps, self.standardize)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_steps": self.num_steps,
            "width": self.width,
            "depth": self.depth,
            "ordering": self.ordering,
            "direction": self.direction,
            "seed": self.seed,
            "standardize": self.standardize,
            "transform": self.transform,
            "num_bins": self.num_bins,
            "bound": self.bound,
            **dropout_config(self.dropout),
        }


register_model(
    ModelEntry(
        name="maf",
        data_kind="vector",
        model_class=VectorMAF,
        summary="masked autoregressive flow (Papamakarios et al. 2017)",
        build=lambda o: VectorMAF(o.event_shape[0], **vector_options(o)),
        tiny=lambda **cond: VectorMAF(3, num_steps=2, width=8, **cond),
    )
)
register_model(
    ModelEntry(
        name="maf-spline",
        data_kind="vector",
        model_class=VectorMAF,
        summary="autoregressive neural spline flow: a MAF with 8-bin rational-quadratic splines on [-5, 5]",
        build=lambda o: VectorMAF(
            o.event_shape[0], transform="spline", num_bins=8, bound=5.0, **vector_options(o)
        ),
        tiny=lambda **cond: VectorMAF(
            3, num_steps=2, width=8, transform="spline", num_bins=4, bound=5.0, **cond
        ),
    )
)
