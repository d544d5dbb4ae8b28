"""A loss from a name or a plain config: :func:`get_loss`, and weighted sums, :func:`combine` / :class:`CombinedLoss`.

This module sits above the registry and every loss module, so that the
registry stays a leaf: :func:`losslab.registry.build` builds a loss from a
name; :func:`get_loss` also takes a config as read from YAML, TOML or JSON,
whose combinations are :class:`CombinedLoss`, whose terms may be configs in
turn.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from ._checks import check_number, describe
from .registry import build

LossLike = nn.Module | str | Mapping[str, Any] | Callable[[Tensor, Any], Tensor]

__all__ = ["get_loss", "from_config", "combine", "CombinedLoss"]


def get_loss(name: str | Mapping[str, Any] | Sequence[Any], **kwargs: Any) -> nn.Module:
    """The nn.Module of the loss called ``name``, built with ``kwargs``.

    ``name`` is a canonical name or any alias; lookup ignores case, spaces,
    hyphens and underscores. An alias carries its source's input semantics:
    ``get_loss("BCELoss")`` expects probabilities, ``get_loss("BCEWithLogitsLoss")``
    logits. Keyword arguments override what the alias presets.

    ``name`` may also be a plain config, as read from YAML, TOML or JSON:

    * ``{"name": "dice_loss", "mode": "binary"}``: one loss and its arguments;
    * a list of such dicts, each with an optional ``"loss_weight"`` (default 1)
      and ``"label"``, or ``{"combine": [...]}``: a
      :class:`losslab.CombinedLoss`, the weighted sum of the terms.

    Raises:
        ValueError: for an unknown name, with the closest known names, or a
            malformed config.

    Example:
        >>> import torch, losslab
        >>> loss_fn = losslab.get_loss("BCELoss")          # PyTorch's name: probabilities in
        >>> loss_fn.from_logits
        False
        >>> loss_fn(torch.tensor([0.9, 0.2]), torch.tensor([1.0, 0.0])).round(decimals=4)
        tensor(0.1643)
    """
    if isinstance(name, (bytes, bytearray)):
        raise TypeError(f"get_loss: name must be a str, a config dict or a list of them; got {type(name).__name__}")
    if not isinstance(name, str) and isinstance(name, (Mapping, Sequence)):
        return from_config(name, **kwargs)
    return build(name, **kwargs)


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
