"""linear_cross_entropy (issue 17, CPU core): values and gradients against torch and a float64 NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from losslab.linear import LinearCrossEntropyLoss, linear_cross_entropy

N, D, V = 13, 5, 11
OPTIONS = [
    {},
    {"label_smoothing": 0.1},
    {"class_weight": "rand"},
    {"class_weight": "rand", "label_smoothing": 0.2},
    {"z_loss": 1e-2},
    {"softcap": 2.5},
    {"softcap": 2.5, "z_loss": 1e-2, "label_smoothing": 0.1, "class_weight": "rand"},
]


def numpy_reference(h, w, b, y, *, ignore_index=-100, reduction="mean", label_smoothing=0.0, class_weight=None,
                    z_loss=0.0, softcap=None):
    """float64 loss from the formula: CE (PyTorch's weighted mean) + z_loss * mean over kept tokens of lse^2."""
    h, w, y = np.asarray(h, np.float64), np.asarray(w, np.float64), np.asarray(y)
    z = h @ w.T + (0.0 if b is None else np.asarray(b, np.float64))
    if softcap is not None:
        z = softcap * np.tanh(z / softcap)
    m = z.max(1, keepdims=True)
    lse = (m + np.log(np.exp(z - m).sum(1, keepdims=True)))[:, 0]
    log_p = z - lse[:, None]
    cw = np.ones(z.shape[1]) if class_weight is None else np.asarray(class_weight, np.float64)
    kept = y != ignore_index
    yk = np.where(kept, y, 0)
    nll = -cw[yk] * log_p[np.arange(len(y)), yk]
    smooth = -(log_p * cw).sum(1) / z.shape[1]
    ce = np.where(kept, (1 - label_smoothing) * nll + label_smoothing * smooth, 0.0)
    zl = np.where(kept, z_loss * lse ** 2, 0.0)
    if reduction == "none":
        return ce + zl
    if reduction == "sum":
        return (ce + zl).sum()
    den_ce = cw[yk][kept].sum()
    den_z = kept.sum()
    return ce.sum() / (den_ce if den_ce > 0 else 1) + zl.sum() / (den_z if den_z > 0 else 1)


def torch_reference(h, w, b, y, *, ignore_index=-100, reduction="mean", label_smoothing=0.0, class_weight=None,
                    z_loss=0.0, softcap=None):
    z = F.linear(h, w, b)
    if softcap is not None:
        z = softcap * torch.tanh(z / softcap)
    loss = F.cross_entropy(z, y, weight=class_weight, ignore_index=ignore_index, reduction=reduction,
                           label_smoothing=label_smoothing)
    if z_loss:
        kept = y != ignore_index
        zl = torch.where(kept, z_loss * torch.logsumexp(z, 1) ** 2, 0.0)
        loss = loss + (zl if reduction == "none" else zl.sum() / (kept.sum() if reduction == "mean" else 1))
    return loss


def make(dtype=torch.float32, n=N, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, D, generator=g, dtype=dtype).requires_grad_()
    w = torch.randn(V, D, generator=g, dtype=dtype).requires_grad_()
    b = torch.randn(V, generator=g, dtype=dtype).requires_grad_() if bias else None
    y = torch.randint(0, V, (n,), generator=g)
    if n > 3:
        y[[1, n - 2]] = -100
    return h, w, b, y


def resolve(opts, dtype):
    opts = dict(opts)
    if opts.get("class_weight") == "rand":
        opts["class_weight"] = torch.rand(V, generator=torch.Generator().manual_seed(5), dtype=dtype) + 0.1
    return opts


def grads(out, tensors, upstream):
    tensors = [t for t in tensors if t is not None]
    return torch.autograd.grad(out, tensors, upstream)


@pytest.mark.parametrize("opts", OPTIONS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("chunk", [1, 4, 5, None])
def test_matches_torch(opts, reduction, chunk):
    h, w, b, y = make()
    o = resolve(opts, torch.float32)
    out = linear_cross_entropy(h, w, y, bias=b, reduction=reduction, chunk_size=chunk, **o)
    ref = torch_reference(h, w, b, y, reduction=reduction, **o)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    up = torch.rand(out.shape) + 0.5
    for a, c in zip(grads(out, (h, w, b), up), grads(ref, (h, w, b), up)):
        torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("opts", OPTIONS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_matches_numpy_float64(opts, reduction):
    h, w, b, y = make(torch.float64)
    o = resolve(opts, torch.float64)
    out = linear_cross_entropy(h, w, y, bias=b, reduction=reduction, chunk_size=4, **o)
    npo = {k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in o.items()}
    ref = numpy_reference(h.detach().numpy(), w.detach().numpy(), b.detach().numpy(), y.numpy(),
                          reduction=reduction, **npo)
    np.testing.assert_allclose(out.detach().numpy(), ref, rtol=1e-12, atol=1e-12)
    # gradients against the reference's autograd in float64 (the torch formula, checked above against NumPy)
    up = torch.rand(out.shape, dtype=torch.float64) + 0.5
    ref_t = torch_reference(h, w, b, y, reduction=reduction, **o)
    for a, c in zip(grads(out, (h, w, b), up), grads(ref_t, (h, w, b), up)):
        torch.testing.assert_close(a, c, rtol=1e-11, atol=1e-12)


def test_gradcheck():
    h, w, b, y = make(torch.float64, n=6)
    cw = torch.rand(V, dtype=torch.float64) + 0.1
    for red in ("mean", "none"):
        torch.autograd.gradcheck(lambda h, w, b, red=red: linear_cross_entropy(
            h, w, y, bias=b, reduction=red, class_weight=cw, label_smoothing=0.1, z_loss=0.01, softcap=3.0,
            chunk_size=4), (h, w, b))


def test_without_bias_and_partial_requires_grad():
    h, w, _, y = make(bias=False)
    w.requires_grad_(False)
    out = linear_cross_entropy(h, w, y, chunk_size=3)
    ref = torch_reference(h, w, None, y)
    torch.testing.assert_close(out, ref)
    (gh,) = torch.autograd.grad(out, h)
    (rh,) = torch.autograd.grad(ref, h)
    torch.testing.assert_close(gh, rh)


def test_ignored_rows_contribute_nothing():
    h, w, b, y = make()
    out = linear_cross_entropy(h, w, y, bias=b, reduction="sum", z_loss=0.1, label_smoothing=0.2, chunk_size=4)
    gh = torch.autograd.grad(out, h)[0]
    assert (gh[[1, N - 2]] == 0).all()
    h2 = h.detach().clone()
    h2[[1, N - 2]] = 1e4  # anything at ignored rows changes nothing
    out2 = linear_cross_entropy(h2, w, y, bias=b, reduction="sum", z_loss=0.1, label_smoothing=0.2, chunk_size=4)
    torch.testing.assert_close(out, out2)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("case", ["empty", "all_ignored"])
def test_empty_and_all_ignored(reduction, case):
    h, w, b, y = make(n=0 if case == "empty" else 5)
    if case == "all_ignored":
        y = torch.full_like(y, -100)
    out = linear_cross_entropy(h, w, y, bias=b, reduction=reduction, z_loss=0.1, class_weight=torch.ones(V))
    assert out.item() == 0.0
    for g in torch.autograd.grad(out, (h, w, b)):
        assert torch.isfinite(g).all() and (g == 0).all()


def test_shift_batched():
    g = torch.Generator().manual_seed(1)
    B, T = 3, 5
    h = torch.randn(B, T, D, generator=g, requires_grad=True)
    w = torch.randn(V, D, generator=g, requires_grad=True)
    y = torch.randint(0, V, (B, T), generator=g)
    y[0, 2] = -100
    for red in ("mean", "none"):
        out = linear_cross_entropy(h, w, y, shift=True, reduction=red, chunk_size=4, z_loss=0.01)
        ref = torch_reference(h[:, :-1].reshape(-1, D), w, None, y[:, 1:].reshape(-1), reduction=red, z_loss=0.01)
        if red == "none":
            assert out.shape == (B, T - 1)
            ref = ref.reshape(B, T - 1)
        torch.testing.assert_close(out, ref)
        up = torch.rand(out.shape) + 0.5
        torch.testing.assert_close(grads(out, (h, w), up), grads(ref, (h, w), up))
    assert (torch.autograd.grad(linear_cross_entropy(h, w, y, shift=True), h)[0][:, -1] == 0).all()


def test_shift_flat():
    h, w, b, y = make()
    out = linear_cross_entropy(h, w, y, bias=b, shift=True, chunk_size=5)
    ref = torch_reference(h[:-1], w, b, y[1:])
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(grads(out, (h, w, b), None), grads(ref, (h, w, b), None))


def test_batched_without_shift():
    h, w, b, y = make(n=12)
    out = linear_cross_entropy(h.view(3, 4, D), w, y.view(3, 4), bias=b, reduction="none")
    torch.testing.assert_close(out, torch_reference(h, w, b, y, reduction="none").view(3, 4))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision(dtype):
    h, w, b, y = make(dtype)
    out = linear_cross_entropy(h, w, y, bias=b, chunk_size=4, z_loss=0.01)
    assert out.dtype == dtype
    gs = grads(out, (h, w, b), None)
    assert [g.dtype for g in gs] == [dtype] * 3
    h32, w32, b32 = (t.detach().float().requires_grad_() for t in (h, w, b))
    ref = torch_reference(h32, w32, b32, y, z_loss=0.01)
    torch.testing.assert_close(out.float(), ref, rtol=1e-2, atol=1e-2)
    for a, c in zip(gs, grads(ref, (h32, w32, b32), None)):
        torch.testing.assert_close(a.float(), c, rtol=2e-2, atol=2e-2)


def test_module_equals_functional():
    h, w, b, y = make()
    cw = torch.rand(V) + 0.1
    mod = LinearCrossEntropyLoss(label_smoothing=0.1, class_weight=cw, z_loss=0.01, softcap=3.0, chunk_size=4)
    out = mod(h, w, y, b)
    ref = linear_cross_entropy(h, w, y, bias=b, label_smoothing=0.1, class_weight=cw, z_loss=0.01, softcap=3.0)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(grads(out, (h, w, b), None), grads(ref, (h, w, b), None))
    assert "class_weight" in dict(mod.named_buffers())


class _Shapes(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.shapes = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.shapes.append(tuple(t.shape))
        return out


def test_never_allocates_the_full_logits():
    n, v = 64, 50
    g = torch.Generator().manual_seed(0)
    h = torch.randn(n, D, generator=g, requires_grad=True)
    w = torch.randn(v, D, generator=g, requires_grad=True)
    y = torch.randint(0, v, (n,), generator=g)
    for red in ("mean", "none"):
        with _Shapes() as mode:
            out = linear_cross_entropy(h, w, y, reduction=red, chunk_size=16, label_smoothing=0.1, z_loss=0.1)
            out.sum().backward()
        assert mode.shapes and max(s[0] * s[1] for s in mode.shapes if len(s) == 2) <= 16 * v
        assert (n, v) not in mode.shapes


def test_default_chunk():
    from losslab._linear_chunk import BUDGET_BYTES, MIN_ROWS, Options, plan
    from losslab.linear import default_chunk
    assert default_chunk(10, 100) == 10
    assert default_chunk(1 << 20, 1 << 16) * (1 << 16) * 4 <= BUDGET_BYTES
    plain = Options(None, 0.0, 0.0, None, 0.0)
    assert plan(1 << 20, 1 << 16, plain._replace(softcap=3.0), None)[0] == default_chunk(1 << 20, 1 << 16) // 2
    rows, block = plan(1000, 1 << 24, plain, None)  # 16 rows of 2^24 classes do not fit: vocabulary blocks
    assert rows == MIN_ROWS and block * rows * 4 <= BUDGET_BYTES and block < 1 << 24
    assert plan(1000, 1 << 24, plain, 7) == (7, 1 << 24)  # an explicit chunk_size keeps the whole vocabulary


@pytest.mark.parametrize("kwargs, error", [
    ({"reduction": "avg"}, ValueError),
    ({"label_smoothing": 1.5}, ValueError),
    ({"z_loss": -1.0}, ValueError),
    ({"softcap": 0.0}, ValueError),
    ({"chunk_size": 0}, ValueError),
    ({"class_weight": torch.ones(V + 1)}, ValueError),
    ({"bias": torch.ones(V + 1)}, ValueError),
])
def test_errors(kwargs, error):
    h, w, _, y = make()
    with pytest.raises(error, match="linear_cross_entropy"):
        linear_cross_entropy(h, w, y, **kwargs)


def test_bad_shapes_and_targets():
    h, w, _, y = make()
    with pytest.raises(ValueError, match="weight must have shape"):
        linear_cross_entropy(h, w[:, :2], y)
    with pytest.raises(ValueError, match="target shape"):
        linear_cross_entropy(h, w, y[:-1])
    with pytest.raises(TypeError, match="class indices"):
        linear_cross_entropy(h, w, y.float())
    with pytest.raises(ValueError, match="class indices must be in"):
        linear_cross_entropy(h, w, torch.full_like(y, V))
