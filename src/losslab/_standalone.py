"""Compiled sweeps called without dynamo: one inductor graph per argument layout, traced once.

A torch.compile'd function's call goes through dynamo's frame hook, its guards and AOTAutograd's wrappers: on
this project's 2-vCPU machine that cost 130 to 190 us a call beyond the kernel (the BCE sweep on 1,000
elements: 200 us through torch.compile, 48 us called directly), as much as torch's whole BCE on 4,096 x 10.

A sweep is a pure function of its tensors, its hyperparameters (0-d tensors) and a few structural constants
(None, 0.0, booleans), so what dynamo's guards would check is known before the call: each tensor's dtype,
device, which dimensions have size 0 or 1 (dynamic shapes specialise them), which strides are 0 (a broadcast
weight), and the constants; and one choice inductor makes by size: it sums more than 4,096 float32 values in
blocks (cascade summation) and fewer straight, so the key also says which of a sweep's sums (over all
elements, along each dimension, over all but the class dimension) are longer than that. Keyed by these, the
sweep is traced once with symbolic shapes (``make_fx``; without duck sizing, so sizes equal at tracing do not
become one symbol) and compiled by inductor (``torch._inductor.standalone_compile``) without its on-disk graph
cache, which would hand back a graph compiled for other sizes (the kernels' own cache, by source, still
spares the C++ compile). The compiled graph checks its inputs' sizes and strides itself: a layout the key
does not tell apart raises before any kernel runs, and that key goes back to torch.compile. So does a sweep
that cannot be traced this way, or whose trace put conditions on the sizes, and a sweep past :data:`LIMIT`
layouts. The graph is called through the inductor module inside the compiled artifact, without its runtime
wrappers (:func:`_inner`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

LIMIT = 64  # layouts (graphs) a sweep; beyond, torch.compile takes the new ones
BLOCK = 4096  # inductor's CPU code sums more float32 values than this in blocks (codegen/cpp.py, chunk_size)

_Graph = tuple[tuple[int, ...], Callable, Callable | None]  # tensor positions, the artifact, its inner graph
_graphs: dict[tuple, _Graph | None] = {}  # key -> its graph, or None (torch.compile)
_keys: dict[tuple, tuple | None] = {}  # the exact sizes and strides of a call -> its key (a training loop repeats them)
KEYS = 4096  # exact layouts remembered; beyond, the memo starts again
_lock = threading.Lock()
_MISSING = object()


def _key_of(entry: Any, args: tuple) -> tuple | None:
    """:func:`key`, looked up by the arguments' exact dtypes, devices, sizes and strides (and constants): 4.6 us
    against 16 us for the key itself, a BCE sweep's ten arguments (one thread, a hot loop)."""
    try:
        exact = (entry, *[(a.dtype, a.device, a.shape, a.stride()) if isinstance(a, Tensor) else (type(a), a)
                          for a in args])
        found = _keys.get(exact, _MISSING)
    except TypeError:  # an unhashable argument: no graph for it (key says so)
        return key(entry, args)
    if found is _MISSING:
        if len(_keys) >= KEYS:
            _keys.clear()
        found = _keys[exact] = key(entry, args)
    return found


def key(entry: Any, args: tuple) -> tuple | None:
    """What a graph of ``entry`` is specialised on (see the module docstring); None for an argument that is
    neither a tensor nor a structural constant."""
    parts: list[Any] = [entry]
    for arg in args:
        if isinstance(arg, Tensor):
            parts.append((arg.dtype, arg.device.type, tuple(min(n, 2) for n in arg.shape),
                          tuple(s == 0 for s in arg.stride()), _summed_in_blocks(arg)))
        elif arg is None or isinstance(arg, (bool, float)):
            parts.append((type(arg), arg))
        else:
            return None
    return tuple(parts)


def _summed_in_blocks(t: Tensor) -> tuple[bool, ...]:
    """Which of the sums a sweep takes over ``t``'s elements exceed :data:`BLOCK` elements: all of them, along
    each dimension, and over all but the class dimension (1). Inductor sums more than that many float32 values in
    blocks (cascade summation) and fewer straight, choosing by the sizes at compile time."""
    numel = t.numel()
    per_class = numel // t.shape[1] if t.ndim >= 2 and t.shape[1] else numel
    return (numel > BLOCK, per_class > BLOCK, *(n > BLOCK for n in t.shape))


def call(entry: Any, fn: Callable, args: tuple) -> Any:
    """``fn(*args)`` through the graph of this layout (traced and compiled at its first call), as a tuple; or
    NotImplemented where there is none (the caller runs torch.compile)."""
    layout = _key_of(entry, args)
    if layout is None:
        return NotImplemented
    graph = _graphs.get(layout, _MISSING)
    if graph is _MISSING:
        with _lock:
            graph = _graphs.get(layout, _MISSING)
            if graph is _MISSING:
                graph = _graphs[layout] = _compile(entry, fn, args)
    if graph is None:
        return NotImplemented
    positions, compiled, inner = graph
    try:
        if inner is not None and not torch.is_autocast_enabled("cpu"):
            out = inner([args[i] for i in positions])
        else:
            out = compiled(*[args[i] for i in positions])
    except AssertionError:  # sizes or strides the key does not tell apart: torch.compile from now on
        _graphs[layout] = None
        return NotImplemented
    return tuple(out) if isinstance(out, (list, tuple)) else out


def _compile(entry: Any, fn: Callable, args: tuple) -> _Graph | None:
    """The graph of ``fn`` for the layout of ``args``, or None (torch.compile then)."""
    if sum(1 for k, v in _graphs.items() if k[0] == entry and v is not None) >= LIMIT:
        return None
    positions = tuple(i for i, arg in enumerate(args) if isinstance(arg, Tensor))
    constants = tuple(None if isinstance(arg, Tensor) else arg for arg in args)  # no reference to the tensors

    def traced(*tensors: Tensor) -> Any:
        full = list(constants)
        for i, tensor in zip(positions, tensors, strict=True):
            full[i] = tensor
        return fn(*full)

    examples = _distinct([args[i] for i in positions])
    try:
        import torch._inductor
        from torch.fx.experimental import _config as fx_config
        from torch.fx.experimental.proxy_tensor import make_fx

        # inductor's on-disk graph cache would hand back a graph compiled for other sizes (it keeps no record
        # of the sizes it chose the summation by): bypassed, its kernels' cache (by source) still spares the
        # C++ compile; without that cache, standalone_compile logs that it cannot save an artifact
        quiet = logging.getLogger("torch._inductor.standalone_compile")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            with fx_config.patch(use_duck_shape=False), torch.no_grad(), \
                    torch._inductor.config.patch(fx_graph_cache=False):
                gm = make_fx(traced, tracing_mode="symbolic")(*examples)
                compiled = torch._inductor.standalone_compile(gm, examples, dynamic_shapes="from_graph")
        finally:
            quiet.setLevel(level)
        if _guarded(gm):
            return None
    except Exception:  # not traceable this way, or inductor failed: torch.compile (which warns if it fails too)
        return None
    from torch._dynamo.utils import counters

    counters["losslab"]["graphs"] += 1
    return positions, compiled, _inner(compiled, examples)


def _distinct(tensors: list[Tensor]) -> list[Tensor]:
    """The example tensors, each repeated one (by object or storage) replaced by a copy: ``make_fx`` traces
    every use of one tensor object onto one input, so a graph traced where two arguments were one tensor (two
    hyperparameters of one value: :func:`losslab._native.constant` hands out one tensor per value, say a scale
    of 1 and gamma = 1 in float64) would read the first for both at every later call, whatever their values."""
    seen: set[int] = set()
    out = []
    for t in tensors:
        marks = {id(t)} | ({t.untyped_storage().data_ptr()} if t.numel() else set())
        out.append(t.clone() if marks & seen else t)
        seen |= marks
    return out


def _inner(compiled: Callable, examples: list[Tensor]) -> Callable | None:
    """The inductor graph inside ``standalone_compile``'s artifact: its ``call``, which takes the tensors as a
    list and returns the outputs as the artifact does, or None (the artifact is called then).

    The artifact wraps it in AOTAutograd's runtime wrappers (which replay input mutations and output aliases and
    switch autocast off) and a context that keeps dynamo out: 25 to 40 us a call on the BCE sweep of 32 x 1,000
    (2 threads), a graph of about 130 us. A sweep mutates no input and returns fresh tensors, and the call is
    made outside dynamo; so the inner graph is used where it mutates nothing and gives, called on the example
    tensors, exactly the artifact's outputs (its dtypes, sizes, strides and values); and not under autocast."""
    try:
        from torch._inductor.output_code import CompiledFxGraph

        graph = _find(compiled, CompiledFxGraph)
        if graph is None or graph.mutated_inputs or not callable(graph.current_callable):
            return None
        inner = graph.current_callable
        with torch.no_grad():
            expected, got = compiled(*examples), inner(list(examples))
        if not isinstance(got, (list, tuple)):
            return None
        if not isinstance(expected, (list, tuple)):  # one output, which the artifact unpacks
            return (lambda tensors: inner(tensors)[0]) if len(got) == 1 and _same(expected, got[0]) else None
        if len(expected) != len(got) or not all(_same(a, b) for a, b in zip(expected, got)):
            return None
        return inner
    except Exception:  # an inductor whose artifact is built otherwise: call the artifact
        return None


def _same(a: Any, b: Any) -> bool:
    if not (isinstance(a, Tensor) and isinstance(b, Tensor)):
        return False
    return a.dtype == b.dtype and a.shape == b.shape and a.stride() == b.stride() \
        and bool(torch.isclose(a, b, rtol=0, atol=0, equal_nan=True).all())


def _find(root: Any, kind: type, budget: int = 256) -> Any:
    """The first object of type ``kind`` reachable from ``root`` through closures, ``__dict__``, ``__wrapped__``,
    ``func`` and sequences (breadth first, at most ``budget`` objects)."""
    queue, seen = [root], set()
    while queue and len(seen) < budget:
        obj = queue.pop(0)
        if id(obj) in seen or obj is None or isinstance(obj, (str, bytes, int, float, Tensor, type)):
            continue
        seen.add(id(obj))
        if isinstance(obj, kind):
            return obj
        cells = getattr(obj, "__closure__", None) or ()
        for cell in cells:
            try:
                queue.append(cell.cell_contents)
            except ValueError:  # an empty cell
                pass
        if isinstance(obj, (list, tuple)):
            queue.extend(obj)
        queue.extend(getattr(obj, name) for name in ("__wrapped__", "func") if hasattr(obj, name))
        attributes = getattr(obj, "__dict__", None)
        if isinstance(attributes, dict):
            queue.extend(attributes.values())
    return None


def _guarded(gm: torch.fx.GraphModule) -> bool:
    """Whether tracing put guards on the symbolic sizes that the graph does not check itself (it would hold
    for some sizes only; inductor's own choice by size, the summation, is in the key). Sizes found equal (a
    target's dimensions and the input's, which broadcasting or a gather unifies) are checked: the graph asserts
    every input's sizes in terms of one symbol for them; a guard that holds once they are equal (s <= s) is no
    condition."""
    import sympy

    for node in gm.graph.nodes:
        value = node.meta.get("val") if node.op == "placeholder" else None
        if isinstance(value, Tensor) and getattr(value, "fake_mode", None) is not None:
            shape_env = value.fake_mode.shape_env
            if shape_env is None:
                return True
            return any(_resolved(guard.expr, shape_env.replacements) is not sympy.true for guard in shape_env.guards)
    return False


def _resolved(expr: Any, replacements: dict) -> Any:
    """``expr`` with each size replaced by its representative (the replacements chain: s9 -> s46, s96 -> s9)."""
    for _ in range(len(replacements) + 1):
        replaced = expr.xreplace(replacements)
        if replaced == expr:
            return replaced
        expr = replaced
    return expr
