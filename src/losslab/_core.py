"""The two computations behind the cross-entropy family.

Every loss of the family is one of two elementwise computations followed by a
reduction:

* the sigmoid form (binary cross-entropy, sigmoid focal, alpha-balanced
  sigmoid), where each element of the input is its own binary problem;
* the softmax form (cross-entropy, NLL, softmax focal, alpha-balanced softmax),
  where dim 1 holds the classes of a categorical distribution.

The public functions in :mod:`losslab.classification` and :mod:`losslab.focal`
validate their arguments and go through :mod:`losslab._forms`, which prepares
the call with the target forms here and runs it on the backend the
dispatcher picks; these elementwise formulas are the composite backend (and
the reference the native nodes and the sweeps are tested against). Keeping
one implementation per form makes the documented equivalences (focal with
gamma = 0 is cross-entropy, values and gradients) hold by construction.

Numerical choices, shared by both forms:

* logits go through ``logsigmoid`` / ``log_softmax``, never ``log(sigmoid)``;
* probabilities go through :func:`safe_log`, which floors the logarithm at -100
  as PyTorch's ``binary_cross_entropy`` does, with a gradient that stays
  finite at exact 0;
* the focal weight ``(1 - p_t)^gamma`` is taken of ``1 - p_t`` floored at the
  dtype's smallest normal number, so that its gradient
  ``gamma (1 - p_t)^(gamma - 1)`` is finite for gamma < 1 at p_t = 1 (the NaN
  of the naive form, times a log(p_t) of 0);
* half-precision inputs are computed in float32 (the caller casts back).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import (
    check_class_indices,
    check_target_tensor,
    check_unit_interval,
    shape_str,
)
from ._dispatch import reduce_total

LOG_FLOOR = -100.0


def reduce(loss: Tensor, reduction: str, denominator: Tensor | None = None,
           avg_factor: float | Tensor | None = None, processes: int = 1) -> Tensor:
    """Reduce per-element losses; "mean" divides by ``denominator`` (default: the element count).

    ``avg_factor`` (the detection heads' normaliser, e.g. the number of
    positive anchors) replaces the denominator of "mean"; "none" and "sum"
    ignore it. A zero denominator or avg_factor (empty batch, every element
    ignored, no positives) divides by 1: the result is the sum, 0 when nothing
    contributes, still connected to the graph, instead of 0/0 = NaN.

    With ``processes`` > 1 (``dist_sync``), the sum and the denominator are
    all-reduced: the result is the global batch's "sum" or "mean", with the
    gradient scaled for DDP's average (:mod:`losslab._dist`); a local
    ``avg_factor`` is summed over the processes too. The same step as
    :func:`losslab._dispatch.finish`.
    """
    if reduction == "none":
        return loss
    if avg_factor is not None:
        denominator = avg_factor
    elif denominator is None:
        denominator = float(loss.numel())
    return reduce_total(loss.sum(), reduction, denominator, processes)


class _Upcast(torch.autograd.Function):
    """``x.to(dtype)`` whose gradient, cast back to x's dtype, saturates at that dtype's largest finite value.

    A half-precision input computed in float32 can have a gradient beyond
    float16's range (1/p of a probability below 1.5e-5): the cast back would
    make it inf. Values are unchanged; so are gradients that fit.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, dtype: torch.dtype) -> Tensor:
        ctx.input_dtype = x.dtype
        return x.to(dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        largest = torch.finfo(ctx.input_dtype).max
        return grad.clamp(-largest, largest).to(ctx.input_dtype), None


def upcast(x: Tensor, dtype: torch.dtype) -> Tensor:
    """``x`` in the compute dtype; a half-precision input's gradient saturates instead of overflowing."""
    if x.dtype == dtype:
        return x
    if not x.dtype.is_floating_point or torch.finfo(x.dtype).max >= torch.finfo(dtype).max:
        return x.to(dtype)
    return _Upcast.apply(x, dtype)


def safe_log(p: Tensor) -> Tensor:
    """log(p) floored at -100 (PyTorch's BCELoss convention), with a finite gradient everywhere.

    Below the floor's threshold (or the dtype's smallest normal number, where
    1/p would overflow) the value is -100 and the gradient 0.
    """
    threshold = max(math.exp(LOG_FLOOR), torch.finfo(p.dtype).tiny)
    above = p > threshold
    return torch.where(above, torch.log(torch.where(above, p, torch.ones_like(p))), LOG_FLOOR)


def focal_weight(one_minus_pt: Tensor, gamma: float) -> Tensor:
    """(1 - p_t)^gamma with a finite gradient at p_t = 1 for every gamma >= 0."""
    return one_minus_pt.clamp_min(torch.finfo(one_minus_pt.dtype).tiny).pow(gamma)


# ----------------------------------------------------------------------------
# sigmoid form


def sigmoid_index(fn: str, input: Tensor, target: Tensor, ignore_index: int | None, *,
                  one_class_indices: bool = False) -> tuple[Tensor, Tensor | None] | None:
    """For an index-form target: the class indices and the mask of kept positions; None for a dense target.

    With one class (input (N, 1, d1, ...)) a target of shape (N, d1, ...) is an
    error unless ``one_class_indices``: read as class indices, label 1 would be
    the background index C = 1, a negative, so the 0/1 labels of a binary
    problem would silently train the opposite class.
    """
    check_target_tensor(fn, input, target)
    if target.shape == input.shape:
        return None
    index_shape = input.shape[:1] + input.shape[2:] if input.ndim >= 2 else None
    if index_shape is not None and target.shape == index_shape and input.shape[1] == 1 and not one_class_indices:
        raise ValueError(
            f"{fn}: a target of shape {shape_str(target.shape)} for an input of shape {shape_str(input.shape)} "
            f"(one class) would be read as class indices with index 1 = background, so label 1 would count as "
            f"a negative; pass labels shaped like the input, e.g. target.float().unsqueeze(1)"
        )
    if index_shape is not None and target.shape == index_shape:
        if target.dtype.is_floating_point or target.dtype == torch.bool:
            raise TypeError(
                f"{fn}: a target of shape {shape_str(target.shape)} holds class indices and must have an "
                f"integer dtype; got {target.dtype} (dense labels must have the input's shape "
                f"{shape_str(input.shape)})"
            )
        none_ignored = check_class_indices(fn, target, input.shape[1], ignore_index, background=True)
        return target, None if ignore_index is None or none_ignored else target != ignore_index
    indices = (f" or {shape_str(index_shape)} (class indices, index {input.shape[1]} = background)"
               if index_shape else "")
    raise ValueError(
        f"{fn}: target must have the input's shape {shape_str(input.shape)} (dense labels){indices}; "
        f"got {shape_str(target.shape)}"
    )


def sigmoid_target(fn: str, input: Tensor, target: Tensor, ignore_index: int | None,
                   dtype: torch.dtype, *, one_class_indices: bool = False) -> tuple[Tensor, Tensor | None]:
    """Dense float targets shaped like the input, and the mask of kept elements (None: all kept).

    The target is either shaped like the input (multi-label or soft labels in
    [0, 1]; ``ignore_index`` marks elements to drop) or, for an (N, C, d1, ...)
    input, integer class indices of shape (N, d1, ...): each class is its own
    binary problem, index C is background (negative for every class) and
    ``ignore_index`` drops the whole position.
    """
    index = sigmoid_index(fn, input, target, ignore_index, one_class_indices=one_class_indices)
    if index is None:
        valid = None if ignore_index is None else target != ignore_index
        dense = target.to(dtype)
        check_unit_interval(fn, "target", dense, valid)
        if valid is not None:
            dense = torch.where(valid, dense, torch.zeros_like(dense))
        return dense, valid
    indices, kept = index
    num_classes = input.shape[1]
    classes = torch.arange(num_classes, device=input.device).view((1, num_classes) + (1,) * (input.ndim - 2))
    dense = (indices.unsqueeze(1) == classes).to(dtype)
    return dense, None if kept is None else kept.unsqueeze(1).expand(input.shape)


def sigmoid_elementwise(x: Tensor, t: Tensor, valid: Tensor | None, *, from_logits: bool,
                        alpha: float | None = None, gamma: float = 0.0, weight: Tensor | None = None,
                        pos_weight: Tensor | None = None, label_smoothing: float = 0.0) -> Tensor:
    """Per-element  -w alpha_t (1 - p_t)^gamma [pos_weight t log p + (1 - t) log(1 - p)].

    ``alpha_t = alpha t + (1 - alpha)(1 - t)`` and ``1 - p_t = p (1 - t) + (1 - p) t``
    are linear in t, as in torchvision's sigmoid_focal_loss, so soft targets
    follow the same formula. Elements outside ``valid`` are 0.
    """
    if label_smoothing:
        t = t * (1.0 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:
        log_p, log_1mp = F.logsigmoid(x), F.logsigmoid(-x)
    else:
        log_p, log_1mp = safe_log(x), safe_log(1.0 - x)
    positive = t * log_p
    if pos_weight is not None:
        positive = positive * pos_weight
    loss = -(positive + (1.0 - t) * log_1mp)
    if gamma:
        p, one_minus_p = (torch.sigmoid(x), torch.sigmoid(-x)) if from_logits else (x, 1.0 - x)
        loss = loss * focal_weight(p * (1.0 - t) + one_minus_p * t, gamma)
    if alpha is not None:
        loss = loss * (alpha * t + (1.0 - alpha) * (1.0 - t))
    if weight is not None:
        loss = loss * weight
    if valid is not None:
        loss = torch.where(valid, loss, torch.zeros_like(loss))
    return loss


def count(valid: Tensor | None, like: Tensor) -> Tensor | None:
    """The number of kept elements as a tensor of ``like``'s dtype (None when all are kept)."""
    return None if valid is None else valid.sum().to(like.dtype)


# ----------------------------------------------------------------------------
# softmax form


@dataclass
class SoftmaxTarget:
    """A normalised softmax target: class indices (with a kept-mask) or class probabilities."""

    indices: Tensor | None = None  # (N, d1, ...) int64, ignored positions replaced by 0
    valid: Tensor | None = None  # (N, d1, ...) bool, None when every position is kept
    probs: Tensor | None = None  # (N, C, d1, ...) in the compute dtype


def softmax_target(fn: str, input: Tensor, target: Tensor, ignore_index: int | None,
                   dtype: torch.dtype) -> SoftmaxTarget:
    """Class indices of shape (N, d1, ...) or class probabilities shaped like the (N, C, d1, ...) input."""
    check_target_tensor(fn, input, target)
    index_shape = input.shape[:1] + input.shape[2:]
    integer = not target.dtype.is_floating_point and target.dtype != torch.bool
    if target.shape == index_shape and integer:
        none_ignored = check_class_indices(fn, target, input.shape[1], ignore_index)
        if target.dtype != torch.int64:
            target = target.long()
        if ignore_index is None or none_ignored:
            return SoftmaxTarget(indices=target)
        valid = target != ignore_index
        return SoftmaxTarget(indices=torch.where(valid, target, torch.zeros_like(target)), valid=valid)
    if target.shape == input.shape and target.dtype.is_floating_point:
        probs = target.to(dtype)
        check_unit_interval(fn, "target", probs)
        return SoftmaxTarget(probs=probs)
    if target.shape == index_shape:
        raise TypeError(
            f"{fn}: a target of shape {shape_str(target.shape)} holds class indices and must have an integer "
            f"dtype; got {target.dtype} (class probabilities must have the input's shape {shape_str(input.shape)})"
        )
    if target.shape == input.shape:
        raise TypeError(
            f"{fn}: a target of the input's shape {shape_str(input.shape)} holds class probabilities and must "
            f"be floating point; got {target.dtype} (class indices must have shape {shape_str(index_shape)})"
        )
    raise ValueError(
        f"{fn}: target must have shape {shape_str(index_shape)} (class indices) or the input's shape "
        f"{shape_str(input.shape)} (class probabilities); got {shape_str(target.shape)}"
    )


def log_probabilities(x: Tensor, input_kind: str) -> Tensor:
    """log p over dim 1 from logits, probabilities or log-probabilities."""
    if input_kind == "logits":
        return F.log_softmax(x, dim=1)
    if input_kind == "probabilities":
        return safe_log(x)
    return x


def softmax_elementwise(x: Tensor, target: SoftmaxTarget, *, input_kind: str = "logits",
                        class_weight: Tensor | None = None, gamma: float = 0.0,
                        label_smoothing: float = 0.0) -> Tensor:
    """Per-position  -sum_c q_c w_c (1 - p_c)^gamma log p_c  over dim 1.

    q is the one-hot target, or the probability target, mixed with the uniform
    distribution by ``label_smoothing`` (q = (1 - eps) q + eps / C, PyTorch's
    convention). With class indices and no smoothing only the target class's
    term is computed. Ignored positions are 0.
    """
    num_classes = x.shape[1]
    log_p = log_probabilities(x, input_kind)
    probs = x if input_kind == "probabilities" else None  # 1 - p from p itself, not from exp(log p)

    def term(lp: Tensor, p: Tensor | None, w: Tensor | None) -> Tensor:
        out = -lp
        if gamma:
            out = out * focal_weight(-torch.expm1(lp) if p is None else 1.0 - p, gamma)
        return out if w is None else out * w

    class_shape = (num_classes,) + (1,) * (x.ndim - 2)
    if target.indices is not None:
        idx = target.indices.unsqueeze(1)
        if label_smoothing:
            w = None if class_weight is None else class_weight.view(class_shape)
            full = term(log_p, probs, w)
            smooth = (label_smoothing / num_classes) * full.sum(1)
            loss = (1.0 - label_smoothing) * full.gather(1, idx).squeeze(1) + smooth
        else:
            w = None if class_weight is None else class_weight[target.indices]
            p_t = None if probs is None else probs.gather(1, idx).squeeze(1)
            loss = term(log_p.gather(1, idx).squeeze(1), p_t, w)
        if target.valid is not None:
            loss = torch.where(target.valid, loss, torch.zeros_like(loss))
        return loss
    q = target.probs
    if label_smoothing:
        q = q * (1.0 - label_smoothing) + label_smoothing / num_classes
    w = None if class_weight is None else class_weight.view(class_shape)
    return (q * term(log_p, probs, w)).sum(1)


def index_weight_sum(target: SoftmaxTarget, class_weight: Tensor | None, like: Tensor) -> Tensor | None:
    """PyTorch's "mean" denominator for class-index targets: the sum of weight[target] over kept positions."""
    if class_weight is None:
        return count(target.valid, like)
    w = class_weight[target.indices]
    if target.valid is not None:
        w = torch.where(target.valid, w, torch.zeros_like(w))
    return w.sum()


