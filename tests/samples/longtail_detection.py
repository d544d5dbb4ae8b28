"""Samples and error cases of the long-tail losses with running statistics: seesaw_loss and eqlv2_loss."""

from __future__ import annotations

import torch
from torch import Tensor

from . import common as S
from .cases import Case, ErrorCase

_COUNTS = [500.0, 0.0, 40.0, 3.0, 1200.0]  # with a zero count (counts as 1)


def _counts(x: Tensor) -> Tensor:
    return torch.tensor([_COUNTS[i % len(_COUNTS)] for i in range(x.shape[1])], dtype=S.F64)


def _seesaw_cases() -> list[Case]:
    g = S.generator(80)
    variants = [{}, {"p": 0.0, "q": 1.5, "eps": 0.1}, {"q": 0.0, "weight": S.per_class([0.5, 2.0, 1.0, 3.0])},
                {"p": 1.2, "q": 3.0, "ignore_index": -1}]
    layouts = [("2d", S.logits(g, 9, 5), (9,)), ("3d", S.logits(g, 3, 4, 5), (3, 5)),
               ("4d", S.logits(g, 2, 3, 2, 3), (2, 2, 3))]
    cases = []
    for variant in variants:
        for name, x, shape in layouts:
            kwargs = {"class_counts": _counts(x), **S.resolve(variant, x)}
            ignore = kwargs.get("ignore_index", -100)
            t = S.indices(g, shape, x.shape[1], ignore_index=ignore, ignored=0.3 if "ignore_index" in variant else 0)
            cases.append(Case(x, t, kwargs, f"{name}[{S.tag(variant)}]"))
    x = S.logits(g, 6, 4)
    cases.append(Case(x, torch.tensor([0, 1, 2, 3, 0, 1]), {"class_counts": [10, 10, 10, 10]}, "2d[list counts]"))
    cases.append(Case(S.logits(g, 0, 4), torch.zeros(0, dtype=torch.long), {"class_counts": _counts(x)}, "empty",
                      tags=frozenset({"empty"})))
    cases.append(Case(S.logits(g, 5, 4), torch.full((5,), -100), {"class_counts": _counts(x)}, "all-ignored",
                      tags=frozenset({"all_ignored"})))
    return cases


def _ratios(c: int, seed: int) -> Tensor:
    """Ratios around mu = 0.8 (weights in between), one of 100 (no statistics) and one of 0."""
    r = torch.rand(c, generator=S.generator(seed), dtype=S.F64) * 1.6
    r[0] = 100.0
    if c > 2:
        r[1] = 0.0
    return r


def _eqlv2_cases() -> list[Case]:
    g = S.generator(81)
    cases = []
    for variant in ({}, {"gamma": 4.0, "mu": 0.5, "alpha": 2.0}, {"gamma": 0.0, "alpha": 0.0}):
        for n, c in ((8, 4), (5, 1), (12, 6)):
            x = S.logits(g, n, c + 1)
            t = S.indices(g, (n,), c + 1)
            cases.append(Case(x, t, {"pos_neg": _ratios(c, n), **variant}, f"{n}x{c}+1[{S.tag(variant)}]"))
    cases.append(Case(S.logits(g, 4, 4), torch.tensor([3, 3, 3, 3]), {"pos_neg": [0.1, 0.5, 2.0]}, "background"))
    cases.append(Case(S.logits(g, 0, 4), torch.zeros(0, dtype=torch.long), {"pos_neg": _ratios(3, 1)}, "empty",
                      tags=frozenset({"empty"})))
    return cases


def _x(n: int = 4, c: int = 3) -> Tensor:
    return S.logits(S.generator(5), n, c)


SAMPLES = {"seesaw_loss": _seesaw_cases, "eqlv2_loss": _eqlv2_cases}

_T = torch.tensor([0, 1, 2, 1])
ERRORS = {
    "seesaw_loss": lambda: [
        ErrorCase(_x(), _T, {"class_counts": [1.0, 2.0]}, ValueError,
                  r"^seesaw_loss: class_counts must have shape \(3,\), one value per class of the input; got \(2,\)"),
        ErrorCase(_x(), _T, {"class_counts": [1.0, -2.0, 3.0]}, ValueError,
                  r"^seesaw_loss: class_counts must be finite and non-negative; got \[1.0, -2.0, 3.0\]"),
        ErrorCase(_x(), _T, {"class_counts": ["a", "b", "c"]}, TypeError, r"^seesaw_loss: class_counts must be"),
        ErrorCase(_x(), _T, {"class_counts": [1, 2, 3], "p": -0.5}, ValueError,
                  r"^seesaw_loss: p must be a finite number in \[0, inf\); got -0.5"),
        ErrorCase(_x(), _T, {"class_counts": [1, 2, 3], "q": "2"}, TypeError,
                  r"^seesaw_loss: q must be a real number"),
        ErrorCase(_x(), _T, {"class_counts": [1, 2, 3], "eps": 0.0}, ValueError,
                  r"^seesaw_loss: eps must be a finite number in \(0, 1\]; got 0.0"),
        ErrorCase(_x(), torch.softmax(_x(), 1), {"class_counts": [1, 2, 3]}, TypeError,
                  r"^seesaw_loss: target must hold class indices .*got class probabilities"),
        ErrorCase(_x(), _T + 1, {"class_counts": [1, 2, 3]}, ValueError,
                  r"^seesaw_loss: target class indices must be in \[0, 3\)"),
    ],
    "eqlv2_loss": lambda: [
        ErrorCase(_x(), _T, {"pos_neg": [1.0]}, ValueError,
                  r"^eqlv2_loss: pos_neg must have shape \(2,\), one value per class of the input; got \(1,\)"),
        ErrorCase(_x(), _T, {"pos_neg": [1.0, -1.0]}, ValueError,
                  r"^eqlv2_loss: pos_neg must be finite and non-negative"),
        ErrorCase(_x(), _T + 1, {"pos_neg": [1.0, 1.0]}, ValueError,
                  r"^eqlv2_loss: target class indices must be in \[0, 3\) \(index 2 is background\); got 3"),
        ErrorCase(_x(), _T.double(), {"pos_neg": [1.0, 1.0]}, TypeError,
                  r"^eqlv2_loss: target must hold class indices \(an integer tensor\); got dtype torch.float64"),
        ErrorCase(_x(4, 1), _T, {"pos_neg": []}, ValueError,
                  r"^eqlv2_loss: input must have shape \(N, C \+ 1\), C >= 1 classes and the background column"),
        ErrorCase(S.logits(S.generator(5), 2, 3, 4), torch.zeros(2, 4, dtype=torch.long), {"pos_neg": [1.0, 1.0]},
                  ValueError, r"^eqlv2_loss: input must have shape \(N, C \+ 1\)"),
        ErrorCase(_x(), _T, {"pos_neg": [1.0, 1.0], "gamma": -1.0}, ValueError,
                  r"^eqlv2_loss: gamma must be a finite number in \[0, inf\)"),
        ErrorCase(_x(), _T, {"pos_neg": [1.0, 1.0], "mu": "0.8"}, TypeError, r"^eqlv2_loss: mu must be a real number"),
        ErrorCase(_x(), _T, {"pos_neg": [1.0, 1.0], "alpha": -4.0}, ValueError,
                  r"^eqlv2_loss: alpha must be a finite number in \[0, inf\)"),
    ],
}
