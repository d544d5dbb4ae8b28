"""Loss schedules of the lab: class weights switched on late (``from``, deferred re-weighting) and a warm-up.

Two options change a loss during training, at epoch granularity:

* ``from`` inside a class-weight mapping (``weight``, ``alpha``, ``pos_weight``):
  ``weight: {method: effective_number, beta: 0.9999, from: 0.8}`` in a config,
  ``weight=effective_number(beta=0.9999,from=0.8)`` in a ``--loss`` spec. Epoch
  e (counted from 0) uses the weights when e >= from x epochs; before, the
  option is left out (the loss's default: no weights). This is Cao et al.'s
  deferred re-weighting (DRW; LDAM, NeurIPS 2019, arXiv:1906.07413), who
  switch the effective-number weights (beta 0.9999) on at epoch 160 of 200.
* ``warmup`` (a top-level option): epoch e trains with plain cross-entropy
  (one-vs-rest binary cross-entropy for a sigmoid loss) when e < warmup x epochs.

:func:`phases` turns a configuration into its phases, :func:`at_epochs` into
the epoch where each phase starts for a given number of epochs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .._checks import is_number
from ._losses import CLASS_WEIGHT_KEYS

__all__ = ["FROM_KEY", "WARMUP_KEY", "at_epochs", "has_schedule", "phases"]

WARMUP_KEY = "warmup"
FROM_KEY = "from"
# The loss of the warm-up: softmax cross-entropy, or its one-vs-rest form for a model read through sigmoids.
WARMUP_LOSS = {False: "cross_entropy", True: "binary_cross_entropy"}


def _fraction(value: Any, *, caller: str, label: str, what: str, example: str) -> float:
    if isinstance(value, bool) or not is_number(value) or not 0 <= float(value) < 1:
        raise ValueError(f"{caller}: {label}: {what} must be a fraction of the epochs in [0, 1) ({example}); "
                         f"got {value!r}")
    return float(value)


def has_schedule(options: Mapping[str, Any]) -> bool:
    """Whether a configuration's options change during training (``warmup``, or a ``from`` in a mapping)."""
    return WARMUP_KEY in options or any(isinstance(v, Mapping) and FROM_KEY in v for v in options.values())


def _split(options: Mapping[str, Any], *, caller: str, label: str) -> tuple[float, dict[str, float], dict[str, Any]]:
    """(warm-up fraction, {option: switch-on fraction}, the options at the end, without schedule keys)."""
    final = dict(options)
    warmup = 0.0
    if WARMUP_KEY in final:
        warmup = _fraction(final.pop(WARMUP_KEY), caller=caller, label=label, what=WARMUP_KEY,
                           example="0.2: the first 20 % of the epochs with plain cross-entropy")
    switches: dict[str, float] = {}
    for key, value in options.items():
        if not isinstance(value, Mapping) or FROM_KEY not in value:
            continue
        if key not in CLASS_WEIGHT_KEYS:
            raise ValueError(f"{caller}: {label}: 'from' schedules class weights only ({', '.join(CLASS_WEIGHT_KEYS)}"
                             f"); got it in {key}")
        switches[key] = _fraction(value[FROM_KEY], caller=caller, label=label, what=f"{key}'s from",
                                  example="0.8: the weights switch on for the last 20 % of the epochs")
        final[key] = {k: v for k, v in value.items() if k != FROM_KEY}
    return warmup, switches, final


def phases(name: str, options: Mapping[str, Any], *, sigmoid: bool, caller: str,
           label: str | None = None) -> list[tuple[float, str, dict[str, Any]]]:
    """The phases of a configuration: ``(start as a fraction of the epochs, loss name, options)``, in order.

    The first phase starts at 0. A configuration without ``warmup`` or
    ``from`` has one phase, ``(0.0, name, options)``. ``sigmoid`` picks the
    warm-up's loss (see :data:`WARMUP_LOSS`).

    Raises:
        ValueError: ``warmup`` or ``from`` not a number in [0, 1), or ``from``
            in an option that is not a class weight.

    Example:
        >>> phases("ldam_loss", {"weight": {"method": "inverse", "from": 0.8}, "warmup": 0.2}, sigmoid=False,
        ...        caller="demo")
        [(0.0, 'cross_entropy', {}), (0.2, 'ldam_loss', {}), (0.8, 'ldam_loss', {'weight': {'method': 'inverse'}})]
    """
    label = label or name
    warmup, switches, final = _split(options, caller=caller, label=label)
    starts = sorted({0.0, warmup, *switches.values()})
    out: list[tuple[float, str, dict[str, Any]]] = []
    for start in starts:
        if start < warmup:
            phase = (WARMUP_LOSS[bool(sigmoid)], {})
        else:
            phase = (name, {k: v for k, v in final.items() if k not in switches or switches[k] <= start})
        if not out or out[-1][1:] != phase:
            out.append((start, *phase))
    return out


def at_epochs(schedule: list[tuple[float, str, dict[str, Any]]], epochs: int) -> list[dict[str, Any]]:
    """The phases that get epochs, each as ``{"epoch": first epoch (from 0), "loss": name, "options": ...}``.

    A phase that starts at fraction f starts at epoch ceil(f x epochs), the
    first epoch e with e >= f x epochs; a phase left with no epoch (its next
    starts at the same epoch, or it starts at or after ``epochs``) is dropped.

    Example:
        >>> at_epochs([(0.0, "cross_entropy", {}), (0.8, "ldam_loss", {})], 60)
        [{'epoch': 0, 'loss': 'cross_entropy', 'options': {}}, {'epoch': 48, 'loss': 'ldam_loss', 'options': {}}]
    """
    firsts = [math.ceil(start * epochs - 1e-9) for start, _, _ in schedule]
    out = []
    for i, (first, (_, name, options)) in enumerate(zip(firsts, schedule, strict=True)):
        end = firsts[i + 1] if i + 1 < len(firsts) else epochs
        if first < min(end, epochs):
            out.append({"epoch": first, "loss": name, "options": options})
    return out
