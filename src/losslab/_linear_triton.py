r"""Triton kernel of the fused linear cross-entropy: one token chunk's loss and logit gradient, in place.

:func:`chunk_loss_grad_` takes the raw logits ``z = h @ W.T + b`` of one chunk of tokens (float32, made by
the caller's matmul) and, one program per row, computes in float32

.. math::

    x = c \tanh(z / c) \;(\text{softcap } c;\ x = z \text{ without}), \qquad
    \mathrm{lse} = \log \sum_j e^{x_j}, \qquad \log p_j = x_j - \mathrm{lse},

    \ell = ce\_scale \sum_j w_j q_j (1 - p_j)^{\gamma} (-\log p_j) + z\_scale \cdot z\_loss \cdot \mathrm{lse}^2,
    \qquad q_j = (1 - \varepsilon) [j = y] + \varepsilon / V,

which is ``F.cross_entropy(x, y, weight=w, label_smoothing=eps)`` for gamma = 0 and losslab's
``softmax_focal_loss(x, y, alpha=w, gamma=gamma, label_smoothing=eps)`` otherwise. With ``want_grad`` the
logits are overwritten by :math:`\partial \ell / \partial z` (times ``row_scale``), so the chunk never holds
a second (n, V) buffer:

.. math::

    \frac{\partial \ell}{\partial x_k} = ce\_scale\,(p_k \textstyle\sum_j h_j - h_k)
        + 2\, z\_scale\, z\_loss\, \mathrm{lse}\, p_k, \qquad
    \frac{\partial x_k}{\partial z_k} = 1 - \tanh^2(z_k / c),

with :math:`h_j = w_j q_j` for cross-entropy and :math:`h_j = w_j q_j (-p_j\, g'(p_j))`,
:math:`g(p) = -(1 - p)^\gamma \log p`, for the focal loss (the form of :func:`losslab._fused.softmax_dense_sweep`).

Passes over the row's V logits in blocks of ``BLOCK_V`` (any V, 256k included):

1. online max and sum of exponentials (the log-sum-exp), the sum without the target class (1 - p_y without
   cancellation), and the first index of the maximum (the token accuracy);
2. the smoothing terms of the loss and, for the focal loss with smoothing, :math:`\sum_j h_j`; without
   smoothing :math:`\sum_j h_j = h_y` is known after pass 1 and this pass is skipped; for the smoothed
   cross-entropy with the gradient wanted it is merged into pass 3 (:math:`\sum_j w_j` from pass 1);
3. the gradient, written in place (skipped without ``want_grad``).

Only ``tl.exp`` / ``tl.log`` / ``tl.exp2`` / ``tl.log2`` are used (tanh is built from exp, with a series
near 0), so the kernel runs under Triton's interpreter (``TRITON_INTERPRET=1``) on CPU tensors, which is how
the tests check it.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from ._triton import TINY, _pow

MAX_BLOCK_V = 4096


@triton.jit
def _tanh(u):
    """tanh(u) from one exp: sign(u) (1 - e) / (1 + e), e = exp(-2|u|); an odd series for |u| < 1/8, where
    1 - e would cancel (its first omitted term is below 2e-9 relative there)."""
    a = tl.abs(u)
    e = tl.exp(-2.0 * a)
    far = (1.0 - e) / (1.0 + e)
    a2 = a * a
    near = a * (1.0 + a2 * (-1.0 / 3.0 + a2 * (2.0 / 15.0 + a2 * (-17.0 / 315.0))))
    t = tl.where(a < 0.125, near, far)
    return tl.where(u < 0, -t, t)


@triton.jit
def _capped(z, softcap, SOFTCAP: tl.constexpr):
    """x = softcap(z) and tanh(z / c) (0 without a softcap; unused then)."""
    t = z * 0.0
    x = z
    if SOFTCAP:
        t = _tanh(z / softcap)
        x = t * softcap
    return x, t


@triton.jit
def _focal_h(lp, one_minus, gamma):
    """-p g'(p) for g(p) = -(1 - p)^gamma log p: (1 - p)^gamma - gamma p (1 - p)^(gamma - 1) log p, with
    1 - p floored at float32's smallest normal number (finite for every gamma >= 0 at p = 1); and the
    factor (1 - p)^gamma."""
    mc = tl.maximum(one_minus, TINY)
    factor = _pow(mc, gamma)
    h = factor - tl.where(one_minus > TINY, gamma * factor / mc * tl.exp(lp) * lp, 0.0)
    return h, factor


@triton.jit
def chunk_kernel(z_ptr, y_ptr, kept_ptr, w_ptr, ce_scale_ptr, z_scale_ptr, row_scale_ptr, loss_ptr, correct_ptr,
                 lse_ptr, V, eps, z_loss, softcap, gamma,
                 HAS_W: tl.constexpr, SMOOTH: tl.constexpr, FOCAL: tl.constexpr, ZLOSS: tl.constexpr,
                 SOFTCAP: tl.constexpr, HAS_ROW_SCALE: tl.constexpr, WANT_GRAD: tl.constexpr,
                 FOLD: tl.constexpr, HAS_LSE: tl.constexpr, BLOCK_V: tl.constexpr):
    """FOLD (smoothed cross-entropy with the gradient wanted): the smoothing terms of the loss accumulate in
    the gradient's pass and sum_j w_j in pass 1, so the row is read twice instead of three times."""
    row = tl.program_id(0).to(tl.int64)
    base = z_ptr + row * V
    kept = tl.load(kept_ptr + row) != 0
    label = tl.where(kept, tl.load(y_ptr + row, mask=kept, other=0), 0)  # a non-kept row's target is not read
    cols = tl.arange(0, BLOCK_V)
    # pass 1: log-sum-exp, the sum of exponentials without the target class, the first arg max
    run_max = tl.full((), -float("inf"), tl.float32)
    run_sum = tl.zeros((), tl.float32)
    run_other = tl.zeros((), tl.float32)
    best = tl.zeros((), tl.int64)
    w_sum = tl.zeros((), tl.float32) + V
    if FOLD and HAS_W:
        w_sum = tl.zeros((), tl.float32)
    for start in range(0, V, BLOCK_V):
        c = start + cols
        inside = c < V
        if FOLD and HAS_W:
            w_sum += tl.sum(tl.load(w_ptr + c, mask=inside, other=0.0).to(tl.float32), axis=0)
        x, _ = _capped(tl.load(base + c, mask=inside, other=0.0).to(tl.float32), softcap, SOFTCAP)
        x = tl.where(inside, x, -float("inf"))
        block_max = tl.max(x, axis=0)
        block_arg = tl.min(tl.where(x == block_max, c, V), axis=0).to(tl.int64)
        best = tl.where(block_max > run_max, block_arg, best)
        new_max = tl.maximum(run_max, block_max)
        rescale = tl.exp(run_max - new_max)
        e = tl.where(inside, tl.exp(x - new_max), 0.0)
        run_sum = run_sum * rescale + tl.sum(e, axis=0)
        run_other = run_other * rescale + tl.sum(tl.where(c == label, 0.0, e), axis=0)
        run_max = new_max
    lse = run_max + tl.log(run_sum)
    if HAS_LSE:
        tl.store(lse_ptr + row, lse)
    x_y, _ = _capped(tl.load(base + label).to(tl.float32), softcap, SOFTCAP)
    lp_y = x_y - lse
    one_minus_y = run_other / run_sum
    w_y = 1.0
    if HAS_W:
        w_y = tl.load(w_ptr + label).to(tl.float32)
    # the target's own term, (1 - eps) w_y g(p_y), and its h
    if FOCAL:
        h_y, factor_y = _focal_h(lp_y, one_minus_y, gamma)
        target_loss = (1.0 - eps) * w_y * factor_y * (-lp_y)
        h_sum = (1.0 - eps) * w_y * h_y
    else:
        target_loss = (1.0 - eps) * w_y * (-lp_y)
        h_sum = (1.0 - eps) * w_y
    # pass 2: the smoothing terms eps / V sum_j w_j g(p_j) (and their h); for plain CE, sum_j h_j = sum_j w_j
    smooth_loss = tl.zeros((), tl.float32)
    if FOLD:
        h_sum += w_sum * (eps / V)
    if SMOOTH and not FOLD:
        smooth_h = tl.zeros((), tl.float32)
        for start in range(0, V, BLOCK_V):
            c = start + cols
            inside = c < V
            x, _ = _capped(tl.load(base + c, mask=inside, other=0.0).to(tl.float32), softcap, SOFTCAP)
            lp = x - lse
            wj = tl.full((BLOCK_V,), 1.0, tl.float32)
            if HAS_W:
                wj = tl.load(w_ptr + c, mask=inside, other=0.0).to(tl.float32)
            if FOCAL:
                one_minus = tl.where(c == label, one_minus_y, 1.0 - tl.exp(lp))
                hj, factor = _focal_h(lp, one_minus, gamma)
                smooth_loss += tl.sum(tl.where(inside, wj * factor * (-lp), 0.0), axis=0)
                smooth_h += tl.sum(tl.where(inside, wj * hj, 0.0), axis=0)
            else:
                smooth_loss += tl.sum(tl.where(inside, wj * (-lp), 0.0), axis=0)
                smooth_h += tl.sum(tl.where(inside, wj, 0.0), axis=0)
        smooth_loss = smooth_loss * (eps / V)
        h_sum += smooth_h * (eps / V)
    ce_scale = tl.load(ce_scale_ptr).to(tl.float32)
    z_scale = tl.load(z_scale_ptr).to(tl.float32)
    tl.store(correct_ptr + row, (kept & (best == label)).to(tl.int8))
    if WANT_GRAD:
        # pass 3: d loss / d z_k = [ce_scale (p_k sum_j h_j - h_k) + 2 z_scale z_loss lse p_k] (1 - t_k^2)
        row_factor = tl.where(kept, 1.0, 0.0)
        if HAS_ROW_SCALE:
            row_factor = row_factor * tl.load(row_scale_ptr + row).to(tl.float32)
        coef_p = ce_scale * h_sum
        if ZLOSS:
            coef_p += 2.0 * z_scale * z_loss * lse
        for start in range(0, V, BLOCK_V):
            c = start + cols
            inside = c < V
            x, t = _capped(tl.load(base + c, mask=inside, other=0.0).to(tl.float32), softcap, SOFTCAP)
            lp = x - lse
            p = tl.exp(lp)
            q = tl.where(c == label, 1.0 - eps, 0.0)
            if SMOOTH:
                q += eps / V
            wk = 1.0
            if HAS_W:
                wk = tl.load(w_ptr + c, mask=inside, other=0.0).to(tl.float32)
            hk = q * wk
            if FOLD:
                smooth_loss += tl.sum(tl.where(inside, wk * (lse - x), 0.0), axis=0)
            if FOCAL:
                one_minus = tl.where(c == label, one_minus_y, 1.0 - p)
                hf, _ = _focal_h(lp, one_minus, gamma)
                hk = hk * hf
            g = (coef_p * p - ce_scale * hk) * row_factor
            if SOFTCAP:
                g = g * (1.0 - t * t)
            tl.store(base + c, tl.where(kept, g, 0.0), mask=inside)
        if FOLD:
            smooth_loss = smooth_loss * (eps / V)
    loss = ce_scale * (target_loss + smooth_loss)
    if ZLOSS:
        loss += z_scale * z_loss * lse * lse
    tl.store(loss_ptr + row, tl.where(kept, loss, 0.0))


def chunk_loss_grad_(z: Tensor, target: Tensor, kept: Tensor, *, class_weight: Tensor | None,
                     label_smoothing: float, z_loss: float, softcap: float | None, gamma: float, ce_scale: Tensor,
                     z_scale: Tensor, row_scale: Tensor | None, want_grad: bool,
                     lse_out: Tensor | None = None) -> tuple[Tensor, Tensor | None, Tensor]:
    """One token chunk's per-row loss, its gradient in the raw logits (in place) and the token accuracy.

    Args:
        z: (n, V) contiguous float32 raw logits ``h @ W.T + b`` (before the softcap); overwritten by the
            gradient when ``want_grad``.
        target: (n,) int64 class indices; a row that is not kept may hold anything (it is not read).
        kept: (n,) bool, the rows that count.
        class_weight: (V,) float32 or None.
        label_smoothing, z_loss, gamma: floats (eps in [0, 1], z_loss >= 0, gamma >= 0).
        softcap: c > 0 or None.
        ce_scale, z_scale: 0-d float32 tensors on z's device, the cross-entropy and z-loss terms' factors
            (the reduction's 1 / denominator).
        row_scale: (n,) float32 or None, multiplies each row's gradient (the backward of reduction "none").
        want_grad: write the gradient into ``z``.
        lse_out: optional (n,) float32 buffer, filled with each row's log-sum-exp of the softcapped logits
            (the z-loss component of ``return_components``).

    Returns:
        ``(row_loss, grad_z, correct)``: (n,) float32 losses (0 where not kept), ``z`` itself holding
        d row_loss / d z (times ``row_scale``; 0 in rows not kept) or None, and (n,) bool, whether the
        arg max of the softcapped logits is the target (False where not kept).
    """
    fn = "chunk_loss_grad_"
    if z.ndim != 2 or z.dtype != torch.float32 or not z.is_contiguous():
        raise ValueError(f"{fn}: z must be a contiguous (n, V) float32 tensor; got {tuple(z.shape)} {z.dtype}"
                         f"{'' if z.is_contiguous() else ' (not contiguous)'}")
    n, vocab = z.shape
    if target.shape != (n,) or kept.shape != (n,):
        raise ValueError(f"{fn}: target and kept must have shape ({n},); got {tuple(target.shape)} and "
                         f"{tuple(kept.shape)}")
    loss = torch.empty(n, dtype=torch.float32, device=z.device)
    correct = torch.empty(n, dtype=torch.int8, device=z.device)
    if n == 0 or vocab == 0:
        loss.zero_()
        if lse_out is not None:
            lse_out.fill_(float("-inf") if vocab == 0 else 0.0)
        return loss, (z if want_grad else None), correct.bool()
    if lse_out is not None and (lse_out.dtype != torch.float32 or lse_out.shape != (n,)
                                or not lse_out.is_contiguous()):
        raise ValueError(f"{fn}: lse_out must be a contiguous ({n},) float32 tensor; got {tuple(lse_out.shape)} "
                         f"{lse_out.dtype}")
    block_v = min(triton.next_power_of_2(vocab), MAX_BLOCK_V)
    placeholder = z
    chunk_kernel[(n,)](
        z, target.contiguous(), kept.contiguous().view(torch.uint8),
        placeholder if class_weight is None else class_weight.contiguous(),
        ce_scale, z_scale, placeholder if row_scale is None else row_scale.contiguous(), loss, correct,
        loss if lse_out is None else lse_out, vocab, float(label_smoothing), float(z_loss),
        1.0 if softcap is None else float(softcap), float(gamma),
        HAS_W=class_weight is not None, SMOOTH=bool(label_smoothing), FOCAL=bool(gamma), ZLOSS=bool(z_loss),
        SOFTCAP=softcap is not None, HAS_ROW_SCALE=row_scale is not None, WANT_GRAD=bool(want_grad),
        FOLD=bool(label_smoothing) and not gamma and bool(want_grad), HAS_LSE=lse_out is not None,
        BLOCK_V=block_v)
    return loss, (z if want_grad else None), correct.bool()
