"""The Triton kernels against the CPU sweeps, the composite and the dispatch of every loss.

Where they run (the environment variable LOSSLAB_TEST_DEVICE):

* unset (CI, and any machine without a GPU): on CPU tensors under Triton's interpreter
  (TRITON_INTERPRET=1, set in conftest); with a GPU, on CUDA tensors.
* ``LOSSLAB_TEST_DEVICE=cuda`` (benchmarks/gpu_check.sh): on CUDA tensors, or the module fails to collect
  when torch sees no CUDA device, triton is missing or TRITON_INTERPRET=1; never a silent fallback to the
  interpreter or a skip.

Each launcher of losslab._gpu must return what the CPU sweep of the same name returns (loss and
gradient, summed or per element), and so the composite and the float64 references; the public losses
dispatch to the kernels and match the composite. The interpreter has no bfloat16: the bfloat16 cases
(and the half-precision dispatch) are marked ``cuda_only`` and skip on CPU; float16 inputs are covered
everywhere.
"""

from __future__ import annotations

import os

import pytest
import torch

WANTED = os.environ.get("LOSSLAB_TEST_DEVICE", "")
if WANTED not in ("", "cuda"):
    raise RuntimeError(f"LOSSLAB_TEST_DEVICE={WANTED!r}: leave it unset, or set it to 'cuda'")
if WANTED == "cuda":  # the GPU check: a missing device or triton is an error, not a skip
    if not torch.cuda.is_available():
        raise RuntimeError("LOSSLAB_TEST_DEVICE=cuda, but torch sees no CUDA device")
    if os.environ.get("TRITON_INTERPRET") == "1":
        raise RuntimeError("LOSSLAB_TEST_DEVICE=cuda: unset TRITON_INTERPRET to run the compiled kernels")
    import triton  # noqa: F401
else:
    pytest.importorskip("triton")

import losslab  # noqa: E402
from losslab import _dispatch, _fused, _gpu  # noqa: E402

from .helpers import TOLERANCES, gen  # noqa: E402

F32 = torch.float32
ON_GPU = torch.cuda.is_available()
DEVICE = "cuda" if ON_GPU else "cpu"

pytestmark = pytest.mark.skipif(not ON_GPU and os.environ.get("TRITON_INTERPRET") != "1",
                                reason="no GPU and Triton's interpreter is off")
cuda_only = pytest.mark.skipif(DEVICE != "cuda", reason="needs CUDA tensors (Triton's interpreter has no bfloat16)")


def rand(*shape, seed=0, scale=3.0, dtype=F32):
    return (torch.randn(*shape, generator=gen(seed)) * scale).to(dtype).to(DEVICE)


def per_class(shape):
    """A (C,) weight, and the same spread over the input for the CPU sweeps."""
    C = shape[1] if len(shape) > 1 else 1
    w = (torch.rand(C, generator=gen(7)) + 0.5).to(DEVICE)
    view = w.view((1, C) + (1,) * (len(shape) - 2)) if len(shape) > 1 else w
    return w, view.broadcast_to(shape)


def scale_for(reduce, n):
    return torch.tensor(1.0 / n if reduce else 1.0, dtype=F32, device=DEVICE)


def assert_same(got, want, dtype=F32):
    tol = TOLERANCES[F32] if dtype == F32 else TOLERANCES[torch.float16]
    torch.testing.assert_close(got[0].float(), want[0].float(), **tol)
    torch.testing.assert_close(got[1].float(), want[1].float(), **tol)
    assert got[1].dtype == want[1].dtype


SHAPES = [(37,), (6, 5), (3, 4, 7), (2, 3, 2, 5)]


@pytest.mark.parametrize("reduce", [True, False])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize(("alpha", "gamma", "smoothing"), [(None, 0.0, 0.0), (0.25, 2.0, 0.0), (0.75, 0.5, 0.1)])
@pytest.mark.parametrize("options", ["plain", "masked+weights"])
def test_sigmoid_dense_kernel_equals_the_cpu_sweep(shape, alpha, gamma, smoothing, options, reduce):
    x, t = rand(*shape, seed=1), torch.rand(shape, generator=gen(2)).to(DEVICE)
    valid = w = pw = w_spread = pw_spread = None
    if options != "plain":
        valid = (torch.rand(shape, generator=gen(3)) < 0.7).to(DEVICE)
        w, w_spread = per_class(shape)
        pw, pw_spread = per_class(shape)
    scale = scale_for(reduce, x.numel())
    got = _gpu.sigmoid(x, t, valid, w, pw, scale, alpha, gamma, smoothing, reduce, index=False)
    want = _fused.sigmoid_dense_sweep(x, t, valid, w_spread, pw_spread, scale, alpha, gamma, smoothing, reduce)
    assert_same(got, want)


@pytest.mark.parametrize("reduce", [True, False])
@pytest.mark.parametrize("shape", [(6, 5), (2, 3, 2, 5)], ids=str)
@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_sigmoid_index_kernel_equals_the_cpu_sweep(shape, gamma, reduce):
    x = rand(*shape, seed=4)
    positions = (shape[0],) + shape[2:]
    index = torch.randint(0, shape[1] + 1, positions, generator=gen(5)).to(DEVICE)  # index C: background
    kept = (torch.rand(positions, generator=gen(6)) < 0.8).to(DEVICE)
    w, w_spread = per_class(shape)
    scale = scale_for(reduce, x.numel())
    got = _gpu.sigmoid(x, index, kept, w, None, scale, 0.25, gamma, 0.0, reduce, index=True)
    want = _fused.sigmoid_index_sweep(x, index, kept, w_spread, None, scale, 0.25, gamma, 0.0, reduce)
    assert_same(got, want)


@pytest.mark.parametrize("reduce", [True, False])
@pytest.mark.parametrize("shape", [(6, 5), (3, 4, 7), (2, 3, 2, 5), (3, 5000)], ids=str)
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("weighted", [False, True])
def test_softmax_kernel_equals_the_cpu_sweep(shape, gamma, weighted, reduce):
    """Rows of any width: 5,000 classes run the online-softmax loop over several blocks."""
    x = rand(*shape, seed=8)
    positions = (shape[0],) + shape[2:]
    index = torch.randint(0, shape[1], positions, generator=gen(9)).to(DEVICE)
    kept = (torch.rand(positions, generator=gen(10)) < 0.8).to(DEVICE)
    index = torch.where(kept, index, torch.zeros_like(index))  # as softmax_target hands them over
    w = (torch.rand(shape[1], generator=gen(11)) + 0.5).to(DEVICE) if weighted else None
    scale = scale_for(reduce, kept.sum().item())
    got = _gpu.softmax(x, index, kept, None, scale, w, gamma, None, None, reduce)
    want = _fused.softmax_index_sweep(x, index, kept, None, scale, w, gamma, None, None, reduce)
    assert_same(got, want)


def test_softmax_kernel_saturated_rows_stay_finite():
    x = torch.tensor([[1e4, -1e4, 0.0, 30.0], [-1e4, -1e4, -1e4, 1e4]], device=DEVICE)
    index = torch.tensor([0, 1], device=DEVICE)
    for gamma in (0.0, 0.5, 2.0):
        loss, grad = _gpu.softmax(x, index, None, None, scale_for(True, 2), None, gamma, None, None, True)
        want = _fused.softmax_index_sweep(x, index, None, None, scale_for(True, 2), None, gamma, None, None,
                                                 True)
        assert torch.isfinite(loss) and torch.isfinite(grad).all()
        assert_same((loss, grad), want)


@pytest.mark.parametrize("reduce", [True, False])
@pytest.mark.parametrize("beta", [0.0, 0.5, 2.0])
def test_quality_kernel_equals_the_cpu_sweep(beta, reduce):
    shape = (5, 4, 3)
    x = rand(*shape, seed=12)
    y = torch.rand(shape, generator=gen(13)) * (torch.rand(shape, generator=gen(14)) < 0.5)
    y = y.to(DEVICE)
    valid = (torch.rand(shape, generator=gen(15)) < 0.8).to(DEVICE)
    w, w_spread = per_class(shape)
    scale = scale_for(reduce, valid.sum().item())
    got = _gpu.quality(x, y, valid, w, scale, beta, reduce)
    want = _fused.quality_sweep(x, y, valid, w_spread, scale, beta, reduce)
    assert_same(got, want)


@pytest.mark.parametrize("reduce", [True, False])
@pytest.mark.parametrize(("alpha", "gamma", "iou_weighted"), [(0.75, 2.0, True), (0.25, 0.5, False),
                                                              (1.0, 0.0, True)])
def test_varifocal_kernel_equals_the_cpu_sweep(alpha, gamma, iou_weighted, reduce):
    shape = (6, 5)
    x = rand(*shape, seed=16)
    q = (torch.rand(shape, generator=gen(17)) * (torch.rand(shape, generator=gen(18)) < 0.4)).to(DEVICE)
    w, w_spread = per_class(shape)
    scale = scale_for(reduce, x.numel())
    got = _gpu.varifocal(x, q, w, scale, alpha, gamma, iou_weighted, reduce)
    want = _fused.varifocal_sweep(x, q, w_spread, scale, alpha, gamma, iou_weighted, reduce)
    assert_same(got, want)


def test_kernels_match_the_composite_losses_and_never_write_into_the_inputs():
    """End to end against the public functions with the composite path (set_fused("off"))."""
    x, t = rand(8, 3, seed=19), torch.rand(8, 3, generator=gen(20)).to(DEVICE)
    before = (x.clone(), t.clone())
    loss, grad = _gpu.sigmoid(x, t, None, None, None, scale_for(True, x.numel()), 0.25, 2.0, 0.0, True,
                              index=False)
    previous = losslab.set_fused("off")
    try:
        leaf = x.clone().requires_grad_(True)
        want = losslab.sigmoid_focal_loss(leaf, t)
        want.backward()
        index = torch.randint(0, 3, (8,), generator=gen(21)).to(DEVICE)
        ce_leaf = x.clone().requires_grad_(True)
        ce = losslab.cross_entropy(ce_leaf, index)
        ce.backward()
    finally:
        losslab.set_fused(previous)
    torch.testing.assert_close(loss, want.detach(), **TOLERANCES[F32])
    torch.testing.assert_close(grad, leaf.grad, **TOLERANCES[F32])
    ce_loss, ce_grad = _gpu.softmax(x, index, None, None, scale_for(True, 8), None, 0.0, None, None, True)
    torch.testing.assert_close(ce_loss, ce.detach(), **TOLERANCES[F32])
    torch.testing.assert_close(ce_grad, ce_leaf.grad, **TOLERANCES[F32])
    assert torch.equal(x, before[0]) and torch.equal(t, before[1])


HALF = [torch.float16, pytest.param(torch.bfloat16, marks=cuda_only)]


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("kernel", ["sigmoid", "softmax", "quality", "varifocal"])
def test_half_inputs_compute_in_float32_and_return_gradients_in_their_dtype(kernel, dtype):
    x16 = rand(6, 5, seed=22).to(dtype)
    x32 = x16.float()
    target = torch.rand(6, 5, generator=gen(23)).to(DEVICE)
    index = torch.randint(0, 5, (6,), generator=gen(24)).to(DEVICE)
    scale = scale_for(True, 30)
    calls = {
        "sigmoid": lambda x: _gpu.sigmoid(x, target, None, None, None, scale, 0.25, 2.0, 0.0, True, index=False),
        "softmax": lambda x: _gpu.softmax(x, index, None, None, scale, None, 2.0, None, None, True),
        "quality": lambda x: _gpu.quality(x, target, None, None, scale, 2.0, True),
        "varifocal": lambda x: _gpu.varifocal(x, target * (target > 0.5), None, scale, 0.75, 2.0, True, True),
    }
    loss16, grad16 = calls[kernel](x16)
    loss32, grad32 = calls[kernel](x32)
    assert grad16.dtype == dtype
    torch.testing.assert_close(loss16, loss32, **TOLERANCES[F32])  # the same float32 arithmetic inside
    torch.testing.assert_close(grad16.float(), grad32, **TOLERANCES[dtype])


# ----------------------------------------------------------------------------
# dispatch: the public losses on DEVICE's tensors (on CPU, the interpreted kernels stand in for the GPU)

def _dispatched(name: str, x: torch.Tensor, g: torch.Generator):
    """(function, target, keyword arguments) of each dispatched case."""
    n, c = x.shape
    labels = torch.randint(0, c, (n,), generator=g)
    cases = {
        "sigmoid_focal dense": (losslab.sigmoid_focal_loss, torch.rand(x.shape, generator=g), {}),
        "sigmoid_focal index": (losslab.sigmoid_focal_loss, torch.randint(-1, c + 1, (n,), generator=g),
                                {"ignore_index": -1, "gamma": 0.5}),
        "bce weights": (losslab.binary_cross_entropy, torch.rand(x.shape, generator=g),
                        {"weight": torch.rand(c, generator=g), "pos_weight": torch.rand(c, generator=g) + 0.5}),
        "bce elementwise weight": (losslab.binary_cross_entropy, torch.rand(x.shape, generator=g),
                                   {"weight": torch.rand(x.shape, generator=g)}),  # no kernel: the sweep
        "cross_entropy": (losslab.cross_entropy, labels, {"weight": torch.rand(c, generator=g)}),
        "cross_entropy smoothing": (losslab.cross_entropy, labels, {"label_smoothing": 0.1}),  # no kernel
        "softmax_focal": (losslab.softmax_focal_loss, labels, {"gamma": 2.0}),
        "quality pair": (losslab.quality_focal_loss,
                         (torch.randint(0, c + 1, (n,), generator=g), torch.rand(n, generator=g)), {}),
        "varifocal": (losslab.varifocal_loss, torch.rand(x.shape, generator=g) * 0.9, {"avg_factor": 3.0}),
    }
    return cases[name]


DISPATCHED = ["sigmoid_focal dense", "sigmoid_focal index", "bce weights", "bce elementwise weight", "cross_entropy",
              "cross_entropy smoothing", "softmax_focal", "quality pair", "varifocal"]


NO_KERNEL = ("bce elementwise weight", "cross_entropy smoothing")  # the sweep's operations, the composite


def _on_device(value):
    if isinstance(value, tuple):
        return tuple(_on_device(v) for v in value)
    return value.to(DEVICE) if isinstance(value, torch.Tensor) else value


def _auto_and_off(name: str, x: torch.Tensor, reduction: str, monkeypatch) -> tuple[dict, list]:
    """{mode: (value, gradient, grad_fn name)} under set_fused("auto") and ("off"), and the launchers called."""
    if DEVICE == "cpu":
        monkeypatch.setattr(_dispatch, "_triton_on_cpu", True)
    calls = []
    for launcher in ("sigmoid", "softmax", "quality", "varifocal"):
        original = getattr(_gpu, launcher)
        monkeypatch.setattr(_gpu, launcher, lambda *a, _o=original, _n=launcher, **k: calls.append(_n) or _o(*a, **k))
    results = {}
    for mode in ("auto", "off"):
        losslab.set_fused(mode)
        try:
            leaf = x.clone().requires_grad_(True)
            function, target, kwargs = _dispatched(name, x, gen(31))
            target, kwargs = _on_device(target), {k: _on_device(v) for k, v in kwargs.items()}
            out = function(leaf, target, reduction=reduction, **kwargs)
            upstream = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype, device=out.device).reshape(out.shape)
            (out * upstream).sum().backward()
            results[mode] = (out.detach(), leaf.grad, type(out.grad_fn).__name__)
        finally:
            losslab.set_fused("auto")
    return results, calls


@pytest.mark.parametrize("name", DISPATCHED)
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_dispatch_runs_the_kernels_and_matches_the_composite(name, reduction, monkeypatch):
    x = (torch.randn(7, 4, generator=gen(30)) * 3).to(DEVICE)
    results, calls = _auto_and_off(name, x, reduction, monkeypatch)
    assert "Fused" in results["auto"][2] or name in ("cross_entropy smoothing",)
    assert bool(calls) == (name not in NO_KERNEL), calls
    torch.testing.assert_close(results["auto"][0], results["off"][0], **TOLERANCES[F32])
    torch.testing.assert_close(results["auto"][1], results["off"][1], **TOLERANCES[F32])


@cuda_only
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", DISPATCHED)
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_half_precision_dispatch_matches_the_composite(name, reduction, dtype, monkeypatch):
    """Half inputs: the kernels compute in float32, the composite in the input's dtype; equal within its
    tolerance, value and gradient in the same dtype."""
    x = (torch.randn(7, 4, generator=gen(30)) * 3).to(DEVICE, dtype)
    results, calls = _auto_and_off(name, x, reduction, monkeypatch)
    assert bool(calls) == (name not in NO_KERNEL), calls
    for got, want in zip(results["auto"][:2], results["off"][:2], strict=True):
        assert got.dtype == want.dtype
        torch.testing.assert_close(got, want, **TOLERANCES[dtype])


def test_float64_inputs_keep_the_composite_where_the_kernels_would_round_to_float32(monkeypatch):
    monkeypatch.setattr(_dispatch, "_triton_on_cpu", True)
    x = torch.randn(4, 3, dtype=torch.float64).to(DEVICE).requires_grad_(True)
    assert _dispatch.route(x, eager_pays=True) != "triton"
