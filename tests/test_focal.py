"""Focal losses: sigmoid_focal_loss and softmax_focal_loss.

Compared with torchvision's formula (written out below in torch), with the
cross-entropy family they reduce to at gamma = 0 (values and gradients), with
Keras' published example, and with the NumPy references; gradients are checked
for finiteness at saturated logits for every gamma, in every dtype.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import losslab

from .helpers import (
    TOLERANCES,
    assert_close_np,
    assert_same,
    class_indices,
    gen,
    logits,
    soft_targets,
    value_and_grad,
)
from .reference import REFERENCES

F64 = torch.float64
REDUCTIONS = ("none", "mean", "sum")
GAMMAS = (0.0, 0.25, 0.5, 0.99, 1.0, 2.0, 5.0)


# ----------------------------------------------------------------------------
# helpers


def assert_equal(a, b) -> None:
    """Bitwise equal values and gradients."""
    assert torch.equal(a[0], b[0]), (a[0], b[0])
    assert torch.equal(a[1], b[1]), (a[1], b[1])


def check_reference(name: str, x: torch.Tensor, t: torch.Tensor, dtype: torch.dtype, **kwargs) -> None:
    ref = REFERENCES[name]
    np_kwargs = {k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in kwargs.items()}
    for reduction in REDUCTIONS:
        got = getattr(losslab, name)(x.to(dtype), t, **kwargs, reduction=reduction)
        assert got.dtype == dtype
        expected = ref(x.to(dtype).double().numpy(), t.numpy(), **np_kwargs, reduction=reduction)
        assert got.shape == expected.shape
        assert_close_np(got, expected, dtype)


def one_hot_dense(t: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N, d...) indices in [0, C] -> (N, C, d...) float one-hot; index C (background) is all zeros."""
    return F.one_hot(t, num_classes + 1)[..., :num_classes].movedim(-1, 1).to(F64)


def torchvision_sigmoid_focal_loss(inputs, targets, alpha: float = 0.25, gamma: float = 2.0,
                                   reduction: str = "none"):
    """torchvision.ops.sigmoid_focal_loss, verbatim in substance (torchvision 0.2x)."""
    p = torch.sigmoid(inputs)
    ce_loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    if reduction == "mean":
        loss = loss.mean()
    elif reduction == "sum":
        loss = loss.sum()
    return loss


# ----------------------------------------------------------------------------


class TestSigmoidFocalLoss:
    @pytest.mark.parametrize("reduction", REDUCTIONS)
    @pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 3.5])
    @pytest.mark.parametrize("alpha", [0.25, 0.75, -1.0])
    @pytest.mark.parametrize("targets", ["hard", "soft"])
    def test_matches_torchvision(self, targets, alpha, gamma, reduction):
        x = logits(6, 5, seed=1, scale=4.0)  # moderate logits: the naive formula is accurate there
        t = torch.rand(6, 5, generator=gen(2), dtype=F64)
        if targets == "hard":
            t = (t < 0.4).to(F64)
        assert_same(value_and_grad(losslab.sigmoid_focal_loss, x, t, alpha=alpha, gamma=gamma, reduction=reduction),
                    value_and_grad(torchvision_sigmoid_focal_loss, x, t, alpha=alpha, gamma=gamma,
                                   reduction=reduction))

    def test_default_arguments_are_torchvisions_except_reduction(self):
        x, t = logits(4, 3, seed=3), (torch.rand(4, 3, generator=gen(4)) < 0.5).to(F64)
        assert_same(value_and_grad(losslab.sigmoid_focal_loss, x, t),
                    value_and_grad(torchvision_sigmoid_focal_loss, x, t, reduction="mean"))

    def test_negative_alpha_and_none_disable_alpha(self):
        x, t = logits(5, 4, seed=5), torch.rand(5, 4, generator=gen(6), dtype=F64)
        none = value_and_grad(losslab.sigmoid_focal_loss, x, t, alpha=None, reduction="none")
        assert_equal(value_and_grad(losslab.sigmoid_focal_loss, x, t, alpha=-1.0, reduction="none"), none)
        assert_equal(value_and_grad(losslab.sigmoid_focal_loss, x, t, alpha=-0.3, reduction="none"), none)
        # and alpha = 0.5 is exactly half of it
        torch.testing.assert_close(losslab.sigmoid_focal_loss(x, t, alpha=0.5, reduction="none"), none[0] / 2)

    @pytest.mark.parametrize("case", ["soft", "ignored", "index-ignored"])
    def test_gamma_zero_without_alpha_is_binary_cross_entropy(self, case):
        x = logits(4, 3, 5, seed=7)
        kwargs = {}
        if case == "soft":
            t = torch.rand(4, 3, 5, generator=gen(8), dtype=F64)
        elif case == "ignored":
            t = (torch.rand(4, 3, 5, generator=gen(8)) < 0.5).to(F64)
            t[0, 0, :2] = -1
            kwargs["ignore_index"] = -1
        else:
            t = class_indices((4, 5), 4, seed=8, ignore_index=-1, ignored=0.2)
            kwargs["ignore_index"] = -1
        for reduction in REDUCTIONS:
            ours = value_and_grad(losslab.sigmoid_focal_loss, x, t, alpha=None, gamma=0.0, reduction=reduction,
                                  **kwargs)
            assert_equal(ours, value_and_grad(losslab.binary_cross_entropy, x, t, reduction=reduction, **kwargs))
        if case == "soft":
            assert_same(ours, value_and_grad(F.binary_cross_entropy_with_logits, x, t, reduction="sum"))

    @pytest.mark.parametrize("gamma", [0.5, 2.0])
    @pytest.mark.parametrize("shape", [(7, 4), (2, 4, 3, 2)], ids=["NC", "NCHW"])
    def test_index_form_equals_dense_one_hot(self, shape, gamma):
        x = logits(*shape, seed=9)
        t = class_indices(shape[:1] + shape[2:], shape[1] + 1, seed=10)
        t.view(-1)[0] = shape[1]  # a background position
        dense = one_hot_dense(t, shape[1])
        for reduction in REDUCTIONS:
            assert_same(value_and_grad(losslab.sigmoid_focal_loss, x, t, gamma=gamma, reduction=reduction),
                        value_and_grad(losslab.sigmoid_focal_loss, x, dense, gamma=gamma, reduction=reduction))
            assert_same(value_and_grad(losslab.sigmoid_focal_loss, x, t, gamma=gamma, reduction=reduction),
                        value_and_grad(torchvision_sigmoid_focal_loss, x, dense, gamma=gamma, reduction=reduction))

    @pytest.mark.parametrize("reduction", ["mean", "sum"])
    def test_index_ignore_index_equals_dropping_positions(self, reduction):
        x = logits(6, 3, 2, seed=11)
        t = class_indices((6, 2), 4, seed=12, ignore_index=255, ignored=0.3)
        keep = t != 255
        out, grad = value_and_grad(losslab.sigmoid_focal_loss, x, t, ignore_index=255, reduction=reduction)
        dense = F.one_hot(t[keep], 4)[:, :3].to(F64)
        dropped, dgrad = value_and_grad(torchvision_sigmoid_focal_loss, x.movedim(1, -1)[keep], dense,
                                        reduction=reduction)
        torch.testing.assert_close(out, dropped)
        torch.testing.assert_close(grad.movedim(1, -1)[keep], dgrad)
        assert torch.all(grad.movedim(1, -1)[~keep] == 0)

    def test_probabilities_in_equal_logits_in(self):
        x, t = logits(5, 4, seed=13, scale=2.0), torch.rand(5, 4, generator=gen(14), dtype=F64)
        for gamma in (0.0, 0.5, 2.0):
            for reduction in REDUCTIONS:
                torch.testing.assert_close(
                    losslab.sigmoid_focal_loss(torch.sigmoid(x), t, gamma=gamma, reduction=reduction,
                                               from_logits=False),
                    losslab.sigmoid_focal_loss(x, t, gamma=gamma, reduction=reduction), **TOLERANCES[F64])

    # saturation ---------------------------------------------------------------

    @pytest.mark.parametrize("magnitude", [1e4, 50.0])
    @pytest.mark.parametrize("gamma", GAMMAS)
    @pytest.mark.parametrize("dtype", [torch.float32, F64])
    def test_finite_gradients_at_saturated_logits(self, dtype, gamma, magnitude):
        m = magnitude
        x = torch.tensor([m, -m, m, -m], dtype=dtype)
        t = torch.tensor([1.0, 0.0, 0.0, 1.0], dtype=dtype)  # matching (p_t = 1), then opposing
        alpha = 0.25
        out, grad = value_and_grad(losslab.sigmoid_focal_loss, x, t, alpha=alpha, gamma=gamma, reduction="none")
        assert out.dtype == dtype and grad.dtype == dtype
        assert torch.isfinite(out).all() and torch.isfinite(grad).all(), (out, grad)
        # matching targets: loss and gradient vanish
        assert torch.all(out[:2].abs() <= 1e-18) and torch.all(grad[:2].abs() <= 1e-18)
        # opposing targets: loss alpha_t |x|, gradient alpha_t (1 + gamma |x| (1 - p_t)) ~ alpha_t
        expected = torch.tensor([(1 - alpha) * m, alpha * m], dtype=F64)
        torch.testing.assert_close(out[2:].double(), expected, rtol=1e-6, atol=0)
        # the upstream weights of value_and_grad for elements 2 and 3
        upstream = torch.linspace(0.5, 1.5, 4, dtype=F64)[2:]
        torch.testing.assert_close(grad[2:].double(), upstream * torch.tensor([1 - alpha, -alpha], dtype=F64),
                                   rtol=1e-6, atol=0)

    @pytest.mark.parametrize("dtype", [torch.float32, F64])
    def test_relative_accuracy_of_tiny_losses(self, dtype):
        # 1 - p_t must come from sigmoid(-x), not 1 - sigmoid(x), or these losses round to 0
        x = torch.tensor([8.0, 15.0, 20.0, 30.0, -25.0], dtype=dtype)
        t = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0], dtype=dtype)
        out = losslab.sigmoid_focal_loss(x, t, alpha=0.25, gamma=2.0, reduction="none")
        expected = REFERENCES["sigmoid_focal_loss"](x.double().numpy(), t.double().numpy(), alpha=0.25, gamma=2.0,
                                                    reduction="none")
        assert np.all(expected > 0)
        assert_close_np(out, expected, dtype, atol=0.0)

    @pytest.mark.parametrize("gamma", GAMMAS)
    def test_finite_gradients_index_form_saturated(self, gamma):
        x = torch.tensor([[1e4, -1e4, -1e4], [-1e4, -1e4, -1e4], [-1e4, 1e4, 1e4]], dtype=torch.float32)
        t = torch.tensor([0, 3, 1])
        out, grad = value_and_grad(losslab.sigmoid_focal_loss, x, t, gamma=gamma, reduction="sum")
        assert torch.isfinite(out) and torch.isfinite(grad).all()
        torch.testing.assert_close(out, torch.tensor(0.75e4))  # only the last element is wrong

    @pytest.mark.parametrize("gamma", [0.25, 2.0])
    @pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
    def test_half_precision_saturated(self, dtype, gamma):
        x = torch.tensor([1e4, -1e4, 1e4, -1e4, 60.0, -60.0, 12.0, -12.0, 0.5], dtype=dtype)
        t = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0], dtype=dtype)
        for reduction in REDUCTIONS:
            out, grad = value_and_grad(losslab.sigmoid_focal_loss, x, t, gamma=gamma, reduction=reduction)
            assert out.dtype == dtype and grad.dtype == dtype
            assert torch.isfinite(out).all() and torch.isfinite(grad).all()
            # computed in float32 inside: the float32 result of the same (rounded) inputs, cast
            expected = losslab.sigmoid_focal_loss(x.float(), t.float(), gamma=gamma, reduction=reduction)
            torch.testing.assert_close(out.float(), expected, **TOLERANCES[dtype])

    # against the NumPy reference -------------------------------------------------

    @pytest.mark.parametrize("dtype", [torch.float32, F64])
    def test_reference_larger(self, dtype):
        x = logits(8, 6, 9, 5, seed=15)
        t = torch.rand(8, 6, 9, 5, generator=gen(16), dtype=F64)
        check_reference("sigmoid_focal_loss", x, t.to(dtype), dtype, alpha=0.4, gamma=1.7)
        ti = class_indices((8, 9, 5), 7, seed=17, ignore_index=-1, ignored=0.2)
        check_reference("sigmoid_focal_loss", x, ti, dtype, alpha=-1.0, gamma=0.3, ignore_index=-1)

    def test_reference_probabilities(self):
        p = torch.rand(10, 4, generator=gen(18), dtype=F64)
        p[0, 0], p[1, 1], p[2, 2] = 0.0, 1.0, 1.0
        t = (torch.rand(10, 4, generator=gen(19)) < 0.5).to(F64)
        check_reference("sigmoid_focal_loss", p, t, F64, gamma=0.5, from_logits=False)

    # invariants ---------------------------------------------------------------

    @given(x=st.lists(st.floats(-1e4, 1e4), min_size=1, max_size=12),
           t=st.lists(st.floats(0.0, 1.0), min_size=12, max_size=12),
           gamma=st.floats(0.0, 5.0), alpha=st.one_of(st.none(), st.floats(0.0, 1.0)))
    def test_nonnegative_below_bce_finite_gradients(self, x, t, gamma, alpha):
        xt = torch.tensor(x, dtype=F64)
        tt = torch.tensor(t[:len(x)], dtype=F64)
        out, grad = value_and_grad(losslab.sigmoid_focal_loss, xt, tt, alpha=alpha, gamma=gamma, reduction="none")
        bce = losslab.binary_cross_entropy(xt, tt, reduction="none")
        a_t = 1.0 if alpha is None else alpha * tt + (1 - alpha) * (1 - tt)
        assert torch.isfinite(out).all() and torch.isfinite(grad).all()
        assert torch.all(out >= 0)
        assert torch.all(out <= a_t * bce * (1 + 1e-12) + 1e-300)


# ----------------------------------------------------------------------------


class TestSoftmaxFocalLoss:
    @pytest.mark.parametrize("reduction", REDUCTIONS)
    @pytest.mark.parametrize("case", ["index-ignored", "index-4d", "probabilities", "smoothed-index",
                                      "smoothed-probabilities", "probabilities-in", "custom-ignore"])
    def test_gamma_zero_without_alpha_is_cross_entropy_exactly(self, case, reduction):
        x = logits(6, 5, seed=20)
        t = class_indices((6,), 5, seed=21, ignore_index=-100, ignored=0.3)
        kwargs = {}
        if case == "index-4d":
            x = logits(2, 5, 3, 4, seed=20)
            t = class_indices((2, 3, 4), 5, seed=21, ignore_index=-100, ignored=0.2)
        elif case == "probabilities":
            t = soft_targets(6, 5, seed=21)
        elif case == "smoothed-index":
            kwargs["label_smoothing"] = 0.2
        elif case == "smoothed-probabilities":
            t, kwargs["label_smoothing"] = soft_targets(6, 5, seed=21), 0.3
        elif case == "probabilities-in":
            x, kwargs["from_logits"] = torch.softmax(x, dim=1), False
        elif case == "custom-ignore":
            t = torch.where(t == -100, torch.full_like(t, 7), t)
            kwargs["ignore_index"] = 7
        focal = value_and_grad(losslab.softmax_focal_loss, x, t, gamma=0.0, alpha=None, reduction=reduction, **kwargs)
        ce = value_and_grad(losslab.cross_entropy, x, t, reduction=reduction, **kwargs)
        assert_equal(focal, ce)
        if kwargs.get("from_logits", True):  # and both equal torch's
            assert_same(focal, value_and_grad(F.cross_entropy, x, t, reduction=reduction, **kwargs))

    @pytest.mark.parametrize("case", ["index-ignored", "probabilities", "smoothed"])
    def test_gamma_zero_with_per_class_alpha_is_balanced_cross_entropy(self, case):
        x = logits(3, 4, 5, seed=22)
        alpha = [0.1, 0.6, 0.2, 0.1]
        t = class_indices((3, 5), 4, seed=23, ignore_index=-100, ignored=0.2)
        kwargs = {"label_smoothing": 0.1} if case == "smoothed" else {}
        if case == "probabilities":
            t = soft_targets(3, 4, 5, seed=23)
        for reduction in REDUCTIONS:
            assert_same(value_and_grad(losslab.softmax_focal_loss, x, t, gamma=0.0, alpha=alpha, reduction=reduction,
                                       **kwargs),
                        value_and_grad(losslab.balanced_cross_entropy, x, t, alpha=alpha, reduction=reduction,
                                       **kwargs))

    @pytest.mark.parametrize("gamma", [0.0, 2.0])
    @pytest.mark.parametrize("a", [0.0, 0.25, 1.0])
    def test_scalar_alpha_scales_every_class(self, a, gamma):
        x = logits(7, 4, seed=24)
        for t, kwargs in ((class_indices((7,), 4, seed=25, ignore_index=-100, ignored=0.3), {}),
                          (soft_targets(7, 4, seed=25), {"label_smoothing": 0.1})):
            for reduction in REDUCTIONS:
                scaled = value_and_grad(losslab.softmax_focal_loss, x, t, alpha=a, gamma=gamma, reduction=reduction,
                                        **kwargs)
                plain = value_and_grad(losslab.softmax_focal_loss, x, t, alpha=None, gamma=gamma,
                                       reduction=reduction, **kwargs)
                assert_same(scaled, (a * plain[0], a * plain[1]))
                # a scalar is the same as a constant per-class vector
                assert_same(scaled, value_and_grad(losslab.softmax_focal_loss, x, t, alpha=[a] * 4, gamma=gamma,
                                                   reduction=reduction, **kwargs))

    def test_monai_convention_via_per_class_alpha(self):
        a, gamma = 0.25, 2.0
        x = logits(9, 4, seed=26)
        t = class_indices((9,), 4, seed=27, ignore_index=-100, ignored=0.2)
        t[1] = 0
        monai = value_and_grad(losslab.softmax_focal_loss, x, t, alpha=[1 - a] + [a] * 3, gamma=gamma,
                               reduction="none")
        factor = torch.where(t == 0, 1 - a, a).to(F64)
        manual = value_and_grad(lambda z: factor * losslab.softmax_focal_loss(z, t, gamma=gamma, reduction="none"), x)
        assert_same(monai, manual)
        # and it is not what a scalar alpha means
        assert not torch.allclose(monai[0], losslab.softmax_focal_loss(x, t, alpha=a, gamma=gamma, reduction="none"))

    @pytest.mark.parametrize("gamma", [0.5, 2.0, 4.5])
    def test_formula_for_class_indices(self, gamma):
        # -alpha_t (1 - p_t)^gamma log p_t, written naively (accurate at these moderate logits)
        x = logits(8, 5, 2, seed=28)
        t = class_indices((8, 2), 5, seed=29)
        alpha = torch.tensor([0.3, 1.0, 0.7, 2.0, 0.1], dtype=F64)

        def naive(z):
            log_pt = torch.log_softmax(z, 1).gather(1, t.unsqueeze(1)).squeeze(1)
            return -alpha[t] * (1 - log_pt.exp()) ** gamma * log_pt

        assert_same(value_and_grad(losslab.softmax_focal_loss, x, t, alpha=alpha, gamma=gamma, reduction="none"),
                    value_and_grad(naive, x))

    def test_keras_categorical_focal_crossentropy_example(self):
        # keras.losses.CategoricalFocalCrossentropy docstring, reduction=None
        y_true = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=F64)
        y_pred = torch.tensor([[0.05, 0.9, 0.05], [0.1, 0.85, 0.05]], dtype=F64)
        out = losslab.softmax_focal_loss(y_pred, y_true, from_logits=False, alpha=0.25, gamma=2.0, reduction="none")
        np.testing.assert_allclose(out.numpy(), [2.63401289e-04, 6.75912094e-01], rtol=1e-5)
        # and through the Keras alias, with its defaults (probabilities in, alpha=0.25)
        module = losslab.get_loss("CategoricalFocalCrossentropy", reduction="none")
        np.testing.assert_allclose(module(y_pred, y_true).numpy(), [2.63401289e-04, 6.75912094e-01], rtol=1e-5)
        # class indices give the same
        np.testing.assert_allclose(
            losslab.softmax_focal_loss(y_pred, torch.tensor([1, 2]), from_logits=False, alpha=0.25,
                                       reduction="none").numpy(),
            [2.63401289e-04, 6.75912094e-01], rtol=1e-5)

    @pytest.mark.parametrize("gamma", [0.5, 2.0, 5.0])
    def test_focal_at_most_cross_entropy(self, gamma):
        x = logits(20, 6, seed=30, scale=6.0)
        for t, kwargs in ((class_indices((20,), 6, seed=31), {}), (soft_targets(20, 6, seed=31), {}),
                          (class_indices((20,), 6, seed=31), {"label_smoothing": 0.2})):
            focal = losslab.softmax_focal_loss(x, t, gamma=gamma, reduction="none", **kwargs)
            ce = losslab.cross_entropy(x, t, reduction="none", **kwargs)
            assert torch.all(focal <= ce) and torch.all(focal >= 0)
            assert torch.all(focal < ce)  # strictly smaller away from p = 0 (no saturation at this scale)

    # saturation ---------------------------------------------------------------

    @pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
    @pytest.mark.parametrize("gamma", GAMMAS)
    @pytest.mark.parametrize("dtype", [torch.float32, F64])
    def test_finite_gradients_at_saturated_logits(self, dtype, gamma, label_smoothing):
        x = torch.tensor([[1e4, -1e4, 0.0], [1e4, -1e4, 0.0], [50.0, -50.0, 0.0], [50.0, -50.0, 0.0]], dtype=dtype)
        t = torch.tensor([0, 1, 0, 1])  # matching (p_t = 1), opposing
        out, grad = value_and_grad(losslab.softmax_focal_loss, x, t, gamma=gamma, reduction="none",
                                   label_smoothing=label_smoothing)
        assert out.dtype == dtype and grad.dtype == dtype
        assert torch.isfinite(out).all() and torch.isfinite(grad).all(), (out, grad)
        if label_smoothing == 0.0:
            assert out[0].item() == 0.0 and torch.all(grad[0] == 0)
            assert abs(out[2].item()) <= 1e-18
            torch.testing.assert_close(out[1].double(), torch.tensor(2e4, dtype=F64), rtol=1e-6, atol=0)
            torch.testing.assert_close(out[3].double(), torch.tensor(100.0, dtype=F64), rtol=1e-6, atol=0)
        check = losslab.cross_entropy(x, t, reduction="none", label_smoothing=label_smoothing)
        assert torch.all(out <= check * (1 + 1e-6))

    @pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
    def test_half_precision_saturated(self, dtype):
        x = torch.tensor([[1e4, -1e4, 0.0], [1e4, -1e4, 0.0], [12.0, -12.0, 3.0]], dtype=dtype)
        t = torch.tensor([0, 1, 2])
        for gamma in (0.25, 2.0):
            out, grad = value_and_grad(losslab.softmax_focal_loss, x, t, gamma=gamma, reduction="none")
            assert out.dtype == dtype and grad.dtype == dtype
            assert torch.isfinite(out).all() and torch.isfinite(grad).all()
            expected = losslab.softmax_focal_loss(x.float(), t, gamma=gamma, reduction="none")
            torch.testing.assert_close(out.float(), expected, **TOLERANCES[dtype])

    def test_probabilities_in_exact_zero_and_one(self):
        p = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.2, 0.3, 0.5]], dtype=F64)
        t = torch.tensor([0, 1, 2])
        for gamma in (0.25, 2.0):
            out, grad = value_and_grad(losslab.softmax_focal_loss, p, t, gamma=gamma, reduction="none",
                                       from_logits=False)
            assert torch.isfinite(out).all() and torch.isfinite(grad).all()
            torch.testing.assert_close(out, torch.tensor([0.0, 100.0, -0.5 ** gamma * np.log(0.5)], dtype=F64))

    def test_all_ignored_and_empty(self):
        x = logits(4, 3, seed=32)
        out, grad = value_and_grad(losslab.softmax_focal_loss, x, torch.full((4,), -100), alpha=[0.2, 0.3, 0.5])
        assert out.item() == 0.0 and torch.all(grad == 0)
        empty = torch.zeros(0, 3, dtype=F64, requires_grad=True)
        out = losslab.softmax_focal_loss(empty, torch.zeros(0, dtype=torch.long))
        assert out.item() == 0.0 and out.requires_grad

    # against the NumPy reference -------------------------------------------------

    @pytest.mark.parametrize("dtype", [torch.float32, F64])
    def test_reference_larger(self, dtype):
        x = logits(12, 6, 5, 4, seed=33)
        t = class_indices((12, 5, 4), 6, seed=34, ignore_index=-100, ignored=0.15)
        check_reference("softmax_focal_loss", x, t, dtype, alpha=torch.linspace(0.1, 1.0, 6, dtype=dtype), gamma=1.3,
                        label_smoothing=0.1)
        q = soft_targets(12, 6, 5, 4, seed=35)
        check_reference("softmax_focal_loss", x, q.to(dtype), dtype, alpha=0.6, gamma=2.5)

    def test_reference_probabilities_in(self):
        p = torch.softmax(logits(10, 5, seed=36), dim=1)
        p[0] = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0], dtype=F64)
        t = class_indices((10,), 5, seed=37)
        check_reference("softmax_focal_loss", p, t, F64, gamma=0.7, from_logits=False, label_smoothing=0.05)

    # invariants ---------------------------------------------------------------

    @given(data=st.data(), n=st.integers(1, 6), c=st.integers(1, 5), gamma=st.floats(0.0, 5.0),
           label_smoothing=st.sampled_from([0.0, 0.1]))
    def test_nonnegative_below_cross_entropy_finite_gradients(self, data, n, c, gamma, label_smoothing):
        x = torch.tensor(data.draw(st.lists(st.floats(-1e4, 1e4), min_size=n * c, max_size=n * c)),
                         dtype=F64).view(n, c)
        t = torch.tensor(data.draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
        out, grad = value_and_grad(losslab.softmax_focal_loss, x, t, gamma=gamma, reduction="none",
                                   label_smoothing=label_smoothing)
        ce = losslab.cross_entropy(x, t, reduction="none", label_smoothing=label_smoothing)
        assert torch.isfinite(out).all() and torch.isfinite(grad).all()
        assert torch.all(out >= 0)
        assert torch.all(out <= ce * (1 + 1e-12) + 1e-300)
