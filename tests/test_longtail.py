"""The long-tail losses of the softmax family (losslab.longtail): equivalences, the authors' code, every backend.

The conformance battery (tests/test_conformance.py) checks them against the float64 references of
tests/reference_longtail.py; here: the equivalences the papers state (values and gradients), the authors'
published code transcribed in torch, the same numbers from every backend the dispatcher picks (native,
composite, the compiled sweep, the Triton kernel under its interpreter), Hypothesis properties, the
post-hoc :func:`losslab.logit_adjust` and the DRW schedule :func:`losslab.deferred_class_weights`.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import losslab
from losslab import _dispatch

from .helpers import TOLERANCES, gen

F64 = torch.float64
COUNTS = torch.tensor([500.0, 120.0, 30.0, 6.0, 1.0], dtype=F64)
C = COUNTS.numel()


def _batch(n: int = 12, *spatial: int, seed: int = 0, ignore: bool = True, dtype=F64):
    x = (torch.randn(n, C, *spatial, generator=gen(seed), dtype=F64) * 2).to(dtype)
    t = torch.randint(0, C, (n, *spatial), generator=gen(seed + 1))
    if ignore:
        t[: max(1, n // 4)] = -100
    return x, t


def _loss_and_grad(f, x, *args, **kwargs):
    leaf = x.detach().clone().requires_grad_(True)
    out = f(leaf, *args, **kwargs)
    out.sum().backward()
    return out.detach(), leaf.grad


def _same(a, b, dtype=F64):
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, **TOLERANCES[dtype])


# ----------------------------------------------------------------------------
# the papers' equivalences, with gradients


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_logit_adjustment_at_tau_0_is_cross_entropy(reduction):
    x, t = _batch()
    w = torch.rand(C, generator=gen(3), dtype=F64) + 0.5
    got = _loss_and_grad(losslab.logit_adjusted_cross_entropy, x, t, class_counts=COUNTS, tau=0.0, weight=w,
                         reduction=reduction)
    _same(got, _loss_and_grad(losslab.cross_entropy, x, t, weight=w, reduction=reduction))


@pytest.mark.parametrize("name", ["Balanced Softmax", "BalancedSoftmax", "BALMS"])
def test_balanced_softmax_is_cross_entropy_of_logits_plus_log_counts(name):
    """Ren et al.'s code: F.cross_entropy(logits + log(sample_per_class)) (the constant log N cancels)."""
    x, t = _batch(ignore=False)
    loss_fn = losslab.get_loss(name, class_counts=COUNTS)
    assert isinstance(loss_fn, losslab.LogitAdjustedCrossEntropyLoss) and loss_fn.tau == 1.0
    _same(_loss_and_grad(loss_fn, x, t), _loss_and_grad(lambda z, y: F.cross_entropy(z + COUNTS.log(), y), x, t))


def test_ldam_without_margin_and_scale_is_cross_entropy():
    x, t = _batch(4, 3)
    got = _loss_and_grad(losslab.ldam_loss, x, t, class_counts=COUNTS, max_margin=0.0, scale=1.0)
    _same(got, _loss_and_grad(losslab.cross_entropy, x, t))


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_vs_at_gamma_0_is_logit_adjustment(label_smoothing):
    x, t = _batch()
    got = _loss_and_grad(losslab.vs_loss, x, t, class_counts=COUNTS, gamma=0.0, tau=0.7,
                         label_smoothing=label_smoothing)
    want = _loss_and_grad(losslab.logit_adjusted_cross_entropy, x, t, class_counts=COUNTS, tau=0.7,
                          label_smoothing=label_smoothing)
    _same(got, want)


def test_cdt_preset_is_vs_without_the_additive_term():
    x, t = _batch()
    loss_fn = losslab.get_loss("CDT", class_counts=COUNTS, gamma=0.3)
    assert loss_fn.tau == 0.0
    delta = (COUNTS / COUNTS.max()) ** 0.3
    _same(_loss_and_grad(loss_fn, x, t), _loss_and_grad(lambda z, y: F.cross_entropy(z * delta, y), x, t))


# ----------------------------------------------------------------------------
# the authors' code, transcribed


def _ldam_cao(x, target, counts, max_m, s, weight=None):
    """Cao et al.'s LDAMLoss.forward (kaidic/LDAM-DRW, losses.py), in torch."""
    m_list = 1.0 / torch.sqrt(torch.sqrt(counts))
    m_list = m_list * (max_m / torch.max(m_list))
    index = torch.zeros_like(x, dtype=torch.bool)
    index.scatter_(1, target.view(-1, 1), True)
    batch_m = torch.matmul(m_list[None, :], index.to(x.dtype).T).view((-1, 1))
    output = torch.where(index, x - batch_m, x)
    return F.cross_entropy(s * output, target, weight=weight)


def _vs_kini(x, target, counts, gamma, tau, weight=None):
    """Kini et al.'s VSLoss (orparask/VS-Loss): x / Delta + iota, Delta = (1/n)^gamma / min, iota = tau log pi."""
    probs = counts / counts.sum()
    temp = (1.0 / counts) ** gamma
    delta = temp / temp.min()
    return F.cross_entropy(x / delta + tau * probs.log(), target, weight=weight)


def _la_menon(x, target, counts, tau):
    """Menon et al. (google-research/logit_adjustment): logits + tau * log(base_probs)."""
    return F.cross_entropy(x + tau * torch.log(counts / counts.sum()), target)


@pytest.mark.parametrize("weighted", [False, True])
def test_ldam_matches_the_authors_code(weighted):
    x, t = _batch(16, ignore=False, seed=5)
    w = losslab.deferred_class_weights(COUNTS, 5, start=0, beta=0.999) if weighted else None
    got = _loss_and_grad(losslab.ldam_loss, x, t, class_counts=COUNTS, weight=w)
    _same(got, _loss_and_grad(_ldam_cao, x, t, COUNTS, 0.5, 30.0, w))


def test_vs_and_logit_adjustment_match_the_authors_code():
    x, t = _batch(16, ignore=False, seed=7)
    _same(_loss_and_grad(losslab.vs_loss, x, t, class_counts=COUNTS, gamma=0.2, tau=1.0),
          _loss_and_grad(_vs_kini, x, t, COUNTS, 0.2, 1.0))
    _same(_loss_and_grad(losslab.logit_adjusted_cross_entropy, x, t, class_counts=COUNTS, tau=1.5),
          _loss_and_grad(_la_menon, x, t, COUNTS, 1.5))


# ----------------------------------------------------------------------------
# every backend computes the same adjusted logits


CALLS = {
    "la": (losslab.logit_adjusted_cross_entropy, {"tau": 1.0}),
    "la soft targets": (losslab.logit_adjusted_cross_entropy, {"tau": 0.5, "soft": True}),
    "la smoothing weight": (losslab.logit_adjusted_cross_entropy, {"label_smoothing": 0.1, "weight": True}),
    "ldam weight": (losslab.ldam_loss, {"scale": 5.0, "weight": True}),
    "ldam smoothing": (losslab.ldam_loss, {"scale": 5.0, "label_smoothing": 0.1}),
    "vs": (losslab.vs_loss, {"gamma": 0.3}),
    "vs soft targets smoothing": (losslab.vs_loss, {"soft": True, "label_smoothing": 0.2}),
}


def _call(name, x, t, reduction="mean"):
    f, options = CALLS[name]
    kwargs = {k: v for k, v in options.items() if k not in ("soft", "weight")}
    if options.get("weight"):
        kwargs["weight"] = torch.tensor([0.5, 2.0, 1.0, 3.0, 0.7])
    if options.get("soft"):
        t = torch.softmax(torch.randn(x.shape, generator=gen(9)), dim=1)
    return f(x, t, class_counts=COUNTS.float(), reduction=reduction, **kwargs)


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("name", list(CALLS))
def test_native_and_composite_agree(name, reduction):
    x, t = _batch(10, 3, dtype=torch.float32)
    with _dispatch.forced("native"):
        native = _loss_and_grad(lambda z: _call(name, z, t, reduction), x)
    with _dispatch.forced("composite"):
        composite = _loss_and_grad(lambda z: _call(name, z, t, reduction), x)
    _same(native, composite, torch.float32)


@pytest.mark.usefixtures("fresh_dynamo")
@pytest.mark.parametrize("name", ["la", "ldam weight", "vs soft targets smoothing"])
def test_compiled_sweep_agrees_with_the_composite(name):
    """The compiled CPU sweep adjusts the logits inside (index and dense sweeps), with the same gradient."""
    x, t = _batch(6, 5, 7, dtype=torch.float32)  # 6 x 5 x 5 x 7: the sweep is forced below
    with losslab.set_fused("compiled"):
        fused = _loss_and_grad(lambda z: _call(name, z, t), x)
    with losslab.set_fused("off"):
        composite = _loss_and_grad(lambda z: _call(name, z, t), x)
    _same(fused, composite, torch.float32)


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available(),
                    reason="no GPU and Triton's interpreter is off")
@pytest.mark.parametrize("adjust", ["a", "b", "m", "abm"])
@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_triton_kernel_adjusts_as_the_sweep(adjust, gamma):
    pytest.importorskip("triton")
    from losslab import _fused, _gpu

    device = "cuda" if torch.cuda.is_available() else "cpu"
    x = (torch.randn(7, C, 3, generator=gen(11)) * 3).to(device)
    index = torch.randint(0, C, (7, 3), generator=gen(12)).to(device)
    kept = (torch.rand(7, 3, generator=gen(13)) < 0.8).to(device)
    index = torch.where(kept, index, torch.zeros_like(index))
    a, b, m = [(torch.rand(C, generator=gen(14 + i)) + 0.5).to(device) if k in adjust else None
               for i, k in enumerate("abm")]
    margin = None if m is None else m[index]  # per position, as the dispatcher hands it over
    w = (torch.rand(C, generator=gen(20)) + 0.5).to(device)
    scale = _fused._scale(float(kept.sum()), x)
    for reduce in (True, False):
        got = _gpu.softmax(x, index, kept, margin, scale, w, gamma, a, b, reduce)
        want = _fused.softmax_index_sweep(x, index, kept, margin, scale, w, gamma, a, b, reduce)
        _same(got, want, torch.float32)


@pytest.mark.usefixtures("fused_auto")
def test_public_losses_dispatch_to_the_triton_kernel(monkeypatch):
    """With the kernels on CPU tensors (the interpreter), the public losses reach them and match the composite."""
    pytest.importorskip("triton")
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("Triton's interpreter is off")
    from losslab import _gpu

    monkeypatch.setattr(_dispatch, "_triton_on_cpu", True)
    calls = []
    original = _gpu.softmax
    monkeypatch.setattr(_gpu, "softmax", lambda *a: calls.append(a) or original(*a))
    x, t = _batch(6, 4, dtype=torch.float32)
    for name in ("la", "ldam weight", "vs"):
        calls.clear()
        fused = _loss_and_grad(lambda z, n=name: _call(n, z, t), x)
        assert len(calls) == 1, name
        with losslab.set_fused("off"):
            composite = _loss_and_grad(lambda z, n=name: _call(n, z, t), x)
        _same(fused, composite, torch.float32)


# ----------------------------------------------------------------------------
# properties


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(list(CALLS)), st.floats(-1e4, 1e4), st.sampled_from([torch.float32, torch.float16,
                                                                              torch.bfloat16]))
def test_non_negative_with_finite_gradients_at_saturated_logits(name, big, dtype):
    x = torch.zeros(4, C)
    x[:, 0], x[:, 1] = big, -big
    x = x.to(dtype)
    t = torch.tensor([0, 1, 2, 4])
    loss, grad = _loss_and_grad(lambda z: _call(name, z, t), x)
    assert loss.dtype == dtype and torch.isfinite(loss) and loss >= 0
    assert torch.isfinite(grad).all()


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 10_000), min_size=C, max_size=C), st.floats(0.0, 3.0))
def test_larger_counts_never_lower_the_adjusted_logit_order(counts, tau):
    """logit_adjust subtracts tau log pi: among equal logits, the rarest class wins."""
    adjusted = losslab.logit_adjust(torch.zeros(C), counts, tau=tau)
    n = np.maximum(np.array(counts, dtype=np.float64), 1.0)
    expected = -tau * np.log(n / n.sum())
    np.testing.assert_allclose(adjusted.numpy(), expected, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------
# logit_adjust and deferred_class_weights


def test_logit_adjust_shapes_dtypes_and_gradient():
    x = torch.randn(3, C, 2, dtype=torch.float16, requires_grad=True)
    out = losslab.logit_adjust(x, COUNTS, tau=0.5)
    assert out.shape == x.shape and out.dtype == torch.float16
    out.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))
    want = x.detach().float() - 0.5 * torch.log(COUNTS / COUNTS.sum()).float().view(1, C, 1)
    torch.testing.assert_close(out.float(), want, **TOLERANCES[torch.float16])


def test_post_hoc_adjustment_of_a_ce_model_equals_training_with_logit_adjustment_at_the_optimum():
    """The logit-adjusted loss of x equals CE of logit_adjust(x, tau=-tau)... i.e. adjustment is the same shift."""
    x, t = _batch(ignore=False)
    shifted = losslab.logit_adjust(x, COUNTS, tau=1.0)  # x - log pi
    # LA-CE trains x so that x + log pi fits the data; a CE model's x_ce fits it itself: x = x_ce - log pi
    _same((losslab.logit_adjusted_cross_entropy(shifted, t, class_counts=COUNTS),),
          (losslab.cross_entropy(x, t),))


@pytest.mark.parametrize(("call", "error", "match"), [
    (lambda: losslab.logit_adjust(torch.zeros(2, 3), [1, 2]), ValueError,
     r"logit_adjust: class_counts must have shape \(3,\)"),
    (lambda: losslab.logit_adjust(torch.zeros(2, 3), [1, 2, 3], tau=-1), ValueError,
     r"logit_adjust: tau must be a finite number in \[0, inf\); got -1.0"),
    (lambda: losslab.logit_adjust(torch.zeros(2, 3, dtype=torch.long), [1, 2, 3]), TypeError, r"logit_adjust: "),
    (lambda: losslab.logit_adjust([[0.0, 1.0]], [1, 2]), TypeError, r"logit_adjust: logits must be"),
    (lambda: losslab.deferred_class_weights([1, 2], 1.5, start=0), TypeError,
     r"deferred_class_weights: epoch must be an integer; got 1.5"),
    (lambda: losslab.deferred_class_weights([1, 2], 0, start=-1), ValueError,
     r"deferred_class_weights: start must be >= 0; got -1"),
    (lambda: losslab.deferred_class_weights([1, -2], 0, start=3), ValueError, r"class_weights: counts must be"),
    (lambda: losslab.deferred_class_weights([1, 2], 0, start=3, beta=1.0), ValueError, r"class_weights: beta"),
])
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_deferred_class_weights_switch_on_at_start():
    counts = [900, 90, 10]
    assert losslab.deferred_class_weights(counts, 0, start=3) is None
    assert losslab.deferred_class_weights(counts, 2, start=3) is None
    for epoch in (3, 10):
        w = losslab.deferred_class_weights(counts, epoch, start=3)
        torch.testing.assert_close(w, losslab.class_weights(counts, method="effective_number", beta=0.9999))
        assert abs(float(w.mean()) - 1.0) < 1e-6
    w = losslab.deferred_class_weights(counts, 3, start=3, method="inverse")
    torch.testing.assert_close(w, losslab.class_weights(counts))


def test_module_keeps_the_counts_as_a_buffer():
    module = losslab.LDAMLoss(class_counts=[500, 120, 30, 6, 1], weight=[1.0] * C)
    assert set(module.state_dict()) == {"class_counts", "weight"}
    x, t = _batch(ignore=False)
    torch.testing.assert_close(module(x, t), losslab.ldam_loss(x, t, class_counts=COUNTS, weight=torch.ones(C)))
    module.weight = losslab.deferred_class_weights(COUNTS, 10, start=5)  # DRW on a twin
    torch.testing.assert_close(module(x, t), losslab.ldam_loss(x, t, class_counts=COUNTS, weight=module.weight))


@pytest.mark.usefixtures("fresh_dynamo")
def test_compiled_fullgraph_equals_eager_with_gradients():
    """torch.compile(fullgraph=True) (inductor) around the loss: the composite traced, the margin's scatter
    included; the same values and gradients as eager."""
    def loss(z, y):
        return losslab.ldam_loss(z, y, class_counts=COUNTS, scale=4.0, weight=torch.ones(C)) + \
            losslab.vs_loss(z, y, class_counts=COUNTS)

    x, t = _batch(9, dtype=torch.float32)
    _same(_loss_and_grad(torch.compile(loss, fullgraph=True), x, t), _loss_and_grad(loss, x, t), torch.float32)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("cls", [losslab.LogitAdjustedCrossEntropyLoss, losslab.LDAMLoss, losslab.VSLoss])
def test_casting_the_module_keeps_the_counts_exact(cls, dtype):
    """A loss inside a model cast to half precision (Lightning's "16-true"): the counts stay float64."""
    counts = [100_000, 4_999, 5_000, 10, 1]
    module = cls(class_counts=counts, weight=[1.0] * C).to(dtype)
    assert module.class_counts.dtype == F64 and module.class_counts.tolist() == counts
    assert module.weight.dtype == dtype  # other buffers follow the cast as usual
    x, t = _batch(ignore=False, dtype=dtype)
    want = cls.function(x, t, class_counts=torch.tensor(counts, dtype=F64), weight=module.weight)
    torch.testing.assert_close(module(x, t), want)
