"""Detection losses: quality_focal_loss, varifocal_loss and distribution_focal_loss.

Compared with mmdetection's published formulas (written out below in torch;
values and gradients in float64), with the losses they reduce to (sigmoid
focal loss at hard targets, binary cross-entropy at beta = 0, cross-entropy at
an integer DFL target), the target forms with one another, ignore_index,
avg_factor (also on binary_cross_entropy and sigmoid_focal_loss, whose new
``weight`` is tested here too), the module twins' per-call overrides,
saturated and half-precision inputs, the error messages, and Hypothesis
invariants. The generic battery (tests/test_conformance.py) covers reductions,
gradcheck, module == functional, empty batches and the NumPy references.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import losslab

from .helpers import TOLERANCES, assert_same, class_indices, gen, logits, value_and_grad

F64 = torch.float64
REDUCTIONS = ("none", "mean", "sum")
HALF = (torch.float16, torch.bfloat16)


# ----------------------------------------------------------------------------
# mmdetection's formulas, verbatim in substance (mmdet/models/losses/gfocal_loss.py, varifocal_loss.py, utils.py)


def mmdet_weight_reduce_loss(loss, weight=None, reduction="mean", avg_factor=None):
    """mmdet 2.x weight_reduce_loss (mmdet 3 divides by ``avg_factor + finfo(float32).eps`` instead)."""
    if weight is not None:
        loss = loss * weight
    if avg_factor is None:
        return {"none": lambda: loss, "mean": loss.mean, "sum": loss.sum}[reduction]()
    if reduction == "mean":
        return loss.sum() / avg_factor
    if reduction == "none":
        return loss
    raise ValueError('avg_factor can not be used with reduction="sum"')


def mmdet_quality_focal_loss(pred, target, beta=2.0):
    """Per-anchor (N,) QFL of an (N, C) prediction against (label, score), C = background."""
    label, score = target
    pred_sigmoid = pred.sigmoid()
    scale_factor = pred_sigmoid
    zerolabel = scale_factor.new_zeros(pred.shape)
    loss = F.binary_cross_entropy_with_logits(pred, zerolabel, reduction="none") * scale_factor.pow(beta)
    bg_class_ind = pred.size(1)
    pos = ((label >= 0) & (label < bg_class_ind)).nonzero().squeeze(1)
    pos_label = label[pos].long()
    scale_factor = score[pos] - pred_sigmoid[pos, pos_label]
    loss[pos, pos_label] = F.binary_cross_entropy_with_logits(
        pred[pos, pos_label], score[pos], reduction="none") * scale_factor.abs().pow(beta)
    return loss.sum(dim=1, keepdim=False)


def mmdet_quality_focal_loss_tensor_target(pred, target, beta=2.0):
    """mmdet 3's dense-target QFL, per anchor (N,)."""
    pred_sigmoid = pred.sigmoid()
    scale_factor = pred_sigmoid
    target = target.type_as(pred)
    zerolabel = scale_factor.new_zeros(pred.shape)
    loss = F.binary_cross_entropy_with_logits(pred, zerolabel, reduction="none") * scale_factor.pow(beta)
    pos = target != 0
    scale_factor = target[pos] - pred_sigmoid[pos]
    loss[pos] = F.binary_cross_entropy_with_logits(pred[pos], target[pos], reduction="none") * \
        scale_factor.abs().pow(beta)
    return loss.sum(dim=1, keepdim=False)


def mmdet_varifocal_loss(pred, target, weight=None, alpha=0.75, gamma=2.0, iou_weighted=True, reduction="mean",
                         avg_factor=None):
    pred_sigmoid = pred.sigmoid()
    target = target.type_as(pred)
    if iou_weighted:
        focal_weight = target * (target > 0.0).float() + \
            alpha * (pred_sigmoid - target).abs().pow(gamma) * (target <= 0.0).float()
    else:
        focal_weight = (target > 0.0).float() + \
            alpha * (pred_sigmoid - target).abs().pow(gamma) * (target <= 0.0).float()
    loss = F.binary_cross_entropy_with_logits(pred, target, reduction="none") * focal_weight
    return mmdet_weight_reduce_loss(loss, weight, reduction, avg_factor)


def mmdet_distribution_focal_loss(pred, label):
    """Per-position (N,) DFL of (N, n) logits; labels must be < n - 1 (n - 1 indexes past the end)."""
    dis_left = label.long()
    dis_right = dis_left + 1
    weight_left = dis_right.to(label.dtype) - label
    weight_right = label - dis_left.to(label.dtype)
    return F.cross_entropy(pred, dis_left, reduction="none") * weight_left \
        + F.cross_entropy(pred, dis_right, reduction="none") * weight_right


# ----------------------------------------------------------------------------
# samples and helpers


def assert_equal(a, b) -> None:
    """Bitwise equal values and gradients."""
    assert torch.equal(a[0], b[0]), (a[0], b[0])
    assert torch.equal(a[1], b[1]), (a[1], b[1])


def assert_finite(out: torch.Tensor, grad: torch.Tensor) -> None:
    assert torch.isfinite(out).all() and torch.isfinite(grad).all(), (out, grad)


def pair_sample(n: int = 12, c: int = 4, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(N, C) logits, labels in [0, C] (some background), scores in [0, 1] with an exact 0 and 1 at positives."""
    x = logits(n, c, seed=seed)
    labels = class_indices((n,), c + 1, seed=seed + 1)
    labels[:4] = torch.tensor([0, 1, c, c])
    scores = torch.rand(n, generator=gen(seed + 2), dtype=F64)
    scores[:2] = torch.tensor([0.0, 1.0], dtype=F64)
    return x, labels, scores


def dense_from_pair(labels: torch.Tensor, scores: torch.Tensor, c: int) -> torch.Tensor:
    """(N, d...) labels and scores -> the (N, C, d...) dense target; label C (background) is all zeros."""
    onehot = F.one_hot(labels.clamp_min(0), c + 1)[..., :c].movedim(-1, 1).to(F64)
    return onehot * scores.unsqueeze(1)


def soft_dense(*shape: int, seed: int, zeros: float = 0.5) -> torch.Tensor:
    """Quality targets in [0, 1], about ``zeros`` of them exactly 0 (negatives)."""
    q = torch.rand(*shape, generator=gen(seed), dtype=F64)
    return torch.where(torch.rand(*shape, generator=gen(seed + 500)) < zeros, torch.zeros_like(q), q)


def dfl_sample(n: int = 10, bins: int = 6, *, seed: int = 0, last: bool = False):
    """(n, bins) logits and targets in [0, bins - 1) (mmdetection's range), or [0, bins - 1] with ``last``."""
    x = logits(n, bins, seed=seed)
    y = torch.rand(n, generator=gen(seed + 1), dtype=F64) * (bins - 1)
    y[:2] = torch.tensor([0.0, 2.0], dtype=F64)  # integers: all weight on one bin
    if last:
        y[2] = bins - 1.0
    else:
        y = y.clamp_max(bins - 1 - 1e-3)
    return x, y


# ----------------------------------------------------------------------------


class TestQualityFocalLoss:
    # against mmdetection ---------------------------------------------------------

    @pytest.mark.parametrize("beta", [0.0, 0.5, 2.0, 3.5])
    def test_matches_mmdetection_pair_target(self, beta):
        x, labels, scores = pair_sample(seed=1)
        c = x.shape[1]
        avg = float(scores[labels < c].sum())  # GFL's avg_factor: the positives' quality scores
        w = torch.rand(x.shape[0], generator=gen(5), dtype=F64)  # mmdetection's per-anchor weight

        def ours(z, **kw):
            return losslab.quality_focal_loss(z, (labels, scores), beta=beta, **kw)

        def peer(z, **kw):
            return mmdet_weight_reduce_loss(mmdet_quality_focal_loss(z, (labels, scores), beta=beta), **kw)

        # "none" is per element: summed over the classes it is mmdetection's per-anchor loss
        assert_same(value_and_grad(lambda z: ours(z, reduction="none").sum(1), x),
                    value_and_grad(peer, x, reduction="none"))
        assert_same(value_and_grad(ours, x, reduction="sum"), value_and_grad(peer, x, reduction="sum"))
        assert_same(value_and_grad(ours, x, avg_factor=avg), value_and_grad(peer, x, avg_factor=avg))
        assert_same(value_and_grad(ours, x, weight=w[:, None], reduction="sum"),
                    value_and_grad(peer, x, weight=w, reduction="sum"))
        assert_same(value_and_grad(ours, x, weight=w[:, None], avg_factor=avg),
                    value_and_grad(peer, x, weight=w, avg_factor=avg))
        # the documented difference: without avg_factor mmdetection's mean is over anchors, C times ours
        assert_same(value_and_grad(lambda z: c * ours(z), x), value_and_grad(peer, x))

    @pytest.mark.parametrize("beta", [0.5, 2.0])
    def test_matches_mmdetection_4d_pair_target(self, beta):
        n, c, h, w = 2, 3, 4, 5
        x = logits(n, c, h, w, seed=2)
        labels = class_indices((n, h, w), c + 1, seed=3)
        scores = torch.rand(n, h, w, generator=gen(4), dtype=F64)

        def flat(z):
            return z.movedim(1, -1).reshape(-1, c)

        ours = value_and_grad(lambda z: flat(losslab.quality_focal_loss(z, (labels, scores), beta=beta,
                                                                        reduction="none")).sum(1), x)
        peer = value_and_grad(lambda z: mmdet_quality_focal_loss(flat(z), (labels.reshape(-1), scores.reshape(-1)),
                                                                 beta=beta), x)
        assert_same(ours, peer)

    @pytest.mark.parametrize("beta", [0.0, 0.5, 2.0])
    def test_matches_mmdetection_dense_target(self, beta):
        x, q = logits(10, 5, seed=6), soft_dense(10, 5, seed=7)
        assert_same(value_and_grad(lambda z: losslab.quality_focal_loss(z, q, beta=beta, reduction="none").sum(1), x),
                    value_and_grad(mmdet_quality_focal_loss_tensor_target, x, q, beta=beta))
        assert_same(value_and_grad(losslab.quality_focal_loss, x, q, beta=beta, avg_factor=4.5),
                    value_and_grad(lambda z: mmdet_quality_focal_loss_tensor_target(z, q, beta=beta).sum() / 4.5, x))

    # equivalences ----------------------------------------------------------------

    @pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 2.0, 3.5])
    def test_hard_targets_are_sigmoid_focal_without_alpha(self, beta):
        x = logits(6, 4, 3, seed=8)
        dense = (torch.rand(6, 4, 3, generator=gen(9)) < 0.3).to(F64)
        index = class_indices((6, 3), 5, seed=10)
        for t in (dense, index):
            for reduction in REDUCTIONS:
                assert_same(value_and_grad(losslab.quality_focal_loss, x, t, beta=beta, reduction=reduction),
                            value_and_grad(losslab.sigmoid_focal_loss, x, t, alpha=None, gamma=beta,
                                           reduction=reduction))

    @pytest.mark.parametrize("case", ["soft", "weighted", "ignored", "avg_factor"])
    def test_beta_zero_is_binary_cross_entropy(self, case):
        x, t = logits(5, 4, 3, seed=11), torch.rand(5, 4, 3, generator=gen(12), dtype=F64)
        kwargs = {}
        if case == "weighted":
            kwargs["weight"] = torch.tensor([0.5, 2.0, 0.0, 1.5], dtype=F64)
        elif case == "ignored":
            t[0, :, 1], t[3, 2] = -1.0, -1.0
            kwargs["ignore_index"] = -1
        elif case == "avg_factor":
            kwargs["avg_factor"] = 7.0
        for reduction in REDUCTIONS:
            assert_same(value_and_grad(losslab.quality_focal_loss, x, t, beta=0.0, reduction=reduction, **kwargs),
                        value_and_grad(losslab.binary_cross_entropy, x, t, reduction=reduction, **kwargs))
        if case == "soft":
            assert_same(value_and_grad(losslab.quality_focal_loss, x, t, beta=0.0, reduction="sum"),
                        value_and_grad(F.binary_cross_entropy_with_logits, x, t, reduction="sum"))

    @pytest.mark.parametrize("ignored", [False, True])
    @pytest.mark.parametrize("shape", [(9, 4), (2, 3, 4, 2)], ids=["NC", "NCHW"])
    def test_pair_target_equals_the_dense_target_built_from_it(self, shape, ignored):
        c = shape[1]
        x = logits(*shape, seed=13)
        index_shape = shape[:1] + shape[2:]
        labels = class_indices(index_shape, c + 1, seed=14, ignore_index=-1 if ignored else None,
                               ignored=0.3 if ignored else 0.0)
        scores = torch.rand(index_shape, generator=gen(15), dtype=F64)
        dense = dense_from_pair(labels, scores, c)
        kwargs = {}
        if ignored:
            kwargs["ignore_index"] = -1
            dense = torch.where((labels == -1).unsqueeze(1), torch.full_like(dense, -1.0), dense)
        for reduction in REDUCTIONS:
            for beta in (0.5, 2.0):
                assert_same(value_and_grad(losslab.quality_focal_loss, x, (labels, scores), beta=beta,
                                           reduction=reduction, **kwargs),
                            value_and_grad(losslab.quality_focal_loss, x, dense, beta=beta, reduction=reduction,
                                           **kwargs))

    def test_labels_alone_are_scores_of_one(self):
        x = logits(3, 4, 5, seed=16)
        labels = class_indices((3, 5), 5, seed=17)
        ones = torch.ones(3, 5, dtype=F64)
        for reduction in REDUCTIONS:
            assert_equal(value_and_grad(losslab.quality_focal_loss, x, labels, reduction=reduction),
                         value_and_grad(losslab.quality_focal_loss, x, (labels, ones), reduction=reduction))
        # and a list (labels, scores) is the same pair as a tuple
        assert_equal(value_and_grad(losslab.quality_focal_loss, x, [labels, ones]),
                     value_and_grad(losslab.quality_focal_loss, x, (labels, ones)))

    def test_pair_target_with_uint8_labels(self):
        x, labels, scores = pair_sample(seed=18)
        assert_equal(value_and_grad(losslab.quality_focal_loss, x, (labels.to(torch.uint8), scores)),
                     value_and_grad(losslab.quality_focal_loss, x, (labels, scores)))

    # ignore_index ----------------------------------------------------------------

    def test_ignore_index_dense(self):
        x, t = logits(6, 5, seed=19), torch.rand(6, 5, generator=gen(20), dtype=F64)
        drop = torch.rand(6, 5, generator=gen(21)) < 0.3
        t = torch.where(drop, torch.full_like(t, 255.0), t)
        none, grad = value_and_grad(losslab.quality_focal_loss, x, t, ignore_index=255, reduction="none")
        assert torch.all(none[drop] == 0) and torch.all(grad[drop] == 0)
        assert torch.all(none[~drop] > 0)
        total = losslab.quality_focal_loss(x, t, ignore_index=255, reduction="sum")
        mean, mgrad = value_and_grad(losslab.quality_focal_loss, x, t, ignore_index=255)
        torch.testing.assert_close(mean, total / (~drop).sum().to(F64), **TOLERANCES[F64])
        assert torch.all(mgrad[drop] == 0)
        # the kept elements alone give the same sum
        kept = losslab.quality_focal_loss(x[~drop], t[~drop], reduction="sum")
        torch.testing.assert_close(total, kept, **TOLERANCES[F64])

    @pytest.mark.parametrize("junk", [float("nan"), 7.0, -3.0, float("inf")])
    def test_ignore_index_pair_drops_whole_positions_and_their_scores(self, junk):
        x, labels, scores = pair_sample(n=10, c=3, seed=22)
        drop = torch.zeros(10, dtype=torch.bool)
        drop[[2, 5, 6]] = True
        labels = torch.where(drop, torch.full_like(labels, -100), labels)
        scores = torch.where(drop, torch.full_like(scores, junk), scores)
        clean = torch.where(drop, torch.zeros_like(scores), scores)
        for reduction in REDUCTIONS:
            out, grad = value_and_grad(losslab.quality_focal_loss, x, (labels, scores), ignore_index=-100,
                                       reduction=reduction)
            assert_finite(out, grad)
            assert torch.all(grad[drop] == 0)
            if reduction == "none":
                assert torch.all(out[drop] == 0)
            # whatever the ignored scores hold, the loss is that of any valid score there
            assert_equal((out, grad), value_and_grad(losslab.quality_focal_loss, x, (labels, clean),
                                                     ignore_index=-100, reduction=reduction))
        # the mean's denominator is the kept elements: C per kept position
        mean = losslab.quality_focal_loss(x, (labels, scores), ignore_index=-100)
        total = losslab.quality_focal_loss(x, (labels, scores), ignore_index=-100, reduction="sum")
        torch.testing.assert_close(mean, total / (3 * 7), **TOLERANCES[F64])

    def test_ignore_index_may_be_a_class_index(self):
        x, labels, scores = pair_sample(n=8, c=3, seed=23)
        keep = labels != 1
        out = losslab.quality_focal_loss(x, (labels, scores), ignore_index=1, reduction="none")
        assert torch.all(out[~keep] == 0)
        expected = losslab.quality_focal_loss(x[keep], (labels[keep], scores[keep]), reduction="none")
        torch.testing.assert_close(out[keep], expected, **TOLERANCES[F64])

    # saturation and precision ----------------------------------------------------

    @pytest.mark.parametrize("beta", [0.3, 2.0])
    @pytest.mark.parametrize("dtype", [torch.float32, F64])
    def test_saturated_logits_with_soft_targets(self, dtype, beta):
        m = 1e4
        x = torch.tensor([m, -m, m, -m, m, -m], dtype=dtype)
        y = torch.tensor([0.3, 0.3, 1.0, 0.0, 0.0, 1.0], dtype=dtype)
        out, grad = value_and_grad(losslab.quality_focal_loss, x, y, beta=beta, reduction="none")
        assert out.dtype == dtype and grad.dtype == dtype
        assert_finite(out, grad)
        # matching hard targets: loss and gradient vanish
        assert torch.all(out[2:4].abs() <= 1e-18) and torch.all(grad[2:4].abs() <= 1e-18)
        # otherwise |y - sigma|^beta (BCE = |x| times the wrong side's weight), gradient |y - sigma|^beta (sigma - y)
        expected = torch.tensor([0.7 ** beta * 0.7 * m, 0.3 ** beta * 0.3 * m, m, m], dtype=F64)
        torch.testing.assert_close(out[[0, 1, 4, 5]].double(), expected, rtol=1e-6, atol=0)
        upstream = torch.linspace(0.5, 1.5, 6, dtype=F64)[[0, 1, 4, 5]]
        slope = torch.tensor([0.7 ** beta * 0.7, -(0.3 ** beta) * 0.3, 1.0, -1.0], dtype=F64)
        torch.testing.assert_close(grad[[0, 1, 4, 5]].double(), upstream * slope, rtol=1e-6, atol=0)

    @pytest.mark.parametrize("dtype", HALF)
    def test_half_precision_inputs(self, dtype):
        x = torch.tensor([[1e4, -1e4, 3.0], [-60.0, 12.0, 0.5], [-1e4, 1e4, -2.0]], dtype=dtype)
        labels, scores = torch.tensor([0, 3, 1]), torch.tensor([0.6, 0.0, 1.0], dtype=dtype)
        for beta in (0.3, 2.0):
            for reduction in REDUCTIONS:
                out, grad = value_and_grad(losslab.quality_focal_loss, x, (labels, scores), beta=beta,
                                           reduction=reduction)
                assert out.dtype == dtype and grad.dtype == dtype
                assert_finite(out, grad)
                expected = losslab.quality_focal_loss(x.float(), (labels, scores.float()), beta=beta,
                                                      reduction=reduction)
                torch.testing.assert_close(out.float(), expected, **TOLERANCES[dtype])

    # module ---------------------------------------------------------------------

    def test_module_per_call_overrides(self):
        x, labels, scores = pair_sample(seed=24)
        module = losslab.QualityFocalLoss(beta=0.5)
        w = torch.rand(12, 1, generator=gen(25), dtype=F64)
        for overrides in ({"avg_factor": 3.0}, {"avg_factor": torch.tensor(3.0, dtype=F64), "weight": w},
                          {"reduction": "none"}, {"beta": 2.0, "reduction": "sum"}):
            assert_equal(value_and_grad(module, x, (labels, scores), **overrides),
                         value_and_grad(losslab.quality_focal_loss, x, (labels, scores),
                                        **{"beta": 0.5, **overrides}))
        # an override lasts one call
        assert_equal(value_and_grad(module, x, (labels, scores)),
                     value_and_grad(losslab.quality_focal_loss, x, (labels, scores), beta=0.5))
        with pytest.raises(TypeError, match=r"QualityFocalLoss\.forward: unexpected keyword argument\(s\) "
                                            r"'num_total_pos'; expected some of beta, "):
            module(x, (labels, scores), num_total_pos=3.0)
        with pytest.raises(ValueError, match=r"quality_focal_loss: beta must be a finite number in \[0, inf\)"):
            losslab.QualityFocalLoss(beta=-0.5)

    # invariants -----------------------------------------------------------------

    @given(x=st.lists(st.floats(-1e4, 1e4), min_size=1, max_size=12),
           y=st.lists(st.floats(0.0, 1.0), min_size=12, max_size=12), beta=st.floats(0.0, 4.0))
    def test_nonnegative_below_bce_and_zero_only_where_sigma_is_y(self, x, y, beta):
        xt, yt = torch.tensor(x, dtype=F64), torch.tensor(y[:len(x)], dtype=F64)
        out, grad = value_and_grad(losslab.quality_focal_loss, xt, yt, beta=beta, reduction="none")
        bce = losslab.binary_cross_entropy(xt, yt, reduction="none")  # torch's loses digits at |x| ~ 17
        assert_finite(out, grad)
        assert torch.all(out >= 0)
        assert torch.all(out <= bce * (1 + 1e-12) + 1e-300)  # |y - sigma|^beta <= 1
        # away from underflow (|x| <= 30) the loss is 0 only where sigma == y
        moderate = xt.abs() <= 30
        zero = moderate & (out == 0)
        assert torch.all((yt - torch.sigmoid(xt)).abs()[zero] <= 1e-12)

    @given(y=st.floats(0.01, 0.99), beta=st.floats(0.5, 4.0), delta=st.floats(0.05, 5.0),
           side=st.sampled_from([-1.0, 1.0]))
    def test_minimum_at_sigma_equal_y(self, y, beta, delta, side):
        x_star = math.log(y) - math.log1p(-y)  # sigma(x*) = y
        xs = torch.tensor([x_star, x_star + side * delta], dtype=F64)
        yt = torch.full((2,), y, dtype=F64)
        out, grad = value_and_grad(losslab.quality_focal_loss, xs, yt, beta=beta, reduction="none")
        assert_finite(out, grad)
        bce = losslab.binary_cross_entropy(xs, yt, reduction="none")
        assert out[0] <= 1e-6 * bce[0]  # |y - sigma| is a rounding error at x*
        assert out[1] > out[0]


# ----------------------------------------------------------------------------


class TestVarifocalLoss:
    # against mmdetection ---------------------------------------------------------

    @pytest.mark.parametrize("iou_weighted", [True, False])
    @pytest.mark.parametrize("alpha,gamma", [(0.75, 2.0), (0.25, 0.5), (1.0, 0.0), (0.5, 3.0)])
    def test_matches_mmdetection(self, alpha, gamma, iou_weighted):
        x, q = logits(10, 4, seed=30), soft_dense(10, 4, seed=31)
        q[0, 0], q[1, 1] = 1.0, 0.0
        kw = {"alpha": alpha, "gamma": gamma, "iou_weighted": iou_weighted}
        elementwise = torch.rand(10, 4, generator=gen(32), dtype=F64)
        anchors = torch.rand(10, 1, generator=gen(33), dtype=F64)
        for reduction in REDUCTIONS:
            for extra in ({}, {"weight": elementwise}, {"weight": anchors}, {"avg_factor": 6.5},
                          {"weight": elementwise, "avg_factor": 2.0}):
                # with "sum" mmdetection raises on an avg_factor; losslab ignores it
                peer = {k: v for k, v in extra.items() if reduction != "sum" or k != "avg_factor"}
                assert_same(value_and_grad(losslab.varifocal_loss, x, q, reduction=reduction, **kw, **extra),
                            value_and_grad(mmdet_varifocal_loss, x, q, reduction=reduction, **kw, **peer))

    def test_pair_target_equals_the_dense_target_built_from_it(self):
        x, labels, scores = pair_sample(n=10, c=3, seed=34)
        dense = dense_from_pair(labels, scores, 3)
        for iou_weighted in (True, False):
            for reduction in REDUCTIONS:
                assert_same(value_and_grad(losslab.varifocal_loss, x, (labels, scores), iou_weighted=iou_weighted,
                                           reduction=reduction),
                            value_and_grad(losslab.varifocal_loss, x, dense, iou_weighted=iou_weighted,
                                           reduction=reduction))
                assert_same(value_and_grad(losslab.varifocal_loss, x, (labels, scores), iou_weighted=iou_weighted,
                                           reduction=reduction),
                            value_and_grad(mmdet_varifocal_loss, x, dense, iou_weighted=iou_weighted,
                                           reduction=reduction))

    # equivalences ----------------------------------------------------------------

    @pytest.mark.parametrize("iou_weighted", [True, False])
    @pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
    @pytest.mark.parametrize("alpha", [0.25, 0.75])
    def test_binary_targets_are_bce_on_positives_and_alpha_focal_on_negatives(self, alpha, gamma, iou_weighted):
        x = logits(7, 3, 2, seed=35)
        q = (torch.rand(7, 3, 2, generator=gen(36)) < 0.4).to(F64)

        def split(z):
            bce = losslab.binary_cross_entropy(z, q, reduction="none")
            focal = losslab.sigmoid_focal_loss(z, q, alpha=None, gamma=gamma, reduction="none")
            return torch.where(q > 0, bce, alpha * focal)

        assert_same(value_and_grad(losslab.varifocal_loss, x, q, alpha=alpha, gamma=gamma, iou_weighted=iou_weighted,
                                   reduction="none"),
                    value_and_grad(split, x))

    @pytest.mark.parametrize("gamma", [0.5, 2.0])
    def test_iou_weighted_scales_positives_by_q(self, gamma):
        x, q = logits(8, 5, seed=37), soft_dense(8, 5, seed=38)

        def weighted_by_hand(z):
            plain = losslab.varifocal_loss(z, q, gamma=gamma, iou_weighted=False, reduction="none")
            return torch.where(q > 0, q * plain, plain)

        assert_same(value_and_grad(losslab.varifocal_loss, x, q, gamma=gamma, reduction="none"),
                    value_and_grad(weighted_by_hand, x))
        # negatives do not depend on iou_weighted at all
        neg = q == 0
        a = losslab.varifocal_loss(x, q, gamma=gamma, reduction="none")
        b = losslab.varifocal_loss(x, q, gamma=gamma, iou_weighted=False, reduction="none")
        assert torch.equal(a[neg], b[neg])

    def test_positives_are_not_focused(self):
        # the positives' loss does not depend on alpha or gamma (only negatives are down-weighted)
        x, q = logits(6, 4, seed=39), soft_dense(6, 4, seed=40)
        pos = q > 0
        a = losslab.varifocal_loss(x, q, alpha=0.1, gamma=0.0, reduction="none")
        b = losslab.varifocal_loss(x, q, alpha=0.9, gamma=4.0, reduction="none")
        assert torch.equal(a[pos], b[pos])
        assert not torch.equal(a[~pos], b[~pos])

    # saturation and precision ----------------------------------------------------

    @pytest.mark.parametrize("gamma", [0.3, 0.5, 2.0])
    @pytest.mark.parametrize("dtype", [torch.float32, F64])
    def test_saturated_logits(self, dtype, gamma):
        m, alpha = 1e4, 0.75
        x = torch.tensor([m, -m, m, -m, m, -m], dtype=dtype)
        q = torch.tensor([0.0, 0.0, 0.6, 0.6, 1.0, 1.0], dtype=dtype)
        for iou_weighted in (True, False):
            out, grad = value_and_grad(losslab.varifocal_loss, x, q, alpha=alpha, gamma=gamma,
                                       iou_weighted=iou_weighted, reduction="none")
            assert out.dtype == dtype and grad.dtype == dtype
            assert_finite(out, grad)
            assert torch.all(out[[1, 4]].abs() <= 1e-18) and torch.all(grad[[1, 4]].abs() <= 1e-18)
            qw = 0.6 if iou_weighted else 1.0
            expected = torch.tensor([alpha * m, qw * 0.4 * m, qw * 0.6 * m, m], dtype=F64)
            torch.testing.assert_close(out[[0, 2, 3, 5]].double(), expected, rtol=1e-6, atol=0)
            upstream = torch.linspace(0.5, 1.5, 6, dtype=F64)[[0, 2, 3, 5]]
            slope = torch.tensor([alpha, qw * 0.4, -qw * 0.6, -1.0], dtype=F64)
            torch.testing.assert_close(grad[[0, 2, 3, 5]].double(), upstream * slope, rtol=1e-6, atol=0)

    @pytest.mark.parametrize("dtype", HALF)
    def test_half_precision_inputs(self, dtype):
        x = torch.tensor([[1e4, -1e4, 3.0], [-60.0, 12.0, 0.5], [-1e4, 1e4, -2.0]], dtype=dtype)
        q = torch.tensor([[0.0, 0.0, 0.7], [0.3, 0.0, 0.0], [1.0, 0.0, 0.0]], dtype=dtype)
        for gamma in (0.5, 2.0):
            for reduction in REDUCTIONS:
                out, grad = value_and_grad(losslab.varifocal_loss, x, q, gamma=gamma, reduction=reduction)
                assert out.dtype == dtype and grad.dtype == dtype
                assert_finite(out, grad)
                expected = losslab.varifocal_loss(x.float(), q.float(), gamma=gamma, reduction=reduction)
                torch.testing.assert_close(out.float(), expected, **TOLERANCES[dtype])

    # module ---------------------------------------------------------------------

    def test_module_per_call_overrides(self):
        x, q = logits(5, 3, seed=41), soft_dense(5, 3, seed=42)
        module = losslab.VarifocalLoss(alpha=0.5)
        for overrides in ({"avg_factor": 2.0}, {"iou_weighted": False, "reduction": "sum"},
                          {"weight": torch.tensor([1.0, 0.0, 2.0], dtype=F64)}):
            assert_equal(value_and_grad(module, x, q, **overrides),
                         value_and_grad(losslab.varifocal_loss, x, q, **{"alpha": 0.5, **overrides}))
        with pytest.raises(TypeError, match=r"VarifocalLoss\.forward: unexpected keyword argument\(s\) "
                                            r"'ignore_index', 'reduction_override'"):
            module(x, q, ignore_index=-1, reduction_override="sum")
        with pytest.raises(TypeError, match=r"varifocal_loss: iou_weighted must be a bool; got 1 \(int\)"):
            losslab.VarifocalLoss(iou_weighted=1)

    # invariants -----------------------------------------------------------------

    @given(x=st.lists(st.floats(-1e4, 1e4), min_size=1, max_size=10),
           q=st.lists(st.one_of(st.just(0.0), st.floats(0.0, 1.0)), min_size=10, max_size=10),
           alpha=st.floats(0.0, 1.0), gamma=st.floats(0.0, 4.0), iou_weighted=st.booleans())
    def test_nonnegative_finite_and_below_bce(self, x, q, alpha, gamma, iou_weighted):
        xt, qt = torch.tensor(x, dtype=F64), torch.tensor(q[:len(x)], dtype=F64)
        out, grad = value_and_grad(losslab.varifocal_loss, xt, qt, alpha=alpha, gamma=gamma,
                                   iou_weighted=iou_weighted, reduction="none")
        assert_finite(out, grad)
        assert torch.all(out >= 0)
        bce = losslab.binary_cross_entropy(xt, qt, reduction="none")
        bound = torch.where(qt > 0, qt if iou_weighted else torch.ones_like(qt), torch.full_like(qt, alpha)) * bce
        assert torch.all(out <= bound * (1 + 1e-12) + 1e-300)


# ----------------------------------------------------------------------------


class TestDistributionFocalLoss:
    # against mmdetection ---------------------------------------------------------

    def test_matches_mmdetection(self):
        x, y = dfl_sample(seed=50)
        w = torch.rand(10, generator=gen(51), dtype=F64)

        def peer(z, **kw):
            return mmdet_weight_reduce_loss(mmdet_distribution_focal_loss(z, y), **kw)

        for reduction in REDUCTIONS:
            for extra in ({}, {"weight": w}, {"avg_factor": 4.0}, {"weight": w, "avg_factor": 0.5}):
                ours = value_and_grad(losslab.distribution_focal_loss, x, y, reduction=reduction, **extra)
                kw = {k: v for k, v in extra.items() if reduction != "sum" or k != "avg_factor"}  # mmdet raises
                assert_same(ours, value_and_grad(peer, x, reduction=reduction, **kw))

    def test_matches_mmdetection_with_leading_dimensions(self):
        # GFL flattens (N, 4, reg_max + 1) to (N * 4, reg_max + 1); losslab takes the bins as the last dim
        x = logits(3, 4, 8, seed=52)
        y = (torch.rand(3, 4, generator=gen(53), dtype=F64) * 7).clamp_max(6.99)
        assert_same(value_and_grad(lambda z: losslab.distribution_focal_loss(z, y, reduction="none").reshape(-1), x),
                    value_and_grad(lambda z: mmdet_distribution_focal_loss(z.reshape(-1, 8), y.reshape(-1)), x))

    # equivalences and the last bin -------------------------------------------------

    def test_integer_target_is_cross_entropy(self):
        x = logits(7, 5, seed=54)
        k = torch.tensor([0, 1, 2, 3, 4, 4, 0])  # includes n_bins - 1
        for reduction in REDUCTIONS:
            expected = value_and_grad(F.cross_entropy, x, k, reduction=reduction)
            assert_same(value_and_grad(losslab.distribution_focal_loss, x, k.to(F64), reduction=reduction), expected)
            # an integer-dtype target is the same distance
            assert_same(value_and_grad(losslab.distribution_focal_loss, x, k, reduction=reduction), expected)

    def test_target_at_the_last_bin(self):
        x = logits(4, 6, seed=55)
        y = torch.full((4,), 5.0, dtype=F64)
        out, grad = value_and_grad(losslab.distribution_focal_loss, x, y, reduction="none")
        assert_finite(out, grad)
        torch.testing.assert_close(out, -torch.log_softmax(x, -1)[:, 5], **TOLERANCES[F64])
        upstream = torch.linspace(0.5, 1.5, 4, dtype=F64)[:, None]
        torch.testing.assert_close(grad, upstream * (torch.softmax(x, -1) - F.one_hot(torch.tensor([5] * 4), 6)),
                                   **TOLERANCES[F64])
        # and just below it, the limit is continuous
        below = losslab.distribution_focal_loss(x, y - 1e-9, reduction="none")
        torch.testing.assert_close(below, out, rtol=1e-7, atol=1e-7)

    def test_two_bins_and_a_single_position(self):
        x = torch.tensor([0.3, -1.2], dtype=F64)  # (n_bins,) logits, a 0-d target
        y = torch.tensor(0.25, dtype=F64)
        out = losslab.distribution_focal_loss(x, y, reduction="none")
        assert out.shape == ()
        log_s = torch.log_softmax(x, -1)
        torch.testing.assert_close(out, -(0.75 * log_s[0] + 0.25 * log_s[1]), **TOLERANCES[F64])

    def test_weight_broadcasts_to_the_target_shape(self):
        x = logits(3, 4, 8, seed=56)
        y = torch.rand(3, 4, generator=gen(57), dtype=F64) * 7
        edge = torch.tensor([1.0, 0.5, 0.0, 2.0], dtype=F64)  # per edge, broadcast over boxes
        box = torch.rand(3, 1, generator=gen(58), dtype=F64)  # per box (GFL's quality score)
        plain = losslab.distribution_focal_loss(x, y, reduction="none")
        for w in (edge, box, 2.5):
            for reduction in REDUCTIONS:
                expected = plain * (w if isinstance(w, float) else w.expand(3, 4))
                expected = {"none": expected, "sum": expected.sum(), "mean": expected.sum() / 12}[reduction]
                torch.testing.assert_close(losslab.distribution_focal_loss(x, y, weight=w, reduction=reduction),
                                           expected, **TOLERANCES[F64])

    def test_unchecked_out_of_range_targets_stay_in_bounds(self):
        # with value checks off, the bin indices are clamped: no out-of-bounds gather
        x = logits(3, 5, seed=59)
        y = torch.tensor([-0.5, 4.5, 9.0], dtype=F64)
        losslab.set_checks(False)
        out, grad = value_and_grad(losslab.distribution_focal_loss, x, y, reduction="none")
        assert_finite(out, grad)

    def test_unchecked_nan_target_stays_in_bounds(self):
        x = logits(3, 5, seed=59)
        y = torch.tensor([0.5, float("nan"), 1.0], dtype=F64)
        losslab.set_checks(False)
        out = losslab.distribution_focal_loss(x, y, reduction="none")
        assert torch.isfinite(out[[0, 2]]).all()  # the NaN position may be NaN; the others are untouched

    # saturation and precision ----------------------------------------------------

    @pytest.mark.parametrize("dtype", [torch.float32, F64])
    def test_saturated_logits(self, dtype):
        m = 1e4
        x = torch.tensor([[m, -m, -m, -m], [m, -m, -m, -m], [-m, -m, m, -m], [-m, m, m, -m], [-m, -m, -m, m]],
                         dtype=dtype)
        y = torch.tensor([0.0, 0.5, 1.0, 1.5, 3.0], dtype=dtype)
        out, grad = value_and_grad(losslab.distribution_focal_loss, x, y, reduction="none")
        assert out.dtype == dtype and grad.dtype == dtype
        assert_finite(out, grad)
        expected = torch.tensor([0.0, m, 2 * m, math.log(2.0), 0.0], dtype=F64)
        torch.testing.assert_close(out.double(), expected, rtol=1e-6, atol=1e-6)
        assert torch.all(grad[[0, 4]] == 0)

    @pytest.mark.parametrize("dtype", HALF)
    def test_half_precision_inputs(self, dtype):
        x = torch.tensor([[1e4, -1e4, 0.0, 2.0], [3.0, 1.0, -2.0, 0.5], [0.0, 0.0, 0.0, 0.0]], dtype=dtype)
        y = torch.tensor([0.5, 3.0, 1.25], dtype=dtype)
        for reduction in REDUCTIONS:
            out, grad = value_and_grad(losslab.distribution_focal_loss, x, y, reduction=reduction)
            assert out.dtype == dtype and grad.dtype == dtype
            assert_finite(out, grad)
            expected = losslab.distribution_focal_loss(x.float(), y.float(), reduction=reduction)
            torch.testing.assert_close(out.float(), expected, **TOLERANCES[dtype])

    # module ---------------------------------------------------------------------

    def test_module_per_call_overrides(self):
        x, y = dfl_sample(seed=60, last=True)
        module = losslab.DistributionFocalLoss(avg_factor=2.0)
        w = torch.rand(10, generator=gen(61), dtype=F64)
        for overrides in ({}, {"avg_factor": 5.0}, {"weight": w, "avg_factor": None}, {"reduction": "none"}):
            assert_equal(value_and_grad(module, x, y, **overrides),
                         value_and_grad(losslab.distribution_focal_loss, x, y, **{"avg_factor": 2.0, **overrides}))
        with pytest.raises(TypeError, match=r"DistributionFocalLoss\.forward: unexpected keyword argument\(s\) "
                                            r"'loss_weight'"):
            module(x, y, loss_weight=0.25)

    # invariants -----------------------------------------------------------------

    @given(data=st.data(), n=st.integers(2, 9))
    def test_at_least_the_entropy_of_the_two_bin_target_which_is_reached(self, data, n):
        y = data.draw(st.one_of(st.floats(0.0, n - 1.0), st.integers(0, n - 1).map(float)))
        z = torch.tensor(data.draw(st.lists(st.floats(-100.0, 100.0), min_size=n, max_size=n)), dtype=F64)
        left = min(math.floor(y), n - 2)
        w_left, w_right = left + 1 - y, y - left
        entropy = -sum(w * math.log(w) for w in (w_left, w_right) if w > 0)
        yt = torch.tensor(y, dtype=F64)
        out, grad = value_and_grad(losslab.distribution_focal_loss, z, yt, reduction="none")
        assert_finite(out, grad)
        assert out.item() >= entropy - 1e-9
        # the minimiser: the two-bin target itself as a softmax (log 0 -> a very negative logit)
        best = torch.full((n,), -1e4, dtype=F64)
        for i, w in ((left, w_left), (left + 1, w_right)):
            if w > 0:
                best[i] = math.log(w)
        out, grad = value_and_grad(losslab.distribution_focal_loss, best, yt, reduction="none")
        assert_finite(out, grad)
        assert abs(out.item() - entropy) <= 1e-9
        assert torch.all(grad.abs() <= 1e-9)


# ----------------------------------------------------------------------------
# avg_factor, shared by the new losses and the two sigmoid losses that gained it


def _qfl():
    x, labels, scores = pair_sample(seed=70)
    return losslab.quality_focal_loss, "quality_focal_loss", x, (labels, scores)


def _vfl():
    return losslab.varifocal_loss, "varifocal_loss", logits(6, 4, seed=71), soft_dense(6, 4, seed=72)


def _dfl():
    x, y = dfl_sample(seed=73, last=True)
    return losslab.distribution_focal_loss, "distribution_focal_loss", x, y


def _bce():
    return (losslab.binary_cross_entropy, "binary_cross_entropy", logits(5, 3, seed=74),
            torch.rand(5, 3, generator=gen(75), dtype=F64))


def _sfl():
    return (losslab.sigmoid_focal_loss, "sigmoid_focal_loss", logits(5, 3, 2, seed=76),
            class_indices((5, 2), 4, seed=77))


AVG_LOSSES = {"qfl": _qfl, "vfl": _vfl, "dfl": _dfl, "bce": _bce, "sfl": _sfl}


@pytest.mark.parametrize("make", AVG_LOSSES.values(), ids=AVG_LOSSES.keys())
class TestAvgFactor:
    @pytest.mark.parametrize("kind", ["float", "int", "numpy", "0-d", "1-element", "1x1", "int-tensor"])
    def test_mean_divides_the_sum_by_it(self, make, kind):
        fn, _, x, t = make()
        factor = {"float": 3.0, "int": 3, "numpy": np.float32(3.0), "0-d": torch.tensor(3.0, dtype=F64),
                  "1-element": torch.tensor([3.0]), "1x1": torch.tensor([[3.0]], dtype=F64),
                  "int-tensor": torch.tensor(3)}[kind]
        total = value_and_grad(fn, x, t, reduction="sum")
        assert_same(value_and_grad(fn, x, t, avg_factor=factor), (total[0] / 3, total[1] / 3))

    def test_zero_divides_by_one(self, make):
        fn, _, x, t = make()
        total = value_and_grad(fn, x, t, reduction="sum")
        for zero in (0, 0.0, torch.tensor(0.0, dtype=F64), torch.tensor([0.0])):
            assert_equal(value_and_grad(fn, x, t, avg_factor=zero), total)

    def test_sum_and_none_ignore_it(self, make):
        fn, _, x, t = make()
        for reduction in ("sum", "none"):
            plain = value_and_grad(fn, x, t, reduction=reduction)
            for factor in (7.0, torch.tensor(0.5, dtype=F64), 0.0):
                assert_equal(value_and_grad(fn, x, t, reduction=reduction, avg_factor=factor), plain)

    def test_a_tensor_that_requires_grad(self, make):
        fn, _, x, t = make()
        factor = torch.tensor(2.5, dtype=F64, requires_grad=True)
        results = []
        for avg in (factor, 2.5):
            xg = x.clone().requires_grad_(True)
            out = fn(xg, t, avg_factor=avg)
            out.backward()
            results.append((out.detach(), xg.grad))
        assert_same(*results)
        assert factor.grad is None or torch.isfinite(factor.grad).all()

    @pytest.mark.parametrize("bad", [-1.0, -1, torch.tensor(-1.0), torch.tensor([-1.0], dtype=F64)],
                             ids=["float", "int", "0-d", "1-element"])
    def test_negative_is_an_error(self, make, bad):
        fn, name, x, t = make()
        with pytest.raises(ValueError, match=rf"{name}: avg_factor must be a finite number in \[0, inf\); got -1"):
            fn(x, t, avg_factor=bad)

    @pytest.mark.parametrize("bad", [float("nan"), float("inf"), torch.tensor(float("nan"))], ids=["nan", "inf", "t"])
    def test_non_finite_is_an_error(self, make, bad):
        fn, name, x, t = make()
        with pytest.raises(ValueError, match=rf"{name}: avg_factor must be a finite number in \[0, inf\)"):
            fn(x, t, avg_factor=bad)

    @pytest.mark.parametrize("bad", [torch.tensor([1.0, 2.0]), True, "3", [3.0]], ids=["2-element", "bool", "str",
                                                                                      "list"])
    def test_wrong_type_is_an_error(self, make, bad):
        fn, name, x, t = make()
        with pytest.raises(TypeError, match=rf"{name}: avg_factor must be None, a number >= 0 or a one-element "
                                            r"tensor; got "):
            fn(x, t, avg_factor=bad)

    def test_a_tensor_on_another_device_is_an_error(self, make):
        fn, name, x, t = make()
        meta = x.to("meta")
        target = tuple(v.to("meta") for v in t) if isinstance(t, tuple) else t.to("meta")
        with pytest.raises(ValueError, match=rf"{name}: avg_factor must be on the input's device \(meta\); "
                                             r"got a tensor on cpu"):
            fn(meta, target, avg_factor=torch.tensor(2.0))


# ----------------------------------------------------------------------------


def torchvision_sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2.0):
    """torchvision.ops.sigmoid_focal_loss with reduction="none"."""
    p = torch.sigmoid(inputs)
    ce_loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return alpha_t * loss


class TestSigmoidFocalLossWeight:
    @pytest.mark.parametrize("form", ["per-class", "per-anchor", "elementwise", "scalar"])
    def test_weight_multiplies_each_element(self, form):
        x = logits(6, 3, 4, seed=80, scale=2.0)
        t = (torch.rand(6, 3, 4, generator=gen(81)) < 0.3).to(F64)
        if form == "per-class":
            w, full = torch.tensor([0.5, 2.0, 0.0], dtype=F64), torch.tensor([0.5, 2.0, 0.0], dtype=F64)[:, None]
        elif form == "per-anchor":
            w = torch.rand(6, 1, 1, generator=gen(82), dtype=F64)
            full = w
        elif form == "elementwise":
            w = torch.rand(6, 3, 4, generator=gen(82), dtype=F64)
            full = w
        else:
            w, full = 1.5, 1.5

        def expected(z, reduction):
            loss = torchvision_sigmoid_focal_loss(z, t) * full
            return {"none": loss, "sum": loss.sum(), "mean": loss.sum() / loss.numel()}[reduction]

        for reduction in REDUCTIONS:
            assert_same(value_and_grad(losslab.sigmoid_focal_loss, x, t, weight=w, reduction=reduction),
                        value_and_grad(expected, x, reduction=reduction))
        # with avg_factor, the weighted sum over it
        assert_same(value_and_grad(losslab.sigmoid_focal_loss, x, t, weight=w, avg_factor=5.0),
                    value_and_grad(lambda z: (torchvision_sigmoid_focal_loss(z, t) * full).sum() / 5.0, x))

    def test_per_anchor_weight_on_2d_input(self):
        x, t = logits(5, 3, seed=83), (torch.rand(5, 3, generator=gen(84)) < 0.4).to(F64)
        w = torch.rand(5, 1, generator=gen(85), dtype=F64)
        assert_same(value_and_grad(losslab.sigmoid_focal_loss, x, t, weight=w, reduction="none"),
                    value_and_grad(lambda z: torchvision_sigmoid_focal_loss(z, t) * w, x))

    def test_index_form_with_weight_and_ignore(self):
        x = logits(6, 3, seed=86)
        t = torch.tensor([0, 3, -1, 2, 1, -1])
        w = torch.tensor([1.0, 0.5, 2.0], dtype=F64)
        dense = F.one_hot(t.clamp_min(0), 4)[:, :3].to(F64)
        keep = (t != -1)[:, None].expand(6, 3)
        out, grad = value_and_grad(losslab.sigmoid_focal_loss, x, t, weight=w, ignore_index=-1)
        expected = value_and_grad(lambda z: torch.where(keep, torchvision_sigmoid_focal_loss(z, dense) * w, 0.0).sum()
                                  / keep.sum(), x)
        assert_same((out, grad), expected)

    def test_module_stores_the_weight(self):
        x, t = logits(4, 3, seed=87), (torch.rand(4, 3, generator=gen(88)) < 0.4).to(F64)
        module = losslab.SigmoidFocalLoss(weight=[1.0, 2.0, 0.5])
        assert_equal(value_and_grad(module, x, t, avg_factor=2.0),
                     value_and_grad(losslab.sigmoid_focal_loss, x, t, weight=[1.0, 2.0, 0.5], avg_factor=2.0))

    def test_weight_errors(self):
        x, t = logits(4, 3, seed=89), (torch.rand(4, 3, generator=gen(90)) < 0.4).to(F64)
        with pytest.raises(ValueError, match=r"sigmoid_focal_loss: weight must broadcast to the input's shape "
                                             r"\(4, 3\) or \(3,\) along the class dimension; got \(4,\)"):
            losslab.sigmoid_focal_loss(x, t, weight=torch.ones(4, dtype=F64))
        with pytest.raises(ValueError, match=r"sigmoid_focal_loss: weight must be finite and non-negative; "
                                             r"got \[1\.0, -1\.0, 1\.0\]"):
            losslab.sigmoid_focal_loss(x, t, weight=torch.tensor([1.0, -1.0, 1.0], dtype=F64))


# ----------------------------------------------------------------------------
# errors beyond the registered ones (src/losslab/detection.py)

_X = logits(4, 3, seed=95)
_LABELS, _SCORES = torch.tensor([0, 1, 3, 2]), torch.rand(4, generator=gen(96), dtype=F64)
_Q = soft_dense(4, 3, seed=97)
_BINS = logits(3, 5, seed=98)
_Y = torch.tensor([0.5, 1.0, 4.0], dtype=F64)

ERRORS = [
    # quality_focal_loss
    ("qfl-dense-above-1", losslab.quality_focal_loss, _X, _Q + 1.0, {}, ValueError,
     r"quality_focal_loss: target must lie in \[0, 1\]; got a value of 1\."),
    ("qfl-dense-nan", losslab.quality_focal_loss, _X, torch.where(_Q > 0, torch.nan, _Q), {}, ValueError,
     r"quality_focal_loss: target must lie in \[0, 1\]; got a value of nan"),
    ("qfl-pair-1d-input", losslab.quality_focal_loss, _X[:, 0], (_LABELS, _SCORES), {}, ValueError,
     r"quality_focal_loss: input must have shape \(N, C\) or \(N, C, d1, \.\.\., dk\) with a \(labels, scores\) "
     r"target; got \(4,\)"),
    ("qfl-pair-labels-shape", losslab.quality_focal_loss, _X, (_LABELS[:3], _SCORES), {}, ValueError,
     r"quality_focal_loss: target labels must have shape \(4,\) \(the input's shape without dim 1\); got \(3,\)"),
    ("qfl-pair-int-scores", losslab.quality_focal_loss, _X, (_LABELS, _LABELS), {}, TypeError,
     r"quality_focal_loss: target scores must be floating point; got dtype torch\.int64"),
    ("qfl-pair-bool-labels", losslab.quality_focal_loss, _X, (_LABELS > 0, _SCORES), {}, TypeError,
     r"quality_focal_loss: target labels must be integer class indices; got dtype torch\.bool"),
    ("qfl-pair-nan-score-kept", losslab.quality_focal_loss, _X,
     (_LABELS, torch.tensor([0.5, float("nan"), 0.2, 0.1], dtype=F64)), {}, ValueError,
     r"quality_focal_loss: target scores must lie in \[0, 1\]; got a value of nan"),
    ("qfl-pair-negative-label", losslab.quality_focal_loss, _X, (torch.tensor([0, -1, 3, 2]), _SCORES),
     {"ignore_index": -100}, ValueError,
     r"quality_focal_loss: target class indices must be in \[0, 4\) \(index 3 is background\) or ignore_index=-100;"
     r" got -1"),
    ("qfl-float-labels-alone", losslab.quality_focal_loss, _X, _LABELS.double(), {}, TypeError,
     r"quality_focal_loss: a target of shape \(4,\) holds class indices and must have an integer dtype"),
    ("qfl-target-not-a-tensor", losslab.quality_focal_loss, _X, [[0.5] * 3] * 4, {}, TypeError,
     r"quality_focal_loss: target must be a torch\.Tensor; got "),
    ("qfl-bool-ignore-index", losslab.quality_focal_loss, _X, _Q, {"ignore_index": True}, TypeError,
     r"quality_focal_loss: ignore_index must be an int or None; got True \(bool\)"),
    ("qfl-weight-shape", losslab.quality_focal_loss, _X, _Q, {"weight": torch.ones(4, dtype=F64)}, ValueError,
     r"quality_focal_loss: weight must broadcast to the input's shape \(4, 3\) or \(3,\) along the class "
     r"dimension; got \(4,\)"),
    ("qfl-negative-weight", losslab.quality_focal_loss, _X, _Q, {"weight": [1.0, -2.0, 1.0]}, ValueError,
     r"quality_focal_loss: weight must be finite and non-negative; got \[1\.0, -2\.0, 1\.0\]"),
    ("qfl-beta-nan", losslab.quality_focal_loss, _X, _Q, {"beta": float("nan")}, ValueError,
     r"quality_focal_loss: beta must be a finite number in \[0, inf\); got nan"),
    ("qfl-beta-str", losslab.quality_focal_loss, _X, _Q, {"beta": "2"}, TypeError,
     r"quality_focal_loss: beta must be a real number; got '2' \(str\)"),
    ("qfl-reduction", losslab.quality_focal_loss, _X, _Q, {"reduction": "avg"}, ValueError,
     r"quality_focal_loss: reduction must be one of 'none', 'mean', 'sum'; got 'avg'"),
    ("qfl-integer-input", losslab.quality_focal_loss, _X.long(), _Q, {}, TypeError,
     r"quality_focal_loss: input must be a floating-point tensor"),
    # varifocal_loss
    ("vfl-dense-above-1", losslab.varifocal_loss, _X, torch.where(_Q > 0, 1.5, _Q), {}, ValueError,
     r"varifocal_loss: target must lie in \[0, 1\]; got a value of 1\.5"),
    ("vfl-dense-negative", losslab.varifocal_loss, _X, torch.where(_Q > 0, -0.25, _Q), {}, ValueError,
     r"varifocal_loss: target must lie in \[0, 1\]; got a value of -0\.25"),
    ("vfl-dense-shape", losslab.varifocal_loss, _X, _Q[:, :2], {}, ValueError,
     r"varifocal_loss: target must have "),
    ("vfl-gamma", losslab.varifocal_loss, _X, _Q, {"gamma": -1.0}, ValueError,
     r"varifocal_loss: gamma must be a finite number in \[0, inf\); got -1\.0"),
    ("vfl-weight-shape", losslab.varifocal_loss, _X, _Q, {"weight": torch.ones(2, 3, dtype=F64)}, ValueError,
     r"varifocal_loss: weight must broadcast to the input's shape \(4, 3\)"),
    # distribution_focal_loss
    ("dfl-weight-2d", losslab.distribution_focal_loss, _BINS, _Y, {"weight": torch.ones(3, 5, dtype=F64)},
     ValueError, r"distribution_focal_loss: weight must broadcast to the target's shape \(3,\); got \(3, 5\)"),
    ("dfl-negative-weight", losslab.distribution_focal_loss, _BINS, _Y, {"weight": [1.0, -1.0, 0.0]}, ValueError,
     r"distribution_focal_loss: weight must be finite and non-negative; got \[1\.0, -1\.0, 0\.0\]"),
    ("dfl-target-nan", losslab.distribution_focal_loss, _BINS, torch.tensor([0.5, float("nan"), 1.0], dtype=F64),
     {}, ValueError, r"distribution_focal_loss: target must lie in \[0, 4\] \(n_bins - 1\); got nan"),
    ("dfl-target-list", losslab.distribution_focal_loss, _BINS, [0.5, 1.0, 2.0], {}, TypeError,
     r"distribution_focal_loss: target must be a torch\.Tensor; got a list of shape \(3,\)$"),
    ("dfl-0d-input", losslab.distribution_focal_loss, torch.tensor(1.0, dtype=F64), torch.tensor(0.0), {},
     ValueError, r"distribution_focal_loss: input must have shape \(\.\.\., n_bins\); got \(\)"),
    ("dfl-pair-target", losslab.distribution_focal_loss, _BINS, (_Y, _Y), {}, TypeError,
     r"distribution_focal_loss: target must be a torch\.Tensor; got "),
    ("dfl-unknown-keyword", losslab.distribution_focal_loss, _BINS, _Y, {"beta": 2.0}, TypeError,
     r"unexpected keyword argument 'beta'"),
]


@pytest.mark.parametrize("fn,x,t,kwargs,error,message", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_errors_name_the_function_and_argument(fn, x, t, kwargs, error, message):
    with pytest.raises(error, match=message):
        fn(x, t, **kwargs)

