"""Samples and error cases of the overlap losses and the Dice pairs (losslab.segmentation, .combined)."""

from __future__ import annotations

import torch
from torch import Tensor

from . import common as S
from .cases import Case, ErrorCase


def segmentation_cases(variants: list[dict], *, seed: int, domain: str = "logits") -> list[Case]:
    """Binary (with and without the channel dim), multiclass (2-D images, a 3-D volume), multilabel; ignore_index."""
    g = S.generator(seed)

    def inputs(*shape: int) -> Tensor:
        x = S.logits(g, *shape)
        if domain != "probabilities":
            return x
        return torch.sigmoid(x) * 0.96 + 0.02 if shape[1] in (1, 5) else S.convert(x, "probabilities")

    def mask(*shape: int, soft: bool = False) -> Tensor:
        values = torch.rand(*shape, generator=g, dtype=S.F64)
        return values if soft else (values < 0.4).double()

    layouts = [
        ("binary", inputs(2, 1, 4, 4), mask(2, 1, 4, 4)),
        ("binary-nchw-free", inputs(3, 5), mask(3, 5, soft=True)),  # (N, *) without the channel dim
        ("multiclass", inputs(2, 3, 4, 4), S.indices(g, (2, 4, 4), 3)),
        ("multiclass-3d", inputs(1, 4, 2, 3, 3), S.indices(g, (1, 2, 3, 3), 4)),
        ("multilabel", inputs(2, 3, 6), mask(2, 3, 6, soft=True)),
    ]
    cases = []
    for variant in variants:
        for name, x, t in layouts:
            mode = name.split("-")[0]
            kwargs = {"mode": mode, **S.resolve(variant, x if mode != "binary" else x[:, :1])}
            if "weight" in kwargs and mode == "binary":
                kwargs["weight"] = kwargs["weight"][:1]
            cases.append(Case(x, t, kwargs, f"{name}[{S.tag(variant)}]", domain))
            ignore = -100 if mode == "multiclass" else -1
            marked = t.clone()
            marked[torch.rand(t.shape, generator=g) < 0.25] = ignore
            cases.append(Case(x, marked, {**kwargs, "ignore_index": ignore}, f"{name}-ignored[{S.tag(variant)}]",
                              domain))
    first = S.resolve(variants[0], inputs(1, 3, 2))
    cases.append(Case(inputs(0, 3, 4), torch.zeros(0, 4, dtype=torch.long), {"mode": "multiclass", **first},
                      "empty", domain, frozenset({"empty"})))
    cases.append(Case(inputs(2, 3, 4), torch.full((2, 4), -100), {"mode": "multiclass", "ignore_index": -100, **first},
                      "all-ignored", domain, frozenset({"all_ignored"})))
    return cases


def segmentation_errors(fn: str) -> list[ErrorCase]:
    g = S.generator(7)
    x, labels, masks = S.logits(g, 2, 3, 4), S.indices(g, (2, 4), 3), (torch.rand(2, 3, 4, generator=g) < 0.5).double()
    return [
        ErrorCase(x, labels, {}, TypeError, rf"{fn}\(\) missing 1 required keyword-only argument: 'mode'"),
        ErrorCase(x, labels, {"mode": "multi-class"}, ValueError, rf"{fn}: mode must be one of 'binary', 'multiclass'"),
        ErrorCase(x, masks, {"mode": "multiclass"}, ValueError,
                  rf"{fn}: target must have shape \(2, 4\) \(class indices, the input's shape without dim 1\)"),
        ErrorCase(x, labels.double(), {"mode": "multiclass"}, TypeError,
                  rf"{fn}: target must hold integer class indices in mode 'multiclass'"),
        ErrorCase(x, labels, {"mode": "multilabel"}, ValueError, rf"{fn}: target must have the input's shape"),
        ErrorCase(x, masks * 2, {"mode": "multilabel"}, ValueError, rf"{fn}: target must lie in \[0, 1\]"),
        ErrorCase(x, labels + 1, {"mode": "multiclass"}, ValueError,
                  rf"{fn}: target class indices must be in \[0, 3\)"),
        ErrorCase(x, labels, {"mode": "multiclass", "weight": [1.0, 2.0]}, ValueError,
                  rf"{fn}: weight must have shape \(3,\)"),
        ErrorCase(x, labels, {"mode": "multiclass", "smooth": -1.0}, ValueError,
                  rf"{fn}: smooth must be a finite number in \[0, inf\)"),
        ErrorCase(x, labels, {"mode": "multiclass", "eps": 0}, ValueError,
                  rf"{fn}: eps must be a finite number in \(0"),
    ]


def _pair_errors(fn: str, lambda_name: str) -> list[ErrorCase]:
    """The Dice pairs' errors: the Dice ones, no reduction 'none', a negative term weight."""
    g = S.generator(8)
    x, labels = S.logits(g, 2, 3, 4), S.indices(g, (2, 4), 3)
    return segmentation_errors(fn) + [
        ErrorCase(x, labels, {"mode": "multiclass", "reduction": "none"}, ValueError,
                  rf"{fn}: reduction must be one of 'mean', 'sum'; got 'none' \(the terms have different shapes"),
        ErrorCase(x, labels, {"mode": "multiclass", lambda_name: -1.0}, ValueError,
                  rf"{fn}: {lambda_name} must be a finite number in \[0, inf\)"),
    ]


_VARIANTS = [{}, {"smooth": 0.0, "per_image": True}, {"weight": S.per_class([0.5, 2.0, 1.0, 0.0]),
                                                       "include_background": False},
             {"smooth": 0.5, "eps": 1e-3, "per_image": True, "weight": S.per_class([1.0, 3.0, 0.5, 2.0])}]

_PAIR_VARIANTS = [{}, {"lambda_dice": 0.3, "per_image": True, "weight": S.per_class([1.0, 2.0, 0.5, 1.5])},
                  {"smooth": 0.0, "include_background": False}]

def _absent_class_cases() -> list[Case]:
    """Generalised Dice's absent-class rule: a class absent from the batch, from one image, or no class at all."""
    g = S.generator(116)
    x3, x1 = S.logits(g, 2, 3, 4, 4), S.logits(g, 2, 1, 3, 3)
    labels = S.indices(g, (2, 4, 4), 2)  # class 2 absent from the batch
    labels[0][labels[0] == 1] = 0  # class 1 absent from image 0
    masks = (torch.rand(2, 1, 3, 3, generator=g, dtype=S.F64) < 0.4).double()
    masks[1] = 0.0  # image 1 without foreground
    return [
        Case(x3, labels, {"mode": "multiclass"}, "absent-class", "logits"),
        Case(x3, labels, {"mode": "multiclass", "per_image": True, "weight_type": "simple"},
             "absent-class-per-image", "logits"),
        Case(x3, labels, {"mode": "multiclass", "include_background": False, "per_image": True},
             "absent-class-no-background", "logits"),
        Case(x1, masks, {"mode": "binary", "per_image": True}, "empty-mask-per-image", "logits"),
        Case(x1, torch.zeros_like(masks), {"mode": "binary"}, "empty-masks", "logits"),
        Case(x1, torch.zeros_like(masks), {"mode": "binary", "smooth": 0.0, "per_image": True},
             "empty-masks-unsmoothed", "logits"),
    ]


def _generalized_dice_errors() -> list[ErrorCase]:
    fn = "generalized_dice_loss"
    g = S.generator(9)
    x, labels = S.logits(g, 2, 3, 4), S.indices(g, (2, 4), 3)
    return [e for e in segmentation_errors(fn) if "weight" not in e.kwargs] + [
        ErrorCase(x, labels, {"mode": "multiclass", "weight_type": "squared"}, ValueError,
                  rf"{fn}: weight_type must be one of 'square', 'simple', 'uniform'; got 'squared'"),
        ErrorCase(x, labels, {"mode": "multiclass", "weight": [1.0, 2.0, 3.0]}, TypeError,
                  rf"{fn}\(\) got an unexpected keyword argument 'weight'"),
    ]


_GDICE_VARIANTS = [{}, {"per_image": True}, {"weight_type": "simple", "include_background": False},
                   {"weight_type": "uniform", "smooth": 0.0},
                   {"smooth": 0.5, "eps": 1e-3, "per_image": True, "weight_type": "simple"}]

SAMPLES = {
    "dice_loss": lambda: (
        segmentation_cases(_VARIANTS + [{"squared": True}, {"log_loss": True, "smooth": 0.0}], seed=110)
        + segmentation_cases([{"from_logits": False}], seed=111, domain="probabilities")),
    "jaccard_loss": lambda: (
        segmentation_cases(_VARIANTS + [{"squared": True, "log_loss": True}], seed=112)
        + segmentation_cases([{"from_logits": False}], seed=113, domain="probabilities")),
    "tversky_loss": lambda: (
        segmentation_cases(_VARIANTS + [{"alpha": 0.3, "beta": 0.7}, {"gamma": 0.75, "beta": 1.0},
                                        {"alpha": 1.0, "beta": 1.0, "gamma": 2.0}], seed=114)
        + segmentation_cases([{"from_logits": False, "alpha": 0.7}], seed=115, domain="probabilities")),
    "generalized_dice_loss": lambda: (
        segmentation_cases(_GDICE_VARIANTS, seed=116)
        + segmentation_cases([{"from_logits": False, "per_image": True}], seed=117, domain="probabilities")
        + _absent_class_cases()),
    "dice_ce_loss": lambda: segmentation_cases(_PAIR_VARIANTS + [{"label_smoothing": 0.1, "lambda_ce": 2.0}],
                                               seed=120),
    "dice_focal_loss": lambda: segmentation_cases(
        _PAIR_VARIANTS + [{"gamma": 0.5, "alpha": 0.25, "lambda_focal": 2.0}], seed=121),
}

ERRORS = {
    "dice_loss": lambda: segmentation_errors("dice_loss"),
    "jaccard_loss": lambda: segmentation_errors("jaccard_loss"),
    "tversky_loss": lambda: segmentation_errors("tversky_loss") + [
        ErrorCase(S.logits(S.generator(1), 2, 3), torch.tensor([0, 2]), {"mode": "multiclass", "gamma": 0.0},
                  ValueError, r"tversky_loss: gamma must be a finite number in \(0, inf\)"),
    ],
    "generalized_dice_loss": _generalized_dice_errors,
    "dice_ce_loss": lambda: _pair_errors("dice_ce_loss", "lambda_ce"),
    "dice_focal_loss": lambda: _pair_errors("dice_focal_loss", "lambda_focal") + [
        ErrorCase(S.logits(S.generator(1), 2, 3), torch.tensor([0, 2]), {"mode": "multiclass", "alpha": 1.5},
                  ValueError, r"dice_focal_loss: alpha must be a finite number in \[0, 1\]; got 1.5"),
    ],
}
