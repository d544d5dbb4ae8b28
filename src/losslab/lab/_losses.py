"""How the lab builds and reads a classification loss from its name and options."""

from __future__ import annotations

import inspect
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import describe, is_number
from .._stateful import StatefulLoss
from ..registry import Alias, LossSpec, build, lookup, specs
from ..weights import class_weights

CLASSIFICATION_FAMILIES = ("classification", "focal")
# Losses whose classes are independent binary problems (sigmoid); the others normalise over classes (softmax).
SIGMOID_LOSSES = ("binary_cross_entropy", "sigmoid_focal_loss")
WEIGHT_METHODS = ("inverse", "inverse_sqrt", "effective_number", "median_frequency")
# Keyword arguments that may name a class-weighting method instead of holding numbers.
CLASS_WEIGHT_KEYS = ("alpha", "weight", "pos_weight")
# Options a training run cannot take: the lab needs one scalar loss per batch, computed on one process.
TRAINING_FORBIDDEN = {
    "reduction": "the lab trains on the batch's mean loss; reduction is not an option",
    "dist_sync": "the lab trains on one process; dist_sync is not an option",
    "avg_factor": "the lab trains on the batch's mean loss; avg_factor is not an option",
}
INPUT_KINDS = ("logits", "probabilities", "log-probabilities")
# The keyword of the losses that need the examples per class (logit adjustment, LDAM, VS, Seesaw).
COUNTS_KEY = "class_counts"


def config_label(name: str, options: Mapping[str, Any]) -> str:
    """The one spelling of a loss configuration, used in every table, plot, legend and report.

    ``NAME key=value ...`` as ``--loss`` takes it: numbers in their shortest
    form, strings bare, true / false / null for booleans and None, a class-weight
    method with parameters as ``effective_number(beta=0.99)``, class counts
    comma-separated (``class_counts=500,120,30,6``).

    Example:
        >>> config_label("balanced_cross_entropy", {"alpha": {"method": "effective_number", "beta": 0.99}})
        'balanced_cross_entropy alpha=effective_number(beta=0.99)'
    """
    return " ".join([name] + [f"{key}={_format_option(key, value)}" for key, value in options.items()])


def _format_option(key: str, value: Any) -> str:
    if key == COUNTS_KEY:
        try:
            return _counts_text(parse_counts(value, caller="config_label"))
        except ValueError:  # the loss reports it when built
            pass
    return format_value(value)


def format_value(value: Any) -> str:
    """One option value as :func:`config_label` writes it."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return value
    if isinstance(value, Tensor):
        value = value.tolist()
    if isinstance(value, Mapping):
        rest = {k: v for k, v in value.items() if k != "method"}
        inner = ",".join(f"{k}={format_value(v)}" for k, v in rest.items())
        if "method" in value:
            return f"{value['method']}({inner})" if rest else str(value["method"])
        return "{" + inner + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    return str(value)


def classification_loss(name: str, *, caller: str) -> tuple[LossSpec, Alias | None]:
    """The registry entry of a classification loss called ``name``; a ValueError for any other loss."""
    spec, alias = lookup(name)
    if spec.family not in CLASSIFICATION_FAMILIES:
        known = sorted({s for s in _classification_names()})
        raise ValueError(f"{caller}: {name!r} is a {spec.family} loss ({spec.name}); the lab takes classification "
                         f"losses: {', '.join(known)}")
    return spec, alias


def _classification_names() -> list[str]:
    return [s.name for s in specs() if s.family in CLASSIFICATION_FAMILIES]


def accepts(spec: LossSpec, argument: str) -> bool:
    """Whether the loss's functional takes the keyword ``argument``."""
    return argument in inspect.signature(spec.function).parameters


def option_default(name: str, key: str) -> Any:
    """What the loss called ``name`` uses for ``key`` when not given: the alias's preset, else the signature's."""
    spec, alias = lookup(name)
    if alias is not None and key in alias.defaults:
        return alias.defaults[key]
    parameter = inspect.signature(spec.function).parameters.get(key)
    if parameter is None or parameter.default is inspect.Parameter.empty:
        return None
    return parameter.default


def input_kind(name: str, options: Mapping[str, Any]) -> str:
    """What the loss called ``name`` takes with ``options``: "logits", "probabilities" or "log-probabilities".

    A loss that takes log-probabilities (``nll_loss``) always does; otherwise
    ``from_logits`` (the caller's, else the alias's preset) decides, and
    without it the alias's or the loss's declared input.
    """
    with warnings.catch_warnings():  # building the loss warns about a name that frameworks spell otherwise
        warnings.simplefilter("ignore")
        spec, alias = lookup(name)
    if spec.input == "log-probabilities":
        return "log-probabilities"
    merged = {**(dict(alias.defaults) if alias is not None else {}), **dict(options)}
    if "from_logits" in merged:
        return "logits" if merged["from_logits"] else "probabilities"
    kind = alias.input if alias is not None else spec.input
    return kind if kind in INPUT_KINDS else "logits"


def feed(logits: Tensor, kind: str, *, sigmoid: bool) -> Tensor:
    """``logits`` turned into what a loss of input ``kind`` takes, with torch ops (the gradient flows through).

    Probabilities are per-class sigmoids for one-vs-rest losses and a softmax
    over dimension 1 otherwise; log-probabilities their logarithm, computed in
    the stable form (``logsigmoid``, ``log_softmax``).
    """
    if kind == "logits":
        return logits
    if kind == "probabilities":
        return torch.sigmoid(logits) if sigmoid else torch.softmax(logits, dim=1)
    if kind == "log-probabilities":
        return F.logsigmoid(logits) if sigmoid else torch.log_softmax(logits, dim=1)
    raise ValueError(f"feed: kind must be one of {', '.join(map(repr, INPUT_KINDS))}; got {kind!r}")


def check_training_options(options: Mapping[str, Any], *, caller: str, label: str) -> None:
    """A ValueError for an option that would break a training run (``reduction``, ``dist_sync``, ``avg_factor``)."""
    for key, why in TRAINING_FORBIDDEN.items():
        if key in options:
            raise ValueError(f"{caller}: {label}: {why}; got {key}={options[key]!r}")


def is_sigmoid(spec: LossSpec, options: Mapping[str, Any]) -> bool:
    """Whether the loss treats each class as its own binary problem (probabilities from a sigmoid).

    ``balanced_cross_entropy`` is sigmoid with a float alpha and softmax with a per-class one.
    """
    if spec.name in SIGMOID_LOSSES:
        return True
    if spec.name == "balanced_cross_entropy":
        alpha = options.get("alpha")
        return isinstance(alpha, (int, float)) and not isinstance(alpha, bool)
    return False


def resolve_class_weights(value: Any, counts: Tensor | Sequence[float], *, caller: str, key: str) -> Any:
    """Turn a weighting method named in a config into per-class weights from ``counts``.

    ``value`` may be a method name ("inverse", "inverse_sqrt", "effective_number",
    "median_frequency") or a mapping ``{"method": ..., "beta": ...}``. The weights
    average 1 (``normalize="mean"``), so that a weighted loss keeps the scale of
    the unweighted one. Anything else is returned unchanged.
    """
    if isinstance(value, str):
        value = {"method": value}
    if isinstance(value, Mapping):
        options = dict(value)
        method = options.pop("method", None)
        if method not in WEIGHT_METHODS:
            raise ValueError(f"{caller}: {key} must be numbers or one of {', '.join(map(repr, WEIGHT_METHODS))} "
                             f"(class weights from the training counts); got {method!r}")
        unknown = set(options) - {"beta", "normalize"}
        if unknown:
            raise ValueError(f"{caller}: {key}={value!r} has unknown keys {sorted(unknown)}; expected 'method', "
                             "'beta', 'normalize'")
        options.setdefault("normalize", "mean")
        return class_weights(torch.as_tensor(counts, dtype=torch.float64), method=method, **options).float()
    return value


def takes_counts(spec: LossSpec) -> bool:
    """Whether the loss needs the number of examples per class (its functional takes ``class_counts``)."""
    return accepts(spec, COUNTS_KEY)


def count_losses() -> list[str]:
    """The canonical names of the classification losses that take ``class_counts``."""
    return [s.name for s in specs() if s.family in CLASSIFICATION_FAMILIES and takes_counts(s)]


def is_focal(spec: LossSpec) -> bool:
    """Whether the loss's ``gamma`` is the focusing parameter of focal loss (vs_loss's gamma is another one)."""
    return spec.family == "focal" and accepts(spec, "gamma")


def parse_counts(value: Any, *, caller: str, key: str = COUNTS_KEY, loss: str | None = None) -> list[float]:
    """Class counts as a list of floats, from ``"500,120,30,6"``, a JSON list, a sequence, a tensor or an array.

    The one spelling of counts on the command line is comma-separated numbers
    (``--class-counts 500,120,30,6``, ``class_counts=500,120,30,6`` in a loss
    spec or ``--option``); ``[500, 120, 30, 6]`` is read too. Each count is a
    finite number >= 0, and there are at least two (one per class). ``loss``
    names the loss in the message.
    """
    caller = caller if loss is None else f"{caller}: {loss}"
    text = value.strip() if isinstance(value, str) else None
    if text is not None:
        try:
            value = json.loads(text) if text.startswith("[") else [float(v) for v in text.split(",")]
        except ValueError:
            raise ValueError(f"{caller}: {key} must be comma-separated counts, one per class, as in "
                             f"{key}=500,120,30,6; got {text!r}") from None
    if isinstance(value, (Tensor, np.ndarray)):
        value = value.tolist()
    if isinstance(value, str) or not isinstance(value, Sequence) or not all(is_number(v) for v in value):
        shown = repr(text) if text is not None else describe(value)
        raise ValueError(f"{caller}: {key} must be counts, one per class, as in {key}=500,120,30,6; got {shown}")
    counts = [float(v) for v in value]
    if len(counts) < 2:
        raise ValueError(f"{caller}: {key} must hold one count per class, at least 2; got {counts}")
    bad = next((v for v in counts if not math.isfinite(v) or v < 0), None)
    if bad is not None:
        raise ValueError(f"{caller}: {key} must be finite numbers >= 0; got {bad:g} in {key}={_counts_text(counts)}")
    return counts


def _counts_text(counts: Sequence[float]) -> str:
    return ",".join(f"{c:g}" for c in counts)


class FixedCounts(nn.Module):
    """A loss with running class counts (``SeesawLoss``) computed by its functional with fixed ``class_counts``.

    What the lab uses where the counts are known up front (a batch, an option,
    the plot's profile): nothing accumulates, training mode or not.
    """

    def __init__(self, module: StatefulLoss, class_counts: Sequence[float]) -> None:
        super().__init__()
        self.loss = module
        self.register_buffer(COUNTS_KEY, torch.tensor(class_counts, dtype=torch.float64))

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        kwargs = {k: getattr(self.loss, k) for k in self.loss._hyperparameters if k != "num_classes"}
        return type(self.loss).function(input, target, class_counts=self.class_counts, **kwargs)


def build_loss(name: str, options: Mapping[str, Any], counts: Tensor | Sequence[float] | None, *,
               caller: str, running: bool = False) -> tuple[nn.Module, LossSpec]:
    """The module of a classification loss, with class-weight methods resolved against ``counts``.

    A loss that takes ``class_counts`` gets them from ``options`` where given
    (comma-separated text or numbers, see :func:`parse_counts`), else ``counts``.
    One with running counts (``seesaw_loss``) is built as its module with
    ``num_classes`` = the number of counts (an alias's preset, such as
    mmpretrain's 1000, gives way to the data), computing its functional with
    those fixed counts (:class:`FixedCounts`); with ``running=True`` and no
    ``class_counts`` option, as the module itself, which starts from zero and
    adds each training batch's labels (mmpretrain's ``SeesawLoss``).
    """
    spec, _ = classification_loss(name, caller=caller)
    resolved = dict(options)
    for key in CLASS_WEIGHT_KEYS:
        if key in resolved and isinstance(resolved[key], (str, Mapping)):
            if counts is None:
                raise ValueError(f"{caller}: {key}={resolved[key]!r} needs class counts")
            resolved[key] = resolve_class_weights(resolved[key], counts, caller=caller, key=key)
    if not takes_counts(spec):
        return build(name, **resolved), spec
    fixed = COUNTS_KEY in resolved or not running
    if COUNTS_KEY in resolved:
        resolved[COUNTS_KEY] = parse_counts(resolved[COUNTS_KEY], caller=caller, loss=spec.name)
    elif counts is None:
        raise ValueError(f"{caller}: {spec.name} needs class counts (examples per class): give "
                         f"{COUNTS_KEY}=500,120,30,6")
    else:
        resolved[COUNTS_KEY] = [float(c) for c in (counts.tolist() if isinstance(counts, Tensor) else counts)]
    if not issubclass(spec.module, StatefulLoss):
        return build(name, **resolved), spec
    class_counts = resolved.pop(COUNTS_KEY)
    num_classes = resolved.pop("num_classes", None)
    if num_classes is not None and num_classes != len(class_counts):
        raise ValueError(f"{caller}: {spec.name}: num_classes={num_classes!r} does not match the "
                         f"{len(class_counts)} class counts (the lab takes the number of classes from the data)")
    known = set(inspect.signature(spec.module.__init__).parameters) - {"self", "num_classes"}
    unknown = sorted(set(resolved) - known)
    if unknown:
        raise TypeError(f"{caller}: {spec.name}: unexpected keyword argument(s) {', '.join(map(repr, unknown))}; "
                        f"expected some of {', '.join([COUNTS_KEY, *sorted(known)])}")
    module = build(name, **resolved, num_classes=len(class_counts))
    return (FixedCounts(module, class_counts) if fixed else module), spec
