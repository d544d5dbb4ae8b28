"""Samples and error cases of the IoU family of box losses (losslab.boxes)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from losslab._boxes import from_xyxy

from . import common as S
from .cases import Case, ErrorCase


def box_cases(extra: tuple[dict, ...] = ()) -> list[Case]:
    """Overlapping and disjoint pairs, (N, 4) and (2, 3, 4), in each format, with weights and avg_factor."""
    g = S.generator(90)
    cases = []
    variants = ({}, {"box_format": "xywh", "weight": "per-box"}, {"box_format": "cxcywh", "avg_factor": 2.5},
                {"weight": "per-coordinate", "eps": 1e-4}) + extra
    for variant in variants:
        for layout, shape in (("2d", (7,)), ("3d", (2, 3))):
            p, t = S.boxes(g, *shape), S.boxes(g, *shape)
            t[..., 0, :] = p[..., 0, :] + torch.tensor([0.3, -0.2, 0.1, 0.4], dtype=S.F64)  # a close match
            fmt = variant.get("box_format", "xyxy")
            kwargs = dict(variant)
            if variant.get("weight") == "per-box":
                kwargs["weight"] = torch.rand(*shape, generator=g, dtype=S.F64)
            elif variant.get("weight") == "per-coordinate":
                kwargs["weight"] = torch.rand(*shape, 4, generator=g, dtype=S.F64)
            cases.append(Case(from_xyxy(p, fmt), from_xyxy(t, fmt), kwargs, f"{layout}[{S.tag(variant)}]", "boxes"))
    empty = torch.zeros(0, 4, dtype=S.F64)
    cases.append(Case(empty, empty.clone(), {}, "empty", "boxes", frozenset({"empty"})))
    return cases


def box_errors(fn: str) -> list[ErrorCase]:
    g = S.generator(91)
    p, t = S.boxes(g, 3), S.boxes(g, 3)
    inverted = t.clone()
    inverted[1, 2] = inverted[1, 0] - 1.0
    return [
        ErrorCase(p, inverted, {}, ValueError,
                  rf"{fn}: target boxes must have x1 <= x2 and y1 <= y2 .* at index \(1,\)"),
        ErrorCase(p[:, :3], t[:, :3], {}, ValueError, rf"{fn}: pred must have shape \(\.\.\., 4\) .*; got \(3, 3\)"),
        ErrorCase(p, t, {"box_format": "xyhw"}, ValueError, rf"{fn}: box_format must be one of 'xyxy', 'xywh'"),
        ErrorCase(p, t, {"eps": 0.0}, ValueError, rf"{fn}: eps must be a finite number in \(0, inf\); got 0.0"),
        ErrorCase(p, t, {"weight": torch.ones(2)}, ValueError, rf"{fn}: weight must broadcast to the boxes' shape"),
        ErrorCase(p, t.clone().fill_(float("nan")), {}, ValueError, rf"{fn}: target boxes must be finite"),
    ]


# iou_loss also runs its other modes; every box loss shares the rest
_EXTRA = {"iou_loss": ({"mode": "square"}, {"mode": "log"})}
_NAMES = ("iou_loss", "giou_loss", "diou_loss", "ciou_loss", "eiou_loss", "siou_loss")



def _samples(name: str) -> Callable[[], list[Case]]:
    return lambda: box_cases(_EXTRA.get(name, ()))


def _errors(name: str) -> Callable[[], list[ErrorCase]]:
    return lambda: box_errors(name)


SAMPLES = {name: _samples(name) for name in _NAMES}
ERRORS = {name: _errors(name) for name in _NAMES}
