"""The OOD table: every method's AUROC, AUPR and FPR@95%TPR for an in-distribution set against OOD sets."""

from __future__ import annotations

from typing import Any

import numpy as np

from tfflows.ood.density import as_density
from tfflows.ood.metrics import detection_metrics
from tfflows.ood.scores import TypicalityTest, score

__all__ = ["METHODS", "evaluate", "format_table"]

METHODS = ("nll", "complexity_corrected", "likelihood_ratio", "typicality")
"""Per-example scores in the table (``bits_per_dim`` ranks exactly as ``nll``); every image score
registered in :mod:`tfflows.ood.registry` joins them."""


def evaluate(
    model: Any,
    in_data: Any,
    ood_data: dict[str, Any],
    *,
    background: Any | None = None,
    train_data: Any | None = None,
    batch_size: int = 256,
    typicality_batch: int | None = None,
    typicality_fpr: float = 0.01,
) -> dict[str, Any]:
    """Scores ``in_data`` and every OOD set; returns the metrics of every method.

    Args:
      model: FlowModel, SavedModel folder or :class:`~tfflows.ood.ImageDensity`.
      in_data: in-distribution uint8 images (held out from training) or a dataset of them.
      ood_data: ``{name: images or dataset}``.
      background: a background density; adds ``likelihood_ratio``.
      train_data: training images whose mean NLL centres ``typicality``.
      batch_size: images per batch.
      typicality_batch: with ``train_data``, also run :class:`TypicalityTest` on batches of
        this many images, its threshold bootstrapped from the training NLLs at
        ``typicality_fpr``: adds ``"typicality_test"`` with the share of batches flagged in
        the in-distribution set (the false-positive rate) and in each OOD set (the power).

    Returns:
      ``{"methods": [...], "in_examples": n, "in_mean_bits_per_dim": b,
      "ood": {name: {"examples": n, "mean_bits_per_dim": b,
      "metrics": {method: {"auroc", "aupr", "fpr95"}}}}}``.
    """
    if not isinstance(ood_data, dict) or not ood_data:
        raise ValueError(
            f"ood_data: expected a dict {{name: images}} of at least one OOD set, got {ood_data!r:.80}."
        )
    if typicality_batch is not None:
        if (
            isinstance(typicality_batch, bool)
            or not isinstance(typicality_batch, (int, np.integer))
            or typicality_batch < 1
        ):
            raise ValueError(
                f"typicality_batch: expected a positive integer or None, got {typicality_batch!r}."
            )
        if train_data is None:
            raise ValueError(
                "typicality_batch: the typicality test is centred on the training NLLs; "
                "pass train_data too (got typicality_batch without it)."
            )
    model = as_density(model)  # one traced function for every set
    background = None if background is None else as_density(background)
    train_mean, test = None, None
    if train_data is not None:
        train_nll = _scored(model, train_data, "train_data", batch_size=batch_size)["nll"]
        train_mean = float(np.mean(train_nll))
        if typicality_batch:
            test = TypicalityTest.fit(train_nll, batch_size=typicality_batch, fpr=typicality_fpr)
    kwargs = {"background": background, "batch_size": batch_size, "train_mean_nll": train_mean}
    inside = _scored(model, in_data, "in_data", **kwargs)
    from tfflows.ood.registry import image_scores

    registered = [s.name for s in image_scores()]
    order = ["nll", *registered, *[m for m in METHODS if m not in ("nll", *registered)]]
    methods = [m for m in order if m in inside]
    table: dict[str, Any] = {
        "methods": methods,
        "in_examples": len(inside["nll"]),
        "in_mean_bits_per_dim": float(np.mean(inside["bits_per_dim"])),
        "train_mean_nll": train_mean,
        "ood": {},
    }
    if test is not None:
        table["typicality_test"] = {
            "batch_size": test.batch_size,
            "fpr": test.fpr,
            "threshold_nats": test.threshold,
            "in_flagged": test.flag_rate(inside["nll"]),
            "ood_flagged": {},
        }
    for name, data in ood_data.items():
        outside = _scored(model, data, f"ood_data[{name!r}]", **kwargs)
        table["ood"][name] = {
            "examples": len(outside["nll"]),
            "mean_bits_per_dim": float(np.mean(outside["bits_per_dim"])),
            "metrics": {m: detection_metrics(inside[m], outside[m]) for m in methods},
        }
        if test is not None:
            table["typicality_test"]["ood_flagged"][name] = test.flag_rate(outside["nll"])
    return table


def _scored(model: Any, data: Any, what: str, **kwargs: Any) -> dict[str, np.ndarray]:
    """:func:`score` of one set, refused when it holds no image (its mean would be NaN)."""
    scores = score(model, data, **kwargs)
    if scores["nll"].size == 0:
        raise ValueError(f"{what}: expected at least one image, got none.")
    return scores


def format_table(table: dict[str, Any]) -> str:
    """The table of :func:`evaluate` as aligned text, one row per (OOD set, method)."""
    if not isinstance(table, dict) or "ood" not in table:
        got = sorted(table) if isinstance(table, dict) else type(table).__name__
        raise ValueError(f"format_table: expected the table of tfflows.ood.evaluate (with 'ood'), got {got}.")
    lines = [f"{'ood set':<24} {'n':>6} {'method':<22} {'AUROC':>6} {'AUPR':>6} {'FPR95':>6}"]
    for name, entry in table["ood"].items():
        for method, m in entry["metrics"].items():
            lines.append(
                f"{name:<24} {entry['examples']:>6} {method:<22} "
                f"{m['auroc']:>6.3f} {m['aupr']:>6.3f} {m['fpr95']:>6.3f}"
            )
    test = table.get("typicality_test")
    if test:
        flagged = ", ".join(f"{k} {v:.3f}" for k, v in test["ood_flagged"].items())
        lines.append(
            f"typicality test, batches of {test['batch_size']} at FPR {test['fpr']}: share "
            f"flagged: in-distribution {test['in_flagged']:.3f}; {flagged}"
        )
    return "\n".join(lines)
