"""Fused forward-backward: each loss and its gradient in one sweep over the logits, on CPU.

The composite implementation (:mod:`losslab._core`) is a chain of tensor
operations: autograd keeps its intermediates (six to eight tensors of the
logits' size for a focal loss) and runs a dozen elementwise passes backward.
Here a *sweep* computes the per-element loss and its analytic derivative
together; a custom autograd Function returns the loss, saves only the
derivative (already scaled by the reduction), and hands it back in backward,
multiplied by the incoming gradient only when that is not 1.

The sweep runs either compiled (torch.compile with dynamic shapes: inductor
writes one vectorised C++ loop, cached on disk) or eagerly in cache-sized
chunks (of rows, or of positions within a row when one row is larger than a
chunk), which bounds the temporaries. Which one runs, and when a loss takes
torch's own kernels instead, is :mod:`losslab._dispatch`'s choice.

Compiled, the hyperparameters (gamma, alpha, beta, smoothing) are inputs of
the graph (0-d tensors), not constants: a new value compiles nothing. A graph
is specialised only on the arguments' dtypes and ranks and on which terms are
on (a zero hyperparameter switches its term off), up to ``RECOMPILE_LIMIT``
graphs a sweep. Where compiling fails, that sweep falls back to the eager
sweep for that signature only, with a warning that says why.

The fused path has no second derivative: backward under ``create_graph=True``
raises and says to call ``set_fused("off")``. Under torch.func transforms
(grad, vmap, jacrev) the composite runs. When the incoming gradient is 1 the
saved gradient itself is handed back (no copy): writing into it in place
while the graph is retained is reported by autograd at the next backward.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ._native import focal_factor, power, times_upstream
from ._switches import MODES, get_fused, set_fused  # noqa: F401  (re-exported: losslab.set_fused)

CHUNK_NUMEL = 1 << 18  # the eager sweep works on chunks of about this many elements (1 MiB of float32)
RECOMPILE_LIMIT = 64  # graphs per sweep: dtypes, ranks and which options are on (hyperparameters are inputs)

_compiled: dict[Any, Callable] = {}  # sweep (or (sweep, "whole") for a staged sweep on half inputs) -> compiled
_failed_signatures: dict[tuple, str] = {}  # (sweep, signature) whose compile failed: they run the eager sweep


def _hyperparameter(value: Any) -> Any:
    """A nonzero float as a 0-d float64 tensor (a graph input, so a new value compiles nothing); 0.0 and
    everything else as it is (0.0 switches a term off: a structural choice, one graph for it)."""
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, int, Tensor)) and value != 0.0:
        return torch.tensor(float(value), dtype=torch.float64)
    return value


def on(value: Any) -> bool:
    """Whether a hyperparameter switches its term on: a tensor (nonzero by construction) or a truthy number."""
    return isinstance(value, Tensor) or bool(value)


def _signature(sweep: Callable, args: tuple) -> tuple:
    """What a compiled graph of ``sweep`` is specialised on: each argument's kind, dtype, rank and device."""
    parts = []
    for arg in args:
        if isinstance(arg, Tensor):
            parts.append((arg.dtype, arg.ndim, arg.device.type))
        elif isinstance(arg, float):
            parts.append(arg == 0.0)
        else:
            parts.append(arg if arg is None or isinstance(arg, bool) else type(arg))
    return (sweep, tuple(parts))


def _run_compiled(sweep: Callable, *args: Any) -> tuple[Tensor, Tensor] | None:
    """``sweep(*args)`` compiled (dynamic shapes, hyperparameters as tensors), or None (the eager sweep runs)
    where compiling this sweep for this signature failed, with one warning that says why."""
    args = tuple(_hyperparameter(a) for a in args)
    key = _signature(sweep, args)
    if key in _failed_signatures:
        return None
    stage, finish = STAGED.get(sweep, (sweep, None))
    entry: Any = sweep
    if finish is not None and args[0].dtype in (torch.float16, torch.bfloat16):
        stage, finish, entry = sweep, None, (sweep, "whole")
    try:
        compiled = _compiled.get(entry)
        if compiled is None:
            compiled = _compiled[entry] = torch.compile(stage, dynamic=True, fullgraph=True)
        with torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT):
            out = compiled(*args)
    except Exception as error:  # no compiler, or an inductor failure: the eager sweep always works
        _failed_signatures[key] = f"{type(error).__name__}: {error}"
        warnings.warn(f"losslab: compiling the fused loss failed ({type(error).__name__}: {error}); "
                      f"this sweep ({sweep.__name__}) runs eagerly for these argument types from now on",
                      RuntimeWarning, stacklevel=5)
        return None
    return out if finish is None else finish(out, args)


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
        if sweep is sigmoid_dense_sweep or sweep is sigmoid_index_sweep:
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
        return torch.full((), 1.0 / value if value > 0 else 1.0, dtype=dtype, device=like.device)
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


# ----------------------------------------------------------------------------
# the sweeps: per-element loss l and dl/dx, in float32 (or float64) inside, gradient in the input's dtype


def _tiny(t: Tensor) -> float:
    return torch.finfo(t.dtype).tiny


def _finish(loss: Tensor, grad: Tensor, valid: Tensor | None, scale: Tensor, reduce: bool,
            out_dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Mask, scale by the reduction, and sum (or not); the gradient in the input's dtype."""
    if valid is not None:
        loss = torch.where(valid, loss, torch.zeros_like(loss))
        grad = torch.where(valid, grad, torch.zeros_like(grad))
    grad = (grad * scale.to(grad.dtype)).to(out_dtype)
    return ((loss.sum() * scale.to(loss.dtype)) if reduce else loss), grad


def _compute(x: Tensor) -> Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def sigmoid_parts(x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """sigma(x), sigma(-x), log sigma(x), log sigma(-x) from one exp and one log1p, each accurate."""
    e = torch.exp(-x.abs())
    r = 1.0 / (1.0 + e)
    nonneg = x >= 0
    p = torch.where(nonneg, r, e * r)
    q = torch.where(nonneg, e * r, r)
    a = torch.log1p(e)
    return p, q, torch.clamp(x, max=0.0) - a, -torch.clamp(x, min=0.0) - a


def sigmoid_terms(x: Tensor, t: Tensor, w: Tensor | None, pw: Tensor | None, alpha: float | None, gamma: float,
                  smoothing: float, binary: bool = False) -> tuple[Tensor, Tensor]:
    """-w a_t (1 - p_t)^gamma [pw t log p + (1 - t) log(1 - p)] per element, and its derivative in x.

    The formula of :func:`losslab._native.sigmoid_focal_terms`, evaluated for a sweep: from one exp and one
    log1p (:func:`sigmoid_parts`), where the native node takes torch's kernels (fewer operations, more
    transcendentals: on 100,000 x 80 compiled, this form took 11 ms against 29 ms for softplus and lerp).
    ``binary``: t is 0 or 1 (one-hot of class indices), so 1 - p_t is p or 1 - p, whose logarithm is already
    known, and d(1 - p_t)/dx / (1 - p_t) is 1 - p or -p: the focal factor costs one exp, no log, no division.
    """
    if on(smoothing):
        t = t * (1.0 - smoothing) + 0.5 * smoothing
        binary = False
    p, q, log_p, log_q = sigmoid_parts(x)  # p and 1 - p
    pos = t if pw is None else t * pw
    loss = -(pos * log_p + (1.0 - t) * log_q)
    grad = (1.0 - t) * p - pos * q
    if on(gamma):
        m = p * (1.0 - t) + q * t  # 1 - p_t
        tiny = _tiny(m)
        if binary:
            positive = t > 0.5
            if isinstance(gamma, Tensor):  # a compiled sweep's hyperparameter: m^gamma = exp(gamma log m)
                factor = torch.exp(gamma * torch.where(positive, log_q, log_p).clamp_min(math.log(tiny)))
            else:
                factor = power(m.clamp_min(tiny), gamma)
            # gamma m^(gamma - 1) dm/dx = gamma m^gamma (dm/dx) / m, and (dm/dx) / m = 1 - p (t = 0) or -p (t = 1)
            dfactor = torch.where(m > tiny, gamma * factor * torch.where(positive, -p, q), torch.zeros_like(m))
        else:
            mc = m.clamp_min(tiny)
            factor = power(mc, gamma)
            # d m^gamma / dx = gamma m^(gamma - 1) dm/dx, with m^(gamma - 1) = m^gamma / m (one power, not two)
            dfactor = torch.where(m > tiny, (gamma * factor / mc) * (p * q * (1.0 - 2.0 * t)), torch.zeros_like(m))
        loss, grad = factor * loss, dfactor * loss + factor * grad
    if alpha is not None:
        a = alpha * t + (1.0 - alpha) * (1.0 - t)
        loss, grad = a * loss, a * grad
    if w is not None:
        loss, grad = w * loss, w * grad
    return loss, grad


def sigmoid_dense_sweep(x: Tensor, t: Tensor, valid: Tensor | None, w: Tensor | None, pw: Tensor | None,
                        scale: Tensor, alpha: float | None, gamma: float, smoothing: float,
                        reduce: bool) -> tuple[Tensor, Tensor]:
    xc = _compute(x)
    tc = t.to(xc.dtype)
    if valid is not None:
        tc = torch.where(valid, tc, torch.zeros_like(tc))
    loss, grad = sigmoid_terms(xc, tc, None if w is None else w.to(xc.dtype), None if pw is None else pw.to(xc.dtype),
                               alpha, gamma, smoothing)
    return _finish(loss, grad, valid, scale, reduce, x.dtype)


def sigmoid_index_sweep(x: Tensor, index: Tensor, kept: Tensor | None, w: Tensor | None, pw: Tensor | None,
                        scale: Tensor, alpha: float | None, gamma: float, smoothing: float,
                        reduce: bool) -> tuple[Tensor, Tensor]:
    xc = _compute(x)
    classes = torch.arange(x.shape[1], device=x.device).view((1, -1) + (1,) * (x.ndim - 2))
    t = (index.unsqueeze(1) == classes).to(xc.dtype)
    valid = None if kept is None else kept.unsqueeze(1)
    loss, grad = sigmoid_terms(xc, t, None if w is None else w.to(xc.dtype), None if pw is None else pw.to(xc.dtype),
                               alpha, gamma, smoothing, binary=True)
    return _finish(loss, grad, valid, scale, reduce, x.dtype)


def _class_view(v: Tensor, x: Tensor) -> Tensor:
    return v.to(x.dtype).view((1, -1) + (1,) * (x.ndim - 2))


def _adjust(xc: Tensor, onehot: Tensor | None, a: Tensor | None, b: Tensor | None,
            margin: Tensor | None) -> Tensor:
    """z = a x + b - m_y onehot(y): :func:`losslab._forms.adjusted` (the long-tail losses' logits) in a sweep,
    elementwise; ``margin`` is m_y per position (gathered before the sweep: a gather inside a compiled loop
    would make it a scalar loop)."""
    if a is not None:
        xc = xc * _class_view(a, xc)
    if b is not None:
        xc = xc + _class_view(b, xc)
    if margin is not None:
        xc = xc - torch.where(onehot, margin.to(xc.dtype).unsqueeze(1), 0.0)
    return xc


def softmax_index_stage(x: Tensor, index: Tensor, kept: Tensor | None, margin: Tensor | None, scale: Tensor,
                        class_weight: Tensor | None, gamma: float, a: Tensor | None, b: Tensor | None,
                        reduce: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The loss and what the gradient is made of: (loss, e, s, c) with e = exp(z - max z) (logits-sized: it
    becomes the gradient in place), s = sum_c e_c and c = w_y G(p_y) times the reduction's scale per position
    (0 where not kept), p = e / s, z = a x + b - m_y onehot(y) (``margin``: m_y per position)."""
    xc = _compute(x)
    classes = torch.arange(x.shape[1], device=x.device).view((1, -1) + (1,) * (x.ndim - 2))
    onehot = index.unsqueeze(1) == classes
    z = _adjust(xc, onehot, a, b, margin)
    top = z.amax(1, keepdim=True)
    e = torch.exp(z - top)
    total = e.sum(1, keepdim=True)
    lp = (z.gather(1, index.unsqueeze(1)) - top - torch.log(total)).squeeze(1)  # log p_y
    if on(gamma):
        factor, coef = focal_factor(lp, gamma)
        loss = -factor * lp
    else:
        loss, coef = -lp, torch.ones_like(lp)
    if class_weight is not None:
        wy = class_weight.to(xc.dtype)[index]
        loss, coef = loss * wy, coef * wy
    if kept is not None:
        loss = torch.where(kept, loss, torch.zeros_like(loss))
        coef = torch.where(kept, coef, torch.zeros_like(coef))
    scale = scale.to(xc.dtype)
    return (loss.sum() * scale if reduce else loss), e, total, coef * scale


def softmax_index_finish(staged: tuple[Tensor, Tensor, Tensor, Tensor], index: Tensor, a: Tensor | None,
                         out_dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """(loss, gradient) from :func:`softmax_index_stage`: d/dx_c = a_c (p_c - [c = y]) c_n, in e's storage."""
    loss, e, total, coef = staged
    grad = e.mul_(coef.unsqueeze(1) / total)
    grad.scatter_add_(1, index.unsqueeze(1), -coef.unsqueeze(1))
    if a is not None:
        grad.mul_(_class_view(a, grad))
    return loss, grad.to(out_dtype)


def softmax_index_sweep(x: Tensor, index: Tensor, kept: Tensor | None, margin: Tensor | None, scale: Tensor,
                        class_weight: Tensor | None, gamma: float, a: Tensor | None, b: Tensor | None,
                        reduce: bool) -> tuple[Tensor, Tensor]:
    """-w_y (1 - p_y)^gamma log p_y per position, p = softmax(z), z = a x + b - m_y onehot(y) (``margin``: m_y
    per position); d/dx_c = a_c (p_c - [c = y]) w_y G(p_y).

    Compiled, only :func:`softmax_index_stage` is one graph (each exponential computed once, stored in the
    gradient's buffer); the gradient is finished in place (:data:`STAGED`).
    """
    staged = softmax_index_stage(x, index, kept, margin, scale, class_weight, gamma, a, b, reduce)
    return softmax_index_finish(staged, index, a, x.dtype)


def _finish_softmax_index(staged: tuple[Tensor, ...], args: tuple) -> tuple[Tensor, Tensor]:
    x, index, a = args[0], args[1], args[7]
    return softmax_index_finish(staged, index, a, x.dtype)


# sweep -> (the part compiled as one graph, what finishes its result eagerly from (result, arguments)): where
# inductor would compute an exponential twice (the softmax's sum, then the gradient), the compiled stage stores
# it once in the gradient's buffer; half-precision inputs compile the whole sweep (the float32 buffer would
# double their gradient's memory)
STAGED: dict[Callable, tuple[Callable, Callable]] = {softmax_index_sweep: (softmax_index_stage,
                                                                           _finish_softmax_index)}


def softmax_dense_sweep(x: Tensor, q: Tensor, scale: Tensor, class_weight: Tensor | None, gamma: float,
                        a: Tensor | None, b: Tensor | None, reduce: bool) -> tuple[Tensor, Tensor]:
    """-sum_c q_c w_c (1 - p_c)^gamma log p_c per position, p = softmax(a x + b);
    d/dx_j = a_j (p_j sum_c h_c - h_j), h_c = q_c w_c G(p_c)."""
    xc = _compute(x)
    log_p = torch.log_softmax(_adjust(xc, None, a, b, None), dim=1)
    qc = q.to(xc.dtype)
    if class_weight is not None:
        qc = qc * _class_view(class_weight, xc)
    if on(gamma):
        factor, g = focal_factor(log_p, gamma)
        terms, h = -qc * factor * log_p, qc * g
    else:
        terms, h = -qc * log_p, qc
    grad = torch.exp(log_p) * h.sum(1, keepdim=True) - h
    if a is not None:
        grad = grad * _class_view(a, xc)
    return _finish(terms.sum(1), grad, None, scale, reduce, x.dtype)


def quality_sweep(x: Tensor, y: Tensor, valid: Tensor | None, w: Tensor | None, scale: Tensor, beta: float,
                  reduce: bool) -> tuple[Tensor, Tensor]:
    """-|y - s|^beta BCE(x, y) per element, and its derivative."""
    xc = _compute(x)
    yc = y.to(xc.dtype)
    p, q, log_p, log_q = sigmoid_parts(xc)
    loss = -(yc * log_p + (1.0 - yc) * log_q)
    grad = (1.0 - yc) * p - yc * q
    if on(beta):
        d = yc * q - (1.0 - yc) * p  # y - sigma, exact for hard labels
        ad = d.abs()
        tiny = _tiny(ad)
        adc = ad.clamp_min(tiny)
        factor = power(adc, beta)
        dfactor = torch.where(ad > tiny, (-beta * factor / adc) * torch.sign(d) * p * q, torch.zeros_like(ad))
        loss, grad = factor * loss, dfactor * loss + factor * grad
    if w is not None:
        loss, grad = w.to(xc.dtype) * loss, w.to(xc.dtype) * grad
    return _finish(loss, grad, valid, scale, reduce, x.dtype)


def varifocal_sweep(x: Tensor, q: Tensor, w: Tensor | None, scale: Tensor, alpha: float, gamma: float,
                    iou_weighted: bool, reduce: bool) -> tuple[Tensor, Tensor]:
    """q > 0: -q BCE(x, q) (q-weighted); q = 0: -alpha p^gamma log(1 - p); and the derivative."""
    xc = _compute(x)
    qc = q.to(xc.dtype)
    p, r, log_p, log_r = sigmoid_parts(xc)
    softplus = -log_r  # -log(1 - p)
    pos_loss = -(qc * log_p) + (1.0 - qc) * softplus
    pos_grad = (1.0 - qc) * p - qc * r
    if iou_weighted:
        pos_loss, pos_grad = qc * pos_loss, qc * pos_grad
    tiny = _tiny(p)
    pc = p.clamp_min(tiny)
    factor = power(pc, gamma)
    dfactor = torch.where(p > tiny, gamma * factor * r, torch.zeros_like(p))  # d p^gamma / dx = gamma p^gamma (1 - p)
    neg_loss = alpha * factor * softplus
    neg_grad = alpha * (dfactor * softplus + factor * p)
    positive = qc > 0
    loss = torch.where(positive, pos_loss, neg_loss)
    grad = torch.where(positive, pos_grad, neg_grad)
    if w is not None:
        loss, grad = w.to(xc.dtype) * loss, w.to(xc.dtype) * grad
    return _finish(loss, grad, None, scale, reduce, x.dtype)
