"""One coupling bijector for every elementwise transform and mask (NICE, RealNVP, Glow, NSF, Jet)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import tensorflow as tf

from tfflows.bijectors.base import FlowBijector, batch_zeros, check_channels, sum_event
from tfflows.bijectors.masks import Mask, make_mask
from tfflows.bijectors.transforms import (
    SCALE_FNS,
    AdditiveTransform,
    AffineTransform,
    ElementwiseTransform,
    make_transform,
)

__all__ = ["Coupling", "AffineCoupling", "AdditiveCoupling", "SCALE_FNS", "call_conditioner"]

Conditioner = Callable[..., tf.Tensor]


def _flatten_batch(t: tf.Tensor, event_ndims: int) -> tf.Tensor:
    """Reshapes ``t`` to [-1, *event]: all leading batch axes made one."""
    event = t.shape[-event_ndims:]
    if event.is_fully_defined():
        return tf.reshape(t, [-1, *event.as_list()])
    return tf.reshape(t, tf.concat([[-1], tf.shape(t)[-event_ndims:]], axis=0))


def call_conditioner(
    conditioner: Conditioner,
    x: tf.Tensor,
    event_ndims: int,
    context: tf.Tensor | None,
    channels: int,
    name: str,
) -> tf.Tensor:
    """Returns ``conditioner(x[, context])`` cast to x's dtype, with x's batch shape.

    The conditioner sees exactly one batch axis (Keras convolutions need
    rank-4 inputs): leading batch axes are flattened into one before the
    call and restored after it, and the context is broadcast to match.

    Raises:
      ValueError: when the output does not keep the input's leading shape
        or does not have ``channels`` entries in its last axis.
    """
    rank = x.shape.rank if x.shape.rank is not None else tf.rank(x)
    batch_shape = tf.shape(x)[: rank - event_ndims]
    flat = _flatten_batch(x, event_ndims)
    if context is None:
        h = conditioner(flat)
    else:
        context = tf.convert_to_tensor(context)
        context = tf.broadcast_to(context, tf.concat([batch_shape, tf.shape(context)[-1:]], 0))
        h = conditioner(flat, _flatten_batch(context, 1))
    h = tf.cast(h, x.dtype)
    if h.shape.rank is not None and (
        h.shape.rank != flat.shape.rank or not h.shape[:-1].is_compatible_with(flat.shape[:-1])
    ):
        raise ValueError(
            f"{name}: the conditioner must keep the leading shape of its input "
            f"{flat.shape[:-1]} and return {channels} channels, got output shape {h.shape}."
        )
    check_channels(h, channels, f"{name}: conditioner output")
    return tf.reshape(h, tf.concat([batch_shape, tf.shape(h)[1:]], axis=0))


class Coupling(FlowBijector):
    """y = x with the moving part mapped elementwise by a transform whose parameters come from the rest.

    A ``mask`` splits x into a conditioning part x₁ and a moving part x₂;
    a ``conditioner`` network maps x₁ (and an optional ``context``) to raw
    parameters θ, and an elementwise monotone ``transform`` g moves x₂:

    - forward: y₁ = x₁,  y₂ = g(x₂; θ(x₁))
    - inverse: x₁ = y₁,  x₂ = g⁻¹(y₂; θ(y₁))
    - log-det: Σ log|g′(x₂; θ(x₁))| over the moving entries.

    The Jacobian is block triangular, so the log-det is exact and cheap,
    and the conditioner runs once per direction. Transforms
    (:mod:`tfflows.bijectors.transforms`): affine with any scale function
    (NICE/RealNVP/Glow/Jet), additive, rational-quadratic spline (NSF).
    Masks (:mod:`tfflows.bijectors.masks`): ``"checkerboard"`` and
    ``"channel"`` for [H, W, C] images, ``"half"`` for vectors,
    ``"token_channel"`` (half of every token's features) and
    ``"token_spatial"`` (a subset of the tokens) for [T, D] sequences.

    The conditioner sees one batch axis (leading batch axes are folded in)
    and returns ``transform.params_per_entry`` values per moving entry in
    its last axis: for split masks [..., P·moving], for pattern masks
    (checkerboard, token_spatial) [..., P·C] at every position of the
    input, whose moving positions it sees as zeros.

    Args:
      conditioner: callable (a Keras layer) mapping x₁, and ``context``
        when given, to θ.
      transform: an :class:`~tfflows.bijectors.ElementwiseTransform`, or
        the name of one (``"affine"``, ``"additive"``, ``"spline"``) with
        default settings (affine by name: Glow's ``"sigmoid"`` scale; splines
        of 8 bins on [−4, 4], parameters parameter-major).
      mask: a mask name (see above) or a :class:`~tfflows.bijectors.masks.Mask`.
      parity: 0 or 1; which part conditions.
      indices: the entries of part A (features for split masks, tokens for
        ``"token_spatial"``); default the first half of the features, or
        every other token.
      context: optional tensor passed to the conditioner as its second argument.

    References:
      Dinh, Krueger, Bengio. NICE: Non-linear Independent Components
        Estimation. ICLR 2015 workshop.
      Dinh, Sohl-Dickstein, Bengio. Density estimation using Real NVP. ICLR 2017.
      Durkan, Bekasov, Murray, Papamakarios. Neural Spline Flows. NeurIPS 2019.
      Kolesnikov, Susano Pinto, Tschannen. Jet: A Modern Transformer-Based
        Normalizing Flow. 2024. arXiv:2412.15129.
    """

    supported_event_ndims = (1, 2, 3)

    def __init__(
        self,
        conditioner: Conditioner,
        transform: ElementwiseTransform | str = "affine",
        mask: str | Mask = "channel",
        parity: int = 0,
        indices: Sequence[int] | None = None,
        context: tf.Tensor | None = None,
        validate_args: bool = False,
        name: str = "coupling",
        _parameters: dict | None = None,
    ) -> None:
        parameters = _parameters if _parameters is not None else dict(locals())
        parameters.pop("_parameters", None)
        mask = make_mask(mask, parity, indices, name)
        if isinstance(transform, str):
            transform = make_transform(transform, name=name, scale_fn="sigmoid", maps_to_latent=True)
        if not isinstance(transform, ElementwiseTransform):
            raise ValueError(
                f"{name}: transform must be an ElementwiseTransform or one of "
                f"('affine', 'additive', 'spline'), got {type(transform).__name__}."
            )
        if not callable(conditioner):
            raise ValueError(f"{name}: conditioner must be callable, got {type(conditioner).__name__}.")
        self._conditioner = conditioner
        self._transform = transform
        self._mask = mask
        self._context = context
        super().__init__(
            mask.event_ndims,
            parameters=parameters,
            name=name,
            is_constant_jacobian=transform.is_constant_jacobian,
            validate_args=validate_args,
        )

    @property
    def mask(self) -> str:
        """The mask's name."""
        return self._mask.kind

    @property
    def parity(self) -> int:
        """The mask's parity, 0 or 1: alternate couplings flip it, so that every entry gets moved."""
        return self._mask.parity

    @property
    def transform(self) -> ElementwiseTransform:
        """The elementwise transform that moves the masked-out part."""
        return self._transform

    def _validate(self, x, inverse):
        super()._validate(x, inverse)
        if x.shape.rank is not None:
            self._mask.check_event(x.shape[x.shape.rank - self.event_ndims :].as_list(), self.name)

    # -- the coupling's parts, for code that runs them itself (reversible backprop) --------

    def split(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(conditioning entries, moving entries) of ``x`` under the mask."""
        return self._mask.split(x)

    def merge(self, x: tf.Tensor, moved: tf.Tensor) -> tf.Tensor:
        """``x`` with its moving entries replaced by ``moved``."""
        return self._mask.merge(x, moved)

    def transform_params(self, cond: tf.Tensor, moving: tf.Tensor) -> tf.Tensor:
        """h: the conditioner's output for ``cond``, the transform's parameters of ``moving``."""
        per = self._transform.params_per_entry
        return call_conditioner(
            self._conditioner, cond, self.event_ndims, self._context, per * moving.shape[-1], self.name
        )

    def total_log_det(self, log_det: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
        """The transform's per-entry ``log_det`` summed over the event, of ``x``'s batch shape."""
        return sum_event(self._mask.moving_log_det(log_det), self.event_ndims) + batch_zeros(
            x, self.event_ndims
        )

    def _transform_and_log_det(self, x: tf.Tensor, inverse: bool) -> tuple[tf.Tensor, tf.Tensor]:
        cond, moving = self.split(x)
        h = self.transform_params(cond, moving)
        moved, log_det = self._transform(h, moving, to_latent=not inverse)
        return self.merge(x, moved), self.total_log_det(log_det, x)

    def _forward_and_log_det(self, x):
        return self._transform_and_log_det(x, inverse=False)

    def _inverse_and_log_det(self, y):
        return self._transform_and_log_det(y, inverse=True)


class AffineCoupling(Coupling):
    """y = x with one part moved by a scale and shift computed from the other.

    The :class:`Coupling` with an affine transform: the conditioner returns
    ``h = [t, u]`` (shift, then raw scale) per moving entry and s = g(u):

    - forward: y₁ = x₁,  y₂ = x₂ ⊙ s(x₁) + t(x₁)
    - inverse: x₁ = y₁,  x₂ = (y₂ − t(y₁)) ⊘ s(y₁)
    - log-det: Σ log s over the moving entries.

    Scale functions:

    - ``"sigmoid"``: s = sigmoid(u + 2), Glow's bound s ∈ (0, 1); a zero
      conditioner gives s = sigmoid(2) ≈ 0.881.
    - ``"tanh"``: s = exp(a ⊙ tanh(u)) with a per-entry factor ``a`` (RealNVP),
      so |log s| ≤ |a|; a zero conditioner gives the identity.
    - ``"exp"``: s = exp(u), unbounded (used for the learned Gaussian priors).
    - ``"bounded"``: log s = u / (1 + |u|/7); ``"scaled_sigmoid"``: s = 2·sigmoid(u) (Jet).

    Args:
      conditioner: callable (a Keras layer or model) mapping the conditioning
        part, and ``context`` when given, to ``h``.
      mask: any mask of :class:`Coupling`.
      parity: 0 or 1; which part conditions.
      scale_fn: see above.
      tanh_factor: the factor ``a`` for ``scale_fn="tanh"``, shape broadcastable
        to the moving part's channels; defaults to 1.
      context: optional tensor passed to the conditioner as its second argument.
      indices: part A of the mask (see :class:`Coupling`).

    References:
      Dinh, Sohl-Dickstein, Bengio. Density estimation using Real NVP. ICLR 2017.
      Kingma, Dhariwal. Glow: Generative Flow with Invertible 1x1
        Convolutions. NeurIPS 2018.
    """

    _additive = False

    def __init__(
        self,
        conditioner: Conditioner,
        mask: str = "channel",
        parity: int = 0,
        scale_fn: str = "sigmoid",
        tanh_factor: tf.Tensor | None = None,
        context: tf.Tensor | None = None,
        validate_args: bool = False,
        name: str | None = None,
        indices: Sequence[int] | None = None,
    ) -> None:
        parameters = dict(locals())
        name = name or ("additive_coupling" if self._additive else "affine_coupling")
        transform: ElementwiseTransform
        if self._additive:
            transform = AdditiveTransform()
        else:
            transform = AffineTransform(scale_fn, tanh_factor, maps_to_latent=True, name=name)
        super().__init__(
            conditioner,
            transform,
            mask,
            parity,
            indices,
            context,
            validate_args,
            name,
            _parameters=parameters,
        )


class AdditiveCoupling(AffineCoupling):
    """y = x with one part shifted by a function of the other (NICE).

    - forward: y₁ = x₁,  y₂ = x₂ + t(x₁)
    - inverse: x₁ = y₁,  x₂ = y₂ − t(y₁)
    - log-det: 0 (volume preserving).

    The conditioner returns as many channels as the moving part has. Masks
    and arguments as for :class:`AffineCoupling` (``scale_fn`` is ignored).

    References:
      Dinh, Krueger, Bengio. NICE: Non-linear Independent Components
        Estimation. ICLR 2015 workshop.
    """

    _additive = True
