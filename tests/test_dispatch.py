"""The dispatcher (losslab._dispatch) and its backends agree: native equals composite, sweeps equal composite.

* Native equals composite, values and gradients (a non-uniform upstream), in
  float64 and float32, for every loss of the cross-entropy family and the
  focal losses, with ignored positions, weights, smoothing, probability
  targets and spatial inputs; all-ignored and empty batches give 0 with zero,
  finite gradients on native. Which backend ran is read off the autograd
  graph: native is torch's NllLossBackward0 (cross-entropy, NLL) or the one
  node _PrecomputedBackward (the sigmoid form, the softmax focal loss).
* Second derivatives through the native node (create_graph=True
  differentiates the composite formula), and gradcheck / gradgradcheck.
* Half precision through native: the input's dtype, close to float32.
* The compiled sweeps take hyperparameters as graph inputs: new values of
  gamma, alpha, beta and label_smoothing compile nothing new.
* The eager sweep chunks positions within a row (one large image) with the
  composite's results, chunks of at most max(CHUNK_NUMEL, C) elements, and
  the peak memory of one large image is that of many small ones.

Every test starts and ends in set_fused("auto"); module globals are changed
through monkeypatch only. No timing is asserted.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch
import torch._dynamo
import torch.nn.functional as F
from torch._dynamo.utils import counters

import losslab
from losslab import _dispatch, _forms, _fused, _native, _standalone
from losslab.bench import peak_memory

from .helpers import TOLERANCES, class_indices, gen, graph_nodes, logits, soft_targets, value_and_grad

F64 = torch.float64
F32 = torch.float32
C = 4
REDUCTIONS = ("none", "mean", "sum")
# the marks of the native backend in a graph
NATIVE_NODES = ("NllLossBackward0", "NllLoss2DBackward0", "NllLossNdBackward0", "_PrecomputedBackward")

pytestmark = [pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"),
              pytest.mark.usefixtures("fused_auto")]


# ----------------------------------------------------------------------------
# helpers


def backend_of(out: torch.Tensor) -> str:
    """"native", "fused" or "composite", from the nodes of the graph."""
    nodes = graph_nodes(out)
    if any("Fused" in n for n in nodes):
        return "fused"
    return "native" if nodes & set(NATIVE_NODES) else "composite"


def run_on(backend: str | None, fn: Callable, x: torch.Tensor, *args,
           **kwargs) -> tuple[torch.Tensor, torch.Tensor, str]:
    """value_and_grad of ``fn`` under forced(backend) (None: the default dispatch), and the backend that ran."""
    seen: list[str] = []

    def traced(inp, *a, **kw):
        out = fn(inp, *a, **kw)
        seen.append(backend_of(out))
        return out

    if backend is None:
        value, grad = value_and_grad(traced, x, *args, **kwargs)
    else:
        with _dispatch.forced(backend):
            value, grad = value_and_grad(traced, x, *args, **kwargs)
    return value, grad, seen[0]


def assert_close(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype, what: str) -> None:
    assert got.dtype == want.dtype, (what, got.dtype, want.dtype)
    torch.testing.assert_close(got, want, **TOLERANCES[dtype], msg=lambda m: f"{what}: {m}")


def soft_labels(shape, seed: int) -> torch.Tensor:
    """Labels in [0, 1] with some exact 0s and 1s."""
    t = torch.rand(shape, generator=gen(seed), dtype=F64)
    pick = torch.rand(shape, generator=gen(seed + 1))
    return torch.where(pick < 0.2, torch.zeros_like(t), torch.where(pick > 0.8, torch.ones_like(t), t))


def hard_labels_with_ignore(shape, seed: int, ignore: int = -1) -> torch.Tensor:
    """0/1 integer labels, about a fifth of them ``ignore`` (the first one always)."""
    t = (torch.rand(shape, generator=gen(seed)) < 0.4).long()
    drop = torch.rand(shape, generator=gen(seed + 1)) < 0.2
    drop.view(-1)[0] = True
    return torch.where(drop, torch.full_like(t, ignore), t)


def with_background(shape, seed: int, ignore: int | None = None) -> torch.Tensor:
    """Class indices in [0, C] (C = background), some ``ignore`` where given."""
    t = torch.randint(0, C + 1, shape, generator=gen(seed))
    t.view(-1)[0] = C
    if ignore is not None:
        drop = torch.rand(shape, generator=gen(seed + 1)) < 0.25
        drop.view(-1)[1] = True
        t = torch.where(drop, torch.full_like(t, ignore), t)
    return t


def quality_scores(shape, seed: int) -> torch.Tensor:
    """Varifocal / quality targets: 0 (negatives) or a score in (0, 1], some exactly 1."""
    s = torch.rand(shape, generator=gen(seed), dtype=F64) * 0.9 + 0.05
    pick = torch.rand(shape, generator=gen(seed + 1))
    return torch.where(pick < 0.5, torch.zeros_like(s), torch.where(pick > 0.9, torch.ones_like(s), s))


def class_weight(seed: int, n: int = C) -> torch.Tensor:
    return torch.rand(n, generator=gen(seed), dtype=F64) + 0.5


# ----------------------------------------------------------------------------
# the cases: a loss, an input shape, a target, keyword arguments and the native node expected


@dataclass
class Case:
    name: str
    loss: str
    shape: tuple[int, ...]
    target: Callable[[], Any]
    kwargs: dict[str, Any] = field(default_factory=dict)
    log_probs: bool = False  # nll_loss: the input is log_softmax of the logits
    native: bool = True  # the native backend is expected to compute it (False: no mark to check)

    def input(self, dtype: torch.dtype = F64, seed: int = 0) -> torch.Tensor:
        x = logits(*self.shape, seed=seed)
        if self.log_probs:
            x = torch.log_softmax(x, dim=1)
        return x.to(dtype)

    def fn(self) -> Callable:
        return getattr(losslab, self.loss)


def _ce_cases() -> list[Case]:
    nchw = (2, C, 3, 4)
    return [
        Case("cross_entropy index", "cross_entropy", (6, C), lambda: class_indices((6,), C, seed=11)),
        Case("cross_entropy ignore", "cross_entropy", (8, C),
             lambda: class_indices((8,), C, seed=12, ignore_index=-100, ignored=0.3)),
        Case("cross_entropy weight ignore", "cross_entropy", (8, C),
             lambda: class_indices((8,), C, seed=13, ignore_index=-100, ignored=0.3), {"weight": class_weight(14)}),
        Case("cross_entropy smoothing weight", "cross_entropy", (8, C),
             lambda: class_indices((8,), C, seed=15, ignore_index=3, ignored=0.3),
             {"label_smoothing": 0.15, "weight": class_weight(16), "ignore_index": 3}),
        # probability targets: F.cross_entropy or the composite, no node of its own to tell them apart
        Case("cross_entropy probs", "cross_entropy", (6, C), lambda: soft_targets(6, C, seed=17), native=False),
        Case("cross_entropy probs smoothing weight", "cross_entropy", (6, C), lambda: soft_targets(6, C, seed=18),
             {"label_smoothing": 0.1, "weight": class_weight(19)}, native=False),
        Case("cross_entropy NCHW weight ignore", "cross_entropy", nchw,
             lambda: class_indices((2, 3, 4), C, seed=20, ignore_index=-100, ignored=0.3),
             {"weight": class_weight(21)}),
        Case("cross_entropy NCHW smoothing", "cross_entropy", nchw,
             lambda: class_indices((2, 3, 4), C, seed=22), {"label_smoothing": 0.2}),
        Case("cross_entropy NCHW probs", "cross_entropy", nchw, lambda: soft_targets(2, C, 3, 4, seed=23),
             native=False),
        Case("nll_loss", "nll_loss", (6, C), lambda: class_indices((6,), C, seed=24), log_probs=True),
        Case("nll_loss weight ignore", "nll_loss", (8, C),
             lambda: class_indices((8,), C, seed=25, ignore_index=-100, ignored=0.3), {"weight": class_weight(26)},
             log_probs=True),
        Case("nll_loss NCHW", "nll_loss", nchw,
             lambda: class_indices((2, 3, 4), C, seed=27, ignore_index=-100, ignored=0.3), log_probs=True),
    ]


def _sigmoid_cases() -> list[Case]:
    cases = [
        Case("bce dense soft", "binary_cross_entropy", (6, C), lambda: soft_labels((6, C), 31)),
        Case("bce ignore", "binary_cross_entropy", (6, C), lambda: hard_labels_with_ignore((6, C), 32),
             {"ignore_index": -1}),
        Case("bce weight", "binary_cross_entropy", (6, C), lambda: soft_labels((6, C), 33),
             {"weight": class_weight(34)}),
        Case("bce index background ignore", "binary_cross_entropy", (7, C), lambda: with_background((7,), 35, -1),
             {"ignore_index": -1, "weight": class_weight(36)}),
        Case("bce smoothing", "binary_cross_entropy", (6, C), lambda: soft_labels((6, C), 37),
             {"label_smoothing": 0.2}),
        Case("bce NCHW index smoothing", "binary_cross_entropy", (2, C, 3, 2), lambda: with_background((2, 3, 2), 38),
             {"label_smoothing": 0.1}),
    ]
    for alpha in (None, 0.25):
        for gamma in (0.0, 0.5, 2.0, 3.0):
            cases.append(Case(f"sigmoid_focal alpha={alpha} gamma={gamma}", "sigmoid_focal_loss", (6, C),
                              lambda: soft_labels((6, C), 41), {"alpha": alpha, "gamma": gamma}))
    cases += [
        Case("sigmoid_focal weight", "sigmoid_focal_loss", (6, C), lambda: soft_labels((6, C), 42),
             {"gamma": 2.0, "weight": class_weight(43)}),
        Case("sigmoid_focal dense ignore gamma=0.5", "sigmoid_focal_loss", (6, C),
             lambda: hard_labels_with_ignore((6, C), 44), {"gamma": 0.5, "ignore_index": -1}),
        Case("sigmoid_focal index ignore weight", "sigmoid_focal_loss", (2, C, 3, 2),
             lambda: with_background((2, 3, 2), 45, -1), {"ignore_index": -1, "weight": class_weight(46)}),
    ]
    return cases


def _softmax_focal_cases() -> list[Case]:
    cases = []
    for gamma in (0.5, 2.0):
        cases += [
            Case(f"softmax_focal gamma={gamma}", "softmax_focal_loss", (6, C), lambda: class_indices((6,), C, seed=51),
                 {"gamma": gamma}),
            Case(f"softmax_focal alpha ignore gamma={gamma}", "softmax_focal_loss", (8, C),
                 lambda: class_indices((8,), C, seed=52, ignore_index=-100, ignored=0.3),
                 {"gamma": gamma, "alpha": class_weight(53)}),
            Case(f"softmax_focal NCHW ignore_index=2 gamma={gamma}", "softmax_focal_loss", (2, C, 3, 2),
                 lambda: class_indices((2, 3, 2), C, seed=54, ignore_index=2, ignored=0.3),
                 {"gamma": gamma, "ignore_index": 2, "alpha": 0.25}),
        ]
    return cases


def _balanced_cases() -> list[Case]:
    return [
        Case("balanced float alpha dense", "balanced_cross_entropy", (6, C), lambda: soft_labels((6, C), 61),
             {"alpha": 0.3}),
        Case("balanced float alpha index", "balanced_cross_entropy", (7, C), lambda: with_background((7,), 62, -100),
             {"alpha": 0.7}),
        Case("balanced per-class alpha ignore", "balanced_cross_entropy", (8, C),
             lambda: class_indices((8,), C, seed=63, ignore_index=-100, ignored=0.3),
             {"alpha": [0.1, 0.2, 0.3, 0.4]}),
        Case("balanced per-class alpha NCHW", "balanced_cross_entropy", (2, C, 3, 2),
             lambda: class_indices((2, 3, 2), C, seed=64), {"alpha": class_weight(65)}),
    ]


CASES = _ce_cases() + _sigmoid_cases() + _softmax_focal_cases() + _balanced_cases()


# ----------------------------------------------------------------------------
# 1. native equals composite


@pytest.mark.parametrize("dtype", [F64, F32], ids=["float64", "float32"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_native_equals_composite(case, reduction, dtype):
    x, target = case.input(dtype), case.target()
    native = run_on("native", case.fn(), x, target, reduction=reduction, **case.kwargs)
    composite = run_on("composite", case.fn(), x, target, reduction=reduction, **case.kwargs)
    assert composite[2] == "composite"
    if case.native:
        assert native[2] == "native"
    assert native[0].dtype == native[1].dtype == dtype
    assert_close(native[0], composite[0], dtype, "value")
    assert_close(native[1], composite[1], dtype, "gradient")
    assert torch.isfinite(native[1]).all()


@pytest.mark.parametrize("case", [c for c in CASES if c.native], ids=lambda c: c.name)
def test_small_inputs_run_native_by_default(case):
    """"auto" on small CPU inputs: the native backend, with the composite's values."""
    x, target = case.input(), case.target()
    default = run_on(None, case.fn(), x, target, **case.kwargs)
    composite = run_on("composite", case.fn(), x, target, **case.kwargs)
    assert default[2] == "native"
    assert_close(default[0], composite[0], F64, "value")
    assert_close(default[1], composite[1], F64, "gradient")


def test_forced_composite_never_runs_the_native_node():
    x = logits(6, C, seed=70).requires_grad_(True)
    t = soft_labels((6, C), 71)
    out = losslab.sigmoid_focal_loss(x, t)
    assert type(out.grad_fn).__name__ == "_PrecomputedBackward"  # the default on a small input
    with _dispatch.forced("composite"):
        out = losslab.sigmoid_focal_loss(x, t)
    assert "_PrecomputedBackward" not in graph_nodes(out)
    with _dispatch.forced("composite"), losslab.set_fused("eager"):  # forced wins over a sweep
        out = losslab.sigmoid_focal_loss(x, t)
    assert graph_nodes(out).isdisjoint({"_PrecomputedBackward", "_FusedLossBackward"})


def test_forced_rejects_unknown_backends():
    for bad in ("fast", "eager", "compiled"):  # the sweeps are chosen with set_fused
        with pytest.raises(ValueError, match="forced: backend must be 'native' or 'composite'; got"), \
                _dispatch.forced(bad):
            pass


# all-ignored and empty batches


def _all_ignored() -> list[Case]:
    return [
        Case("cross_entropy all ignored", "cross_entropy", (5, C), lambda: torch.full((5,), -100)),
        Case("cross_entropy weight all ignored", "cross_entropy", (5, C), lambda: torch.full((5,), -100),
             {"weight": class_weight(81)}),
        Case("cross_entropy smoothing all ignored", "cross_entropy", (5, C), lambda: torch.full((5,), -100),
             {"label_smoothing": 0.1}),
        Case("nll_loss all ignored", "nll_loss", (5, C), lambda: torch.full((5,), -100), log_probs=True),
        Case("bce dense all ignored", "binary_cross_entropy", (5, C), lambda: torch.full((5, C), -1),
             {"ignore_index": -1}),
        Case("bce index all ignored", "binary_cross_entropy", (5, C), lambda: torch.full((5,), -1),
             {"ignore_index": -1}),
        Case("sigmoid_focal all ignored gamma=2", "sigmoid_focal_loss", (5, C), lambda: torch.full((5,), -1),
             {"ignore_index": -1}),
        Case("sigmoid_focal all ignored gamma=0.5 weight", "sigmoid_focal_loss", (5, C),
             lambda: torch.full((5, C), -1), {"ignore_index": -1, "gamma": 0.5, "weight": class_weight(82)}),
        Case("softmax_focal all ignored", "softmax_focal_loss", (5, C), lambda: torch.full((5,), -100),
             {"gamma": 2.0, "alpha": class_weight(83)}),
        Case("softmax_focal all ignored gamma=0.5", "softmax_focal_loss", (5, C), lambda: torch.full((5,), -100),
             {"gamma": 0.5}),
        Case("balanced per-class all ignored", "balanced_cross_entropy", (5, C), lambda: torch.full((5,), -100),
             {"alpha": [0.1, 0.2, 0.3, 0.4]}),
        Case("balanced float all ignored", "balanced_cross_entropy", (5, C), lambda: torch.full((5,), -100),
             {"alpha": 0.25}),
    ]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", _all_ignored(), ids=lambda c: c.name)
def test_all_ignored_is_zero_with_zero_gradients_on_native(case, reduction):
    x = case.input(seed=84)
    if not case.log_probs:  # saturated logits too
        x[0] = torch.tensor([1e4, -1e4, 30.0, -30.0], dtype=F64)
    value, grad, backend = run_on("native", case.fn(), x, case.target(), reduction=reduction, **case.kwargs)
    assert backend == "native"
    assert torch.equal(value, torch.zeros_like(value)), value
    assert torch.isfinite(grad).all() and torch.equal(grad, torch.zeros_like(grad)), grad
    default = run_on(None, case.fn(), x, case.target(), reduction=reduction, **case.kwargs)
    assert default[2] == "native"
    assert torch.equal(default[0], value) and torch.equal(default[1], grad)


def _empty_cases() -> list[Case]:
    return [
        Case("cross_entropy", "cross_entropy", (0, C), lambda: torch.zeros(0, dtype=torch.long)),
        Case("cross_entropy weight", "cross_entropy", (0, C), lambda: torch.zeros(0, dtype=torch.long),
             {"weight": class_weight(91)}),
        Case("cross_entropy probs", "cross_entropy", (0, C), lambda: torch.zeros(0, C, dtype=F64), native=False),
        Case("nll_loss", "nll_loss", (0, C), lambda: torch.zeros(0, dtype=torch.long), log_probs=True),
        Case("bce dense", "binary_cross_entropy", (0, C), lambda: torch.zeros(0, C, dtype=F64)),
        Case("bce index", "binary_cross_entropy", (0, C), lambda: torch.zeros(0, dtype=torch.long)),
        Case("sigmoid_focal", "sigmoid_focal_loss", (0, C), lambda: torch.zeros(0, C, dtype=F64)),
        Case("sigmoid_focal index gamma=0.5", "sigmoid_focal_loss", (0, C, 3),
             lambda: torch.zeros(0, 3, dtype=torch.long),
             {"gamma": 0.5}),
        Case("softmax_focal", "softmax_focal_loss", (0, C), lambda: torch.zeros(0, dtype=torch.long),
             {"alpha": class_weight(92)}),
        Case("balanced per-class", "balanced_cross_entropy", (0, C), lambda: torch.zeros(0, dtype=torch.long),
             {"alpha": [0.1, 0.2, 0.3, 0.4]}),
    ]


@pytest.mark.parametrize("dtype", [F64, F32], ids=["float64", "float32"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", _empty_cases(), ids=lambda c: c.name)
def test_empty_batch_is_zero_on_native(case, reduction, dtype):
    x = case.input(dtype)
    for backend in ("native", None):
        value, grad, ran = run_on(backend, case.fn(), x, case.target(), reduction=reduction, **case.kwargs)
        if case.native:
            assert ran == "native"
        assert value.dtype == dtype and grad.shape == x.shape and grad.dtype == dtype
        if reduction == "none":
            assert value.numel() == 0
        else:
            assert value.shape == () and value.item() == 0.0
        assert torch.isfinite(value).all()


# ----------------------------------------------------------------------------
# 2. second derivatives through the native node


SECOND_ORDER = [
    Case("sigmoid_focal dense gamma=2", "sigmoid_focal_loss", (5, C), lambda: soft_labels((5, C), 101),
         {"gamma": 2.0, "alpha": 0.25}),
    Case("sigmoid_focal dense gamma=0.5 weight", "sigmoid_focal_loss", (5, C), lambda: soft_labels((5, C), 102),
         {"gamma": 0.5, "weight": class_weight(103)}),
    Case("sigmoid_focal index ignore gamma=3", "sigmoid_focal_loss", (2, C, 3),
         lambda: with_background((2, 3), 104, -1),
         {"gamma": 3.0, "ignore_index": -1}),
    Case("softmax_focal gamma=2 alpha ignore", "softmax_focal_loss", (6, C),
         lambda: class_indices((6,), C, seed=105, ignore_index=-100, ignored=0.3),
         {"gamma": 2.0, "alpha": class_weight(106)}),
    Case("softmax_focal NCHW gamma=0.5", "softmax_focal_loss", (2, C, 2, 3),
         lambda: class_indices((2, 2, 3), C, seed=107), {"gamma": 0.5}),
    Case("bce dense smoothing weight", "binary_cross_entropy", (5, C), lambda: soft_labels((5, C), 108),
         {"label_smoothing": 0.1, "weight": class_weight(109)}),
    Case("bce index ignore", "binary_cross_entropy", (7, C), lambda: with_background((7,), 110, -1),
         {"ignore_index": -1}),
]


def _second_order(backend: str | None, case: Case, x: torch.Tensor, target, reduction: str):
    """(the loss, its gradient with create_graph=True, a Hessian-vector product) of a weighted sum of the loss."""
    leaf = x.detach().clone().requires_grad_(True)
    with _dispatch.forced(backend) if backend else contextlib.nullcontext():
        out = case.fn()(leaf, target, reduction=reduction, **case.kwargs)
    ran = backend_of(out)
    upstream = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).reshape(out.shape)
    (grad,) = torch.autograd.grad((out * upstream).sum(), leaf, create_graph=True)
    v = torch.linspace(-1.0, 1.0, grad.numel(), dtype=grad.dtype).reshape(grad.shape)
    (hvp,) = torch.autograd.grad((grad * v).sum(), leaf)
    return out.detach(), grad.detach(), hvp, ran


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", SECOND_ORDER, ids=lambda c: c.name)
def test_second_derivative_through_native_equals_composite(case, reduction):
    x, target = case.input(seed=111), case.target()
    native = _second_order(None, case, x, target, reduction)
    composite = _second_order("composite", case, x, target, reduction)
    assert native[3] == "native" and composite[3] == "composite"
    for what, got, want in zip(("value", "gradient", "second derivative"), native[:3], composite[:3], strict=True):
        assert_close(got, want, F64, what)
    assert torch.isfinite(native[2]).all()


@pytest.mark.parametrize("case", SECOND_ORDER, ids=lambda c: c.name)
def test_gradcheck_and_gradgradcheck_under_default_dispatch(case):
    x, target = case.input(seed=112).requires_grad_(True), case.target()
    fn, kwargs = case.fn(), case.kwargs
    assert backend_of(fn(x, target, **kwargs)) == "native"
    for reduction in REDUCTIONS:
        def f(inp, reduction=reduction):
            return fn(inp, target, reduction=reduction, **kwargs)

        assert torch.autograd.gradcheck(f, (x,))
        assert torch.autograd.gradgradcheck(f, (x,))


# ----------------------------------------------------------------------------
# 3. half precision through native


HALF = [c for c in CASES if c.name in {
    "cross_entropy weight ignore", "cross_entropy smoothing weight", "cross_entropy probs", "nll_loss weight ignore",
    "bce dense soft", "bce index background ignore", "sigmoid_focal alpha=0.25 gamma=2.0",
    "sigmoid_focal alpha=None gamma=0.5", "sigmoid_focal index ignore weight", "softmax_focal alpha ignore gamma=2.0",
    "softmax_focal NCHW ignore_index=2 gamma=0.5", "balanced float alpha index", "balanced per-class alpha ignore",
}]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", HALF, ids=lambda c: c.name)
def test_half_precision_through_native(case, reduction, dtype):
    assert len(HALF) == 13
    x = case.input(dtype, seed=121)
    target = case.target()
    value, grad, ran = run_on(None, case.fn(), x, target, reduction=reduction, **case.kwargs)
    if case.native:
        assert ran == "native"
    assert value.dtype == dtype and grad.dtype == dtype
    assert torch.isfinite(value).all() and torch.isfinite(grad).all()
    want_value, want_grad, _ = run_on(None, case.fn(), x.float(), target, reduction=reduction, **case.kwargs)
    torch.testing.assert_close(value.float(), want_value, **TOLERANCES[dtype])
    torch.testing.assert_close(grad.float(), want_grad, **TOLERANCES[dtype])


# ----------------------------------------------------------------------------
# 4. compiled sweeps: a new hyperparameter value compiles nothing


def _compare_compiled(fn: Callable, x: torch.Tensor, target, **kwargs) -> None:
    """One call under set_fused("compiled") (the fused node ran) against forced("composite")."""
    with losslab.set_fused("compiled"):
        got = run_on(None, fn, x, target, **kwargs)
    want = run_on("composite", fn, x, target, **kwargs)
    assert got[2] == "fused", kwargs
    assert_close(got[0], want[0], F32, f"value {kwargs}")
    assert_close(got[1], want[1], F32, f"gradient {kwargs}")


def _graphs() -> int:
    """Graphs compiled: dynamo's, and the sweeps' standalone graphs (losslab._standalone, called without it)."""
    return counters["stats"]["unique_graphs"] + counters["losslab"]["graphs"]


def test_new_hyperparameters_compile_nothing(fresh_dynamo):
    g = gen(130)
    n = 64
    x = torch.randn(n, 8, generator=g) * 3
    dense = torch.rand(n, 8, generator=g)
    index = torch.randint(0, 8, (n,), generator=g)
    q = torch.where(torch.rand(n, 8, generator=g) < 0.5, torch.rand(n, 8, generator=g), torch.zeros(n, 8))
    gammas = [0.25 + 0.2 * i for i in range(20)]
    alphas = [0.05 + 0.045 * i for i in range(20)]
    calls: list[tuple[str, Callable, Any, list[dict]]] = [
        ("sigmoid_focal_loss", losslab.sigmoid_focal_loss, dense,
         [{"gamma": gm, "alpha": a} for gm, a in zip(gammas, alphas, strict=True)]),
        ("softmax_focal_loss", losslab.softmax_focal_loss, index, [{"gamma": gm} for gm in gammas]),
        ("varifocal_loss", losslab.varifocal_loss, q,
         [{"alpha": a, "gamma": gm} for a, gm in zip(alphas[:6], gammas[3:9], strict=True)]),
        ("quality_focal_loss", losslab.quality_focal_loss, q, [{"beta": b} for b in gammas[:6]]),
        ("cross_entropy", losslab.cross_entropy, index, [{"label_smoothing": s} for s in (0.05, 0.1, 0.2, 0.3, 0.45)]),
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name, fn, target, settings in calls:
            before = _graphs()
            _compare_compiled(fn, x, target, **settings[0])
            first = _graphs()
            assert first > before, (name, dict(counters["stats"]))  # the first call compiled the sweep
            for kwargs in settings[1:]:
                _compare_compiled(fn, x, target, **kwargs)
            assert _graphs() == first, (name, dict(counters["stats"]))
        # NumPy scalars are hyperparameters like any other float
        first = _graphs()
        for gamma in (np.float32(2.5), np.float64(1.5)):
            _compare_compiled(losslab.sigmoid_focal_loss, x, dense, gamma=gamma, alpha=np.float64(0.4))
        assert _graphs() == first, dict(counters["stats"])
        # integer gammas compile nothing; 2, of any type (the default gamma, QFL's beta), is the constant of one
        # graph more a sweep, where m^2 is a product (not exp(2 log m)), with the composite's values
        before = _graphs()
        _compare_compiled(losslab.sigmoid_focal_loss, x, dense, gamma=2, alpha=0.25)
        first = _graphs()
        assert first == before + 1, dict(counters["stats"])
        for gamma in (3, 4, 1, 2.0, np.float64(2.0), np.int64(2)):
            _compare_compiled(losslab.sigmoid_focal_loss, x, dense, gamma=gamma, alpha=0.25)
        assert _graphs() == first, dict(counters["stats"])
        for fn, target, name in ((losslab.softmax_focal_loss, index, "gamma"), (losslab.varifocal_loss, q, "gamma"),
                                 (losslab.quality_focal_loss, q, "beta")):
            before = _graphs()
            _compare_compiled(fn, x, target, **{name: 2.0})
            first = _graphs()
            assert first == before + 1, (fn.__name__, dict(counters["stats"]))
            for value in (2, 1.5, 3):
                _compare_compiled(fn, x, target, **{name: value})
            assert _graphs() == first, (fn.__name__, dict(counters["stats"]))
    runtime = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert runtime == []
    assert not _fused._failed_signatures


# ----------------------------------------------------------------------------
# 5. the eager sweep over chunks of positions


def _chunk_spy(monkeypatch) -> dict[str, Any]:
    """Counts the calls of _fused._run_positions and the element count of every chunk it hands the sweep."""
    record: dict[str, Any] = {"calls": 0, "chunks": []}
    original = _fused._run_positions

    def counted(sweep, *args, **kwargs):
        record["calls"] += 1

        def recorded(x, *rest):
            record["chunks"].append(x.numel())
            return sweep(x, *rest)

        return original(recorded, *args, **kwargs)

    monkeypatch.setattr(_fused, "_run_positions", counted)
    return record


def _position_cases(c: int) -> list[tuple[str, Callable, Any, dict]]:
    shape, positions = (1, c, 9, 13), (1, 9, 13)
    w = torch.rand(c, generator=gen(141), dtype=F64) + 0.5
    dense = soft_labels(shape, 142)
    dense_ignored = torch.where(torch.rand(shape, generator=gen(143)) < 0.2, torch.full_like(dense, -1.0), dense)
    index = torch.randint(0, c + 1, positions, generator=gen(144))
    index = torch.where(torch.rand(positions, generator=gen(145)) < 0.2, torch.full_like(index, -1), index)
    labels = torch.randint(0, c + 1, positions, generator=gen(146))
    scores = torch.rand(positions, generator=gen(147), dtype=F64)
    labels = torch.where(torch.rand(positions, generator=gen(148)) < 0.2, torch.full_like(labels, -1), labels)
    return [
        ("sigmoid_focal dense ignore weight", losslab.sigmoid_focal_loss, dense_ignored,
         {"ignore_index": -1, "weight": w, "gamma": 0.5}),
        ("sigmoid_focal index ignore weight", losslab.sigmoid_focal_loss, index,
         {"ignore_index": -1, "weight": w, "alpha": 0.25}),
        ("quality_focal pair ignore weight", losslab.quality_focal_loss, (labels, scores),
         {"ignore_index": -1, "weight": w}),
        ("quality_focal dense", losslab.quality_focal_loss, soft_labels(shape, 149), {"beta": 1.5}),
        ("varifocal weight", losslab.varifocal_loss, quality_scores(shape, 150), {"weight": w, "gamma": 1.5}),
    ]


@pytest.mark.parametrize("chunk, c", [(64, 5), (3, 5)], ids=["64 elements, 5 classes", "3 elements, 5 classes"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_eager_sweep_chunks_positions(chunk, c, reduction, monkeypatch):
    for kind in ("sigmoid", "quality", "varifocal"):
        assert _dispatch.TABLE[kind].eager
    monkeypatch.setattr(_fused, "CHUNK_NUMEL", chunk)
    x = logits(1, c, 9, 13, seed=140)
    x[0, :, 0, 0] = torch.tensor([1e4, -1e4, 40.0, -40.0, 0.0], dtype=F64)[:c]
    for name, fn, target, kwargs in _position_cases(c):
        spy = _chunk_spy(monkeypatch)
        with losslab.set_fused("eager"):
            got = run_on(None, fn, x, target, reduction=reduction, **kwargs)
        want = run_on("composite", fn, x, target, reduction=reduction, **kwargs)
        assert got[2] == "fused" and want[2] == "composite", name
        assert_close(got[0], want[0], F64, f"{name}: value")
        assert_close(got[1], want[1], F64, f"{name}: gradient")
        assert spy["calls"] == 1, name  # the chunked path, once
        step = max(1, chunk // c)
        assert len(spy["chunks"]) == -(-9 * 13 // step), (name, spy["chunks"])
        assert max(spy["chunks"]) <= max(chunk, c), (name, spy["chunks"])
        assert sum(spy["chunks"]) == x.numel()


def test_the_softmax_family_has_no_eager_sweep(monkeypatch):
    assert not _dispatch.TABLE["softmax"].eager
    monkeypatch.setattr(_fused, "CHUNK_NUMEL", 64)
    spy = _chunk_spy(monkeypatch)
    x = logits(1, C, 9, 13, seed=151)
    target = class_indices((1, 9, 13), C, seed=152)
    with losslab.set_fused("eager"):
        got = run_on(None, losslab.softmax_focal_loss, x, target)
    assert got[2] == "native" and spy["calls"] == 0


def _focal_peaks(chunk: int | None, monkeypatch) -> dict[tuple[int, ...], float]:
    if chunk is not None:
        monkeypatch.setattr(_fused, "CHUNK_NUMEL", chunk)
    g = gen(160)
    peaks = {}
    for shape in ((16, 19, 64, 64), (1, 19, 256, 256)):
        x = torch.randn(shape, generator=g)
        target = torch.randint(0, 20, shape[:1] + shape[2:], generator=g)
        with losslab.set_fused("eager"):
            assert backend_of(losslab.sigmoid_focal_loss(x.requires_grad_(True), target)) == "fused"
            peaks[shape] = peak_memory(lambda inp, t: losslab.sigmoid_focal_loss(inp, t), x, target)
    return peaks


def test_one_large_image_needs_the_memory_of_many_small_ones(monkeypatch):
    """The eager sweep's peak memory (over the logits' bytes) for (1, 19, 256, 256) is at most 1.5 times that
    for (16, 19, 64, 64), the same number of elements; without chunks (the control) the measure tells."""
    peaks = _focal_peaks(None, monkeypatch)
    small, large = peaks[(16, 19, 64, 64)], peaks[(1, 19, 256, 256)]
    assert 1.0 < small and large <= 1.5 * small, peaks  # the gradient, and chunk-sized temporaries
    unchunked = _focal_peaks(1 << 30, monkeypatch)  # one sweep over the whole batch
    assert unchunked[(1, 19, 256, 256)] > 2 * large, (peaks, unchunked)


class _FiveTemporaries(torch.autograd.Function):
    """Forward holds five tensors of the input's size at once (as the native and fused nodes hold theirs)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.shape = x.shape
        held = [x * float(k) for k in range(1, 6)]
        return torch.stack([t.sum() for t in held]).sum()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.expand(ctx.shape).clone()


def test_bench_peak_memory_counts_temporaries_inside_an_autograd_function():
    """losslab.bench.peak_memory sees the temporaries made inside an autograd Function's forward (the native
    and fused backends are such Functions): five alive at once, then the gradient."""
    peak = peak_memory(lambda inp, t: _FiveTemporaries.apply(inp), torch.randn(64, 64), None)
    assert 5.0 <= peak <= 6.2, peak


# ----------------------------------------------------------------------------
# regression losses: torch's smooth_l1_loss / huber_loss against the composite


@pytest.mark.parametrize("dtype", [F64, F32], ids=["float64", "float32"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name, kwargs", [
    ("smooth_l1_loss", {"beta": 1.0}), ("smooth_l1_loss", {"beta": 0.0}), ("smooth_l1_loss", {"beta": 0.3}),
    ("huber_loss", {"delta": 0.7}), ("smooth_l1_loss", {"weight": [0.5, 2.0, 1.0, 0.0]}),
    ("huber_loss", {"avg_factor": 3.0}), ("smooth_l1_loss", {"avg_factor": 0.0}),
], ids=lambda v: str(v))
def test_regression_native_equals_composite(name, kwargs, reduction, dtype):
    x = logits(6, 4, seed=901, dtype=dtype)
    target = logits(6, 4, seed=902, dtype=dtype)
    target.view(-1)[:3] = x.view(-1)[:3] + torch.tensor([0.0, 0.3, -0.7], dtype=dtype)  # at 0 and at the kinks
    fn = getattr(losslab, name)
    native = run_on("native", fn, x, target, reduction=reduction, **kwargs)
    composite = run_on("composite", fn, x, target, reduction=reduction, **kwargs)
    assert "NllLoss" not in str(native[2])
    assert_close(native[0], composite[0], dtype, "value")
    assert_close(native[1], composite[1], dtype, "gradient")


def test_regression_runs_torch_kernels_by_default():
    x = torch.randn(5, 4, requires_grad=True)
    names = graph_nodes(losslab.smooth_l1_loss(x, torch.zeros(5, 4)))
    assert any("SmoothL1" in n for n in names), names
    names = graph_nodes(losslab.huber_loss(x, torch.zeros(5, 4)))
    assert any("Huber" in n for n in names), names


@pytest.mark.parametrize("name", ["sigmoid_focal_loss", "binary_cross_entropy", "softmax_focal_loss"])
def test_without_a_gradient_the_native_node_computes_the_loss_only(name, monkeypatch):
    """Under no_grad (evaluation) the native node is skipped: the composite's value, and no gradient computed."""
    x = logits(6, C, seed=911)
    target = class_indices((6,), C, seed=912) if name == "softmax_focal_loss" else soft_labels((6, C), 913)
    want = getattr(losslab, name)(x.clone().requires_grad_(True), target).detach()
    monkeypatch.setattr(losslab._native._Precomputed, "apply", _must_not_run)
    with torch.no_grad():
        got = getattr(losslab, name)(x, target)
    torch.testing.assert_close(got, want, **TOLERANCES[F64])


def _must_not_run(*args, **kwargs):
    raise AssertionError("the native node ran without a gradient to compute")


def _spy_sweeps(monkeypatch) -> list[Any]:
    """Record the backend of each sweep "auto" runs (without running it: a zero loss comes back); a plain call's
    compiled sweep called directly (_fused.direct) records True, as the dispatcher's compiled path."""
    seen: list[Any] = []

    def spy(fn, input, sweep, batched, shared, reduction, denominator, *, per_position, compiled):
        seen.append(compiled)
        return torch.zeros((), dtype=input.dtype)

    def spy_direct(fn, input, sweep, batched, shared, reduction, denominator):
        seen.append(True)
        return torch.zeros((), dtype=input.dtype)

    monkeypatch.setattr(_fused, "fused", spy)
    monkeypatch.setattr(_fused, "direct", spy_direct)
    return seen


@pytest.mark.parametrize("compiler", [True, False], ids=["compiler", "no compiler"])
def test_the_sigmoid_form_compiles_from_fewer_elements(compiler, monkeypatch):
    """"auto" compiles the sigmoid focal sweep from COMPILE_MIN_NUMEL / 32 elements and the BCE sweep from
    COMPILE_MIN_NUMEL / 16 (the native sigmoid node is many small kernels); the softmax family from
    COMPILE_MIN_NUMEL. Without a compiler nothing changes below COMPILE_MIN_NUMEL."""
    monkeypatch.delenv("LOSSLAB_COMPILE", raising=False)
    monkeypatch.setattr(_dispatch, "COMPILE_MIN_NUMEL", 1024)
    seen = _spy_sweeps(monkeypatch)
    calls = {
        "sigmoid_focal_loss": lambda x: losslab.sigmoid_focal_loss(x, soft_labels(x.shape, 1)),
        "sigmoid_focal_loss, class indices": lambda x: losslab.sigmoid_focal_loss(x, class_indices(x.shape[:1], C)),
        "binary_cross_entropy": lambda x: losslab.binary_cross_entropy(x, soft_labels(x.shape, 2)),
        "cross_entropy": lambda x: losslab.cross_entropy(x, class_indices(x.shape[:1], C)),
        "softmax_focal_loss": lambda x: losslab.softmax_focal_loss(x, class_indices(x.shape[:1], C)),
    }
    first = {"sigmoid_focal_loss": 32, "sigmoid_focal_loss, class indices": 32, "binary_cross_entropy": 64,
             "cross_entropy": 1024, "softmax_focal_loss": 1024}
    with contextlib.ExitStack() as stack:
        if not compiler:
            stack.enter_context(_dispatch.without_compiler())
        for name, call in calls.items():
            for rows in (first[name] // C - 1, first[name] // C):
                seen.clear()
                call(logits(rows, C, seed=rows).requires_grad_(True))
                runs_compiled = rows * C >= first[name] and compiler
                assert seen == ([True] if runs_compiled else []), (name, rows * C)


def _with_saturated_rows(g: torch.Generator) -> torch.Tensor:
    """(42, C) float64 logits: 40 random rows and two of saturated and tiny values."""
    return torch.cat([torch.randn(40, C, generator=g, dtype=F64) * 3,
                      torch.tensor([[-200.0, -40.0, 40.0, 200.0], [0.0, 1e-3, -17.0, 17.0]], dtype=F64)])


def _assert_sweeps_agree(got: tuple, want: tuple) -> None:
    """Two sweeps' (loss, gradient): finite and equal to float64 rounding."""
    for a, b in zip(got, want, strict=True):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-300)


def _as_tensor(value: float) -> torch.Tensor:
    """A hyperparameter as a compiled sweep's 0-d float64 input (also 2, which the compiled path keeps a number)."""
    return torch.tensor(float(value), dtype=F64)


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0, 3.7])
@pytest.mark.parametrize("as_tensor", [False, True], ids=["float gamma (eager)", "tensor gamma (compiled)"])
def test_the_class_index_sweep_equals_the_dense_sweep_on_its_one_hot(gamma, as_tensor):
    """The class-index sweep knows its targets are 0 or 1 (its focal factor takes log(1 - p_t) from the BCE
    terms and needs no division); on the one-hot targets the general dense sweep agrees, value and gradient,
    saturated logits included."""
    g = gen(990)
    x = _with_saturated_rows(g)
    index = torch.randint(0, C + 1, (x.shape[0],), generator=g)
    dense = torch.nn.functional.one_hot(index, C + 1)[:, :C].to(F64)
    scale = torch.tensor(1.0 / x.numel(), dtype=F64)
    hyper = _as_tensor if as_tensor else (lambda v: v)
    for alpha in (None, 0.25):
        shared = (hyper(alpha) if alpha is not None else None, hyper(gamma), 0.0, False)
        got = _fused.sigmoid_index_sweep(x, index, None, None, None, scale, *shared)
        want = _fused.sigmoid_dense_sweep(x, dense, None, None, None, scale, *shared)
        _assert_sweeps_agree(got, want)


@pytest.mark.parametrize("gamma", [0.5, 2.0, 3.7])
@pytest.mark.parametrize("as_tensor", [False, True], ids=["float gamma (eager)", "tensor gamma (compiled)"])
def test_the_binary_dense_sweep_equals_the_general_one_on_zeros_and_ones(gamma, as_tensor):
    """A dense multi-label target of 0s and 1s (several positives a row, pos_weight, ignored positions): the
    binary sweep's focal factor agrees with the general dense sweep, value and gradient, saturated logits too."""
    g = gen(991)
    x = _with_saturated_rows(g)
    t = (torch.rand(x.shape, generator=g) < 0.4).to(F64)
    t[-2] = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=F64)
    valid = torch.rand(x.shape, generator=g) < 0.9
    scale = torch.tensor(1.0 / x.numel(), dtype=F64)
    hyper = _as_tensor if as_tensor else (lambda v: v)
    for alpha, pw, keep in ((None, None, None), (0.25, torch.rand(x.shape, generator=g, dtype=F64) + 0.5, valid)):
        for reduce in (False, True):
            shared = (hyper(alpha) if alpha is not None else None, hyper(gamma), 0.0, reduce)
            got = _fused.sigmoid_binary_sweep(x, t, keep, None, pw, scale, *shared)
            want = _fused.sigmoid_dense_sweep(x, t, keep, None, pw, scale, *shared)
            _assert_sweeps_agree(got, want)


def test_a_large_one_hot_dense_target_takes_the_binary_sweep(fresh_dynamo, monkeypatch):
    """"auto" on a large CPU input with a dense focal target: one compiled pass finds 0s and 1s only, and the
    binary sweep runs (the composite's values); a soft target, or -1 marking ignored positions, keeps the
    general sweep, as does BCE (no focal factor); with value checks off nothing is read and the general sweep
    runs."""
    monkeypatch.setattr(_dispatch, "COMPILE_MIN_NUMEL", 64)  # 37 x 4 = 148 elements are "large" now
    g = gen(992)
    x = torch.randn(37, C, generator=g) * 3
    x[0] = torch.tensor([-200.0, -40.0, 40.0, 200.0])
    one_hot = (torch.rand(37, C, generator=g) < 0.3).float()
    chosen: list[str] = []
    real = _fused.fused

    def spy(fn, input, sweep, *args, **kwargs):
        chosen.append(sweep.__name__)
        return real(fn, input, sweep, *args, **kwargs)

    monkeypatch.setattr(_fused, "fused", spy)
    got = run_on(None, losslab.sigmoid_focal_loss, x, one_hot, gamma=2.0, alpha=0.25)
    want = run_on("composite", losslab.sigmoid_focal_loss, x, one_hot, gamma=2.0, alpha=0.25)
    assert chosen == ["sigmoid_binary_sweep"] and got[2] == "fused"
    assert_close(got[0], want[0], F32, "value")
    assert_close(got[1], want[1], F32, "gradient")
    soft = one_hot.clone()
    soft[3, 1] = 0.5
    marked = one_hot.clone()
    marked[4, 2] = -1.0
    assert _fused.binary(one_hot) and not _fused.binary(soft) and not _fused.binary(marked)

    class Stop(Exception):
        pass

    def record(fn, input, sweep, *args, **kwargs):  # which sweep, without compiling the general one here
        chosen.append(sweep.__name__)
        raise Stop

    monkeypatch.setattr(_fused, "fused", record)
    chosen.clear()
    focal = functools.partial(losslab.sigmoid_focal_loss, gamma=2.0)
    for fn, target, kwargs, checks in ((focal, soft, {}, None), (focal, marked, {"ignore_index": -1}, None),
                                       (losslab.binary_cross_entropy, one_hot, {}, None), (focal, one_hot, {}, False)):
        with losslab.set_checks(checks), pytest.raises(Stop):  # BCE: no focal factor, nothing to save
            fn(x.clone().requires_grad_(True), target, **kwargs)
    assert chosen == ["sigmoid_dense_sweep"] * 4


def test_the_pass_that_finds_zeros_and_ones_is_the_value_check(fresh_dynamo, monkeypatch):
    """A large focal input with a dense target: the one compiled pass that finds 0s and 1s only replaces the
    [0, 1] check (one pass over the target, not two); a soft target gets the check as well, and a value
    outside [0, 1] (or NaN) the general message."""
    monkeypatch.setattr(_dispatch, "COMPILE_MIN_NUMEL", 64)  # 37 x 4 = 148 elements are "large" now
    g = gen(995)
    x = torch.randn(37, C, generator=g)
    one_hot = (torch.rand(37, C, generator=g) < 0.3).float()
    checked: list[str] = []
    real_check = _forms.check_unit_interval

    def spy_check(fn, name, *args, **kwargs):
        checked.append(name)
        return real_check(fn, name, *args, **kwargs)

    class Stop(Exception):
        pass

    def stop(*args, **kwargs):  # prepared and chosen: no need to compile the sweep here
        raise Stop

    monkeypatch.setattr(_forms, "check_unit_interval", spy_check)
    monkeypatch.setattr(_fused, "fused", stop)
    soft = one_hot.clone()
    soft[3, 1] = 0.5
    for target, want in ((one_hot, []), (soft, ["target"])):
        checked.clear()
        with pytest.raises(Stop):
            losslab.sigmoid_focal_loss(x.clone().requires_grad_(True), target)
        assert checked == want
    for bad, shown in ((2.0, "2.0"), (float("nan"), "nan")):
        target = one_hot.clone()
        target[5, 2] = bad
        message = rf"sigmoid_focal_loss: target must lie in \[0, 1\]; got a value of {shown}"
        with pytest.raises(ValueError, match=message):
            losslab.sigmoid_focal_loss(x.clone().requires_grad_(True), target)


# ----------------------------------------------------------------------------
# the plain cross-entropy call's shortcut


def _spy_run(monkeypatch) -> list:
    calls: list = []
    real = _dispatch.run

    def spy(call):
        calls.append(call.fn)
        return real(call)

    monkeypatch.setattr(_dispatch, "run", spy)
    return calls


PLAIN_LOSSES = {
    "cross_entropy": losslab.cross_entropy,
    "softmax_focal_loss": lambda x, y, **kw: losslab.softmax_focal_loss(x, y, **kw),
    "softmax_focal_loss gamma 0.5": lambda x, y, **kw: losslab.softmax_focal_loss(x, y, gamma=0.5, **kw),
}


@pytest.mark.parametrize("name", list(PLAIN_LOSSES))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(7, 5), (3, 4, 2, 3)])
def test_plain_softmax_call_skips_the_prepared_call_with_its_values(name, reduction, dtype, shape, monkeypatch):
    """The plain call (in-range int64 indices, none ignored, no option, small CPU input) skips building a Call,
    with the prepared native path's values, gradients and second derivatives (read with the shortcut off: a
    forced backend)."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(*shape, generator=g, dtype=dtype)
    y = torch.randint(0, shape[1], shape[:1] + shape[2:], generator=g)
    up = torch.rand(shape[:1] + shape[2:], generator=g, dtype=dtype) if reduction == "none" else None
    loss = _shortcut_equals_prepared(PLAIN_LOSSES[name], x, y, reduction, up, monkeypatch)
    assert loss.dtype == dtype


def _shortcut_equals_prepared(fn, x, target, reduction, up, monkeypatch) -> torch.Tensor:
    """fn's plain call prepares no Call and equals the forced native path: values, gradients, second
    derivatives. Returns the loss."""
    calls = _spy_run(monkeypatch)
    results = []
    for shortcut in (True, False):
        xx = x.clone().requires_grad_(True)
        with contextlib.nullcontext() if shortcut else _dispatch.forced("native"):
            loss = fn(xx, target, reduction=reduction)
        (grad,) = torch.autograd.grad(loss, xx, up, create_graph=True)
        (second,) = torch.autograd.grad(grad.square().sum(), xx)
        results.append((loss.detach(), grad.detach(), second))
    assert len(calls) == 1  # only the forced call was prepared
    for a, b in zip(*results):
        assert torch.equal(a, b)
    return results[0][0]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("ignore_index", [-100, 2, 255])
def test_plain_cross_entropy_with_ignored_positions(reduction, ignore_index, monkeypatch):
    """Some positions ignored (not all): still the shortcut, torch's own mean over the kept ones, equal to the
    prepared path's sum over the count (to rounding; it is exact on these)."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(3, 5, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 5, (3, 4), generator=g)
    y[0, 1] = y[2, 3] = ignore_index
    up = torch.rand(3, 4, generator=g, dtype=torch.float64) if reduction == "none" else None
    fn = functools.partial(losslab.cross_entropy, ignore_index=ignore_index)
    loss = _shortcut_equals_prepared(fn, x, y, reduction, up, monkeypatch)
    if reduction == "none":
        assert loss[0, 1] == 0 and loss[2, 3] == 0


@pytest.mark.parametrize("variant", ["all ignored", "int32 target", "float16 input", "checks off", "weight",
                                     "smoothing", "large", "mode eager", "focal with ignored"])
def test_the_rest_takes_the_prepared_call(variant, monkeypatch):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(6, 5, generator=g)
    y = torch.randint(0, 5, (6,), generator=g)
    y[0], y[1] = 0, 4
    kwargs: dict[str, Any] = {}
    context: Any = contextlib.nullcontext()
    loss = losslab.cross_entropy
    if variant == "all ignored":
        y[:] = -100
    elif variant == "focal with ignored":
        y[2] = -100
        loss = losslab.softmax_focal_loss
    elif variant == "int32 target":
        y = y.int()
    elif variant == "float16 input":
        x = x.half()
    elif variant == "checks off":
        context = losslab.set_checks(False)
    elif variant == "weight":
        kwargs["weight"] = [1.0, 2.0, 1.0, 1.0, 0.5]
    elif variant == "smoothing":
        kwargs["label_smoothing"] = 0.1
    elif variant == "large":
        monkeypatch.setattr(_dispatch, "COMPILE_MIN_NUMEL", 16)  # 30 elements are large now
        monkeypatch.setattr(_dispatch, "_compiler_disabled", True)  # no compile in a unit test
    elif variant == "mode eager":
        context = losslab.set_fused("eager")
    calls = _spy_run(monkeypatch)
    with context:
        value = loss(x, y, **kwargs)
    assert calls == [loss.__name__]
    if variant == "all ignored":
        assert value.item() == 0.0


@pytest.mark.parametrize("reduction", ["sum", "none"])
def test_plain_cross_entropy_all_ignored_without_a_mean(reduction, monkeypatch):
    """Every position ignored, "sum" or "none": torch's kernel gives losslab's zeros, so the shortcut stays."""
    x = torch.randn(4, 3, dtype=torch.float64)
    y = torch.full((4,), -100)
    loss = _shortcut_equals_prepared(losslab.cross_entropy, x, y, reduction,
                                     torch.rand(4, dtype=torch.float64) if reduction == "none" else None,
                                     monkeypatch)
    assert not loss.any()


def test_plain_cross_entropy_nan_logit_takes_the_prepared_call(monkeypatch):
    """A NaN mean (torch's all-ignored mean looks the same) is recomputed by the prepared call: NaN still."""
    x = torch.randn(4, 3)
    x[1, 2] = float("nan")
    calls = _spy_run(monkeypatch)
    assert losslab.cross_entropy(x, torch.tensor([0, 1, 2, 0])).isnan()
    assert calls == ["cross_entropy"]


@pytest.mark.parametrize("present", [True, False])
def test_plain_softmax_focal_with_a_class_as_ignore_index(present, monkeypatch):
    """ignore_index inside [0, C): the focal node cannot see it (gather takes it), so one comparison looks; the
    prepared call where it occurs, the shortcut where it does not, equal to the forced native path."""
    g = torch.Generator().manual_seed(8)
    x = torch.randn(6, 4, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 3, 1, 0, 3]) if not present else torch.tensor([0, 1, 2, 1, 0, 3])
    fn = functools.partial(losslab.softmax_focal_loss, ignore_index=2)
    if present:
        calls = _spy_run(monkeypatch)
        loss = fn(x, y, reduction="none")
        assert calls == ["softmax_focal_loss"] and loss[2] == 0
    else:
        _shortcut_equals_prepared(fn, x, y, "mean", None, monkeypatch)


def test_a_bad_index_gets_the_general_message():
    x = torch.randn(4, 3)
    for bad in (3, -1, -100):
        with pytest.raises(ValueError, match=r"cross_entropy: target class indices must be in \[0, 3\).*got " +
                           str(bad)):
            losslab.cross_entropy(x, torch.tensor([0, 1, bad, 2]), ignore_index=None)
        for gamma in (0.0, 2.0):  # torch's kernel (IndexError) or the focal node's gather (RuntimeError) saw it
            with pytest.raises(ValueError, match=r"focal_loss: target class indices must be in \[0, 3\)"):
                losslab.softmax_focal_loss(x, torch.tensor([0, 1, bad, 2]), gamma=gamma, ignore_index=None)
    with pytest.raises(ValueError, match=r"must be in \[0, 3\) or ignore_index=255; got -100"):
        losslab.cross_entropy(torch.randn(2, 3, 2, 2), torch.tensor([[[0, 1], [-100, 2]], [[0, 0], [255, 0]]]),
                              ignore_index=255)
    # all ignored: 0, not torch's NaN
    assert losslab.cross_entropy(x, torch.full((4,), -100)).item() == 0.0


SIGMOID_PLAIN = {
    "binary_cross_entropy": losslab.binary_cross_entropy,
    "sigmoid_focal_loss": losslab.sigmoid_focal_loss,
    "sigmoid_focal_loss no alpha, gamma 0.5":
        lambda x, y, **kw: losslab.sigmoid_focal_loss(x, y, alpha=None, gamma=0.5, **kw),
}


@pytest.mark.parametrize("name", list(SIGMOID_PLAIN))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_plain_sigmoid_call_skips_the_prepared_call_with_its_values(name, reduction, dtype, monkeypatch):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(6, 4, 3, generator=g, dtype=dtype) * 4
    t = (torch.rand(6, 4, 3, generator=g) < 0.3).to(dtype)
    t[0] = 0.25  # soft targets too
    up = torch.rand(6, 4, 3, generator=g, dtype=dtype) if reduction == "none" else None
    assert _shortcut_equals_prepared(SIGMOID_PLAIN[name], x, t, reduction, up, monkeypatch).dtype == dtype


def _plain_and_prepared(fn, x, target, reduction, up, monkeypatch) -> list[tuple[torch.Tensor, ...]]:
    """fn's plain call and the same call through a prepared Call (the plain shortcut switched off for it):
    (loss, gradient, backend) of each."""
    results = []
    for plain in (True, False):
        with monkeypatch.context() as m:
            if not plain:
                m.setattr(_forms, "_plain_sigmoid", lambda *args: None)
            xx = x.clone().requires_grad_(True)
            loss = fn(xx, target, reduction=reduction)
            (grad,) = torch.autograd.grad(loss, xx, up)
            results.append((loss.detach(), grad, backend_of(loss)))
    return results


@pytest.mark.parametrize("name", list(SIGMOID_PLAIN))
def test_plain_sigmoid_call_of_a_sweeps_size_calls_its_compiled_graph_directly(name, fresh_dynamo, monkeypatch):
    """From the sweep's size (COMPILE_MIN_NUMEL / 16 for BCE, / 32 with a focal factor) the plain call runs the
    compiled sweep as the dispatcher would, its graph called directly (_fused.direct): no Call prepared; the
    graph is the dispatcher's sweep with the target's value check in the same loop, so the same values and
    gradients bit for bit, one graph each ("mean" and "sum" share them); a target value outside [0, 1], or NaN,
    found there gets the general path's message."""
    monkeypatch.setattr(_dispatch, "COMPILE_MIN_NUMEL", 4096)  # BCE's sweep from 256 elements, focal's from 128
    g = torch.Generator().manual_seed(8)
    x = torch.randn(70, 4, generator=g) * 4
    x[0] = torch.tensor([90.0, -90.0, 17.0, -17.0])
    t = (torch.rand(70, 4, generator=g) < 0.3).float()
    t[1] = 0.25
    for reduction, graphs in (("mean", 2), ("sum", 2), ("none", 4)):
        up = torch.rand(70, 4, generator=g) if reduction == "none" else None
        calls = _spy_run(monkeypatch)
        (plain, prepared) = _plain_and_prepared(SIGMOID_PLAIN[name], x, t, reduction, up, monkeypatch)
        assert len(calls) == 1 and plain[2] == prepared[2] == "fused"  # only the second call was prepared
        assert torch.equal(plain[0], prepared[0]) and torch.equal(plain[1], prepared[1])
        assert counters["losslab"]["graphs"] == graphs and counters["stats"]["unique_graphs"] == 0
        want = run_on("composite", SIGMOID_PLAIN[name], x, t, reduction=reduction)
        assert_close(plain[0], want[0], F32, f"value {reduction}")
    for bad in (t + 1, torch.where(t > 0, float("nan"), t)):
        with pytest.raises(ValueError, match=rf"{name.split()[0]}: target must lie in \[0, 1\]"):
            SIGMOID_PLAIN[name](x.clone().requires_grad_(True), bad)
    assert counters["losslab"]["graphs"] == 4


def test_plain_sigmoid_call_without_a_direct_graph_takes_the_dispatchers_path(fresh_dynamo, monkeypatch):
    """Where the sweep has no standalone graph (here: none at all), the plain call of a sweep's size goes the
    dispatcher's way (torch.compile), with the same values; where compiling fails, it warns once and runs the
    eager sweep, as the dispatcher's path does; a bad target gets the general message first."""
    monkeypatch.setattr(_dispatch, "COMPILE_MIN_NUMEL", 2048)
    g = torch.Generator().manual_seed(9)
    x = torch.randn(70, 4, generator=g)
    t = torch.rand(70, 4, generator=g)
    want = run_on("composite", losslab.binary_cross_entropy, x, t)
    monkeypatch.setattr(_standalone, "call", lambda entry, fn, args: NotImplemented)
    calls = _spy_run(monkeypatch)
    got = run_on(None, losslab.binary_cross_entropy, x, t)
    assert calls == ["binary_cross_entropy"] and got[2] == "fused" and counters["stats"]["unique_graphs"] == 1
    assert_close(got[0], want[0], F32, "value")
    assert_close(got[1], want[1], F32, "gradient")

    def fails(entry, fn, args):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(_standalone, "call", fails)
    monkeypatch.setattr(_fused, "_compiled", {})
    monkeypatch.setattr(_fused, "_failed_signatures", {})
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: fails)
    with pytest.warns(RuntimeWarning, match="compiling the fused loss failed .*no C.. compiler"):
        got = run_on(None, losslab.sigmoid_focal_loss, x, t)
    assert got[2] == "fused"
    assert_close(got[0], run_on("composite", losslab.sigmoid_focal_loss, x, t)[0], F32, "value")
    with pytest.raises(ValueError, match=r"binary_cross_entropy: target must lie in \[0, 1\]"):
        losslab.binary_cross_entropy(x.requires_grad_(True), t + 1)


@pytest.mark.parametrize("dtype", [F64, F32], ids=["float64", "float32"])
def test_bce_from_one_exp_and_one_log1p_keeps_tiny_losses(dtype):
    """The native node's BCE for larger inputs (an exp and a log1p, where the small-input form takes two
    softplus): the same values and derivatives, and every element's relative error within a few units of the
    dtype's rounding against a float64 evaluation of t softplus(-x) + (1 - t) softplus(x), losses down
    to 1e-87 (4e-18 in float32) and targets one rounding step from 0 and 1 included."""
    g = gen(993)
    x = _with_saturated_rows(g).to(dtype)
    t = soft_labels(x.shape, 994).to(dtype)
    eps = torch.finfo(dtype).eps
    t[-2:] = torch.tensor([[0.0, 0.0, 1.0, 1.0], [1.0 - eps / 2, eps, 1.0 - eps / 2, eps]], dtype=dtype)
    loss, slope = _native.binary_cross_entropy_terms(x, t)
    assert_close(loss, torch.lerp(F.softplus(x), F.softplus(-x), t), dtype, "value")  # the small-input form
    assert_close(slope, torch.sigmoid(x) - t, dtype, "gradient")
    xd, td = x.double(), t.double()
    exact = td * F.softplus(-xd) + (1 - td) * F.softplus(xd)
    normal = exact >= torch.finfo(dtype).tiny  # (e^-200 underflows in float32)
    assert exact[normal].min() < (1e-80 if dtype == F64 else 1e-17)  # tiny losses are there
    relative = ((loss.double() - exact) / exact)[normal].abs().max()
    assert relative <= 4 * eps, relative


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", [c for c in CASES if c.loss == "binary_cross_entropy"], ids=lambda c: c.name)
def test_native_bce_from_one_exp_and_one_log1p_equals_composite(case, reduction, monkeypatch):
    """Every BCE case of the battery with the exp-and-log1p form switched on from 0 elements: native still
    equals the composite, value and gradient, in float32 and float64."""
    monkeypatch.setattr(_native, "FEW_TRANSCENDENTALS_FROM", 0)
    for dtype in (F64, F32):
        x, target = case.input(dtype), case.target()
        native = run_on("native", case.fn(), x, target, reduction=reduction, **case.kwargs)
        composite = run_on("composite", case.fn(), x, target, reduction=reduction, **case.kwargs)
        assert native[2] == "native"
        assert_close(native[0], composite[0], dtype, "value")
        assert_close(native[1], composite[1], dtype, "gradient")


@pytest.mark.parametrize("variant", ["target requires grad", "float16 target", "ignore_index", "pos_weight",
                                     "class indices", "large", "probabilities"])
def test_the_rest_of_the_sigmoid_form_takes_the_prepared_call(variant, monkeypatch):
    g = torch.Generator().manual_seed(6)
    x = torch.randn(5, 4, generator=g)
    t = (torch.rand(5, 4, generator=g) < 0.3).float()
    kwargs: dict[str, Any] = {}
    if variant == "target requires grad":
        t.requires_grad_(True)
    elif variant == "float16 target":
        t = t.half()
    elif variant == "ignore_index":
        kwargs["ignore_index"] = -1
    elif variant == "pos_weight":
        kwargs["pos_weight"] = [2.0, 1.0, 1.0, 1.0]
    elif variant == "class indices":
        t = torch.tensor([0, 1, 4, 2, 3])
    elif variant == "large":
        monkeypatch.setattr(_dispatch, "COMPILE_MIN_NUMEL", 64)  # the BCE threshold is 64 >> 4 = 4 < 20
        monkeypatch.setattr(_dispatch, "_compiler_disabled", True)
    elif variant == "probabilities":
        x = torch.sigmoid(x)
        kwargs["from_logits"] = False
    calls = _spy_run(monkeypatch)
    losslab.binary_cross_entropy(x, t, **kwargs)
    assert calls == ["binary_cross_entropy"]


def test_a_bad_dense_target_gets_the_general_message():
    with pytest.raises(ValueError, match=r"binary_cross_entropy: target must lie in \[0, 1\]; got a value of 2"):
        losslab.binary_cross_entropy(torch.randn(3, 2), torch.tensor([[0.0, 1.0], [2.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="sigmoid_focal_loss: target must lie in"):
        losslab.sigmoid_focal_loss(torch.randn(2, 2), torch.tensor([[0.0, float("nan")], [0.0, 0.0]]))
