"""mmdetection's dense-detection losses where their normalisation differs from losslab's.

mmdetection's ``QualityFocalLoss`` sums each anchor's C classes first and
averages over anchors (N), where losslab's "mean" averages over N x C
elements; with ``avg_factor`` or "sum" the two agree. Its per-anchor
``weight`` has shape (N,). ``VarifocalLoss``, ``DistributionFocalLoss``
and ``SmoothL1Loss`` reduce as losslab does (their aliases preset nothing).
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from .._checks import check_common, check_input, check_number
from .._module import LossModule
from ..detection import Target, quality_focal_loss
from ..registry import Alias, add_aliases
from .boxes import _weighted

Reduction = Literal["none", "mean", "sum"]

__all__ = ["mmdet_quality_focal_loss", "MmdetQualityFocalLoss"]


def mmdet_quality_focal_loss(
    input: Tensor,
    target: Target,
    *,
    beta: float = 2.0,
    weight: Tensor | None = None,
    reduction: Reduction = "mean",
    avg_factor: float | Tensor | None = None,
) -> Tensor:
    r"""mmdetection's ``QualityFocalLoss``: :func:`losslab.quality_focal_loss` summed per anchor, then reduced.

    .. math::

        \ell_n = \sum_c \mathrm{QFL}(x_{n,c}, y_{n,c}), \qquad
        \text{"mean"} = \frac{1}{N} \sum_n w_n \ell_n \;\text{ or }\; \frac{1}{\text{avg\_factor}} \sum_n w_n \ell_n

    Args:
        input: logits (N, C).
        target: as :func:`losslab.quality_focal_loss`: dense (N, C) scores, or
            a ``(labels, scores)`` pair with background index C.
        beta: the modulating exponent (2.0).
        weight: per-anchor weights (N,), as mmdetection passes them.
        reduction: "none" gives the (N,) per-anchor losses.
        avg_factor: with "mean", the divisor (the number of positives).

    Example:
        >>> import torch, losslab
        >>> loss_fn = losslab.get_loss("mmdet.QualityFocalLoss")
        >>> x = torch.randn(4, 3, requires_grad=True)
        >>> labels, scores = torch.tensor([0, 3, 2, 3]), torch.tensor([0.9, 0.0, 0.4, 0.0])
        >>> loss_fn(x, (labels, scores), avg_factor=2).backward()
    """
    _check_mmdet_qfl("mmdet.QualityFocalLoss", beta=beta, reduction=reduction)
    check_input("mmdet.QualityFocalLoss", input, min_ndim=2)
    per_anchor = quality_focal_loss(input, target, beta=beta, reduction="none").sum(dim=1)
    return _weighted("mmdet.QualityFocalLoss", per_anchor, input, weight, reduction, avg_factor)


def _check_mmdet_qfl(fn: str, *, beta: object, **common: object) -> float:
    """The hyperparameters of :func:`mmdet_quality_focal_loss` and its twin; beta as a float."""
    beta = check_number(fn, "beta", beta, low=0.0)
    check_common(fn, **common)
    return beta


class MmdetQualityFocalLoss(LossModule, function=mmdet_quality_focal_loss, validate=_check_mmdet_qfl):
    """mmdetection's ``QualityFocalLoss`` (:func:`losslab.frameworks.detection.mmdet_quality_focal_loss`)."""

    loss_name = "mmdet.QualityFocalLoss"

    def __init__(self, *, beta: float = 2.0, weight: Tensor | None = None, reduction: Reduction = "mean",
                 avg_factor: float | Tensor | None = None) -> None:
        super().__init__(beta=beta, weight=weight, reduction=reduction, avg_factor=avg_factor)


add_aliases(
    "quality_focal_loss",
    Alias("QualityFocalLoss", "mmdetection", qualified=True, build=MmdetQualityFocalLoss,
          note="sums each anchor's classes; 'mean' over anchors; per-anchor weight (N,)"),
)
