"""mmdetection's and torchvision's box losses, on losslab's IoU family.

* torchvision's ``*_box_iou_loss`` functions default to reduction "none"
  (their eps, 1e-7, is losslab's): presets.
* mmdetection's ``IoULoss`` clamps the IoU at ``eps = 1e-6`` before the
  log (``-log(max(IoU, eps))``), so a disjoint pair costs -log(1e-6), not
  infinity: reproduced here. Its ``GIoULoss`` and ``DIoULoss`` use
  eps = 1e-6 (presets).
* mmdetection's ``CIoULoss`` (aspect term gated by IoU > 0.5, clamped),
  ``EIoULoss`` (the Extended IoU loss with a smooth point, not Efficient IoU)
  and ``SIoULoss`` with its default ``neg_gamma=False`` (the distance cost
  grows as exp(+gamma rho)) are other formulas: their names raise and point
  to losslab's loss.

mmdetection divides the union by ``max(union, eps)`` where losslab (as
torchvision) divides by ``union + eps``: the IoUs differ by a relative
eps / union, below float32's rounding for boxes whose union exceeds 10
squared units.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from .._checks import check_common, check_number, describe
from .._module import LossModule
from ..boxes import iou_loss
from ..registry import Alias, add_aliases

Reduction = Literal["none", "mean", "sum"]

__all__ = ["mmdet_iou_loss", "MmdetIoULoss"]


def mmdet_iou_loss(
    pred: Tensor,
    target: Tensor,
    *,
    mode: Literal["linear", "square", "log"] = "log",
    eps: float = 1e-6,
    box_format: Literal["xyxy", "xywh", "cxcywh"] = "xyxy",
    weight: Tensor | None = None,
    reduction: Reduction = "mean",
    avg_factor: float | Tensor | None = None,
) -> Tensor:
    r"""mmdetection's ``IoULoss``: the IoU clamped at ``eps`` before the loss.

    .. math::

        u = \max(\mathrm{IoU}, \varepsilon), \qquad
        \ell = -\log u \;(\text{"log"}), \quad 1 - u \;(\text{"linear"}), \quad 1 - u^2 \;(\text{"square"})

    Args:
        pred, target: boxes (..., 4), xyxy by default (mmdetection's format).
        mode: "log" (mmdetection's default), "linear" or "square".
        eps: the IoU's floor and the union's eps, 1e-6 as in mmdetection.
        weight, reduction, avg_factor: as :func:`losslab.iou_loss`
            (mmdetection's ``weight`` and ``avg_factor``).

    Example:
        >>> import torch, losslab
        >>> loss_fn = losslab.get_loss("mmdet.IoULoss")
        >>> pred = torch.tensor([[0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 6.0, 6.0]], requires_grad=True)
        >>> target = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 1.0, 1.0]])
        >>> loss = loss_fn(pred, target)  # the disjoint pair costs -log(1e-6), not inf
        >>> loss.backward()
        >>> loss.round(decimals=3)
        tensor(7.8810, grad_fn=<RoundBackward1>)
    """
    fn = "mmdet.IoULoss"
    eps = _check_mmdet_iou(fn, mode=mode, eps=eps, reduction=reduction)
    iou = 1.0 - iou_loss(pred, target, box_format=box_format, eps=eps, mode="linear", reduction="none")
    iou = iou.clamp(min=eps)
    per_box = -torch.log(iou) if mode == "log" else (1.0 - iou if mode == "linear" else 1.0 - iou * iou)
    return _weighted(fn, per_box, pred, weight, reduction, avg_factor)


def _weighted(fn: str, per_box: Tensor, pred: Tensor, weight: Tensor | None, reduction: Reduction,
              avg_factor: float | Tensor | None) -> Tensor:
    """mmdetection's weight_reduce_loss: per-box weight ((..., 4) averaged over the 4), "mean" or sum / avg_factor."""
    if weight is not None:
        weight = torch.as_tensor(weight, dtype=per_box.dtype, device=per_box.device)
        if weight.shape == pred.shape:
            weight = weight.mean(-1)
        per_box = per_box * weight
    if reduction == "none":
        return per_box
    if reduction == "sum":
        return per_box.sum()
    if reduction != "mean":
        raise ValueError(f"{fn}: reduction must be 'none', 'mean' or 'sum'; got {describe(reduction)}")
    if avg_factor is None:
        return per_box.sum() / max(per_box.numel(), 1)
    return per_box.sum() / avg_factor if float(avg_factor) > 0 else per_box.sum()


def _check_mmdet_iou(fn: str, *, mode: object, eps: object, **common: object) -> float:
    """The hyperparameters of :func:`mmdet_iou_loss` and its twin; eps as a float."""
    if mode not in ("linear", "square", "log"):
        raise ValueError(f"{fn}: mode must be 'linear', 'square' or 'log'; got {describe(mode)}")
    eps = check_number(fn, "eps", eps, low=0.0, low_open=True)
    check_common(fn, **common)
    return eps


class MmdetIoULoss(LossModule, function=mmdet_iou_loss, validate=_check_mmdet_iou):
    """mmdetection's ``IoULoss`` (:func:`losslab.frameworks.boxes.mmdet_iou_loss`)."""

    loss_name = "mmdet.IoULoss"

    def __init__(self, *, mode: Literal["linear", "square", "log"] = "log", eps: float = 1e-6,
                 box_format: Literal["xyxy", "xywh", "cxcywh"] = "xyxy", weight: Tensor | None = None,
                 reduction: Reduction = "mean", avg_factor: float | Tensor | None = None) -> None:
        super().__init__(mode=mode, eps=eps, box_format=box_format, weight=weight, reduction=reduction,
                         avg_factor=avg_factor)


add_aliases(
    "iou_loss",
    Alias("IoULoss", "mmdetection", "boxes", qualified=True, build=MmdetIoULoss,
          note="-log IoU by default, the IoU clamped at eps = 1e-6"),
)
for _name, _canonical, _tv in (("GIoULoss", "giou_loss", "generalized_box_iou_loss"),
                               ("DIoULoss", "diou_loss", "distance_box_iou_loss")):
    add_aliases(_canonical,
                Alias(_tv, "torchvision", "boxes", {"reduction": "none"},
                      note="torchvision.ops; its default reduction is 'none'"),
                Alias(_name, "mmdetection", "boxes", {"eps": 1e-6}, qualified=True,
                      note="eps = 1e-6; mmdetection divides by max(union, eps), losslab by union + eps"))
add_aliases(
    "ciou_loss",
    Alias("complete_box_iou_loss", "torchvision", "boxes", {"reduction": "none"},
          note="torchvision.ops; its default reduction is 'none'"),
    Alias("CIoULoss", "mmdetection", "boxes", qualified=True,
          unsupported="mmdetection's CIoU loss, which sets the aspect term's weight to 0 where IoU <= 0.5, adds eps "
                      "to the heights and clamps the CIoU to [-1, 1]: a variant losslab does not implement; the "
                      "closest losslab loss is ciou_loss (torchvision's CIoU)"),
)
add_aliases(
    "eiou_loss",
    Alias("EIoULoss", "mmdetection", "boxes", qualified=True,
          unsupported="mmdetection's Extended IoU loss (with a smooth point), not the Efficient IoU loss that "
                      "losslab's eiou_loss implements; losslab does not implement it; the closest losslab loss "
                      "is iou_loss"),
)
add_aliases(
    "siou_loss",
    Alias("SIoULoss", "mmdetection", "boxes", qualified=True,
          unsupported="mmdetection's SIoU loss, whose default neg_gamma=False makes the distance cost "
                      "2 - exp(+gamma rho_x) - exp(+gamma rho_y) (the paper's is exp(-gamma rho)), with its own "
                      "eps placements and a clamp to [-1, 1]: losslab does not implement it; the closest losslab "
                      "loss is siou_loss (the paper's form, mmdetection's neg_gamma=True up to eps)"),
)
