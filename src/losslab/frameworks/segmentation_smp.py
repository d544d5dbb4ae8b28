"""segmentation_models_pytorch's DiceLoss, JaccardLoss and TverskyLoss (0.5 / 0.6), on losslab's overlap losses.

One ratio per class over the whole batch; ``smooth`` (default 0) is added to
TP (its Dice is the Tversky index at alpha = beta = 0.5, so its smooth s is
losslab's Dice smooth 2 s); the denominator is clamped at ``eps`` 1e-7;
classes absent from the target give 0 but still count in the mean;
Tversky's ``gamma`` powers the mean over classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from .._checks import (
    check_bool,
    check_common,
    check_input,
    check_number,
    check_target_tensor,
    compute_dtype,
    describe,
)
from .._module import LossModule
from ..registry import Alias, add_aliases
from ..segmentation import dice_loss, jaccard_loss, tversky_loss
from ._common import empty_batch

__all__ = ["smp_dice_loss", "smp_jaccard_loss", "smp_tversky_loss", "SmpDiceLoss", "SmpJaccardLoss",
           "SmpTverskyLoss"]

Reduction = Literal["none", "mean", "sum"]


# ----------------------------------------------------------------------------
# segmentation_models_pytorch


def _smp_layout(fn: str, input: Tensor, target: Tensor, mode: Any, classes: Any, ignore_index: int | None
                ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """smp's flattening: input (N, C, K), target (N, C, K) or (N, K) indices; presence per class; classes kept."""
    if mode not in ("binary", "multiclass", "multilabel"):
        raise ValueError(f"{fn}: mode must be 'binary', 'multiclass' or 'multilabel'; got {describe(mode)}")
    check_input(fn, input, min_ndim=2 if mode != "binary" else 1, what="(N, C, *)")
    check_target_tensor(fn, input, target)
    if classes is not None:
        if mode == "binary":
            raise ValueError(f"{fn}: classes is not supported with mode='binary' (as in smp)")
        classes = torch.as_tensor(classes, device=input.device).long().reshape(-1)
    n = input.shape[0]
    if mode == "binary":
        if target.numel() != input.numel():
            raise ValueError(f"{fn}: in mode 'binary' the target must have the input's number of elements; "
                             f"got {tuple(target.shape)} for input {tuple(input.shape)}")
        x, y = input.reshape(n, 1, -1), target.reshape(n, 1, -1)
    elif mode == "multilabel":
        if target.numel() != input.numel():
            raise ValueError(f"{fn}: in mode 'multilabel' the target must have the input's shape; got "
                             f"{tuple(target.shape)} for input {tuple(input.shape)}")
        x, y = input.reshape(n, input.shape[1], -1), target.reshape(n, input.shape[1], -1)
    else:
        if target.dtype.is_floating_point or target.numel() * input.shape[1] != input.numel():
            raise ValueError(f"{fn}: in mode 'multiclass' the target must be integer class indices (N, *) of the "
                             f"input's positions; got {describe(target)} of shape {tuple(target.shape)}")
        x, y = input.reshape(n, input.shape[1], -1), target.reshape(n, -1)
    if mode == "multiclass":
        kept = y if ignore_index is None else torch.where(y == ignore_index, torch.full_like(y, -1), y)
        present = torch.stack([(kept == c).any() for c in range(x.shape[1])]) if x.shape[1] else \
            torch.zeros(0, dtype=torch.bool, device=x.device)
    else:
        valid = torch.ones_like(y, dtype=torch.bool) if ignore_index is None else y != ignore_index
        values = torch.where(valid, y.to(compute_dtype(input)), torch.zeros((), dtype=compute_dtype(input),
                                                                          device=y.device))
        hard = (values == 0) | (values == 1)
        if not bool(hard.all()):
            raise ValueError(f"{fn}: soft targets are scored by segmentation_models_pytorch 0.5 with the "
                             f"intersection (sum p + sum t - |p - t|_1) / 2 = sum(min(p, t)) (Wang et al.), "
                             f"another formula; the closest losslab loss is {fn.split('.')[1].lower()[:-4]}_loss "
                             f"(intersection sum(p t), the same for hard targets)")
        present = (values.sum(dim=(0, 2)) > 0)
    return x, y, present, classes


def _smp_reduce(loss: Tensor, present: Tensor, classes: Tensor | None) -> Tensor:
    """smp: absent classes give 0 and still count; ``classes`` selects; the mean."""
    loss = loss * present.to(loss.dtype)
    if classes is not None:
        loss = loss[classes]
    return loss.mean()


def _smp_mode(mode: str) -> str:
    return "multilabel" if mode == "binary" else mode  # binary is laid out as (N, 1, K)


def smp_dice_loss(
    input: Tensor,
    target: Tensor,
    *,
    mode: Literal["binary", "multiclass", "multilabel"],
    classes: Sequence[int] | Tensor | None = None,
    log_loss: bool = False,
    from_logits: bool = True,
    smooth: float = 0.0,
    ignore_index: int | None = None,
    eps: float = 1e-7,
) -> Tensor:
    r"""segmentation_models_pytorch's ``DiceLoss`` (0.5, 0.6): one Dice per class over the batch, absent classes 0.

    .. math::

        \mathrm{Dice}_c = \frac{TP_c + s}{TP_c + (FP_c + FN_c) / 2 + s}
                        = \frac{2\,TP_c + 2 s}{\sum p_c + \sum t_c + 2 s}, \qquad
        \ell = \frac{1}{C} \sum_c [\textstyle\sum t_c > 0]\, (1 - \mathrm{Dice}_c)

    smp's Dice is its Tversky index at alpha = beta = 0.5, so its ``smooth``
    s is added to TP: :func:`losslab.dice_loss` with smooth 2 s, summed over
    the batch ("none" per class), then smp's mask and mean. ``log_loss``:
    :math:`-\log \max(\mathrm{Dice}, \varepsilon)`. The denominator is
    clamped at ``eps``; for a class present in the hard target it is at
    least 1/2, so the clamp acts only where smp drops the class anyway.

    Args:
        mode: "binary" (input and target of N x K elements), "multiclass"
            (input (N, C, *), class indices (N, *)), "multilabel".
        classes: the class indices whose losses are averaged (not in "binary").
        ignore_index: target value whose positions (multiclass) or elements
            leave every sum.

    Raises:
        ValueError: soft targets (values other than 0 and 1): smp 0.5 scores
            them with the intersection sum(min(p, t)), another formula.

    Example:
        >>> import torch, losslab
        >>> loss_fn = losslab.get_loss("smp.DiceLoss", mode="multiclass")
        >>> x = torch.randn(2, 3, 8, 8, requires_grad=True)
        >>> loss_fn(x, torch.randint(0, 3, (2, 8, 8))).backward()
    """
    fn = "smp.DiceLoss"
    if (empty := empty_batch(input, "mean")) is not None:  # 0, where the framework fails or gives NaN
        return empty
    smooth = _check_smp(fn, smooth=smooth, from_logits=from_logits, ignore_index=ignore_index)
    x, y, present, classes = _smp_layout(fn, input, target, mode, classes, ignore_index)
    per_class = dice_loss(x, y, mode=_smp_mode(mode), from_logits=from_logits, smooth=2.0 * smooth, eps=eps,
                          ignore_index=ignore_index, log_loss=log_loss, reduction="none")
    return _smp_reduce(per_class, present, classes)


def smp_jaccard_loss(
    input: Tensor,
    target: Tensor,
    *,
    mode: Literal["binary", "multiclass", "multilabel"],
    classes: Sequence[int] | Tensor | None = None,
    log_loss: bool = False,
    from_logits: bool = True,
    smooth: float = 0.0,
    eps: float = 1e-7,
    ignore_index: int | None = None,
) -> Tensor:
    r"""segmentation_models_pytorch's ``JaccardLoss`` (0.5, 0.6): one IoU per class over the batch, absent classes 0.

    .. math::

        J_c = \frac{TP_c + s}{\max(\sum p_c + \sum t_c - TP_c + s,\ \varepsilon)}, \qquad
        \ell = \frac{1}{C} \sum_c [\textstyle\sum t_c > 0]\, (1 - J_c)

    :func:`losslab.jaccard_loss` with the same smooth and eps, summed over the
    batch, then smp's mask and mean (``log_loss``: :math:`-\log \max(J, \varepsilon)`).
    ``ignore_index`` (smp 0.6; 0.5 has none) drops positions or elements as
    in :func:`smp_dice_loss`. Soft targets raise, as in :func:`smp_dice_loss`.

    Example:
        >>> import torch, losslab
        >>> loss_fn = losslab.get_loss("smp.JaccardLoss", mode="multilabel")
        >>> x = torch.randn(2, 3, 8, 8, requires_grad=True)
        >>> loss_fn(x, (torch.rand(2, 3, 8, 8) > 0.5).float()).backward()
    """
    fn = "smp.JaccardLoss"
    if (empty := empty_batch(input, "mean")) is not None:  # 0, where the framework fails or gives NaN
        return empty
    smooth = _check_smp(fn, smooth=smooth, from_logits=from_logits, ignore_index=ignore_index)
    x, y, present, classes = _smp_layout(fn, input, target, mode, classes, ignore_index)
    per_class = jaccard_loss(x, y, mode=_smp_mode(mode), from_logits=from_logits, smooth=smooth, eps=eps,
                             ignore_index=ignore_index, log_loss=log_loss, reduction="none")
    return _smp_reduce(per_class, present, classes)


def smp_tversky_loss(
    input: Tensor,
    target: Tensor,
    *,
    mode: Literal["binary", "multiclass", "multilabel"],
    classes: Sequence[int] | Tensor | None = None,
    log_loss: bool = False,
    from_logits: bool = True,
    smooth: float = 0.0,
    ignore_index: int | None = None,
    eps: float = 1e-7,
    alpha: float = 0.5,
    beta: float = 0.5,
    gamma: float = 1.0,
) -> Tensor:
    r"""segmentation_models_pytorch's ``TverskyLoss`` (0.5, 0.6): its Dice with the Tversky index, gamma after the mean.

    .. math::

        \mathrm{TI}_c = \frac{TP_c + s}{\max(TP_c + \alpha FP_c + \beta FN_c + s,\ \varepsilon)}, \qquad
        \ell = \Bigl(\frac{1}{C} \sum_c [\textstyle\sum t_c > 0]\, (1 - \mathrm{TI}_c)\Bigr)^{\gamma}

    alpha weighs false positives, beta false negatives (Salehi et al.'s, and
    losslab's, convention). smp powers the mean over classes by ``gamma``,
    not each class's loss (losslab's focal Tversky powers each class).
    :func:`losslab.tversky_loss` (gamma 1) per class over the batch;
    ``log_loss`` takes :math:`-\log \max(1 - \ell_c, \varepsilon)` of those
    (exact to rounding of 1 - (1 - TI)). Soft targets raise, as in
    :func:`smp_dice_loss`.

    Example:
        >>> import torch, losslab
        >>> loss_fn = losslab.get_loss("smp.TverskyLoss", mode="binary", alpha=0.3, beta=0.7)
        >>> x = torch.randn(2, 1, 8, 8, requires_grad=True)
        >>> loss_fn(x, (torch.rand(2, 1, 8, 8) > 0.5).float()).backward()
    """
    fn = "smp.TverskyLoss"
    if (empty := empty_batch(input, "mean")) is not None:  # 0, where the framework fails or gives NaN
        return empty
    smooth, gamma = _check_smp_tversky(fn, smooth=smooth, gamma=gamma, log_loss=log_loss, from_logits=from_logits,
                                       ignore_index=ignore_index)
    x, y, present, classes = _smp_layout(fn, input, target, mode, classes, ignore_index)
    per_class = tversky_loss(x, y, mode=_smp_mode(mode), from_logits=from_logits, alpha=alpha, beta=beta,
                             smooth=smooth, eps=eps, ignore_index=ignore_index, reduction="none")
    if log_loss:
        per_class = -(1.0 - per_class).clamp_min(eps).log()
    return _smp_reduce(per_class, present, classes) ** gamma




def _check_smp(fn: str, *, smooth: Any, **common: Any) -> float:
    """The hyperparameters of :func:`smp_dice_loss` and :func:`smp_jaccard_loss` and their twins checked before
    the input (mode and classes are checked with it); smooth as a float."""
    smooth = check_number(fn, "smooth", smooth, low=0.0)
    check_common(fn, **common)
    return smooth


def _check_smp_tversky(fn: str, *, smooth: Any, gamma: Any, log_loss: Any, **common: Any) -> tuple[float, float]:
    """As :func:`_check_smp`, for :func:`smp_tversky_loss` and its twin: smooth and gamma as floats."""
    smooth = check_number(fn, "smooth", smooth, low=0.0)
    gamma = check_number(fn, "gamma", gamma, low=0.0)
    check_bool(fn, "log_loss", log_loss)
    check_common(fn, **common)
    return smooth, gamma


class SmpDiceLoss(LossModule, function=smp_dice_loss, validate=_check_smp):
    """segmentation_models_pytorch's ``DiceLoss`` (:func:`losslab.frameworks.segmentation.smp_dice_loss`)."""

    loss_name = "smp.DiceLoss"

    def __init__(self, *, mode: Literal["binary", "multiclass", "multilabel"],
                 classes: Sequence[int] | Tensor | None = None, log_loss: bool = False, from_logits: bool = True,
                 smooth: float = 0.0, ignore_index: int | None = None, eps: float = 1e-7) -> None:
        super().__init__(mode=mode, classes=classes, log_loss=log_loss, from_logits=from_logits, smooth=smooth,
                         ignore_index=ignore_index, eps=eps)


class SmpJaccardLoss(LossModule, function=smp_jaccard_loss, validate=_check_smp):
    """segmentation_models_pytorch's ``JaccardLoss`` (:func:`losslab.frameworks.segmentation.smp_jaccard_loss`)."""

    loss_name = "smp.JaccardLoss"

    def __init__(self, *, mode: Literal["binary", "multiclass", "multilabel"],
                 classes: Sequence[int] | Tensor | None = None, log_loss: bool = False, from_logits: bool = True,
                 smooth: float = 0.0, eps: float = 1e-7, ignore_index: int | None = None) -> None:
        super().__init__(mode=mode, classes=classes, log_loss=log_loss, from_logits=from_logits, smooth=smooth,
                         eps=eps, ignore_index=ignore_index)


class SmpTverskyLoss(LossModule, function=smp_tversky_loss, validate=_check_smp_tversky):
    """segmentation_models_pytorch's ``TverskyLoss`` (:func:`losslab.frameworks.segmentation.smp_tversky_loss`)."""

    loss_name = "smp.TverskyLoss"

    def __init__(self, *, mode: Literal["binary", "multiclass", "multilabel"],
                 classes: Sequence[int] | Tensor | None = None, log_loss: bool = False, from_logits: bool = True,
                 smooth: float = 0.0, ignore_index: int | None = None, eps: float = 1e-7, alpha: float = 0.5,
                 beta: float = 0.5, gamma: float = 1.0) -> None:
        super().__init__(mode=mode, classes=classes, log_loss=log_loss, from_logits=from_logits, smooth=smooth,
                         ignore_index=ignore_index, eps=eps, alpha=alpha, beta=beta, gamma=gamma)


_SMP = "smooth added to TP (Dice: losslab's 2 x smooth), default 0; over the batch; absent classes 0 but counted"
add_aliases("dice_loss",
    Alias("DiceLoss", "segmentation_models_pytorch", qualified=True, build=SmpDiceLoss, note=_SMP),
)
add_aliases(
    "jaccard_loss",
    Alias("JaccardLoss", "segmentation_models_pytorch", qualified=True, build=SmpJaccardLoss,
          note="smooth default 0; over the batch; absent classes 0 but counted"),
)
add_aliases(
    "tversky_loss",
    Alias("TverskyLoss", "segmentation_models_pytorch", qualified=True, build=SmpTverskyLoss,
          note=_SMP.split(" (Dice")[0] + "; gamma powers the mean over classes"),
)
