"""Out-of-distribution scoring with flows: per-example scores, the typicality test, metrics.

Scores (higher = more OOD), each from its paper (see :mod:`tfflows.ood.scores`):
``nll`` / ``bits_per_dim`` (raw likelihood), ``complexity_corrected``
(Serrà et al., 2020), ``likelihood_ratio`` (Ren et al., 2019) and
``typicality`` (Nalisnick et al., 2019); :class:`TypicalityTest` for batches.
Metrics: :func:`auroc`, :func:`aupr`, :func:`fpr_at_tpr` with OOD as the
positive class. ``evaluate`` scores an in-distribution set and OOD sets and
gives the table for every method. A new per-image score is one function and
:func:`register_score`: it reaches ``score``, ``evaluate``, ``tfflows score``
and the exported ``score`` signature.
"""

from tfflows.ood.background import perturb, perturbed_dataset, train_background
from tfflows.ood.datasets import SYNTHETIC, load_ood_images, parse_spec
from tfflows.ood.density import ImageDensity, as_density
from tfflows.ood.evaluate import METHODS, evaluate, format_table
from tfflows.ood.metrics import aupr, auroc, detection_metrics, fpr_at_tpr
from tfflows.ood.registry import ImageScore, image_scores, register_score, unregister_score
from tfflows.ood.scores import (
    TypicalityTest,
    complexity_bits_per_dim,
    complexity_corrected,
    image_batches,
    likelihood_ratio,
    score,
    typicality,
)

__all__ = [
    "METHODS",
    "SYNTHETIC",
    "ImageDensity",
    "ImageScore",
    "TypicalityTest",
    "as_density",
    "aupr",
    "auroc",
    "complexity_bits_per_dim",
    "complexity_corrected",
    "detection_metrics",
    "evaluate",
    "format_table",
    "fpr_at_tpr",
    "image_batches",
    "image_scores",
    "likelihood_ratio",
    "load_ood_images",
    "parse_spec",
    "perturb",
    "perturbed_dataset",
    "register_score",
    "score",
    "train_background",
    "typicality",
    "unregister_score",
]
