"""Framework-qualified overlap losses reproduce their framework: MONAI, segmentation_models_pytorch, kornia, Keras.

Each framework's formula is transcribed below from its source (MONAI 1.6 ``monai/losses/dice.py`` and
``focal_loss.py``, segmentation_models_pytorch 0.5 ``losses/_functional.py``, ``dice.py``, ``jaccard.py``,
``tversky.py``, kornia 0.9 ``kornia/losses/dice.py`` and ``tversky.py``, Keras 3 ``keras/src/losses/losses.py``)
as plain torch code in float64, and compared with losslab's adapters in value and gradient. Where the package
itself is importable (MONAI and kornia in the development environment; none of them in CI), the adapters are
also compared with it directly.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

import losslab
from losslab.frameworks import segmentation as fs
from losslab.frameworks import segmentation_monai as fm
from losslab.frameworks import segmentation_smp as fp

F64 = torch.float64


def value_and_grad(fn, x, *args, **kwargs):
    x = x.detach().clone().requires_grad_(True)
    value = fn(x, *args, **kwargs)
    value.sum().backward()
    return value.detach(), x.grad


def assert_same(ours, theirs, atol=1e-12, rtol=1e-10):
    torch.testing.assert_close(ours[0], theirs[0], atol=atol, rtol=rtol)
    torch.testing.assert_close(ours[1], theirs[1], atol=atol, rtol=rtol)


def quiet_loss(name, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return losslab.get_loss(name, **kwargs)


def data(seed, n=2, c=4, h=5, w=6):
    """Logits (N, C, H, W), labels (N, H, W) with class 2 absent from image 0 and class 3 absent everywhere."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g, dtype=F64) * 2
    labels = torch.randint(0, max(c - 1, 1), (n, h, w), generator=g)
    labels[0][labels[0] == 2] = 1
    return x, labels


def one_hot(labels, c):
    return F.one_hot(labels.long(), c).movedim(-1, 1).to(F64)


# ----------------------------------------------------------------------------
# transcriptions of the frameworks' formulas


def ref_monai_dice(x, t, *, sigmoid=False, softmax=False, to_onehot_y=False, include_background=True, batch=False,
                   smooth_nr=1e-5, smooth_dr=1e-5, jaccard=False, squared_pred=False, weight=None,
                   reduction="mean", ignore_index=None):
    """MONAI 1.6 DiceLoss.forward: activation, one-hot, background, ignore mask, tp/fp/fn, weight, reduction."""
    p = torch.sigmoid(x) if sigmoid else x
    c = x.shape[1]
    if softmax and c > 1:
        p = torch.softmax(p, 1)
    original = t
    if to_onehot_y and c > 1:
        labels = t[:, 0].long()
        if ignore_index is not None and not 0 <= ignore_index < c:
            labels = torch.where(labels == ignore_index, torch.zeros_like(labels), labels)
        t = one_hot(labels, c)
    if not include_background and c > 1:
        p, t = p[:, 1:], t[:, 1:]
    if ignore_index is not None:
        if original.shape[1] == 1:
            mask = (original != ignore_index).to(F64)
        elif 0 <= ignore_index < original.shape[1]:
            mask = 1.0 - original[:, ignore_index:ignore_index + 1]
        else:
            mask = (original.sum(1, keepdim=True) > 0).to(F64)
        p, t = p * mask, t * mask
    dims = list(range(2, p.ndim))
    if batch:
        dims = [0] + dims
    power = 2 if squared_pred else 1
    tp = (p * t).sum(dims)
    fp = (p ** power).sum(dims) - tp
    fn = (t ** power).sum(dims) - tp
    if not jaccard:
        fp, fn = 0.5 * fp, 0.5 * fn
    f = 1 - (2 * tp + smooth_nr) / (2 * (tp + fp + fn) + smooth_dr)
    if weight is not None and t.shape[1] != 1:
        w = torch.as_tensor(weight, dtype=F64)
        f = f * (w.expand(t.shape[1]) if w.ndim == 0 else w)
    if reduction == "mean":
        return f.mean()
    if reduction == "sum":
        return f.sum()
    return f.reshape(list(f.shape[:2]) + [1] * (x.ndim - 2))


def ref_monai_sigmoid_focal(x, t, *, gamma=2.0, alpha=None, weight=None, include_background=True, reduction="mean"):
    """MONAI 1.6 FocalLoss(use_softmax=False).forward on a one-hot target."""
    if not include_background and x.shape[1] > 1:
        x, t = x[:, 1:], t[:, 1:]
    loss = x - x * t - F.logsigmoid(x)
    loss = (F.logsigmoid(-x * (t * 2 - 1)) * gamma).exp() * loss
    if alpha is not None:
        loss = (t * alpha + (1 - t) * (1 - alpha)) * loss
    if weight is not None:
        w = torch.as_tensor(weight, dtype=F64)
        loss = loss * (w if w.ndim == 0 else w.view([1, -1] + [1] * (x.ndim - 2)))
    if reduction == "sum":
        return loss.mean(dim=list(range(2, x.ndim))).sum()
    if reduction == "mean":
        return loss.mean()
    return loss


def ref_monai_dice_ce(x, t, *, weight=None, lambda_dice=1.0, lambda_ce=1.0, label_smoothing=0.0,
                      include_background=True, reduction="mean", **dice):
    dice_weight = weight[1:] if weight is not None and not include_background else weight
    d = ref_monai_dice(x, t, weight=dice_weight, include_background=include_background, reduction=reduction, **dice)
    if x.shape[1] == 1:
        ce = F.binary_cross_entropy_with_logits(x, t.to(F64), pos_weight=weight, reduction=reduction)
    elif t.shape[1] == 1:
        ce = F.cross_entropy(x, t[:, 0].long(), weight=weight, reduction=reduction, label_smoothing=label_smoothing)
    else:
        ce = F.cross_entropy(x, t.to(F64), weight=weight, reduction=reduction, label_smoothing=label_smoothing)
    return lambda_dice * d + lambda_ce * ce


def ref_monai_dice_focal(x, t, *, to_onehot_y=False, gamma=2.0, alpha=None, weight=None, lambda_dice=1.0,
                         lambda_focal=1.0, include_background=True, reduction="mean", **dice):
    if to_onehot_y and x.shape[1] > 1:
        t = one_hot(t[:, 0], x.shape[1])
    d = ref_monai_dice(x, t, weight=weight, include_background=include_background, reduction=reduction, **dice)
    focal = ref_monai_sigmoid_focal(x, t, gamma=gamma, alpha=alpha, weight=weight,
                                    include_background=include_background, reduction=reduction)
    return lambda_dice * d + lambda_focal * focal


def ref_smp(kind, x, y, *, mode, classes=None, log_loss=False, from_logits=True, smooth=0.0, ignore_index=None,
            eps=1e-7, alpha=0.5, beta=0.5, gamma=1.0):
    """segmentation_models_pytorch 0.5: DiceLoss.forward with soft_{dice,jaccard,tversky}_score (the L1 form)."""
    n = y.shape[0]
    if from_logits:
        p = x.log_softmax(dim=1).exp() if mode == "multiclass" else F.logsigmoid(x).exp()
    else:
        p = x
    c = p.shape[1]
    if mode == "binary":
        t, p = y.reshape(n, 1, -1), p.reshape(n, 1, -1)
        if ignore_index is not None:
            mask = t != ignore_index
            p, t = p * mask, t * mask
    elif mode == "multiclass":
        t, p = y.reshape(n, -1), p.reshape(n, c, -1)
        if ignore_index is not None:
            mask = t != ignore_index
            p = p * mask.unsqueeze(1)
            t = F.one_hot((t * mask).long(), c).permute(0, 2, 1) * mask.unsqueeze(1)
        else:
            t = F.one_hot(t, c).permute(0, 2, 1)
    else:
        t, p = y.reshape(n, c, -1), p.reshape(n, c, -1)
        if ignore_index is not None:
            mask = t != ignore_index
            p, t = p * mask, t * mask
    t = t.to(F64)
    dims = (0, 2)
    a, b = {"dice": (0.5, 0.5), "jaccard": (1.0, 1.0), "tversky": (alpha, beta)}[kind]
    sum_p, sum_t = p.sum(dims), t.sum(dims)
    inter = (sum_p + sum_t - (p - t).abs().sum(dims)) / 2
    score = (inter + smooth) / (inter + a * (sum_p - inter) + b * (sum_t - inter) + smooth).clamp_min(eps)
    loss = -torch.log(score.clamp_min(eps)) if log_loss else 1.0 - score
    loss = loss * (t.sum(dims) > 0).to(F64)
    if classes is not None:
        loss = loss[torch.as_tensor(classes).long()]
    return loss.mean() ** gamma if kind == "tversky" else loss.mean()


def _kornia_p_t(x, labels, ignore_index):
    p = torch.softmax(x, 1)
    valid = torch.ones_like(labels, dtype=torch.bool) if ignore_index is None else labels != ignore_index
    t = one_hot(torch.where(valid, labels, torch.zeros_like(labels)), x.shape[1])
    mask = valid.unsqueeze(1).to(F64)
    return p * mask, t * mask


def ref_kornia_dice(x, labels, *, average="micro", eps=1e-8, weight=None, ignore_index=-100):
    """kornia 0.9 dice_loss (the one-hot path)."""
    p, t = _kornia_p_t(x, labels, ignore_index)
    w = torch.ones(x.shape[1], dtype=F64) if weight is None else torch.as_tensor(weight, dtype=F64)
    dims = (2, 3)
    if average == "micro":
        dims = (1, 2, 3)
        inter = (p * t * w.view(-1, 1, 1)).sum(dims)
        card = ((p + t) * w.view(-1, 1, 1)).sum(dims)
    else:
        inter, card = (p * t).sum(dims), (p + t).sum(dims)
    empty = card == 0
    score = (2 * inter / (card + eps).masked_fill(empty, 1.0)).masked_fill(empty, 0.0)
    loss = 1 - score
    if average == "macro":
        wp = w * (t == 1).any(-1).any(-1)
        norm = wp.sum(-1)
        loss = ((loss * wp).sum(-1) / norm.masked_fill(norm == 0, 1)).masked_fill(norm == 0, 1)
    return loss.mean()


def ref_kornia_tversky(x, labels, *, alpha, beta, eps=1e-8, ignore_index=-100):
    """kornia 0.9 tversky_loss."""
    p, t = _kornia_p_t(x, labels, ignore_index)
    tp, fp, fn = (p * t).sum((2, 3)), (p * (1 - t)).sum((2, 3)), ((1 - p) * t).sum((2, 3))
    present = t.sum((2, 3)) > 0
    score = (tp / (tp + alpha * fp + beta * fn + eps).masked_fill(~present, 1.0)).masked_fill(~present, 0.0)
    score = score.sum(-1) / present.sum(-1).clamp_min(1)
    return 1.0 - score.mean()


def ref_keras_dice(y_pred, y_true, axis=None):
    """Keras 3 losses.dice (inputs = y_true, targets = y_pred), then the wrapper's mean."""
    inter = (y_true * y_pred).sum(dim=axis) if axis is not None else (y_true * y_pred).sum()
    sums = (y_true.sum(dim=axis) + y_pred.sum(dim=axis)) if axis is not None else y_true.sum() + y_pred.sum()
    return 1 - 2.0 * inter / (sums + 1e-7)


def ref_keras_tversky(y_pred, y_true, alpha=0.5, beta=0.5):
    """Keras 3 losses.tversky, as written: its ``fp`` is sum((1 - y_pred) * y_true)."""
    inputs, targets = y_true.reshape(-1), y_pred.reshape(-1)
    inter = (inputs * targets).sum()
    fp = ((1 - targets) * inputs).sum()
    fn = (targets * (1 - inputs)).sum()
    return 1 - inter / (inter + fp * alpha + fn * beta + 1e-7)


# ----------------------------------------------------------------------------
# MONAI

MONAI_DICE = [
    ({}, "probabilities"),
    ({"softmax": True, "to_onehot_y": True}, "logits"),
    ({"sigmoid": True, "batch": True, "reduction": "sum"}, "logits"),
    ({"softmax": True, "to_onehot_y": True, "include_background": False, "weight": [1.0, 2.0, 0.5]}, "logits"),
    ({"softmax": True, "to_onehot_y": True, "jaccard": True, "reduction": "none"}, "logits"),
    ({"softmax": True, "squared_pred": True, "weight": 3.0}, "logits"),
    ({"softmax": True, "to_onehot_y": True, "smooth_nr": 0.0, "smooth_dr": 1e-5}, "logits"),
    ({"softmax": True, "to_onehot_y": True, "jaccard": True, "smooth_nr": 0.3, "smooth_dr": 0.1, "batch": True,
      "reduction": "none"}, "logits"),
    ({"softmax": True, "to_onehot_y": True, "ignore_index": -100}, "logits"),
    ({"softmax": True, "to_onehot_y": True, "ignore_index": 1, "weight": [1.0, 0.0, 2.0, 1.0]}, "logits"),
    ({"sigmoid": True, "ignore_index": 255}, "logits"),  # one-hot target: all-zero pixels are left out
    ({"smooth_nr": 0.0, "smooth_dr": 0.0, "squared_pred": True}, "probabilities"),
]


def _monai_inputs(kw, domain, seed):
    x, labels = data(seed)
    if domain == "probabilities":
        x = torch.softmax(x, 1)
    if kw.get("ignore_index") == -100:
        labels[:, 0, :3] = -100
    if kw.get("to_onehot_y"):
        return x, labels.unsqueeze(1).to(F64)
    t = one_hot(labels.clamp_min(0), x.shape[1])
    if kw.get("ignore_index") == 255:
        t[:, :, 1, :2] = 0.0  # all-zero pixels
    return x, t


@pytest.mark.parametrize(("kw", "domain"), MONAI_DICE, ids=[str(k) for k, _ in MONAI_DICE])
def test_monai_dice_matches_formula(kw, domain):
    x, t = _monai_inputs(kw, domain, seed=1)
    loss_fn = losslab.get_loss("monai.DiceLoss", **kw)
    ours = value_and_grad(loss_fn, x, t)
    assert_same(ours, value_and_grad(ref_monai_dice, x, t, **kw))
    assert_same(ours, value_and_grad(fm.monai_dice_loss, x, t, **kw))  # the functional, the same
    if kw.get("reduction") == "none":  # MONAI's broadcastable shape
        assert ours[0].shape == ((4, 1, 1) if kw.get("batch") else (2, 4, 1, 1))


def test_monai_dice_defaults_take_probabilities_per_image():
    loss_fn = losslab.get_loss("monai.DiceLoss")
    assert (loss_fn.sigmoid, loss_fn.softmax, loss_fn.batch, loss_fn.include_background) == (False, False, False,
                                                                                              True)
    assert loss_fn.smooth_nr == loss_fn.smooth_dr == 1e-5
    x, labels = data(2)
    t = one_hot(labels, 4)
    with pytest.raises(ValueError, match=r"monai.DiceLoss: the input must hold probabilities in \[0, 1\].*"
                                         r"pass sigmoid=True or softmax=True"):
        loss_fn(x, t)
    p = torch.softmax(x, 1)
    torch.testing.assert_close(loss_fn(p, t), ref_monai_dice(p, t))
    # an empty class scores (smooth_nr) / (smooth_dr) = 1 per image: loss 0 there, as MONAI's
    per = losslab.get_loss("monai.DiceLoss", reduction="none")(torch.zeros_like(p), torch.zeros_like(t))
    assert torch.equal(per, torch.zeros(2, 4, 1, 1, dtype=F64))
    assert losslab.registry.lookup("monai.DiceLoss")[1].input == "probabilities"


def test_monai_dice_errors():
    x, labels = data(3)
    p = torch.softmax(x, 1)
    with pytest.raises(ValueError, match=r"soft_label=True is MONAI's soft-label Dice.*the closest losslab loss is "
                                         r"dice_loss"):
        losslab.get_loss("monai.DiceLoss", soft_label=True)(p, one_hot(labels, 4))
    with pytest.raises(ValueError, match=r"more than one of sigmoid=True, softmax=True"):
        losslab.get_loss("monai.DiceLoss", sigmoid=True, softmax=True)(x, one_hot(labels, 4))
    with pytest.raises(ValueError, match=r"weight must hold one value per class \(3; without class 0"):
        losslab.get_loss("monai.DiceLoss", include_background=False, weight=[1.0, 1.0, 1.0, 1.0])(p, one_hot(labels, 4))
    with pytest.raises(ValueError, match=r"to_onehot_y=True takes \(N, 1, \*\) class indices"):
        losslab.get_loss("monai.DiceLoss")(p, labels.unsqueeze(1))
    # soft_label with squared_pred is MONAI's squared form, which is the same formula
    t = one_hot(labels, 4)
    torch.testing.assert_close(losslab.get_loss("monai.DiceLoss", soft_label=True, squared_pred=True)(p, t),
                               ref_monai_dice(p, t, squared_pred=True))


MONAI_DICE_CE = [
    ({"softmax": True, "to_onehot_y": True}, "indices"),
    ({"softmax": True, "to_onehot_y": True, "include_background": False, "label_smoothing": 0.1, "lambda_ce": 0.5,
      "weight": [1.0, 2.0, 0.5, 3.0]}, "indices"),
    ({"softmax": True, "reduction": "sum", "weight": [1.0, 2.0, 0.5, 3.0]}, "one-hot"),  # CE of probabilities
    ({"sigmoid": True, "label_smoothing": 0.2, "batch": True}, "one-hot"),  # softmax CE even for sigmoid
    ({"sigmoid": True, "weight": [2.0], "lambda_dice": 0.3}, "single"),  # BCE with pos_weight
]


@pytest.mark.parametrize(("kw", "layout"), MONAI_DICE_CE, ids=[f"{k}-{v}" for k, v in MONAI_DICE_CE])
def test_monai_dice_ce_matches_formula(kw, layout):
    x, labels = data(4)
    if layout == "single":
        x = x[:, :1]
        t = (labels.unsqueeze(1) > 0).to(F64)
    else:
        t = labels.unsqueeze(1) if layout == "indices" else one_hot(labels, 4)
    ref_kw = dict(kw)
    if "weight" in ref_kw:
        ref_kw["weight"] = torch.tensor(ref_kw["weight"], dtype=F64)
    ours = value_and_grad(losslab.get_loss("monai.DiceCELoss", **kw), x, t)
    assert_same(ours, value_and_grad(ref_monai_dice_ce, x, t, **ref_kw))


MONAI_DICE_FOCAL = [
    {"softmax": True, "to_onehot_y": True},
    {"sigmoid": True, "to_onehot_y": True, "include_background": False, "weight": [1.0, 2.0, 0.5], "alpha": 0.25,
     "gamma": 1.5, "lambda_focal": 2.0},
    {"softmax": True, "reduction": "sum", "weight": 2.0},
    {"softmax": True, "to_onehot_y": True, "reduction": "none", "batch": True},
    {"softmax": True, "to_onehot_y": True, "reduction": "none", "jaccard": True},
]


@pytest.mark.parametrize("kw", MONAI_DICE_FOCAL, ids=str)
def test_monai_dice_focal_matches_formula(kw):
    x, labels = data(5)
    t = labels.unsqueeze(1).to(F64) if kw.get("to_onehot_y") else one_hot(labels, 4)
    ours = value_and_grad(losslab.get_loss("monai.DiceFocalLoss", **kw), x, t)
    assert_same(ours, value_and_grad(ref_monai_dice_focal, x, t, **kw))
    if kw.get("reduction") == "none":
        assert ours[0].shape == x.shape


def test_monai_pair_errors():
    x, labels = data(6)
    with pytest.raises(ValueError, match=r"monai.DiceCELoss: reduction must be one of 'mean', 'sum'; got 'none'"):
        losslab.get_loss("monai.DiceCELoss", reduction="none")(x, labels.unsqueeze(1))
    with pytest.raises(ValueError, match=r"monai.DiceFocalLoss: the target must have 1 channel"):
        losslab.get_loss("monai.DiceFocalLoss")(x, one_hot(labels, 4)[:, :2])
    with pytest.raises(ValueError, match=r"lambda_ce must be a finite number in \[0, inf\)"):
        losslab.get_loss("monai.DiceCELoss", lambda_ce=-1.0)(x, labels.unsqueeze(1))


def test_bare_pair_names_are_losslab_and_warn_about_monai():
    for name, module in (("DiceCELoss", losslab.DiceCELoss), ("DiceFocalLoss", losslab.DiceFocalLoss)):
        with pytest.warns(UserWarning, match=rf"MONAI's {name} differs .*ask for 'monai.{name}'"):
            assert type(losslab.get_loss(name, mode="multiclass")) is module
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert type(losslab.get_loss("monai.DiceCELoss")) is fm.MonaiDiceCELoss
        assert type(losslab.get_loss("monai.DiceFocalLoss")) is fm.MonaiDiceFocalLoss


# ----------------------------------------------------------------------------
# segmentation_models_pytorch

SMP = [
    ("dice", {}), ("dice", {"smooth": 0.7, "log_loss": True}), ("dice", {"ignore_index": "ignore"}),
    ("dice", {"classes": [1, 3], "smooth": 0.2}), ("dice", {"from_logits": False, "eps": 1e-3}),
    ("jaccard", {}), ("jaccard", {"smooth": 0.7, "log_loss": True}), ("jaccard", {"classes": [0, 2]}),
    ("jaccard", {"ignore_index": "ignore"}),  # smp 0.6
    ("tversky", {}), ("tversky", {"alpha": 0.3, "beta": 0.7, "gamma": 2.0, "smooth": 0.5}),
    ("tversky", {"log_loss": True, "alpha": 0.7, "beta": 0.3, "ignore_index": "ignore"}),
    ("tversky", {"gamma": 0.75, "classes": [2, 3]}),
]
SMP_NAMES = {"dice": "smp.DiceLoss", "jaccard": "smp.JaccardLoss", "tversky": "smp.TverskyLoss"}


def _smp_inputs(mode, seed, ignore):
    x, labels = data(seed)
    g = torch.Generator().manual_seed(seed + 100)
    if mode == "multiclass":
        y = labels.clone()
        if ignore is not None:
            y[:, 0, :3] = ignore
    elif mode == "multilabel":
        y = (torch.rand(x.shape, generator=g) > 0.6).to(F64)
        y[:, 3] = 0.0  # an absent class
        if ignore is not None:
            y[:, :, 0, :2] = ignore
    else:
        x, y = x[:, :1], (torch.rand(2, 5, 6, generator=g) > 0.6).to(F64)  # target (N, H, W) for input (N, 1, H, W)
        if ignore is not None:
            y[:, 0, :2] = ignore
    return x, y


@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
@pytest.mark.parametrize(("kind", "kw"), SMP, ids=[f"{k}-{v}" for k, v in SMP])
def test_smp_matches_formula(kind, kw, mode):
    kw = dict(kw)
    if mode == "binary":
        kw.pop("classes", None)
    ignore = None
    if kw.get("ignore_index") == "ignore":
        ignore = 255 if mode == "multiclass" else -1
        kw["ignore_index"] = ignore
    x, y = _smp_inputs(mode, 7, ignore)
    if kw.get("from_logits") is False:
        x = torch.softmax(x, 1) if mode == "multiclass" else torch.sigmoid(x)
    ours = value_and_grad(losslab.get_loss(SMP_NAMES[kind], mode=mode, **kw), x, y)
    assert_same(ours, value_and_grad(lambda z: ref_smp(kind, z, y, mode=mode, **kw), x))


def test_smp_defaults_and_smoothing():
    loss_fn = losslab.get_loss("smp.TverskyLoss", mode="binary")
    assert (loss_fn.smooth, loss_fn.eps, loss_fn.alpha, loss_fn.beta, loss_fn.gamma) == (0.0, 1e-7, 0.5, 0.5, 1.0)
    assert losslab.get_loss("smp.DiceLoss", mode="binary").smooth == 0.0
    # smp's Dice smooth s is losslab's Dice smooth 2 s
    x, y = _smp_inputs("multilabel", 8, None)
    y[:, 3] = 1.0  # every class present: smp's mask drops nothing
    torch.testing.assert_close(losslab.get_loss("smp.DiceLoss", mode="multilabel", smooth=0.5)(x, y),
                               losslab.dice_loss(x, y, mode="multilabel", smooth=1.0))


def test_smp_refusals():
    x, y = _smp_inputs("multilabel", 9, None)
    soft = y * 0.5
    for name in SMP_NAMES.values():
        closest = name.split(".")[1][:-4].lower() + "_loss"
        with pytest.raises(ValueError, match=rf"{name}: soft targets .*sum\(min\(p, t\)\).*the closest losslab loss "
                                             rf"is {closest}"):
            losslab.get_loss(name, mode="multilabel")(x, soft)
        with pytest.raises(ValueError, match=rf"{name}: classes is not supported with mode='binary'"):
            losslab.get_loss(name, mode="binary", classes=[0])(x[:, :1], y[:, :1])


# ----------------------------------------------------------------------------
# kornia

KORNIA_DICE = [{}, {"average": "macro"}, {"average": "macro", "weight": [1.0, 2.0, 0.5, 3.0]}, {"eps": 0.0},
               {"average": "macro", "eps": 2.5}, {"ignore_index": None}]


def _kornia_labels(seed, variant):
    x, labels = data(seed)
    if variant == "ignored":
        labels[:, 0, :3] = -100
    elif variant == "image-all-ignored":
        labels[0] = -100
    return x, labels


@pytest.mark.parametrize("variant", ["plain", "ignored", "image-all-ignored"])
@pytest.mark.parametrize("kw", KORNIA_DICE, ids=str)
def test_kornia_dice_matches_formula(kw, variant):
    if kw.get("ignore_index", -100) is None and variant != "plain":
        pytest.skip("no ignore_index")
    x, labels = _kornia_labels(10, variant)
    ours = value_and_grad(quiet_loss("kornia.DiceLoss", **kw), x, labels)
    assert_same(ours, value_and_grad(ref_kornia_dice, x, labels, **kw))
    assert_same(ours, value_and_grad(fs.kornia_dice_loss, x, labels, **kw))


KORNIA_TVERSKY = [{"alpha": 0.3, "beta": 0.7}, {"alpha": 0.0, "beta": 1.0}, {"alpha": 1.0, "beta": 1.0, "eps": 1.5},
                  {"alpha": 0.5, "beta": 0.5, "eps": 0.0}]


@pytest.mark.parametrize("variant", ["plain", "ignored", "image-all-ignored"])
@pytest.mark.parametrize("kw", KORNIA_TVERSKY, ids=str)
def test_kornia_tversky_matches_formula(kw, variant):
    x, labels = _kornia_labels(11, variant)
    ours = value_and_grad(losslab.get_loss("kornia.tversky_loss", **kw), x, labels)
    assert_same(ours, value_and_grad(ref_kornia_tversky, x, labels, **kw))


def test_kornia_defaults_and_refusals():
    loss_fn = losslab.get_loss("kornia.dice_loss")
    assert (loss_fn.average, loss_fn.eps, loss_fn.ignore_index) == ("micro", 1e-8, -100)
    with pytest.raises(TypeError, match=r"missing required keyword argument\(s\) 'alpha', 'beta'"):
        losslab.get_loss("kornia.TverskyLoss")
    x, labels = data(12)
    with pytest.raises(ValueError, match=r"weight with average='micro' is kornia's class-weighted sums.*the closest "
                                         r"losslab loss is dice_loss with weight"):
        losslab.get_loss("kornia.DiceLoss", weight=[1.0, 1.0, 1.0, 2.0])(x, labels)
    with pytest.raises(ValueError, match=r"alpha = beta = 0 .*the closest losslab loss is tversky_loss"):
        losslab.get_loss("kornia.TverskyLoss", alpha=0.0, beta=0.0)(x, labels)
    # kornia 0.9 drops a class absent from the target in "macro": a perfect empty prediction costs nothing
    x = torch.full((1, 2, 3, 3), -30.0, dtype=F64)
    x[:, 0] = 30.0
    labels = torch.zeros(1, 3, 3, dtype=torch.long)
    assert float(losslab.get_loss("kornia.DiceLoss", average="macro")(x, labels)) < 1e-8


# ----------------------------------------------------------------------------
# Keras


@pytest.mark.parametrize(("axis", "reduction"), [(None, "mean"), ((1, 2, 3), "mean"), ((1, 2), "sum"),
                                                 ((1, 2, 3), "none"), (-1, "none")])
def test_keras_dice_matches_formula(axis, reduction):
    g = torch.Generator().manual_seed(13)
    p = torch.rand(3, 4, 5, 2, generator=g, dtype=F64)
    t = (torch.rand(3, 4, 5, 2, generator=g) > 0.5).to(F64)
    t[1] = 0.0

    def ref(z):
        out = ref_keras_dice(z, t, axis=axis)
        return {"mean": out.mean(), "sum": out.sum(), "none": out}[reduction]

    ours = value_and_grad(losslab.get_loss("keras.Dice", axis=axis, reduction=reduction), p, t)
    assert_same(ours, value_and_grad(ref, p))


def test_keras_dice_documented_example():
    y_true = torch.tensor([[[[1.0], [1.0]], [[0.0], [0.0]]], [[[1.0], [1.0]], [[0.0], [0.0]]]], dtype=F64)
    y_pred = torch.tensor([[[[0.0], [1.0]], [[0.0], [1.0]]], [[[0.4], [0.0]], [[0.0], [0.9]]]], dtype=F64)
    per = losslab.get_loss("keras.dice", axis=(1, 2, 3), reduction="none")(y_pred, y_true)
    torch.testing.assert_close(per, torch.tensor([0.5, 0.75757575], dtype=F64), atol=1e-7, rtol=0)
    torch.testing.assert_close(losslab.get_loss("keras.Dice")(y_pred, y_true), torch.tensor(0.6164384, dtype=F64),
                               atol=1e-7, rtol=0)
    # an empty target with an empty prediction: 0 / epsilon, loss 1
    assert float(losslab.get_loss("keras.Dice")(torch.zeros(2, 3), torch.zeros(2, 3))) == 1.0


@pytest.mark.parametrize(("alpha", "beta"), [(0.5, 0.5), (0.7, 0.3), (0.0, 1.0), (1.0, 0.0), (2.0, 3.0)])
def test_keras_tversky_matches_formula_and_warns(alpha, beta):
    g = torch.Generator().manual_seed(14)
    p = torch.rand(2, 6, 6, 1, generator=g, dtype=F64)
    t = (torch.rand(2, 6, 6, 1, generator=g) > 0.6).to(F64)
    with pytest.warns(UserWarning, match=r"keras.Tversky reproduces Keras 3, whose alpha weighs the false negatives"):
        loss_fn = losslab.get_loss("keras.Tversky", alpha=alpha, beta=beta)
    ours = value_and_grad(loss_fn, p, t)
    assert_same(ours, value_and_grad(ref_keras_tversky, p, t, alpha=alpha, beta=beta))
    assert ours[0].shape == ()
    if alpha != beta:  # losslab's own Tversky puts alpha on the false positives: Keras' alpha is its beta
        ours_paper = losslab.tversky_loss(p, t, mode="binary", from_logits=False, alpha=beta, beta=alpha, smooth=0.0)
        torch.testing.assert_close(ours[0], ours_paper, atol=1e-6, rtol=0)


def test_keras_refusals_and_paper_names():
    with pytest.raises(ValueError, match=r"alpha = beta = 0 .*the closest losslab loss is tversky_loss"):
        quiet_loss("keras.Tversky", alpha=0.0, beta=0.0)(torch.rand(4), torch.ones(4))
    # the paper names keep meaning losslab's losses and warn that Keras' differ
    with pytest.warns(UserWarning, match=r"Keras's Tversky differs .*ask for 'keras.Tversky'"):
        assert type(losslab.get_loss("Tversky", mode="binary")) is losslab.TverskyLoss
    with pytest.warns(UserWarning, match=r"Keras's Dice differs .*ask for 'keras.Dice'"):
        assert type(losslab.get_loss("Dice", mode="binary")) is losslab.DiceLoss


# ----------------------------------------------------------------------------
# names


@pytest.mark.parametrize(("name", "closest"), [("monai.GeneralizedDiceFocalLoss", "dice_focal_loss"),
                                               ("monai.GeneralizedWassersteinDiceLoss", "dice_loss")])
def test_other_formulas_raise_with_the_closest_loss(name, closest):
    with pytest.raises(ValueError, match=rf"get_loss: '{name}' is MONAI's .*the closest losslab loss is {closest}"):
        losslab.get_loss(name)


@pytest.mark.parametrize(("name", "cls"), [
    ("monai.DiceLoss", fm.MonaiDiceLoss), ("monai.DiceCELoss", fm.MonaiDiceCELoss),
    ("monai.DiceFocalLoss", fm.MonaiDiceFocalLoss), ("smp.DiceLoss", fp.SmpDiceLoss),
    ("segmentation_models_pytorch.losses.JaccardLoss", fp.SmpJaccardLoss), ("smp.TverskyLoss", fp.SmpTverskyLoss),
    ("kornia.dice_loss", fs.KorniaDiceLoss), ("kornia.losses.DiceLoss", fs.KorniaDiceLoss),
    ("kornia.TverskyLoss", fs.KorniaTverskyLoss), ("keras.Dice", fs.KerasDice), ("keras.losses.dice", fs.KerasDice),
    ("keras.Tversky", fs.KerasTversky)])
def test_qualified_names_build_the_adapters(name, cls):
    kwargs = {"mode": "binary"} if name.startswith(("smp", "segmentation")) else \
        {"alpha": 0.5, "beta": 0.5} if "tversky" in name.lower() and name.startswith("kornia") else {}
    assert type(quiet_loss(name, **kwargs)) is cls


def test_bare_dice_loss_warns_about_every_framework():
    with pytest.warns(UserWarning) as record:
        assert type(losslab.get_loss("DiceLoss", mode="binary")) is losslab.DiceLoss
    message = str(record[0].message)
    assert "ask for 'monai.DiceLoss'" in message  # the registry names the first frameworks and counts the others
    assert "'smp.DiceLoss'" in message or "more" in message


# ----------------------------------------------------------------------------
# the packages themselves, where installed (not in CI)


def test_against_monai():
    monai_losses = pytest.importorskip("monai.losses")
    for kw, domain in MONAI_DICE:
        x, t = _monai_inputs(kw, domain, seed=20)
        theirs_kw = {k: torch.tensor(v, dtype=F64) if k == "weight" else v for k, v in kw.items()}
        # MONAI's one_hot is float32: its squared norms of a converted target round at 1e-7
        atol = 1e-6 if kw.get("to_onehot_y") and kw.get("squared_pred") else 1e-12
        assert_same(value_and_grad(losslab.get_loss("monai.DiceLoss", **kw), x, t),
                    value_and_grad(monai_losses.DiceLoss(**theirs_kw), x, t), atol=atol)
    x, labels = data(21)
    for kw, layout in MONAI_DICE_CE:
        t = labels.unsqueeze(1) if layout == "indices" else one_hot(labels, 4)
        xx = x
        if layout == "single":
            xx, t = x[:, :1], (labels.unsqueeze(1) > 0).to(F64)
        theirs_kw = {k: torch.tensor(v, dtype=F64) if k == "weight" else v for k, v in kw.items()}
        assert_same(value_and_grad(losslab.get_loss("monai.DiceCELoss", **kw), xx, t),
                    value_and_grad(monai_losses.DiceCELoss(**theirs_kw), xx, t), atol=1e-10)
    for kw in MONAI_DICE_FOCAL:
        t = labels.unsqueeze(1) if kw.get("to_onehot_y") else one_hot(labels, 4)
        # MONAI's FocalLoss computes in float32
        assert_same(value_and_grad(losslab.get_loss("monai.DiceFocalLoss", **kw), x, t),
                    value_and_grad(monai_losses.DiceFocalLoss(**kw), x, t), atol=2e-6, rtol=1e-5)


def test_against_kornia():
    kornia_losses = pytest.importorskip("kornia.losses")
    for variant in ("plain", "ignored", "image-all-ignored"):
        x, labels = _kornia_labels(22, variant)
        for kw in KORNIA_DICE:
            if kw.get("ignore_index", -100) is None and variant != "plain":
                continue
            theirs_kw = {k: torch.tensor(v, dtype=F64) if k == "weight" else v for k, v in kw.items()}
            assert_same(value_and_grad(losslab.get_loss("kornia.DiceLoss", **kw), x, labels),
                        value_and_grad(kornia_losses.dice_loss, x, labels, **theirs_kw))
        for kw in KORNIA_TVERSKY:
            assert_same(value_and_grad(losslab.get_loss("kornia.TverskyLoss", **kw), x, labels),
                        value_and_grad(kornia_losses.tversky_loss, x, labels, **kw))


def test_against_smp():
    smp_losses = pytest.importorskip("segmentation_models_pytorch.losses")
    classes = {"dice": smp_losses.DiceLoss, "jaccard": smp_losses.JaccardLoss, "tversky": smp_losses.TverskyLoss}
    for mode in ("binary", "multiclass", "multilabel"):
        for kind, kw in SMP:
            kw = dict(kw)
            if mode == "binary":
                kw.pop("classes", None)
            ignore = None
            if kw.get("ignore_index") == "ignore":
                ignore = 255 if mode == "multiclass" else -1
                kw["ignore_index"] = ignore
            x, y = _smp_inputs(mode, 23, ignore)
            if kw.get("from_logits") is False:
                x = torch.softmax(x, 1) if mode == "multiclass" else torch.sigmoid(x)
            assert_same(value_and_grad(losslab.get_loss(SMP_NAMES[kind], mode=mode, **kw), x, y),
                        value_and_grad(classes[kind](mode=mode, **kw), x, y))
