"""The sweeps of the fused path: each loss and its analytic gradient, elementwise, in one pass.

:mod:`losslab._fused` runs them (compiled, in eager chunks, or as Triton kernels on CUDA) and owns the
autograd Function; here are only the formulas, written once as tensor operations so that inductor fuses each
sweep into one loop. A sweep takes the input, its batched tensors, its shared hyperparameters and ``reduce``,
and returns the loss (summed times the scale, or per element / position) and the gradient.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ._native import focal_factor, power

# per-element loss l and dl/dx, in float32 (or float64) inside, the gradient in the input's dtype


def on(value: Any) -> bool:
    """Whether a hyperparameter switches its term on: a tensor (nonzero by construction) or a truthy number."""
    return isinstance(value, Tensor) or bool(value)


def _tiny(t: Tensor) -> float:
    return torch.finfo(t.dtype).tiny


def _finish(loss: Tensor, grad: Tensor, valid: Tensor | None, scale: Tensor, reduce: bool,
            out_dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Mask, scale by the reduction, and sum (or not); the gradient in the input's dtype."""
    if valid is not None:
        loss = torch.where(valid, loss, torch.zeros_like(loss))
        grad = torch.where(valid, grad, torch.zeros_like(grad))
    grad = (grad * scale.to(grad.dtype)).to(out_dtype)
    return ((loss.sum() * scale.to(loss.dtype)) if reduce else loss), grad


def _compute(x: Tensor) -> Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def sigmoid_parts(x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """sigma(x), sigma(-x), log sigma(x), log sigma(-x) from one exp and one log1p, each accurate."""
    e = torch.exp(-x.abs())
    r = 1.0 / (1.0 + e)
    nonneg = x >= 0
    p = torch.where(nonneg, r, e * r)
    q = torch.where(nonneg, e * r, r)
    a = torch.log1p(e)
    return p, q, torch.clamp(x, max=0.0) - a, -torch.clamp(x, min=0.0) - a


def sigmoid_terms(x: Tensor, t: Tensor, w: Tensor | None, pw: Tensor | None, alpha: float | None, gamma: float,
                  smoothing: float, binary: bool = False) -> tuple[Tensor, Tensor]:
    """-w a_t (1 - p_t)^gamma [pw t log p + (1 - t) log(1 - p)] per element, and its derivative in x.

    The formula of :func:`losslab._native.sigmoid_focal_terms`, evaluated for a sweep: from one exp and one
    log1p (:func:`sigmoid_parts`), where the native node takes torch's kernels (fewer operations, more
    transcendentals: on 100,000 x 80 compiled, this form took 11 ms against 29 ms for softplus and lerp).
    ``binary``: t is 0 or 1 (one-hot of class indices), so 1 - p_t is p or 1 - p, whose logarithm is already
    known, and d(1 - p_t)/dx / (1 - p_t) is 1 - p or -p: the focal factor costs one exp, no log, no division.
    """
    if on(smoothing):
        t = t * (1.0 - smoothing) + 0.5 * smoothing
        binary = False
    p, q, log_p, log_q = sigmoid_parts(x)  # p and 1 - p
    pos = t if pw is None else t * pw
    loss = -(pos * log_p + (1.0 - t) * log_q)
    grad = (1.0 - t) * p - pos * q
    if on(gamma):
        m = p * (1.0 - t) + q * t  # 1 - p_t
        tiny = _tiny(m)
        if binary:
            positive = t > 0.5
            if isinstance(gamma, Tensor):  # a compiled sweep's hyperparameter: m^gamma = exp(gamma log m)
                factor = torch.exp(gamma * torch.where(positive, log_q, log_p).clamp_min(math.log(tiny)))
            else:
                factor = power(m.clamp_min(tiny), gamma)
            # gamma m^(gamma - 1) dm/dx = gamma m^gamma (dm/dx) / m, and (dm/dx) / m = 1 - p (t = 0) or -p (t = 1)
            dfactor = torch.where(m > tiny, gamma * factor * torch.where(positive, -p, q), torch.zeros_like(m))
        else:
            mc = m.clamp_min(tiny)
            factor = power(mc, gamma)
            # d m^gamma / dx = gamma m^(gamma - 1) dm/dx, with m^(gamma - 1) = m^gamma / m (one power, not two)
            dfactor = torch.where(m > tiny, (gamma * factor / mc) * (p * q * (1.0 - 2.0 * t)), torch.zeros_like(m))
        loss, grad = factor * loss, dfactor * loss + factor * grad
    if alpha is not None:
        a = alpha * t + (1.0 - alpha) * (1.0 - t)
        loss, grad = a * loss, a * grad
    if w is not None:
        loss, grad = w * loss, w * grad
    return loss, grad


def sigmoid_dense_sweep(x: Tensor, t: Tensor, valid: Tensor | None, w: Tensor | None, pw: Tensor | None,
                        scale: Tensor, alpha: float | None, gamma: float, smoothing: float,
                        reduce: bool, binary: bool = False) -> tuple[Tensor, Tensor]:
    xc = _compute(x)
    tc = t.to(xc.dtype)
    if valid is not None:
        tc = torch.where(valid, tc, torch.zeros_like(tc))
    loss, grad = sigmoid_terms(xc, tc, None if w is None else w.to(xc.dtype), None if pw is None else pw.to(xc.dtype),
                               alpha, gamma, smoothing, binary=binary)
    return _finish(loss, grad, valid, scale, reduce, x.dtype)


def sigmoid_dense_checked(x: Tensor, t: Tensor, valid: Tensor | None, w: Tensor | None, pw: Tensor | None,
                          scale: Tensor, alpha: float | None, gamma: float, smoothing: float,
                          reduce: bool) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`sigmoid_dense_sweep` and, read in the same loop, whether a target value lies outside [0, 1] (NaN
    included): a plain call's value check (:func:`losslab._fused.direct`), where a separate aminmax took 18 us of
    a 330 us BCE forward on 32 x 1,000."""
    loss, grad = sigmoid_dense_sweep(x, t, valid, w, pw, scale, alpha, gamma, smoothing, reduce)
    return loss, grad, torch.logical_not((t >= 0) & (t <= 1)).any()


def sigmoid_binary_sweep(x: Tensor, t: Tensor, valid: Tensor | None, w: Tensor | None, pw: Tensor | None,
                         scale: Tensor, alpha: float | None, gamma: float, smoothing: float,
                         reduce: bool) -> tuple[Tensor, Tensor]:
    """:func:`sigmoid_dense_sweep` for a dense target of 0s and 1s only (multi-label one-hot; checked before by
    :func:`losslab._fused.binary`): the class-index sweep's focal factor, one exp where soft targets need a log,
    an exp and a division (compiled, sigmoid focal on 100,000 x 80: 41 ms against 55 ms, interleaved, 2
    threads)."""
    return sigmoid_dense_sweep(x, t, valid, w, pw, scale, alpha, gamma, smoothing, reduce, True)


def sigmoid_index_sweep(x: Tensor, index: Tensor, kept: Tensor | None, w: Tensor | None, pw: Tensor | None,
                        scale: Tensor, alpha: float | None, gamma: float, smoothing: float,
                        reduce: bool) -> tuple[Tensor, Tensor]:
    xc = _compute(x)
    classes = torch.arange(x.shape[1], device=x.device).view((1, -1) + (1,) * (x.ndim - 2))
    t = (index.unsqueeze(1) == classes).to(xc.dtype)
    valid = None if kept is None else kept.unsqueeze(1)
    loss, grad = sigmoid_terms(xc, t, None if w is None else w.to(xc.dtype), None if pw is None else pw.to(xc.dtype),
                               alpha, gamma, smoothing, binary=True)
    return _finish(loss, grad, valid, scale, reduce, x.dtype)


def _class_view(v: Tensor, x: Tensor) -> Tensor:
    return v.to(x.dtype).view((1, -1) + (1,) * (x.ndim - 2))


def _adjust(xc: Tensor, onehot: Tensor | None, a: Tensor | None, b: Tensor | None,
            margin: Tensor | None) -> Tensor:
    """z = a x + b - m_y onehot(y): :func:`losslab._forms.adjusted` (the long-tail losses' logits) in a sweep,
    elementwise; ``margin`` is m_y per position (gathered before the sweep: a gather inside a compiled loop
    would make it a scalar loop)."""
    if a is not None:
        xc = xc * _class_view(a, xc)
    if b is not None:
        xc = xc + _class_view(b, xc)
    if margin is not None:
        xc = xc - torch.where(onehot, margin.to(xc.dtype).unsqueeze(1), 0.0)
    return xc


def softmax_index_stage(x: Tensor, index: Tensor, kept: Tensor | None, margin: Tensor | None, scale: Tensor,
                        class_weight: Tensor | None, gamma: float, a: Tensor | None, b: Tensor | None,
                        reduce: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The loss and what the gradient is made of: (loss, e, s, c) with e = exp(z - max z) (logits-sized: it
    becomes the gradient in place), s = sum_c e_c and c = w_y G(p_y) times the reduction's scale per position
    (0 where not kept), p = e / s, z = a x + b - m_y onehot(y) (``margin``: m_y per position)."""
    xc = _compute(x)
    classes = torch.arange(x.shape[1], device=x.device).view((1, -1) + (1,) * (x.ndim - 2))
    onehot = index.unsqueeze(1) == classes
    z = _adjust(xc, onehot, a, b, margin)
    top = z.amax(1, keepdim=True)
    e = torch.exp(z - top)
    total = e.sum(1, keepdim=True)
    lp = (z.gather(1, index.unsqueeze(1)) - top - torch.log(total)).squeeze(1)  # log p_y
    if on(gamma):
        factor, coef = focal_factor(lp, gamma)
        loss = -factor * lp
    else:
        loss, coef = -lp, torch.ones_like(lp)
    if class_weight is not None:
        wy = class_weight.to(xc.dtype)[index]
        loss, coef = loss * wy, coef * wy
    if kept is not None:
        loss = torch.where(kept, loss, torch.zeros_like(loss))
        coef = torch.where(kept, coef, torch.zeros_like(coef))
    scale = scale.to(xc.dtype)
    return (loss.sum() * scale if reduce else loss), e, total, coef * scale


def softmax_index_finish(staged: tuple[Tensor, Tensor, Tensor, Tensor], index: Tensor, a: Tensor | None,
                         out_dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """(loss, gradient) from :func:`softmax_index_stage`: d/dx_c = a_c (p_c - [c = y]) c_n, in e's storage."""
    loss, e, total, coef = staged
    grad = e.mul_(coef.unsqueeze(1) / total)
    grad.scatter_add_(1, index.unsqueeze(1), -coef.unsqueeze(1))
    if a is not None:
        grad.mul_(_class_view(a, grad))
    return loss, grad.to(out_dtype)


def softmax_index_sweep(x: Tensor, index: Tensor, kept: Tensor | None, margin: Tensor | None, scale: Tensor,
                        class_weight: Tensor | None, gamma: float, a: Tensor | None, b: Tensor | None,
                        reduce: bool) -> tuple[Tensor, Tensor]:
    """-w_y (1 - p_y)^gamma log p_y per position, p = softmax(z), z = a x + b - m_y onehot(y) (``margin``: m_y
    per position); d/dx_c = a_c (p_c - [c = y]) w_y G(p_y).

    Eagerly: each exponential computed once, stored in the gradient's buffer, which is finished in place (the
    target's term scattered in). Compiled, :func:`softmax_index_onehot` instead (:data:`COMPILED`).
    """
    staged = softmax_index_stage(x, index, kept, margin, scale, class_weight, gamma, a, b, reduce)
    return softmax_index_finish(staged, index, a, x.dtype)


def softmax_index_onehot(x: Tensor, index: Tensor, kept: Tensor | None, margin: Tensor | None, scale: Tensor,
                         class_weight: Tensor | None, gamma: float, a: Tensor | None, b: Tensor | None,
                         reduce: bool) -> tuple[Tensor, Tensor]:
    """:func:`softmax_index_sweep` as one compiled graph: the target's term subtracted where the class equals
    the index (a comparison in the same loop) rather than scattered into the gradient, which inductor leaves to
    a single-threaded kernel of its own; inductor stores the exponentials once, in a logits-sized buffer it reads
    back for the gradient (recomputing them there instead: 1.23x to 1.31x slower, the exp is the bottleneck).
    The same values, bit for bit; compiled on 100,000 x 80 (2 threads): 15.6 ms against 20.0 ms for a compiled
    stage with the eager finish, 18.7 ms for :func:`softmax_index_sweep` compiled whole (17.1, 20.0 and 21.0 ms
    with gamma = 2)."""
    loss, e, total, coef = softmax_index_stage(x, index, kept, margin, scale, class_weight, gamma, a, b, reduce)
    classes = torch.arange(x.shape[1], device=x.device).view((1, -1) + (1,) * (x.ndim - 2))
    c = coef.unsqueeze(1)
    grad = e * (c / total) - torch.where(index.unsqueeze(1) == classes, c, torch.zeros_like(c))
    if a is not None:
        grad = grad * _class_view(a, grad)
    return loss, grad.to(x.dtype)


# sweep -> the function its compiled graph computes (the same values, in a form inductor writes faster)
COMPILED: dict[Callable, Callable] = {softmax_index_sweep: softmax_index_onehot}


def softmax_dense_sweep(x: Tensor, q: Tensor, scale: Tensor, class_weight: Tensor | None, gamma: float,
                        a: Tensor | None, b: Tensor | None, reduce: bool) -> tuple[Tensor, Tensor]:
    """-sum_c q_c w_c (1 - p_c)^gamma log p_c per position, p = softmax(a x + b);
    d/dx_j = a_j (p_j sum_c h_c - h_j), h_c = q_c w_c G(p_c)."""
    xc = _compute(x)
    log_p = torch.log_softmax(_adjust(xc, None, a, b, None), dim=1)
    qc = q.to(xc.dtype)
    if class_weight is not None:
        qc = qc * _class_view(class_weight, xc)
    if on(gamma):
        factor, g = focal_factor(log_p, gamma)
        terms, h = -qc * factor * log_p, qc * g
    else:
        terms, h = -qc * log_p, qc
    grad = torch.exp(log_p) * h.sum(1, keepdim=True) - h
    if a is not None:
        grad = grad * _class_view(a, xc)
    return _finish(terms.sum(1), grad, None, scale, reduce, x.dtype)


def quality_sweep(x: Tensor, y: Tensor, valid: Tensor | None, w: Tensor | None, scale: Tensor, beta: float,
                  reduce: bool) -> tuple[Tensor, Tensor]:
    """-|y - s|^beta BCE(x, y) per element, and its derivative."""
    xc = _compute(x)
    yc = y.to(xc.dtype)
    p, q, log_p, log_q = sigmoid_parts(xc)
    loss = -(yc * log_p + (1.0 - yc) * log_q)
    grad = (1.0 - yc) * p - yc * q
    if on(beta):
        d = yc * q - (1.0 - yc) * p  # y - sigma, exact for hard labels
        ad = d.abs()
        tiny = _tiny(ad)
        adc = ad.clamp_min(tiny)
        factor = power(adc, beta)
        dfactor = torch.where(ad > tiny, (-beta * factor / adc) * torch.sign(d) * p * q, torch.zeros_like(ad))
        loss, grad = factor * loss, dfactor * loss + factor * grad
    if w is not None:
        loss, grad = w.to(xc.dtype) * loss, w.to(xc.dtype) * grad
    return _finish(loss, grad, valid, scale, reduce, x.dtype)


def varifocal_sweep(x: Tensor, q: Tensor, w: Tensor | None, scale: Tensor, alpha: float, gamma: float,
                    iou_weighted: bool, reduce: bool) -> tuple[Tensor, Tensor]:
    """q > 0: -q BCE(x, q) (q-weighted); q = 0: -alpha p^gamma log(1 - p); and the derivative."""
    xc = _compute(x)
    qc = q.to(xc.dtype)
    p, r, log_p, log_r = sigmoid_parts(xc)
    softplus = -log_r  # -log(1 - p)
    pos_loss = -(qc * log_p) + (1.0 - qc) * softplus
    pos_grad = (1.0 - qc) * p - qc * r
    if iou_weighted:
        pos_loss, pos_grad = qc * pos_loss, qc * pos_grad
    tiny = _tiny(p)
    pc = p.clamp_min(tiny)
    factor = power(pc, gamma)
    dfactor = torch.where(p > tiny, gamma * factor * r, torch.zeros_like(p))  # d p^gamma / dx = gamma p^gamma (1 - p)
    neg_loss = alpha * factor * softplus
    neg_grad = alpha * (dfactor * softplus + factor * p)
    positive = qc > 0
    loss = torch.where(positive, pos_loss, neg_loss)
    grad = torch.where(positive, pos_grad, neg_grad)
    if w is not None:
        loss, grad = w.to(xc.dtype) * loss, w.to(xc.dtype) * grad
    return _finish(loss, grad, None, scale, reduce, x.dtype)
