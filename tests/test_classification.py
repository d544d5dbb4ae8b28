"""The cross-entropy family: cross_entropy, nll_loss, binary_cross_entropy, balanced_cross_entropy.

Each loss is compared with PyTorch (values and input gradients) where PyTorch
has the same loss, with the NumPy references of tests/reference.py, and with
the equivalences its docstring promises.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

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


# ----------------------------------------------------------------------------
# helpers


def as_numpy_kwargs(kwargs: dict) -> dict:
    return {k: (v.detach().numpy() if isinstance(v, torch.Tensor) else v) for k, v in kwargs.items()}


def check_reference(name: str, x: torch.Tensor, t: torch.Tensor, dtype: torch.dtype, **kwargs) -> None:
    """losslab.<name> in ``dtype`` against the float64 NumPy reference, every reduction."""
    ref = REFERENCES[name]
    for reduction in REDUCTIONS:
        got = getattr(losslab, name)(x.to(dtype), t, **kwargs, reduction=reduction)
        assert got.dtype == dtype
        # the reference sees the same (rounded) input values
        expected = ref(x.to(dtype).double().numpy(), t.numpy(), **as_numpy_kwargs(kwargs), reduction=reduction)
        assert got.shape == expected.shape
        assert_close_np(got, expected, dtype)


# ----------------------------------------------------------------------------


W4 = torch.tensor([0.2, 1.0, 3.0, 0.5, 1.7], dtype=F64)  # per-class weights for C = 5


class TestCrossEntropy:
    @pytest.mark.parametrize("reduction", REDUCTIONS)
    @pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
    @pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
    @pytest.mark.parametrize("shape", [(7, 5), (3, 5, 4, 2)], ids=["NC", "NCHW"])
    @pytest.mark.parametrize("target_kind", ["index", "index-ignored", "probabilities"])
    def test_matches_torch(self, target_kind, shape, weighted, label_smoothing, reduction):
        x = logits(*shape, seed=3)
        index_shape = shape[:1] + shape[2:]
        if target_kind == "probabilities":
            t = soft_targets(*shape, seed=4)
        else:
            t = class_indices(index_shape, shape[1], seed=5, ignore_index=-100,
                              ignored=0.3 if target_kind == "index-ignored" else 0.0)
        kwargs = dict(weight=W4 if weighted else None, label_smoothing=label_smoothing, reduction=reduction)
        ours = value_and_grad(losslab.cross_entropy, x, t, **kwargs)
        theirs = value_and_grad(F.cross_entropy, x, t, **kwargs)
        assert_same(ours, theirs)
        assert ours[0].shape == (index_shape if reduction == "none" else ())

    @pytest.mark.parametrize("reduction", REDUCTIONS)
    def test_custom_ignore_index_that_is_a_class(self, reduction):
        x, t = logits(9, 5, seed=6), class_indices((9,), 5, seed=7)
        t[:2] = 1
        kwargs = dict(weight=W4, ignore_index=1, label_smoothing=0.1, reduction=reduction)
        assert_same(value_and_grad(losslab.cross_entropy, x, t, **kwargs),
                    value_and_grad(F.cross_entropy, x, t, **kwargs))

    def test_ignore_index_none_keeps_everything(self):
        x, t = logits(6, 5, seed=8), class_indices((6,), 5, seed=9)
        assert_same(value_and_grad(losslab.cross_entropy, x, t, ignore_index=None),
                    value_and_grad(F.cross_entropy, x, t))
        with pytest.raises(ValueError, match=r"cross_entropy: target class indices must be in \[0, 5\); got -100"):
            losslab.cross_entropy(x, torch.tensor([0, 1, -100, 2, 3, 4]), ignore_index=None)

    def test_ignored_positions_have_zero_loss_and_gradient(self):
        x = logits(6, 4, 3, seed=10)
        t = class_indices((6, 3), 4, seed=11, ignore_index=-100, ignored=0.4)
        out, grad = value_and_grad(losslab.cross_entropy, x, t, reduction="none", label_smoothing=0.3, weight=W4[:4])
        ignored = t == -100
        assert torch.all(out[ignored] == 0)
        assert torch.all(grad.movedim(1, -1)[ignored] == 0)
        assert torch.all(grad.movedim(1, -1)[~ignored].abs().sum(-1) > 0)

    def test_weighted_mean_divides_by_the_weights_of_kept_targets(self):
        x = logits(10, 5, seed=12)
        t = class_indices((10,), 5, seed=13, ignore_index=-100, ignored=0.3)
        kept = t != -100
        total = losslab.cross_entropy(x, t, weight=W4, reduction="sum")
        mean = losslab.cross_entropy(x, t, weight=W4)
        torch.testing.assert_close(mean, total / W4[t[kept]].sum(), **TOLERANCES[F64])
        # and not by the number of kept positions
        assert not torch.isclose(mean, total / kept.sum())

    def test_probability_targets_mean_divides_by_positions_whatever_the_weights(self):
        x, q = logits(3, 5, 2, seed=14), soft_targets(3, 5, 2, seed=15)
        total = losslab.cross_entropy(x, q, weight=W4, reduction="sum")
        torch.testing.assert_close(losslab.cross_entropy(x, q, weight=W4), total / 6, **TOLERANCES[F64])

    @pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.uint8])
    def test_any_integer_target_dtype(self, dtype):
        x, t = logits(8, 5, seed=16), class_indices((8,), 5, seed=17)
        torch.testing.assert_close(losslab.cross_entropy(x, t.to(dtype), weight=W4),
                                   F.cross_entropy(x, t, weight=W4), **TOLERANCES[F64])

    def test_weight_as_sequence_equals_tensor(self):
        x, t = logits(8, 5, seed=18), class_indices((8,), 5, seed=19)
        assert torch.equal(losslab.cross_entropy(x, t, weight=W4.tolist()), losslab.cross_entropy(x, t, weight=W4))

    # from_logits=False ---------------------------------------------------------

    @pytest.mark.parametrize("reduction", REDUCTIONS)
    @pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
    def test_probabilities_in_equal_nll_of_log(self, weighted, reduction):
        p = torch.softmax(logits(5, 5, 3, seed=20), dim=1)
        t = class_indices((5, 3), 5, seed=21, ignore_index=-100, ignored=0.2)
        w = W4 if weighted else None
        ours = value_and_grad(losslab.cross_entropy, p, t, weight=w, reduction=reduction, from_logits=False)
        theirs = value_and_grad(lambda q, *a, **k: F.nll_loss(q.log(), *a, **k), p, t, weight=w, reduction=reduction)
        assert_same(ours, theirs)

    @pytest.mark.parametrize("label_smoothing", [0.0, 0.25])
    def test_probabilities_in_with_probability_targets(self, label_smoothing):
        p, q = torch.softmax(logits(6, 5, seed=22), dim=1), soft_targets(6, 5, seed=23)
        eps = label_smoothing
        manual = lambda x, q: -(W4 * ((1 - eps) * q + eps / 5) * x.log()).sum(1)  # noqa: E731
        assert_same(value_and_grad(losslab.cross_entropy, p, q, weight=W4, label_smoothing=eps, reduction="none",
                                   from_logits=False),
                    value_and_grad(manual, p, q))
        # values agree with torch's cross_entropy on log p (p sums to 1, so log_softmax(log p) = log p);
        # gradients differ by design: torch renormalises, losslab does not
        torch.testing.assert_close(
            losslab.cross_entropy(p, q, weight=W4, label_smoothing=eps, from_logits=False),
            F.cross_entropy(p.log(), q, weight=W4, label_smoothing=eps), **TOLERANCES[F64])

    def test_probabilities_in_log_is_floored_at_minus_100(self):
        p = torch.tensor([[0.0, 1.0, 0.0], [0.5, 0.5, 0.0], [0.2, 0.3, 0.5]], dtype=F64)
        t = torch.tensor([0, 2, 2])
        out, grad = value_and_grad(losslab.cross_entropy, p, t, reduction="none", from_logits=False)
        torch.testing.assert_close(out, torch.tensor([100.0, 100.0, -np.log(0.5)], dtype=F64))
        assert torch.isfinite(grad).all()
        # torch's nll_loss(log p) is infinite there
        assert torch.isinf(F.nll_loss(p.log(), t, reduction="none")[:2]).all()

    # edge cases ---------------------------------------------------------------

    @pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
    @pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
    def test_all_ignored_gives_zero_where_torch_gives_nan(self, weighted, label_smoothing):
        x, t = logits(5, 5, seed=24), torch.full((5,), -100)
        w = W4 if weighted else None
        for reduction in ("mean", "sum"):
            out, grad = value_and_grad(losslab.cross_entropy, x, t, weight=w, label_smoothing=label_smoothing,
                                       reduction=reduction)
            assert out.item() == 0.0
            assert torch.all(grad == 0)
        out, _ = value_and_grad(losslab.cross_entropy, x, t, weight=w, reduction="none")
        assert torch.all(out == 0) and out.shape == (5,)
        # the documented difference: PyTorch divides 0 by 0
        assert torch.isnan(F.cross_entropy(x, t, weight=w, label_smoothing=label_smoothing))

    @pytest.mark.parametrize("target_kind", ["index", "probabilities"])
    def test_empty_batch_gives_zero_connected_to_graph(self, target_kind):
        x = logits(0, 5, seed=25).requires_grad_()
        t = torch.zeros(0, dtype=torch.long) if target_kind == "index" else torch.zeros(0, 5, dtype=F64)
        for reduction in ("mean", "sum"):
            out = losslab.cross_entropy(x, t, reduction=reduction)
            assert out.shape == () and out.item() == 0.0
            assert out.requires_grad
            (grad,) = torch.autograd.grad(out, x)
            assert grad.shape == (0, 5)
        assert losslab.cross_entropy(x, t, reduction="none").shape == (0,)
        assert torch.isnan(F.cross_entropy(x, t))  # torch: 0 / 0

    def test_zero_weight_sum_gives_zero(self):
        # every kept target has weight 0: PyTorch divides 0 by 0, losslab returns 0
        x, t = logits(4, 3, seed=26), torch.tensor([1, 1, 1, 1])
        w = torch.tensor([1.0, 0.0, 2.0], dtype=F64)
        out, grad = value_and_grad(losslab.cross_entropy, x, t, weight=w)
        assert out.item() == 0.0 and torch.all(grad == 0)
        assert torch.isnan(F.cross_entropy(x, t, weight=w))

    # against the NumPy reference -------------------------------------------------

    @pytest.mark.parametrize("dtype", [torch.float32, F64])
    def test_reference_larger_index(self, dtype):
        x = logits(16, 7, 6, 5, seed=27)
        t = class_indices((16, 6, 5), 7, seed=28, ignore_index=-1, ignored=0.15)
        w = torch.linspace(0.2, 2.0, 7, dtype=F64)
        check_reference("cross_entropy", x, t, dtype, weight=w.to(dtype), ignore_index=-1, label_smoothing=0.05)

    @pytest.mark.parametrize("dtype", [torch.float32, F64])
    def test_reference_larger_probabilities(self, dtype):
        p = torch.softmax(logits(32, 9, 4, seed=29), dim=1)
        q = soft_targets(32, 9, 4, seed=30)
        check_reference("cross_entropy", p, q.to(dtype), dtype, from_logits=False, label_smoothing=0.3)


class TestNLLLoss:
    @pytest.mark.parametrize("reduction", REDUCTIONS)
    @pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
    @pytest.mark.parametrize("ignored", [0.0, 0.3])
    @pytest.mark.parametrize("shape", [(8, 5), (2, 5, 3, 4)], ids=["NC", "NCHW"])
    def test_matches_torch(self, shape, ignored, weighted, reduction):
        lp = torch.log_softmax(logits(*shape, seed=31), dim=1)
        t = class_indices(shape[:1] + shape[2:], shape[1], seed=32, ignore_index=-100, ignored=ignored)
        kwargs = dict(weight=W4 if weighted else None, reduction=reduction)
        assert_same(value_and_grad(losslab.nll_loss, lp, t, **kwargs), value_and_grad(F.nll_loss, lp, t, **kwargs))

    def test_custom_ignore_index(self):
        lp = torch.log_softmax(logits(9, 5, seed=33), dim=1)
        t = class_indices((9,), 5, seed=34)
        t[0] = 3
        assert_same(value_and_grad(losslab.nll_loss, lp, t, weight=W4, ignore_index=3),
                    value_and_grad(F.nll_loss, lp, t, weight=W4, ignore_index=3))

    def test_not_renormalised(self):
        # nll_loss takes the input as given: arbitrary scores, -x[target]
        x = logits(4, 3, seed=35)
        t = torch.tensor([0, 2, 1, 1])
        torch.testing.assert_close(losslab.nll_loss(x, t, reduction="none"), -x[torch.arange(4), t])

    def test_all_ignored_and_empty(self):
        lp = torch.log_softmax(logits(4, 5, seed=36), dim=1)
        t = torch.full((4,), -100)
        out, grad = value_and_grad(losslab.nll_loss, lp, t, weight=W4)
        assert out.item() == 0.0 and torch.all(grad == 0)
        assert torch.isnan(F.nll_loss(lp, t, weight=W4))
        empty = torch.zeros(0, 5, dtype=F64, requires_grad=True)
        out = losslab.nll_loss(empty, torch.zeros(0, dtype=torch.long))
        assert out.item() == 0.0 and out.requires_grad

    def test_probability_targets(self):
        lp = torch.log_softmax(logits(6, 5, seed=37), dim=1)
        q = soft_targets(6, 5, seed=38)
        manual = lambda x, q: -(W4 * q * x).sum(1)  # noqa: E731
        assert_same(value_and_grad(losslab.nll_loss, lp, q, weight=W4, reduction="none"), value_and_grad(manual, lp, q))
        torch.testing.assert_close(losslab.nll_loss(lp, q, weight=W4), manual(lp, q).mean())

    @pytest.mark.parametrize("dtype", [torch.float32, F64])
    def test_reference_larger(self, dtype):
        lp = torch.log_softmax(logits(24, 6, 7, seed=39), dim=1)
        t = class_indices((24, 7), 6, seed=40, ignore_index=-100, ignored=0.2)
        check_reference("nll_loss", lp, t, dtype, weight=torch.linspace(0.5, 3.0, 6, dtype=dtype))


# ----------------------------------------------------------------------------


def one_hot_dense(t: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N, d...) indices in [0, C] -> (N, C, d...) float one-hot; index C (background) is a row of zeros."""
    return F.one_hot(t, num_classes + 1)[..., :num_classes].movedim(-1, 1).to(F64)


PW4 = torch.tensor([2.0, 0.5, 1.0, 3.0], dtype=F64)


class TestBinaryCrossEntropy:
    @pytest.mark.parametrize("reduction", REDUCTIONS)
    @pytest.mark.parametrize("pos_weight", [None, "per-class", "full"])
    @pytest.mark.parametrize("weight", [None, "per-class", "full", "scalar"])
    def test_matches_torch_with_logits(self, weight, pos_weight, reduction):
        x, t = logits(6, 4, seed=41), torch.rand(6, 4, generator=gen(42), dtype=F64)
        weights = {None: None, "per-class": torch.tensor([0.3, 1.0, 2.0, 0.7], dtype=F64),
                   "full": torch.rand(6, 4, generator=gen(43), dtype=F64), "scalar": torch.tensor(1.7, dtype=F64)}
        pos_weights = {None: None, "per-class": PW4, "full": torch.rand(6, 4, generator=gen(44), dtype=F64) * 3}
        kwargs = dict(weight=weights[weight], pos_weight=pos_weights[pos_weight], reduction=reduction)
        assert_same(value_and_grad(losslab.binary_cross_entropy, x, t, **kwargs),
                    value_and_grad(F.binary_cross_entropy_with_logits, x, t, **kwargs))

    @pytest.mark.parametrize("shape", [(11,), (3, 4, 5)])
    def test_matches_torch_other_shapes(self, shape):
        x = logits(*shape, seed=45)
        t = (torch.rand(*shape, generator=gen(46)) < 0.4).to(F64)
        for reduction in REDUCTIONS:
            assert_same(value_and_grad(losslab.binary_cross_entropy, x, t, reduction=reduction),
                        value_and_grad(F.binary_cross_entropy_with_logits, x, t, reduction=reduction))

    def test_extreme_logits(self):
        x = torch.tensor([1e4, -1e4, 50.0, -50.0, 1e4, -1e4], dtype=F64)
        t = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0, 1.0], dtype=F64)
        ours = value_and_grad(losslab.binary_cross_entropy, x, t, reduction="none")
        assert_same(ours, value_and_grad(F.binary_cross_entropy_with_logits, x, t, reduction="none"))
        torch.testing.assert_close(ours[0][4:], torch.tensor([1e4, 1e4], dtype=F64))

    @pytest.mark.parametrize("reduction", REDUCTIONS)
    @pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
    def test_probabilities_match_torch_binary_cross_entropy(self, weighted, reduction):
        p = torch.rand(7, 3, generator=gen(47), dtype=F64) * 0.96 + 0.02  # interior: gradients agree too
        t = torch.rand(7, 3, generator=gen(48), dtype=F64)
        w = torch.rand(7, 3, generator=gen(49), dtype=F64) if weighted else None
        assert_same(value_and_grad(losslab.binary_cross_entropy, p, t, weight=w, reduction=reduction,
                                   from_logits=False),
                    value_and_grad(F.binary_cross_entropy, p, t, weight=w, reduction=reduction))

    def test_probabilities_at_exact_zero_and_one(self):
        p = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.5], dtype=F64)
        t = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0], dtype=F64)
        out, grad = value_and_grad(losslab.binary_cross_entropy, p, t, reduction="none", from_logits=False)
        # values as torch: log floored at -100
        torch.testing.assert_close(out, F.binary_cross_entropy(p, t, reduction="none"))
        torch.testing.assert_close(out, torch.tensor([100.0, 100.0, 0.0, 0.0, np.log(2.0)], dtype=F64))
        # gradients finite (torch clamps its denominator at 1e-12 and returns +-1e12 there)
        assert torch.isfinite(grad).all()

    def test_pos_weight_length_c_applies_along_dim_1(self):
        x = logits(2, 4, 3, 4, seed=50)  # last dim == C, so torch's last-dim broadcasting is a real difference
        t = torch.rand(2, 4, 3, 4, generator=gen(51), dtype=F64)
        for reduction in REDUCTIONS:
            assert_same(value_and_grad(losslab.binary_cross_entropy, x, t, pos_weight=PW4, reduction=reduction),
                        value_and_grad(F.binary_cross_entropy_with_logits, x, t, pos_weight=PW4.view(4, 1, 1),
                                       reduction=reduction))
        # torch's own pos_weight=(C,) broadcasts against the last dimension: a different loss
        assert not torch.isclose(losslab.binary_cross_entropy(x, t, pos_weight=PW4),
                                 F.binary_cross_entropy_with_logits(x, t, pos_weight=PW4))

    def test_weight_length_c_applies_along_dim_1(self):
        x = logits(2, 4, 5, seed=52)
        t = torch.rand(2, 4, 5, generator=gen(53), dtype=F64)
        w = torch.tensor([0.1, 2.0, 1.0, 0.4], dtype=F64)
        assert_same(value_and_grad(losslab.binary_cross_entropy, x, t, weight=w, reduction="none"),
                    value_and_grad(F.binary_cross_entropy_with_logits, x, t, weight=w.view(4, 1), reduction="none"))

    def test_weight_that_does_not_broadcast_is_an_error(self):
        x, t = logits(2, 4, 5, seed=54), torch.rand(2, 4, 5, dtype=F64)
        with pytest.raises(ValueError, match=r"binary_cross_entropy: weight must broadcast to the input's shape"
                                             r" \(2, 4, 5\) or \(4,\) along the class dimension; got \(3,\)"):
            losslab.binary_cross_entropy(x, t, weight=[1.0, 2.0, 3.0])

    # class-index (one-vs-rest) form ----------------------------------------------

    @pytest.mark.parametrize("reduction", REDUCTIONS)
    @pytest.mark.parametrize("shape", [(9, 4), (2, 4, 3, 2)], ids=["NC", "NCHW"])
    def test_index_form_equals_dense_one_hot(self, shape, reduction):
        x = logits(*shape, seed=55)
        t = class_indices(shape[:1] + shape[2:], shape[1] + 1, seed=56)  # includes background index C
        t.view(-1)[0] = shape[1]
        dense = one_hot_dense(t, shape[1])
        assert torch.all(dense.movedim(1, -1)[t == shape[1]] == 0)
        for kwargs in ({}, {"pos_weight": PW4, "weight": [0.5, 1.0, 2.0, 1.5]}, {"label_smoothing": 0.2}):
            assert_same(value_and_grad(losslab.binary_cross_entropy, x, t, reduction=reduction, **kwargs),
                        value_and_grad(losslab.binary_cross_entropy, x, dense, reduction=reduction, **kwargs))
        assert_same(value_and_grad(losslab.binary_cross_entropy, x, t, reduction=reduction, pos_weight=PW4),
                    value_and_grad(F.binary_cross_entropy_with_logits, x, dense, reduction=reduction,
                                   pos_weight=PW4.view((4,) + (1,) * (len(shape) - 2))))

    def test_index_form_background_penalises_every_class(self):
        x = torch.tensor([[1.5, -0.5, 0.2], [-2.0, 0.3, 1.0]], dtype=F64)
        out = losslab.binary_cross_entropy(x, torch.tensor([0, 3]), reduction="none")
        expected = F.binary_cross_entropy_with_logits(x, torch.tensor([[1.0, 0, 0], [0, 0, 0]], dtype=F64),
                                                      reduction="none")
        torch.testing.assert_close(out, expected)

    def test_index_out_of_range_is_an_error(self):
        with pytest.raises(ValueError, match=r"binary_cross_entropy: target class indices must be in \[0, 4\) "
                                             r"\(index 3 is background\); got 4"):
            losslab.binary_cross_entropy(logits(3, 3), torch.tensor([0, 4, 3]))

    # ignore_index -------------------------------------------------------------

    @pytest.mark.parametrize("reduction", ["mean", "sum"])
    def test_dense_ignore_index_equals_dropping_elements(self, reduction):
        x = logits(6, 4, seed=57)
        t = (torch.rand(6, 4, generator=gen(58)) < 0.5).to(F64)
        t[torch.rand(6, 4, generator=gen(59)) < 0.3] = -1
        keep = t != -1
        w = torch.rand(6, 4, generator=gen(60), dtype=F64)
        out, grad = value_and_grad(losslab.binary_cross_entropy, x, t, ignore_index=-1, weight=w, reduction=reduction)
        dropped, dgrad = value_and_grad(lambda xk: F.binary_cross_entropy_with_logits(
            xk, t[keep], weight=w[keep], reduction=reduction), x[keep])
        torch.testing.assert_close(out, dropped)
        torch.testing.assert_close(grad[keep], dgrad)
        assert torch.all(grad[~keep] == 0)

    @pytest.mark.parametrize("reduction", ["mean", "sum"])
    def test_index_ignore_index_drops_whole_positions(self, reduction):
        x = logits(5, 3, 4, seed=61)
        t = class_indices((5, 4), 4, seed=62, ignore_index=-100, ignored=0.3)
        keep = t != -100
        out, grad = value_and_grad(losslab.binary_cross_entropy, x, t, ignore_index=-100, reduction=reduction,
                                   pos_weight=[1.0, 2.0, 0.5])
        xk = x.movedim(1, -1)[keep]  # (K, C)
        dense = F.one_hot(t[keep], 4)[:, :3].to(F64)
        pw = torch.tensor([1.0, 2.0, 0.5], dtype=F64)
        dropped, dgrad = value_and_grad(lambda z: F.binary_cross_entropy_with_logits(
            z, dense, pos_weight=pw, reduction=reduction), xk)
        torch.testing.assert_close(out, dropped)
        torch.testing.assert_close(grad.movedim(1, -1)[keep], dgrad)
        assert torch.all(grad.movedim(1, -1)[~keep] == 0)
        if reduction == "mean":  # denominator: C elements per kept position
            total = losslab.binary_cross_entropy(x, t, ignore_index=-100, reduction="sum", pos_weight=pw)
            torch.testing.assert_close(out, total / (3 * keep.sum()))

    def test_all_ignored_and_empty(self):
        x = logits(4, 3, seed=63)
        for t in (torch.full((4, 3), -1.0, dtype=F64), torch.full((4,), -1)):
            out, grad = value_and_grad(losslab.binary_cross_entropy, x, t, ignore_index=-1)
            assert out.item() == 0.0 and torch.all(grad == 0)
        empty = torch.zeros(0, 3, dtype=F64, requires_grad=True)
        out = losslab.binary_cross_entropy(empty, torch.zeros(0, 3, dtype=F64))
        assert out.item() == 0.0 and out.requires_grad
        assert torch.isnan(F.binary_cross_entropy_with_logits(empty, torch.zeros(0, 3, dtype=F64)))

    # label smoothing ------------------------------------------------------------

    @pytest.mark.parametrize("eps", [0.1, 0.5, 1.0])
    def test_label_smoothing_towards_one_half(self, eps):
        x = logits(5, 4, seed=64)
        t = (torch.rand(5, 4, generator=gen(65)) < 0.5).to(F64)
        smoothed = t * (1 - eps) + eps / 2
        for reduction in REDUCTIONS:
            assert_same(value_and_grad(losslab.binary_cross_entropy, x, t, label_smoothing=eps, reduction=reduction,
                                       pos_weight=PW4),
                        value_and_grad(F.binary_cross_entropy_with_logits, x, smoothed, reduction=reduction,
                                       pos_weight=PW4))
            check_reference("binary_cross_entropy", x, t, F64, label_smoothing=eps)

    def test_label_smoothing_index_form_with_ignore(self):
        x = logits(2, 3, 4, 2, seed=66)
        t = class_indices((2, 4, 2), 4, seed=67, ignore_index=-1, ignored=0.3)
        check_reference("binary_cross_entropy", x, t, F64, label_smoothing=0.2, ignore_index=-1,
                        weight=torch.tensor([1.0, 0.3, 2.0], dtype=F64))

    # against the NumPy reference -------------------------------------------------

    @pytest.mark.parametrize("dtype", [torch.float32, F64])
    def test_reference_larger(self, dtype):
        x = logits(16, 5, 6, 7, seed=68)
        t = torch.rand(16, 5, 6, 7, generator=gen(69), dtype=F64)
        check_reference("binary_cross_entropy", x, t.to(dtype), dtype,
                        pos_weight=torch.linspace(0.5, 3.0, 5, dtype=dtype),
                        weight=torch.rand(6, 7, generator=gen(70), dtype=F64).to(dtype))

    def test_reference_probabilities_with_index_targets(self):
        p = torch.rand(12, 5, 3, generator=gen(71), dtype=F64)
        p[0, 0, 0], p[1, 1, 1] = 0.0, 1.0
        t = class_indices((12, 3), 6, seed=72, ignore_index=-1, ignored=0.2)
        check_reference("binary_cross_entropy", p, t, F64, from_logits=False, ignore_index=-1, label_smoothing=0.1)


# ----------------------------------------------------------------------------


ALPHA4 = torch.tensor([0.1, 0.5, 0.3, 0.1], dtype=F64)


class TestBalancedCrossEntropy:
    @pytest.mark.parametrize("reduction", REDUCTIONS)
    @pytest.mark.parametrize("alpha", [0.0, 0.25, 0.9, 1.0])
    def test_float_alpha_is_the_sigmoid_form(self, alpha, reduction):
        x, t = logits(6, 4, seed=73), torch.rand(6, 4, generator=gen(74), dtype=F64)

        def manual(z, t):
            loss = (alpha * t + (1 - alpha) * (1 - t)) * F.binary_cross_entropy_with_logits(z, t, reduction="none")
            return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]

        assert_same(value_and_grad(losslab.balanced_cross_entropy, x, t, alpha=alpha, reduction=reduction),
                    value_and_grad(manual, x, t))

    def test_float_alpha_index_form_equals_dense(self):
        x = logits(7, 3, seed=75)
        t = torch.tensor([0, 1, 2, 3, 3, 1, 0])
        assert_same(value_and_grad(losslab.balanced_cross_entropy, x, t, alpha=0.3, reduction="none"),
                    value_and_grad(losslab.balanced_cross_entropy, x, one_hot_dense(t, 3), alpha=0.3,
                                   reduction="none"))

    @pytest.mark.parametrize("alpha_as", ["tensor", "list", "tuple"])
    def test_per_class_alpha_is_the_softmax_form(self, alpha_as):
        x = logits(8, 4, 3, seed=76)
        t = class_indices((8, 3), 4, seed=77, ignore_index=-100, ignored=0.2)
        alpha = {"tensor": ALPHA4, "list": ALPHA4.tolist(), "tuple": tuple(ALPHA4.tolist())}[alpha_as]
        assert_same(value_and_grad(losslab.balanced_cross_entropy, x, t, alpha=alpha, reduction="none"),
                    value_and_grad(F.cross_entropy, x, t, weight=ALPHA4, reduction="none"))
        assert_same(value_and_grad(losslab.balanced_cross_entropy, x, t, alpha=alpha, reduction="sum"),
                    value_and_grad(F.cross_entropy, x, t, weight=ALPHA4, reduction="sum"))

    def test_mean_is_not_torch_weighted_mean(self):
        x = logits(12, 4, seed=78)
        t = class_indices((12,), 4, seed=79, ignore_index=-100, ignored=0.25)
        kept = (t != -100).sum()
        ours = losslab.balanced_cross_entropy(x, t, alpha=ALPHA4)
        torchs = F.cross_entropy(x, t, weight=ALPHA4)
        total = losslab.balanced_cross_entropy(x, t, alpha=ALPHA4, reduction="sum")
        torch.testing.assert_close(ours, total / kept, **TOLERANCES[F64])
        torch.testing.assert_close(torchs, total / ALPHA4[t[t != -100]].sum(), **TOLERANCES[F64])
        assert abs(ours.item() - torchs.item()) > 0.1 * abs(torchs.item())
        # cross_entropy(weight=...) is the PyTorch convention
        torch.testing.assert_close(losslab.cross_entropy(x, t, weight=ALPHA4), torchs, **TOLERANCES[F64])

    def test_mean_with_probability_targets(self):
        x, q = logits(5, 4, seed=80), soft_targets(5, 4, seed=81)
        total = losslab.balanced_cross_entropy(x, q, alpha=ALPHA4, reduction="sum")
        torch.testing.assert_close(losslab.balanced_cross_entropy(x, q, alpha=ALPHA4), total / 5)

    @pytest.mark.parametrize("case", ["dense-soft", "dense-ignored", "index", "index-ignored-4d", "probabilities-in"])
    @pytest.mark.parametrize("alpha", [0.25, 0.8])
    def test_equals_sigmoid_focal_with_gamma_zero(self, case, alpha):
        x = logits(5, 3, 2, 2, seed=82) if case == "index-ignored-4d" else logits(6, 3, seed=82)
        kwargs = {}
        if case == "dense-soft":
            t = torch.rand(6, 3, generator=gen(83), dtype=F64)
        elif case == "dense-ignored":
            t = (torch.rand(6, 3, generator=gen(83)) < 0.5).to(F64)
            t[0, 1] = t[3, 2] = -1.0
            kwargs["ignore_index"] = -1
        elif case == "index":
            t = class_indices((6,), 4, seed=83)
        elif case == "index-ignored-4d":
            t = class_indices((5, 2, 2), 4, seed=83, ignore_index=-1, ignored=0.3)
            kwargs["ignore_index"] = -1
        else:
            x = torch.sigmoid(x)
            t = (torch.rand(6, 3, generator=gen(83)) < 0.5).to(F64)
            kwargs["from_logits"] = False
        kwargs.setdefault("ignore_index", None)
        for reduction in REDUCTIONS:
            ours = value_and_grad(losslab.balanced_cross_entropy, x, t, alpha=alpha, reduction=reduction, **kwargs)
            focal = value_and_grad(losslab.sigmoid_focal_loss, x, t, alpha=alpha, gamma=0.0, reduction=reduction,
                                   **kwargs)
            assert_same(ours, focal)

    @pytest.mark.parametrize("case", ["index-ignored", "probabilities", "smoothed", "probabilities-in"])
    def test_equals_softmax_focal_with_gamma_zero(self, case):
        x = logits(4, 4, 3, seed=84)
        t = class_indices((4, 3), 4, seed=85, ignore_index=-100, ignored=0.3)
        kwargs = {}
        if case == "probabilities":
            t = soft_targets(4, 4, 3, seed=85)
        elif case == "smoothed":
            kwargs["label_smoothing"] = 0.2
        elif case == "probabilities-in":
            x = torch.softmax(x, dim=1)
            kwargs["from_logits"] = False
        for reduction in REDUCTIONS:
            assert_same(value_and_grad(losslab.balanced_cross_entropy, x, t, alpha=ALPHA4, reduction=reduction,
                                       **kwargs),
                        value_and_grad(losslab.softmax_focal_loss, x, t, alpha=ALPHA4, gamma=0.0,
                                       reduction=reduction, **kwargs))

    def test_all_ignored_gives_zero(self):
        x = logits(4, 4, seed=86)
        out, grad = value_and_grad(losslab.balanced_cross_entropy, x, torch.full((4,), -100), alpha=ALPHA4)
        assert out.item() == 0.0 and torch.all(grad == 0)

    def test_alpha_is_required_and_typed(self):
        x, t = logits(4, 4), class_indices((4,), 4)
        with pytest.raises(TypeError):
            losslab.balanced_cross_entropy(x, t)  # alpha is a required keyword
        with pytest.raises(TypeError, match=r"balanced_cross_entropy: alpha must be a float in \[0, 1\]"):
            losslab.balanced_cross_entropy(x, t, alpha={"a": 1})
        with pytest.raises(ValueError, match=r"balanced_cross_entropy: alpha must be a finite number in \[0, 1\]; "
                                             r"got -0.5"):
            losslab.balanced_cross_entropy(x, t, alpha=-0.5)

    @pytest.mark.parametrize("dtype", [torch.float32, F64])
    def test_reference_larger(self, dtype):
        x = logits(20, 4, 5, 3, seed=87)
        t = class_indices((20, 5, 3), 4, seed=88, ignore_index=-100, ignored=0.1)
        check_reference("balanced_cross_entropy", x, t, dtype, alpha=ALPHA4.to(dtype), label_smoothing=0.15)
        t5 = class_indices((20, 5, 3), 5, seed=89, ignore_index=-100, ignored=0.1)  # index 4 = background
        check_reference("balanced_cross_entropy", x, t5, dtype, alpha=0.7, label_smoothing=0.15)
