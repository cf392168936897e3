"""The one registry of bijector cases that drives every property test.

``CASES`` maps a case name to a factory ``factory(dtype) -> Case``. A case
holds a way to build a fresh bijector, the shapes of one input, the Keras
layer that owns its weights (``None`` for fixed bijectors), an optional
context and a sampler for valid inputs. Layer weights are set to non-trivial
random values: a fresh coupling's zero output layer makes it the identity,
and a test of the identity proves nothing.

Use :func:`get_case` (cached per name and dtype: building Keras layers is the
slow part of the suite) and :data:`CASE_NAMES` for ``parametrize(ids=...)``.
"""

from __future__ import annotations

import dataclasses
import functools
import zlib
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfflows.bijectors import ChannelPermutation, FactorOut, Flatten, FlowChain, Logit, ScalePixels, Squeeze
from tfflows.layers import (
    ActNormLayer,
    CouplingLayer,
    InvertibleConv1x1Layer,
    MaskedAutoregressiveLayer,
    PriorLayer,
    StandardizeLayer,
)

tfb = tfp.bijectors

__all__ = [
    "CASES",
    "CASE_NAMES",
    "DTYPES",
    "LAYER_CASE_NAMES",
    "CHANNEL_CASE_NAMES",
    "Case",
    "TinyConditioner",
    "get_case",
    "randomize_weights",
]

DTYPES = ("float32", "float64")
IMAGE = (4, 4, 4)
VECTOR = (5,)
TOKENS = (4, 6)
BATCH = (3,)
BATCH_2D = (2, 3)
CONTEXT_SIZE = 3
HIDDEN = 8

Sampler = Callable[[np.random.Generator, tuple], np.ndarray]


def normal(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    return rng.standard_normal(shape)


def unit_interval(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    """Inside (0, 1), away from the ends where the logit blows up."""
    return rng.uniform(0.02, 0.98, shape)


def pixel_levels(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    """Dequantized 8-bit pixel levels in [0, 256)."""
    return rng.uniform(0.0, 256.0, shape)


@dataclasses.dataclass(frozen=True)
class Case:
    """One bijector under test, in one dtype.

    Attributes:
      name: the registry key.
      dtype: "float32" or "float64".
      event_shape: shape of one input event (data side).
      batch_shape: leading batch shape of test inputs.
      make_bijector: returns a fresh bijector (from the layer's current
        weights for layer cases) so TFP's per-tensor cache never answers.
      layer: the Keras layer that owns the weights, or None.
      context: optional context of shape ``batch_shape + [K]``.
      sampler: draws valid inputs, ``sampler(rng, shape)``.
      checks_channels: the bijector rejects a wrong channel count itself.
    """

    name: str
    dtype: str
    event_shape: tuple
    batch_shape: tuple
    make_bijector: Callable[[], tfb.Bijector]
    layer: keras.layers.Layer | None = None
    context: np.ndarray | None = None
    sampler: Sampler = normal
    checks_channels: bool = False

    @property
    def event_ndims(self) -> int:
        return len(self.event_shape)

    @property
    def latent_event_shape(self) -> tuple:
        return tuple(self.make_bijector().forward_event_shape(self.event_shape).as_list())

    def seed(self, salt: str) -> int:
        return zlib.crc32(f"{self.name}/{self.dtype}/{salt}".encode())

    def sample_x(self, salt: str = "x") -> np.ndarray:
        """A fresh numpy input of shape batch_shape + event_shape."""
        rng = np.random.default_rng(self.seed(salt))
        return self.sampler(rng, self.batch_shape + self.event_shape).astype(self.dtype)

    def sample_y(self, salt: str = "y") -> np.ndarray:
        """A fresh numpy latent of shape batch_shape + latent_event_shape."""
        rng = np.random.default_rng(self.seed(salt))
        return rng.standard_normal(self.batch_shape + self.latent_event_shape).astype(self.dtype)


@keras.saving.register_keras_serializable(package="tfflows_tests")
class TinyConditioner(keras.layers.Layer):
    """A user-written conditioner: one 1×1 convolution, zero-initialised."""

    def __init__(self, output_channels: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.output_channels = output_channels
        self.conv = keras.layers.Conv2D(
            output_channels, 1, kernel_initializer="zeros", dtype=self.dtype_policy
        )

    def build(self, x_shape, context_shape=None):
        self.conv.build(x_shape)

    def call(self, x, context=None):
        return self.conv(x)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "output_channels": self.output_channels}


def randomize_weights(layer: keras.layers.Layer, seed: int) -> None:
    """Sets every trainable weight of ``layer`` to a non-trivial random value.

    Integer weights and fixed ones (the LU permutation and signs, ActNorm's
    ``initialized`` flag) are not trainable and keep their values. Convolution
    kernels are scaled by fan-in so the conditioner outputs stay of order one.
    """
    rng = np.random.default_rng(seed)
    for w in layer.trainable_weights:
        shape = tuple(w.shape)
        if isinstance(layer, InvertibleConv1x1Layer) and w.name == "kernel":
            # A rotation times a small perturbation of the identity: well conditioned.
            q = np.linalg.qr(rng.standard_normal(shape))[0]
            value = q @ (np.eye(shape[0]) + 0.2 * rng.standard_normal(shape))
            assert np.linalg.cond(value) < 10.0
        elif w.name == "log_scale":
            value = rng.normal(scale=0.1, size=shape)
        elif w.name == "tanh_factor":
            value = rng.uniform(0.5, 1.5, size=shape)
        elif len(shape) >= 2 and w.name == "kernel":
            fan_in = int(np.prod(shape[:-1]))
            value = rng.normal(scale=1.0 / np.sqrt(fan_in), size=shape)
        else:
            value = rng.normal(scale=0.2, size=shape)
        w.assign(value.astype(w.dtype))


def _tag(
    factory: Callable[[str, str], Case], *, has_layer: bool, checks_channels: bool = False
) -> Callable[[str, str], Case]:
    """Records on a factory what its cases are, so tests can pick without building."""
    factory.has_layer = has_layer  # type: ignore[attr-defined]
    factory.checks_channels = checks_channels  # type: ignore[attr-defined]
    return factory


def _layer_case(
    name: str,
    dtype: str,
    layer: keras.layers.Layer,
    event_shape: tuple,
    batch_shape: tuple = BATCH,
    with_context: bool = False,
    checks_channels: bool = False,
    sampler: Sampler = normal,
    layer_event_shape: tuple | None = None,
    wrap: Callable[[tfb.Bijector], tfb.Bijector] | None = None,
) -> Case:
    """A case whose bijector is ``wrap(layer.bijector(context))``.

    The layer is built for events of ``layer_event_shape`` (default: the
    case's ``event_shape``) and its weights randomized.
    """
    seed = zlib.crc32(f"{name}/{dtype}".encode())
    context = None
    if with_context:
        rng = np.random.default_rng(seed + 1)
        context = rng.standard_normal(batch_shape + (CONTEXT_SIZE,)).astype(dtype)
    build_shape = (None, *(layer_event_shape or event_shape))
    if context is None:
        layer.build(build_shape)
    else:
        layer.build(build_shape, (None, CONTEXT_SIZE))
    randomize_weights(layer, seed)

    def make_bijector():
        b = layer.bijector(None if context is None else tf.constant(context))
        return b if wrap is None else wrap(b)

    return Case(
        name,
        dtype,
        tuple(event_shape),
        tuple(batch_shape),
        make_bijector,
        layer,
        context,
        sampler,
        checks_channels,
    )


def _fixed_case(
    name: str,
    dtype: str,
    make: Callable[[], tfb.Bijector],
    event_shape: tuple,
    batch_shape: tuple = BATCH,
    sampler: Sampler = normal,
    checks_channels: bool = False,
) -> Case:
    return Case(
        name, dtype, tuple(event_shape), tuple(batch_shape), make, None, None, sampler, checks_channels
    )


def _coupling(
    mask: str,
    parity: int = 0,
    *,
    scale_fn: str = "sigmoid",
    additive: bool = False,
    transform: str | None = None,
    conditioner: Any = None,
    event_shape: tuple | None = None,
    batch_shape: tuple = BATCH,
    with_context: bool = False,
    indices: list | None = None,
    num_bins: int = 4,
    bound: float = 3.0,
):
    """A case of the generic coupling: any mask, transform and conditioner."""
    if event_shape is None:
        event_shape = {"half": VECTOR, "token_channel": TOKENS, "token_spatial": TOKENS}.get(mask, IMAGE)
    transform = transform or ("additive" if additive else "affine")

    def factory(dtype: str, name: str) -> Case:
        cond = conditioner(event_shape, dtype) if callable(conditioner) else conditioner
        dense = mask == "half" and cond in (None, "mlp")
        size = (
            dict(hidden_units=HIDDEN, num_hidden=1) if dense else dict(hidden_channels=HIDDEN, num_blocks=1)
        )
        options = {"heads": 2} if mask.startswith("token") and cond in (None, "vit") else None
        layer = CouplingLayer(
            mask=mask,
            parity=parity,
            transform=transform,
            scale_fn=scale_fn,
            conditioner=cond,
            num_bins=num_bins,
            bound=bound,
            indices=indices,
            conditioner_options=options,
            dtype=dtype,
            **size,
        )
        case = _layer_case(name, dtype, layer, event_shape, batch_shape, with_context)
        if transform == "spline" and mask.startswith("token"):
            # Order-one raw spline parameters from a transformer put bin widths far apart:
            # smaller output weights keep the splines curved but well conditioned in float32.
            for w in layer.trainable_weights:
                if "project_out" in w.path:
                    w.assign(w * 0.3)
        return case

    return _tag(factory, has_layer=True)


def _tiny_conditioner(event_shape: tuple, dtype: str) -> TinyConditioner:
    # A channel mask, parity 0: 2 × the moving half of the channels.
    moving = event_shape[-1] - event_shape[-1] // 2
    return TinyConditioner(2 * moving, dtype=dtype)


def _actnorm(event_shape: tuple, batch_shape: tuple = BATCH):
    def factory(dtype: str, name: str) -> Case:
        layer = ActNormLayer(event_ndims=len(event_shape), dtype=dtype)
        return _layer_case(name, dtype, layer, event_shape, batch_shape, checks_channels=True)

    return _tag(factory, has_layer=True, checks_channels=True)


def _conv1x1(lu: bool, event_shape: tuple, batch_shape: tuple = BATCH):
    def factory(dtype: str, name: str) -> Case:
        layer = InvertibleConv1x1Layer(lu=lu, seed=7, event_ndims=len(event_shape), dtype=dtype)
        return _layer_case(name, dtype, layer, event_shape, batch_shape, checks_channels=True)

    return _tag(factory, has_layer=True, checks_channels=True)


def _spline(
    mask: str, parity: int = 0, *, batch_shape: tuple = BATCH, with_context: bool = False, **kwargs: Any
):
    """A spline coupling: the generic coupling with transform="spline", K = 4 bins on [−3, 3]."""
    return _coupling(
        mask, parity, transform="spline", batch_shape=batch_shape, with_context=with_context, **kwargs
    )


def _prior(event_shape: tuple, batch_shape: tuple = BATCH, with_context: bool = False):
    def factory(dtype: str, name: str) -> Case:
        layer = PriorLayer(event_ndims=len(event_shape), dtype=dtype)
        return _layer_case(name, dtype, layer, event_shape, batch_shape, with_context)

    return _tag(factory, has_layer=True)


def _autoregressive(
    direction: str,
    ordering: str,
    *,
    batch_shape: tuple = BATCH,
    with_context: bool = False,
    transform: str = "affine",
):
    def factory(dtype: str, name: str) -> Case:
        layer = MaskedAutoregressiveLayer(
            hidden_units=HIDDEN,
            num_hidden=2,
            ordering=ordering,
            direction=direction,
            seed=5,
            transform=transform,
            num_bins=4,
            bound=3.0,
            dtype=dtype,
        )
        case = _layer_case(name, dtype, layer, VECTOR, batch_shape, with_context, checks_channels=True)
        if transform == "spline":
            # Raw spline parameters of order one put bin widths e³ apart, log-dets near 30 and
            # a float32 D-pass inverse off by 1e-2 (an ill-conditioned map, not a wrong one):
            # smaller output weights keep the splines curved but the map well conditioned.
            for w in layer.trainable_weights:
                if "output" in w.path:
                    w.assign(w * 0.3)
        return case

    return _tag(factory, has_layer=True, checks_channels=True)


def _standardize(dtype: str, name: str) -> Case:
    """Statistics are fixed weights, not trainable ones: set them to non-trivial values here."""
    layer = StandardizeLayer(dtype=dtype)
    case = _layer_case(name, dtype, layer, VECTOR, checks_channels=True)
    rng = np.random.default_rng(case.seed("stats"))
    layer.mean.assign(rng.normal(size=VECTOR).astype(dtype))
    layer.scale.assign(rng.uniform(0.3, 3.0, size=VECTOR).astype(dtype))
    return case


def _factor_out(dtype: str, name: str) -> Case:
    """A RealNVP level: half the channels leave, the other half go through a coupling."""
    layer = CouplingLayer(mask="channel", scale_fn="tanh", hidden_channels=HIDDEN, dtype=dtype)
    return _layer_case(
        name,
        dtype,
        layer,
        (4, 4, 4),
        layer_event_shape=(4, 4, 2),
        wrap=lambda b: FactorOut(FlowChain([b, Flatten((4, 4, 2))]), (4, 4, 4)),
    )


def _flow_chain(dtype: str, name: str) -> Case:
    """Squeeze, a checkerboard coupling and a reversal run as one FlowChain."""
    layer = CouplingLayer(mask="checkerboard", parity=1, scale_fn="exp", hidden_channels=HIDDEN, dtype=dtype)
    return _layer_case(
        name,
        dtype,
        layer,
        (4, 4, 2),
        BATCH_2D,
        layer_event_shape=(2, 2, 8),
        wrap=lambda b: FlowChain([Squeeze(2), b, ChannelPermutation.reverse(8)]),
    )


def _fixed(
    make: Callable[[], tfb.Bijector],
    event_shape: tuple,
    batch_shape: tuple = BATCH,
    sampler: Sampler = normal,
    checks_channels: bool = False,
):
    def factory(dtype: str, name: str) -> Case:
        return _fixed_case(name, dtype, make, event_shape, batch_shape, sampler, checks_channels)

    return _tag(factory, has_layer=False, checks_channels=checks_channels)


_FACTORIES: dict[str, Callable[[str, str], Case]] = {
    # Affine couplings on images: every mask and parity, scale function and conditioner.
    "affine_checkerboard0_sigmoid_convnet": _coupling("checkerboard", 0, scale_fn="sigmoid"),
    "affine_checkerboard1_tanh_resnet": _coupling("checkerboard", 1, scale_fn="tanh", conditioner="resnet"),
    "affine_channel0_exp_convnet": _coupling("channel", 0, scale_fn="exp"),
    "affine_channel1_sigmoid_resnet": _coupling("channel", 1, scale_fn="sigmoid", conditioner="resnet"),
    "affine_channel0_tanh_odd3": _coupling("channel", 0, scale_fn="tanh", event_shape=(4, 4, 3)),
    "affine_channel1_sigmoid_odd3": _coupling("channel", 1, event_shape=(4, 4, 3)),
    "affine_channel0_custom_conditioner": _coupling(
        "channel", 0, scale_fn="tanh", conditioner=_tiny_conditioner
    ),
    "affine_channel0_context_convnet": _coupling("channel", 0, with_context=True),
    "affine_checkerboard0_context_resnet": _coupling(
        "checkerboard", 0, scale_fn="tanh", conditioner="resnet", with_context=True
    ),
    "affine_channel0_batch2d": _coupling("channel", 0, scale_fn="tanh", batch_shape=BATCH_2D),
    "affine_checkerboard1_context_batch2d": _coupling(
        "checkerboard", 1, batch_shape=BATCH_2D, with_context=True
    ),
    # Affine couplings on vectors.
    "affine_half0_sigmoid_mlp": _coupling("half", 0, scale_fn="sigmoid"),
    "affine_half1_tanh_mlp": _coupling("half", 1, scale_fn="tanh"),
    "affine_half0_exp_mlp": _coupling("half", 0, scale_fn="exp"),
    "affine_half1_context_mlp": _coupling("half", 1, scale_fn="tanh", with_context=True),
    "affine_half0_context_batch2d": _coupling("half", 0, batch_shape=BATCH_2D, with_context=True),
    # Additive couplings.
    "additive_channel1_convnet": _coupling("channel", 1, additive=True),
    "additive_checkerboard0_resnet": _coupling("checkerboard", 0, additive=True, conditioner="resnet"),
    "additive_half0_mlp": _coupling("half", 0, additive=True),
    # ActNorm.
    "actnorm_image": _actnorm(IMAGE),
    "actnorm_vector": _actnorm(VECTOR),
    "actnorm_image_batch2d": _actnorm((4, 4, 3), BATCH_2D),
    # Invertible 1x1 convolutions (dense layers for vectors).
    "conv1x1_plain_image": _conv1x1(False, IMAGE),
    "conv1x1_lu_image": _conv1x1(True, IMAGE),
    "conv1x1_plain_vector": _conv1x1(False, VECTOR),
    "conv1x1_lu_vector": _conv1x1(True, VECTOR),
    "conv1x1_lu_image_batch2d": _conv1x1(True, (4, 4, 3), BATCH_2D),
    # Squeeze: the event shape changes.
    "squeeze2": _fixed(lambda: Squeeze(2), (4, 4, 2)),
    "squeeze3": _fixed(lambda: Squeeze(3), (6, 6, 2)),
    "squeeze2_batch2d": _fixed(lambda: Squeeze(2), (4, 2, 3), BATCH_2D),
    # Channel permutations.
    "reverse_image": _fixed(lambda: ChannelPermutation.reverse(4), IMAGE, checks_channels=True),
    "shuffle_image": _fixed(lambda: ChannelPermutation.shuffle(4, seed=3), IMAGE, checks_channels=True),
    "reverse_vector": _fixed(
        lambda: ChannelPermutation.reverse(5, event_ndims=1), VECTOR, checks_channels=True
    ),
    "shuffle_vector_batch2d": _fixed(
        lambda: ChannelPermutation.shuffle(5, 3, event_ndims=1), VECTOR, BATCH_2D, checks_channels=True
    ),
    # Pre-processing.
    "scale_pixels": _fixed(lambda: ScalePixels(8, 0.0), IMAGE, sampler=pixel_levels),
    "scale_pixels_centered": _fixed(lambda: ScalePixels(8, -0.5), IMAGE, sampler=pixel_levels),
    "scale_pixels_vector_batch2d": _fixed(
        lambda: ScalePixels(8, -0.5, event_ndims=1), VECTOR, BATCH_2D, sampler=pixel_levels
    ),
    "logit_image": _fixed(lambda: Logit(0.05), IMAGE, sampler=unit_interval),
    "logit_vector_batch2d": _fixed(
        lambda: Logit(0.0, event_ndims=1), VECTOR, BATCH_2D, sampler=unit_interval
    ),
    # Neural spline couplings.
    "spline_half0_mlp": _spline("half", 0),
    "spline_channel1_context_batch2d": _spline("channel", 1, batch_shape=BATCH_2D, with_context=True),
    # Combinations the separate classes could not make: one coupling, any transform and mask.
    "spline_checkerboard0_convnet": _spline("checkerboard", 0),
    "spline_channel_indices_resnet": _spline(
        "channel", 1, conditioner="resnet", event_shape=(4, 4, 3), indices=[2]
    ),
    "affine_half0_bounded_indices": _coupling("half", 0, scale_fn="bounded", indices=[4, 1]),
    "additive_channel0_indices": _coupling("channel", 0, additive=True, indices=[3, 0]),
    # Token sequences [T, D] with ViT conditioners (Jet): within tokens and over tokens.
    "affine_token_channel0_vit": _coupling("token_channel", 0, scale_fn="scaled_sigmoid"),
    "affine_token_channel1_indices_context": _coupling(
        "token_channel", 1, scale_fn="scaled_sigmoid", indices=[5, 0, 2], with_context=True
    ),
    "affine_token_spatial0_vit": _coupling("token_spatial", 0, scale_fn="scaled_sigmoid"),
    "affine_token_spatial1_indices_context_batch2d": _coupling(
        "token_spatial", 1, scale_fn="tanh", indices=[0, 3], batch_shape=BATCH_2D, with_context=True
    ),
    "additive_token_spatial0_vit": _coupling("token_spatial", 0, additive=True),
    "spline_token_channel0_vit": _spline("token_channel", 0),
    "spline_token_spatial1_vit_batch2d": _spline("token_spatial", 1, batch_shape=BATCH_2D),
    # Masked autoregressive steps (MADE conditioners): MAF and IAF directions, every ordering.
    "maf_natural_vector": _autoregressive("maf", "natural"),
    "maf_random_context_batch2d": _autoregressive("maf", "random", batch_shape=BATCH_2D, with_context=True),
    "iaf_reversed_vector": _autoregressive("iaf", "reversed"),
    "iaf_random_context": _autoregressive("iaf", "random", with_context=True),
    # Autoregressive neural spline steps: the same loop with a spline per feature.
    "maf_spline_natural_vector": _autoregressive("maf", "natural", transform="spline"),
    "maf_spline_random_context_batch2d": _autoregressive(
        "maf", "random", batch_shape=BATCH_2D, with_context=True, transform="spline"
    ),
    "iaf_spline_reversed_vector": _autoregressive("iaf", "reversed", transform="spline"),
    # Standardize with fitted statistics: its layer has no trainable weights, so it is
    # left out of LAYER_CASE_NAMES (the gradient property); every other property runs.
    "standardize_vector": _tag(_standardize, has_layer=False, checks_channels=True),
    # Learned priors (an elementwise affine map), plain and class-conditional.
    "prior_vector": _prior(VECTOR),
    "prior_image_context_batch2d": _prior((4, 4, 3), BATCH_2D, with_context=True),
    # Multi-scale plumbing.
    "flatten": _fixed(lambda: Flatten((4, 4, 2)), (4, 4, 2)),
    "factor_out_coupling": _tag(_factor_out, has_layer=True),
    "flow_chain_squeeze_coupling": _tag(_flow_chain, has_layer=True),
}

CASE_NAMES: tuple[str, ...] = tuple(_FACTORIES)
CASES: dict[str, Callable[[str], Case]] = {
    name: functools.partial(factory, name=name) for name, factory in _FACTORIES.items()
}


@functools.cache
def get_case(name: str, dtype: str) -> Case:
    """The case ``name`` in ``dtype``, built once per session."""
    return CASES[name](dtype)


LAYER_CASE_NAMES: tuple[str, ...] = tuple(name for name, factory in _FACTORIES.items() if factory.has_layer)
"""Names of the cases whose bijector is built from a Keras layer's weights."""

CHANNEL_CASE_NAMES: tuple[str, ...] = tuple(
    name for name, factory in _FACTORIES.items() if factory.checks_channels
)
"""Names of the cases whose bijector itself rejects a wrong channel count."""
