"""MONAI's conventions that its losses share: one-hot targets, activations, class weights, focal targets.

Used by :mod:`losslab.frameworks.focal` (MONAI's FocalLoss) and :mod:`losslab.frameworks.segmentation_monai`
(its Dice losses).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .._checks import (
    check_bool,
    check_class_indices,
    check_input,
    check_target_tensor,
    check_unit_interval,
    compute_dtype,
    describe,
)
from ._common import monai_ignore_mask
from .segmentation import _one_hot


def _monai_one_hot(fn: str, target: Tensor, num_classes: int, dtype: torch.dtype,
                   ignore_index: int | None = None) -> Tensor:
    """MONAI's ``one_hot`` of (N, 1, *) labels; a sentinel ``ignore_index`` (outside [0, C)) becomes class 0 first."""
    if target.ndim < 2 or target.shape[1] != 1:
        raise ValueError(f"{fn}: with to_onehot_y=True the target must be class indices of shape (N, 1, *); "
                         f"got {tuple(target.shape)}")
    labels = target[:, 0]
    if labels.dtype.is_floating_point:
        labels = labels.round()
    labels = labels.long()
    if ignore_index is not None and not 0 <= ignore_index < num_classes:
        labels = torch.where(labels == ignore_index, torch.zeros_like(labels), labels)
    check_class_indices(fn, labels, num_classes, None)
    return _one_hot(labels, num_classes, dtype)


def _monai_weight(fn: str, weight: Any, num_classes: int, like: Tensor) -> Tensor | None:
    """MONAI's Dice class weight: a number for every class or one value per kept class, non-negative."""
    if weight is None or num_classes == 1:
        return None
    w = torch.as_tensor(weight, dtype=like.dtype, device=like.device)
    if w.ndim == 0:
        w = w.expand(num_classes)
    elif w.shape != (num_classes,):
        raise ValueError(f"{fn}: weight must hold one value per class ({num_classes}; without class 0 when "
                         f"include_background=False), as MONAI's; got shape {tuple(w.shape)}")
    if bool((w < 0).any()):
        raise ValueError(f"{fn}: weight must be non-negative; got {w.tolist()}")
    return w


def _monai_activation(fn: str, sigmoid: Any, softmax: Any, other_act: Any) -> None:
    if other_act is not None and not callable(other_act):
        raise TypeError(f"{fn}: other_act must be None or callable; got {describe(other_act)}")
    if int(bool(sigmoid)) + int(bool(softmax)) + int(other_act is not None) > 1:
        raise ValueError(f"{fn}: incompatible values: more than one of sigmoid=True, softmax=True, other_act "
                         f"(as in MONAI)")


def _monai_prepare(fn: str, input: Tensor, target: Tensor, *, include_background: bool, to_onehot_y: bool,
                   sigmoid: bool, softmax: bool, other_act: Callable[[Tensor], Tensor] | None,
                   ignore_index: int | None) -> tuple[Tensor, Tensor]:
    """MONAI DiceLoss's activation, one-hot, background and ignore mask: p and t (N, C', *), masked."""
    check_input(fn, input, min_ndim=3, what="(N, C, *spatial), as MONAI's")
    check_target_tensor(fn, input, target)
    for name, value in (("include_background", include_background), ("to_onehot_y", to_onehot_y),
                        ("sigmoid", sigmoid), ("softmax", softmax)):
        check_bool(fn, name, value)
    _monai_activation(fn, sigmoid, softmax, other_act)
    dtype = compute_dtype(input)
    p = input.to(dtype)
    num_classes = input.shape[1]
    if sigmoid:
        p = torch.sigmoid(p)
    if softmax:
        if num_classes == 1:
            warnings.warn("single channel prediction, `softmax=True` ignored.", UserWarning, stacklevel=4)
        else:
            p = torch.softmax(p, dim=1)
    if other_act is not None:
        p = other_act(p)
    original = target
    if to_onehot_y:
        if num_classes == 1:
            warnings.warn("single channel prediction, `to_onehot_y=True` ignored.", UserWarning, stacklevel=4)
        else:
            target = _monai_one_hot(fn, target, num_classes, dtype, ignore_index)
    if not include_background:
        if num_classes == 1:
            warnings.warn("single channel prediction, `include_background=False` ignored.", UserWarning,
                          stacklevel=4)
        else:
            p, target = p[:, 1:], target[:, 1:]
    if target.shape != p.shape:
        raise ValueError(f"{fn}: ground truth has shape {tuple(target.shape)}, the input {tuple(p.shape)} "
                         f"(MONAI takes one-hot targets of the input's shape; to_onehot_y=True takes (N, 1, *) "
                         f"class indices)")
    mask = monai_ignore_mask(original, ignore_index)
    t = target.to(dtype)
    if mask is not None:
        mask = mask.to(dtype)
        p, t = p * mask, t * mask
    check_unit_interval(fn, "target", t)
    if not (sigmoid or softmax and num_classes > 1):
        # MONAI would take the Dice of raw values silently; losslab's Dice needs probabilities
        if not _in_unit_interval(p):
            raise ValueError(f"{fn}: the input must hold probabilities in [0, 1] (MONAI's default applies no "
                             f"activation); pass sigmoid=True or softmax=True for logits")
    return p, t


def _in_unit_interval(x: Tensor) -> bool:
    if x.numel() == 0:
        return True
    low, high = torch.aminmax(x.detach())
    return bool(low >= 0) and bool(high <= 1)


def _monai_target(fn: str, input: Tensor, target: Tensor, to_onehot_y: bool, include_background: bool
                  ) -> tuple[Tensor, Tensor]:
    """MONAI's target handling: one-hot of (N, 1, *) indices, then channel 0 dropped unless include_background."""
    check_input(fn, input, min_ndim=2, what="(N, C, *)")
    if not isinstance(target, Tensor):
        raise TypeError(f"{fn}: target must be a tensor; got {describe(target)}")
    num_classes = input.shape[1]
    if to_onehot_y and num_classes > 1:
        if target.ndim != input.ndim or target.shape[1] != 1:
            raise ValueError(f"{fn}: with to_onehot_y=True the target must be class indices of shape (N, 1, *); "
                             f"got {tuple(target.shape)} for input {tuple(input.shape)}")
        check_class_indices(fn, target, num_classes, None)
        one_hot = torch.zeros(input.shape, dtype=input.dtype, device=input.device)
        target = one_hot.scatter_(1, target.long().clamp(0, num_classes - 1), 1.0)  # clamp: unchecked values
    if target.shape != input.shape:
        raise ValueError(f"{fn}: target shape {tuple(target.shape)} does not match input shape "
                         f"{tuple(input.shape)} (MONAI takes one-hot targets; to_onehot_y=True takes (N, 1, *) "
                         f"indices)")
    target = target.to(input.dtype)
    if not include_background and num_classes > 1:
        input, target = input[:, 1:], target[:, 1:]
    return input, target


def _along(weight: Tensor, input: Tensor) -> Tensor:
    """A number, a per-class vector (C,) along dim 1, or an elementwise tensor, broadcast to the input."""
    if weight.ndim == 1 and input.ndim >= 2 and weight.shape[0] == input.shape[1]:
        return weight.reshape((-1,) + (1,) * (input.ndim - 2))
    return weight
