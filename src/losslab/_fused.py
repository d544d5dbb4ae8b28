"""Fused forward-backward: each loss and its gradient in one sweep over the logits, on CPU.

The composite implementation (:mod:`losslab._core`) is a chain of tensor
operations: autograd keeps its intermediates (six to eight tensors of the
logits' size for a focal loss) and runs a dozen elementwise passes backward.
Here a *sweep* computes the per-element loss and its analytic derivative
together; a custom autograd Function returns the loss, saves only the
derivative (already scaled by the reduction), and hands it back in backward,
multiplied by the incoming gradient only when that is not 1.

The sweep runs either compiled (inductor writes one vectorised C++ loop with
dynamic shapes, cached on disk; the graph is called without dynamo where
:mod:`losslab._standalone` has one for the arguments' layout, through
torch.compile otherwise) or eagerly in cache-sized
chunks (of rows, or of positions within a row when one row is larger than a
chunk), which bounds the temporaries. Which one runs, and when a loss takes
torch's own kernels instead, is :mod:`losslab._dispatch`'s choice.

Compiled, the hyperparameters (gamma, alpha, beta, smoothing) are inputs of
the graph (0-d tensors), not constants: a new value compiles nothing. A graph
is specialised only on the arguments' dtypes and ranks and on which terms are
on (a zero hyperparameter switches its term off; 2, the default gamma, is a
square: one graph of its own), and, as dynamo's guards
would, on which sizes are 1 and which strides 0; up to ``RECOMPILE_LIMIT``
graphs a sweep. Where compiling fails, that sweep falls back to the eager
sweep for that signature only, with a warning that says why.

The fused path has no second derivative: backward under ``create_graph=True``
raises and says to call ``set_fused("off")``. Under torch.func transforms
(grad, vmap, jacrev) the composite runs. When the incoming gradient is 1 the
saved gradient itself is handed back (no copy): writing into it in place
while the graph is retained is reported by autograd at the next backward.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from . import _standalone
from ._native import constant, times_upstream
from ._sweeps import (  # noqa: F401  (re-exported: the sweeps are reached as _fused.<name>)
    COMPILED,
    on,
    quality_sweep,
    sigmoid_binary_sweep,
    sigmoid_dense_checked,
    sigmoid_dense_sweep,
    sigmoid_index_sweep,
    sigmoid_terms,
    softmax_dense_sweep,
    softmax_index_finish,
    softmax_index_onehot,
    softmax_index_stage,
    softmax_index_sweep,
    varifocal_sweep,
)
from ._switches import MODES, get_fused, set_fused  # noqa: F401  (re-exported: losslab.set_fused)

CHUNK_NUMEL = 1 << 18  # the eager sweep works on chunks of about this many elements (1 MiB of float32)
RECOMPILE_LIMIT = 64  # graphs per sweep: dtypes, ranks and which options are on (hyperparameters are inputs)

_compiled: dict[Any, Callable] = {}  # sweep -> its torch.compile'd function (COMPILED's form where it has one)
_failed_signatures: dict[tuple, str] = {}  # (sweep, signature) whose compile failed: they run the eager sweep


SQUARE = 2.0  # the one nonzero value a graph is specialised on (see _hyperparameter)


def _hyperparameter(value: Any) -> Any:
    """A nonzero number (an integer gamma too) as a 0-d float64 tensor (a graph input, so a new value compiles
    nothing); 0 and everything else as it is (0 switches a term off: a structural choice, one graph for it).

    2 stays the number 2.0, a constant of its own graph: it is the focal losses' default gamma and the quality
    focal loss's beta, where m^2 is one product against exp(2 log m) for a tensor exponent (sigmoid focal on
    100,000 x 80, binary targets, compiled: 28 ms against 38 ms, 2 threads). One graph more for that value,
    none for any other."""
    if value is None or type(value) is bool:
        return value
    number = type(value) in (float, int) or isinstance(value, numbers.Real) and not isinstance(value, Tensor)
    if number and value != 0:  # a float or an int answers before the ABC's isinstance
        return SQUARE if value == SQUARE else constant(float(value), torch.float64)
    return value


def _compiled_call(entry: Any, fn: Callable, args: tuple) -> Any:
    """``fn(*args)`` compiled: its graph called directly where :mod:`losslab._standalone` has one for this
    layout (no dynamo frame, guards or wrappers: 130 to 190 us less a call), else through torch.compile."""
    out = _standalone.call(entry, fn, args)
    if out is not NotImplemented:
        return out
    compiled = _compiled.get(entry)
    if compiled is None:
        compiled = _compiled[entry] = torch.compile(fn, dynamic=True, fullgraph=True)
    return _with_recompile_limit(compiled, *args)


def _with_recompile_limit(compiled: Callable, *args: Any) -> Any:
    """``compiled(*args)`` with dynamo's recompile limit at RECOMPILE_LIMIT (read only when a graph compiles;
    set and restored directly: ``config.patch`` took 26 us a call, this 6)."""
    config = torch._dynamo.config
    previous = config.recompile_limit
    config.recompile_limit = max(previous, RECOMPILE_LIMIT)
    try:
        return compiled(*args)
    finally:
        config.recompile_limit = previous


def _signature(sweep: Callable, args: tuple) -> tuple:
    """What a compiled graph of ``sweep`` is specialised on: each argument's kind, dtype, rank and device."""
    parts = []
    for arg in args:
        if isinstance(arg, Tensor):
            parts.append((arg.dtype, arg.ndim, arg.device.type))
        elif isinstance(arg, float):  # 0.0 or SQUARE: the values a graph is specialised on
            parts.append(arg)
        else:
            parts.append(arg if arg is None or isinstance(arg, bool) else type(arg))
    return (sweep, tuple(parts))


def _failed(sweep: Callable, args: tuple) -> bool:
    """Whether compiling ``sweep`` failed before for this signature (the signature only built when one did)."""
    return bool(_failed_signatures) and _signature(sweep, args) in _failed_signatures


def _run_compiled(sweep: Callable, *args: Any) -> tuple[Tensor, Tensor] | None:
    """``sweep(*args)`` compiled (dynamic shapes, hyperparameters as tensors), or None (the eager sweep runs)
    where compiling this sweep for this signature failed, with one warning that says why."""
    args = tuple(_hyperparameter(a) for a in args)
    if _failed(sweep, args):
        return None
    try:
        out = _compiled_call(sweep, COMPILED.get(sweep, sweep), args)
    except Exception as error:  # no compiler, or an inductor failure: the eager sweep always works
        _failed_signatures[_signature(sweep, args)] = f"{type(error).__name__}: {error}"
        warnings.warn(f"losslab: compiling the fused loss failed ({type(error).__name__}: {error}); "
                      f"this sweep ({sweep.__name__}) runs eagerly for these argument types from now on",
                      RuntimeWarning, stacklevel=5)
        return None
    return out


def _rows(x: Tensor) -> int:
    per_row = max(1, x[0].numel()) if x.shape[0] else 1
    return max(1, CHUNK_NUMEL // per_row)


def _run(sweep: Callable, x: Tensor, batched: tuple[Tensor | None, ...], shared: tuple[Any, ...],
         reduce: bool, loss_shape: tuple[int, ...], compiled: bool | str = False) -> tuple[Tensor, Tensor]:
    """The loss (summed, or per element / position) and the gradient of the whole batch.

    ``batched`` tensors are split along dim 0 with the input (after broadcasting to the input's
    leading shape where they broadcast); ``shared`` arguments go to every call unchanged.
    """
    if compiled == "triton":
        out = _run_triton(sweep, x, batched, shared, reduce)
        if out is not None:
            return out
    elif compiled:
        out = _run_compiled(sweep, x, *batched, *shared, reduce)
        if out is not None:
            return out
    if x.ndim >= 3 and x.shape[0] and x[0].numel() > CHUNK_NUMEL:  # a row beyond a chunk: split positions too
        return _run_positions(sweep, x, batched, shared, reduce, loss_shape)
    rows = _rows(x)
    if rows >= x.shape[0]:
        return sweep(x, *batched, *shared, reduce)
    grad = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    parts = []
    for start in range(0, x.shape[0], rows):
        stop = min(start + rows, x.shape[0])
        chunk = [None if t is None else t[start:stop] for t in batched]
        part_loss, grad[start:stop] = sweep(x[start:stop], *chunk, *shared, reduce)
        parts.append(part_loss)
    return _assemble(parts, reduce, loss_shape), grad


def _assemble(parts: list[Tensor], reduce: bool, loss_shape: tuple[int, ...]) -> Tensor:
    if reduce:  # chunk sums added in float64: as accurate as one sum, whatever the number of chunks
        return torch.stack([part.double() for part in parts]).sum().to(parts[0].dtype)
    return torch.cat([part.reshape(-1) for part in parts]).reshape(loss_shape)


def _flat_positions(t: Tensor | None, x: Tensor) -> Tensor | None:
    """An (N, C, d1, ...) tensor as (N, C, L), an (N, d1, ...) one as (N, L): views where the strides allow."""
    if t is None:
        return None
    return t.reshape((x.shape[0], x.shape[1], -1) if t.ndim == x.ndim else (x.shape[0], -1))


def _run_positions(sweep: Callable, x: Tensor, batched: tuple[Tensor | None, ...], shared: tuple[Any, ...],
                   reduce: bool, loss_shape: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """The eager sweep over chunks of positions of each row: (1, C, L) slices of about CHUNK_NUMEL elements,
    so a batch of one large image needs no more memory than many small ones."""
    flat_x = _flat_positions(x, x)
    flat = [_flat_positions(t, x) for t in batched]
    grad = torch.empty(flat_x.shape, dtype=x.dtype, device=x.device)
    per_position = len(loss_shape) == x.ndim - 1
    out_shape = flat_x.shape[::2] if per_position else flat_x.shape
    out: Tensor | None = None
    step = max(1, CHUNK_NUMEL // max(1, x.shape[1]))
    parts = []
    for n in range(x.shape[0]):
        for start in range(0, flat_x.shape[2], step):
            where = (slice(n, n + 1), slice(None), slice(start, start + step))
            chunk = [None if t is None else t[where] if t.ndim == 3 else t[where[::2]] for t in flat]
            part_loss, grad[where] = sweep(flat_x[where], *chunk, *shared, reduce)
            if reduce:
                parts.append(part_loss)
            else:
                if out is None:  # the sweep's loss dtype (float32 for half-precision inputs)
                    out = torch.empty(out_shape, dtype=part_loss.dtype, device=x.device)
                out[where[::2] if per_position else where] = part_loss
    return (_assemble(parts, True, loss_shape) if reduce else out.view(loss_shape)), grad.view(x.shape)


def _per_class(t: Tensor | None, x: Tensor) -> Tensor | None:
    """The (C,) vector a spread weight was broadcast from; raises ValueError for any other weight."""
    if t is None:
        return None
    if x.ndim >= 2 and all(t.stride(d) == 0 for d in range(t.ndim) if d != 1):
        return t[(0, slice(None)) + (0,) * (t.ndim - 2)].contiguous()
    if x.ndim == 1 and t.stride(0) == 0:
        return t[:1].contiguous()
    raise ValueError("not a per-class weight")


def _run_triton(sweep: Callable, x: Tensor, batched: tuple[Tensor | None, ...], shared: tuple[Any, ...],
                reduce: bool) -> tuple[Tensor, Tensor] | None:
    """The Triton kernel of ``sweep``, or None where it has none (the sweep then runs as it is)."""
    from . import _gpu

    try:
        if sweep is sigmoid_dense_sweep or sweep is sigmoid_index_sweep or sweep is sigmoid_binary_sweep:
            t, valid, w, pw = batched
            return _gpu.sigmoid(x, t, valid, _per_class(w, x), _per_class(pw, x), *shared, reduce,
                                index=sweep is sigmoid_index_sweep)
        if sweep is softmax_index_sweep:
            return _gpu.softmax(x, *batched, *shared, reduce)
        if sweep is quality_sweep:
            y, valid, w = batched
            return _gpu.quality(x, y, valid, _per_class(w, x), *shared, reduce)
        if sweep is varifocal_sweep:
            q, w = batched
            return _gpu.varifocal(x, q, _per_class(w, x), *shared, reduce)
    except ValueError:  # a weight that is not per class: the sweep's own operations
        return None
    return None


def spread(t: Tensor | None, x: Tensor) -> Tensor | None:
    """A tensor broadcast over the input's shape (a view), so that it can be split along dim 0 with it."""
    if t is None:
        return None
    return t.broadcast_to(x.shape) if t.shape != x.shape else t


def _scale(denominator: Tensor | float | None, like: Tensor) -> Tensor:
    """1 / denominator as a 0-d tensor of the compute dtype on the input's device; a zero denominator divides by 1.

    A number becomes a tensor by a fill on the device (no host-to-device copy, which would wait on CUDA);
    a tensor stays where it is.
    """
    dtype = torch.float64 if like.dtype == torch.float64 else torch.float32
    if not isinstance(denominator, Tensor):
        value = float(denominator)
        value = 1.0 / value if value > 0 else 1.0
        return constant(value, dtype) if like.is_cpu else torch.full((), value, dtype=dtype, device=like.device)
    d = denominator.to(device=like.device, dtype=torch.float64).reshape(())
    return torch.where(d > 0, 1.0 / torch.where(d > 0, d, torch.ones_like(d)), torch.ones_like(d)).to(dtype)


class _FusedLoss(torch.autograd.Function):
    """Returns a precomputed loss; backward hands back the precomputed gradient."""

    @staticmethod
    def forward(ctx, input: Tensor, compute: Callable[[], tuple[Tensor, Tensor]], per_position: bool,
                fn: str) -> Tensor:
        loss, grad = compute()
        ctx.save_for_backward(grad)
        ctx.per_position, ctx.fn = per_position, fn
        return loss.to(input.dtype)

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, None, None, None]:
        if torch.is_grad_enabled():
            raise RuntimeError(f"{ctx.fn}: the fused path has no second derivative (create_graph=True); "
                               f"call losslab.set_fused('off') to differentiate the loss twice")
        (grad,) = ctx.saved_tensors
        return times_upstream(grad, grad_out, ctx.per_position), None, None, None


def fused(fn: str, input: Tensor, sweep: Callable, batched: tuple[Tensor | None, ...], shared: tuple[Any, ...],
          reduction: str, denominator: Tensor | float | None, per_position: bool = False,
          compiled: bool | str = False) -> Tensor:
    """The loss of ``input`` through ``sweep``, with its gradient attached (see the module docstring).

    ``batched`` tensors have the input's dim 0 (broadcast with :func:`spread` where needed): the
    eager sweep splits them with it.
    """
    reduce = reduction != "none"
    scale = _scale(denominator if reduction == "mean" else 1.0, input)
    loss_shape = tuple(input.shape[:1]) + tuple(input.shape[2:]) if per_position else tuple(input.shape)

    def compute() -> tuple[Tensor, Tensor]:
        return _run(sweep, input.detach(), batched, (scale, *shared), reduce, loss_shape, compiled)

    return _FusedLoss.apply(input, compute, per_position, fn)


def direct(fn: str, input: Tensor, sweep: Callable, batched: tuple[Tensor | None, ...], shared: tuple[Any, ...],
           reduction: str, denominator: float) -> Tensor | None:
    """:func:`fused` on the compiled path, for a plain call whose arguments are already checked: the sweep's graph
    for this layout (:mod:`losslab._standalone`) called directly, with the arguments the dispatcher would pass,
    so the same values as the dispatcher's graph. None where there is no such graph (it cannot be traced, or compiling
    failed for this signature): the dispatcher's path then runs, and warns where compiling fails. A sweep that
    also checks the call's values returns a third output, True where a value fails: None then too (the general
    path words the error).

    On 32 x 1,000 the dispatcher's own steps around the graph (preparing a Call, choosing, the general
    :func:`fused`) took about 180 us of a 640 us BCE call (2 threads; torch's whole BCE 440 us)."""
    reduce = reduction != "none"
    scale = _scale(denominator if reduction == "mean" else 1.0, input)
    args = (input.detach(), *batched, scale, *[_hyperparameter(a) for a in shared], reduce)
    if _failed(sweep, args):
        return None
    try:
        out = _standalone.call(sweep, COMPILED.get(sweep, sweep), args)
    except Exception:  # the dispatcher's path compiles it through torch.compile, or warns and runs it eagerly
        return None
    if out is NotImplemented:
        return None
    loss, grad, *check = out
    if check and bool(check[0]):  # a value the sweep's check refused: the general path explains
        return None
    return _FusedLoss.apply(input, lambda: (loss, grad), False, fn)


# ----------------------------------------------------------------------------
# which sweep: a dense target of 0s and 1s takes the binary one (the sweeps themselves: losslab._sweeps)


def _not_binary(t: Tensor) -> Tensor:
    return ((t != 0) & (t != 1)).any()


def binary(t: Tensor) -> bool:
    """Whether ``t`` holds only 0 and 1, in one compiled pass (2.1 ms on 100,000 x 80, 2 threads; the same
    comparisons eagerly took 11 ms). False where the check cannot compile (the general sweep then runs)."""
    try:
        return not bool(_compiled_call(_not_binary, _not_binary, (t,)))
    except Exception:  # no compiler: no check, the general sweep for any target
        return False
