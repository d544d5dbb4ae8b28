"""The module twins of the IoU family (:mod:`losslab.boxes`).

They sit apart from their losses only so that boxes.py stays under 500 lines: boxes.py imports them below its
losses (which they name) and registers and exports them there, so ``losslab.boxes.IoULoss`` is this class. Their
validator, :func:`losslab._boxes.check_box_arguments`, makes the checks that ``boxes._box_loss`` makes before it
reads the boxes, with the same messages.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from . import boxes
from ._boxes import check_box_arguments
from ._module import LossModule
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
