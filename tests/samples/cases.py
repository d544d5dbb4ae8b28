"""The two records of the conformance battery: a sample call of a loss, and a bad call with its error."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor


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
