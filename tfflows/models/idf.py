"""IDF: an integer discrete flow with a conditional logistic-mixture prior, the model behind tfflows.codec."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfflows.deprecation import old_argument_names, renamed_keys
from tfflows.layers.idf import IntegerCoupling, LogisticMixturePrior, discretized_logistic_mixture_log_prob
from tfflows.models.registry import ModelEntry, register_model
from tfflows.typing import TensorLike

__all__ = ["IDF", "TINY_CONFIG", "cli_builder", "cli_config"]

TINY_CONFIG: dict[str, Any] = dict(
    num_levels=2, num_steps=2, width=8, depth=0, num_mixtures=2, num_groups=1, top_groups=2, max_shift=8
)
"""A model that builds and runs in well under a second: for tests."""


def _split_sizes(n: int, groups: int) -> list[int]:
    return [len(part) for part in np.array_split(np.arange(n), groups) if len(part)]


@keras.saving.register_keras_serializable(package="tfflows")
@old_argument_names({"num_couplings": "num_steps"})
class IDF(keras.Model):
    """Integer discrete flow: an exact bijection of integer images onto integer latents.

    Data → latent, for pixel levels x ∈ [0, 2ⁿ):

    1. centre: v = x − 2ⁿ⁻¹;
    2. ``num_levels`` levels, each: squeeze (2×2 space-to-depth) → ``num_steps``
       × :class:`~tfflows.layers.idf.IntegerCoupling` (b ← b + round(t(a)), halves
       swapped) → (all but the last level) half of the channels are factored out;
    3. every factored half, and the top, is cut along channels into groups,
       each with a K-component discretized logistic mixture prior whose
       parameters a network computes from the latents coded before it (the
       kept channels of its level and the earlier groups); the top's first
       group has parameters learned per position.

    log P(x) = Σ_groups log P(z_g | context_g), exactly (no log-det: the map
    is a bijection of integers), so ``log_prob`` is the discrete likelihood of
    the pixels in nats and −log₂ P(x) is what an entropy coder spends on x.
    Every translation is at most ``max_shift`` in magnitude, so every latent
    lies in :meth:`latent_range`.

    Args:
      event_shape: (H, W, C); H and W divisible by 2**num_levels.
      num_bits: bits per pixel level of the data (8: values 0..255).
      num_levels: L, the number of scales.
      num_steps: couplings per level.
      width, depth: of every network (3×3 convolutions, ``depth`` residual hidden ones).
      num_mixtures: K, logistic components per latent.
      num_groups: groups of each factored half.
      top_groups: groups of the top latent.
      max_shift: T, the largest |translation| of a coupling.
      dtype: Keras dtype policy (the coder runs a float64 twin).

    References:
      Hoogeboom, Peters, van den Berg, Welling. Integer Discrete Flows and
        Lossless Compression. NeurIPS 2019.
      Salimans, Karpathy, Chen, Kingma. PixelCNN++. ICLR 2017 (the
        discretized logistic mixture).
    """

    data_kind = "image"

    def __init__(
        self,
        event_shape: Sequence[int] = (28, 28, 1),
        num_bits: int = 8,
        num_levels: int = 2,
        num_steps: int = 2,
        width: int = 32,
        depth: int = 1,
        num_mixtures: int = 3,
        num_groups: int = 2,
        top_groups: int = 8,
        max_shift: int = 32,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        event_shape = tuple(int(s) for s in event_shape)
        if len(event_shape) != 3 or min(event_shape) < 1:
            raise ValueError(f"IDF: event_shape must be (H, W, C) of positive sizes, got {event_shape}.")
        factor = 2**num_levels
        if event_shape[0] % factor or event_shape[1] % factor:
            raise ValueError(
                f"IDF: H and W must be divisible by 2**num_levels = {factor}, got event_shape "
                f"{event_shape} with num_levels={num_levels}."
            )
        for name, value in (
            ("num_bits", num_bits),
            ("num_levels", num_levels),
            ("num_mixtures", num_mixtures),
            ("num_groups", num_groups),
            ("top_groups", top_groups),
            ("max_shift", max_shift),
            ("width", width),
        ):
            if int(value) != value or value < 1:
                raise ValueError(f"IDF: {name} must be a positive integer, got {value!r}.")
        if not 1 <= num_bits <= 16:
            raise ValueError(f"IDF: num_bits must be in 1..16, got {num_bits}.")
        self.event_shape = event_shape
        self.num_bits = int(num_bits)
        self.num_levels = int(num_levels)
        self.num_steps = int(num_steps)
        self.width = int(width)
        self.depth = int(depth)
        self.num_mixtures = int(num_mixtures)
        self.num_groups = int(num_groups)
        self.top_groups = int(top_groups)
        self.max_shift = int(max_shift)
        scale = float(2 ** (self.num_bits - 1))
        net = dict(width=self.width, depth=self.depth, dtype=self.dtype_policy)
        h, w, c = event_shape
        self.couplings: list[list[IntegerCoupling]] = []
        self.priors: list[list[LogisticMixturePrior]] = []  # per level; the top's last
        self.kept: list[int] = []
        for level in range(self.num_levels):
            h, w, c = h // 2, w // 2, c * 4
            self.couplings.append(
                [
                    IntegerCoupling(
                        c, max_shift=self.max_shift, input_scale=scale, name=f"coupling_{level}_{k}", **net
                    )
                    for k in range(self.num_steps)
                ]
            )
            top = level == self.num_levels - 1
            keep = 0 if top else c // 2
            self.kept.append(keep)
            priors, known = [], keep
            for g, n in enumerate(_split_sizes(c - keep, self.top_groups if top else self.num_groups)):
                priors.append(
                    LogisticMixturePrior(
                        (h, w),
                        n,
                        known,
                        num_mixtures=self.num_mixtures,
                        input_scale=scale,
                        name=f"prior_{level}_{g}",
                        **net,
                    )
                )
                known += n
            self.priors.append(priors)
            c = keep
        self.nll_per_dim = keras.metrics.Mean(name="bits_per_dim")
        self.build()  # every shape is known: the weights exist from the start (and are saved)

    # -- shapes and ranges ------------------------------------------------------------------------

    @property
    def num_dims(self) -> int:
        """Values per image: H · W · C."""
        return int(np.prod(self.event_shape))

    def latent_range(self) -> tuple[int, int]:
        """(lo, hi): every latent integer lies in lo..hi (pixels centred, plus every shift a channel gets)."""
        half = 2 ** (self.num_bits - 1)
        reach = self.max_shift * math.ceil(self.num_steps / 2) * self.num_levels
        return -half - reach, half - 1 + reach

    def build(self, input_shape: Any = None) -> None:
        if getattr(self, "built", False):  # keras.Model sets it; mypy cannot see Keras's attributes
            return
        h, w, c = self.event_shape
        for level in range(self.num_levels):
            h, w, c = h // 2, w // 2, c * 4
            for coupling in self.couplings[level]:
                coupling.build((None, h, w, c))
            for prior in self.priors[level]:
                prior.build()
            c = self.kept[level]
        self.built = True

    # -- the bijection ----------------------------------------------------------------------------

    def _centred(self, x) -> tf.Tensor:
        x = tf.convert_to_tensor(x)
        x = tf.cast(x, self.compute_dtype)
        return x - float(2 ** (self.num_bits - 1))

    def groups(self, x: tf.Tensor, shifts: list | None = None) -> list[tuple[tf.Tensor, tf.Tensor]]:
        """``[(z_g, params_g)]`` for integer images x, in the coding order (the top first).

        Args:
          x: pixel levels ``[B, H, W, C]`` (any real or integer dtype holding integers).
          shifts: when a list, each coupling's unrounded translation is appended to it.

        Returns:
          per group its latents ``[B, h, w, n]`` and prior parameters ``[B, h, w, n, K, 3]``.
        """
        v = self._centred(x)
        levels = []
        for level in range(self.num_levels):
            v = tf.nn.space_to_depth(v, 2)
            for coupling in self.couplings[level]:
                v, t = coupling.couple(v)
                if shifts is not None:
                    shifts.append(t)
            keep = self.kept[level]
            levels.append((v[..., :keep], v[..., keep:]))
            v = v[..., :keep]
        out = []
        batch = tf.shape(x)[0]
        for level in reversed(range(self.num_levels)):
            known, rest = levels[level]
            start = 0
            for prior in self.priors[level]:
                z = rest[..., start : start + prior.channels]
                start += prior.channels
                params = prior(known) if prior.context_channels else prior(batch_size=batch)
                out.append((z, params))
                known = tf.concat([known, z], axis=-1)
        return out

    def invert(
        self, draw: Callable[[tf.Tensor, int], tf.Tensor], batch_size: int, shifts: list | None = None
    ) -> tf.Tensor:
        """Pixels from latents that ``draw(params, group_index)`` returns group by group, in coding order.

        ``draw`` gets each group's prior parameters ``[B, h, w, n, K, 3]`` and returns
        its integer latents ``[B, h, w, n]``: read from given latents (:meth:`decode`),
        sampled (:meth:`sample`) or decoded from a bit stream (tfflows.codec).
        """
        index = 0
        v = None
        for level in reversed(range(self.num_levels)):
            known = v if self.kept[level] else None
            for prior in self.priors[level]:
                params = prior(known) if prior.context_channels else prior(batch_size=batch_size)
                z = tf.cast(draw(params, index), self.compute_dtype)
                index += 1
                known = z if known is None else tf.concat([known, z], axis=-1)
            v = known
            for coupling in reversed(self.couplings[level]):
                v, t = coupling.couple(v, inverse=True)
                if shifts is not None:
                    shifts.append(t)
            v = tf.nn.depth_to_space(v, 2)
        assert v is not None  # num_levels >= 1: the loop above ran
        return v + float(2 ** (self.num_bits - 1))

    # -- the FlowModel surface --------------------------------------------------------------------

    def check_images(self, x: TensorLike, what: str = "x") -> np.ndarray:
        """x as an integer array ``[B, H, W, C]`` of levels in 0..2ⁿ−1, or a ValueError saying what came."""
        arr = np.asarray(x)
        if arr.dtype.kind not in "ui" and not (arr.dtype.kind == "f" and np.all(arr == np.round(arr))):
            raise ValueError(f"IDF: {what} must hold integer pixel levels, got dtype {arr.dtype}.")
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or tuple(arr.shape[1:]) != self.event_shape:
            raise ValueError(
                f"IDF: {what} must have shape [N, {', '.join(map(str, self.event_shape))}] "
                f"(or one image), got {tuple(np.shape(x))}."
            )
        top = 2**self.num_bits - 1
        if arr.size and (arr.min() < 0 or arr.max() > top):
            raise ValueError(
                f"IDF: {what} must hold levels in 0..{top} (num_bits={self.num_bits}), got "
                f"values in {arr.min()}..{arr.max()}."
            )
        return arr

    def log_prob(self, x: TensorLike) -> tf.Tensor:
        """log P(x) in nats of integer images ``[B, H, W, C]``: exact, discrete."""
        if not tf.is_symbolic_tensor(x) and not isinstance(x, tf.Tensor):
            x = self.check_images(x)
        total = 0.0
        for z, params in self.groups(x):
            total += tf.reduce_sum(discretized_logistic_mixture_log_prob(z, params), axis=[1, 2, 3])
        return total

    def bits_per_dim(self, x: TensorLike) -> tf.Tensor:
        """−log₂ P(x) / D per image."""
        return -self.log_prob(x) / (self.num_dims * math.log(2.0))

    def call(self, x: TensorLike, training: bool | None = None) -> tf.Tensor:
        """``log_prob(x)``: what ``fit`` maximises (see :meth:`compute_loss`)."""
        return self.log_prob(x)

    def encode(self, x: TensorLike) -> list[tf.Tensor]:
        """The integer latents of x, one tensor per group, in coding order."""
        return [z for z, _ in self.groups(self.check_images(x))]

    def decode(self, latents: Sequence) -> tf.Tensor:
        """Pixels from :meth:`encode`'s latents (exact inverse)."""
        latents = list(latents)
        return self.invert(lambda params, i: latents[i], batch_size=int(np.shape(latents[0])[0]))

    def sample(self, num_samples: int, seed: int | None = None) -> np.ndarray:
        """``num_samples`` uint8/uint16 images drawn from the model."""
        rng = np.random.default_rng(seed)
        lo, hi = self.latent_range()

        def draw(params, index):
            p = np.asarray(params, dtype=np.float64)
            mean, log_scale, logits = p[..., 0], np.clip(p[..., 1], -4.0, 6.0), p[..., 2]
            pick = np.argmax(logits + rng.gumbel(size=logits.shape), axis=-1)[..., None]
            mean = np.take_along_axis(mean, pick, -1)[..., 0]
            scale = np.exp(np.take_along_axis(log_scale, pick, -1)[..., 0])
            u = rng.uniform(1e-6, 1 - 1e-6, size=mean.shape)
            return np.clip(np.round(mean + scale * (np.log(u) - np.log1p(-u))), lo, hi)

        x = np.asarray(self.invert(draw, batch_size=int(num_samples)))
        dtype = np.uint8 if self.num_bits <= 8 else np.uint16
        return np.clip(np.round(x), 0, 2**self.num_bits - 1).astype(dtype)

    def export(
        self, filepath: str, format: str = "tf_saved_model", verbose: bool | None = None, **kwargs: Any
    ) -> None:
        """A SavedModel whose ``serve(x)`` gives ``log_prob(x)`` (nats) of float32 pixel levels [B, H, W, C].

        The coder itself runs in Python (``tfflows.codec``) on the ``.keras`` model; the
        SavedModel serves the exact discrete likelihood. Written beside ``filepath`` and
        moved into place.
        """
        import os

        from tfflows.io import atomic_dir

        if format != "tf_saved_model":
            raise ValueError(f"IDF.export: expected format='tf_saved_model', got format={format!r}.")
        path = os.fspath(filepath)
        signature = [tf.TensorSpec((None,) + self.event_shape, tf.float32, name="x")]
        with atomic_dir(path, overwrite=os.path.isdir(path)) as tmp:
            super().export(tmp, format=format, verbose=False, input_signature=signature, **kwargs)
        if verbose or verbose is None:
            print(f"Saved artifact at '{path}': serve(x) -> log_prob.")

    # -- training ---------------------------------------------------------------------------------

    def compute_loss(
        self,
        x: Any = None,
        y: Any = None,
        y_pred: tf.Tensor | None = None,
        sample_weight: Any = None,
        training: bool = True,
    ) -> tf.Tensor:
        """The mean NLL in nats (weighted by ``sample_weight``: Σ wᵢ·nllᵢ / Σ wᵢ), as Keras's hook."""
        nll_each = -tf.reshape(y_pred, [-1])
        if sample_weight is None:
            nll = tf.reduce_mean(nll_each)
        else:
            w = tf.cast(tf.reshape(sample_weight, [-1]), nll_each.dtype)
            nll = tf.math.divide_no_nan(tf.reduce_sum(w * nll_each), tf.reduce_sum(w))
        self.nll_per_dim.update_state(nll / (self.num_dims * math.log(2.0)))
        return nll

    @property
    def metrics(self) -> list:
        """Keras's metrics and the training bits/dim."""
        return super().metrics + [self.nll_per_dim]

    def get_config(self) -> dict[str, Any]:
        """Keras's config plus every argument of the constructor."""
        return {
            **super().get_config(),
            "event_shape": list(self.event_shape),
            "num_bits": self.num_bits,
            "num_levels": self.num_levels,
            "num_steps": self.num_steps,
            "width": self.width,
            "depth": self.depth,
            "num_mixtures": self.num_mixtures,
            "num_groups": self.num_groups,
            "top_groups": self.top_groups,
            "max_shift": self.max_shift,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> IDF:
        """A model from :meth:`get_config`; configs saved before a rename load too."""
        return cls(**renamed_keys(config, cls.OLD_ARGUMENT_NAMES))  # files saved before the glossary


def cli_config(args: Any) -> dict[str, Any]:
    """IDF arguments from ``tfflows train``'s flags --levels, --steps (couplings per level), --width, --depth.

    Only the flags given on the command line (not None) are passed; the rest keep IDF's defaults.
    """
    given = dict(
        num_levels=getattr(args, "levels", None),
        num_steps=getattr(args, "steps", None),
        width=getattr(args, "width", None),
        depth=getattr(args, "depth", None),
    )
    return {key: value for key, value in given.items() if value is not None}


def cli_builder(args: Any, event_shape: Sequence[int], num_bits: int, num_classes: int | None) -> IDF:
    """The IDF that ``tfflows train --model idf`` builds from its arguments (the model registry's hook)."""
    if num_classes:
        raise ValueError("--model idf is unconditional; drop --conditional.")
    return IDF(event_shape, num_bits=num_bits, **cli_config(args))


def _train_from_cli(args: Any) -> dict:
    from tfflows.codec.train import train_from_cli

    return train_from_cli(args)


register_model(
    ModelEntry(
        name="idf",
        data_kind="image",
        model_class=IDF,
        conditioning=(),
        summary="integer discrete flow with a logistic-mixture prior: the model of tfflows.codec (lossless)",
        build=lambda o: IDF(
            o.event_shape,
            num_bits=o.image_num_bits,
            num_levels=o.num_levels,
            num_steps=o.num_steps or 2,
            width=o.width,
            depth=1 if o.depth is None else o.depth,
        ),
        tiny=lambda: IDF((8, 8, 1), num_bits=5, **TINY_CONFIG),
        train=_train_from_cli,
    )
)
