"""The long-tail losses of the softmax family: logit adjustment (Balanced Softmax at tau = 1), LDAM, VS.

Each is cross-entropy of adjusted logits z_c = a_c x_c + b_c - m_y [c = y], with per-class vectors a, b, m
computed from the class counts (:func:`losslab.weights.log_prior`). They go through :func:`losslab._forms.softmax_loss`,
so every backend of cross_entropy computes them: torch's ``F.cross_entropy`` of z on small inputs, the
compiled sweep on CPU and the Triton kernel on CUDA (both adjusting inside, without storing z) on large
ones. The post-hoc correction :func:`losslab.logit_adjust` and the DRW schedule
:func:`losslab.deferred_class_weights` are in :mod:`losslab.weights`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from ._checks import (
    check_common,
    check_input,
    check_number,
    compute_dtype,
    numpy_arguments,
    shape_str,
)
from ._forms import softmax_loss
from ._module import LossModule
from .registry import Alias, LossSpec, register
from .weights import check_counts_type, class_counts_vector, log_prior

Reduction = Literal["none", "mean", "sum"]
Counts = Tensor | Sequence[float]

__all__ = [
    "LDAMLoss", "LogitAdjustedCrossEntropyLoss", "VSLoss", "ldam_loss", "logit_adjusted_cross_entropy", "vs_loss",
]


def _class_input(fn: str, input: Tensor) -> None:
    check_input(fn, input, min_ndim=2, what="(N, C) or (N, C, d1, ..., dk)")
    if input.shape[1] < 1:
        raise ValueError(f"{fn}: input must have at least one class along dim 1; got shape {shape_str(input.shape)}")


# ----------------------------------------------------------------------------
# validators (one per loss: the functional and its twin call it)


def _check_logit_adjusted(fn: str, *, class_counts: object, tau: object, **common: object) -> None:
    check_counts_type(fn, class_counts)
    check_number(fn, "tau", tau, low=0.0)
    check_common(fn, **common)


def _check_ldam(fn: str, *, class_counts: object, max_margin: object, scale: object, **common: object) -> None:
    check_counts_type(fn, class_counts)
    check_number(fn, "max_margin", max_margin, low=0.0)
    check_number(fn, "scale", scale, low=0.0, low_open=True)
    check_common(fn, **common)


def _check_vs(fn: str, *, class_counts: object, gamma: object, tau: object, **common: object) -> None:
    check_counts_type(fn, class_counts)
    check_number(fn, "gamma", gamma, low=0.0)
    check_number(fn, "tau", tau, low=0.0)
    check_common(fn, **common)


# ----------------------------------------------------------------------------
# the losses


@numpy_arguments
def logit_adjusted_cross_entropy(
    input: Tensor,
    target: Tensor,
    *,
    class_counts: Counts,
    tau: float = 1.0,
    weight: Tensor | Sequence[float] | None = None,
    ignore_index: int | None = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    dist_sync: bool = False,
) -> Tensor:
    r"""Logit-adjusted cross-entropy: cross-entropy of the logits plus tau times the log class prior.

    .. math::

        \ell_n = \operatorname{CE}\bigl(x_n + \tau \log \pi,\ y_n\bigr), \qquad
        \pi_c = \frac{n_c}{\sum_k n_k}

    with :math:`n` = ``class_counts`` and CE exactly :func:`cross_entropy` (weights,
    label smoothing, probability targets, ignore_index, "mean"). Adding
    :math:`\tau \log \pi` to the logits during training makes the model's own
    logits approximately balanced: predict with ``input.argmax(1)`` unchanged.
    At ``tau = 1`` this is the Balanced Softmax of Ren et al. (softmax of
    :math:`x_c + \log n_c`; the constant :math:`\log \sum_k n_k` cancels), registered
    as the preset "Balanced Softmax" (also "BalancedSoftmax", "BALMS").

    Args:
        input: logits of shape (N, C) or (N, C, d1, ..., dk).
        target: class indices (N) or (N, d1, ..., dk), or class probabilities
            shaped like the input.
        class_counts: training-set examples per class, shape (C,) (a tensor, an
            array or a sequence, as :func:`losslab.class_counts` returns); a zero
            count counts as 1. Only their ratios matter. Under ``dist_sync`` they are
            used as given: pass global counts (``class_counts(..., dist_sync=True)``).
        tau: :math:`\tau \ge 0`; 0 gives :func:`cross_entropy`.
        weight: per-class rescaling of length C, as in :func:`cross_entropy`.
        ignore_index: class index whose positions contribute nothing; None disables it.
        reduction: "none" | "mean" | "sum"; "mean" as :func:`cross_entropy`
            (divides by the sum of ``weight[target]`` over kept positions).
        label_smoothing: :math:`\varepsilon` in [0, 1], mixed into the target as in
            :func:`cross_entropy`.
        dist_sync: all-reduce the batch-dependent normalisation under torch.distributed.

    Returns:
        "none": (N) or (N, d1, ..., dk); otherwise a scalar. In the input's dtype.

    Raises:
        TypeError: class_counts not a tensor or sequence; the errors of :func:`cross_entropy`.
        ValueError: class_counts not of length C, negative or non-finite; tau < 0;
            the errors of :func:`cross_entropy`.

    References:
        Menon, Jayasumana, Rawat, Jain, Veit, Kumar. Long-tail learning via logit
        adjustment. ICLR 2021, arXiv:2007.07314.
        Ren, Yu, Ma, Zhao, Yi, Li. Balanced Meta-Softmax for Long-Tailed Visual
        Recognition. NeurIPS 2020, arXiv:2007.10740.

    Example:
        >>> import torch, losslab
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], requires_grad=True)
        >>> loss = losslab.logit_adjusted_cross_entropy(logits, torch.tensor([0, 2]), class_counts=[900, 90, 10])
        >>> loss.backward()
        >>> loss.round(decimals=4)
        tensor(0.9472, grad_fn=<RoundBackward1>)

    The offset :math:`\tau \log \pi_c` is computed in float64 from the counts and
    added in the compute dtype; the large inputs' fused paths add it inside the
    sweep, without a copy of the logits.
    """
    fn = "logit_adjusted_cross_entropy"
    _check_logit_adjusted(fn, class_counts=class_counts, tau=tau, ignore_index=ignore_index, reduction=reduction,
                          label_smoothing=label_smoothing)
    _class_input(fn, input)
    dtype = compute_dtype(input)
    counts = class_counts_vector(fn, class_counts, input)
    offset = (tau * log_prior(counts)).to(dtype) if tau else None
    return softmax_loss(fn, input, target, reduction=reduction, ignore_index=ignore_index, input_kind="logits",
                        class_weight=weight, label_smoothing=label_smoothing, weighted_mean=True,
                        dist_sync=dist_sync, logit_offset=offset)


@numpy_arguments
def ldam_loss(
    input: Tensor,
    target: Tensor,
    *,
    class_counts: Counts,
    max_margin: float = 0.5,
    scale: float = 30.0,
    weight: Tensor | Sequence[float] | None = None,
    ignore_index: int | None = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    dist_sync: bool = False,
) -> Tensor:
    r"""Label-distribution-aware margin (LDAM) loss: cross-entropy with a per-class margin on the target logit.

    .. math::

        \ell_n = \operatorname{CE}\bigl(s\,(x_n - \Delta_{y_n} e_{y_n}),\ y_n\bigr), \qquad
        \Delta_c = \Delta_{\max} \left(\frac{\min_k n_k}{n_c}\right)^{1/4}

    with :math:`s` = ``scale``, :math:`\Delta_{\max}` = ``max_margin`` and
    :math:`e_y` the one-hot vector of the target: the margin
    :math:`\Delta_c \propto n_c^{-1/4}` (largest, ``max_margin``, for the rarest
    class) is subtracted from the target logit only, then every logit is
    scaled by :math:`s` (Cao et al.'s normalised-logit form). CE is
    :func:`cross_entropy` with ``weight`` and "mean" as there: pass
    ``weight=deferred_class_weights(counts, epoch, start=...)`` for the
    deferred re-weighting (LDAM-DRW) of the paper.

    Args:
        input: logits of shape (N, C) or (N, C, d1, ..., dk).
        target: class indices (N) or (N, d1, ..., dk) (the margin needs them).
        class_counts: training-set examples per class, shape (C,); a zero count
            counts as 1. Under ``dist_sync`` used as given (pass global counts).
        max_margin: :math:`\Delta_{\max} \ge 0`, the rarest class's margin (0.5 in the paper).
        scale: :math:`s > 0` (30 in Cao et al.'s code). ``max_margin=0, scale=1`` gives
            :func:`cross_entropy`.
        weight: per-class rescaling of length C (DRW's weights), as in :func:`cross_entropy`.
        ignore_index: class index whose positions contribute nothing; None disables it.
        reduction: "none" | "mean" | "sum"; "mean" divides by the sum of
            ``weight[target]`` over kept positions (PyTorch's, as Cao et al.'s code uses).
        label_smoothing: :math:`\varepsilon` in [0, 1], as in :func:`cross_entropy`
            (applied to the margin-adjusted logits).
        dist_sync: all-reduce the batch-dependent normalisation under torch.distributed.

    Returns:
        "none": (N) or (N, d1, ..., dk); otherwise a scalar. In the input's dtype.

    Raises:
        TypeError: class_counts not a tensor or sequence; the errors of :func:`cross_entropy`.
        ValueError: class_counts not of length C, negative or non-finite; max_margin < 0;
            scale <= 0; probability targets; the errors of :func:`cross_entropy`.

    References:
        Cao, Wei, Gaidon, Arechiga, Ma. Learning Imbalanced Datasets with
        Label-Distribution-Aware Margin Loss. NeurIPS 2019, arXiv:1906.07413.

    Example:
        >>> import torch, losslab
        >>> logits = torch.tensor([[0.2, 0.1, -0.1], [0.0, 0.1, 0.3]], requires_grad=True)
        >>> loss = losslab.ldam_loss(logits, torch.tensor([0, 2]), class_counts=[900, 90, 10])
        >>> loss.backward()
        >>> loss.round(decimals=4)
        tensor(5.5321, grad_fn=<RoundBackward1>)

    The paper's model feeds normalised features and weights into the last layer
    (cosine logits in [-1, 1]), which is why ``scale`` is large; with ordinary
    logits use a smaller ``scale``. The loss is computed in float32 for
    half-precision inputs and returned in the input's dtype: with ``scale=30``
    and logits in the thousands it exceeds float16's range (inf), though its
    gradient stays finite.
    """
    fn = "ldam_loss"
    _check_ldam(fn, class_counts=class_counts, max_margin=max_margin, scale=scale, ignore_index=ignore_index,
                reduction=reduction, label_smoothing=label_smoothing)
    _class_input(fn, input)
    if isinstance(target, Tensor) and target.dtype.is_floating_point and target.shape == input.shape:
        raise ValueError(f"{fn}: target must hold class indices of shape "
                         f"{shape_str(input.shape[:1] + input.shape[2:])} (the margin is the target class's); "
                         f"got probabilities of shape {shape_str(target.shape)}")
    dtype = compute_dtype(input)
    counts = class_counts_vector(fn, class_counts, input)
    logit_scale = None if scale == 1.0 else torch.full_like(counts, float(scale)).to(dtype)
    margin = None
    if max_margin:
        margin = (float(scale) * max_margin * (counts.min() / counts) ** 0.25).to(dtype)  # s Delta_c
    return softmax_loss(fn, input, target, reduction=reduction, ignore_index=ignore_index, input_kind="logits",
                        class_weight=weight, label_smoothing=label_smoothing, weighted_mean=True,
                        dist_sync=dist_sync, logit_scale=logit_scale, target_margin=margin)


@numpy_arguments
def vs_loss(
    input: Tensor,
    target: Tensor,
    *,
    class_counts: Counts,
    gamma: float = 0.2,
    tau: float = 1.0,
    weight: Tensor | Sequence[float] | None = None,
    ignore_index: int | None = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    dist_sync: bool = False,
) -> Tensor:
    r"""Vector-scaling (VS) loss: cross-entropy of per-class scaled and shifted logits.

    .. math::

        \ell_n = \operatorname{CE}\bigl(\Delta \odot x_n + \iota,\ y_n\bigr), \qquad
        \Delta_c = \left(\frac{n_c}{\max_k n_k}\right)^{\gamma}, \qquad
        \iota_c = \tau \log \pi_c, \quad \pi_c = \frac{n_c}{\sum_k n_k}

    Normalisation: :math:`\Delta_c \le 1`, equal to 1 for the most frequent
    class, as in Kini et al.'s code (which divides the logits by
    :math:`(n_{\max}/n_c)^{\gamma}`). ``gamma = 0`` gives
    :func:`logit_adjusted_cross_entropy`; ``tau = 0`` gives the class-dependent
    temperatures (CDT) loss of Ye et al. (registered as the preset "CDT").
    CE is :func:`cross_entropy` (weights, label smoothing, probability targets,
    ignore_index, "mean").

    Args:
        input: logits of shape (N, C) or (N, C, d1, ..., dk).
        target: class indices (N) or (N, d1, ..., dk), or class probabilities
            shaped like the input.
        class_counts: training-set examples per class, shape (C,); a zero count
            counts as 1. Under ``dist_sync`` used as given (pass global counts).
        gamma: :math:`\gamma \ge 0`, the multiplicative (temperature) strength.
        tau: :math:`\tau \ge 0`, the additive (logit adjustment) strength.
        weight: per-class rescaling of length C, as in :func:`cross_entropy`.
        ignore_index: class index whose positions contribute nothing; None disables it.
        reduction: "none" | "mean" | "sum"; "mean" as :func:`cross_entropy`.
        label_smoothing: :math:`\varepsilon` in [0, 1], as in :func:`cross_entropy`.
        dist_sync: all-reduce the batch-dependent normalisation under torch.distributed.

    Returns:
        "none": (N) or (N, d1, ..., dk); otherwise a scalar. In the input's dtype.

    Raises:
        TypeError: class_counts not a tensor or sequence; the errors of :func:`cross_entropy`.
        ValueError: class_counts not of length C, negative or non-finite; gamma or
            tau < 0; the errors of :func:`cross_entropy`.

    References:
        Kini, Paraskevas, Oymak, Thrampoulidis. Label-Imbalanced and
        Group-Sensitive Classification under Overparameterization. NeurIPS 2021,
        arXiv:2103.01550.
        Ye, Chen, Zhan, Chao. Identifying and Compensating for Feature Deviation
        in Imbalanced Deep Learning. arXiv:2001.01385, 2020 (CDT).

    Example:
        >>> import torch, losslab
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], requires_grad=True)
        >>> loss = losslab.vs_loss(logits, torch.tensor([0, 2]), class_counts=[900, 90, 10])
        >>> loss.backward()
        >>> loss.round(decimals=4)
        tensor(1.7638, grad_fn=<RoundBackward1>)
    """
    fn = "vs_loss"
    _check_vs(fn, class_counts=class_counts, gamma=gamma, tau=tau, ignore_index=ignore_index, reduction=reduction,
              label_smoothing=label_smoothing)
    _class_input(fn, input)
    dtype = compute_dtype(input)
    counts = class_counts_vector(fn, class_counts, input)
    logit_scale = ((counts / counts.max()) ** gamma).to(dtype) if gamma else None
    offset = (tau * log_prior(counts)).to(dtype) if tau else None
    return softmax_loss(fn, input, target, reduction=reduction, ignore_index=ignore_index, input_kind="logits",
                        class_weight=weight, label_smoothing=label_smoothing, weighted_mean=True,
                        dist_sync=dist_sync, logit_scale=logit_scale, logit_offset=offset)


# ----------------------------------------------------------------------------
# module twins


# tensors kept as buffers: .to(device) moves them, the state_dict keeps them; the counts keep their float64 under
# .half() or .to(dtype) (a float16 count of 100,000 is inf, a bfloat16 4,999 is 4,992)
_BUFFERS = ("weight", "class_counts")


class LogitAdjustedCrossEntropyLoss(LossModule, function=logit_adjusted_cross_entropy,
                                    validate=_check_logit_adjusted):
    WEIGHTS = _BUFFERS
    KEEP_DTYPE = ("class_counts",)

    def __init__(self, *, class_counts: Counts, tau: float = 1.0, weight: Tensor | Sequence[float] | None = None,
                 ignore_index: int | None = -100, reduction: Reduction = "mean", label_smoothing: float = 0.0,
                 dist_sync: bool = False) -> None:
        super().__init__(class_counts=class_counts, tau=tau, weight=weight, ignore_index=ignore_index,
                         reduction=reduction, label_smoothing=label_smoothing, dist_sync=dist_sync)


class LDAMLoss(LossModule, function=ldam_loss, validate=_check_ldam):
    WEIGHTS = _BUFFERS
    KEEP_DTYPE = ("class_counts",)

    def __init__(self, *, class_counts: Counts, max_margin: float = 0.5, scale: float = 30.0,
                 weight: Tensor | Sequence[float] | None = None, ignore_index: int | None = -100,
                 reduction: Reduction = "mean", label_smoothing: float = 0.0, dist_sync: bool = False) -> None:
        super().__init__(class_counts=class_counts, max_margin=max_margin, scale=scale, weight=weight,
                         ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing,
                         dist_sync=dist_sync)


class VSLoss(LossModule, function=vs_loss, validate=_check_vs):
    WEIGHTS = _BUFFERS
    KEEP_DTYPE = ("class_counts",)

    def __init__(self, *, class_counts: Counts, gamma: float = 0.2, tau: float = 1.0,
                 weight: Tensor | Sequence[float] | None = None, ignore_index: int | None = -100,
                 reduction: Reduction = "mean", label_smoothing: float = 0.0, dist_sync: bool = False) -> None:
        super().__init__(class_counts=class_counts, gamma=gamma, tau=tau, weight=weight, ignore_index=ignore_index,
                         reduction=reduction, label_smoothing=label_smoothing, dist_sync=dist_sync)


# ----------------------------------------------------------------------------
# registration: names, aliases and formulas (the conformance samples are in tests/samples/)

_BALMS = "Ren et al. 2020: softmax of x + log n_c, this loss at tau = 1"

register(LossSpec(
    name="logit_adjusted_cross_entropy", function=logit_adjusted_cross_entropy, module=LogitAdjustedCrossEntropyLoss,
    family="classification", formula="CE(x + tau log pi, y),  pi = class_counts / sum(class_counts)",
    aliases=(
        Alias("Logit Adjustment", "paper"),
        Alias("Logit-Adjusted Loss", "paper"),
        Alias("Logit-Adjusted Cross-Entropy", "paper"),
        Alias("Balanced Softmax", "paper", defaults={"tau": 1.0}, note=_BALMS),
        Alias("Balanced Softmax Loss", "paper", defaults={"tau": 1.0}, note=_BALMS),
        Alias("BALMS", "paper", defaults={"tau": 1.0}, note=_BALMS),
    ),
))

register(LossSpec(
    name="ldam_loss", function=ldam_loss, module=LDAMLoss, family="classification",
    formula="CE(s (x - Delta_y onehot(y)), y),  Delta_c = max_margin (min n / n_c)^(1/4)",
    aliases=(
        Alias("LDAM", "paper"),
        Alias("LDAMLoss", "paper", note="Cao et al.'s code: max_m=0.5, s=30"),
        Alias("Label-Distribution-Aware Margin Loss", "paper"),
        Alias("LDAM-DRW", "paper", note="pass weight=deferred_class_weights(counts, epoch, start=...)"),
    ),
))

register(LossSpec(
    name="vs_loss", function=vs_loss, module=VSLoss, family="classification",
    formula="CE(Delta x + iota, y),  Delta_c = (n_c / max n)^gamma,  iota_c = tau log pi_c",
    aliases=(
        Alias("VS Loss", "paper"),
        Alias("Vector-Scaling Loss", "paper"),
        Alias("VSLoss", "paper"),
        Alias("CDT", "paper", defaults={"tau": 0.0}, note="Ye et al.'s class-dependent temperatures: tau = 0"),
        Alias("Class-Dependent Temperatures", "paper", defaults={"tau": 0.0}),
    ),
))
