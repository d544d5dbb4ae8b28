"""Triton kernels of the fused losses: loss and gradient in one launch, on GPU.

Each kernel reads the logits and the targets once and writes the gradient
once (the least a fused forward + backward can move), already scaled by the
reduction, with float32 arithmetic inside for float16 / bfloat16 inputs. The
reduction's denominator and ``avg_factor`` come in as a device scalar, so no
launch waits for the host. Only the exp / log primitives of ``tl`` are used
(no libdevice), so every kernel also runs under Triton's interpreter
(``TRITON_INTERPRET=1``) on CPU tensors, which is how CI tests them.

Kernels:

* ``sigmoid_kernel``: BCE / focal of every element, with dense targets or
  class indices (one-hot built in the kernel, index C = background), alpha,
  gamma, label smoothing, per-class weight and pos_weight, ignore_index;
* ``softmax_kernel``: cross-entropy / focal over dim 1 with class indices, one
  program per position, an online-softmax loop over the classes (any C, 32k
  to 256k vocabularies included), per-class weight, ignore_index, and the
  long-tail losses' adjusted logits a x + b - m_y onehot(y);
* ``quality_kernel`` and ``varifocal_kernel``: QFL and VFL of every element.
"""

from __future__ import annotations

import triton
import triton.language as tl

LOG2E = 1.4426950408889634
LN2 = 0.6931471805599453
TINY = 1.1754943508222875e-38  # float32's smallest normal number, the floor of the focal factors


@triton.jit
def _pow(base, exponent):
    """base ** exponent for base >= TINY (exp2 / log2 only: no libdevice)."""
    return tl.exp2(exponent * tl.log2(base))


@triton.jit
def _sigmoid_parts(x):
    """sigma(x), sigma(-x), log sigma(x), log sigma(-x), from one exp and one log."""
    e = tl.exp(-tl.abs(x))
    r = 1.0 / (1.0 + e)
    nonneg = x >= 0
    p = tl.where(nonneg, r, e * r)
    q = tl.where(nonneg, e * r, r)
    a = tl.log(1.0 + e)  # log1p(e), e in (0, 1]: no cancellation worth a libdevice call
    return p, q, tl.minimum(x, 0.0) - a, -tl.maximum(x, 0.0) - a


@triton.jit
def _store(loss, grad, kept, inside, offs, pid, scale_ptr, grad_ptr, loss_ptr, REDUCE: tl.constexpr):
    """Zero what is not kept, scale, write the gradient, and the block's loss sum (or every loss)."""
    loss = tl.where(kept, loss, 0.0)
    scale = tl.load(scale_ptr)
    tl.store(grad_ptr + offs, (tl.where(kept, grad, 0.0) * scale).to(grad_ptr.dtype.element_ty), mask=inside)
    if REDUCE:
        tl.store(loss_ptr + pid, tl.sum(loss, axis=0) * scale)
    else:
        tl.store(loss_ptr + offs, loss, mask=inside)


@triton.jit
def sigmoid_kernel(x_ptr, t_ptr, valid_ptr, w_ptr, pw_ptr, scale_ptr, grad_ptr, loss_ptr,
                   numel, C, S, alpha, gamma, smoothing,
                   INDEX: tl.constexpr, HAS_VALID: tl.constexpr, HAS_W: tl.constexpr, HAS_PW: tl.constexpr,
                   HAS_ALPHA: tl.constexpr, FOCAL: tl.constexpr, REDUCE: tl.constexpr, BLOCK: tl.constexpr):
    """``t_ptr``: dense targets, or with INDEX class indices per position; ``valid_ptr``: kept elements
    (dense) or positions (INDEX)."""
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    inside = offs < numel
    x = tl.load(x_ptr + offs, mask=inside, other=0.0).to(tl.float32)
    c = (offs // S) % C
    kept = inside
    if INDEX:
        pos = (offs // (C * S)) * S + offs % S
        label = tl.load(t_ptr + pos, mask=inside, other=0)
        t = (label == c).to(tl.float32)
        if HAS_VALID:
            kept = kept & (tl.load(valid_ptr + pos, mask=inside, other=0) != 0)
    else:
        t = tl.load(t_ptr + offs, mask=inside, other=0.0).to(tl.float32)
        if HAS_VALID:
            kept = kept & (tl.load(valid_ptr + offs, mask=inside, other=0) != 0)
    t = tl.where(kept, t, 0.0)
    t = t * (1.0 - smoothing) + 0.5 * smoothing
    p, q, log_p, log_q = _sigmoid_parts(x)
    pos_t = t
    if HAS_PW:
        pos_t = t * tl.load(pw_ptr + c, mask=inside, other=1.0).to(tl.float32)
    loss = -(pos_t * log_p + (1.0 - t) * log_q)
    grad = (1.0 - t) * p - pos_t * q
    if FOCAL:
        m = p * (1.0 - t) + q * t
        mc = tl.maximum(m, TINY)
        factor = _pow(mc, gamma)
        dfactor = tl.where(m > TINY, gamma * factor / mc * (p * q * (1.0 - 2.0 * t)), 0.0)
        grad = dfactor * loss + factor * grad
        loss = factor * loss
    if HAS_ALPHA:
        a = alpha * t + (1.0 - alpha) * (1.0 - t)
        loss = a * loss
        grad = a * grad
    if HAS_W:
        w = tl.load(w_ptr + c, mask=inside, other=0.0).to(tl.float32)
        loss = w * loss
        grad = w * grad
    _store(loss, grad, kept, inside, offs, pid, scale_ptr, grad_ptr, loss_ptr, REDUCE)


@triton.jit
def _adjust(x, c, label, margin, a_ptr, b_ptr, inside, HAS_A: tl.constexpr, HAS_B: tl.constexpr,
            HAS_M: tl.constexpr):
    """z = a_c x + b_c - m_y [c = y]: the logits of the long-tail losses (x itself when none is given)."""
    if HAS_A:
        x = x * tl.load(a_ptr + c, mask=inside, other=1.0)
    if HAS_B:
        x = x + tl.load(b_ptr + c, mask=inside, other=0.0)
    if HAS_M:
        x = x - tl.where(c == label, margin, 0.0)
    return x


@triton.jit
def softmax_kernel(x_ptr, idx_ptr, valid_ptr, w_ptr, a_ptr, b_ptr, m_ptr, scale_ptr, grad_ptr, loss_ptr, C, S,
                   gamma, HAS_VALID: tl.constexpr, HAS_W: tl.constexpr, HAS_A: tl.constexpr, HAS_B: tl.constexpr,
                   HAS_M: tl.constexpr, FOCAL: tl.constexpr, BLOCK_C: tl.constexpr):
    """One program per position (n, s) of an (N, C, S) input: two passes over its C logits, adjusted to
    z = a x + b - m_y onehot(y) where a, b (per class) and m_y (``m_ptr``, per position) are given
    (d/dx_c = a_c d/dz_c)."""
    pos = tl.program_id(0).to(tl.int64)
    base = (pos // S) * C * S + pos % S
    label = tl.load(idx_ptr + pos)
    kept = label >= 0
    if HAS_VALID:
        kept = tl.load(valid_ptr + pos) != 0
    label = tl.where(kept, label, 0)
    margin = 0.0
    if HAS_M:
        margin = tl.load(m_ptr + pos).to(tl.float32)
    classes = tl.arange(0, BLOCK_C)
    # pass 1: online max, sum of exp, and the sum without the target class (1 - p_t without cancellation)
    run_max = tl.full((), -float("inf"), tl.float32)
    run_sum = tl.zeros((), tl.float32)
    run_other = tl.zeros((), tl.float32)
    for start in range(0, C, BLOCK_C):
        c = start + classes
        inside = c < C
        x = tl.load(x_ptr + base + c.to(tl.int64) * S, mask=inside, other=0.0).to(tl.float32)
        x = tl.where(inside, _adjust(x, c, label, margin, a_ptr, b_ptr, inside, HAS_A, HAS_B, HAS_M), -float("inf"))
        new_max = tl.maximum(run_max, tl.max(x, axis=0))
        rescale = tl.exp(run_max - new_max)
        e = tl.where(inside, tl.exp(x - new_max), 0.0)
        run_sum = run_sum * rescale + tl.sum(e, axis=0)
        run_other = run_other * rescale + tl.sum(tl.where(c == label, 0.0, e), axis=0)
        run_max = new_max
    lse = run_max + tl.log(run_sum)
    x_t = tl.load(x_ptr + base + label.to(tl.int64) * S).to(tl.float32)
    x_t = _adjust(x_t, label, label, margin, a_ptr, b_ptr, True, HAS_A, HAS_B, HAS_M)
    lp = x_t - lse
    if FOCAL:
        one_minus = run_other / run_sum
        mc = tl.maximum(one_minus, TINY)
        factor = _pow(mc, gamma)
        coef = factor - tl.where(one_minus > TINY, gamma * factor / mc * tl.exp(lp) * lp, 0.0)
        loss = -factor * lp
    else:
        coef = 1.0
        loss = -lp
    if HAS_W:
        w = tl.load(w_ptr + label).to(tl.float32)
        loss = loss * w
        coef = coef * w
    scale = tl.load(scale_ptr)
    loss = tl.where(kept, loss, 0.0)
    coef = tl.where(kept, coef, 0.0) * scale
    tl.store(loss_ptr + pos, loss)
    # pass 2: the gradient a_c (p_c - [c = y]) * coef
    for start in range(0, C, BLOCK_C):
        c = start + classes
        inside = c < C
        x = tl.load(x_ptr + base + c.to(tl.int64) * S, mask=inside, other=0.0).to(tl.float32)
        x = _adjust(x, c, label, margin, a_ptr, b_ptr, inside, HAS_A, HAS_B, HAS_M)
        g = (tl.exp(x - lse) - (c == label).to(tl.float32)) * coef
        if HAS_A:
            g = g * tl.load(a_ptr + c, mask=inside, other=1.0)
        tl.store(grad_ptr + base + c.to(tl.int64) * S, g.to(grad_ptr.dtype.element_ty), mask=inside)


@triton.jit
def quality_kernel(x_ptr, y_ptr, valid_ptr, w_ptr, scale_ptr, grad_ptr, loss_ptr, numel, C, S, beta,
                   HAS_VALID: tl.constexpr, HAS_W: tl.constexpr, FOCAL: tl.constexpr, REDUCE: tl.constexpr,
                   BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    inside = offs < numel
    x = tl.load(x_ptr + offs, mask=inside, other=0.0).to(tl.float32)
    y = tl.load(y_ptr + offs, mask=inside, other=0.0).to(tl.float32)
    kept = inside
    if HAS_VALID:
        kept = kept & (tl.load(valid_ptr + offs, mask=inside, other=0) != 0)
    p, q, log_p, log_q = _sigmoid_parts(x)
    loss = -(y * log_p + (1.0 - y) * log_q)
    grad = (1.0 - y) * p - y * q
    if FOCAL:
        d = y * q - (1.0 - y) * p
        ad = tl.abs(d)
        adc = tl.maximum(ad, TINY)
        factor = _pow(adc, beta)
        sign = tl.where(d > 0, 1.0, tl.where(d < 0, -1.0, 0.0))
        dfactor = tl.where(ad > TINY, -beta * factor / adc * sign * p * q, 0.0)
        grad = dfactor * loss + factor * grad
        loss = factor * loss
    if HAS_W:
        w = tl.load(w_ptr + (offs // S) % C, mask=inside, other=0.0).to(tl.float32)
        loss = w * loss
        grad = w * grad
    _store(loss, grad, kept, inside, offs, pid, scale_ptr, grad_ptr, loss_ptr, REDUCE)


@triton.jit
def varifocal_kernel(x_ptr, q_ptr, w_ptr, scale_ptr, grad_ptr, loss_ptr, numel, C, S, alpha, gamma,
                     IOU_WEIGHTED: tl.constexpr, HAS_W: tl.constexpr, FOCAL: tl.constexpr, REDUCE: tl.constexpr,
                     BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    inside = offs < numel
    x = tl.load(x_ptr + offs, mask=inside, other=0.0).to(tl.float32)
    qv = tl.load(q_ptr + offs, mask=inside, other=0.0).to(tl.float32)
    p, r, log_p, log_r = _sigmoid_parts(x)
    softplus = -log_r
    pos_loss = -(qv * log_p) + (1.0 - qv) * softplus
    pos_grad = (1.0 - qv) * p - qv * r
    if IOU_WEIGHTED:
        pos_loss = qv * pos_loss
        pos_grad = qv * pos_grad
    if FOCAL:
        pc = tl.maximum(p, TINY)
        factor = _pow(pc, gamma)
        dfactor = tl.where(p > TINY, gamma * factor * r, 0.0)
    else:
        factor = 1.0
        dfactor = 0.0
    neg_loss = alpha * factor * softplus
    neg_grad = alpha * (dfactor * softplus + factor * p)
    positive = qv > 0
    loss = tl.where(positive, pos_loss, neg_loss)
    grad = tl.where(positive, pos_grad, neg_grad)
    if HAS_W:
        w = tl.load(w_ptr + (offs // S) % C, mask=inside, other=0.0).to(tl.float32)
        loss = w * loss
        grad = w * grad
    _store(loss, grad, inside, inside, offs, pid, scale_ptr, grad_ptr, loss_ptr, REDUCE)
