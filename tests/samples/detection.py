"""Samples and error cases of the dense detectors' quality losses (losslab.detection)."""

from __future__ import annotations

import torch
from torch import Tensor

from . import common as S
from .cases import Case, ErrorCase


def quality_cases(variants: list[dict], *, seed: int, ignore: bool) -> list[Case]:
    """Dense and (labels, scores) targets, 2-D to 4-D; with ``ignore``, each also with ignore_index=-1."""
    g = S.generator(seed)

    def dense(*shape: int) -> Tensor:
        q = torch.rand(*shape, generator=g, dtype=S.F64)
        return torch.where(torch.rand(*shape, generator=g) < 0.5, q, torch.zeros_like(q))

    def pair(shape: tuple[int, ...], classes: int) -> tuple[Tensor, Tensor]:
        return S.indices(g, shape, classes + 1), torch.rand(shape, generator=g, dtype=S.F64)

    layouts = [("2d-dense", S.logits(g, 6, 4), dense(6, 4)), ("3d-dense", S.logits(g, 2, 3, 4), dense(2, 3, 4)),
               ("2d-pair", S.logits(g, 7, 3), pair((7,), 3)), ("4d-pair", S.logits(g, 2, 3, 2, 3), pair((2, 2, 3), 3))]
    cases = []
    for variant in variants:
        for name, x, t in layouts:
            kwargs = S.resolve(variant, x)
            cases.append(Case(x, t, kwargs, f"{name}[{S.tag(variant)}]"))
            if ignore:
                labels = t[0] if isinstance(t, tuple) else t
                drop = torch.rand(labels.shape, generator=g) < 0.3
                marked = torch.where(drop, torch.full_like(labels, -1), labels)
                cases.append(Case(x, (marked, t[1]) if isinstance(t, tuple) else marked,
                                  {**kwargs, "ignore_index": -1}, f"{name}-ignored[{S.tag(variant)}]"))
    cases.append(Case(S.logits(g, 0, 3), torch.zeros(0, 3, dtype=S.F64), S.resolve(variants[0], S.logits(g, 0, 3)),
                      "empty", tags=frozenset({"empty"})))
    if ignore:
        cases.append(Case(S.logits(g, 4, 3), (torch.full((4,), -1), torch.rand(4, generator=g, dtype=S.F64)),
                          {**S.resolve(variants[0], S.logits(g, 4, 3)), "ignore_index": -1}, "all-ignored",
                          tags=frozenset({"all_ignored"})))
    return cases


def _dfl_cases() -> list[Case]:
    g = S.generator(70)

    def target(shape: tuple[int, ...], n: int) -> Tensor:
        y = torch.rand(shape, generator=g, dtype=S.F64) * (n - 1)
        y.view(-1)[:2] = torch.tensor([float(n - 1), 1.0], dtype=S.F64)  # the last bin exactly, and an integer
        return y

    cases = []
    for variant in ({}, {"weight": torch.rand(8, generator=g, dtype=S.F64)}, {"avg_factor": 3.0}):
        cases.append(Case(S.logits(g, 8, 5), target((8,), 5), variant, f"2d[{S.tag(variant)}]"))
        cases.append(Case(S.logits(g, 2, 4, 8), target((2, 4), 8), {k: v[:4] if k == "weight" else v
                                                                     for k, v in variant.items()},
                          f"3d[{S.tag(variant)}]"))
    cases.append(Case(S.logits(g, 0, 5), torch.zeros(0, dtype=S.F64), {}, "empty", tags=frozenset({"empty"})))
    return cases


def _xq() -> tuple[Tensor, Tensor]:
    """A (4, 3) input and its dense quality target."""
    return S.logits(S.generator(9), 4, 3), torch.rand(4, 3, generator=S.generator(9), dtype=S.F64)


def _pair_errors(fn: str) -> list[ErrorCase]:
    x, q = _xq()
    labels, scores = torch.tensor([0, 1, 3, 2]), torch.rand(4, generator=S.generator(3), dtype=S.F64)
    return [
        ErrorCase(x, (labels.double(), scores), {}, TypeError, rf"{fn}: target labels must be integer class indices"),
        ErrorCase(x, (labels, scores[:3]), {}, ValueError, rf"{fn}: target scores must have shape \(4,\)"),
        ErrorCase(x, (labels, scores + 1), {}, ValueError, rf"{fn}: target scores must lie in \[0, 1\]"),
        ErrorCase(x, (labels + 1, scores), {}, ValueError, rf"{fn}: target class indices must be in \[0, 4\)"),
        ErrorCase(x, (labels, scores, scores), {}, ValueError, rf"{fn}: a pair target must be \(labels, scores\)"),
        ErrorCase(x, q, {"avg_factor": -1.0}, ValueError, rf"{fn}: avg_factor must be a finite number in \[0, inf\)"),
    ]


SAMPLES = {
    "quality_focal_loss": lambda: quality_cases([{}, {"beta": 0.5, "weight": S.per_class([0.5, 2.0, 1.0, 1.5])},
                                                 {"beta": 0.0, "avg_factor": 3.5}], seed=60, ignore=True),
    "varifocal_loss": lambda: quality_cases(
        [{}, {"alpha": 0.25, "gamma": 0.5, "iou_weighted": False},
         {"gamma": 0.0, "weight": S.per_class([1.0, 0.5, 2.0, 1.0]), "avg_factor": 0.0}], seed=61, ignore=False),
    "distribution_focal_loss": _dfl_cases,
}

ERRORS = {
    "quality_focal_loss": lambda: _pair_errors("quality_focal_loss") + [
        ErrorCase(*_xq(), {"beta": -1.0}, ValueError,
                  r"quality_focal_loss: beta must be a finite number in \[0, inf\)"),
    ],
    "varifocal_loss": lambda: _pair_errors("varifocal_loss") + [
        ErrorCase(*_xq(), {"alpha": -0.5}, ValueError, r"varifocal_loss: alpha must be a finite number in \[0, inf\)"),
        ErrorCase(*_xq(), {"iou_weighted": 1}, TypeError, r"varifocal_loss: iou_weighted must be a bool"),
    ],
    "distribution_focal_loss": lambda: [
        ErrorCase(S.logits(S.generator(4), 3, 5), torch.tensor([0.5, 4.5, 1.0], dtype=S.F64), {}, ValueError,
                  r"distribution_focal_loss: target must lie in \[0, 4\] \(n_bins - 1\); got 4.5"),
        ErrorCase(S.logits(S.generator(4), 3, 5), torch.tensor([0.5, -0.1, 1.0], dtype=S.F64), {}, ValueError,
                  r"distribution_focal_loss: target must lie in \[0, 4\] \(n_bins - 1\); got -0.1"),
        ErrorCase(S.logits(S.generator(4), 3, 1), torch.zeros(3, dtype=S.F64), {}, ValueError,
                  r"distribution_focal_loss: input must have at least 2 bins in its last dimension; "
                  r"got shape \(3, 1\)"),
        ErrorCase(S.logits(S.generator(4), 3, 5), torch.zeros(3, 5, dtype=S.F64), {}, ValueError,
                  r"distribution_focal_loss: target must have shape \(3,\) \(the input's shape without its last"),
        ErrorCase(S.logits(S.generator(4), 3, 5), torch.zeros(3, dtype=S.F64), {"weight": torch.ones(4)}, ValueError,
                  r"distribution_focal_loss: weight must broadcast to the target's shape \(3,\); got \(4,\)"),
    ],
}
