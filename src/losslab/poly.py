"""Poly-1 losses (PolyLoss): cross-entropy and focal loss with the weight of their leading polynomial term moved.

Cross-entropy is :math:`-\\log p_t = \\sum_{j \\ge 1} (1 - p_t)^j / j` and the focal loss
:math:`\\sum_{j \\ge 1} (1 - p_t)^{j + \\gamma} / j`; Poly-1 adds ``epsilon`` to the coefficient of the first
term. Three losses: :func:`poly_cross_entropy` (softmax), and the focal forms
:func:`poly_softmax_focal_loss` and :func:`poly_sigmoid_focal_loss`, each the focal loss of the same form
(:func:`losslab.softmax_focal_loss`, :func:`losslab.sigmoid_focal_loss`) argument for argument, plus
``epsilon``: two functions rather than a ``form`` argument, because the forms' arguments mean different
things (alpha per class or per side, ignore_index's default, label smoothing, avg_factor).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _dispatch
from ._checks import (
    check_alpha,
    check_common,
    check_number,
    numpy_arguments,
)
from ._core import focal_weight, upcast
from ._dispatch import Backends, Call
from ._forms import softmax_loss
from ._module import LossModule
from .asymmetric import finish_elements, prepare_sigmoid
from .registry import Alias, LossSpec, register

Reduction = Literal["none", "mean", "sum"]
Weight = Tensor | Sequence[float] | float | None

__all__ = [
    "PolyCrossEntropyLoss",
    "PolySigmoidFocalLoss",
    "PolySoftmaxFocalLoss",
    "poly_cross_entropy",
    "poly_sigmoid_focal_loss",
    "poly_softmax_focal_loss",
]


def _poly_term(one_minus_p: Tensor, minus_log_p: Tensor, gamma: float, epsilon: float) -> Tensor:
    """(1 - p)^gamma (-log p) + epsilon (1 - p)^(gamma + 1), the focal weight floored before the power."""
    if not gamma:
        return minus_log_p + epsilon * one_minus_p
    factor = focal_weight(one_minus_p, gamma)
    return factor * (minus_log_p + epsilon * one_minus_p)


# ----------------------------------------------------------------------------
# softmax form


def _softmax(fn: str, input: Tensor, target: Tensor, *, epsilon: float, gamma: float, class_weight: Any,
             ignore_index: int | None, label_smoothing: float, reduction: str, weighted_mean: bool,
             dist_sync: bool) -> Tensor:
    """A softmax-form Poly-1 call over dim 1, prepared as :func:`losslab._forms.softmax_loss` prepares
    cross-entropy (target, weights named "weight" with ``weighted_mean``, else "alpha"; "mean"'s denominator)
    and computed by the "poly_softmax" row."""
    return softmax_loss(fn, input, target, reduction=reduction, input_kind="logits", ignore_index=ignore_index,
                        class_weight=class_weight, label_smoothing=label_smoothing, weighted_mean=weighted_mean,
                        dist_sync=dist_sync, kind="poly_softmax", options={"epsilon": epsilon, "gamma": gamma})


def _softmax_composite(call: Call) -> tuple[Tensor, str]:
    """Per position  sum_c w_c q_c [(1 - p_c)^gamma (-log p_c) + epsilon (1 - p_c)^(gamma + 1)]."""
    x = upcast(call.input, call.dtype)
    o, tensors = call.options, call.tensors
    gamma, epsilon, smoothing, w = o["gamma"], o["epsilon"], o["smoothing"], tensors["w"]
    num_classes = x.shape[1]
    log_p = F.log_softmax(x, dim=1)
    class_shape = (num_classes,) + (1,) * (x.ndim - 2)
    indices, valid = tensors["indices"], tensors["valid"]

    def every_class() -> Tensor:
        term = _poly_term(-torch.expm1(log_p), -log_p, gamma, epsilon)
        return term if w is None else term * w.view(class_shape)

    if indices is not None:
        idx = indices.unsqueeze(1)
        if smoothing:
            full = every_class()
            loss = (1.0 - smoothing) * full.gather(1, idx).squeeze(1) + (smoothing / num_classes) * full.sum(1)
        else:
            lp = log_p.gather(1, idx).squeeze(1)
            loss = _poly_term(-torch.expm1(lp), -lp, gamma, epsilon)
            if w is not None:
                loss = loss * w[indices]
        if valid is not None:
            loss = torch.where(valid, loss, torch.zeros_like(loss))
        return loss, "elements"
    q = tensors["probs"]
    if smoothing:
        q = q * (1.0 - smoothing) + smoothing / num_classes
    return (q * every_class()).sum(1), "elements"


_dispatch.register("poly_softmax", Backends(composite=_softmax_composite))


@numpy_arguments
def poly_cross_entropy(
    input: Tensor,
    target: Tensor,
    *,
    epsilon: float = 2.0,
    weight: Tensor | Sequence[float] | None = None,
    ignore_index: int | None = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    dist_sync: bool = False,
) -> Tensor:
    r"""Poly-1 cross-entropy: softmax cross-entropy plus ``epsilon`` times :math:`1 - p_t`.

    .. math::

        \ell_n = \sum_{c=1}^{C} w_c\, q_{n,c} \left[ -\log p_{n,c} + \epsilon\, (1 - p_{n,c}) \right],
        \qquad p_n = \operatorname{softmax}(x_n), \quad q_n = (1 - \varepsilon_s)\, y_n + \varepsilon_s / C

    with :math:`\epsilon` = ``epsilon``, :math:`\varepsilon_s` = ``label_smoothing``
    and :math:`w` = ``weight`` (1 when None). Without weights this is
    :math:`\mathrm{CE} + \epsilon (1 - p_t)` with :math:`1 - p_t = \sum_c q_c (1 - p_c)`
    (:math:`= 1 - \sum_c q_c p_c` for targets that sum to 1): optax's
    ``poly_loss_cross_entropy``, with PyTorch's label smoothing applied to both
    terms as in the paper's code. A class weight scales both terms of its
    class, so a class-index target's loss is :math:`w_y [\mathrm{CE} + \epsilon (1 - p_y)]`.
    ``epsilon = 0`` is :func:`cross_entropy`, values and gradients; the paper
    uses 2 for ImageNet classification and -1 for detection, and a negative
    epsilon down to -1 keeps the loss non-negative.

    Args:
        input: logits of shape (N, C) or (N, C, d1, ..., dk).
        target: class indices (N) or (N, d1, ..., dk), values in [0, C) or
            ``ignore_index``; or class probabilities shaped like the input.
        epsilon: the Poly-1 coefficient, a finite number (default 2, optax's).
        weight: per-class rescaling, non-negative, length C; it multiplies both
            terms of its class (see above).
        ignore_index: class-index value whose positions contribute nothing (not
            used with probability targets). None disables it.
        reduction: "none" | "mean" | "sum".
        label_smoothing: :math:`\varepsilon_s` in [0, 1], applied to index and
            probability targets alike, for both terms.
        dist_sync: all-reduce the batch-dependent normalisation under
            torch.distributed (:mod:`losslab._dist`; README, "Data-parallel training").

    Returns:
        "none": shape (N) or (N, d1, ..., dk), ignored positions 0; otherwise a
        scalar in the input's dtype. "mean" divides as :func:`cross_entropy`
        does: with class-index targets by :math:`\sum_n w_{y_n}` over the kept
        positions (their number without ``weight``), with probability targets
        by the number of positions; a zero denominator gives 0.

    Raises:
        TypeError: non-floating input, float class indices, integer probability
            targets, a non-numeric epsilon.
        ValueError: a non-finite epsilon, class indices out of range, ``weight``
            not of length C or negative, ``label_smoothing`` outside [0, 1].

    Numerics: log p from ``log_softmax``, 1 - p from ``-expm1(log p)`` (no
    cancellation near p = 1); half precision is computed in float32.

    References:
        Leng, Tan, Liu, Cubuk, Shi, Cheng, Anguelov. PolyLoss: A Polynomial
        Expansion Perspective of Classification Loss Functions. ICLR 2022, arXiv:2204.12511.

    Example:
        >>> import torch, losslab
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], requires_grad=True)
        >>> loss = losslab.poly_cross_entropy(logits, torch.tensor([0, 2]), epsilon=2.0)
        >>> loss.backward()
        >>> loss.round(decimals=4)
        tensor(0.4937, grad_fn=<RoundBackward1>)
    """
    fn = "poly_cross_entropy"
    epsilon = _check_poly_ce(fn, epsilon=epsilon, ignore_index=ignore_index, reduction=reduction,
                             label_smoothing=label_smoothing)
    return _softmax(fn, input, target, epsilon=epsilon, gamma=0.0, class_weight=weight,
                    ignore_index=ignore_index, label_smoothing=label_smoothing, reduction=reduction,
                    weighted_mean=True, dist_sync=dist_sync)


@numpy_arguments
def poly_softmax_focal_loss(
    input: Tensor,
    target: Tensor,
    *,
    epsilon: float = 1.0,
    gamma: float = 2.0,
    alpha: float | Tensor | Sequence[float] | None = None,
    ignore_index: int | None = -100,
    label_smoothing: float = 0.0,
    reduction: Reduction = "mean",
    dist_sync: bool = False,
) -> Tensor:
    r"""Poly-1 focal loss over a softmax of dim 1: the softmax focal loss plus ``epsilon`` :math:`(1 - p)^{\gamma+1}`.

    .. math::

        \ell_n = \sum_{c=1}^{C} \alpha_c\, q_{n,c} \left[ -(1 - p_{n,c})^{\gamma} \log p_{n,c}
                 + \epsilon\, (1 - p_{n,c})^{\gamma + 1} \right]

    with :math:`p_n = \operatorname{softmax}(x_n)` and :math:`q_n` the one-hot
    or probability target, smoothed as in :func:`softmax_focal_loss`. For a
    class-index target without smoothing this is
    :math:`\alpha_t [\mathrm{FL} + \epsilon (1 - p_t)^{\gamma + 1}]`.
    ``epsilon = 0`` is :func:`softmax_focal_loss` with the same arguments
    (values and gradients); ``gamma = 0`` is :func:`poly_cross_entropy`
    with the plain mean. alpha scales both terms of its class: None (no
    weighting), a float in [0, 1] (every class alike) or per-class weights of
    length C.

    Args:
        input: logits (N, C) or (N, C, d1, ..., dk).
        target: class indices (N, d1, ..., dk) in [0, C) or ``ignore_index``,
            or class probabilities shaped like the input.
        epsilon: the Poly-1 coefficient, a finite number (the paper uses -1
            with focal loss for detection; default 1).
        gamma: focusing parameter >= 0.
        alpha: see above.
        ignore_index: class index to skip (class-index targets only).
        label_smoothing: in [0, 1], for both terms.
        reduction: "none" | "mean" | "sum"; "mean" is the plain mean over the
            kept positions (alpha is not in the denominator), 0 when none is kept.
        dist_sync: all-reduce the batch-dependent normalisation under
            torch.distributed (:mod:`losslab._dist`; README, "Data-parallel training").

    Returns:
        "none": (N, d1, ..., dk); otherwise a scalar.

    Raises:
        TypeError: non-floating input, float class indices, alpha of the wrong
            type, a non-numeric epsilon or gamma.
        ValueError: gamma < 0, a non-finite epsilon, a float alpha outside
            [0, 1], per-class alpha not of length C or negative.

    Numerics: 1 - p is ``-expm1(log_softmax)`` floored at the smallest normal
    number before the power, so gradients are finite for every gamma >= 0.

    References:
        Leng et al. PolyLoss. ICLR 2022, arXiv:2204.12511; Lin et al. Focal
        Loss for Dense Object Detection. ICCV 2017, arXiv:1708.02002.

    Example:
        >>> import torch, losslab
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], requires_grad=True)
        >>> loss = losslab.poly_softmax_focal_loss(logits, torch.tensor([1, 2]), epsilon=1.0, gamma=2.0)
        >>> loss.backward()
        >>> loss.round(decimals=4)
        tensor(0.8738, grad_fn=<RoundBackward1>)
    """
    fn = "poly_softmax_focal_loss"
    epsilon, alpha = _check_poly_softmax(fn, epsilon=epsilon, alpha=alpha, gamma=gamma, ignore_index=ignore_index,
                                         label_smoothing=label_smoothing, reduction=reduction)
    if isinstance(alpha, float) and isinstance(input, Tensor) and input.ndim >= 2:
        alpha = torch.full((input.shape[1],), alpha, dtype=torch.float64, device=input.device)
    return _softmax(fn, input, target, epsilon=epsilon, gamma=float(gamma), class_weight=alpha,
                    ignore_index=ignore_index, label_smoothing=label_smoothing, reduction=reduction,
                    weighted_mean=False, dist_sync=dist_sync)


# ----------------------------------------------------------------------------
# sigmoid form


def _sigmoid_composite(call: Call) -> tuple[Tensor, str]:
    """Per element  alpha_t (1 - p_t)^gamma BCE + epsilon (1 - p_t)^(gamma + 1)."""
    x = upcast(call.input, call.dtype)
    t, o = call.tensors["t"], call.options
    gamma, epsilon, alpha = o["gamma"], o["epsilon"], o["alpha"]
    bce = -(t * F.logsigmoid(x) + (1.0 - t) * F.logsigmoid(-x))
    one_minus_pt = torch.sigmoid(x) * (1.0 - t) + torch.sigmoid(-x) * t
    factor = focal_weight(one_minus_pt, gamma) if gamma else None
    if alpha is not None:
        bce = bce * (alpha * t + (1.0 - alpha) * (1.0 - t))
    loss = bce + epsilon * one_minus_pt
    return finish_elements(loss if factor is None else factor * loss, call)


_dispatch.register("poly_sigmoid", Backends(composite=_sigmoid_composite))


@numpy_arguments
def poly_sigmoid_focal_loss(
    input: Tensor,
    target: Tensor,
    *,
    epsilon: float = 1.0,
    gamma: float = 2.0,
    alpha: float | None = None,
    ignore_index: int | None = None,
    weight: Weight = None,
    reduction: Reduction = "mean",
    avg_factor: float | Tensor | None = None,
    dist_sync: bool = False,
) -> Tensor:
    r"""Poly-1 sigmoid focal loss of every element: the paper's Poly-1 form of RetinaNet's focal loss.

    .. math::

        \ell = w \left[ \alpha_t\, (1 - p_t)^{\gamma}\, \mathrm{BCE}(x, t) + \epsilon\, (1 - p_t)^{\gamma + 1} \right],
        \qquad 1 - p_t = p (1 - t) + (1 - p)\, t, \quad \alpha_t = \alpha t + (1 - \alpha)(1 - t)

    with :math:`p = \sigma(x)`. alpha weights the focal term only, as in the
    paper's code (timm's ``PolyBinaryCrossEntropy`` weights both terms).
    ``epsilon = 0`` is :func:`sigmoid_focal_loss` with the same alpha
    (values and gradients); ``gamma = 0`` gives BCE + epsilon (1 - p_t).

    Args:
        input: logits of any shape; (N, C, d1, ...) for class-index targets.
        target: labels shaped like the input (hard or soft, in [0, 1]), or,
            for an (N, C, d1, ...) input, integer class indices (N, d1, ...)
            with index C = background, as :func:`sigmoid_focal_loss`.
        epsilon: the Poly-1 coefficient, a finite number (the paper uses -1
            for detection; default 1).
        gamma: focusing parameter >= 0.
        alpha: weight of positives in [0, 1] in the focal term (negatives get
            1 - alpha); None (default, unlike sigmoid_focal_loss's 0.25) or a
            negative value disables it.
        ignore_index: target value (dense) or class index (index form) to skip.
        weight: non-negative rescaling of each element's loss (both terms): a
            1-D tensor of length C applies along dim 1, any other shape must
            broadcast to the input's shape.
        reduction: "none" | "mean" | "sum"; "mean" is the mean over the kept
            elements (weights not in the denominator), or the sum divided by
            ``avg_factor``.
        avg_factor: with "mean", divide by this (e.g. the number of positive
            anchors) instead; 0 divides by 1.
        dist_sync: all-reduce the batch-dependent normalisation under
            torch.distributed (:mod:`losslab._dist`; README, "Data-parallel training").

    Returns:
        "none": the input's shape; otherwise a scalar (0 for an empty or
        all-ignored batch).

    Raises:
        TypeError: non-floating input, non-numeric epsilon, gamma or alpha.
        ValueError: alpha > 1, gamma < 0, a non-finite epsilon, targets
            outside [0, 1] or class indices outside [0, C].

    Numerics: BCE from log-sigmoids; 1 - p_t from :math:`\sigma(x)` and
    :math:`\sigma(-x)` (no cancellation), floored at the smallest normal
    number before the power, so gradients are finite for every gamma >= 0.

    References:
        Leng et al. PolyLoss. ICLR 2022, arXiv:2204.12511; Lin et al. Focal
        Loss for Dense Object Detection. ICCV 2017, arXiv:1708.02002.

    Example:
        >>> import torch, losslab
        >>> logits = torch.tensor([[3.0, -1.0], [-2.0, 0.5]], requires_grad=True)
        >>> labels = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> loss = losslab.poly_sigmoid_focal_loss(logits, labels, epsilon=1.0, alpha=0.25)
        >>> loss.backward()
        >>> loss.round(decimals=4)
        tensor(0.0276, grad_fn=<RoundBackward1>)
    """
    fn = "poly_sigmoid_focal_loss"
    epsilon, alpha = _check_poly_sigmoid(fn, epsilon=epsilon, alpha=alpha, gamma=gamma, ignore_index=ignore_index,
                                         reduction=reduction, avg_factor=avg_factor)
    return prepare_sigmoid(fn, "poly_sigmoid", input, target, ignore_index=ignore_index, weight=weight,
                           reduction=reduction, avg_factor=avg_factor, dist_sync=dist_sync,
                           options={"epsilon": epsilon, "gamma": float(gamma), "alpha": alpha})


# ----------------------------------------------------------------------------
# validators and twins


def _epsilon(fn: str, epsilon: Any) -> float:
    return check_number(fn, "epsilon", epsilon)


def _check_poly_ce(fn: str, *, epsilon: Any, **common: Any) -> float:
    """The hyperparameters of :func:`poly_cross_entropy` and its twin; epsilon as a float."""
    check_common(fn, **common)
    return _epsilon(fn, epsilon)


def _check_poly_softmax(fn: str, *, epsilon: Any, alpha: Any, **common: Any) -> tuple[float, Any]:
    """The hyperparameters of :func:`poly_softmax_focal_loss` and its twin."""
    check_common(fn, **common)
    return _epsilon(fn, epsilon), check_alpha(fn, alpha, per_class=True,
                                              expected="None, a float in [0, 1] or per-class weights of length C")


def _check_poly_sigmoid(fn: str, *, epsilon: Any, alpha: Any, **common: Any) -> tuple[float, float | None]:
    """The hyperparameters of :func:`poly_sigmoid_focal_loss` and its twin; alpha a float, or None if disabled."""
    check_common(fn, **common)
    return _epsilon(fn, epsilon), check_alpha(fn, alpha, per_class=False, negative_disables=True,
                                              expected="a float in [0, 1], or None or negative to disable it")


class PolyCrossEntropyLoss(LossModule, function=poly_cross_entropy, validate=_check_poly_ce):
    """Module form of :func:`losslab.poly_cross_entropy`."""

    def __init__(self, *, epsilon: float = 2.0, weight: Tensor | Sequence[float] | None = None,
                 ignore_index: int | None = -100, reduction: Reduction = "mean", label_smoothing: float = 0.0,
                 dist_sync: bool = False) -> None:
        super().__init__(epsilon=epsilon, weight=weight, ignore_index=ignore_index, reduction=reduction,
                         label_smoothing=label_smoothing, dist_sync=dist_sync)


class PolySoftmaxFocalLoss(LossModule, function=poly_softmax_focal_loss, validate=_check_poly_softmax):
    """Module form of :func:`losslab.poly_softmax_focal_loss`."""

    def __init__(self, *, epsilon: float = 1.0, gamma: float = 2.0,
                 alpha: float | Tensor | Sequence[float] | None = None, ignore_index: int | None = -100,
                 label_smoothing: float = 0.0, reduction: Reduction = "mean", dist_sync: bool = False) -> None:
        super().__init__(epsilon=epsilon, gamma=gamma, alpha=alpha, ignore_index=ignore_index,
                         label_smoothing=label_smoothing, reduction=reduction, dist_sync=dist_sync)


class PolySigmoidFocalLoss(LossModule, function=poly_sigmoid_focal_loss, validate=_check_poly_sigmoid):
    """Module form of :func:`losslab.poly_sigmoid_focal_loss`."""

    def __init__(self, *, epsilon: float = 1.0, gamma: float = 2.0, alpha: float | None = None,
                 ignore_index: int | None = None, weight: Weight = None, reduction: Reduction = "mean",
                 avg_factor: float | Tensor | None = None, dist_sync: bool = False) -> None:
        super().__init__(epsilon=epsilon, gamma=gamma, alpha=alpha, ignore_index=ignore_index, weight=weight,
                         reduction=reduction, avg_factor=avg_factor, dist_sync=dist_sync)


# ----------------------------------------------------------------------------
# registration (timm's adapters are in losslab.frameworks.multilabel)

register(LossSpec(
    name="poly_cross_entropy", function=poly_cross_entropy, module=PolyCrossEntropyLoss, family="classification",
    formula="sum_c w_c q_c [-log p_c + epsilon (1 - p_c)],  p = softmax(x)",
    aliases=(
        Alias("Poly-1", "paper"),
        Alias("Poly-1 Cross-Entropy", "paper"),
        Alias("PolyLoss", "paper", note="the Poly-1 cross-entropy (Leng et al., ICLR 2022)"),
        Alias("poly_loss_cross_entropy", "optax", defaults={"reduction": "none"},
              note="returns the per-example loss; probability labels (class indices also accepted here)"),
    ),
))

register(LossSpec(
    name="poly_softmax_focal_loss", function=poly_softmax_focal_loss, module=PolySoftmaxFocalLoss,
    family="classification",
    formula="sum_c alpha_c q_c [-(1 - p_c)^gamma log p_c + epsilon (1 - p_c)^(gamma + 1)],  p = softmax(x)",
    aliases=(Alias("Poly-1 Softmax Focal Loss", "paper"),),
))

register(LossSpec(
    name="poly_sigmoid_focal_loss", function=poly_sigmoid_focal_loss, module=PolySigmoidFocalLoss,
    family="classification",
    formula="alpha_t (1 - p_t)^gamma BCE(x, t) + epsilon (1 - p_t)^(gamma + 1),  p = sigmoid(x)",
    aliases=(Alias("Poly-1 Focal Loss", "paper", note="the sigmoid form, as the paper's detection experiments"),),
))
