"""A model's architecture as a nested list of steps, and the one walk over it.

A step is a :class:`~tfflows.layers.FlowLayer` (owns weights, builds its
bijector per call), a fixed :class:`~tfflows.bijectors.FlowBijector`, or a
:class:`Split` (multi-scale). The model base asks steps, not types:

- ``needs_data_init`` (with ``initialize(x, force)``): set from data once;
- ``output_event_shape(shape)``: the event shape a step gives for an input
  event of ``shape`` (only shape-changing steps override the identity);
- ``flattens_latent``: the step only flattens the latent for the base
  distribution, so ``latent_shapes`` reports the shape before it.

:func:`walk` carries a value (a tensor or an event shape) through the
steps, and serves building the layers, data-dependent initialisation,
latent shapes and listing the layers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import tensorflow as tf

from tfflows.bijectors.base import FlowBijector
from tfflows.bijectors.multiscale import FactorOut, FlowChain
from tfflows.layers.base import FlowLayer

__all__ = [
    "Split",
    "Plan",
    "walk",
    "build_bijector",
    "build_steps",
    "initialize_actnorm",
    "initialize_steps",
    "flow_layers",
    "latent_shapes",
]


@dataclass
class Split:
    """Factor out channels of an [H, W, C] input; ``inner`` runs on the ``kept`` rest."""

    inner: list
    event_shape: tuple[int, int, int]
    kept: int

    def kept_shape(self) -> tuple[int, int, int]:
        h, w, _ = self.event_shape
        return (h, w, self.kept)

    def factored_shape(self) -> tuple[int, int, int]:
        h, w, c = self.event_shape
        return (h, w, c - self.kept)


Step = FlowLayer | FlowBijector | Split


@dataclass
class Plan:
    """The steps of a flow from data to latent (a plain object Keras does not track)."""

    steps: list = field(default_factory=list)


def build_bijector(steps: list, context: tf.Tensor | None) -> FlowChain:
    """Builds the data → latent bijector of ``steps`` from the current weights."""
    built = []
    for step in steps:
        if isinstance(step, Split):
            inner = build_bijector(step.inner, context)
            built.append(FactorOut(inner, step.event_shape, step.kept))
        elif isinstance(step, FlowLayer):
            built.append(step.bijector(context))
        else:
            built.append(step)
    return FlowChain(built)


def walk(
    steps: list, value: Any, through: Callable[[Any, Any], Any], keep: Callable[[Split, Any], Any]
) -> Any:
    """Carries ``value`` from data towards the latent: ``value = through(step, value)`` per step.

    At a :class:`Split` the inner steps get ``keep(split, value)`` (the kept
    part) and the walk continues there; nothing follows a Split at its
    level. Returns the value after the last step.
    """
    for step in steps:
        if isinstance(step, Split):
            return walk(step.inner, keep(step, value), through, keep)
        value = through(step, value)
    return value


def _keep_channels(split: Split, x: tf.Tensor) -> tf.Tensor:
    return x[..., : split.kept]


def _bijector_of(step, context: tf.Tensor | None) -> FlowBijector:
    return step.bijector(context) if isinstance(step, FlowLayer) else step


def flow_layers(steps: list) -> list[FlowLayer]:
    """Every FlowLayer in ``steps``, nested levels included, in order."""
    out: list[FlowLayer] = []

    def through(step, value):
        if isinstance(step, FlowLayer):
            out.append(step)
        return value

    walk(steps, None, through, lambda split, value: value)
    return out


def build_steps(steps: list, x: tf.Tensor, context: tf.Tensor | None) -> tf.Tensor:
    """Calls every layer once on ``x``'s way through ``steps``, creating its weights."""

    def through(step, x):
        if isinstance(step, FlowLayer):
            return (step(x, context) if context is not None else step(x))[0]
        return step.forward_and_log_det(x)[0]

    return walk(steps, x, through, _keep_channels)


def latent_shapes(steps: list, event_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Shapes of the latent pieces in the order they sit in the flat latent.

    Each Split's factored-out part, then the shape that reaches the end (or
    the last step that only flattens it, ``flattens_latent``).
    """
    shapes: list[tuple[int, ...]] = []

    def through(step, shape):
        if step.flattens_latent:
            return shape
        return tuple(step.output_event_shape(shape))

    def keep(split, shape):
        shapes.append(split.factored_shape())
        return split.kept_shape()

    shapes.append(walk(steps, tuple(event_shape), through, keep))
    return shapes


def initialize_steps(steps: list, x: tf.Tensor, context: tf.Tensor | None, force: bool = False) -> int:
    """Runs ``x`` through ``steps``, initialising each data-initialised step on its own input.

    A step takes part when it sets ``needs_data_init`` (ActNorm, Standardize);
    see :class:`tfflows.layers.FlowLayer`. Returns how many were initialised.
    All or nothing: when a step refuses its input (a degenerate or non-finite
    statistic), the steps set before it in this call get their weights back.
    """
    count = 0
    before: list[tuple[Any, Any]] = []

    def through(step, x):
        nonlocal count
        if step.needs_data_init:
            snapshot = [(w, w.numpy()) for w in step.weights] if step.built else []
            if step.initialize(x, force=force):
                count += 1
                before.extend(snapshot)
        return _bijector_of(step, context).forward_and_log_det(x)[0]

    try:
        walk(steps, x, through, _keep_channels)
    except Exception:
        for weight, value in before:
            weight.assign(value)
        raise
    return count


initialize_actnorm = initialize_steps
"""The former name of :func:`initialize_steps`."""
