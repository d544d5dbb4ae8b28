"""Framework-qualified names reproduce their framework (focal, detection, box and classification names).

Each framework's formula is transcribed here from its source, in float64, and
compared with ``get_loss("<framework>.<Name>")`` for values and gradients.
Where the framework itself is installed (kornia, MONAI: `pip install
losslab[bench]`), it is compared directly too; CI runs the transcriptions.
The segmentation names are in tests/test_frameworks_segmentation.py.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

import losslab
from losslab import registry



@pytest.fixture(autouse=True)
def _float64():
    """The transcriptions run in float64."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _grad(loss: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    (g,) = torch.autograd.grad(loss.sum(), x, retain_graph=True)
    return g


def _assert_same(ours: torch.Tensor, ref: torch.Tensor, x: torch.Tensor, rtol: float = 1e-10) -> None:
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    torch.testing.assert_close(ours, ref, rtol=rtol, atol=1e-12)
    torch.testing.assert_close(_grad(ours, x), _grad(ref, x), rtol=rtol, atol=1e-12)


def _seg_batch(seed: int = 0, n: int = 2, c: int = 3, h: int = 4, w: int = 5):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(n, c, h, w, generator=g) * 2).requires_grad_(True)
    t = torch.randint(0, c, (n, h, w), generator=g)
    return x, t


# ----------------------------------------------------------------------------
# kornia


def kornia_focal_reference(x, t, alpha, gamma, reduction, weight, ignore_index):
    """kornia 0.9's focal_loss: per-class slices (N, C, *), class 0 weighted 1 - alpha, mean over N x C x pixels."""
    c = x.shape[1]
    valid = (t != ignore_index) if ignore_index is not None else torch.ones_like(t, dtype=torch.bool)
    tt = torch.where(valid, t, 0)
    one_hot = F.one_hot(tt, c).movedim(-1, 1).to(x.dtype) * valid.unsqueeze(1)
    log_p = torch.log_softmax(x, 1)
    loss = -((1 - log_p.exp()) ** gamma) * log_p * one_hot
    if alpha is not None:
        loss = loss * torch.tensor([1 - alpha] + [alpha] * (c - 1)).view(-1, 1, 1)
    if weight is not None:
        loss = loss * weight.view(-1, 1, 1)
    return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("alpha", [None, 0.3])
@pytest.mark.parametrize("weight", [None, [0.5, 1.0, 2.0]])
def test_kornia_focal_loss(reduction, alpha, weight):
    x, t = _seg_batch()
    t[0, 0, :2] = -100
    w = None if weight is None else torch.tensor(weight)
    loss_fn = losslab.get_loss("kornia.FocalLoss", alpha=alpha, reduction=reduction, weight=w)
    _assert_same(loss_fn(x, t), kornia_focal_reference(x, t, alpha, 2.0, reduction, w, -100), x)


def test_kornia_focal_defaults_are_kornias():
    x, t = _seg_batch(1)
    out = losslab.get_loss("kornia.focal_loss", alpha=0.25)(x, t)
    assert out.shape == x.shape  # kornia's default reduction is "none": per-class slices
    assert losslab.get_loss("kornia.focal_loss", alpha=0.25).gamma == 2.0
    # a scalar alpha is NOT losslab's (every class alike): class 0 gets 1 - alpha
    own = losslab.softmax_focal_loss(x, t, alpha=0.25, reduction="sum")
    assert not torch.allclose(out.sum(), own)


def kornia_binary_reference(x, t, alpha, gamma, reduction, ignore_index=-100, pos_weight=None, weight=None):
    mask = (t != ignore_index).to(x.dtype)
    tt = t * mask
    log_pos, log_neg = F.logsigmoid(x) * mask, F.logsigmoid(-x) * mask
    pos = -(gamma * log_neg).exp() * tt * log_pos
    neg = -(gamma * log_pos).exp() * (1 - tt) * log_neg
    if alpha is not None:
        pos, neg = alpha * pos, (1 - alpha) * neg
    if pos_weight is not None:
        pos = pos * pos_weight.view(-1, *([1] * (x.ndim - 2)))
    loss = pos + neg
    if weight is not None:
        loss = loss * weight.view(-1, *([1] * (x.ndim - 2)))
    return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("name", ["kornia.binary_focal_loss_with_logits", "kornia.BinaryFocalLossWithLogits"])
def test_kornia_binary_focal_loss(reduction, name):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, 4, generator=g, requires_grad=True)
    t = torch.randint(0, 2, (6, 4), generator=g).to(x.dtype)
    t[0, 1] = -100  # ignored, but still counted in kornia's mean
    _assert_same(losslab.get_loss(name, reduction=reduction)(x, t), kornia_binary_reference(x, t, 0.25, 2.0, reduction),
                 x)


def test_kornia_binary_focal_loss_pos_weight_and_weight():
    g = torch.Generator().manual_seed(16)
    x = torch.randn(5, 3, 2, generator=g, requires_grad=True)
    t = torch.randint(0, 2, (5, 3, 2), generator=g).to(x.dtype)
    pw, w = torch.tensor([2.0, 0.5, 1.0]), torch.tensor([1.0, 3.0, 0.2])
    ours = losslab.get_loss("kornia.binary_focal_loss_with_logits", pos_weight=pw, weight=w, reduction="mean")(x, t)
    _assert_same(ours, kornia_binary_reference(x, t, 0.25, 2.0, "mean", pos_weight=pw, weight=w), x)


@pytest.mark.parametrize(("name", "kw", "target"), [
    ("kornia.binary_focal_loss_with_logits", {}, "soft"),
    ("monai.FocalLoss", {}, "soft"),
])
def test_soft_targets_raise_where_the_framework_is_another_formula(name, kw, target):
    x = torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match=r"target must hold 0 and 1 .* losslab.sigmoid_focal_loss"):
        losslab.get_loss(name, **kw)(x, torch.rand(2, 3, 4, 4))


@pytest.mark.parametrize(("name", "kw", "match"), [
    ("kornia.FocalLoss", {"alpha": 0.5, "weight": [1.0, 2.0]}, r"kornia.focal_loss: weight must have shape \(3,\)"),
    ("monai.FocalLoss", {"alpha": [1.0, 2.0]}, r"monai.FocalLoss: alpha must have shape \(3,\)"),
    ("monai.FocalLoss", {"use_softmax": True, "weight": [1.0, 2.0]}, r"monai.FocalLoss: weight must have shape \(3,\)"),
    ("kornia.binary_focal_loss_with_logits", {"pos_weight": [1.0]}, r"pos_weight must have shape \(3,\)"),
])
def test_per_class_arguments_of_the_wrong_length_name_themselves(name, kw, match):
    x = torch.randn(2, 3, 4, 4)
    t = torch.randint(0, 3, (2, 4, 4)) if name == "kornia.FocalLoss" else \
        F.one_hot(torch.randint(0, 3, (2, 4, 4)), 3).movedim(-1, 1).to(x.dtype)
    with pytest.raises(ValueError, match=match):
        losslab.get_loss(name, **kw)(x, t)


def test_monai_focal_loss_rejects_labels_out_of_range():
    x = torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match=r"monai.FocalLoss: target class indices must be in \[0, 3\); got 3"):
        losslab.get_loss("monai.FocalLoss", to_onehot_y=True)(x, torch.full((2, 1, 4, 4), 3))


@pytest.mark.parametrize("use_softmax", [False, True])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("ignore_index", [7, 1])
def test_monai_focal_loss_ignore_index(use_softmax, reduction, ignore_index):
    x, t = _seg_batch(17)
    labels = t.unsqueeze(1).clone()
    if ignore_index == 7:
        labels[0, 0, 0] = 7  # outside [0, C): a pure ignore label
    mask = (labels != ignore_index).to(x.dtype)
    clean = torch.where(labels == 7, 0, labels) if ignore_index == 7 else labels
    onehot = F.one_hot(clean.clamp(0, 2)[:, 0], 3).movedim(-1, 1).to(x.dtype)
    kw = dict(alpha=0.3, use_softmax=use_softmax)
    loss = monai_focal_reference(x * mask, onehot * mask, reduction="none", **kw) * mask  # MONAI masks both inputs
    ref = {"none": loss, "mean": loss.sum() / mask.sum(),
           "sum": (loss.sum(dim=(2, 3)) / mask.sum(dim=(2, 3))).sum()}[reduction]
    ours = losslab.get_loss("monai.FocalLoss", to_onehot_y=True, ignore_index=ignore_index, reduction=reduction,
                            **kw)(x, labels)
    _assert_same(ours, ref, x)


def test_kornia_itself_when_installed():
    kornia_losses = pytest.importorskip("kornia.losses")
    x, t = _seg_batch(5)
    t[1, 2, 3] = -100
    for reduction in ("none", "mean", "sum"):
        for alpha in (None, 0.4):
            ours = losslab.get_loss("kornia.FocalLoss", alpha=alpha, reduction=reduction)(x, t)
            _assert_same(ours, kornia_losses.focal_loss(x, t, alpha, 2.0, reduction), x, rtol=1e-9)


# ----------------------------------------------------------------------------
# MONAI


def monai_focal_reference(x, onehot, *, gamma=2.0, alpha=None, weight=None, reduction="mean", use_softmax=False,
                          include_background=True):
    """MONAI 1.6's FocalLoss on one-hot targets."""
    if not include_background:
        x, onehot = x[:, 1:], onehot[:, 1:]
    c = x.shape[1]
    shape = (1, -1) + (1,) * (x.ndim - 2)
    if use_softmax:
        log_p = x.log_softmax(1)
        loss = -((1 - log_p.exp()) ** gamma) * log_p * onehot
        if alpha is not None and not (isinstance(alpha, float) and not include_background):
            a = torch.tensor([1 - alpha] + [alpha] * (c - 1)) if isinstance(alpha, float) else torch.tensor(alpha)
            loss = loss * a.view(shape)
    else:
        bce = x - x * onehot - F.logsigmoid(x)
        loss = torch.exp(gamma * F.logsigmoid(-x * (onehot * 2 - 1))) * bce
        if isinstance(alpha, float):
            loss = loss * (onehot * alpha + (1 - onehot) * (1 - alpha))
        elif alpha is not None:
            loss = loss * torch.where(onehot == 1, torch.tensor(alpha).view(shape), 1.0)
    if weight is not None:
        loss = loss * torch.as_tensor(weight).view(shape if torch.as_tensor(weight).ndim else ())
    if reduction == "sum":
        return loss.mean(dim=list(range(2, x.ndim))).sum()
    return loss.mean() if reduction == "mean" else loss


@pytest.mark.parametrize("use_softmax", [False, True])
@pytest.mark.parametrize("include_background", [True, False])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("alpha", [None, 0.3, "per-class"])
def test_monai_focal_loss(use_softmax, include_background, reduction, alpha):
    x, t = _seg_batch(2)
    onehot = F.one_hot(t, 3).movedim(-1, 1).to(x.dtype)
    c = 3 if include_background else 2
    if alpha == "per-class":
        alpha = [0.2, 0.5, 0.9][3 - c:]
    weight = [0.5, 1.0, 2.0][3 - c:]
    kw = dict(alpha=alpha, weight=weight, reduction=reduction, use_softmax=use_softmax,
              include_background=include_background)
    ours = losslab.get_loss("monai.FocalLoss", **kw)(x, onehot)
    _assert_same(ours, monai_focal_reference(x, onehot, **kw), x)
    via_indices = losslab.get_loss("monai.FocalLoss", to_onehot_y=True, **kw)(x, t.unsqueeze(1))
    torch.testing.assert_close(via_indices, ours)


def test_monai_focal_defaults_are_monais():
    loss_fn = losslab.get_loss("monai.FocalLoss")
    assert (loss_fn.alpha, loss_fn.gamma, loss_fn.use_softmax, loss_fn.reduction) == (None, 2.0, False, "mean")
    x, t = _seg_batch(4)
    onehot = F.one_hot(t, 3).movedim(-1, 1).to(x.dtype)
    # the sigmoid (one-vs-rest) form without alpha, mean over every element
    torch.testing.assert_close(loss_fn(x, onehot), losslab.sigmoid_focal_loss(x, onehot, alpha=None))


def test_monai_itself_when_installed():
    monai_losses = pytest.importorskip("monai.losses")
    x, t = _seg_batch(6)
    for use_softmax in (False, True):
        for alpha in (None, 0.25):
            kw = dict(to_onehot_y=True, alpha=alpha, use_softmax=use_softmax)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ref = monai_losses.FocalLoss(**kw)(x, t.unsqueeze(1))  # MONAI computes in float32
            ours = losslab.get_loss("monai.FocalLoss", **kw)(x, t.unsqueeze(1))
            torch.testing.assert_close(ours.float(), ref, rtol=1e-5, atol=1e-7)
            torch.testing.assert_close(_grad(ours, x).float(), _grad(ref, x).float(), rtol=1e-4, atol=1e-7)


# ----------------------------------------------------------------------------
# segmentation_models_pytorch, mmcv, TensorFlow Addons, optax, torchvision, TensorFlow


def smp_focal_reference(x, t, mode, alpha=None, gamma=2.0, ignore_index=None):
    """smp 0.6's FocalLoss: focal_loss_with_logits per class on the kept positions, then the mean over classes."""
    def focal(o, y):
        logpt = F.binary_cross_entropy_with_logits(o, y, reduction="none")
        loss = (1 - torch.exp(-logpt)) ** gamma * logpt
        if alpha is not None:
            loss = loss * (alpha * y + (1 - alpha) * (1 - y))
        return loss.mean()

    if mode == "binary":
        o, y = x.reshape(-1), t.reshape(-1).to(x.dtype)
        keep = y != ignore_index if ignore_index is not None else torch.ones_like(y, dtype=torch.bool)
        return focal(o[keep], y[keep])
    keep = t != ignore_index if ignore_index is not None else torch.ones_like(t, dtype=torch.bool)
    losses = [focal(x[:, c][keep], (t[keep] == c).to(x.dtype)) for c in range(x.shape[1])]
    return torch.stack(losses).mean()


@pytest.mark.parametrize("alpha", [None, 0.25])
@pytest.mark.parametrize("ignore_index", [None, 1])
def test_smp_focal_loss_multiclass(alpha, ignore_index):
    x, t = _seg_batch(7, c=4)
    ours = losslab.get_loss("smp.FocalLoss", mode="multiclass", alpha=alpha, ignore_index=ignore_index)(x, t)
    _assert_same(ours, smp_focal_reference(x, t, "multiclass", alpha, ignore_index=ignore_index), x)


def test_smp_focal_loss_binary_and_default_alpha_none():
    g = torch.Generator().manual_seed(8)
    x = torch.randn(3, 1, 4, 4, generator=g, requires_grad=True)
    t = torch.randint(0, 2, (3, 1, 4, 4), generator=g)
    loss_fn = losslab.get_loss("smp.FocalLoss", mode="binary")
    assert loss_fn.alpha is None
    _assert_same(loss_fn(x, t), smp_focal_reference(x, t, "binary"), x)


def test_mmcv_sigmoid_focal_loss_means_over_samples():
    g = torch.Generator().manual_seed(9)
    x = torch.randn(5, 3, generator=g, requires_grad=True)
    labels = torch.tensor([0, 3, 2, 3, 1])  # 3: background
    onehot = F.one_hot(labels, 4)[:, :3].to(x.dtype)
    p = x.sigmoid()
    ref = -(onehot * 0.25 * (1 - p) ** 2 * F.logsigmoid(x) + (1 - onehot) * 0.75 * p ** 2 * F.logsigmoid(-x))
    _assert_same(losslab.get_loss("mmcv.sigmoid_focal_loss")(x, labels), ref.sum() / 5, x)
    _assert_same(losslab.get_loss("mmcv.sigmoid_focal_loss", reduction="none")(x, labels), ref, x)


def test_mmcv_softmax_focal_loss_scales_every_class_by_alpha():
    g = torch.Generator().manual_seed(10)
    x = torch.randn(5, 4, generator=g, requires_grad=True)
    t = torch.randint(0, 4, (5,), generator=g)
    log_p = x.log_softmax(1).gather(1, t[:, None]).squeeze(1)
    ref = (-0.25 * (1 - log_p.exp()) ** 2 * log_p).sum() / 5
    _assert_same(losslab.get_loss("mmcv.softmax_focal_loss")(x, t), ref, x)


def test_tfa_sigmoid_focal_cross_entropy_sums_the_last_axis():
    g = torch.Generator().manual_seed(11)
    p = torch.rand(4, 3, generator=g).clamp(0.05, 0.95).requires_grad_(True)
    y = torch.randint(0, 2, (4, 3), generator=g).to(p.dtype)
    ce = -(y * p.log() + (1 - y) * (1 - p).log())
    p_t = y * p + (1 - y) * (1 - p)
    ref = ((y * 0.25 + (1 - y) * 0.75) * (1 - p_t) ** 2 * ce).sum(-1)
    _assert_same(losslab.get_loss("tfa.SigmoidFocalCrossEntropy")(p, y), ref, p)
    _assert_same(losslab.get_loss("SigmoidFocalCrossEntropy", reduction="mean")(p, y), ref.mean(), p)


@pytest.mark.parametrize(("name", "presets"), [
    ("optax.sigmoid_focal_loss", {"alpha": None, "reduction": "none", "gamma": 2.0}),
    ("torchvision.ops.sigmoid_focal_loss", {"alpha": 0.25, "reduction": "none", "gamma": 2.0}),
    ("tf.nn.softmax_cross_entropy_with_logits", {"reduction": "none"}),
    ("tf.nn.sparse_softmax_cross_entropy_with_logits", {"reduction": "none"}),
    ("tf.nn.sigmoid_cross_entropy_with_logits", {"reduction": "none"}),
    ("optax.softmax_cross_entropy_with_integer_labels", {"reduction": "none"}),
    ("optax.sigmoid_binary_cross_entropy", {"reduction": "none"}),
    ("optax.huber_loss", {"reduction": "none", "delta": 1.0}),
    ("tf.compat.v1.losses.softmax_cross_entropy", {"reduction": "mean"}),
    ("mmcv.softmax_focal_loss", {"alpha": 0.25, "gamma": 2.0}),
    ("keras.BinaryFocalCrossentropy", {"alpha": None, "from_logits": False, "gamma": 2.0}),
    ("keras.CategoricalFocalCrossentropy", {"alpha": 0.25, "from_logits": False, "gamma": 2.0}),
    ("torchvision.ops.generalized_box_iou_loss", {"reduction": "none", "eps": 1e-7}),
    ("torchvision.ops.distance_box_iou_loss", {"reduction": "none", "eps": 1e-7}),
    ("torchvision.ops.complete_box_iou_loss", {"reduction": "none", "eps": 1e-7}),
    ("mmdet.GIoULoss", {"reduction": "mean", "eps": 1e-6}),
    ("mmdet.DIoULoss", {"reduction": "mean", "eps": 1e-6}),
    ("mmdet.SmoothL1Loss", {"reduction": "mean", "beta": 1.0}),
    ("mmdet.VarifocalLoss", {"alpha": 0.75, "gamma": 2.0, "iou_weighted": True}),
])
def test_framework_defaults(name, presets):
    module = losslab.get_loss(name)
    for key, value in presets.items():
        assert getattr(module, key) == value, (name, key)


# ----------------------------------------------------------------------------
# mmdetection


def _bbox_overlaps(p, g, eps=1e-6):
    """mmdetection's aligned bbox_overlaps (mode 'iou'): overlap / max(union, eps)."""
    lt, rb = torch.max(p[:, :2], g[:, :2]), torch.min(p[:, 2:], g[:, 2:])
    wh = (rb - lt).clamp(min=0)
    overlap = wh[:, 0] * wh[:, 1]
    area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # noqa: E731
    union = torch.max(area(p) + area(g) - overlap, torch.tensor(eps))
    return overlap / union


@pytest.mark.parametrize("mode", ["log", "linear", "square"])
def test_mmdet_iou_loss_clamps_the_iou(mode):
    g = torch.Generator().manual_seed(12)
    xy = torch.rand(6, 2, generator=g) * 20
    pred = torch.cat([xy, xy + 4 + torch.rand(6, 2, generator=g) * 10], 1)
    target = pred.detach() + torch.randn(6, 4, generator=g) * 2
    target[:, 2:] = torch.max(target[:, 2:], target[:, :2] + 1)
    target[0] = torch.tensor([100.0, 100.0, 110.0, 110.0])  # disjoint: mmdetection's loss is -log(1e-6)
    pred.requires_grad_(True)
    ious = _bbox_overlaps(pred, target).clamp(min=1e-6)
    ref = {"log": -ious.log(), "linear": 1 - ious, "square": 1 - ious ** 2}[mode].mean()
    ours = losslab.get_loss("mmdet.IoULoss", mode=mode)(pred, target)
    # losslab divides by union + eps where mmdetection divides by max(union, eps): a relative eps / union
    _assert_same(ours, ref, pred, rtol=1e-7)
    if mode == "log":
        assert math.isfinite(float(ours.detach()))


def test_mmdet_quality_focal_loss_sums_each_anchor():
    g = torch.Generator().manual_seed(13)
    x = torch.randn(5, 3, generator=g, requires_grad=True)
    labels, scores = torch.tensor([0, 3, 2, 3, 1]), torch.rand(5, generator=g)
    weight = torch.rand(5, generator=g)
    s = x.sigmoid()
    loss = F.binary_cross_entropy_with_logits(x, torch.zeros_like(x), reduction="none") * s ** 2
    pos = (labels < 3).nonzero().squeeze(1)
    loss = loss.index_put((pos, labels[pos]), F.binary_cross_entropy_with_logits(
        x[pos, labels[pos]], scores[pos], reduction="none") * (scores[pos] - s[pos, labels[pos]]).abs() ** 2)
    per_anchor = loss.sum(1) * weight
    loss_fn = losslab.get_loss("mmdet.QualityFocalLoss")
    _assert_same(loss_fn(x, (labels, scores), weight=weight), per_anchor.mean(), x)
    _assert_same(loss_fn(x, (labels, scores), weight=weight, avg_factor=2.5), per_anchor.sum() / 2.5, x)


@pytest.mark.parametrize(("name", "closest"), [
    ("mmdet.EIoULoss", "iou_loss"), ("mmdet.CIoULoss", "ciou_loss"), ("mmdet.SIoULoss", "siou_loss"),
    ("tf.compat.v1.losses.log_loss", "binary_cross_entropy"),
])
def test_other_formulas_raise_and_name_the_closest_loss(name, closest):
    with pytest.raises(ValueError, match=rf"get_loss: '{name}' is .*the closest losslab loss is {closest}"):
        losslab.get_loss(name)


# ----------------------------------------------------------------------------
# prefixes


@pytest.mark.parametrize("name", ["monai.FocalLoss2", "smp.CrossEntropyLoss", "kornia.ssim_loss",
                                  "torch.sigmoid_focal_loss", "keras.SomeLoss", "timm.FocalLoss"])
def test_known_prefix_never_falls_back_to_losslab(name):
    with pytest.raises(ValueError, match=r"get_loss: losslab has no .* loss named"):
        losslab.get_loss(name)


@pytest.mark.parametrize("name", ["ultralytics.FocalLoss", "detectron2.FocalLoss", "mmyolo.loss.YOLOv5Loss"])
def test_unknown_prefix_is_an_error(name):
    with pytest.raises(ValueError, match=r"get_loss: unknown framework prefix"):
        losslab.get_loss(name)


@pytest.mark.parametrize(("name", "canonical"), [("losslab.sigmoid_focal_loss", "sigmoid_focal_loss"),
                                                 ("F.cross_entropy", "cross_entropy"),
                                                 ("nn.functional.binary_cross_entropy", "binary_cross_entropy")])
def test_module_paths_and_losslab_prefix_are_plain_names(name, canonical):
    assert registry.lookup(name)[0].name == canonical


@pytest.mark.parametrize(("spelling", "framework"), [
    ("BinaryCrossentropy", "keras.binary_crossentropy"), ("FocalLoss", "monai.FocalLoss"),
    ("focal-loss", "kornia.focal_loss"), ("IoULoss", "mmdet.IoULoss"),
])
def test_bare_spellings_of_a_framework_name_warn(spelling, framework):
    with pytest.warns(UserWarning, match=rf"ask for '{framework}'"):
        losslab.get_loss(spelling)


def test_canonical_names_never_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for spec in registry.specs():
            registry.lookup(spec.name)


def test_non_string_names_are_type_errors_without_echoing():
    with pytest.raises(TypeError, match=r"get_loss: name must be a str, a config dict or a list of them; got bytes$"):
        losslab.get_loss(b"focal_loss")


# ----------------------------------------------------------------------------
# Keras: classes on the last axis, probabilities renormalised


def keras_categorical_reference(p, y, *, from_logits=False, label_smoothing=0.0, gamma=None, alpha=0.25):
    """Keras 3's categorical_crossentropy / categorical_focal_crossentropy on the last axis (without its clip)."""
    c = p.shape[-1]
    y = y * (1 - label_smoothing) + label_smoothing / c
    out = torch.softmax(p, -1) if from_logits else p / p.sum(-1, keepdim=True)
    ce = -y * out.log()
    if gamma is not None:
        ce = alpha * (1 - out) ** gamma * ce
    return ce.sum(-1)


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_keras_categorical_crossentropies_channels_last(from_logits, label_smoothing):
    g = torch.Generator().manual_seed(14)
    raw = torch.randn(2, 3, 4, 5, generator=g)
    x = (raw if from_logits else torch.softmax(raw, -1) * 1.3).requires_grad_(True)  # not normalised: Keras divides
    labels = torch.randint(0, 5, (2, 3, 4), generator=g)
    onehot = F.one_hot(labels, 5).to(x.dtype)
    ref = keras_categorical_reference(x, onehot, from_logits=from_logits, label_smoothing=label_smoothing)
    kw = dict(from_logits=from_logits, label_smoothing=label_smoothing)
    _assert_same(losslab.get_loss("keras.losses.CategoricalCrossentropy", **kw)(x, onehot), ref.mean(), x)
    _assert_same(losslab.get_loss("keras.categorical_crossentropy", reduction="none", **kw)(x, onehot), ref, x)
    if label_smoothing == 0.0:
        sparse = losslab.get_loss("keras.sparse_categorical_crossentropy", from_logits=from_logits)
        _assert_same(sparse(x, labels), ref.mean(), x)
        _assert_same(sparse(x, labels.unsqueeze(-1)), ref.mean(), x)  # a trailing axis of 1
    focal = keras_categorical_reference(x, onehot, gamma=2.0, **kw)
    _assert_same(losslab.get_loss("keras.CategoricalFocalCrossentropy", **kw)(x, onehot), focal.mean(), x)


def test_keras_names_take_probabilities_by_default():
    for name in ("keras.CategoricalCrossentropy", "categorical_crossentropy", "keras.SparseCategoricalCrossentropy",
                 "CategoricalFocalCrossentropy", "keras.BinaryFocalCrossentropy", "keras.BinaryCrossentropy"):
        assert losslab.get_loss(name).from_logits is False, name


def test_caffe_sigmoid_cross_entropy_divides_by_the_batch_size():
    g = torch.Generator().manual_seed(15)
    x = torch.randn(4, 3, generator=g, requires_grad=True)
    t = torch.rand(4, 3, generator=g)
    ref = -(t * F.logsigmoid(x) + (1 - t) * F.logsigmoid(-x)).sum() / 4
    _assert_same(losslab.get_loss("caffe.SigmoidCrossEntropyLoss")(x, t), ref, x)


# ----------------------------------------------------------------------------
# every adapter: empty batches, construction checks, one-line errors

_EMPTY = [("kornia.FocalLoss", {"alpha": 0.5, "reduction": "mean"}, "labels"),
          ("kornia.binary_focal_loss_with_logits", {"reduction": "mean"}, "onehot"),
          ("kornia.DiceLoss", {}, "labels"), ("kornia.TverskyLoss", {"alpha": 0.5, "beta": 0.5}, "labels"),
          ("monai.FocalLoss", {}, "onehot"), ("monai.DiceLoss", {"sigmoid": True}, "onehot"),
          ("monai.DiceCELoss", {}, "onehot"), ("monai.DiceFocalLoss", {}, "onehot"),
          ("smp.FocalLoss", {"mode": "multiclass"}, "labels"), ("smp.DiceLoss", {"mode": "multiclass"}, "labels"),
          ("smp.JaccardLoss", {"mode": "multiclass"}, "labels"), ("smp.TverskyLoss", {"mode": "multiclass"}, "labels")]


@pytest.mark.parametrize(("name", "kw", "kind"), _EMPTY, ids=[n for n, _, _ in _EMPTY])
def test_empty_batches_give_zero_not_nan_or_an_error(name, kw, kind):
    x = torch.randn(0, 3, 4, 4, requires_grad=True)
    t = torch.zeros(0, 4, 4, dtype=torch.long) if kind == "labels" else torch.zeros(0, 3, 4, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = losslab.get_loss(name, **kw)(x, t)
    out.backward()
    assert float(out) == 0.0 and x.grad is not None


@pytest.mark.parametrize(("name", "kw", "match"), [
    ("kornia.DiceLoss", {"average": "x"}, r"kornia.DiceLoss: average must be 'micro' or 'macro'"),
    ("kornia.DiceLoss", {"weight": [1.0, 2.0]}, r"kornia.DiceLoss: weight with average='micro'"),
    ("kornia.TverskyLoss", {"alpha": -1, "beta": 1}, r"kornia.TverskyLoss: alpha must be a finite number"),
    ("kornia.TverskyLoss", {"alpha": 0, "beta": 0}, r"kornia.TverskyLoss: alpha = beta = 0"),
    ("monai.DiceLoss", {"sigmoid": True, "softmax": True}, r"monai.DiceLoss: incompatible values"),
    ("monai.DiceCELoss", {"lambda_ce": -1}, r"monai.DiceCELoss: lambda_ce must be a finite number"),
    ("monai.FocalLoss", {"gamma": -1}, r"monai.FocalLoss: gamma must be a finite number"),
    ("kornia.FocalLoss", {"alpha": 2.0}, r"kornia.focal_loss: alpha must be a finite number in \[0, 1\]"),
])
def test_adapters_check_their_arguments_at_construction(name, kw, match):
    with pytest.raises(ValueError, match=match):
        losslab.get_loss(name, **kw)


def test_rank_errors_say_what_shape_was_expected():
    with pytest.raises(ValueError, match=r"monai.FocalLoss: input must have shape \(N, C, \*\); got \(5,\)"):
        losslab.get_loss("monai.FocalLoss")(torch.randn(5), torch.rand(5))
