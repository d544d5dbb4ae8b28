"""Samples and error cases of the long-tail losses of the softmax family (losslab.longtail)."""

from __future__ import annotations

from dataclasses import replace

from . import common as S
from .cases import ErrorCase

_COUNTS = S.per_class([500.0, 120.0, 30.0, 6.0])
_WITH_ZERO = S.per_class([40.0, 0.0, 7.0, 300.0])  # a zero count counts as 1


def _errors(fn: str) -> list[ErrorCase]:
    """The softmax target errors, with counts; then the counts' own errors."""
    counts = {"class_counts": [5.0, 3.0, 1.0]}
    x, t = S.logits(S.generator(1), 4, 3), S.indices(S.generator(2), (4,), 3)
    return [replace(e, kwargs={**counts, **e.kwargs}) for e in S.softmax_errors(fn)
            if fn != "ldam_loss" or "lie in" not in e.match] + [
        ErrorCase(x, t, {"class_counts": [5.0, 3.0]}, ValueError,
                  rf"{fn}: class_counts must have shape \(3,\), one value per class of the input; got \(2,\)"),
        ErrorCase(x, t, {"class_counts": [5.0, -3.0, 1.0]}, ValueError,
                  rf"{fn}: class_counts must be finite and non-negative; got \[5.0, -3.0, 1.0\]"),
        ErrorCase(x, t, {"class_counts": None}, TypeError,
                  rf"{fn}: class_counts must be a tensor, an array or a sequence of C counts"),
        ErrorCase(x, t, {"class_counts": 3}, TypeError,
                  rf"{fn}: class_counts must be a tensor, an array or a sequence of C counts"),
    ]


SAMPLES = {
    "logit_adjusted_cross_entropy": lambda: S.softmax_cases(
        [{"class_counts": _COUNTS}, {"class_counts": _WITH_ZERO, "tau": 0.5, "weight": S.per_class([0.2, 1.0, 3.0])},
         {"class_counts": _COUNTS, "tau": 2.0, "label_smoothing": 0.1}], seed=1500),
    "ldam_loss": lambda: S.softmax_cases(
        [{"class_counts": _COUNTS, "scale": 2.0}, {"class_counts": _WITH_ZERO, "max_margin": 1.0, "scale": 1.5,
                                                   "weight": S.per_class([0.2, 1.0, 3.0])},
         {"class_counts": _COUNTS, "max_margin": 0.3, "scale": 3.0, "label_smoothing": 0.2}],
        seed=1510, probability_targets=False),
    "vs_loss": lambda: S.softmax_cases(
        [{"class_counts": _COUNTS}, {"class_counts": _WITH_ZERO, "gamma": 0.5, "tau": 0.0,
                                     "weight": S.per_class([0.2, 1.0, 3.0])},
         {"class_counts": _COUNTS, "gamma": 0.3, "tau": 1.5, "label_smoothing": 0.1}], seed=1520),
}

ERRORS = {
    "logit_adjusted_cross_entropy": lambda: _errors("logit_adjusted_cross_entropy") + [
        ErrorCase(S.logits(S.generator(3), 4, 3), S.indices(S.generator(4), (4,), 3),
                  {"class_counts": [5.0, 3.0, 1.0], "tau": -1.0}, ValueError,
                  r"logit_adjusted_cross_entropy: tau must be a finite number in \[0, inf\); got -1.0"),
    ],
    "ldam_loss": lambda: _errors("ldam_loss") + [
        ErrorCase(S.logits(S.generator(3), 4, 3), S.indices(S.generator(4), (4,), 3),
                  {"class_counts": [5.0, 3.0, 1.0], "scale": 0.0}, ValueError,
                  r"ldam_loss: scale must be a finite number in \(0, inf\); got 0.0"),
        ErrorCase(S.logits(S.generator(3), 4, 3), S.indices(S.generator(4), (4,), 3),
                  {"class_counts": [5.0, 3.0, 1.0], "max_margin": -0.5}, ValueError,
                  r"ldam_loss: max_margin must be a finite number in \[0, inf\); got -0.5"),
        ErrorCase(S.logits(S.generator(3), 4, 3), S.logits(S.generator(4), 4, 3).softmax(1),
                  {"class_counts": [5.0, 3.0, 1.0]}, ValueError,
                  r"ldam_loss: target must hold class indices of shape \(4,\).*got probabilities of shape \(4, 3\)"),
    ],
    "vs_loss": lambda: _errors("vs_loss") + [
        ErrorCase(S.logits(S.generator(3), 4, 3), S.indices(S.generator(4), (4,), 3),
                  {"class_counts": [5.0, 3.0, 1.0], "gamma": -0.1}, ValueError,
                  r"vs_loss: gamma must be a finite number in \[0, inf\); got -0.1"),
    ],
}
