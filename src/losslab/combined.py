"""Weighted sums of losses: :func:`combine` / :class:`CombinedLoss`, configs, and the usual Dice pairs.

``dice_ce_loss`` and ``dice_focal_loss`` are registered losses of their own
(Dice plus cross-entropy, Dice plus focal), with the cross-entropy or focal
form chosen by the mode: softmax for "multiclass", sigmoid for "binary" and
"multilabel".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ._checks import check_alpha, check_number, class_vector, compute_dtype, describe, numpy_arguments
from ._core import sigmoid_loss, softmax_loss
from ._module import LossModule
from .registry import Alias, LossSpec, get_loss, register
from .segmentation import check_dice, dice_pipeline

Mode = Literal["binary", "multiclass", "multilabel"]
LossLike = nn.Module | str | Mapping[str, Any] | Callable[[Tensor, Any], Tensor]

__all__ = ["combine", "CombinedLoss", "dice_ce_loss", "dice_focal_loss", "DiceCELoss", "DiceFocalLoss"]


_RESERVED = nn.ModuleDict()  # a label must not be one of its attributes ("training", "forward", ...)


class _Function(nn.Module):
    """A plain loss function as a module."""

    def __init__(self, function: Callable[[Tensor, Any], Tensor]) -> None:
        super().__init__()
        self.function = function

    def forward(self, input: Tensor, target: Any) -> Tensor:
        return self.function(input, target)


def _as_module(fn: str, loss: LossLike) -> nn.Module:
    if isinstance(loss, nn.Module):
        return loss
    if isinstance(loss, (str, Mapping)):
        return get_loss(loss)
    if callable(loss):
        return _Function(loss)
    raise TypeError(f"{fn}: a loss must be an nn.Module, a loss name, a config dict or a function; "
                    f"got {describe(loss)}")


def _label(loss: LossLike, module: nn.Module) -> str:
    if isinstance(loss, str):
        return loss.replace(":", ".").split(".")[-1]  # "torch.nn.BCEWithLogitsLoss" -> "BCEWithLogitsLoss"
    if isinstance(loss, Mapping):
        return _label(str(loss.get("name", "loss")), module)
    function = getattr(type(module), "function", None) or getattr(module, "function", None)
    return getattr(function, "__name__", type(module).__name__)


class CombinedLoss(nn.Module):
    r"""A weighted sum of losses of one ``(input, target)``: :math:`\sum_i w_i\, \ell_i(\text{input}, \text{target})`.

    Build it with :func:`combine`, or from a config with ``get_loss``. Each term
    is an nn.Module (a losslab module or any other), a registered name, a
    config dict ``{"name": ..., **kwargs}``, or a function. After each call,
    ``last_components`` holds every term's unweighted value (detached), for
    logging.

    Args:
        losses: a mapping label -> loss, or a sequence of losses (labelled by
            their loss names; repeats get a suffix "_2", "_3").
        weights: non-negative numbers, a mapping label -> weight or a
            sequence in the order of ``losses``; default 1 for every term.

    Example:
        >>> import torch, losslab
        >>> loss_fn = losslab.combine({"dice": losslab.DiceLoss(mode="multiclass"), "ce": "CrossEntropyLoss"},
        ...                           weights={"dice": 1.0, "ce": 0.5})
        >>> logits = torch.randn(2, 3, 4, 4, requires_grad=True)
        >>> loss_fn(logits, torch.randint(0, 3, (2, 4, 4))).backward()
        >>> sorted(loss_fn.last_components)
        ['ce', 'dice']
    """

    def __init__(self, losses: Mapping[str, LossLike] | Sequence[LossLike],
                 weights: Mapping[str, float] | Sequence[float] | None = None) -> None:
        super().__init__()
        fn = "combine"
        if isinstance(losses, Mapping):
            items = [(str(label), loss) for label, loss in losses.items()]
        elif isinstance(losses, Sequence) and not isinstance(losses, str):
            items = []
            for loss in losses:
                module = _as_module(fn, loss)
                label = base = _label(loss, module)
                count = 2
                while label in dict(items):
                    label, count = f"{base}_{count}", count + 1
                items.append((label, module))
        else:
            raise TypeError(f"{fn}: losses must be a mapping of labels to losses or a sequence of losses; "
                            f"got {describe(losses)}")
        if not items:
            raise ValueError(f"{fn}: losses must hold at least one loss; got none")
        labels = [label for label, _ in items]
        for label in labels:
            if not label or "." in label or hasattr(_RESERVED, label):
                raise ValueError(f"{fn}: {label!r} cannot label a term: labels must be non-empty, without '.', "
                                 f"and not a module attribute name")
        if weights is None:
            weights = dict.fromkeys(labels, 1.0)
        elif isinstance(weights, Mapping):
            unknown = sorted(set(weights) - set(labels))
            if unknown:
                raise ValueError(f"{fn}: weights name unknown terms {unknown}; the terms are {labels}")
            weights = {label: weights.get(label, 1.0) for label in labels}
        elif isinstance(weights, Sequence) and len(weights) == len(labels):
            weights = dict(zip(labels, weights, strict=True))
        else:
            raise ValueError(f"{fn}: weights must be a mapping of labels or a sequence of {len(labels)} numbers; "
                             f"got {describe(weights)}")
        self.weights = {label: check_number(fn, f"weights[{label!r}]", w, low=0.0) for label, w in weights.items()}
        self.terms = nn.ModuleDict({label: _as_module(fn, loss) for label, loss in items})
        self.last_components: dict[str, Tensor] = {}

    def forward(self, input: Tensor, target: Any) -> Tensor:
        total: Tensor | None = None
        components = {}
        for label, term in self.terms.items():
            value = term(input, target)
            components[label] = value.detach()
            total = self.weights[label] * value if total is None else total + self.weights[label] * value
        self.last_components = components
        return total

    def extra_repr(self) -> str:
        return "weights=" + repr(self.weights)


def combine(losses: Mapping[str, LossLike] | Sequence[LossLike],
            weights: Mapping[str, float] | Sequence[float] | None = None) -> CombinedLoss:
    """A weighted sum of losses as one module: see :class:`CombinedLoss`.

    Example:
        >>> import torch, losslab
        >>> loss_fn = losslab.combine([losslab.DiceLoss(mode="binary"), "BCEWithLogitsLoss"], weights=[1.0, 0.5])
        >>> logits = torch.randn(2, 1, 8, 8, requires_grad=True)
        >>> loss_fn(logits, (torch.rand(2, 1, 8, 8) > 0.7).float()).backward()
        >>> list(loss_fn.last_components)
        ['dice_loss', 'BCEWithLogitsLoss']
    """
    return CombinedLoss(losses, weights)


def from_config(config: Mapping[str, Any] | Sequence[Any], **kwargs: Any) -> nn.Module:
    """The module a plain config describes (what ``get_loss`` does with a dict or a list).

    * ``{"name": "dice_loss", "mode": "binary"}``: one loss with its keyword arguments;
    * ``[{"name": ..., "loss_weight": 1.0, **kw}, ...]`` or ``{"combine": [...]}``: a
      :class:`CombinedLoss`, each term weighted by its ``loss_weight`` (default 1) and
      labelled by its ``label`` (default: its name).
    """
    fn = "get_loss"
    if isinstance(config, Mapping) and "combine" in config:
        extra = sorted(set(config) - {"combine"})
        if extra or kwargs:
            raise ValueError(f"{fn}: a 'combine' config takes no other keys or keyword arguments; "
                             f"got {extra + sorted(kwargs)}")
        config = config["combine"]
        if isinstance(config, Mapping):
            config = [config]  # a combination of one term
    if isinstance(config, Mapping):
        if "name" not in config:
            raise ValueError(f"{fn}: a loss config needs a 'name'; got keys {sorted(config)}")
        if "loss_weight" in config or "label" in config:
            raise ValueError(f"{fn}: 'loss_weight' and 'label' belong to the terms of a combination "
                             f"(a list, or {{'combine': [...]}}); got them in a single loss config")
        options = {k: v for k, v in config.items() if k != "name"}
        return get_loss(config["name"], **{**options, **kwargs})
    if isinstance(config, Sequence) and not isinstance(config, str):
        if kwargs:
            raise ValueError(f"{fn}: keyword arguments do not apply to a combination; got {sorted(kwargs)}")
        losses: dict[str, nn.Module] = {}
        weights: dict[str, float] = {}
        for term in config:
            if isinstance(term, str):
                term = {"name": term}
            if not isinstance(term, Mapping) or "name" not in term:
                raise ValueError(f"{fn}: each term of a combination must be a loss name or a dict with a 'name'; "
                                 f"got {describe(term)}")
            options = {k: v for k, v in term.items() if k not in ("name", "loss_weight", "label")}
            label = base = str(term.get("label", term["name"]))
            count = 2
            while label in losses:
                label, count = f"{base}_{count}", count + 1
            losses[label] = get_loss(term["name"], **options)
            weights[label] = term.get("loss_weight", 1.0)
        return CombinedLoss(losses, weights)
    raise TypeError(f"{fn}: name must be a loss name, a config dict or a list of them; got {describe(config)}")


# ----------------------------------------------------------------------------
# the usual pairs


def _check_reduction(fn: str, reduction: object) -> None:
    if reduction not in ("mean", "sum"):
        raise ValueError(f"{fn}: reduction must be one of 'mean', 'sum'; got {reduction!r} (the terms have "
                         f"different shapes, so there is no 'none')")


def _check_lambdas(fn: str, **lambdas: object) -> None:
    for name, value in lambdas.items():
        check_number(fn, name, value, low=0.0)


def _check_dice_ce(fn: str, *, reduction: object, lambda_dice: object, lambda_ce: object, label_smoothing: object,
                   **dice: object) -> None:
    """The hyperparameters of :func:`dice_ce_loss` and its twin."""
    _check_reduction(fn, reduction)
    _check_lambdas(fn, lambda_dice=lambda_dice, lambda_ce=lambda_ce)
    check_dice(fn, reduction=reduction, **dice)
    check_number(fn, "label_smoothing", label_smoothing, low=0.0, high=1.0)


def _check_dice_focal(fn: str, *, reduction: object, lambda_dice: object, lambda_focal: object, gamma: object,
                      alpha: object, **dice: object) -> float | None:
    """The hyperparameters of :func:`dice_focal_loss` and its twin; alpha as a float or None."""
    _check_reduction(fn, reduction)
    _check_lambdas(fn, lambda_dice=lambda_dice, lambda_focal=lambda_focal)
    check_number(fn, "gamma", gamma, low=0.0)
    alpha = check_alpha(fn, alpha, expected="None or a float in [0, 1]", per_class=False)
    check_dice(fn, reduction=reduction, **dice)
    return alpha


@numpy_arguments
def dice_ce_loss(
    input: Tensor,
    target: Tensor,
    *,
    mode: Mode,
    from_logits: bool = True,
    smooth: float = 1.0,
    eps: float = 1e-7,
    weight: Tensor | Sequence[float] | None = None,
    ignore_index: int | None = None,
    include_background: bool = True,
    per_image: bool = False,
    squared: bool = False,
    log_loss: bool = False,
    label_smoothing: float = 0.0,
    lambda_dice: float = 1.0,
    lambda_ce: float = 1.0,
    reduction: Literal["mean", "sum"] = "mean",
    dist_sync: bool = False,
) -> Tensor:
    r"""Dice plus cross-entropy, the usual pair for segmentation (nnU-Net; MONAI's DiceCELoss differs).

    .. math::

        \ell = \lambda_{dice}\, \mathrm{Dice}(x, t) + \lambda_{ce}\, \mathrm{CE}(x, t)

    with :func:`dice_loss` and, by mode, :func:`cross_entropy` ("multiclass":
    softmax, PyTorch's weighted mean with ``weight``) or
    :func:`binary_cross_entropy` ("binary", "multilabel": sigmoid, ``weight``
    along dim 1, plain mean). The Dice term keeps a gradient on small
    structures; the cross-entropy term keeps every pixel's gradient.

    MONAI's DiceCELoss is a variant, not this loss: its Dice is per image
    with smooth 1e-5, its ``weight`` scales the Dice mean (mean(w L), not the
    weighted average), and for C > 1 its cross-entropy is the softmax CE over
    all channels, also of multi-label one-hot targets (here "multilabel" takes
    the sigmoid BCE). ``get_loss("monai.DiceCELoss")`` reproduces MONAI.

    Args:
        mode: "binary", "multiclass" or "multilabel", as in :func:`dice_loss`.
        from_logits: False when ``input`` holds probabilities.
        smooth: Dice's smoothing term, >= 0.
        eps: Dice's smallest denominator, > 0.
        weight: per-class weights of length C, used by both terms.
        ignore_index: target value left out of both terms.
        include_background: False drops class 0 from the Dice term only.
        per_image: Dice per image (True) or over the batch (False).
        squared: Dice with sums of squares in the denominator.
        log_loss: -log Dice instead of 1 - Dice.
        label_smoothing: the cross-entropy term's label smoothing.
        lambda_dice: weight of the Dice term, >= 0.
        lambda_ce: weight of the cross-entropy term, >= 0.
        reduction: "mean" or "sum", applied to each term before adding.
        dist_sync: all-reduce the batch-dependent normalisation under
            torch.distributed (:mod:`losslab._dist`; README, "Data-parallel training").

    Returns:
        A scalar.

    Raises:
        ValueError: reduction "none", negative lambdas, and every error of
            :func:`dice_loss` and the cross-entropy term (named after this
            function).

    References:
        Isensee et al. nnU-Net: a self-configuring method for deep
        learning-based biomedical image segmentation. Nature Methods 2021,
        arXiv:1809.10486.

    Example:
        >>> import torch, losslab
        >>> logits = torch.randn(2, 3, 8, 8, requires_grad=True)
        >>> loss = losslab.dice_ce_loss(logits, torch.randint(0, 3, (2, 8, 8)), mode="multiclass", lambda_ce=0.5)
        >>> loss.backward()
        >>> loss.ndim
        0
    """
    fn = "dice_ce_loss"
    _check_dice_ce(fn, reduction=reduction, lambda_dice=lambda_dice, lambda_ce=lambda_ce,
                   label_smoothing=label_smoothing, mode=mode, from_logits=from_logits, smooth=smooth, eps=eps,
                   ignore_index=ignore_index, include_background=include_background, per_image=per_image,
                   squared=squared, log_loss=log_loss, dist_sync=dist_sync)
    dice = dice_pipeline(fn, input, target, mode=mode, from_logits=from_logits, smooth=smooth, eps=eps,
                         weight=weight, ignore_index=ignore_index, include_background=include_background,
                         per_image=per_image, squared=squared, log_loss=log_loss, reduction=reduction,
                         dist_sync=dist_sync)
    check_number(fn, "label_smoothing", label_smoothing, low=0.0, high=1.0)
    if mode == "multiclass":
        ce = softmax_loss(fn, input, target, reduction=reduction, ignore_index=ignore_index,
                          input_kind="logits" if from_logits else "probabilities", class_weight=weight,
                          label_smoothing=label_smoothing, weighted_mean=True, dist_sync=dist_sync)
    else:
        ce = sigmoid_loss(fn, input, target, reduction=reduction, from_logits=from_logits, ignore_index=ignore_index,
                          weight=weight, label_smoothing=label_smoothing, dist_sync=dist_sync)
    return lambda_dice * dice + lambda_ce * ce


@numpy_arguments
def dice_focal_loss(
    input: Tensor,
    target: Tensor,
    *,
    mode: Mode,
    from_logits: bool = True,
    smooth: float = 1.0,
    eps: float = 1e-7,
    weight: Tensor | Sequence[float] | None = None,
    ignore_index: int | None = None,
    include_background: bool = True,
    per_image: bool = False,
    squared: bool = False,
    log_loss: bool = False,
    gamma: float = 2.0,
    alpha: float | None = None,
    lambda_dice: float = 1.0,
    lambda_focal: float = 1.0,
    reduction: Literal["mean", "sum"] = "mean",
    dist_sync: bool = False,
) -> Tensor:
    r"""Dice plus focal loss, for segmentations whose foreground is tiny (MONAI's DiceFocalLoss differs).

    .. math::

        \ell = \lambda_{dice}\, \mathrm{Dice}(x, t) + \lambda_{focal}\, \mathrm{FL}_\gamma(x, t)

    with :func:`dice_loss` and, by mode, :func:`softmax_focal_loss`
    ("multiclass"; per-class alpha = ``weight`` times ``alpha``, or the scalar
    alpha alone) or :func:`sigmoid_focal_loss` ("binary", "multilabel";
    ``alpha`` weighs positives, ``weight`` applies along dim 1). Both focal
    terms take the plain mean over kept elements.

    MONAI's DiceFocalLoss differs: its focal term is the sigmoid
    (one-vs-rest) focal loss of every channel against the one-hot target,
    averaged over N x C x pixels, even with ``softmax=True`` (here
    "multiclass" takes the softmax focal loss); its Dice is per image with
    smooth 1e-5 and its ``weight`` scales the Dice mean.
    ``get_loss("monai.DiceFocalLoss")`` reproduces MONAI.

    Args:
        mode: "binary", "multiclass" or "multilabel", as in :func:`dice_loss`.
        from_logits: False when ``input`` holds probabilities.
        smooth: Dice's smoothing term, >= 0.
        eps: Dice's smallest denominator, > 0.
        weight: per-class weights of length C, used by both terms.
        ignore_index: target value left out of both terms.
        include_background: False drops class 0 from the Dice term only.
        per_image: Dice per image (True) or over the batch (False).
        squared: Dice with sums of squares in the denominator.
        log_loss: -log Dice instead of 1 - Dice.
        gamma: the focal term's focusing parameter, >= 0.
        alpha: None, or a float in [0, 1]: the sigmoid focal term's weight of
            positives, or the softmax focal term's uniform scale.
        lambda_dice: weight of the Dice term, >= 0.
        lambda_focal: weight of the focal term, >= 0.
        reduction: "mean" or "sum", applied to each term before adding.
        dist_sync: all-reduce the batch-dependent normalisation under
            torch.distributed (:mod:`losslab._dist`; README, "Data-parallel training").

    Returns:
        A scalar.

    Raises:
        ValueError: reduction "none", negative lambdas, alpha outside [0, 1],
            and every error of the two terms (named after this function).

    References:
        Zhu et al. AnatomyNet: Deep learning for fast and fully automated
        whole-volume segmentation of head and neck anatomy. Medical Physics
        2019, arXiv:1808.05238.

    Example:
        >>> import torch, losslab
        >>> logits = torch.randn(2, 1, 8, 8, requires_grad=True)
        >>> loss = losslab.dice_focal_loss(logits, (torch.rand(2, 1, 8, 8) > 0.9).float(), mode="binary")
        >>> loss.backward()
        >>> loss.ndim
        0
    """
    fn = "dice_focal_loss"
    alpha = _check_dice_focal(fn, reduction=reduction, lambda_dice=lambda_dice, lambda_focal=lambda_focal,
                              gamma=gamma, alpha=alpha, mode=mode, from_logits=from_logits, smooth=smooth, eps=eps,
                              ignore_index=ignore_index, include_background=include_background, per_image=per_image,
                              squared=squared, log_loss=log_loss, dist_sync=dist_sync)
    dice = dice_pipeline(fn, input, target, mode=mode, from_logits=from_logits, smooth=smooth, eps=eps,
                         weight=weight, ignore_index=ignore_index, include_background=include_background,
                         per_image=per_image, squared=squared, log_loss=log_loss, reduction=reduction,
                         dist_sync=dist_sync)
    if mode == "multiclass":
        class_weight: object = alpha
        if alpha is not None and weight is None:
            class_weight = torch.full((input.shape[1],), alpha, dtype=torch.float64, device=input.device)
        elif weight is not None:
            class_weight = class_vector(fn, "weight", weight, input.shape[1], input, compute_dtype(input))
            class_weight = class_weight * (1.0 if alpha is None else alpha)
        focal = softmax_loss(fn, input, target, reduction=reduction, ignore_index=ignore_index,
                             input_kind="logits" if from_logits else "probabilities", class_weight=class_weight,
                             gamma=gamma, dist_sync=dist_sync)
    else:
        focal = sigmoid_loss(fn, input, target, reduction=reduction, from_logits=from_logits,
                             ignore_index=ignore_index, alpha=alpha, gamma=gamma, weight=weight,
                             dist_sync=dist_sync)
    return lambda_dice * dice + lambda_focal * focal


class DiceCELoss(LossModule, function=dice_ce_loss, validate=_check_dice_ce):
    """Module form of :func:`losslab.dice_ce_loss`."""

    def __init__(self, *, mode: Mode, from_logits: bool = True, smooth: float = 1.0, eps: float = 1e-7,
                 weight: Tensor | Sequence[float] | None = None, ignore_index: int | None = None,
                 include_background: bool = True, per_image: bool = False, squared: bool = False,
                 log_loss: bool = False, label_smoothing: float = 0.0, lambda_dice: float = 1.0, lambda_ce: float = 1.0,
                 reduction: Literal["mean", "sum"] = "mean", dist_sync: bool = False) -> None:
        super().__init__(mode=mode, from_logits=from_logits, smooth=smooth, eps=eps, weight=weight,
                         ignore_index=ignore_index, include_background=include_background, per_image=per_image,
                         squared=squared, log_loss=log_loss, label_smoothing=label_smoothing, lambda_dice=lambda_dice,
                         lambda_ce=lambda_ce, reduction=reduction, dist_sync=dist_sync)


class DiceFocalLoss(LossModule, function=dice_focal_loss, validate=_check_dice_focal):
    """Module form of :func:`losslab.dice_focal_loss`."""

    def __init__(self, *, mode: Mode, from_logits: bool = True, smooth: float = 1.0, eps: float = 1e-7,
                 weight: Tensor | Sequence[float] | None = None, ignore_index: int | None = None,
                 include_background: bool = True, per_image: bool = False, squared: bool = False,
                 log_loss: bool = False, gamma: float = 2.0, alpha: float | None = None, lambda_dice: float = 1.0,
                 lambda_focal: float = 1.0, reduction: Literal["mean", "sum"] = "mean",
                 dist_sync: bool = False) -> None:
        super().__init__(mode=mode, from_logits=from_logits, smooth=smooth, eps=eps, weight=weight,
                         ignore_index=ignore_index, include_background=include_background, per_image=per_image,
                         squared=squared, log_loss=log_loss, gamma=gamma, alpha=alpha, lambda_dice=lambda_dice,
                         lambda_focal=lambda_focal, reduction=reduction, dist_sync=dist_sync)


# ----------------------------------------------------------------------------
# registration

register(LossSpec(
    name="dice_ce_loss", function=dice_ce_loss, module=DiceCELoss, family="segmentation",
    formula="lambda_dice Dice + lambda_ce CE (softmax CE for multiclass, BCE otherwise)",
    aliases=(Alias("dice_ce", "losslab"),
             Alias("DiceCELoss", "losslab", note="losslab's module; MONAI's DiceCELoss is 'monai.DiceCELoss'"),
             Alias("Dice + CE", "paper")),
    reductions=("mean", "sum"),
))

register(LossSpec(
    name="dice_focal_loss", function=dice_focal_loss, module=DiceFocalLoss, family="segmentation",
    formula="lambda_dice Dice + lambda_focal FL (softmax focal for multiclass, sigmoid focal otherwise)",
    aliases=(Alias("dice_focal", "losslab"),
             Alias("DiceFocalLoss", "losslab",
                   note="losslab's module; MONAI's DiceFocalLoss is 'monai.DiceFocalLoss'"),
             Alias("Dice + Focal", "paper")),
    reductions=("mean", "sum"),
))
