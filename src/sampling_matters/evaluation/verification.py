"""Pair verification as LFW scores it: ten-fold accuracy, ROC AUC, TAR at a given FAR.

Every function takes one score per pair and whether the pair shows the same
identity. Scores are **distances** by default (smaller = more likely the same);
pass ``similarity=True`` for similarities (larger = more likely the same), such as
cosine similarities. Thresholds come back in the units given.

A pair is declared "same" when its distance is below the threshold (similarity
above it). Inputs may be torch tensors or numpy arrays; the work is sorting and
binary search, O(P log P), in float64. ROC AUC and the ROC curve behind TAR@FAR are
scikit-learn's.
"""

from __future__ import annotations

import math

import torch
from sklearn.metrics import roc_auc_score, roc_curve
from torch import Tensor

from sampling_matters import _checks
from sampling_matters.evaluation.metrics import ArrayLike, as_tensor

__all__ = ["roc_auc", "tar_at_far", "verification_accuracy"]


def verification_accuracy(
    distances: ArrayLike,
    same: ArrayLike,
    *,
    folds: int | ArrayLike = 10,
    similarity: bool = False,
) -> tuple[float, float, Tensor]:
    """The LFW protocol: threshold chosen on nine folds, accuracy measured on the tenth.

    For each fold f, the threshold t_f maximises accuracy on the other folds, among
    the midpoints between consecutive distinct training distances (and ±inf, "all
    different" and "all same"; the smallest of tied maximisers wins). The pairs of
    fold f are then declared same iff ``d < t_f``, giving the accuracy ``acc_f``.

    Returns the mean of ``acc_f`` and their sample standard deviation
    ``sqrt(Σ_f (acc_f − mean)² / (F − 1))``, LFW's σ̂ (the standard error LFW's
    results page lists is σ̂/√F).

    Args:
        distances: (P,) distance of each pair (similarities with ``similarity=True``).
        same: (P,) bool, True for pairs of the same identity.
        folds: number of folds F >= 2, splitting the pairs in order into contiguous
            blocks of equal size (sizes differ by one when F does not divide P), as
            LFW's ``pairs.txt`` lists ten folds of 600 pairs; or a (P,) array of fold
            ids (any F >= 2 distinct values).
        similarity: scores are similarities, larger = more likely same.

    Returns:
        ``(mean, std, thresholds)``: accuracies in [0, 1] and the (F,) float64
        threshold of each fold, in the units of ``distances``.

    Example:
        >>> d = torch.tensor([0.1, 0.9, 0.2, 0.8, 0.3, 0.7, 0.4, 0.6], dtype=torch.float64)
        >>> same = torch.tensor([True, False] * 4)
        >>> mean, std, thresholds = verification_accuracy(d, same, folds=2)
        >>> mean, std, thresholds.tolist()
        (1.0, 0.0, [0.5, 0.5])
    """
    scores, labels = _pairs(distances, same, similarity)
    fold_ids, n_folds = _fold_ids(folds, len(scores))
    accuracies = torch.empty(n_folds, dtype=torch.float64)
    thresholds = torch.empty(n_folds, dtype=torch.float64)
    for fold in range(n_folds):
        test = fold_ids == fold  # (P,)
        thresholds[fold] = _best_threshold(scores[~test], labels[~test])
        predicted = scores[test] < thresholds[fold]
        accuracies[fold] = (predicted == labels[test]).double().mean()
    sign = -1.0 if similarity else 1.0
    return float(accuracies.mean()), float(accuracies.std()), sign * thresholds


def roc_auc(distances: ArrayLike, same: ArrayLike, *, similarity: bool = False) -> float:
    """Area under the ROC curve: the chance a same pair is closer than a different pair.

    ``AUC = P(d_same < d_diff) + P(d_same = d_diff) / 2``: scikit-learn's
    ``roc_auc_score(same, -distances)`` (``roc_auc_score(same, similarities)``),
    after the checks of this module. Nothing in the package calls it; it is for
    users reporting verification beyond LFW's accuracy (one number over all
    thresholds).

    Args:
        distances: (P,) distance of each pair (similarities with ``similarity=True``).
        same: (P,) bool; both values must occur.
        similarity: scores are similarities, larger = more likely same.

    Returns:
        AUC in [0, 1].

    Example:
        >>> roc_auc(torch.tensor([0.1, 0.5, 0.5, 0.9]), torch.tensor([True, True, False, False]))
        0.875
    """
    scores, labels = _pairs(distances, same, similarity)
    _counts(labels)
    return float(roc_auc_score(labels.numpy(), -scores.numpy()))


def tar_at_far(
    distances: ArrayLike, same: ArrayLike, far: float = 1e-3, *, similarity: bool = False
) -> float:
    """True accept rate at the largest threshold whose false accept rate is at most ``far``.

    With pairs accepted iff ``d ≤ t``, ``FAR(t) = |{diff: d ≤ t}| / |diff|`` and
    ``TAR(t) = |{same: d ≤ t}| / |same|``. Among thresholds at observed distances,
    the largest with ``FAR(t) ≤ far`` accepts exactly the pairs closer than the
    (m+1)-th smallest different-pair distance, m = ⌊far·|diff|⌋ (ties there are
    rejected: accepting them would exceed ``far``); ``far ≥ 1`` accepts everything.
    Read off scikit-learn's ``roc_curve``. Nothing in the package calls it; it is for
    face verification reported the way IJB-style benchmarks do (TAR at
    FAR = 10⁻³ or 10⁻⁴).

    Args:
        distances: (P,) distance of each pair (similarities with ``similarity=True``).
        same: (P,) bool; both values must occur.
        far: the false accept rate allowed, in [0, 1].
        similarity: scores are similarities, larger = more likely same.

    Returns:
        TAR in [0, 1].

    Example:
        >>> d = torch.tensor([0.1, 0.2, 0.35, 0.3, 0.4, 0.5], dtype=torch.float64)
        >>> same = torch.tensor([True, True, True, False, False, False])
        >>> tar_at_far(d, same, far=0.0), tar_at_far(d, same, far=0.34)
        (0.6666666666666666, 1.0)
    """
    far = _checks.finite_float("far", far, 0, 1, why="a false accept rate")
    scores, labels = _pairs(distances, same, similarity)
    _counts(labels)
    # one point per distinct distance t (accept iff d ≤ t); keep them all, since the
    # best point under ``far`` may lie inside a straight stretch of the curve
    false_accept, true_accept, _ = roc_curve(
        labels.numpy(), -scores.numpy(), drop_intermediate=False
    )
    return float(true_accept[false_accept <= far].max())


def _pairs(distances: ArrayLike, same: ArrayLike, similarity: bool) -> tuple[Tensor, Tensor]:
    """Checked (P,) float64 distances (negated similarities) and (P,) bool labels, on CPU."""
    scores = as_tensor(distances).detach().cpu()
    labels = as_tensor(same).detach().cpu()
    if scores.dim() != 1 or len(scores) == 0:
        raise ValueError(f"distances must have shape (P,) with P >= 1, got {tuple(scores.shape)}")
    if labels.shape != scores.shape:
        raise ValueError(f"same must have shape {tuple(scores.shape)}, got {tuple(labels.shape)}")
    if labels.dtype != torch.bool:
        raise ValueError(f"same must be a bool array, got {labels.dtype}")
    scores = scores.double()
    if not bool(torch.isfinite(scores).all()):
        raise ValueError("distances has NaN or infinite values")
    return (-scores if similarity else scores), labels


def _counts(labels: Tensor) -> tuple[int, int]:
    """(number of same pairs, number of different pairs); ``ValueError`` if either is 0."""
    positives = int(labels.sum())
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        raise ValueError(
            f"need both same and different pairs, got {positives} same and {negatives} different"
        )
    return positives, negatives


def _fold_ids(folds: int | ArrayLike, n: int) -> tuple[Tensor, int]:
    """(P,) fold ids in [0, F) and F, from a fold count or an explicit fold id array."""
    if isinstance(folds, int):
        if not 2 <= folds <= n:
            raise ValueError(f"folds must be in [2, P] = [2, {n}], got {folds}")
        return torch.arange(n) * folds // n, folds
    given = as_tensor(folds).detach().cpu()
    if given.shape != (n,) or given.is_floating_point():
        raise ValueError(
            f"fold ids must be ({n},) integers, got {tuple(given.shape)} {given.dtype}"
        )
    _, ids = torch.unique(given, return_inverse=True)
    n_folds = int(ids.max()) + 1
    if n_folds < 2:
        raise ValueError("fold ids must take at least two distinct values")
    return ids, n_folds


def _best_threshold(scores: Tensor, labels: Tensor) -> float:
    """The threshold t maximising accuracy of ``same iff d < t`` on these pairs.

    Candidates: −inf, the midpoints between consecutive distinct distances, +inf.
    """
    values = torch.unique(scores)  # (U,) sorted
    infinity = torch.tensor([math.inf], dtype=torch.float64)
    candidates = torch.cat([-infinity, (values[1:] + values[:-1]) / 2, infinity])  # (U + 1,)
    same_below = torch.searchsorted(scores[labels].sort().values, candidates)  # (U + 1,)
    negatives = scores[~labels].sort().values
    different_above = len(negatives) - torch.searchsorted(negatives, candidates)
    return float(candidates[(same_below + different_above).argmax()])
