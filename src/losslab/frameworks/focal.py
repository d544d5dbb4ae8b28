"""kornia's, MONAI's and segmentation_models_pytorch's focal losses, on losslab's focal losses.

What differs from losslab's own :func:`losslab.softmax_focal_loss` and
:func:`losslab.sigmoid_focal_loss`, and is reproduced here:

* kornia (0.7 to 0.9) and MONAI give a scalar softmax ``alpha`` as
  ``1 - alpha`` to class 0 (background) and ``alpha`` to every other class;
  losslab's scalar alpha scales every class alike (Keras' convention).
* kornia's "mean" divides by N x C x pixels (the element count of its
  per-class (N, C, *) "none" output, ignored pixels included); losslab's by
  the kept positions. kornia's default reduction is "none".
* MONAI's focal loss is the sigmoid (one-vs-rest) form by default, without
  alpha; its "mean" is over N x C x pixels, its "sum" averages each image's
  pixels first.
* segmentation_models_pytorch's (0.6) multiclass focal loss is the sigmoid
  focal loss of each class against the rest, each averaged over the kept
  positions, then averaged over classes (0.5 summed them); alpha None.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from .._checks import (
    check_alpha,
    check_bool,
    check_class_indices,
    check_common,
    check_input,
    check_target_tensor,
    class_vector,
    describe,
    is_number,
    shape_str,
)
from .._module import LossModule
from ..focal import sigmoid_focal_loss, softmax_focal_loss
from ..registry import Alias, add_aliases
from ._common import _background_alpha, _check_hard, class_slices, monai_ignore_mask, reduce
from ._monai import _along, _monai_target

Reduction = Literal["none", "mean", "sum"]

__all__ = ["kornia_focal_loss", "kornia_binary_focal_loss", "monai_focal_loss", "smp_focal_loss",
           "tfa_sigmoid_focal_loss", "mmcv_sigmoid_focal_loss", "KorniaFocalLoss", "KorniaBinaryFocalLoss",
           "MonaiFocalLoss", "SmpFocalLoss", "TfaSigmoidFocalLoss", "MmcvSigmoidFocalLoss"]


def kornia_focal_loss(
    input: Tensor,
    target: Tensor,
    *,
    alpha: float | None,
    gamma: float = 2.0,
    reduction: Reduction = "none",
    weight: Tensor | Sequence[float] | None = None,
    ignore_index: int | None = -100,
) -> Tensor:
    r"""kornia's ``focal_loss`` / ``FocalLoss`` (0.7 to 0.9): the softmax focal loss with kornia's conventions.

    .. math::

        \ell_{n,c} = -\alpha_c\, w_c\, [c = t_n]\, (1 - p_{n,c})^{\gamma} \log p_{n,c},
        \qquad \alpha_0 = 1 - \alpha, \quad \alpha_{c > 0} = \alpha

    Args:
        input: logits (N, C, *).
        target: class indices (N, *).
        alpha: required, as in kornia: a float in [0, 1] (class 0 gets
            1 - alpha, the others alpha) or None (no weighting).
        gamma: focusing parameter >= 0.
        reduction: "none" (kornia's default) gives the (N, C, *) per-class
            slices, 0 off the target class; "mean" divides their sum by
            N x C x pixels, ignored pixels included; "sum".
        weight: per-class factors (C,), multiplied in, not normalised.
        ignore_index: target value whose pixels give 0.

    Example:
        >>> import torch, losslab
        >>> loss_fn = losslab.get_loss("kornia.FocalLoss", alpha=0.5, reduction="mean")
        >>> x = torch.randn(2, 3, 4, 4, requires_grad=True)
        >>> loss_fn(x, torch.randint(0, 3, (2, 4, 4))).backward()
    """
    fn = "kornia.focal_loss"
    _check_scalar_alpha(fn, alpha=alpha, gamma=gamma, reduction=reduction, ignore_index=ignore_index)
    check_input(fn, input, min_ndim=2, what="(N, C, *)")
    check_target_tensor(fn, input, target)
    check_class_indices(fn, target, input.shape[1], ignore_index)
    factors = _background_alpha(fn, alpha, input.shape[1], input)
    if weight is not None:
        weight = class_vector(fn, "weight", weight, input.shape[1], input, torch.float64)
        factors = weight if factors is None else factors * weight
    per = softmax_focal_loss(input, target, alpha=factors, gamma=gamma, ignore_index=ignore_index, reduction="none")
    if reduction == "none":
        return class_slices(per, target, input.shape[1], ignore_index)
    return reduce(fn, per, reduction, input.numel())


def kornia_binary_focal_loss(
    input: Tensor,
    target: Tensor,
    *,
    alpha: float | None = 0.25,
    gamma: float = 2.0,
    reduction: Reduction = "none",
    pos_weight: Tensor | Sequence[float] | None = None,
    weight: Tensor | Sequence[float] | None = None,
    ignore_index: int | None = -100,
) -> Tensor:
    r"""kornia's ``binary_focal_loss_with_logits``: the sigmoid focal loss, "mean" over every element.

    The same loss as :func:`losslab.sigmoid_focal_loss` for hard labels;
    soft labels raise where values are checked (kornia weighs their positive
    term by :math:`\sigma(-x)^\gamma` and their negative by
    :math:`\sigma(x)^\gamma`, another formula). kornia's default reduction
    is "none"; its "mean" counts ignored elements (``target ==
    ignore_index``) in the denominator. ``weight`` (C,) multiplies both
    terms, ``pos_weight`` (C,) the positive term, as kornia's.

    Example:
        >>> import torch, losslab
        >>> loss_fn = losslab.get_loss("kornia.binary_focal_loss_with_logits", reduction="mean")
        >>> x = torch.randn(4, 3, requires_grad=True)
        >>> loss_fn(x, torch.randint(0, 2, (4, 3)).float()).backward()
    """
    fn = "kornia.binary_focal_loss_with_logits"
    _check_scalar_alpha(fn, alpha=alpha, gamma=gamma, reduction=reduction, ignore_index=ignore_index)
    check_input(fn, input, min_ndim=2, what="(N, C, *)")
    check_target_tensor(fn, input, target)
    if target.shape != input.shape:
        raise ValueError(f"{fn}: target shape {shape_str(target.shape)} does not match input shape "
                         f"{shape_str(input.shape)}")
    alpha = check_alpha(fn, alpha, per_class=False, expected="a float in [0, 1] or None")
    kept = target if ignore_index is None else torch.where(target == ignore_index, 0, target)
    _check_hard(fn, kept, "kornia")
    shape = (-1,) + (1,) * (input.ndim - 2)
    factor = None
    if weight is not None:
        factor = class_vector(fn, "weight", weight, input.shape[1], input, input.dtype).reshape(shape)
    if pos_weight is not None:
        pos = class_vector(fn, "pos_weight", pos_weight, input.shape[1], input, input.dtype).reshape(shape)
        pos = torch.where(kept == 1, pos, 1.0)
        factor = pos if factor is None else factor * pos
    loss = sigmoid_focal_loss(input, target, alpha=alpha, gamma=gamma, weight=factor, ignore_index=ignore_index,
                              reduction="none")
    return reduce(fn, loss, reduction, input.numel())


def monai_focal_loss(
    input: Tensor,
    target: Tensor,
    *,
    include_background: bool = True,
    to_onehot_y: bool = False,
    gamma: float = 2.0,
    alpha: float | Sequence[float] | Tensor | None = None,
    weight: float | Sequence[float] | Tensor | None = None,
    reduction: Reduction = "mean",
    use_softmax: bool = False,
    ignore_index: int | None = None,
) -> Tensor:
    r"""MONAI's ``FocalLoss``: sigmoid focal loss per channel by default, MONAI's alpha and denominators.

    * ``use_softmax=False`` (MONAI's default): :func:`losslab.sigmoid_focal_loss`
      of every channel against a one-hot target; a scalar alpha weighs
      positives alpha and negatives 1 - alpha; per-class alpha weighs each
      class's positives only. Targets must be 0 or 1 where values are
      checked: for soft targets MONAI forms the focal factor from
      :math:`\sigma(-x(2t - 1))`, another formula.
    * ``use_softmax=True``: :func:`losslab.softmax_focal_loss`; a scalar
      alpha is 1 - alpha for class 0 and alpha for the others (ignored when
      ``include_background=False``, as in MONAI).
    * ``weight``: a number or per-class factors, multiplied in.
    * ``ignore_index`` (MONAI 1.6): pixels whose label is it (class
      indices), whose one-hot channel ``ignore_index`` is set, or, for a
      value outside [0, C), whose one-hot target is all zero, give 0 in
      every channel and leave the denominators.
    * "none": (N, C', *) per channel; "mean": their sum over N x C' x
      pixels (with ``ignore_index``: over the kept pixels, not times C');
      "sum": each image's and channel's pixels averaged (over the kept
      ones), then summed.

    Example:
        >>> import torch, losslab
        >>> loss_fn = losslab.get_loss("monai.FocalLoss", to_onehot_y=True)
        >>> x = torch.randn(2, 3, 8, 8, requires_grad=True)
        >>> loss_fn(x, torch.randint(0, 3, (2, 1, 8, 8))).backward()
    """
    fn = "monai.FocalLoss"
    _check_monai_focal(fn, include_background=include_background, to_onehot_y=to_onehot_y, use_softmax=use_softmax,
                       gamma=gamma, reduction=reduction, ignore_index=ignore_index)
    check_input(fn, input, min_ndim=2, what="(N, C, *)")
    check_target_tensor(fn, input, target)
    original = target
    if ignore_index is not None and to_onehot_y and input.shape[1] > 1 and not 0 <= ignore_index < input.shape[1]:
        target = torch.where(target == ignore_index, torch.zeros_like(target), target)
    input, target = _monai_target(fn, input, target, to_onehot_y, include_background)
    mask = monai_ignore_mask(original, ignore_index)
    num_classes = input.shape[1]
    alpha_vector: Tensor | None = None
    if isinstance(alpha, (Sequence, Tensor, np.ndarray)) and not isinstance(alpha, (str, bytes)):
        if torch.as_tensor(alpha).ndim == 0:
            alpha = float(torch.as_tensor(alpha))
        else:
            alpha_vector = class_vector(fn, "alpha", alpha, num_classes, input, torch.float64)
    if weight is not None:
        weight = torch.as_tensor(weight, dtype=torch.float64, device=input.device) if is_number(weight) else \
            class_vector(fn, "weight", weight, num_classes, input, torch.float64)
    if use_softmax:
        factors = alpha_vector
        if factors is None and alpha is not None and include_background:
            factors = _background_alpha(fn, alpha, num_classes, input)
        if weight is not None:
            factors = weight.expand(num_classes) if factors is None else factors * weight
        per = softmax_focal_loss(input, target, alpha=factors, gamma=gamma, reduction="none")
        if reduction == "none" or mask is not None:
            hard = bool(((target == 0) | (target == 1)).all()) and bool((target.sum(1) <= 1).all())
            if not hard:
                raise ValueError(f"{fn}: reduction='none' or ignore_index with use_softmax=True needs one-hot "
                                 f"targets in losslab (per-class terms of soft targets are not kept)")
            per = class_slices(per, target.argmax(1), num_classes, None)
    else:
        _check_hard(fn, target, "MONAI")
        elementwise = weight
        if alpha_vector is not None:
            shape = (-1,) + (1,) * (input.ndim - 2)
            per_class = torch.where(target == 1, alpha_vector.reshape(shape).to(input.dtype), 1.0)
            elementwise = per_class if elementwise is None else per_class * _along(elementwise, input)
            scalar_alpha = None
        else:
            scalar_alpha = check_alpha(fn, alpha, per_class=False, expected="a float, per-class values or None")
        per = sigmoid_focal_loss(input, target, alpha=scalar_alpha, gamma=gamma, reduction="none",
                                 weight=None if elementwise is None else _along(elementwise, input))
    spatial = list(range(per.ndim - (input.ndim - 2), per.ndim))  # per is (N, C', *), or (N, *) summed over classes
    if mask is not None:
        mask = mask.to(per.dtype)
        per = per * mask
    if reduction == "none":
        return per
    if reduction == "sum":
        if mask is None:
            return reduce(fn, per.mean(dim=spatial) if spatial else per, "sum")
        return reduce(fn, per.sum(dim=spatial) / mask.sum(dim=spatial).clamp(min=1), "sum")
    if reduction == "mean" and mask is not None:
        return per.sum() / mask.sum().clamp(min=1)
    return reduce(fn, per, reduction, input.numel())


def smp_focal_loss(
    input: Tensor,
    target: Tensor,
    *,
    mode: Literal["binary", "multiclass", "multilabel"],
    alpha: float | None = None,
    gamma: float = 2.0,
    ignore_index: int | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""segmentation_models_pytorch's ``FocalLoss`` (0.6): sigmoid focal terms, averaged per class, then over classes.

    * "binary": :func:`losslab.sigmoid_focal_loss` of every element against
      a target of the input's shape ((N, 1, *) or (N, *)), "mean" over the
      kept elements.
    * "multiclass": each class's sigmoid focal loss against the rest (the
      one-hot of the (N, *) class indices), averaged over the kept positions,
      then averaged over the classes (smp 0.5 summed them: multiply by C).
    * "multilabel": each channel's loss averaged over its kept elements,
      then over the channels.

    alpha: None (smp's default) or a float: positives alpha, negatives
    1 - alpha. ``ignore_index``: a target value whose positions (multiclass)
    or elements are dropped. "none" gives the elementwise losses, 0 where
    ignored; "sum" their sum.

    Example:
        >>> import torch, losslab
        >>> loss_fn = losslab.get_loss("smp.FocalLoss", mode="multiclass")
        >>> x = torch.randn(2, 3, 4, 4, requires_grad=True)
        >>> loss_fn(x, torch.randint(0, 3, (2, 4, 4))).backward()
    """
    fn = "smp.FocalLoss"
    _check_smp_focal(fn, mode=mode, alpha=alpha, gamma=gamma, ignore_index=ignore_index, reduction=reduction)
    check_input(fn, input, min_ndim=1, what="of at least one dimension")
    if not isinstance(target, Tensor):
        raise TypeError(f"{fn}: target must be a tensor; got {describe(target)}")
    alpha = check_alpha(fn, alpha, per_class=False, expected="a float in [0, 1] or None")
    if mode == "binary":
        if target.shape != input.shape and target.numel() == input.numel():
            target = target.reshape(input.shape)
        return sigmoid_focal_loss(input, target.to(input.dtype), alpha=alpha, gamma=gamma, ignore_index=ignore_index,
                                  reduction=reduction)
    check_input(fn, input, min_ndim=2, what="(N, C, *)")
    if mode == "multiclass":
        if target.dtype.is_floating_point:
            raise TypeError(f"{fn}: multiclass mode takes integer class indices (N, *); got {describe(target)}")
        kept = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
        index = torch.where(kept, target.long(), torch.full_like(target.long(), input.shape[1]))  # C: background
        kept = kept.unsqueeze(1).expand(input.shape)
        per = sigmoid_focal_loss(input, index, alpha=alpha, gamma=gamma, reduction="none")
    else:
        kept = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
        clean = torch.where(kept, target, torch.zeros_like(target)).to(input.dtype)
        per = sigmoid_focal_loss(input, clean, alpha=alpha, gamma=gamma, reduction="none")
    per = per * kept.to(per.dtype)
    if reduction != "mean":
        return reduce(fn, per, reduction)
    dims = [0] + list(range(2, per.ndim))
    per_class = per.sum(dims) / kept.sum(dims).clamp(min=1)
    return per_class.mean()


def tfa_sigmoid_focal_loss(
    input: Tensor,
    target: Tensor,
    *,
    from_logits: bool = False,
    alpha: float | None = 0.25,
    gamma: float = 2.0,
    reduction: Reduction = "none",
) -> Tensor:
    r"""TensorFlow Addons' ``SigmoidFocalCrossEntropy``: probabilities in, summed over the last axis per example.

    :func:`losslab.sigmoid_focal_loss` of every element, summed over the
    last dimension: "none" (TensorFlow Addons' default) gives shape
    ``input.shape[:-1]``; "mean" averages those sums (Keras'
    sum_over_batch_size); "sum". Keras clips probabilities to
    [1e-7, 1 - 1e-7] where losslab floors the log at -100: the two differ
    only for probabilities within 1e-7 of 0 or 1.

    Example:
        >>> import torch, losslab
        >>> loss_fn = losslab.get_loss("tfa.SigmoidFocalCrossEntropy")
        >>> p = torch.tensor([[0.9, 0.2], [0.3, 0.6]], requires_grad=True)
        >>> loss_fn(p, torch.tensor([[1.0, 0.0], [0.0, 1.0]])).sum().backward()
    """
    fn = "tfa.SigmoidFocalCrossEntropy"
    _check_scalar_alpha(fn, alpha=alpha, gamma=gamma, from_logits=from_logits, reduction=reduction)
    check_input(fn, input, min_ndim=1, what="of at least one dimension")
    per = sigmoid_focal_loss(input, target, alpha=alpha, gamma=gamma, from_logits=from_logits,
                             reduction="none").sum(dim=-1)
    return reduce(fn, per, reduction)


def mmcv_sigmoid_focal_loss(
    input: Tensor,
    target: Tensor,
    *,
    gamma: float = 2.0,
    alpha: float = 0.25,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""mmcv's ``ops.sigmoid_focal_loss``: one-vs-rest sigmoid focal loss of (N, C) logits, "mean" divides by N.

    :func:`losslab.sigmoid_focal_loss` with class-index targets (N,) (index C
    = background), whose "mean" mmcv divides by the number of samples N, not
    by N x C ("none" gives (N, C)). mmcv's kernel floors the probabilities at
    float32's smallest normal number inside the log, which matters only for
    logits beyond about +-87.

    Example:
        >>> import torch, losslab
        >>> loss_fn = losslab.get_loss("mmcv.sigmoid_focal_loss")
        >>> x = torch.randn(4, 3, requires_grad=True)
        >>> loss_fn(x, torch.tensor([0, 3, 2, 1])).backward()
    """
    fn = "mmcv.sigmoid_focal_loss"
    _check_scalar_alpha(fn, alpha=alpha, gamma=gamma, reduction=reduction)
    check_input(fn, input, min_ndim=2, what="(N, C, *)")
    per = sigmoid_focal_loss(input, target, alpha=alpha, gamma=gamma, reduction="none")
    return reduce(fn, per, reduction, input.shape[0])


def _check_scalar_alpha(fn: str, *, alpha: object, **common: object) -> float | None:
    """The hyperparameters of kornia's, TensorFlow Addons' and mmcv's focal losses and their twins: a scalar
    alpha (a float, or None), and the common ones."""
    alpha = check_alpha(fn, alpha, per_class=False, expected="a float in [0, 1] or None")
    check_common(fn, **common)
    return alpha


def _check_monai_focal(fn: str, *, include_background: object, to_onehot_y: object, use_softmax: object,
                       **common: object) -> None:
    """The hyperparameters of :func:`monai_focal_loss` and its twin (alpha and weight: with the input's classes)."""
    for name, value in (("include_background", include_background), ("to_onehot_y", to_onehot_y),
                        ("use_softmax", use_softmax)):
        check_bool(fn, name, value)
    check_common(fn, **common)


def _check_smp_focal(fn: str, *, mode: object, alpha: object, **common: object) -> None:
    """The hyperparameters of :func:`smp_focal_loss` and its twin."""
    if mode not in ("binary", "multiclass", "multilabel"):
        raise ValueError(f"{fn}: mode must be 'binary', 'multiclass' or 'multilabel'; got {describe(mode)}")
    check_alpha(fn, alpha, per_class=False, expected="a float in [0, 1] or None")
    check_common(fn, **common)


class MmcvSigmoidFocalLoss(LossModule, function=mmcv_sigmoid_focal_loss, validate=_check_scalar_alpha):
    """mmcv's ``sigmoid_focal_loss`` (:func:`losslab.frameworks.focal.mmcv_sigmoid_focal_loss`)."""

    loss_name = "mmcv.sigmoid_focal_loss"

    def __init__(self, *, gamma: float = 2.0, alpha: float = 0.25, reduction: Reduction = "mean") -> None:
        super().__init__(gamma=gamma, alpha=alpha, reduction=reduction)


class TfaSigmoidFocalLoss(LossModule, function=tfa_sigmoid_focal_loss, validate=_check_scalar_alpha):
    """TensorFlow Addons' ``SigmoidFocalCrossEntropy`` (:func:`losslab.frameworks.focal.tfa_sigmoid_focal_loss`)."""

    loss_name = "tfa.SigmoidFocalCrossEntropy"

    def __init__(self, *, from_logits: bool = False, alpha: float | None = 0.25, gamma: float = 2.0,
                 reduction: Reduction = "none") -> None:
        super().__init__(from_logits=from_logits, alpha=alpha, gamma=gamma, reduction=reduction)


class KorniaFocalLoss(LossModule, function=kornia_focal_loss, validate=_check_scalar_alpha):
    """kornia's ``FocalLoss`` (:func:`losslab.frameworks.focal.kornia_focal_loss`)."""

    loss_name = "kornia.focal_loss"

    def __init__(self, *, alpha: float | None, gamma: float = 2.0, reduction: Reduction = "none",
                 weight: Tensor | Sequence[float] | None = None, ignore_index: int | None = -100) -> None:
        super().__init__(alpha=alpha, gamma=gamma, reduction=reduction, weight=weight, ignore_index=ignore_index)


class KorniaBinaryFocalLoss(LossModule, function=kornia_binary_focal_loss, validate=_check_scalar_alpha):
    """kornia's ``binary_focal_loss_with_logits`` (:func:`losslab.frameworks.focal.kornia_binary_focal_loss`)."""

    loss_name = "kornia.binary_focal_loss_with_logits"

    def __init__(self, *, alpha: float | None = 0.25, gamma: float = 2.0, reduction: Reduction = "none",
                 pos_weight: Tensor | Sequence[float] | None = None, weight: Tensor | Sequence[float] | None = None,
                 ignore_index: int | None = -100) -> None:
        super().__init__(alpha=alpha, gamma=gamma, reduction=reduction, pos_weight=pos_weight, weight=weight,
                         ignore_index=ignore_index)


class MonaiFocalLoss(LossModule, function=monai_focal_loss, validate=_check_monai_focal):
    """MONAI's ``FocalLoss`` (:func:`losslab.frameworks.focal.monai_focal_loss`)."""

    loss_name = "monai.FocalLoss"

    def __init__(self, *, include_background: bool = True, to_onehot_y: bool = False, gamma: float = 2.0,
                 alpha: float | Sequence[float] | Tensor | None = None,
                 weight: float | Sequence[float] | Tensor | None = None, reduction: Reduction = "mean",
                 use_softmax: bool = False, ignore_index: int | None = None) -> None:
        super().__init__(include_background=include_background, to_onehot_y=to_onehot_y, gamma=gamma, alpha=alpha,
                         weight=weight, reduction=reduction, use_softmax=use_softmax, ignore_index=ignore_index)


class SmpFocalLoss(LossModule, function=smp_focal_loss, validate=_check_smp_focal):
    """segmentation_models_pytorch's ``FocalLoss`` (:func:`losslab.frameworks.focal.smp_focal_loss`)."""

    loss_name = "smp.FocalLoss"

    def __init__(self, *, mode: Literal["binary", "multiclass", "multilabel"], alpha: float | None = None,
                 gamma: float = 2.0, ignore_index: int | None = None, reduction: Reduction = "mean") -> None:
        super().__init__(mode=mode, alpha=alpha, gamma=gamma, ignore_index=ignore_index, reduction=reduction)


_KORNIA_FOCAL = "kornia's softmax focal loss: class 0 gets 1 - alpha; 'mean' over N x C x pixels; default 'none'"
add_aliases(
    "softmax_focal_loss",
    Alias("focal_loss", "kornia", qualified=True, build=KorniaFocalLoss, note=_KORNIA_FOCAL),
    Alias("FocalLoss", "kornia", qualified=True, build=KorniaFocalLoss, note=_KORNIA_FOCAL),
)
add_aliases(
    "sigmoid_focal_loss",
    Alias("binary_focal_loss_with_logits", "kornia", build=KorniaBinaryFocalLoss,
          note="also BinaryFocalLossWithLogits (alpha 0.25 unless given); default reduction 'none'; 'mean' "
               "counts ignored elements"),
    Alias("FocalLoss", "MONAI", qualified=True, build=MonaiFocalLoss,
          note="sigmoid per channel by default, alpha None; use_softmax=True: class 0 gets 1 - alpha"),
    Alias("sigmoid_focal_loss", "mmcv", qualified=True, build=MmcvSigmoidFocalLoss,
          note="mmcv.ops; class-index targets with index C = background; 'mean' divides by N"),
    Alias("SigmoidFocalCrossEntropy", "TensorFlow Addons", "probabilities", build=TfaSigmoidFocalLoss,
          note="probabilities in; each example's loss summed over the last axis; default reduction 'none'"),
    Alias("FocalLoss", "segmentation_models_pytorch", qualified=True, build=SmpFocalLoss,
          note="smp 0.6: alpha None; sigmoid terms averaged per class over kept positions, then over classes"),
)
