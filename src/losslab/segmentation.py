"""Overlap losses of segmentation: soft Dice, Jaccard (soft IoU) and Tversky (and focal Tversky).

Each is computed from per-class soft counts of an (N, C, *spatial) prediction
p and target t: the intersection sum(p t), and sum(p), sum(t) (or the soft
false positives and negatives). The three modes say how p and t are formed:

* "binary": one foreground channel, sigmoid;
* "multiclass": C exclusive classes, softmax over dim 1, one-hot targets;
* "multilabel": C independent channels, sigmoid per channel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import Tensor

from . import _dist
from ._checks import check_bool, check_common, check_number, numpy_arguments
from ._module import LossModule
from ._overlap import check_mode, log_or_linear, overlap_loss, ratio, sums
from .registry import Alias, LossSpec, register

Reduction = Literal["none", "mean", "sum"]
Mode = Literal["binary", "multiclass", "multilabel"]

__all__ = ["dice_loss", "jaccard_loss", "tversky_loss", "DiceLoss", "JaccardLoss", "TverskyLoss"]


# Argument descriptions every overlap loss shares, spliced in where "OVERLAP_ARGS" stands.
_ARGS = """mode: "binary" (input (N, 1, *) or (N, *), target of the same shape,
            sigmoid), "multiclass" (input (N, C, *), target class indices
            (N, *), softmax over dim 1, one-hot target) or "multilabel"
            (input and target (N, C, *), sigmoid per channel). Soft targets
            in [0, 1] are accepted in "binary" and "multilabel".
        from_logits: False when ``input`` holds probabilities (softmax
            probabilities over dim 1 in "multiclass").
        smooth: >= 0, added to numerator and denominator (see above).
        eps: > 0, the smallest denominator (no division by zero when smooth
            is 0); also the floor of the score under ``log_loss``.
        weight: non-negative per-class weights of length C; the loss is the
            weighted average over classes (and images), sum(w_c L_c) / sum(w_c).
        ignore_index: target value to leave out: in "multiclass" a class index
            (the whole position), in "binary" / "multilabel" a target value
            (that element). Ignored elements leave every sum, prediction and
            target alike. None disables it.
        include_background: False drops class 0 (channel 0) after the softmax,
            in "multiclass" and "multilabel"; no effect in "binary".
        per_image: False sums over the whole batch and all positions of a
            class (one score per class); True sums over each image's
            positions (one score per image and class), then averages."""

_RETURNS = """Returns:
        "none": the weighted per-class losses, shape (C',) (per_image=False)
        or (N, C') (per_image=True), C' the classes kept; "mean" their
        weighted average; "sum" their sum.

    Raises:
        TypeError: non-floating input, float class indices in "multiclass".
        ValueError: an unknown mode, target shapes that do not fit the mode,
            class indices outside [0, C), targets or probabilities outside
            [0, 1], a weight not of length C or negative, smooth < 0,
            eps <= 0.

    Empty masks: a class absent from the target with an (almost) empty
    prediction scores (almost) 1, loss (almost) 0, because smooth sits in
    numerator and denominator (with smooth = 0, an exactly empty prediction
    scores 1 by definition, 0/0 -> 1); a false positive on an empty target
    is still penalised, 1 - smooth / (sum(p) + smooth). Libraries that drop
    absent classes (segmentation_models_pytorch, kornia's "macro" Dice and
    its Tversky) miss that penalty; Keras' Dice, with epsilon only in the
    denominator of one ratio over the whole tensor, gives loss 1 to an empty
    target predicted empty. Empty batches and all-ignored targets give 0 with zero
    gradients. Half precision is computed in float32."""


def _doc(f: Callable) -> Callable:
    f.__doc__ = f.__doc__.replace("OVERLAP_ARGS", _ARGS).replace("OVERLAP_RETURNS", _RETURNS)
    return f


@_doc
@numpy_arguments
def dice_loss(
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
    reduction: Reduction = "mean",
    dist_sync: bool = False,
) -> Tensor:
    r"""Soft Dice loss: 1 - Dice (or -log Dice) per class, averaged over classes (and images).

    .. math::

        \mathrm{Dice}_c = \frac{2 \sum p_c t_c + s}{\sum p_c + \sum t_c + s}, \qquad
        \ell_c = 1 - \mathrm{Dice}_c

    with s = ``smooth``; ``squared=True`` uses :math:`\sum p_c^2 + \sum t_c^2`
    in the denominator (V-Net), ``log_loss=True`` :math:`-\log \mathrm{Dice}_c`.
    In [0, 1]; 0 for a perfect hard prediction.

    Smoothing convention: s is added once to the numerator 2 TP and once to
    the denominator, the common form (Milletari et al., MONAI's
    smooth_nr = smooth_dr). :func:`tversky_loss` adds s to TP instead, so with
    s > 0 it equals this loss only with s halved (exactly so at s = 0).
    segmentation_models_pytorch (0.5) computes its Dice as its Tversky index,
    so its smooth s is s = 2 x smp's here; ``get_loss("smp.DiceLoss")``
    reproduces smp, ``get_loss("monai.DiceLoss")`` MONAI (per image, weights
    scaling the mean).

    Args:
        OVERLAP_ARGS
        squared: True for sums of squares in the denominator.
        log_loss: True for -log(Dice) (floored at eps) instead of 1 - Dice.
        reduction: "none" | "mean" | "sum" over the per-class losses.
        dist_sync: all-reduce the batch-dependent normalisation under
            torch.distributed (:mod:`losslab._dist`; README, "Data-parallel training").

    OVERLAP_RETURNS

    References:
        Milletari, Navab, Ahmadi. V-Net: Fully Convolutional Neural Networks
        for Volumetric Medical Image Segmentation. 3DV 2016, arXiv:1606.04797.
        (Sudre et al.'s generalised Dice, arXiv:1707.03237, weights the sums
        inside one ratio; ``weight`` here averages per-class losses, which is
        not the same loss.)

    Example:
        >>> import torch, losslab
        >>> logits = torch.tensor([[[2.0, -1.0, 0.5, -3.0]]], requires_grad=True)  # (N=1, 1, 4)
        >>> mask = torch.tensor([[[1.0, 0.0, 1.0, 0.0]]])
        >>> loss = losslab.dice_loss(logits, mask, mode="binary")
        >>> loss.backward()
        >>> loss.round(decimals=4)
        tensor(0.1687, grad_fn=<RoundBackward1>)
    """
    return dice_pipeline("dice_loss", input, target, mode=mode, from_logits=from_logits, smooth=smooth, eps=eps,
                         weight=weight, ignore_index=ignore_index, include_background=include_background,
                         per_image=per_image, squared=squared, log_loss=log_loss, reduction=reduction,
                         dist_sync=dist_sync)


def dice_pipeline(fn: str, input: Tensor, target: Tensor, *, mode: str, from_logits: bool, smooth: float,
                  eps: float, weight: object, ignore_index: int | None, include_background: bool, per_image: bool,
                  squared: bool, log_loss: bool, reduction: str, dist_sync: bool = False) -> Tensor:
    """:func:`dice_loss` under the name ``fn`` (errors name it): shared with the Dice combinations."""
    smooth = check_dice(fn, mode=mode, from_logits=from_logits, smooth=smooth, eps=eps, ignore_index=ignore_index,
                        include_background=include_background, per_image=per_image, squared=squared,
                        log_loss=log_loss, reduction=reduction, dist_sync=dist_sync)
    processes = _dist.world(fn, dist_sync)
    total = sums(per_image, processes)

    def score_loss(p: Tensor, t: Tensor) -> Tensor:
        den = total(p * p) + total(t * t) if squared else total(p) + total(t)
        return log_or_linear(ratio(2.0 * total(p * t) + smooth, den + smooth, eps), log_loss, eps)

    return overlap_loss(fn, input, target, mode=mode, from_logits=from_logits, eps=eps, weight=weight,
                        ignore_index=ignore_index, include_background=include_background, per_image=per_image,
                        reduction=reduction, score_loss=score_loss, processes=processes)


@_doc
@numpy_arguments
def jaccard_loss(
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
    reduction: Reduction = "mean",
    dist_sync: bool = False,
) -> Tensor:
    r"""Soft Jaccard (IoU) loss of masks: 1 - soft IoU per class, averaged over classes (and images).

    .. math::

        J_c = \frac{\sum p_c t_c + s}{\sum p_c + \sum t_c - \sum p_c t_c + s}, \qquad \ell_c = 1 - J_c

    (``squared=True``: sums of squares for :math:`\sum p_c, \sum t_c`;
    ``log_loss=True``: :math:`-\log J_c`). In [0, 1]; 0 for a perfect hard
    prediction. It equals :func:`tversky_loss` with alpha = beta = 1 for any
    smooth. For boxes, see :func:`iou_loss`.

    Args:
        OVERLAP_ARGS
        squared: True for sums of squares in the union.
        log_loss: True for -log(J) (floored at eps) instead of 1 - J.
        reduction: "none" | "mean" | "sum" over the per-class losses.
        dist_sync: all-reduce the batch-dependent normalisation under
            torch.distributed (:mod:`losslab._dist`; README, "Data-parallel training").

    OVERLAP_RETURNS

    References:
        Rahman, Wang. Optimizing Intersection-Over-Union in Deep Neural
        Networks for Image Segmentation. ISVC 2016.

    Example:
        >>> import torch, losslab
        >>> logits = torch.randn(2, 3, 4, 4, requires_grad=True)
        >>> labels = torch.randint(0, 3, (2, 4, 4))
        >>> loss = losslab.jaccard_loss(logits, labels, mode="multiclass")
        >>> loss.backward()
        >>> bool(0 <= loss <= 1)
        True
    """
    fn = "jaccard_loss"
    smooth = check_dice(fn, mode=mode, from_logits=from_logits, smooth=smooth, eps=eps, ignore_index=ignore_index,
                        include_background=include_background, per_image=per_image, squared=squared,
                        log_loss=log_loss, reduction=reduction, dist_sync=dist_sync)
    processes = _dist.world(fn, dist_sync)
    total = sums(per_image, processes)

    def score_loss(p: Tensor, t: Tensor) -> Tensor:
        inter = total(p * t)
        sizes = total(p * p) + total(t * t) if squared else total(p) + total(t)
        return log_or_linear(ratio(inter + smooth, sizes - inter + smooth, eps), log_loss, eps)

    return overlap_loss(fn, input, target, mode=mode, from_logits=from_logits, eps=eps, weight=weight,
                        ignore_index=ignore_index, include_background=include_background, per_image=per_image,
                        reduction=reduction, score_loss=score_loss, processes=processes)


@_doc
@numpy_arguments
def tversky_loss(
    input: Tensor,
    target: Tensor,
    *,
    mode: Mode,
    from_logits: bool = True,
    alpha: float = 0.5,
    beta: float = 0.5,
    gamma: float = 1.0,
    smooth: float = 1.0,
    eps: float = 1e-7,
    weight: Tensor | Sequence[float] | None = None,
    ignore_index: int | None = None,
    include_background: bool = True,
    per_image: bool = False,
    reduction: Reduction = "mean",
    dist_sync: bool = False,
) -> Tensor:
    r"""Tversky loss, and the focal Tversky loss for gamma != 1: false positives and negatives weighted apart.

    .. math::

        \mathrm{TI}_c = \frac{TP_c + s}{TP_c + \alpha\, FP_c + \beta\, FN_c + s}, \qquad
        \ell_c = (1 - \mathrm{TI}_c)^{\gamma}

    with soft counts :math:`TP = \sum p t`, :math:`FP = \sum p (1 - t)`,
    :math:`FN = \sum (1 - p) t`. beta > alpha favours recall (small
    structures). alpha = beta = 0.5 with gamma = 1 and s = 0 is
    :func:`dice_loss`; alpha = beta = 1 is :func:`jaccard_loss` (any s).
    Smoothing convention: s is added to TP, so Tversky(0.5, 0.5) with smooth s
    equals Dice with smooth 2 s.

    gamma is the exponent itself: Abraham and Khan write (1 - TI)^(1/g) and
    recommend g = 4/3, which is gamma = 0.75 here. The loss is exactly 0 at a
    perfect prediction, with gradient 0 there; elsewhere the power is taken of
    1 - TI floored at the smallest normal number, so the gradient stays finite
    for gamma < 1.

    Args:
        OVERLAP_ARGS
        alpha: weight of false positives, >= 0.
        beta: weight of false negatives, >= 0.
        gamma: focal exponent > 0 (1: the plain Tversky loss).
        reduction: "none" | "mean" | "sum" over the per-class losses.
        dist_sync: all-reduce the batch-dependent normalisation under
            torch.distributed (:mod:`losslab._dist`; README, "Data-parallel training").

    OVERLAP_RETURNS

    References:
        Salehi, Erdogmus, Gholipour. Tversky Loss Function for Image
        Segmentation Using 3D Fully Convolutional Deep Networks. MLMI 2017,
        arXiv:1706.05721.
        Abraham, Khan. A Novel Focal Tversky Loss Function with Improved
        Attention U-Net for Lesion Segmentation. ISBI 2019, arXiv:1810.07842.

    Example:
        >>> import torch, losslab
        >>> logits = torch.tensor([[[2.0, -1.0, 0.5, -3.0]]], requires_grad=True)
        >>> mask = torch.tensor([[[1.0, 0.0, 1.0, 0.0]]])
        >>> loss = losslab.tversky_loss(logits, mask, mode="binary", alpha=0.3, beta=0.7)
        >>> loss.backward()
        >>> loss.round(decimals=4)
        tensor(0.1503, grad_fn=<RoundBackward1>)
    """
    fn = "tversky_loss"
    alpha, beta, gamma, smooth = _check_tversky(
        fn, mode=mode, from_logits=from_logits, alpha=alpha, beta=beta, gamma=gamma, smooth=smooth, eps=eps,
        ignore_index=ignore_index, include_background=include_background, per_image=per_image, reduction=reduction,
        dist_sync=dist_sync)
    processes = _dist.world(fn, dist_sync)
    total = sums(per_image, processes)

    def score_loss(p: Tensor, t: Tensor) -> Tensor:
        tp, fp, fn_ = total(p * t), total(p * (1.0 - t)), total((1.0 - p) * t)
        one_minus = 1.0 - ratio(tp + smooth, tp + alpha * fp + beta * fn_ + smooth, eps)
        if gamma == 1.0:
            return one_minus
        powered = one_minus.clamp_min(torch.finfo(one_minus.dtype).tiny).pow(gamma)
        return torch.where(one_minus > 0, powered, torch.zeros_like(powered))  # exactly 0 at a perfect prediction

    return overlap_loss(fn, input, target, mode=mode, from_logits=from_logits, eps=eps, weight=weight,
                        ignore_index=ignore_index, include_background=include_background, per_image=per_image,
                        reduction=reduction, score_loss=score_loss, processes=processes)


def check_overlap(fn: str, *, mode: object, smooth: object, eps: object, include_background: object,
                  per_image: object, **common: object) -> float:
    """The hyperparameters every overlap loss takes (also the Dice pairs'); smooth as a float."""
    smooth = check_number(fn, "smooth", smooth, low=0.0)
    check_mode(fn, mode)
    check_number(fn, "eps", eps, low=0.0, low_open=True)
    check_bool(fn, "include_background", include_background)
    check_bool(fn, "per_image", per_image)
    check_common(fn, **common)
    return smooth


def check_dice(fn: str, *, squared: object, log_loss: object, **overlap: object) -> float:
    """The hyperparameters of :func:`dice_loss` and :func:`jaccard_loss` (also the Dice pairs') and their twins;
    smooth as a float."""
    smooth = check_overlap(fn, **overlap)
    check_bool(fn, "squared", squared)
    check_bool(fn, "log_loss", log_loss)
    return smooth


def _check_tversky(fn: str, *, alpha: object, beta: object, gamma: object,
                   **overlap: object) -> tuple[float, float, float, float]:
    """The hyperparameters of :func:`tversky_loss` and its twin: alpha, beta, gamma and smooth as floats."""
    return (check_number(fn, "alpha", alpha, low=0.0), check_number(fn, "beta", beta, low=0.0),
            check_number(fn, "gamma", gamma, low=0.0, low_open=True), check_overlap(fn, **overlap))


class DiceLoss(LossModule, function=dice_loss, validate=check_dice):
    """Module form of :func:`losslab.dice_loss`."""

    def __init__(self, *, mode: Mode, from_logits: bool = True, smooth: float = 1.0, eps: float = 1e-7,
                 weight: Tensor | Sequence[float] | None = None, ignore_index: int | None = None,
                 include_background: bool = True, per_image: bool = False, squared: bool = False,
                 log_loss: bool = False, reduction: Reduction = "mean", dist_sync: bool = False) -> None:
        super().__init__(mode=mode, from_logits=from_logits, smooth=smooth, eps=eps, weight=weight,
                         ignore_index=ignore_index, include_background=include_background, per_image=per_image,
                         squared=squared, log_loss=log_loss, reduction=reduction, dist_sync=dist_sync)


class JaccardLoss(LossModule, function=jaccard_loss, validate=check_dice):
    """Module form of :func:`losslab.jaccard_loss`."""

    def __init__(self, *, mode: Mode, from_logits: bool = True, smooth: float = 1.0, eps: float = 1e-7,
                 weight: Tensor | Sequence[float] | None = None, ignore_index: int | None = None,
                 include_background: bool = True, per_image: bool = False, squared: bool = False,
                 log_loss: bool = False, reduction: Reduction = "mean", dist_sync: bool = False) -> None:
        super().__init__(mode=mode, from_logits=from_logits, smooth=smooth, eps=eps, weight=weight,
                         ignore_index=ignore_index, include_background=include_background, per_image=per_image,
                         squared=squared, log_loss=log_loss, reduction=reduction, dist_sync=dist_sync)


class TverskyLoss(LossModule, function=tversky_loss, validate=_check_tversky):
    """Module form of :func:`losslab.tversky_loss`."""

    def __init__(self, *, mode: Mode, from_logits: bool = True, alpha: float = 0.5, beta: float = 0.5,
                 gamma: float = 1.0, smooth: float = 1.0, eps: float = 1e-7,
                 weight: Tensor | Sequence[float] | None = None, ignore_index: int | None = None,
                 include_background: bool = True, per_image: bool = False, reduction: Reduction = "mean",
                 dist_sync: bool = False) -> None:
        super().__init__(mode=mode, from_logits=from_logits, alpha=alpha, beta=beta, gamma=gamma, smooth=smooth,
                         eps=eps, weight=weight, ignore_index=ignore_index, include_background=include_background,
                         per_image=per_image, reduction=reduction, dist_sync=dist_sync)


# ----------------------------------------------------------------------------
# registration


register(LossSpec(
    name="dice_loss", function=dice_loss, module=DiceLoss, family="segmentation",
    formula="1 - (2 sum(p t) + s) / (sum(p) + sum(t) + s) per class",
    aliases=(Alias("Soft Dice", "paper"), Alias("Dice", "paper"), Alias("Soft Dice Loss", "paper")),
    # the frameworks' names (monai., smp., kornia., keras.) are registered in losslab.frameworks.segmentation
))

register(LossSpec(
    name="jaccard_loss", function=jaccard_loss, module=JaccardLoss, family="segmentation",
    formula="1 - (sum(p t) + s) / (sum(p) + sum(t) - sum(p t) + s) per class",
    aliases=(Alias("Soft Jaccard", "paper"), Alias("Jaccard", "paper"), Alias("Soft IoU", "paper"),
             Alias("Soft IoU Loss", "paper", note="for boxes, 'IoU loss' is iou_loss")),
    # smp.JaccardLoss is registered in losslab.frameworks.segmentation
))

register(LossSpec(
    name="tversky_loss", function=tversky_loss, module=TverskyLoss, family="segmentation",
    formula="(1 - (TP + s) / (TP + alpha FP + beta FN + s))^gamma per class",
    aliases=(Alias("Tversky", "paper"), Alias("Tversky Loss", "paper"),
             Alias("Focal Tversky", "paper", defaults={"gamma": 0.75}, note="Abraham and Khan's 1/gamma = 0.75"),
             Alias("Focal Tversky Loss", "paper", defaults={"gamma": 0.75})),
))
