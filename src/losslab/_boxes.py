"""Box geometry shared by the IoU family: formats, validation, and the quantities of a (pred, target) pair.

Conventions (documented on every box loss):

* boxes are (..., 4) in "xyxy" (x1, y1, x2, y2), "xywh" (x1, y1, w, h) or
  "cxcywh" (cx, cy, w, h), converted to corners first;
* a width or height is max(x2 - x1, 0): an inverted predicted box (x2 < x1)
  has zero width, so zero area and no intersection, while its corners still
  enter the enclosing box and its centre the centre distance. Inverted
  *target* boxes are an error where values are checked (they usually mean a
  wrong box_format) and follow the same rule where they are not;
* IoU = I / (U + eps) and the GIoU penalty (C - U) / (C + eps) follow
  torchvision. Where the denominator is at most eps (both boxes of zero area),
  the ratio's value is kept but its gradient is stopped: the IoU of two empty
  boxes is undefined, and its raw gradient, about 1/eps, would overflow half
  precision and wreck training.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ._checks import (
    broadcast_weight,
    check_common,
    check_input,
    check_non_negative,
    check_not_bool,
    check_number,
    check_target_tensor,
    shape_str,
    to_tensor,
    values_checked,
)

BOX_FORMATS = ("xyxy", "xywh", "cxcywh")


# The parts every box loss's docstring shares, spliced in where "BOX_ARGS" and "BOX_NOTES" stand.
_BOX_ARGS = """pred: predicted boxes (..., 4), any leading batch shape.
        target: their matched ground-truth boxes, the same shape.
        box_format: "xyxy" (x1, y1, x2, y2), "xywh" (x1, y1, w, h) or
            "cxcywh" (cx, cy, w, h), for both.
        eps: > 0, added to the denominators (IoU's union, the enclosing box's
            area, the squared diagonal), as torchvision does.
        weight: non-negative per-box weight that broadcasts to the boxes'
            shape without the last dimension; a weight shaped like ``pred``
            (..., 4) is first averaged over its 4 values (mmdetection).
        reduction: "none" | "mean" | "sum"; "mean" is the mean over boxes, or
            the sum divided by ``avg_factor``.
        avg_factor: with "mean", divide the sum by this instead (e.g. the
            number of positive anchors); 0 divides by 1. No boxes at all give
            0, still connected to the graph."""

_BOX_NOTES = """Returns:
        "none": one loss per box, shape ``pred.shape[:-1]``; otherwise a scalar.

    Raises:
        TypeError: non-floating pred, a non-tensor or bool target.
        ValueError: a last dimension other than 4, shapes that differ, an
            unknown box_format, eps <= 0, target boxes with x2 < x1 or
            y2 < y1, pred or target boxes with non-finite values (checked
            where values are checked).

    Finite boxes never give NaN, degenerate or far apart: every ratio is
    formed from lengths divided by a power-of-two scale of the enclosing box
    (exact), so float32 boxes 1e20 apart give finite values and gradients.
    Widths and heights are max(x2 - x1, 0),
    so an inverted predicted box has zero area (its corners still count for
    the enclosing box and its centre for the centre distance); boxes of zero
    width or height have IoU 0 with anything (identical zero-area boxes too:
    their loss is that of IoU 0); where a denominator is at most eps (both
    boxes of zero area) the ratio keeps its value but passes no gradient.
    Identical well-formed boxes give 0 up to eps (the IoU is A / (A + eps)).
    Half precision is computed in float32."""


def boxdoc(f: Callable) -> Callable:
    """Splice the shared parts into the docstring of a box loss, where "BOX_ARGS" and "BOX_NOTES" stand."""
    f.__doc__ = f.__doc__.replace("BOX_ARGS", _BOX_ARGS).replace("BOX_NOTES", _BOX_NOTES)
    return f


def check_box_format(fn: str, box_format: Any) -> None:
    if box_format not in BOX_FORMATS:
        raise ValueError(f"{fn}: box_format must be one of 'xyxy', 'xywh', 'cxcywh'; got {box_format!r}")


def check_box_arguments(fn: str, *, box_format: Any, eps: Any, **common: Any) -> float:
    """The hyperparameters every box loss takes, checked before its boxes (its twin's too); eps as a float."""
    check_common(fn, **common)
    check_box_format(fn, box_format)
    return check_number(fn, "eps", eps, low=0.0, low_open=True)


def corners(boxes: Tensor, box_format: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """x1, y1, x2, y2 of (..., 4) boxes."""
    a, b, c, d = boxes.unbind(-1)
    if box_format == "xyxy":
        return a, b, c, d
    if box_format == "xywh":
        return a, b, a + c, b + d
    return a - 0.5 * c, b - 0.5 * d, a + 0.5 * c, b + 0.5 * d


def from_xyxy(boxes: Tensor, box_format: str) -> Tensor:
    """(..., 4) xyxy boxes in ``box_format`` (the inverse of :func:`corners`)."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    if box_format == "xywh":
        return torch.stack([x1, y1, x2 - x1, y2 - y1], dim=-1)
    if box_format == "cxcywh":
        return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dim=-1)
    return boxes


def check_boxes(fn: str, pred: Any, target: Any) -> None:
    """pred is a floating (..., 4) tensor, target a real, non-bool tensor of the same shape on the same device."""
    check_input(fn, pred, min_ndim=1, what="(..., 4)", name="pred")
    if pred.shape[-1] != 4:
        raise ValueError(f"{fn}: pred must have shape (..., 4) (one box per row); got {shape_str(pred.shape)}")
    check_target_tensor(fn, pred, target, input_name="pred")
    check_not_bool(fn, target, holds="box coordinates")
    if target.shape != pred.shape:
        raise ValueError(f"{fn}: target must have the pred's shape {shape_str(pred.shape)}; "
                         f"got {shape_str(target.shape)}")


def check_finite_boxes(fn: str, name: str, boxes: Tensor) -> None:
    """Values check: every coordinate is finite (pred and target alike)."""
    if not values_checked(boxes) or boxes.numel() == 0:
        return
    boxes = boxes.detach()
    finite = torch.isfinite(boxes)
    if not bool(finite.all()):
        raise ValueError(f"{fn}: {name} boxes must be finite; got {boxes[~finite][0].item()!r}")


def check_target_boxes(fn: str, box: tuple[Tensor, Tensor, Tensor, Tensor], target: Tensor, box_format: str) -> None:
    """Values check: target boxes are finite, with x1 <= x2 and y1 <= y2."""
    if not values_checked(target) or target.numel() == 0:
        return
    x1, y1, x2, y2 = box
    check_finite_boxes(fn, "target", target)
    bad = (x2 < x1) | (y2 < y1)
    if bool(bad.any()):
        index = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"{fn}: target boxes must have x1 <= x2 and y1 <= y2 (non-negative width and height) in "
            f"box_format={box_format!r}; got {[round(v, 6) for v in target[index].tolist()]} at index {index}"
        )


def box_weight(fn: str, weight: Any, pred: Tensor, dtype: torch.dtype) -> Tensor:
    """A non-negative per-box weight broadcasting to pred.shape[:-1]; one shaped like pred is averaged over its 4."""
    value = to_tensor(fn, "weight", weight, pred, dtype)
    if value.shape == pred.shape:
        value = value.to(dtype)
        check_non_negative(fn, "weight", value)
        return value.mean(-1)
    return broadcast_weight(fn, "weight", value, pred.shape[:-1], pred, dtype,
                            f"the boxes' shape without the last dimension, or be shaped like pred "
                            f"{shape_str(pred.shape)}:")


def _stop_gradient_below(ratio: Tensor, denominator: Tensor, eps: float) -> Tensor:
    return torch.where(denominator > eps, ratio, ratio.detach())


def _power_of_two_at_least(length: Tensor) -> Tensor:
    """The smallest power of two >= ``length`` (and >= 1), detached: dividing by it is exact."""
    return torch.exp2(torch.ceil(torch.log2(length.detach().clamp_min(1.0))))


@dataclass
class Pair:
    """The quantities of matched (pred, target) boxes that the IoU losses are built from.

    Lengths are in units of ``scale``, a power of two at least the enclosing
    box's larger side (1 for boxes smaller than 1): every scaled length is at
    most 1 and every scaled area at most 1, so finite boxes far apart (1e20 in
    float32) give no inf and no inf / inf. Every loss is a ratio of lengths or
    of areas, which the scale leaves unchanged; ``eps`` is rescaled with it
    (``eps_area`` = eps / scale^2, floored at the square root of the dtype's
    smallest normal number, ``eps_length`` = eps / scale). Dividing by a power
    of two is exact, so boxes below about 1 in size compute exactly as unscaled.
    """

    iou: Tensor  # I / (U + eps)
    union: Tensor
    enclosing_area: Tensor  # C
    cw: Tensor  # enclosing box width and height
    ch: Tensor
    dx: Tensor  # target centre minus pred centre
    dy: Tensor
    wp: Tensor  # widths and heights, clamped at 0
    hp: Tensor
    wg: Tensor
    hg: Tensor
    eps_area: Tensor
    eps_length: Tensor

    @classmethod
    def of(cls, p: tuple[Tensor, ...], g: tuple[Tensor, ...], eps: float) -> Pair:
        px1, py1, px2, py2 = p
        gx1, gy1, gx2, gy2 = g
        cw = (torch.maximum(px2, gx2) - torch.minimum(px1, gx1)).clamp_min(0)
        ch = (torch.maximum(py2, gy2) - torch.minimum(py1, gy1)).clamp_min(0)
        scale = _power_of_two_at_least(torch.maximum(cw, ch))
        cw, ch = cw / scale, ch / scale
        wp, hp = (px2 - px1).clamp_min(0) / scale, (py2 - py1).clamp_min(0) / scale
        wg, hg = (gx2 - gx1).clamp_min(0) / scale, (gy2 - gy1).clamp_min(0) / scale
        iw = (torch.minimum(px2, gx2) - torch.maximum(px1, gx1)).clamp_min(0) / scale
        ih = (torch.minimum(py2, gy2) - torch.maximum(py1, gy1)).clamp_min(0) / scale
        # half of each centre coordinate first: x1 + x2 could overflow where (x1 + x2) / 2 does not
        dx = ((0.5 * gx1 + 0.5 * gx2) - (0.5 * px1 + 0.5 * px2)) / scale
        dy = ((0.5 * gy1 + 0.5 * gy2) - (0.5 * py1 + 0.5 * py2)) / scale
        eps_length = eps / scale
        eps_area = (eps_length / scale).clamp_min(math.sqrt(torch.finfo(scale.dtype).tiny))
        inter = iw * ih
        union = wp * hp + wg * hg - inter
        iou = _stop_gradient_below(inter / (union + eps_area), union, eps_area)
        return cls(iou, union, cw * ch, cw, ch, dx, dy, wp, hp, wg, hg, eps_area, eps_length)

    def giou_penalty(self) -> Tensor:
        """(C - U) / (C + eps): the share of the enclosing box that neither box covers."""
        c = self.enclosing_area
        return _stop_gradient_below((c - self.union) / (c + self.eps_area), c, self.eps_area)

    def centre_penalty(self) -> Tensor:
        """rho^2 / c^2: squared centre distance over the squared diagonal of the enclosing box."""
        return (self.dx * self.dx + self.dy * self.dy) / (self.cw * self.cw + self.ch * self.ch + self.eps_area)
