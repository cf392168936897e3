"""Flow bijectors: ``tfp.bijectors.Bijector`` subclasses built from tensors.

Each maps data towards the latent space in its ``forward`` direction and
computes its output and log-det in one pass (``forward_and_log_det``). They
own no variables: Keras layers in :mod:`tfflows.layers` hold the weights and
build these per call.
"""

from tfflows.bijectors.actnorm import ActNorm, ElementwiseAffine, actnorm_init
from tfflows.bijectors.autoregressive import MaskedAutoregressive
from tfflows.bijectors.base import FlowBijector
from tfflows.bijectors.conv1x1 import InvertibleConv1x1, lu_weight
from tfflows.bijectors.coupling import SCALE_FNS, AdditiveCoupling, AffineCoupling, Coupling
from tfflows.bijectors.masks import MASK_TYPES, Mask, PatternMask, SplitMask
from tfflows.bijectors.multiscale import FactorOut, Flatten, FlowChain
from tfflows.bijectors.patchify import FlattenTokens, Patchify
from tfflows.bijectors.permute import ChannelPermutation
from tfflows.bijectors.preprocess import Logit, ScalePixels
from tfflows.bijectors.spline import SplineCoupling
from tfflows.bijectors.squeeze import Squeeze
from tfflows.bijectors.standardize import Standardize
from tfflows.bijectors.tarflow import TokenAutoregressive
from tfflows.bijectors.transforms import (
    AdditiveTransform,
    AffineTransform,
    ElementwiseTransform,
    SplineTransform,
    register_transform,
    transform_names,
)

__all__ = [
    "register_transform",
    "transform_names",
    "ActNorm",
    "AdditiveCoupling",
    "AffineCoupling",
    "ChannelPermutation",
    "Coupling",
    "AdditiveTransform",
    "Mask",
    "PatternMask",
    "SplitMask",
    "ElementwiseAffine",
    "FactorOut",
    "Flatten",
    "FlowChain",
    "FlattenTokens",
    "Patchify",
    "TokenAutoregressive",
    "FlowBijector",
    "InvertibleConv1x1",
    "MaskedAutoregressive",
    "AffineTransform",
    "ElementwiseTransform",
    "SplineTransform",
    "Logit",
    "MASK_TYPES",
    "SCALE_FNS",
    "ScalePixels",
    "SplineCoupling",
    "Squeeze",
    "Standardize",
    "actnorm_init",
    "lu_weight",
]
