"""Helpers shared by the test modules."""

from __future__ import annotations

import numpy as np
import torch

# Tolerances for comparing a loss computed in `dtype` with a float64 reference.
TOLERANCES = {
    torch.float64: {"rtol": 1e-9, "atol": 1e-11},
    torch.float32: {"rtol": 1e-5, "atol": 1e-6},
    torch.float16: {"rtol": 2e-3, "atol": 2e-3},
    torch.bfloat16: {"rtol": 1.6e-2, "atol": 1.6e-2},
}


def assert_close_np(actual: torch.Tensor, expected, dtype: torch.dtype = torch.float64, **kw) -> None:
    """Compare a torch result with a NumPy float64 reference under the dtype's tolerance."""
    tolerances = {**TOLERANCES[dtype], **kw}
    np.testing.assert_allclose(actual.detach().double().cpu().numpy(), np.asarray(expected, dtype=np.float64),
                               **tolerances)


# Sample tensors and value-and-gradient comparisons shared by the family tests.

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def logits(*shape: int, seed: int = 0, scale: float = 3.0, dtype: torch.dtype = F64) -> torch.Tensor:
    return (torch.randn(*shape, generator=gen(seed), dtype=F64) * scale).to(dtype)


def class_indices(shape: tuple[int, ...], high: int, *, seed: int = 1, ignore_index: int | None = None,
                  ignored: float = 0.0) -> torch.Tensor:
    t = torch.randint(0, high, shape, generator=gen(seed))
    if ignore_index is not None and ignored:
        drop = torch.rand(shape, generator=gen(seed + 1000)) < ignored
        drop.view(-1)[0] = True  # at least one ignored position
        t = torch.where(drop, torch.full_like(t, ignore_index), t)
    return t


def soft_targets(*shape: int, seed: int = 2) -> torch.Tensor:
    """Class probabilities over dim 1."""
    return torch.softmax(torch.randn(*shape, generator=gen(seed), dtype=F64) * 2, dim=1)


def value_and_grad(fn, x: torch.Tensor, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """fn(x, ...) and d/dx of a fixed, non-uniform weighting of its output (so "none" gradients are tested too)."""
    x = x.detach().clone().requires_grad_(True)
    out = fn(x, *args, **kwargs)
    upstream = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).reshape(out.shape)
    (out * upstream).sum().backward()
    return out.detach(), x.grad


def assert_same(a: tuple[torch.Tensor, torch.Tensor], b: tuple[torch.Tensor, torch.Tensor],
                dtype: torch.dtype = F64) -> None:
    """Values and gradients close under the dtype's tolerance."""
    torch.testing.assert_close(a[0], b[0], **TOLERANCES[dtype])
    torch.testing.assert_close(a[1], b[1], **TOLERANCES[dtype])


def graph_nodes(out: torch.Tensor) -> set[str]:
    """The class names of every autograd node behind ``out``."""
    names: set[str] = set()
    seen: set[int] = set()
    stack = [out.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        names.add(type(node).__name__)
        stack.extend(child for child, _ in node.next_functions)
    return names
