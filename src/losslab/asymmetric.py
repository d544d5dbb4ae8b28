"""The asymmetric loss (ASL) of multi-label classification: a focal loss with its own gamma per side and a
shifted negative probability.

Also the preparation shared by the multi-label sigmoid losses outside the dispatcher's sigmoid form
(:func:`prepare_sigmoid`, used by :mod:`losslab.poly` too): validate, normalise the target, and build the
:class:`losslab._dispatch.Call` whose composite the dispatcher finishes (guarded mean, ``avg_factor``,
``dist_sync``, the input's dtype).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _dispatch, _dist
from ._checks import (
    along_class_dim,
    check_avg_factor,
    check_common,
    check_input,
    check_number,
    compute_dtype,
    numpy_arguments,
)
from ._core import focal_weight, sigmoid_target, upcast
from ._dispatch import Backends, Call
from ._module import LossModule
from .registry import Alias, LossSpec, register

Reduction = Literal["none", "mean", "sum"]
Weight = Tensor | Sequence[float] | float | None

__all__ = ["AsymmetricLoss", "asymmetric_loss"]


def prepare_sigmoid(fn: str, kind: str, input: Tensor, target: Tensor, *, ignore_index: int | None,
                    weight: Any, reduction: str, avg_factor: Any, dist_sync: bool,
                    options: dict[str, Any]) -> Tensor:
    """Run a multi-label sigmoid loss of the dispatcher's row ``kind``, "mean" over the kept elements.

    The target is dense (shaped like the input, values in [0, 1], ``ignore_index`` marks dropped elements)
    or, for an (N, C, d1, ...) input, class indices (N, d1, ...) with index C = background, as
    :func:`losslab.binary_cross_entropy` takes them. The composite gets ``t`` (dense, 0 where dropped),
    ``valid`` (None: all kept) and ``w`` (the weight broadcast along the class dimension, or None).
    """
    check_input(fn, input)
    avg_factor = check_avg_factor(fn, avg_factor, input)
    processes = _dist.world(fn, dist_sync)
    dtype = compute_dtype(input)
    w = None if weight is None else along_class_dim(fn, "weight", weight, input, dtype)
    t, valid = sigmoid_target(fn, input, target, ignore_index, dtype)
    kept = None if valid is None else valid.sum().to(dtype)
    denominator = avg_factor if avg_factor is not None else (kept if kept is not None else float(input.numel()))
    tensors = {"t": t, "valid": valid, "w": w, "avg_factor": avg_factor if isinstance(avg_factor, Tensor) else None}
    return _dispatch.run(Call(fn, kind, input, reduction, denominator, processes, tensors, options, fusable=False))


def finish_elements(loss: Tensor, call: Call) -> tuple[Tensor, str]:
    """A per-element loss times the weight, 0 where not kept: the composite's result."""
    w, valid = call.tensors["w"], call.tensors["valid"]
    if w is not None:
        loss = loss * w
    if valid is not None:
        loss = torch.where(valid, loss, torch.zeros_like(loss))
    return loss, "elements"


def asymmetric_elementwise(x: Tensor, t: Tensor, *, gamma_pos: float, gamma_neg: float, clip: float) -> Tensor:
    """Per-element  -[t (1 - p)^gamma_pos log p + (1 - t) p_m^gamma_neg log(1 - p_m)],  p_m = max(p - clip, 0).

    log p and log(1 - p) are log-sigmoids; (1 - p)^gamma_pos (and p^gamma_neg without clip) are
    exp(gamma log-sigmoid), whose gradient is finite for every gamma >= 0; with clip > 0,
    log(1 - p_m) = log(min(sigmoid(-x) + clip, 1)) >= log(clip) is finite and p_m^gamma_neg is floored at
    the dtype's smallest normal number before the power (its gradient is 0 below the clip).
    """
    positive = -F.logsigmoid(x)
    if gamma_pos:
        positive = positive * torch.exp(gamma_pos * F.logsigmoid(-x))
    if clip:
        negative = -torch.log((torch.sigmoid(-x) + clip).clamp_max(1.0))
        if gamma_neg:
            negative = negative * focal_weight(torch.sigmoid(x) - clip, gamma_neg)
    else:
        negative = -F.logsigmoid(-x)
        if gamma_neg:
            negative = negative * torch.exp(gamma_neg * F.logsigmoid(x))
    return t * positive + (1.0 - t) * negative


def _asymmetric_composite(call: Call) -> tuple[Tensor, str]:
    x, o = upcast(call.input, call.dtype), call.options
    loss = asymmetric_elementwise(x, call.tensors["t"], gamma_pos=o["gamma_pos"], gamma_neg=o["gamma_neg"],
                                  clip=o["clip"])
    return finish_elements(loss, call)


_dispatch.register("asymmetric", Backends(composite=_asymmetric_composite))


@numpy_arguments
def asymmetric_loss(
    input: Tensor,
    target: Tensor,
    *,
    gamma_pos: float = 0.0,
    gamma_neg: float = 4.0,
    clip: float = 0.05,
    weight: Weight = None,
    ignore_index: int | None = None,
    reduction: Reduction = "mean",
    avg_factor: float | Tensor | None = None,
    dist_sync: bool = False,
) -> Tensor:
    r"""Asymmetric loss (ASL) of multi-label classification: one sigmoid per class, focusing and clipping per side.

    .. math::

        \ell = -w \left[ t\, (1 - p)^{\gamma_+} \log p
               + (1 - t)\, p_m^{\gamma_-} \log(1 - p_m) \right],
        \qquad p = \sigma(x), \quad p_m = \max(p - \mathrm{clip}, 0)

    with :math:`\gamma_+` = ``gamma_pos``, :math:`\gamma_-` = ``gamma_neg`` and
    :math:`w` = ``weight``. The negatives are down-weighted twice: by the focusing
    factor :math:`p_m^{\gamma_-}` (soft) and by the shifted probability, which
    discards every negative with :math:`p \le` clip (hard thresholding). The
    positive and negative terms each keep their own factor, so soft targets in
    [0, 1] interpolate the two terms (timm and mmpretrain instead raise one
    shared factor to an interpolated exponent; see the README).

    With ``gamma_pos = gamma_neg = clip = 0`` it equals
    :func:`binary_cross_entropy` (values and gradients); with ``clip = 0`` and
    ``gamma_pos = gamma_neg`` it is :func:`sigmoid_focal_loss` without alpha.

    Args:
        input: logits of any shape; (N, C) for multi-label classification,
            (N, C, d1, ...) for class-index targets.
        target: labels shaped like the input (0/1 multi-hot or soft, in
            [0, 1]; any dtype), or, for an (N, C, d1, ...) input, integer
            class indices (N, d1, ...), index C = background (negative for
            every class), as :func:`binary_cross_entropy` takes them.
        gamma_pos: :math:`\gamma_+ \ge 0`, focusing of the positive term (the
            paper's default 0).
        gamma_neg: :math:`\gamma_- \ge 0`, focusing of the negative term (4).
        clip: the probability margin in [0, 1] shifted off the negatives (0.05);
            0 disables the shift.
        weight: non-negative rescaling of each element's loss: a 1-D tensor of
            length C applies along dim 1, any other shape must broadcast to the
            input's shape.
        ignore_index: dense targets equal to it, or class-index positions
            equal to it (all C elements), contribute nothing. None disables it.
        reduction: "none" | "mean" | "sum". "mean" is the plain mean over
            the kept elements (N x C without ignore_index; weights are not in
            the denominator). The paper's and timm's loss is the "sum".
        avg_factor: with "mean", divide the sum by this number instead (as
            mmpretrain's ``avg_factor``); 0 divides by 1. "none" and "sum"
            ignore it.
        dist_sync: all-reduce the batch-dependent normalisation under
            torch.distributed (:mod:`losslab._dist`; README, "Data-parallel training").

    Returns:
        "none": the input's shape (dropped elements 0); otherwise a scalar (0 for
        an empty or all-ignored batch). In the input's dtype.

    Raises:
        TypeError: non-floating input, non-numeric gamma_pos, gamma_neg or clip,
            float class indices.
        ValueError: a negative gamma, clip outside [0, 1], targets outside
            [0, 1] or class indices outside [0, C], a target shape that fits
            neither form, a weight that does not broadcast or is negative.

    Numerics: no probability is clamped before a logarithm. log p and
    log(1 - p) are log-sigmoids, exact at logits of +-1e4; with clip > 0,
    :math:`\log(1 - p_m) = \log\min(\sigma(-x) + \mathrm{clip}, 1) \ge \log \mathrm{clip}`.
    :math:`(1 - p)^{\gamma_+}` is :math:`\exp(\gamma_+ \log\sigma(-x))`, and
    :math:`p_m^{\gamma_-}` is floored at the smallest normal number before the
    power, so gradients are finite for every gamma >= 0, gamma < 1 included.
    The gradient flows through the focusing factors (the derivative of the
    formula; timm and mmpretrain do the same by default). timm and mmpretrain
    clamp p at eps = 1e-8 before the log: below a logit of about -18.4 their
    positive loss stops growing (at 18.42) and its gradient vanishes; losslab's
    keeps the exact value (``get_loss("timm.AsymmetricLossMultiLabel")``
    reproduces theirs). Half precision is computed in float32.

    References:
        Ridnik, Ben-Baruch, Zamir, Noy, Friedman, Protter, Zelnik-Manor.
        Asymmetric Loss For Multi-Label Classification. ICCV 2021, arXiv:2009.14119.

    Example:
        >>> import torch, losslab
        >>> logits = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 1.5, -0.2]], requires_grad=True)
        >>> labels = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
        >>> loss = losslab.asymmetric_loss(logits, labels, gamma_pos=0.0, gamma_neg=4.0, clip=0.05)
        >>> loss.backward()
        >>> loss.round(decimals=4)
        tensor(0.2031, grad_fn=<RoundBackward1>)
    """
    fn = "asymmetric_loss"
    options = _check_asymmetric(fn, gamma_pos=gamma_pos, gamma_neg=gamma_neg, clip=clip, ignore_index=ignore_index,
                                reduction=reduction, avg_factor=avg_factor)
    return prepare_sigmoid(fn, "asymmetric", input, target, ignore_index=ignore_index, weight=weight,
                           reduction=reduction, avg_factor=avg_factor, dist_sync=dist_sync, options=options)


def _check_asymmetric(fn: str, *, gamma_pos: Any, gamma_neg: Any, clip: Any, **common: Any) -> dict[str, float]:
    """The hyperparameters of :func:`asymmetric_loss` and its twin, as floats."""
    check_common(fn, **common)
    return {"gamma_pos": check_number(fn, "gamma_pos", gamma_pos, low=0.0),
            "gamma_neg": check_number(fn, "gamma_neg", gamma_neg, low=0.0),
            "clip": check_number(fn, "clip", clip, low=0.0, high=1.0)}


class AsymmetricLoss(LossModule, function=asymmetric_loss, validate=_check_asymmetric):
    """Module form of :func:`losslab.asymmetric_loss`."""

    def __init__(self, *, gamma_pos: float = 0.0, gamma_neg: float = 4.0, clip: float = 0.05, weight: Weight = None,
                 ignore_index: int | None = None, reduction: Reduction = "mean",
                 avg_factor: float | Tensor | None = None, dist_sync: bool = False) -> None:
        super().__init__(gamma_pos=gamma_pos, gamma_neg=gamma_neg, clip=clip, weight=weight,
                         ignore_index=ignore_index, reduction=reduction, avg_factor=avg_factor, dist_sync=dist_sync)


# ----------------------------------------------------------------------------
# registration (timm's and mmpretrain's names are in losslab.frameworks.multilabel)

register(LossSpec(
    name="asymmetric_loss", function=asymmetric_loss, module=AsymmetricLoss, family="classification",
    formula="-[t (1 - p)^gamma_pos log p + (1 - t) p_m^gamma_neg log(1 - p_m)],  p_m = max(p - clip, 0)",
    aliases=(
        Alias("ASL", "paper"),
        Alias("Asymmetric Loss", "paper", note="multi-label, sigmoid per class (Ridnik et al., ICCV 2021)"),
    ),
))
