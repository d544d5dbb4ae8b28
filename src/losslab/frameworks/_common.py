"""Helpers of the framework adapters: per-class slices, the frameworks' own denominators and focal conventions."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._checks import check_alpha, check_reduction, values_checked


def reduce(fn: str, loss: Tensor, reduction: Any, count: int | Tensor | None = None) -> Tensor:
    """"none" keeps ``loss``; "sum" sums it; "mean" divides the sum by ``count`` (default: its element count)."""
    check_reduction(fn, reduction)
    if reduction == "none":
        return loss
    total = loss.sum()
    if reduction == "sum":
        return total
    if count is None:
        count = loss.numel()
    return total / max(count, 1) if isinstance(count, int) else total / count.clamp(min=1)


def class_slices(per_position: Tensor, target: Tensor, num_classes: int, ignore_index: int | None) -> Tensor:
    """(N, *) losses of the target class spread over an (N, C, *) tensor that is 0 off the target class."""
    index = target.long()
    if ignore_index is not None:
        index = torch.where(index == ignore_index, torch.zeros_like(index), index)
    one_hot = torch.zeros((index.shape[0], num_classes, *index.shape[1:]), dtype=per_position.dtype,
                          device=per_position.device)
    one_hot.scatter_(1, index.unsqueeze(1), 1.0)
    return one_hot * per_position.unsqueeze(1)


def monai_ignore_mask(target: Tensor, ignore_index: int | None) -> Tensor | None:
    """MONAI's ``create_ignore_mask`` of the target as given: (N, 1, *), 1 where kept, or None.

    Class indices (N, 1, *): kept where not ``ignore_index``. One-hot targets:
    a class ``ignore_index`` in [0, C) drops the pixels of that class; any
    other value drops the pixels whose one-hot target is all zero.
    """
    if ignore_index is None:
        return None
    if target.shape[1] == 1:
        return (target != ignore_index).to(torch.float64)
    if 0 <= ignore_index < target.shape[1]:
        return 1.0 - target[:, ignore_index:ignore_index + 1].to(torch.float64)
    return (target.sum(dim=1, keepdim=True) > 0).to(torch.float64)


def empty_batch(input: object, reduction: object = "mean") -> Tensor | None:
    """0, connected to the graph, for a reduced loss of an empty batch (where a framework gives NaN or fails)."""
    if isinstance(input, Tensor) and input.ndim >= 1 and input.shape[0] == 0 and reduction in ("mean", "sum"):
        return input.sum() * 0.0
    return None


def _check_hard(fn: str, target: Tensor, framework: str) -> None:
    """Values check: 0/1 targets, where the framework's focal factor for soft targets is another formula."""
    if not values_checked(target) or target.numel() == 0:
        return
    t = target.detach()
    if not bool(((t == 0) | (t == 1)).all()):
        raise ValueError(f"{fn}: target must hold 0 and 1 (hard labels); {framework} forms the focal factor of a "
                         f"soft label differently, which losslab does not reproduce: for soft labels use "
                         f"losslab.sigmoid_focal_loss")


def _background_alpha(fn: str, alpha: float | None, num_classes: int, input: Tensor) -> Tensor | None:
    """kornia's and MONAI's scalar alpha per class: 1 - alpha for class 0, alpha for the others."""
    alpha = check_alpha(fn, alpha, per_class=False, expected="a float in [0, 1] or None")
    if alpha is None:
        return None
    return torch.tensor([1.0 - alpha] + [alpha] * (num_classes - 1), dtype=torch.float64, device=input.device)
