"""Class frequencies: counting them, per-class weights from them (alpha and weight arguments), the long-tail
losses' counts and log prior, the post-hoc logit adjustment and the deferred re-weighting schedule."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from . import _dist
from ._checks import check_ignore_index, check_input, check_number, class_vector, compute_dtype, describe, is_number

__all__ = ["class_counts", "class_weights", "deferred_class_weights", "logit_adjust"]

Counts = Tensor | Sequence[float]

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


# ----------------------------------------------------------------------------
# the long-tail losses' class-frequency tools: their counts, the post-hoc adjustment, the DRW schedule


def class_counts_vector(fn: str, class_counts: object, input: Tensor) -> Tensor:
    """The (C,) ``class_counts`` of a loss or of :func:`logit_adjust` in float64 on the input's device (classes
    along dim 1, or dim 0 of a 1-D input), a zero count counted as 1: the long-tail losses' one conversion."""
    num_classes = input.shape[1] if input.ndim >= 2 else input.shape[0]
    return class_vector(fn, "class_counts", class_counts, num_classes, input, torch.float64).clamp_min(1.0)


def log_prior(counts: Tensor) -> Tensor:
    """log(n_c / sum n), the log class prior."""
    return torch.log(counts) - torch.log(counts.sum())


def check_counts_type(fn: str, class_counts: object) -> None:
    """``class_counts`` must be a tensor, an array or a sequence (its length is checked once C is known)."""
    if class_counts is None or is_number(class_counts) or isinstance(class_counts, (str, bytes)):
        raise TypeError(f"{fn}: class_counts must be a tensor, an array or a sequence of C counts (as "
                        f"losslab.class_counts returns); got {class_counts!r}")


def logit_adjust(logits: Tensor, class_counts: Counts, *, tau: float = 1.0) -> Tensor:
    r"""Post-hoc logit adjustment: the logits minus tau times the log class prior, for prediction.

    .. math::

        \tilde{x}_c = x_c - \tau \log \pi_c, \qquad \pi_c = \frac{n_c}{\sum_k n_k}

    ``logit_adjust(logits, counts).argmax(1)`` is Menon et al.'s balanced-error
    prediction for a model trained with plain cross-entropy (tau = 1 is the
    Bayes-optimal correction when the model's softmax estimates the training
    distribution; tune tau on held-out data). Do not apply it to a model trained
    with :func:`logit_adjusted_cross_entropy`, whose logits are adjusted already.

    Args:
        logits: (N, C) or (N, C, d1, ..., dk) (classes along dim 1), or (C,).
        class_counts: training-set examples per class, shape (C,); a zero count counts as 1.
        tau: :math:`\tau \ge 0`.

    Returns:
        The adjusted logits, the input's shape and dtype (half precision computed
        in float32), differentiable.

    Raises:
        TypeError: logits not a floating tensor; class_counts not a tensor or sequence.
        ValueError: class_counts not of length C, negative or non-finite; tau < 0.

    References:
        Menon, Jayasumana, Rawat, Jain, Veit, Kumar. Long-tail learning via logit
        adjustment. ICLR 2021, arXiv:2007.07314.

    Example:
        >>> import torch, losslab
        >>> losslab.logit_adjust(torch.tensor([[2.0, 1.5, 1.0]]), [900, 90, 10]).argmax(1)
        tensor([2])
    """
    fn = "logit_adjust"
    check_counts_type(fn, class_counts)
    tau = check_number(fn, "tau", tau, low=0.0)
    check_input(fn, logits, min_ndim=1, what="(N, C, ...) or (C,)", name="logits")
    counts = class_counts_vector(fn, class_counts, logits)
    dtype = compute_dtype(logits)
    shape = (-1,) if logits.ndim == 1 else (1, -1) + (1,) * (logits.ndim - 2)
    return (logits.to(dtype) - (tau * log_prior(counts)).to(dtype).view(shape)).to(logits.dtype)


def deferred_class_weights(
    class_counts: Counts,
    epoch: int,
    *,
    start: int,
    method: Literal["inverse", "inverse_sqrt", "effective_number", "median_frequency"] = "effective_number",
    beta: float = 0.9999,
) -> Tensor | None:
    r"""The deferred re-weighting (DRW) schedule: no class weights before epoch ``start``, then class-balanced ones.

    .. math::

        w(\text{epoch}) = \begin{cases} \text{None} & \text{epoch} < \text{start} \\
        \operatorname{class\_weights}(n, \text{method}, \beta) & \text{otherwise} \end{cases}

    The weights average 1 (:func:`losslab.class_weights` with ``normalize="mean"``),
    so the loss keeps its scale when they switch on. Use it with any loss that
    takes ``weight``: at the start of each epoch,
    ``loss_fn = functools.partial(losslab.ldam_loss, class_counts=counts,
    weight=deferred_class_weights(counts, epoch, start=160))`` (Cao et al. train
    200 epochs and switch at 160), or set ``module.weight`` of a twin.

    Args:
        class_counts: training-set examples per class, shape (C,).
        epoch: the current epoch (0-based, >= 0).
        start: the first epoch with weights (>= 0).
        method: as :func:`losslab.class_weights`; "effective_number" (Cui et al.) is the paper's.
        beta: the effective-number beta in [0, 1) (0.9999 in Cao et al.).

    Returns:
        None before ``start``, else a float tensor of shape (C,) averaging 1.

    Raises:
        TypeError: epoch or start not an integer; counts as :func:`losslab.class_weights`.
        ValueError: a negative epoch or start; counts, method or beta as :func:`losslab.class_weights`.

    References:
        Cao, Wei, Gaidon, Arechiga, Ma. Learning Imbalanced Datasets with
        Label-Distribution-Aware Margin Loss. NeurIPS 2019, arXiv:1906.07413.

    Example:
        >>> import losslab
        >>> losslab.deferred_class_weights([900, 90, 10], 10, start=160) is None
        True
        >>> losslab.deferred_class_weights([900, 90, 10], 160, start=160, beta=0.99)
        tensor([0.2284, 0.3836, 2.3880])
    """
    fn = "deferred_class_weights"
    for name, value in (("epoch", epoch), ("start", start)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{fn}: {name} must be an integer; got {value!r}")
        if value < 0:
            raise ValueError(f"{fn}: {name} must be >= 0; got {value}")
    weights = class_weights(class_counts, method=method, beta=beta)  # validates counts, method and beta now
    return None if epoch < start else weights
