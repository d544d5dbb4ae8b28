"""Keras' categorical cross-entropies and Caffe's sigmoid cross-entropy, on losslab's losses.

Keras takes the classes on the last axis (``axis=-1``), where losslab (as
PyTorch) takes them on dim 1: for inputs of more than two dimensions
(channels-last images, (N, H, W, C)) the Keras names move that axis, so that
``get_loss("keras.categorical_crossentropy")`` gives Keras' numbers on Keras'
layout. They take probabilities by default (``from_logits=False``) and, as
Keras does, divide them by their sum over the class axis first. Keras clips
the probabilities to [1e-7, 1 - 1e-7] where losslab takes the exact log:
the two differ only for probabilities within 1e-7 of 0 or 1.

Caffe's ``SigmoidCrossEntropyLoss`` divides its sum by the batch size N,
not by the element count.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from .._checks import check_bool, check_common, check_input, check_number, describe
from .._module import LossModule
from ..classification import binary_cross_entropy, cross_entropy
from ..focal import softmax_focal_loss
from ..registry import Alias, add_aliases

Reduction = Literal["none", "mean", "sum"]

__all__ = ["caffe_sigmoid_cross_entropy", "CaffeSigmoidCrossEntropyLoss",
           "keras_categorical_crossentropy", "keras_sparse_categorical_crossentropy",
           "keras_categorical_focal_crossentropy", "KerasCategoricalCrossentropy",
           "KerasSparseCategoricalCrossentropy", "KerasCategoricalFocalCrossentropy"]


def _classes_to_dim1(fn: str, input: Tensor, target: Tensor | None, axis: int, from_logits: bool
                     ) -> tuple[Tensor, Tensor | None]:
    """Keras' class axis moved to dim 1 (input, and a target of the input's shape); probabilities renormalised."""
    check_input(fn, input, min_ndim=1, what="of at least one dimension")
    check_bool(fn, "from_logits", from_logits)
    if not isinstance(axis, int) or isinstance(axis, bool) or not -input.ndim <= axis < input.ndim:
        raise ValueError(f"{fn}: axis must be an int in [-{input.ndim}, {input.ndim}); got {describe(axis)}")
    if input.ndim == 1:
        input, target = input.unsqueeze(0), (target.unsqueeze(0) if target is not None else None)
        axis = 1
    axis %= input.ndim
    if axis != 1:
        input = input.movedim(axis, 1)
        if target is not None:
            target = target.movedim(axis, 1)
    if not from_logits:
        input = input / input.sum(dim=1, keepdim=True)
    return input, target


def keras_categorical_crossentropy(
    input: Tensor,
    target: Tensor,
    *,
    from_logits: bool = False,
    label_smoothing: float = 0.0,
    axis: int = -1,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Keras' ``categorical_crossentropy`` / ``CategoricalCrossentropy``: one-hot or soft targets, classes last.

    :math:`-\sum_c q_c \log p_c` with :math:`q = (1 - \varepsilon) y + \varepsilon / C` and ``p`` the input
    divided by its sum over ``axis`` (``from_logits=False``, Keras' default)
    or its softmax. "mean" is Keras' sum_over_batch_size.

    Example:
        >>> import torch, losslab
        >>> loss_fn = losslab.get_loss("keras.losses.CategoricalCrossentropy")
        >>> p = torch.tensor([[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]], requires_grad=True)
        >>> loss = loss_fn(p, torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
        >>> loss.backward()
        >>> loss.round(decimals=4)
        tensor(1.1769, grad_fn=<RoundBackward1>)
    """
    fn = "keras.categorical_crossentropy"
    check_common(fn, from_logits=from_logits, label_smoothing=label_smoothing, reduction=reduction)
    x, t = _classes_to_dim1(fn, input, target if isinstance(target, Tensor) else None, axis, from_logits)
    loss = cross_entropy(x, t if t is not None else target, from_logits=from_logits, label_smoothing=label_smoothing,
                         ignore_index=None, reduction=reduction)
    return loss.squeeze(0) if reduction == "none" and input.ndim == 1 else loss


def keras_sparse_categorical_crossentropy(
    input: Tensor,
    target: Tensor,
    *,
    from_logits: bool = False,
    ignore_class: int | None = None,
    axis: int = -1,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Keras' ``sparse_categorical_crossentropy``: class-index targets, classes on the input's last axis.

    ``ignore_class`` is losslab's ``ignore_index`` (Keras' default None).

    Example:
        >>> import torch, losslab
        >>> loss_fn = losslab.get_loss("keras.SparseCategoricalCrossentropy")
        >>> p = torch.tensor([[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]], requires_grad=True)
        >>> loss = loss_fn(p, torch.tensor([1, 2]))
        >>> loss.backward()
        >>> loss.round(decimals=4)
        tensor(1.1769, grad_fn=<RoundBackward1>)
    """
    fn = "keras.sparse_categorical_crossentropy"
    check_common(fn, from_logits=from_logits, reduction=reduction)
    x, _ = _classes_to_dim1(fn, input, None, axis, from_logits)
    if isinstance(target, Tensor) and input.ndim == 1:
        target = target.reshape(1)
    elif isinstance(target, Tensor) and target.ndim == input.ndim and target.shape[-1] == 1:
        target = target.squeeze(-1)  # Keras accepts a trailing axis of 1
    loss = cross_entropy(x, target, from_logits=from_logits, ignore_index=ignore_class, reduction=reduction)
    return loss.squeeze(0) if reduction == "none" and input.ndim == 1 else loss


def keras_categorical_focal_crossentropy(
    input: Tensor,
    target: Tensor,
    *,
    alpha: float = 0.25,
    gamma: float = 2.0,
    from_logits: bool = False,
    label_smoothing: float = 0.0,
    axis: int = -1,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Keras' ``CategoricalFocalCrossentropy``: a scalar alpha that scales every class, classes last.

    :math:`-\sum_c \alpha\, q_c (1 - p_c)^\gamma \log p_c`, with ``p`` as in
    :func:`keras_categorical_crossentropy`.

    Example:
        >>> import torch, losslab
        >>> loss_fn = losslab.get_loss("keras.CategoricalFocalCrossentropy")
        >>> p = torch.tensor([[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]], requires_grad=True)
        >>> loss = loss_fn(p, torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
        >>> loss.backward()
        >>> loss.round(decimals=4)
        tensor(0.2332, grad_fn=<RoundBackward1>)
    """
    fn = "keras.CategoricalFocalCrossentropy"
    check_number(fn, "alpha", alpha, low=0.0)  # on call only: its twin is still built with alpha=None, as before
    check_common(fn, gamma=gamma, from_logits=from_logits, label_smoothing=label_smoothing, reduction=reduction)
    x, t = _classes_to_dim1(fn, input, target if isinstance(target, Tensor) else None, axis, from_logits)
    loss = softmax_focal_loss(x, t if t is not None else target, alpha=None, gamma=gamma, from_logits=from_logits,
                              label_smoothing=label_smoothing, ignore_index=None, reduction=reduction) * alpha
    return loss.squeeze(0) if reduction == "none" and input.ndim == 1 else loss


def caffe_sigmoid_cross_entropy(input: Tensor, target: Tensor, *, reduction: Reduction = "mean") -> Tensor:
    r"""Caffe's ``SigmoidCrossEntropyLoss``: binary cross-entropy of logits, summed and divided by the batch size N.

    Caffe normalises this layer by the number of examples (its
    ``BATCH_SIZE`` normalisation), not by the element count: "mean" is the
    sum over every element divided by ``input.shape[0]``.

    Example:
        >>> import torch, losslab
        >>> loss_fn = losslab.get_loss("caffe.SigmoidCrossEntropyLoss")
        >>> x = torch.tensor([[2.0, -1.0, 0.5]], requires_grad=True)
        >>> loss = loss_fn(x, torch.tensor([[1.0, 0.0, 1.0]]))
        >>> loss.backward()
        >>> loss.round(decimals=4)
        tensor(0.9143, grad_fn=<RoundBackward1>)
    """
    fn = "caffe.SigmoidCrossEntropyLoss"
    check_common(fn, reduction=reduction)
    check_input(fn, input, min_ndim=1, what="of at least one dimension")
    if reduction != "mean":
        return binary_cross_entropy(input, target, reduction=reduction)
    return binary_cross_entropy(input, target, reduction="sum") / max(input.shape[0], 1)


class CaffeSigmoidCrossEntropyLoss(LossModule, function=caffe_sigmoid_cross_entropy):
    """Caffe's ``SigmoidCrossEntropyLoss`` (:func:`losslab.frameworks.classification.caffe_sigmoid_cross_entropy`)."""

    loss_name = "caffe.SigmoidCrossEntropyLoss"

    def __init__(self, *, reduction: Reduction = "mean") -> None:
        super().__init__(reduction=reduction)


class KerasCategoricalCrossentropy(LossModule, function=keras_categorical_crossentropy):
    """Keras' ``CategoricalCrossentropy`` (:func:`losslab.frameworks.classification.keras_categorical_crossentropy`)."""

    loss_name = "keras.categorical_crossentropy"

    def __init__(self, *, from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1,
                 reduction: Reduction = "mean") -> None:
        super().__init__(from_logits=from_logits, label_smoothing=label_smoothing, axis=axis, reduction=reduction)


class KerasSparseCategoricalCrossentropy(LossModule, function=keras_sparse_categorical_crossentropy):
    """Keras' ``SparseCategoricalCrossentropy``."""

    loss_name = "keras.sparse_categorical_crossentropy"

    def __init__(self, *, from_logits: bool = False, ignore_class: int | None = None, axis: int = -1,
                 reduction: Reduction = "mean") -> None:
        super().__init__(from_logits=from_logits, ignore_class=ignore_class, axis=axis, reduction=reduction)


class KerasCategoricalFocalCrossentropy(LossModule, function=keras_categorical_focal_crossentropy):
    """Keras' ``CategoricalFocalCrossentropy``."""

    loss_name = "keras.CategoricalFocalCrossentropy"

    def __init__(self, *, alpha: float = 0.25, gamma: float = 2.0, from_logits: bool = False,
                 label_smoothing: float = 0.0, axis: int = -1, reduction: Reduction = "mean") -> None:
        super().__init__(alpha=alpha, gamma=gamma, from_logits=from_logits, label_smoothing=label_smoothing,
                         axis=axis, reduction=reduction)


_LAST = "classes on the last axis; probabilities in by default"
add_aliases(
    "cross_entropy",
    Alias("Categorical Cross-Entropy", "Keras", "probabilities", build=KerasCategoricalCrossentropy,
          note=f"Keras' categorical_crossentropy: one-hot targets, {_LAST}"),
    Alias("sparse_categorical_crossentropy", "Keras", "probabilities", build=KerasSparseCategoricalCrossentropy,
          note=f"class-index targets, {_LAST}"),
)
add_aliases(
    "binary_cross_entropy",
    Alias("SigmoidCrossEntropyLoss", "Caffe", build=CaffeSigmoidCrossEntropyLoss,
          note="'mean' is the sum divided by the batch size N (Caffe's BATCH_SIZE normalisation)"),
)
add_aliases(
    "softmax_focal_loss",
    Alias("CategoricalFocalCrossentropy", "Keras", "probabilities", build=KerasCategoricalFocalCrossentropy,
          note=f"a scalar alpha (default 0.25) scales every class; one-hot targets; {_LAST}"),
)
