"""SavedModel export for TF Serving: named signatures that need neither tfflows nor TFP.

``export_saved_model(model, path)`` writes, with ``tf.saved_model.save``, one
signature per endpoint and the variables their graphs read
(``model.export(path)`` is the one-endpoint Keras form: ``serve(x)`` =
log_prob of float input). The signatures call one shared function per flow
computation (the density, the latents, the inverse), so the SavedModel holds
each flow graph once; they are reached as ``loaded.signatures[name]``. The
traced graphs contain only TensorFlow ops, so ``tf.saved_model.load``,
``saved_model_cli`` and TF Serving run them without importing tfflows, Keras
or TFP.

Image models (event shape [H, W, C], ``num_bits`` n):

- ``log_prob`` (= ``serving_default``): ``images`` uint8 [B, H, W, C] →
  ``log_prob``, ``bits_per_dim`` [B]. Pixels are reduced to n bits,
  k = floor(x / 2^(8−n)), and scored at the bin centre k + ½: the output is
  the density of the model at k + ½ in n-bit pixel-level units, the
  deterministic midpoint estimate of log P(k) = log ∫ p over the unit bin.
- ``score``: ``images`` uint8 → ``score``, ``bits_per_dim``,
  ``complexity_bits_per_dim`` [B] and ``finite`` bool [B]: the complexity-corrected OOD score
  (Serrà et al., 2020) = bits_per_dim − the PNG length (compression 9) of
  the n-bit image in bits per dimension; higher is more out-of-distribution
  (see :mod:`tfflows.ood`).
- ``log_prob_float``: ``images`` float32 pixel levels in [0, 2ⁿ), already
  dequantized → the same outputs, the exact density at those values.
- ``sample``: ``num_samples`` int32, ``temperature`` float32, ``seed`` int64
  scalars → ``images`` uint8 (scaled to 0..255), ``images_float`` (levels)
  and ``finite`` bool [B]: false for a sample whose inverse overflowed to inf
  or NaN (uint8 cannot hold NaN, so its ``images`` are not the model's).
  A model may add sampling inputs of its own (``sample_signature_options``
  and ``decode_with_options``): a class-conditional TarFlow takes
  ``guidance`` float32 (0: none) and one trained with Gaussian noise takes
  ``denoise`` bool (False: none). Signatures have no optional inputs, so
  these are required; the model card gives each one's ``default``, the
  value that reproduces the plain sample.
- ``encode``: ``images`` uint8 → ``latents`` float32 [B, D];
  ``decode``: ``latents`` → ``images``, ``images_float``, ``finite``.

Vector models (event shape [D]) take and return float32 ``x`` [B, D] (with
``finite`` beside it from ``sample`` and ``decode``) and have no uint8 path. Conditional models
take ``labels`` int32 [B] (models with ``num_classes``) or ``context`` float32 [B, K] (``context_dim``) on
every signature. Models with ``num_bits`` above 8 take and give uint16.

Bad requests fail at serve time with ``InvalidArgumentError`` naming the
argument and the limit: values out of range, labels out of range or not one
per example, ``num_samples`` outside 0..``max_samples``, non-finite or
negative temperatures, non-finite latents, and shapes other than the
signature's (checked by ``tf.ensure_shape``: servers do not enforce a
signature's shapes). A wrong dtype is refused by the signature itself. A
model with an inf or NaN weight is not exported at all.

A batch of 0 examples (or ``num_samples`` 0) is valid: every output then
has a batch dimension of 0.
"""

from tfflows.export.endpoints import CARD_FILE, MAX_SAMPLES
from tfflows.export.saved_model import describe_signatures, export_saved_model, is_saved_model_folder

__all__ = ["CARD_FILE", "MAX_SAMPLES", "describe_signatures", "export_saved_model", "is_saved_model_folder"]
