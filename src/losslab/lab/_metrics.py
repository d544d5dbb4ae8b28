"""The lab's metrics: accuracy, balanced accuracy, macro-F1, AUROC, AP, per-class recall, shot groups, calibration.

The classification metrics are scikit-learn's; the calibration error and the shot groups are the lab's own.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

__all__ = ["evaluate", "expected_calibration_error", "ranking_metrics", "shot_groups"]

SCALAR_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "macro_auroc", "macro_average_precision",
                  "many_shot_accuracy", "medium_shot_accuracy", "few_shot_accuracy", "ece")


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, *, bins: int = 15) -> float:
    r"""Expected calibration error of top-1 predictions over equal-width confidence bins.

    .. math:: \mathrm{ECE} = \sum_b \frac{|B_b|}{N} \left| \operatorname{acc}(B_b) - \operatorname{conf}(B_b) \right|

    with bin b = ((b - 1) / bins, b / bins] (the first bin includes 0). Guo et al.,
    "On Calibration of Modern Neural Networks", ICML 2017, arXiv:1706.04599.

    Raises:
        ValueError: shapes that differ or are not 1-D, bins < 1, a confidence
            outside [0, 1] or NaN.

    Example:
        >>> expected_calibration_error(np.array([0.9, 0.9, 0.6, 0.6]), np.array([1, 1, 1, 0]))
        0.1
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    if confidence.shape != correct.shape or confidence.ndim != 1:
        raise ValueError(f"expected_calibration_error: confidence and correct must be 1-D of one shape; got "
                         f"{confidence.shape} and {correct.shape}")
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"expected_calibration_error: bins must be a positive integer; got {bins!r}")
    outside = ~((confidence >= 0) & (confidence <= 1))  # NaN is outside too
    if outside.any():
        raise ValueError(f"expected_calibration_error: confidence must be probabilities in [0, 1]; got "
                         f"{float(confidence[outside][0])!r} at index {int(np.nonzero(outside)[0][0])}")
    if len(confidence) == 0:
        return 0.0
    which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        member = which == b
        if member.any():
            total += member.sum() * abs(correct[member].mean() - confidence[member].mean())
    return round(float(total / len(confidence)), 12)


def shot_groups(train_counts: Sequence[int], thresholds: tuple[int, int] | None = None) -> dict[str, list[int]]:
    """Classes split into many-, medium- and few-shot groups by their training-set frequency.

    With ``thresholds=(many, few)`` a class is many-shot above ``many`` training
    examples, few-shot below ``few``, medium otherwise (ImageNet-LT uses
    (100, 20)). Without, the classes sorted by count (ties by index) are cut
    into thirds: round(C / 3) most frequent classes many-shot, as many least
    frequent few-shot, the rest medium (two classes: one many, one few; one
    class: many), which suits data sets of any size.

    Example:
        >>> shot_groups([124, 88, 63, 45, 32, 23, 16, 11, 8, 6])
        {'many': [0, 1, 2], 'medium': [3, 4, 5, 6], 'few': [7, 8, 9]}
    """
    counts = np.asarray(train_counts)
    if thresholds is not None:
        many, few = thresholds
        if many < few:
            raise ValueError(f"shot_groups: thresholds must be (many, few) with many >= few, so that the groups "
                             f"do not overlap; got {tuple(thresholds)!r}")
        return {"many": [int(c) for c in np.nonzero(counts > many)[0]],
                "medium": [int(c) for c in np.nonzero((counts <= many) & (counts >= few))[0]],
                "few": [int(c) for c in np.nonzero(counts < few)[0]]}
    order = sorted(range(len(counts)), key=lambda c: (-counts[c], c))
    if len(counts) < 2:
        return {"many": list(order), "medium": [], "few": []}
    third = max(1, round(len(counts) / 3))  # two classes: a head and a tail
    groups = {"many": order[:third], "medium": order[third:len(counts) - third], "few": order[len(counts) - third:]}
    return {k: sorted(int(c) for c in v) for k, v in groups.items()}


def evaluate(probabilities: np.ndarray, y_true: np.ndarray, *, groups: dict[str, list[int]] | None = None,
             bins: int = 15) -> dict:
    """Every metric of one run, from the predicted class scores (N, C) and the true classes (N,).

    The prediction is the argmax; ``probabilities`` are the model's own
    estimates (softmax, or per-class sigmoids for one-vs-rest losses) and feed
    the calibration error through the predicted class's value. Recall of a
    class with no test example is NaN and left out of the averages. The
    many/medium/few-shot accuracies are the accuracy over the test examples of
    each group's classes (NaN for an empty group).

    The classification metrics are scikit-learn's: ``balanced_accuracy_score``,
    ``f1_score`` (macro over the classes with a test example; a class never
    predicted has precision 0), ``recall_score`` per class, ``confusion_matrix``
    (rows: true class; it gives the shot-group accuracies), and the macro
    one-vs-rest AUROC and average precision of the scores
    (:func:`ranking_metrics`). The calibration error is
    :func:`expected_calibration_error`.

    Returns:
        A dict of floats (``accuracy``, ``balanced_accuracy``, ``macro_f1``,
        ``macro_auroc``, ``macro_average_precision``, ``*_shot_accuracy`` for
        each group, ``ece``), ``per_class_recall`` (C floats) and
        ``confusion_matrix`` (C lists of C counts).

    Raises:
        ValueError: shapes that do not match, y_true that are not class
            indices, probabilities outside [0, 1] or NaN (a NaN would be
            scored as a confident prediction of class 0).
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    y_true = np.asarray(y_true)
    if probabilities.ndim != 2 or probabilities.shape[1] < 1:
        raise ValueError(f"evaluate: probabilities must have shape (N, C); got {probabilities.shape}")
    if y_true.shape != probabilities.shape[:1]:
        raise ValueError(f"evaluate: y_true must have shape ({probabilities.shape[0]},), one class per row of "
                         f"probabilities; got {y_true.shape}")
    if len(y_true) and (not np.issubdtype(y_true.dtype, np.integer) or y_true.min() < 0
                        or y_true.max() >= probabilities.shape[1]):
        raise ValueError(f"evaluate: y_true must hold class indices in [0, {probabilities.shape[1]}); got dtype "
                         f"{y_true.dtype}, values {y_true.min()}..{y_true.max()}")
    outside = ~((probabilities >= 0) & (probabilities <= 1))  # NaN is outside too: argmax would call it class 0
    if outside.any():
        row, column = (int(i[0]) for i in np.nonzero(outside))
        raise ValueError(f"evaluate: probabilities must lie in [0, 1]; got {float(probabilities[row, column])!r} "
                         f"at row {row}, class {column}")
    y_true = y_true.astype(np.int64)
    labels = np.arange(probabilities.shape[1])
    pred = probabilities.argmax(axis=1)
    correct = pred == y_true
    present = np.bincount(y_true, minlength=len(labels)) > 0
    matrix, recall = _counts(y_true, pred, labels)
    metrics = {"accuracy": float(correct.mean()) if len(correct) else float("nan"),
               "balanced_accuracy": float("nan"), "macro_f1": float("nan")}
    if present.any():
        from sklearn.metrics import balanced_accuracy_score, f1_score

        with warnings.catch_warnings():  # a predicted class without a test example: left out, as documented
            warnings.simplefilter("ignore")
            metrics["balanced_accuracy"] = float(balanced_accuracy_score(y_true, pred))
            metrics["macro_f1"] = float(f1_score(y_true, pred, labels=labels[present], average="macro",
                                                 zero_division=0.0))
    metrics.update(ranking_metrics(probabilities, y_true))
    for name, members in (groups or {}).items():  # the accuracy over the test examples of the group's classes
        members = np.asarray(members, dtype=np.int64)
        total = matrix[members].sum()
        metrics[f"{name}_shot_accuracy"] = float(matrix[members, members].sum() / total) if total else float("nan")
    confidence = probabilities[np.arange(len(pred)), pred]
    metrics["ece"] = expected_calibration_error(confidence, correct, bins=bins)
    metrics["per_class_recall"] = [float(r) for r in recall]
    metrics["confusion_matrix"] = matrix.tolist()
    return metrics


def _counts(y_true: np.ndarray, pred: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's confusion matrix (rows: true class) and per-class recall, NaN for a class without examples."""
    if not len(y_true):  # scikit-learn refuses empty input
        return np.zeros((len(labels), len(labels)), dtype=np.int64), np.full(len(labels), np.nan)
    from sklearn.metrics import confusion_matrix, recall_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        recall = recall_score(y_true, pred, labels=labels, average=None, zero_division=np.nan)
    return confusion_matrix(y_true, pred, labels=labels).astype(np.int64), np.asarray(recall, dtype=np.float64)


def ranking_metrics(scores: np.ndarray, y_true: np.ndarray) -> dict[str, float]:
    """Macro one-vs-rest AUROC and average precision of class scores (N, C), over the classes in ``y_true``.

    Each class's scores rank its test examples against all others; the macro
    mean weighs every class alike, so the tail counts as much as the head.
    Softmax probabilities with every class present go through scikit-learn's
    ``roc_auc_score(y_true, scores, multi_class="ovr", average="macro")``.
    A class without a test example has no positive to rank, so no AUROC or
    average precision: the means are over the classes present (scikit-learn's
    one-vs-rest call would refuse), as balanced accuracy leaves such a class
    out; per-class sigmoids (which need not sum to 1) are ranked class by
    class the same way. Fewer than two classes present: NaN.

    Example:
        >>> ranking_metrics(np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.5, 0.5]]), np.array([0, 1, 1, 0]))
        {'macro_auroc': 0.75, 'macro_average_precision': 0.8333333333333333}
    """
    scores = np.asarray(scores, dtype=np.float64)
    y_true = np.asarray(y_true, dtype=np.int64)
    labels = np.arange(scores.shape[1])
    present = np.bincount(y_true, minlength=len(labels)) > 0
    if present.sum() < 2:
        return {"macro_auroc": float("nan"), "macro_average_precision": float("nan")}
    from sklearn.metrics import average_precision_score, roc_auc_score

    onehot = (y_true[:, None] == labels[None, :]).astype(np.int64)[:, present]
    if present.all() and len(labels) > 2 and np.allclose(scores.sum(axis=1), 1.0):
        auroc = roc_auc_score(y_true, scores, multi_class="ovr", average="macro", labels=labels)
    else:
        auroc = roc_auc_score(onehot, scores[:, present], average="macro")
    precision = average_precision_score(onehot, scores[:, present], average="macro")
    return {"macro_auroc": float(auroc), "macro_average_precision": float(precision)}
