"""Equalization Loss v2 (Tan et al., CVPR 2021): sigmoid cross-entropy whose per-class positive and negative
weights follow each class's accumulated ratio of positive to negative gradients."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from . import _dist
from ._checks import (
    check_class_indices,
    check_common,
    check_input,
    check_number,
    check_target_tensor,
    class_vector,
    compute_dtype,
    numpy_arguments,
    shape_str,
)
from ._forms import sigmoid_loss
from ._stateful import StatefulLoss
from .registry import Alias, LossSpec, register

Reduction = Literal["none", "mean", "sum"]

__all__ = ["EQLv2Loss", "eqlv2_loss", "eqlv2_weights"]

# mmdetection's ratio of a class without statistics: a large value, so that its weights start at 1
NO_STATISTICS = 100.0
# mmdetection's guard of the ratio pos_grad / (neg_grad + 1e-10)
RATIO_GUARD = 1e-10


@numpy_arguments
def eqlv2_loss(
    input: Tensor,
    target: Tensor,
    *,
    pos_neg: Tensor | Sequence[float],
    gamma: float = 12.0,
    mu: float = 0.8,
    alpha: float = 4.0,
    reduction: Reduction = "mean",
    dist_sync: bool = False,
) -> Tensor:
    r"""Equalization loss v2 given each class's gradient ratio: sigmoid cross-entropy with per-class weights.

    For an (N, C + 1) input whose last column is the background (objectness) logit, one-hot targets
    :math:`t_{nj}` of the class indices, and the ratio :math:`g_j` = ``pos_neg`` of class j's accumulated
    positive to negative gradient:

    .. math::

        \ell_{nj} = w_{nj}\, \mathrm{BCE}(x_{nj}, t_{nj}), \qquad
        w_{nj} = t_{nj}\, w^{+}_j + (1 - t_{nj})\, w^{-}_j, \qquad
        w^{-}_j = \frac{1}{1 + e^{-\gamma (g_j - \mu)}}, \qquad w^{+}_j = 1 + \alpha\, (1 - w^{-}_j)

    for the C classes, and :math:`w^{+} = w^{-} = 1` for the background column. "mean" is
    :math:`\frac{1}{N} \sum_{n,j} \ell_{nj}`: divided by the number of samples N, not of elements, as in the
    paper and mmdetection. A rare class (small :math:`g_j`) gets its negative gradients suppressed and its
    positive ones boosted; a balanced one (:math:`g_j \gg \mu`) gets weights near 1.

    This function is pure: it takes the statistics. :class:`EQLv2Loss` keeps them (``pos_grad``, ``neg_grad``
    and ``pos_neg``, buffers) and updates them after each training call as mmdetection's ``EQLV2Loss`` does:
    :math:`G^{+}_j \mathrel{+}= \sum_n |\partial \ell_{nj} / \partial x_{nj}|\, t_{nj}`, :math:`G^{-}_j
    \mathrel{+}= \sum_n |\partial \ell_{nj} / \partial x_{nj}|\, (1 - t_{nj})` (the weighted gradient of the
    unnormalised loss, :math:`w_{nj} |\sigma(x_{nj}) - t_{nj}|`), then :math:`g_j = G^{+}_j / (G^{-}_j +
    10^{-10})`. :func:`eqlv2_weights` gives :math:`w^{+}, w^{-}`.

    Args:
        input: logits (N, C + 1), the last column the background.
        target: class indices (N,) in [0, C]; C (the last column) is the background.
        pos_neg: :math:`g`, the ratios of the C classes (not the background), non-negative: a tensor or
            sequence of length C. A class without statistics has mmdetection's initial ratio of 100, which
            gives weights of 1 (``torch.full((C,), 100.0)`` is plain sigmoid cross-entropy summed over
            classes).
        gamma: steepness :math:`\gamma` >= 0 of the mapping from ratio to negative weight.
        mu: centre :math:`\mu` of the mapping.
        alpha: :math:`\alpha` >= 0, how much the positive weight grows as the negative weight shrinks.
        reduction: "none" | "mean" | "sum"; "mean" divides the sum by N (the number of samples).
        dist_sync: all-reduce the batch-dependent normalisation (N) under torch.distributed
            (:mod:`losslab._dist`; README, "Data-parallel training").

    Returns:
        "none": (N, C + 1); otherwise a scalar (0 for an empty batch).

    Raises:
        TypeError: non-floating input, a non-integer target, non-numeric gamma, mu or alpha.
        ValueError: an input that is not 2-D with at least 2 columns, a target not of shape (N,), class
            indices outside [0, C], gamma or alpha negative, pos_neg not of length C, negative or non-finite.

    Numerics: the terms are ``binary_cross_entropy_with_logits``'s (log-sigmoid forms), so gradients are finite
    at logits of +-1e4; the weights hold no gradient. Half precision is computed in float32.

    References:
        Tan, Lu, Zhang, Liu, Yan. Equalization Loss v2: A New Gradient Balance Approach for Long-tailed Object
        Detection. CVPR 2021, arXiv:2012.08548.

    Example:
        >>> import torch, losslab
        >>> logits = torch.tensor([[2.0, -1.0, 0.5], [-1.0, 0.3, -2.0], [0.0, 0.0, 3.0]], requires_grad=True)
        >>> labels = torch.tensor([0, 1, 2])  # 2 = background
        >>> loss = losslab.eqlv2_loss(logits, labels, pos_neg=[0.9, 0.1])
        >>> loss.backward()
        >>> loss.round(decimals=4)
        tensor(1.6463, grad_fn=<RoundBackward1>)
    """
    fn = "eqlv2_loss"
    gamma, mu, alpha = _check_eqlv2(fn, gamma=gamma, mu=mu, alpha=alpha, reduction=reduction, dist_sync=dist_sync)
    onehot = _onehot(fn, input, target)
    dtype = compute_dtype(input)
    ratio = class_vector(fn, "pos_neg", pos_neg, input.shape[1] - 1, input, dtype)
    weight = _element_weights(ratio, onehot.to(dtype), gamma=gamma, mu=mu, alpha=alpha)
    return sigmoid_loss(fn, input, onehot, reduction=reduction, from_logits=True, ignore_index=None, weight=weight,
                        avg_factor=float(input.shape[0]), dist_sync=dist_sync)


def eqlv2_weights(pos_neg: Tensor, *, gamma: float = 12.0, mu: float = 0.8, alpha: float = 4.0
                  ) -> tuple[Tensor, Tensor]:
    """The positive and negative weights (C + 1,) of each column, the background's 1, from the C ratios."""
    neg = torch.sigmoid(gamma * (pos_neg - mu))
    neg = torch.cat([neg, neg.new_ones(1)])
    return 1.0 + alpha * (1.0 - neg), neg


def _element_weights(ratio: Tensor, onehot: Tensor, *, gamma: float, mu: float, alpha: float) -> Tensor:
    pos, neg = eqlv2_weights(ratio, gamma=gamma, mu=mu, alpha=alpha)
    return torch.where(onehot > 0, pos, neg)


def _onehot(fn: str, input: Tensor, target: Tensor) -> Tensor:
    """The (N, C + 1) one-hot target (int64) of validated class indices (N,) in [0, C]."""
    check_input(fn, input, min_ndim=2, what="(N, C + 1)")
    if input.ndim != 2 or input.shape[1] < 2:
        raise ValueError(f"{fn}: input must have shape (N, C + 1), C >= 1 classes and the background column; "
                         f"got {shape_str(input.shape)}")
    check_target_tensor(fn, input, target)
    if target.shape != input.shape[:1]:
        raise ValueError(f"{fn}: target must have shape ({input.shape[0]},) (class indices, {input.shape[1] - 1} "
                         f"= background); got {shape_str(target.shape)}")
    if target.dtype.is_floating_point or target.dtype == torch.bool:
        raise TypeError(f"{fn}: target must hold class indices (an integer tensor); got dtype {target.dtype}")
    check_class_indices(fn, target, input.shape[1] - 1, None, background=True)
    return torch.nn.functional.one_hot(target.long(), input.shape[1])


def _check_eqlv2(fn: str, *, gamma: object, mu: object, alpha: object, **common: object
                 ) -> tuple[float, float, float]:
    """The hyperparameters of :func:`eqlv2_loss` and :class:`EQLv2Loss`."""
    check_common(fn, **common)
    return (check_number(fn, "gamma", gamma, low=0.0), check_number(fn, "mu", mu),
            check_number(fn, "alpha", alpha, low=0.0))


class EQLv2Loss(StatefulLoss):
    """Module form of :func:`losslab.eqlv2_loss` that keeps the gradient statistics, as mmdetection's EQLV2Loss.

    ``EQLv2Loss(num_classes, ...)`` takes (N, num_classes + 1) logits, the last column the background, and
    class indices in [0, num_classes]. Buffers (float64, saved in the ``state_dict``): ``pos_grad`` and
    ``neg_grad``, the accumulated positive and negative gradients of each class (background excluded), and
    ``pos_neg``, their ratio, 100 for a class without statistics (weights of 1). A call computes the loss with
    the current ``pos_neg``, then, in training mode, adds this batch's weighted gradients (all-reduced over
    the processes under ``dist_sync``, so that every process holds the global statistics, as mmdetection's
    ``use_distributed=True``) and recomputes ``pos_neg``. The gradients are the analytic ones of the
    unnormalised loss, gathered in the forward pass as mmdetection's ``collect_grad`` does (no backward hook:
    the statistics are the same whether or not the loss is backpropagated). In eval mode nothing changes.

    Example:
        >>> import torch, losslab
        >>> loss_fn = losslab.EQLv2Loss(2)
        >>> logits = torch.randn(4, 3, requires_grad=True)
        >>> loss_fn(logits, torch.tensor([0, 2, 2, 1])).backward()
        >>> loss_fn.pos_neg.shape
        torch.Size([2])
    """

    function = staticmethod(eqlv2_loss)
    state = ("pos_grad", "neg_grad", "pos_neg")

    def __init__(self, num_classes: int, *, gamma: float = 12.0, mu: float = 0.8, alpha: float = 4.0,
                 reduction: Reduction = "mean", dist_sync: bool = False) -> None:
        super().__init__()
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ValueError(f"EQLv2Loss: num_classes must be a positive int; got {num_classes!r}")
        self.gamma, self.mu, self.alpha = _check_eqlv2("eqlv2_loss", gamma=gamma, mu=mu, alpha=alpha,
                                                       reduction=reduction, dist_sync=dist_sync)
        self.num_classes, self.reduction, self.dist_sync = num_classes, reduction, dist_sync
        self._hyperparameters = ("num_classes", "gamma", "mu", "alpha", "reduction", "dist_sync")
        self.register_buffer("pos_grad", torch.zeros(num_classes, dtype=torch.float64))
        self.register_buffer("neg_grad", torch.zeros(num_classes, dtype=torch.float64))
        self.register_buffer("pos_neg", torch.full((num_classes,), NO_STATISTICS, dtype=torch.float64))

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """The loss with the current statistics; then, in training mode, the statistics updated by this batch."""
        if isinstance(input, Tensor) and input.ndim == 2 and input.shape[1] != self.num_classes + 1:
            raise ValueError(f"EQLv2Loss: input must have num_classes + 1 = {self.num_classes + 1} columns (the "
                             f"last the background); got shape {tuple(input.shape)}")
        loss = eqlv2_loss(input, target, pos_neg=self.pos_neg, gamma=self.gamma, mu=self.mu, alpha=self.alpha,
                          reduction=self.reduction, dist_sync=self.dist_sync)
        if self.training:
            self._collect(input.detach(), target)
        return loss

    @torch.no_grad()
    def _collect(self, x: Tensor, target: Tensor) -> None:
        """Add the batch's weighted absolute gradients w |sigmoid(x) - t| per class; recompute the ratio."""
        x = x.double()
        t = torch.nn.functional.one_hot(target.long(), x.shape[1]).double()
        weight = _element_weights(self.pos_neg.to(x.device), t, gamma=self.gamma, mu=self.mu, alpha=self.alpha)
        grad = (torch.sigmoid(x) - t).abs() * weight
        sums = torch.stack([(grad * t).sum(0)[:-1], (grad * (1.0 - t)).sum(0)[:-1]])
        if _dist.world("EQLv2Loss", self.dist_sync) > 1:
            sums = _dist.all_sum(sums)
        sums = sums.to(self.pos_grad.device)
        self.pos_grad += sums[0]
        self.neg_grad += sums[1]
        # a class still without any statistics (only empty batches so far) keeps the initial ratio;
        # mmdetection's would drop to 0 (all its weights suppressed) after an empty batch
        seen = (self.pos_grad + self.neg_grad) > 0
        self.pos_neg.copy_(torch.where(seen, self.pos_grad / (self.neg_grad + RATIO_GUARD), self.pos_neg))


# ----------------------------------------------------------------------------
# registration

register(LossSpec(
    name="eqlv2_loss", function=eqlv2_loss, module=EQLv2Loss, family="detection",
    formula="sum_j (t w+_j + (1 - t) w-_j) BCE(x_j, t_j) / N,  w-_j = sigmoid(gamma (g_j - mu)), "
            "w+_j = 1 + alpha (1 - w-_j)",
    aliases=(
        Alias("Equalization Loss v2", "paper"),
        Alias("EQLv2", "paper"),
        Alias("EQLV2Loss", "mmdetection", defaults={"num_classes": 1203}, qualified=True,
              note="num_classes defaults to 1203 (LVIS v1); mmdetection ignores weight, avg_factor and "
                   "reduction_override (always the sum over N); use dist_sync for its use_distributed"),
    ),
))
