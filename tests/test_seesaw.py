"""The long-tail losses with running statistics: seesaw_loss / SeesawLoss and eqlv2_loss / EQLv2Loss.

The peers' formulas are transcribed here in float64 torch (mmpretrain's seesaw_ce_loss and SeesawLoss.forward,
mmdetection's EQLV2Loss.forward, get_weight and collect_grad) and compared with losslab's values, gradients and
buffers over several steps.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import losslab

F64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------
# peers, transcribed


def mmpretrain_seesaw(cls_score, labels, cum_samples, p=0.8, q=2.0, eps=1e-2):
    """mmpretrain's seesaw_ce_loss, per sample (reduction "none")."""
    num_classes = cls_score.shape[1]
    onehot = F.one_hot(labels, num_classes)
    weights = cls_score.new_ones(onehot.size())
    if p > 0:
        ratio = cum_samples[None, :].clamp(min=1) / cum_samples[:, None].clamp(min=1)
        index = (ratio < 1.0).to(cls_score.dtype)
        weights = weights * (ratio.pow(p) * index + (1 - index))[labels]
    if q > 0:
        scores = F.softmax(cls_score.detach(), dim=1)
        self_scores = scores[torch.arange(len(scores)), labels]
        ratio = scores / self_scores[:, None].clamp(min=eps)
        index = (ratio > 1.0).to(cls_score.dtype)
        weights = weights * (ratio.pow(q) * index + (1 - index))
    return F.cross_entropy(cls_score + weights.log() * (1 - onehot), labels, reduction="none")


class MmdetEQLv2:
    """mmdetection's EQLV2Loss: forward, get_weight and collect_grad (use_distributed=False)."""

    def __init__(self, num_classes, gamma=12.0, mu=0.8, alpha=4.0):
        self.gamma, self.mu, self.alpha = gamma, mu, alpha
        self.pos_grad = torch.zeros(num_classes, dtype=F64)
        self.neg_grad = torch.zeros(num_classes, dtype=F64)
        self.pos_neg = torch.ones(num_classes, dtype=F64) * 100

    def __call__(self, cls_score, label):
        n_i, n_c = cls_score.size()
        target = cls_score.new_zeros(n_i, n_c)
        target[torch.arange(n_i), label] = 1
        neg_w = torch.cat([1 / (1 + torch.exp(-self.gamma * (self.pos_neg - self.mu))), cls_score.new_ones(1)])
        pos_w = 1 + self.alpha * (1 - neg_w)
        weight = pos_w.view(1, -1).expand(n_i, n_c) * target + neg_w.view(1, -1).expand(n_i, n_c) * (1 - target)
        loss = torch.sum(F.binary_cross_entropy_with_logits(cls_score, target, reduction="none") * weight) / n_i
        prob = torch.sigmoid(cls_score.detach())
        grad = torch.abs(target * (prob - 1) + (1 - target) * prob)
        self.pos_grad += torch.sum(grad * target * weight.detach(), dim=0)[:-1]
        self.neg_grad += torch.sum(grad * (1 - target) * weight.detach(), dim=0)[:-1]
        self.pos_neg = self.pos_grad / (self.neg_grad + 1e-10)
        return loss


def _grad(f, x):
    x = x.detach().clone().requires_grad_(True)
    out = f(x)
    out.sum().backward()
    return out.detach(), x.grad


# ----------------------------------------------------------------------------
# Seesaw


class TestSeesaw:
    @pytest.mark.parametrize("p", [0.0, 0.8])
    def test_equal_counts_and_q_zero_is_cross_entropy(self, p):
        g = _gen(0)
        x = torch.randn(6, 4, 3, generator=g, dtype=F64) * 3
        t = torch.randint(0, 4, (6, 3), generator=g)
        t[0, 0] = -100
        weight = torch.tensor([0.5, 2.0, 1.0, 3.0], dtype=F64)
        for reduction in ("none", "mean", "sum"):
            a = _grad(lambda z: losslab.seesaw_loss(z, t, class_counts=[7, 7, 7, 7], p=0.8, q=0.0, weight=weight,
                                                   reduction=reduction), x)  # noqa: B023
            b = _grad(lambda z: losslab.cross_entropy(z, t, weight=weight, reduction=reduction), x)  # noqa: B023
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
        # without mitigation the counts do not matter
        a = _grad(lambda z: losslab.seesaw_loss(z, t, class_counts=[1, 50, 0, 9], p=0.0, q=0.0), x)
        torch.testing.assert_close(a, _grad(lambda z: losslab.cross_entropy(z, t), x), rtol=1e-12, atol=1e-14)

    @pytest.mark.parametrize(("p", "q", "eps"), [(0.8, 2.0, 1e-2), (1.5, 0.5, 0.3), (0.0, 3.0, 1e-2), (0.8, 0.0, 1)])
    def test_matches_mmpretrain(self, p, q, eps):
        g = _gen(1)
        x = torch.randn(40, 6, generator=g, dtype=F64) * 4  # many true-class probabilities below eps
        t = torch.randint(0, 6, (40,), generator=g)
        counts = torch.tensor([0.0, 3.0, 50.0, 7.0, 1000.0, 1.0], dtype=F64)  # a zero count counts as 1
        want = _grad(lambda z: mmpretrain_seesaw(z, t, counts, p, q, eps), x)
        got = _grad(lambda z: losslab.seesaw_loss(z, t, class_counts=counts, p=p, q=q, eps=eps, reduction="none"), x)
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
        want_mean = mmpretrain_seesaw(x, t, counts, p, q, eps).mean()
        torch.testing.assert_close(losslab.seesaw_loss(x, t, class_counts=counts, p=p, q=q, eps=eps), want_mean)

    def test_module_adds_the_batch_before_computing_as_mmpretrain(self):
        module = losslab.SeesawLoss(5)
        cum = torch.zeros(5, dtype=F64)
        for step in range(4):
            g = _gen(10 + step)
            x = torch.randn(12, 5, generator=g, dtype=F64) * 2
            t = torch.randint(0, 3 if step < 2 else 5, (12,), generator=g)  # classes 3 and 4 appear late
            cum += torch.bincount(t, minlength=5)
            want = _grad(lambda z: mmpretrain_seesaw(z, t, cum).mean(), x)  # noqa: B023
            got = _grad(lambda z: module(z, t), x)  # noqa: B023
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
            assert module.class_counts.tolist() == cum.long().tolist()

    def test_module_equals_the_functional_with_the_updated_counts(self):
        module = losslab.SeesawLoss(4, p=1.0, q=1.0, ignore_index=-1, weight=[1.0, 2.0, 1.0, 0.5])
        module.class_counts += torch.tensor([3, 0, 9, 1])
        x = torch.randn(8, 4, generator=_gen(2), dtype=F64)
        t = torch.tensor([0, 1, -1, 3, 3, 2, -1, 1])
        counts = torch.tensor([4, 2, 10, 3])
        a = _grad(lambda z: module(z, t), x)
        b = _grad(lambda z: losslab.seesaw_loss(z, t, class_counts=counts, p=1.0, q=1.0, ignore_index=-1,
                                                weight=[1.0, 2.0, 1.0, 0.5]), x)
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        assert module.class_counts.tolist() == counts.tolist()

    def test_eval_mode_freezes_the_counts_and_state_dict_round_trips(self):
        module = losslab.SeesawLoss(3)
        module(torch.randn(5, 3), torch.tensor([0, 0, 1, 2, 2]))
        module.eval()
        module(torch.randn(5, 3), torch.tensor([0, 0, 0, 0, 0]))
        assert module.class_counts.tolist() == [2, 1, 2]
        fresh = losslab.SeesawLoss(3)
        fresh.load_state_dict(module.state_dict())
        assert fresh.class_counts.tolist() == [2, 1, 2]
        assert list(module.state_dict()) == ["class_counts"]
        assert module.half().class_counts.dtype == torch.int64  # .half() leaves the counts alone

    def test_module_checks(self):
        with pytest.raises(ValueError, match=r"^SeesawLoss: input must have num_classes=3 classes along dim 1"):
            losslab.SeesawLoss(3)(torch.randn(2, 4), torch.tensor([0, 1]))
        with pytest.raises(ValueError, match=r"^SeesawLoss: num_classes must be a positive int; got 0"):
            losslab.SeesawLoss(0)
        module = losslab.SeesawLoss(3)
        with pytest.raises(ValueError, match=r"target class indices must be in \[0, 3\)"):
            module(torch.randn(2, 3), torch.tensor([0, 5]))
        assert module.class_counts.tolist() == [0, 0, 0]  # a bad batch is not counted
        for bad, message in [({"p": -1.0}, "p must be"), ({"q": "2"}, "q must be"), ({"eps": 0.0}, "eps must be"),
                             ({"reduction": "avg"}, "reduction must be"), ({"weight": [1.0, -1.0, 1.0]}, "weight")]:
            with pytest.raises((TypeError, ValueError), match=rf"^seesaw_loss: {message}") as raised:
                losslab.SeesawLoss(3, **bad)
            with pytest.raises(raised.type, match=rf"^seesaw_loss: {message}"):
                losslab.seesaw_loss(torch.randn(2, 3), torch.tensor([0, 1]), class_counts=[1, 1, 1], **bad)
        with pytest.raises(TypeError):
            losslab.SeesawLoss(3, not_an_arg=1)

    def test_names(self):
        assert isinstance(losslab.get_loss("Seesaw Loss", num_classes=4), losslab.SeesawLoss)
        assert losslab.get_loss("mmpretrain.SeesawLoss").num_classes == 1000
        assert losslab.get_loss("mmcls.SeesawLoss").num_classes == 1000
        with pytest.raises(ValueError, match=r"num_classes \+ 2 logits.*closest losslab loss is seesaw_loss"):
            losslab.get_loss("mmdet.SeesawLoss")

    @settings(max_examples=40, deadline=None)
    @given(st.integers(0, 2**31 - 1), st.floats(0.0, 3.0), st.floats(0.0, 3.0), st.floats(1e-4, 1.0))
    def test_loss_is_non_negative(self, seed, p, q, eps):
        g = _gen(seed)
        x = torch.randn(7, 5, generator=g, dtype=F64) * 5
        t = torch.randint(0, 5, (7,), generator=g)
        counts = torch.randint(0, 100, (5,), generator=g)
        loss = losslab.seesaw_loss(x, t, class_counts=counts, p=p, q=q, eps=eps, reduction="none")
        assert (loss >= 0).all()

    @settings(max_examples=25, deadline=None)
    @given(st.integers(0, 2**31 - 1), st.sampled_from([torch.float16, torch.bfloat16, torch.float32]))
    def test_finite_gradients_at_saturated_logits(self, seed, dtype):
        g = _gen(seed)
        big = 5e3 if dtype == torch.float16 else 1e4
        x = (torch.randint(0, 3, (6, 4), generator=g).to(F64) - 1) * big
        t = torch.randint(0, 4, (6,), generator=g)
        z = x.to(dtype).requires_grad_(True)
        loss = losslab.seesaw_loss(z, t, class_counts=torch.randint(0, 9, (4,), generator=g))
        loss.backward()
        assert loss.dtype == dtype and torch.isfinite(loss.float()) and torch.isfinite(z.grad.float()).all()


# ----------------------------------------------------------------------------
# EQLv2


class TestEQLv2:
    def test_module_matches_mmdetection_over_steps(self):
        peer, module = MmdetEQLv2(4), losslab.EQLv2Loss(4)
        for step in range(5):
            g = _gen(20 + step)
            x = torch.randn(16, 5, generator=g, dtype=F64) * 2
            t = torch.randint(0, 5, (16,), generator=g)
            t[:3] = 4  # background rows
            want = _grad(lambda z: peer(z, t), x)  # noqa: B023
            got = _grad(lambda z: module(z, t), x)  # noqa: B023
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
            for name in ("pos_grad", "neg_grad", "pos_neg"):
                torch.testing.assert_close(getattr(module, name), getattr(peer, name), rtol=1e-10, atol=1e-12)

    def test_functional_matches_mmdetection_given_the_ratios(self):
        g = _gen(3)
        x = torch.randn(9, 4, generator=g, dtype=F64) * 3
        t = torch.randint(0, 4, (9,), generator=g)
        peer = MmdetEQLv2(3, gamma=6.0, mu=0.5, alpha=2.0)
        peer.pos_neg = torch.tensor([0.0, 0.6, 3.0], dtype=F64)
        got = _grad(lambda z: losslab.eqlv2_loss(z, t, pos_neg=[0.0, 0.6, 3.0], gamma=6.0, mu=0.5, alpha=2.0), x)
        torch.testing.assert_close(got, _grad(lambda z: peer(z, t), x), rtol=1e-10, atol=1e-12)

    def test_without_statistics_it_is_bce_summed_over_classes_per_sample(self):
        x = torch.randn(6, 4, generator=_gen(4), dtype=F64)
        t = torch.tensor([0, 3, 1, 2, 3, 3])
        onehot = F.one_hot(t, 4).to(F64)
        a = _grad(lambda z: losslab.eqlv2_loss(z, t, pos_neg=torch.full((3,), 100.0)), x)
        b = _grad(lambda z: F.binary_cross_entropy_with_logits(z, onehot, reduction="sum") / 6, x)
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
        # gamma = 0: w- = 1/2 on the classes (alpha = 0: w+ = 1), 1 on the background column
        w = torch.where(onehot > 0, 1.0, 0.5)
        w[:, 3] = 1.0
        b = _grad(lambda z: (F.binary_cross_entropy_with_logits(z, onehot, reduction="none") * w).sum() / 6, x)
        a = _grad(lambda z: losslab.eqlv2_loss(z, t, pos_neg=[0.0, 1.0, 5.0], gamma=0.0, alpha=0.0), x)
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)

    def test_eval_mode_empty_batch_and_state_dict(self):
        module = losslab.EQLv2Loss(2)
        empty = module(torch.zeros(0, 3, requires_grad=True), torch.zeros(0, dtype=torch.long))
        assert empty.item() == 0.0
        assert module.pos_neg.tolist() == [100.0, 100.0]  # mmdetection's would drop to 0 (and its loss be NaN)
        module(torch.randn(4, 3), torch.tensor([0, 2, 2, 2]))
        ratio = module.pos_neg.clone()
        assert ratio[0] > 0 and ratio[1] == 0  # class 1 has negatives only
        module.eval()
        module(torch.randn(4, 3), torch.tensor([1, 1, 1, 1]))
        assert torch.equal(module.pos_neg, ratio)
        fresh = losslab.EQLv2Loss(2)
        fresh.load_state_dict(module.state_dict())
        assert sorted(module.state_dict()) == ["neg_grad", "pos_grad", "pos_neg"]
        assert torch.equal(fresh.pos_neg, ratio) and torch.equal(fresh.pos_grad, module.pos_grad)
        assert module.half().pos_grad.dtype == F64

    def test_module_checks(self):
        with pytest.raises(ValueError, match=r"^EQLv2Loss: input must have num_classes \+ 1 = 3 columns"):
            losslab.EQLv2Loss(2)(torch.randn(2, 4), torch.tensor([0, 1]))
        with pytest.raises(ValueError, match=r"^EQLv2Loss: num_classes must be a positive int"):
            losslab.EQLv2Loss(True)
        for bad, message in [({"gamma": -1.0}, "gamma must be"), ({"mu": "x"}, "mu must be"),
                             ({"alpha": -1.0}, "alpha must be"), ({"dist_sync": 1}, "dist_sync must be")]:
            with pytest.raises((TypeError, ValueError), match=rf"^eqlv2_loss: {message}") as raised:
                losslab.EQLv2Loss(2, **bad)
            with pytest.raises(raised.type, match=rf"^eqlv2_loss: {message}"):
                losslab.eqlv2_loss(torch.randn(2, 3), torch.tensor([0, 1]), pos_neg=[1.0, 1.0], **bad)

    def test_names(self):
        assert losslab.get_loss("mmdet.EQLV2Loss").num_classes == 1203
        for name in ("EQLv2", "Equalization Loss v2", "eqlv2_loss"):
            assert isinstance(losslab.get_loss(name, num_classes=3), losslab.EQLv2Loss)

    @settings(max_examples=40, deadline=None)
    @given(st.integers(0, 2**31 - 1), st.floats(0.0, 20.0), st.floats(-1.0, 2.0), st.floats(0.0, 8.0))
    def test_loss_is_non_negative(self, seed, gamma, mu, alpha):
        g = _gen(seed)
        x = torch.randn(7, 4, generator=g, dtype=F64) * 5
        t = torch.randint(0, 4, (7,), generator=g)
        ratio = torch.rand(3, generator=g, dtype=F64) * 2
        loss = losslab.eqlv2_loss(x, t, pos_neg=ratio, gamma=gamma, mu=mu, alpha=alpha, reduction="none")
        assert (loss >= 0).all()

    @settings(max_examples=25, deadline=None)
    @given(st.integers(0, 2**31 - 1), st.sampled_from([torch.float16, torch.bfloat16, torch.float32]))
    def test_finite_gradients_at_saturated_logits(self, seed, dtype):
        g = _gen(seed)
        big = 5e3 if dtype == torch.float16 else 1e4
        x = (torch.randint(0, 2, (6, 4), generator=g).to(F64) * 2 - 1) * big
        t = torch.randint(0, 4, (6,), generator=g)
        z = x.to(dtype).requires_grad_(True)
        module = losslab.EQLv2Loss(3)
        loss = module(z, t)
        loss.backward()
        assert loss.dtype == dtype and torch.isfinite(loss.float()) and torch.isfinite(z.grad.float()).all()
        assert torch.isfinite(module.pos_neg).all()
