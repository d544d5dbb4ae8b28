"""Samples and error cases of the elementwise regression losses (losslab.regression)."""

from __future__ import annotations

import torch
from torch import Tensor

from . import common as S
from .cases import Case, ErrorCase


def _cases(variants: list[dict], seed: int) -> list[Case]:
    g = S.generator(seed)
    cases = []
    for variant in variants:
        for layout, shape in (("2d", (6, 4)), ("3d", (2, 3, 5))):
            x, t = S.logits(g, *shape, scale=2.0), S.logits(g, *shape, scale=2.0)
            kwargs = {k: (v(x) if callable(v) else v) for k, v in variant.items()}
            cases.append(Case(x, t, kwargs, f"{layout}[{S.tag(variant)}]", "values"))
    empty = S.logits(g, 0, 4)
    cases.append(Case(empty, empty.clone(), {}, "empty", "values", frozenset({"empty"})))
    return cases


def _last_dim_weight(x: Tensor) -> Tensor:
    return torch.linspace(0.0, 2.0, x.shape[-1], dtype=S.F64)


def _errors(fn: str, name: str) -> list[ErrorCase]:
    x, t = S.logits(S.generator(5), 4, 3), S.logits(S.generator(6), 4, 3)
    return [
        ErrorCase(x, t, {name: -1.0}, ValueError, rf"{fn}: {name} must be a finite number in "),
        ErrorCase(x, t[:, :2], {}, ValueError, rf"{fn}: target must have the input's shape \(4, 3\); got \(4, 2\)"),
        ErrorCase(x, t, {"weight": torch.ones(2)}, ValueError,
                  rf"{fn}: weight must broadcast to the input's shape \(4, 3\); got \(2,\)"),
        ErrorCase(x, t, {"weight": -torch.ones(3)}, ValueError, rf"{fn}: weight must be finite and non-negative"),
        ErrorCase(x, t, {"avg_factor": "n"}, TypeError, rf"{fn}: avg_factor must be None, a number >= 0"),
    ]


SAMPLES = {
    "smooth_l1_loss": lambda: _cases([{}, {"beta": 0.5, "weight": _last_dim_weight}, {"beta": 0.0},
                                      {"beta": 2.0, "avg_factor": 4.0}], seed=80),
    "huber_loss": lambda: _cases([{}, {"delta": 0.3, "weight": _last_dim_weight},
                                  {"delta": 2.5, "avg_factor": 12.0}], seed=81),
}

ERRORS = {
    "smooth_l1_loss": lambda: _errors("smooth_l1_loss", "beta"),
    "huber_loss": lambda: _errors("huber_loss", "delta"),
}
