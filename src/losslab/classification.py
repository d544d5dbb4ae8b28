"""The cross-entropy family: softmax and sigmoid cross-entropy, NLL, alpha-balanced cross-entropy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import Tensor

from ._checks import check_alpha, check_common, numpy_arguments
from ._forms import sigmoid_loss, softmax_loss
from ._module import LossModule
from .registry import Alias, LossSpec, register

Reduction = Literal["none", "mean", "sum"]

__all__ = [
    "cross_entropy", "nll_loss", "binary_cross_entropy", "balanced_cross_entropy",
    "CrossEntropyLoss", "NLLLoss", "BinaryCrossEntropyLoss", "BalancedCrossEntropyLoss",
]


@numpy_arguments
def cross_entropy(
    input: Tensor,
    target: Tensor,
    *,
    weight: Tensor | Sequence[float] | None = None,
    ignore_index: int | None = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    from_logits: bool = True,
    dist_sync: bool = False,
) -> Tensor:
    r"""Softmax cross-entropy over dim 1, with the values and gradients of ``torch.nn.functional.cross_entropy``.

    .. math::

        \ell_n = -\sum_{c=1}^{C} w_c\, q_{n,c} \log \operatorname{softmax}(x_n)_c,
        \qquad q_n = (1 - \varepsilon)\, y_n + \varepsilon / C

    where :math:`y_n` is the one-hot class index or the probability target,
    :math:`\varepsilon` is ``label_smoothing`` and :math:`w` is ``weight``
    (1 when None).

    Args:
        input: logits of shape (N, C) or (N, C, d1, ..., dk); probabilities
            over dim 1 when ``from_logits=False``.
        target: class indices of shape (N) or (N, d1, ..., dk), any integer
            dtype, values in [0, C) or ``ignore_index``; or class probabilities
            shaped like the input (float, values in [0, 1]).
        weight: per-class rescaling, non-negative, a tensor, array or
            sequence of length C.
        ignore_index: class-index value whose positions contribute nothing
            (neither loss nor gradient nor denominator). Not used with
            probability targets. None disables it.
        reduction: "none" | "mean" | "sum".
        label_smoothing: :math:`\varepsilon` in [0, 1].
        from_logits: False when ``input`` holds probabilities (their log is
            floored at -100, and they are not renormalised).
        dist_sync: all-reduce the batch-dependent normalisation under
            torch.distributed (:mod:`losslab._dist`; README, "Data-parallel training").

    Returns:
        "none": shape (N) or (N, d1, ..., dk), ignored positions 0. "mean" and
        "sum": a scalar. In the input's dtype.

        "mean" follows PyTorch: with class-index targets it divides by
        :math:`\sum_n w_{y_n}` over non-ignored positions (the number of them
        when ``weight`` is None); with probability targets it divides by the
        number of positions N * d1 * ... * dk, whatever the weights.

    Raises:
        TypeError: non-floating input, class indices of a float dtype,
            probability targets of an integer dtype.
        ValueError: a target shape that fits neither form, a class index out
            of range, ``weight`` not of length C, ``label_smoothing`` outside
            [0, 1], an unknown reduction.

    Differences from PyTorch: a zero "mean" denominator (an empty batch, every
    target ignored, or every kept target of weight 0) gives 0 with zero
    gradients where PyTorch returns NaN; negative weights are rejected (PyTorch
    accepts them); half-precision inputs are computed in float32.

    Example:
        >>> import torch, losslab
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], requires_grad=True)
        >>> target = torch.tensor([0, 2])
        >>> loss = losslab.cross_entropy(logits, target, label_smoothing=0.1)
        >>> loss.backward()
        >>> loss.round(decimals=4)
        tensor(0.3455, grad_fn=<RoundBackward1>)
    """
    fn = "cross_entropy"
    check_common(fn, ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing,
                 from_logits=from_logits)
    return softmax_loss(fn, input, target, reduction=reduction, ignore_index=ignore_index,
                        input_kind="logits" if from_logits else "probabilities", class_weight=weight,
                        label_smoothing=label_smoothing, weighted_mean=True, dist_sync=dist_sync)


@numpy_arguments
def nll_loss(
    input: Tensor,
    target: Tensor,
    *,
    weight: Tensor | Sequence[float] | None = None,
    ignore_index: int | None = -100,
    reduction: Reduction = "mean",
    dist_sync: bool = False,
) -> Tensor:
    r"""Negative log-likelihood of log-probabilities, with the values of ``torch.nn.functional.nll_loss``.

    .. math::

        \ell_n = -\sum_{c=1}^{C} w_c\, y_{n,c}\, x_{n,c}

    with :math:`x` the log-probabilities (e.g. ``log_softmax`` output) and
    :math:`y` the one-hot class index (or a probability target). This is
    :func:`cross_entropy` for inputs that already went through log_softmax.

    Args:
        input: log-probabilities of shape (N, C) or (N, C, d1, ..., dk).
        target: class indices (N) or (N, d1, ..., dk) in [0, C) or
            ``ignore_index``; or class probabilities shaped like the input.
        weight: per-class rescaling of length C.
        ignore_index: class index to skip; None disables it.
        reduction: "none" | "mean" | "sum"; "mean" divides by the sum of
            ``weight[target]`` over kept positions, as PyTorch does.
        dist_sync: all-reduce the batch-dependent normalisation under
            torch.distributed (:mod:`losslab._dist`; README, "Data-parallel training").

    Returns:
        "none": (N) or (N, d1, ..., dk); otherwise a scalar (0 for an empty or
        all-ignored batch).

    Raises:
        TypeError, ValueError: as :func:`cross_entropy`.

    Example:
        >>> import torch, losslab
        >>> log_p = torch.log_softmax(torch.tensor([[2.0, 0.5, -1.0]]), dim=1).requires_grad_()
        >>> loss = losslab.nll_loss(log_p, torch.tensor([1]))
        >>> loss.backward()
        >>> loss.round(decimals=4)
        tensor(1.7413, grad_fn=<RoundBackward1>)
    """
    fn = "nll_loss"
    check_common(fn, ignore_index=ignore_index, reduction=reduction)
    return softmax_loss(fn, input, target, reduction=reduction, ignore_index=ignore_index,
                        input_kind="log-probabilities", class_weight=weight, weighted_mean=True,
                        dist_sync=dist_sync)


@numpy_arguments
def binary_cross_entropy(
    input: Tensor,
    target: Tensor,
    *,
    weight: Tensor | Sequence[float] | float | None = None,
    pos_weight: Tensor | Sequence[float] | float | None = None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    reduction: Reduction = "mean",
    from_logits: bool = True,
    avg_factor: float | Tensor | None = None,
    dist_sync: bool = False,
) -> Tensor:
    r"""Sigmoid (binary) cross-entropy of every element, as ``binary_cross_entropy_with_logits``.

    .. math::

        \ell = -w \left[ p_w\, t \log \sigma(x) + (1 - t) \log(1 - \sigma(x)) \right],
        \qquad t \leftarrow (1 - \varepsilon)\, t + \varepsilon / 2

    with :math:`w` = ``weight``, :math:`p_w` = ``pos_weight`` and
    :math:`\varepsilon` = ``label_smoothing`` (Keras' binary convention).

    Args:
        input: logits of any shape; (N, C, d1, ...) for per-class options and
            class-index targets. Probabilities when ``from_logits=False``.
        target: either a tensor shaped like the input (multi-label, binary or
            soft labels in [0, 1]; any dtype), or, for an (N, C, d1, ...)
            input, integer class indices of shape (N, d1, ...). In the index
            form every class is its own binary problem (one-vs-rest):
            position n is positive for class ``target[n]`` and negative for all
            others, index C means background (negative for every class). This
            penalises every wrong class explicitly, unlike softmax
            cross-entropy. With one class (input (N, 1, ...)) integer labels
            of shape (N, ...) raise a ValueError, since label 1 would be the
            background: pass ``target.float().unsqueeze(1)``.
        weight: non-negative rescaling of each element's loss. A 1-D tensor of length C
            applies along the class dimension (dim 1); any other shape must
            broadcast to the input's shape.
        pos_weight: weight of the positive term, same broadcasting as
            ``weight``. Unlike PyTorch, whose pos_weight broadcasts against the
            last dimension, a length-C pos_weight applies along dim 1 for
            (N, C, d1, ...) inputs (for (N, C) inputs the two agree).
        ignore_index: dense targets equal to it, or index-form positions equal
            to it (all C classes), contribute nothing. None disables it. In the
            index form an ignore_index equal to C (the background index)
            ignores the background positions.
        label_smoothing: :math:`\varepsilon` in [0, 1].
        reduction: "none" | "mean" | "sum". "mean" is the plain mean over
            non-ignored elements (weights are not in the denominator, as in
            PyTorch).
        from_logits: False when ``input`` holds probabilities (PyTorch's
            ``BCELoss``; logs floored at -100).
        avg_factor: with "mean", divide the sum by this number (e.g. the
            number of positive anchors, mmdetection's convention) instead of
            by the element count; 0 divides by 1. A number or a one-element
            tensor; "none" and "sum" ignore it.
        dist_sync: all-reduce the batch-dependent normalisation under
            torch.distributed (:mod:`losslab._dist`; README, "Data-parallel training").

    Returns:
        "none": the input's shape (ignored elements 0); otherwise a scalar.

    Raises:
        TypeError: non-floating input, float class indices.
        ValueError: a target shape that fits neither form, labels or
            probabilities outside [0, 1], class indices outside [0, C], weights
            that do not broadcast or are negative, an unknown reduction.

    Example:
        >>> import torch, losslab
        >>> logits = torch.tensor([[1.5, -0.5, 0.2], [-2.0, 0.3, 1.0]], requires_grad=True)
        >>> labels = torch.tensor([0, 3])  # class 0; background (negative for all 3 classes)
        >>> loss = losslab.binary_cross_entropy(logits, labels, pos_weight=[2.0, 1.0, 1.0])
        >>> loss.backward()
        >>> loss.round(decimals=4)
        tensor(0.6616, grad_fn=<RoundBackward1>)
    """
    fn = "binary_cross_entropy"
    check_common(fn, ignore_index=ignore_index, label_smoothing=label_smoothing, reduction=reduction,
                 from_logits=from_logits, avg_factor=avg_factor)
    return sigmoid_loss(fn, input, target, reduction=reduction, from_logits=from_logits, ignore_index=ignore_index,
                        weight=weight, pos_weight=pos_weight, label_smoothing=label_smoothing,
                        avg_factor=avg_factor, dist_sync=dist_sync)


@numpy_arguments
def balanced_cross_entropy(
    input: Tensor,
    target: Tensor,
    *,
    alpha: float | Tensor | Sequence[float],
    ignore_index: int | None = -100,
    label_smoothing: float = 0.0,
    reduction: Reduction = "mean",
    from_logits: bool = True,
    dist_sync: bool = False,
) -> Tensor:
    r"""Alpha-balanced cross-entropy, :math:`-\alpha_t \log p_t`, in a sigmoid or a softmax form.

    The form follows ``alpha``:

    * a float alpha in [0, 1]: sigmoid form (binary, multi-label, or
      one-vs-rest with class-index targets, as :func:`binary_cross_entropy`);
      positives are weighted by alpha and negatives by 1 - alpha:

      .. math:: \ell = \alpha_t\, \mathrm{BCE}(x, t), \qquad \alpha_t = \alpha t + (1 - \alpha)(1 - t)

    * a sequence or 1-D tensor of length C: softmax form over dim 1 (as
      :func:`cross_entropy`), :math:`\alpha_t = \alpha[\text{target}]`:

      .. math:: \ell_n = -\sum_c \alpha_c\, q_{n,c} \log \operatorname{softmax}(x_n)_c

      Per-class alphas come from :func:`losslab.class_weights`.

    "mean" is the plain mean of the weighted per-element losses over
    non-ignored elements. That is *not* PyTorch's weighted cross-entropy,
    whose "mean" divides by the sum of the weights of the targets
    (``cross_entropy(weight=alpha)``): the two differ by a batch-dependent
    factor, and users confuse them. Use :func:`cross_entropy` with ``weight``
    for PyTorch's convention.

    It equals :func:`sigmoid_focal_loss` / :func:`softmax_focal_loss` with
    ``gamma=0`` and the same alpha.

    Args:
        input: logits, (N, C, d1, ...) for the softmax form, any shape for the
            sigmoid form; probabilities when ``from_logits=False``.
        target: as :func:`binary_cross_entropy` (sigmoid form; with one
            class, labels shaped like the input, e.g.
            ``target.float().unsqueeze(1)``) or :func:`cross_entropy` (softmax form).
        alpha: float in [0, 1] (sigmoid) or per-class non-negative weights of
            length C (softmax). Required.
        ignore_index: target value to skip; None disables it.
        label_smoothing: in [0, 1]; the sigmoid form smooths the target
            towards 1/2 before alpha_t is formed from it (as Keras does), the
            softmax form towards 1/C.
        reduction: "none" | "mean" | "sum".
        from_logits: False when ``input`` holds probabilities.
        dist_sync: all-reduce the batch-dependent normalisation under
            torch.distributed (:mod:`losslab._dist`; README, "Data-parallel training").

    Returns:
        "none": the per-element (sigmoid) or per-position (softmax) losses;
        otherwise a scalar.

    Raises:
        TypeError: alpha neither a number nor a sequence/tensor; bad dtypes.
        ValueError: a float alpha outside [0, 1], per-class alpha not of
            length C or negative, and the target errors of the chosen form.

    References:
        Lin et al., Focal Loss for Dense Object Detection, ICCV 2017, arXiv:1708.02002 (section 3.1).

    Example:
        >>> import torch, losslab
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], requires_grad=True)
        >>> alpha = losslab.class_weights(torch.tensor([900, 90, 10]))  # inverse frequency, averaging 1
        >>> loss = losslab.balanced_cross_entropy(logits, torch.tensor([0, 2]), alpha=alpha)
        >>> loss.backward()
        >>> loss.round(decimals=4)
        tensor(0.1501, grad_fn=<RoundBackward1>)
    """
    fn = "balanced_cross_entropy"
    alpha = _check_balanced(fn, alpha=alpha, ignore_index=ignore_index, label_smoothing=label_smoothing,
                            reduction=reduction, from_logits=from_logits)
    if isinstance(alpha, float):
        return sigmoid_loss(fn, input, target, reduction=reduction, from_logits=from_logits,
                            ignore_index=ignore_index, alpha=alpha, label_smoothing=label_smoothing,
                            dist_sync=dist_sync)
    return softmax_loss(fn, input, target, reduction=reduction, ignore_index=ignore_index,
                        input_kind="logits" if from_logits else "probabilities", class_weight=alpha,
                        label_smoothing=label_smoothing, dist_sync=dist_sync)


class CrossEntropyLoss(LossModule, function=cross_entropy, positional=("weight",)):
    """Module form of :func:`losslab.cross_entropy`.

    ``weight`` is also its first positional argument, as in ``torch.nn.CrossEntropyLoss``, so
    ``CrossEntropyLoss(w)`` is a drop-in for ``torch.nn.CrossEntropyLoss(w)``; PyTorch's deprecated
    ``size_average`` and ``reduce`` are not accepted, so every other argument is keyword-only.
    """

    def __init__(self, weight: Tensor | Sequence[float] | None = None, *, ignore_index: int | None = -100,
                 reduction: Reduction = "mean", label_smoothing: float = 0.0, from_logits: bool = True,
                 dist_sync: bool = False) -> None:
        super().__init__(weight=weight, ignore_index=ignore_index, reduction=reduction,
                         label_smoothing=label_smoothing, from_logits=from_logits, dist_sync=dist_sync)


class NLLLoss(LossModule, function=nll_loss, positional=("weight",)):
    """Module form of :func:`losslab.nll_loss`.

    ``weight`` is also its first positional argument, as in ``torch.nn.NLLLoss``, so ``NLLLoss(w)`` is
    a drop-in for ``torch.nn.NLLLoss(w)``; every other argument is keyword-only.
    """

    def __init__(self, weight: Tensor | Sequence[float] | None = None, *, ignore_index: int | None = -100,
                 reduction: Reduction = "mean", dist_sync: bool = False) -> None:
        super().__init__(weight=weight, ignore_index=ignore_index, reduction=reduction, dist_sync=dist_sync)


class BinaryCrossEntropyLoss(LossModule, function=binary_cross_entropy, positional=("weight",)):
    """Module form of :func:`losslab.binary_cross_entropy`.

    ``weight`` is also its first positional argument, as in ``torch.nn.BCEWithLogitsLoss`` and
    ``torch.nn.BCELoss``, so ``BinaryCrossEntropyLoss(w)`` is a drop-in for ``BCEWithLogitsLoss(w)``.
    PyTorch's ``pos_weight`` comes fifth, after the deprecated ``size_average`` and ``reduce``, which
    losslab does not accept: pass ``pos_weight`` (and every other argument) by keyword.
    """

    def __init__(self, weight: Tensor | Sequence[float] | float | None = None, *,
                 pos_weight: Tensor | Sequence[float] | float | None = None, ignore_index: int | None = None,
                 label_smoothing: float = 0.0, reduction: Reduction = "mean", from_logits: bool = True,
                 avg_factor: float | Tensor | None = None, dist_sync: bool = False) -> None:
        super().__init__(weight=weight, pos_weight=pos_weight, ignore_index=ignore_index,
                         label_smoothing=label_smoothing, reduction=reduction, from_logits=from_logits,
                         avg_factor=avg_factor, dist_sync=dist_sync)


def _check_balanced(fn: str, *, alpha: object, **common: object) -> object:
    """The hyperparameters of :func:`balanced_cross_entropy` and its twin; alpha a float or per-class values."""
    check_common(fn, **common)
    expected = "a float in [0, 1] (sigmoid form) or a sequence or tensor of per-class weights (softmax form)"
    if alpha is None:
        raise TypeError(f"{fn}: alpha must be {expected}; got None")
    return check_alpha(fn, alpha, per_class=True, expected=expected)


class BalancedCrossEntropyLoss(LossModule, function=balanced_cross_entropy, validate=_check_balanced):
    """Module form of :func:`losslab.balanced_cross_entropy`."""

    def __init__(self, *, alpha: float | Tensor | Sequence[float], ignore_index: int | None = -100,
                 label_smoothing: float = 0.0, reduction: Reduction = "mean", from_logits: bool = True,
                 dist_sync: bool = False) -> None:
        super().__init__(alpha=alpha, ignore_index=ignore_index, label_smoothing=label_smoothing,
                         reduction=reduction, from_logits=from_logits, dist_sync=dist_sync)


# ----------------------------------------------------------------------------
# registration: names, aliases and formulas (the conformance samples are in tests/samples/)

_PROBS = {"from_logits": False}
_NONE = {"reduction": "none"}  # TensorFlow's tf.nn and optax's losses return the unreduced loss


register(LossSpec(
    name="cross_entropy", function=cross_entropy, module=CrossEntropyLoss, family="classification",
    formula="-sum_c w_c q_c log softmax(x)_c,  q = (1 - eps) onehot(y) + eps / C",
    aliases=(
        Alias("CrossEntropyLoss", "PyTorch"),
        Alias("Softmax Loss", "paper"),
        Alias("Softmax Cross-Entropy", "paper"),
        Alias("SoftmaxWithLoss", "Caffe"),
        Alias("softmax_cross_entropy", "TensorFlow", note="tf.compat.v1.losses; one-hot labels"),
        Alias("softmax_cross_entropy_with_logits", "TensorFlow", defaults=_NONE,
              note="tf.nn; probability labels; returns the per-example loss"),
        Alias("sparse_softmax_cross_entropy", "TensorFlow", note="tf.compat.v1.losses; class-index labels"),
        Alias("sparse_softmax_cross_entropy_with_logits", "TensorFlow", defaults=_NONE,
              note="tf.nn; class-index labels; returns the per-example loss"),
        Alias("softmax_cross_entropy_with_integer_labels", "optax", defaults=_NONE,
              note="returns the per-example loss"),
        Alias("Multinomial Logistic Loss", "Caffe", "probabilities", _PROBS,
              note="Caffe's MultinomialLogisticLoss takes probabilities (the bare name follows it); Caffe floors "
                   "p at 1e-20 (a loss of at most 46), losslab the log at -100"),
        Alias("cross_entropy", "PyTorch", note="torch.nn.functional.cross_entropy"),
    ),
))

register(LossSpec(
    name="nll_loss", function=nll_loss, module=NLLLoss, family="classification", input="log-probabilities",
    formula="-sum_c w_c y_c x_c  (x: log-probabilities)",
    aliases=(
        Alias("NLLLoss", "PyTorch", "log-probabilities"),
        Alias("nll_loss", "PyTorch", "log-probabilities", note="torch.nn.functional.nll_loss"),
        Alias("Negative Log-Likelihood", "paper", "log-probabilities"),
    ),
))

register(LossSpec(
    name="binary_cross_entropy", function=binary_cross_entropy, module=BinaryCrossEntropyLoss,
    family="classification",
    formula="-w [pos_weight t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))]",
    aliases=(
        Alias("BCEWithLogitsLoss", "PyTorch"),
        Alias("binary_cross_entropy_with_logits", "PyTorch", note="torch.nn.functional"),
        Alias("BCELoss", "PyTorch", "probabilities", _PROBS),
        Alias("binary_cross_entropy", "PyTorch", "probabilities", _PROBS, qualified=True,
              note="torch.nn.functional.binary_cross_entropy takes probabilities; the bare name takes logits"),
        Alias("Logistic Loss", "paper"),
        Alias("Sigmoid Cross-Entropy", "paper"),
        Alias("sigmoid_cross_entropy", "TensorFlow", note="tf.compat.v1.losses"),
        Alias("sigmoid_cross_entropy_with_logits", "TensorFlow", defaults=_NONE,
              note="tf.nn; returns the elementwise loss"),
        Alias("sigmoid_binary_cross_entropy", "optax", defaults=_NONE, note="returns the elementwise loss"),
        Alias("log_loss", "paper", "probabilities", _PROBS, note="binary cross-entropy of probabilities; the log "
              "is floored at -100 (TensorFlow's log_loss is another formula: tf.log_loss)"),
        Alias("log_loss", "TensorFlow", "probabilities", qualified=True,
              unsupported="tf.compat.v1.losses.log_loss, which adds epsilon = 1e-7 inside both logs: a formula "
                          "losslab does not implement; the closest losslab loss is binary_cross_entropy with "
                          "from_logits=False (BCELoss), whose log is floored at -100 instead"),
        Alias("binary_crossentropy", "Keras", "probabilities", _PROBS, qualified=True,
              note="Keras defaults to probabilities (from_logits=False); the bare name takes logits"),
        Alias("One-vs-Rest Cross-Entropy", "paper", note="class-index targets, index C = background"),
    ),
))

register(LossSpec(
    name="balanced_cross_entropy", function=balanced_cross_entropy, module=BalancedCrossEntropyLoss,
    family="classification",
    formula="-alpha_t log p_t  (float alpha: sigmoid, alpha_t = alpha t + (1-alpha)(1-t); per-class alpha: softmax)",
    aliases=(
        Alias("Alpha-Balanced Cross-Entropy", "paper"),
        Alias("Class-Balanced Cross-Entropy", "paper", note="pair with class_weights(method='effective_number')"),
    ),
))
