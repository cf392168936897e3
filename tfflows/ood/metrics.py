"""Detection metrics for OOD scores: AUROC, AUPR and FPR at 95% TPR, in NumPy.

Convention everywhere: the OOD examples are the positive class and a higher
score means "more OOD". Ties are handled exactly (average ranks for AUROC,
one operating point per distinct threshold for AUPR and FPR@TPR), so the
figures equal scikit-learn's ``roc_auc_score``, ``average_precision_score``
and the first point of ``roc_curve(..., drop_intermediate=False)`` whose TPR
reaches the target.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from tfflows.data.arrays import as_float64_vector

__all__ = ["auroc", "aupr", "detection_metrics", "fpr_at_tpr"]


def _check(in_scores: npt.ArrayLike, ood_scores: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    out = []
    for name, scores in (("in_scores", in_scores), ("ood_scores", ood_scores)):
        a = as_float64_vector(scores, name, "scores")
        if a.ndim != 1 or a.size == 0:
            raise ValueError(f"{name}: expected a non-empty 1-D array of scores, got shape {a.shape}.")
        nan = int(np.isnan(a).sum())
        if nan:
            raise ValueError(f"{name}: expected scores that are numbers (+-inf allowed), got {nan} NaN.")
        out.append(a)
    return out[0], out[1]


def _ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing their average rank."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    # first index of each run of equal values, and the run's average rank
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    average = (starts + 1 + ends) / 2.0
    ranks = np.empty(len(values))
    ranks[order] = np.repeat(average, ends - starts)
    return ranks


def auroc(in_scores: npt.ArrayLike, ood_scores: npt.ArrayLike) -> float:
    """Area under the ROC curve: P(ood score > in score) + ½ P(tie).

    The Mann–Whitney statistic from average ranks: (R⁺ − n⁺(n⁺+1)/2) / (n⁺ n⁻),
    R⁺ the rank sum of the OOD scores among all scores.
    """
    neg, pos = _check(in_scores, ood_scores)
    ranks = _ranks(np.concatenate([pos, neg]))
    n_pos, n_neg = len(pos), len(neg)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _operating_points(neg: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative (true positives, false positives) at each distinct threshold, highest first."""
    scores = np.concatenate([pos, neg])
    is_pos = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    order = np.argsort(-scores, kind="mergesort")
    scores, is_pos = scores[order], is_pos[order]
    last_of_run = np.r_[scores[1:] != scores[:-1], True]
    tp = np.cumsum(is_pos)[last_of_run]
    fp = np.cumsum(1.0 - is_pos)[last_of_run]
    return tp, fp


def aupr(in_scores: npt.ArrayLike, ood_scores: npt.ArrayLike) -> float:
    """Area under the precision–recall curve of the OOD class (average precision).

    AP = Σₖ (Rₖ − Rₖ₋₁) Pₖ over the distinct thresholds, highest first.
    """
    neg, pos = _check(in_scores, ood_scores)
    tp, fp = _operating_points(neg, pos)
    precision = tp / (tp + fp)
    recall = tp / len(pos)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def fpr_at_tpr(in_scores: npt.ArrayLike, ood_scores: npt.ArrayLike, tpr: float = 0.95) -> float:
    """False-positive rate at the highest threshold whose true-positive rate reaches ``tpr``.

    Flagging every score ≥ t as OOD, t is the largest threshold that catches at
    least ``tpr`` of the OOD examples; the result is the share of
    in-distribution examples flagged at t.
    """
    if not 0.0 < tpr <= 1.0:
        raise ValueError(f"tpr: expected a rate in (0, 1], got {tpr!r}.")
    neg, pos = _check(in_scores, ood_scores)
    tp, fp = _operating_points(neg, pos)
    # a small tolerance so that 0.95 of 20 (exactly 19/20) counts as reached
    k = int(np.argmax(tp / len(pos) >= tpr - 1e-12))
    return float(fp[k] / len(neg))


def detection_metrics(in_scores: npt.ArrayLike, ood_scores: npt.ArrayLike) -> dict[str, float]:
    """``{"auroc", "aupr", "fpr95"}`` for OOD (positive, higher score) against in-distribution."""
    return {
        "auroc": auroc(in_scores, ood_scores),
        "aupr": aupr(in_scores, ood_scores),
        "fpr95": fpr_at_tpr(in_scores, ood_scores, 0.95),
    }
