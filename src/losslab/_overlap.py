"""The computation every overlap loss of :mod:`losslab.segmentation` shares.

From an (N, C, *spatial) input and its target, form the probabilities p and
the targets t per mode (ignored elements set to 0 in both), hand them to the
loss's per-class score, then drop the background, weight and reduce.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from . import _dist
from ._checks import (
    check_bool,
    check_class_indices,
    check_common,
    check_input,
    check_number,
    check_target_tensor,
    check_unit_interval,
    class_vector,
    compute_dtype,
    shape_str,
)
from ._core import reduce

MODES = ("binary", "multiclass", "multilabel")


def check_mode(fn: str, mode: object) -> None:
    if mode not in MODES:
        raise ValueError(f"{fn}: mode must be one of 'binary', 'multiclass', 'multilabel'; got {mode!r}")


def probabilities_and_targets(fn: str, input: Tensor, target: Tensor, *, mode: str, from_logits: bool,
                              ignore_index: int | None, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """p and t of shape (N, C, *spatial) in ``dtype``, with ignored elements set to 0 in both."""
    check_input(fn, input, min_ndim=1 if mode == "binary" else 2,
                what="(N, C, d1, ..., dk) for mode " + repr(mode))
    check_target_tensor(fn, input, target)
    if mode != "binary" and input.shape[1] < 1:
        raise ValueError(f"{fn}: input must have at least one class along dim 1 in mode {mode!r}; "
                         f"got shape {shape_str(input.shape)}")
    x = input.to(dtype)
    if mode == "multiclass":
        index_shape = input.shape[:1] + input.shape[2:]
        if target.shape != index_shape:
            raise ValueError(f"{fn}: target must have shape {shape_str(index_shape)} (class indices, the input's "
                             f"shape without dim 1) in mode 'multiclass'; got {shape_str(target.shape)}")
        if target.dtype.is_floating_point or target.dtype == torch.bool:
            raise TypeError(f"{fn}: target must hold integer class indices in mode 'multiclass'; "
                            f"got dtype {target.dtype}")
        num_classes = input.shape[1]
        check_class_indices(fn, target, num_classes, ignore_index)
        classes = torch.arange(num_classes, device=input.device).view((1, num_classes) + (1,) * (input.ndim - 2))
        t = (target.unsqueeze(1) == classes).to(dtype)
        valid = None if ignore_index is None else (target != ignore_index).unsqueeze(1)
        if from_logits:
            p = torch.softmax(x, dim=1)
        else:
            check_unit_interval(fn, "input (probabilities, from_logits=False)", x, valid)
            p = x
    else:
        if target.shape != input.shape:
            raise ValueError(f"{fn}: target must have the input's shape {shape_str(input.shape)} in mode "
                             f"{mode!r}; got {shape_str(target.shape)}")
        if mode == "binary" and (input.ndim < 2 or input.shape[1] != 1):
            x, target = x.unsqueeze(1), target.unsqueeze(1)  # (N, *) -> (N, 1, *)
        valid = None if ignore_index is None else target != ignore_index
        t = target.to(dtype)
        check_unit_interval(fn, "target", t, valid)
        if from_logits:
            p = torch.sigmoid(x)
        else:
            check_unit_interval(fn, "input (probabilities, from_logits=False)", x, valid)  # ignored: anything
            p = x
    if valid is not None:
        p = torch.where(valid, p, torch.zeros_like(p))
        t = torch.where(valid, t, torch.zeros_like(t))
    return p, t


def ratio(num: Tensor, den: Tensor, eps: float) -> Tensor:
    """num / max(den, eps), and 1 where den is 0 (an empty prediction of an empty class is a perfect match)."""
    return torch.where(den > 0, num / den.clamp_min(eps), torch.ones_like(num))


def overlap_loss(fn: str, input: Tensor, target: Tensor, *, mode: str, from_logits: bool, eps: float,
                  weight: object, ignore_index: int | None, include_background: bool, per_image: bool,
                  reduction: str, score_loss: Callable[[Tensor, Tensor], Tensor], processes: int = 1) -> Tensor:
    """The shared pipeline: p and t, per-class loss ``score_loss(p, t)`` (sums over ``dims``), weights, reduction.

    With ``processes`` > 1 (``dist_sync``) and ``per_image=False``, ``score_loss``'s
    sums are global already (:func:`sums`): the per-class losses are those of
    the global batch, and only their gradient is scaled for DDP's average.
    With ``per_image=True`` the mean over images is all-reduced.
    """
    check_common(fn, from_logits=from_logits, ignore_index=ignore_index, reduction=reduction)
    check_mode(fn, mode)
    check_number(fn, "eps", eps, low=0.0, low_open=True)
    check_bool(fn, "include_background", include_background)
    check_bool(fn, "per_image", per_image)
    dtype = compute_dtype(input) if isinstance(input, Tensor) else torch.float32
    p, t = probabilities_and_targets(fn, input, target, mode=mode, from_logits=from_logits,
                                     ignore_index=ignore_index, dtype=dtype)
    loss = score_loss(p, t)  # (C,) or (N, C)
    num_classes = p.shape[1]
    w = None if weight is None else class_vector(fn, "weight", weight, num_classes, input, dtype)
    if not include_background and mode != "binary":
        loss = loss[..., 1:]
        w = None if w is None else w[1:]
    denominator = None
    if w is not None:
        loss = loss * w
        denominator = w.sum() * (loss.shape[0] if per_image else 1)
    if per_image:
        return reduce(loss, reduction, denominator, None, processes).to(input.dtype)
    return _dist.scale_gradient(reduce(loss, reduction, denominator), processes).to(input.dtype)


def sums(per_image: bool, processes: int = 1) -> Callable[[Tensor], Tensor]:
    """Sum over the spatial dims (and the batch unless per_image) of an (N, C, *) tensor.

    Over the batch with ``processes`` > 1: over every process's batch, the
    gradient flowing to this process's share (one all-reduce per call, in the
    same order on every process).
    """

    def total(a: Tensor) -> Tensor:
        dims = tuple(range(2, a.ndim)) if per_image else (0, *range(2, a.ndim))
        out = a.sum(dim=dims) if dims else a
        return _dist.global_sum(out) if processes > 1 and not per_image else out

    return total


def log_or_linear(score: Tensor, log_loss: bool, eps: float) -> Tensor:
    return -score.clamp_min(eps).log() if log_loss else 1.0 - score
