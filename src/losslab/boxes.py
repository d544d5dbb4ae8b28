"""The IoU family of box-regression losses: IoU, GIoU, DIoU, CIoU, EIoU and SIoU.

Every loss takes matched boxes ``pred`` and ``target`` of shape (..., 4) and
returns one loss per box. The geometry (formats, intersection, union,
enclosing box, centres) and the docstring parts every box loss shares live
in :mod:`losslab._boxes`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import Tensor

from . import _dist
from ._boxes import (
    Pair,
    box_weight,
    boxdoc,
    check_box_format,
    check_boxes,
    check_finite_boxes,
    check_target_boxes,
    corners,
)
from ._checks import check_avg_factor, check_common, check_number, compute_dtype, numpy_arguments
from ._core import reduce

Reduction = Literal["none", "mean", "sum"]
BoxFormat = Literal["xyxy", "xywh", "cxcywh"]
Weight = Tensor | Sequence[float] | float | None

__all__ = ["iou_loss", "giou_loss", "diou_loss", "ciou_loss", "eiou_loss", "siou_loss"]  # twins: _box_modules.py

def _box_loss(fn: str, pred: Tensor, target: Tensor, *, box_format: str, eps: float, weight: Weight,
              reduction: str, avg_factor: object, loss_of: Callable[[Pair, float], Tensor],
              dist_sync: bool = False) -> Tensor:
    """Validate, convert to corners in the compute dtype, compute ``loss_of(pair, eps)`` per box, weight, reduce."""
    check_common(fn, reduction=reduction, avg_factor=avg_factor)
    check_box_format(fn, box_format)
    eps = check_number(fn, "eps", eps, low=0.0, low_open=True)
    check_boxes(fn, pred, target)
    avg_factor = check_avg_factor(fn, avg_factor, pred)
    dtype = compute_dtype(pred)
    g = corners(target.to(dtype), box_format)
    check_finite_boxes(fn, "pred", pred)
    check_target_boxes(fn, g, target, box_format)
    loss = loss_of(Pair.of(corners(pred.to(dtype), box_format), g, eps), eps)
    if weight is not None:
        loss = loss * box_weight(fn, weight, pred, dtype)
    return reduce(loss, reduction, None, avg_factor, _dist.world(fn, dist_sync)).to(pred.dtype)


def _check_mode(mode: object) -> None:
    if mode not in ("linear", "square", "log"):
        raise ValueError(f"iou_loss: mode must be one of 'linear', 'square', 'log'; got {mode!r}")


@boxdoc
@numpy_arguments
def iou_loss(
    pred: Tensor,
    target: Tensor,
    *,
    box_format: BoxFormat = "xyxy",
    eps: float = 1e-7,
    mode: Literal["linear", "square", "log"] = "linear",
    weight: Weight = None,
    reduction: Reduction = "mean",
    avg_factor: float | Tensor | None = None,
    dist_sync: bool = False,
) -> Tensor:
    r"""IoU loss of matched boxes: 1 - IoU (or 1 - IoU^2, or -log IoU).

    .. math::

        \mathrm{IoU} = \frac{|P \cap G|}{|P \cup G| + \epsilon}, \qquad
        \ell = 1 - \mathrm{IoU} \;\;(\text{linear}), \quad 1 - \mathrm{IoU}^2 \;\;(\text{square}),
        \quad -\log \max(\mathrm{IoU}, \epsilon) \;\;(\text{log, UnitBox})

    In [0, 1] (linear, square). Disjoint boxes all have IoU 0, so the loss is
    flat there: its gradient is exactly zero and a prediction that misses its
    target gets no signal at all. That is why :func:`giou_loss`,
    :func:`diou_loss` and :func:`ciou_loss` exist: each adds a term that
    still pulls disjoint boxes together.

    Args:
        BOX_ARGS
        mode: "linear" (default), "square", or "log" (UnitBox's -ln IoU,
            mmdetection's default; ``get_loss("mmdet.IoULoss")`` presets it).
        dist_sync: all-reduce the batch-dependent normalisation under
            torch.distributed (:mod:`losslab._dist`; README, "Data-parallel training").

    BOX_NOTES

    References:
        Yu, Jiang, Wang, Cao, Huang. UnitBox: An Advanced Object Detection
        Network. ACM MM 2016, arXiv:1608.01471.

    Example:
        >>> import torch, losslab
        >>> pred = torch.tensor([[0.0, 0.0, 2.0, 2.0]], requires_grad=True)
        >>> loss = losslab.iou_loss(pred, torch.tensor([[1.0, 0.0, 3.0, 2.0]]))
        >>> loss.backward()
        >>> loss.round(decimals=4)
        tensor(0.6667, grad_fn=<RoundBackward1>)
    """
    fn = "iou_loss"
    _check_mode(mode)

    def loss_of(pair: Pair, eps: float) -> Tensor:
        if mode == "log":
            return -pair.iou.clamp_min(eps).log()
        return 1.0 - (pair.iou * pair.iou if mode == "square" else pair.iou)

    return _box_loss(fn, pred, target, box_format=box_format, eps=eps, weight=weight, reduction=reduction,
                     avg_factor=avg_factor, loss_of=loss_of, dist_sync=dist_sync)


@boxdoc
@numpy_arguments
def giou_loss(
    pred: Tensor,
    target: Tensor,
    *,
    box_format: BoxFormat = "xyxy",
    eps: float = 1e-7,
    weight: Weight = None,
    reduction: Reduction = "mean",
    avg_factor: float | Tensor | None = None,
    dist_sync: bool = False,
) -> Tensor:
    r"""Generalized IoU loss, as ``torchvision.ops.generalized_box_iou_loss``.

    .. math::

        \ell = 1 - \mathrm{IoU} + \frac{|C| - |P \cup G|}{|C| + \epsilon}

    with C the smallest box enclosing P and G. In [0, 2); for disjoint boxes
    the second term keeps a gradient that shrinks the enclosing box.

    Args:
        BOX_ARGS
        dist_sync: all-reduce the batch-dependent normalisation under
            torch.distributed (:mod:`losslab._dist`; README, "Data-parallel training").

    BOX_NOTES

    References:
        Rezatofighi, Tsoi, Gwak, Sadeghian, Reid, Savarese. Generalized
        Intersection over Union. CVPR 2019, arXiv:1902.09630.

    Example:
        >>> import torch, losslab
        >>> pred = torch.tensor([[0.0, 0.0, 1.0, 1.0]], requires_grad=True)
        >>> loss = losslab.giou_loss(pred, torch.tensor([[2.0, 0.0, 3.0, 1.0]]))  # disjoint
        >>> loss.backward()
        >>> loss.round(decimals=4)
        tensor(1.3333, grad_fn=<RoundBackward1>)
    """
    return _box_loss("giou_loss", pred, target, box_format=box_format, eps=eps, weight=weight,
                     reduction=reduction, avg_factor=avg_factor,
                     loss_of=lambda pair, e: 1.0 - pair.iou + pair.giou_penalty(), dist_sync=dist_sync)


@boxdoc
@numpy_arguments
def diou_loss(
    pred: Tensor,
    target: Tensor,
    *,
    box_format: BoxFormat = "xyxy",
    eps: float = 1e-7,
    weight: Weight = None,
    reduction: Reduction = "mean",
    avg_factor: float | Tensor | None = None,
    dist_sync: bool = False,
) -> Tensor:
    r"""Distance IoU loss, as ``torchvision.ops.distance_box_iou_loss``.

    .. math::

        \ell = 1 - \mathrm{IoU} + \frac{\rho^2(p, g)}{c^2 + \epsilon}

    with :math:`\rho` the distance between the boxes' centres and c the
    diagonal of the smallest enclosing box. In [0, 2); it pulls centres
    together directly, also for disjoint boxes.

    Args:
        BOX_ARGS
        dist_sync: all-reduce the batch-dependent normalisation under
            torch.distributed (:mod:`losslab._dist`; README, "Data-parallel training").

    BOX_NOTES

    References:
        Zheng, Wang, Liu, Li, Ye, Ren. Distance-IoU Loss: Faster and Better
        Learning for Bounding Box Regression. AAAI 2020, arXiv:1911.08287.

    Example:
        >>> import torch, losslab
        >>> pred = torch.tensor([[0.0, 0.0, 2.0, 2.0]], requires_grad=True)
        >>> loss = losslab.diou_loss(pred, torch.tensor([[1.0, 1.0, 3.0, 3.0]]))
        >>> loss.backward()
        >>> loss.round(decimals=4)
        tensor(0.9683, grad_fn=<RoundBackward1>)
    """
    return _box_loss("diou_loss", pred, target, box_format=box_format, eps=eps, weight=weight,
                     reduction=reduction, avg_factor=avg_factor,
                     loss_of=lambda pair, e: 1.0 - pair.iou + pair.centre_penalty(), dist_sync=dist_sync)


def _aspect(w: Tensor, h: Tensor, eps: Tensor) -> Tensor:
    """atan(w / h) with both floored at eps (a length): finite value and gradient for zero-size boxes."""
    return torch.atan(w.clamp_min(eps) / h.clamp_min(eps))


@boxdoc
@numpy_arguments
def ciou_loss(
    pred: Tensor,
    target: Tensor,
    *,
    box_format: BoxFormat = "xyxy",
    eps: float = 1e-7,
    weight: Weight = None,
    reduction: Reduction = "mean",
    avg_factor: float | Tensor | None = None,
    dist_sync: bool = False,
) -> Tensor:
    r"""Complete IoU loss, as ``torchvision.ops.complete_box_iou_loss``: DIoU plus an aspect-ratio term.

    .. math::

        \ell = 1 - \mathrm{IoU} + \frac{\rho^2}{c^2 + \epsilon} + a\, v, \qquad
        v = \frac{4}{\pi^2}\left(\arctan\frac{w_g}{h_g} - \arctan\frac{w_p}{h_p}\right)^2, \qquad
        a = \frac{v}{1 - \mathrm{IoU} + v + \epsilon}

    a is treated as a constant in the gradient (no gradient flows through
    it), as in the paper and torchvision. Widths and heights inside the
    arctangents are floored at eps, so zero-size boxes give finite values
    and gradients (torchvision's ratio is 0/0 there).

    eps enters every denominator here; torchvision's ``complete_box_iou_loss``
    passes its eps only to a (its IoU and DIoU parts keep 1e-7), so the two
    agree at the default eps.

    Published implementations differ here, and losslab follows torchvision:
    mmdetection's ``CIoULoss`` sets a to 0 where IoU <= 0.5, adds eps to the
    heights, and clamps the CIoU to [-1, 1], so its values differ from these
    for boxes that overlap little.

    Args:
        BOX_ARGS
        dist_sync: all-reduce the batch-dependent normalisation under
            torch.distributed (:mod:`losslab._dist`; README, "Data-parallel training").

    BOX_NOTES

    References:
        Zheng, Wang, Ren, Liu, Ye, Hu, Zuo. Enhancing Geometric Factors in
        Model Learning and Inference for Object Detection and Instance
        Segmentation. IEEE TCYB 2021, arXiv:2005.03572 (and arXiv:1911.08287).

    Example:
        >>> import torch, losslab
        >>> pred = torch.tensor([[0.0, 0.0, 4.0, 2.0]], requires_grad=True)
        >>> loss = losslab.ciou_loss(pred, torch.tensor([[1.0, 0.0, 3.0, 3.0]]))
        >>> loss.backward()
        >>> loss.round(decimals=4)
        tensor(0.6268, grad_fn=<RoundBackward1>)
    """

    def loss_of(pair: Pair, eps: float) -> Tensor:
        v = (4.0 / math.pi**2) * (_aspect(pair.wg, pair.hg, pair.eps_length)
                                  - _aspect(pair.wp, pair.hp, pair.eps_length)) ** 2
        with torch.no_grad():
            a = v / (1.0 - pair.iou + v + eps)
        return 1.0 - pair.iou + pair.centre_penalty() + a * v

    return _box_loss("ciou_loss", pred, target, box_format=box_format, eps=eps, weight=weight,
                     reduction=reduction, avg_factor=avg_factor, loss_of=loss_of, dist_sync=dist_sync)


@boxdoc
@numpy_arguments
def eiou_loss(
    pred: Tensor,
    target: Tensor,
    *,
    box_format: BoxFormat = "xyxy",
    eps: float = 1e-7,
    weight: Weight = None,
    reduction: Reduction = "mean",
    avg_factor: float | Tensor | None = None,
    dist_sync: bool = False,
) -> Tensor:
    r"""Efficient IoU loss: DIoU plus width and height differences over the enclosing box's.

    .. math::

        \ell = 1 - \mathrm{IoU} + \frac{\rho^2}{c^2 + \epsilon}
             + \frac{(w_p - w_g)^2}{c_w^2 + \epsilon} + \frac{(h_p - h_g)^2}{c_h^2 + \epsilon}

    with :math:`c_w, c_h` the width and height of the smallest enclosing box.
    Unlike CIoU's aspect-ratio term it penalises width and height directly.
    (mmdetection's ``EIoULoss`` is another loss, the Extended IoU with a
    smooth point, and is not an alias of this one.)

    Args:
        BOX_ARGS
        dist_sync: all-reduce the batch-dependent normalisation under
            torch.distributed (:mod:`losslab._dist`; README, "Data-parallel training").

    BOX_NOTES

    References:
        Zhang, Ren, Zhang, Jia, Wang, Tan. Focal and Efficient IOU Loss for
        Accurate Bounding Box Regression. Neurocomputing 2022, arXiv:2101.08158.

    Example:
        >>> import torch, losslab
        >>> pred = torch.tensor([[0.0, 0.0, 4.0, 2.0]], requires_grad=True)
        >>> loss = losslab.eiou_loss(pred, torch.tensor([[1.0, 0.0, 3.0, 3.0]]))
        >>> loss.backward()
        >>> loss.round(decimals=4)
        tensor(0.9711, grad_fn=<RoundBackward1>)
    """

    def loss_of(pair: Pair, eps: float) -> Tensor:
        dw, dh = pair.wp - pair.wg, pair.hp - pair.hg
        return (1.0 - pair.iou + pair.centre_penalty() + dw * dw / (pair.cw * pair.cw + pair.eps_area)
                + dh * dh / (pair.ch * pair.ch + pair.eps_area))

    return _box_loss("eiou_loss", pred, target, box_format=box_format, eps=eps, weight=weight,
                     reduction=reduction, avg_factor=avg_factor, loss_of=loss_of, dist_sync=dist_sync)


@boxdoc
@numpy_arguments
def siou_loss(
    pred: Tensor,
    target: Tensor,
    *,
    box_format: BoxFormat = "xyxy",
    eps: float = 1e-7,
    weight: Weight = None,
    reduction: Reduction = "mean",
    avg_factor: float | Tensor | None = None,
    dist_sync: bool = False,
) -> Tensor:
    r"""SCYLLA-IoU loss: IoU plus angle-aware distance and shape costs (YOLOv6, mmyolo).

    .. math::

        \ell = 1 - \mathrm{IoU} + \tfrac12 (\Delta + \Omega), \qquad
        \Delta = \sum_{t \in \{x, y\}} \left(1 - e^{-(2 - \Lambda)\,\rho_t}\right), \qquad
        \Omega = \sum_{t \in \{w, h\}} \left(1 - e^{-\omega_t}\right)^4

    with centre offsets :math:`d_x, d_y`, :math:`\rho_x = (d_x / (c_w + \epsilon))^2`,
    :math:`\rho_y = (d_y / (c_h + \epsilon))^2`, :math:`\omega_w = |w_p - w_g| /
    (\max(w_p, w_g) + \epsilon)` (likewise h), and the angle cost
    :math:`\Lambda = \sin 2\alpha = 2 |d_x| |d_y| / (d_x^2 + d_y^2 + \epsilon)`,
    :math:`\alpha` the angle of the line between the centres. The paper writes
    :math:`\Lambda = 1 - 2\sin^2(\arcsin(\sin\alpha) - \pi/4)`, which is the
    same quantity; the closed form has no arcsin, so its gradient is finite
    when the centres coincide (Lambda = 0 there). The shape exponent is the
    paper's theta = 4. In [0, 3).

    Limit: the distance and shape costs divide by lengths (plus eps), so for
    boxes smaller than about 1e-5 their gradient exceeds float16's range
    (65504) and becomes inf when cast back to a float16 input; such boxes
    need float32.

    Args:
        BOX_ARGS
        dist_sync: all-reduce the batch-dependent normalisation under
            torch.distributed (:mod:`losslab._dist`; README, "Data-parallel training").

    BOX_NOTES

    References:
        Gevorgyan. SIoU Loss: More Powerful Learning for Bounding Box
        Regression. 2022, arXiv:2205.12740.

    Example:
        >>> import torch, losslab
        >>> pred = torch.tensor([[0.0, 0.0, 4.0, 2.0]], requires_grad=True)
        >>> loss = losslab.siou_loss(pred, torch.tensor([[1.0, 0.0, 3.0, 3.0]]))
        >>> loss.backward()
        >>> loss.round(decimals=4)
        tensor(0.6422, grad_fn=<RoundBackward1>)
    """

    def loss_of(pair: Pair, eps: float) -> Tensor:
        dx, dy, eps_length = pair.dx, pair.dy, pair.eps_length
        angle = 2.0 * dx.abs() * dy.abs() / (dx * dx + dy * dy + pair.eps_area)
        gamma = 2.0 - angle
        distance = (-torch.expm1(-gamma * (dx / (pair.cw + eps_length)) ** 2)
                    - torch.expm1(-gamma * (dy / (pair.ch + eps_length)) ** 2))
        omega_w = (pair.wp - pair.wg).abs() / (torch.maximum(pair.wp, pair.wg) + eps_length)
        omega_h = (pair.hp - pair.hg).abs() / (torch.maximum(pair.hp, pair.hg) + eps_length)
        shape = (-torch.expm1(-omega_w)) ** 4 + (-torch.expm1(-omega_h)) ** 4
        return 1.0 - pair.iou + 0.5 * (distance + shape)

    return _box_loss("siou_loss", pred, target, box_format=box_format, eps=eps, weight=weight,
                     reduction=reduction, avg_factor=avg_factor, loss_of=loss_of, dist_sync=dist_sync)
