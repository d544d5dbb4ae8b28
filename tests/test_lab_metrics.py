"""The lab's metrics against float64 NumPy references written from their definitions (not from scikit-learn).

AUROC is the Mann-Whitney probability that a positive outranks a negative (ties count one half); average
precision is the step-wise sum over thresholds of (R_k - R_{k-1}) P_k, scikit-learn's definition.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("sklearn")

from losslab.lab._metrics import SCALAR_METRICS, evaluate, ranking_metrics


def _case(seed: int, n: int = 90, num_classes: int = 5, *, absent: tuple[int, ...] = (), sigmoid: bool = False):
    rng = np.random.default_rng(seed)
    present = [c for c in range(num_classes) if c not in absent]
    y = np.concatenate([present, rng.choice(present, n - len(present))])
    rng.shuffle(y)
    logits = rng.normal(size=(n, num_classes)) * 2
    logits[np.arange(n), y] += rng.uniform(0, 3, n)
    logits = np.round(logits, 1)  # ties in the scores, which the references must break as the definitions say
    if sigmoid:
        return 1 / (1 + np.exp(-logits)), y
    return np.exp(logits) / np.exp(logits).sum(1, keepdims=True), y


def _auroc(positive: np.ndarray, scores: np.ndarray) -> float:
    pos, neg = scores[positive], scores[~positive]
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def _average_precision(positive: np.ndarray, scores: np.ndarray) -> float:
    total, previous_recall = 0.0, 0.0
    for threshold in np.unique(scores)[::-1]:
        chosen = scores >= threshold
        recall = (chosen & positive).sum() / positive.sum()
        total += (recall - previous_recall) * (chosen & positive).sum() / chosen.sum()
        previous_recall = recall
    return float(total)


def _reference(scores: np.ndarray, y: np.ndarray, groups: dict[str, list[int]]) -> dict:
    num_classes = scores.shape[1]
    pred = scores.argmax(1)
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (y, pred), 1)
    support, predicted, hits = matrix.sum(1), matrix.sum(0), np.diag(matrix)
    present = support > 0
    recall = np.full(num_classes, np.nan)
    recall[present] = hits[present] / support[present]
    precision = np.divide(hits, predicted, out=np.zeros(num_classes), where=predicted > 0)
    f1 = np.divide(2 * precision * np.nan_to_num(recall), precision + np.nan_to_num(recall),
                   out=np.zeros(num_classes), where=precision + np.nan_to_num(recall) > 0)
    out = {"accuracy": float((pred == y).mean()), "balanced_accuracy": float(np.mean(recall[present])),
           "macro_f1": float(f1[present].mean()), "per_class_recall": recall, "confusion_matrix": matrix,
           "macro_auroc": float(np.mean([_auroc(y == c, scores[:, c]) for c in np.flatnonzero(present)])),
           "macro_average_precision": float(np.mean([_average_precision(y == c, scores[:, c])
                                                     for c in np.flatnonzero(present)]))}
    for name, members in groups.items():
        mask = np.isin(y, members)
        out[f"{name}_shot_accuracy"] = float((pred == y)[mask].mean()) if mask.any() else float("nan")
    return out


GROUPS = {"many": [0, 1], "medium": [2], "few": [3, 4]}


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("absent, sigmoid", [((), False), ((), True), ((2,), False), ((1, 4), True)],
                         ids=["softmax", "sigmoid", "absent-class", "absent-classes-sigmoid"])
def test_evaluate_matches_the_numpy_reference(seed, absent, sigmoid):
    scores, y = _case(seed, absent=absent, sigmoid=sigmoid)
    got = evaluate(scores, y, groups=GROUPS)
    want = _reference(scores, y, GROUPS)
    for key in [k for k in SCALAR_METRICS if k != "ece"]:
        assert got[key] == pytest.approx(want[key], abs=1e-12, nan_ok=True), key
    np.testing.assert_allclose(got["per_class_recall"], want["per_class_recall"], atol=1e-12)
    assert got["confusion_matrix"] == want["confusion_matrix"].tolist()


def test_auroc_goes_through_the_one_vs_rest_call_and_agrees_with_class_by_class():
    from sklearn.metrics import roc_auc_score

    scores, y = _case(7, num_classes=6)
    got = ranking_metrics(scores, y)["macro_auroc"]
    assert got == pytest.approx(roc_auc_score(y, scores, multi_class="ovr", average="macro"), abs=1e-15)
    assert got == pytest.approx(np.mean([_auroc(y == c, scores[:, c]) for c in range(6)]), abs=1e-12)


def test_a_class_absent_from_the_test_set_is_left_out_not_an_error():
    # scikit-learn's one-vs-rest AUROC refuses a class without positives; the lab averages over the others
    scores, y = _case(3, num_classes=4, absent=(3,))
    scores[:5, 3] = 0.99  # predicted, though no test example has it
    got = ranking_metrics(scores / scores.sum(1, keepdims=True), y)
    assert math.isfinite(got["macro_auroc"]) and math.isfinite(got["macro_average_precision"])
    assert math.isnan(evaluate(scores / scores.sum(1, keepdims=True), y)["per_class_recall"][3])


def test_one_class_present_gives_nan():
    metrics = ranking_metrics(np.array([[0.9, 0.1], [0.6, 0.4]]), np.array([0, 0]))
    assert math.isnan(metrics["macro_auroc"]) and math.isnan(metrics["macro_average_precision"])


def test_two_classes():
    scores, y = _case(2, num_classes=2)
    got = ranking_metrics(scores, y)
    # both columns ranked, as for more classes (a tie in one column may not be one in the other after rounding)
    assert got["macro_auroc"] == pytest.approx(np.mean([_auroc(y == c, scores[:, c]) for c in (0, 1)]), abs=1e-12)
