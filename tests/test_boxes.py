"""Box-regression losses: iou_loss, giou_loss, diou_loss, ciou_loss, eiou_loss and siou_loss.

Compared with torchvision's generalized, distance and complete box-IoU losses
(their formulas written out below in torch), values and gradients; CIoU's
gradient against finite differences with its trade-off factor held fixed;
the gradient IoU loses on disjoint boxes and the others keep; degenerate boxes
(zero width or height, points, identical, coincident centres, inverted, huge,
tiny) in every dtype; target-box validation; box formats, weights and
avg_factor; iou_loss's modes and aliases; Hypothesis invariants (symmetry,
translation and scale invariance, ranges, finite gradients); leading batch
shapes. The conformance battery covers reductions, the NumPy references,
gradcheck, module == functional, empty batches and half precision in general.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import losslab

from .helpers import TOLERANCES, assert_same, gen, value_and_grad

F64 = torch.float64
REDUCTIONS = ("none", "mean", "sum")
LOSSES = ("iou_loss", "giou_loss", "diou_loss", "ciou_loss", "eiou_loss", "siou_loss")
# every loss, and iou_loss in each of its modes
VARIANTS = {
    "iou-linear": ("iou_loss", {}),
    "iou-square": ("iou_loss", {"mode": "square"}),
    "iou-log": ("iou_loss", {"mode": "log"}),
    "giou": ("giou_loss", {}),
    "diou": ("diou_loss", {}),
    "ciou": ("ciou_loss", {}),
    "eiou": ("eiou_loss", {}),
    "siou": ("siou_loss", {}),
}
DTYPES = (F64, torch.float32, torch.float16, torch.bfloat16)


def variant(key: str, **extra):
    name, kwargs = VARIANTS[key]
    return functools.partial(getattr(losslab, name), **kwargs, **extra)


# ----------------------------------------------------------------------------
# boxes


def random_xyxy(n: int, g: torch.Generator) -> torch.Tensor:
    """Well-formed xyxy boxes (n, 4): corners in [0, 10), sizes in [0.5, 5.5)."""
    xy = torch.rand(n, 2, generator=g, dtype=F64) * 10
    wh = torch.rand(n, 2, generator=g, dtype=F64) * 5 + 0.5
    return torch.cat([xy, xy + wh], dim=-1)


def box_pairs(kind: str, n: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(pred, target) xyxy float64 boxes (n, 4) of a kind: random, overlapping, disjoint, nested or mixed."""
    g = gen(seed)
    if kind == "mixed":
        parts = [box_pairs(k, n, seed + i) for i, k in enumerate(("random", "overlapping", "disjoint", "nested"))]
        return torch.cat([p for p, _ in parts]), torch.cat([t for _, t in parts])
    p = random_xyxy(n, g)
    u = torch.rand(n, 4, generator=g, dtype=F64)
    wh = p[:, 2:] - p[:, :2]
    if kind == "random":
        t = random_xyxy(n, g)
    elif kind == "overlapping":  # centre moved by at most 15% of the size, size scaled by 0.6 to 1.4
        centre = (p[:, :2] + p[:, 2:]) / 2 + (u[:, :2] - 0.5) * 0.3 * wh
        size = wh * (0.6 + 0.8 * u[:, 2:])
        t = torch.cat([centre - size / 2, centre + size / 2], dim=-1)
    elif kind == "disjoint":  # moved past the pred in x, in y, or in both
        shift = torch.tensor([[20.0, 0.0], [0.0, 20.0], [20.0, 20.0], [-20.0, 5.0]], dtype=F64).repeat(n, 1)[:n]
        t = random_xyxy(n, g) + shift.repeat(1, 2)
    elif kind == "nested":  # target inside pred
        t = torch.cat([p[:, :2] + (0.05 + 0.35 * u[:, :2]) * wh, p[:, 2:] - (0.05 + 0.35 * u[:, 2:]) * wh], dim=-1)
    else:
        raise AssertionError(kind)
    return p, t


def to_xywh(b: torch.Tensor) -> torch.Tensor:
    return torch.cat([b[..., :2], b[..., 2:] - b[..., :2]], dim=-1)


def to_cxcywh(b: torch.Tensor) -> torch.Tensor:
    return torch.cat([(b[..., :2] + b[..., 2:]) / 2, b[..., 2:] - b[..., :2]], dim=-1)


def iou_of(p: torch.Tensor, t: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """The IoU, I / (U + eps), of well-formed xyxy boxes, written out."""
    iw = (torch.minimum(p[..., 2], t[..., 2]) - torch.maximum(p[..., 0], t[..., 0])).clamp_min(0)
    ih = (torch.minimum(p[..., 3], t[..., 3]) - torch.maximum(p[..., 1], t[..., 1])).clamp_min(0)
    inter = iw * ih
    area = (p[..., 2] - p[..., 0]) * (p[..., 3] - p[..., 1]) + (t[..., 2] - t[..., 0]) * (t[..., 3] - t[..., 1])
    return inter / (area - inter + eps)


def reduce_like_torchvision(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return loss.mean() if loss.numel() > 0 else 0.0 * loss.sum()
    if reduction == "sum":
        return loss.sum()
    return loss


# ----------------------------------------------------------------------------
# torchvision.ops' box losses, transcribed (torchvision 0.15+, torchvision/ops/{_utils,giou,diou,ciou}_loss.py)


def _tv_loss_inter_union(boxes1, boxes2):
    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
    xkis1 = torch.max(x1, x1g)
    ykis1 = torch.max(y1, y1g)
    xkis2 = torch.min(x2, x2g)
    ykis2 = torch.min(y2, y2g)
    intsctk = torch.zeros_like(x1)
    mask = (ykis2 > ykis1) & (xkis2 > xkis1)
    intsctk[mask] = (xkis2[mask] - xkis1[mask]) * (ykis2[mask] - ykis1[mask])
    unionk = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - intsctk
    return intsctk, unionk


def torchvision_generalized_box_iou_loss(boxes1, boxes2, reduction="none", eps=1e-7):
    intsctk, unionk = _tv_loss_inter_union(boxes1, boxes2)
    iouk = intsctk / (unionk + eps)
    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
    xc1 = torch.min(x1, x1g)
    yc1 = torch.min(y1, y1g)
    xc2 = torch.max(x2, x2g)
    yc2 = torch.max(y2, y2g)
    area_c = (xc2 - xc1) * (yc2 - yc1)
    miouk = iouk - ((area_c - unionk) / (area_c + eps))
    return reduce_like_torchvision(1 - miouk, reduction)


def _tv_diou_iou_loss(boxes1, boxes2, eps=1e-7):
    intsct, union = _tv_loss_inter_union(boxes1, boxes2)
    iou = intsct / (union + eps)
    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
    xc1 = torch.min(x1, x1g)
    yc1 = torch.min(y1, y1g)
    xc2 = torch.max(x2, x2g)
    yc2 = torch.max(y2, y2g)
    diagonal_distance_squared = ((xc2 - xc1) ** 2) + ((yc2 - yc1) ** 2) + eps
    x_p = (x2 + x1) / 2
    y_p = (y2 + y1) / 2
    x_g = (x1g + x2g) / 2
    y_g = (y1g + y2g) / 2
    centers_distance_squared = ((x_p - x_g) ** 2) + ((y_p - y_g) ** 2)
    loss = 1 - iou + (centers_distance_squared / diagonal_distance_squared)
    return loss, iou


def torchvision_distance_box_iou_loss(boxes1, boxes2, reduction="none", eps=1e-7):
    loss, _ = _tv_diou_iou_loss(boxes1, boxes2, eps)
    return reduce_like_torchvision(loss, reduction)


def torchvision_complete_box_iou_loss(boxes1, boxes2, reduction="none", eps=1e-7, *, diou_eps=None):
    # torchvision calls _diou_iou_loss(boxes1, boxes2), so its DIoU part and IoU always use the default eps;
    # diou_eps=eps passes eps through (losslab's convention: one eps everywhere)
    diou_loss, iou = _tv_diou_iou_loss(boxes1, boxes2) if diou_eps is None else _tv_diou_iou_loss(boxes1, boxes2,
                                                                                                   diou_eps)
    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
    w_pred = x2 - x1
    h_pred = y2 - y1
    w_gt = x2g - x1g
    h_gt = y2g - y1g
    v = (4 / (torch.pi**2)) * torch.pow((torch.atan(w_gt / h_gt) - torch.atan(w_pred / h_pred)), 2)
    with torch.no_grad():
        alpha = v / (1 - iou + v + eps)
    return reduce_like_torchvision(diou_loss + alpha * v, reduction)


TORCHVISION = {
    "giou_loss": torchvision_generalized_box_iou_loss,
    "diou_loss": torchvision_distance_box_iou_loss,
    "ciou_loss": torchvision_complete_box_iou_loss,
}


# ----------------------------------------------------------------------------


class TestTorchvisionParity:
    @pytest.mark.parametrize("reduction", REDUCTIONS)
    @pytest.mark.parametrize("eps", [1e-7, 0.05])  # 0.05: below every width, so CIoU's eps floor is idle
    @pytest.mark.parametrize("kind", ["random", "overlapping", "disjoint", "nested", "mixed"])
    @pytest.mark.parametrize("name", sorted(TORCHVISION))
    def test_values_and_gradients_match_torchvision(self, name, kind, eps, reduction):
        p, t = box_pairs(kind, 12, seed=len(kind))
        peer = TORCHVISION[name]
        if name == "ciou_loss" and eps != 1e-7:
            peer = functools.partial(peer, diou_eps=eps)  # see test_ciou_eps_reaches_every_denominator
        assert_same(value_and_grad(getattr(losslab, name), p, t, eps=eps, reduction=reduction),
                    value_and_grad(peer, p, t, eps=eps, reduction=reduction))

    def test_ciou_eps_reaches_every_denominator(self):
        # torchvision's complete_box_iou_loss passes eps to the trade-off factor only (its DIoU part keeps
        # 1e-7); losslab adds eps to every denominator, as its docs say: the same at the default eps only
        p, t = box_pairs("overlapping", 6, seed=6)
        ours = losslab.ciou_loss(p, t, eps=0.05, reduction="none")
        assert not torch.allclose(ours, torchvision_complete_box_iou_loss(p, t, eps=0.05), rtol=1e-4)
        torch.testing.assert_close(ours, torchvision_complete_box_iou_loss(p, t, eps=0.05, diou_eps=0.05),
                                   **TOLERANCES[F64])

    @pytest.mark.parametrize("name", sorted(TORCHVISION))
    def test_float32_matches_torchvision(self, name):
        p, t = box_pairs("mixed", 8, seed=3)
        p, t = p.float(), t.float()
        for reduction in REDUCTIONS:
            assert_same(value_and_grad(getattr(losslab, name), p, t, reduction=reduction),
                        value_and_grad(TORCHVISION[name], p, t, reduction=reduction), torch.float32)

    @pytest.mark.parametrize("name", sorted(TORCHVISION))
    def test_single_box_and_batched_leading_dims_match_torchvision(self, name):
        p, t = box_pairs("mixed", 6, seed=4)  # 24 pairs
        for shape in [(4,), (2, 3, 4), (4, 6, 4)]:
            n = math.prod(shape[:-1])
            pp, tt = p[:n].reshape(shape), t[:n].reshape(shape)
            for reduction in REDUCTIONS:
                assert_same(value_and_grad(getattr(losslab, name), pp, tt, reduction=reduction),
                            value_and_grad(TORCHVISION[name], pp, tt, reduction=reduction))

    def test_default_reduction_is_mean_not_torchvisions_none(self):
        p, t = box_pairs("mixed", 5, seed=5)
        for name, tv in TORCHVISION.items():
            assert_same(value_and_grad(getattr(losslab, name), p, t), value_and_grad(tv, p, t, reduction="mean"))

    def test_torchvision_transcription_is_sensitive_to_eps_placement(self):
        # the parity tests can tell eps in the denominators apart: eps = 0.05 changes every loss
        p, t = box_pairs("overlapping", 6, seed=6)
        for name, tv in TORCHVISION.items():
            assert not torch.allclose(tv(p, t, eps=0.05), tv(p, t, eps=1e-7), rtol=1e-4), name
            assert not torch.allclose(getattr(losslab, name)(p, t, eps=0.05, reduction="none"),
                                      tv(p, t, eps=1e-7), rtol=1e-4), name

    def test_zero_size_boxes_where_torchvision_ciou_is_nan(self):
        # torchvision's atan(w / h) is 0 / 0 for a point box; losslab floors w and h at eps
        p = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 2.0, 3.0]], dtype=F64)
        t = torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 2.0, 1.0, 2.0]], dtype=F64)
        assert torch.isnan(torchvision_complete_box_iou_loss(p, t)).all()
        out, grad = value_and_grad(losslab.ciou_loss, p, t, reduction="none")
        assert torch.isfinite(out).all() and torch.isfinite(grad).all()
        # the rest of the loss is torchvision's DIoU, which is finite there
        v = aspect_term(p, t)
        iou = 1 - losslab.iou_loss(p, t, reduction="none")
        torch.testing.assert_close(out, torchvision_distance_box_iou_loss(p, t) + v * v / (1 - iou + v + 1e-7))


# ----------------------------------------------------------------------------


def numeric_grad(f, x: torch.Tensor, h: float = 1e-6) -> torch.Tensor:
    """Central differences of a scalar function of x (float64)."""
    grad = torch.zeros_like(x)
    flat = x.detach().reshape(-1)
    for i in range(flat.numel()):
        step = torch.zeros_like(flat)
        step[i] = h
        grad.view(-1)[i] = (f((flat + step).reshape(x.shape)) - f((flat - step).reshape(x.shape))) / (2 * h)
    return grad


def aspect_term(p: torch.Tensor, t: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """CIoU's v = 4 / pi^2 (atan(w_g' / h_g') - atan(w_p' / h_p'))^2, w' = max(max(x2 - x1, 0), eps)."""
    def atan_ratio(b):
        w = (b[..., 2] - b[..., 0]).clamp_min(0).clamp_min(eps)
        h = (b[..., 3] - b[..., 1]).clamp_min(0).clamp_min(eps)
        return torch.atan(w / h)
    return 4 / math.pi**2 * (atan_ratio(t) - atan_ratio(p)) ** 2


class TestCIoUGradient:
    """CIoU's trade-off factor a = v / (1 - IoU + v + eps) is a constant for the gradient."""

    @staticmethod
    def frozen(p0: torch.Tensor, t: torch.Tensor, eps: float = 1e-7):
        """x -> diou_loss(x) + a0 v(x), a0 held at its value at p0 (per box)."""
        v0 = aspect_term(p0, t, eps)
        a0 = v0 / (1 - iou_of(p0, t, eps) + v0 + eps)
        return lambda x, reduction="none": _reduce(losslab.diou_loss(x, t, eps=eps, reduction="none")
                                                   + a0 * aspect_term(x, t, eps), reduction)

    @pytest.mark.parametrize("reduction", REDUCTIONS)
    @pytest.mark.parametrize("kind", ["mixed", "overlapping"])
    def test_gradient_is_finite_differences_of_diou_plus_frozen_a_times_v(self, kind, reduction):
        p, t = box_pairs(kind, 4, seed=7)
        f = self.frozen(p, t)
        out, grad = value_and_grad(losslab.ciou_loss, p, t, reduction=reduction)
        torch.testing.assert_close(out, f(p, reduction), **TOLERANCES[F64])
        upstream = torch.linspace(0.5, 1.5, out.numel(), dtype=F64).reshape(out.shape)  # value_and_grad's
        expected = numeric_grad(lambda x: (f(x, reduction) * upstream).sum(), p)
        torch.testing.assert_close(grad, expected, rtol=1e-6, atol=1e-8)

    def test_frozen_factor_differs_from_the_full_derivative(self):
        # the test above has teeth: differentiating through a as well gives another gradient
        p, t = box_pairs("overlapping", 4, seed=8)
        x = p.clone().requires_grad_(True)
        losslab.ciou_loss(x, t, reduction="sum").backward()
        full = numeric_grad(lambda x: losslab.ciou_loss(x, t, reduction="sum"), p)
        torch.testing.assert_close(x.grad, numeric_grad(lambda x: self.frozen(p, t)(x, "sum"), p),
                                   rtol=1e-6, atol=1e-8)
        grad = x.grad
        assert (grad - full).abs().max() > 1e-4

    def test_gradient_with_large_eps(self):
        p, t = box_pairs("mixed", 2, seed=9)
        f = self.frozen(p, t, eps=0.3)
        x = p.clone().requires_grad_(True)
        losslab.ciou_loss(x, t, eps=0.3, reduction="sum").backward()
        torch.testing.assert_close(x.grad, numeric_grad(lambda x: f(x, "sum"), p), rtol=1e-6, atol=1e-8)


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]


# ----------------------------------------------------------------------------


DISJOINT = torch.tensor([
    [[0.0, 0.0, 1.0, 1.0], [2.0, 0.0, 3.0, 1.0]],  # side by side, same row
    [[0.0, 0.0, 1.0, 1.0], [0.5, 3.0, 2.0, 4.0]],  # apart in y only, overlapping x ranges
    [[0.0, 0.0, 1.0, 2.0], [3.0, 3.0, 5.0, 4.0]],  # diagonal
    [[4.0, 4.0, 6.0, 5.0], [0.0, 0.0, 1.0, 3.0]],  # diagonal, the other way
], dtype=F64)


class TestDisjointBoxes:
    @pytest.mark.parametrize("key", ["iou-linear", "iou-square", "iou-log"])
    def test_iou_loss_is_flat_exactly_zero_gradient(self, key):
        p, t = box_pairs("disjoint", 8, seed=10)
        p, t = torch.cat([DISJOINT[:, 0], p]), torch.cat([DISJOINT[:, 1], t])
        for reduction in REDUCTIONS:
            out, grad = value_and_grad(variant(key), p, t, reduction=reduction)
            assert torch.all(grad == 0), grad
        expected = -math.log(1e-7) if key == "iou-log" else 1.0
        assert torch.all(variant(key)(p, t, reduction="none") == expected)

    @pytest.mark.parametrize("key", ["giou", "diou", "ciou", "eiou", "siou"])
    def test_other_losses_keep_a_gradient_that_pulls_the_boxes_together(self, key):
        p, t = box_pairs("disjoint", 8, seed=10)
        p, t = torch.cat([DISJOINT[:, 0], p]), torch.cat([DISJOINT[:, 1], t])
        out, grad = value_and_grad(variant(key), p, t, reduction="sum")
        assert torch.isfinite(grad).all()
        assert torch.all((grad != 0).any(-1)), grad  # every box gets a signal
        # a small step against the gradient lowers every box's loss
        before = variant(key)(p, t, reduction="none")
        after = variant(key)(p - 1e-3 * grad, t, reduction="none")
        assert torch.all(after < before), (before, after)


# ----------------------------------------------------------------------------


def degenerate_pairs(dtype: torch.dtype) -> dict[str, tuple[list[float], list[float]]]:
    """Named (pred, target) xyxy pairs; huge and tiny scaled to what the dtype holds."""
    big = 3e4 if dtype == torch.float16 else 1e12
    small = 1e-4 if dtype == torch.float16 else 1e-12
    return {
        "zero-width pred": ([1, 0, 1, 2], [0, 0, 2, 2]),
        "zero-height pred": ([0, 1, 2, 1], [0, 0, 2, 2]),
        "point pred": ([1, 1, 1, 1], [0, 0, 2, 2]),
        "zero-width target": ([0, 0, 2, 2], [1, 0, 1, 2]),
        "zero-height target": ([0, 0, 2, 2], [0, 1, 2, 1]),
        "point target": ([0, 0, 2, 2], [1, 1, 1, 1]),
        "point pred, point target": ([0, 0, 0, 0], [3, 4, 3, 4]),
        "zero-width both on one line": ([1, 0, 1, 2], [1, 1, 1, 3]),
        "identical": ([0, 0, 2, 3], [0, 0, 2, 3]),
        "identical points": ([1, 1, 1, 1], [1, 1, 1, 1]),
        "identical zero-width": ([1, 0, 1, 2], [1, 0, 1, 2]),
        "identical zero-height": ([0, 1, 2, 1], [0, 1, 2, 1]),
        "coincident centres, nested": ([0, 0, 4, 4], [1, 1, 3, 3]),
        "coincident centres, crossed": ([0, 1, 4, 3], [1, 0, 3, 4]),
        "coincident centres, point pred": ([2, 2, 2, 2], [0, 0, 4, 4]),
        "inverted pred in x": ([3, 0, 1, 2], [0, 0, 2, 2]),
        "inverted pred in x and y": ([2, 2, 0, 0], [0, 0, 2, 2]),
        "inverted pred, far": ([10, 10, 9, 8], [0, 0, 2, 2]),
        "huge, far apart": ([0, 0, 1, 1], [big, big, big + 1, big + 2]),
        "huge boxes": ([-big, -big, big, big], [0, 0, big, big]),
        "huge, identical": ([-big, 0, big, big], [-big, 0, big, big]),
        "tiny": ([0, 0, small, small], [small / 2, small / 2, 1.5 * small, 2 * small]),
        "tiny, identical": ([0, 0, small, 2 * small], [0, 0, small, 2 * small]),
        "tiny at huge": ([big, big, big + 4 * small, big + small], [big, big, big + small, big + 4 * small]),
    }


def degenerate_batch(dtype: torch.dtype) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    pairs = degenerate_pairs(dtype)
    p = torch.tensor([v[0] for v in pairs.values()], dtype=F64).to(dtype)
    t = torch.tensor([v[1] for v in pairs.values()], dtype=F64).to(dtype)
    return list(pairs), p, t


class TestDegenerateBoxes:
    @pytest.mark.parametrize("key", sorted(VARIANTS))
    @pytest.mark.parametrize("dtype", DTYPES, ids=str)
    def test_finite_losses_and_gradients(self, dtype, key):
        names, p, t = degenerate_batch(dtype)
        for reduction in REDUCTIONS:
            out, grad = value_and_grad(variant(key), p, t, reduction=reduction)
            assert out.dtype == dtype and grad.dtype == dtype
            bad_loss = ~torch.isfinite(out.float()).reshape(-1).expand(len(names))
            bad_grad = ~torch.isfinite(grad.float()).all(-1)
            assert not bad_loss.any(), [n for n, b in zip(names, bad_loss.tolist(), strict=True) if b]
            assert not bad_grad.any(), [n for n, b in zip(names, bad_grad.tolist(), strict=True) if b]

    @pytest.mark.parametrize("key", sorted(VARIANTS))
    @pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
    def test_half_precision_is_the_float32_result(self, dtype, key):
        _, p, t = degenerate_batch(dtype)
        out = variant(key)(p, t, reduction="none")
        torch.testing.assert_close(out.float(), variant(key)(p.float(), t.float(), reduction="none"),
                                   **TOLERANCES[dtype])

    @pytest.mark.parametrize("key", sorted(VARIANTS))
    @pytest.mark.parametrize("dtype", DTYPES, ids=str)
    def test_identical_well_formed_boxes_give_zero(self, dtype, key):
        names, p, t = degenerate_batch(dtype)
        rows = [i for i, n in enumerate(names) if n in ("identical", "huge, identical")]
        out = variant(key)(p[rows], t[rows], reduction="none")
        assert torch.all(out.float() >= 0) and torch.all(out.float() < 1e-6), out

    def test_identical_boxes_lose_eps_over_area(self):
        # "identical well-formed boxes give 0" holds up to eps: IoU = A / (A + eps), so boxes of area <= eps
        # have a loss near 1 (at area eps exactly 1/2) -- an effect of torchvision's convention
        side = torch.tensor([10.0, 1.0, 1e-2, 10**-3.5, 1e-4, 1e-6], dtype=F64)
        p = torch.stack([torch.zeros_like(side), torch.zeros_like(side), side, side], dim=-1)
        out = losslab.iou_loss(p, p.clone(), reduction="none")
        area = side * side
        torch.testing.assert_close(out, 1e-7 / (area + 1e-7), **TOLERANCES[F64])
        assert out[0] < 1e-9 and out[3] == pytest.approx(0.5) and out[-1] > 0.99

    @pytest.mark.parametrize("key", sorted(VARIANTS))
    def test_identical_zero_area_boxes_give_the_loss_of_iou_zero(self, key):
        names, p, t = degenerate_batch(F64)
        rows = [i for i, n in enumerate(names) if n.startswith("identical ")]
        out, grad = value_and_grad(variant(key), p[rows], t[rows], reduction="none")
        expected = -math.log(1e-7) if key == "iou-log" else 1.0  # every penalty term is 0 for identical boxes
        torch.testing.assert_close(out, torch.full_like(out, expected), **TOLERANCES[F64])
        assert torch.isfinite(grad).all()

    @pytest.mark.parametrize("key", ["iou-linear", "iou-square", "giou"])
    def test_zero_area_and_inverted_preds_have_iou_zero(self, key):
        names, p, t = degenerate_batch(F64)
        rows = [i for i, n in enumerate(names) if n.startswith(("zero-", "point", "inverted"))]
        iou_loss = variant("iou-linear")(p[rows], t[rows], reduction="none")
        assert torch.all(iou_loss == 1), iou_loss
        # GIoU then is 2 - U / C: still below 2 and still informative
        giou = losslab.giou_loss(p[rows], t[rows], reduction="none")
        assert torch.all((giou >= 1) & (giou < 2))

    def test_coincident_centres_diou_is_iou_loss(self):
        names, p, t = degenerate_batch(F64)
        rows = [i for i, n in enumerate(names) if n.startswith("coincident")]
        torch.testing.assert_close(losslab.diou_loss(p[rows], t[rows], reduction="none"),
                                   losslab.iou_loss(p[rows], t[rows], reduction="none"), rtol=0, atol=0)
        # SIoU's angle cost has no arcsin: finite gradient with the centres on top of each other
        _, grad = value_and_grad(losslab.siou_loss, p[rows], t[rows], reduction="sum")
        assert torch.isfinite(grad).all()

    @pytest.mark.xfail(strict=True, reason="SIoU's distance and shape costs divide by (cw + eps) and "
                       "(max(w_p, w_g) + eps), an eps added to a length rather than a squared length, so their "
                       "gradient grows like 1 / size up to 1 / eps; for boxes of about 1e-6 it overflows "
                       "float16 (inf), where DIoU/EIoU (eps in c^2) and IoU/GIoU (gradient stopped below eps) "
                       "stay finite")
    def test_siou_float16_gradient_finite_for_boxes_of_size_1e_6(self):
        small = 1e-6
        p = torch.tensor([[0.0, 0.0, small, small], [0.0, 0.0, 0.0, 0.0]], dtype=F64).half()
        t = torch.tensor([[small, small, 2 * small, 2 * small], [small, small, small, small]], dtype=F64).half()
        for key in VARIANTS:  # every other loss is finite here
            if key != "siou":
                assert torch.isfinite(value_and_grad(variant(key), p, t, reduction="sum")[1]).all(), key
        _, grad = value_and_grad(losslab.siou_loss, p, t, reduction="sum")
        assert torch.isfinite(grad).all(), grad


# ----------------------------------------------------------------------------


class TestTargetValidation:
    INVERTED = {
        "xyxy-x": ("xyxy", [[0.0, 0.0, 2.0, 2.0], [3.0, 0.0, 1.0, 2.0]]),
        "xyxy-y": ("xyxy", [[0.0, 0.0, 2.0, 2.0], [0.0, 3.0, 2.0, 1.0]]),
        "xywh": ("xywh", [[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, -1.0, 2.0]]),
        "cxcywh": ("cxcywh", [[1.0, 1.0, 2.0, 2.0], [1.0, 1.0, 2.0, -0.5]]),
    }

    @pytest.mark.parametrize("case", sorted(INVERTED))
    @pytest.mark.parametrize("name", LOSSES)
    def test_inverted_target_raises(self, name, case):
        box_format, target = self.INVERTED[case]
        p = torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 2.0, 2.0]], dtype=F64)
        t = torch.tensor(target, dtype=F64)
        for checks in (None, True):
            losslab.set_checks(checks)
            with pytest.raises(ValueError, match=rf"^{name}: target boxes must have x1 <= x2"):
                getattr(losslab, name)(p, t, box_format=box_format)

    @pytest.mark.parametrize("case", sorted(INVERTED))
    @pytest.mark.parametrize("key", sorted(VARIANTS))
    def test_without_checks_inverted_targets_give_finite_values(self, key, case):
        box_format, target = self.INVERTED[case]
        p = torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 2.0, 2.0]], dtype=F64)
        t = torch.tensor(target, dtype=F64)
        losslab.set_checks(False)
        for dtype in (F64, torch.float16):
            out, grad = value_and_grad(variant(key, box_format=box_format), p.to(dtype), t.to(dtype),
                                       reduction="none")
            assert torch.isfinite(out.float()).all() and torch.isfinite(grad.float()).all()
        # an inverted target has zero area: IoU 0
        if key == "iou-linear":
            assert out[1] == 1

    @pytest.mark.parametrize("name", LOSSES)
    def test_inverted_pred_and_zero_size_target_are_accepted(self, name):
        p = torch.tensor([[3.0, 0.0, 1.0, 2.0], [2.0, 2.0, 0.0, 0.0]], dtype=F64)
        t = torch.tensor([[1.0, 0.0, 1.0, 2.0], [1.0, 1.0, 1.0, 1.0]], dtype=F64)
        assert torch.isfinite(getattr(losslab, name)(p, t, reduction="none")).all()


# ----------------------------------------------------------------------------


class TestFormatsWeightsAvgFactor:
    @pytest.mark.parametrize("key", sorted(VARIANTS))
    def test_formats_give_the_same_losses_and_chained_gradients(self, key):
        p, t = box_pairs("mixed", 4, seed=11)
        for reduction in REDUCTIONS:
            out, g = value_and_grad(variant(key), p, t, reduction=reduction)
            out_wh, g_wh = value_and_grad(variant(key, box_format="xywh"), to_xywh(p), to_xywh(t),
                                          reduction=reduction)
            out_c, g_c = value_and_grad(variant(key, box_format="cxcywh"), to_cxcywh(p), to_cxcywh(t),
                                        reduction=reduction)
            # xywh: (x2, y2) = (x1, y1) + (w, h); cxcywh: (x1, x2) = cx -+ w / 2
            assert_same((out_wh, g_wh), (out, torch.cat([g[:, :2] + g[:, 2:], g[:, 2:]], dim=-1)))
            assert_same((out_c, g_c), (out, torch.cat([g[:, :2] + g[:, 2:], (g[:, 2:] - g[:, :2]) / 2], dim=-1)))

    @pytest.mark.parametrize("key", sorted(VARIANTS))
    def test_weight_shaped_like_pred_is_its_mean_per_box(self, key):
        p, t = box_pairs("mixed", 3, seed=12)
        w4 = torch.rand(p.shape, generator=gen(13), dtype=F64) * 2
        plain = variant(key)(p, t, reduction="none")
        for reduction in REDUCTIONS:
            got = value_and_grad(variant(key, weight=w4), p, t, reduction=reduction)
            assert_same(got, value_and_grad(variant(key, weight=w4.mean(-1)), p, t, reduction=reduction))
            torch.testing.assert_close(got[0], _reduce(plain * w4.mean(-1), reduction), **TOLERANCES[F64])

    @pytest.mark.parametrize("name", LOSSES)
    def test_per_box_weight_broadcasts_over_leading_dims(self, name):
        p, t = box_pairs("mixed", 3, seed=14)
        p, t = p.reshape(3, 4, 4), t.reshape(3, 4, 4)
        w = torch.tensor([0.0, 1.0, 2.5, 0.5], dtype=F64)
        plain = getattr(losslab, name)(p, t, reduction="none")
        torch.testing.assert_close(getattr(losslab, name)(p, t, weight=w, reduction="none"), plain * w)
        # the weight is not in the mean's denominator
        torch.testing.assert_close(getattr(losslab, name)(p, t, weight=w), (plain * w).sum() / 12)

    @pytest.mark.parametrize("key", sorted(VARIANTS))
    def test_avg_factor(self, key):
        p, t = box_pairs("mixed", 3, seed=15)
        w = torch.rand(p.shape[0], generator=gen(16), dtype=F64)
        total = value_and_grad(variant(key, weight=w), p, t, reduction="sum")
        for factor in (2.5, torch.tensor(2.5, dtype=F64), torch.tensor([2.5]), 2):
            got = value_and_grad(variant(key, weight=w, avg_factor=factor), p, t, reduction="mean")
            f = float(factor)
            assert_same(got, (total[0] / f, total[1] / f))
        # 0 divides by 1
        assert_same(value_and_grad(variant(key, weight=w, avg_factor=0.0), p, t, reduction="mean"), total)
        assert_same(value_and_grad(variant(key, weight=w, avg_factor=torch.tensor(0.0)), p, t, reduction="mean"),
                    total)
        # ignored by "sum" and "none"
        for reduction in ("sum", "none"):
            assert_same(value_and_grad(variant(key, weight=w, avg_factor=7.0), p, t, reduction=reduction),
                        value_and_grad(variant(key, weight=w), p, t, reduction=reduction))


# ----------------------------------------------------------------------------


class TestIoULossModes:
    @pytest.mark.parametrize("reduction", REDUCTIONS)
    def test_square_is_one_minus_squared_iou(self, reduction):
        p, t = box_pairs("mixed", 5, seed=17)
        assert_same(value_and_grad(losslab.iou_loss, p, t, mode="square", reduction=reduction),
                    value_and_grad(lambda x: _reduce(1 - (1 - losslab.iou_loss(x, t, reduction="none")) ** 2,
                                                     reduction), p))

    @pytest.mark.parametrize("eps", [1e-7, 1e-3])
    @pytest.mark.parametrize("reduction", REDUCTIONS)
    def test_log_is_minus_log_of_iou_floored_at_eps(self, reduction, eps):
        p, t = box_pairs("mixed", 5, seed=18)

        def expected(x):
            iou = 1 - losslab.iou_loss(x, t, eps=eps, reduction="none")
            return _reduce(-torch.log(iou.clamp_min(eps)), reduction)

        assert_same(value_and_grad(losslab.iou_loss, p, t, mode="log", eps=eps, reduction=reduction),
                    value_and_grad(expected, p))
        # and IoU itself is I / (U + eps)
        torch.testing.assert_close(losslab.iou_loss(p, t, eps=eps, reduction="none"), 1 - iou_of(p, t, eps))

    def test_default_mode_is_linear(self):
        p, t = box_pairs("mixed", 3, seed=19)
        assert torch.equal(losslab.iou_loss(p, t), losslab.iou_loss(p, t, mode="linear"))
        torch.testing.assert_close(losslab.iou_loss(p, t, reduction="none"), 1 - iou_of(p, t))

    def test_mmdetection_alias_is_log_mode(self):
        """UnitBox is losslab's log mode; mmdet.IoULoss is log mode too, through its adapter (IoU clamped at
        mmdetection's eps = 1e-6, tested with the frameworks)."""
        p, t = box_pairs("mixed", 3, seed=20)
        for name in ("mmdet.IoULoss", "UnitBox"):
            assert losslab.get_loss(name).mode == "log"
        assert torch.equal(losslab.get_loss("UnitBox")(p, t), losslab.iou_loss(p, t, mode="log"))

    def test_bare_iouloss_warns_and_is_linear(self):
        p, t = box_pairs("mixed", 3, seed=21)
        with pytest.warns(UserWarning, match="mmdet.IoULoss"):
            module = losslab.get_loss("IoULoss")
        assert module.mode == "linear"
        assert torch.equal(module(p, t), losslab.iou_loss(p, t))

    def test_unknown_mode_raises(self):
        p, t = box_pairs("mixed", 1, seed=22)
        with pytest.raises(ValueError, match="iou_loss: mode must be one of 'linear', 'square', 'log'"):
            losslab.iou_loss(p, t, mode="exp")


# ----------------------------------------------------------------------------
# Hypothesis: boxes on a grid of 1/4 (exact in float64), with zero widths and heights, identical, nested,
# touching, same-centre and far-apart pairs


_COORD = st.integers(-40, 40).map(lambda i: i / 4)
_SIZE = st.one_of(st.just(0.0), st.integers(1, 40).map(lambda i: i / 4))


@st.composite
def box_pair(draw) -> tuple[list[float], list[float]]:
    x, y, w, h = draw(_COORD), draw(_COORD), draw(_SIZE), draw(_SIZE)
    p = [x, y, x + w, y + h]
    kind = draw(st.sampled_from(["random", "identical", "same-centre", "touching", "far", "nested"]))
    w2, h2 = draw(_SIZE), draw(_SIZE)
    if kind == "identical":
        t = list(p)
    elif kind == "same-centre":
        t = [x + (w - w2) / 2, y + (h - h2) / 2, x + (w + w2) / 2, y + (h + h2) / 2]
    elif kind == "touching":  # shares the pred's right edge
        t = [x + w, y, x + w + w2, y + h2]
    elif kind == "far":
        dx, dy = draw(st.sampled_from([(1e3, 0.0), (0.0, -1e3), (1e3, 1e3), (-5e2, 2e3)]))
        t = [x + dx, y + dy, x + dx + w2, y + dy + h2]
    elif kind == "nested":
        t = [x + w / 4, y + h / 4, x + w / 2, y + h / 2]
    else:
        x2, y2 = draw(_COORD), draw(_COORD)
        t = [x2, y2, x2 + w2, y2 + h2]
    return (t, p) if draw(st.booleans()) else (p, t)


BOXES = st.lists(box_pair(), min_size=1, max_size=8).map(
    lambda pairs: (torch.tensor([p for p, _ in pairs], dtype=F64), torch.tensor([t for _, t in pairs], dtype=F64)))


def _shift(b: torch.Tensor, dx: float, dy: float) -> torch.Tensor:
    return b + torch.tensor([dx, dy, dx, dy], dtype=F64)


class TestProperties:
    @given(boxes=BOXES)
    def test_symmetric_in_pred_and_target(self, boxes):
        p, t = boxes
        for key in VARIANTS:  # the formulas are symmetric for every loss, not just IoU, GIoU and DIoU
            torch.testing.assert_close(variant(key)(p, t, reduction="none"), variant(key)(t, p, reduction="none"),
                                       rtol=0, atol=0, msg=key)

    # eps -> 0: the losses are then exactly scale-invariant (eps is added to areas and lengths)
    @given(boxes=BOXES, dx=st.floats(-1e3, 1e3), dy=st.floats(-1e3, 1e3), scale=st.floats(0.1, 10.0))
    def test_invariant_under_common_translation_and_scaling(self, boxes, dx, dy, scale):
        p, t = boxes
        for key in VARIANTS:
            want = variant(key, eps=1e-15)(p, t, reduction="none")
            shifted = variant(key, eps=1e-15)(_shift(p, dx, dy), _shift(t, dx, dy), reduction="none")
            scaled = variant(key, eps=1e-15)(p * scale, t * scale, reduction="none")
            torch.testing.assert_close(shifted, want, rtol=1e-9, atol=1e-9, msg=key)
            torch.testing.assert_close(scaled, want, rtol=1e-9, atol=1e-9, msg=key)

    @given(boxes=BOXES)
    def test_ranges(self, boxes):
        p, t = boxes
        ranges = {"iou-linear": 1.0, "iou-square": 1.0, "giou": 2.0, "diou": 2.0, "siou": 3.0}
        for key, high in ranges.items():
            out = variant(key)(p, t, reduction="none")
            assert torch.all((out >= 0) & (out <= high)), (key, out)
        for key in ("iou-log", "ciou", "eiou"):
            assert torch.all(variant(key)(p, t, reduction="none") >= 0), key
        assert torch.all(variant("iou-log")(p, t, reduction="none") <= -math.log(1e-7) + 1e-12)
        # the penalties only add to 1 - IoU
        base = variant("iou-linear")(p, t, reduction="none")
        for key in ("giou", "diou", "ciou", "eiou", "siou"):
            assert torch.all(variant(key)(p, t, reduction="none") >= base), key

    @given(boxes=BOXES, dtype=st.sampled_from([F64, torch.float32]))
    def test_finite_gradients(self, boxes, dtype):
        p, t = boxes
        for key in VARIANTS:
            out, grad = value_and_grad(variant(key), p.to(dtype), t.to(dtype), reduction="sum")
            assert torch.isfinite(out) and torch.isfinite(grad).all(), (key, grad)


# ----------------------------------------------------------------------------


class TestBatchShapes:
    @pytest.mark.parametrize("key", sorted(VARIANTS))
    def test_single_box_gives_a_0d_loss(self, key):
        p, t = box_pairs("overlapping", 1, seed=23)
        p, t = p[0], t[0]
        for reduction in REDUCTIONS:
            out, grad = value_and_grad(variant(key), p, t, reduction=reduction)
            assert out.shape == () and grad.shape == (4,)
            assert_same((out, grad), value_and_grad(lambda x: variant(key)(x[None], t[None], reduction="sum"), p))

    @pytest.mark.parametrize("key", sorted(VARIANTS))
    def test_leading_dims_equal_the_flattened_batch(self, key):
        p, t = box_pairs("mixed", 6, seed=24)
        p, t = p.reshape(2, 3, 4, 4), t.reshape(2, 3, 4, 4)
        out, grad = value_and_grad(variant(key), p, t, reduction="none")
        assert out.shape == (2, 3, 4)
        flat = value_and_grad(variant(key), p.reshape(-1, 4), t.reshape(-1, 4), reduction="none")
        assert_same((out.reshape(-1), grad.reshape(-1, 4)), flat)
        for reduction in ("mean", "sum"):
            out, grad = value_and_grad(variant(key), p, t, reduction=reduction)
            assert_same((out, grad.reshape(-1, 4)),
                        value_and_grad(variant(key), p.reshape(-1, 4), t.reshape(-1, 4), reduction=reduction))

    @pytest.mark.parametrize("key", sorted(VARIANTS))
    def test_empty_leading_dim(self, key):
        p = torch.zeros(2, 0, 4, dtype=F64)
        out, grad = value_and_grad(variant(key), p, p.clone(), reduction="none")
        assert out.shape == (2, 0) and grad.shape == (2, 0, 4)
        for reduction in ("mean", "sum"):
            x = p.clone().requires_grad_(True)
            loss = variant(key)(x, p, reduction=reduction, weight=torch.ones(2, 0, 4, dtype=F64))
            assert loss.shape == () and loss.item() == 0 and loss.requires_grad
            loss.backward()
            assert x.grad.shape == (2, 0, 4)
