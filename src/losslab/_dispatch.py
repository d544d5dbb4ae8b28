"""One route for every loss of the cross-entropy and detection families: prepare, compute, finish.

A loss *prepares* a :class:`Call` once (validation, the normalised target, the
kept mask, weights, hyperparameters and the denominator of "mean"), then
:func:`run` *computes* it on the backend that one table picks, and
:func:`finish` reduces it in one shared step (guarded mean, ``avg_factor``,
``dist_sync``, the cast back to the input's dtype).

The backends, by kind of loss (:data:`TABLE`, filled by the family modules):

* ``native``: torch's own fused kernels (``F.cross_entropy``, ``F.nll_loss``,
  ``F.binary_cross_entropy_with_logits``) plus the few operations a loss adds
  on top (:mod:`losslab._native`): the default below the fused threshold;
* ``composite``: the loss written in tensor operations (:mod:`losslab._core`),
  for what no kernel covers (probabilities as input, a weight that requires a
  gradient, torch.compile and torch.func around the loss);
* ``eager`` and ``compiled``: the fused sweeps on CPU (:mod:`losslab._fused`);
* ``triton``: the fused kernels on CUDA (:mod:`losslab._gpu`).

:func:`choose` is the whole policy; :func:`losslab.set_fused` steers it.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from . import _dist, _fused
from ._switches import auto_and_checked, get_fused

COMPILE_MIN_NUMEL = 1 << 18  # "auto" runs a sweep for inputs of at least 262,144 elements (a row may start lower)


@dataclass(eq=False)
class Call:
    """A prepared loss call: everything a backend needs, validated and normalised once."""

    fn: str  # the public name, for messages
    kind: str  # the row of TABLE: "sigmoid", "softmax", "quality", "varifocal"
    input: Tensor  # as passed: the result has its dtype
    reduction: str
    denominator: Tensor | float  # "mean" divides by it (avg_factor included); 0 divides by 1
    processes: int = 1  # > 1: dist_sync over that many processes
    tensors: dict[str, Tensor | None] = field(default_factory=dict)  # normalised target, masks, weights
    options: dict[str, Any] = field(default_factory=dict)  # hyperparameters and flags
    fusable: bool = True  # logits in: the sweeps compute this loss
    per_position: bool = False  # "none" gives one loss per position (softmax), not per element

    @property
    def dtype(self) -> torch.dtype:
        """The compute dtype: float32 for half-precision inputs, the input's otherwise."""
        return torch.float32 if self.input.dtype in (torch.float16, torch.bfloat16) else self.input.dtype


@dataclass(frozen=True)
class Backends:
    """What one kind of loss offers: each function takes the Call."""

    composite: Callable[[Call], tuple[Tensor, str]]  # (value, form), see finish
    native: Callable[[Call], tuple[Tensor, str] | None] | None = None  # None where torch has no kernel for it
    # (sweep, batched, shared); the function may return None for a call no sweep computes (native runs)
    sweep: Callable[[Call], tuple[Callable, tuple, tuple] | None] | None = None
    eager: bool = True  # has an eager sweep worth running (the softmax sweeps run compiled or on Triton only)
    eager_pays: Callable[[Call], bool] = lambda call: False  # the eager sweep beats native/composite when large
    # "auto" compiles the sweep from this many elements (at most COMPILE_MIN_NUMEL): where native is many kernels,
    # one compiled loop pays from a smaller size
    compile_from: Callable[[Call], int] = lambda call: COMPILE_MIN_NUMEL


TABLE: dict[str, Backends] = {}


def register(kind: str, backends: Backends) -> None:
    """Add a kind of loss to the table (each family module registers its own)."""
    TABLE[kind] = backends


# ----------------------------------------------------------------------------
# the policy


_forced = threading.local()


@contextlib.contextmanager
def forced(backend: str) -> Iterator[None]:
    """Within it, this thread runs ``backend`` wherever it applies ("native" or "composite": tests, benchmarks)."""
    if backend not in ("native", "composite"):
        raise ValueError(f"forced: backend must be 'native' or 'composite'; got {backend!r} (the sweeps are "
                         f"chosen with losslab.set_fused)")
    previous = getattr(_forced, "backend", None)
    _forced.backend = backend
    try:
        yield
    finally:
        _forced.backend = previous


_triton_on_cpu = False  # tests: run the Triton kernels on CPU tensors under Triton's interpreter
_compiler_disabled = False
_compile_off_warned = False


def on_triton(input: Tensor) -> bool:
    """Whether this input's fused path is the Triton kernels: CUDA tensors (float32 or half) with triton."""
    if input.dtype == torch.float64:  # the kernels compute in float32: float64 keeps the CPU paths
        return False
    if input.device.type == "cuda" or (_triton_on_cpu and input.device.type == "cpu"):
        try:
            from . import _gpu  # noqa: F401  (imports triton)
        except ImportError:
            return False
        return True
    return False


def traced() -> bool:
    """Inside torch.compile's tracing or a torch.func transform: only the composite's formulas apply."""
    return torch.compiler.is_compiling() or torch._C._are_functorch_transforms_active()


def applies(input: Tensor, *others: Any) -> bool:
    """Whether a fused sweep computes this call: logits on CPU (or CUDA with Triton), only ``input`` needing a
    gradient, outside torch.compile and torch.func, with set_fused not "off"."""
    if traced() or not torch.is_grad_enabled() or get_fused() == "off":
        return False
    if not input.requires_grad or input.ndim == 0 or input.numel() == 0:
        return False
    if input.device.type != "cpu" and not on_triton(input):
        return False
    return not any(isinstance(t, Tensor) and t.requires_grad for t in others)


@contextlib.contextmanager
def without_compiler() -> Iterator[None]:
    """Within it, "auto" and "compiled" behave as on a machine without a compiler (the benchmark's fallback)."""
    global _compiler_disabled
    previous, _compiler_disabled = _compiler_disabled, True
    try:
        yield
    finally:
        _compiler_disabled = previous


def compiler_available() -> bool:
    """False under ``LOSSLAB_COMPILE=0`` (warned once) or within :func:`without_compiler`."""
    global _compile_off_warned
    if _compiler_disabled:
        return False
    if os.environ.get("LOSSLAB_COMPILE", "1") == "0":
        if not _compile_off_warned:
            _compile_off_warned = True
            warnings.warn("losslab: LOSSLAB_COMPILE=0, the fused losses run their eager sweep", RuntimeWarning,
                          stacklevel=5)
        return False
    return True


def route(input: Tensor, *others: Any, eager_pays: bool, compile_from: int | None = None) -> str | None:
    """"triton", "compiled", "eager" or None (no sweep) for this call; see :func:`losslab.set_fused`.

    "auto" compiles from ``compile_from`` elements (default :data:`COMPILE_MIN_NUMEL`); without a compiler it
    runs the eager sweep, where that pays, from :data:`COMPILE_MIN_NUMEL`.
    """
    if not applies(input, *others):
        return None
    if on_triton(input):
        return "triton"
    mode = get_fused()
    if mode == "eager":
        return "eager"
    numel = input.numel()
    if (mode == "compiled" or numel >= (COMPILE_MIN_NUMEL if compile_from is None else compile_from)) \
            and compiler_available():
        return "compiled"
    return "eager" if eager_pays and (mode == "compiled" or numel >= COMPILE_MIN_NUMEL) else None


def small_native(input: Tensor, target: Tensor) -> bool:
    """What :func:`choose` decides for a small CPU input before it looks at the rest of the call: mode "auto",
    no forced backend, not traced, below :data:`COMPILE_MIN_NUMEL` on CPU. Such a call of a kind whose sweep
    compiles from that size runs native (where its other tensors need no gradient); a sigmoid-form call from its
    sweep's size (``compile_from``) runs the compiled sweep where :func:`applies` and a compiler is there.
    Also whether ``target``'s values are checked (a CPU tensor, checks not off), which a plain call needs: one
    function for what every plain call asks (in a training loop's context each guard costs several times its
    timeit figure: these took 10 us of a 256 x 10 cross-entropy call's 250, forward and backward)."""
    return (input.is_cpu and target.is_cpu and input.numel() < COMPILE_MIN_NUMEL and not _triton_on_cpu
            and _forced.__dict__.get("backend") is None and auto_and_checked() and not traced())


def choose(call: Call) -> str:
    """The backend of ``call``: a sweep where :func:`route` takes one, else native where it applies, else
    the composite."""
    backends = TABLE[call.kind]
    forced_backend = getattr(_forced, "backend", None)
    if forced_backend in ("native", "composite"):
        return forced_backend if forced_backend == "composite" or backends.native else "composite"
    compile_from = min(backends.compile_from(call), COMPILE_MIN_NUMEL)
    small = call.input.numel() < compile_from and call.input.device.type == "cpu" and get_fused() == "auto" \
        and not _triton_on_cpu
    if call.fusable and backends.sweep is not None and not small:  # "auto" runs no sweep on small CPU inputs
        path = route(call.input, *call.tensors.values(), eager_pays=backends.eager_pays(call),
                     compile_from=compile_from)
        if path is not None and (path != "eager" or backends.eager):
            return path
    if backends.native is None or traced() or any(
            isinstance(t, Tensor) and t.requires_grad for t in call.tensors.values()):
        return "composite"
    return "native"


# ----------------------------------------------------------------------------
# compute and finish


def run(call: Call) -> Tensor:
    """Compute ``call`` on its backend and finish it."""
    backend = choose(call)
    backends = TABLE[call.kind]
    swept = backends.sweep(call) if backend in ("eager", "compiled", "triton") else None
    if swept is not None:
        sweep, batched, shared = swept
        value = _fused.fused(call.fn, call.input, sweep, batched, shared, call.reduction, global_denominator(call),
                             per_position=call.per_position, compiled="triton" if backend == "triton"
                             else backend == "compiled")
        return finish(call, value, "scaled")
    out = backends.native(call) if backend != "composite" and backends.native is not None else None
    if out is None:
        out = backends.composite(call)
    return finish(call, *out)


def global_denominator(call: Call) -> Tensor | float:
    """The denominator of "mean" (1 for "sum"), all-reduced under ``dist_sync``: known before a sweep."""
    if call.reduction != "mean":
        return 1.0
    if call.processes > 1:
        return _dist.global_denominator(call.denominator, call.input.device)
    return call.denominator


def scale(call: Call) -> float | Tensor:
    """1 / the global denominator (1 where it is 0): a float, or a 0-d tensor where the denominator is one."""
    denominator = global_denominator(call)
    if not isinstance(denominator, Tensor):
        value = float(denominator)
        return 1.0 / value if value > 0 else 1.0
    return _fused._scale(denominator, call.input)


def finish(call: Call, value: Tensor, form: str) -> Tensor:
    """The reduced loss in the input's dtype.

    ``form``: "elements" (per element or position: "none" returns them, the others sum them), "total" (the
    sum, for "mean" and "sum"), "scaled" (a sweep's result, already divided by the global denominator) or
    "mean" (torch's own mean, over the same nonzero denominator, on one process).
    """
    dtype = call.input.dtype
    if call.reduction == "none" or form == "mean":  # "mean": torch's own, over the same nonzero denominator
        return _cast(value, dtype)
    if form == "scaled":
        if call.processes > 1:
            value = _dist.reduce_global(value, call.processes)
        return _cast(value, dtype)
    total = value.sum() if form == "elements" else value
    return _cast(reduce_total(total, call.reduction, call.denominator, call.processes), dtype)


def _cast(value: Tensor, dtype: torch.dtype) -> Tensor:
    return value if value.dtype == dtype else value.to(dtype)


def reduce_total(total: Tensor, reduction: str, denominator: Tensor | float | None, processes: int = 1) -> Tensor:
    """"sum" or "mean" of a summed loss; a zero denominator divides by 1; all-reduced under ``dist_sync``.

    Under ``dist_sync`` every backend makes the same collectives in the same order whatever its shard holds
    (an empty shard takes the composite, a large one a sweep): see :func:`losslab._dist.reduce_global`.
    """
    if processes > 1:
        if reduction == "sum":
            return _dist.reduce_global(total, processes)
        # each process divides by the global denominator, then the values are summed
        den = _dist.global_denominator(1.0 if denominator is None else denominator, total.device).to(total.dtype)
        return _dist.reduce_global(total / torch.where(den > 0, den, torch.ones_like(den)), processes)
    if reduction == "sum" or denominator is None:
        return total
    if isinstance(denominator, Tensor):
        den = denominator.reshape(()).to(total.dtype)
        return total / torch.where(den > 0, den, torch.ones_like(den))
    return total / (denominator if denominator > 0 else 1.0)
