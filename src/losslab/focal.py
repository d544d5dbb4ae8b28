"""Focal losses: sigmoid (binary, multi-label, one-vs-rest) and softmax (multi-class)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from ._checks import check_alpha, check_common, numpy_arguments
from ._forms import sigmoid_loss, softmax_loss
from ._module import LossModule
from .registry import Alias, LossSpec, register

Reduction = Literal["none", "mean", "sum"]

__all__ = ["sigmoid_focal_loss", "softmax_focal_loss", "SigmoidFocalLoss", "SoftmaxFocalLoss"]


@numpy_arguments
def sigmoid_focal_loss(
    input: Tensor,
    target: Tensor,
    *,
    alpha: float | None = 0.25,
    gamma: float = 2.0,
    ignore_index: int | None = None,
    weight: Tensor | Sequence[float] | float | None = None,
    reduction: Reduction = "mean",
    from_logits: bool = True,
    avg_factor: float | Tensor | None = None,
    dist_sync: bool = False,
) -> Tensor:
    r"""Sigmoid focal loss of every element (RetinaNet), as ``torchvision.ops.sigmoid_focal_loss``.

    .. math::

        \mathrm{FL} = \alpha_t\, (1 - p_t)^{\gamma}\, \mathrm{BCE}(x, t), \qquad
        p_t = p\, t + (1 - p)(1 - t), \qquad \alpha_t = \alpha\, t + (1 - \alpha)(1 - t)

    with :math:`p = \sigma(x)`. For hard labels this is
    :math:`-\alpha_t (1 - p_t)^\gamma \log p_t`; soft targets in [0, 1] use
    the same linear interpolation as torchvision.

    Args:
        input: logits of any shape; (N, C, d1, ...) for class-index targets.
            Probabilities when ``from_logits=False``.
        target: labels shaped like the input (hard or soft, in [0, 1]), or, for
            an (N, C, d1, ...) input, integer class indices (N, d1, ...) with
            index C = background: the one-vs-rest form of
            :func:`binary_cross_entropy`. With one class (input (N, 1, ...))
            integer labels raise a ValueError, since label 1 would be the
            background: pass ``target.float().unsqueeze(1)``.
        alpha: weight of positives in [0, 1] (negatives get 1 - alpha): it
            weights the *positive* term of every class, not one class. None or
            a negative value disables it (torchvision passes -1).
        gamma: focusing parameter >= 0; 0 gives alpha-balanced BCE.
        ignore_index: target value (dense) or class index (index form) to skip.
        weight: non-negative rescaling of each element's loss: a 1-D tensor of
            length C applies along dim 1, any other shape must broadcast to the
            input's shape (for mmdetection's per-anchor weight of shape (N,),
            pass ``weight[:, None]``).
        reduction: "none" | "mean" | "sum". torchvision defaults to "none";
            losslab to "mean", the mean over non-ignored elements.
        from_logits: False when ``input`` holds probabilities.
        avg_factor: with "mean", divide the sum by this number (typically the
            number of positive anchors, as mmdetection's heads do) instead of
            by the element count; 0 divides by 1. "none" and "sum" ignore it.
        dist_sync: all-reduce the batch-dependent normalisation under
            torch.distributed (:mod:`losslab._dist`; README, "Data-parallel training").

    Returns:
        "none": the input's shape; otherwise a scalar (0 for an empty or
        all-ignored batch).

    Raises:
        TypeError: non-floating input, non-numeric alpha or gamma.
        ValueError: alpha > 1, gamma < 0, targets outside [0, 1] or class
            indices outside [0, C], a target shape that fits neither form.

    Numerics: the log terms use ``logsigmoid``; ``1 - p_t`` is formed from
    :math:`\sigma(x)` and :math:`\sigma(-x)` (no cancellation) and floored at
    the smallest normal number before the power, so the gradient is finite for
    every gamma >= 0, including gamma < 1 at p_t = 1 and logits of +-1e4.
    Keras' BinaryFocalCrossentropy clips probabilities (after its sigmoid,
    with from_logits=True) to [1e-7, 1 - 1e-7]: beyond logits of about +-16
    its loss is flat and its gradient 0, where losslab's stays exact.

    References:
        Lin, Goyal, Girshick, He, Dollar. Focal Loss for Dense Object Detection.
        ICCV 2017, arXiv:1708.02002.

    Example:
        >>> import torch, losslab
        >>> logits = torch.tensor([[3.0, -1.0], [-2.0, 0.5]], requires_grad=True)
        >>> labels = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> loss = losslab.sigmoid_focal_loss(logits, labels, alpha=0.25, gamma=2.0)
        >>> loss.backward()
        >>> loss.round(decimals=4)
        tensor(0.0088, grad_fn=<RoundBackward1>)
    """
    fn = "sigmoid_focal_loss"
    alpha = _check_sigmoid_focal(fn, alpha=alpha, gamma=gamma, ignore_index=ignore_index, reduction=reduction,
                                 from_logits=from_logits, avg_factor=avg_factor)
    return sigmoid_loss(fn, input, target, reduction=reduction, from_logits=from_logits,
                        ignore_index=ignore_index, alpha=alpha, gamma=gamma, weight=weight, avg_factor=avg_factor,
                        dist_sync=dist_sync)


@numpy_arguments
def softmax_focal_loss(
    input: Tensor,
    target: Tensor,
    *,
    alpha: float | Tensor | Sequence[float] | None = None,
    gamma: float = 2.0,
    ignore_index: int | None = -100,
    label_smoothing: float = 0.0,
    reduction: Reduction = "mean",
    from_logits: bool = True,
    dist_sync: bool = False,
) -> Tensor:
    r"""Multi-class focal loss over a softmax of dim 1.

    .. math::

        \ell_n = -\sum_{c=1}^{C} \alpha_c\, q_{n,c}\, (1 - p_{n,c})^{\gamma} \log p_{n,c},
        \qquad p_n = \operatorname{softmax}(x_n), \quad q_n = (1 - \varepsilon)\, y_n + \varepsilon / C

    For a class-index target without smoothing this is
    :math:`-\alpha_t (1 - p_t)^\gamma \log p_t`. With soft or smoothed targets
    each class's term has its own modulating factor, as in Keras'
    ``CategoricalFocalCrossentropy``.

    With ``gamma=0`` and ``alpha=None`` it equals :func:`cross_entropy`
    exactly (values and gradients); with ``gamma=0`` and per-class alpha it
    equals :func:`balanced_cross_entropy`.

    What alpha means (libraries disagree; losslab does exactly this):

    * None: no class weighting.
    * a sequence or tensor of length C: per-class weights, :math:`\alpha_t =
      \alpha[\text{target}]`; e.g. from :func:`losslab.class_weights`.
    * a float in [0, 1]: the same factor for every class, so the loss is
      alpha times the unweighted one. This is the convention of Keras'
      CategoricalFocalCrossentropy (default 0.25) and mmcv's
      softmax_focal_loss. kornia's focal_loss and MONAI's softmax focal loss
      instead give 1 - alpha to class 0 (background) and alpha to the
      others: pass ``alpha=[1 - a] + [a] * (C - 1)``, or ask for
      ``get_loss("kornia.focal_loss")``, which does it.

    Args:
        input: logits (N, C) or (N, C, d1, ..., dk); probabilities when
            ``from_logits=False``.
        target: class indices (N, d1, ..., dk) in [0, C) or ``ignore_index``,
            or class probabilities shaped like the input.
        alpha: see above.
        gamma: focusing parameter >= 0.
        ignore_index: class index to skip (class-index targets only).
        label_smoothing: :math:`\varepsilon` in [0, 1].
        reduction: "none" | "mean" | "sum"; "mean" is the plain mean over
            non-ignored positions (alpha is not in the denominator).
        from_logits: False when ``input`` holds probabilities.
        dist_sync: all-reduce the batch-dependent normalisation under
            torch.distributed (:mod:`losslab._dist`; README, "Data-parallel training").

    Returns:
        "none": (N, d1, ..., dk); otherwise a scalar.

    Raises:
        TypeError: non-floating input, float class indices, integer
            probability targets, alpha of the wrong type.
        ValueError: gamma < 0, a float alpha outside [0, 1], per-class alpha
            not of length C or negative, class indices out of range.

    Numerics: log p comes from ``log_softmax``; :math:`1 - p` from
    ``-expm1(log p)``, floored at the smallest normal number before the power,
    so gradients stay finite for every gamma >= 0 at saturated logits. Keras'
    CategoricalFocalCrossentropy clips its probabilities (after its softmax,
    with from_logits=True) to [1e-7, 1 - 1e-7], so for logits more than about
    16 apart its loss stops growing (at -log(1e-7)) and its gradient vanishes
    where losslab's keeps the exact value.

    References:
        Lin, Goyal, Girshick, He, Dollar. Focal Loss for Dense Object Detection.
        ICCV 2017, arXiv:1708.02002.

    Example:
        >>> import torch, losslab
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], requires_grad=True)
        >>> loss = losslab.softmax_focal_loss(logits, torch.tensor([1, 2]), gamma=2.0)
        >>> loss.backward()
        >>> loss.round(decimals=4)
        tensor(0.5928, grad_fn=<RoundBackward1>)
    """
    fn = "softmax_focal_loss"
    alpha = _check_softmax_focal(fn, alpha=alpha, gamma=gamma, ignore_index=ignore_index,
                                 label_smoothing=label_smoothing, reduction=reduction, from_logits=from_logits)
    if isinstance(alpha, float) and isinstance(input, Tensor) and input.ndim >= 2:
        alpha = torch.full((input.shape[1],), alpha, dtype=torch.float64, device=input.device)
    return softmax_loss(fn, input, target, reduction=reduction, ignore_index=ignore_index,
                        input_kind="logits" if from_logits else "probabilities", class_weight=alpha,
                        gamma=gamma, label_smoothing=label_smoothing, dist_sync=dist_sync)


def _check_sigmoid_focal(fn: str, *, alpha: object, **common: object) -> float | None:
    """The hyperparameters of :func:`sigmoid_focal_loss` and its twin; alpha as a float, or None where disabled."""
    check_common(fn, **common)
    return check_alpha(fn, alpha, per_class=False, negative_disables=True,
                       expected="a float in [0, 1], or None or negative to disable it")


def _check_softmax_focal(fn: str, *, alpha: object, **common: object) -> object:
    """The hyperparameters of :func:`softmax_focal_loss` and its twin; alpha a float, None or per-class values."""
    check_common(fn, **common)
    return check_alpha(fn, alpha, per_class=True, expected="None, a float in [0, 1] or per-class weights of length C")


class SigmoidFocalLoss(LossModule, function=sigmoid_focal_loss, validate=_check_sigmoid_focal):
    """Module form of :func:`losslab.sigmoid_focal_loss`."""

    def __init__(self, *, alpha: float | None = 0.25, gamma: float = 2.0, ignore_index: int | None = None,
                 weight: Tensor | Sequence[float] | float | None = None, reduction: Reduction = "mean",
                 from_logits: bool = True, avg_factor: float | Tensor | None = None, dist_sync: bool = False) -> None:
        super().__init__(alpha=alpha, gamma=gamma, ignore_index=ignore_index, weight=weight, reduction=reduction,
                         from_logits=from_logits, avg_factor=avg_factor, dist_sync=dist_sync)


class SoftmaxFocalLoss(LossModule, function=softmax_focal_loss, validate=_check_softmax_focal):
    """Module form of :func:`losslab.softmax_focal_loss`."""

    def __init__(self, *, alpha: float | Tensor | Sequence[float] | None = None, gamma: float = 2.0,
                 ignore_index: int | None = -100, label_smoothing: float = 0.0, reduction: Reduction = "mean",
                 from_logits: bool = True, dist_sync: bool = False) -> None:
        super().__init__(alpha=alpha, gamma=gamma, ignore_index=ignore_index, label_smoothing=label_smoothing,
                         reduction=reduction, from_logits=from_logits, dist_sync=dist_sync)


# ----------------------------------------------------------------------------
# registration

_PROBS = {"from_logits": False}


register(LossSpec(
    name="sigmoid_focal_loss", function=sigmoid_focal_loss, module=SigmoidFocalLoss, family="focal",
    formula="alpha_t (1 - p_t)^gamma BCE(x, t),  p = sigmoid(x)",
    aliases=(
        Alias("sigmoid_focal_loss", "torchvision", defaults={"reduction": "none"}, qualified=True,
              note="torchvision.ops; its default reduction is 'none'"),
        Alias("sigmoid_focal_loss", "optax", defaults={"alpha": None, "reduction": "none"}, qualified=True,
              note="optax's alpha defaults to None; it returns the elementwise loss"),
        Alias("Focal Loss", "paper", note="RetinaNet's sigmoid form (kornia's FocalLoss is the softmax form)"),
        Alias("BinaryFocalCrossentropy", "Keras", "probabilities", {"from_logits": False, "alpha": None},
              note="Keras applies alpha only with apply_class_balancing=True; it clips probabilities to "
                   "[1e-7, 1 - 1e-7]"),
    ),
))

register(LossSpec(
    name="softmax_focal_loss", function=softmax_focal_loss, module=SoftmaxFocalLoss, family="focal",
    formula="-sum_c alpha_c q_c (1 - p_c)^gamma log p_c,  p = softmax(x)",
    aliases=(
        Alias("Multi-Class Focal Loss", "paper"),
        Alias("Categorical Focal Loss", "paper"),
        Alias("softmax_focal_loss", "mmcv", defaults={"alpha": 0.25}, qualified=True,
              note="mmcv.ops; its scalar alpha (default 0.25) scales every class; 'mean' over N"),
    ),
))

