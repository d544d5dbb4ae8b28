"""generalized_dice_loss and the framework names of the generalised Dice loss.

The conformance battery (tests/test_conformance.py) checks the loss against its float64 NumPy reference
(tests/reference_gdice.py) on the samples of tests/samples/segmentation.py, with gradcheck, half precision,
empty and all-ignored batches. Here: what it equals (Dice in "binary", pooled Dice for uniform weights, MONAI's
ratio without smoothing), the absent-class rule, the smoothing scale, Hypothesis properties, a combination with
cross-entropy, and the adapters against transcriptions of MONAI 1.6's ``GeneralizedDiceLoss``
(``monai/losses/dice.py``) and optax's ``multiclass_generalized_dice_loss`` (``optax/losses/_segmentation.py``),
and against MONAI itself where it is installed.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import losslab
from losslab.frameworks import generalized_dice as fg
from losslab.generalized_dice import volume_weights

from .reference_gdice import class_weights
from .reference_gdice import generalized_dice_loss as ref_gdl

F64 = torch.float64


def value_and_grad(fn, x, *args, **kwargs):
    x = x.detach().clone().requires_grad_(True)
    value = fn(x, *args, **kwargs)
    value.sum().backward()
    return value.detach(), x.grad


def assert_same(ours, theirs, atol=1e-12, rtol=1e-10):
    torch.testing.assert_close(ours[0], theirs[0], atol=atol, rtol=rtol)
    torch.testing.assert_close(ours[1], theirs[1], atol=atol, rtol=rtol)


def data(seed, n=2, c=4, h=5, w=6):
    """Logits (N, C, H, W), labels (N, H, W): class 2 absent from image 0, class 3 absent everywhere."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g, dtype=F64) * 2
    labels = torch.randint(0, max(c - 1, 1), (n, h, w), generator=g)
    labels[0][labels[0] == 2] = 1
    return x, labels


def one_hot(labels, c):
    return F.one_hot(labels.long(), c).movedim(-1, 1).to(F64)


# ----------------------------------------------------------------------------
# transcriptions of the frameworks' formulas


def ref_monai_gdl(x, t, *, include_background=True, to_onehot_y=False, sigmoid=False, softmax=False, w_type="square",
                  reduction="mean", smooth_nr=1e-5, smooth_dr=1e-5, batch=False, soft_label=False):
    """MONAI 1.6 GeneralizedDiceLoss.forward: activation, one-hot, background, sums, weights, one ratio."""
    p = torch.sigmoid(x) if sigmoid else x
    if softmax and x.shape[1] > 1:
        p = torch.softmax(p, 1)
    if to_onehot_y and x.shape[1] > 1:
        t = one_hot(t[:, 0], x.shape[1])
    if not include_background and x.shape[1] > 1:
        p, t = p[:, 1:], t[:, 1:]
    axes = [0, *range(2, p.ndim)] if batch else list(range(2, p.ndim))
    if soft_label:  # the L1 norms of p, t and p - t
        tp = (p.abs().sum(axes) + t.abs().sum(axes) - (p - t).abs().sum(axes)) / 2
    else:
        tp = (p * t).sum(axes)
    fp, fn = p.sum(axes) - tp, t.sum(axes) - tp
    denominator = 2 * (tp + 0.5 * fp + 0.5 * fn)
    ground = t.sum(axes)
    w = {"simple": 1 / ground, "square": 1 / (ground * ground), "uniform": torch.ones_like(ground)}[w_type]
    infs = torch.isinf(w)
    w = torch.where(infs, torch.zeros_like(w), w)
    top = w.max() if batch else w.max(dim=1, keepdim=True).values
    w = w + infs * top
    dim = 0 if batch else 1
    f = 1 - (2 * (tp * w).sum(dim, keepdim=True) + smooth_nr) / ((denominator * w).sum(dim, keepdim=True) + smooth_dr)
    if reduction == "mean":
        return f.mean()
    if reduction == "sum":
        return f.sum()
    return f.view(list(f.shape[:2]) + [1] * (x.ndim - 2))


def ref_optax_gdl(x, t, *, smooth=1.0, apply_softmax=True, ignore_background=False):
    """optax multiclass_generalized_dice_loss, channels last as optax computes it, in NumPy (values only)."""
    pred = np.moveaxis(x, 1, -1)
    targ = np.moveaxis(t, 1, -1)
    freq = targ.sum(axis=tuple(range(targ.ndim - 1)))
    cw = 1.0 / (freq ** 2 + 1e-7)
    cw = cw / cw.sum() * len(cw)
    if apply_softmax:
        if pred.shape[-1] == 1:
            probs = 1 / (1 + np.exp(-pred))
        else:
            e = np.exp(pred - pred.max(-1, keepdims=True))
            probs = e / e.sum(-1, keepdims=True)
    else:
        probs = pred
    axis = tuple(range(1, probs.ndim - 1))
    inter, psum, tsum = (probs * targ).sum(axis), probs.sum(axis), targ.sum(axis)
    coeff = (inter + smooth) / (inter + 0.5 * (psum - inter) + 0.5 * (tsum - inter) + smooth)
    per = (1.0 - coeff) * cw
    if ignore_background and probs.shape[-1] > 1:
        per = per[..., 1:]
    return np.mean(per)


# ----------------------------------------------------------------------------
# losslab's loss: what it equals


@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("smooth", [0.0, 1e-5, 0.7])
def test_binary_is_dice_loss(per_image, smooth):
    x, _ = data(1, c=1)
    t = (torch.rand(x.shape, generator=torch.Generator().manual_seed(3), dtype=F64) < 0.3).double()
    t[0] = 0.0  # an image without foreground
    for weight_type in ("square", "simple", "uniform"):
        ours = value_and_grad(losslab.generalized_dice_loss, x, t, mode="binary", weight_type=weight_type,
                              smooth=smooth, per_image=per_image, reduction="none")
        dice = value_and_grad(losslab.dice_loss, x, t, mode="binary", smooth=smooth, per_image=per_image,
                              reduction="none")
        assert_same(ours, (dice[0].reshape(ours[0].shape), dice[1]))


def test_uniform_weights_pool_every_class_into_one_dice():
    """Weights 1/C: (2 sum I + C s) / (sum (P + T) + C s), the Dice of all classes' elements in one ratio."""
    x, labels = data(2)
    t = one_hot(labels, 4)
    ours = value_and_grad(losslab.generalized_dice_loss, x, t, mode="multilabel", weight_type="uniform", smooth=0.3)
    pooled = value_and_grad(lambda z: losslab.dice_loss(torch.sigmoid(z).reshape(1, 1, -1), t.reshape(1, 1, -1),
                                                        mode="binary", from_logits=False, smooth=4 * 0.3), x)
    assert_same(ours, pooled)


@pytest.mark.parametrize("w_type", ["square", "simple", "uniform"])
def test_without_smoothing_it_is_monai_ratio(w_type):
    """The ratio is invariant to the weights' scale, and the absent-class rule is MONAI's (the largest finite
    weight): with no smoothing the two agree wherever a class is present (per image and over the batch)."""
    x, labels = data(4)
    t = one_hot(labels, 4)
    common = {"w_type": w_type, "smooth_nr": 0.0, "smooth_dr": 0.0, "softmax": True}
    per_image = value_and_grad(losslab.generalized_dice_loss, x, labels, mode="multiclass", weight_type=w_type,
                               smooth=0.0, per_image=True, reduction="none")
    assert_same(per_image, value_and_grad(lambda z: ref_monai_gdl(z, t, reduction="none", **common).flatten(), x))
    batch = value_and_grad(losslab.generalized_dice_loss, x, labels, mode="multiclass", weight_type=w_type,
                           smooth=0.0)
    assert_same(batch, value_and_grad(ref_monai_gdl, x, t, batch=True, **common))


def test_not_dice_loss_with_weight():
    x, labels = data(5)
    w = class_weights(one_hot(labels, 4).sum((0, 2, 3)).numpy(), "square")
    gdl = losslab.generalized_dice_loss(x, labels, mode="multiclass", smooth=0.0)
    weighted_mean = losslab.dice_loss(x, labels, mode="multiclass", smooth=0.0, weight=torch.from_numpy(w))
    assert abs(gdl.item() - weighted_mean.item()) > 0.01


def test_weights_and_the_absent_class_rule():
    v = torch.tensor([[10.0, 0.0, 100.0], [0.0, 0.0, 0.0]], dtype=F64)
    torch.testing.assert_close(volume_weights(v, 2), torch.tensor([[0.01, 0.01, 1e-4], [1, 1, 1]], dtype=F64) /
                               torch.tensor([[0.0201], [3.0]], dtype=F64))
    torch.testing.assert_close(volume_weights(v, 1), torch.tensor([[0.1, 0.1, 0.01], [1, 1, 1]], dtype=F64) /
                               torch.tensor([[0.21], [3.0]], dtype=F64))
    torch.testing.assert_close(volume_weights(v, 0), torch.full_like(v, 1 / 3))
    torch.testing.assert_close(volume_weights(v, 2), torch.from_numpy(class_weights(v.numpy(), "square")))
    # no overflow where 1 / volume^2 would be inf in float32 (soft targets of tiny mass)
    tiny = torch.tensor([1e-30, 1e-25, 5.0])
    w = volume_weights(tiny, 2)
    assert torch.isfinite(w).all() and w[0] > 0.99 and w.sum().item() == pytest.approx(1.0)
    assert volume_weights(torch.zeros(2, 0), 2).shape == (2, 0)


def test_absent_class_false_positives_weigh_like_the_rarest_class():
    """A false positive on a class absent from the batch costs what the same mass on the rarest present class's
    false positives costs: both carry the largest weight."""
    labels = torch.zeros(1, 1, 20, dtype=torch.long)
    labels[..., :2] = 1  # class 1: 2 pixels, class 2 absent
    p = one_hot(labels[:, 0], 3)
    on_absent, on_rare = p.clone(), p.clone()
    on_absent[0, :, 10] = torch.tensor([0.5, 0.0, 0.5], dtype=F64)  # background pixel half given to class 2
    on_rare[0, :, 10] = torch.tensor([0.5, 0.5, 0.0], dtype=F64)  # ... or to class 1
    kw = {"mode": "multiclass", "from_logits": False, "smooth": 0.0}
    a = losslab.generalized_dice_loss(on_absent, labels[:, 0], **kw)
    b = losslab.generalized_dice_loss(on_rare, labels[:, 0], **kw)
    torch.testing.assert_close(a, b)
    assert a > 0


def test_no_class_present_still_penalises_false_positives_where_monai_does_not():
    x = torch.full((2, 1, 4, 4), -1.0, dtype=F64)  # p = 0.27 everywhere, no foreground anywhere
    t = torch.zeros_like(x)
    ours = losslab.generalized_dice_loss(x, t, mode="binary", per_image=True, reduction="none")
    torch.testing.assert_close(ours, 1 - 1e-5 / (16 * torch.sigmoid(x[:, 0, 0, 0]) + 1e-5))
    assert (ours > 0.99).all()
    monai = losslab.get_loss("monai.GeneralizedDiceLoss", sigmoid=True, reduction="none")(x, t)
    assert torch.equal(monai, torch.zeros_like(monai))  # all-zero weights: 1 - smooth_nr / smooth_dr
    # an empty prediction of an empty target is a perfect match, also unsmoothed (0/0 -> 1), with finite gradients
    out, grad = value_and_grad(losslab.generalized_dice_loss, torch.zeros_like(x), t, mode="binary",
                               from_logits=False, smooth=0.0)
    assert out.item() == 0.0 and torch.isfinite(grad).all()


def test_smoothing_is_in_pixels_whatever_the_volume():
    """A 3-D batch of 2 x 64^3 voxels, foreground half the volume, predicted 0.5 everywhere: MONAI's 1e-5 on
    the raw weighted sums (of order 1 / volume) moves its loss; here the weights sum to 1 and it does not."""
    t = torch.zeros(2, 2, 64, 64, 64, dtype=F64)
    t[:, 1, :32] = 1.0
    t[:, 0] = 1.0 - t[:, 1]
    p = torch.full_like(t, 0.5)
    unsmoothed = losslab.generalized_dice_loss(p, t, mode="multilabel", from_logits=False, smooth=0.0)
    ours = losslab.generalized_dice_loss(p, t, mode="multilabel", from_logits=False)
    monai = losslab.get_loss("monai.GeneralizedDiceLoss", batch=True)(p, t)
    assert unsmoothed.item() == pytest.approx(0.5)  # 2 sum I / sum (P + T) = V / 2V
    assert ours.item() == pytest.approx(0.5, abs=1e-9)
    assert abs(monai.item() - 0.5) > 0.1


def test_combined_with_cross_entropy_from_a_config():
    x, labels = data(6)
    config = [{"name": "generalized_dice_loss", "mode": "multiclass", "loss_weight": 1.0},
              {"name": "cross_entropy", "loss_weight": 0.5}]
    combined = losslab.get_loss(config)
    ours = value_and_grad(combined, x, labels)
    expected = value_and_grad(lambda z: losslab.generalized_dice_loss(z, labels, mode="multiclass")
                              + 0.5 * F.cross_entropy(z, labels), x)
    assert_same(ours, expected)
    assert set(combined.last_components) == {"generalized_dice_loss", "cross_entropy"}
    module = losslab.combine({"gdl": losslab.GeneralizedDiceLoss(mode="multiclass"), "ce": "CrossEntropyLoss"},
                             weights={"gdl": 1.0, "ce": 0.5})
    assert_same(value_and_grad(module, x, labels), expected)


def test_compiled_equals_eager_with_gradients():
    x, labels = data(13)
    labels[1, :2] = 255

    def loss(z):
        return losslab.generalized_dice_loss(z, labels, mode="multiclass", ignore_index=255, per_image=True)

    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    assert_same(value_and_grad(compiled, x), value_and_grad(loss, x))


# ----------------------------------------------------------------------------
# Hypothesis


@st.composite
def batches(draw):
    n, c, h = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, generator=g, dtype=F64) * draw(st.sampled_from([0.1, 3.0, 30.0]))
    labels = torch.randint(0, c, (n, h), generator=g)
    if draw(st.booleans()):
        labels[torch.rand(n, h, generator=g) < 0.3] = -1
    kwargs = {"weight_type": draw(st.sampled_from(["square", "simple", "uniform"])),
              "per_image": draw(st.booleans()), "include_background": draw(st.booleans()),
              "smooth": draw(st.sampled_from([0.0, 1e-5, 1.0])), "ignore_index": -1}
    return x, labels, kwargs, g


@settings(max_examples=60, deadline=None)
@given(batches())
def test_in_unit_interval_with_finite_gradients(batch):
    x, labels, kwargs, _ = batch
    out, grad = value_and_grad(losslab.generalized_dice_loss, x, labels, mode="multiclass", reduction="none",
                               **kwargs)
    assert ((out >= -1e-12) & (out <= 1 + 1e-12)).all()
    assert torch.isfinite(grad).all()


@settings(max_examples=60, deadline=None)
@given(batches())
def test_perfect_prediction_gives_zero(batch):
    x, labels, kwargs, _ = batch
    kept = labels.clamp_min(0)
    p = one_hot(kept, x.shape[1])
    out = losslab.generalized_dice_loss(p, labels, mode="multiclass", from_logits=False, reduction="none", **kwargs)
    assert torch.allclose(out, torch.zeros_like(out), atol=1e-12)
    if kwargs["smooth"] > 0:  # (unsmoothed, e^-80 of a class absent everywhere is a total miss, as in dice_loss)
        near = losslab.generalized_dice_loss(p * 80 - 40, labels, mode="multiclass", reduction="none", **kwargs)
        assert (near < 1e-6).all()


@settings(max_examples=60, deadline=None)
@given(batches())
def test_invariant_to_permuting_positions(batch):
    """Each image's positions shuffled (differently per image), and the classes relabelled."""
    x, labels, kwargs, g = batch
    n, c, h = x.shape
    order = torch.stack([torch.randperm(h, generator=g) for _ in range(n)])
    xs = torch.gather(x, 2, order.unsqueeze(1).expand(n, c, h))
    ls = torch.gather(labels, 1, order)
    a = losslab.generalized_dice_loss(x, labels, mode="multiclass", reduction="none", **kwargs)
    b = losslab.generalized_dice_loss(xs, ls, mode="multiclass", reduction="none", **kwargs)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-13)
    if kwargs["include_background"]:
        relabel = torch.randperm(c, generator=g)
        lr = torch.where(labels >= 0, relabel[labels.clamp_min(0)], labels)
        xr = torch.empty_like(x)
        xr[:, relabel] = x
        torch.testing.assert_close(a, losslab.generalized_dice_loss(xr, lr, mode="multiclass", reduction="none",
                                                                    **kwargs), rtol=1e-12, atol=1e-13)


@settings(max_examples=40, deadline=None)
@given(batches())
def test_matches_the_numpy_reference(batch):
    x, labels, kwargs, _ = batch
    out = losslab.generalized_dice_loss(x, labels, mode="multiclass", reduction="none", **kwargs)
    np.testing.assert_allclose(out.numpy(), ref_gdl(x.numpy(), labels.numpy(), mode="multiclass", reduction="none",
                                                    **kwargs), rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------
# MONAI


MONAI_GDL = [
    ({}, "probabilities"),
    ({"softmax": True, "to_onehot_y": True}, "logits"),
    ({"softmax": True, "batch": True}, "logits"),
    ({"sigmoid": True, "w_type": "simple", "reduction": "none"}, "logits"),
    ({"softmax": True, "to_onehot_y": True, "include_background": False, "reduction": "sum"}, "logits"),
    ({"softmax": True, "w_type": "uniform", "smooth_nr": 0.0, "smooth_dr": 0.3}, "logits"),
    ({"softmax": True, "batch": True, "reduction": "none"}, "logits"),
    ({"softmax": True, "soft_label": True, "smooth_nr": 0.2, "smooth_dr": 0.1}, "logits"),
    ({"soft_label": True, "sigmoid": True}, "soft"),
]


def _monai_inputs(kw, domain, seed):
    x, labels = data(seed)
    if domain == "probabilities":
        x = torch.softmax(x, 1)
    if kw.get("to_onehot_y"):
        return x, labels.unsqueeze(1).to(F64)
    if domain == "soft":
        return x, torch.softmax(torch.randn(x.shape, generator=torch.Generator().manual_seed(seed), dtype=F64), 1)
    return x, one_hot(labels, x.shape[1])


@pytest.mark.parametrize(("kw", "domain"), MONAI_GDL, ids=[str(k) for k, _ in MONAI_GDL])
def test_monai_matches_formula(kw, domain):
    x, t = _monai_inputs(kw, domain, seed=7)
    ours = value_and_grad(losslab.get_loss("monai.GeneralizedDiceLoss", **kw), x, t)
    assert_same(ours, value_and_grad(ref_monai_gdl, x, t, **kw))
    assert_same(ours, value_and_grad(fg.monai_generalized_dice_loss, x, t, **kw))
    if kw.get("reduction") == "none":  # MONAI's shape: (N, 1, 1, 1), or one dim fewer with batch=True
        assert ours[0].shape == ((1, 1, 1) if kw.get("batch") else (2, 1, 1, 1))


def test_monai_defaults_and_errors():
    loss_fn = losslab.get_loss("monai.GeneralizedDiceLoss")
    assert (loss_fn.sigmoid, loss_fn.softmax, loss_fn.to_onehot_y, loss_fn.include_background, loss_fn.batch,
            loss_fn.w_type, loss_fn.soft_label) == (False, False, False, True, False, "square", False)
    assert loss_fn.smooth_nr == loss_fn.smooth_dr == 1e-5
    assert losslab.registry.lookup("monai.GeneralizedDiceLoss")[1].input == "probabilities"
    x, labels = data(8)
    with pytest.raises(ValueError, match=r"monai.GeneralizedDiceLoss: the input must hold probabilities"):
        loss_fn(x, one_hot(labels, 4))
    with pytest.raises(ValueError, match=r"monai.GeneralizedDiceLoss: w_type must be one of 'square', 'simple', "
                                         r"'uniform'; got 'cube'"):
        losslab.get_loss("monai.GeneralizedDiceLoss", w_type="cube")
    with pytest.raises(ValueError, match=r"more than one of sigmoid=True, softmax=True"):
        losslab.get_loss("monai.GeneralizedDiceLoss", sigmoid=True, softmax=True)
    with pytest.raises(ValueError, match=r"to_onehot_y=True takes \(N, 1, \*\) class indices"):
        losslab.get_loss("monai.GeneralizedDiceLoss", softmax=True)(x, labels.unsqueeze(1).to(F64))
    with pytest.warns(UserWarning, match=r"single channel prediction, `softmax=True` ignored"):
        losslab.get_loss("monai.GeneralizedDiceLoss", softmax=True)(torch.rand(2, 1, 3), torch.ones(2, 1, 3))
    empty = losslab.get_loss("monai.GeneralizedDiceLoss", softmax=True)(torch.zeros(0, 3, 4, requires_grad=True),
                                                                          torch.zeros(0, 3, 4))
    assert empty.item() == 0.0 and empty.grad_fn is not None
    # smooth_dr = 0 with no class present: 0/0 in MONAI, 0 here
    out = losslab.get_loss("monai.GeneralizedDiceLoss", smooth_nr=0.0, smooth_dr=0.0)(torch.zeros(1, 2, 3),
                                                                                       torch.zeros(1, 2, 3))
    assert out.item() == 0.0


def test_against_monai():
    monai_losses = pytest.importorskip("monai.losses")
    for kw, domain in MONAI_GDL:
        x, t = _monai_inputs(kw, domain, seed=9)
        # MONAI computes its weights in float32: 1e-7 relative
        assert_same(value_and_grad(losslab.get_loss("monai.GeneralizedDiceLoss", **kw), x, t),
                    value_and_grad(monai_losses.GeneralizedDiceLoss(**kw), x, t), atol=1e-8, rtol=1e-6)


# ----------------------------------------------------------------------------
# optax


OPTAX_GDL = [{}, {"smooth": 0.0}, {"ignore_background": True, "smooth": 0.5}, {"apply_softmax": False}]


@pytest.mark.parametrize("kw", OPTAX_GDL, ids=str)
def test_optax_matches_formula(kw):
    x, labels = data(10)  # class 3 absent from the batch: it takes nearly all the weight
    t = one_hot(labels, 4)
    if kw.get("apply_softmax") is False:
        x = torch.softmax(x, 1)
    loss_fn = losslab.get_loss("optax.multiclass_generalized_dice_loss", **kw)
    ours = loss_fn(x, t)
    assert ours.shape == ()
    expected = ref_optax_gdl(x.numpy(), t.numpy(), **kw)
    assert ours.item() == pytest.approx(float(expected), rel=1e-10, abs=1e-12)
    # gradients: against the transcription's formula in torch (autograd of the same expression)
    _, grad = value_and_grad(loss_fn, x, t)
    eps = 1e-6
    direction = torch.randn(x.shape, generator=torch.Generator().manual_seed(11), dtype=F64)
    numeric = (ref_optax_gdl((x + eps * direction).numpy(), t.numpy(), **kw)
               - ref_optax_gdl((x - eps * direction).numpy(), t.numpy(), **kw)) / (2 * eps)
    assert (grad * direction).sum().item() == pytest.approx(float(numeric), rel=1e-5, abs=1e-9)


def test_optax_quirks_and_errors():
    x, labels = data(12)
    t = one_hot(labels, 4)
    loss_fn = losslab.get_loss("optax.multiclass_generalized_dice_loss")
    assert (loss_fn.smooth, loss_fn.apply_softmax, loss_fn.ignore_background) == (1.0, True, False)
    assert type(losslab.get_loss("multiclass_generalized_dice_loss")) is fg.OptaxMulticlassGeneralizedDiceLoss
    # the absent class 3 weighs about C = 4 and the present ones about 0: its Dice loss is nearly the whole loss
    p = torch.softmax(x, 1)
    absent_dice = 1 - 2 / (p[:, 3].sum((1, 2)) + 2)  # per image, I = T = 0, smooth 2 s
    assert loss_fn(x, t).item() == pytest.approx((4 * absent_dice).sum().item() / 8, rel=1e-6)
    with pytest.raises(ValueError, match=r"optax.multiclass_generalized_dice_loss: When apply_softmax=False, "
                                         r"predictions must be valid probability distributions"):
        losslab.get_loss("optax.multiclass_generalized_dice_loss", apply_softmax=False)(x, t)
    with pytest.raises(ValueError, match=r"optax.multiclass_generalized_dice_loss: target must have the input's "
                                         r"shape \(2, 4, 5, 6\)"):
        loss_fn(x, labels)
    with pytest.raises(ValueError, match=r"optax.multiclass_generalized_dice_loss: target must lie in \[0, 1\]"):
        loss_fn(x, 2 * t)
    # one channel: a sigmoid
    torch.testing.assert_close(loss_fn(x[:, :1], t[:, :1]),
                               torch.tensor(float(ref_optax_gdl(x[:, :1].numpy(), t[:, :1].numpy())), dtype=F64))
    assert loss_fn(torch.zeros(0, 4, 3, requires_grad=True), torch.zeros(0, 4, 3)).item() == 0.0


def test_bare_name_is_losslab_and_warns_about_monai():
    with pytest.warns(UserWarning, match=r"MONAI's GeneralizedDiceLoss differs .*ask for "
                                         r"'monai.GeneralizedDiceLoss'"):
        assert type(losslab.get_loss("GeneralizedDiceLoss", mode="binary")) is losslab.GeneralizedDiceLoss
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert type(losslab.get_loss("Generalized Dice", mode="binary")) is losslab.GeneralizedDiceLoss
