"""The native backend: torch's own fused kernels, plus the few operations a loss adds on top.

Small inputs are bound by the number of operations, not by arithmetic: the
composite cross-entropy is 26 tensor operations forward (35 with backward)
where ``F.cross_entropy`` is two kernels. Here:

* cross-entropy and NLL are ``F.cross_entropy`` / ``F.nll_loss`` summed, then
  divided by losslab's guarded denominator (:func:`losslab._dispatch.finish`);
* the sigmoid losses (binary cross-entropy, focal, alpha-balanced) and the
  softmax focal loss are one autograd node each, whose forward computes the
  loss and its derivative together from torch's kernels (``log_softmax``,
  ``softplus``, ``sigmoid``, ``lerp``; not ``binary_cross_entropy_with_logits``,
  which loses the relative accuracy of small losses, see
  :func:`sigmoid_focal_terms`)
  and whose backward hands the derivative back. Under ``create_graph=True``
  the backward differentiates the composite formula instead, so second
  derivatives still work.

Values and gradients are those of the composite (:mod:`losslab._core`) to
rounding; the tests compare them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

_NUMBERS: dict[tuple[float, torch.dtype], Tensor] = {}


def number(value: float, like: Tensor) -> Tensor:
    """``value`` as a 0-dim CPU tensor of ``like``'s dtype, made once: a small input's cost is the number of
    operations, and torch wraps a Python float anew (in double) for each operation that takes one (``v * 0.5``
    took 4.4 us on 256 elements against 1.8 us for ``v * number(0.5, v)``, one thread). The same product: the
    float is rounded to the dtype either way. Not for traced code (a tensor constant)."""
    return constant(value, like.dtype)


def constant(value: float, dtype: torch.dtype) -> Tensor:
    """``value`` as a 0-dim CPU tensor of ``dtype``, made once and never written to (one tensor serves every
    call: torch.tensor / torch.full cost 4 to 10 us a call)."""
    key = (value, dtype)
    made = _NUMBERS.get(key)
    if made is None:
        if len(_NUMBERS) >= 1024:  # scales 1 / N for many batch sizes: start again rather than grow
            _NUMBERS.clear()
        made = _NUMBERS[key] = torch.tensor(value, dtype=dtype)
    return made


def times_upstream(grad: Tensor, grad_out: Tensor, per_position: bool) -> Tensor:
    """A saved gradient times the incoming one (none at all for the usual loss.backward(), where it is 1);
    ``per_position``: one loss per position of an (N, C, ...) input, the gradient broadcast over C."""
    if grad_out.ndim == 0:
        if grad_out.is_cpu and float(grad_out) == 1.0:
            return grad
        return grad * grad_out.to(grad.dtype)
    upstream = grad_out.unsqueeze(1) if per_position else grad_out
    return grad * upstream.to(grad.dtype)


def _hand_back(ctx: Any, grad_out: Tensor) -> Tensor:
    """The saved gradient times the incoming one; under create_graph, the composite's derivative instead."""
    grad, x = ctx.saved_tensors
    if torch.is_grad_enabled():  # create_graph=True: differentiate the composite again, with its graph
        with torch.enable_grad():
            out = ctx.composite(x)
            (again,) = torch.autograd.grad(out, x, grad_out, create_graph=True)
        return again
    return times_upstream(grad, grad_out, ctx.per_position)


class _Precomputed(torch.autograd.Function):
    """Returns a loss computed with its gradient; backward hands the gradient back (see _hand_back)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, compute: Callable[[Tensor], tuple[Tensor, Tensor]],
                composite: Callable[[Tensor], Tensor], per_position: bool) -> Tensor:
        loss, grad = compute(x)
        ctx.save_for_backward(grad, x)
        ctx.composite, ctx.per_position = composite, per_position
        return loss

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor, None, None, None]:
        return _hand_back(ctx, grad_out), None, None, None


def _node(x: Tensor, compute: Callable[[Tensor], tuple[Tensor, Tensor]], composite: Callable[[Tensor], Tensor],
          per_position: bool) -> Tensor:
    """The loss as a _Precomputed node where a gradient is wanted; without one (evaluation, no_grad) the
    composite formula alone, which computes no gradient."""
    if torch.is_grad_enabled() and x.requires_grad:
        return _Precomputed.apply(x, compute, composite, per_position)
    return composite(x)


def power(base: Tensor, exponent: float | Tensor) -> Tensor:
    """``base ** exponent`` for a positive base; a tensor exponent (a compiled sweep's hyperparameter) as
    exp(exponent log base), which inductor vectorises (its pow with a runtime exponent is a scalar loop)."""
    if isinstance(exponent, Tensor):
        return torch.exp(exponent * torch.log(base))
    return base.pow(exponent)


def sigmoid_focal_terms(x: Tensor, t: Tensor, gamma: float,
                        pos_weight: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(1 - p_t)^gamma BCE(x, t) per element and its derivative in x, from torch's kernels: the native node's
    evaluation of the formula the sweeps evaluate from one exp and one log1p (:func:`losslab._fused.sigmoid_terms`).

    BCE = (1 - t) softplus(x) + pos_weight t softplus(-x): torch's lerp is exact at t = 0 and 1 and softplus is
    log1p(e^x), so a tiny loss keeps its digits (``binary_cross_entropy_with_logits`` rounds log(1 + e^-|x|)
    to 0 beyond |x| of about 17 in float32, and loses relative accuracy well before). 1 - p_t =
    p (1 - t) + (1 - p) t with both sigmoids evaluated (accurate at saturated logits); the factor is floored at
    the smallest normal number for gamma < 1 (a finite derivative at p_t = 1, as the composite).
    """
    focal = bool(gamma)
    if pos_weight is None and not focal and x.numel() >= FEW_TRANSCENDENTALS_FROM:
        return binary_cross_entropy_terms(x, t)
    minus = -x
    if pos_weight is None:
        ce = torch.lerp(F.softplus(x), F.softplus(minus), t)
        if not focal:
            return ce, torch.sigmoid(x) - t
        p, q = torch.sigmoid(x), torch.sigmoid(minus)
        u = number(1.0, t) - t  # 1 - t
        negative, positive = p * u, q * t
        grad = negative - positive  # d BCE / dx = p - t, accurate at saturated logits
    else:
        weighted = t * pos_weight
        u = number(1.0, t) - t
        ce = u * F.softplus(x) + weighted * F.softplus(minus)
        p, q = torch.sigmoid(x), torch.sigmoid(minus)
        negative = p * u
        grad = negative - weighted * q
        if not focal:
            return ce, grad
        positive = q * t
    m = negative + positive
    if gamma == 2.0:
        factor, slope = m * m, m * ce  # d m^2 / dm = 2 m: the 2 goes in addcmul's value
        value = 2.0
    elif gamma == 1.0:
        factor, slope, value = m, ce, 1.0
    else:
        tiny = torch.finfo(m.dtype).tiny
        mc = m.clamp_min(tiny)
        factor = power(mc, gamma)
        slope = torch.where(m > tiny, factor / mc, torch.zeros_like(m)) * ce
        value = gamma
    # d [m^gamma BCE] / dx = m^gamma dBCE/dx + gamma m^(gamma - 1) BCE dm/dx,  dm/dx = p q (1 - 2t)
    grad = torch.addcmul(factor * grad, slope, (p * q) * (u - t), value=value)  # u - t = 1 - 2t
    return ce * factor, grad


FEW_TRANSCENDENTALS_FROM = 1 << 14  # elements; below, torch's exp and log1p cost more than two softplus (see below)


def binary_cross_entropy_terms(x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """BCE(x, t) per element and its derivative sigma(x) - t, from one exp and one log1p where
    :func:`sigmoid_focal_terms` takes two softplus (each an exp and a log1p, not vectorised).

    BCE = (1 - t) max(x, 0) + t max(-x, 0) + log(1 + e^-|x|): every term is >= 0 (no cancellation), the lerp is
    exact at t = 0 and 1, and log1p keeps a tiny loss's digits. On 32 x 1,000 float32 (2 threads) the two
    softplus took about 230 us, exp and log1p about 100. Below :data:`FEW_TRANSCENDENTALS_FROM` elements the
    softplus form is quicker: with 2 threads torch's exp and log1p wake the second thread even on small tensors
    (exp on 256 x 10: 24 us, 7.6 us on one thread), softplus and sigmoid stay on one below 32,768 elements.
    """
    relu = x.clamp_min(0)
    ce = torch.lerp(relu, relu - x, t)  # relu(x) - x = max(-x, 0), exactly
    ce += x.abs().neg_().exp_().log1p_()
    return ce, torch.sigmoid(x) - t


def _unit(scale: float | Tensor) -> bool:
    return isinstance(scale, float) and scale == 1.0


def _weigh(loss: Tensor, slope: Tensor, multiplier: Tensor | None, scale: float | Tensor,
           reduce: bool) -> tuple[Tensor, Tensor]:
    """The loss times ``multiplier`` (summed times ``scale`` when reducing), and ``slope`` (a derivative) times
    the same factors, with as few full-size operations as possible."""
    if isinstance(scale, float) and scale != 1.0:
        scale = number(scale, slope)
    if reduce and not _unit(scale):
        slope = slope * (scale if multiplier is None else multiplier * scale)
    elif multiplier is not None:
        slope = slope * multiplier
    if not reduce:
        return (loss if multiplier is None else loss * multiplier), slope
    if multiplier is None:
        total = loss.sum()
    elif multiplier.shape == loss.shape:
        total = torch.dot(loss.reshape(-1), multiplier.reshape(-1))
    else:
        total = (loss * multiplier).sum()
    return (total if _unit(scale) else total * scale), slope


def sigmoid_form(x: Tensor, t: Tensor, multiplier: Tensor | None, gamma: float, scale: float | Tensor,
                 reduce: bool, composite: Callable[[Tensor], Tensor], pos_weight: Tensor | None = None) -> Tensor:
    """The (alpha-balanced, weighted, masked, focal) sigmoid loss as one node: summed times ``scale``, or per
    element. ``multiplier``: alpha_t times the weight times the kept mask, per element (None: 1)."""
    def compute(xx: Tensor) -> tuple[Tensor, Tensor]:
        loss, grad = sigmoid_focal_terms(xx, t, gamma, pos_weight)
        return _weigh(loss, grad, multiplier, scale, reduce)

    return _node(x, compute, composite, False)


def focal_factor(lp: Tensor, gamma: float) -> tuple[Tensor, Tensor]:
    """(1 - p)^gamma and G = d[(1 - p)^gamma log p] / d log p, from log p (floored like the composite)."""
    one_minus = -torch.expm1(lp)
    tiny = torch.finfo(one_minus.dtype).tiny
    mc = one_minus.clamp_min(tiny)
    factor = power(mc, gamma)
    slope = torch.where(one_minus > tiny, (gamma * factor / mc) * torch.exp(lp) * lp, torch.zeros_like(lp))
    return factor, factor - slope


def _softmax_focal_factor(lp: Tensor, gamma: float) -> tuple[Tensor, Tensor]:
    """(1 - p)^gamma and G = d[(1 - p)^gamma log p] / d log p; gamma = 2 in five operations."""
    if gamma != 2.0:
        return focal_factor(lp, gamma)
    p_minus_one = torch.expm1(lp)
    factor = p_minus_one * p_minus_one
    # G = (1 - p)^2 - 2 (1 - p) p log p = (p - 1)^2 + 2 (p - 1) p log p
    return factor, torch.addcmul(factor, p_minus_one * torch.exp(lp), lp, value=2.0)


def softmax_focal(x: Tensor, index: Tensor, multiplier: Tensor | None, gamma: float, scale: float | Tensor,
                  reduce: bool, composite: Callable[[Tensor], Tensor]) -> Tensor:
    """-m_n (1 - p_y)^gamma log p_y per position (m: class weight of the target times the kept mask) as one
    node; d/dx_c = (p_c - [c = y]) m_n G(p_y), G from :func:`focal_factor`."""
    weights = None if multiplier is None else multiplier.unsqueeze(1)

    def compute(xx: Tensor) -> tuple[Tensor, Tensor]:
        log_p = torch.log_softmax(xx, dim=1)
        idx = index.unsqueeze(1)
        lp = log_p.gather(1, idx)  # (N, 1, ...): log p_y, kept beside the class dimension
        factor, coef = _softmax_focal_factor(lp, gamma)
        if reduce:  # the loss's minus sign goes into the scale: slope = -c_n
            loss, slope = _weigh(factor * lp, coef, weights, -scale, True)
        else:
            loss, slope = _weigh(factor * lp, coef, weights, scale, False)
            loss, slope = loss.neg_().squeeze(1), slope.neg_()
        # (p_c - [c = y]) c_n = g_c - p_c sum_k g_k for g = -c_n onehot(y): log_softmax's own backward kernel
        onehot = torch.zeros_like(log_p).scatter_(1, idx, slope)
        return loss, torch._log_softmax_backward_data(onehot, log_p, 1, log_p.dtype)

    return _node(x, compute, composite, True)
