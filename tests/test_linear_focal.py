"""linear_cross_entropy (issue 17): the focal gamma, return_components, the per-chunk step's contract, the
vocabulary blocks, backward twice, and torch.compile around a model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch._dynamo
import torch.nn.functional as F
from torch import nn

import losslab
from losslab import _linear_chunk
from losslab._linear_chunk import Options, chunk_loss_grad_torch
from losslab.linear import LinearCrossEntropyLoss, LinearCrossEntropyOutput, linear_cross_entropy

from .test_linear import D, N, V, grads, make, numpy_reference, resolve, torch_reference

FOCAL = [
    {"gamma": 2.0},
    {"gamma": 0.5, "class_weight": "rand"},
    {"gamma": 2.0, "label_smoothing": 0.1},
    {"gamma": 1.5, "label_smoothing": 0.2, "class_weight": "rand"},
    {"gamma": 3.0, "softcap": 2.5, "z_loss": 1e-2},
    {"gamma": 2.0, "softcap": 2.5, "z_loss": 1e-2, "label_smoothing": 0.1, "class_weight": "rand"},
]


def focal_reference(h, w, b, y, *, gamma, reduction="mean", label_smoothing=0.0, class_weight=None, z_loss=0.0,
                    softcap=None):
    """losslab.softmax_focal_loss of the head's (softcapped) logits, plus the z-loss term (mean over kept)."""
    z = F.linear(h, w, b)
    if softcap is not None:
        z = softcap * torch.tanh(z / softcap)
    loss = losslab.softmax_focal_loss(z, y, alpha=class_weight, gamma=gamma, label_smoothing=label_smoothing,
                                      reduction=reduction)
    if z_loss:
        kept = y != -100
        zl = torch.where(kept, z_loss * torch.logsumexp(z, 1) ** 2, 0.0)
        loss = loss + (zl if reduction == "none" else zl.sum() / (kept.sum() if reduction == "mean" else 1))
    return loss


def numpy_focal(h, w, b, y, *, gamma, reduction="mean", label_smoothing=0.0, class_weight=None, z_loss=0.0,
                softcap=None):
    """float64 from the formula: -sum_c w_c q_c (1 - p_c)^gamma log p_c, plain mean over kept, + z-loss."""
    h, w, y = np.asarray(h, np.float64), np.asarray(w, np.float64), np.asarray(y)
    z = h @ w.T + (0.0 if b is None else np.asarray(b, np.float64))
    if softcap is not None:
        z = softcap * np.tanh(z / softcap)
    m = z.max(1, keepdims=True)
    lse = (m + np.log(np.exp(z - m).sum(1, keepdims=True)))[:, 0]
    log_p = z - lse[:, None]
    vocab = z.shape[1]
    cw = np.ones(vocab) if class_weight is None else np.asarray(class_weight, np.float64)
    kept = y != -100
    yk = np.where(kept, y, 0)
    q = (1 - label_smoothing) * np.eye(vocab)[yk] + label_smoothing / vocab
    terms = -(cw * q * (1 - np.exp(log_p)) ** gamma * log_p).sum(1)
    total = np.where(kept, terms, 0.0)
    zl = np.where(kept, z_loss * lse ** 2, 0.0)
    if reduction == "none":
        return total + zl
    if reduction == "sum":
        return (total + zl).sum()
    den = max(kept.sum(), 1)
    return total.sum() / den + zl.sum() / den


@pytest.mark.parametrize("opts", FOCAL)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("chunk", [4, None])
def test_focal_matches_softmax_focal_loss(opts, reduction, chunk):
    h, w, b, y = make()
    o = resolve(opts, torch.float32)
    out = linear_cross_entropy(h, w, y, bias=b, reduction=reduction, chunk_size=chunk, **o)
    ref = focal_reference(h, w, b, y, reduction=reduction, **o)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    up = torch.rand(out.shape) + 0.5
    for a, c in zip(grads(out, (h, w, b), up), grads(ref, (h, w, b), up)):
        torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("opts", FOCAL)
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_focal_matches_numpy_float64(opts, reduction):
    h, w, b, y = make(torch.float64)
    o = resolve(opts, torch.float64)
    out = linear_cross_entropy(h, w, y, bias=b, reduction=reduction, chunk_size=5, **o)
    npo = {k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in o.items()}
    ref = numpy_focal(h.detach().numpy(), w.detach().numpy(), b.detach().numpy(), y.numpy(), reduction=reduction,
                      **npo)
    np.testing.assert_allclose(out.detach().numpy(), ref, rtol=1e-12, atol=1e-12)
    up = torch.rand(out.shape, dtype=torch.float64) + 0.5
    ref_t = focal_reference(h, w, b, y, reduction=reduction, **o)
    for a, c in zip(grads(out, (h, w, b), up), grads(ref_t, (h, w, b), up)):
        torch.testing.assert_close(a, c, rtol=1e-10, atol=1e-12)


def test_focal_gradcheck():
    h, w, b, y = make(torch.float64, n=6)
    cw = torch.rand(V, dtype=torch.float64) + 0.1
    for smoothing in (0.0, 0.1):
        torch.autograd.gradcheck(lambda h, w, b, s=smoothing: linear_cross_entropy(
            h, w, y, bias=b, gamma=1.5, class_weight=cw, label_smoothing=s, z_loss=0.01, softcap=3.0,
            chunk_size=4), (h, w, b))


def test_focal_saturated_logits_have_finite_gradients():
    """p_t = 1 in float32 (logits 1e3 apart), gamma < 1: softmax_focal_loss's floor gives finite gradients."""
    h = torch.zeros(3, 2, requires_grad=True)
    w = torch.tensor([[1e3, 0.0], [0.0, 1.0], [-1e3, 0.0]], requires_grad=True)
    h.data[:, 0] = 1.0
    y = torch.tensor([0, 0, 1])
    for s in (0.0, 0.1):
        out = linear_cross_entropy(h, w, y, gamma=0.5, label_smoothing=s)
        ref = losslab.softmax_focal_loss(F.linear(h, w), y, gamma=0.5, label_smoothing=s)
        torch.testing.assert_close(out, ref)
        for a, c in zip(grads(out, (h, w), None), grads(ref, (h, w), None)):
            assert torch.isfinite(a).all()
            torch.testing.assert_close(a, c)


def test_gamma_zero_is_cross_entropy_and_checked():
    h, w, b, y = make()
    torch.testing.assert_close(linear_cross_entropy(h, w, y, bias=b, gamma=0.0), torch_reference(h, w, b, y))
    with pytest.raises(ValueError, match="linear_cross_entropy: gamma"):
        linear_cross_entropy(h, w, y, gamma=-1.0)
    with pytest.raises(TypeError, match="return_components must be a bool"):
        linear_cross_entropy(h, w, y, return_components=1)


# ----------------------------------------------------------------------------
# return_components


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("opts", [{}, {"z_loss": 1e-2, "softcap": 3.0, "label_smoothing": 0.1}, {"gamma": 2.0}])
def test_components(reduction, opts):
    h, w, b, y = make()
    out = linear_cross_entropy(h, w, y, bias=b, reduction=reduction, chunk_size=4, return_components=True, **opts)
    assert isinstance(out, LinearCrossEntropyOutput)
    plain = linear_cross_entropy(h, w, y, bias=b, reduction=reduction, chunk_size=4, **opts)
    torch.testing.assert_close(out.loss, plain)
    kept = y != -100
    z = F.linear(h, w, b).detach()
    if "softcap" in opts:
        z = opts["softcap"] * torch.tanh(z / opts["softcap"])
    zl = torch.where(kept, opts.get("z_loss", 0.0) * torch.logsumexp(z, 1) ** 2, 0.0)
    expected_z = {"none": zl, "sum": zl.sum(), "mean": zl.sum() / kept.sum()}[reduction]
    torch.testing.assert_close(out.z_loss, expected_z)
    assert out.count.item() == kept.sum().item() and out.count.dtype == torch.int64
    torch.testing.assert_close(out.accuracy, (z.argmax(1) == y)[kept].float().mean())
    assert out.loss.requires_grad and not out.z_loss.requires_grad and not out.accuracy.requires_grad
    torch.testing.assert_close(grads(out.loss, (h, w, b), torch.ones_like(out.loss)),
                               grads(plain, (h, w, b), torch.ones_like(plain)))


def test_components_of_an_empty_batch_and_the_module():
    h, w, b, y = make(n=0)
    out = linear_cross_entropy(h, w, y, bias=b, z_loss=0.1, return_components=True)
    assert out.loss.item() == 0.0 and out.accuracy.item() == 0.0 and out.count.item() == 0
    h, w, b, y = make()
    mod = LinearCrossEntropyLoss(gamma=2.0, z_loss=0.01, return_components=True, chunk_size=3)
    got = mod(h, w, y, b)
    ref = linear_cross_entropy(h, w, y, bias=b, gamma=2.0, z_loss=0.01, return_components=True)
    for a, c in zip(got, ref):
        torch.testing.assert_close(a, c)


def test_accuracy_with_shift():
    g = torch.Generator().manual_seed(3)
    h = torch.randn(2, 6, D, generator=g)
    w = torch.randn(V, D, generator=g)
    y = torch.randint(0, V, (2, 6), generator=g)
    out = linear_cross_entropy(h, w, y, shift=True, return_components=True)
    pred = F.linear(h[:, :-1], w).argmax(-1)
    assert out.count.item() == 10
    torch.testing.assert_close(out.accuracy, (pred == y[:, 1:]).float().mean())


# ----------------------------------------------------------------------------
# the step's contract (the Triton kernel implements the same)


@pytest.mark.parametrize("opts", [{}, {"label_smoothing": 0.1, "class_weight": "rand"}, {"softcap": 2.0},
                                  {"gamma": 2.0, "z_loss": 0.1}, {"gamma": 0.5, "label_smoothing": 0.2,
                                                                  "class_weight": "rand", "softcap": 2.0}])
def test_step_contract(opts):
    o = resolve(opts, torch.float64)
    g = torch.Generator().manual_seed(7)
    raw = (torch.randn(6, V, generator=g, dtype=torch.float64) * 3).requires_grad_()
    y = torch.randint(0, V, (6,), generator=g)
    kept = torch.tensor([True, True, False, True, True, True])
    y[2] = 0
    ce_scale, z_scale = torch.tensor(0.25, dtype=torch.float64), torch.tensor(0.5, dtype=torch.float64)
    row_scale = torch.rand(6, generator=g, dtype=torch.float64) + 0.5
    z = raw.detach().clone()
    lse = torch.empty(6, dtype=torch.float64)
    kw = {"class_weight": o.get("class_weight"), "label_smoothing": o.get("label_smoothing", 0.0),
          "z_loss": o.get("z_loss", 0.0), "softcap": o.get("softcap"), "gamma": o.get("gamma", 0.0)}
    loss, grad, correct = chunk_loss_grad_torch(z, y, kept, **kw, ce_scale=ce_scale, z_scale=z_scale,
                                                row_scale=row_scale, want_grad=True, lse_out=lse)
    assert grad is z  # in place
    x = raw if kw["softcap"] is None else kw["softcap"] * torch.tanh(raw / kw["softcap"])
    yy = torch.where(kept, y, -100)
    first = (losslab.softmax_focal_loss(x, yy, alpha=kw["class_weight"], gamma=kw["gamma"],
                                        label_smoothing=kw["label_smoothing"], reduction="none") if kw["gamma"]
             else F.cross_entropy(x, yy, weight=kw["class_weight"], label_smoothing=kw["label_smoothing"],
                                  reduction="none"))
    expected = torch.where(kept, ce_scale * first + z_scale * kw["z_loss"] * torch.logsumexp(x, 1) ** 2, 0.0)
    torch.testing.assert_close(loss, expected.detach())
    torch.testing.assert_close(lse, torch.logsumexp(x, 1).detach())
    (ref_grad,) = torch.autograd.grad((expected * row_scale).sum(), raw)
    torch.testing.assert_close(grad, ref_grad)
    assert torch.equal(correct, kept & (x.argmax(1) == y))
    z2 = raw.detach().clone()
    loss2, none, correct2 = chunk_loss_grad_torch(z2, y, kept, **kw, ce_scale=ce_scale, z_scale=z_scale,
                                                  row_scale=None, want_grad=False)
    assert none is None and torch.equal(correct2, correct)
    torch.testing.assert_close(loss2, loss)


def test_custom_step_is_used():
    """The loop calls whatever step it is given (how the CUDA kernel plugs in)."""
    h, w, b, y = make()
    calls = []

    def step(z, *args, **kwargs):
        calls.append(z.shape)
        return chunk_loss_grad_torch(z, *args, **kwargs)

    kept = y != -100
    one = torch.ones(())
    res = _linear_chunk.sweep(h.detach(), w.detach(), b.detach(), torch.where(kept, y, 0), kept,
                              Options(None, 0.0, 0.0, None, 0.0), ce_scale=one, z_scale=one, row_scale=None,
                              want=(True, True, True), per_row=False, chunk_size=5, step=step)
    assert calls == [(5, V), (5, V), (3, V)]
    torch.testing.assert_close(res.losses, torch_reference(h, w, b, y, reduction="sum").detach())


# ----------------------------------------------------------------------------
# vocabulary blocks (chunk_size=None where MIN_ROWS rows of the whole vocabulary exceed the budget)


@pytest.mark.parametrize("opts", [{}, {"label_smoothing": 0.1, "class_weight": "rand", "z_loss": 1e-2},
                                  {"softcap": 2.5}, {"gamma": 2.0, "class_weight": "rand", "softcap": 2.5}])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_vocabulary_blocks(monkeypatch, opts, reduction):
    h, w, b, y = make(n=21)
    monkeypatch.setattr(_linear_chunk, "MIN_ROWS", 4)
    monkeypatch.setattr(_linear_chunk, "BUDGET_BYTES", 4 * 4 * 3 * 2)  # 4 rows of 3 classes (6 with softcap)
    o = resolve(opts, torch.float32)
    plan = _linear_chunk.plan(21, V, Options(o.get("class_weight"), 0.0, 0.0, o.get("softcap"), 0.0), None)
    assert plan == (4, 3 if "softcap" in o else 6)
    out = linear_cross_entropy(h, w, y, bias=b, reduction=reduction, return_components=True, **o)
    ref = (focal_reference if "gamma" in o else torch_reference)(h, w, b, y, reduction=reduction, **o)
    torch.testing.assert_close(out.loss, ref, rtol=1e-5, atol=1e-6)
    up = torch.rand(ref.shape) + 0.5
    for a, c in zip(grads(out.loss, (h, w, b), up), grads(ref, (h, w, b), up)):
        torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-6)
    whole = linear_cross_entropy(h, w, y, bias=b, reduction=reduction, return_components=True, chunk_size=4, **o)
    torch.testing.assert_close(out.accuracy, whole.accuracy)
    torch.testing.assert_close(out.z_loss, whole.z_loss)


def test_vocabulary_blocks_break_argmax_ties_like_the_whole_row(monkeypatch):
    monkeypatch.setattr(_linear_chunk, "MIN_ROWS", 4)
    monkeypatch.setattr(_linear_chunk, "BUDGET_BYTES", 4 * 4 * 3)
    h = torch.ones(4, 1)
    w = torch.ones(V, 1)  # every logit equal: the first class is the argmax
    out = linear_cross_entropy(h, w, torch.tensor([0, 4, 3, 0]), return_components=True)
    assert out.accuracy.item() == 0.5


def test_whole_rows_break_argmax_ties_at_the_first_maximum():
    """The step's accuracy without an arg-reduction: a target tied with an earlier maximum is wrong, with a later
    one right, alone at the maximum right; transposed (the CPU loop's layout) and contiguous chunks agree."""
    h = torch.ones(5, 1)
    w = torch.tensor([[1.0], [0.5], [1.0], [1.0], [0.25], [0.0]])  # maxima at classes 0, 2 and 3
    target = torch.tensor([0, 2, 3, 1, 0])
    out = linear_cross_entropy(h, w, target, return_components=True)  # one chunk, transposed on CPU
    assert out.accuracy.item() == pytest.approx(0.4)
    w2 = torch.tensor([[0.0], [2.0], [1.0], [2.0]])  # a unique maximum, then a tie led by class 1
    out = linear_cross_entropy(torch.ones(3, 1), w2, torch.tensor([1, 3, 2]), return_components=True)
    assert out.accuracy.item() == pytest.approx(1 / 3)
    z = torch.tensor([[3.0, 1.0, 3.0], [0.0, 2.0, 1.0], [1.0, 1.0, 1.0], [5.0, 4.0, 4.5]])
    y = torch.tensor([2, 1, 0, 1])
    kept = torch.tensor([True, True, True, False])
    one = torch.tensor(1.0)
    kw = {"class_weight": None, "label_smoothing": 0.0, "z_loss": 0.0, "softcap": None, "gamma": 0.0,
          "ce_scale": one, "z_scale": one, "row_scale": None, "want_grad": True}
    expected = kept & (z.argmax(1) == y)
    for chunk in (z.clone(), z.T.contiguous().T):
        loss, grad, correct = chunk_loss_grad_torch(chunk, y, kept, **kw)
        assert torch.equal(correct, expected)
        torch.testing.assert_close(loss, torch.where(kept, F.cross_entropy(z, y, reduction="none"), 0.0))


# ----------------------------------------------------------------------------
# backward twice, and torch.compile around a model


def test_backward_twice_with_retain_graph():
    h, w, b, y = make()
    out = linear_cross_entropy(h, w, y, bias=b, chunk_size=4, label_smoothing=0.1)
    first = [g.clone() for g in torch.autograd.grad(out, (h, w, b), retain_graph=True)]
    second = torch.autograd.grad(out * 1.0, (h, w, b), torch.tensor(2.0))
    for a, c in zip(first, second):
        torch.testing.assert_close(2 * a, c)


class _Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(D, D)
        self.head = nn.Linear(D, V)

    def forward(self, x, y):
        hidden = torch.tanh(self.body(x))
        return linear_cross_entropy(hidden, self.head.weight, y, bias=self.head.bias, z_loss=1e-3, gamma=1.0,
                                    chunk_size=4, return_components=True)


def test_compiled_model_equals_eager():
    """torch.compile around a model with an nn.Linear head whose loss is linear_cross_entropy: no graph break,
    the compiled values (the components too) and parameter gradients equal eager's."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = _Head()
    x, _, _, y = make()
    x = x.detach()
    eager = model(x, y)
    eager_grads = torch.autograd.grad(eager.loss, list(model.parameters()))
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)  # torch 2.13 traces it whole
    got = compiled(x, y)
    got_grads = torch.autograd.grad(got.loss, list(model.parameters()))
    for a, c in zip(got, eager):
        torch.testing.assert_close(a, c)
    for a, c in zip(got_grads, eager_grads):
        torch.testing.assert_close(a, c)
    torch._dynamo.reset()
