"""Samples and error cases of the Lovász losses (losslab.lovasz)."""

from __future__ import annotations

import torch
from torch import Tensor

from . import common as S
from .cases import Case, ErrorCase


def softmax_cases(variants: list[dict], *, seed: int, domain: str = "logits") -> list[Case]:
    """Multiclass layouts (2-D images, a 3-D volume, 1-D signals, one pixel per image), each also with ignored
    pixels (ignore_index -100, or 1: a class index); an empty and an all-ignored batch."""
    g = S.generator(seed)

    def inputs(*shape: int) -> Tensor:
        return S.convert(S.logits(g, *shape), domain)

    layouts = [
        ("2d", inputs(2, 3, 4, 4), S.indices(g, (2, 4, 4), 3)),
        ("3d", inputs(1, 4, 2, 3, 3), S.indices(g, (1, 2, 3, 3), 4)),
        ("1d", inputs(3, 5, 6), S.indices(g, (3, 6), 5)),
        ("pixel", inputs(6, 3), S.indices(g, (6,), 3)),
    ]
    cases = []
    for variant in variants:
        for name, x, t in layouts:
            cases.append(Case(x, t, dict(variant), f"{name}[{S.tag(variant)}]", domain))
            ignore = 1 if name == "1d" else -100  # a class index as ignore_index: its pixels are no foreground
            marked = t.clone()
            marked[torch.rand(t.shape, generator=g) < 0.3] = ignore
            marked.view(-1)[0] = ignore
            cases.append(Case(x, marked, {**variant, "ignore_index": ignore}, f"{name}-ignored[{S.tag(variant)}]",
                              domain))
    cases.append(Case(inputs(0, 3, 4), torch.zeros(0, 4, dtype=torch.long), dict(variants[0]), "empty", domain,
                      frozenset({"empty"})))
    cases.append(Case(inputs(2, 3, 4), torch.full((2, 4), -100), {**variants[0], "ignore_index": -100},
                      "all-ignored", domain, frozenset({"all_ignored"})))
    return cases


def hinge_cases(variants: list[dict], *, seed: int) -> list[Case]:
    """Binary masks (N, 1, H, W), (N, P) and one element per image (N,), each also with ignored elements."""
    g = S.generator(seed)

    def mask(*shape: int) -> Tensor:
        return (torch.rand(*shape, generator=g) < 0.4).to(S.F64)

    layouts = [("nchw", S.logits(g, 3, 1, 4, 4), mask(3, 1, 4, 4)), ("flat", S.logits(g, 2, 9), mask(2, 9)),
               ("element", S.logits(g, 5), mask(5))]
    cases = []
    for variant in variants:
        for name, x, t in layouts:
            cases.append(Case(x, t, dict(variant), f"{name}[{S.tag(variant)}]"))
            marked = t.clone()
            marked[torch.rand(t.shape, generator=g) < 0.3] = 255
            marked.view(-1)[0] = 255
            cases.append(Case(x, marked, {**variant, "ignore_index": 255}, f"{name}-ignored[{S.tag(variant)}]"))
    cases.append(Case(S.logits(g, 0, 1, 4), torch.zeros(0, 1, 4, dtype=S.F64), dict(variants[0]), "empty",
                      tags=frozenset({"empty"})))
    cases.append(Case(S.logits(g, 2, 1, 4), torch.full((2, 1, 4), 255.0, dtype=S.F64),
                      {**variants[0], "ignore_index": 255}, "all-ignored", tags=frozenset({"all_ignored"})))
    return cases


def softmax_errors(fn: str) -> list[ErrorCase]:
    g = S.generator(9)
    x, labels = S.logits(g, 2, 3, 4), S.indices(g, (2, 4), 3)
    return [
        ErrorCase(x, labels.double(), {}, TypeError, rf"{fn}: target must hold integer class indices"),
        ErrorCase(x, labels.clone().fill_(3), {}, ValueError, rf"{fn}: target class indices must be in \[0, 3\)"),
        ErrorCase(x, labels[:, :3], {}, ValueError, rf"{fn}: target must have shape \(2, 4\) \(class indices"),
        ErrorCase(x, labels, {"classes": "some"}, ValueError, rf"{fn}: classes must be 'present', 'all' or"),
        ErrorCase(x, labels, {"classes": [0, 3]}, ValueError,
                  rf"{fn}: the input has 3 classes along dim 1 \(indices 0 to 2\), but classes names 3"),
        ErrorCase(x, labels, {"classes": [1, 1]}, ValueError, rf"{fn}: classes must not repeat a class"),
        ErrorCase(x, labels, {"classes": 2}, TypeError, rf"{fn}: classes must be 'present', 'all' or a non-empty"),
        ErrorCase(x, labels, {"per_image": 1}, TypeError, rf"{fn}: per_image must be a bool"),
        ErrorCase(torch.softmax(x, 1) * 2, labels, {"from_logits": False}, ValueError,
                  rf"{fn}: input \(probabilities, from_logits=False\) must lie in \[0, 1\]"),
    ]


def hinge_errors(fn: str) -> list[ErrorCase]:
    g = S.generator(10)
    x = S.logits(g, 2, 1, 4)
    masks = (torch.rand(2, 1, 4, generator=g) < 0.5).double()
    return [
        ErrorCase(x, masks[:, :, :3], {}, ValueError,
                  rf"{fn}: target must have the input's shape \(2, 1, 4\) or \(2, 4\); got \(2, 1, 3\)"),
        ErrorCase(x, masks * 0.5, {}, ValueError, rf"{fn}: target must hold 0 and 1 \(binary masks\); got 0.5"),
        ErrorCase(x, masks + 2, {"ignore_index": 2}, ValueError,
                  rf"{fn}: target must hold 0 and 1 \(binary masks\) or ignore_index=2; got 3.0"),
        ErrorCase(x, masks, {"per_image": "yes"}, TypeError, rf"{fn}: per_image must be a bool"),
    ]


_SOFTMAX_VARIANTS = [{}, {"per_image": True}, {"classes": "all"}, {"classes": [2, 0]},
                     {"per_image": True, "classes": "all"}]

SAMPLES = {
    "lovasz_softmax_loss": lambda: (softmax_cases(_SOFTMAX_VARIANTS, seed=130)
                                    + softmax_cases([{"from_logits": False}, {"from_logits": False, "per_image": True}],
                                                    seed=131, domain="probabilities")),
    "lovasz_hinge_loss": lambda: hinge_cases([{}, {"per_image": False}], seed=132),
}

ERRORS = {
    "lovasz_softmax_loss": lambda: softmax_errors("lovasz_softmax_loss"),
    "lovasz_hinge_loss": lambda: hinge_errors("lovasz_hinge_loss"),
}
