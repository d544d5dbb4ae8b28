"""Samples and error cases of the cross-entropy family and the focal losses (losslab.classification, .focal)."""

from __future__ import annotations

import torch
from torch import Tensor

from . import common as S
from .cases import ErrorCase

_PROBS = {"from_logits": False}


def _gamma_error(fn: str, x: Tensor, t: Tensor) -> ErrorCase:
    return ErrorCase(x, t, {"gamma": -1.0}, ValueError, rf"{fn}: gamma must be a finite number in \[0, inf\); got -1.0")


SAMPLES = {
    "cross_entropy": lambda: (
        S.softmax_cases([{}, {"weight": S.per_class([0.2, 1.0, 3.0, 0.5])}, {"label_smoothing": 0.1},
                         {"weight": S.per_class([2.0, 0.3, 1.0, 0.7]), "label_smoothing": 0.25}], seed=10)
        + S.softmax_cases([_PROBS, {**_PROBS, "label_smoothing": 0.1}], seed=11, domain="probabilities")
    ),
    "nll_loss": lambda: S.softmax_cases([{}, {"weight": S.per_class([0.2, 1.0, 3.0, 0.5])}], seed=12,
                                        domain="log-probabilities"),
    "binary_cross_entropy": lambda: (
        S.sigmoid_cases([{}, {"pos_weight": S.per_class([2.0, 0.5, 1.0, 3.0])},
                         {"weight": S.per_class([0.3, 1.0, 2.0]), "label_smoothing": 0.1}], seed=20)
        + S.sigmoid_cases([_PROBS, {**_PROBS, "label_smoothing": 0.2}], seed=21, domain="probabilities")
    ),
    "balanced_cross_entropy": lambda: (
        S.sigmoid_cases([{"alpha": 0.25}, {"alpha": 0.8, "label_smoothing": 0.1}], seed=30)
        + S.softmax_cases([{"alpha": S.per_class([0.1, 0.5, 0.3, 0.1])},
                           {"alpha": S.per_class([1.0, 2.0, 0.5, 1.5]), "label_smoothing": 0.2}], seed=31)
        + S.softmax_cases([{"alpha": S.per_class([0.1, 0.5, 0.3, 0.1]), **_PROBS}], seed=32,
                          domain="probabilities", probability_targets=False)
    ),
    "sigmoid_focal_loss": lambda: (
        S.sigmoid_cases([{}, {"alpha": None, "gamma": 0.5}, {"alpha": 0.75, "gamma": 0.0},
                         {"alpha": -1.0, "gamma": 3.5}], seed=40)
        + S.sigmoid_cases([{**_PROBS, "gamma": 1.5}], seed=41, domain="probabilities")
    ),
    "softmax_focal_loss": lambda: (
        S.softmax_cases([{}, {"gamma": 0.5, "alpha": S.per_class([0.1, 0.6, 0.3, 0.2])},
                         {"gamma": 1.0, "alpha": 0.25, "label_smoothing": 0.1}, {"gamma": 4.5}], seed=50)
        + S.softmax_cases([{**_PROBS, "gamma": 2.0}], seed=51, domain="probabilities")
    ),
}

ERRORS = {
    "cross_entropy": lambda: S.softmax_errors("cross_entropy") + [
        ErrorCase(S.logits(S.generator(3), 4, 3), S.indices(S.generator(4), (4,), 3), {"weight": [1.0, 2.0]},
                  ValueError, r"cross_entropy: weight must have shape \(3,\).*got \(2,\)"),
        ErrorCase(S.logits(S.generator(3), 4, 3), S.indices(S.generator(4), (4,), 3), {"label_smoothing": 1.5},
                  ValueError, r"cross_entropy: label_smoothing must be a finite number in \[0, 1\]; got 1.5"),
        ErrorCase(S.logits(S.generator(3), 4, 3) + 2, S.indices(S.generator(4), (4,), 3), _PROBS,
                  ValueError, r"cross_entropy: input \(probabilities, from_logits=False\) must lie in \[0, 1\]"),
    ],
    "nll_loss": lambda: S.softmax_errors("nll_loss")[:4],
    "binary_cross_entropy": lambda: [
        ErrorCase(S.logits(S.generator(5), 4, 3), torch.full((4,), 5), {}, ValueError,
                  r"binary_cross_entropy: target class indices must be in \[0, 4\) \(index 3 is background\)"),
        ErrorCase(S.logits(S.generator(5), 4, 3), S.probabilities(S.generator(6), 4, 3), {"pos_weight": [1.0, 2.0]},
                  ValueError, r"binary_cross_entropy: pos_weight must broadcast to the input's shape \(4, 3\)"),
        ErrorCase(S.logits(S.generator(5), 4, 3), S.probabilities(S.generator(6), 4, 3) * 3, {}, ValueError,
                  r"binary_cross_entropy: target must lie in \[0, 1\]"),
        ErrorCase(S.logits(S.generator(5), 4, 3), S.probabilities(S.generator(6), 4, 2), {}, ValueError,
                  r"binary_cross_entropy: target must have the input's shape \(4, 3\).*got \(4, 2\)"),
    ],
    "balanced_cross_entropy": lambda: [
        ErrorCase(S.logits(S.generator(7), 4, 3), S.indices(S.generator(8), (4,), 3), {"alpha": 1.5}, ValueError,
                  r"balanced_cross_entropy: alpha must be a finite number in \[0, 1\]; got 1.5"),
        ErrorCase(S.logits(S.generator(7), 4, 3), S.indices(S.generator(8), (4,), 3), {"alpha": [0.5, 0.5]},
                  ValueError, r"balanced_cross_entropy: alpha must have shape \(3,\)"),
        ErrorCase(S.logits(S.generator(7), 4, 3), S.indices(S.generator(8), (4,), 3), {"alpha": [0.5, -1.0, 0.5]},
                  ValueError, r"balanced_cross_entropy: alpha must be finite and non-negative"),
        ErrorCase(S.logits(S.generator(7), 4, 3), S.indices(S.generator(8), (4,), 3), {"alpha": "inverse"},
                  TypeError, r"balanced_cross_entropy: alpha must be a float in \[0, 1\]"),
    ],
    "sigmoid_focal_loss": lambda: [
        _gamma_error("sigmoid_focal_loss", S.logits(S.generator(9), 4, 3), S.probabilities(S.generator(9), 4, 3)),
        ErrorCase(S.logits(S.generator(9), 4, 3), S.probabilities(S.generator(9), 4, 3), {"alpha": 1.5}, ValueError,
                  r"sigmoid_focal_loss: alpha must be a finite number in \[0, 1\]; got 1.5"),
        ErrorCase(S.logits(S.generator(9), 4, 3), S.probabilities(S.generator(9), 4, 3) + 1, {}, ValueError,
                  r"sigmoid_focal_loss: target must lie in \[0, 1\]"),
        ErrorCase(S.logits(S.generator(9), 4, 3), S.probabilities(S.generator(9), 4, 3), {"alpha": [0.1, 0.2, 0.3]},
                  TypeError, r"sigmoid_focal_loss: alpha must be a float in \[0, 1\], or None"),
        ErrorCase(S.logits(S.generator(9), 4, 3), S.probabilities(S.generator(9), 4, 3), {"gamma": "2"},
                  TypeError, r"sigmoid_focal_loss: gamma must be a real number"),
    ],
    "softmax_focal_loss": lambda: S.softmax_errors("softmax_focal_loss") + [
        _gamma_error("softmax_focal_loss", S.logits(S.generator(9), 4, 3), S.indices(S.generator(9), (4,), 3)),
        ErrorCase(S.logits(S.generator(9), 4, 3), S.indices(S.generator(9), (4,), 3), {"alpha": 2.0}, ValueError,
                  r"softmax_focal_loss: alpha must be a finite number in \[0, 1\]; got 2.0"),
        ErrorCase(S.logits(S.generator(9), 4, 3), S.indices(S.generator(9), (4,), 3), {"alpha": [0.5, 0.5]},
                  ValueError, r"softmax_focal_loss: alpha must have shape \(3,\)"),
        ErrorCase(S.logits(S.generator(9), 4, 3), S.indices(S.generator(9), (4,), 3), {"alpha": {"a": 1}},
                  TypeError, r"softmax_focal_loss: alpha must be None, a float in \[0, 1\] or per-class"),
    ],
}
