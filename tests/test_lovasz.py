"""The Lovász losses: the smp and kornia formulas transcribed in torch, their aliases, properties, combinations.

The conformance battery (tests/test_conformance.py) already runs both losses against the float64 NumPy
reference (tests/reference_lovasz.py) with gradcheck, empty and all-ignored batches, half precision and
saturated inputs. Here: the reference implementations as segmentation_models_pytorch (0.5) and kornia (0.9)
write them, transcribed from their formulas into torch (a loop over classes and images, a sort per row), against
losslab's batched sort and the framework aliases, values and gradients; Hypothesis properties; the Lovász + CE
recipe through combine().
"""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import losslab

from .helpers import F64

# ----------------------------------------------------------------------------
# the peers' formulas, transcribed (Berman et al.'s Algorithm 1, as smp and kornia write it)


def jaccard_gradient(fg_sorted: torch.Tensor) -> torch.Tensor:
    """Differences of J_k = 1 - (G - cumsum(fg)) / (G + cumsum(1 - fg)), the first one J_1."""
    total = fg_sorted.sum()
    jaccard = 1.0 - (total - fg_sorted.cumsum(0)) / (total + (1.0 - fg_sorted).cumsum(0))
    if fg_sorted.numel() > 1:
        jaccard = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])
    return jaccard


def smp_softmax_flat(probas: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """smp's _lovasz_softmax_flat, classes="present": probas (P, C), labels (P,)."""
    losses = []
    for c in range(probas.shape[1]):
        fg = (labels == c).to(probas.dtype)
        if fg.sum() == 0:
            continue
        errors_sorted, perm = torch.sort((fg - probas[:, c]).abs(), descending=True)
        losses.append(torch.dot(errors_sorted, jaccard_gradient(fg[perm])))
    return sum(losses) / len(losses)


def smp_flatten(probas: torch.Tensor, labels: torch.Tensor, ignore: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    probas = torch.movedim(probas, 1, -1).reshape(-1, probas.shape[1])
    labels = labels.reshape(-1)
    if ignore is None:
        return probas, labels
    keep = labels != ignore
    return probas[keep], labels[keep]


def smp_lovasz_softmax(logits, labels, *, per_image=False, ignore=None):
    probas = logits.softmax(dim=1)
    if per_image:
        return sum(smp_softmax_flat(*smp_flatten(p[None], y[None], ignore)) for p, y in zip(probas, labels)) \
            / probas.shape[0]
    return smp_softmax_flat(*smp_flatten(probas, labels, ignore))


def smp_hinge_flat(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if labels.numel() == 0:
        return logits.sum() * 0.0
    errors = 1.0 - logits * (2.0 * labels - 1.0)
    errors_sorted, perm = torch.sort(errors, descending=True)
    return torch.dot(torch.relu(errors_sorted), jaccard_gradient(labels[perm]))


def smp_lovasz_hinge(logits, labels, *, per_image=True, ignore=None):
    def flat(x, y):
        x, y = x.reshape(-1), y.reshape(-1)
        return (x, y) if ignore is None else (x[y != ignore], y[y != ignore])

    if per_image:
        return sum(smp_hinge_flat(*flat(x, y)) for x, y in zip(logits, labels)) / logits.shape[0]
    return smp_hinge_flat(*flat(logits, labels))


def kornia_lovasz_softmax(pred, target, weight=None):
    """kornia's lovasz_softmax_loss: (B, C, N) errors sorted per image and class, every class, mean."""
    b, c = pred.shape[:2]
    p = pred.reshape(b, c, -1).softmax(1)
    fg = torch.nn.functional.one_hot(target.reshape(b, -1), c).permute(0, 2, 1).to(p.dtype)
    per = torch.stack([torch.stack([
        torch.dot(*(lambda s: (s[0], jaccard_gradient(fg[i, k][s[1]])))(torch.sort((fg[i, k] - p[i, k]).abs(),
                                                                                     descending=True)))
        for k in range(c)]) for i in range(b)])
    per_class = per.mean(0)
    if weight is not None:
        per_class = per_class * weight
    return per_class.mean()


def logits(*shape, seed=0, scale=2.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64) * scale


def labels(*shape, high, seed=1):
    return torch.randint(0, high, shape, generator=torch.Generator().manual_seed(seed))


def value_grad(fn, x, *args, **kwargs):
    x = x.detach().clone().requires_grad_(True)
    out = fn(x, *args, **kwargs)
    out.backward()
    return out.detach(), x.grad


def assert_same(a, b):
    torch.testing.assert_close(a[0], b[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(a[1], b[1], rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------
# losslab equals the transcribed formulas


class TestLovaszSoftmax:
    @pytest.mark.parametrize("per_image", [False, True])
    @pytest.mark.parametrize("ignore", [None, 255])
    def test_equals_smp_formula_and_smp_alias(self, per_image, ignore):
        x, y = logits(3, 5, 6, 7), labels(3, 6, 7, high=5)
        if ignore is not None:
            y[torch.rand(y.shape, generator=torch.Generator().manual_seed(3)) < 0.3] = ignore
        want = value_grad(smp_lovasz_softmax, x, y, per_image=per_image, ignore=ignore)
        assert_same(value_grad(losslab.lovasz_softmax_loss, x, y, per_image=per_image, ignore_index=ignore), want)
        alias = losslab.get_loss("smp.LovaszLoss", mode="multiclass", per_image=per_image, ignore_index=ignore)
        assert_same(value_grad(alias, x, y), want)

    @pytest.mark.parametrize("weighted", [False, True])
    def test_equals_kornia_formula_and_kornia_alias(self, weighted):
        x, y = logits(2, 4, 5, 6), labels(2, 5, 6, high=3)  # class 3 absent: kornia counts it
        weight = torch.tensor([0.5, 2.0, 1.0, 3.0], dtype=F64) if weighted else None
        want = value_grad(kornia_lovasz_softmax, x, y, weight)
        alias = losslab.get_loss("kornia.LovaszSoftmaxLoss", weight=weight)
        assert_same(value_grad(alias, x, y), want)
        if not weighted:
            assert_same(value_grad(losslab.lovasz_softmax_loss, x, y, per_image=True, classes="all"), want)

    def test_kornia_itself_where_installed(self):
        kornia = pytest.importorskip("kornia")
        x, y = logits(2, 4, 5, 6), labels(2, 5, 6, high=4)
        weight = torch.tensor([0.5, 2.0, 1.0, 3.0], dtype=F64)
        for w in (None, weight):
            want = value_grad(kornia.losses.lovasz_softmax_loss, x, y, w)
            assert_same(value_grad(losslab.get_loss("kornia.lovasz_softmax_loss", weight=w), x, y), want)
        xb, yb = logits(3, 1, 5, 6), labels(3, 5, 6, high=2)
        want = value_grad(kornia.losses.lovasz_hinge_loss, xb, yb)
        assert_same(value_grad(losslab.get_loss("kornia.LovaszHingeLoss"), xb, yb), want)

    def test_class_list_and_all(self):
        x, y = logits(2, 4, 3, 3), labels(2, 3, 3, high=3)
        none = losslab.lovasz_softmax_loss(x, y, classes="all", reduction="none")
        picked = losslab.lovasz_softmax_loss(x, y, classes=[3, 1], reduction="none")
        torch.testing.assert_close(picked, none[[3, 1]])
        # an absent class scores its largest probability (the Jaccard loss is 1 from the first pixel on)
        torch.testing.assert_close(none[3], torch.softmax(x, 1)[:, 3].max())
        present = losslab.lovasz_softmax_loss(x, y, reduction="none")
        assert present[3] == 0 and torch.equal(present[:3], none[:3])

    def test_ignore_index_inside_the_classes_is_no_foreground(self):
        x, y = logits(2, 3, 4, 4), labels(2, 4, 4, high=3)
        got = losslab.lovasz_softmax_loss(x, y, ignore_index=1, reduction="none")
        assert got[1] == 0  # class 1's pixels all left out: absent
        torch.testing.assert_close(got.sum() / 2, smp_lovasz_softmax(x, y, ignore=1))


class TestLovaszHinge:
    @pytest.mark.parametrize("per_image", [True, False])
    @pytest.mark.parametrize("ignore", [None, 255])
    def test_equals_smp_formula_and_smp_alias(self, per_image, ignore):
        x = logits(4, 1, 5, 6)
        t = (torch.rand(4, 1, 5, 6, generator=torch.Generator().manual_seed(5)) < 0.4).to(F64)
        if ignore is not None:
            t[torch.rand(t.shape, generator=torch.Generator().manual_seed(6)) < 0.3] = ignore
        want = value_grad(smp_lovasz_hinge, x, t, per_image=per_image, ignore=ignore)
        assert_same(value_grad(losslab.lovasz_hinge_loss, x, t, per_image=per_image, ignore_index=ignore), want)
        alias = losslab.get_loss("smp.LovaszLoss", mode="binary", per_image=per_image, ignore_index=ignore)
        assert_same(value_grad(alias, x, t), want)

    def test_smp_multilabel_pools_the_channels(self):
        x = logits(2, 3, 4, 4)
        t = (torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(7)) < 0.4).to(F64)
        alias = losslab.get_loss("smp.LovaszLoss", mode="multilabel")
        assert_same(value_grad(alias, x, t), value_grad(smp_lovasz_hinge, x, t, per_image=False))

    def test_an_all_ignored_image_leaves_losslab_mean_and_counts_zero_in_smp(self):
        x = logits(3, 1, 4, 4)
        t = (torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(8)) < 0.4).to(F64)
        t[1] = 255
        none = losslab.lovasz_hinge_loss(x, t, ignore_index=255, reduction="none")
        assert none[1] == 0
        torch.testing.assert_close(losslab.lovasz_hinge_loss(x, t, ignore_index=255), none.sum() / 2)
        smp = losslab.get_loss("smp.LovaszLoss", mode="binary", per_image=True, ignore_index=255)(x, t)
        torch.testing.assert_close(smp, none.sum() / 3)
        torch.testing.assert_close(smp, smp_lovasz_hinge(x, t, per_image=True, ignore=255))


def test_smp_from_logits_false_warns():
    with pytest.warns(UserWarning, match="whatever from_logits says"):
        losslab.get_loss("smp.LovaszLoss", mode="multiclass", from_logits=False)


# ----------------------------------------------------------------------------
# properties


@st.composite
def segmentation(draw, max_classes=4):
    n = draw(st.integers(1, 3))
    c = draw(st.integers(2, max_classes))
    pixels = draw(st.integers(1, 12))
    seed = draw(st.integers(0, 2**16))
    return logits(n, c, pixels, seed=seed, scale=draw(st.sampled_from([0.5, 3.0, 10.0]))), \
        labels(n, pixels, high=c, seed=seed + 1)


@given(segmentation(), st.booleans(), st.sampled_from(["present", "all"]))
def test_softmax_loss_lies_in_zero_one(sample, per_image, classes):
    x, y = sample
    loss = losslab.lovasz_softmax_loss(x, y, per_image=per_image, classes=classes, reduction="none")
    assert bool(((loss >= -1e-12) & (loss <= 1 + 1e-12)).all())


@given(segmentation(), st.booleans())
def test_perfect_prediction_gives_zero(sample, per_image):
    x, y = sample
    perfect = torch.nn.functional.one_hot(y, x.shape[1]).movedim(-1, 1).to(F64)
    assert losslab.lovasz_softmax_loss(perfect, y, per_image=per_image, from_logits=False) == 0
    margins = (2.0 * (y[:, None] > 0).to(F64) - 1.0) * 1.5  # every margin above 1
    assert losslab.lovasz_hinge_loss(margins, (y[:, None] > 0).to(F64), per_image=per_image) == 0


@given(segmentation(), st.booleans(), st.integers(0, 2**16))
def test_pixel_permutation_invariance(sample, per_image, seed):
    x, y = sample
    perm = torch.randperm(x.shape[-1], generator=torch.Generator().manual_seed(seed))
    for fn, target in ((losslab.lovasz_softmax_loss, y), (losslab.lovasz_hinge_loss, (y[:, None] > 0).to(F64))):
        inp = x if fn is losslab.lovasz_softmax_loss else x[:, :1]
        a = fn(inp, target, per_image=per_image)
        b = fn(inp[..., perm], target[..., perm], per_image=per_image)
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@given(segmentation())
def test_hard_prediction_gives_one_minus_iou(sample):
    """At 0/1 probabilities the Lovász extension is the Jaccard loss itself (it extends the set function)."""
    x, y = sample
    pred = x.argmax(1)
    hard = torch.nn.functional.one_hot(pred, x.shape[1]).movedim(-1, 1).to(F64)
    got = losslab.lovasz_softmax_loss(hard, y, from_logits=False, reduction="none")
    for c in range(x.shape[1]):
        inter, union = ((pred == c) & (y == c)).sum(), ((pred == c) | (y == c)).sum()
        if (y == c).any():
            torch.testing.assert_close(got[c], (1.0 - inter / union).to(F64))


# ----------------------------------------------------------------------------
# the Lovász + cross-entropy recipe


def test_combine_with_cross_entropy():
    x, y = logits(2, 3, 4, 5), labels(2, 4, 5, high=3)
    y[0, 0] = 255
    config = [{"name": "lovasz_softmax_loss", "ignore_index": 255, "loss_weight": 0.5},
              {"name": "cross_entropy", "ignore_index": 255}]
    loss_fn = losslab.get_loss(config)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = value_grad(loss_fn, x, y)
    want = value_grad(lambda inp, t: 0.5 * losslab.lovasz_softmax_loss(inp, t, ignore_index=255)
                      + losslab.cross_entropy(inp, t, ignore_index=255), x, y)
    assert_same(got, want)
    assert set(loss_fn.last_components) == {"lovasz_softmax_loss", "cross_entropy"}
    hinge = losslab.combine([losslab.LovaszHingeLoss(), "BCEWithLogitsLoss"], weights=[1.0, 1.0])
    xb = logits(2, 1, 4, 4)
    tb = (y[:, None, :, :4] == 1).to(F64)
    torch.testing.assert_close(hinge(xb, tb), losslab.lovasz_hinge_loss(xb, tb)
                               + losslab.binary_cross_entropy(xb, tb))
