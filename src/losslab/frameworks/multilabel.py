"""timm's and mmpretrain's asymmetric losses, and timm's Poly-1 losses, on losslab's conventions.

What differs from losslab's :func:`losslab.asymmetric_loss` and :func:`losslab.poly_sigmoid_focal_loss`, and
is reproduced here:

* timm's ``AsymmetricLossMultiLabel`` (defaults gamma_neg=4, gamma_pos=1, clip=0.05, eps=1e-8, gradient
  through the focusing weight) clamps p and the shifted 1 - p at eps before the log: the positive loss of
  a logit below about -18.4 is flat (18.42) with no gradient of its log term. It raises one shared factor
  :math:`(1 - p_t)^{\\gamma_+ t + \\gamma_- (1 - t)}` for both terms, which differs from the paper's formula
  for soft targets only. Its released versions return the sum; its main branch adds a ``reduction``
  defaulting to "batchmean" (the sum over N), also accepted here.
* mmpretrain's ``AsymmetricLoss`` (defaults gamma_pos=0, gamma_neg=4, clip=0.05, "mean" over N x C, eps=1e-8)
  takes the log of one interpolated :math:`p_t` (equal to losslab's for 0/1 targets), a sample weight of
  shape (N,), integer class indices (N,) or (N, 1) as one-hot targets, ``loss_weight`` and ``avg_factor``,
  and with ``use_sigmoid=False`` a softmax over the last dimension in place of the sigmoids.
* timm's ``PolyBinaryCrossEntropy`` (epsilon=2, gamma=0, alpha None) weighs both terms by alpha_t (the
  paper's code weighs the focal term only) and smooths targets towards 1/2.

Where these peers give NaN (an empty batch's "mean"; the gradient of :math:`0^{\\gamma}` for gamma < 1 at a
saturated logit) the adapters give 0 and finite gradients.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import (
    check_bool,
    check_input,
    check_number,
    check_same_shape,
    check_target_tensor,
    check_unit_interval,
    compute_dtype,
    describe,
    numpy_arguments,
    shape_str,
    to_tensor,
)
from .._core import upcast
from .._module import LossModule
from ..poly import poly_sigmoid_focal_loss
from ..registry import Alias, add_aliases

__all__ = [
    "MmpretrainAsymmetricLoss",
    "TimmAsymmetricLossMultiLabel",
    "TimmPolyBinaryCrossEntropy",
    "mmpretrain_asymmetric_loss",
    "timm_asymmetric_loss",
    "timm_poly_binary_cross_entropy",
]

_TIMM_REDUCTIONS = ("none", "mean", "sum", "batchmean")


def _reduction(fn: str, reduction: Any, allowed: tuple[str, ...]) -> None:
    if reduction not in allowed:
        raise ValueError(f"{fn}: reduction must be one of {', '.join(map(repr, allowed))}; got {describe(reduction)}")


def _reduce(loss: Tensor, reduction: str, dtype: torch.dtype) -> Tensor:
    """"none", "sum", "mean" (over every element) or "batchmean" (the sum over dim 0's size); 0 for no elements."""
    if reduction == "none":
        return loss.to(dtype)
    total = loss.sum()
    if reduction == "mean":
        total = total / max(loss.numel(), 1)
    elif reduction == "batchmean":
        total = total / max(loss.shape[0] if loss.ndim else 1, 1)
    return total.to(dtype)


def _shared_focus(one_minus_pt: Tensor, exponent: Tensor) -> Tensor:
    """``one_minus_pt ** exponent`` as torch.pow gives it (0^0 = 1, 0^e = 0), with a finite gradient at 0."""
    tiny = torch.finfo(one_minus_pt.dtype).tiny
    powered = one_minus_pt.clamp_min(tiny).pow(exponent)
    return torch.where(one_minus_pt > 0, powered, (exponent == 0).to(one_minus_pt.dtype))


def _dense(fn: str, input: Tensor, target: Tensor) -> Tensor:
    check_target_tensor(fn, input, target)
    check_same_shape(fn, input, target)
    check_unit_interval(fn, "target", target)
    return target


@numpy_arguments
def timm_asymmetric_loss(
    input: Tensor,
    target: Tensor,
    *,
    gamma_neg: float = 4.0,
    gamma_pos: float = 1.0,
    clip: float | None = 0.05,
    eps: float = 1e-8,
    disable_torch_grad_focal_loss: bool = False,
    reduction: str = "sum",
) -> Tensor:
    r"""timm's ``AsymmetricLossMultiLabel``: ASL with timm's defaults, eps clamp and shared focusing factor.

    .. math::

        \ell = -\left[ t \log\max(p, \mathrm{eps}) + (1 - t) \log\max(p_-, \mathrm{eps}) \right]
               (1 - p_t)^{\gamma_+ t + \gamma_- (1 - t)},
        \qquad p_- = \min(1 - p + \mathrm{clip}, 1), \quad p_t = p\, t + p_- (1 - t)

    Args:
        input: logits (N, C).
        target: multi-hot or soft labels shaped like the input, in [0, 1].
        gamma_neg, gamma_pos: focusing parameters >= 0 (timm's 4 and 1).
        clip: the margin added to 1 - p (0 or None disables it).
        eps: the floor of both probabilities before the log.
        disable_torch_grad_focal_loss: stop the gradient through the factor.
        reduction: "sum" (timm's released versions), "batchmean" (sum / N,
            the default of timm's main branch), "mean" or "none".

    Example:
        >>> import torch, losslab
        >>> loss_fn = losslab.get_loss("timm.AsymmetricLossMultiLabel")
        >>> x = torch.randn(4, 5, requires_grad=True)
        >>> loss_fn(x, (torch.rand(4, 5) < 0.3).float()).backward()
    """
    fn = "timm.AsymmetricLossMultiLabel"
    o = _check_timm_asl(fn, gamma_neg=gamma_neg, gamma_pos=gamma_pos, clip=clip, eps=eps,
                        disable_torch_grad_focal_loss=disable_torch_grad_focal_loss, reduction=reduction)
    check_input(fn, input)
    dtype = compute_dtype(input)
    y = _dense(fn, input, target).to(dtype)
    x = upcast(input, dtype)
    log_eps = math.log(o["eps"])
    clip = o["clip"]
    log_pos = F.logsigmoid(x).clamp_min(log_eps)
    if clip:
        xs_neg = (torch.sigmoid(-x) + clip).clamp_max(1.0)
        log_neg = torch.log(xs_neg.clamp_min(o["eps"]))
        one_minus_neg = (torch.sigmoid(x) - clip).clamp_min(0.0)  # 1 - xs_neg
    else:
        log_neg = F.logsigmoid(-x).clamp_min(log_eps)
        one_minus_neg = torch.sigmoid(x)
    loss = y * log_pos + (1.0 - y) * log_neg
    if o["gamma_neg"] > 0 or o["gamma_pos"] > 0:
        one_minus_pt = y * torch.sigmoid(-x) + (1.0 - y) * one_minus_neg
        factor = _shared_focus(one_minus_pt, o["gamma_pos"] * y + o["gamma_neg"] * (1.0 - y))
        loss = loss * (factor.detach() if disable_torch_grad_focal_loss else factor)
    return _reduce(-loss, reduction, input.dtype)


def _check_timm_asl(fn: str, *, gamma_neg: Any, gamma_pos: Any, clip: Any, eps: Any,
                    disable_torch_grad_focal_loss: Any, reduction: Any) -> dict[str, float]:
    _reduction(fn, reduction, _TIMM_REDUCTIONS)
    check_bool(fn, "disable_torch_grad_focal_loss", disable_torch_grad_focal_loss)
    return {"gamma_neg": check_number(fn, "gamma_neg", gamma_neg, low=0.0),
            "gamma_pos": check_number(fn, "gamma_pos", gamma_pos, low=0.0),
            "clip": 0.0 if clip is None else check_number(fn, "clip", clip, low=0.0, high=1.0),
            "eps": check_number(fn, "eps", eps, low=0.0, high=1.0, low_open=True)}


@numpy_arguments
def mmpretrain_asymmetric_loss(
    input: Tensor,
    target: Tensor,
    *,
    gamma_pos: float = 0.0,
    gamma_neg: float = 4.0,
    clip: float | None = 0.05,
    reduction: str = "mean",
    loss_weight: float = 1.0,
    use_sigmoid: bool = True,
    eps: float = 1e-8,
    weight: Tensor | Sequence[float] | None = None,
    avg_factor: float | None = None,
) -> Tensor:
    r"""mmpretrain's ``AsymmetricLoss``: ASL of one interpolated :math:`p_t`, clamped at eps, "mean" over N x C.

    .. math::

        \ell = -\mathrm{loss\_weight}\; w_n \log\max(p_t, \mathrm{eps})\, (1 - p_t)^{\gamma_+ t + \gamma_- (1 - t)},
        \qquad p_t = p\, t + \min(1 - p + \mathrm{clip}, 1)(1 - t)

    with p the sigmoid of the logits, or their softmax over the last
    dimension when ``use_sigmoid=False``.

    Args:
        input: logits (N, C).
        target: labels shaped like the input, or integer class indices (N,)
            or (N, 1), taken as one-hot.
        gamma_pos, gamma_neg: focusing parameters >= 0 (mmpretrain's 0 and 4).
        clip: the margin added to 1 - p (0 or None disables it).
        reduction: "mean" (over every element), "sum" or "none".
        loss_weight: a factor of the result.
        use_sigmoid: False takes the softmax over the last dimension.
        eps: the floor of p_t before the log.
        weight: a per-sample weight of shape (N,).
        avg_factor: with "mean", divide the sum by it (with "sum" it raises,
            as in mmpretrain).

    Example:
        >>> import torch, losslab
        >>> loss_fn = losslab.get_loss("mmpretrain.AsymmetricLoss")
        >>> x = torch.randn(4, 5, requires_grad=True)
        >>> loss_fn(x, torch.randint(0, 5, (4,))).backward()
    """
    fn = "mmpretrain.AsymmetricLoss"
    o = _check_mmpretrain_asl(fn, gamma_pos=gamma_pos, gamma_neg=gamma_neg, clip=clip, reduction=reduction,
                              loss_weight=loss_weight, use_sigmoid=use_sigmoid, eps=eps, avg_factor=avg_factor)
    check_input(fn, input, min_ndim=1, what="(N, C)")
    check_target_tensor(fn, input, target)
    dtype = compute_dtype(input)
    integer = not target.dtype.is_floating_point and target.dtype != torch.bool
    if integer and input.ndim == 2 and target.shape in ((input.shape[0],), (input.shape[0], 1)):
        index = target.reshape(-1).long()
        if index.numel() and (bool((index < 0).any()) or bool((index >= input.shape[-1]).any())):
            raise ValueError(f"{fn}: target class indices must be in [0, {input.shape[-1]})")
        target = F.one_hot(index, input.shape[-1])
    y = _dense(fn, input, target).to(dtype)
    x = upcast(input, dtype)
    if use_sigmoid:
        p, one_minus_p = torch.sigmoid(x), torch.sigmoid(-x)
    else:
        log_p = F.log_softmax(x, dim=-1)
        p, one_minus_p = log_p.exp(), -torch.expm1(log_p)
    clip = o["clip"]
    negative = (one_minus_p + clip).clamp_max(1.0) if clip else one_minus_p
    pt = p * y + negative * (1.0 - y)
    one_minus_pt = y * one_minus_p + (1.0 - y) * ((p - clip).clamp_min(0.0) if clip else p)
    loss = -torch.log(pt.clamp_min(o["eps"])) * _shared_focus(one_minus_pt, o["gamma_pos"] * y
                                                               + o["gamma_neg"] * (1.0 - y))
    if weight is not None:
        w = to_tensor(fn, "weight", weight, input, dtype)
        if w.shape != (input.shape[0],):
            raise ValueError(f"{fn}: weight must have shape ({input.shape[0]},), one value per sample; "
                             f"got {shape_str(w.shape)}")
        loss = loss * (w.reshape(-1, 1) if input.ndim > 1 else w)
    if avg_factor is not None and reduction == "mean":
        out = loss.sum() / avg_factor
    else:
        out = _reduce(loss, reduction, dtype)
    return (o["loss_weight"] * out).to(input.dtype)


def _check_mmpretrain_asl(fn: str, *, gamma_pos: Any, gamma_neg: Any, clip: Any, reduction: Any, loss_weight: Any,
                          use_sigmoid: Any, eps: Any, avg_factor: Any) -> dict[str, float]:
    _reduction(fn, reduction, ("none", "mean", "sum"))
    check_bool(fn, "use_sigmoid", use_sigmoid)
    if avg_factor is not None:
        check_number(fn, "avg_factor", avg_factor, low=0.0, low_open=True)
        if reduction == "sum":
            raise ValueError(f"{fn}: avg_factor can not be used with reduction='sum' (as in mmpretrain); "
                             f"got avg_factor={avg_factor!r}")
    return {"gamma_pos": check_number(fn, "gamma_pos", gamma_pos, low=0.0),
            "gamma_neg": check_number(fn, "gamma_neg", gamma_neg, low=0.0),
            "clip": 0.0 if clip is None else check_number(fn, "clip", clip, low=0.0, high=1.0),
            "loss_weight": check_number(fn, "loss_weight", loss_weight),
            "eps": check_number(fn, "eps", eps, low=0.0, high=1.0, low_open=True)}


@numpy_arguments
def timm_poly_binary_cross_entropy(
    input: Tensor,
    target: Tensor,
    *,
    epsilon: float = 2.0,
    gamma: float = 0.0,
    alpha: float | None = None,
    smoothing: float = 0.0,
    reduction: str = "mean",
) -> Tensor:
    r"""timm's ``PolyBinaryCrossEntropy``: Poly-1 sigmoid focal loss with alpha_t on both terms.

    .. math::

        \ell = \alpha_t \left[ (1 - p_t)^{\gamma} \mathrm{BCE}(x, t) + \epsilon (1 - p_t)^{\gamma + 1} \right],
        \qquad t \leftarrow (1 - s)\, t + s / 2

    Args:
        input: logits (N, C).
        target: multi-hot or soft labels shaped like the input.
        epsilon: the Poly-1 coefficient (timm's 2).
        gamma: focusing parameter >= 0 (timm's 0).
        alpha: positive weight in [0, 1] (negatives 1 - alpha) on both terms, or None.
        smoothing: s in [0, 1), towards 1/2.
        reduction: "mean" (every element), "batchmean" (sum / N), "sum" or "none".

    Example:
        >>> import torch, losslab
        >>> loss_fn = losslab.get_loss("timm.PolyBinaryCrossEntropy", alpha=0.25)
        >>> x = torch.randn(4, 5, requires_grad=True)
        >>> loss_fn(x, (torch.rand(4, 5) < 0.3).float()).backward()
    """
    fn = "timm.PolyBinaryCrossEntropy"
    _check_timm_poly(fn, epsilon=epsilon, gamma=gamma, alpha=alpha, smoothing=smoothing, reduction=reduction)
    check_input(fn, input)
    y = _dense(fn, input, target)
    if smoothing:
        y = y.to(compute_dtype(input)) * (1.0 - smoothing) + 0.5 * smoothing
    loss = poly_sigmoid_focal_loss(input, y, epsilon=epsilon, gamma=gamma, alpha=None, reduction="none")
    if alpha is not None:
        t = y.to(loss.dtype)
        loss = loss * (alpha * t + (1.0 - alpha) * (1.0 - t))
    return _reduce(loss, reduction, input.dtype)


def _check_timm_poly(fn: str, *, epsilon: Any, gamma: Any, alpha: Any, smoothing: Any, reduction: Any) -> None:
    _reduction(fn, reduction, _TIMM_REDUCTIONS)
    check_number(fn, "epsilon", epsilon)
    check_number(fn, "gamma", gamma, low=0.0)
    check_number(fn, "smoothing", smoothing, low=0.0, high=1.0, high_open=True)
    if alpha is not None:
        check_number(fn, "alpha", alpha, low=0.0, high=1.0)


class TimmAsymmetricLossMultiLabel(LossModule, function=timm_asymmetric_loss, validate=_check_timm_asl):
    """timm's ``AsymmetricLossMultiLabel``: :func:`timm_asymmetric_loss`."""

    loss_name = "timm.AsymmetricLossMultiLabel"

    def __init__(self, *, gamma_neg: float = 4.0, gamma_pos: float = 1.0, clip: float | None = 0.05,
                 eps: float = 1e-8, disable_torch_grad_focal_loss: bool = False, reduction: str = "sum") -> None:
        super().__init__(gamma_neg=gamma_neg, gamma_pos=gamma_pos, clip=clip, eps=eps,
                         disable_torch_grad_focal_loss=disable_torch_grad_focal_loss, reduction=reduction)


class MmpretrainAsymmetricLoss(LossModule, function=mmpretrain_asymmetric_loss, validate=_check_mmpretrain_asl):
    """mmpretrain's ``AsymmetricLoss``: :func:`mmpretrain_asymmetric_loss`."""

    loss_name = "mmpretrain.AsymmetricLoss"

    def __init__(self, *, gamma_pos: float = 0.0, gamma_neg: float = 4.0, clip: float | None = 0.05,
                 reduction: str = "mean", loss_weight: float = 1.0, use_sigmoid: bool = True, eps: float = 1e-8,
                 weight: Tensor | Sequence[float] | None = None, avg_factor: float | None = None) -> None:
        super().__init__(gamma_pos=gamma_pos, gamma_neg=gamma_neg, clip=clip, reduction=reduction,
                         loss_weight=loss_weight, use_sigmoid=use_sigmoid, eps=eps, weight=weight,
                         avg_factor=avg_factor)


class TimmPolyBinaryCrossEntropy(LossModule, function=timm_poly_binary_cross_entropy, validate=_check_timm_poly):
    """timm's ``PolyBinaryCrossEntropy``: :func:`timm_poly_binary_cross_entropy`."""

    loss_name = "timm.PolyBinaryCrossEntropy"

    def __init__(self, *, epsilon: float = 2.0, gamma: float = 0.0, alpha: float | None = None,
                 smoothing: float = 0.0, reduction: str = "mean") -> None:
        super().__init__(epsilon=epsilon, gamma=gamma, alpha=alpha, smoothing=smoothing, reduction=reduction)


add_aliases(
    "asymmetric_loss",
    Alias("AsymmetricLossMultiLabel", "timm", build=TimmAsymmetricLossMultiLabel,
          note="gamma_pos=1, eps=1e-8 clamp before the log, one shared factor, the sum"),
    Alias("AsymmetricLoss", "mmpretrain", qualified=True, build=MmpretrainAsymmetricLoss,
          note="log of one interpolated p_t clamped at eps=1e-8; mean over N x C; loss_weight, use_sigmoid"),
    Alias("AsymmetricLossSingleLabel", "timm", qualified=True,
          unsupported="timm's single-label ASL over a softmax (one-hot asymmetric focusing, its own label "
                      "smoothing), a formula losslab does not implement; the closest losslab loss is "
                      "softmax_focal_loss"),
)
add_aliases(
    "poly_cross_entropy",
    Alias("PolyCrossEntropy", "timm",
          note="timm's 'smoothing' is label_smoothing here (timm smooths index targets only); p_t = sum_c t_c p_c"),
)
add_aliases(
    "poly_sigmoid_focal_loss",
    Alias("PolyBinaryCrossEntropy", "timm", build=TimmPolyBinaryCrossEntropy,
          note="epsilon=2, gamma=0; alpha_t weighs both terms; 'mean' over N x C"),
)
