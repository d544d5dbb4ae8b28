"""MONAI's GeneralizedDiceLoss (1.6) and optax's multiclass_generalized_dice_loss, reproduced.

What differs from losslab's :func:`losslab.generalized_dice_loss`:

* MONAI: probabilities in (``sigmoid=True`` / ``softmax=True`` for logits),
  one-hot targets of the input's shape (``to_onehot_y=True`` takes (N, 1, *)
  indices), one ratio per image (``batch=False``), the raw weights
  1 / T_c^2 with ``smooth_nr`` / ``smooth_dr`` = 1e-5 added to the raw
  weighted sums (so the smoothing weighs in on large volumes), an absent
  class given the largest finite weight of its image (of the batch with
  ``batch=True``), and all-zero weights, loss 1 - smooth_nr / smooth_dr,
  where no class is present.
* optax: not one ratio but the mean over images and classes of w_c times
  each image's per-class Dice loss 1 - (2 I + 2 s) / (P + T + 2 s), with
  w_c = 1 / (T_c^2 + 1e-7) over the whole batch scaled to average 1; an
  absent class gets 1e7 before scaling, nearly all the weight.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor

from .._checks import (
    check_bool,
    check_input,
    check_number,
    check_reduction,
    check_target_tensor,
    check_unit_interval,
    compute_dtype,
    describe,
    shape_str,
    values_checked,
)
from .._module import LossModule
from ..registry import Alias, add_aliases
from ..segmentation import dice_loss
from ._common import empty_batch
from ._monai import _monai_prepare
from .segmentation import _TINY
from .segmentation_monai import _monai_construction

__all__ = ["monai_generalized_dice_loss", "optax_multiclass_generalized_dice_loss", "MonaiGeneralizedDiceLoss",
           "OptaxMulticlassGeneralizedDiceLoss"]

Reduction = Literal["none", "mean", "sum"]
_MONAI_POWERS = {"square": 2, "simple": 1, "uniform": 0}


def _check_monai_gdl(fn: str, *, w_type: Any, batch: Any, soft_label: Any, reduction: Any,
                     **construction: Any) -> None:
    """The hyperparameters of :func:`monai_generalized_dice_loss` and its twin."""
    if w_type not in _MONAI_POWERS:
        raise ValueError(f"{fn}: w_type must be one of 'square', 'simple', 'uniform'; got {describe(w_type)}")
    check_bool(fn, "batch", batch)
    check_bool(fn, "soft_label", soft_label)
    check_reduction(fn, reduction)
    _monai_construction(fn, **construction)


def monai_generalized_dice_loss(
    input: Tensor,
    target: Tensor,
    *,
    include_background: bool = True,
    to_onehot_y: bool = False,
    sigmoid: bool = False,
    softmax: bool = False,
    other_act: Callable[[Tensor], Tensor] | None = None,
    w_type: Literal["square", "simple", "uniform"] = "square",
    reduction: Reduction = "mean",
    smooth_nr: float = 1e-5,
    smooth_dr: float = 1e-5,
    batch: bool = False,
    soft_label: bool = False,
) -> Tensor:
    r"""MONAI's ``GeneralizedDiceLoss`` (1.6): probabilities in, one ratio per image, raw weights, MONAI's smoothing.

    .. math::

        \ell_n = 1 - \frac{2 \sum_c w_{n,c} \sum p_{n,c} t_{n,c} + s_{nr}}
                          {\sum_c w_{n,c} (\sum p_{n,c} + \sum t_{n,c}) + s_{dr}}, \qquad
        w_{n,c} = 1 / T_{n,c}^2 \;(\text{"square"}),\; 1 / T_{n,c} \;(\text{"simple"}),\; 1 \;(\text{"uniform"})

    with :math:`T_{n,c} = \sum t_{n,c}`; an infinite weight (an absent class)
    becomes the largest finite weight of the image (0 when no class is
    present). ``batch=True`` sums over the batch first: one ratio, one set
    of weights. "mean" averages :math:`\ell_n` over images; "none" has
    MONAI's shape (N, 1, 1, ..., 1) (``batch=True``: one dim fewer, as MONAI
    reshapes its (1,) result with the input's rank).

    ``soft_label=True`` is MONAI's soft-label intersection
    :math:`(\|p\|_1 + \|t\|_1 - \|p - t\|_1) / 2 = \sum \min(p, t)`, the same
    for hard targets.

    Args:
        input: (N, C, *spatial): probabilities, or logits with ``sigmoid=True``
            or ``softmax=True`` (``other_act``: any activation).
        target: one-hot (N, C, *spatial), or class indices (N, 1, *spatial)
            with ``to_onehot_y=True``.
        include_background: False drops channel 0 (after the softmax) before
            the weights are formed.
        to_onehot_y: True for (N, 1, *) class indices.
        sigmoid: apply a sigmoid to the input.
        softmax: apply a softmax over dim 1 (ignored with one channel, with
            MONAI's warning).
        other_act: another activation (a callable).
        w_type: "square", "simple" or "uniform".
        reduction: "none" | "mean" | "sum" over the per-image losses.
        smooth_nr: >= 0, added to the numerator.
        smooth_dr: >= 0, added to the denominator.
        batch: True for one ratio over the whole batch.
        soft_label: True for MONAI's soft-label intersection.

    Returns:
        "mean" and "sum": shape (); "none": (N, 1, 1, ...) (``batch=True``:
        (1, 1, ...)).

    Raises:
        ValueError: more than one activation, an unknown w_type, a target
            that does not fit, probabilities outside [0, 1] without an
            activation, negative smoothing.

    Differences from MONAI: the weights are computed in the input's
    precision (MONAI: float32); inputs outside [0, 1] without an activation
    raise; where MONAI divides 0 by 0 (smooth_dr = 0 and no class present)
    this gives loss 0, not NaN; an empty batch gives 0.

    References:
        Sudre et al. Generalised Dice overlap as a deep learning loss function
        for highly unbalanced segmentations. DLMIA 2017, arXiv:1707.03237.

    Example:
        >>> import torch, losslab
        >>> loss_fn = losslab.get_loss("monai.GeneralizedDiceLoss", to_onehot_y=True, softmax=True)
        >>> x = torch.randn(2, 3, 8, 8, requires_grad=True)
        >>> loss_fn(x, torch.randint(0, 3, (2, 1, 8, 8))).backward()
    """
    fn = "monai.GeneralizedDiceLoss"
    if (empty := empty_batch(input, reduction)) is not None:  # 0, where the framework gives NaN
        return empty
    _check_monai_gdl(fn, w_type=w_type, batch=batch, soft_label=soft_label, reduction=reduction,
                     include_background=include_background, to_onehot_y=to_onehot_y, sigmoid=sigmoid,
                     softmax=softmax, other_act=other_act, smooth_nr=smooth_nr, smooth_dr=smooth_dr)
    smooth_nr, smooth_dr = float(smooth_nr), float(smooth_dr)
    p, t = _monai_prepare(fn, input, target, include_background=include_background, to_onehot_y=to_onehot_y,
                          sigmoid=sigmoid, softmax=softmax, other_act=other_act, ignore_index=None)
    dims = (0, *range(2, p.ndim)) if batch else tuple(range(2, p.ndim))
    overlap = torch.minimum(p, t) if soft_label else p * t
    tp, sizes, volume = overlap.sum(dim=dims), p.sum(dim=dims) + t.sum(dim=dims), t.sum(dim=dims).detach()
    power = _MONAI_POWERS[w_type]
    if power:
        present = volume > 0
        w = torch.where(present, 1.0 / torch.where(present, volume, torch.ones_like(volume)) ** power,
                        torch.zeros_like(volume))
        largest = w.amax(dim=-1, keepdim=True) if w.shape[-1] else w.sum(-1, keepdim=True)
        w = torch.where(present, w, largest)
    else:
        w = torch.ones_like(volume)
    num = 2.0 * (w * tp).sum(-1, keepdim=True) + smooth_nr  # (N, 1), or (1,) with batch
    den = (w * sizes).sum(-1, keepdim=True) + smooth_dr
    f = 1.0 - torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), torch.ones_like(num))
    if reduction == "mean":
        f = f.mean()
    elif reduction == "sum":
        f = f.sum()
    else:
        f = f.reshape(list(f.shape[:2]) + [1] * (input.ndim - 2))
    return f.to(input.dtype)


def optax_multiclass_generalized_dice_loss(
    input: Tensor,
    target: Tensor,
    *,
    smooth: float = 1.0,
    apply_softmax: bool = True,
    ignore_background: bool = False,
) -> Tensor:
    r"""optax's ``multiclass_generalized_dice_loss``: a weighted mean of per-image Dice losses (not one ratio).

    .. math::

        \ell = \frac{1}{N C'} \sum_n \sum_{c} w_c \Big(1 - \frac{2 I_{n,c} + 2 s}{P_{n,c} + T_{n,c} + 2 s}\Big),
        \qquad w_c = C \frac{u_c}{\sum_k u_k}, \quad u_c = \frac{1}{F_c^2 + 10^{-7}}

    with per-image soft counts :math:`I = \sum p t`, :math:`P = \sum p`,
    :math:`T = \sum t` over the spatial positions, :math:`F_c` the target
    volume of class c over the whole batch, C' the classes kept
    (``ignore_background=True`` drops class 0 after the weights are scaled
    over all C). optax writes its per-class Dice as its Tversky index with
    alpha = beta = 0.5, (I + s) / (I + FP / 2 + FN / 2 + s), which is the Dice
    above with smooth 2 s. Despite its reference to Sudre et al., the classes
    are not pooled into one ratio (that is :func:`losslab.generalized_dice_loss`),
    and a class absent from the batch gets u = 1e7, nearly all the weight,
    so its false positives dominate the loss.

    Layout: channels first, (N, C, *spatial), as every losslab loss (optax
    takes channels last: ``x.movedim(-1, 1)`` converts).

    Args:
        input: logits (N, C, *spatial), or probabilities with
            ``apply_softmax=False``.
        target: one-hot (or soft) targets of the input's shape.
        smooth: >= 0, optax's smoothing (2 x smooth in Dice's form).
        apply_softmax: softmax over dim 1 (a sigmoid with one channel);
            False takes probabilities, which must sum to 1 over dim 1
            (optax's check, rtol 1e-5).
        ignore_background: drop class 0 from the mean (with C > 1).

    Returns:
        shape (): optax has no ``reduction``.

    Raises:
        ValueError: target shape unlike the input's, ``apply_softmax=False``
            with probabilities that do not sum to 1 over dim 1 (optax's
            message), values outside [0, 1].

    Differences from optax: channels first; an empty batch, and a 0/0 at
    smooth = 0, give 0 instead of NaN.

    References:
        Sudre et al. Generalised Dice overlap as a deep learning loss function
        for highly unbalanced segmentations. DLMIA 2017, arXiv:1707.03237.

    Example:
        >>> import torch, losslab
        >>> loss_fn = losslab.get_loss("optax.multiclass_generalized_dice_loss")
        >>> x = torch.randn(2, 3, 8, 8, requires_grad=True)
        >>> t = torch.nn.functional.one_hot(torch.randint(0, 3, (2, 8, 8)), 3).movedim(-1, 1).float()
        >>> loss_fn(x, t).backward()
    """
    fn = "optax.multiclass_generalized_dice_loss"
    if (empty := empty_batch(input, "mean")) is not None:  # 0, where the framework gives NaN
        return empty
    _check_optax_gdl(fn, smooth=smooth, apply_softmax=apply_softmax, ignore_background=ignore_background)
    check_input(fn, input, min_ndim=2, what="(N, C, *spatial), channels first")
    check_target_tensor(fn, input, target)
    if target.shape != input.shape:
        raise ValueError(f"{fn}: target must have the input's shape {shape_str(input.shape)} (one-hot, channels "
                         f"first); got {shape_str(target.shape)}")
    dtype = compute_dtype(input)
    x, t = input.to(dtype), target.to(dtype)
    check_unit_interval(fn, "target", t)
    num_classes = x.shape[1]
    if apply_softmax:
        p = torch.sigmoid(x) if num_classes == 1 else torch.softmax(x, dim=1)
    else:
        if values_checked(x) and x.numel():
            sums = x.detach().sum(dim=1)
            if not bool(torch.isclose(sums, torch.ones_like(sums), rtol=1e-5, atol=1e-8).all()):
                raise ValueError(f"{fn}: When apply_softmax=False, predictions must be valid probability "
                                 f"distributions that sum to 1 along the class axis (dim 1 here). Found sum range: "
                                 f"[{sums.min().item():.6f}, {sums.max().item():.6f}]")
        check_unit_interval(fn, "input (probabilities, apply_softmax=False)", x)
        p = x
    frequency = t.detach().sum(dim=(0, *range(2, t.ndim)))
    u = 1.0 / (frequency ** 2 + 1e-7)
    w = u / u.sum() * num_classes
    # optax's Dice of image n and class c is losslab's per-image Dice with smooth 2 s
    per_class = dice_loss(p, t, mode="multilabel", from_logits=False, smooth=2.0 * float(smooth), eps=_TINY,
                          per_image=True, reduction="none") * w  # (N, C)
    if ignore_background and num_classes > 1:
        per_class = per_class[:, 1:]
    return per_class.mean().to(input.dtype)


def _check_optax_gdl(fn: str, *, smooth: Any, apply_softmax: Any, ignore_background: Any) -> None:
    """The hyperparameters of :func:`optax_multiclass_generalized_dice_loss` and its twin."""
    check_number(fn, "smooth", smooth, low=0.0)
    check_bool(fn, "apply_softmax", apply_softmax)
    check_bool(fn, "ignore_background", ignore_background)


class MonaiGeneralizedDiceLoss(LossModule, function=monai_generalized_dice_loss, validate=_check_monai_gdl):
    """MONAI's ``GeneralizedDiceLoss`` (:func:`losslab.frameworks.generalized_dice.monai_generalized_dice_loss`)."""

    loss_name = "monai.GeneralizedDiceLoss"

    def __init__(self, *, include_background: bool = True, to_onehot_y: bool = False, sigmoid: bool = False,
                 softmax: bool = False, other_act: Callable[[Tensor], Tensor] | None = None,
                 w_type: Literal["square", "simple", "uniform"] = "square", reduction: Reduction = "mean",
                 smooth_nr: float = 1e-5, smooth_dr: float = 1e-5, batch: bool = False,
                 soft_label: bool = False) -> None:
        super().__init__(include_background=include_background, to_onehot_y=to_onehot_y, sigmoid=sigmoid,
                         softmax=softmax, other_act=other_act, w_type=w_type, reduction=reduction,
                         smooth_nr=smooth_nr, smooth_dr=smooth_dr, batch=batch, soft_label=soft_label)


class OptaxMulticlassGeneralizedDiceLoss(LossModule, function=optax_multiclass_generalized_dice_loss,
                                         validate=_check_optax_gdl):
    """optax's ``multiclass_generalized_dice_loss``
    (:func:`losslab.frameworks.generalized_dice.optax_multiclass_generalized_dice_loss`)."""

    loss_name = "optax.multiclass_generalized_dice_loss"

    def __init__(self, *, smooth: float = 1.0, apply_softmax: bool = True, ignore_background: bool = False) -> None:
        super().__init__(smooth=smooth, apply_softmax=apply_softmax, ignore_background=ignore_background)


add_aliases(
    "generalized_dice_loss",
    Alias("GeneralizedDiceLoss", "MONAI", input="probabilities", qualified=True, build=MonaiGeneralizedDiceLoss,
          note="probabilities in (sigmoid/softmax=True for logits); per image; raw weights 1 / T^2 with "
               "smooth_nr = smooth_dr = 1e-5 on the raw weighted sums; no class present: loss 0"),
    Alias("multiclass_generalized_dice_loss", "optax", build=OptaxMulticlassGeneralizedDiceLoss,
          note="not one ratio: the mean of w_c x per-image Dice losses, w_c = 1 / (T_c^2 + 1e-7) scaled to "
               "average 1 (an absent class takes nearly all the weight); smooth 1 (Dice's 2)"),
)
