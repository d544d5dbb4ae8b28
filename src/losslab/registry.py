"""The registry: every loss, its names, and the sample inputs of the conformance battery.

A loss registers itself beside its definition with :func:`register`, giving
its functional, its nn.Module twin, a one-line formula, the aliases that
frameworks and papers use for it, and a generator of sample inputs. From that
one call it gets:

* lookup by name with :func:`get_loss` (canonical names and aliases; case,
  spaces, hyphens and underscores are ignored; a framework prefix such as
  ``keras.`` or ``torch.nn.`` picks that framework's meaning where names
  collide);
* a row in ``losslab names``;
* the whole conformance battery of the test suite (reductions, empty and
  all-ignored batches, half precision, non-contiguous inputs, no mutation,
  error messages, gradcheck, module equals functional).
"""

from __future__ import annotations

import difflib
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

__all__ = ["Alias", "Case", "ErrorCase", "LossSpec", "register", "get_loss", "get_spec", "specs", "lookup"]

# Words that name a framework inside a qualified name ("tf.keras.losses.BinaryCrossentropy").
SOURCE_PREFIXES = {
    "torch": "PyTorch", "pytorch": "PyTorch",
    "keras": "Keras",
    "tf": "TensorFlow", "tensorflow": "TensorFlow",
    "tfa": "TensorFlow Addons", "tensorflow_addons": "TensorFlow Addons",
    "caffe": "Caffe",
    "torchvision": "torchvision",
    "kornia": "kornia",
    "optax": "optax",
    "mmdet": "mmdetection", "mmdetection": "mmdetection", "mmcv": "mmcv",
    "monai": "MONAI",
    "smp": "segmentation_models_pytorch", "segmentation_models_pytorch": "segmentation_models_pytorch",
}


def normalize(name: str) -> str:
    """Lookup key of a name: lower case without spaces, hyphens and underscores."""
    return re.sub(r"[\s_\-]+", "", name).lower()


@dataclass(frozen=True)
class Alias:
    """Another name of a registered loss, with the input semantics it carries.

    Attributes:
        name: the name as its source spells it.
        source: where the name comes from ("PyTorch", "Keras", "paper", ...).
        input: what the alias expects: "logits", "probabilities" or "log-probabilities".
        defaults: keyword arguments preset by the alias (``{"from_logits": False}``
            for a name whose framework takes probabilities); the caller's
            keyword arguments override them.
        qualified: reachable only with its framework's prefix (``keras.binary_crossentropy``),
            because the bare name already means something else in losslab.
        note: one line on what users of that name should know.
    """

    name: str
    source: str
    input: str = "logits"
    defaults: Mapping[str, Any] = field(default_factory=dict)
    qualified: bool = False
    note: str = ""


@dataclass
class Case:
    """One sample call of a loss for the conformance battery (float64, CPU).

    ``domain`` says what the input holds ("logits", "probabilities",
    "log-probabilities"); the battery uses it to build saturated inputs.
    ``tags`` mark special cases: "empty" (a batch of size 0) and
    "all_ignored" (every target ignored).
    """

    input: Tensor
    target: Any
    kwargs: dict[str, Any] = field(default_factory=dict)
    id: str = ""
    domain: str = "logits"
    tags: frozenset[str] = frozenset()


@dataclass
class ErrorCase:
    """A bad call and the error it must raise: ``error`` type, and ``match``, a regex on the message."""

    input: Any
    target: Any
    kwargs: dict[str, Any]
    error: type[Exception]
    match: str
    id: str = ""


@dataclass(frozen=True)
class LossSpec:
    """Everything the library knows about one loss."""

    name: str
    function: Callable[..., Tensor]
    module: type[nn.Module]
    family: str
    formula: str
    samples: Callable[[], list[Case]]
    errors: Callable[[], list[ErrorCase]] = list
    aliases: tuple[Alias, ...] = ()
    input: str = "logits"
    # False where the loss stops the gradient through part of its formula by design (CIoU's trade-off
    # factor): the battery's gradcheck, which compares with finite differences, does not apply.
    exact_gradient: bool = True
    # The reductions it supports: a sum of terms of different shapes (dice_ce_loss) has no "none".
    reductions: tuple[str, ...] = ("none", "mean", "sum")


_SPECS: dict[str, LossSpec] = {}
_BARE: dict[str, tuple[LossSpec, Alias | None]] = {}
_QUALIFIED: dict[tuple[str, str], tuple[LossSpec, Alias]] = {}


def _same_meaning(a: tuple[LossSpec, Alias | None], b: tuple[LossSpec, Alias | None]) -> bool:
    defaults = [dict(x[1].defaults) if x[1] is not None else {} for x in (a, b)]
    return a[0].name == b[0].name and defaults[0] == defaults[1]


def register(spec: LossSpec) -> LossSpec:
    """Add a loss to the registry. Raises ValueError when one of its names already means something else."""
    if spec.name in _SPECS:
        raise ValueError(f"register: a loss named {spec.name!r} is already registered")
    entries: list[tuple[str, tuple[LossSpec, Alias | None]]] = [(normalize(spec.name), (spec, None))]
    entries += [(normalize(a.name), (spec, a)) for a in spec.aliases if not a.qualified]
    for key, entry in entries:
        if key in _BARE and not _same_meaning(_BARE[key], entry):
            other = _BARE[key]
            raise ValueError(
                f"register: name {key!r} of {spec.name!r} already means {other[0].name!r}"
                f"{' via alias ' + repr(other[1].name) if other[1] else ''}; mark the alias qualified=True"
            )
    qualified: list[tuple[tuple[str, str], tuple[LossSpec, Alias]]] = []
    for alias in spec.aliases:
        prefixes = [k for k, v in SOURCE_PREFIXES.items() if v == alias.source]
        if alias.qualified and not prefixes:
            raise ValueError(f"register: qualified alias {alias.name!r} needs a source among "
                             f"{sorted(set(SOURCE_PREFIXES.values()))}; got {alias.source!r}")
        for prefix in prefixes:
            key = (prefix, normalize(alias.name))
            if key in _QUALIFIED and not _same_meaning(_QUALIFIED[key], (spec, alias)):
                raise ValueError(f"register: {prefix}.{alias.name} already means {_QUALIFIED[key][0].name!r}")
            qualified.append((key, (spec, alias)))
    for key, entry in entries:
        _BARE.setdefault(key, entry)
    for qkey, qentry in qualified:
        _QUALIFIED.setdefault(qkey, qentry)
    _SPECS[spec.name] = spec
    return spec


def specs() -> list[LossSpec]:
    """Every registered loss, in registration order."""
    return list(_SPECS.values())


def lookup(name: str) -> tuple[LossSpec, Alias | None]:
    """The loss and alias (None for a canonical name) that ``name`` refers to.

    ``name`` may carry a framework prefix, separated by dots or a colon
    (``"torch.nn.BCELoss"``, ``"keras:binary_crossentropy"``): the rightmost
    word that names a framework selects that framework's alias, which matters
    where a bare name means something else in losslab.
    """
    if not isinstance(name, str):
        raise TypeError(f"get_loss: name must be a str; got {name!r} ({type(name).__name__})")
    parts = [p for p in re.split(r"[.:]", name.strip()) if p]
    if not parts:
        raise ValueError("get_loss: name must be a non-empty loss name; got ''")
    key = normalize(parts[-1])
    for word in reversed(parts[:-1]):
        word = word.lower()
        if word in SOURCE_PREFIXES and (word, key) in _QUALIFIED:
            return _QUALIFIED[(word, key)]
    if key in _BARE:
        _warn_if_framework_differs(parts[-1], key, _BARE[key])
        return _BARE[key]
    close = _close_names(key)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else "."
    raise ValueError(f"get_loss: unknown loss name {name!r}{hint} Run `losslab names` to list every name.")


def get_spec(name: str) -> LossSpec:
    """The :class:`LossSpec` of a canonical name or alias."""
    return lookup(name)[0]


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
    if not isinstance(name, str) and isinstance(name, (Mapping, Sequence)):
        from .combined import from_config  # combined builds on the registry

        return from_config(name, **kwargs)
    spec, alias = lookup(name)
    merged = dict(alias.defaults) if alias is not None else {}
    merged.update(kwargs)
    return spec.module(**merged)


def _close_names(key: str, n: int = 5) -> list[str]:
    """Up to ``n`` names as they are looked up (qualified ones with their prefix) that resemble ``key``.

    A qualified name is compared without its prefix, so "FocalLos" finds "kornia.FocalLoss".
    """
    scored: dict[str, float] = {}
    for row in names_table():
        ratio = difflib.SequenceMatcher(None, key, normalize(row["name"])).ratio()
        if ratio >= 0.6:
            scored[row["lookup"]] = max(ratio, scored.get(row["lookup"], 0.0))
    return sorted(scored, key=lambda name: -scored[name])[:n]


def _warn_if_framework_differs(raw: str, key: str, entry: tuple[LossSpec, Alias | None]) -> None:
    """Warn when a bare name is spelt exactly as a framework's name that expects another input."""
    spec, alias = entry
    if raw == (alias.name if alias is not None else spec.name):
        return  # spelt as the name it resolves to
    resolved_input = alias.input if alias is not None else spec.input
    resolved_defaults = dict(alias.defaults) if alias is not None else {}
    for (prefix, qkey), (_, qalias) in _QUALIFIED.items():
        if qkey != key or not qalias.qualified or qalias.name != raw:
            continue
        if qalias.input != resolved_input:
            differs = f"expects {qalias.input}"
        elif dict(qalias.defaults) != resolved_defaults:
            differs = "presets " + ", ".join(f"{k}={v!r}" for k, v in qalias.defaults.items())
        else:
            continue
        warnings.warn(f"get_loss: {raw!r} is losslab's {spec.name} ({resolved_input} in); {qalias.source}'s "
                      f"{raw} {differs}: ask for '{prefix}.{raw}' to get that", UserWarning, stacklevel=4)
        return


def names_table() -> list[dict[str, Any]]:
    """One row per name: canonical, alias, source, input, presets, lookup key, formula, note."""
    rows = []
    for spec in _SPECS.values():
        rows.append({"canonical": spec.name, "name": spec.name, "source": "losslab", "input": spec.input,
                     "defaults": {}, "lookup": spec.name, "formula": spec.formula, "note": ""})
        for a in spec.aliases:
            prefix = next(k for k, v in SOURCE_PREFIXES.items() if v == a.source) + "." if a.qualified else ""
            rows.append({"canonical": spec.name, "name": a.name, "source": a.source, "input": a.input,
                         "defaults": dict(a.defaults), "lookup": prefix + a.name, "formula": spec.formula,
                         "note": a.note})
    return rows
