"""The fused forward-backward path (losslab._fused) equals the composite implementation, values and gradients.

* The sweeps, called directly in float64, against autograd of the composite
  (losslab._core's elementwise forms, or the public function under
  set_fused("off")) and the float64 NumPy references, over many
  hyperparameters, both (N, C) and (N, C, d1, d2) shapes, and saturated logits.
* The public functions under set_fused("eager") against set_fused("off") and
  the references (finite differences of the reference for the gradients): the
  fused path really ran (a "Fused" grad_fn) or really did not, with several
  chunks as well as one.
* Where the fused path must step aside (no gradient wanted, probabilities, a
  weight or target needing a gradient, another device, torch.compile tracing),
  double backward, retained graphs, upstream gradients other than 1, unchanged
  inputs and half precision.
* The compiled sweep on one case per sweep (each distinct sweep and
  hyperparameters compiles once, then a second batch size reuses the graph),
  and set_fused's modes and fallbacks (LOSSLAB_COMPILE=0, compile failures).

Every test starts and ends in set_fused("auto") (fixture below); module
globals are changed through monkeypatch only.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters

import losslab
from losslab import _core, _dispatch, _fused, _standalone

from . import reference
from .helpers import TOLERANCES, assert_close_np, class_indices, gen, logits, soft_targets
from .reference import REFERENCES

F64 = torch.float64
F32 = torch.float32
C = 4
REDUCTIONS = ("none", "mean", "sum")
SHAPES = {"NC": (6, C), "NCHW": (2, C, 2, 3)}
SIGMOID_GAMMAS = (0.0, 0.5, 1.0, 2.0, 3.5)
SATURATED = (1e4, -1e4, 100.0, -100.0)

pytestmark = [pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"),
              pytest.mark.usefixtures("fused_auto")]


@pytest.fixture
def fused_calls(monkeypatch):
    """The names of the losses that went through _fused.fused (the entry point of the fused path)."""
    calls: list[str] = []
    original = _fused.fused

    def spy(fn, *args, **kwargs):
        calls.append(fn)
        return original(fn, *args, **kwargs)

    monkeypatch.setattr(_fused, "fused", spy)
    return calls


SWEEPS = ("sigmoid_dense_sweep", "sigmoid_index_sweep", "softmax_index_sweep", "softmax_dense_sweep",
          "quality_sweep", "varifocal_sweep")


@pytest.fixture
def sweep_calls(monkeypatch):
    """How many times each sweep ran (one call per chunk in the eager sweep)."""
    calls = dict.fromkeys(SWEEPS, 0)
    for name in SWEEPS:
        original = getattr(_fused, name)

        def counted(*args, _name=name, _original=original):
            calls[_name] += 1
            return _original(*args)

        monkeypatch.setattr(_fused, name, counted)
    return calls


# ----------------------------------------------------------------------------
# helpers


def tolerance(dtype: torch.dtype) -> dict:
    return TOLERANCES[dtype]


def positions(shape: tuple[int, ...]) -> tuple[int, ...]:
    return shape[:1] + shape[2:]


def along_classes(v: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """A length-C vector viewed along dim 1 of an input of ``shape``."""
    return v.reshape((-1,) + (1,) * (len(shape) - 2))


def soft_labels(shape, seed: int, dtype=F64) -> torch.Tensor:
    """Soft labels in [0, 1] with some exact 0s and 1s."""
    t = torch.rand(shape, generator=gen(seed), dtype=F64)
    pick = torch.rand(shape, generator=gen(seed + 1))
    t = torch.where(pick < 0.2, torch.zeros_like(t), torch.where(pick > 0.8, torch.ones_like(t), t))
    return t.to(dtype)


def hard_labels(shape, seed: int) -> torch.Tensor:
    return (torch.rand(shape, generator=gen(seed)) < 0.4).to(F64)


def kept_mask(shape, seed: int) -> torch.Tensor:
    keep = torch.rand(shape, generator=gen(seed)) < 0.7
    keep.view(-1)[0] = False
    keep.view(-1)[1] = True
    return keep


def mark(t: torch.Tensor, keep: torch.Tensor | None, value) -> torch.Tensor:
    """``t`` with ``value`` (an ignore_index) where ``keep`` is False."""
    return t if keep is None else torch.where(keep, t, torch.full_like(t, value))


def quality_scores(shape, seed: int) -> torch.Tensor:
    """Varifocal / quality targets: 0 (negatives) or a score in (0, 1], some exactly 1."""
    s = torch.rand(shape, generator=gen(seed), dtype=F64) * 0.9 + 0.05
    pick = torch.rand(shape, generator=gen(seed + 1))
    return torch.where(pick < 0.5, torch.zeros_like(s), torch.where(pick > 0.9, torch.ones_like(s), s))


def to_np(value):
    if isinstance(value, torch.Tensor):
        return value.detach().double().numpy() if value.dtype.is_floating_point else value.numpy()
    if isinstance(value, tuple):
        return tuple(to_np(v) for v in value)
    return value


def finite_difference(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central differences of a scalar NumPy function, element by element."""
    grad = np.empty_like(x)
    for i in range(x.size):
        step = np.zeros(x.size)
        step[i] = h
        step = step.reshape(x.shape)
        grad.flat[i] = (f(x + step) - f(x - step)) / (2 * h)
    return grad


class Result(NamedTuple):
    value: torch.Tensor
    grad: torch.Tensor  # d/dx of sum(out * upstream) with a fixed non-uniform upstream (0.5 for a scalar)
    plain_grad: torch.Tensor  # out.backward() (a scalar) or out.sum().backward()
    grad_fn: str


def upstream_for(out: torch.Tensor) -> torch.Tensor:
    return torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).reshape(out.shape)


def evaluate(fn, x: torch.Tensor, *args, **kwargs) -> Result:
    """Value, both input gradients, and the grad_fn's class name of ``fn(x, *args, **kwargs)`` (two forwards)."""
    leaf = x.detach().clone().requires_grad_(True)
    out = fn(leaf, *args, **kwargs)
    name = type(out.grad_fn).__name__
    (out * upstream_for(out)).sum().backward()
    plain = x.detach().clone().requires_grad_(True)
    out2 = fn(plain, *args, **kwargs)
    (out2 if out2.ndim == 0 else out2.sum()).backward()
    return Result(out.detach(), leaf.grad, plain.grad, name)


def assert_results_close(got: Result, want: Result, dtype: torch.dtype) -> None:
    assert got.value.dtype == want.value.dtype == dtype
    assert got.grad.dtype == want.grad.dtype == dtype
    torch.testing.assert_close(got.value, want.value, **tolerance(dtype), msg=lambda m: f"value: {m}")
    torch.testing.assert_close(got.grad, want.grad, **tolerance(dtype), msg=lambda m: f"gradient (upstream): {m}")
    torch.testing.assert_close(got.plain_grad, want.plain_grad, **tolerance(dtype), msg=lambda m: f"gradient: {m}")


def fused_and_composite(fn, x, *args, **kwargs) -> tuple[Result, Result]:
    losslab.set_fused("eager")
    fused = evaluate(fn, x, *args, **kwargs)
    losslab.set_fused("off")
    composite = evaluate(fn, x, *args, **kwargs)
    losslab.set_fused("auto")
    return fused, composite


# ----------------------------------------------------------------------------
# 1. the sweeps, un-compiled, float64, against autograd of the composite and the references


def check_sweep(call, composite, x: torch.Tensor, scale: torch.Tensor, expected: np.ndarray) -> None:
    """``call(x, reduce)`` -> (loss, grad) against ``composite(x)`` (per element / position) and a reference.

    The sweep's gradient is that of sum(loss) * scale for both reduce values; its loss is
    sum(loss) * scale when reducing, the unscaled per-element loss otherwise.
    """
    dtype = x.dtype
    xr = x.detach().clone().requires_grad_(True)
    per_element = composite(xr)
    (want_grad,) = torch.autograd.grad(per_element.sum() * scale.to(per_element.dtype), xr)
    assert torch.isfinite(want_grad).all(), "non-finite composite gradient"
    for reduce in (False, True):
        loss, grad = call(x.detach(), reduce)
        want = (per_element.sum() * scale.to(per_element.dtype)) if reduce else per_element
        assert grad.dtype == dtype
        assert torch.isfinite(grad).all(), f"reduce={reduce}: non-finite fused gradient"
        torch.testing.assert_close(loss, want.detach(), **tolerance(dtype),
                                   msg=lambda m, r=reduce: f"reduce={r} loss: {m}")
        torch.testing.assert_close(grad, want_grad, **tolerance(dtype),
                                   msg=lambda m, r=reduce: f"reduce={r} gradient: {m}")
        ref = np.sum(expected) * float(scale) if reduce else expected
        assert_close_np(loss, ref, dtype)


SIGMOID_OPTIONS = {
    "plain": {},
    "smoothing": {"smoothing": 0.1},
    "weights": {"weights": True},
    "masked": {"masked": True},
    "all": {"smoothing": 0.2, "weights": True, "masked": True},
}


def sigmoid_sweep_case(form: str, shape, alpha, gamma, options: dict, *, x: torch.Tensor | None = None,
                       target: torch.Tensor | None = None):
    """(call, composite, x, scale, reference "none") for the dense or index sigmoid sweep."""
    dtype = F64 if x is None else x.dtype
    x = logits(*shape, seed=11, scale=4.0) if x is None else x
    smoothing = options.get("smoothing", 0.0)
    w = pw = None
    if options.get("weights"):
        w = torch.rand(C, generator=gen(12), dtype=F64) * 2 + 0.1
        pw = torch.rand(C, generator=gen(13), dtype=F64) * 3 + 0.1
    w_full = None if w is None else _fused.spread(along_classes(w, shape).to(dtype), x)
    pw_full = None if pw is None else _fused.spread(along_classes(pw, shape).to(dtype), x)
    scale = _fused._scale(7.0, x)
    if form == "dense":
        t = soft_labels(shape, 14) if target is None else target
        keep = kept_mask(shape, 15) if options.get("masked") else None
        raw = mark(t, keep, -1.0)  # what sigmoid_loss hands the sweep: the target as given

        def call(xx, reduce):
            return _fused.sigmoid_dense_sweep(xx, raw, keep, w_full, pw_full, scale, alpha, gamma, smoothing, reduce)

        dense, valid = (t if keep is None else torch.where(keep, t, torch.zeros_like(t))), keep
    else:
        if target is None:
            index = class_indices(positions(shape), C + 1, seed=16)  # index C = background
            index.view(-1)[0] = C
        else:
            index = target
        keep = kept_mask(positions(shape), 17) if options.get("masked") else None
        raw = mark(index, keep, -1)

        def call(xx, reduce):
            return _fused.sigmoid_index_sweep(xx, raw, keep, w_full, pw_full, scale, alpha, gamma, smoothing, reduce)

        dense, valid = _core.sigmoid_target("test", x, raw, None if keep is None else -1, dtype)

    def composite(xx):
        return _core.sigmoid_elementwise(xx, dense.to(dtype), valid, from_logits=True, alpha=alpha, gamma=gamma,
                                         weight=None if w is None else along_classes(w, shape).to(dtype),
                                         pos_weight=None if pw is None else along_classes(pw, shape).to(dtype),
                                         label_smoothing=smoothing)

    expected = reference._sigmoid_form(x.double().numpy(), to_np(raw), from_logits=True, alpha=alpha, gamma=gamma,
                                       weight=to_np(w), pos_weight=to_np(pw),
                                       ignore_index=None if keep is None else -1, label_smoothing=smoothing,
                                       reduction="none")
    return call, composite, x, scale, expected


@pytest.mark.parametrize("options", list(SIGMOID_OPTIONS))
@pytest.mark.parametrize("gamma", SIGMOID_GAMMAS)
@pytest.mark.parametrize("alpha", [None, 0.25, 0.75])
@pytest.mark.parametrize("form", ["dense", "index"])
def test_sigmoid_sweep_equals_composite(form, alpha, gamma, options):
    for shape in SHAPES.values():
        check_sweep(*sigmoid_sweep_case(form, shape, alpha, gamma, SIGMOID_OPTIONS[options]))


def softmax_index_case(shape, gamma, weighted: bool, masked: bool, x: torch.Tensor | None = None):
    dtype = F64 if x is None else x.dtype
    x = logits(*shape, seed=21, scale=4.0) if x is None else x
    index = class_indices(positions(shape), C, seed=22)
    keep = kept_mask(positions(shape), 23) if masked else None
    w = (torch.rand(C, generator=gen(24), dtype=F64) * 2 + 0.1) if weighted else None
    wd = None if w is None else w.to(dtype)
    safe = index if keep is None else torch.where(keep, index, torch.zeros_like(index))  # as SoftmaxTarget holds
    scale = _fused._scale(5.0, x)

    def call(xx, reduce):
        return _fused.softmax_index_sweep(xx, safe, keep, None, scale, wd, gamma, None, None, reduce)

    def composite(xx):
        return _core.softmax_elementwise(xx, _core.SoftmaxTarget(indices=safe, valid=keep), class_weight=wd,
                                         gamma=gamma)

    expected = REFERENCES["softmax_focal_loss"](x.double().numpy(), mark(index, keep, -1).numpy(), alpha=to_np(w),
                                                gamma=gamma, ignore_index=-1, reduction="none")
    return call, composite, x, scale, expected


@pytest.mark.parametrize("masked", [False, True], ids=["all-kept", "masked"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "class_weight"])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_softmax_index_sweep_equals_composite(gamma, weighted, masked):
    for shape in SHAPES.values():
        check_sweep(*softmax_index_case(shape, gamma, weighted, masked))


def softmax_dense_case(shape, gamma, weighted: bool, x: torch.Tensor | None = None, q: torch.Tensor | None = None):
    dtype = F64 if x is None else x.dtype
    x = logits(*shape, seed=31, scale=4.0) if x is None else x
    if q is None:
        q = soft_targets(*shape, seed=32)
        q[0] = 0.0
        q[0, 1] = 1.0  # a one-hot row: zero-probability classes contribute nothing
    w = (torch.rand(C, generator=gen(33), dtype=F64) * 2 + 0.1) if weighted else None
    wd = None if w is None else w.to(dtype)
    scale = _fused._scale(3.0, x)

    def call(xx, reduce):
        return _fused.softmax_dense_sweep(xx, q, scale, wd, gamma, None, None, reduce)

    def composite(xx):
        return _core.softmax_elementwise(xx, _core.SoftmaxTarget(probs=q.to(dtype)), class_weight=wd, gamma=gamma)

    expected = REFERENCES["softmax_focal_loss"](x.double().numpy(), q.numpy(), alpha=to_np(w), gamma=gamma,
                                                reduction="none")
    return call, composite, x, scale, expected


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "class_weight"])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_softmax_dense_sweep_equals_composite(gamma, weighted):
    for shape in SHAPES.values():
        check_sweep(*softmax_dense_case(shape, gamma, weighted))


def quality_case(shape, beta, weighted: bool, masked: bool, x: torch.Tensor | None = None,
                 y: torch.Tensor | None = None):
    dtype = F64 if x is None else x.dtype
    x = logits(*shape, seed=41, scale=4.0) if x is None else x
    y = soft_labels(shape, 42) if y is None else y
    keep = kept_mask(shape, 43) if masked else None
    w = (torch.rand(C, generator=gen(44), dtype=F64) * 2 + 0.1) if weighted else None
    w_full = None if w is None else _fused.spread(along_classes(w, shape).to(dtype), x)
    y0 = y if keep is None else torch.where(keep, y, torch.zeros_like(y))  # quality_target zeroes ignored ones
    scale = _fused._scale(6.0, x)
    marked = mark(y, keep, -1.0)
    kwargs = {"beta": beta, "ignore_index": None if keep is None else -1, "weight": w}

    def call(xx, reduce):
        return _fused.quality_sweep(xx, y0.to(dtype), keep, w_full, scale, beta, reduce)

    def composite(xx):
        losslab.set_fused("off")
        return losslab.quality_focal_loss(xx, marked, reduction="none", **kwargs)

    expected = REFERENCES["quality_focal_loss"](x.double().numpy(), marked.numpy(), reduction="none",
                                                **{k: to_np(v) for k, v in kwargs.items()})
    return call, composite, x, scale, expected


@pytest.mark.parametrize("masked", [False, True], ids=["all-kept", "masked"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weight"])
@pytest.mark.parametrize("beta", [0.0, 0.5, 2.0])
def test_quality_sweep_equals_composite(beta, weighted, masked):
    for shape in SHAPES.values():
        check_sweep(*quality_case(shape, beta, weighted, masked))


def varifocal_case(shape, alpha, gamma, iou_weighted: bool, weighted: bool, x: torch.Tensor | None = None,
                   q: torch.Tensor | None = None):
    dtype = F64 if x is None else x.dtype
    x = logits(*shape, seed=51, scale=4.0) if x is None else x
    q = quality_scores(shape, 52) if q is None else q
    w = (torch.rand(C, generator=gen(53), dtype=F64) * 2 + 0.1) if weighted else None
    w_full = None if w is None else _fused.spread(along_classes(w, shape).to(dtype), x)
    scale = _fused._scale(9.0, x)
    kwargs = {"alpha": alpha, "gamma": gamma, "iou_weighted": iou_weighted, "weight": w}

    def call(xx, reduce):
        return _fused.varifocal_sweep(xx, q.to(dtype), w_full, scale, alpha, gamma, iou_weighted, reduce)

    def composite(xx):
        losslab.set_fused("off")
        return losslab.varifocal_loss(xx, q, reduction="none", **kwargs)

    expected = REFERENCES["varifocal_loss"](x.double().numpy(), q.numpy(), reduction="none",
                                            **{k: to_np(v) for k, v in kwargs.items()})
    return call, composite, x, scale, expected


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weight"])
@pytest.mark.parametrize("iou_weighted", [True, False], ids=["iou_weighted", "plain"])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("alpha", [0.25, 0.75])
def test_varifocal_sweep_equals_composite(alpha, gamma, iou_weighted, weighted):
    for shape in SHAPES.values():
        check_sweep(*varifocal_case(shape, alpha, gamma, iou_weighted, weighted))


def saturated_logits(shape, dtype) -> torch.Tensor:
    """Logits with +-1e4 and +-100 in the first elements, each against a positive and a negative label."""
    x = logits(*shape, seed=61, scale=4.0)
    x.view(-1)[:8] = torch.tensor(SATURATED + SATURATED, dtype=F64)
    return x.to(dtype)


def saturated_labels(shape, *, soft: bool) -> torch.Tensor:
    t = soft_labels(shape, 62) if soft else hard_labels(shape, 62)
    t.view(-1)[:8] = torch.tensor([1.0] * 4 + [0.0] * 4, dtype=F64)
    return t


def saturated_softmax_logits(shape, dtype) -> torch.Tensor:
    """Every class of the first two positions saturated: 1e4, -1e4, 100, -100 in two orders."""
    x = logits(*shape, seed=63, scale=4.0)
    first = (0,) + (slice(None),) + (0,) * (len(shape) - 2)
    second = (1,) + (slice(None),) + (0,) * (len(shape) - 2)
    x[first] = torch.tensor(SATURATED, dtype=F64)
    x[second] = torch.tensor(SATURATED[::-1], dtype=F64)
    return x.to(dtype)


def saturated_cases(family: str, shape, dtype):
    """(description, check_sweep arguments) over the family's hyperparameters at saturated logits."""
    if family in ("sigmoid_dense", "sigmoid_index"):
        x = saturated_logits(shape, dtype)
        for soft in (False, True):
            if family == "sigmoid_dense":
                target = saturated_labels(shape, soft=soft)
            else:
                if soft:
                    continue
                target = class_indices(positions(shape), C + 1, seed=64)
                target.view(-1)[:2] = torch.tensor([0, C])  # first position: class 0; second: background
            for alpha in (None, 0.25):
                for gamma in SIGMOID_GAMMAS:
                    for options in ("plain", "all"):
                        form = family.split("_")[1]
                        yield (f"soft={soft} alpha={alpha} gamma={gamma} {options}",
                               sigmoid_sweep_case(form, shape, alpha, gamma, SIGMOID_OPTIONS[options], x=x,
                                                  target=target))
    elif family == "softmax_index":
        x = saturated_softmax_logits(shape, dtype)
        for gamma in (0.0, 0.5, 2.0):
            for weighted in (False, True):
                yield f"gamma={gamma} weighted={weighted}", softmax_index_case(shape, gamma, weighted, True, x=x)
    elif family == "softmax_dense":
        x = saturated_softmax_logits(shape, dtype)
        for gamma in (0.0, 0.5, 2.0):
            yield f"gamma={gamma}", softmax_dense_case(shape, gamma, True, x=x)
    elif family == "quality":
        x = saturated_logits(shape, dtype)
        y = saturated_labels(shape, soft=True)
        y.view(-1)[8:12] = 0.5
        for beta in (0.0, 0.5, 2.0):
            yield f"beta={beta}", quality_case(shape, beta, True, True, x=x, y=y)
    else:
        x = saturated_logits(shape, dtype)
        q = quality_scores(shape, 65)
        q.view(-1)[:8] = torch.tensor([0.7, 1.0, 0.3, 1.0, 0.0, 0.0, 0.0, 0.0], dtype=F64)
        for gamma in (0.0, 0.5, 2.0):
            for iou_weighted in (True, False):
                yield (f"gamma={gamma} iou_weighted={iou_weighted}",
                       varifocal_case(shape, 0.75, gamma, iou_weighted, True, x=x, q=q))


@pytest.mark.parametrize("dtype", [F64, F32], ids=["float64", "float32"])
@pytest.mark.parametrize("family", ["sigmoid_dense", "sigmoid_index", "softmax_index", "softmax_dense", "quality",
                                    "varifocal"])
def test_sweeps_at_saturated_logits(family, dtype):
    """Logits of +-1e4 and +-100: finite gradients equal to the composite's, values equal to the reference."""
    for shape in SHAPES.values():
        for description, case in saturated_cases(family, shape, dtype):
            try:
                check_sweep(*case)
            except AssertionError as error:
                raise AssertionError(f"{family} {shape} {description}: {error}") from None


@pytest.mark.parametrize("reduce", [False, True], ids=["none", "sum"])
@pytest.mark.parametrize("family", ["softmax_index", "softmax_dense", "sigmoid_index"])
def test_eager_run_chunks_along_dim_0(family, reduce, monkeypatch):
    """_fused._run with tiny chunks: per-position losses reassembled, sums accumulated, gradient in place."""
    shape = (5, C, 2, 3)  # 24 elements a row; CHUNK_NUMEL = 50: chunks of 2, 2 and 1 rows
    losslab.set_fused("eager")
    x = logits(*shape, seed=71, scale=4.0)
    scale = _fused._scale(11.0, x)
    index = class_indices(positions(shape), C, seed=72)
    keep = kept_mask(positions(shape), 73)
    if family == "softmax_index":
        sweep, batched, shared = _fused.softmax_index_sweep, (index, keep, None), (scale, None, 2.0, None, None)
        loss_shape = positions(shape)
    elif family == "softmax_dense":
        sweep, batched, shared = _fused.softmax_dense_sweep, (soft_targets(*shape, seed=74),), \
            (scale, None, 0.5, None, None)
        loss_shape = positions(shape)
    else:
        w = _fused.spread(along_classes(torch.rand(C, generator=gen(75), dtype=F64), shape), x)
        sweep, batched, shared = _fused.sigmoid_index_sweep, (mark(index, keep, -1), keep, w, None), \
            (scale, 0.25, 2.0, 0.1)
        loss_shape = shape
    whole = _fused._run(sweep, x, batched, shared, reduce, loss_shape)
    monkeypatch.setattr(_fused, "CHUNK_NUMEL", 50)
    calls = []
    chunked = _fused._run(lambda xx, *rest: calls.append(xx.shape[0]) or sweep(xx, *rest), x, batched, shared,
                          reduce, loss_shape)
    assert calls == [2, 2, 1]
    assert chunked[0].shape == (() if reduce else loss_shape)
    torch.testing.assert_close(chunked[0], whole[0], **tolerance(F64))
    torch.testing.assert_close(chunked[1], whole[1], **tolerance(F64))


# ----------------------------------------------------------------------------
# 2. the public functions through the eager sweep


CASES = (
    "sigmoid_focal-dense", "sigmoid_focal-dense-ignore", "sigmoid_focal-index", "sigmoid_focal-avg-zero",
    "bce-dense", "bce-index", "bce-int-labels-ignore", "balanced-dense", "balanced-index",
    "quality-dense", "quality-pair", "quality-labels", "varifocal-dense", "varifocal-pair",
)


def public_case(case: str, shape) -> tuple:
    """(function name, target, keyword arguments, reference target) for an input of ``shape``."""
    pos = positions(shape)
    w = torch.rand(C, generator=gen(81), dtype=F64) * 2 + 0.1
    pw = torch.rand(C, generator=gen(82), dtype=F64) * 3 + 0.1
    soft, hard = soft_labels(shape, 83), hard_labels(shape, 84)
    keep, keep_pos = kept_mask(shape, 85), kept_mask(pos, 86)
    index = class_indices(pos, C + 1, seed=87)
    index.view(-1)[1] = C  # a background position
    scores = torch.rand(pos, generator=gen(88), dtype=F64)
    cases = {
        "sigmoid_focal-dense": ("sigmoid_focal_loss", soft, {"alpha": 0.25, "gamma": 2.0, "weight": w}),
        "sigmoid_focal-dense-ignore": ("sigmoid_focal_loss", mark(hard, keep, -1.0),
                                       {"alpha": None, "gamma": 0.5, "ignore_index": -1, "avg_factor": 5.0}),
        "sigmoid_focal-index": ("sigmoid_focal_loss", mark(index, keep_pos, -1),
                                {"alpha": 0.75, "gamma": 1.5, "ignore_index": -1, "avg_factor": torch.tensor(7.0)}),
        "sigmoid_focal-avg-zero": ("sigmoid_focal_loss", soft, {"gamma": 3.5, "avg_factor": 0.0}),
        "bce-dense": ("binary_cross_entropy", soft, {"weight": w, "pos_weight": pw, "label_smoothing": 0.1}),
        "bce-index": ("binary_cross_entropy", mark(index, keep_pos, -1),
                      {"pos_weight": pw, "ignore_index": -1, "avg_factor": torch.tensor([3.0])}),
        "bce-int-labels-ignore": ("binary_cross_entropy", mark(hard.long(), keep, 255), {"ignore_index": 255}),
        "balanced-dense": ("balanced_cross_entropy", hard, {"alpha": 0.3}),
        "balanced-index": ("balanced_cross_entropy", mark(index, keep_pos, -100),
                           {"alpha": 0.6, "label_smoothing": 0.05}),
        "quality-dense": ("quality_focal_loss", mark(soft, keep, -1.0), {"beta": 2.0, "ignore_index": -1,
                                                                         "weight": w}),
        "quality-pair": ("quality_focal_loss", (mark(index, keep_pos, -1), scores),
                         {"beta": 1.5, "ignore_index": -1, "avg_factor": torch.tensor(4.5)}),
        "quality-labels": ("quality_focal_loss", index, {"avg_factor": 3}),
        "varifocal-dense": ("varifocal_loss", quality_scores(shape, 89), {"weight": w}),
        "varifocal-pair": ("varifocal_loss", (index, scores),
                           {"alpha": 0.25, "gamma": 0.5, "iou_weighted": False, "avg_factor": torch.tensor(6.0)}),
    }
    name, target, kwargs = cases[case]
    ref_target = (index, torch.ones(pos, dtype=F64)) if case == "quality-labels" else target  # labels = score 1
    return name, target, kwargs, ref_target


def case_input(case: str, shape, dtype=F64) -> torch.Tensor:
    return logits(*shape, seed=90 + CASES.index(case)).to(dtype)


def reference_value_and_grad(name: str, x: torch.Tensor, ref_target, kwargs: dict, reduction: str):
    """The reference's value and the finite-difference gradient of sum(value * upstream)."""
    ref = REFERENCES[name]
    np_target, np_kwargs = to_np(ref_target), {k: to_np(v) for k, v in kwargs.items()}
    xn = x.double().numpy()
    value = ref(xn, np_target, reduction=reduction, **np_kwargs)
    upstream = upstream_for(torch.as_tensor(value)).numpy()

    def weighted(z):
        return float(np.sum(ref(z, np_target, reduction=reduction, **np_kwargs) * upstream))

    return value, finite_difference(weighted, xn)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", list(SHAPES.values()), ids=list(SHAPES))
@pytest.mark.parametrize("case", CASES)
def test_eager_fused_equals_composite_and_reference(case, shape, reduction):
    name, target, kwargs, ref_target = public_case(case, shape)
    fn = getattr(losslab, name)
    x = case_input(case, shape)
    fused, composite = fused_and_composite(fn, x, target, reduction=reduction, **kwargs)
    assert "Fused" in fused.grad_fn, fused.grad_fn
    assert "Fused" not in composite.grad_fn, composite.grad_fn
    assert_results_close(fused, composite, F64)
    value, grad = reference_value_and_grad(name, x, ref_target, kwargs, reduction)
    assert fused.value.shape == value.shape
    assert_close_np(fused.value, value, F64)
    assert_close_np(fused.grad, grad, F64, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", CASES)
def test_eager_chunks_equal_one_sweep(case, reduction, monkeypatch, sweep_calls):
    """CHUNK_NUMEL small: the sweep runs on chunks of 2, 2 and 1 rows; sums add up, "none" is reassembled."""
    shape = (5, C, 2, 3)
    name, target, kwargs, _ = public_case(case, shape)
    fn = getattr(losslab, name)
    x = case_input(case, shape)
    losslab.set_fused("eager")
    whole = evaluate(fn, x, target, reduction=reduction, **kwargs)
    assert sum(sweep_calls.values()) == 2  # one sweep a forward
    monkeypatch.setattr(_fused, "CHUNK_NUMEL", 50)
    chunked = evaluate(fn, x, target, reduction=reduction, **kwargs)
    assert sum(sweep_calls.values()) == 2 + 2 * 3
    losslab.set_fused("off")
    composite = evaluate(fn, x, target, reduction=reduction, **kwargs)
    assert "Fused" in chunked.grad_fn
    assert_results_close(chunked, whole, F64)
    assert_results_close(chunked, composite, F64)


@pytest.mark.parametrize("case", ["sigmoid_focal-dense", "bce-dense", "quality-dense", "varifocal-dense"])
def test_one_dimensional_input(case, monkeypatch):
    """(N,) inputs (one binary problem per element), in one sweep and in chunks of 3 elements."""
    name, target, kwargs, _ = public_case(case, (8, C))
    target = target[:, 0].contiguous()
    kwargs = {k: v for k, v in kwargs.items() if k not in ("weight", "pos_weight")}  # per-class: not for (N,)
    x = logits(8, seed=99)
    for chunk in (_fused.CHUNK_NUMEL, 3):
        monkeypatch.setattr(_fused, "CHUNK_NUMEL", chunk)
        for reduction in REDUCTIONS:
            fused, composite = fused_and_composite(getattr(losslab, name), x, target, reduction=reduction, **kwargs)
            assert "Fused" in fused.grad_fn
            assert_results_close(fused, composite, F64)


def test_zero_dimensional_input():
    x, t = torch.tensor(0.3, dtype=F64), torch.tensor(1.0, dtype=F64)
    fused, composite = fused_and_composite(losslab.binary_cross_entropy, x, t, reduction="mean")
    assert_results_close(fused, composite, F64)


# ----------------------------------------------------------------------------
# 3. where the fused path must not run


FEW = ("sigmoid_focal-index", "bce-dense", "quality-pair", "varifocal-dense")


def call_case(case: str, x: torch.Tensor, **extra):
    name, target, kwargs, _ = public_case(case, tuple(x.shape))
    return getattr(losslab, name)(x, target, **{**kwargs, **extra})


@pytest.mark.parametrize("mode", ["auto", "eager", "compiled"])
@pytest.mark.parametrize("case", FEW)
def test_no_fused_path_without_gradients(case, mode, fused_calls, monkeypatch):
    """An input without requires_grad, or torch.no_grad(): the composite, whatever the mode."""
    monkeypatch.setattr(torch, "compile", _must_not_compile)
    monkeypatch.setattr(torch._inductor, "standalone_compile", _must_not_compile)
    shape = SHAPES["NCHW"]
    x = case_input(case, shape)
    losslab.set_fused("off")
    want = call_case(case, x)
    losslab.set_fused(mode)
    plain = call_case(case, x)
    leaf = x.clone().requires_grad_(True)
    with torch.no_grad():
        no_grad = call_case(case, leaf)
    with torch.inference_mode():
        inference = call_case(case, leaf)
    assert fused_calls == []
    assert plain.grad_fn is None and no_grad.grad_fn is None and inference.grad_fn is None
    for got in (plain, no_grad, inference):
        torch.testing.assert_close(got, want, **tolerance(F64))
    losslab.set_fused("eager")
    call_case(case, leaf)
    assert len(fused_calls) == 1  # and with a gradient wanted, it does run


@pytest.mark.parametrize("name", ["binary_cross_entropy", "sigmoid_focal_loss", "balanced_cross_entropy"])
def test_probabilities_take_the_composite(name, fused_calls):
    shape = SHAPES["NC"]
    probs = torch.sigmoid(logits(*shape, seed=101))
    t = soft_labels(shape, 102) if name != "balanced_cross_entropy" else hard_labels(shape, 102)
    kwargs = {"alpha": 0.4} if name == "balanced_cross_entropy" else {}
    losslab.set_fused("eager")
    got = evaluate(getattr(losslab, name), probs, t, from_logits=False, **kwargs)
    assert fused_calls == [] and "Fused" not in got.grad_fn
    value, grad = reference_value_and_grad(name, probs, t, {"from_logits": False, **kwargs}, "mean")
    assert_close_np(got.value, value)
    assert_close_np(got.grad, grad, rtol=1e-6, atol=1e-8)


def test_target_requiring_grad_takes_the_composite(fused_calls):
    """d BCE / d t = -x for every element (sum, no pos_weight): the composite's gradient w.r.t. the target."""
    losslab.set_fused("eager")
    shape = SHAPES["NCHW"]
    x = logits(*shape, seed=111).requires_grad_(True)
    t = soft_labels(shape, 112).requires_grad_(True)
    loss = losslab.binary_cross_entropy(x, t, reduction="sum")
    assert fused_calls == [] and "Fused" not in type(loss.grad_fn).__name__
    loss.backward()
    torch.testing.assert_close(t.grad, -x.detach(), **tolerance(F64))
    x_only = evaluate(losslab.binary_cross_entropy, x, t.detach(), reduction="sum")
    torch.testing.assert_close(x.grad, x_only.plain_grad, **tolerance(F64))


def test_quality_scores_requiring_grad_take_the_composite(fused_calls):
    """quality_focal_loss with (labels, scores), the scores requiring grad: d/d scores against the reference."""
    losslab.set_fused("eager")
    shape = (5, C)
    x = logits(*shape, seed=113)
    labels = class_indices((5,), C + 1, seed=114)
    labels[0] = 0
    scores = (torch.rand(5, generator=gen(115), dtype=F64) * 0.8 + 0.1).requires_grad_(True)
    leaf = x.clone().requires_grad_(True)
    loss = losslab.quality_focal_loss(leaf, (labels, scores), beta=2.0, reduction="sum")
    assert fused_calls == [] and "Fused" not in type(loss.grad_fn).__name__
    loss.backward()
    detached = evaluate(losslab.quality_focal_loss, x, (labels, scores.detach()), beta=2.0, reduction="sum")
    assert "Fused" in detached.grad_fn
    torch.testing.assert_close(leaf.grad, detached.plain_grad, **tolerance(F64))

    def ref(s):
        return float(REFERENCES["quality_focal_loss"](x.numpy(), (labels.numpy(), s), beta=2.0, reduction="sum"))

    expected = finite_difference(ref, scores.detach().numpy())
    expected[labels.numpy() == C] = 0.0  # a background position's score is unused
    assert_close_np(scores.grad, expected, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("which", ["weight", "pos_weight"])
def test_weight_requiring_grad_takes_the_composite(which, fused_calls):
    """d/dw_c of the sum is the unweighted loss summed over class c (w) or -sum t log p over it (pos_weight)."""
    losslab.set_fused("eager")
    shape = SHAPES["NCHW"]
    x = logits(*shape, seed=121)
    t = soft_labels(shape, 122)
    v = (torch.rand(C, generator=gen(123), dtype=F64) + 0.5).requires_grad_(True)
    leaf = x.clone().requires_grad_(True)
    loss = losslab.binary_cross_entropy(leaf, t, reduction="sum", **{which: v})
    assert fused_calls == [] and "Fused" not in type(loss.grad_fn).__name__
    loss.backward()
    dims = (0, 2, 3)
    if which == "weight":
        expected = losslab.binary_cross_entropy(x, t, reduction="none").sum(dims)
    else:
        expected = -(t * torch.nn.functional.logsigmoid(x)).sum(dims)
    torch.testing.assert_close(v.grad, expected, **tolerance(F64))
    detached = evaluate(losslab.binary_cross_entropy, x, t, reduction="sum", **{which: v.detach()})
    assert "Fused" in detached.grad_fn
    torch.testing.assert_close(leaf.grad, detached.plain_grad, **tolerance(F64))


@pytest.mark.parametrize("name", ["sigmoid_focal_loss", "quality_focal_loss", "varifocal_loss"])
def test_avg_factor_requiring_grad_takes_the_composite(name, fused_calls):
    """d (S / a) / da = -S / a^2."""
    losslab.set_fused("eager")
    shape = SHAPES["NC"]
    x = logits(*shape, seed=131)
    t = soft_labels(shape, 132) if name != "varifocal_loss" else quality_scores(shape, 132)
    a = torch.tensor(3.5, dtype=F64, requires_grad=True)
    leaf = x.clone().requires_grad_(True)
    loss = getattr(losslab, name)(leaf, t, avg_factor=a)
    assert fused_calls == [] and "Fused" not in type(loss.grad_fn).__name__
    loss.backward()
    total = getattr(losslab, name)(x, t, reduction="sum")
    torch.testing.assert_close(a.grad, -total / 3.5**2, **tolerance(F64))
    detached = evaluate(getattr(losslab, name), x, t, avg_factor=a.detach())
    assert "Fused" in detached.grad_fn
    torch.testing.assert_close(leaf.grad, detached.plain_grad, **tolerance(F64))


@pytest.mark.parametrize("case", FEW)
def test_other_devices_take_the_composite(case, fused_calls):
    """A meta tensor stands in for a non-CPU device: no fused path, and the composite's shapes."""
    losslab.set_fused("eager")
    shape = SHAPES["NCHW"]
    name, target, kwargs, _ = public_case(case, shape)
    meta = {k: (v.to("meta") if isinstance(v, torch.Tensor) else v) for k, v in kwargs.items()}
    target = tuple(t.to("meta") for t in target) if isinstance(target, tuple) else target.to("meta")
    x = torch.empty(shape, device="meta", dtype=F64, requires_grad=True)
    for reduction in REDUCTIONS:
        out = getattr(losslab, name)(x, target, reduction=reduction, **meta)
        assert "Fused" not in type(out.grad_fn).__name__
        assert out.device.type == "meta" and out.shape == (shape if reduction == "none" else ())
    assert fused_calls == []


def test_compile_tracing_takes_the_composite(fresh_dynamo):
    """Under torch.compile (backend eager: tracing only) every loss is the composite, with the right values."""
    losslab.set_fused("eager")
    shape = SHAPES["NCHW"]
    x = logits(*shape, seed=141)
    index = class_indices(positions(shape), C, seed=142)
    t = soft_labels(shape, 143)

    def losses(x):
        return (losslab.sigmoid_focal_loss(x, t), losslab.binary_cross_entropy(x, index, ignore_index=1),
                losslab.quality_focal_loss(x, t), losslab.varifocal_loss(x, t),
                losslab.cross_entropy(x, index))

    compiled = torch.compile(losses, backend="eager")
    got_leaf, want_leaf = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    got = compiled(got_leaf)
    losslab.set_fused("off")
    want = losses(want_leaf)
    for g, w in zip(got, want, strict=True):
        assert "Fused" not in type(g.grad_fn).__name__
        torch.testing.assert_close(g, w, **tolerance(F64))
    sum(got).backward()
    sum(want).backward()
    torch.testing.assert_close(got_leaf.grad, want_leaf.grad, **tolerance(F64))
    assert counters["stats"]["unique_graphs"] >= 1


# ----------------------------------------------------------------------------
# 4. double backward, retained graphs, upstream gradients


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("case", FEW)
def test_fused_path_has_no_second_derivative(case, reduction):
    losslab.set_fused("eager")
    x = case_input(case, SHAPES["NC"]).requires_grad_(True)
    out = call_case(case, x, reduction=reduction)
    assert "Fused" in type(out.grad_fn).__name__
    name = public_case(case, SHAPES["NC"])[0]
    with pytest.raises(RuntimeError, match=rf"{name}: .*call losslab\.set_fused\('off'\)"):
        # already the create_graph=True backward raises (the message says what to do)
        (g,) = torch.autograd.grad(out.sum(), x, create_graph=True)
        torch.autograd.grad(g.sum(), x)


def test_second_derivative_with_set_fused_off():
    """d^2/dx^2 of the summed BCE is sigmoid'(x) = p (1 - p), whatever the target."""
    losslab.set_fused("off")
    shape = SHAPES["NCHW"]
    x = logits(*shape, seed=151).requires_grad_(True)
    t = soft_labels(shape, 152)
    (g,) = torch.autograd.grad(losslab.binary_cross_entropy(x, t, reduction="sum"), x, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), x)
    p = torch.sigmoid(x.detach())
    torch.testing.assert_close(h, p * (1 - p), **tolerance(F64))
    for case in FEW:  # the others differentiate twice too, to finite values
        leaf = case_input(case, SHAPES["NC"]).requires_grad_(True)
        (g,) = torch.autograd.grad(call_case(case, leaf), leaf, create_graph=True)
        (h,) = torch.autograd.grad(g.sum(), leaf)
        assert torch.isfinite(h).all(), case


@pytest.mark.parametrize("case", FEW)
def test_retained_graph_gives_the_same_gradient_twice(case):
    losslab.set_fused("eager")
    x = case_input(case, SHAPES["NC"]).requires_grad_(True)
    out = call_case(case, x)
    out.backward(retain_graph=True)
    first = x.grad.clone()
    x.grad.zero_()  # in place: must not reach the saved gradient
    out.backward(retain_graph=True)
    torch.testing.assert_close(x.grad, first, rtol=0, atol=0)
    out.backward()
    torch.testing.assert_close(x.grad, 2 * first, **tolerance(F64))
    (again,) = torch.autograd.grad(call_case(case, x), x)
    torch.testing.assert_close(again, first, **tolerance(F64))


def test_modifying_a_returned_gradient_in_place_is_caught_by_autograd():
    """With an incoming gradient of 1 the saved gradient itself is handed out (no copy); writing into it with
    the graph retained is reported by autograd's version counter at the next backward, never silent."""
    losslab.set_fused("eager")
    x = case_input("bce-dense", SHAPES["NC"]).requires_grad_(True)
    out = call_case("bce-dense", x)
    (first,) = torch.autograd.grad(out, x, retain_graph=True)
    first.clamp_(-1e-3, 1e-3)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        torch.autograd.grad(out, x)


@pytest.mark.parametrize("case", FEW)
def test_upstream_gradient_scales_the_gradient(case):
    """(2 * loss).backward(), loss * a tensor, and "none" with a random upstream gradient."""
    x = case_input(case, SHAPES["NCHW"])
    results = {}
    for mode in ("eager", "off"):
        losslab.set_fused(mode)
        grads = []
        for scale in (lambda out: 2 * out, lambda out: (out * torch.tensor([1.0, -2.0, 0.5], dtype=F64)).sum(),
                      lambda out: out * torch.tensor(0.0, dtype=F64), lambda out: out / 3):
            leaf = x.clone().requires_grad_(True)
            scale(call_case(case, leaf)).backward()
            grads.append(leaf.grad)
        leaf = x.clone().requires_grad_(True)
        out = call_case(case, leaf, reduction="none")
        upstream = torch.randn(out.shape, generator=gen(161), dtype=F64)
        out.backward(upstream)
        grads.append(leaf.grad)
        results[mode] = grads
        leaf = x.clone().requires_grad_(True)
        call_case(case, leaf).backward()
        base = leaf.grad
        torch.testing.assert_close(grads[0], 2 * base, **tolerance(F64))
        torch.testing.assert_close(grads[1], -0.5 * base, **tolerance(F64))
        torch.testing.assert_close(grads[2], torch.zeros_like(base), **tolerance(F64))
        torch.testing.assert_close(grads[3], base / 3, **tolerance(F64))
    for got, want in zip(results["eager"], results["off"], strict=True):
        torch.testing.assert_close(got, want, **tolerance(F64))


def test_torch_func_grad():
    x, t = case_input("bce-dense", SHAPES["NC"]), soft_labels(SHAPES["NC"], 171)
    losslab.set_fused("off")
    want = torch.func.grad(lambda z: losslab.binary_cross_entropy(z, t))(x)
    losslab.set_fused("auto")
    got = torch.func.grad(lambda z: losslab.binary_cross_entropy(z, t))(x)
    torch.testing.assert_close(got, want, **tolerance(F64))


# ----------------------------------------------------------------------------
# 5. inputs untouched; half precision


@pytest.mark.parametrize("case", CASES)
def test_inputs_are_not_modified(case):
    losslab.set_fused("eager")
    shape = SHAPES["NCHW"]
    name, target, kwargs, _ = public_case(case, shape)
    x = case_input(case, shape).requires_grad_(True)
    tensors = [x, *(target if isinstance(target, tuple) else (target,)),
               *(v for v in kwargs.values() if isinstance(v, torch.Tensor))]
    copies = [t.detach().clone() for t in tensors]
    versions = [t._version for t in tensors]
    for reduction in REDUCTIONS:
        out = getattr(losslab, name)(x, target, reduction=reduction, **kwargs)
        assert "Fused" in type(out.grad_fn).__name__
        out.sum().backward()
    for t, copy, version in zip(tensors, copies, versions, strict=True):
        assert torch.equal(t.detach(), copy) and t._version == version


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", CASES)
def test_half_precision(case, reduction, dtype):
    """The loss and the gradient in the input's dtype, equal to the composite's within the dtype's tolerance."""
    shape = SHAPES["NCHW"]
    name, target, kwargs, _ = public_case(case, shape)
    x = case_input(case, shape, dtype)
    fused, composite = fused_and_composite(getattr(losslab, name), x, target, reduction=reduction, **kwargs)
    assert "Fused" in fused.grad_fn
    assert_results_close(fused, composite, dtype)


# ----------------------------------------------------------------------------
# 6. the compiled sweep: one case per sweep, two batch sizes, one graph


def _compiled_sigmoid_dense(n):
    g = gen(200 + n)
    x = torch.randn(n, C, 3, generator=g) * 4
    x[0, :, 0] = torch.tensor(SATURATED)
    t = torch.rand(n, C, 3, generator=g)
    t[1] = (t[1] > 0.5).float()
    return losslab.sigmoid_focal_loss, x, t, {"alpha": 0.25, "gamma": 2.0, "weight": torch.rand(C, generator=g) + 0.5}


def _compiled_sigmoid_index(n):
    g = gen(300 + n)
    x = torch.randn(n, C, 2, generator=g) * 4
    x[0, :, 0] = torch.tensor(SATURATED)
    index = torch.randint(0, C + 1, (n, 2), generator=g)
    index[0, 1] = -1
    return losslab.sigmoid_focal_loss, x, index, {"gamma": 0.5, "ignore_index": -1, "reduction": "sum"}


def _compiled_cross_entropy(n):
    g = gen(400 + n)
    x = torch.randn(n, C, 3, generator=g) * 4
    x[0, :, 0] = torch.tensor(SATURATED)
    index = torch.randint(0, C, (n, 3), generator=g)
    index[1, 2] = 255
    return losslab.cross_entropy, x, index, {"weight": torch.rand(C, generator=g) + 0.5, "ignore_index": 255}


def _compiled_softmax_focal(n):
    g = gen(500 + n)
    x = torch.randn(n, C, generator=g) * 4
    x[0] = torch.tensor(SATURATED)
    q = torch.softmax(torch.randn(n, C, generator=g) * 2, dim=1)
    return losslab.softmax_focal_loss, x, q, {"gamma": 2.0, "alpha": torch.rand(C, generator=g), "reduction": "none"}


def _compiled_quality(n):
    g = gen(600 + n)
    x = torch.randn(n, C, generator=g) * 2
    x[0] = torch.tensor(SATURATED)
    labels = torch.randint(0, C + 1, (n,), generator=g)
    labels[1] = -1
    return (losslab.quality_focal_loss, x, (labels, torch.rand(n, generator=g)),
            {"ignore_index": -1, "avg_factor": 3.0})


def _compiled_varifocal(n):
    g = gen(700 + n)
    x = torch.randn(n, C, generator=g) * 2
    x[0] = torch.tensor(SATURATED)
    q = torch.where(torch.rand(n, C, generator=g) < 0.5, torch.rand(n, C, generator=g), torch.zeros(n, C))
    return losslab.varifocal_loss, x, q, {"weight": torch.rand(C, generator=g) + 0.5, "reduction": "none"}


COMPILED = {
    "sigmoid_dense_sweep": _compiled_sigmoid_dense,
    "sigmoid_index_sweep": _compiled_sigmoid_index,
    "softmax_index_sweep": _compiled_cross_entropy,
    "softmax_dense_sweep": _compiled_softmax_focal,
    "quality_sweep": _compiled_quality,
    "varifocal_sweep": _compiled_varifocal,
}


@pytest.mark.parametrize("sweep", list(COMPILED))
def test_compiled_sweep_equals_composite_without_recompiling(sweep, fresh_dynamo):
    """set_fused("compiled"): one compilation (dynamic shapes) for two batch sizes, the composite's results."""
    graphs = None
    for n in (6, 9):
        fn, x, target, kwargs = COMPILED[sweep](n)
        losslab.set_fused("compiled")
        got = evaluate(fn, x, target, **kwargs)
        losslab.set_fused("off")
        want = evaluate(fn, x, target, **kwargs)
        assert "Fused" in got.grad_fn and "Fused" not in want.grad_fn
        assert torch.isfinite(got.grad).all()
        assert_results_close(got, want, F32)
        if graphs is None:
            graphs = _graphs_compiled()
            assert graphs >= 1, dict(counters)
    assert _graphs_compiled() == graphs, dict(counters)  # no recompilation for n = 9
    # that sweep, compiled: a standalone graph (no dynamo), one layout
    assert [layout[0] for layout, graph in _standalone._graphs.items() if graph] == [getattr(_fused, sweep)]
    assert not _fused._compiled and not _fused._failed_signatures


def _graphs_compiled() -> int:
    return counters["stats"]["unique_graphs"] + counters["losslab"]["graphs"]


def test_compiled_sweep_follows_a_changed_hyperparameter(fresh_dynamo):
    g = gen(800)
    x = torch.randn(16, C, generator=g) * 3
    q = torch.where(torch.rand(16, C, generator=g) < 0.5, torch.rand(16, C, generator=g), torch.zeros(16, C))
    for gamma in (0.5, 2.0):
        losslab.set_fused("compiled")
        got = evaluate(losslab.varifocal_loss, x, q, gamma=gamma, reduction="sum")
        losslab.set_fused("off")
        want = evaluate(losslab.varifocal_loss, x, q, gamma=gamma, reduction="sum")
        assert "Fused" in got.grad_fn
        assert_results_close(got, want, F32)


# ----------------------------------------------------------------------------
# 7. set_fused: modes, validation, fallbacks


def _must_not_compile(*args, **kwargs):
    raise AssertionError("torch.compile (or inductor's standalone_compile) was called")


def test_set_fused_returns_the_previous_mode_and_rejects_others():
    assert losslab.get_fused() == "auto"
    assert losslab.set_fused("eager") == "auto"
    assert losslab.set_fused("compiled") == "eager"
    assert losslab.set_fused("off") == "compiled"
    assert losslab.get_fused() == "off"
    for bad in ("on", "", None, "Eager", True):
        with pytest.raises(ValueError, match=r"set_fused: mode must be one of 'auto', 'compiled', 'eager', 'off'"):
            losslab.set_fused(bad)
    assert losslab.get_fused() == "off"


def test_which_sweep_each_mode_chooses(monkeypatch):
    monkeypatch.delenv("LOSSLAB_COMPILE", raising=False)
    small = torch.empty(10, requires_grad=True)
    large = torch.empty(_dispatch.COMPILE_MIN_NUMEL, requires_grad=True)
    expected = {  # (small, large) for a loss whose eager sweep pays, then for one whose does not
        "auto": ((None, "compiled"), (None, "compiled")),
        "compiled": (("compiled", "compiled"), ("compiled", "compiled")),
        "eager": (("eager", "eager"), ("eager", "eager")),
        "off": ((None, None), (None, None)),
    }
    route, applies = _dispatch.route, _dispatch.applies
    for mode, (pays, does_not) in expected.items():
        losslab.set_fused(mode)
        assert (route(small, eager_pays=True), route(large, eager_pays=True)) == pays, mode
        assert (route(small, eager_pays=False), route(large, eager_pays=False)) == does_not, mode
    with _dispatch.without_compiler():  # no compiler: the eager sweep where it pays
        losslab.set_fused("auto")
        assert (route(small, eager_pays=True), route(large, eager_pays=True)) == (None, "eager")
        assert (route(small, eager_pays=False), route(large, eager_pays=False)) == (None, None)
        losslab.set_fused("compiled")
        assert (route(small, eager_pays=True), route(small, eager_pays=False)) == ("eager", None)
    losslab.set_fused("off")
    x = torch.randn(3, 2, requires_grad=True)
    assert not applies(x)
    losslab.set_fused("eager")
    assert applies(x)
    assert not applies(x, torch.zeros(3, 2, requires_grad=True))
    assert not applies(x.detach()) and not applies(torch.empty(0, 2, requires_grad=True))


def test_auto_runs_small_inputs_through_the_composite(monkeypatch, fused_calls):
    monkeypatch.setattr(_fused, "_compiled", {})
    monkeypatch.setattr(torch, "compile", _must_not_compile)
    monkeypatch.setattr(torch._inductor, "standalone_compile", _must_not_compile)
    x, t = case_input("sigmoid_focal-dense", SHAPES["NC"]), soft_labels(SHAPES["NC"], 181)
    got = evaluate(losslab.sigmoid_focal_loss, x, t)
    losslab.set_fused("off")
    want = evaluate(losslab.sigmoid_focal_loss, x, t)
    assert fused_calls == [] and "Fused" not in got.grad_fn  # small inputs are overhead-bound: the composite
    assert_results_close(got, want, F64)


def test_losslab_compile_0_falls_back_to_the_eager_sweep_with_one_warning(monkeypatch, sweep_calls):
    monkeypatch.setenv("LOSSLAB_COMPILE", "0")
    monkeypatch.setattr(_dispatch, "_compile_off_warned", False)
    monkeypatch.setattr(_fused, "_compiled", {})
    monkeypatch.setattr(torch, "compile", _must_not_compile)
    monkeypatch.setattr(torch._inductor, "standalone_compile", _must_not_compile)
    x, t = case_input("sigmoid_focal-dense", SHAPES["NC"]), soft_labels(SHAPES["NC"], 191)
    index = class_indices((SHAPES["NC"][0],), C, seed=192)
    losslab.set_fused("off")
    want = evaluate(losslab.sigmoid_focal_loss, x, t), evaluate(losslab.cross_entropy, x, index)
    losslab.set_fused("compiled")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = evaluate(losslab.sigmoid_focal_loss, x, t), evaluate(losslab.cross_entropy, x, index)
    runtime = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(runtime) == 1, [str(w.message) for w in runtime]
    assert "LOSSLAB_COMPILE=0" in str(runtime[0].message)
    assert "Fused" in got[0].grad_fn and sweep_calls["sigmoid_dense_sweep"] == 2  # the eager sweep
    assert "Fused" not in got[1].grad_fn  # the softmax family has no eager sweep: the composite
    for g, w in zip(got, want, strict=True):
        assert_results_close(g, w, F64)


def _failing_compiled(*args, **kwargs):
    raise RuntimeError("InductorError: no working C++ compiler found")


@pytest.mark.parametrize("family", ["sigmoid_focal_loss", "cross_entropy"])
def test_failing_compiled_sweep_falls_back_with_a_warning(family, monkeypatch, sweep_calls):
    """The compiled sweep raises when called: the eager sweep (chunked here), never an error; one warning for
    each signature (here "none" and "mean"), and only that signature falls back (the next call warns no more)."""
    monkeypatch.delenv("LOSSLAB_COMPILE", raising=False)
    monkeypatch.setattr(_fused, "_failed_signatures", {})
    monkeypatch.setattr(_fused, "_compiled", {})
    monkeypatch.setattr(_standalone, "_graphs", {})
    monkeypatch.setattr(torch._inductor, "standalone_compile", _failing_compiled)
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: _failing_compiled)
    monkeypatch.setattr(_fused, "CHUNK_NUMEL", 50)
    shape = (5, C, 2, 3)
    x = logits(*shape, seed=201)
    if family == "sigmoid_focal_loss":
        target, kwargs, sweep = soft_labels(shape, 202), {"gamma": 0.5}, "sigmoid_dense_sweep"
    else:
        target = class_indices(positions(shape), C, seed=203, ignore_index=-100, ignored=0.2)
        kwargs, sweep = {"weight": torch.rand(C, generator=gen(204), dtype=F64) + 0.5}, "softmax_index_sweep"
    fn = getattr(losslab, family)
    losslab.set_fused("off")
    want = {reduction: evaluate(fn, x, target, reduction=reduction, **kwargs) for reduction in ("none", "mean")}
    losslab.set_fused("compiled")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = {"none": evaluate(fn, x, target, reduction="none", **kwargs)}
        chunk_calls = sweep_calls[sweep]
        got["mean"] = evaluate(fn, x, target, reduction="mean", **kwargs)
        again = evaluate(fn, x, target, reduction="mean", **kwargs)
    runtime = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(runtime) == 2, [str(w.message) for w in runtime]
    for w in runtime:
        assert "compiling the fused loss failed" in str(w.message) and "runs eagerly" in str(w.message)
        assert "no working C++ compiler" in str(w.message)
    assert len(_fused._failed_signatures) == 2
    assert chunk_calls >= 3  # the first forward fell back to the eager sweep, in chunks of 2, 2 and 1 rows
    for reduction in ("none", "mean"):
        assert "Fused" in got[reduction].grad_fn
        assert_results_close(got[reduction], want[reduction], F64)
    assert_results_close(again, want["mean"], F64)


def test_torch_compile_raising_when_wrapping_falls_back(monkeypatch):
    monkeypatch.delenv("LOSSLAB_COMPILE", raising=False)
    monkeypatch.setattr(_fused, "_failed_signatures", {})
    monkeypatch.setattr(_fused, "_compiled", {})

    def unsupported(*args, **kwargs):
        raise RuntimeError("Dynamo is not supported on this Python version")

    monkeypatch.setattr(_standalone, "_graphs", {})
    monkeypatch.setattr(torch._inductor, "standalone_compile", unsupported)
    monkeypatch.setattr(torch, "compile", unsupported)
    x, t = case_input("bce-dense", SHAPES["NC"]), soft_labels(SHAPES["NC"], 211)
    losslab.set_fused("off")
    want = evaluate(losslab.binary_cross_entropy, x, t)
    losslab.set_fused("compiled")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = evaluate(losslab.binary_cross_entropy, x, t)  # raises RuntimeError today
    assert ["compiling the fused loss failed" in str(w.message) for w in caught] == [True]
    assert_results_close(got, want, F64)
