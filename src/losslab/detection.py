"""Classification-quality losses of dense detectors: quality focal (GFL), distribution focal (GFL) and varifocal.

They take logits, as the core family does. Quality and varifocal losses are
sigmoid losses against a soft "quality" target (the IoU of the predicted box
with its ground truth); the distribution focal loss is a two-bin
cross-entropy over a discretised box-edge distribution.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _dispatch, _dist, _fused
from ._checks import (
    along_class_dim,
    broadcast_weight,
    check_avg_factor,
    check_bool,
    check_common,
    check_input,
    check_not_bool,
    check_number,
    check_target_tensor,
    check_unit_interval,
    compute_dtype,
    numpy_arguments,
    shape_str,
    values_checked,
)
from ._core import count, focal_weight, reduce, sigmoid_target
from ._dispatch import Backends, Call
from ._module import LossModule
from .registry import Alias, LossSpec, register

Reduction = Literal["none", "mean", "sum"]
Target = Tensor | tuple[Tensor, Tensor]
Weight = Tensor | Sequence[float] | float | None

__all__ = ["quality_focal_loss", "distribution_focal_loss", "varifocal_loss",
           "QualityFocalLoss", "DistributionFocalLoss", "VarifocalLoss"]


def quality_target(fn: str, input: Tensor, target: object, ignore_index: int | None,
                   dtype: torch.dtype) -> tuple[Tensor, Tensor | None]:
    """The soft target y shaped like the input, and the mask of kept elements (None: all kept).

    ``target`` is dense (shaped like the input), class indices (y = 1 at the
    labelled class), or a pair (labels, scores) of shape (N, d1, ...) each: y
    is the score at the labelled class and 0 elsewhere; label C is background.
    """
    if not isinstance(target, (tuple, list)) or not all(isinstance(t, Tensor) for t in target):
        return sigmoid_target(fn, input, target, ignore_index, dtype)  # a tensor, or an error for the non-tensor
    if len(target) != 2:
        raise ValueError(f"{fn}: a pair target must be (labels, scores); got {len(target)} items")
    labels, scores = target
    check_input(fn, input, min_ndim=2, what="(N, C) or (N, C, d1, ..., dk) with a (labels, scores) target")
    index_shape = input.shape[:1] + input.shape[2:]
    for name, value in (("labels", labels), ("scores", scores)):
        check_target_tensor(fn, input, value, name=f"target {name}")
        if value.shape != index_shape:
            raise ValueError(f"{fn}: target {name} must have shape {shape_str(index_shape)} (the input's shape "
                             f"without dim 1); got {shape_str(value.shape)}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise TypeError(f"{fn}: target labels must be integer class indices; got dtype {labels.dtype}")
    if not scores.dtype.is_floating_point:
        raise TypeError(f"{fn}: target scores must be floating point; got dtype {scores.dtype}")
    onehot, valid = sigmoid_target(fn, input, labels, ignore_index, dtype, one_class_indices=True)
    kept = None if ignore_index is None else labels != ignore_index
    s = scores.to(dtype)
    check_unit_interval(fn, "target scores", s, kept)
    if kept is not None:
        s = torch.where(kept, s, torch.zeros_like(s))  # whatever an ignored position holds, it stays out
    return onehot * s.unsqueeze(1), valid


def _log_sigmoids(x: Tensor) -> tuple[Tensor, Tensor]:
    return F.logsigmoid(x), F.logsigmoid(-x)


@numpy_arguments
def quality_focal_loss(
    input: Tensor,
    target: Target,
    *,
    beta: float = 2.0,
    ignore_index: int | None = None,
    weight: Weight = None,
    reduction: Reduction = "mean",
    avg_factor: float | Tensor | None = None,
    dist_sync: bool = False,
) -> Tensor:
    r"""Quality focal loss (Generalized Focal Loss): sigmoid BCE against an IoU-quality target, focused by |y - sigma|.

    .. math::

        \mathrm{QFL}(x, y) = -\lvert y - \sigma \rvert^{\beta}
            \left[(1 - y) \log(1 - \sigma) + y \log \sigma\right], \qquad \sigma = \sigma(x)

    per element. With hard 0/1 targets and ``beta = gamma`` it is
    :func:`sigmoid_focal_loss` without alpha (values and gradients).

    Args:
        input: logits of any shape; (N, C, d1, ..., dk) for the pair target.
        target: either a dense tensor shaped like the input (y in [0, 1]), or
            a pair ``(labels, scores)``: integer labels (N, d1, ..., dk) in
            [0, C] with C = background, and float scores of the same shape in
            [0, 1] (the IoU of each position's box with its ground truth); y is
            the score at the labelled class and 0 at every other class. Integer
            labels alone (without scores) are hard targets (score 1), for C >= 2:
            with one class they raise a ValueError (label 1 would be the
            background; pass ``target.float().unsqueeze(1)``), while the pair
            keeps mmdetection's single-class convention (label 0 the object,
            1 the background).
        beta: focusing exponent >= 0 (the paper's 2).
        ignore_index: dense targets equal to it, or pair positions whose label
            equals it (all C classes), contribute nothing. None disables it.
        weight: non-negative rescaling of each element's loss: a 1-D tensor of
            length C applies along dim 1, any other shape must broadcast to the
            input's shape (mmdetection's per-anchor (N,) weight is
            ``weight[:, None]``).
        reduction: "none" | "mean" | "sum". "mean" is the mean over kept
            elements, or the sum divided by ``avg_factor``.
        avg_factor: with "mean", divide the sum by this instead (GFL divides by
            the sum of the positives' quality scores or their number); 0
            divides by 1. "none" and "sum" ignore it.
        dist_sync: all-reduce the batch-dependent normalisation under
            torch.distributed (:mod:`losslab._dist`; README, "Data-parallel training").

    Returns:
        "none": the input's shape (ignored elements 0); otherwise a scalar.

    Raises:
        TypeError: non-floating input, float labels, integer scores.
        ValueError: beta < 0, targets or scores outside [0, 1], labels outside
            [0, C], shapes that fit neither target form, a negative avg_factor.

    Note: mmdetection's ``QualityFocalLoss`` with (labels, scores) sums each
    anchor's C elements before reducing, so its "none" has shape (N,) and its
    plain "mean" is C times this one; with ``avg_factor`` (as GFL heads call
    it) or "sum" the two agree.

    Numerics: the logs come from ``logsigmoid``; :math:`y - \sigma` is formed
    as :math:`y\,\sigma(-x) - (1 - y)\,\sigma(x)` (exact for hard labels) and
    floored at the smallest normal number before the power, so gradients are
    finite for every beta >= 0 and at logits of +-1e4.

    References:
        Li, Wang, Wu, Chen, Hu, Li, Tang, Yang. Generalized Focal Loss:
        Learning Qualified and Distributed Bounding Boxes for Dense Object
        Detection. NeurIPS 2020, arXiv:2006.04388.

    Example:
        >>> import torch, losslab
        >>> logits = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 0.2, 1.0]], requires_grad=True)
        >>> labels, scores = torch.tensor([0, 3]), torch.tensor([0.8, 0.0])  # class 0 with IoU 0.8; background
        >>> loss = losslab.quality_focal_loss(logits, (labels, scores), avg_factor=1)
        >>> loss.backward()
        >>> loss.round(decimals=4)
        tensor(1.3468, grad_fn=<RoundBackward1>)
    """
    fn = "quality_focal_loss"
    beta = _check_quality_focal(fn, beta=beta, ignore_index=ignore_index, reduction=reduction, avg_factor=avg_factor)
    check_input(fn, input)
    avg_factor = check_avg_factor(fn, avg_factor, input)
    dtype = compute_dtype(input)
    y, valid = quality_target(fn, input, target, ignore_index, dtype)
    w = None if weight is None else along_class_dim(fn, "weight", weight, input, dtype)
    kept = count(valid, y)
    denominator = avg_factor if avg_factor is not None else (kept if kept is not None else float(input.numel()))
    return _dispatch.run(Call(fn, "quality", input, reduction, denominator, _dist.world(fn, dist_sync),
                              {"y": y, "valid": valid, "w": w, "avg_factor": _tensor_or_none(avg_factor)},
                              {"beta": beta}))


def _tensor_or_none(value: object) -> Tensor | None:
    """A tensor avg_factor (the dispatcher's composite takes it where it requires a gradient)."""
    return value if isinstance(value, Tensor) else None


def _quality_composite(call: Call) -> tuple[Tensor, str]:
    y, valid, w = call.tensors["y"], call.tensors["valid"], call.tensors["w"]
    beta = call.options["beta"]
    x = call.input.to(call.dtype)
    log_p, log_1mp = _log_sigmoids(x)
    loss = -(y * log_p + (1.0 - y) * log_1mp)
    if beta:
        distance = (y * torch.sigmoid(-x) - (1.0 - y) * torch.sigmoid(x)).abs()
        loss = loss * focal_weight(distance, beta)
    if w is not None:
        loss = loss * w
    if valid is not None:
        loss = torch.where(valid, loss, torch.zeros_like(loss))
    return loss, "elements"


def _quality_sweep(call: Call) -> tuple[Callable, tuple, tuple]:
    tensors = call.tensors
    return (_fused.quality_sweep, (tensors["y"], tensors["valid"], _fused.spread(tensors["w"], call.input)),
            (call.options["beta"],))


_dispatch.register("quality", Backends(composite=_quality_composite, sweep=_quality_sweep,
                                       eager_pays=lambda call: bool(call.options["beta"])))


@numpy_arguments
def varifocal_loss(
    input: Tensor,
    target: Target,
    *,
    alpha: float = 0.75,
    gamma: float = 2.0,
    iou_weighted: bool = True,
    weight: Weight = None,
    reduction: Reduction = "mean",
    avg_factor: float | Tensor | None = None,
    dist_sync: bool = False,
) -> Tensor:
    r"""Varifocal loss (VarifocalNet): an asymmetric focal loss against an IoU-aware classification score.

    .. math::

        \mathrm{VFL}(p, q) = \begin{cases}
            -q\,\bigl(q \log p + (1 - q) \log(1 - p)\bigr) & q > 0 \\
            -\alpha\, p^{\gamma} \log(1 - p) & q = 0
        \end{cases}, \qquad p = \sigma(x)

    per element; without the leading q when ``iou_weighted=False``. Only
    negatives are down-weighted: positives keep their full (IoU-weighted)
    BCE. With q in {0, 1} it is BCE on positives and alpha times the focal
    loss without alpha on negatives.

    Args:
        input: logits of any shape; (N, C, d1, ..., dk) for the pair target.
        target: the IoU-aware score q in [0, 1], shaped like the input, or the
            ``(labels, scores)`` pair of :func:`quality_focal_loss` (label C is
            background), or integer labels alone (q = 1 at the labelled class;
            an error with one class, as in :func:`quality_focal_loss`).
        alpha: weight of the negatives' term, >= 0 (the paper's 0.75).
        gamma: focusing exponent of the negatives, >= 0.
        iou_weighted: weight positives by q (True) or by 1.
        weight: non-negative rescaling of each element's loss, as in
            :func:`quality_focal_loss`.
        reduction: "none" | "mean" | "sum"; "mean" divides the sum by the
            element count or by ``avg_factor``.
        avg_factor: with "mean", divide the sum by this instead (VFNet uses the
            number of positives); 0 divides by 1.
        dist_sync: all-reduce the batch-dependent normalisation under
            torch.distributed (:mod:`losslab._dist`; README, "Data-parallel training").

    Returns:
        "none": the input's shape; otherwise a scalar.

    Raises:
        TypeError: non-floating input, a non-bool iou_weighted, float labels.
        ValueError: alpha or gamma negative, targets outside [0, 1], labels
            outside [0, C], a target shape that fits neither form.

    Numerics: log p and log(1 - p) come from ``logsigmoid``; the negatives'
    factor :math:`p^\gamma` is floored at the smallest normal number before the
    power, so gradients stay finite for gamma < 1 and saturated logits.

    References:
        Zhang, Wang, Dayoub, Sunderhauf. VarifocalNet: An IoU-aware Dense
        Object Detector. CVPR 2021, arXiv:2008.13367.

    Example:
        >>> import torch, losslab
        >>> logits = torch.tensor([[1.0, -2.0], [0.5, -0.5]], requires_grad=True)
        >>> q = torch.tensor([[0.7, 0.0], [0.0, 0.0]])  # the IoU of a positive's box; 0 for negatives
        >>> loss = losslab.varifocal_loss(logits, q, avg_factor=1)
        >>> loss.backward()
        >>> loss.round(decimals=4)
        tensor(0.7644, grad_fn=<RoundBackward1>)
    """
    fn = "varifocal_loss"
    alpha = _check_varifocal(fn, alpha=alpha, iou_weighted=iou_weighted, gamma=gamma, reduction=reduction,
                             avg_factor=avg_factor)
    check_input(fn, input)
    avg_factor = check_avg_factor(fn, avg_factor, input)
    dtype = compute_dtype(input)
    q, _ = quality_target(fn, input, target, None, dtype)
    w = None if weight is None else along_class_dim(fn, "weight", weight, input, dtype)
    denominator = avg_factor if avg_factor is not None else float(input.numel())
    return _dispatch.run(Call(fn, "varifocal", input, reduction, denominator, _dist.world(fn, dist_sync),
                              {"q": q, "w": w, "avg_factor": _tensor_or_none(avg_factor)},
                              {"alpha": alpha, "gamma": gamma, "iou_weighted": iou_weighted}))


def _varifocal_composite(call: Call) -> tuple[Tensor, str]:
    q, w = call.tensors["q"], call.tensors["w"]
    o = call.options
    x = call.input.to(call.dtype)
    log_p, log_1mp = _log_sigmoids(x)
    positive = -(q * log_p + (1.0 - q) * log_1mp)
    if o["iou_weighted"]:
        positive = q * positive
    negative = -o["alpha"] * focal_weight(torch.sigmoid(x), o["gamma"]) * log_1mp
    loss = torch.where(q > 0, positive, negative)
    if w is not None:
        loss = loss * w
    return loss, "elements"


def _varifocal_sweep(call: Call) -> tuple[Callable, tuple, tuple]:
    o = call.options
    return (_fused.varifocal_sweep, (call.tensors["q"], _fused.spread(call.tensors["w"], call.input)),
            (o["alpha"], o["gamma"], o["iou_weighted"]))


_dispatch.register("varifocal", Backends(composite=_varifocal_composite, sweep=_varifocal_sweep))


@numpy_arguments
def distribution_focal_loss(
    input: Tensor,
    target: Tensor,
    *,
    weight: Weight = None,
    reduction: Reduction = "mean",
    avg_factor: float | Tensor | None = None,
    dist_sync: bool = False,
) -> Tensor:
    r"""Distribution focal loss (Generalized Focal Loss): cross-entropy of the two bins around a continuous target.

    .. math::

        \mathrm{DFL}(S, y) = -\bigl((y_r - y) \log S_{y_l} + (y - y_l) \log S_{y_r}\bigr),
        \qquad y_l = \min(\lfloor y \rfloor, n - 2), \quad y_r = y_l + 1

    with :math:`S = \operatorname{softmax}(x)` over the last dimension of
    :math:`n` bins. It pushes the discrete distribution's mass onto the two
    bins nearest y, in proportions that make its mean y. A target exactly at
    n - 1 puts all the weight on the last bin (no index past the end).

    Args:
        input: logits (..., n_bins) with n_bins >= 2: the bins are the *last*
            dimension (GFL's (N * 4, reg_max + 1) layout).
        target: distances (...) = the input's shape without its last dimension,
            floats in [0, n_bins - 1].
        weight: non-negative per-position weight that broadcasts to the
            target's shape (GFL weights each edge by its box's quality score).
        reduction: "none" | "mean" | "sum"; "mean" divides by the number of
            positions or by ``avg_factor``.
        avg_factor: with "mean", divide the sum by this instead; 0 divides by 1.
        dist_sync: all-reduce the batch-dependent normalisation under
            torch.distributed (:mod:`losslab._dist`; README, "Data-parallel training").

    Returns:
        "none": the target's shape; otherwise a scalar.

    Raises:
        TypeError: non-floating input, a non-tensor target.
        ValueError: fewer than 2 bins, a target shape other than the input's
            without its last dimension, a target outside [0, n_bins - 1]
            (checked where values are checked; unchecked values are clamped
            into range for the bin indices).

    Numerics: log S comes from ``log_softmax``; half precision is computed in
    float32.

    References:
        Li et al. Generalized Focal Loss. NeurIPS 2020, arXiv:2006.04388.

    Example:
        >>> import torch, losslab
        >>> logits = torch.tensor([[0.1, 2.0, 1.0, -1.0], [0.0, 0.0, 0.5, 3.0]], requires_grad=True)
        >>> loss = losslab.distribution_focal_loss(logits, torch.tensor([1.3, 3.0]))
        >>> loss.backward()
        >>> loss.round(decimals=4)
        tensor(0.4581, grad_fn=<RoundBackward1>)
    """
    fn = "distribution_focal_loss"
    check_common(fn, reduction=reduction, avg_factor=avg_factor)
    check_input(fn, input, min_ndim=1, what="(..., n_bins)")
    n_bins = input.shape[-1]
    if n_bins < 2:
        raise ValueError(f"{fn}: input must have at least 2 bins in its last dimension; got shape "
                         f"{shape_str(input.shape)}")
    avg_factor = check_avg_factor(fn, avg_factor, input)
    check_target_tensor(fn, input, target)
    check_not_bool(fn, target, holds="distances in bins")
    if target.shape != input.shape[:-1]:
        raise ValueError(f"{fn}: target must have shape {shape_str(input.shape[:-1])} (the input's shape without "
                         f"its last, bins dimension); got {shape_str(target.shape)}")
    dtype = compute_dtype(input)
    y = target.to(dtype)
    if values_checked(y) and y.numel() and not bool(((y >= 0) & (y <= n_bins - 1)).all()):
        bad = y[~((y >= 0) & (y <= n_bins - 1))].flatten()[0]
        raise ValueError(f"{fn}: target must lie in [0, {n_bins - 1}] (n_bins - 1); got {float(bad.detach())!r}")
    left = torch.nan_to_num(y.detach().floor(), nan=0.0).clamp(0, n_bins - 2)  # in range even when unchecked
    right_weight = y - left
    left_weight = (left + 1.0) - y
    index = left.long().unsqueeze(-1)
    log_s = F.log_softmax(input.to(dtype), dim=-1)
    loss = -(left_weight * log_s.gather(-1, index).squeeze(-1) + right_weight * log_s.gather(-1, index + 1).squeeze(-1))
    if weight is not None:
        loss = loss * broadcast_weight(fn, "weight", weight, target.shape, input, dtype, "the target's shape")
    return reduce(loss, reduction, None, avg_factor, _dist.world(fn, dist_sync)).to(input.dtype)


def _check_quality_focal(fn: str, *, beta: object, **common: object) -> float:
    """The hyperparameters of :func:`quality_focal_loss` and its twin; beta as a float."""
    check_common(fn, **common)
    return check_number(fn, "beta", beta, low=0.0)


def _check_varifocal(fn: str, *, alpha: object, iou_weighted: object, **common: object) -> float:
    """The hyperparameters of :func:`varifocal_loss` and its twin; alpha as a float."""
    check_common(fn, **common)
    alpha = check_number(fn, "alpha", alpha, low=0.0)
    check_bool(fn, "iou_weighted", iou_weighted)
    return alpha


class QualityFocalLoss(LossModule, function=quality_focal_loss, validate=_check_quality_focal):
    """Module form of :func:`losslab.quality_focal_loss`."""

    def __init__(self, *, beta: float = 2.0, ignore_index: int | None = None, weight: Weight = None,
                 reduction: Reduction = "mean", avg_factor: float | Tensor | None = None,
                 dist_sync: bool = False) -> None:
        super().__init__(beta=beta, ignore_index=ignore_index, weight=weight, reduction=reduction,
                         avg_factor=avg_factor, dist_sync=dist_sync)


class VarifocalLoss(LossModule, function=varifocal_loss, validate=_check_varifocal):
    """Module form of :func:`losslab.varifocal_loss`."""

    def __init__(self, *, alpha: float = 0.75, gamma: float = 2.0, iou_weighted: bool = True, weight: Weight = None,
                 reduction: Reduction = "mean", avg_factor: float | Tensor | None = None,
                 dist_sync: bool = False) -> None:
        super().__init__(alpha=alpha, gamma=gamma, iou_weighted=iou_weighted, weight=weight, reduction=reduction,
                         avg_factor=avg_factor, dist_sync=dist_sync)


class DistributionFocalLoss(LossModule, function=distribution_focal_loss):
    """Module form of :func:`losslab.distribution_focal_loss`."""

    def __init__(self, *, weight: Weight = None, reduction: Reduction = "mean",
                 avg_factor: float | Tensor | None = None, dist_sync: bool = False) -> None:
        super().__init__(weight=weight, reduction=reduction, avg_factor=avg_factor, dist_sync=dist_sync)


# ----------------------------------------------------------------------------
# registration


register(LossSpec(
    name="quality_focal_loss", function=quality_focal_loss, module=QualityFocalLoss, family="detection",
    formula="-|y - sigma|^beta [(1 - y) log(1 - sigma) + y log sigma],  sigma = sigmoid(x)",
    aliases=(
        Alias("QFL", "paper"), Alias("Quality Focal Loss", "paper"),
    ),
))

register(LossSpec(
    name="varifocal_loss", function=varifocal_loss, module=VarifocalLoss, family="detection",
    formula="q > 0: -q (q log p + (1 - q) log(1 - p));  q = 0: -alpha p^gamma log(1 - p)",
    aliases=(Alias("VFL", "paper"), Alias("Varifocal Loss", "paper"), Alias("VarifocalLoss", "mmdetection")),
))

register(LossSpec(
    name="distribution_focal_loss", function=distribution_focal_loss, module=DistributionFocalLoss,
    family="detection",
    formula="-((y_r - y) log S_{y_l} + (y - y_l) log S_{y_r}),  S = softmax(x) over the last dim",
    aliases=(Alias("DFL", "paper"), Alias("Distribution Focal Loss", "paper"),
             Alias("DistributionFocalLoss", "mmdetection")),
))
