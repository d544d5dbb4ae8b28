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

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ._checks import (
    broadcast_weight,
    check_input,
    check_non_negative,
    check_target_tensor,
    shape_str,
    to_tensor,
    values_checked,
)

BOX_FORMATS = ("xyxy", "xywh", "cxcywh")


def check_box_format(fn: str, box_format: Any) -> None:
    if box_format not in BOX_FORMATS:
        raise ValueError(f"{fn}: box_format must be one of 'xyxy', 'xywh', 'cxcywh'; got {box_format!r}")


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
    """pred is a floating (..., 4) tensor, target a real tensor of the same shape on the same device."""
    check_input(fn, pred, min_ndim=1, what="(..., 4)", name="pred")
    if pred.shape[-1] != 4:
        raise ValueError(f"{fn}: pred must have shape (..., 4) (one box per row); got {shape_str(pred.shape)}")
    check_target_tensor(fn, pred, target, input_name="pred")
    if target.shape != pred.shape:
        raise ValueError(f"{fn}: target must have the pred's shape {shape_str(pred.shape)}; "
                         f"got {shape_str(target.shape)}")


def check_target_boxes(fn: str, box: tuple[Tensor, Tensor, Tensor, Tensor], target: Tensor, box_format: str) -> None:
    """Values check: target boxes are finite, with x1 <= x2 and y1 <= y2."""
    if not values_checked(target) or target.numel() == 0:
        return
    x1, y1, x2, y2 = box
    if not bool(torch.isfinite(target).all()):
        raise ValueError(f"{fn}: target boxes must be finite; got {target[~torch.isfinite(target)][0].item()!r}")
    bad = (x2 < x1) | (y2 < y1)
    if bool(bad.any()):
        index = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"{fn}: target boxes must have x1 <= x2 and y1 <= y2 (non-negative width and height) in "
            f"box_format={box_format!r}; got {[round(v, 6) for v in target[index].tolist()]} at index {index}"
        )


def box_weight(fn: str, weight: Any, pred: Tensor, dtype: torch.dtype) -> Tensor:
    """A non-negative per-box weight broadcasting to pred.shape[:-1]; one shaped like pred is averaged over its 4."""
    value = to_tensor(fn, "weight", weight, pred, dtype, "a tensor, a number or a sequence of numbers")
    if value.shape == pred.shape:
        value = value.to(dtype)
        check_non_negative(fn, "weight", value)
        return value.mean(-1)
    return broadcast_weight(fn, "weight", value, pred.shape[:-1], pred, dtype,
                            f"the boxes' shape without the last dimension, or be shaped like pred "
                            f"{shape_str(pred.shape)}:")


def _stop_gradient_below(ratio: Tensor, denominator: Tensor, eps: float) -> Tensor:
    return torch.where(denominator > eps, ratio, ratio.detach())


@dataclass
class Pair:
    """The quantities of matched (pred, target) boxes that the IoU losses are built from."""

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

    @classmethod
    def of(cls, p: tuple[Tensor, ...], g: tuple[Tensor, ...], eps: float) -> Pair:
        px1, py1, px2, py2 = p
        gx1, gy1, gx2, gy2 = g
        wp, hp = (px2 - px1).clamp_min(0), (py2 - py1).clamp_min(0)
        wg, hg = (gx2 - gx1).clamp_min(0), (gy2 - gy1).clamp_min(0)
        iw = (torch.minimum(px2, gx2) - torch.maximum(px1, gx1)).clamp_min(0)
        ih = (torch.minimum(py2, gy2) - torch.maximum(py1, gy1)).clamp_min(0)
        inter = iw * ih
        union = wp * hp + wg * hg - inter
        iou = _stop_gradient_below(inter / (union + eps), union, eps)
        cw = (torch.maximum(px2, gx2) - torch.minimum(px1, gx1)).clamp_min(0)
        ch = (torch.maximum(py2, gy2) - torch.minimum(py1, gy1)).clamp_min(0)
        dx = 0.5 * ((gx1 + gx2) - (px1 + px2))
        dy = 0.5 * ((gy1 + gy2) - (py1 + py2))
        return cls(iou, union, cw * ch, cw, ch, dx, dy, wp, hp, wg, hg)

    def giou_penalty(self, eps: float) -> Tensor:
        """(C - U) / (C + eps): the share of the enclosing box that neither box covers."""
        c = self.enclosing_area
        return _stop_gradient_below((c - self.union) / (c + eps), c, eps)

    def centre_penalty(self, eps: float) -> Tensor:
        """rho^2 / c^2: squared centre distance over the squared diagonal of the enclosing box."""
        return (self.dx * self.dx + self.dy * self.dy) / (self.cw * self.cw + self.ch * self.ch + eps)
