"""Keras 3 layers that own flow weights and build bijectors per call."""

from tfflows.layers.actnorm import ActNormLayer
from tfflows.layers.autoregressive import MaskedAutoregressiveLayer
from tfflows.layers.base import DataInitWarning, FlowLayer
from tfflows.layers.conditioners import (
    MLP,
    ConvNet,
    ResNet,
    ViT,
    ZeroConv,
    conditioner_names,
    get_conditioner,
    register_conditioner,
)
from tfflows.layers.conv1x1 import InvertibleConv1x1Layer
from tfflows.layers.convolution import Conv2D, conv_implementation
from tfflows.layers.coupling import CONDITIONERS, CouplingLayer
from tfflows.layers.made import MADE, MaskedDense
from tfflows.layers.prior import PriorLayer
from tfflows.layers.spline import SplineCouplingLayer
from tfflows.layers.standardize import StandardizeLayer
from tfflows.layers.tarflow import TarFlowBlockLayer
from tfflows.layers.transformer import CausalSelfAttention, CausalTransformer, TransformerBlock

__all__ = [
    "ActNormLayer",
    "CONDITIONERS",
    "Conv2D",
    "ConvNet",
    "CouplingLayer",
    "DataInitWarning",
    "FlowLayer",
    "InvertibleConv1x1Layer",
    "MADE",
    "MLP",
    "MaskedAutoregressiveLayer",
    "MaskedDense",
    "PriorLayer",
    "ResNet",
    "SplineCouplingLayer",
    "StandardizeLayer",
    "TarFlowBlockLayer",
    "CausalSelfAttention",
    "CausalTransformer",
    "TransformerBlock",
    "ViT",
    "ZeroConv",
    "conditioner_names",
    "get_conditioner",
    "register_conditioner",
    "conv_implementation",
]
