"""The Triton chunk kernel of the fused linear cross-entropy against a float64 autograd reference.

``losslab._linear_triton.chunk_loss_grad_`` computes one token chunk's per-row loss, its gradient in the raw
logits (in place) and the token accuracy. Here it is checked, for every option and their combinations,
against autograd through ``F.cross_entropy`` / ``losslab.softmax_focal_loss`` in float64, and against
:func:`torch_chunk`, a pure-torch function with the same contract (the CPU path's twin).

Where it runs: as tests/test_triton.py (LOSSLAB_TEST_DEVICE unset: Triton's interpreter on CPU tensors, or
CUDA tensors where a GPU is present; LOSSLAB_TEST_DEVICE=cuda: CUDA tensors or an error). The interpreter is
slow: rows n <= 8 and V <= 300, with the kernel's block narrowed to 128 classes in some cases so that the
online passes cross several blocks, the last one ragged.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

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
from losslab import _linear_triton  # noqa: E402

from .helpers import TOLERANCES, gen  # noqa: E402

F32, F64 = torch.float32, torch.float64
ON_GPU = torch.cuda.is_available()
DEVICE = "cuda" if ON_GPU else "cpu"
IGNORE = -100

pytestmark = pytest.mark.skipif(not ON_GPU and os.environ.get("TRITON_INTERPRET") != "1",
                                reason="no GPU and Triton's interpreter is off")
cuda_only = pytest.mark.skipif(DEVICE != "cuda", reason="needs CUDA tensors (Triton's interpreter has no bfloat16)")


def torch_chunk(z, target, kept, *, class_weight, label_smoothing, z_loss, softcap, gamma, ce_scale, z_scale,
                row_scale, want_grad):
    """The contract of ``chunk_loss_grad_`` in torch operations (float32, (n, V) temporaries)."""
    n, vocab = z.shape
    eps = float(label_smoothing)
    y = torch.where(kept, target, torch.zeros_like(target))
    t = None
    x = z
    if softcap is not None:
        t = torch.tanh(z / softcap)
        x = t * softcap
    lse = torch.logsumexp(x, dim=1)
    lp = x - lse.unsqueeze(1)
    wq = F.one_hot(y, vocab).to(z.dtype) * (1.0 - eps) + eps / vocab
    if class_weight is not None:
        wq = wq * class_weight.unsqueeze(0)
    if gamma:
        one_minus = -torch.expm1(lp)
        tiny = torch.finfo(z.dtype).tiny
        mc = one_minus.clamp_min(tiny)
        factor = mc.pow(gamma)
        h = wq * (factor - torch.where(one_minus > tiny, gamma * factor / mc * lp.exp() * lp, 0.0))
        terms = wq * factor * (-lp)
    else:
        h, terms = wq, wq * (-lp)
    loss = ce_scale * terms.sum(1) + z_scale * z_loss * lse.square()
    loss = torch.where(kept, loss, torch.zeros_like(loss))
    correct = kept & (x.argmax(1) == y)
    if not want_grad:
        return loss, None, correct
    p = lp.exp()
    g = ce_scale * (p * h.sum(1, keepdim=True) - h) + (2.0 * z_scale * z_loss) * lse.unsqueeze(1) * p
    row = kept.to(z.dtype) if row_scale is None else torch.where(kept, row_scale, 0.0)
    g = g * row.unsqueeze(1)
    if t is not None:
        g = g * (1.0 - t.square())
    z.copy_(g)
    return loss, z, correct


def reference(z, target, kept, *, class_weight, label_smoothing, z_loss, softcap, gamma, ce_scale, z_scale,
              row_scale):
    """Row losses, d sum(row_scale * loss) / dz and the accuracy, by autograd in float64 through torch's
    cross_entropy (gamma = 0) or losslab's softmax_focal_loss."""
    z64 = z.detach().to(F64).requires_grad_(True)
    x = z64 if softcap is None else softcap * torch.tanh(z64 / softcap)
    y = torch.where(kept, target, torch.full_like(target, IGNORE))
    w = None if class_weight is None else class_weight.to(F64)
    if gamma:
        ce = losslab.softmax_focal_loss(x, y, alpha=w, gamma=gamma, label_smoothing=label_smoothing,
                                        ignore_index=IGNORE, reduction="none")
    else:
        ce = F.cross_entropy(x, y, weight=w, label_smoothing=label_smoothing, ignore_index=IGNORE,
                             reduction="none")
    lse = torch.logsumexp(x, dim=1)
    loss = ce_scale.to(F64) * ce + z_scale.to(F64) * z_loss * lse.square()
    loss = torch.where(kept, loss, torch.zeros_like(loss))
    upstream = torch.ones_like(loss) if row_scale is None else row_scale.to(F64)
    (loss * upstream).sum().backward()
    correct = kept & (x.argmax(1) == torch.where(kept, target, 0))
    return loss.detach(), z64.grad, correct


def inputs(n=8, vocab=300, *, seed=0, scale=3.0, kept_share=0.75):
    z = (torch.randn(n, vocab, generator=gen(seed)) * scale).to(DEVICE)
    target = torch.randint(0, vocab, (n,), generator=gen(seed + 1))
    kept = torch.rand(n, generator=gen(seed + 2)) < kept_share
    kept[0] = True
    if n > 1:
        kept[-1] = False
    target = torch.where(kept, target, torch.full_like(target, IGNORE))  # never read where not kept
    return z, target.to(DEVICE), kept.to(DEVICE)


OPTIONS = {
    "plain": {},
    "weights": {"class_weight": True},
    "smoothing": {"label_smoothing": 0.1},
    "weights+smoothing": {"class_weight": True, "label_smoothing": 0.2},
    "z_loss": {"z_loss": 1e-2},
    "softcap": {"softcap": 5.0},
    "focal": {"gamma": 2.0},
    "focal 0.5+weights+smoothing": {"gamma": 0.5, "class_weight": True, "label_smoothing": 0.1},
    "focal+softcap+z_loss": {"gamma": 1.5, "softcap": 4.0, "z_loss": 1e-3},
    "all": {"gamma": 2.0, "class_weight": True, "label_smoothing": 0.1, "z_loss": 1e-2, "softcap": 6.0},
    "all but focal": {"class_weight": True, "label_smoothing": 0.3, "z_loss": 2e-3, "softcap": 3.0},
}


def options(name, vocab, *, row_scale=False, n=8, mean=True):
    o = {"class_weight": None, "label_smoothing": 0.0, "z_loss": 0.0, "softcap": None, "gamma": 0.0}
    o.update(OPTIONS[name])
    if o["class_weight"] is True:
        o["class_weight"] = (torch.rand(vocab, generator=gen(40)) + 0.5).to(DEVICE)
    o["ce_scale"] = torch.tensor(1.0 / 5 if mean else 1.0, device=DEVICE)
    o["z_scale"] = torch.tensor(1.0 / 6 if mean else 1.0, device=DEVICE)
    o["row_scale"] = torch.linspace(0.5, 1.5, n, device=DEVICE) if row_scale else None
    return o


def check(got, want, *, grad=True):
    tol = TOLERANCES[F32]
    torch.testing.assert_close(got[0].double().cpu(), want[0].cpu(), **tol)
    if grad:
        torch.testing.assert_close(got[1].double().cpu(), want[1].cpu(), **tol)
    assert torch.equal(got[2].cpu(), want[2].cpu())


@pytest.mark.parametrize("block", [None, 128], ids=["one block", "blocks of 128"])
@pytest.mark.parametrize("name", list(OPTIONS))
def test_kernel_equals_the_float64_reference_and_the_torch_twin(name, block, monkeypatch):
    if block:
        monkeypatch.setattr(_linear_triton, "MAX_BLOCK_V", block)
    z, target, kept = inputs(seed=3)
    o = options(name, z.shape[1])
    want = reference(z, target, kept, **o)
    twin = torch_chunk(z.clone(), target, kept, **o, want_grad=True)
    check(twin, want)
    buffer = z.clone()
    got = _linear_triton.chunk_loss_grad_(buffer, target, kept, **o, want_grad=True)
    assert got[1] is buffer  # the gradient overwrites the logits
    assert got[0].dtype == F32 and got[2].dtype == torch.bool
    check(got, want)


@pytest.mark.parametrize("name", ["plain", "all", "focal 0.5+weights+smoothing"])
def test_row_scale_multiplies_each_rows_gradient(name, monkeypatch):
    """The backward of reduction "none": the incoming gradient per row (losses unscaled, "sum" scales)."""
    monkeypatch.setattr(_linear_triton, "MAX_BLOCK_V", 128)
    z, target, kept = inputs(seed=5, vocab=257)
    o = options(name, z.shape[1], row_scale=True, mean=False)
    want = reference(z, target, kept, **o)
    check(_linear_triton.chunk_loss_grad_(z.clone(), target, kept, **o, want_grad=True), want)
    check(torch_chunk(z.clone(), target, kept, **o, want_grad=True), want)


@pytest.mark.parametrize("name", ["plain", "all", "all but focal"])
def test_without_grad_the_logits_are_left_alone(name):
    """Also the smoothed cross-entropy's own pass 2 (with the gradient it is merged into the gradient's pass)."""
    z, target, kept = inputs(seed=7, vocab=100)
    o = options(name, z.shape[1])
    before = z.clone()
    loss, grad, correct = _linear_triton.chunk_loss_grad_(z, target, kept, **o, want_grad=False)
    assert grad is None and torch.equal(z, before)
    check((loss, None, correct), reference(z, target, kept, **o), grad=False)


def test_accuracy_counts_the_kept_rows_whose_arg_max_is_the_target():
    z, _, _ = inputs(n=6, vocab=50, seed=9)
    best = z.argmax(1)
    target = torch.stack([best[0], (best[1] + 1) % 50, best[2], best[3], best[4], best[5]])
    kept = torch.tensor([True, True, True, False, True, True], device=DEVICE)
    target[3] = IGNORE
    o = options("softcap", 50)
    _, _, correct = _linear_triton.chunk_loss_grad_(z.clone(), target, kept, **o, want_grad=False)
    assert correct.tolist() == [True, False, True, False, True, True]


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_saturated_logits_stay_finite(gamma):
    z = torch.tensor([[1e4, -1e4, 0.0, 30.0], [-1e4, -1e4, -1e4, 1e4], [50.0, 50.0, -50.0, 0.0]], device=DEVICE)
    target = torch.tensor([0, 1, 2], device=DEVICE)
    kept = torch.ones(3, dtype=torch.bool, device=DEVICE)
    o = options("plain", 4)
    o.update(gamma=gamma, label_smoothing=0.1)
    got = _linear_triton.chunk_loss_grad_(z.clone(), target, kept, **o, want_grad=True)
    assert torch.isfinite(got[0]).all() and torch.isfinite(got[1]).all()
    check(got, reference(z, target, kept, **o))


def test_rows_not_kept_and_empty_chunks_give_zero():
    z, target, _ = inputs(n=4, vocab=30, seed=11)
    kept = torch.zeros(4, dtype=torch.bool, device=DEVICE)
    target = torch.full_like(target, IGNORE)
    loss, grad, correct = _linear_triton.chunk_loss_grad_(z.clone(), target, kept, **options("all", 30, n=4),
                                                          want_grad=True)
    assert not loss.any() and not grad.any() and not correct.any()
    empty = torch.empty(0, 30, device=DEVICE)
    loss, grad, correct = _linear_triton.chunk_loss_grad_(empty, target[:0], kept[:0], **options("all", 30, n=0),
                                                          want_grad=True)
    assert loss.shape == (0,) and grad.shape == (0, 30) and correct.shape == (0,)


def test_bad_logits_are_refused_with_the_functions_name():
    z, target, kept = inputs(n=2, vocab=10)
    o = options("plain", 10, n=2)
    with pytest.raises(ValueError, match="chunk_loss_grad_: z must be a contiguous"):
        _linear_triton.chunk_loss_grad_(z.double(), target, kept, **o, want_grad=True)
    with pytest.raises(ValueError, match="chunk_loss_grad_: z must be a contiguous"):
        _linear_triton.chunk_loss_grad_(z.t(), target, kept, **o, want_grad=True)


@cuda_only
@pytest.mark.parametrize("name", ["plain", "all"])
def test_bfloat16_head_through_the_kernel_matches_the_float64_reference(name):
    """A chunk as the CUDA path runs it: bfloat16 hidden and weight, float32 logits and gradient, the
    gradients of hidden and weight from the in-place logit gradient; 32k vocabulary, several blocks."""
    n, d, vocab = 64, 128, 32768
    h = (torch.randn(n, d, generator=gen(50)) * 0.5).to(DEVICE, torch.bfloat16)
    w = (torch.randn(vocab, d, generator=gen(51)) * 0.5).to(DEVICE, torch.bfloat16)
    target = torch.randint(0, vocab, (n,), generator=gen(52)).to(DEVICE)
    kept = (torch.rand(n, generator=gen(53)) < 0.9).to(DEVICE)
    o = options(name, vocab, n=n)
    z = h.float() @ w.float().T
    want = reference(z, target, kept, **o)
    loss, grad, correct = _linear_triton.chunk_loss_grad_(z, target, kept, **o, want_grad=True)
    check((loss, grad, correct), want)
    grad_h = (grad @ w.float()).to(torch.bfloat16)
    want_h = want[1] @ w.double()
    torch.testing.assert_close(grad_h.double(), want_h, **TOLERANCES[torch.bfloat16])


@pytest.mark.parametrize("name", ["plain", "z_loss", "all"])
def test_the_log_sum_exp_comes_out_on_request(name):
    """``lse_out`` (the z-loss component of return_components): each row's log-sum-exp of the softcapped
    logits, as the CPU step writes it."""
    from losslab._linear_chunk import chunk_loss_grad_torch

    z, target, kept = inputs(seed=21)
    o = options(name, z.shape[1])
    got, want = torch.empty(z.shape[0], device=DEVICE), torch.empty(z.shape[0], device=DEVICE)
    _linear_triton.chunk_loss_grad_(z.clone(), target, kept, **o, want_grad=True, lse_out=got)
    safe = torch.where(kept, target, torch.zeros_like(target))  # the CPU step reads every row's target
    chunk_loss_grad_torch(z.clone(), safe, kept, **o, want_grad=True, lse_out=want)
    torch.testing.assert_close(got, want, **TOLERANCES[F32])


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("name", ["plain", "all", "all but focal"])
def test_linear_cross_entropy_through_the_kernel_equals_the_cpu_step(name, reduction, monkeypatch):
    """The whole loss with the kernel as its chunk step (what CUDA runs), chunks of 3 rows: the values,
    components and gradients of the torch step."""
    from losslab import _linear_chunk

    g = gen(50)
    hidden = torch.randn(7, 16, generator=g).to(DEVICE)
    weight = (torch.randn(200, 16, generator=g) * 0.5).to(DEVICE)
    bias = (torch.randn(200, generator=g) * 0.1).to(DEVICE)
    target = torch.randint(0, 200, (7,), generator=g).to(DEVICE)
    target[2] = IGNORE
    o = {k: v for k, v in options(name, 200).items() if k not in ("ce_scale", "z_scale", "row_scale")}
    results = []
    for step in (_linear_chunk.chunk_loss_grad_torch, _linear_triton.chunk_loss_grad_):
        monkeypatch.setattr(_linear_chunk, "step_for", lambda device, dtype, step=step: step)
        h, w, b = (t.clone().requires_grad_(True) for t in (hidden, weight, bias))
        out = losslab.linear_cross_entropy(h, w, target, bias=b, reduction=reduction, chunk_size=3,
                                          return_components=True, **o)
        out.loss.backward(torch.linspace(0.5, 1.5, out.loss.numel(), device=DEVICE).reshape(out.loss.shape))
        results.append((out, h.grad, w.grad, b.grad))
    (a, *grads_a), (b_, *grads_b) = results
    tol = TOLERANCES[F32]
    for x, y in zip(a, b_):
        torch.testing.assert_close(x.detach().double(), y.detach().double(), **tol)
    for x, y in zip(grads_a, grads_b):
        torch.testing.assert_close(x, y, **tol)


def test_the_kernel_is_the_step_of_float32_on_cuda_only():
    """The kernel computes in float32: float64 on CUDA, and every CPU dtype, take the torch step."""
    from losslab import _linear_chunk

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert _linear_chunk.step_for(cuda, F32) is _linear_triton.chunk_loss_grad_
    assert _linear_chunk.step_for(cuda, F64) is _linear_chunk.chunk_loss_grad_torch
    assert _linear_chunk.step_for(cpu, F32) is _linear_chunk.chunk_loss_grad_torch
