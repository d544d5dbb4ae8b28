"""Combinations: dice_ce_loss, dice_focal_loss, combine() / CombinedLoss, and get_loss configs.

The pairs are compared, values and gradients, with the weighted sum of their
published terms (dice_loss plus cross_entropy / binary_cross_entropy /
softmax_focal_loss / sigmoid_focal_loss) over every option that reaches one
term or both. combine() is checked as a weighted sum of its terms, with its
labels, weights, logged components and submodules; get_loss configs as plain
data (Python, JSON, TOML). A short training run closes the module.
The conformance battery already covers reductions, references, gradcheck,
module == functional, empty and all-ignored batches, half precision and
saturation for the pairs.
"""

from __future__ import annotations

import copy
import json
import re

import pytest
import torch
from torch import nn

import losslab

from .helpers import F64, assert_same, class_indices, gen, logits, value_and_grad

REDUCTIONS = ("mean", "sum")
C = 3
WEIGHT = [1.0, 2.5, 0.5]

DICE_KEYS = ("from_logits", "smooth", "eps", "weight", "ignore_index", "include_background", "per_image",
             "squared", "log_loss")


# ----------------------------------------------------------------------------
# helpers


def sample(mode: str, *, seed: int = 0, ignore_index: int | None = None, from_logits: bool = True,
           no_channel: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(input, target) for a mode, shaped (2, C or 1, 4, 5); some targets ignored where ignore_index is given."""
    channels = 1 if mode == "binary" else C
    x = logits(2, channels, 4, 5, seed=seed, scale=2.0)
    if mode == "multiclass":
        t = class_indices((2, 4, 5), C, seed=seed + 1, ignore_index=ignore_index, ignored=0.25)
        if not from_logits:
            x = torch.softmax(x, dim=1)
        return x, t
    t = (torch.rand(x.shape, generator=gen(seed + 1), dtype=F64) < 0.4).to(F64)
    if ignore_index is not None:
        drop = torch.rand(x.shape, generator=gen(seed + 2)) < 0.25
        drop.view(-1)[0] = True
        t = torch.where(drop, torch.full_like(t, float(ignore_index)), t)
    if not from_logits:
        x = torch.sigmoid(x)
    if no_channel:
        x, t = x[:, 0], t[:, 0]
    return x, t


def dice_part(x, t, mode, kwargs, reduction):
    dice_kwargs = {k: v for k, v in kwargs.items() if k in DICE_KEYS}
    return losslab.dice_loss(x, t, mode=mode, **dice_kwargs, reduction=reduction)


def dice_ce_by_terms(x, t, *, mode, reduction="mean", lambda_dice=1.0, lambda_ce=1.0, **kwargs):
    """lambda_dice * dice_loss + lambda_ce * (cross_entropy | binary_cross_entropy), as spec'd."""
    ce_kwargs = {"weight": kwargs.get("weight"), "ignore_index": kwargs.get("ignore_index"),
                 "label_smoothing": kwargs.get("label_smoothing", 0.0), "from_logits": kwargs.get("from_logits", True)}
    if mode == "multiclass":
        ce = losslab.cross_entropy(x, t, **ce_kwargs, reduction=reduction)
    else:
        ce = losslab.binary_cross_entropy(x, t, **ce_kwargs, reduction=reduction)
    return lambda_dice * dice_part(x, t, mode, kwargs, reduction) + lambda_ce * ce


def dice_focal_by_terms(x, t, *, mode, reduction="mean", lambda_dice=1.0, lambda_focal=1.0, gamma=2.0,
                        alpha=None, **kwargs):
    """lambda_dice * dice_loss + lambda_focal * (softmax_focal_loss | sigmoid_focal_loss), as spec'd."""
    weight = kwargs.get("weight")
    common = {"gamma": gamma, "ignore_index": kwargs.get("ignore_index"),
              "from_logits": kwargs.get("from_logits", True), "reduction": reduction}
    if mode == "multiclass":
        if weight is not None:
            focal_alpha = torch.as_tensor(weight, dtype=F64) * (1.0 if alpha is None else alpha)
        else:
            focal_alpha = alpha
        focal = losslab.softmax_focal_loss(x, t, alpha=focal_alpha, **common)
    else:
        focal = losslab.sigmoid_focal_loss(x, t, alpha=alpha, weight=weight, **common)
    return lambda_dice * dice_part(x, t, mode, kwargs, reduction) + lambda_focal * focal


def case_id(case) -> str:
    mode, kwargs, opts = case
    parts = [mode] + [f"{k}={v}" for k, v in kwargs.items()] + [k for k, v in opts.items() if v]
    return "-".join(parts).replace(" ", "")


# (mode, kwargs of the pair, sample options)
PAIR_CASES = [
    ("multiclass", {}, {}),
    ("multiclass", {"weight": WEIGHT}, {}),
    ("multiclass", {"ignore_index": 255}, {}),
    ("multiclass", {"from_logits": False}, {}),
    ("multiclass", {"per_image": True}, {}),
    ("multiclass", {"include_background": False}, {}),
    ("multiclass", {"squared": True, "log_loss": True, "smooth": 0.5}, {}),
    ("multiclass", {"weight": WEIGHT, "ignore_index": 255, "per_image": True, "include_background": False,
                    "lambda_dice": 0.3}, {}),
    ("binary", {}, {}),
    ("binary", {"weight": [2.0]}, {}),
    ("binary", {"ignore_index": -1}, {}),
    ("binary", {"from_logits": False, "per_image": True}, {}),
    ("binary", {"include_background": False}, {"no_channel": True}),
    ("multilabel", {}, {}),
    ("multilabel", {"weight": WEIGHT}, {}),
    ("multilabel", {"ignore_index": -1, "include_background": False}, {}),
    ("multilabel", {"from_logits": False, "weight": WEIGHT, "per_image": True}, {}),
]

CE_EXTRA = [{}, {"label_smoothing": 0.15}, {"lambda_ce": 2.0, "lambda_dice": 0.0}]
FOCAL_EXTRA = [{}, {"alpha": 0.25, "gamma": 0.5}, {"alpha": 0.8, "lambda_focal": 2.0, "lambda_dice": 0.5},
               {"gamma": 0.0, "lambda_focal": 0.0}]


def make_sample(mode, kwargs, opts, seed):
    return sample(mode, seed=seed, ignore_index=kwargs.get("ignore_index"),
                  from_logits=kwargs.get("from_logits", True), **opts)


# ----------------------------------------------------------------------------


class TestDiceCELoss:
    @pytest.mark.parametrize("extra", CE_EXTRA, ids=lambda e: "-".join(f"{k}={v}" for k, v in e.items()) or "plain")
    @pytest.mark.parametrize("case", PAIR_CASES, ids=case_id)
    def test_equals_weighted_sum_of_terms(self, case, extra):
        mode, kwargs, opts = case
        kwargs = {**kwargs, **extra}
        x, t = make_sample(mode, kwargs, opts, seed=10)
        for reduction in REDUCTIONS:
            assert_same(value_and_grad(losslab.dice_ce_loss, x, t, mode=mode, reduction=reduction, **kwargs),
                        value_and_grad(dice_ce_by_terms, x, t, mode=mode, reduction=reduction, **kwargs))

    def test_weight_as_tensor_equals_list(self):
        x, t = sample("multiclass", seed=3, ignore_index=255)
        kw = {"mode": "multiclass", "ignore_index": 255, "label_smoothing": 0.1}
        assert_same(value_and_grad(losslab.dice_ce_loss, x, t, weight=torch.tensor(WEIGHT, dtype=F64), **kw),
                    value_and_grad(losslab.dice_ce_loss, x, t, weight=WEIGHT, **kw))

    def test_multiclass_ce_term_is_pytorch_weighted_mean(self):
        # the CE part divides by sum(weight[target]) over kept positions (torch's cross_entropy), not by the count
        x, t = sample("multiclass", seed=4, ignore_index=255)
        w = torch.tensor(WEIGHT, dtype=F64)
        ce = (losslab.dice_ce_loss(x, t, mode="multiclass", weight=w, ignore_index=255, lambda_dice=0.0))
        expected = nn.functional.cross_entropy(x, t, weight=w, ignore_index=255)
        torch.testing.assert_close(ce, expected, rtol=1e-12, atol=1e-12)

    def test_include_background_reaches_dice_only(self):
        x, t = sample("multiclass", seed=5)
        with_bg = losslab.dice_ce_loss(x, t, mode="multiclass")
        without = losslab.dice_ce_loss(x, t, mode="multiclass", include_background=False)
        dice_diff = (losslab.dice_loss(x, t, mode="multiclass")
                     - losslab.dice_loss(x, t, mode="multiclass", include_background=False))
        torch.testing.assert_close(with_bg - without, dice_diff)

    def test_reduction_none_raises(self):
        x, t = sample("multiclass")
        msg = (r"dice_ce_loss: reduction must be one of 'mean', 'sum'; got 'none' "
               r"\(the terms have different shapes, so there is no 'none'\)")
        with pytest.raises(ValueError, match=msg):
            losslab.dice_ce_loss(x, t, mode="multiclass", reduction="none")
        for mode in ("binary", "multiclass", "multilabel"):
            with pytest.raises(ValueError, match=msg):
                losslab.DiceCELoss(mode=mode, reduction="none")
        with pytest.raises(ValueError, match=msg):  # nor as a per-call override of the module
            losslab.DiceCELoss(mode="multiclass")(x, t, reduction="none")

    def test_module_rejects_unknown_reduction_with_the_functionals_message(self):
        x, t = sample("multiclass")
        with pytest.raises(ValueError) as functional:
            losslab.dice_ce_loss(x, t, mode="multiclass", reduction="bogus")
        with pytest.raises(ValueError) as module:
            losslab.DiceCELoss(mode="multiclass", reduction="bogus")
        assert str(module.value) == str(functional.value)

    @pytest.mark.parametrize("name", ["lambda_dice", "lambda_ce"])
    def test_negative_lambdas(self, name):
        x, t = sample("binary")
        msg = rf"dice_ce_loss: {name} must be a finite number in \[0, inf\); got -0.5"
        with pytest.raises(ValueError, match=msg):
            losslab.dice_ce_loss(x, t, mode="binary", **{name: -0.5})
        with pytest.raises(ValueError, match=msg):
            losslab.DiceCELoss(mode="binary", **{name: -0.5})
        with pytest.raises(ValueError, match=rf"dice_ce_loss: {name} must be a finite number"):
            losslab.dice_ce_loss(x, t, mode="binary", **{name: float("inf")})
        with pytest.raises(TypeError, match=rf"dice_ce_loss: {name} must be a real number"):
            losslab.dice_ce_loss(x, t, mode="binary", **{name: "1"})

    @pytest.mark.parametrize("fn", ["dice_ce_loss", "dice_focal_loss"])
    def test_inner_errors_are_named_after_the_pair(self, fn):
        loss = getattr(losslab, fn)
        x, t = sample("multiclass")
        bad = t.clone()
        bad[0, 0, 0] = C
        with pytest.raises(ValueError, match=rf"^{fn}: target class indices must be in \[0, 3\); got 3"):
            loss(x, bad, mode="multiclass")
        with pytest.raises(ValueError, match=rf"^{fn}: weight must have shape \(3,\)"):
            loss(x, t, mode="multiclass", weight=[1.0, 2.0])
        with pytest.raises(ValueError, match=rf"^{fn}: mode must be one of 'binary', 'multiclass', 'multilabel'"):
            loss(x, t, mode="softmax")
        xb, tb = sample("binary")
        with pytest.raises(ValueError, match=rf"^{fn}: "):
            loss(xb, tb[:, :, :3], mode="binary")  # target shape
        with pytest.raises(ValueError, match=rf"^{fn}: "):
            loss(xb * 10, tb, mode="binary", from_logits=False)  # probabilities outside [0, 1]
        if fn == "dice_ce_loss":
            with pytest.raises(ValueError, match=r"^dice_ce_loss: label_smoothing must be a finite number in \[0, 1\]"):
                loss(x, t, mode="multiclass", label_smoothing=1.5)
        else:
            with pytest.raises(ValueError, match=r"^dice_focal_loss: gamma must be a finite number in \[0, inf\)"):
                loss(x, t, mode="multiclass", gamma=-1.0)


class TestDiceFocalLoss:
    @pytest.mark.parametrize("extra", FOCAL_EXTRA,
                             ids=lambda e: "-".join(f"{k}={v}" for k, v in e.items()) or "plain")
    @pytest.mark.parametrize("case", PAIR_CASES, ids=case_id)
    def test_equals_weighted_sum_of_terms(self, case, extra):
        mode, kwargs, opts = case
        kwargs = {**kwargs, **extra}
        x, t = make_sample(mode, kwargs, opts, seed=20)
        for reduction in REDUCTIONS:
            assert_same(value_and_grad(losslab.dice_focal_loss, x, t, mode=mode, reduction=reduction, **kwargs),
                        value_and_grad(dice_focal_by_terms, x, t, mode=mode, reduction=reduction, **kwargs))

    @pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
    def test_multiclass_scalar_alpha_scales_the_focal_term(self, alpha):
        x, t = sample("multiclass", seed=6, ignore_index=255)
        kw = {"mode": "multiclass", "ignore_index": 255, "lambda_dice": 0.0}
        scaled = value_and_grad(losslab.dice_focal_loss, x, t, alpha=alpha, **kw)
        plain = value_and_grad(losslab.dice_focal_loss, x, t, alpha=None, **kw)
        assert_same(scaled, (alpha * plain[0], alpha * plain[1]))

    def test_multiclass_focal_term_is_plain_mean_with_weights(self):
        # per-class weights multiply the loss; the mean divides by the count of kept positions, not by sum(w[t])
        x, t = sample("multiclass", seed=7, ignore_index=255)
        w = torch.tensor(WEIGHT, dtype=F64)
        kw = {"mode": "multiclass", "ignore_index": 255, "lambda_dice": 0.0, "weight": w}
        mean = losslab.dice_focal_loss(x, t, **kw)
        total = losslab.dice_focal_loss(x, t, **kw, reduction="sum")
        torch.testing.assert_close(mean, total / (t != 255).sum())

    def test_sigmoid_alpha_weighs_positives(self):
        x, t = sample("multilabel", seed=8)
        kw = {"mode": "multilabel", "lambda_dice": 0.0, "reduction": "sum"}
        pos_only = losslab.dice_focal_loss(x, t, alpha=1.0, **kw)
        neg_only = losslab.dice_focal_loss(x, t, alpha=0.0, **kw)
        torch.testing.assert_close(pos_only + neg_only, losslab.dice_focal_loss(x, t, alpha=None, **kw))
        # hard targets: alpha = 1 keeps the positives' terms only
        torch.testing.assert_close(pos_only, losslab.sigmoid_focal_loss(x, t, alpha=None, weight=t, reduction="sum"))

    def test_reduction_none_raises(self):
        x, t = sample("binary")
        msg = r"dice_focal_loss: reduction must be one of 'mean', 'sum'; got 'none'"
        with pytest.raises(ValueError, match=msg):
            losslab.dice_focal_loss(x, t, mode="binary", reduction="none")
        with pytest.raises(ValueError, match=msg):
            losslab.DiceFocalLoss(mode="binary", reduction="none")

    @pytest.mark.parametrize("name", ["lambda_dice", "lambda_focal"])
    def test_negative_lambdas(self, name):
        x, t = sample("multiclass")
        msg = rf"dice_focal_loss: {name} must be a finite number in \[0, inf\); got -1.0"
        with pytest.raises(ValueError, match=msg):
            losslab.dice_focal_loss(x, t, mode="multiclass", **{name: -1.0})
        with pytest.raises(ValueError, match=msg):
            losslab.DiceFocalLoss(mode="multiclass", **{name: -1.0})

    @pytest.mark.parametrize("alpha", [-0.5, 1.5, float("nan")])
    @pytest.mark.parametrize("mode", ["binary", "multiclass"])
    def test_alpha_outside_unit_interval(self, mode, alpha):
        # unlike sigmoid_focal_loss, a negative alpha does not mean "off" here: None does
        x, t = sample(mode)
        msg = r"dice_focal_loss: alpha must be a finite number in \[0, 1\]; got"
        with pytest.raises(ValueError, match=msg):
            losslab.dice_focal_loss(x, t, mode=mode, alpha=alpha)
        with pytest.raises(ValueError, match=msg):
            losslab.DiceFocalLoss(mode=mode, alpha=alpha)

    @pytest.mark.parametrize("alpha", [[0.2, 0.3, 0.5], True, "0.5"], ids=["list", "bool", "str"])
    def test_alpha_must_be_a_scalar(self, alpha):
        x, t = sample("multiclass")
        with pytest.raises(TypeError, match=r"dice_focal_loss: alpha must be None or a float in \[0, 1\]"):
            losslab.dice_focal_loss(x, t, mode="multiclass", alpha=alpha)


# ----------------------------------------------------------------------------


def mc_sample(seed: int = 30):
    return sample("multiclass", seed=seed)


def square_error(input, target):
    """A plain function term."""
    return (torch.softmax(input, dim=1).amax(dim=1) - 0.5).square().mean()


class TestCombine:
    def test_mapping_with_labels_is_weighted_sum(self):
        dice = losslab.DiceLoss(mode="multiclass", weight=WEIGHT)
        loss_fn = losslab.combine({"dice": dice, "ce": "CrossEntropyLoss"}, weights={"dice": 1.0, "ce": 0.5})
        assert isinstance(loss_fn, losslab.CombinedLoss)
        assert list(loss_fn.terms) == ["dice", "ce"]
        assert loss_fn.weights == {"dice": 1.0, "ce": 0.5}
        x, t = mc_sample()

        def by_terms(x, t):
            return (losslab.dice_loss(x, t, mode="multiclass", weight=WEIGHT)
                    + 0.5 * losslab.cross_entropy(x, t))

        assert_same(value_and_grad(loss_fn, x, t), value_and_grad(by_terms, x, t))

    def test_last_components_are_unweighted_and_detached(self):
        loss_fn = losslab.combine({"dice": losslab.DiceLoss(mode="multiclass"), "ce": "cross_entropy"},
                                  weights={"dice": 2.0, "ce": 0.25})
        assert loss_fn.last_components == {}
        x, t = mc_sample()
        x = x.requires_grad_(True)
        total = loss_fn(x, t)
        parts = loss_fn.last_components
        assert list(parts) == ["dice", "ce"]
        assert all(not v.requires_grad and v.grad_fn is None for v in parts.values())
        torch.testing.assert_close(parts["dice"], losslab.dice_loss(x, t, mode="multiclass").detach())
        torch.testing.assert_close(parts["ce"], losslab.cross_entropy(x, t).detach())
        torch.testing.assert_close(total.detach(), 2.0 * parts["dice"] + 0.25 * parts["ce"])
        total.backward()  # detaching the logged values does not cut the graph
        assert x.grad is not None and torch.isfinite(x.grad).all()
        # the next call replaces them
        x2, t2 = mc_sample(seed=31)
        loss_fn(x2, t2)
        torch.testing.assert_close(loss_fn.last_components["ce"], losslab.cross_entropy(x2, t2))

    def test_sequence_gets_auto_labels_with_repeats(self):
        terms = ["cross_entropy", "cross_entropy", "CrossEntropyLoss", losslab.DiceLoss(mode="multiclass"),
                 nn.CrossEntropyLoss(), square_error, {"name": "dice_loss", "mode": "multiclass"},
                 losslab.cross_entropy, "cross_entropy"]
        loss_fn = losslab.combine(terms)
        assert list(loss_fn.terms) == ["cross_entropy", "cross_entropy_2", "CrossEntropyLoss", "dice_loss",
                                       "CrossEntropyLoss_2", "square_error", "dice_loss_2", "cross_entropy_3",
                                       "cross_entropy_4"]
        assert loss_fn.weights == dict.fromkeys(loss_fn.terms, 1.0)
        assert isinstance(loss_fn.terms["dice_loss_2"], losslab.DiceLoss)
        assert isinstance(loss_fn.terms["cross_entropy"], losslab.CrossEntropyLoss)
        assert loss_fn.terms["CrossEntropyLoss_2"] is terms[4]  # modules are used as given

    def test_sequence_weights_and_every_kind_of_term(self):
        loss_fn = losslab.combine([losslab.DiceLoss(mode="multiclass"), "CrossEntropyLoss", nn.CrossEntropyLoss(),
                                   {"name": "dice_loss", "mode": "multiclass", "log_loss": True}, square_error],
                                  weights=[1.0, 0.5, 2, 0.0, 3.0])
        assert loss_fn.weights == {"dice_loss": 1.0, "CrossEntropyLoss": 0.5, "CrossEntropyLoss_2": 2.0,
                                   "dice_loss_2": 0.0, "square_error": 3.0}
        assert all(type(w) is float for w in loss_fn.weights.values())
        x, t = mc_sample()

        def by_terms(x, t):
            return (losslab.dice_loss(x, t, mode="multiclass") + 0.5 * losslab.cross_entropy(x, t)
                    + 2.0 * nn.functional.cross_entropy(x, t)
                    + 0.0 * losslab.dice_loss(x, t, mode="multiclass", log_loss=True) + 3.0 * square_error(x, t))

        assert_same(value_and_grad(loss_fn, x, t), value_and_grad(by_terms, x, t))
        assert list(loss_fn.last_components) == list(loss_fn.weights)

    def test_partial_weight_mapping_defaults_to_one(self):
        loss_fn = losslab.combine([losslab.DiceLoss(mode="multiclass"), "cross_entropy"],
                                  weights={"cross_entropy": 0.2})
        assert loss_fn.weights == {"dice_loss": 1.0, "cross_entropy": 0.2}
        x, t = mc_sample()
        torch.testing.assert_close(loss_fn(x, t), losslab.dice_loss(x, t, mode="multiclass")
                                   + 0.2 * losslab.cross_entropy(x, t))

    def test_combined_loss_class_equals_combine(self):
        terms = {"ce": "cross_entropy", "f": square_error}
        a, b = losslab.CombinedLoss(terms, [0.5, 1.5]), losslab.combine(terms, [0.5, 1.5])
        x, t = mc_sample()
        assert torch.equal(a(x, t), b(x, t))
        assert "weights={'ce': 0.5, 'f': 1.5}" in repr(a)

    def test_combination_nests(self):
        inner = losslab.combine({"ce": "cross_entropy", "f": square_error}, weights=[0.5, 2.0])
        outer = losslab.combine({"inner": inner, "dice": losslab.DiceLoss(mode="multiclass")}, weights=[3.0, 1.0])
        x, t = mc_sample()

        def by_terms(x, t):
            return (3.0 * (0.5 * losslab.cross_entropy(x, t) + 2.0 * square_error(x, t))
                    + losslab.dice_loss(x, t, mode="multiclass"))

        assert_same(value_and_grad(outer, x, t), value_and_grad(by_terms, x, t))

    def test_terms_are_submodules(self):
        loss_fn = losslab.combine({"dice": losslab.DiceLoss(mode="multiclass", weight=WEIGHT),
                                   "ce": losslab.CrossEntropyLoss(weight=WEIGHT), "f": square_error})
        assert set(loss_fn.state_dict()) == {"terms.dice.weight", "terms.ce.weight"}
        assert loss_fn.terms["dice"] in list(loss_fn.modules())
        moved = loss_fn.to(torch.float32)
        assert moved is loss_fn
        assert loss_fn.terms["dice"].weight.dtype == torch.float32
        assert loss_fn.terms["ce"].weight.dtype == torch.float32
        loss_fn.double()
        assert loss_fn.terms["ce"].weight.dtype == F64
        # a state dict loads into an equal combination
        other = losslab.combine({"dice": losslab.DiceLoss(mode="multiclass", weight=[1.0, 1.0, 1.0]),
                                 "ce": losslab.CrossEntropyLoss(weight=[1.0, 1.0, 1.0]), "f": square_error})
        other.load_state_dict(loss_fn.state_dict())
        x, t = mc_sample()
        torch.testing.assert_close(other(x, t), loss_fn(x, t))
        # train/eval reach the terms
        loss_fn.eval()
        assert not loss_fn.terms["dice"].training

    @pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
    def test_moves_to_cuda(self):
        loss_fn = losslab.combine({"dice": losslab.DiceLoss(mode="multiclass", weight=WEIGHT),
                                   "ce": losslab.CrossEntropyLoss(weight=WEIGHT)}).to("cuda")
        assert loss_fn.terms["dice"].weight.device.type == "cuda"
        x, t = mc_sample()
        expected = loss_fn.to("cpu")(x, t)
        loss_fn.to("cuda")
        got = loss_fn(x.cuda(), t.cuda())
        assert got.device.type == "cuda"
        torch.testing.assert_close(got.cpu(), expected)

    @pytest.mark.parametrize("losses", [[], {}, ()], ids=["list", "dict", "tuple"])
    def test_empty_losses(self, losses):
        with pytest.raises(ValueError, match=r"combine: losses must hold at least one loss; got none"):
            losslab.combine(losses)

    @pytest.mark.parametrize("losses", ["cross_entropy", 3, None], ids=["str", "int", "None"])
    def test_losses_not_a_mapping_or_sequence(self, losses):
        with pytest.raises(TypeError, match=r"combine: losses must be a mapping of labels to losses or a sequence"):
            losslab.combine(losses)

    def test_weights_name_unknown_term(self):
        with pytest.raises(ValueError, match=r"combine: weights name unknown terms \['dcie'\]; the terms are "
                                             r"\['dice', 'ce'\]"):
            losslab.combine({"dice": losslab.DiceLoss(mode="binary"), "ce": "bce"}, weights={"dcie": 1.0})

    @pytest.mark.parametrize("weights", [[1.0], [1.0, 2.0, 3.0], 2.0, torch.tensor([1.0, 2.0])],
                             ids=["short", "long", "scalar", "tensor"])
    def test_wrong_number_or_kind_of_weights(self, weights):
        with pytest.raises(ValueError, match=r"combine: weights must be a mapping of labels or a sequence of 2 "
                                             r"numbers; got"):
            losslab.combine(["cross_entropy", square_error], weights=weights)

    @pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf")])
    def test_negative_or_non_finite_weight(self, bad):
        msg = r"combine: weights\['ce'\] must be a finite number in \[0, inf\)"
        with pytest.raises(ValueError, match=msg):
            losslab.combine({"ce": "cross_entropy"}, weights={"ce": bad})
        with pytest.raises(ValueError, match=r"combine: weights\['cross_entropy'\] must be a finite number"):
            losslab.combine(["cross_entropy"], weights=[bad])

    @pytest.mark.parametrize("bad", ["0.5", None, True, torch.tensor(0.5)], ids=["str", "None", "bool", "tensor"])
    def test_non_numeric_weight(self, bad):
        with pytest.raises(TypeError, match=r"combine: weights\['ce'\] must be a real number; got"):
            losslab.combine({"ce": "cross_entropy"}, weights={"ce": bad})

    @pytest.mark.parametrize("bad", [3, None, torch.zeros(2)], ids=["int", "None", "tensor"])
    def test_non_loss_object(self, bad):
        msg = r"combine: a loss must be an nn.Module, a loss name, a config dict or a function; got"
        with pytest.raises(TypeError, match=msg):
            losslab.combine({"ok": "cross_entropy", "bad": bad})
        with pytest.raises(TypeError, match=msg):
            losslab.combine(["cross_entropy", bad])

    def test_unknown_name_or_bad_config_fails_at_construction(self):
        with pytest.raises(ValueError, match=r"get_loss: unknown loss name 'dice_los'"):
            losslab.combine(["dice_los"])
        with pytest.raises(TypeError, match=r"DiceLoss: missing required keyword argument\(s\) 'mode'"):
            losslab.combine(["dice_loss"])

    def test_sequence_of_qualified_names(self):
        loss_fn = losslab.combine(["torch.nn.BCEWithLogitsLoss", losslab.DiceLoss(mode="binary")])
        x, t = sample("binary", seed=32)
        torch.testing.assert_close(loss_fn(x, t), nn.functional.binary_cross_entropy_with_logits(x, t)
                                   + losslab.dice_loss(x, t, mode="binary"))

    @pytest.mark.parametrize("label", ["ce.main", "", "train"])
    def test_unusable_label_is_a_value_error(self, label):
        for build in (lambda: losslab.combine({label: "cross_entropy"}),
                      lambda: losslab.get_loss([{"name": "cross_entropy", "label": label}])):
            with pytest.raises(ValueError, match=rf"^combine: {re.escape(repr(label))} cannot label a term"):
                build()


# ----------------------------------------------------------------------------


TWO_TERMS = [{"name": "dice_loss", "mode": "multiclass", "weight": WEIGHT, "loss_weight": 1.0},
             {"name": "cross_entropy", "label_smoothing": 0.1, "loss_weight": 0.5, "label": "ce"}]


def two_terms_by_hand(x, t):
    return (losslab.dice_loss(x, t, mode="multiclass", weight=WEIGHT)
            + 0.5 * losslab.cross_entropy(x, t, label_smoothing=0.1))


class TestGetLossConfig:
    def test_single_config(self):
        loss_fn = losslab.get_loss({"name": "dice_loss", "mode": "binary"})
        assert type(loss_fn) is losslab.DiceLoss
        assert loss_fn.mode == "binary"
        loss_fn = losslab.get_loss({"name": "BCEWithLogitsLoss", "weight": [2.0]})
        assert type(loss_fn) is losslab.BinaryCrossEntropyLoss
        assert isinstance(loss_fn.weight, torch.Tensor)

    def test_single_config_alias_presets_still_apply(self):
        loss_fn = losslab.get_loss({"name": "BCELoss"})
        assert loss_fn.from_logits is False
        assert losslab.get_loss({"name": "BCELoss", "from_logits": True}).from_logits is True

    def test_kwargs_override_single_config(self):
        config = {"name": "dice_loss", "mode": "binary", "smooth": 0.5}
        loss_fn = losslab.get_loss(config, mode="multiclass", eps=1e-5)
        assert (loss_fn.mode, loss_fn.smooth, loss_fn.eps) == ("multiclass", 0.5, 1e-5)
        assert config == {"name": "dice_loss", "mode": "binary", "smooth": 0.5}

    def test_list_of_terms(self):
        config = copy.deepcopy(TWO_TERMS)
        loss_fn = losslab.get_loss(config)
        assert config == TWO_TERMS  # not consumed
        assert isinstance(loss_fn, losslab.CombinedLoss)
        assert loss_fn.weights == {"dice_loss": 1.0, "ce": 0.5}
        assert type(loss_fn.terms["ce"]) is losslab.CrossEntropyLoss
        assert loss_fn.terms["ce"].label_smoothing == 0.1
        x, t = mc_sample(seed=40)
        assert_same(value_and_grad(loss_fn, x, t), value_and_grad(two_terms_by_hand, x, t))

    def test_combine_key(self):
        loss_fn = losslab.get_loss({"combine": TWO_TERMS})
        assert isinstance(loss_fn, losslab.CombinedLoss)
        x, t = mc_sample(seed=41)
        assert_same(value_and_grad(loss_fn, x, t), value_and_grad(two_terms_by_hand, x, t))

    def test_bare_name_terms_and_repeated_labels(self):
        loss_fn = losslab.get_loss(["cross_entropy", {"name": "cross_entropy", "loss_weight": 2},
                                    {"name": "CrossEntropyLoss", "label": "cross_entropy"},
                                    {"name": "dice_ce", "mode": "multiclass", "label": "pair"}])
        assert loss_fn.weights == {"cross_entropy": 1.0, "cross_entropy_2": 2.0, "cross_entropy_3": 1.0,
                                   "pair": 1.0}
        assert type(loss_fn.terms["pair"]) is losslab.DiceCELoss
        x, t = mc_sample(seed=42)
        torch.testing.assert_close(loss_fn(x, t), 4 * losslab.cross_entropy(x, t)
                                   + losslab.dice_ce_loss(x, t, mode="multiclass"))

    def test_config_without_name(self):
        with pytest.raises(ValueError, match=r"get_loss: a loss config needs a 'name'; got keys \['mode'\]"):
            losslab.get_loss({"mode": "binary"})
        with pytest.raises(ValueError, match=r"get_loss: each term of a combination must be a loss name or a dict "
                                             r"with a 'name'; got \{'loss_weight': 1.0\} \(dict\)"):
            losslab.get_loss(["cross_entropy", {"loss_weight": 1.0}])

    @pytest.mark.parametrize("key", ["loss_weight", "label"])
    def test_term_keys_in_single_config(self, key):
        with pytest.raises(ValueError, match=r"get_loss: 'loss_weight' and 'label' belong to the terms of a "
                                             r"combination"):
            losslab.get_loss({"name": "dice_loss", "mode": "binary", key: 1.0})

    def test_kwargs_with_a_combination(self):
        with pytest.raises(ValueError, match=r"get_loss: keyword arguments do not apply to a combination; "
                                             r"got \['mode'\]"):
            losslab.get_loss(TWO_TERMS, mode="binary")
        with pytest.raises(ValueError, match=r"get_loss: a 'combine' config takes no other keys or keyword "
                                             r"arguments; got \['mode'\]"):
            losslab.get_loss({"combine": TWO_TERMS}, mode="binary")
        with pytest.raises(ValueError, match=r"get_loss: a 'combine' config takes no other keys or keyword "
                                             r"arguments; got \['name'\]"):
            losslab.get_loss({"combine": TWO_TERMS, "name": "x"})

    @pytest.mark.parametrize("term", [3, None, ["cross_entropy"], 0.5], ids=["int", "None", "list", "float"])
    def test_term_neither_dict_nor_str(self, term):
        with pytest.raises(ValueError, match=r"get_loss: each term of a combination must be a loss name or a dict "
                                             r"with a 'name'; got"):
            losslab.get_loss(["cross_entropy", term])

    def test_empty_combination_and_bad_loss_weight(self):
        with pytest.raises(ValueError, match=r"losses must hold at least one loss"):
            losslab.get_loss([])
        with pytest.raises(ValueError, match=r"weights\['cross_entropy'\] must be a finite number in \[0, inf\)"):
            losslab.get_loss([{"name": "cross_entropy", "loss_weight": -1}])
        with pytest.raises(TypeError, match=r"weights\['cross_entropy'\] must be a real number"):
            losslab.get_loss([{"name": "cross_entropy", "loss_weight": "0.5"}])

    @pytest.mark.parametrize("name, module", [("dice_ce", losslab.DiceCELoss), ("DiceCELoss", losslab.DiceCELoss),
                                              ("dice_ce_loss", losslab.DiceCELoss),
                                              ("dice_focal", losslab.DiceFocalLoss),
                                              ("DiceFocalLoss", losslab.DiceFocalLoss),
                                              ("dice_focal_loss", losslab.DiceFocalLoss)])
    def test_pair_names_resolve(self, name, module):
        loss_fn = losslab.get_loss(name, mode="multilabel")
        assert type(loss_fn) is module and loss_fn.mode == "multilabel"
        assert type(losslab.get_loss({"name": name, "mode": "binary"})) is module
        assert type(losslab.get_loss([{"name": name, "mode": "binary"}]).terms[name]) is module
        with pytest.raises(TypeError, match=rf"{module.__name__}: missing required keyword argument\(s\) 'mode'"):
            losslab.get_loss(name)
        with pytest.raises(TypeError, match=r"missing required keyword argument\(s\) 'mode'"):
            losslab.get_loss({"name": name})

    def test_pair_module_from_config_equals_functional(self):
        loss_fn = losslab.get_loss({"name": "DiceFocalLoss", "mode": "multiclass", "weight": WEIGHT, "alpha": 0.5,
                                    "lambda_focal": 2.0})
        x, t = mc_sample(seed=43)
        assert_same(value_and_grad(loss_fn, x, t),
                    value_and_grad(losslab.dice_focal_loss, x, t, mode="multiclass", weight=WEIGHT, alpha=0.5,
                                   lambda_focal=2.0))

    def test_json_round_trip(self):
        config = {"combine": [{"name": "dice_ce", "mode": "multiclass", "weight": WEIGHT, "ignore_index": 255,
                               "lambda_ce": 0.5, "label": "pair"},
                              {"name": "softmax_focal_loss", "gamma": 1.5, "ignore_index": 255, "loss_weight": 0.25}]}
        restored = json.loads(json.dumps(config))
        assert restored == config
        a, b = losslab.get_loss(config), losslab.get_loss(restored)
        assert a.weights == b.weights == {"pair": 1.0, "softmax_focal_loss": 0.25}
        x, t = sample("multiclass", seed=44, ignore_index=255)
        torch.testing.assert_close(b(x, t), a(x, t), rtol=0, atol=0)
        expected = (losslab.dice_ce_loss(x, t, mode="multiclass", weight=WEIGHT, ignore_index=255, lambda_ce=0.5)
                    + 0.25 * losslab.softmax_focal_loss(x, t, gamma=1.5, ignore_index=255))
        torch.testing.assert_close(a(x, t), expected)

    def test_generalized_dice_with_cross_entropy(self):
        """The usual recipe for tiny structures: Sudre et al.'s generalised Dice plus cross-entropy, from data."""
        config = {"combine": [{"name": "generalized_dice_loss", "mode": "multiclass", "ignore_index": 255,
                               "per_image": True, "label": "gdl"},
                              {"name": "cross_entropy", "ignore_index": 255, "loss_weight": 0.5, "label": "ce"}]}
        loss_fn = losslab.get_loss(json.loads(json.dumps(config)))
        assert type(loss_fn.terms["gdl"]) is losslab.GeneralizedDiceLoss
        assert loss_fn.weights == {"gdl": 1.0, "ce": 0.5}
        x, t = sample("multiclass", seed=46, ignore_index=255)
        assert_same(value_and_grad(loss_fn, x, t),
                    value_and_grad(lambda z: losslab.generalized_dice_loss(z, t, mode="multiclass", ignore_index=255,
                                                                           per_image=True)
                                   + 0.5 * losslab.cross_entropy(z, t, ignore_index=255), x))
        assert set(loss_fn.last_components) == {"gdl", "ce"}

    def test_toml_document(self):
        tomllib = pytest.importorskip("tomllib")
        document = """
            [[loss]]
            name = "dice_loss"
            mode = "multiclass"
            weight = [1.0, 2.5, 0.5]
            loss_weight = 1.0

            [[loss]]
            name = "cross_entropy"
            label = "ce"
            label_smoothing = 0.1
            loss_weight = 0.5

            [other]
            combine = [{name = "dice_loss", mode = "multiclass", weight = [1.0, 2.5, 0.5]},
                       {name = "cross_entropy", label = "ce", label_smoothing = 0.1, loss_weight = 0.5}]
        """
        parsed = tomllib.loads("\n".join(line.strip() for line in document.splitlines()))
        from_list, from_combine = losslab.get_loss(parsed["loss"]), losslab.get_loss(parsed["other"])
        assert from_list.weights == from_combine.weights == {"dice_loss": 1.0, "ce": 0.5}
        x, t = mc_sample(seed=45)
        expected = value_and_grad(two_terms_by_hand, x, t)
        assert_same(value_and_grad(from_list, x, t), expected)
        assert_same(value_and_grad(from_combine, x, t), expected)


# ----------------------------------------------------------------------------


def test_training_smoke():
    """A 1x1-conv segmentation model learns a pixelwise linear labelling with Dice + 0.5 CE."""
    torch.manual_seed(0)
    classes, channels = 3, 4
    images = torch.randn(8, channels, 12, 12, generator=gen(50))
    teacher = torch.randn(classes, channels, generator=gen(51))
    masks = torch.einsum("kc,nchw->nkhw", teacher, images).argmax(dim=1)
    model = nn.Conv2d(channels, classes, kernel_size=1)
    loss_fn = losslab.get_loss([{"name": "dice_loss", "mode": "multiclass"},
                                {"name": "cross_entropy", "loss_weight": 0.5}])
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    history = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = loss_fn(model(images), masks)
        loss.backward()
        assert torch.isfinite(loss)
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())
        optimizer.step()
        history.append(loss.item())
        assert all(torch.isfinite(v) for v in loss_fn.last_components.values())
    assert history[-1] < 0.6 * history[0], history
    assert sum(history[-5:]) < sum(history[:5])
    with torch.no_grad():
        accuracy = (model(images).argmax(dim=1) == masks).float().mean()
    assert accuracy > 0.8
