r"""The Lovász losses of segmentation: Lovász-Softmax (multiclass) and the Lovász hinge (binary).

Both optimise the Jaccard index (IoU) through the Lovász extension of the
Jaccard loss, a piecewise-linear convex surrogate of 1 - IoU (Berman et al.,
CVPR 2018). For one class and a set of pixels with errors :math:`m_i \ge 0`
and foreground :math:`f_i \in \{0, 1\}`, sort the errors in decreasing order,
:math:`m_{\pi_1} \ge \dots \ge m_{\pi_P}`; with the foreground count
:math:`G = \sum_i f_i` and the running counts over the first k pixels,

.. math::

    J_k = 1 - \frac{G - \sum_{j \le k} f_{\pi_j}}{G + \sum_{j \le k} (1 - f_{\pi_j})}, \qquad
    \overline{\Delta_J}(m) = \sum_{k=1}^{P} m_{\pi_k} (J_k - J_{k-1}), \quad J_0 = 0.

:math:`J_k` is the Jaccard loss of predicting the k pixels of largest error
wrong; its differences are the gradient of the extension (Algorithm 1 of the
paper). Every row (a class over the batch, or a class of one image) is sorted
at once: one ``torch.sort`` of a (rows, pixels) tensor and two cumulative
sums, no Python loop over classes. Ignored pixels are sorted last and add
nothing; nothing reads a tensor's values on the host.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from . import _dist
from ._checks import (
    check_bool,
    check_class_indices,
    check_common,
    check_input,
    check_target_tensor,
    check_unit_interval,
    compute_dtype,
    describe,
    shape_str,
    values_checked,
)
from ._core import upcast
from ._dispatch import reduce_total
from ._module import LossModule
from .registry import Alias, LossSpec, register

Reduction = Literal["none", "mean", "sum"]
Classes = Literal["present", "all"] | Sequence[int]

__all__ = ["lovasz_softmax_loss", "lovasz_hinge_loss", "LovaszSoftmaxLoss", "LovaszHingeLoss",
           "lovasz_softmax_terms", "lovasz_hinge_terms"]


def lovasz_rows(errors: Tensor, foreground: Tensor, kept: Tensor | None, *, hinge: bool = False) -> Tensor:
    """The Lovász extension of the Jaccard loss of each row: errors and foreground (R, P), kept (R, P) or None.

    ``foreground`` is 0 where not kept. Pixels not kept are sorted after every kept one (key -inf) and their
    terms are dropped, so each row's value and gradient are those of its kept pixels alone. ``hinge``: the
    errors enter as max(error, 0), as in the Lovász hinge. Returns (R,).
    """
    if kept is not None:
        errors = errors.masked_fill(~kept, float("-inf"))
    errors_sorted, perm = torch.sort(errors, dim=-1, descending=True)
    fg = foreground.gather(-1, perm)
    seen = torch.arange(1, errors.shape[-1] + 1, device=errors.device, dtype=fg.dtype)  # k = 1..P
    if kept is not None:
        errors_sorted = errors_sorted.masked_fill(seen > kept.sum(-1, keepdim=True), 0.0)
    if hinge:
        errors_sorted = torch.relu(errors_sorted)
    fg_seen = fg.cumsum(-1)
    total = fg_seen[..., -1:] if fg.shape[-1] else fg.sum(-1, keepdim=True)
    # J_k = 1 - (G - F_k) / (G + k - F_k); the union is at least 1 from the first pixel on
    jaccard = 1.0 - (total - fg_seen) / (total + seen - fg_seen)
    gradient = torch.cat([jaccard[..., :1], jaccard[..., 1:] - jaccard[..., :-1]], dim=-1)
    return (errors_sorted * gradient).sum(-1)


# ----------------------------------------------------------------------------
# Lovász-Softmax


def _check_classes(fn: str, classes: object) -> None:
    if isinstance(classes, str):
        if classes not in ("present", "all"):
            raise ValueError(f"{fn}: classes must be 'present', 'all' or a sequence of class indices; "
                             f"got {classes!r}")
        return
    if isinstance(classes, Tensor) or not isinstance(classes, Sequence) or not classes or not all(
            isinstance(c, int) and not isinstance(c, bool) for c in classes):
        raise TypeError(f"{fn}: classes must be 'present', 'all' or a non-empty sequence of int class indices; "
                        f"got {describe(classes)}")
    if len(set(classes)) != len(classes):
        raise ValueError(f"{fn}: classes must not repeat a class; got {list(classes)}")


def check_lovasz_softmax(fn: str, *, classes: object, per_image: object, **common: object) -> None:
    """The hyperparameters of :func:`lovasz_softmax_loss` and its twin."""
    _check_classes(fn, classes)
    check_bool(fn, "per_image", per_image)
    check_common(fn, **common)


def lovasz_softmax_terms(fn: str, input: Tensor, target: Tensor, *, classes: Classes, per_image: bool,
                         ignore_index: int | None, from_logits: bool) -> tuple[Tensor, Tensor]:
    """The per-class Lovász-Softmax losses, (C',) or (N, C') with ``per_image``, and which of them count (bool).

    A class counts where the batch (the image) has a kept pixel and, with ``classes="present"``, a kept pixel
    of that class; the losses of the others are 0. Shared with the framework adapters.
    """
    check_input(fn, input, min_ndim=2, what="(N, C, d1, ..., dk)")
    check_target_tensor(fn, input, target)
    index_shape = input.shape[:1] + input.shape[2:]
    if target.shape != index_shape:
        raise ValueError(f"{fn}: target must have shape {shape_str(index_shape)} (class indices, the input's shape "
                         f"without dim 1); got {shape_str(target.shape)}")
    if target.dtype.is_floating_point or target.dtype == torch.bool:
        raise TypeError(f"{fn}: target must hold integer class indices; got dtype {target.dtype}")
    num_classes = input.shape[1]
    if num_classes < 1:
        raise ValueError(f"{fn}: input must have at least one class along dim 1; got shape {shape_str(input.shape)}")
    if not isinstance(classes, str):
        bad = [c for c in classes if not 0 <= c < num_classes]
        if bad:
            raise ValueError(f"{fn}: the input has {num_classes} classes along dim 1 (indices 0 to "
                             f"{num_classes - 1}), but classes names {bad[0]}")
    check_class_indices(fn, target, num_classes, ignore_index)
    dtype = compute_dtype(input)
    n = input.shape[0]
    pixels = math.prod(input.shape[2:])
    x = upcast(input, dtype).reshape(n, num_classes, pixels)
    labels = target.reshape(n, 1, pixels)
    kept = None if ignore_index is None else labels != ignore_index  # (N, 1, P)
    if from_logits:
        p = torch.softmax(x, dim=1)
    else:
        check_unit_interval(fn, "input (probabilities, from_logits=False)", x, kept)
        p = x
    if isinstance(classes, str):
        ids = torch.arange(num_classes, device=input.device)
    else:
        ids = torch.tensor(list(classes), device=input.device)
        p = p.index_select(1, ids)
    fg = labels == ids.view(1, -1, 1)
    if kept is not None:
        fg = fg & kept  # an ignore_index in [0, C) is no foreground
    fg = fg.to(dtype)
    errors = (fg - p).abs()  # (N, C', P)
    c = errors.shape[1]
    if per_image:
        rows = (errors.reshape(n * c, pixels), fg.reshape(n * c, pixels),
                None if kept is None else kept.expand(n, c, pixels).reshape(n * c, pixels))
        losses = lovasz_rows(*rows).reshape(n, c)
        any_kept = torch.full((n, 1), pixels > 0, device=input.device) if kept is None else kept.any(-1)
        present = fg.sum(-1) > 0
    else:
        rows = (errors.transpose(0, 1).reshape(c, n * pixels), fg.transpose(0, 1).reshape(c, n * pixels),
                None if kept is None else kept.transpose(0, 1).expand(c, n, pixels).reshape(c, n * pixels))
        losses = lovasz_rows(*rows)
        any_kept = torch.full((1,), n * pixels > 0, device=input.device) if kept is None else kept.any().reshape(1)
        present = fg.sum((0, 2)) > 0
    counted = present if classes == "present" else any_kept.expand(losses.shape)
    return torch.where(counted, losses, torch.zeros_like(losses)), counted


def finish(losses: Tensor, counted: Tensor, *, per_image: bool, reduction: str, processes: int) -> Tensor:
    """"none": the losses; "sum": their sum; "mean": over the counted terms, or over the images that have one
    (each image the mean of its counted terms); all-reduced under ``dist_sync`` (:func:`reduce_total`)."""
    if reduction == "none":
        return losses
    if reduction == "sum":
        return reduce_total(losses.sum(), "sum", None, processes)
    if not per_image:
        return reduce_total(losses.sum(), "mean", counted.sum(), processes)
    count = counted.sum(-1)  # (N,): each image's counted classes
    per_image_loss = losses.sum(-1) / count.clamp_min(1).to(losses.dtype)
    return reduce_total(per_image_loss.sum(), "mean", (count > 0).sum(), processes)


def lovasz_softmax_loss(
    input: Tensor,
    target: Tensor,
    *,
    classes: Classes = "present",
    per_image: bool = False,
    ignore_index: int | None = None,
    from_logits: bool = True,
    reduction: Reduction = "mean",
    dist_sync: bool = False,
) -> Tensor:
    r"""Lovász-Softmax loss: the Lovász extension of each class's Jaccard loss at the softmax errors, averaged.

    .. math::

        m_{c,i} = |[y_i = c] - p_{c,i}|, \qquad
        \ell_c = \overline{\Delta_{J_c}}(m_c) = \sum_{k} m_{c,\pi_k} (J_{c,k} - J_{c,k-1}), \qquad
        \ell = \frac{1}{|K|} \sum_{c \in K} \ell_c

    with p = softmax(input) over dim 1, :math:`\pi` sorting class c's errors
    in decreasing order, :math:`J_{c,k}` the Jaccard loss of class c when its
    k pixels of largest error are wrong (the module docstring has the formula)
    and K the classes that count (``classes``). In [0, 1]; 0 for a perfect
    hard prediction. The extension is the tight convex surrogate of 1 - IoU
    for hard predictions: :math:`\ell_c = 1 - \mathrm{IoU}_c` when p is 0/1.

    Args:
        input: logits (N, C, d1, ..., dk) (probabilities with ``from_logits=False``).
        target: class indices (N, d1, ..., dk) in [0, C), or ``ignore_index``.
        classes: "present" (default; the classes with a kept pixel in the
            batch, or in the image with ``per_image``), "all" (every class; an
            absent class c scores its largest p_c), or a sequence of class
            indices (those, present or not).
        per_image: False (default): each class's pixels of the whole batch
            are sorted together (the paper's Lovász-Softmax); True: each image
            scores its own classes, and "mean" averages the images' means.
        ignore_index: target value whose pixels leave every class's sort and
            counts. None disables it.
        from_logits: False when ``input`` holds softmax probabilities.
        reduction: "none" | "mean" | "sum" over the per-class losses.
        dist_sync: under torch.distributed, "mean" divides by the number of
            counted terms of every process (classes; images with
            ``per_image``) and returns the same value on every process, with
            the gradient scaled for DDP's average. Each process still sorts its
            own pixels: with ``per_image=True`` that is exactly the loss of
            the global batch; with ``per_image=False`` it is the mean of the
            processes' per-class losses (the global sort would need every
            process's errors).

    Returns:
        "none": the per-class losses, (C,) or (N, C) with ``per_image``
        ((len(classes),) or (N, len(classes)) for a list), 0 for the classes
        that do not count; "sum": their sum; "mean": their mean over the
        counted classes (per image: the mean over images with a kept pixel of
        each image's mean), 0 when nothing counts.

    Raises:
        TypeError: non-floating input, float class indices, ``classes`` of
            another type.
        ValueError: a target not of shape (N, d1, ..., dk), class indices
            outside [0, C), probabilities outside [0, 1], ``classes`` naming
            an unknown or a repeated class.

    Empty batches and all-ignored targets give 0 with zero gradients; an
    image without a kept pixel leaves the per-image mean (smp counts it as 0
    in its Lovász hinge and fails in its Lovász-Softmax). Half precision is
    computed in float32. Ties between errors leave the value unchanged (the
    extension is continuous); the gradient then follows torch.sort's order.

    References:
        Berman, Rannen Triki, Blaschko. The Lovász-Softmax loss: A tractable
        surrogate for the optimization of the intersection-over-union measure
        in neural networks. CVPR 2018, arXiv:1705.08790.

    Example:
        >>> import torch, losslab
        >>> logits = torch.tensor([[[[2.0, -1.0]], [[-1.0, 3.0]]]], requires_grad=True)  # (N=1, C=2, 1, 2)
        >>> labels = torch.tensor([[[0, 0]]])
        >>> loss = losslab.lovasz_softmax_loss(logits, labels)
        >>> loss.backward()
        >>> loss.round(decimals=4)
        tensor(0.5147, grad_fn=<RoundBackward1>)
    """
    fn = "lovasz_softmax_loss"
    check_lovasz_softmax(fn, classes=classes, per_image=per_image, ignore_index=ignore_index,
                         from_logits=from_logits, reduction=reduction, dist_sync=dist_sync)
    processes = _dist.world(fn, dist_sync)
    losses, counted = lovasz_softmax_terms(fn, input, target, classes=classes, per_image=per_image,
                                           ignore_index=ignore_index, from_logits=from_logits)
    return finish(losses, counted, per_image=per_image, reduction=reduction, processes=processes).to(input.dtype)


# ----------------------------------------------------------------------------
# Lovász hinge


def check_lovasz_hinge(fn: str, *, per_image: object, **common: object) -> None:
    """The hyperparameters of :func:`lovasz_hinge_loss` and its twin."""
    check_bool(fn, "per_image", per_image)
    check_common(fn, **common)


def lovasz_hinge_terms(fn: str, input: Tensor, target: Tensor, *, per_image: bool,
                       ignore_index: int | None) -> tuple[Tensor, Tensor]:
    """The Lovász hinge of each image (N,) or of the batch (0-d), and whether it counts (a kept element)."""
    check_input(fn, input, min_ndim=1, what="(N, d1, ..., dk)")
    check_target_tensor(fn, input, target)
    if target.shape != input.shape:
        squeezed = input.shape[:1] + input.shape[2:] if input.ndim >= 2 and input.shape[1] == 1 else None
        if target.shape != squeezed:
            also = f" or {shape_str(squeezed)}" if squeezed is not None else ""
            raise ValueError(f"{fn}: target must have the input's shape {shape_str(input.shape)}{also}; "
                             f"got {shape_str(target.shape)}")
    dtype = compute_dtype(input)
    n = input.shape[0]
    pixels = math.prod(input.shape[1:])
    x = upcast(input, dtype).reshape(n, pixels)
    labels = target.reshape(n, pixels)
    kept = None if ignore_index is None else labels != ignore_index
    t = labels.to(dtype)
    if kept is not None:
        t = torch.where(kept, t, torch.zeros_like(t))
    if values_checked(t) and t.numel() and not bool(((t == 0) | (t == 1)).all()):
        example = float(t[(t != 0) & (t != 1)].flatten()[0])
        raise ValueError(f"{fn}: target must hold 0 and 1 (binary masks)"
                         f"{'' if ignore_index is None else f' or ignore_index={ignore_index}'}; got {example!r}")
    errors = 1.0 - x * (2.0 * t - 1.0)
    if per_image:
        losses = lovasz_rows(errors, t, kept, hinge=True)
        counted = torch.full((n,), pixels > 0, device=input.device) if kept is None else kept.any(-1)
    else:
        losses = lovasz_rows(errors.reshape(1, -1), t.reshape(1, -1), None if kept is None else kept.reshape(1, -1),
                             hinge=True).reshape(())
        counted = torch.tensor(n * pixels > 0, device=input.device) if kept is None else kept.any()
    return torch.where(counted, losses, torch.zeros_like(losses)), counted


def lovasz_hinge_loss(
    input: Tensor,
    target: Tensor,
    *,
    per_image: bool = True,
    ignore_index: int | None = None,
    reduction: Reduction = "mean",
    dist_sync: bool = False,
) -> Tensor:
    r"""Lovász hinge loss: the Lovász extension of the binary Jaccard loss at the hinge errors of the logits.

    .. math::

        m_i = \max(1 - x_i (2 t_i - 1),\ 0), \qquad
        \ell = \overline{\Delta_J}(m) = \sum_{k} m_{\pi_k} (J_k - J_{k-1})

    with x = ``input`` (logits), :math:`\pi` sorting the errors in decreasing
    order and :math:`J_k` the Jaccard loss of the foreground when the k
    elements of largest error are wrong (the module docstring has the
    formula). Each image is one binary problem over all of its elements
    (``per_image=True``, the paper's default), or the whole batch is
    (``per_image=False``). Non-negative; 0 when every margin x (2t - 1) is at
    least 1. For several classes use :func:`lovasz_softmax_loss`.

    Args:
        input: logits (N, d1, ..., dk), e.g. (N, 1, H, W).
        target: binary masks of the input's shape, 0 and 1 (or ``ignore_index``);
            (N, d2, ..., dk) for an input (N, 1, d2, ..., dk) too (kornia's layout).
        per_image: True (default): one loss per image, "mean" over the
            images; False: one loss of the whole batch.
        ignore_index: target value whose elements leave the sort and the
            counts. None disables it.
        reduction: "none" | "mean" | "sum" over the images' losses.
        dist_sync: under torch.distributed, "mean" divides by the number of
            counted images of every process (``per_image=True``: exactly the
            loss of the global batch) or of counted processes
            (``per_image=False``: the mean of the processes' losses; each
            process sorts its own elements), the same value on every process
            with the gradient scaled for DDP's average.

    Returns:
        "none": (N,) with ``per_image``, else a 0-d tensor; "mean": the mean
        over the images with a kept element (the batch's loss without
        ``per_image``); "sum": the sum. 0 when nothing is kept.

    Raises:
        TypeError: non-floating input.
        ValueError: a target of another shape, or with values other than 0, 1
            (and ``ignore_index``).

    Empty batches and all-ignored targets give 0 with zero gradients; an
    image whose elements are all ignored leaves the mean (Berman's and smp's
    code count it as 0). Half precision is computed in float32.

    References:
        Berman, Rannen Triki, Blaschko. The Lovász-Softmax loss: A tractable
        surrogate for the optimization of the intersection-over-union measure
        in neural networks. CVPR 2018, arXiv:1705.08790.
        Yu, Blaschko. Learning Submodular Losses with the Lovász Hinge. ICML 2015.

    Example:
        >>> import torch, losslab
        >>> logits = torch.tensor([[[2.0, -1.0, 0.5, -3.0]]], requires_grad=True)  # (N=1, 1, 4)
        >>> mask = torch.tensor([[[1.0, 0.0, 1.0, 0.0]]])
        >>> loss = losslab.lovasz_hinge_loss(logits, mask)
        >>> loss.backward()
        >>> loss.round(decimals=4)
        tensor(0.2500, grad_fn=<RoundBackward1>)
    """
    fn = "lovasz_hinge_loss"
    check_lovasz_hinge(fn, per_image=per_image, ignore_index=ignore_index, reduction=reduction, dist_sync=dist_sync)
    processes = _dist.world(fn, dist_sync)
    losses, counted = lovasz_hinge_terms(fn, input, target, per_image=per_image, ignore_index=ignore_index)
    # each image (or the batch) is one term: "mean" over the counted ones
    return finish(losses, counted, per_image=False, reduction=reduction, processes=processes).to(input.dtype)


# ----------------------------------------------------------------------------
# modules and registration


class LovaszSoftmaxLoss(LossModule, function=lovasz_softmax_loss, validate=check_lovasz_softmax):
    """Module form of :func:`losslab.lovasz_softmax_loss`."""

    def __init__(self, *, classes: Classes = "present", per_image: bool = False, ignore_index: int | None = None,
                 from_logits: bool = True, reduction: Reduction = "mean", dist_sync: bool = False) -> None:
        super().__init__(classes=classes, per_image=per_image, ignore_index=ignore_index, from_logits=from_logits,
                         reduction=reduction, dist_sync=dist_sync)


class LovaszHingeLoss(LossModule, function=lovasz_hinge_loss, validate=check_lovasz_hinge):
    """Module form of :func:`losslab.lovasz_hinge_loss`."""

    def __init__(self, *, per_image: bool = True, ignore_index: int | None = None, reduction: Reduction = "mean",
                 dist_sync: bool = False) -> None:
        super().__init__(per_image=per_image, ignore_index=ignore_index, reduction=reduction, dist_sync=dist_sync)


register(LossSpec(
    name="lovasz_softmax_loss", function=lovasz_softmax_loss, module=LovaszSoftmaxLoss, family="segmentation",
    formula="mean over classes of sum_k sorted |onehot - softmax|_k (J_k - J_{k-1}), J_k the Jaccard loss",
    aliases=(Alias("Lovasz-Softmax", "paper"), Alias("Lovász-Softmax", "paper"),
             Alias("Lovasz-Softmax Loss", "paper"), Alias("Lovasz Loss", "paper")),
    # smp.LovaszLoss and kornia's names are registered in losslab.frameworks.lovasz
))

register(LossSpec(
    name="lovasz_hinge_loss", function=lovasz_hinge_loss, module=LovaszHingeLoss, family="segmentation",
    formula="sum_k sorted max(1 - x (2t - 1), 0)_k (J_k - J_{k-1}) per image, J_k the Jaccard loss",
    aliases=(Alias("Lovasz hinge", "paper"), Alias("Lovász hinge", "paper"), Alias("Lovasz hinge loss", "paper")),
))
