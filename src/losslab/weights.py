"""Per-class weights from class counts, for alpha and weight arguments."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from . import _dist
from ._checks import check_ignore_index, check_number, describe, is_number

__all__ = ["class_weights", "class_counts"]

METHODS = ("inverse", "inverse_sqrt", "effective_number", "median_frequency")
NORMALIZE = ("sum", "mean", None)


def class_counts(target: Tensor, num_classes: int, *, ignore_index: int | None = None,
                 dist_sync: bool = False) -> Tensor:
    """Count the examples of each class in a tensor of class indices.

    Args:
        target: integer class indices of any shape, values in [0, num_classes)
            or ``ignore_index``.
        num_classes: C, the length of the result (classes absent from the
            target count 0).
        ignore_index: value to leave out of the counts.
        dist_sync: under torch.distributed, the counts of every process's
            target (one all-reduce), so that class weights derived from them
            (:func:`class_weights`) are the same on every process and equal
            those of the global batch. Without an initialised process group it
            changes nothing.

    Returns:
        int64 tensor of shape (C,) on the target's device.

    Raises:
        TypeError: a non-integer target or num_classes, a target on the meta
            device (no values to count) or not dense.
        ValueError: num_classes < 1, an index outside [0, C) other than
            ignore_index (always checked: counting reads the values anyway).

    Example:
        >>> import torch, losslab
        >>> losslab.class_counts(torch.tensor([0, 0, 2, -100, 2, 2]), 4, ignore_index=-100)
        tensor([2, 0, 3, 0])
    """
    fn = "class_counts"
    if not isinstance(target, Tensor) or target.dtype.is_floating_point or target.dtype.is_complex \
            or target.dtype == torch.bool:
        raise TypeError(f"{fn}: target must be an integer tensor of class indices; got {describe(target)}")
    _check_has_values(fn, "target", target)
    if not isinstance(num_classes, int) or isinstance(num_classes, bool):
        raise TypeError(f"{fn}: num_classes must be an int; got {describe(num_classes)}")
    if num_classes < 1:
        raise ValueError(f"{fn}: num_classes must be >= 1; got {num_classes}")
    check_ignore_index(fn, ignore_index)
    flat = target.reshape(-1).long()
    if ignore_index is not None:
        flat = flat[flat != ignore_index]
    # bincount reads the values (a device sync) anyway, so the range is always checked here
    out_of_range = (flat < 0) | (flat >= num_classes)
    if flat.numel() and bool(out_of_range.any()):
        raise ValueError(f"{fn}: target class indices must be in [0, {num_classes}); got {int(flat[out_of_range][0])}")
    counts = torch.bincount(flat, minlength=num_classes)
    return _dist.all_sum(counts) if _dist.world(fn, dist_sync) > 1 else counts


def _check_has_values(fn: str, name: str, tensor: Tensor) -> None:
    """A TypeError for a tensor whose values cannot be read: on the meta device (shape only), or not dense."""
    if tensor.device.type == "meta":
        raise TypeError(f"{fn}: {name} must hold values; got a tensor on the meta device (shape only), "
                        f"shape {tuple(tensor.shape)}")
    if tensor.layout != torch.strided:
        raise TypeError(f"{fn}: {name} must be a dense tensor; got layout {str(tensor.layout).replace('torch.', '')} "
                        "(convert it with .to_dense())")


def class_weights(
    counts: Tensor | Sequence[float],
    *,
    method: Literal["inverse", "inverse_sqrt", "effective_number", "median_frequency"] = "inverse",
    beta: float = 0.999,
    normalize: Literal["sum", "mean"] | None = "mean",
) -> Tensor:
    r"""Per-class weights from class counts :math:`n_c`, averaging 1 by default.

    .. math::

        \text{inverse: } \frac{1}{n_c} \qquad
        \text{inverse\_sqrt: } \frac{1}{\sqrt{n_c}} \qquad
        \text{effective\_number: } \frac{1 - \beta}{1 - \beta^{n_c}} \qquad
        \text{median\_frequency: } \frac{\operatorname{median}(n)}{n_c}

    A class with zero count is treated as a count of 1 (its weight is large
    but finite). ``class_weights(counts)`` with the defaults is the inverse
    frequency normalised to average 1 (sum C), as Cui et al. normalise and
    as the lab uses it, so that a weighted loss stays on the scale of the
    unweighted one: with weights summing to 1 every example's loss would be
    divided by about C, and so would the gradient (and the effective learning
    rate). ``normalize="sum"`` gives weights summing to 1 (the alpha of some
    focal-loss code); ``None`` the raw values.

    Args:
        counts: non-negative counts of shape (C,): a tensor, a NumPy array or
            a sequence (see :func:`class_counts` to count a target tensor).
        method: one of the four above. "effective_number" is the class-balanced
            weighting of Cui et al.; "median_frequency" that of Eigen and
            Fergus (median of the counts, the mean of the two middle ones for
            an even C, over each count).
        beta: in [0, 1), used (and checked) by "effective_number" only; the
            weights tend to "inverse" as beta -> 1 and are uniform at beta = 0.
        normalize: "mean" (the default: weights average 1, i.e. sum to C, as
            Cui et al. normalise; a weighted loss keeps cross-entropy's
            scale), "sum" (weights sum to 1), or None (raw).

    Returns:
        Float tensor of shape (C,) on the counts' device: the counts' dtype
        for a floating-point tensor, torch's default dtype (float32) for
        integer tensors, arrays and sequences.

    Raises:
        TypeError: counts not a tensor or sequence of numbers, a tensor on the
            meta device or not dense.
        ValueError: counts not 1-D and non-empty, negative or non-finite
            counts, an unknown method or normalize, beta outside [0, 1).

    References:
        Cui, Jia, Lin, Song, Belongie. Class-Balanced Loss Based on Effective
        Number of Samples. CVPR 2019, arXiv:1901.05555.
        Eigen, Fergus. Predicting Depth, Surface Normals and Semantic Labels
        with a Common Multi-Scale Convolutional Architecture. ICCV 2015,
        arXiv:1411.4734.

    Example:
        >>> import torch, losslab
        >>> losslab.class_weights(torch.tensor([900, 90, 10]))  # inverse frequency, averaging 1
        tensor([0.0297, 0.2970, 2.6733])
        >>> losslab.class_weights(torch.tensor([900, 90, 10]), normalize="sum")
        tensor([0.0099, 0.0990, 0.8911])
        >>> losslab.class_weights([900, 90, 10], method="effective_number", beta=0.99)
        tensor([0.2284, 0.3836, 2.3880])
    """
    fn = "class_weights"
    if method not in METHODS:
        raise ValueError(f"{fn}: method must be one of {', '.join(map(repr, METHODS))}; got {method!r}")
    if normalize not in NORMALIZE:
        raise ValueError(f"{fn}: normalize must be 'sum', 'mean' or None; got {normalize!r}")
    if method == "effective_number":
        beta = check_number(fn, "beta", beta, low=0.0, high=1.0, high_open=True)
    if isinstance(counts, Tensor):
        if counts.dtype.is_complex or counts.dtype == torch.bool:
            raise TypeError(f"{fn}: counts must be a real tensor; got dtype {counts.dtype}")
        _check_has_values(fn, "counts", counts)
        n = counts
    elif isinstance(counts, np.ndarray) and counts.dtype.kind in "iuf":
        n = torch.as_tensor(counts.astype(np.float64))
    elif isinstance(counts, Sequence) and not isinstance(counts, (str, bytes, bytearray)) and \
            all(is_number(c) for c in counts):
        n = torch.tensor([float(c) for c in counts], dtype=torch.float64)
    else:
        raise TypeError(f"{fn}: counts must be a tensor, an array or a sequence of numbers; got {describe(counts)}")
    dtype = n.dtype if n.dtype.is_floating_point and isinstance(counts, Tensor) else torch.get_default_dtype()
    if n.ndim != 1 or n.numel() == 0:
        raise ValueError(f"{fn}: counts must have shape (C,) with C >= 1; got {tuple(n.shape)}")
    n = n.to(torch.float64)
    if not bool((torch.isfinite(n) & (n >= 0)).all()):  # computed once per run: always checked
        raise ValueError(f"{fn}: counts must be finite and non-negative; got {n.tolist()}")
    n = n.clamp_min(1.0)
    if method == "inverse":
        w = 1.0 / n
    elif method == "inverse_sqrt":
        w = n.rsqrt()
    elif method == "effective_number":
        # 1 - beta^n = -expm1(n log beta), accurate for beta close to 1
        w = (1.0 - beta) / -torch.expm1(n * math.log1p(beta - 1.0)) if beta > 0 else torch.ones_like(n)
    else:
        w = torch.quantile(n, 0.5) / n
    if normalize == "sum":
        w = w / w.sum()
    elif normalize == "mean":
        w = w / w.mean()
    return w.to(dtype)
