"""A model's architecture as a nested list of steps, and how to build its bijector."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

import tensorflow as tf

from tfflows.bijectors.base import FlowBijector
from tfflows.bijectors.multiscale import FactorOut, FlowChain
from tfflows.layers.base import FlowLayer

__all__ = ["Split", "Plan", "build_bijector", "initialize_actnorm", "initialize_steps", "flow_layers"]


@dataclass
class Split:
    """Factor out channels of an [H, W, C] input; ``inner`` runs on the ``kept`` rest."""

    inner: list
    event_shape: tuple[int, int, int]
    kept: int


Step = Union[FlowLayer, FlowBijector, Split]


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


def flow_layers(steps: list) -> list[FlowLayer]:
    """Every FlowLayer in ``steps``, nested levels included, in order."""
    out = []
    for step in steps:
        if isinstance(step, Split):
            out.extend(flow_layers(step.inner))
        elif isinstance(step, FlowLayer):
            out.append(step)
    return out


def initialize_steps(steps: list, x: tf.Tensor, context: tf.Tensor | None, force: bool = False) -> int:
    """Runs ``x`` through ``steps``, initialising each data-initialised step on its own input.

    A step takes part when it sets ``needs_data_init`` (ActNorm, Standardize);
    see :class:`tfflows.layers.FlowLayer`. Returns how many were initialised.
    """
    count = 0
    for step in steps:
        if isinstance(step, Split):
            return count + initialize_steps(step.inner, x[..., : step.kept], context, force)
        if getattr(step, "needs_data_init", False):
            count += int(step.initialize(x, force=force))
        bij = step.bijector(context) if isinstance(step, FlowLayer) else step
        x, _ = bij.forward_and_log_det(x)
    return count


initialize_actnorm = initialize_steps
"""The former name of :func:`initialize_steps`."""
