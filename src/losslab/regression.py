"""Elementwise regression losses of box heads: Smooth L1 and Huber."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _dispatch, _dist
from ._checks import (
    broadcast_weight,
    check_avg_factor,
    check_common,
    check_input,
    check_not_bool,
    check_number,
    check_same_shape,
    check_target_tensor,
    compute_dtype,
    numpy_arguments,
)
from ._dispatch import Backends, Call
from ._module import LossModule
from .registry import Alias, LossSpec, register

Reduction = Literal["none", "mean", "sum"]
Weight = Tensor | Sequence[float] | float | None

__all__ = ["smooth_l1_loss", "huber_loss", "SmoothL1Loss", "HuberLoss"]


def _elementwise(fn: str, input: Tensor, target: Tensor, weight: Weight, reduction: str, avg_factor: object,
                 loss_of: Callable[[Tensor], Tensor], dist_sync: bool, native: tuple[str, float]) -> Tensor:
    """Validate and prepare; the dispatcher computes ``loss_of(input - target)`` (composite) or torch's kernel
    ``native`` = ("smooth_l1" | "huber", beta or delta), weights it and reduces."""
    check_input(fn, input)
    avg_factor = check_avg_factor(fn, avg_factor, input)
    check_target_tensor(fn, input, target)
    check_not_bool(fn, target, holds="regression targets")
    check_same_shape(fn, input, target)
    dtype = compute_dtype(input)
    w = None if weight is None else broadcast_weight(fn, "weight", weight, input.shape, input, dtype,
                                                     "the input's shape")
    processes = _dist.world(fn, dist_sync)
    denominator = avg_factor if avg_factor is not None else float(input.numel())
    torch_mean = w is None and avg_factor is None and processes == 1 and input.numel() > 0
    return _dispatch.run(Call(fn, "regression", input, reduction, denominator, processes,
                              {"target": target, "w": w, "avg_factor": avg_factor if isinstance(avg_factor, Tensor)
                               else None}, {"loss_of": loss_of, "native": native, "torch_mean": torch_mean},
                              fusable=False))


def _regression_composite(call: Call) -> tuple[Tensor, str]:
    loss = call.options["loss_of"](call.input.to(call.dtype) - call.tensors["target"].to(call.dtype))
    w = call.tensors["w"]
    return (loss if w is None else loss * w), "elements"


def _regression_native(call: Call) -> tuple[Tensor, str]:
    """torch's smooth_l1_loss / huber_loss: summed (or torch's own mean where it divides by the same count)."""
    kind, parameter = call.options["native"]
    w = call.tensors["w"]
    how = "none" if call.reduction == "none" or w is not None else "sum"
    if call.reduction == "mean" and call.options["torch_mean"]:
        how = "mean"
    x, t = call.input.to(call.dtype), call.tensors["target"].to(call.dtype)
    if kind == "smooth_l1":
        loss = F.smooth_l1_loss(x, t, reduction=how, beta=parameter)
    else:
        loss = F.huber_loss(x, t, reduction=how, delta=parameter)
    if w is not None:
        loss = loss * w
    return loss, {"none": "elements", "sum": "total", "mean": "mean"}[how]


_dispatch.register("regression", Backends(composite=_regression_composite, native=_regression_native))


@numpy_arguments
def smooth_l1_loss(
    input: Tensor,
    target: Tensor,
    *,
    beta: float = 1.0,
    weight: Weight = None,
    reduction: Reduction = "mean",
    avg_factor: float | Tensor | None = None,
    dist_sync: bool = False,
) -> Tensor:
    r"""Smooth L1 loss (Fast R-CNN), as ``torch.nn.functional.smooth_l1_loss``: quadratic below beta, linear above.

    .. math::

        \ell = \begin{cases} 0.5\, d^2 / \beta & |d| < \beta \\ |d| - 0.5\, \beta & \text{otherwise}
        \end{cases}, \qquad d = \text{input} - \text{target}

    ``beta = 0`` is the plain L1 loss :math:`|d|` (gradient sign(d), 0 at d = 0,
    as PyTorch's). Values and gradients equal PyTorch's.

    Args:
        input: predictions of any shape (box deltas, (N, 4) typically).
        target: regression targets of the same shape (no broadcasting).
        beta: the transition point >= 0 (mmdetection's heads often use 1/9).
        weight: non-negative weight that broadcasts to the input's shape
            (per element, or per box as ``weight[:, None]``).
        reduction: "none" | "mean" | "sum"; "mean" divides by the element
            count, or by ``avg_factor``.
        avg_factor: with "mean", divide the sum by this instead (e.g. the
            number of positive anchors); 0 divides by 1.
        dist_sync: all-reduce the batch-dependent normalisation under
            torch.distributed (:mod:`losslab._dist`; README, "Data-parallel training").

    Returns:
        "none": the input's shape; otherwise a scalar.

    Raises:
        TypeError: non-floating input, non-numeric beta.
        ValueError: beta < 0, a target of another shape, a weight that does
            not broadcast or is negative.

    Numerics: beta = 0 takes the L1 branch directly (no 0/0 in the unused
    quadratic branch); half precision is computed in float32.

    References:
        Girshick. Fast R-CNN. ICCV 2015, arXiv:1504.08083.

    Example:
        >>> import torch, losslab
        >>> pred = torch.tensor([[0.5, 2.0], [-1.0, 0.1]], requires_grad=True)
        >>> loss = losslab.smooth_l1_loss(pred, torch.zeros(2, 2), beta=1.0)
        >>> loss.backward()
        >>> loss.round(decimals=4)
        tensor(0.5325, grad_fn=<RoundBackward1>)
    """
    fn = "smooth_l1_loss"
    beta = _check_smooth_l1(fn, beta=beta, reduction=reduction, avg_factor=avg_factor)

    def loss_of(d: Tensor) -> Tensor:
        a = d.abs()
        return a if beta == 0 else torch.where(a < beta, 0.5 * d * d / beta, a - 0.5 * beta)

    return _elementwise(fn, input, target, weight, reduction, avg_factor, loss_of, dist_sync, ("smooth_l1", beta))


@numpy_arguments
def huber_loss(
    input: Tensor,
    target: Tensor,
    *,
    delta: float = 1.0,
    weight: Weight = None,
    reduction: Reduction = "mean",
    avg_factor: float | Tensor | None = None,
    dist_sync: bool = False,
) -> Tensor:
    r"""Huber loss, as ``torch.nn.functional.huber_loss``: quadratic below delta, linear with slope delta above.

    .. math::

        \ell = \begin{cases} 0.5\, d^2 & |d| < \delta \\ \delta\,(|d| - 0.5\, \delta) & \text{otherwise}
        \end{cases}, \qquad d = \text{input} - \text{target}

    so that :math:`\mathrm{Huber}_\delta = \delta \cdot \mathrm{SmoothL1}_{\beta=\delta}`.
    Values and gradients equal PyTorch's.

    Args:
        input: predictions of any shape.
        target: targets of the same shape (no broadcasting).
        delta: the transition point, > 0.
        weight: non-negative weight that broadcasts to the input's shape.
        reduction: "none" | "mean" | "sum"; "mean" divides by the element
            count, or by ``avg_factor``.
        avg_factor: with "mean", divide the sum by this instead; 0 divides by 1.
        dist_sync: all-reduce the batch-dependent normalisation under
            torch.distributed (:mod:`losslab._dist`; README, "Data-parallel training").

    Returns:
        "none": the input's shape; otherwise a scalar.

    Raises:
        TypeError: non-floating input, non-numeric delta.
        ValueError: delta <= 0, a target of another shape, a bad weight.

    References:
        Huber. Robust Estimation of a Location Parameter. Annals of
        Mathematical Statistics, 1964.

    Example:
        >>> import torch, losslab
        >>> pred = torch.tensor([0.5, 3.0, -2.0], requires_grad=True)
        >>> loss = losslab.huber_loss(pred, torch.zeros(3), delta=1.5)
        >>> loss.backward()
        >>> loss.round(decimals=4)
        tensor(1.7917, grad_fn=<RoundBackward1>)
    """
    fn = "huber_loss"
    delta = _check_huber(fn, delta=delta, reduction=reduction, avg_factor=avg_factor)

    def loss_of(d: Tensor) -> Tensor:
        a = d.abs()
        return torch.where(a < delta, 0.5 * d * d, delta * (a - 0.5 * delta))

    return _elementwise(fn, input, target, weight, reduction, avg_factor, loss_of, dist_sync, ("huber", delta))


def _check_smooth_l1(fn: str, *, beta: object, **common: object) -> float:
    """The hyperparameters of :func:`smooth_l1_loss` and its twin; beta as a float."""
    check_common(fn, **common)
    return check_number(fn, "beta", beta, low=0.0)


def _check_huber(fn: str, *, delta: object, **common: object) -> float:
    """The hyperparameters of :func:`huber_loss` and its twin; delta as a float."""
    check_common(fn, **common)
    return check_number(fn, "delta", delta, low=0.0, low_open=True)


class SmoothL1Loss(LossModule, function=smooth_l1_loss, validate=_check_smooth_l1):
    """Module form of :func:`losslab.smooth_l1_loss`.

    Keyword arguments only: ``torch.nn.SmoothL1Loss``'s first positional arguments are the deprecated
    ``size_average`` and ``reduce``, which losslab does not accept, so pass ``reduction`` and ``beta`` by
    keyword (``SmoothL1Loss(reduction="sum", beta=0.5)`` works in both libraries).
    """

    def __init__(self, *, beta: float = 1.0, weight: Weight = None, reduction: Reduction = "mean",
                 avg_factor: float | Tensor | None = None, dist_sync: bool = False) -> None:
        super().__init__(beta=beta, weight=weight, reduction=reduction, avg_factor=avg_factor, dist_sync=dist_sync)


class HuberLoss(LossModule, function=huber_loss, validate=_check_huber, positional=("reduction", "delta")):
    """Module form of :func:`losslab.huber_loss`.

    ``reduction`` and ``delta`` are also its positional arguments, in ``torch.nn.HuberLoss``'s order, so
    ``HuberLoss("sum", 0.5)`` is a drop-in for ``torch.nn.HuberLoss("sum", 0.5)``; the others are
    keyword-only.
    """

    def __init__(self, reduction: Reduction = "mean", delta: float = 1.0, *, weight: Weight = None,
                 avg_factor: float | Tensor | None = None, dist_sync: bool = False) -> None:
        super().__init__(delta=delta, weight=weight, reduction=reduction, avg_factor=avg_factor, dist_sync=dist_sync)


# ----------------------------------------------------------------------------
# registration


register(LossSpec(
    name="smooth_l1_loss", function=smooth_l1_loss, module=SmoothL1Loss, family="regression",
    formula="|d| < beta: 0.5 d^2 / beta;  else |d| - 0.5 beta", input="values",
    aliases=(Alias("SmoothL1Loss", "PyTorch", "values"), Alias("Smooth L1", "paper", "values"),
             Alias("SmoothL1Loss", "mmdetection", "values")),
))

register(LossSpec(
    name="huber_loss", function=huber_loss, module=HuberLoss, family="regression",
    formula="|d| < delta: 0.5 d^2;  else delta (|d| - 0.5 delta)", input="values",
    aliases=(Alias("HuberLoss", "PyTorch", "values"), Alias("Huber", "Keras", "values"),
             Alias("huber_loss", "optax", "values", {"reduction": "none"}, qualified=True,
                   note="optax returns the elementwise loss (reduction 'none')")),
))
