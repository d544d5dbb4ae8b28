"""The registry: every loss, its names and its formula.

A loss registers itself beside its definition with :func:`register`, giving
its functional, its nn.Module twin, a one-line formula and the aliases that
frameworks and papers use for it. From that one call it gets:

* lookup by name with :func:`lookup` and :func:`build`, and so with
  :func:`losslab.get_loss` (canonical names and aliases; case, spaces,
  hyphens and underscores are ignored; a framework prefix such as ``keras.``
  or ``torch.nn.`` picks that framework's meaning where names collide);
* a row in ``losslab names``;
* the whole conformance battery of the test suite (reductions, empty and
  all-ignored batches, half precision, non-contiguous inputs, no mutation,
  error messages, gradcheck, module equals functional), run on the sample
  inputs and error cases that ``tests/samples/`` keeps under its canonical
  name: importing the library builds no test data.

The registry is a leaf of the package: it imports no other losslab module.
Configs (dicts and lists of losses) and combinations are built above it, in
:mod:`losslab.config`.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from torch import Tensor, nn

__all__ = ["Alias", "LossSpec", "register", "add_aliases", "build", "get_spec", "specs", "lookup"]

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
    "mmpretrain": "mmpretrain", "mmcls": "mmpretrain",
    "monai": "MONAI",
    "smp": "segmentation_models_pytorch", "segmentation_models_pytorch": "segmentation_models_pytorch",
    "timm": "timm",
}

# Words of a qualified name that name no framework: a module path ("torch.nn.functional.x", "keras.losses.X").
# A name whose prefix holds only these (and "losslab") is looked up as a bare name.
NEUTRAL_WORDS = {"losslab", "nn", "functional", "f", "losses", "loss", "ops", "compat", "v1", "v2", "models",
                 "structures", "bbox"}


# A warning names the innermost caller outside this folder (:func:`_outside_stacklevel`).
_PACKAGE_DIR = os.path.dirname(__file__) + os.sep


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
        build: the nn.Module class that reproduces the framework's loss where
            presets alone cannot (a scalar alpha expanded per class, another
            normalisation of "mean", a quirk); :func:`build` builds it
            instead of the loss's own module. Its functional lives in
            :mod:`losslab.frameworks`.
        unsupported: for a framework's loss of another formula, which losslab
            does not implement: what it is and the closest losslab loss.
            :func:`build` raises ValueError with it.
    """

    name: str
    source: str
    input: str = "logits"
    defaults: Mapping[str, Any] = field(default_factory=dict)
    qualified: bool = False
    note: str = ""
    build: type[nn.Module] | None = None
    unsupported: str = ""


@dataclass(frozen=True)
class LossSpec:
    """Everything the library knows about one loss."""

    name: str
    function: Callable[..., Tensor]
    module: type[nn.Module]
    family: str
    formula: str
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


def _meaning(entry: tuple[LossSpec, Alias | None]) -> tuple[Any, ...]:
    """What a name gives: the loss, the presets, the adapter, the refusal, the input it takes."""
    spec, alias = entry
    if alias is None:
        return spec.name, {}, None, "", spec.input
    return spec.name, dict(alias.defaults), alias.build, alias.unsupported, alias.input


def _same_meaning(a: tuple[LossSpec, Alias | None], b: tuple[LossSpec, Alias | None]) -> bool:
    return _meaning(a) == _meaning(b)


def register(spec: LossSpec) -> LossSpec:
    """Add a loss to the registry. Raises ValueError when one of its names already means something else."""
    if spec.name in _SPECS:
        raise ValueError(f"register: a loss named {spec.name!r} is already registered")
    _index(spec, [(normalize(spec.name), (spec, None))], spec.aliases)
    _SPECS[spec.name] = spec
    return spec


def add_aliases(name: str, *aliases: Alias) -> LossSpec:
    """Add aliases to the registered loss ``name`` (a framework's names, registered beside its adapters).

    Raises ValueError as :func:`register` does when a name already means something else.
    """
    if name not in _SPECS:
        raise ValueError(f"add_aliases: no loss named {name!r} is registered")
    old = _SPECS[name]
    spec = replace(old, aliases=old.aliases + tuple(aliases))
    _index(spec, [], aliases)
    for table in (_BARE, _QUALIFIED):  # the entries of the earlier names point to the new spec
        for key, (entry_spec, alias) in list(table.items()):
            if entry_spec is old:
                table[key] = (spec, alias)  # type: ignore[assignment]
    _SPECS[name] = spec
    return spec


def _index(spec: LossSpec, entries: list[tuple[str, tuple[LossSpec, Alias | None]]],
           aliases: Sequence[Alias]) -> None:
    """Check that none of the names already means something else, then add them to the lookup tables."""
    entries = entries + [(normalize(a.name), (spec, a)) for a in aliases if not a.qualified]
    for key, entry in entries:
        if key in _BARE and not _same_meaning(_BARE[key], entry):
            other = _BARE[key]
            raise ValueError(
                f"register: name {key!r} of {spec.name!r} already means {other[0].name!r}"
                f"{' via alias ' + repr(other[1].name) if other[1] else ''}; mark the alias qualified=True"
            )
    qualified: list[tuple[tuple[str, str], tuple[LossSpec, Alias]]] = []
    for alias in aliases:
        prefixes = [k for k, v in SOURCE_PREFIXES.items() if v == alias.source]
        if (alias.qualified or alias.build is not None or alias.unsupported) and not prefixes:
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


def specs() -> list[LossSpec]:
    """Every registered loss, in registration order."""
    return list(_SPECS.values())


def lookup(name: str) -> tuple[LossSpec, Alias | None]:
    """The loss and alias (None for a canonical name) that ``name`` refers to.

    ``name`` may carry a framework prefix, separated by dots or a colon
    (``"torch.nn.BCELoss"``, ``"keras:binary_crossentropy"``): the rightmost
    word that names a framework selects that framework's alias, which matters
    where a bare name means something else in losslab. A framework's prefix
    never falls back to losslab's own loss: a name that the framework's table
    lacks is an error, and so is a prefix that names no framework losslab
    knows (``"ultralytics.X"``). Module paths (``nn``, ``functional``, ``losses``)
    and ``losslab.`` are ignored.
    """
    if not isinstance(name, str):
        raise TypeError(f"get_loss: name must be a str, a config dict or a list of them; got "
                        f"{type(name).__name__}")
    parts = [p for p in re.split(r"[.:]", name.strip()) if p]
    if not parts:
        raise ValueError("get_loss: name must be a non-empty loss name; got ''")
    key = normalize(parts[-1])
    prefix_words = [word.lower() for word in parts[:-1]]
    frameworks = [word for word in prefix_words if word in SOURCE_PREFIXES]
    if frameworks:
        word = frameworks[-1]
        if (word, key) in _QUALIFIED:
            return _QUALIFIED[(word, key)]
        source = SOURCE_PREFIXES[word]
        known = sorted({row["lookup"] for row in names_table() if row["source"] == source}, key=str.lower)
        close = difflib.get_close_matches(normalize(parts[-1]), [normalize(n.split(".")[-1]) for n in known], n=3,
                                          cutoff=0.6)
        close_names = [n for n in known if normalize(n.split(".")[-1]) in close]
        shown = ", ".join(map(repr, known[:6])) + (", ..." if len(known) > 6 else "")
        hint = (f"did you mean {', '.join(map(repr, close_names))}? " if close_names else
                f"its names here: {shown}. " if known else "")
        raise ValueError(f"get_loss: losslab has no {source} loss named {parts[-1]!r} ({name!r}); {hint}"
                         f"Drop the prefix for losslab's own losses; `losslab names {normalize(source)}` lists them.")
    unknown = [word for word in prefix_words if word not in NEUTRAL_WORDS]
    if unknown:
        raise ValueError(f"get_loss: unknown framework prefix {unknown[-1]!r} in {name!r}; losslab reproduces "
                         f"{', '.join(sorted(set(SOURCE_PREFIXES.values()), key=str.lower))}. Drop the prefix "
                         f"for losslab's own losses; `losslab names` lists every name.")
    if key in _BARE:
        _warn_if_framework_differs(parts[-1], key, _BARE[key])
        return _BARE[key]
    close = _close_names(key)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else "."
    raise ValueError(f"get_loss: unknown loss name {name!r}{hint} Run `losslab names` to list every name.")


def get_spec(name: str) -> LossSpec:
    """The :class:`LossSpec` of a canonical name or alias."""
    return lookup(name)[0]


def build(name: str, **kwargs: Any) -> nn.Module:
    """The nn.Module of the loss called ``name``, built with ``kwargs``: :func:`losslab.get_loss` for a name.

    ``name`` is a canonical name or any alias, looked up as :func:`lookup`
    does; the alias's presets come first and ``kwargs`` override them. A
    framework's loss of another formula raises ValueError with what it is and
    the closest losslab loss. Configs (dicts and lists) are built by
    :func:`losslab.get_loss`, which sits above the registry.
    """
    spec, alias = lookup(name)
    if alias is not None and alias.unsupported:
        raise ValueError(f"get_loss: {name!r} is {alias.unsupported}")
    merged = dict(alias.defaults) if alias is not None else {}
    merged.update(kwargs)
    module = alias.build if alias is not None and alias.build is not None else spec.module
    return module(**merged)


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
    """Warn when a bare name, however spelt, is also a framework's name for another loss, input or presets.

    losslab's canonical name spelt exactly never warns; an alias spelt exactly
    as registered (a paper's "Quality Focal Loss") warns only where a
    framework spells its other meaning the same way.
    """
    spec, alias = entry
    if alias is None and raw == spec.name:
        return
    exact = raw in {a.name for a in spec.aliases if not a.qualified and normalize(a.name) == key}
    resolved_input = alias.input if alias is not None else spec.input
    resolved_defaults = dict(alias.defaults) if alias is not None else {}
    found: dict[tuple[str, str], str] = {}
    for (prefix, qkey), (qspec, qalias) in _QUALIFIED.items():
        if qkey != key or (qspec is spec and qalias is alias) or (qalias.source, qalias.name) in found:
            continue
        if exact and qalias.name != raw:
            continue
        if qspec is not spec:
            differs = f"is another loss, a form of losslab's {qspec.name}"
            differs += f" ({qalias.note})" if qalias.note else ""
        elif qalias.unsupported:
            differs = "is another formula"
        elif qalias.build is not None:
            differs = f"differs ({qalias.note})" if qalias.note else "differs"
        elif qalias.input != resolved_input:
            differs = f"expects {qalias.input}"
        elif {k: v for k, v in qalias.defaults.items() if k != "reduction"} != \
                {k: v for k, v in resolved_defaults.items() if k != "reduction"}:
            differs = "presets " + ", ".join(f"{k}={v!r}" for k, v in qalias.defaults.items())
        else:
            continue  # the same loss; a framework's default reduction alone is no reason to warn
        found[(qalias.source, qalias.name)] = (f"{qalias.source}'s {qalias.name} {differs}: "
                                               f"ask for '{prefix}.{qalias.name}'")
    if found:
        # the framework spelt exactly as the caller spelt it first
        ordered = [text for _, text in sorted(found.items(), key=lambda item: item[0][1] != raw)]
        more = f" (and {len(ordered) - 3} more: `losslab names {raw}`)" if len(ordered) > 3 else ""
        warnings.warn(f"get_loss: {raw!r} is losslab's {spec.name} ({resolved_input} in); "
                      + "; ".join(ordered[:3]) + f" to get that{more}", UserWarning, stacklevel=_outside_stacklevel())


def _outside_stacklevel() -> int:
    """The ``warnings.warn`` stacklevel, for the function calling this one, of the innermost frame outside losslab.

    A name reaches :func:`lookup` directly or through :func:`build`,
    :func:`losslab.get_loss`, a config or a combination, each adding frames;
    the warning names the user's line whichever way it came.
    """
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    return level


def names_table() -> list[dict[str, Any]]:
    """One row per name: canonical, alias, source, input, presets, lookup key, formula, note."""
    rows = []
    for spec in _SPECS.values():
        rows.append({"canonical": spec.name, "name": spec.name, "source": "losslab", "input": spec.input,
                     "defaults": {}, "lookup": spec.name, "formula": spec.formula, "note": ""})
        for a in spec.aliases:
            prefix = next(k for k, v in SOURCE_PREFIXES.items() if v == a.source) + "." if a.qualified else ""
            note = a.note or (f"another formula: raises ({a.unsupported.split(',')[0]})" if a.unsupported else "")
            rows.append({"canonical": spec.name, "name": a.name, "source": a.source, "input": a.input,
                         "defaults": dict(a.defaults), "lookup": prefix + a.name, "formula": spec.formula,
                         "note": note})
    return rows
