"""The usual Dice pairs: Dice plus cross-entropy, Dice plus focal.

``dice_ce_loss`` and ``dice_focal_loss`` are registered losses of their own
(Dice plus cross-entropy, Dice plus focal), with the cross-entropy or focal
form chosen by the mode: softmax for "multiclass", sigmoid for "binary" and
"multilabel". Weighted sums of any losses (:func:`losslab.combine`,
:class:`losslab.CombinedLoss`) and configs are built in :mod:`losslab.config`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from ._checks import check_alpha, check_number, class_vector, compute_dtype, numpy_arguments
from ._forms import sigmoid_loss, softmax_loss
from ._module import LossModule
from .registry import Alias, LossSpec, register
from .segmentation import check_dice, dice_pipeline

Mode = Literal["binary", "multiclass", "multilabel"]

__all__ = ["dice_ce_loss", "dice_focal_loss", "DiceCELoss", "DiceFocalLoss"]


def _check_reduction(fn: str, reduction: object) -> None:
    if reduction not in ("mean", "sum"):
        raise ValueError(f"{fn}: reduction must be one of 'mean', 'sum'; got {reduction!r} (the terms have "
                         f"different shapes, so there is no 'none')")


def _check_lambdas(fn: str, **lambdas: object) -> None:
    for name, value in lambdas.items():
        check_number(fn, name, value, low=0.0)


def _check_dice_ce(fn: str, *, reduction: object, lambda_dice: object, lambda_ce: object, label_smoothing: object,
                   **dice: object) -> None:
    """The hyperparameters of :func:`dice_ce_loss` and its twin."""
    _check_reduction(fn, reduction)
    _check_lambdas(fn, lambda_dice=lambda_dice, lambda_ce=lambda_ce)
    check_dice(fn, reduction=reduction, **dice)
    check_number(fn, "label_smoothing", label_smoothing, low=0.0, high=1.0)


def _check_dice_focal(fn: str, *, reduction: object, lambda_dice: object, lambda_focal: object, gamma: object,
                      alpha: object, **dice: object) -> float | None:
    """The hyperparameters of :func:`dice_focal_loss` and its twin; alpha as a float or None."""
    _check_reduction(fn, reduction)
    _check_lambdas(fn, lambda_dice=lambda_dice, lambda_focal=lambda_focal)
    check_number(fn, "gamma", gamma, low=0.0)
    alpha = check_alpha(fn, alpha, expected="None or a float in [0, 1]", per_class=False)
    check_dice(fn, reduction=reduction, **dice)
    return alpha


@numpy_arguments
def dice_ce_loss(
    input: Tensor,
    target: Tensor,
    *,
    mode: Mode,
    from_logits: bool = True,
    smooth: float = 1.0,
    eps: float = 1e-7,
    weight: Tensor | Sequence[float] | None = None,
    ignore_index: int | None = None,
    include_background: bool = True,
    per_image: bool = False,
    squared: bool = False,
    log_loss: bool = False,
    label_smoothing: float = 0.0,
    lambda_dice: float = 1.0,
    lambda_ce: float = 1.0,
    reduction: Literal["mean", "sum"] = "mean",
    dist_sync: bool = False,
) -> Tensor:
    r"""Dice plus cross-entropy, the usual pair for segmentation (nnU-Net; MONAI's DiceCELoss differs).

    .. math::

        \ell = \lambda_{dice}\, \mathrm{Dice}(x, t) + \lambda_{ce}\, \mathrm{CE}(x, t)

    with :func:`dice_loss` and, by mode, :func:`cross_entropy` ("multiclass":
    softmax, PyTorch's weighted mean with ``weight``) or
    :func:`binary_cross_entropy` ("binary", "multilabel": sigmoid, ``weight``
    along dim 1, plain mean). The Dice term keeps a gradient on small
    structures; the cross-entropy term keeps every pixel's gradient.

    MONAI's DiceCELoss is a variant, not this loss: its Dice is per image
    with smooth 1e-5, its ``weight`` scales the Dice mean (mean(w L), not the
    weighted average), and for C > 1 its cross-entropy is the softmax CE over
    all channels, also of multi-label one-hot targets (here "multilabel" takes
    the sigmoid BCE). ``get_loss("monai.DiceCELoss")`` reproduces MONAI.

    Args:
        mode: "binary", "multiclass" or "multilabel", as in :func:`dice_loss`.
        from_logits: False when ``input`` holds probabilities.
        smooth: Dice's smoothing term, >= 0.
        eps: Dice's smallest denominator, > 0.
        weight: per-class weights of length C, used by both terms.
        ignore_index: target value left out of both terms.
        include_background: False drops class 0 from the Dice term only.
        per_image: Dice per image (True) or over the batch (False).
        squared: Dice with sums of squares in the denominator.
        log_loss: -log Dice instead of 1 - Dice.
        label_smoothing: the cross-entropy term's label smoothing.
        lambda_dice: weight of the Dice term, >= 0.
        lambda_ce: weight of the cross-entropy term, >= 0.
        reduction: "mean" or "sum", applied to each term before adding.
        dist_sync: all-reduce the batch-dependent normalisation under
            torch.distributed (:mod:`losslab._dist`; README, "Data-parallel training").

    Returns:
        A scalar.

    Raises:
        ValueError: reduction "none", negative lambdas, and every error of
            :func:`dice_loss` and the cross-entropy term (named after this
            function).

    References:
        Isensee et al. nnU-Net: a self-configuring method for deep
        learning-based biomedical image segmentation. Nature Methods 2021,
        arXiv:1809.10486.

    Example:
        >>> import torch, losslab
        >>> logits = torch.randn(2, 3, 8, 8, requires_grad=True)
        >>> loss = losslab.dice_ce_loss(logits, torch.randint(0, 3, (2, 8, 8)), mode="multiclass", lambda_ce=0.5)
        >>> loss.backward()
        >>> loss.ndim
        0
    """
    fn = "dice_ce_loss"
    _check_dice_ce(fn, reduction=reduction, lambda_dice=lambda_dice, lambda_ce=lambda_ce,
                   label_smoothing=label_smoothing, mode=mode, from_logits=from_logits, smooth=smooth, eps=eps,
                   ignore_index=ignore_index, include_background=include_background, per_image=per_image,
                   squared=squared, log_loss=log_loss, dist_sync=dist_sync)
    dice = dice_pipeline(fn, input, target, mode=mode, from_logits=from_logits, smooth=smooth, eps=eps,
                         weight=weight, ignore_index=ignore_index, include_background=include_background,
                         per_image=per_image, squared=squared, log_loss=log_loss, reduction=reduction,
                         dist_sync=dist_sync)
    check_number(fn, "label_smoothing", label_smoothing, low=0.0, high=1.0)
    if mode == "multiclass":
        ce = softmax_loss(fn, input, target, reduction=reduction, ignore_index=ignore_index,
                          input_kind="logits" if from_logits else "probabilities", class_weight=weight,
                          label_smoothing=label_smoothing, weighted_mean=True, dist_sync=dist_sync)
    else:
        ce = sigmoid_loss(fn, input, target, reduction=reduction, from_logits=from_logits, ignore_index=ignore_index,
                          weight=weight, label_smoothing=label_smoothing, dist_sync=dist_sync)
    return lambda_dice * dice + lambda_ce * ce


@numpy_arguments
def dice_focal_loss(
    input: Tensor,
    target: Tensor,
    *,
    mode: Mode,
    from_logits: bool = True,
    smooth: float = 1.0,
    eps: float = 1e-7,
    weight: Tensor | Sequence[float] | None = None,
    ignore_index: int | None = None,
    include_background: bool = True,
    per_image: bool = False,
    squared: bool = False,
    log_loss: bool = False,
    gamma: float = 2.0,
    alpha: float | None = None,
    lambda_dice: float = 1.0,
    lambda_focal: float = 1.0,
    reduction: Literal["mean", "sum"] = "mean",
    dist_sync: bool = False,
) -> Tensor:
    r"""Dice plus focal loss, for segmentations whose foreground is tiny (MONAI's DiceFocalLoss differs).

    .. math::

        \ell = \lambda_{dice}\, \mathrm{Dice}(x, t) + \lambda_{focal}\, \mathrm{FL}_\gamma(x, t)

    with :func:`dice_loss` and, by mode, :func:`softmax_focal_loss`
    ("multiclass"; per-class alpha = ``weight`` times ``alpha``, or the scalar
    alpha alone) or :func:`sigmoid_focal_loss` ("binary", "multilabel";
    ``alpha`` weighs positives, ``weight`` applies along dim 1). Both focal
    terms take the plain mean over kept elements.

    MONAI's DiceFocalLoss differs: its focal term is the sigmoid
    (one-vs-rest) focal loss of every channel against the one-hot target,
    averaged over N x C x pixels, even with ``softmax=True`` (here
    "multiclass" takes the softmax focal loss); its Dice is per image with
    smooth 1e-5 and its ``weight`` scales the Dice mean.
    ``get_loss("monai.DiceFocalLoss")`` reproduces MONAI.

    Args:
        mode: "binary", "multiclass" or "multilabel", as in :func:`dice_loss`.
        from_logits: False when ``input`` holds probabilities.
        smooth: Dice's smoothing term, >= 0.
        eps: Dice's smallest denominator, > 0.
        weight: per-class weights of length C, used by both terms.
        ignore_index: target value left out of both terms.
        include_background: False drops class 0 from the Dice term only.
        per_image: Dice per image (True) or over the batch (False).
        squared: Dice with sums of squares in the denominator.
        log_loss: -log Dice instead of 1 - Dice.
        gamma: the focal term's focusing parameter, >= 0.
        alpha: None, or a float in [0, 1]: the sigmoid focal term's weight of
            positives, or the softmax focal term's uniform scale.
        lambda_dice: weight of the Dice term, >= 0.
        lambda_focal: weight of the focal term, >= 0.
        reduction: "mean" or "sum", applied to each term before adding.
        dist_sync: all-reduce the batch-dependent normalisation under
            torch.distributed (:mod:`losslab._dist`; README, "Data-parallel training").

    Returns:
        A scalar.

    Raises:
        ValueError: reduction "none", negative lambdas, alpha outside [0, 1],
            and every error of the two terms (named after this function).

    References:
        Zhu et al. AnatomyNet: Deep learning for fast and fully automated
        whole-volume segmentation of head and neck anatomy. Medical Physics
        2019, arXiv:1808.05238.

    Example:
        >>> import torch, losslab
        >>> logits = torch.randn(2, 1, 8, 8, requires_grad=True)
        >>> loss = losslab.dice_focal_loss(logits, (torch.rand(2, 1, 8, 8) > 0.9).float(), mode="binary")
        >>> loss.backward()
        >>> loss.ndim
        0
    """
    fn = "dice_focal_loss"
    alpha = _check_dice_focal(fn, reduction=reduction, lambda_dice=lambda_dice, lambda_focal=lambda_focal,
                              gamma=gamma, alpha=alpha, mode=mode, from_logits=from_logits, smooth=smooth, eps=eps,
                              ignore_index=ignore_index, include_background=include_background, per_image=per_image,
                              squared=squared, log_loss=log_loss, dist_sync=dist_sync)
    dice = dice_pipeline(fn, input, target, mode=mode, from_logits=from_logits, smooth=smooth, eps=eps,
                         weight=weight, ignore_index=ignore_index, include_background=include_background,
                         per_image=per_image, squared=squared, log_loss=log_loss, reduction=reduction,
                         dist_sync=dist_sync)
    if mode == "multiclass":
        class_weight: object = alpha
        if alpha is not None and weight is None:
            class_weight = torch.full((input.shape[1],), alpha, dtype=torch.float64, device=input.device)
        elif weight is not None:
            class_weight = class_vector(fn, "weight", weight, input.shape[1], input, compute_dtype(input))
            class_weight = class_weight * (1.0 if alpha is None else alpha)
        focal = softmax_loss(fn, input, target, reduction=reduction, ignore_index=ignore_index,
                             input_kind="logits" if from_logits else "probabilities", class_weight=class_weight,
                             gamma=gamma, dist_sync=dist_sync)
    else:
        focal = sigmoid_loss(fn, input, target, reduction=reduction, from_logits=from_logits,
                             ignore_index=ignore_index, alpha=alpha, gamma=gamma, weight=weight,
                             dist_sync=dist_sync)
    return lambda_dice * dice + lambda_focal * focal


class DiceCELoss(LossModule, function=dice_ce_loss, validate=_check_dice_ce):
    """Module form of :func:`losslab.dice_ce_loss`."""

    def __init__(self, *, mode: Mode, from_logits: bool = True, smooth: float = 1.0, eps: float = 1e-7,
                 weight: Tensor | Sequence[float] | None = None, ignore_index: int | None = None,
                 include_background: bool = True, per_image: bool = False, squared: bool = False,
                 log_loss: bool = False, label_smoothing: float = 0.0, lambda_dice: float = 1.0, lambda_ce: float = 1.0,
                 reduction: Literal["mean", "sum"] = "mean", dist_sync: bool = False) -> None:
        super().__init__(mode=mode, from_logits=from_logits, smooth=smooth, eps=eps, weight=weight,
                         ignore_index=ignore_index, include_background=include_background, per_image=per_image,
                         squared=squared, log_loss=log_loss, label_smoothing=label_smoothing, lambda_dice=lambda_dice,
                         lambda_ce=lambda_ce, reduction=reduction, dist_sync=dist_sync)


class DiceFocalLoss(LossModule, function=dice_focal_loss, validate=_check_dice_focal):
    """Module form of :func:`losslab.dice_focal_loss`."""

    def __init__(self, *, mode: Mode, from_logits: bool = True, smooth: float = 1.0, eps: float = 1e-7,
                 weight: Tensor | Sequence[float] | None = None, ignore_index: int | None = None,
                 include_background: bool = True, per_image: bool = False, squared: bool = False,
                 log_loss: bool = False, gamma: float = 2.0, alpha: float | None = None, lambda_dice: float = 1.0,
                 lambda_focal: float = 1.0, reduction: Literal["mean", "sum"] = "mean",
                 dist_sync: bool = False) -> None:
        super().__init__(mode=mode, from_logits=from_logits, smooth=smooth, eps=eps, weight=weight,
                         ignore_index=ignore_index, include_background=include_background, per_image=per_image,
                         squared=squared, log_loss=log_loss, gamma=gamma, alpha=alpha, lambda_dice=lambda_dice,
                         lambda_focal=lambda_focal, reduction=reduction, dist_sync=dist_sync)


# ----------------------------------------------------------------------------
# registration

register(LossSpec(
    name="dice_ce_loss", function=dice_ce_loss, module=DiceCELoss, family="segmentation",
    formula="lambda_dice Dice + lambda_ce CE (softmax CE for multiclass, BCE otherwise)",
    aliases=(Alias("dice_ce", "losslab"),
             Alias("DiceCELoss", "losslab", note="losslab's module; MONAI's DiceCELoss is 'monai.DiceCELoss'"),
             Alias("Dice + CE", "paper")),
    reductions=("mean", "sum"),
))

register(LossSpec(
    name="dice_focal_loss", function=dice_focal_loss, module=DiceFocalLoss, family="segmentation",
    formula="lambda_dice Dice + lambda_focal FL (softmax focal for multiclass, sigmoid focal otherwise)",
    aliases=(Alias("dice_focal", "losslab"),
             Alias("DiceFocalLoss", "losslab",
                   note="losslab's module; MONAI's DiceFocalLoss is 'monai.DiceFocalLoss'"),
             Alias("Dice + Focal", "paper")),
    reductions=("mean", "sum"),
))
