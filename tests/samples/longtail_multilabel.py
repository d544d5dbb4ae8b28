"""Samples and error cases of the asymmetric loss and the Poly-1 losses (losslab.asymmetric, losslab.poly)."""

from __future__ import annotations

from . import common as S
from .cases import ErrorCase


def _x(seed: int = 3):
    return S.logits(S.generator(seed), 4, 3)


def _dense(seed: int = 4):
    return S.probabilities(S.generator(seed), 4, 3)


def _index(seed: int = 4):
    return S.indices(S.generator(seed), (4,), 3)


SAMPLES = {
    "asymmetric_loss": lambda: S.sigmoid_cases(
        [{}, {"gamma_pos": 1.0, "gamma_neg": 4.0, "clip": 0.05}, {"gamma_pos": 0.5, "gamma_neg": 0.5, "clip": 0.0},
         {"gamma_pos": 0.0, "gamma_neg": 2.0, "clip": 0.2, "weight": S.per_class([0.3, 1.0, 2.0])}], seed=60),
    "poly_cross_entropy": lambda: S.softmax_cases(
        [{}, {"epsilon": -1.0, "weight": S.per_class([0.2, 1.0, 3.0, 0.5])}, {"epsilon": 1.0, "label_smoothing": 0.1},
         {"epsilon": 2.0, "weight": S.per_class([2.0, 0.3, 1.0, 0.7]), "label_smoothing": 0.25}], seed=61),
    "poly_softmax_focal_loss": lambda: S.softmax_cases(
        [{}, {"epsilon": 2.0, "gamma": 0.5, "alpha": S.per_class([0.1, 0.6, 0.3, 0.2])},
         {"epsilon": -1.0, "gamma": 1.0, "alpha": 0.25, "label_smoothing": 0.1}, {"epsilon": 0.5, "gamma": 4.5}],
        seed=62),
    "poly_sigmoid_focal_loss": lambda: S.sigmoid_cases(
        [{}, {"epsilon": 2.0, "gamma": 0.5, "alpha": 0.25}, {"epsilon": -1.0, "gamma": 0.0, "alpha": 0.75},
         {"epsilon": 1.0, "gamma": 3.5, "weight": S.per_class([0.3, 1.0, 2.0])}], seed=63),
}

ERRORS = {
    "asymmetric_loss": lambda: [
        ErrorCase(_x(), _dense(), {"gamma_neg": -1.0}, ValueError,
                  r"asymmetric_loss: gamma_neg must be a finite number in \[0, inf\); got -1.0"),
        ErrorCase(_x(), _dense(), {"gamma_pos": "1"}, TypeError, r"asymmetric_loss: gamma_pos must be a real number"),
        ErrorCase(_x(), _dense(), {"clip": 1.5}, ValueError,
                  r"asymmetric_loss: clip must be a finite number in \[0, 1\]; got 1.5"),
        ErrorCase(_x(), _dense() + 1, {}, ValueError, r"asymmetric_loss: target must lie in \[0, 1\]"),
        ErrorCase(_x(), _dense(), {"weight": [1.0, 2.0]}, ValueError,
                  r"asymmetric_loss: weight must broadcast to the input's shape \(4, 3\)"),
    ],
    "poly_cross_entropy": lambda: S.softmax_errors("poly_cross_entropy") + [
        ErrorCase(_x(), _index(), {"epsilon": float("inf")}, ValueError,
                  r"poly_cross_entropy: epsilon must be a finite number in \(-inf, inf\); got inf"),
        ErrorCase(_x(), _index(), {"epsilon": None}, TypeError, r"poly_cross_entropy: epsilon must be a real number"),
        ErrorCase(_x(), _index(), {"weight": [1.0, 2.0]}, ValueError,
                  r"poly_cross_entropy: weight must have shape \(3,\).*got \(2,\)"),
    ],
    "poly_softmax_focal_loss": lambda: S.softmax_errors("poly_softmax_focal_loss") + [
        ErrorCase(_x(), _index(), {"gamma": -1.0}, ValueError,
                  r"poly_softmax_focal_loss: gamma must be a finite number in \[0, inf\); got -1.0"),
        ErrorCase(_x(), _index(), {"alpha": [0.5, 0.5]}, ValueError,
                  r"poly_softmax_focal_loss: alpha must have shape \(3,\)"),
        ErrorCase(_x(), _index(), {"epsilon": "2"}, TypeError,
                  r"poly_softmax_focal_loss: epsilon must be a real number"),
    ],
    "poly_sigmoid_focal_loss": lambda: [
        ErrorCase(_x(), _dense(), {"alpha": 1.5}, ValueError,
                  r"poly_sigmoid_focal_loss: alpha must be a finite number in \[0, 1\]; got 1.5"),
        ErrorCase(_x(), _dense(), {"alpha": [0.1, 0.2, 0.3]}, TypeError,
                  r"poly_sigmoid_focal_loss: alpha must be a float in \[0, 1\], or None"),
        ErrorCase(_x(), _dense(), {"epsilon": float("nan")}, ValueError,
                  r"poly_sigmoid_focal_loss: epsilon must be a finite number"),
        ErrorCase(_x(), _dense() * 3, {}, ValueError, r"poly_sigmoid_focal_loss: target must lie in \[0, 1\]"),
    ],
}
