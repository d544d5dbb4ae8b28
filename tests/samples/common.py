"""Sample inputs for the conformance battery: small float64 CPU tensors, deterministic.

Each family builds its cases from these: a set of input/target layouts crossed
with the keyword variants that matter for the loss, plus an empty batch and an
all-ignored batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

from .cases import Case, ErrorCase

F64 = torch.float64


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def logits(g: torch.Generator, *shape: int, scale: float = 3.0) -> Tensor:
    return torch.randn(*shape, generator=g, dtype=F64) * scale


def probabilities(g: torch.Generator, *shape: int) -> Tensor:
    """Values in [0.02, 0.98]: inside (0, 1) with room for gradcheck's finite differences."""
    return torch.rand(*shape, generator=g, dtype=F64) * 0.96 + 0.02


def boxes(g: torch.Generator, *shape: int) -> Tensor:
    """Well-formed xyxy boxes (*shape, 4): corners in [0, 10), sizes in [0.5, 5.5)."""
    xy = torch.rand(*shape, 2, generator=g, dtype=F64) * 10
    wh = torch.rand(*shape, 2, generator=g, dtype=F64) * 5 + 0.5
    return torch.cat([xy, xy + wh], dim=-1)


def indices(g: torch.Generator, shape: tuple[int, ...], high: int, *, ignore_index: int | None = None,
            ignored: float = 0.0) -> Tensor:
    """Random class indices in [0, high), with a fraction ``ignored`` set to ``ignore_index``."""
    t = torch.randint(0, high, shape, generator=g)
    if ignore_index is not None and ignored:
        t = torch.where(torch.rand(shape, generator=g) < ignored, torch.full_like(t, ignore_index), t)
    return t


def convert(x: Tensor, domain: str) -> Tensor:
    """Logits (N, C, ...) as the given domain: logits, probabilities or log-probabilities over dim 1.

    Probabilities are mixed with 10% of the uniform distribution, which keeps
    them away from 0 for gradcheck's finite differences.
    """
    if domain == "probabilities":
        return 0.9 * torch.softmax(x, dim=1) + 0.1 / max(x.shape[1], 1)
    if domain == "log-probabilities":
        return torch.log_softmax(x, dim=1)
    return x


def per_class(values: list[float]):
    """A variant value: the first C of ``values`` (cycled) as a float64 tensor, for an input with C classes."""
    return lambda x: torch.tensor([values[i % len(values)] for i in range(x.shape[1])], dtype=F64)


def resolve(variant: Mapping[str, Any], x: Tensor) -> dict[str, Any]:
    return {k: (v(x) if callable(v) else v) for k, v in variant.items()}


def tag(variant: Mapping[str, Any]) -> str:
    return ",".join(f"{k}={'per-class' if callable(v) else v}" for k, v in variant.items())


def softmax_cases(variants: Iterable[Mapping[str, Any]], *, seed: int, domain: str = "logits",
                  probability_targets: bool = True, ignore_index: int = -100) -> list[Case]:
    """Cases for a loss over a softmax of dim 1: index and probability targets, 2-D to 4-D inputs."""
    g = generator(seed)
    layouts: list[tuple[str, Tensor, Tensor]] = []
    for name, shape, ignored in [("2d", (6, 4), 0.0), ("2d-ignored", (7, 3), 0.3),
                                 ("3d-ignored", (3, 4, 5), 0.2), ("4d", (2, 3, 4, 2), 0.1)]:
        index_shape = shape[:1] + shape[2:]
        layouts.append((name, convert(logits(g, *shape), domain),
                        indices(g, index_shape, shape[1], ignore_index=ignore_index, ignored=ignored)))
    if probability_targets:
        for name, shape in [("2d-soft", (5, 4)), ("3d-soft", (2, 3, 4))]:
            layouts.append((name, convert(logits(g, *shape), domain), torch.softmax(logits(g, *shape), dim=1)))
    variants = list(variants)
    cases = [Case(x, t, resolve(v, x), f"{name}[{tag(v)}]", domain) for v in variants for name, x, t in layouts]
    empty, ignored = convert(logits(g, 0, 4), domain), convert(logits(g, 5, 4), domain)
    cases.append(Case(empty, torch.zeros(0, dtype=torch.long), resolve(variants[0], empty), "empty",
                      domain, frozenset({"empty"})))
    cases.append(Case(ignored, torch.full((5,), ignore_index), resolve(variants[0], ignored), "all-ignored",
                      domain, frozenset({"all_ignored"})))
    return cases


def sigmoid_cases(variants: Iterable[Mapping[str, Any]], *, seed: int, domain: str = "logits",
                  ignore_index: int = -1, index_targets: bool = True) -> list[Case]:
    """Cases for a loss of independent sigmoids: dense hard and soft targets, class-index targets.

    Every variant runs without ignore_index and with ``ignore_index`` (dense
    targets marked with it, index targets partly set to it).
    """
    g = generator(seed)

    def inputs(*shape: int) -> Tensor:
        return probabilities(g, *shape) if domain == "probabilities" else logits(g, *shape)

    layouts: list[tuple[str, Tensor, Tensor]] = [
        ("1d-hard", inputs(9), (torch.rand(9, generator=g) < 0.4).to(F64)),
        ("2d-soft", inputs(5, 4), torch.rand(5, 4, generator=g, dtype=F64)),
        ("3d-hard", inputs(2, 3, 4), (torch.rand(2, 3, 4, generator=g) < 0.3).to(F64)),
    ]
    if index_targets:
        layouts += [("2d-index", inputs(6, 3), indices(g, (6,), 4)),
                    ("4d-index", inputs(2, 3, 2, 3), indices(g, (2, 2, 3), 4))]
    variants = list(variants)
    cases = []
    for variant in variants:
        for name, x, t in layouts:
            if x.ndim < 2 and any(callable(v) for v in variant.values()):
                continue  # per-class values need a class dimension
            kwargs = resolve(variant, x)
            cases.append(Case(x, t, kwargs, f"{name}[{tag(variant)}]", domain))
            marked = t.clone()
            marked[torch.rand(t.shape, generator=g) < 0.3] = ignore_index
            cases.append(Case(x, marked, {**kwargs, "ignore_index": ignore_index},
                              f"{name}-ignored[{tag(variant)}]", domain))
    empty, ignored = inputs(0, 3), inputs(4, 3)
    cases.append(Case(empty, torch.zeros(0, 3, dtype=F64), resolve(variants[0], empty), "empty", domain,
                      frozenset({"empty"})))
    cases.append(Case(ignored, torch.full((4, 3), float(ignore_index), dtype=F64),
                      {**resolve(variants[0], ignored), "ignore_index": ignore_index}, "all-ignored", domain,
                      frozenset({"all_ignored"})))
    return cases


def softmax_errors(fn: str) -> list[ErrorCase]:
    """Target errors every loss over a softmax of dim 1 must report, on a (4, 3) input."""
    x, t = logits(generator(1), 4, 3), indices(generator(2), (4,), 3)
    return [
        ErrorCase(x, t.clone().fill_(3), {}, ValueError, rf"{fn}: target class indices must be in \[0, 3\)"),
        ErrorCase(x, t.double(), {}, TypeError, rf"{fn}: .*class indices and must have an integer dtype"),
        ErrorCase(x, t[:3], {}, ValueError, rf"{fn}: target must have shape \(4,\).*got \(3,\)"),
        ErrorCase(x[:, 0], t, {}, ValueError, rf"{fn}: input must have shape \(N, C\)"),
        ErrorCase(x, x.softmax(1) + 0.5, {}, ValueError, rf"{fn}: target must lie in \[0, 1\]"),
    ]
