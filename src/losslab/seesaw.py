"""Seesaw loss (Wang et al., CVPR 2021): cross-entropy whose negative logits are shifted by class frequency and
by how much each wrong class outscores the true one."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from . import _dist
from ._checks import check_common, check_input, check_number, class_vector, compute_dtype, numpy_arguments
from ._core import SoftmaxTarget, softmax_target, upcast
from ._forms import softmax_loss
from ._stateful import StatefulLoss
from .registry import Alias, LossSpec, register
from .weights import class_counts_vector

Reduction = Literal["none", "mean", "sum"]

__all__ = ["SeesawLoss", "seesaw_loss"]


@numpy_arguments
def seesaw_loss(
    input: Tensor,
    target: Tensor,
    *,
    class_counts: Tensor | Sequence[float],
    p: float = 0.8,
    q: float = 2.0,
    eps: float = 1e-2,
    weight: Tensor | Sequence[float] | None = None,
    ignore_index: int | None = -100,
    reduction: Reduction = "mean",
    dist_sync: bool = False,
) -> Tensor:
    r"""Seesaw loss: softmax cross-entropy with every other class's logit shifted by :math:`\log(M_{ij} C_{ij})`.

    For a position of true class :math:`i`:

    .. math::

        \ell = -\log \frac{e^{x_i}}{e^{x_i} + \sum_{j \ne i} M_{ij}\, C_{ij}\, e^{x_j}}, \qquad
        M_{ij} = \min\!\Big(1, \frac{N_j}{N_i}\Big)^{p}, \qquad
        C_{ij} = \max\!\Big(1, \frac{\sigma_j}{\max(\sigma_i, \mathrm{eps})}\Big)^{q}

    with :math:`N` = ``class_counts`` (a count of 0 counts as 1) and :math:`\sigma = \operatorname{softmax}(x)`
    detached. The mitigation factor :math:`M` lowers the penalty that a frequent true class puts on a rarer class
    :math:`j`; the compensation factor :math:`C` raises it again where class :math:`j` is wrongly scored above
    the true class. With equal counts (or ``p=0``) and ``q=0`` it is :func:`cross_entropy`, values and gradients.

    This is mmpretrain's (and mmdetection's class branch's) ``seesaw_ce_loss`` given the counts. Its module
    :class:`SeesawLoss` keeps the cumulative counts and, as mmpretrain does, adds each training batch's labels
    to them *before* computing the loss.

    Args:
        input: logits (N, C) or (N, C, d1, ..., dk).
        target: class indices (N, d1, ..., dk) in [0, C) or ``ignore_index``; class probabilities are not
            supported (the factors need the true class).
        class_counts: :math:`N`, a tensor or sequence of length C of non-negative counts, e.g. from
            :func:`losslab.class_counts` (cumulative over training, as :class:`SeesawLoss` keeps them).
        p: mitigation exponent >= 0; 0 turns mitigation off.
        q: compensation exponent >= 0; 0 turns compensation off.
        eps: floor of the true class's probability in the compensation ratio, in (0, 1].
        weight: per-class weights of length C, as :func:`cross_entropy`: a position's loss times
            ``weight[target]``, and "mean" divides by the sum of ``weight[target]`` over kept positions.
        ignore_index: class index to skip; it neither contributes nor enters the mean's denominator.
        reduction: "none" | "mean" | "sum"; "mean" over kept positions (weighted, as above).
        dist_sync: all-reduce the batch-dependent normalisation under torch.distributed
            (:mod:`losslab._dist`; README, "Data-parallel training").

    Returns:
        "none": (N, d1, ..., dk); otherwise a scalar (0 for an empty or all-ignored batch).

    Raises:
        TypeError: non-floating input, a float target, non-numeric p, q or eps, class_counts that is not a
            tensor or a sequence of numbers.
        ValueError: p or q negative, eps outside (0, 1], class_counts not of length C, negative or non-finite,
            class indices out of range.

    Numerics: the shift is formed in log space, :math:`p \min(\log N_j - \log N_i, 0) + q \max(\log \sigma_j -
    \max(\log \sigma_i, \log \mathrm{eps}), 0)`, from ``log_softmax`` (no ratio of underflowed probabilities);
    it is 0 on the true class and carries no gradient (:math:`\sigma` is detached, as in the paper), so the
    loss's gradient is that of cross-entropy of the shifted logits. Half precision is computed in float32.

    References:
        Wang, Zhang, Zang, Li, Gao, Loy, Lin. Seesaw Loss for Long-Tailed Instance Segmentation.
        CVPR 2021, arXiv:2008.10032.

    Example:
        >>> import torch, losslab
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], requires_grad=True)
        >>> loss = losslab.seesaw_loss(logits, torch.tensor([0, 1]), class_counts=[100, 10, 1])
        >>> loss.backward()
        >>> loss.round(decimals=4)
        tensor(3.2983, grad_fn=<RoundBackward1>)
    """
    fn = "seesaw_loss"
    p, q, eps = _check_seesaw(fn, p=p, q=q, eps=eps, ignore_index=ignore_index, reduction=reduction,
                              dist_sync=dist_sync)
    check_input(fn, input, min_ndim=2, what="(N, C) or (N, C, d1, ..., dk)")
    dtype = compute_dtype(input)
    tgt = _class_indices(fn, input, target, ignore_index, dtype)
    counts = class_counts_vector(fn, class_counts, input).to(dtype)  # the long-tail losses' one conversion
    x = upcast(input, dtype)
    shifted = x + seesaw_shift(x.detach(), tgt.indices, counts, p=p, q=q, eps=eps)
    loss = softmax_loss(fn, shifted, target, reduction=reduction, input_kind="logits", ignore_index=ignore_index,
                        class_weight=weight, weighted_mean=True, dist_sync=dist_sync)
    return loss.to(input.dtype)


def seesaw_shift(x: Tensor, indices: Tensor, counts: Tensor, *, p: float, q: float, eps: float) -> Tensor:
    """:math:`\\log(M_{ij} C_{ij})` for every class j of every position of true class i, shaped like ``x``.

    ``x``: detached logits (N, C, *); ``indices``: the true classes (N, *) (any class at ignored positions);
    ``counts``: (C,). 0 on the true class.
    """
    index = indices.unsqueeze(1)
    shift = torch.zeros_like(x)
    if p:
        log_n = counts.clamp(min=1.0).log().view((1, -1) + (1,) * (x.ndim - 2))
        log_n_true = log_n.expand_as(x).gather(1, index)
        shift = shift + p * (log_n - log_n_true).clamp(max=0.0)
    if q:
        log_sigma = torch.log_softmax(x, dim=1)
        log_sigma_true = log_sigma.gather(1, index).clamp(min=math.log(eps))
        shift = shift + q * (log_sigma - log_sigma_true).clamp(min=0.0)
    return shift


def _class_indices(fn: str, input: Tensor, target: Tensor, ignore_index: int | None,
                   dtype: torch.dtype) -> SoftmaxTarget:
    """The target as class indices (validated, ignored positions set to class 0), or a TypeError."""
    if isinstance(target, Tensor) and target.dtype.is_floating_point and target.shape == input.shape:
        raise TypeError(f"{fn}: target must hold class indices (an integer tensor of shape "
                        f"{tuple(input.shape[:1] + input.shape[2:])}); got class probabilities of dtype "
                        f"{target.dtype}: the seesaw factors need the true class")
    return softmax_target(fn, input, target, ignore_index, dtype)  # a float target of another shape raises


def _check_seesaw(fn: str, *, p: object, q: object, eps: object, **common: object) -> tuple[float, float, float]:
    """The hyperparameters of :func:`seesaw_loss` and :class:`SeesawLoss`."""
    check_common(fn, **common)
    return (check_number(fn, "p", p, low=0.0), check_number(fn, "q", q, low=0.0),
            check_number(fn, "eps", eps, low=0.0, high=1.0, low_open=True))


class SeesawLoss(StatefulLoss):
    """Module form of :func:`losslab.seesaw_loss` that keeps the cumulative class counts.

    ``SeesawLoss(num_classes, ...)`` starts from counts of 0; every call in training mode first adds the
    batch's kept labels to the ``class_counts`` buffer (all-reduced over the processes under ``dist_sync``, so
    every process holds the global counts), then computes :func:`seesaw_loss` with them, as mmpretrain's
    ``SeesawLoss`` does. In eval mode the counts stay as they are. The buffer is int64 (exact, and untouched
    by ``.half()``) and saved in the ``state_dict``; load one to resume training.

    Example:
        >>> import torch, losslab
        >>> loss_fn = losslab.SeesawLoss(3)
        >>> logits = torch.randn(4, 3, requires_grad=True)
        >>> loss_fn(logits, torch.tensor([0, 0, 2, 1])).backward()
        >>> loss_fn.class_counts
        tensor([2, 1, 1])
    """

    function = staticmethod(seesaw_loss)
    state = ("class_counts",)

    def __init__(self, num_classes: int, *, p: float = 0.8, q: float = 2.0, eps: float = 1e-2,
                 weight: Tensor | Sequence[float] | None = None, ignore_index: int | None = -100,
                 reduction: Reduction = "mean", dist_sync: bool = False) -> None:
        super().__init__()
        fn = "SeesawLoss"
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ValueError(f"{fn}: num_classes must be a positive int; got {num_classes!r}")
        self.p, self.q, self.eps = _check_seesaw("seesaw_loss", p=p, q=q, eps=eps, ignore_index=ignore_index,
                                                 reduction=reduction, dist_sync=dist_sync)
        self.num_classes, self.ignore_index, self.reduction, self.dist_sync = (num_classes, ignore_index,
                                                                               reduction, dist_sync)
        self._hyperparameters = ("num_classes", "p", "q", "eps", "weight", "ignore_index", "reduction",
                                 "dist_sync")
        if weight is None:
            self.weight = None
        else:
            stand_in = weight if isinstance(weight, Tensor) else torch.empty(0, dtype=torch.float64)
            self.register_buffer("weight", class_vector("seesaw_loss", "weight", weight, num_classes, stand_in,
                                                        torch.float64))
        self.register_buffer("class_counts", torch.zeros(num_classes, dtype=torch.int64))

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Add the batch's labels to the counts (training mode), then the loss with the updated counts."""
        fn = "seesaw_loss"
        check_input(fn, input, min_ndim=2, what="(N, C) or (N, C, d1, ..., dk)")
        if input.shape[1] != self.num_classes:
            raise ValueError(f"SeesawLoss: input must have num_classes={self.num_classes} classes along dim 1; "
                             f"got shape {tuple(input.shape)}")
        if self.training:
            tgt = _class_indices(fn, input, target, self.ignore_index, compute_dtype(input))
            self._add(tgt)
        return seesaw_loss(input, target, class_counts=self.class_counts, p=self.p, q=self.q, eps=self.eps,
                           weight=self.weight, ignore_index=self.ignore_index, reduction=self.reduction,
                           dist_sync=self.dist_sync)

    @torch.no_grad()
    def _add(self, tgt: SoftmaxTarget) -> None:
        """Count the kept labels (no host sync) and add them, summed over the processes under dist_sync."""
        indices = tgt.indices.reshape(-1)
        ones = torch.ones_like(indices) if tgt.valid is None else tgt.valid.reshape(-1).long()
        batch = torch.zeros(self.num_classes, dtype=torch.int64, device=indices.device)
        batch.scatter_add_(0, indices, ones)
        if _dist.world("SeesawLoss", self.dist_sync) > 1:
            batch = _dist.all_sum(batch)
        self.class_counts += batch.to(self.class_counts.device)


# ----------------------------------------------------------------------------
# registration

register(LossSpec(
    name="seesaw_loss", function=seesaw_loss, module=SeesawLoss, family="classification",
    formula="CE(x_j + log(M_ij C_ij) [j != i]),  M = min(1, N_j/N_i)^p,  C = max(1, sigma_j/max(sigma_i, eps))^q",
    exact_gradient=False,  # sigma is detached, as in the paper
    aliases=(
        Alias("Seesaw Loss", "paper"),
        Alias("SeesawLoss", "mmpretrain", defaults={"num_classes": 1000}, qualified=True,
              note="mmpretrain (and mmcls): num_classes defaults to 1000; its weight is per sample, not per class"),
        Alias("SeesawLoss", "mmdetection", qualified=True,
              unsupported="mmdetection's SeesawLoss, which takes num_classes + 2 logits (the classes and a "
                          "2-way objectness softmax) and returns the class term over positive samples and the "
                          "objectness cross-entropy as a dict: losslab does not implement the split head; the "
                          "closest losslab loss is seesaw_loss (its class term: seesaw_loss on "
                          "input[pos, :-2] and target[pos], plus cross_entropy on input[:, -2:] against "
                          "target == num_classes)"),
    ),
))
