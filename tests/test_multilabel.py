"""The asymmetric loss (ASL) and the Poly-1 losses: equivalences, the peers' formulas, properties, compile.

The peers' losses are transcribed here in plain torch (float64), from timm's ``AsymmetricLossMultiLabel``
(released versions: the sum), mmpretrain's ``asymmetric_loss``, optax's ``poly_loss_cross_entropy`` and timm's
``PolyCrossEntropy`` / ``PolyBinaryCrossEntropy``, and compared with losslab's losses and adapters, values and
gradients.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch._dynamo
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import losslab

F64 = torch.float64

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _x(n: int = 6, c: int = 5, seed: int = 0, scale: float = 3.0) -> torch.Tensor:
    return torch.randn(n, c, generator=_gen(seed), dtype=F64) * scale


def _labels(n: int = 6, c: int = 5, seed: int = 1) -> torch.Tensor:
    return (torch.rand(n, c, generator=_gen(seed), dtype=F64) < 0.4).to(F64)


def _value_and_grad(fn, x: torch.Tensor, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.detach().clone().requires_grad_(True)
    out = fn(x, *args, **kwargs)
    out.sum().backward()
    return out.detach(), x.grad


def assert_same(a, b, *, rtol: float = 1e-10, atol: float = 1e-12) -> None:
    torch.testing.assert_close(a[0], b[0], rtol=rtol, atol=atol)
    torch.testing.assert_close(a[1], b[1], rtol=rtol, atol=atol)


# ----------------------------------------------------------------------------
# the peers, transcribed (float64)


def timm_asl(x, y, gamma_neg=4.0, gamma_pos=1.0, clip=0.05, eps=1e-8, detach=False):
    """timm's AsymmetricLossMultiLabel.forward (released versions): the sum."""
    xs_pos = torch.sigmoid(x)
    xs_neg = 1 - xs_pos
    if clip is not None and clip > 0:
        xs_neg = (xs_neg + clip).clamp(max=1)
    loss = y * torch.log(xs_pos.clamp(min=eps)) + (1 - y) * torch.log(xs_neg.clamp(min=eps))
    if gamma_neg > 0 or gamma_pos > 0:
        with torch.set_grad_enabled(not detach):
            pt = xs_pos * y + xs_neg * (1 - y)
            w = torch.pow(1 - pt, gamma_pos * y + gamma_neg * (1 - y))
        loss = loss * w
    return -loss.sum()


def mmpretrain_asl(pred, target, gamma_pos=0.0, gamma_neg=4.0, clip=0.05, eps=1e-8, use_sigmoid=True):
    """mmpretrain's asymmetric_loss, unreduced."""
    p = pred.sigmoid() if use_sigmoid else F.softmax(pred, dim=-1)
    if clip and clip > 0:
        pt = (1 - p + clip).clamp(max=1) * (1 - target) + p * target
    else:
        pt = (1 - p) * (1 - target) + p * target
    w = (1 - pt).pow(gamma_pos * target + gamma_neg * (1 - target))
    return -torch.log(pt.clamp(min=eps)) * w


def optax_poly(logits, labels, epsilon=2.0):
    """optax.poly_loss_cross_entropy: per example."""
    p = torch.softmax(logits, dim=-1)
    one_minus_pt = (labels * (1 - p)).sum(-1)
    return -(labels * torch.log_softmax(logits, dim=-1)).sum(-1) + epsilon * one_minus_pt


def timm_poly_ce(x, target, epsilon=2.0, smoothing=0.0):
    """timm's PolyCrossEntropy, 'mean'."""
    log_probs = F.log_softmax(x, dim=-1)
    if target.shape != x.shape:
        target = F.one_hot(target.long(), x.shape[-1]).to(x.dtype)
        if smoothing:
            target = target * (1 - smoothing) + smoothing / x.shape[-1]
    loss = -(target * log_probs).sum(-1) + epsilon * (1 - (target * log_probs.exp()).sum(-1))
    return loss.mean()


def timm_poly_bce(x, y, epsilon=2.0, gamma=0.0, alpha=None, smoothing=0.0):
    """timm's PolyBinaryCrossEntropy, unreduced."""
    if smoothing:
        y = y * (1 - smoothing) + 0.5 * smoothing
    p = torch.sigmoid(x)
    one_minus_pt = 1 - (y * p + (1 - y) * (1 - p))
    loss = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    poly = one_minus_pt
    if gamma:
        focal = one_minus_pt ** gamma
        loss, poly = loss * focal, poly * focal
    loss = loss + epsilon * poly
    if alpha is not None:
        loss = loss * (y * alpha + (1 - y) * (1 - alpha))
    return loss


# ----------------------------------------------------------------------------
# equivalences, with gradients


class TestAsymmetricLoss:
    @pytest.mark.parametrize("kwargs", [{}, {"weight": [0.5, 1.0, 2.0, 0.1, 3.0]}, {"reduction": "sum"}])
    def test_no_focusing_no_clip_is_binary_cross_entropy(self, kwargs):
        x, y = _x(), _labels()
        got = _value_and_grad(losslab.asymmetric_loss, x, y, gamma_pos=0.0, gamma_neg=0.0, clip=0.0, **kwargs)
        assert_same(got, _value_and_grad(losslab.binary_cross_entropy, x, y, **kwargs))

    def test_index_targets_and_ignore_index_are_binary_cross_entropy(self):
        x = torch.randn(7, 3, 2, generator=_gen(2), dtype=F64)
        t = torch.randint(0, 4, (7, 2), generator=_gen(3))
        t[0, 1] = -1
        got = _value_and_grad(losslab.asymmetric_loss, x, t, gamma_pos=0.0, gamma_neg=0.0, clip=0.0, ignore_index=-1)
        assert_same(got, _value_and_grad(losslab.binary_cross_entropy, x, t, ignore_index=-1))

    @pytest.mark.parametrize("gamma", [0.5, 2.0])
    def test_equal_gammas_without_clip_is_the_focal_loss(self, gamma):
        x, y = _x(seed=4), _labels(seed=5)
        got = _value_and_grad(losslab.asymmetric_loss, x, y, gamma_pos=gamma, gamma_neg=gamma, clip=0.0)
        assert_same(got, _value_and_grad(losslab.sigmoid_focal_loss, x, y, alpha=None, gamma=gamma))

    @pytest.mark.parametrize(("gamma_pos", "gamma_neg", "clip"), [(1.0, 4.0, 0.05), (0.0, 4.0, 0.0), (2.0, 1.0, 0.3)])
    def test_equals_timm_and_mmpretrain_on_hard_labels(self, gamma_pos, gamma_neg, clip):
        """Logits within +-18 (no eps clamp active): losslab's formula is both peers' on 0/1 labels."""
        x, y = _x(seed=6), _labels(seed=7)
        kw = {"gamma_pos": gamma_pos, "gamma_neg": gamma_neg, "clip": clip}
        ours = _value_and_grad(losslab.asymmetric_loss, x, y, reduction="sum", **kw)
        assert_same(ours, _value_and_grad(timm_asl, x, y, **kw))
        assert_same(ours, _value_and_grad(lambda a, b: mmpretrain_asl(a, b, **kw).sum(), x, y))

    def test_soft_targets_follow_the_paper_not_the_shared_factor(self):
        x, y = _x(seed=8), torch.rand(6, 5, generator=_gen(9), dtype=F64)
        p = torch.sigmoid(x)
        p_m = (p - 0.05).clamp(min=0)
        paper = -(y * (1 - p) * torch.log(p) + (1 - y) * p_m ** 4 * torch.log(1 - p_m))
        got = losslab.asymmetric_loss(x, y, gamma_pos=1.0, gamma_neg=4.0, clip=0.05, reduction="none")
        torch.testing.assert_close(got, paper, rtol=1e-10, atol=1e-12)
        assert not torch.allclose(got.sum(), timm_asl(x, y))  # timm raises one factor to an interpolated power

    def test_mean_is_over_kept_elements_and_avg_factor_replaces_it(self):
        x, y = _x(), _labels()
        y_ignored = y.clone()
        y_ignored[0] = -1
        total = losslab.asymmetric_loss(x, y_ignored, ignore_index=-1, reduction="sum")
        torch.testing.assert_close(losslab.asymmetric_loss(x, y_ignored, ignore_index=-1), total / 25)
        torch.testing.assert_close(losslab.asymmetric_loss(x, y, avg_factor=4.0),
                                   losslab.asymmetric_loss(x, y, reduction="sum") / 4)

    def test_the_clip_discards_easy_negatives(self):
        x = torch.tensor([[-4.0, -3.0, 2.0]], dtype=F64, requires_grad=True)  # p = 0.018, 0.047, 0.88
        loss = losslab.asymmetric_loss(x, torch.zeros(1, 3, dtype=F64), gamma_neg=0.0, clip=0.05, reduction="none")
        loss.sum().backward()
        assert loss[0, 0] == 0 and loss[0, 1] == 0 and loss[0, 2] > 0
        assert x.grad[0, 0] == 0 and x.grad[0, 1] == 0


class TestAsymmetricAdapters:
    @pytest.mark.parametrize("detach", [False, True])
    @pytest.mark.parametrize("soft", [False, True])
    def test_timm(self, detach, soft):
        x = _x(seed=10, scale=8.0)
        x[0, :3] = torch.tensor([-30.0, 25.0, -19.0], dtype=F64)  # the eps clamp acts
        y = torch.rand(6, 5, generator=_gen(11), dtype=F64) if soft else _labels(seed=11)
        y[0, :3] = 1.0
        fn = losslab.get_loss("timm.AsymmetricLossMultiLabel", disable_torch_grad_focal_loss=detach)
        assert_same(_value_and_grad(fn, x, y), _value_and_grad(timm_asl, x, y, detach=detach))

    def test_timm_eps_quirk(self):
        x, y = torch.tensor([[-30.0]], dtype=F64), torch.ones(1, 1, dtype=F64)
        timm = losslab.get_loss("timm.AsymmetricLossMultiLabel", gamma_pos=0.0)
        torch.testing.assert_close(timm(x, y), torch.tensor(-math.log(1e-8), dtype=F64))
        torch.testing.assert_close(losslab.asymmetric_loss(x, y, reduction="sum"), torch.tensor(30.0, dtype=F64))

    def test_timm_reductions(self):
        x, y = _x(), _labels()
        per = losslab.get_loss("timm.AsymmetricLossMultiLabel", reduction="none")(x, y)
        for reduction, value in [("sum", per.sum()), ("mean", per.mean()), ("batchmean", per.sum() / 6)]:
            got = losslab.get_loss("timm.AsymmetricLossMultiLabel", reduction=reduction)(x, y)
            torch.testing.assert_close(got, value)

    @pytest.mark.parametrize("use_sigmoid", [True, False])
    @pytest.mark.parametrize("soft", [False, True])
    def test_mmpretrain(self, use_sigmoid, soft):
        x = _x(seed=12, scale=6.0)
        y = torch.rand(6, 5, generator=_gen(13), dtype=F64) if soft else _labels(seed=13)
        w = torch.rand(6, generator=_gen(14), dtype=F64)
        fn = losslab.get_loss("mmpretrain.AsymmetricLoss", use_sigmoid=use_sigmoid, loss_weight=2.0)
        want = _value_and_grad(lambda a: 2.0 * (mmpretrain_asl(a, y, use_sigmoid=use_sigmoid) * w[:, None]).mean(), x)
        assert_same(_value_and_grad(lambda a: fn(a, y, weight=w), x), want)
        want = _value_and_grad(lambda a: 2.0 * mmpretrain_asl(a, y, use_sigmoid=use_sigmoid).sum() / 7.0, x)
        assert_same(_value_and_grad(lambda a: fn(a, y, avg_factor=7.0), x), want)

    def test_mmpretrain_class_indices_are_one_hot(self):
        x, t = _x(), torch.randint(0, 5, (6,), generator=_gen(15))
        fn = losslab.get_loss("mmpretrain.AsymmetricLoss")
        torch.testing.assert_close(fn(x, t), fn(x, F.one_hot(t, 5).to(F64)))
        torch.testing.assert_close(fn(x, t[:, None]), mmpretrain_asl(x, F.one_hot(t, 5).to(F64)).mean())

    def test_empty_batches_give_zero(self):
        for name in ("timm.AsymmetricLossMultiLabel", "mmpretrain.AsymmetricLoss", "timm.PolyBinaryCrossEntropy"):
            x = torch.zeros(0, 5, dtype=F64, requires_grad=True)
            out = losslab.get_loss(name, reduction="mean")(x, torch.zeros(0, 5, dtype=F64))
            out.backward()
            assert out.item() == 0.0


class TestPoly:
    @pytest.mark.parametrize("kwargs", [{}, {"weight": [0.5, 1.0, 2.0, 0.1, 3.0]}, {"label_smoothing": 0.2},
                                        {"weight": [0.5, 1.0, 2.0, 0.1, 3.0], "label_smoothing": 0.1,
                                         "reduction": "none"}])
    def test_epsilon_zero_is_cross_entropy(self, kwargs):
        x = _x(seed=20)
        t = torch.randint(0, 5, (6,), generator=_gen(21))
        t[2] = -100
        got = _value_and_grad(losslab.poly_cross_entropy, x, t, epsilon=0.0, **kwargs)
        assert_same(got, _value_and_grad(losslab.cross_entropy, x, t, **kwargs))
        soft = torch.softmax(_x(seed=22), dim=1)
        got = _value_and_grad(losslab.poly_cross_entropy, x, soft, epsilon=0.0, **kwargs)
        assert_same(got, _value_and_grad(losslab.cross_entropy, x, soft, **kwargs))

    @pytest.mark.parametrize("kwargs", [{"gamma": 2.0}, {"gamma": 0.5, "alpha": [0.1, 0.6, 0.3, 0.2, 1.0]},
                                        {"gamma": 1.0, "alpha": 0.25, "label_smoothing": 0.1}])
    def test_focal_forms_at_epsilon_zero_are_the_focal_losses(self, kwargs):
        x = _x(seed=23)
        t = torch.randint(0, 5, (6,), generator=_gen(24))
        got = _value_and_grad(losslab.poly_softmax_focal_loss, x, t, epsilon=0.0, **kwargs)
        assert_same(got, _value_and_grad(losslab.softmax_focal_loss, x, t, **kwargs))
        sig = {k: v for k, v in kwargs.items() if k == "gamma"} | {"alpha": 0.25, "weight": [1.0, 2.0, 0.5, 1.0, 3.0]}
        y = _labels(seed=25)
        got = _value_and_grad(losslab.poly_sigmoid_focal_loss, x, y, epsilon=0.0, **sig)
        assert_same(got, _value_and_grad(losslab.sigmoid_focal_loss, x, y, **sig))

    def test_softmax_focal_form_at_gamma_zero_is_poly_cross_entropy(self):
        x, t = _x(seed=26), torch.randint(0, 5, (6,), generator=_gen(27))
        assert_same(_value_and_grad(losslab.poly_softmax_focal_loss, x, t, epsilon=2.0, gamma=0.0),
                    _value_and_grad(losslab.poly_cross_entropy, x, t, epsilon=2.0))

    @pytest.mark.parametrize("epsilon", [2.0, -1.0, 0.5])
    def test_equals_optax(self, epsilon):
        x, labels = _x(seed=28), torch.softmax(_x(seed=29), dim=1)
        want = _value_and_grad(optax_poly, x, labels, epsilon)
        assert_same(_value_and_grad(losslab.get_loss("optax.poly_loss_cross_entropy", epsilon=epsilon), x, labels),
                    want)
        hard = F.one_hot(torch.randint(0, 5, (6,), generator=_gen(30)), 5).to(F64)
        assert_same(_value_and_grad(losslab.poly_cross_entropy, x, hard.argmax(1), epsilon=epsilon, reduction="none"),
                    _value_and_grad(optax_poly, x, hard, epsilon))

    def test_equals_timm_poly_cross_entropy(self):
        x, t = _x(seed=31), torch.randint(0, 5, (6,), generator=_gen(32))
        fn = losslab.get_loss("timm.PolyCrossEntropy", label_smoothing=0.1)
        assert_same(_value_and_grad(fn, x, t), _value_and_grad(timm_poly_ce, x, t, 2.0, 0.1))
        soft = torch.softmax(_x(seed=33), dim=1)
        assert_same(_value_and_grad(losslab.get_loss("timm.PolyCrossEntropy"), x, soft),
                    _value_and_grad(timm_poly_ce, x, soft))

    @pytest.mark.parametrize("kwargs", [{}, {"gamma": 2.0, "alpha": 0.25, "epsilon": -1.0}, {"smoothing": 0.1}])
    def test_equals_timm_poly_binary_cross_entropy(self, kwargs):
        x, y = _x(seed=34), _labels(seed=35)
        fn = losslab.get_loss("timm.PolyBinaryCrossEntropy", **kwargs)
        assert_same(_value_and_grad(fn, x, y), _value_and_grad(lambda a: timm_poly_bce(a, y, **kwargs).mean(), x))

    def test_sigmoid_alpha_weighs_the_focal_term_only(self):
        x, y = _x(seed=36), _labels(seed=37)
        p = torch.sigmoid(x)
        one_minus_pt = p * (1 - y) + (1 - p) * y
        bce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
        paper = (0.25 * y + 0.75 * (1 - y)) * one_minus_pt ** 2 * bce + one_minus_pt ** 3
        got = losslab.poly_sigmoid_focal_loss(x, y, epsilon=1.0, gamma=2.0, alpha=0.25, reduction="none")
        torch.testing.assert_close(got, paper, rtol=1e-10, atol=1e-12)

    def test_weight_scales_both_terms_and_the_mean_divides_by_the_target_weights(self):
        x, t = _x(seed=38), torch.randint(0, 5, (6,), generator=_gen(39))
        w = torch.tensor([0.5, 1.0, 2.0, 0.1, 3.0], dtype=F64)
        per = losslab.poly_cross_entropy(x, t, epsilon=2.0, reduction="none")
        weighted = losslab.poly_cross_entropy(x, t, epsilon=2.0, weight=w, reduction="none")
        torch.testing.assert_close(weighted, per * w[t])
        torch.testing.assert_close(losslab.poly_cross_entropy(x, t, epsilon=2.0, weight=w),
                                   (per * w[t]).sum() / w[t].sum())


# ----------------------------------------------------------------------------
# properties (Hypothesis)

_logit = st.floats(-30.0, 30.0, allow_nan=False)
_gamma = st.floats(0.0, 5.0)


@settings(max_examples=60, deadline=None)
@given(x=st.lists(_logit, min_size=4, max_size=4), y=st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4),
       gamma_pos=_gamma, gamma_neg=_gamma, clip=st.floats(0.0, 1.0))
def test_asymmetric_loss_is_non_negative_with_finite_gradients(x, y, gamma_pos, gamma_neg, clip):
    x = torch.tensor([x], dtype=F64, requires_grad=True)
    loss = losslab.asymmetric_loss(x, torch.tensor([y], dtype=F64), gamma_pos=gamma_pos, gamma_neg=gamma_neg,
                                   clip=clip, reduction="none")
    loss.sum().backward()
    assert (loss >= 0).all() and torch.isfinite(loss).all() and torch.isfinite(x.grad).all()


@settings(max_examples=60, deadline=None)
@given(x=st.lists(_logit, min_size=3, max_size=3), target=st.integers(0, 2), gamma=_gamma,
       epsilon=st.floats(-1.0, 10.0), smoothing=st.floats(0.0, 1.0))
def test_poly_losses_are_non_negative_for_epsilon_at_least_minus_one(x, target, gamma, epsilon, smoothing):
    """-log p >= 1 - p, so epsilon >= -1 keeps every class's term (and the focal forms') non-negative."""
    x = torch.tensor([x], dtype=F64, requires_grad=True)
    t = torch.tensor([target])
    ce = losslab.poly_cross_entropy(x, t, epsilon=epsilon, label_smoothing=smoothing)
    fl = losslab.poly_softmax_focal_loss(x, t, epsilon=epsilon, gamma=gamma, label_smoothing=smoothing)
    sig = losslab.poly_sigmoid_focal_loss(x, F.one_hot(t, 3).to(F64), epsilon=epsilon, gamma=gamma)
    (ce + fl + sig).backward()
    assert min(ce.item(), fl.item(), sig.item()) >= -1e-12
    assert torch.isfinite(x.grad).all()


def _saturating(dtype: torch.dtype) -> torch.Tensor:
    big = 5e3 if dtype == torch.float16 else 1e4
    return torch.tensor([[big, -big, 0.0], [-big, big, 30.0]], dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("gamma", [0.0, 0.25, 0.5, 2.0])
def test_saturated_logits_and_gamma_below_one_give_finite_gradients(dtype, gamma):
    y = torch.tensor([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    t = torch.tensor([1, 0])
    calls = [
        lambda x: losslab.asymmetric_loss(x, y, gamma_pos=gamma, gamma_neg=gamma, clip=0.05),
        lambda x: losslab.asymmetric_loss(x, y, gamma_pos=gamma, gamma_neg=gamma, clip=0.0),
        lambda x: losslab.poly_cross_entropy(x, t, epsilon=2.0, label_smoothing=0.1),
        lambda x: losslab.poly_softmax_focal_loss(x, t, gamma=gamma, label_smoothing=0.1),
        lambda x: losslab.poly_sigmoid_focal_loss(x, y, gamma=gamma, alpha=0.25),
        lambda x: losslab.get_loss("timm.AsymmetricLossMultiLabel", gamma_pos=gamma, gamma_neg=gamma)(x, y),
        lambda x: losslab.get_loss("mmpretrain.AsymmetricLoss", gamma_pos=gamma, gamma_neg=gamma)(x, y),
    ]
    for call in calls:
        x = _saturating(dtype).requires_grad_(True)
        out = call(x)
        out.backward()
        assert out.dtype == dtype and torch.isfinite(out.float()).all()
        assert x.grad.dtype == dtype and torch.isfinite(x.grad.float()).all()


# ----------------------------------------------------------------------------
# torch.compile


def _family(x, y, t):
    return (losslab.asymmetric_loss(x, y, gamma_pos=1.0, clip=0.05, ignore_index=-1)
            + losslab.poly_cross_entropy(x, t, epsilon=2.0, weight=torch.arange(1.0, 6.0), label_smoothing=0.1)
            + losslab.poly_softmax_focal_loss(x, t, epsilon=1.0, gamma=0.5)
            + losslab.poly_sigmoid_focal_loss(x, y.clamp(min=0), epsilon=-1.0, alpha=0.25))


def test_compiled_fullgraph_equals_eager():
    torch._dynamo.reset()
    x = torch.randn(6, 5, generator=_gen(40)) * 4
    x[0, 0] = 1e4
    y = (torch.rand(6, 5, generator=_gen(41)) < 0.4).float()
    y[1, 2] = -1
    t = torch.randint(0, 5, (6,), generator=_gen(42))
    eager = _value_and_grad(_family, x, y, t)
    compiled = _value_and_grad(torch.compile(_family, fullgraph=True), x, y, t)
    torch.testing.assert_close(compiled[0], eager[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(compiled[1], eager[1], rtol=1e-5, atol=1e-6)
    torch._dynamo.reset()
