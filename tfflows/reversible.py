"""How a model's forward pass keeps what backprop needs: ``backprop="store"|"recompute"|"reversible"``.

Training differentiates log p(x) = log N(f(x)) + log|det ∂f/∂x| through every
flow step. Ordinary backprop (``"store"``) keeps every step's intermediate
activations (the coupling networks' hidden layers above all) until the
backward pass, so a training step's memory grows with the depth K·L.

- ``"recompute"``: one custom gradient per flow step keeps only the step's
  input x; the backward pass reruns the step from x under a tape (gradient
  checkpointing per step). Memory: one tensor of the data's size per step,
  plus one step's activations; time: one more forward pass.
- ``"reversible"``: one custom gradient per run of steps between two
  factor-outs keeps only the run's output y. The backward pass walks the run
  last step first: x = f⁻¹(y) (the step's own inverse), reruns y', log-det
  = f(x) under a tape, and returns ∂/∂x and ∂/∂weights of ⟨ȳ, y'⟩ + l̄·log-det;
  x then stands for y of the step before. Memory does not grow with the
  number of steps (RevNet, i-RevNet); time: one inverse and one more
  forward pass per step. The gradients differ from stored ones only by the
  inversion's round-off (``inversion_error`` measures it).

A run is built from the model's plan (see :mod:`tfflows.models.plan`): its
steps are built into bijectors *inside* the custom gradient, so every weight
they read is seen there and receives its gradient.

References:
  Gomez, Ren, Urtasun, Grosse. The Reversible Residual Network:
    Backpropagation Without Storing Activations. NeurIPS 2017.
  Jacobsen, Smeulders, Oyallon. i-RevNet: Deep Invertible Networks. ICLR 2018.
  Chen, Xu, Zhang, Guestrin. Training Deep Nets with Sublinear Memory Cost. 2016.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import tensorflow as tf

# tf.custom_gradient leaves an eager tape recording inside the function, and the tape would
# keep every activation there alive: tf.recompute_grad stops it with this context manager too.
from tensorflow.python.eager.record import stop_recording

from tfflows.bijectors.base import FlowBijector
from tfflows.bijectors.coupling import Coupling
from tfflows.bijectors.multiscale import FactorOut, FlowChain
from tfflows.layers.base import FlowLayer

__all__ = ["BACKPROP_MODES", "check_backprop", "StepRun", "build_bijector", "inversion_error"]

BACKPROP_MODES = ("store", "recompute", "reversible")
"""The values of a model's ``backprop`` argument; ``"store"`` is ordinary backprop."""


def check_backprop(name: str, backprop: str, steps: Sequence | None = None) -> str:
    """``backprop`` when it is one of :data:`BACKPROP_MODES`; else ValueError.

    With ``steps`` (a model's plan), ``"reversible"`` is refused when a step
    inverts only sequentially (``sequential_inverse``: MAF's and TarFlow's
    autoregressive steps need one network pass per feature or token to
    invert, which would make the backward pass that many times slower).
    """
    if not isinstance(backprop, str) or backprop not in BACKPROP_MODES:
        raise ValueError(f"{name}: backprop must be one of {BACKPROP_MODES}, got {backprop!r}.")
    if backprop == "reversible" and steps is not None:
        slow = [step.name for step in _all_steps(steps) if getattr(step, "sequential_inverse", False)]
        if slow:
            raise ValueError(
                f"{name}: backprop='reversible' inverts every step in the backward pass, but "
                f"{slow[0]!r} (and {len(slow) - 1} more) inverts one token or feature at a time; "
                "use backprop='recompute', which reruns each step forward instead."
            )
    return backprop


def _all_steps(steps: Sequence) -> list:
    out = []
    for step in steps:
        inner = getattr(step, "inner", None)
        if isinstance(inner, list):  # a plan's Split
            out += _all_steps(inner)
        else:
            out.append(step)
    return out


def _bijector(step, context: tf.Tensor | None) -> FlowBijector:
    return step.bijector(context) if isinstance(step, FlowLayer) else step


def _forward(steps: Sequence, x: tf.Tensor, context: tf.Tensor | None):
    total = None
    for step in steps:
        x, log_det = _bijector(step, context).forward_and_log_det(x)
        total = log_det if total is None else total + log_det
    return x, total


def _step_gradients(step, x, context, dy, dld, variables):
    """Reruns ``step`` from ``x`` under a tape: (∂x, ∂context or None, {variable ref: ∂}).

    The gradients are those of ⟨dy, y⟩ + ⟨dld, log_det⟩, (y, log_det) = step(x).
    """
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(x)
        if context is not None:
            tape.watch(context)
        tape.watch(variables)
        y, log_det = _bijector(step, context).forward_and_log_det(x)
    sources = [x] + ([context] if context is not None else [])
    grads = tape.gradient([y, log_det], sources + list(variables), output_gradients=[dy, dld])
    dx = tf.zeros_like(x) if grads[0] is None else grads[0]
    dcontext = grads[1] if context is not None else None
    return dx, dcontext, grads[len(sources) :]


def _plain_coupling(bijector) -> bool:
    """A :class:`Coupling` whose maths is Coupling's own (a subclass may change it)."""
    kind = type(bijector)
    return isinstance(bijector, Coupling) and all(
        getattr(kind, name) is getattr(Coupling, name)
        for name in ("_transform_and_log_det", "_forward_and_log_det", "_inverse_and_log_det")
    )


def _coupling_gradients(step, y, context, dy, dld, variables):
    """A coupling's input and gradients from its output ``y``, with one conditioner pass.

    Returns ``(x, ∂x, ∂context or None, [∂variable])`` for ⟨dy, y⟩ + ⟨dld,
    log_det⟩ of ``(y, log_det) = coupling(x)``. The conditioner sees the same
    entries in x and y, so its one pass under the tape serves both the
    inverse (x's moving part, not differentiated) and the rerun forward
    transform that is differentiated: a step costs one conditioner pass
    and its backward pass, where inverting and rerunning costs two passes.
    """
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(y)
        if context is not None:
            tape.watch(context)
        tape.watch(variables)
        # Built under the tape: weights it reads when built (a tanh factor) get gradients too.
        coupling = _bijector(step, context)
        transform = coupling.transform
        cond, moving = coupling.split(y)
        h = coupling.transform_params(cond, moving)
        x_moving = tf.stop_gradient(transform(h, moving, to_latent=False)[0])
        tape.watch(x_moving)
        # x has y's conditioning entries and x_moving's moving ones, so ∂x is ∂y there and
        # ∂x_moving here; forward from it as the coupling does.
        x = coupling.merge(y, x_moving)
        moved, log_det = transform(h, coupling.split(x)[1], to_latent=True)
        y_again = coupling.merge(x, moved)
        log_det = coupling.total_log_det(log_det, x)
    sources = [y, x_moving] + ([context] if context is not None else [])
    grads = tape.gradient([y_again, log_det], sources + list(variables), output_gradients=[dy, dld])
    zeros = [tf.zeros_like(t) for t in sources]
    grads = [z if g is None else g for z, g in zip(zeros, grads[: len(sources)])] + grads[len(sources) :]
    dx = coupling.merge(grads[0], grads[1])
    dcontext = grads[2] if context is not None else None
    return tf.stop_gradient(x), dx, dcontext, grads[len(sources) :]


def _run(steps: Sequence, x: tf.Tensor, context: tf.Tensor | None, keep_output: bool):
    """``(y, log_det)`` of ``steps`` with a custom gradient keeping y (reversible) or x.

    Keeping x (recompute) is for a run of one step: its input is that step's.
    """
    args = [x] if context is None else [x, context]

    @tf.custom_gradient
    def run(*args):
        ctx = args[1] if len(args) > 1 else None
        with stop_recording():
            y, log_det = _forward(steps, args[0], ctx)
        # What the backward pass holds on to besides y (eager closures keep what they name,
        # graphs what they use): nothing for a reversible run, a one-step run's input otherwise.
        kept = y if keep_output else args[0]

        def grad(dy, dld, variables=None):
            variables = list(variables or [])
            dy = tf.zeros_like(y) if dy is None else dy
            dld = tf.zeros_like(log_det) if dld is None else dld
            var_grads = [None] * len(variables)
            dctx = None if ctx is None else tf.zeros_like(ctx)
            point = kept
            for step in reversed(steps):
                bijector = _bijector(step, ctx)
                if keep_output and _plain_coupling(bijector):
                    point, dy, dc, vgrads = _coupling_gradients(step, point, ctx, dy, dld, variables)
                else:
                    if keep_output:
                        # The step's input from its output: nothing of the forward pass was kept.
                        point = tf.stop_gradient(bijector.inverse_and_log_det(point)[0])
                    dy, dc, vgrads = _step_gradients(step, point, ctx, dy, dld, variables)
                if dc is not None:
                    dctx += dc
                var_grads = [
                    a if b is None else (b if a is None else a + b) for a, b in zip(var_grads, vgrads)
                ]
            var_grads = [tf.zeros_like(v) if g is None else g for v, g in zip(variables, var_grads)]
            return ([dy] if ctx is None else [dy, dctx]), var_grads

        return (y, log_det), grad

    return run(*args)


class StepRun(FlowBijector):
    """y = fₙ(…f₁(x)) for a run of plan steps, differentiated without stored activations.

    Forward, inverse and log-det are those of ``FlowChain`` of the steps'
    bijectors; only the gradient differs in what it keeps (see the module
    docstring). The bijectors are built from the layers' current weights
    inside every call.

    Args:
      steps: plan steps (FlowLayers and fixed FlowBijectors) without a Split.
      context: the model's context tensor or None.
      mode: ``"recompute"`` (one custom gradient per step, keeping its input)
        or ``"reversible"`` (one for the whole run, keeping its output).
    """

    def __init__(self, steps: Sequence, context: tf.Tensor | None, mode: str, name: str = "step_run") -> None:
        parameters = dict(locals())
        if mode not in ("recompute", "reversible"):
            raise ValueError(f"{name}: mode must be 'recompute' or 'reversible', got {mode!r}.")
        self._steps, self._context, self._mode = list(steps), context, mode
        self._chain = FlowChain([_bijector(step, context) for step in self._steps])
        super().__init__(
            self._chain.forward_min_event_ndims,
            inverse_event_ndims=self._chain.inverse_min_event_ndims,
            parameters=parameters,
            name=name,
        )

    def _forward_and_log_det(self, x):
        if self._mode == "reversible":
            return _run(self._steps, x, self._context, keep_output=True)
        total = None
        for step in self._steps:
            if not isinstance(step, FlowLayer):
                # A fixed step (squeeze, pixel scaling) keeps nothing worth recomputing.
                x, log_det = step.forward_and_log_det(x)
            else:
                x, log_det = _run([step], x, self._context, keep_output=False)
            total = log_det if total is None else total + log_det
        return x, total

    def _inverse_and_log_det(self, y):
        return self._chain.inverse_and_log_det(y)

    def _forward_event_shape(self, s):
        return self._chain.forward_event_shape(s)

    def _inverse_event_shape(self, s):
        return self._chain.inverse_event_shape(s)

    def _forward_event_shape_tensor(self, s):
        return self._chain.forward_event_shape_tensor(s)

    def _inverse_event_shape_tensor(self, s):
        return self._chain.inverse_event_shape_tensor(s)


def build_bijector(steps: Sequence, context: tf.Tensor | None, mode: str) -> FlowChain:
    """The data → latent bijector of a plan, each run of steps between factor-outs a :class:`StepRun`.

    ``mode="store"`` gives the plain chain (:func:`tfflows.models.plan.build_bijector`).
    """
    from tfflows.models.plan import Split
    from tfflows.models.plan import build_bijector as build_stored

    if mode == "store":
        return build_stored(list(steps), context)
    built: list[Any] = []
    run: list[Any] = []
    for step in steps:
        if isinstance(step, Split):
            if run:
                built.append(StepRun(run, context, mode))
                run = []
            built.append(FactorOut(build_bijector(step.inner, context, mode), step.event_shape, step.kept))
        else:
            run.append(step)
    if run:
        built.append(StepRun(run, context, mode))
    return FlowChain(built)


def inversion_error(steps: Sequence, x: tf.Tensor, context: tf.Tensor | None = None) -> float:
    """max |x − f⁻¹(f(x))| over the runs that ``"reversible"`` inverts, through each whole run.

    Each run between factor-outs is inverted from its own output, as the
    backward pass does; the largest error of any run's input is returned.
    """
    from tfflows.models.plan import Split

    worst = 0.0
    run: list = []

    def close(run, x):
        nonlocal worst
        if not run:
            return x
        y, _ = _forward(run, x, context)
        back = tf.identity(y)  # a fresh tensor: TFP's cache must not answer the inverse
        for step in reversed(run):
            back = _bijector(step, context).inverse_and_log_det(back)[0]
        worst = max(worst, float(tf.reduce_max(tf.abs(tf.cast(back, tf.float64) - tf.cast(x, tf.float64)))))
        return y

    for step in steps:
        if isinstance(step, Split):
            x = close(run, x)
            worst = max(worst, inversion_error(step.inner, x[..., : step.kept], context))
            return worst
        run.append(step)
    close(run, x)
    return worst
