"""The module twins of the IoU family (:mod:`losslab.boxes`).

They sit apart from their losses only so that boxes.py stays under 500 lines, and so does the registration of
the family (names, aliases, formulas), which names both. Their
validator, :func:`losslab._boxes.check_box_arguments`, makes the checks that ``boxes._box_loss`` makes before it
reads the boxes, with the same messages.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from torch import Tensor

from . import boxes
from ._boxes import check_box_arguments
from ._module import LossModule
from .registry import Alias, LossSpec, register
from .boxes import BoxFormat, Reduction, Weight, _check_mode

def _check_iou(fn: str, *, mode: object, **box: object) -> float:
    """The hyperparameters of :func:`losslab.iou_loss` and its twin, in the loss's order: mode first."""
    _check_mode(mode)
    return check_box_arguments(fn, **box)


class IoULoss(LossModule, function=boxes.iou_loss, validate=_check_iou):
    """Module form of :func:`losslab.iou_loss`."""

    def __init__(self, *, box_format: BoxFormat = "xyxy", eps: float = 1e-7,
                 mode: Literal["linear", "square", "log"] = "linear", weight: Weight = None,
                 reduction: Reduction = "mean", avg_factor: float | Tensor | None = None,
                 dist_sync: bool = False) -> None:
        super().__init__(box_format=box_format, eps=eps, mode=mode, weight=weight, reduction=reduction,
                         avg_factor=avg_factor, dist_sync=dist_sync)


class GIoULoss(LossModule, function=boxes.giou_loss, validate=check_box_arguments):
    """Module form of :func:`losslab.giou_loss`."""

    def __init__(self, *, box_format: BoxFormat = "xyxy", eps: float = 1e-7, weight: Weight = None,
                 reduction: Reduction = "mean", avg_factor: float | Tensor | None = None,
                 dist_sync: bool = False) -> None:
        super().__init__(box_format=box_format, eps=eps, weight=weight, reduction=reduction, avg_factor=avg_factor,
                         dist_sync=dist_sync)


class DIoULoss(LossModule, function=boxes.diou_loss, validate=check_box_arguments):
    """Module form of :func:`losslab.diou_loss`."""

    def __init__(self, *, box_format: BoxFormat = "xyxy", eps: float = 1e-7, weight: Weight = None,
                 reduction: Reduction = "mean", avg_factor: float | Tensor | None = None,
                 dist_sync: bool = False) -> None:
        super().__init__(box_format=box_format, eps=eps, weight=weight, reduction=reduction, avg_factor=avg_factor,
                         dist_sync=dist_sync)


class CIoULoss(LossModule, function=boxes.ciou_loss, validate=check_box_arguments):
    """Module form of :func:`losslab.ciou_loss`."""

    def __init__(self, *, box_format: BoxFormat = "xyxy", eps: float = 1e-7, weight: Weight = None,
                 reduction: Reduction = "mean", avg_factor: float | Tensor | None = None,
                 dist_sync: bool = False) -> None:
        super().__init__(box_format=box_format, eps=eps, weight=weight, reduction=reduction, avg_factor=avg_factor,
                         dist_sync=dist_sync)


class EIoULoss(LossModule, function=boxes.eiou_loss, validate=check_box_arguments):
    """Module form of :func:`losslab.eiou_loss`."""

    def __init__(self, *, box_format: BoxFormat = "xyxy", eps: float = 1e-7, weight: Weight = None,
                 reduction: Reduction = "mean", avg_factor: float | Tensor | None = None,
                 dist_sync: bool = False) -> None:
        super().__init__(box_format=box_format, eps=eps, weight=weight, reduction=reduction, avg_factor=avg_factor,
                         dist_sync=dist_sync)


class SIoULoss(LossModule, function=boxes.siou_loss, validate=check_box_arguments):
    """Module form of :func:`losslab.siou_loss`."""

    def __init__(self, *, box_format: BoxFormat = "xyxy", eps: float = 1e-7, weight: Weight = None,
                 reduction: Reduction = "mean", avg_factor: float | Tensor | None = None,
                 dist_sync: bool = False) -> None:
        super().__init__(box_format=box_format, eps=eps, weight=weight, reduction=reduction, avg_factor=avg_factor,
                         dist_sync=dist_sync)


# ----------------------------------------------------------------------------
# registration


def _register(function: Callable, module: type, formula: str, aliases: tuple[Alias, ...],
              exact_gradient: bool = True) -> None:
    register(LossSpec(name=function.__name__, function=function, module=module, family="boxes", formula=formula,
                      input="boxes", aliases=aliases, exact_gradient=exact_gradient))


_register(boxes.iou_loss, IoULoss, "1 - IoU  (or 1 - IoU^2, -log IoU)",
          (Alias("IoU", "paper", "boxes"), Alias("UnitBox", "paper", "boxes", {"mode": "log"})))
_register(boxes.giou_loss, GIoULoss, "1 - IoU + (|C| - |P u G|) / |C|",
          (Alias("GIoU", "paper", "boxes"),))
_register(boxes.diou_loss, DIoULoss, "1 - IoU + rho^2 / c^2",
          (Alias("DIoU", "paper", "boxes"),))
_register(boxes.ciou_loss, CIoULoss, "1 - IoU + rho^2 / c^2 + a v",
          (Alias("CIoU", "paper", "boxes"),), exact_gradient=False)
_register(boxes.eiou_loss, EIoULoss, "1 - IoU + rho^2 / c^2 + dw^2 / cw^2 + dh^2 / ch^2",
          (Alias("EIoU", "paper", "boxes"), Alias("Efficient IoU", "paper", "boxes")))
_register(boxes.siou_loss, SIoULoss, "1 - IoU + (distance + shape) / 2",
          (Alias("SIoU", "paper", "boxes"), Alias("SCYLLA-IoU", "paper", "boxes")))
