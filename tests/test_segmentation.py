"""Segmentation overlap losses: dice_loss, jaccard_loss and tversky_loss.

What the conformance battery cannot know from its sample cases: empty masks
(an absent class with an empty prediction scores ~0, a false positive on it is
penalised, unlike smp's and kornia's formulas, written out below), perfect hard
predictions, the Tversky equivalences (Dice, Jaccard, the smoothing
convention, the focal power) with gradients, per_image against concatenated
and single images, ignore_index against cutting the positions out, background
and class weights, shapes, parity with MONAI's and smp's formulas (written out
in torch), Hypothesis invariants, error messages, the module twins and the
names of get_loss.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import losslab

from .helpers import TOLERANCES, assert_close_np, assert_same, class_indices, gen, logits, value_and_grad
from .reference import REFERENCES

F64 = torch.float64
MODES = ("binary", "multiclass", "multilabel")
REDUCTIONS = ("none", "mean", "sum")
LOSSES = {"dice": losslab.dice_loss, "jaccard": losslab.jaccard_loss, "tversky": losslab.tversky_loss}
# options that keep a perfect hard prediction at exactly 0
PERFECT_OPTIONS = [("dice", {}), ("dice", {"log_loss": True}), ("dice", {"squared": True}),
                   ("dice", {"squared": True, "log_loss": True}), ("jaccard", {}), ("jaccard", {"log_loss": True}),
                   ("jaccard", {"squared": True, "log_loss": True}), ("tversky", {}),
                   ("tversky", {"alpha": 0.3, "beta": 0.7}), ("tversky", {"alpha": 1.0, "beta": 1.0, "gamma": 2.0})]
PERFECT_IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'default'}" for name, kw in PERFECT_OPTIONS]


# ----------------------------------------------------------------------------
# helpers


def sample(mode: str, *, seed: int = 0, n: int = 2, c: int = 3, spatial: tuple[int, ...] = (4, 5),
           soft: bool = False, ignore: int | None = None, ignored: float = 0.25, scale: float = 3.0):
    """Logits (N, C, *spatial) (C = 1 in "binary") and a target for ``mode``; ``ignore`` marks a fraction of it."""
    c = 1 if mode == "binary" else c
    x = logits(n, c, *spatial, seed=seed, scale=scale)
    if mode == "multiclass":
        return x, class_indices((n, *spatial), c, seed=seed + 1, ignore_index=ignore,
                                ignored=ignored if ignore is not None else 0.0)
    t = torch.rand(n, c, *spatial, generator=gen(seed + 1), dtype=F64)
    if not soft:
        t = (t < 0.4).to(F64)
    if ignore is not None:
        drop = torch.rand(t.shape, generator=gen(seed + 2)) < ignored
        drop.view(-1)[0] = True
        t = torch.where(drop, torch.full_like(t, float(ignore)), t)
    return x, t


def probs(mode: str, x: torch.Tensor) -> torch.Tensor:
    return torch.softmax(x, dim=1) if mode == "multiclass" else torch.sigmoid(x)


def dense(mode: str, t: torch.Tensor, c: int) -> torch.Tensor:
    """The (N, C, *) float target: one-hot of class indices in "multiclass", the mask itself otherwise."""
    return F.one_hot(t, c).movedim(-1, 1).to(F64) if mode == "multiclass" else t


def hard_perfect(mode: str):
    """One-hot probabilities equal to a hard target, with an absent class (and, in binary, an empty image)."""
    if mode == "multiclass":
        t = class_indices((2, 4, 5), 3, seed=3)  # C = 4: class 3 is absent
        return F.one_hot(t, 4).movedim(-1, 1).to(F64), t
    t = (torch.rand(2, 1 if mode == "binary" else 3, 4, 5, generator=gen(4)) < 0.4).to(F64)
    t[1 if mode == "binary" else slice(None), -1] = 0.0  # an empty image (binary), an empty channel (multilabel)
    return t.clone(), t


def finite(*tensors: torch.Tensor) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors)


def smp_style_dice(p: torch.Tensor, t: torch.Tensor, smooth: float = 0.0, eps: float = 1e-7) -> torch.Tensor:
    """Per-class 1 - soft Dice as segmentation_models_pytorch computes it: classes absent from the target get 0."""
    dims = (0, *range(2, p.ndim))
    score = (2.0 * (p * t).sum(dims) + smooth) / ((p + t).sum(dims) + smooth).clamp_min(eps)
    return (1.0 - score) * (t.sum(dims) > 0).to(p.dtype)


def kornia_style_dice(p: torch.Tensor, t: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Per-class 1 - 2 sum(p t) / (sum(p) + sum(t) + eps): eps only in the denominator (kornia.losses.dice_loss)."""
    dims = (0, *range(2, p.ndim))
    return 1.0 - 2.0 * (p * t).sum(dims) / ((p + t).sum(dims) + eps)


def monai_dice_loss(x: torch.Tensor, target: torch.Tensor, *, mode: str, smooth_nr: float, smooth_dr: float,
                    batch: bool, squared_pred: bool = False, jaccard: bool = False, include_background: bool = True,
                    reduction: str = "mean") -> torch.Tensor:
    """monai.losses.DiceLoss.forward (MONAI 1.x) in substance: sigmoid=True, or softmax=True with to_onehot_y."""
    inp = torch.softmax(x, 1) if mode == "multiclass" else torch.sigmoid(x)
    tgt = dense(mode, target, x.shape[1])
    if not include_background:
        inp, tgt = inp[:, 1:], tgt[:, 1:]
    reduce_axis = list(range(2, inp.ndim))
    if batch:
        reduce_axis = [0] + reduce_axis
    intersection = torch.sum(tgt * inp, dim=reduce_axis)
    if squared_pred:
        ground_o, pred_o = torch.sum(tgt ** 2, dim=reduce_axis), torch.sum(inp ** 2, dim=reduce_axis)
    else:
        ground_o, pred_o = torch.sum(tgt, dim=reduce_axis), torch.sum(inp, dim=reduce_axis)
    denominator = ground_o + pred_o
    if jaccard:
        denominator = 2.0 * (denominator - intersection)
    f = 1.0 - (2.0 * intersection + smooth_nr) / (denominator + smooth_dr)
    return {"none": f, "mean": f.mean(), "sum": f.sum()}[reduction]


def smp_soft_dice_score(output, target, smooth=0.0, eps=1e-7, dims=None):
    """segmentation_models_pytorch.losses._functional.soft_dice_score."""
    intersection = torch.sum(output * target, dim=dims)
    cardinality = torch.sum(output + target, dim=dims)
    return (2.0 * intersection + smooth) / (cardinality + smooth).clamp_min(eps)


def smp_soft_jaccard_score(output, target, smooth=0.0, eps=1e-7, dims=None):
    """segmentation_models_pytorch.losses._functional.soft_jaccard_score."""
    intersection = torch.sum(output * target, dim=dims)
    cardinality = torch.sum(output + target, dim=dims)
    union = cardinality - intersection
    return (intersection + smooth) / (union + smooth).clamp_min(eps)


def smp_loss(score_fn, y_pred, y_true, *, mode, smooth=0.0, eps=1e-7, log_loss=False, ignore_index=None):
    """smp's DiceLoss / JaccardLoss forward (from_logits=True): (N, C, -1) views, dims (0, 2), absent classes
    zeroed, then the mean."""
    bs = y_true.size(0)
    y_pred = y_pred.log_softmax(dim=1).exp() if mode == "multiclass" else F.logsigmoid(y_pred).exp()
    num_classes = y_pred.size(1)
    dims = (0, 2)
    if mode == "multiclass":
        y_true = y_true.view(bs, -1)
        y_pred = y_pred.view(bs, num_classes, -1)
        if ignore_index is not None:
            mask = y_true != ignore_index
            y_pred = y_pred * mask.unsqueeze(1)
            y_true = F.one_hot((y_true * mask).to(torch.long), num_classes).permute(0, 2, 1) * mask.unsqueeze(1)
        else:
            y_true = F.one_hot(y_true, num_classes).permute(0, 2, 1)
    else:
        y_true = y_true.view(bs, num_classes, -1)
        y_pred = y_pred.view(bs, num_classes, -1)
        if ignore_index is not None:
            mask = y_true != ignore_index
            y_pred = y_pred * mask
            y_true = y_true * mask
    scores = score_fn(y_pred, y_true.type_as(y_pred), smooth=smooth, eps=eps, dims=dims)
    loss = -torch.log(scores.clamp_min(eps)) if log_loss else 1.0 - scores
    loss = loss * (y_true.sum(dims) > 0).to(loss.dtype)
    return loss.mean()


# ----------------------------------------------------------------------------


class TestEmptyMasks:
    """A class absent from the target: ~0 for an empty prediction, 1 - s / (sum(p) + s) for a false positive."""

    @staticmethod
    def absent(mode: str, offset: float):
        """Logits, target and the absent class k, whose logits sit ``offset`` above the others' maximum."""
        x, t = sample(mode, seed=10, scale=1.0)
        if mode == "binary":
            t = torch.zeros_like(t)
            return torch.full_like(x, offset), t, 0
        if mode == "multiclass":
            t = t % 2  # classes 0 and 1 only
            x[:, 2] = x[:, :2].max(dim=1).values + offset
        else:
            t[:, 2] = 0.0
            x[:, 2] = offset
        return x, t, 2

    @staticmethod
    def fp_weight(name: str, kwargs: dict) -> float:
        """The weight of sum(p) in the absent class's denominator: TP = FN = 0, so only FP (= P) counts."""
        return kwargs.get("alpha", 0.5) if name == "tversky" else 1.0

    @pytest.mark.parametrize("name", LOSSES)
    @pytest.mark.parametrize("mode", MODES)
    def test_empty_prediction_of_an_absent_class_scores_almost_zero(self, mode, name):
        x, t, k = self.absent(mode, -20.0)
        out, grad = value_and_grad(LOSSES[name], x, t, mode=mode, reduction="none")
        p_sum = probs(mode, x)[:, k].sum()
        w = self.fp_weight(name, {})
        assert 0 < out[k] < 1e-6
        torch.testing.assert_close(out[k], 1.0 - 1.0 / (w * p_sum + 1.0), **TOLERANCES[F64])
        assert finite(grad)

    @pytest.mark.parametrize("log_loss", [False, True])
    @pytest.mark.parametrize("name", LOSSES)
    @pytest.mark.parametrize("mode", MODES)
    def test_exactly_empty_prediction_with_smooth_zero_is_exactly_zero(self, mode, name, log_loss):
        x, t, k = self.absent(mode, -20.0)
        p = probs(mode, x)
        if mode == "multiclass":
            p = torch.cat([torch.softmax(x[:, :2], 1), torch.zeros_like(x[:, 2:])], dim=1)
        p[:, k] = 0.0
        kwargs = {"log_loss": log_loss} if name != "tversky" else {}
        out, grad = value_and_grad(LOSSES[name], p, t, mode=mode, from_logits=False, smooth=0.0, reduction="none",
                                   **kwargs)
        assert out[k].item() == 0.0  # 0/0 -> 1: empty and empty is a perfect match
        assert finite(grad) and torch.all(grad[:, k] == 0)
        if mode == "binary":  # the whole loss, every reduction
            for reduction in ("mean", "sum"):
                assert LOSSES[name](p, t, mode=mode, from_logits=False, smooth=0.0, reduction=reduction).item() == 0

    @pytest.mark.parametrize("smooth", [0.0, 1.0, 2.5])
    @pytest.mark.parametrize("name", LOSSES)
    @pytest.mark.parametrize("mode", MODES)
    def test_false_positive_on_an_empty_target_is_penalised(self, mode, name, smooth):
        x, t, k = self.absent(mode, 2.0)
        kwargs = {"alpha": 0.3, "beta": 0.9} if name == "tversky" else {}
        w = self.fp_weight(name, kwargs)

        def formula(z):
            return 1.0 - smooth / (w * probs(mode, z)[:, k].sum() + smooth)

        ours = value_and_grad(lambda z: LOSSES[name](z, t, mode=mode, smooth=smooth, reduction="none",
                                                     **kwargs)[k], x)
        assert_same(ours, value_and_grad(formula, x))
        assert ours[0] > (0.99 if smooth == 0 else 0.5)
        if smooth == 0:
            assert ours[0].item() == 1.0

    @pytest.mark.parametrize("mode", MODES)
    def test_contrast_with_dropping_absent_classes_and_eps_only_denominators(self, mode):
        # a false positive on the absent class: smp-style drops the class, losslab penalises it
        x, t, k = self.absent(mode, 2.0)
        p, td = probs(mode, x), dense(mode, t, x.shape[1])
        ours = losslab.dice_loss(x, t, mode=mode, smooth=0.0, reduction="none")
        assert smp_style_dice(p, td)[k].item() == 0.0
        assert ours[k] > 0.99
        present = [c for c in range(x.shape[1]) if c != k]  # elsewhere they agree
        torch.testing.assert_close(ours[present], smp_style_dice(p, td)[present], **TOLERANCES[F64])
        # an exactly empty prediction of the absent class: kornia-style scores it 1, losslab 0
        p = p.clone()
        p[:, k] = 0.0
        ours = losslab.dice_loss(p, t, mode=mode, smooth=0.0, from_logits=False, reduction="none")
        assert ours[k].item() == 0.0
        assert kornia_style_dice(p, td)[k].item() == 1.0
        # with the default smooth=1, an almost empty prediction is ~0 too; kornia-style still ~1
        x, t, k = self.absent(mode, -20.0)
        assert losslab.dice_loss(x, t, mode=mode, reduction="none")[k] < 1e-6
        assert kornia_style_dice(probs(mode, x), dense(mode, t, x.shape[1]))[k] > 1 - 1e-6


class TestPerfectPrediction:
    """A perfect hard prediction: exactly 0 from one-hot probabilities, ~0 from logits of +-50."""

    @pytest.mark.parametrize("per_image", [False, True])
    @pytest.mark.parametrize("smooth", [0.0, 1.0])
    @pytest.mark.parametrize(("name", "kwargs"), PERFECT_OPTIONS, ids=PERFECT_IDS)
    @pytest.mark.parametrize("mode", MODES)
    def test_one_hot_probabilities_give_exactly_zero(self, mode, name, kwargs, smooth, per_image):
        p, t = hard_perfect(mode)
        out, grad = value_and_grad(LOSSES[name], p, t, mode=mode, from_logits=False, smooth=smooth,
                                   per_image=per_image, reduction="none", **kwargs)
        assert torch.all(out == 0), out
        assert finite(grad)
        for reduction in ("mean", "sum"):
            assert LOSSES[name](p, t, mode=mode, from_logits=False, smooth=smooth, per_image=per_image,
                                reduction=reduction, **kwargs).item() == 0.0

    @pytest.mark.parametrize("dtype", [torch.float32, F64])
    @pytest.mark.parametrize("per_image", [False, True])
    @pytest.mark.parametrize(("name", "kwargs"), PERFECT_OPTIONS, ids=PERFECT_IDS)
    @pytest.mark.parametrize("mode", MODES)
    def test_saturated_logits_give_almost_zero(self, mode, name, kwargs, per_image, dtype):
        p, t = hard_perfect(mode)
        x = (50.0 * (2.0 * p - 1.0)).to(dtype)
        out, grad = value_and_grad(LOSSES[name], x, t.to(dtype) if mode != "multiclass" else t, mode=mode,
                                   per_image=per_image, reduction="none", **kwargs)
        assert out.dtype == dtype
        assert torch.all(out.abs() <= (1e-12 if dtype == F64 else 1e-6)), out
        assert finite(grad) and torch.all(grad.abs() <= 1e-12)


class TestTverskyEquivalences:
    """Tversky reduces to Dice and Jaccard (values and gradients); smoothing convention; the focal power."""

    @pytest.mark.parametrize("per_image", [False, True])
    @pytest.mark.parametrize("ignore", [None, -1])
    @pytest.mark.parametrize("mode", MODES)
    def test_half_half_with_smooth_zero_is_dice(self, mode, ignore, per_image):
        if ignore is not None and mode == "multiclass":
            ignore = 255
        x, t = sample(mode, seed=20, soft=True, ignore=ignore)
        kwargs = {"per_image": per_image, "ignore_index": ignore}
        for reduction in REDUCTIONS:
            assert_same(value_and_grad(losslab.tversky_loss, x, t, mode=mode, alpha=0.5, beta=0.5, gamma=1.0,
                                       smooth=0.0, reduction=reduction, **kwargs),
                        value_and_grad(losslab.dice_loss, x, t, mode=mode, smooth=0.0, reduction=reduction, **kwargs))

    @pytest.mark.parametrize("per_image", [False, True])
    @pytest.mark.parametrize("smooth", [0.0, 1.0, 2.5])
    @pytest.mark.parametrize("mode", MODES)
    def test_one_one_is_jaccard_for_any_smooth(self, mode, smooth, per_image):
        x, t = sample(mode, seed=21, soft=True)
        for reduction in REDUCTIONS:
            assert_same(value_and_grad(losslab.tversky_loss, x, t, mode=mode, alpha=1.0, beta=1.0, smooth=smooth,
                                       per_image=per_image, reduction=reduction),
                        value_and_grad(losslab.jaccard_loss, x, t, mode=mode, smooth=smooth, per_image=per_image,
                                       reduction=reduction))

    @pytest.mark.parametrize("smooth", [0.5, 1.0, 3.0])
    @pytest.mark.parametrize("mode", MODES)
    def test_smoothing_convention_tversky_s_is_dice_2s(self, mode, smooth):
        x, t = sample(mode, seed=22, n=1, spatial=(3,), soft=True)  # small sums: smooth matters
        for reduction in REDUCTIONS:
            tversky = value_and_grad(losslab.tversky_loss, x, t, mode=mode, smooth=smooth, reduction=reduction)
            assert_same(tversky, value_and_grad(losslab.dice_loss, x, t, mode=mode, smooth=2 * smooth,
                                                reduction=reduction))
            assert not torch.allclose(tversky[0], losslab.dice_loss(x, t, mode=mode, smooth=smooth,
                                                                    reduction=reduction))

    @pytest.mark.parametrize("gamma", [0.25, 0.75, 2.0, 3.0])
    @pytest.mark.parametrize("per_image", [False, True])
    @pytest.mark.parametrize("mode", MODES)
    def test_focal_tversky_is_the_power_of_tversky(self, mode, per_image, gamma):
        x, t = sample(mode, seed=23, soft=True)
        kwargs = {"mode": mode, "alpha": 0.3, "beta": 0.7, "per_image": per_image}
        assert_same(value_and_grad(losslab.tversky_loss, x, t, gamma=gamma, reduction="none", **kwargs),
                    value_and_grad(lambda z: losslab.tversky_loss(z, t, reduction="none", **kwargs) ** gamma, x))
        assert_same(value_and_grad(losslab.tversky_loss, x, t, gamma=gamma, **kwargs),
                    value_and_grad(lambda z: (losslab.tversky_loss(z, t, reduction="none", **kwargs) ** gamma).mean(),
                                   x))

    @pytest.mark.parametrize("dtype", [torch.float32, F64])
    @pytest.mark.parametrize("gamma", [0.25, 0.5, 0.75])
    @pytest.mark.parametrize("mode", MODES)
    def test_gamma_below_one_has_finite_gradients_at_a_perfect_prediction(self, mode, gamma, dtype):
        p, t = hard_perfect(mode)
        t = t.to(dtype) if mode != "multiclass" else t
        floor = torch.finfo(dtype).tiny ** gamma  # an upper bound: 0 exactly, or the floored power near it
        for x, from_logits in ((p.to(dtype), False), ((50.0 * (2.0 * p - 1.0)).to(dtype), True)):
            out, grad = value_and_grad(losslab.tversky_loss, x, t, mode=mode, from_logits=from_logits, gamma=gamma,
                                       reduction="none")
            assert finite(out, grad), (out, grad)
            assert torch.all(out >= 0) and torch.all(out <= max(floor * 1.01, 1e-9 if dtype == F64 else 1e-5))
        assert torch.all(grad.abs() <= 1e-3)

    @pytest.mark.parametrize("dtype", [torch.float32, F64])
    def test_gamma_below_one_perfect_prediction_is_exactly_zero(self, dtype):
        p, t = hard_perfect("binary")
        for gamma in (0.01, 0.1, 0.75):
            out = losslab.tversky_loss(p.to(dtype), t.to(dtype), mode="binary", from_logits=False, gamma=gamma)
            expected = REFERENCES["tversky_loss"](p.numpy(), t.numpy(), mode="binary", from_logits=False, gamma=gamma)
            assert expected == 0.0
            assert out.item() == 0.0, (gamma, out.item())

    @pytest.mark.parametrize("mode", ["binary", "multilabel"])
    def test_alpha_weighs_false_positives_beta_false_negatives(self, mode):
        # swapping prediction and target swaps FP and FN, so it swaps alpha and beta
        x, t = sample(mode, seed=24, soft=True)
        p = torch.sigmoid(x)
        for smooth in (0.0, 1.0):
            torch.testing.assert_close(
                losslab.tversky_loss(p, t, mode=mode, from_logits=False, alpha=0.2, beta=0.9, smooth=smooth,
                                     reduction="none"),
                losslab.tversky_loss(t, p, mode=mode, from_logits=False, alpha=0.9, beta=0.2, smooth=smooth,
                                     reduction="none"), **TOLERANCES[F64])
        # only false positives (empty target): the loss grows with alpha and ignores beta
        z = torch.zeros_like(t)
        losses = [losslab.tversky_loss(p, z, mode=mode, from_logits=False, alpha=a, beta=b) for a, b in
                  ((0.2, 0.1), (0.2, 5.0), (0.8, 0.1))]
        assert losses[0] == losses[1] and losses[2] > losses[0]


class TestPerImage:
    """per_image=False is one big image (the batch concatenated); per_image=True the mean over single images."""

    @staticmethod
    def concatenated(z: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (1, C, H, N W), and (N, H, W) -> (1, H, N W): the images side by side."""
        return torch.cat(list(z.unbind(0)), dim=-1).unsqueeze(0)

    @pytest.mark.parametrize("ignore", [False, True])
    @pytest.mark.parametrize("name", LOSSES)
    @pytest.mark.parametrize("mode", MODES)
    def test_batch_is_one_concatenated_image(self, mode, name, ignore):
        ignore_index = (255 if mode == "multiclass" else -1) if ignore else None
        x, t = sample(mode, seed=30, n=3, soft=True, ignore=ignore_index)
        kwargs = {"mode": mode, "ignore_index": ignore_index}
        tc = self.concatenated(t)
        for reduction in REDUCTIONS:
            assert_same(value_and_grad(LOSSES[name], x, t, per_image=False, reduction=reduction, **kwargs),
                        value_and_grad(lambda z, r=reduction: LOSSES[name](self.concatenated(z), tc, reduction=r,
                                                                           **kwargs), x))

    @pytest.mark.parametrize("weighted", [False, True])
    @pytest.mark.parametrize("name", LOSSES)
    @pytest.mark.parametrize("mode", MODES)
    def test_per_image_is_the_unweighted_mean_over_images(self, mode, name, weighted):
        x, t = sample(mode, seed=31, n=3, soft=True)
        kwargs = {"mode": mode, "smooth": 0.5}
        if weighted:
            kwargs["weight"] = [2.0] if mode == "binary" else [0.5, 2.0, 1.0]

        def single_images(z):
            return torch.stack([LOSSES[name](z[i:i + 1], t[i:i + 1], **kwargs) for i in range(len(z))]).mean()

        assert_same(value_and_grad(LOSSES[name], x, t, per_image=True, **kwargs), value_and_grad(single_images, x))
        rows = LOSSES[name](x, t, per_image=True, reduction="none", **kwargs)
        for i in range(len(x)):
            torch.testing.assert_close(rows[i], LOSSES[name](x[i:i + 1], t[i:i + 1], reduction="none", **kwargs))

    @pytest.mark.parametrize("smooth", [0.0, 1.0])
    def test_a_fully_ignored_image_counts_as_a_perfect_one(self, smooth):
        # unweighted mean over images: an image with nothing left scores 0 and still counts in the denominator
        x, t = sample("multiclass", seed=33, n=3, ignore=-100, ignored=0.2)
        t[1] = -100
        kwargs = {"mode": "multiclass", "ignore_index": -100, "per_image": True, "smooth": smooth}
        rows = losslab.dice_loss(x, t, reduction="none", **kwargs)
        assert torch.all(rows[1] == 0) and torch.all(rows[[0, 2]] > 0)
        torch.testing.assert_close(losslab.dice_loss(x, t, **kwargs), rows[[0, 2]].sum() / 9)

    @pytest.mark.parametrize("mode", MODES)
    def test_per_image_differs_from_batch(self, mode):
        x, t = sample(mode, seed=32, n=3)
        assert not torch.allclose(losslab.dice_loss(x, t, mode=mode, per_image=True),
                                  losslab.dice_loss(x, t, mode=mode, per_image=False))


# ----------------------------------------------------------------------------
# Hypothesis


@st.composite
def segmentation_inputs(draw, *, max_n: int = 3):
    """(mode, logits (N, C, L), target): soft targets in [0, 1], class indices in "multiclass"."""
    mode = draw(st.sampled_from(MODES))
    n = draw(st.integers(1, max_n))
    c = 1 if mode == "binary" else draw(st.integers(1, 4))
    length = draw(st.integers(1, 6))
    x = torch.tensor(draw(st.lists(st.floats(-30.0, 30.0), min_size=n * c * length, max_size=n * c * length)),
                     dtype=F64).view(n, c, length)
    if mode == "multiclass":
        t = torch.tensor(draw(st.lists(st.integers(0, c - 1), min_size=n * length, max_size=n * length))).view(n,
                                                                                                                length)
    else:
        t = torch.tensor(draw(st.lists(st.floats(0.0, 1.0), min_size=n * c * length, max_size=n * c * length)),
                         dtype=F64).view(n, c, length)
    return mode, x, t


class TestProperties:
    """Invariants over random logits and soft targets, in every mode."""

    @given(data=segmentation_inputs(), smooth=st.sampled_from([0.0, 0.5, 1.0]), per_image=st.booleans(),
           squared=st.booleans())
    def test_dice_and_jaccard_lie_in_the_unit_interval(self, data, smooth, per_image, squared):
        mode, x, t = data
        for fn in (losslab.dice_loss, losslab.jaccard_loss):
            out, grad = value_and_grad(fn, x, t, mode=mode, smooth=smooth, per_image=per_image, squared=squared,
                                       reduction="none")
            assert finite(out, grad)
            assert torch.all(out >= 0) and torch.all(out <= 1), out

    @given(data=segmentation_inputs(), smooth=st.sampled_from([0.0, 0.5, 1.0]), per_image=st.booleans(),
           squared=st.booleans())
    def test_jaccard_loss_at_least_dice_loss(self, data, smooth, per_image, squared):
        # J <= D for any smooth: (I + s)(U + I + s) <= (2 I + s)(U + s) since U >= I; J = D / (2 - D) at s = 0
        mode, x, t = data
        kwargs = {"mode": mode, "smooth": smooth, "per_image": per_image, "squared": squared, "reduction": "none"}
        d = losslab.dice_loss(x, t, **kwargs)
        j = losslab.jaccard_loss(x, t, **kwargs)
        assert torch.all(j >= d - 1e-12), (j, d)
        if smooth == 0.0:
            dice_score = 1.0 - d
            torch.testing.assert_close(1.0 - j, dice_score / (2.0 - dice_score), rtol=1e-9, atol=1e-9)

    @given(data=segmentation_inputs(max_n=4), perm_seed=st.integers(0, 100), name=st.sampled_from(list(LOSSES)))
    def test_invariant_to_permuting_the_batch(self, data, perm_seed, name):
        mode, x, t = data
        perm = torch.randperm(len(x), generator=gen(perm_seed))
        fn = LOSSES[name]
        torch.testing.assert_close(fn(x[perm], t[perm], mode=mode, reduction="none"),
                                   fn(x, t, mode=mode, reduction="none"), **TOLERANCES[F64])
        # per image: the rows follow the images
        torch.testing.assert_close(fn(x[perm], t[perm], mode=mode, per_image=True, reduction="none"),
                                   fn(x, t, mode=mode, per_image=True, reduction="none")[perm], **TOLERANCES[F64])


# ----------------------------------------------------------------------------


class TestIgnoreIndex:
    """Ignored positions (multiclass) and elements (binary, multilabel) are as if cut out; zero gradient there."""

    @pytest.mark.parametrize("per_image", [False, True])
    @pytest.mark.parametrize("name", LOSSES)
    def test_binary_equals_cutting_the_elements_out(self, name, per_image):
        x, t = sample("binary", seed=40, n=3, soft=True, ignore=-1, ignored=0.3)
        keep = t != -1
        fn = LOSSES[name]

        def cut(z):
            parts = [fn(z[i][keep[i]].view(1, 1, -1), t[i][keep[i]].view(1, 1, -1), mode="binary")
                     for i in range(len(z))]
            if per_image:
                return torch.stack(parts).mean()
            return fn(z[keep].view(1, 1, -1), t[keep].view(1, 1, -1), mode="binary")

        out, grad = value_and_grad(fn, x, t, mode="binary", ignore_index=-1, per_image=per_image)
        assert_same((out, grad), value_and_grad(cut, x))
        assert torch.all(grad[~keep] == 0)

    @pytest.mark.parametrize("ignore_index", [-100, 255, 0])
    @pytest.mark.parametrize("name", LOSSES)
    def test_multiclass_equals_cutting_the_positions_out(self, name, ignore_index):
        x, t = sample("multiclass", seed=41, n=3, c=4, ignore=ignore_index, ignored=0.3)
        keep = t != ignore_index
        fn = LOSSES[name]

        def cut(z):  # (K, C) kept positions -> one image (1, C, K)
            return fn(z.movedim(1, -1)[keep].T.unsqueeze(0), t[keep].unsqueeze(0), mode="multiclass",
                      reduction="none")

        out, grad = value_and_grad(fn, x, t, mode="multiclass", ignore_index=ignore_index, reduction="none")
        assert_same((out, grad), value_and_grad(cut, x))
        assert torch.all(grad.movedim(1, -1)[~keep] == 0)  # the whole position, every class

    @pytest.mark.parametrize("name", LOSSES)
    def test_multilabel_ignores_the_element_not_the_position(self, name):
        x, t = sample("multilabel", seed=42, n=3, soft=True, ignore=-1, ignored=0.3)
        keep = t != -1
        fn = LOSSES[name]

        def per_channel(z):  # each channel is a binary problem over its own kept elements
            return torch.stack([fn(z[:, c][keep[:, c]].view(1, 1, -1), t[:, c][keep[:, c]].view(1, 1, -1),
                                   mode="binary") for c in range(z.shape[1])])

        out, grad = value_and_grad(fn, x, t, mode="multilabel", ignore_index=-1, reduction="none")
        assert_same((out, grad), value_and_grad(per_channel, x))
        assert torch.all(grad[~keep] == 0)
        partly = (~keep).any(dim=1, keepdim=True) & keep  # kept elements at positions where another channel is not
        assert partly.any() and torch.all(grad[partly] != 0)

    @pytest.mark.parametrize("name", LOSSES)
    @pytest.mark.parametrize("mode", MODES)
    def test_values_at_ignored_positions_do_not_leak(self, mode, name):
        first = 255 if mode == "multiclass" else -1
        x, t = sample(mode, seed=43, soft=True, ignore=first, ignored=0.3)
        ignored = t == first
        fn = LOSSES[name]
        reference = value_and_grad(fn, x, t, mode=mode, ignore_index=first, reduction="none")
        # another ignore value at the same places (the target's value there is garbage)
        other = -100 if mode == "multiclass" else 255
        assert_same(value_and_grad(fn, x, torch.where(ignored, torch.full_like(t, other), t), mode=mode,
                                   ignore_index=other, reduction="none"), reference)
        # garbage logits there: saturated either way
        where = ignored.unsqueeze(1).expand_as(x) if mode == "multiclass" else ignored
        for garbage in (1e4, -1e4):
            assert_same(value_and_grad(fn, torch.where(where, torch.full_like(x, garbage), x), t, mode=mode,
                                       ignore_index=first, reduction="none"), reference)

    def test_garbage_probabilities_at_ignored_positions_do_not_leak(self):
        x, t = sample("multiclass", seed=44, ignore=255, ignored=0.3)
        p = torch.softmax(x, 1)
        q = torch.where((t == 255).unsqueeze(1), torch.full_like(p, 0.9), p)  # not a distribution there
        torch.testing.assert_close(losslab.dice_loss(q, t, mode="multiclass", from_logits=False, ignore_index=255),
                                   losslab.dice_loss(p, t, mode="multiclass", from_logits=False, ignore_index=255))


class TestClassesAndWeights:
    """include_background drops class 0; class weights give the weighted average, w L for "none"."""

    @pytest.mark.parametrize("per_image", [False, True])
    @pytest.mark.parametrize("name", LOSSES)
    @pytest.mark.parametrize("mode", ["multiclass", "multilabel"])
    def test_without_background_is_the_mean_over_the_other_classes(self, mode, name, per_image):
        x, t = sample(mode, seed=50, c=4, soft=True)
        kwargs = {"mode": mode, "per_image": per_image}
        assert_same(value_and_grad(LOSSES[name], x, t, include_background=False, reduction="none", **kwargs),
                    value_and_grad(lambda z: LOSSES[name](z, t, reduction="none", **kwargs)[..., 1:], x))
        assert_same(value_and_grad(LOSSES[name], x, t, include_background=False, **kwargs),
                    value_and_grad(lambda z: LOSSES[name](z, t, reduction="none", **kwargs)[..., 1:].mean(), x))

    @pytest.mark.parametrize("name", LOSSES)
    def test_without_background_in_multiclass_keeps_the_softmax_over_all_classes(self, name):
        x, t = sample("multiclass", seed=51, c=4)
        # not the same as dropping channel 0 of the logits first
        dropped = LOSSES[name](x, t, mode="multiclass", include_background=False, reduction="none")
        p = torch.softmax(x, 1)
        expected = LOSSES[name](p[:, 1:], dense("multiclass", t, 4)[:, 1:], mode="multilabel", from_logits=False,
                                reduction="none")
        torch.testing.assert_close(dropped, expected, **TOLERANCES[F64])

    @pytest.mark.parametrize("name", LOSSES)
    def test_binary_ignores_include_background(self, name):
        x, t = sample("binary", seed=52, soft=True)
        for reduction in REDUCTIONS:
            for weight in (None, [3.0]):
                a = value_and_grad(LOSSES[name], x, t, mode="binary", include_background=False, weight=weight,
                                   reduction=reduction)
                b = value_and_grad(LOSSES[name], x, t, mode="binary", weight=weight, reduction=reduction)
                assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
                assert a[0].abs().sum() > 0

    @pytest.mark.parametrize("include_background", [True, False])
    @pytest.mark.parametrize("per_image", [False, True])
    @pytest.mark.parametrize("name", LOSSES)
    @pytest.mark.parametrize("mode", ["multiclass", "multilabel"])
    def test_weighted_average(self, mode, name, per_image, include_background):
        x, t = sample(mode, seed=53, c=4, soft=True)
        w = torch.tensor([0.5, 2.0, 0.0, 1.5], dtype=F64)
        kwargs = {"mode": mode, "per_image": per_image, "include_background": include_background}
        kept = w if include_background else w[1:]

        def plain(z):
            return LOSSES[name](z, t, reduction="none", **kwargs)

        assert_same(value_and_grad(LOSSES[name], x, t, weight=w, reduction="none", **kwargs),
                    value_and_grad(lambda z: kept * plain(z), x))
        assert_same(value_and_grad(LOSSES[name], x, t, weight=w, reduction="sum", **kwargs),
                    value_and_grad(lambda z: (kept * plain(z)).sum(), x))
        assert_same(value_and_grad(LOSSES[name], x, t, weight=w, **kwargs),
                    value_and_grad(lambda z: (kept * plain(z)).sum() / (kept.sum() * plain(z).shape[0]
                                                                         if per_image else kept.sum()), x))

    @pytest.mark.parametrize("name", LOSSES)
    @pytest.mark.parametrize("mode", ["multiclass", "multilabel"])
    def test_zero_weight_removes_a_class(self, mode, name):
        x, t = sample(mode, seed=54, soft=True)
        out, grad = value_and_grad(LOSSES[name], x, t, mode=mode, weight=[1.0, 0.0, 1.0])
        torch.testing.assert_close(out, LOSSES[name](x, t, mode=mode, reduction="none")[[0, 2]].mean())
        if mode == "multilabel":  # channels are independent: channel 1 gets no gradient
            assert torch.all(grad[:, 1] == 0) and torch.all(grad[:, [0, 2]].abs().sum() > 0)
        # class 0's weight goes with it when the background is dropped
        a = LOSSES[name](x, t, mode=mode, weight=[1000.0, 1.0, 2.0], include_background=False)
        b = LOSSES[name](x, t, mode=mode, weight=[0.0, 1.0, 2.0], include_background=False)
        none = LOSSES[name](x, t, mode=mode, reduction="none")
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(a, (none[1] + 2 * none[2]) / 3)

    @pytest.mark.parametrize("mode", ["multiclass", "multilabel"])
    def test_all_zero_weights_give_zero(self, mode):
        x, t = sample(mode, seed=55)
        out, grad = value_and_grad(losslab.dice_loss, x, t, mode=mode, weight=[0.0, 0.0, 0.0])
        assert out.item() == 0.0 and torch.all(grad == 0)
        out = losslab.dice_loss(x, t, mode=mode, weight=[1.0, 0.0, 0.0], include_background=False)
        assert out.item() == 0.0

    def test_weight_types_agree(self):
        x, t = sample("multiclass", seed=56)
        w = [0.5, 2.0, 1.0]
        expected = losslab.dice_loss(x, t, mode="multiclass", weight=w)
        for value in (torch.tensor(w), torch.tensor(w, dtype=F64), np.array(w), tuple(w)):
            torch.testing.assert_close(losslab.dice_loss(x, t, mode="multiclass", weight=value), expected)
        out = losslab.dice_loss(x.float(), t, mode="multiclass", weight=torch.tensor(w, dtype=F64))
        assert out.dtype == torch.float32


class TestShapes:
    """Binary with and without the channel dim, 3-D volumes, a single class, C = 1."""

    @pytest.mark.parametrize("per_image", [False, True])
    @pytest.mark.parametrize("name", LOSSES)
    def test_binary_with_and_without_the_channel_dim(self, name, per_image):
        x, t = sample("binary", seed=60, soft=True, ignore=-1)
        kwargs = {"mode": "binary", "per_image": per_image, "ignore_index": -1}
        for reduction in REDUCTIONS:
            with_dim = value_and_grad(LOSSES[name], x, t, reduction=reduction, **kwargs)
            without = value_and_grad(LOSSES[name], x[:, 0], t[:, 0], reduction=reduction, **kwargs)
            assert_same(with_dim, (without[0], without[1].unsqueeze(1)))
        # (N,) and (N, 1): one element per image
        v, m = x[:, 0, 0, 0], t[:, 0, 0, 0]
        torch.testing.assert_close(LOSSES[name](v, m, reduction="none", **kwargs),
                                   LOSSES[name](v[:, None], m[:, None], reduction="none", **kwargs))

    @pytest.mark.parametrize("per_image", [False, True])
    @pytest.mark.parametrize("name", LOSSES)
    def test_volumes(self, name, per_image):
        x, t = sample("multiclass", seed=61, c=4, spatial=(3, 4, 5), ignore=-100, ignored=0.1)
        kwargs = {"mode": "multiclass", "per_image": per_image, "ignore_index": -100, "smooth": 0.5}
        for reduction in REDUCTIONS:
            out, grad = value_and_grad(LOSSES[name], x, t, reduction=reduction, **kwargs)
            assert_close_np(out, REFERENCES[f"{name}_loss"](x.numpy(), t.numpy(), reduction=reduction, **kwargs))
            flat = value_and_grad(LOSSES[name], x.flatten(2), t.flatten(1), reduction=reduction, **kwargs)
            assert_same((out, grad), (flat[0], flat[1].view_as(grad)))

    @pytest.mark.parametrize("name", LOSSES)
    def test_a_single_class_present_in_the_batch(self, name):
        x = logits(2, 3, 4, 5, seed=62)
        t = torch.ones(2, 4, 5, dtype=torch.long)
        for per_image in (False, True):
            out = LOSSES[name](x, t, mode="multiclass", per_image=per_image, reduction="none")
            assert_close_np(out, REFERENCES[f"{name}_loss"](x.numpy(), t.numpy(), mode="multiclass",
                                                            per_image=per_image, reduction="none"))
        # the absent classes 0 and 2 are pure false positives: 1 - s / (w sum(p) + s)
        out = LOSSES[name](x, t, mode="multiclass", reduction="none")
        p_sum = torch.softmax(x, 1).sum(dim=(0, 2, 3))
        w = 0.5 if name == "tversky" else 1.0
        torch.testing.assert_close(out[[0, 2]], (1.0 - 1.0 / (w * p_sum + 1.0))[[0, 2]])

    @pytest.mark.parametrize("per_image", [False, True])
    @pytest.mark.parametrize("name", LOSSES)
    def test_multiclass_with_one_class_is_zero(self, name, per_image):
        x = logits(2, 1, 4, 5, seed=63)
        t = torch.zeros(2, 4, 5, dtype=torch.long)
        out, grad = value_and_grad(LOSSES[name], x, t, mode="multiclass", per_image=per_image, reduction="none")
        assert out.shape == ((2, 1) if per_image else (1,))
        assert torch.all(out == 0) and torch.all(grad == 0)
        out = LOSSES[name](torch.ones_like(x), t, mode="multiclass", from_logits=False)
        assert out.item() == 0.0

    @pytest.mark.parametrize("mode", MODES)
    def test_shapes_of_none(self, mode):
        x, t = sample(mode, seed=64, c=4)
        c = 1 if mode == "binary" else 4
        kept = c if mode == "binary" else c - 1
        for fn in LOSSES.values():
            assert fn(x, t, mode=mode, reduction="none").shape == (c,)
            assert fn(x, t, mode=mode, per_image=True, reduction="none").shape == (2, c)
            assert fn(x, t, mode=mode, include_background=False, reduction="none").shape == (kept,)
            assert fn(x, t, mode=mode, include_background=False, per_image=True, reduction="none").shape == (2, kept)


class TestPeerParity:
    """MONAI's DiceLoss and smp's soft_dice_score / soft_jaccard_score formulas, written out in torch."""

    @pytest.mark.parametrize("include_background", [True, False])
    @pytest.mark.parametrize("squared", [False, True])
    @pytest.mark.parametrize("per_image", [False, True])
    @pytest.mark.parametrize("smooth", [1e-5, 1.0])
    @pytest.mark.parametrize("mode", MODES)
    def test_monai_dice_loss(self, mode, smooth, per_image, squared, include_background):
        x, t = sample(mode, seed=70, soft=True)
        ours = {"mode": mode, "smooth": smooth, "per_image": per_image, "squared": squared,
                "include_background": include_background}
        monai = {"mode": mode, "smooth_nr": smooth, "smooth_dr": smooth, "batch": not per_image,
                 "squared_pred": squared, "include_background": include_background or mode == "binary"}
        for reduction in REDUCTIONS:
            assert_same(value_and_grad(losslab.dice_loss, x, t, reduction=reduction, **ours),
                        value_and_grad(monai_dice_loss, x, t, reduction=reduction, **monai))

    @pytest.mark.parametrize("per_image", [False, True])
    @pytest.mark.parametrize("smooth", [0.5, 1.0])
    @pytest.mark.parametrize("mode", MODES)
    def test_monai_jaccard_uses_twice_the_smooth(self, mode, smooth, per_image):
        # MONAI's jaccard=True is 1 - (2 I + s) / (2 (P + T - I) + s): losslab's Jaccard with s / 2
        x, t = sample(mode, seed=71, soft=True)
        assert_same(value_and_grad(losslab.jaccard_loss, x, t, mode=mode, smooth=smooth, per_image=per_image),
                    value_and_grad(monai_dice_loss, x, t, mode=mode, smooth_nr=2 * smooth, smooth_dr=2 * smooth,
                                   batch=not per_image, jaccard=True))

    @pytest.mark.parametrize("log_loss", [False, True])
    @pytest.mark.parametrize("smooth", [0.0, 1.0])
    @pytest.mark.parametrize("name", ["dice", "jaccard"])
    @pytest.mark.parametrize("mode", MODES)
    def test_smp_when_every_class_is_present(self, mode, name, smooth, log_loss):
        x, t = sample(mode, seed=72, soft=True)
        assert torch.all(dense(mode, t, x.shape[1]).sum(dim=(0, 2, 3)) > 0)
        score = smp_soft_dice_score if name == "dice" else smp_soft_jaccard_score
        kwargs = {"smooth": smooth, "log_loss": log_loss}
        assert_same(value_and_grad(LOSSES[name], x, t, mode=mode, **kwargs),
                    value_and_grad(lambda z: smp_loss(score, z, t, mode=mode, **kwargs), x))

    @pytest.mark.parametrize("mode", MODES)
    def test_smp_dice_with_ignore_index(self, mode):
        ignore = 255 if mode == "multiclass" else -1
        x, t = sample(mode, seed=73, ignore=ignore, ignored=0.2)
        assert_same(value_and_grad(losslab.dice_loss, x, t, mode=mode, smooth=0.0, ignore_index=ignore),
                    value_and_grad(lambda z: smp_loss(smp_soft_dice_score, z, t, mode=mode, ignore_index=ignore), x))

    def test_smp_preset_name_matches_smp(self):
        x, t = sample("multiclass", seed=74)
        module = losslab.get_loss("smp.DiceLoss", mode="multiclass")
        torch.testing.assert_close(module(x, t), smp_loss(smp_soft_dice_score, x, t, mode="multiclass"))
        module = losslab.get_loss("smp.JaccardLoss", mode="multiclass")
        torch.testing.assert_close(module(x, t), smp_loss(smp_soft_jaccard_score, x, t, mode="multiclass"))


# ----------------------------------------------------------------------------


def _x(*shape):
    return logits(*shape, seed=80)


ERRORS = [
    ("dice_loss", _x(2, 1, 4), torch.zeros(2, 4), {"mode": "binary"}, ValueError,
     r"dice_loss: target must have the input's shape \(2, 1, 4\) in mode 'binary'; got \(2, 4\)"),
    ("jaccard_loss", _x(2, 5), torch.zeros(2, 6), {"mode": "binary"}, ValueError,
     r"jaccard_loss: target must have the input's shape \(2, 5\) in mode 'binary'; got \(2, 6\)"),
    ("jaccard_loss", _x(2, 3, 4), torch.full((2, 3, 4), 1.5), {"mode": "multilabel"}, ValueError,
     r"jaccard_loss: target must lie in \[0, 1\]; got a value of 1\.5"),
    ("dice_loss", _x(2, 1, 4), torch.full((2, 1, 4), -0.5), {"mode": "binary"}, ValueError,
     r"dice_loss: target must lie in \[0, 1\]; got a value of -0\.5"),
    ("dice_loss", _x(2, 3, 4), torch.full((2, 3, 4), 255.0), {"mode": "multilabel", "ignore_index": -1}, ValueError,
     r"dice_loss: target must lie in \[0, 1\]; got a value of 255\.0"),
    ("dice_loss", torch.full((2, 3, 4), 1.5), torch.zeros(2, 4, dtype=torch.long),
     {"mode": "multiclass", "from_logits": False}, ValueError,
     r"dice_loss: input \(probabilities, from_logits=False\) must lie in \[0, 1\]; got a value of 1\.5"),
    ("tversky_loss", torch.full((2, 1, 4), -0.25), torch.zeros(2, 1, 4), {"mode": "binary", "from_logits": False},
     ValueError,
     r"tversky_loss: input \(probabilities, from_logits=False\) must lie in \[0, 1\]; got a value of -0\.25"),
    ("tversky_loss", _x(2, 3, 4), torch.zeros(2, 4, dtype=torch.long), {"mode": "multiclass", "alpha": -0.1},
     ValueError, r"tversky_loss: alpha must be a finite number in \[0, inf\); got -0\.1"),
    ("tversky_loss", _x(2, 3, 4), torch.zeros(2, 4, dtype=torch.long), {"mode": "multiclass", "beta": float("inf")},
     ValueError, r"tversky_loss: beta must be a finite number in \[0, inf\); got inf"),
    ("tversky_loss", _x(2, 3, 4), torch.zeros(2, 4, dtype=torch.long), {"mode": "multiclass", "gamma": -1.0},
     ValueError, r"tversky_loss: gamma must be a finite number in \(0, inf\); got -1\.0"),
    ("dice_loss", _x(2, 3, 4), torch.zeros(2, 4, dtype=torch.long), {"mode": "multiclass", "weight": [1.0, -1.0, 1.0]},
     ValueError, r"dice_loss: weight must be finite and non-negative; got \[1\.0, -1\.0, 1\.0\]"),
    ("jaccard_loss", _x(2, 3, 4), torch.zeros(2, 4, dtype=torch.long),
     {"mode": "multiclass", "weight": [1.0, float("nan"), 1.0]}, ValueError,
     r"jaccard_loss: weight must be finite and non-negative; got \[1\.0, nan, 1\.0\]"),
    ("dice_loss", _x(2, 1, 4), torch.zeros(2, 1, 4), {"mode": "binary", "weight": [1.0, 1.0]}, ValueError,
     r"dice_loss: weight must have shape \(1,\), one value per class of the input; got \(2,\)"),
    ("dice_loss", _x(2, 3, 4), torch.tensor([[0, 1, 3, -100]] * 2), {"mode": "multiclass", "ignore_index": -100},
     ValueError, r"dice_loss: target class indices must be in \[0, 3\) or ignore_index=-100; got 3"),
    ("dice_loss", _x(2), torch.zeros(2, dtype=torch.long), {"mode": "multiclass"}, ValueError,
     r"dice_loss: input must have shape \(N, C, d1, \.\.\., dk\) for mode 'multiclass'; got \(2,\)"),
    ("dice_loss", _x(2, 3, 4), torch.zeros(2, 4, dtype=torch.long), {"mode": "multiclass", "squared": 1}, TypeError,
     r"dice_loss: squared must be a bool; got 1 \(int\)"),
    ("jaccard_loss", _x(2, 3, 4), torch.zeros(2, 4, dtype=torch.long), {"mode": "multiclass", "log_loss": "yes"},
     TypeError, r"jaccard_loss: log_loss must be a bool; got 'yes' \(str\)"),
    ("tversky_loss", _x(2, 3, 4), torch.zeros(2, 4, dtype=torch.long), {"mode": "multiclass", "per_image": None},
     TypeError, r"tversky_loss: per_image must be a bool; got None \(NoneType\)"),
    ("dice_loss", _x(2, 3, 4), torch.zeros(2, 4, dtype=torch.long),
     {"mode": "multiclass", "include_background": 0}, TypeError,
     r"dice_loss: include_background must be a bool; got 0 \(int\)"),
    ("dice_loss", _x(2, 3, 4), torch.zeros(2, 4, dtype=torch.long), {"mode": "multiclass", "ignore_index": 1.5},
     TypeError, r"dice_loss: ignore_index must be an int or None; got 1\.5 \(float\)"),
    ("tversky_loss", _x(2, 3, 4), torch.zeros(2, 4, dtype=torch.long), {"mode": None}, ValueError,
     r"tversky_loss: mode must be one of 'binary', 'multiclass', 'multilabel'; got None"),
]


class TestErrors:
    @pytest.mark.parametrize(("fn", "x", "t", "kwargs", "exc", "match"), ERRORS,
                             ids=[f"{e[0]}-{i}" for i, e in enumerate(ERRORS)])
    def test_message(self, fn, x, t, kwargs, exc, match):
        with pytest.raises(exc, match=match):
            getattr(losslab, fn)(x, t, **kwargs)


class TestModules:
    """DiceLoss, JaccardLoss, TverskyLoss: the functional's arguments, checked at construction."""

    MODULES = {"dice": losslab.DiceLoss, "jaccard": losslab.JaccardLoss, "tversky": losslab.TverskyLoss}

    @pytest.mark.parametrize("name", LOSSES)
    @pytest.mark.parametrize("mode", MODES)
    def test_module_equals_functional(self, mode, name):
        x, t = sample(mode, seed=90, soft=True)
        kwargs = {"mode": mode, "smooth": 0.5, "per_image": True, "reduction": "sum"}
        if name == "tversky":
            kwargs.update(alpha=0.3, beta=0.7, gamma=0.75)
        else:
            kwargs.update(squared=True)
        module = self.MODULES[name](**kwargs)
        assert_same(value_and_grad(module, x, t), value_and_grad(LOSSES[name], x, t, **kwargs))

    @pytest.mark.parametrize("name", LOSSES)
    def test_missing_mode_names_the_module(self, name):
        cls = self.MODULES[name]
        with pytest.raises(TypeError, match=rf"{cls.__name__}: missing required keyword argument\(s\) 'mode'"):
            cls()

    def test_bad_hyperparameters_fail_at_construction(self):
        with pytest.raises(ValueError, match=r"tversky_loss: alpha must be a finite number in \[0, inf\)"):
            losslab.TverskyLoss(mode="binary", alpha=-1.0)
        with pytest.raises(ValueError, match=r"tversky_loss: gamma must be a finite number in \(0, inf\)"):
            losslab.TverskyLoss(mode="binary", gamma=0.0)
        with pytest.raises(ValueError, match=r"dice_loss: mode must be one of 'binary', 'multiclass', 'multilabel'"):
            losslab.DiceLoss(mode="multi-class")
        with pytest.raises(TypeError, match=r"jaccard_loss: squared must be a bool"):
            losslab.JaccardLoss(mode="binary", squared="yes")
        with pytest.raises(ValueError, match=r"dice_loss: smooth must be a finite number in \[0, inf\)"):
            losslab.DiceLoss(mode="binary", smooth=-1.0)
        with pytest.raises(ValueError, match=r"dice_loss: weight must be finite and non-negative"):
            losslab.DiceLoss(mode="multiclass", weight=[1.0, -2.0, 1.0])

    @pytest.mark.parametrize("name", LOSSES)
    def test_per_call_overrides_equal_the_functional(self, name):
        x, t = sample("multiclass", seed=91)
        module = self.MODULES[name](mode="multiclass", weight=[1.0, 1.0, 1.0])
        w = torch.tensor([0.2, 3.0, 1.0], dtype=F64)
        assert_same(value_and_grad(module, x, t, weight=w, per_image=True),
                    value_and_grad(LOSSES[name], x, t, mode="multiclass", weight=w, per_image=True))
        # the stored values are back for the next call
        assert_same(value_and_grad(module, x, t), value_and_grad(LOSSES[name], x, t, mode="multiclass"))
        assert isinstance(module.weight, torch.Tensor) and "weight" in dict(module.named_buffers())

    def test_module_weight_follows_the_input_dtype(self):
        x, t = sample("multiclass", seed=92)
        module = losslab.DiceLoss(mode="multiclass", weight=[0.5, 2.0, 1.0])
        out = module(x.float(), t)
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, losslab.dice_loss(x.float(), t, mode="multiclass", weight=[0.5, 2.0, 1.0]))


class TestNames:
    """get_loss: paper names and Focal Tversky's gamma (the frameworks' names: tests/test_frameworks_segmentation.py)."""

    @pytest.mark.parametrize(("name", "cls", "expected", "call", "keras"), [
        ("Soft Dice", losslab.DiceLoss, {"smooth": 1.0}, losslab.dice_loss, False),
        ("Dice", losslab.DiceLoss, {"smooth": 1.0}, losslab.dice_loss, True),
        ("Jaccard", losslab.JaccardLoss, {"smooth": 1.0}, losslab.jaccard_loss, False),
        ("Soft IoU", losslab.JaccardLoss, {"smooth": 1.0}, losslab.jaccard_loss, False),
        ("Tversky", losslab.TverskyLoss, {"alpha": 0.5, "beta": 0.5, "gamma": 1.0}, losslab.tversky_loss, True),
        ("Focal Tversky", losslab.TverskyLoss, {"gamma": 0.75}, losslab.tversky_loss, False),
    ])
    def test_names(self, name, cls, expected, call, keras):
        x, t = sample("binary", seed=100, soft=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            module = losslab.get_loss(name, mode="binary")
        # Keras spells its own Dice and Tversky (probabilities, one global ratio) the same way: a warning says so
        assert [str(w.message) for w in caught if f"ask for 'keras.{name}'" in str(w.message)] != [] if keras else \
            caught == []
        assert type(module) is cls
        for key, value in expected.items():
            assert getattr(module, key) == value
        torch.testing.assert_close(module(x, t), call(x, t, mode="binary", **expected))

    def test_keyword_arguments_override_presets(self):
        assert losslab.get_loss("Focal Tversky", mode="binary", gamma=2.0).gamma == 2.0

    @pytest.mark.parametrize(("raw", "canonical"), [("DiceLoss", "dice_loss"), ("JaccardLoss", "jaccard_loss")])
    def test_bare_framework_class_names_warn(self, raw, canonical):
        with pytest.warns(UserWarning, match=rf"get_loss: '{raw}' is losslab's {canonical} \(logits in\); .*"
                                             rf"ask for '(smp|monai|kornia)\.{raw}'"):
            module = losslab.get_loss(raw, mode="multiclass")
        assert module.smooth == 1.0

    def test_missing_mode_through_get_loss(self):
        with pytest.raises(TypeError, match=r"TverskyLoss: missing required keyword argument\(s\) 'mode'"):
            losslab.get_loss("Focal Tversky")
