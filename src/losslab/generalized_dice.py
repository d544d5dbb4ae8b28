"""The generalised Dice loss (Sudre et al. 2017): class-weighted soft counts pooled into one Dice ratio.

Where :func:`losslab.dice_loss` scores every class on its own and averages
the per-class losses, the generalised Dice loss weights each class's soft
counts by the inverse (squared) volume of its target and pools all classes
into one ratio, so that a class of ten pixels weighs as much as one of ten
thousand. Its p and t come from the overlap losses' one preparation
(:func:`losslab._overlap.probabilities_and_targets`: modes, ignore_index,
soft targets), and its sums from their :func:`losslab._overlap.sums`
(per image or over the batch, global under ``dist_sync``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from . import _dist
from ._checks import compute_dtype, numpy_arguments
from ._core import reduce
from ._module import LossModule
from ._overlap import probabilities_and_targets, ratio, sums
from .registry import Alias, LossSpec, register
from .segmentation import _ARGS, check_overlap

Reduction = Literal["none", "mean", "sum"]
Mode = Literal["binary", "multiclass", "multilabel"]
WeightType = Literal["square", "simple", "uniform"]

__all__ = ["generalized_dice_loss", "GeneralizedDiceLoss", "volume_weights"]

WEIGHT_TYPES = {"square": 2, "simple": 1, "uniform": 0}  # the power of 1 / volume


def _shared_args(*names: str) -> str:
    """dice_loss's descriptions of the arguments ``names`` (spliced in where "OVERLAP_ARGS" stands)."""
    entries = re.split(r"\n(?=        \w+: )", "        " + _ARGS)
    kept = [e for e in entries if e.strip().split(":", 1)[0] in names]
    return "\n".join(kept).lstrip()


_SHARED_ARGS = _shared_args("mode", "from_logits", "smooth", "ignore_index", "include_background")


def _doc(f: Callable) -> Callable:
    f.__doc__ = f.__doc__.replace("OVERLAP_ARGS", _SHARED_ARGS)
    return f


@_doc
@numpy_arguments
def generalized_dice_loss(
    input: Tensor,
    target: Tensor,
    *,
    mode: Mode,
    weight_type: WeightType = "square",
    from_logits: bool = True,
    smooth: float = 1e-5,
    eps: float = 1e-7,
    ignore_index: int | None = None,
    include_background: bool = True,
    per_image: bool = False,
    reduction: Reduction = "mean",
    dist_sync: bool = False,
) -> Tensor:
    r"""Generalised Dice loss: one Dice ratio over all classes, each class's counts weighted by 1 / volume^2.

    .. math::

        \ell = 1 - \frac{2 \sum_c w_c \sum_i p_{c,i} t_{c,i} + s}
                        {\sum_c w_c \sum_i (p_{c,i} + t_{c,i}) + s}, \qquad
        w_c = \frac{v_c}{\sum_k v_k}, \quad
        v_c = \Big(\frac{\min_{k:\,T_k > 0} T_k}{T_c}\Big)^{q}

    with :math:`T_c = \sum_i t_{c,i}` the target volume of class c, q = 2
    for ``weight_type="square"`` (Sudre et al.'s :math:`1 / T_c^2`), 1 for
    "simple" (:math:`1 / T_c`), 0 for "uniform" (all classes alike: the Dice
    of all classes pooled), and s = ``smooth``. The weights are those
    inverse powers scaled to sum to 1 over the kept classes, which leaves the
    ratio unchanged and keeps ``smooth`` in units of pixels, as in
    :func:`losslab.dice_loss` (see below). In [0, 1]; 0 for a perfect hard
    prediction. With one class ("binary") it is :func:`losslab.dice_loss`
    with the same smooth.

    A class absent from the target (T_c = 0: of the batch, or of the image
    with ``per_image=True``) would get an infinite weight. It gets the
    largest finite one instead, that of the smallest present class
    (:math:`v_c = 1`), as in MONAI and NiftyNet: its false positives count
    like errors on the rarest present class. When no kept class is present
    at all (an empty mask in "binary", every position ignored), every class
    gets the same weight, so that false positives are still penalised,
    :math:`\ell = 1 - s / (\frac{1}{C'} \sum_c \sum_i p_{c,i} + s)`
    (MONAI gives all-zero weights there, loss 0 whatever the prediction).
    The weights are constants: no gradient flows through them.

    Not :func:`losslab.dice_loss` with ``weight``: that averages per-class
    losses, sum(w_c L_c) / sum(w_c); here the weighted counts of all classes
    form one ratio, so a class's influence on the gradient follows its weight
    times its volume.

    Args:
        OVERLAP_ARGS
        weight_type: "square" (1 / T_c^2, Sudre et al.'s and MONAI's default),
            "simple" (1 / T_c) or "uniform" (1).
        eps: > 0, the smallest denominator (no division by zero when smooth
            is 0).
        per_image: False sums every class over the whole batch (one set of
            weights, one ratio); True sums over each image's positions (the
            weights and the ratio of each image), then reduces over images.
        reduction: "none" | "mean" | "sum". per_image=False gives one loss,
            shape () for every reduction; per_image=True one per image, (N,),
            averaged ("mean") or summed ("sum").
        dist_sync: all-reduce the batch-dependent sums under torch.distributed
            (:mod:`losslab._dist`; README, "Data-parallel training"): with
            per_image=False the class volumes, weights and ratio are those of
            the global batch; with per_image=True the mean over images.

    Returns:
        "none": the loss, shape () (per_image=False) or (N,) (per_image=True);
        "mean" and "sum": shape ().

    Raises:
        TypeError: non-floating input, float class indices in "multiclass".
        ValueError: an unknown mode or weight_type, target shapes that do not
            fit the mode, class indices outside [0, C), targets or
            probabilities outside [0, 1], smooth < 0, eps <= 0.

    Empty batches and all-ignored targets give 0 with zero gradients. With
    smooth = 0 an exactly empty prediction of an empty target counts as a
    perfect match (0/0 -> 1), and eps is the smallest denominator.
    Half precision is computed in float32.

    Smoothing: MONAI adds smooth_nr = smooth_dr = 1e-5 to the raw weighted
    sums, which with square weights are of the order of 1 / (smallest class
    volume): on large volumes (a class of 1e5 voxels) its 1e-5 then moves the
    loss by tens of percent. Here the weights sum to 1, so the default 1e-5
    is negligible whatever the volumes. ``get_loss("monai.GeneralizedDiceLoss")``
    reproduces MONAI's loss, ``get_loss("optax.multiclass_generalized_dice_loss")``
    optax's (another formula: a weighted mean of per-image Dice losses).

    References:
        Sudre, Li, Vercauteren, Ourselin, Cardoso. Generalised Dice overlap as
        a deep learning loss function for highly unbalanced segmentations.
        DLMIA 2017, arXiv:1707.03237.

    Example:
        >>> import torch, losslab
        >>> logits = torch.tensor([[[3.0, -2.0, -1.0, 0.5], [-2.0, 2.0, 1.0, 0.0]]], requires_grad=True)  # (1, 2, 4)
        >>> labels = torch.tensor([[0, 1, 1, 1]])
        >>> loss = losslab.generalized_dice_loss(logits, labels, mode="multiclass")
        >>> loss.backward()
        >>> loss.round(decimals=4)
        tensor(0.2552, grad_fn=<RoundBackward1>)
    """
    fn = "generalized_dice_loss"
    power = check_generalized_dice(
        fn, mode=mode, weight_type=weight_type, from_logits=from_logits, smooth=smooth, eps=eps,
        ignore_index=ignore_index, include_background=include_background, per_image=per_image, reduction=reduction,
        dist_sync=dist_sync)
    smooth = float(smooth)
    processes = _dist.world(fn, dist_sync)
    dtype = compute_dtype(input) if isinstance(input, Tensor) else torch.float32  # (a non-tensor raises below)
    p, t = probabilities_and_targets(fn, input, target, mode=mode, from_logits=from_logits,
                                     ignore_index=ignore_index, dtype=dtype)
    if not include_background and mode != "binary":
        p, t = p[:, 1:], t[:, 1:]
    total = sums(per_image, processes)
    intersection, predicted, volume = total(p * t), total(p), total(t)  # (C',) or (N, C')
    w = volume_weights(volume.detach(), power)
    score = ratio(2.0 * (w * intersection).sum(-1) + smooth, (w * (predicted + volume)).sum(-1) + smooth, eps)
    loss = 1.0 - score  # () or (N,)
    if per_image:
        return reduce(loss, reduction, None, None, processes).to(input.dtype)
    return _dist.scale_gradient(reduce(loss, reduction), processes).to(input.dtype)


def volume_weights(volume: Tensor, power: int) -> Tensor:
    """Sudre et al.'s class weights 1 / volume^power along the last dim, scaled to sum to 1.

    Computed as (smallest present volume / volume)^power, in (0, 1], so that
    nothing overflows; an absent class (volume 0) gets 1, the largest weight;
    with no class present, every class gets the same weight.
    """
    present = volume > 0
    if power == 0:
        v = torch.ones_like(volume)
    else:
        smallest = torch.where(present, volume, torch.full_like(volume, float("inf"))).amin(-1, keepdim=True) \
            if volume.shape[-1] else volume.sum(-1, keepdim=True)
        shrink = smallest / torch.where(present, volume, torch.ones_like(volume))
        v = torch.where(present, shrink, torch.ones_like(volume)) ** power
    return v / v.sum(-1, keepdim=True).clamp_min(torch.finfo(v.dtype).tiny)


def check_generalized_dice(fn: str, *, weight_type: object, **overlap: object) -> int:
    """The hyperparameters of :func:`generalized_dice_loss` and its twin; the power of 1 / volume."""
    if weight_type not in WEIGHT_TYPES:
        raise ValueError(f"{fn}: weight_type must be one of 'square', 'simple', 'uniform'; got {weight_type!r}")
    check_overlap(fn, **overlap)
    return WEIGHT_TYPES[weight_type]  # type: ignore[index]


class GeneralizedDiceLoss(LossModule, function=generalized_dice_loss, validate=check_generalized_dice):
    """Module form of :func:`losslab.generalized_dice_loss`."""

    def __init__(self, *, mode: Mode, weight_type: WeightType = "square", from_logits: bool = True,
                 smooth: float = 1e-5, eps: float = 1e-7, ignore_index: int | None = None,
                 include_background: bool = True, per_image: bool = False, reduction: Reduction = "mean",
                 dist_sync: bool = False) -> None:
        super().__init__(mode=mode, weight_type=weight_type, from_logits=from_logits, smooth=smooth, eps=eps,
                         ignore_index=ignore_index, include_background=include_background, per_image=per_image,
                         reduction=reduction, dist_sync=dist_sync)


# ----------------------------------------------------------------------------
# registration

register(LossSpec(
    name="generalized_dice_loss", function=generalized_dice_loss, module=GeneralizedDiceLoss, family="segmentation",
    formula="1 - (2 sum_c w_c sum(p t) + s) / (sum_c w_c sum(p + t) + s), w_c ~ 1 / sum(t_c)^2",
    aliases=(Alias("Generalized Dice", "paper"), Alias("Generalised Dice", "paper"),
             Alias("Generalized Dice Loss", "paper"), Alias("Generalised Dice Loss", "paper"), Alias("GDL", "paper")),
    # monai.GeneralizedDiceLoss and optax.multiclass_generalized_dice_loss: losslab.frameworks.generalized_dice
))
