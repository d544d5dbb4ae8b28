"""kornia's and Keras' overlap losses, on losslab's overlap losses.

(MONAI's are in :mod:`losslab.frameworks.segmentation_monai`, segmentation_models_pytorch's in
:mod:`losslab.frameworks.segmentation_smp`.)

Each framework's Dice, Jaccard or Tversky is the same ratio of soft counts as
losslab's; what differs, and is reproduced here, is where the constants go,
which classes count and how the ratios are averaged:

* kornia 0.9: softmax of logits, class indices, ``eps`` 1e-8 added to the
  denominator; Dice's default ``average="micro"`` pools all classes of an
  image into one ratio, "macro" averages the classes present in the image;
  Tversky averages the present classes of each image.
* Keras 3: probabilities in, one ratio over the whole tensor (Dice: over
  ``axis``), ``epsilon`` 1e-7 added to the denominator; Keras' Tversky
  applies ``alpha`` to the false negatives and ``beta`` to the false
  positives, the reverse of its docstring and of Salehi et al.

A constant added to a denominator (kornia's and Keras' eps) is reproduced
exactly through losslab's loss by one constant extra element of prediction
eps (and target 0): it adds eps to sum(p) and nothing to the intersection.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from .._checks import (
    check_class_indices,
    check_common,
    check_input,
    check_number,
    check_target_tensor,
    compute_dtype,
    describe,
)
from .._module import LossModule
from ..registry import Alias, add_aliases
from ..segmentation import dice_loss, tversky_loss
from ._common import empty_batch

__all__ = ["kornia_dice_loss", "kornia_tversky_loss", "keras_dice", "keras_tversky", "KorniaDiceLoss",
           "KorniaTverskyLoss", "KerasDice", "KerasTversky"]

Reduction = Literal["none", "mean", "sum"]

# The smallest denominator handed to losslab's ratio where the framework adds its constant itself: the clamp
# never acts on a positive denominator of a normal float.
_TINY = float(torch.finfo(torch.float64).tiny)

KERAS_EPSILON = 1e-7  # keras.backend.epsilon()


def _pad(x: Tensor, amount: float, value: bool = True) -> Tensor:
    """``x`` with extra elements along its last dim that sum to ``amount`` (``value=False``: zeros, as many).

    ceil(amount) elements of amount / ceil(amount) each, so that each stays in [0, 1].
    """
    if amount <= 0:
        return x
    count = max(1, math.ceil(amount))
    return torch.cat([x, x.new_full((*x.shape[:-1], count), amount / count if value else 0.0)], dim=-1)


def _one_hot(labels: Tensor, num_classes: int, dtype: torch.dtype) -> Tensor:
    """(N, *) integer labels in [0, C) -> (N, C, *) one-hot of ``dtype``."""
    out = torch.zeros((labels.shape[0], num_classes, *labels.shape[1:]), dtype=dtype, device=labels.device)
    return out.scatter_(1, labels.long().unsqueeze(1), 1.0)


# ----------------------------------------------------------------------------
# kornia


def _kornia_layout(fn: str, input: Tensor, target: Tensor, ignore_index: int | None
                   ) -> tuple[Tensor, Tensor, Tensor]:
    """kornia's softmax p and one-hot t, ignored pixels zeroed, flattened to (N, C, K); and the kept pixels (N, K)."""
    check_input(fn, input, min_ndim=3, what="(N, C, H, W) (kornia's; any spatial rank here)")
    check_target_tensor(fn, input, target)
    if target.shape != input.shape[:1] + input.shape[2:] or target.dtype.is_floating_point:
        raise ValueError(f"{fn}: target must be integer class indices of shape "
                         f"{tuple(input.shape[:1] + input.shape[2:])}; got {describe(target)} of shape "
                         f"{tuple(target.shape)}")
    num_classes = input.shape[1]
    check_class_indices(fn, target, num_classes, ignore_index)
    dtype = compute_dtype(input)
    n = input.shape[0]
    labels = target.reshape(n, -1).long()
    valid = torch.ones_like(labels, dtype=torch.bool) if ignore_index is None else labels != ignore_index
    labels = torch.where(valid, labels, torch.zeros_like(labels))
    keep = valid.unsqueeze(1).to(dtype)
    p = torch.softmax(input.to(dtype), dim=1).reshape(n, num_classes, -1) * keep
    t = _one_hot(labels, num_classes, dtype) * keep
    return p, t, valid


def _check_kornia_dice(fn: str, *, average: Any, eps: Any, weight: Any, **common: Any) -> float:
    """The hyperparameters of :func:`kornia_dice_loss` and its twin; eps as a float."""
    if average not in ("micro", "macro"):
        raise ValueError(f"{fn}: average must be 'micro' or 'macro'; got {describe(average)}")
    eps = check_number(fn, "eps", eps, low=0.0)
    if average == "micro" and weight is not None:
        raise ValueError(f"{fn}: weight with average='micro' is kornia's class-weighted sums pooled into one ratio "
                         f"(a generalised Dice), which losslab does not implement; the closest losslab loss is "
                         f"dice_loss with weight (a weighted mean of per-class losses), or average='macro'")
    check_common(fn, **common)
    return eps


def _check_kornia_tversky(fn: str, *, alpha: Any, beta: Any, eps: Any, **common: Any) -> tuple[float, float, float]:
    """The hyperparameters of :func:`kornia_tversky_loss` and its twin: alpha, beta and eps as floats."""
    alpha = check_number(fn, "alpha", alpha, low=0.0)
    beta = check_number(fn, "beta", beta, low=0.0)
    eps = check_number(fn, "eps", eps, low=0.0)
    if alpha == 0 and beta == 0 and eps > 0:  # (with eps = 0 the index is TP / TP, which tversky_loss gives)
        raise ValueError(f"{fn}: alpha = beta = 0 gives the index TP / (TP + eps), which losslab's tversky_loss "
                         f"cannot express; the closest losslab loss is tversky_loss with alpha, beta > 0")
    check_common(fn, **common)
    return alpha, beta, eps


def kornia_dice_loss(
    input: Tensor,
    target: Tensor,
    *,
    average: Literal["micro", "macro"] = "micro",
    eps: float = 1e-8,
    weight: Tensor | Sequence[float] | None = None,
    ignore_index: int | None = -100,
) -> Tensor:
    r"""kornia's ``dice_loss`` / ``DiceLoss`` (0.9): softmax of logits, eps in the denominator, mean over images.

    .. math::

        \text{micro:}\quad \ell_n = 1 - \frac{2 \sum_c \sum p_{n,c} t_{n,c}}
                                            {\sum_c (\sum p_{n,c} + \sum t_{n,c}) + \varepsilon}
        \qquad
        \text{macro:}\quad \ell_n = \frac{\sum_{c \in P_n} w_c (1 - \mathrm{Dice}_{n,c})}{\sum_{c \in P_n} w_c},
        \quad \mathrm{Dice}_{n,c} = \frac{2 \sum p_{n,c} t_{n,c}}{\sum p_{n,c} + \sum t_{n,c} + \varepsilon}

    and :math:`\ell = \frac{1}{N} \sum_n \ell_n` (a 0-d tensor; kornia has no
    ``reduction``). "micro" (kornia's default) pools all classes and pixels of
    an image into one ratio: :func:`losslab.dice_loss` of the image's
    flattened (C x pixels) probabilities. "macro" averages over
    :math:`P_n`, the classes present in image n's kept target: a class
    predicted but absent is left out. An image whose pixels are all ignored
    (or whose present classes all weigh 0) counts as loss 1 with zero
    gradient. eps is added through one extra element of prediction eps.

    Args:
        input: logits (N, C, *spatial) (kornia: (N, C, H, W)).
        target: class indices (N, *spatial).
        average: "micro" or "macro".
        eps: >= 0, added to the denominator.
        weight: per-class weights (C,), "macro" only here.
        ignore_index: class-index value whose pixels leave both sums.

    Raises:
        ValueError: ``weight`` with ``average="micro"``: kornia then pools
            class-weighted sums into one ratio (a generalised Dice), which
            losslab does not implement; the closest losslab loss is
            dice_loss with weight (the weighted mean of per-class losses),
            or ``average="macro"`` here.

    Example:
        >>> import torch, losslab
        >>> loss_fn = losslab.get_loss("kornia.DiceLoss", average="macro")
        >>> x = torch.randn(2, 3, 8, 8, requires_grad=True)
        >>> loss_fn(x, torch.randint(0, 3, (2, 8, 8))).backward()
    """
    fn = "kornia.dice_loss"
    if (empty := empty_batch(input, "mean")) is not None:  # 0, where the framework fails or gives NaN
        return empty
    eps = _check_kornia_dice(fn, average=average, eps=eps, weight=weight, ignore_index=ignore_index)
    p, t, valid = _kornia_layout(fn, input, target, ignore_index)
    n, num_classes = p.shape[:2]
    if average == "micro":
        flat_p, flat_t = p.reshape(n, 1, -1), t.reshape(n, 1, -1)
        per = dice_loss(_pad(flat_p, eps), _pad(flat_t, eps, value=False), mode="multilabel", from_logits=False,
                        smooth=0.0, eps=_TINY, per_image=True, reduction="none")[:, 0]
        per = torch.where(valid.any(dim=1), per, torch.ones_like(per))  # nothing kept: loss 1, no gradient
    else:
        per_class = dice_loss(_pad(p, eps), _pad(t, eps, value=False), mode="multilabel", from_logits=False,
                              smooth=0.0, eps=_TINY, per_image=True, reduction="none")  # (N, C)
        w = torch.ones(num_classes, dtype=p.dtype, device=p.device) if weight is None else \
            torch.as_tensor(weight, dtype=p.dtype, device=p.device)
        if w.shape != (num_classes,):
            raise ValueError(f"{fn}: weight must hold one value per class ({num_classes}); got shape "
                             f"{tuple(w.shape)}")
        present = t.sum(dim=2) > 0
        wp = w * present.to(p.dtype)
        norm = wp.sum(dim=1)
        empty = norm == 0
        per = (per_class * wp).sum(dim=1) / torch.where(empty, torch.ones_like(norm), norm)
        per = torch.where(empty, torch.ones_like(per), per)
    return per.mean().to(input.dtype)


def _kornia_dice_class(input: Tensor, target: Tensor, *, average: Literal["micro", "macro"] = "micro",
                       eps: float = 1e-8, weight: Tensor | Sequence[float] | None = None,
                       ignore_index: int | None = -100) -> Tensor:
    """kornia's ``DiceLoss``: :func:`kornia_dice_loss`."""
    return kornia_dice_loss(input, target, average=average, eps=eps, weight=weight, ignore_index=ignore_index)


def _tversky_denominator_pad(fn: str, p: Tensor, t: Tensor, fp_weight: float, fn_weight: float, eps: float
                             ) -> tuple[Tensor, Tensor]:
    """Extra elements that add ``eps`` to TP + fp_weight FP + fn_weight FN and nothing else."""
    if eps == 0:
        return p, t
    if fp_weight > 0:  # predicted mass on no target: FP += eps / fp_weight
        return _pad(p, eps / fp_weight), _pad(t, eps / fp_weight, value=False)
    if fn_weight > 0:  # target mass with no prediction: FN += eps / fn_weight
        return _pad(p, eps / fn_weight, value=False), _pad(t, eps / fn_weight)
    raise ValueError(f"{fn}: alpha = beta = 0 gives the index TP / (TP + eps), which losslab's tversky_loss "
                     f"cannot express; the closest losslab loss is tversky_loss with alpha, beta > 0")


def kornia_tversky_loss(
    input: Tensor,
    target: Tensor,
    *,
    alpha: float,
    beta: float,
    eps: float = 1e-8,
    ignore_index: int | None = -100,
) -> Tensor:
    r"""kornia's ``tversky_loss`` / ``TverskyLoss`` (0.9): per image, the mean index of the classes present.

    .. math::

        \mathrm{TI}_{n,c} = \frac{TP_{n,c}}{TP_{n,c} + \alpha FP_{n,c} + \beta FN_{n,c} + \varepsilon},
        \qquad \ell = 1 - \frac{1}{N} \sum_n \frac{1}{\max(|P_n|, 1)} \sum_{c \in P_n} \mathrm{TI}_{n,c}

    with softmax probabilities, one-hot targets, ignored pixels removed and
    :math:`P_n` the classes present in image n's kept target (an image
    without any counts as loss 1). alpha weighs false positives, beta false
    negatives; both are required, as in kornia. :func:`losslab.tversky_loss`
    per image and class, eps added through one extra element.

    Raises:
        ValueError: alpha = beta = 0 (the index TP / (TP + eps)), which
            losslab's tversky_loss cannot express.

    Example:
        >>> import torch, losslab
        >>> loss_fn = losslab.get_loss("kornia.TverskyLoss", alpha=0.3, beta=0.7)
        >>> x = torch.randn(2, 3, 8, 8, requires_grad=True)
        >>> loss_fn(x, torch.randint(0, 3, (2, 8, 8))).backward()
    """
    fn = "kornia.tversky_loss"
    if (empty := empty_batch(input, "mean")) is not None:  # 0, where the framework fails or gives NaN
        return empty
    alpha, beta, eps = _check_kornia_tversky(fn, alpha=alpha, beta=beta, eps=eps, ignore_index=ignore_index)
    p, t, _ = _kornia_layout(fn, input, target, ignore_index)
    present = t.sum(dim=2) > 0
    p, t = _tversky_denominator_pad(fn, p, t, alpha, beta, eps)
    per_class = tversky_loss(p, t, mode="multilabel", from_logits=False, alpha=alpha, beta=beta, smooth=0.0,
                             eps=_TINY, per_image=True, reduction="none")  # (N, C): 1 - TI
    kept = present.to(per_class.dtype)
    score = ((1.0 - per_class) * kept).sum(dim=1) / kept.sum(dim=1).clamp_min(1.0)
    return (1.0 - score.mean()).to(input.dtype)


def _kornia_tversky_class(input: Tensor, target: Tensor, *, alpha: float, beta: float, eps: float = 1e-8,
                          ignore_index: int | None = -100) -> Tensor:
    """kornia's ``TverskyLoss``: :func:`kornia_tversky_loss`."""
    return kornia_tversky_loss(input, target, alpha=alpha, beta=beta, eps=eps, ignore_index=ignore_index)


# ----------------------------------------------------------------------------
# Keras


def _keras_flatten(fn: str, input: Tensor, target: Tensor, axis: Any) -> tuple[Tensor, Tensor, tuple[int, ...]]:
    """(M, 1, K): the kept dims flattened to M, the summed ``axis`` dims to K; and the kept dims' shape."""
    check_input(fn, input)
    check_target_tensor(fn, input, target)
    if target.shape != input.shape:
        raise ValueError(f"{fn}: target must have the input's shape {tuple(input.shape)}; got "
                         f"{tuple(target.shape)}")
    ndim = input.ndim
    if axis is None:
        summed = list(range(ndim))
    else:
        axes = [axis] if isinstance(axis, int) else list(axis)
        if not all(isinstance(a, int) and -ndim <= a < ndim for a in axes) or not axes:
            raise ValueError(f"{fn}: axis must be None, an int or a tuple of ints in [-{ndim}, {ndim}); got "
                             f"{axis!r}")
        summed = sorted({a % ndim for a in axes})
    kept = [d for d in range(ndim) if d not in summed]
    shape = tuple(input.shape[d] for d in kept)
    dtype = compute_dtype(input)

    def flat(x: Tensor) -> Tensor:
        return x.to(dtype).permute(*kept, *summed).reshape(math.prod(shape), 1, -1)

    return flat(input), flat(target), shape


def _check_keras_reduction(fn: str, *, reduction: Any) -> None:
    """The hyperparameter of :func:`keras_dice` and its twin (axis is checked against the input's dimensions)."""
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"{fn}: reduction must be one of 'none', 'mean' (Keras' 'sum_over_batch_size'), 'sum'; "
                         f"got {reduction!r}")


def _check_keras_tversky(fn: str, *, alpha: Any, beta: Any, reduction: Any) -> tuple[float, float]:
    """The hyperparameters of :func:`keras_tversky` and its twin: alpha and beta as floats."""
    alpha = check_number(fn, "alpha", alpha, low=0.0)
    beta = check_number(fn, "beta", beta, low=0.0)
    _check_keras_reduction(fn, reduction=reduction)
    return alpha, beta


def keras_dice(
    input: Tensor,
    target: Tensor,
    *,
    axis: int | Sequence[int] | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Keras 3's ``Dice`` / ``dice``: one ratio over ``axis`` (default: the whole tensor), epsilon 1e-7 added below.

    .. math::

        \ell = 1 - \frac{2 \sum p t}{\sum t + \sum p + 10^{-7}}

    summed over ``axis`` (None: every dim, one value). Probabilities in, as
    Keras'. Arguments in losslab's order: ``loss(input, target)`` =
    Keras' ``loss(y_true, y_pred)`` with y_pred = input. An empty target
    with an empty prediction gives loss 1. "mean" (Keras'
    "sum_over_batch_size") and "sum" reduce the values left by ``axis``;
    "none" keeps them. :func:`losslab.dice_loss` with smooth 0 and epsilon
    through one extra element of prediction 1e-7.

    Example:
        >>> import torch, losslab
        >>> loss_fn = losslab.get_loss("keras.Dice", axis=(1, 2, 3))
        >>> p = torch.rand(2, 8, 8, 1, requires_grad=True)
        >>> loss_fn(p, (torch.rand(2, 8, 8, 1) > 0.5).float()).backward()
    """
    fn = "keras.Dice"
    _check_keras_reduction(fn, reduction=reduction)
    p, t, shape = _keras_flatten(fn, input, target, axis)
    per = dice_loss(_pad(p, KERAS_EPSILON), _pad(t, KERAS_EPSILON, value=False), mode="binary",
                    from_logits=False, smooth=0.0, eps=_TINY, per_image=True, reduction="none")
    per = per.reshape(shape)
    if reduction == "mean":
        per = per.mean()
    elif reduction == "sum":
        per = per.sum()
    return per.to(input.dtype)


def keras_tversky(
    input: Tensor,
    target: Tensor,
    *,
    alpha: float = 0.5,
    beta: float = 0.5,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Keras 3's ``Tversky`` / ``tversky``: one index over the whole tensor, Keras' alpha on the false negatives.

    .. math::

        \ell = 1 - \frac{TP}{TP + \alpha\, FN + \beta\, FP + 10^{-7}}

    with :math:`TP = \sum p t`, :math:`FN = \sum (1 - p) t`,
    :math:`FP = \sum p (1 - t)` over every element. Keras' docstring says
    alpha controls false positives, but its code multiplies alpha by
    sum((1 - y_pred) * y_true), the false negatives: reproduced here, and
    :func:`losslab.get_loss` warns. (losslab's own :func:`losslab.tversky_loss`
    follows Salehi et al.: alpha on FP.) Probabilities in; arguments in
    losslab's order (input = Keras' y_pred). The value is a scalar whatever
    ``reduction``. :func:`losslab.tversky_loss` (its alpha = Keras' beta, its
    beta = Keras' alpha, smooth 0), epsilon through one extra element.

    Raises:
        ValueError: alpha = beta = 0 (the index TP / (TP + epsilon)).

    Example:
        >>> import warnings, torch, losslab
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     loss_fn = losslab.get_loss("keras.Tversky", alpha=0.7, beta=0.3)
        >>> p = torch.rand(2, 8, 8, 1, requires_grad=True)
        >>> loss_fn(p, (torch.rand(2, 8, 8, 1) > 0.5).float()).backward()
    """
    fn = "keras.Tversky"
    alpha, beta = _check_keras_tversky(fn, alpha=alpha, beta=beta, reduction=reduction)
    p, t, _ = _keras_flatten(fn, input, target, None)
    p, t = _tversky_denominator_pad(fn, p, t, beta, alpha, KERAS_EPSILON)
    loss = tversky_loss(p, t, mode="binary", from_logits=False, alpha=beta, beta=alpha, smooth=0.0, eps=_TINY,
                        reduction="none")
    return loss.reshape(()).to(input.dtype)


# ----------------------------------------------------------------------------
# modules and names


class KorniaDiceLoss(LossModule, function=_kornia_dice_class, validate=_check_kornia_dice):
    """kornia's ``DiceLoss`` / ``dice_loss`` (:func:`losslab.frameworks.segmentation.kornia_dice_loss`)."""

    loss_name = "kornia.DiceLoss"

    def __init__(self, *, average: Literal["micro", "macro"] = "micro", eps: float = 1e-8,
                 weight: Tensor | Sequence[float] | None = None, ignore_index: int | None = -100) -> None:
        super().__init__(average=average, eps=eps, weight=weight, ignore_index=ignore_index)


class KorniaTverskyLoss(LossModule, function=_kornia_tversky_class, validate=_check_kornia_tversky):
    """kornia's ``TverskyLoss`` / ``tversky_loss`` (:func:`losslab.frameworks.segmentation.kornia_tversky_loss`)."""

    loss_name = "kornia.TverskyLoss"

    def __init__(self, *, alpha: float, beta: float, eps: float = 1e-8, ignore_index: int | None = -100) -> None:
        super().__init__(alpha=alpha, beta=beta, eps=eps, ignore_index=ignore_index)


class KerasDice(LossModule, function=keras_dice, validate=_check_keras_reduction):
    """Keras' ``Dice`` (:func:`losslab.frameworks.segmentation.keras_dice`)."""

    loss_name = "keras.Dice"

    def __init__(self, *, axis: int | Sequence[int] | None = None, reduction: Reduction = "mean") -> None:
        super().__init__(axis=axis, reduction=reduction)


KERAS_TVERSKY_WARNING = ("keras.Tversky reproduces Keras 3, whose alpha weighs the false negatives and beta the "
                         "false positives (its docstring says the reverse); losslab's tversky_loss puts alpha on "
                         "the false positives (Salehi et al.)")


class KerasTversky(LossModule, function=keras_tversky, validate=_check_keras_tversky):
    """Keras' ``Tversky`` (:func:`losslab.frameworks.segmentation.keras_tversky`); warns about Keras' alpha."""

    loss_name = "keras.Tversky"

    def __init__(self, *, alpha: float = 0.5, beta: float = 0.5, reduction: Reduction = "mean") -> None:
        warnings.warn(KERAS_TVERSKY_WARNING, UserWarning, stacklevel=4)  # past _TwinType.__call__: get_loss's caller
        super().__init__(alpha=alpha, beta=beta, reduction=reduction)


_KORNIA_DICE = "softmax; eps 1e-8 added below; 'micro' (default) pools an image's classes, 'macro' present classes"

add_aliases(
    "dice_loss",
    Alias("dice_loss", "kornia", qualified=True, build=KorniaDiceLoss, note=_KORNIA_DICE),
    Alias("DiceLoss", "kornia", qualified=True, build=KorniaDiceLoss, note=_KORNIA_DICE),
    Alias("Dice", "Keras", input="probabilities", qualified=True, build=KerasDice,
          note="one ratio over the whole tensor (or axis), epsilon 1e-7 added below"),
)
add_aliases(
    "tversky_loss",
    Alias("tversky_loss", "kornia", qualified=True, build=KorniaTverskyLoss,
          note="alpha, beta required; softmax; eps 1e-8 added below; mean over present classes per image"),
    Alias("TverskyLoss", "kornia", qualified=True, build=KorniaTverskyLoss,
          note="alpha, beta required; softmax; eps 1e-8 added below; mean over present classes per image"),
    Alias("Tversky", "Keras", input="probabilities", qualified=True, build=KerasTversky,
          note="Keras' alpha weighs false negatives, beta false positives (warns); one ratio; epsilon 1e-7"),
)
