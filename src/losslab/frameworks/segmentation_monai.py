"""MONAI's DiceLoss, DiceCELoss and DiceFocalLoss (1.6), on losslab's overlap losses.

What differs from losslab's :func:`losslab.dice_loss`, :func:`losslab.dice_ce_loss`
and :func:`losslab.dice_focal_loss`, and is reproduced here: probabilities
in (``sigmoid=True`` / ``softmax=True`` turn the activations on), one-hot
targets of the input's shape (``to_onehot_y=True`` takes (N, 1, *)
indices), one ratio per image and class (``batch=False``) with
``smooth_nr`` / ``smooth_dr`` = 1e-5, ``weight`` multiplied in and then the
plain mean, mean(w L), not sum(w L) / sum(w). DiceCELoss's cross-entropy
always reads the raw input as logits, and DiceFocalLoss's focal term is
MONAI's sigmoid (one-vs-rest) focal loss even with ``softmax=True``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from .._checks import (
    check_bool,
    check_common,
    check_input,
    check_number,
    check_reduction,
    check_target_tensor,
    compute_dtype,
)
from .._module import LossModule
from ..classification import binary_cross_entropy, cross_entropy
from ..registry import Alias, add_aliases
from ..segmentation import dice_loss, jaccard_loss
from ._common import empty_batch
from ._monai import _monai_activation, _monai_one_hot, _monai_prepare, _monai_weight
from .focal import monai_focal_loss
from .segmentation import _TINY

__all__ = ["monai_dice_loss", "monai_dice_ce_loss", "monai_dice_focal_loss", "MonaiDiceLoss", "MonaiDiceCELoss",
           "MonaiDiceFocalLoss"]

Reduction = Literal["none", "mean", "sum"]


# ----------------------------------------------------------------------------
# MONAI


def _monai_construction(fn: str, *, include_background: Any, to_onehot_y: Any, sigmoid: Any, softmax: Any,
                        other_act: Any, **values: Any) -> None:
    """What MONAI checks in its constructors (one activation; smoothing and lambdas >= 0), its flags and the
    common hyperparameters: the validator of :func:`monai_dice_focal_loss` and its twin, and part of the others'."""
    for name, value in (("include_background", include_background), ("to_onehot_y", to_onehot_y),
                        ("sigmoid", sigmoid), ("softmax", softmax)):
        check_bool(fn, name, value)
    _monai_activation(fn, sigmoid, softmax, other_act)
    for name in ("smooth_nr", "smooth_dr", "lambda_dice", "lambda_ce", "lambda_focal"):
        if name in values:
            check_number(fn, name, values[name], low=0.0)
    check_common(fn, **values)


def _check_monai_dice(fn: str, *, squared_pred: Any, jaccard: Any, batch: Any, soft_label: Any, reduction: Any,
                      **construction: Any) -> None:
    """The hyperparameters of :func:`monai_dice_loss` and its twin."""
    for name, value in (("squared_pred", squared_pred), ("jaccard", jaccard), ("batch", batch),
                        ("soft_label", soft_label)):
        check_bool(fn, name, value)
    check_reduction(fn, reduction)
    if soft_label and not squared_pred:
        raise ValueError(f"{fn}: soft_label=True is MONAI's soft-label Dice (intersection (|p|_1 + |t|_1 - "
                         f"|p - t|_1) / 2, Wang et al.), another formula for soft targets; the closest losslab "
                         f"loss is dice_loss (intersection sum(p t), the same for hard targets)")
    _monai_construction(fn, **construction)


def _check_monai_dice_ce(fn: str, *, reduction: Any, **construction: Any) -> None:
    """The hyperparameters of :func:`monai_dice_ce_loss` and its twin: no "none" (as in MONAI)."""
    if reduction not in ("mean", "sum"):
        raise ValueError(f"{fn}: reduction must be one of 'mean', 'sum'; got {reduction!r}")
    _monai_construction(fn, reduction=reduction, **construction)


def _monai_dice_terms(fn: str, p: Tensor, t: Tensor, *, squared_pred: bool, jaccard: bool, smooth_nr: float,
                      smooth_dr: float, batch: bool) -> Tensor:
    """MONAI's 1 - Dice (or 1 - Jaccard) per image and class, (N, C'), or per class over the batch, (C',)."""
    smooth_nr = check_number(fn, "smooth_nr", smooth_nr, low=0.0)
    smooth_dr = check_number(fn, "smooth_dr", smooth_dr, low=0.0)
    if smooth_nr == smooth_dr:
        # MONAI's (2 TP + s) / (sum p + sum t + s) is losslab's Dice with smooth s; its Jaccard,
        # (2 TP + s) / (2 union + s), is losslab's with smooth s / 2. The denominator is >= the smooth, so an
        # eps no larger than it never clamps.
        smooth = smooth_nr / 2 if jaccard else smooth_nr
        loss = jaccard_loss if jaccard else dice_loss
        return loss(p, t, mode="multilabel", from_logits=False, smooth=smooth, eps=smooth or _TINY,
                    per_image=not batch, squared=squared_pred, reduction="none")
    # Different constants in numerator and denominator, which losslab's losses do not take: MONAI's ratio of
    # the same soft counts.
    dims = (0, *range(2, p.ndim)) if batch else tuple(range(2, p.ndim))
    tp = (p * t).sum(dim=dims)
    sizes = (p * p).sum(dim=dims) + (t * t).sum(dim=dims) if squared_pred else p.sum(dim=dims) + t.sum(dim=dims)
    num = 2.0 * tp + smooth_nr
    den = 2.0 * (sizes - tp) + smooth_dr if jaccard else sizes + smooth_dr
    safe = torch.where(den > 0, den, torch.ones_like(den))
    return 1.0 - torch.where(den > 0, num / safe, torch.ones_like(num))


def monai_dice_loss(
    input: Tensor,
    target: Tensor,
    *,
    include_background: bool = True,
    to_onehot_y: bool = False,
    sigmoid: bool = False,
    softmax: bool = False,
    other_act: Callable[[Tensor], Tensor] | None = None,
    squared_pred: bool = False,
    jaccard: bool = False,
    reduction: Reduction = "mean",
    smooth_nr: float = 1e-5,
    smooth_dr: float = 1e-5,
    batch: bool = False,
    weight: float | Sequence[float] | Tensor | None = None,
    soft_label: bool = False,
    ignore_index: int | None = None,
) -> Tensor:
    r"""MONAI's ``DiceLoss`` (1.6): probabilities in, one Dice per image and class, MONAI's smoothing and weights.

    .. math::

        \ell_{n,c} = w_c \left(1 - \frac{2 \sum p_{n,c} t_{n,c} + s_{nr}}
                                      {\sum p_{n,c} + \sum t_{n,c} + s_{dr}}\right)

    (``jaccard=True``: :math:`1 - (2\,TP + s_{nr}) / (2\,(\sum p + \sum t - TP) + s_{dr})`;
    ``squared_pred=True``: sums of squares in the denominator). "mean" is
    the plain mean of :math:`\ell` over images and classes, so ``weight``
    scales the loss rather than weighting an average; "none" has MONAI's
    broadcastable shape (N, C', 1, ..., 1) (``batch=True``: (C', 1, ..., 1)).

    Computed by :func:`losslab.dice_loss` / :func:`losslab.jaccard_loss`
    ("multilabel", per image, smooth = smooth_nr; Jaccard's smooth_nr / 2)
    when smooth_nr = smooth_dr, and from the same soft counts otherwise.

    Args:
        input: (N, C, *spatial): probabilities, or logits with ``sigmoid=True``
            or ``softmax=True`` (``other_act``: any activation).
        target: one-hot (N, C, *spatial), or class indices (N, 1, *spatial)
            with ``to_onehot_y=True``.
        include_background: False drops channel 0 (after the softmax).
        batch: True sums over the batch too: one ratio per class.
        weight: a number or one value per kept class; multiplied in.
        soft_label: MONAI's soft-label form (Wang et al.'s semimetric
            intersection) is another formula: raises ValueError.
        ignore_index: a label (with index targets) or, with one-hot targets,
            a class channel (its pixels leave every class) or a sentinel
            (all-zero pixels leave): those pixels are zeroed in p and t.

    Differences from MONAI: inputs outside [0, 1] without an activation raise
    (MONAI computes a meaningless Dice); where MONAI divides 0 by 0
    (smooth_dr = 0 and an empty class) this gives loss 0, not NaN.

    Example:
        >>> import torch, losslab
        >>> loss_fn = losslab.get_loss("monai.DiceLoss", to_onehot_y=True, softmax=True)
        >>> x = torch.randn(2, 3, 8, 8, requires_grad=True)
        >>> loss_fn(x, torch.randint(0, 3, (2, 1, 8, 8))).backward()
    """
    fn = "monai.DiceLoss"
    if (empty := empty_batch(input, reduction)) is not None:  # 0, where the framework fails or gives NaN
        return empty
    _check_monai_dice(fn, squared_pred=squared_pred, jaccard=jaccard, batch=batch, soft_label=soft_label,
                      reduction=reduction, include_background=include_background, to_onehot_y=to_onehot_y,
                      sigmoid=sigmoid, softmax=softmax, other_act=other_act, smooth_nr=smooth_nr, smooth_dr=smooth_dr,
                      ignore_index=ignore_index)
    p, t = _monai_prepare(fn, input, target, include_background=include_background, to_onehot_y=to_onehot_y,
                          sigmoid=sigmoid, softmax=softmax, other_act=other_act, ignore_index=ignore_index)
    f = _monai_dice_terms(fn, p, t, squared_pred=squared_pred, jaccard=jaccard, smooth_nr=smooth_nr,
                          smooth_dr=smooth_dr, batch=batch)
    w = _monai_weight(fn, weight, t.shape[1], f)
    if w is not None:
        f = f * w
    if reduction == "mean":
        f = f.mean()
    elif reduction == "sum":
        f = f.sum()
    else:
        f = f.reshape(list(f.shape[:2]) + [1] * (input.ndim - 2))
    return f.to(input.dtype)


def _monai_pair_checks(fn: str, input: Tensor, target: Tensor, reduction: Any, lambdas: dict[str, Any],
                       reductions: tuple[str, ...]) -> None:
    check_input(fn, input, min_ndim=3, what="(N, C, *spatial), as MONAI's")
    check_target_tensor(fn, input, target)
    if reduction not in reductions:
        raise ValueError(f"{fn}: reduction must be one of {', '.join(map(repr, reductions))}; got {reduction!r}")
    for name, value in lambdas.items():
        check_number(fn, name, value, low=0.0)
    if input.ndim != target.ndim:
        raise ValueError(f"{fn}: input and target must have the same number of dimensions (class indices as "
                         f"(N, 1, *spatial)); got {tuple(input.shape)} and {tuple(target.shape)}")
    if target.shape[1] not in (1, input.shape[1]):
        raise ValueError(f"{fn}: the target must have 1 channel (class indices) or the input's "
                         f"{input.shape[1]} (one-hot); got {tuple(target.shape)}")


def monai_dice_ce_loss(
    input: Tensor,
    target: Tensor,
    *,
    include_background: bool = True,
    to_onehot_y: bool = False,
    sigmoid: bool = False,
    softmax: bool = False,
    other_act: Callable[[Tensor], Tensor] | None = None,
    squared_pred: bool = False,
    jaccard: bool = False,
    reduction: Literal["mean", "sum"] = "mean",
    smooth_nr: float = 1e-5,
    smooth_dr: float = 1e-5,
    batch: bool = False,
    weight: Tensor | Sequence[float] | None = None,
    lambda_dice: float = 1.0,
    lambda_ce: float = 1.0,
    label_smoothing: float = 0.0,
) -> Tensor:
    r"""MONAI's ``DiceCELoss``: :func:`monai_dice_loss` plus PyTorch's cross-entropy of the raw input.

    .. math::

        \ell = \lambda_{dice}\, \mathrm{Dice}_{MONAI} + \lambda_{ce}\, \mathrm{CE}

    The CE term always reads ``input`` as logits (the activation flags reach
    the Dice term only):

    * C > 1, target (N, 1, *): :func:`losslab.cross_entropy` of the class
      indices, ``weight`` per class, "mean" divided by the sum of the
      targets' weights (PyTorch's);
    * C > 1, one-hot target (N, C, *): :func:`losslab.cross_entropy` with the
      target as class probabilities (softmax over all C channels, also for
      multi-label targets), "mean" over positions whatever the weights;
    * C = 1: :func:`losslab.binary_cross_entropy` with
      ``pos_weight=weight`` and no label smoothing.

    The Dice term gets ``weight`` (without class 0 when
    ``include_background=False``) as MONAI's DiceLoss takes it. "none" does
    not exist (as in MONAI). ``ignore_index`` is not a MONAI argument here.

    Example:
        >>> import torch, losslab
        >>> loss_fn = losslab.get_loss("monai.DiceCELoss", to_onehot_y=True, softmax=True)
        >>> x = torch.randn(2, 3, 8, 8, requires_grad=True)
        >>> loss_fn(x, torch.randint(0, 3, (2, 1, 8, 8))).backward()
    """
    fn = "monai.DiceCELoss"
    if (empty := empty_batch(input, reduction)) is not None:  # 0, where the framework fails or gives NaN
        return empty
    _check_monai_dice_ce(fn, reduction=reduction, include_background=include_background, to_onehot_y=to_onehot_y,
                         sigmoid=sigmoid, softmax=softmax, other_act=other_act, smooth_nr=smooth_nr,
                         smooth_dr=smooth_dr, lambda_dice=lambda_dice, lambda_ce=lambda_ce,
                         label_smoothing=label_smoothing)
    _monai_pair_checks(fn, input, target, reduction, {"lambda_dice": lambda_dice, "lambda_ce": lambda_ce},
                       ("mean", "sum"))
    dice_weight = weight
    if weight is not None and not include_background:
        w = torch.as_tensor(weight)
        dice_weight = w[1:] if w.ndim else w
    dice = monai_dice_loss(input, target, include_background=include_background, to_onehot_y=to_onehot_y,
                           sigmoid=sigmoid, softmax=softmax, other_act=other_act, squared_pred=squared_pred,
                           jaccard=jaccard, reduction=reduction, smooth_nr=smooth_nr, smooth_dr=smooth_dr,
                           batch=batch, weight=dice_weight)
    if input.shape[1] == 1:
        ce = binary_cross_entropy(input, target.to(input.dtype), pos_weight=weight, reduction=reduction)
    elif target.shape[1] == 1:
        labels = target[:, 0]
        ce = cross_entropy(input, labels.round().long() if labels.dtype.is_floating_point else labels.long(),
                           weight=weight, reduction=reduction, label_smoothing=label_smoothing)
    else:
        ce = cross_entropy(input, target.to(input.dtype), weight=weight, reduction=reduction,
                           label_smoothing=label_smoothing)
    return lambda_dice * dice + lambda_ce * ce


def monai_dice_focal_loss(
    input: Tensor,
    target: Tensor,
    *,
    include_background: bool = True,
    to_onehot_y: bool = False,
    sigmoid: bool = False,
    softmax: bool = False,
    other_act: Callable[[Tensor], Tensor] | None = None,
    squared_pred: bool = False,
    jaccard: bool = False,
    reduction: Reduction = "mean",
    smooth_nr: float = 1e-5,
    smooth_dr: float = 1e-5,
    batch: bool = False,
    gamma: float = 2.0,
    weight: float | Sequence[float] | Tensor | None = None,
    lambda_dice: float = 1.0,
    lambda_focal: float = 1.0,
    alpha: float | None = None,
) -> Tensor:
    r"""MONAI's ``DiceFocalLoss``: :func:`monai_dice_loss` plus MONAI's sigmoid focal loss of the raw input.

    .. math::

        \ell = \lambda_{dice}\, \mathrm{Dice}_{MONAI} + \lambda_{focal}\, \mathrm{FL}_{MONAI}

    The focal term is :func:`losslab.frameworks.focal.monai_focal_loss` with
    its default ``use_softmax=False``: each channel's sigmoid focal loss
    against the one-hot target (one-vs-rest), "mean" over N x C' x pixels,
    even when ``softmax=True`` feeds the Dice term softmax probabilities.
    ``weight`` (a number or one value per kept class) and ``alpha`` (positives
    alpha, negatives 1 - alpha) go to the focal term, ``weight`` also to the
    Dice term. "none" adds the Dice term's (N, C', 1, ...) to the focal
    term's (N, C', *) by broadcasting, as MONAI does. Targets must be 0 or 1
    where values are checked: MONAI's focal factor of a soft label is
    another formula.

    Example:
        >>> import torch, losslab
        >>> loss_fn = losslab.get_loss("monai.DiceFocalLoss", to_onehot_y=True, softmax=True)
        >>> x = torch.randn(2, 3, 8, 8, requires_grad=True)
        >>> loss_fn(x, torch.randint(0, 3, (2, 1, 8, 8))).backward()
    """
    fn = "monai.DiceFocalLoss"
    if (empty := empty_batch(input, reduction)) is not None:  # 0, where the framework fails or gives NaN
        return empty
    _monai_construction(fn, include_background=include_background, to_onehot_y=to_onehot_y, sigmoid=sigmoid,
                        softmax=softmax, other_act=other_act, reduction=reduction, smooth_nr=smooth_nr,
                        smooth_dr=smooth_dr, gamma=gamma, lambda_dice=lambda_dice, lambda_focal=lambda_focal)
    _monai_pair_checks(fn, input, target, reduction, {"lambda_dice": lambda_dice, "lambda_focal": lambda_focal},
                       ("none", "mean", "sum"))
    check_bool(fn, "to_onehot_y", to_onehot_y)
    if to_onehot_y:
        if input.shape[1] == 1:
            warnings.warn("single channel prediction, `to_onehot_y=True` ignored.", UserWarning, stacklevel=3)
        else:
            target = _monai_one_hot(fn, target, input.shape[1], compute_dtype(input))
    dice = monai_dice_loss(input, target, include_background=include_background, to_onehot_y=False,
                           sigmoid=sigmoid, softmax=softmax, other_act=other_act, squared_pred=squared_pred,
                           jaccard=jaccard, reduction=reduction, smooth_nr=smooth_nr, smooth_dr=smooth_dr,
                           batch=batch, weight=weight)
    focal = monai_focal_loss(input, target.to(input.dtype), include_background=include_background,
                             to_onehot_y=False, gamma=gamma, alpha=alpha, weight=weight, reduction=reduction)
    return lambda_dice * dice + lambda_focal * focal



class MonaiDiceLoss(LossModule, function=monai_dice_loss, validate=_check_monai_dice):
    """MONAI's ``DiceLoss`` (:func:`losslab.frameworks.segmentation_monai.monai_dice_loss`)."""

    loss_name = "monai.DiceLoss"

    def __init__(self, *, include_background: bool = True, to_onehot_y: bool = False, sigmoid: bool = False,
                 softmax: bool = False, other_act: Callable[[Tensor], Tensor] | None = None, squared_pred: bool = False,
                 jaccard: bool = False, reduction: Reduction = "mean", smooth_nr: float = 1e-5, smooth_dr: float = 1e-5,
                 batch: bool = False, weight: float | Sequence[float] | Tensor | None = None, soft_label: bool = False,
                 ignore_index: int | None = None) -> None:
        super().__init__(include_background=include_background, to_onehot_y=to_onehot_y, sigmoid=sigmoid,
                         softmax=softmax, other_act=other_act, squared_pred=squared_pred, jaccard=jaccard,
                         reduction=reduction, smooth_nr=smooth_nr, smooth_dr=smooth_dr, batch=batch, weight=weight,
                         soft_label=soft_label, ignore_index=ignore_index)


class MonaiDiceCELoss(LossModule, function=monai_dice_ce_loss, validate=_check_monai_dice_ce):
    """MONAI's ``DiceCELoss`` (:func:`losslab.frameworks.segmentation_monai.monai_dice_ce_loss`)."""

    loss_name = "monai.DiceCELoss"

    def __init__(self, *, include_background: bool = True, to_onehot_y: bool = False, sigmoid: bool = False,
                 softmax: bool = False, other_act: Callable[[Tensor], Tensor] | None = None, squared_pred: bool = False,
                 jaccard: bool = False, reduction: Literal["mean", "sum"] = "mean", smooth_nr: float = 1e-5,
                 smooth_dr: float = 1e-5, batch: bool = False, weight: Tensor | Sequence[float] | None = None,
                 lambda_dice: float = 1.0, lambda_ce: float = 1.0, label_smoothing: float = 0.0) -> None:
        super().__init__(include_background=include_background, to_onehot_y=to_onehot_y, sigmoid=sigmoid,
                         softmax=softmax, other_act=other_act, squared_pred=squared_pred, jaccard=jaccard,
                         reduction=reduction, smooth_nr=smooth_nr, smooth_dr=smooth_dr, batch=batch, weight=weight,
                         lambda_dice=lambda_dice, lambda_ce=lambda_ce, label_smoothing=label_smoothing)


class MonaiDiceFocalLoss(LossModule, function=monai_dice_focal_loss, validate=_monai_construction):
    """MONAI's ``DiceFocalLoss`` (:func:`losslab.frameworks.segmentation_monai.monai_dice_focal_loss`)."""

    loss_name = "monai.DiceFocalLoss"

    def __init__(self, *, include_background: bool = True, to_onehot_y: bool = False, sigmoid: bool = False,
                 softmax: bool = False, other_act: Callable[[Tensor], Tensor] | None = None, squared_pred: bool = False,
                 jaccard: bool = False, reduction: Reduction = "mean", smooth_nr: float = 1e-5, smooth_dr: float = 1e-5,
                 batch: bool = False, gamma: float = 2.0, weight: float | Sequence[float] | Tensor | None = None,
                 lambda_dice: float = 1.0, lambda_focal: float = 1.0, alpha: float | None = None) -> None:
        super().__init__(include_background=include_background, to_onehot_y=to_onehot_y, sigmoid=sigmoid,
                         softmax=softmax, other_act=other_act, squared_pred=squared_pred, jaccard=jaccard,
                         reduction=reduction, smooth_nr=smooth_nr, smooth_dr=smooth_dr, batch=batch, gamma=gamma,
                         weight=weight, lambda_dice=lambda_dice, lambda_focal=lambda_focal, alpha=alpha)


_MONAI_DICE = ("probabilities in (sigmoid/softmax=True for logits); per image; smooth_nr = smooth_dr = 1e-5; "
               "'mean' is mean(w L)")
add_aliases(
    "dice_loss",
    Alias("DiceLoss", "MONAI", input="probabilities", qualified=True, build=MonaiDiceLoss, note=_MONAI_DICE),
    Alias("GeneralizedWassersteinDiceLoss", "MONAI", qualified=True,
          unsupported="MONAI's Wasserstein Dice loss (a class-distance matrix), which losslab does not implement; "
                      "the closest losslab loss is dice_loss"),
)
add_aliases(
    "dice_ce_loss",
    Alias("DiceCELoss", "MONAI", qualified=True, build=MonaiDiceCELoss,
          note="MONAI's Dice (activation flags, per image, smooth 1e-5, mean(w L)) + CE of the raw logits "
               "(one-hot targets as probabilities; BCE with pos_weight for one channel)"),
)
add_aliases(
    "dice_focal_loss",
    Alias("GeneralizedDiceFocalLoss", "MONAI", qualified=True,
          unsupported="MONAI's generalised Dice plus focal loss, which losslab does not implement; the closest "
                      "losslab loss is dice_focal_loss (or a combine() of generalized_dice_loss and "
                      "sigmoid_focal_loss)"),
    Alias("DiceFocalLoss", "MONAI", qualified=True, build=MonaiDiceFocalLoss,
          note="MONAI's Dice + MONAI's sigmoid (one-vs-rest) focal loss of the raw logits, even with softmax=True"),
)
