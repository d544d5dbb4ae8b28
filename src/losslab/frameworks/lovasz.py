"""segmentation_models_pytorch's LovaszLoss and kornia's Lovász losses, on losslab's Lovász terms.

All three compute Berman et al.'s formula (the reference code's sort and Jaccard gradient); what differs is
which classes count, what a "batch" is and how the terms are averaged:

* smp (0.5): ``LovaszLoss(mode, per_image=False, ignore_index=None, from_logits=True)``. "multiclass":
  Lovász-Softmax of the classes present in the (kept) target, over the batch (``per_image=False``); the
  softmax is taken whatever ``from_logits`` says. "binary" and "multilabel": the Lovász hinge of every element
  of the batch as one binary problem (channels pooled; per image with ``per_image=True``, an image whose
  elements are all ignored counting 0 in the mean). smp's all-ignored batch in "multiclass" returns an empty
  tensor, and an all-ignored image under ``per_image`` fails; here both give 0.
* kornia (0.9): ``lovasz_softmax_loss(pred, target, weight=None)``: per image, every class (an absent class
  scores its largest probability), the mean over images and classes, ``weight`` multiplying each class's term
  with the mean still over C; no ignore_index; (B, C, H, W) with C > 1. ``lovasz_hinge_loss(pred, target)``:
  pred (B, 1, H, W), target (B, H, W), per image, the mean over images: losslab's
  :func:`~losslab.lovasz_hinge_loss` with its defaults, so the alias presets nothing.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import torch
from torch import Tensor

from .._checks import check_bool, check_common, check_input, class_vector, compute_dtype, describe, shape_str
from .._module import LossModule
from ..lovasz import lovasz_hinge_terms, lovasz_softmax_terms
from ..registry import Alias, add_aliases
from ._common import empty_batch

__all__ = ["smp_lovasz_loss", "kornia_lovasz_softmax_loss", "SmpLovaszLoss", "KorniaLovaszSoftmaxLoss"]

SMP_FROM_LOGITS_WARNING = ("smp.LovaszLoss reproduces segmentation_models_pytorch, which takes the softmax "
                           "(multiclass) or reads logits (binary, multilabel) whatever from_logits says; "
                           "for probabilities use losslab.lovasz_softmax_loss(from_logits=False)")


def _check_smp(fn: str, *, mode: Any, per_image: Any, **common: Any) -> None:
    if mode not in ("binary", "multiclass", "multilabel"):
        raise ValueError(f"{fn}: mode must be 'binary', 'multiclass' or 'multilabel'; got {describe(mode)}")
    check_bool(fn, "per_image", per_image)
    check_common(fn, **common)


def smp_lovasz_loss(
    input: Tensor,
    target: Tensor,
    *,
    mode: Literal["binary", "multiclass", "multilabel"],
    per_image: bool = False,
    ignore_index: int | None = None,
    from_logits: bool = True,
) -> Tensor:
    r"""segmentation_models_pytorch's ``LovaszLoss`` (0.5): Lovász-Softmax (multiclass) or Lovász hinge.

    .. math::

        \ell = \frac{1}{|K|} \sum_{c \in K} \overline{\Delta_{J_c}}(|[y = c] - p_c|)
        \quad\text{(multiclass)}, \qquad
        \ell = \overline{\Delta_J}(\max(1 - x (2t - 1), 0)) \quad\text{(binary, multilabel)}

    K the classes present in the kept target. "multiclass": input (N, C, *)
    logits, softmax always (smp ignores ``from_logits``: False warns),
    target (N, *) indices; "binary" / "multilabel": logits and 0/1 targets
    with the same number of elements per image, all of an image's elements
    (every channel) one binary problem. ``per_image``: one loss per image,
    the mean over all images (an image with nothing kept counts 0).

    Args:
        mode: "binary", "multiclass" or "multilabel".
        per_image: False (smp's default): the batch is one problem.
        ignore_index: target value whose pixels (elements) are left out.
        from_logits: ignored, as in smp (False warns).

    Returns:
        a 0-d tensor.

    Raises:
        ValueError: an unknown mode, targets that do not fit it, non-binary
            targets in "binary" / "multilabel".

    Example:
        >>> import torch, losslab
        >>> loss_fn = losslab.get_loss("smp.LovaszLoss", mode="multiclass")
        >>> x = torch.randn(2, 3, 8, 8, requires_grad=True)
        >>> loss_fn(x, torch.randint(0, 3, (2, 8, 8))).backward()
    """
    fn = "smp.LovaszLoss"
    _check_smp(fn, mode=mode, per_image=per_image, ignore_index=ignore_index, from_logits=from_logits)
    if not from_logits:
        warnings.warn(SMP_FROM_LOGITS_WARNING, UserWarning, stacklevel=2)
    if (empty := empty_batch(input, "mean")) is not None:
        return empty
    if mode == "multiclass":
        losses, counted = lovasz_softmax_terms(fn, input, target, classes="present", per_image=per_image,
                                               ignore_index=ignore_index, from_logits=True)
        if per_image:  # every image's mean over its present classes, the mean over all images
            loss = (losses.sum(-1) / counted.sum(-1).clamp_min(1).to(losses.dtype)).mean()
        else:
            loss = losses.sum() / counted.sum().clamp_min(1).to(losses.dtype)
        return loss.to(input.dtype)
    check_input(fn, input, min_ndim=1, what="(N, *)")
    if not isinstance(target, Tensor) or target.numel() != input.numel():
        got = shape_str(target.shape) if isinstance(target, Tensor) else describe(target)
        raise ValueError(f"{fn}: in mode {mode!r} the target must have the input's number of elements "
                         f"{shape_str(input.shape)}; got {got}")
    n = input.shape[0]
    losses, _ = lovasz_hinge_terms(fn, input.reshape(n, -1), target.reshape(n, -1), per_image=per_image,
                                   ignore_index=ignore_index)
    return (losses.mean() if per_image else losses).to(input.dtype)


def _check_kornia_softmax(fn: str, *, weight: Any) -> None:
    if weight is not None and not isinstance(weight, Tensor):
        raise TypeError(f"{fn}: weight must be a tensor or None (as in kornia); got {describe(weight)}")


def _kornia_check_4d(fn: str, input: Any, target: Any) -> None:
    check_input(fn, input, min_ndim=4, what="(B, C, H, W) with C > 1")
    if input.ndim != 4 or input.shape[1] < 2:
        raise ValueError(f"{fn}: input must have shape (B, C, H, W), C > 1 (kornia's); got {shape_str(input.shape)}")
    if not isinstance(target, Tensor):
        raise TypeError(f"{fn}: target must be a torch.Tensor; got {describe(target)}")
    batch_ok = target.shape[:1] == input.shape[:1] or input.shape[0] == 1
    if target.ndim != 3 or not batch_ok or target.shape[1:] != input.shape[2:]:
        raise ValueError(f"{fn}: target must have shape (B, H, W) = "
                         f"{shape_str(input.shape[:1] + input.shape[2:])}; got {shape_str(target.shape)}")


def kornia_lovasz_softmax_loss(input: Tensor, target: Tensor, *, weight: Tensor | None = None) -> Tensor:
    r"""kornia's ``lovasz_softmax_loss`` / ``LovaszSoftmaxLoss`` (0.9): per image, every class, the mean.

    .. math::

        \ell = \frac{1}{C} \sum_c w_c \frac{1}{B} \sum_b \overline{\Delta_{J_c}}(|[y_b = c] - p_{b,c}|)

    (w = 1 without ``weight``). A class absent from an image counts, with
    that image's largest probability of it. kornia has no ignore_index and
    no reduction; an input batch of one is scored against every target
    image, as kornia broadcasts it.

    Args:
        weight: per-class weights (C,) multiplying each class's term; the
            mean still divides by C.

    Returns:
        a 0-d tensor, in the input's dtype promoted with the weight's.

    Raises:
        ValueError: an input not (B, C, H, W) with C > 1, a target not
            (B, H, W), a weight not of length C.

    Example:
        >>> import torch, losslab
        >>> loss_fn = losslab.get_loss("kornia.LovaszSoftmaxLoss")
        >>> x = torch.randn(2, 3, 8, 8, requires_grad=True)
        >>> loss_fn(x, torch.randint(0, 3, (2, 8, 8))).backward()
    """
    fn = "kornia.lovasz_softmax_loss"
    _check_kornia_softmax(fn, weight=weight)
    _kornia_check_4d(fn, input, target)
    out_dtype = input.dtype if weight is None else torch.promote_types(input.dtype, weight.dtype)
    if (empty := empty_batch(input, "mean")) is not None:  # kornia: NaN
        return empty.to(out_dtype)
    x = input.expand(target.shape[0], *input.shape[1:]) if input.shape[0] != target.shape[0] else input
    losses, _ = lovasz_softmax_terms(fn, x, target, classes="all", per_image=True, ignore_index=None,
                                     from_logits=True)
    per_class = losses.mean(0)
    if weight is not None:
        per_class = per_class * class_vector(fn, "weight", weight, input.shape[1], input, compute_dtype(input))
    return per_class.mean().to(out_dtype)


class SmpLovaszLoss(LossModule, function=smp_lovasz_loss, validate=_check_smp):
    """segmentation_models_pytorch's ``LovaszLoss`` (:func:`losslab.frameworks.lovasz.smp_lovasz_loss`)."""

    loss_name = "smp.LovaszLoss"

    def __init__(self, *, mode: Literal["binary", "multiclass", "multilabel"], per_image: bool = False,
                 ignore_index: int | None = None, from_logits: bool = True) -> None:
        if not from_logits:
            warnings.warn(SMP_FROM_LOGITS_WARNING, UserWarning, stacklevel=4)
        super().__init__(mode=mode, per_image=per_image, ignore_index=ignore_index, from_logits=from_logits)


class KorniaLovaszSoftmaxLoss(LossModule, function=kornia_lovasz_softmax_loss, validate=_check_kornia_softmax):
    """kornia's ``LovaszSoftmaxLoss`` (:func:`losslab.frameworks.lovasz.kornia_lovasz_softmax_loss`)."""

    loss_name = "kornia.lovasz_softmax_loss"

    def __init__(self, *, weight: Tensor | None = None) -> None:
        super().__init__(weight=weight)


_SMP = ("multiclass: present classes over the batch, softmax whatever from_logits; binary/multilabel: the "
        "Lovász hinge of all elements (per_image=False)")
_KORNIA_SOFTMAX = "per image, every class (absent ones too), weight scales the mean over C; no ignore_index"
_KORNIA_HINGE = "losslab's defaults: per image, the mean; pred (B, 1, H, W), target (B, H, W)"

add_aliases(
    "lovasz_softmax_loss",
    Alias("LovaszLoss", "segmentation_models_pytorch", qualified=True, build=SmpLovaszLoss, note=_SMP),
    Alias("lovasz_softmax_loss", "kornia", qualified=True, build=KorniaLovaszSoftmaxLoss, note=_KORNIA_SOFTMAX),
    Alias("LovaszSoftmaxLoss", "kornia", qualified=True, build=KorniaLovaszSoftmaxLoss, note=_KORNIA_SOFTMAX),
)
add_aliases(
    "lovasz_hinge_loss",
    # kornia's hinge is losslab's with its defaults (per image, the mean); its (B, H, W) target fits a
    # (B, 1, H, W) input here too
    Alias("lovasz_hinge_loss", "kornia", note=_KORNIA_HINGE),
    Alias("LovaszHingeLoss", "kornia", note=_KORNIA_HINGE),
)
