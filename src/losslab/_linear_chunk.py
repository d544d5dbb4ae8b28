"""The chunk loop of :func:`losslab.linear_cross_entropy` and its per-chunk step on CPU.

Two layers, so that the step can be swapped by device:

* the *step* (:func:`chunk_loss_grad_torch`, and on CUDA the Triton kernel
  ``losslab._linear_triton.chunk_loss_grad_`` with the same contract) turns one
  chunk's raw logits into its per-row losses and, in place, their gradient;
* the *loop* (:func:`sweep`) owns the matmuls: the chunk's logits
  ``h @ W.T + b`` into one preallocated buffer (on CPU computed transposed,
  ``W @ h.T``, MKL's faster orientation), and the accumulation of
  ``grad_hidden`` (rows of the output), ``grad_weight`` (``addmm_`` straight into
  the output buffer) and ``grad_bias``.

Where even :data:`MIN_ROWS` rows of the whole vocabulary exceed the memory
budget, :func:`sweep` also cuts the vocabulary into blocks: a first pass over
the blocks accumulates each row's online log-sum-exp (and the target logit,
the weighted logit sum of label smoothing and the argmax), a second pass
recomputes each block's logits and writes its gradient. That path computes
the same row terms (:func:`_row_terms`) without the step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from ._native import focal_factor

BUDGET_BYTES = 64 << 20  # chunk_size=None: the step's chunk-sized buffers take at most about this much (64 MiB)
MIN_ROWS = 16  # fewer rows per chunk than this: cut the vocabulary into blocks instead


class Options(NamedTuple):
    """The loss's hyperparameters as the step takes them (``class_weight`` in the compute dtype)."""

    class_weight: Tensor | None
    label_smoothing: float
    z_loss: float
    softcap: float | None
    gamma: float


def buffers(opts: Options) -> int:
    """How many chunk-sized float tensors the torch step holds at once (the logits buffer included)."""
    if opts.gamma and opts.label_smoothing:
        return 5  # log p, (1 - p)^gamma, G and the focal terms over the whole row
    return 2 if opts.softcap is not None else 1  # softcap keeps 1 - tanh^2 beside the logits


def plan(n: int, vocab: int, opts: Options, chunk_size: int | None, itemsize: int = 4) -> tuple[int, int]:
    """(rows per chunk, vocabulary block) for ``chunk_size=None`` from :data:`BUDGET_BYTES`; a given chunk_size
    keeps the whole vocabulary. The vocabulary is cut only where :data:`MIN_ROWS` rows do not fit, and never
    with focal weighting and label smoothing together (which then take MIN_ROWS rows past the budget)."""
    if chunk_size is not None:
        return max(1, min(chunk_size, n)), vocab
    per_row = itemsize * max(vocab, 1) * buffers(opts)
    rows = BUDGET_BYTES // per_row
    if rows >= MIN_ROWS or (opts.gamma and opts.label_smoothing):
        rows = max(MIN_ROWS, rows // 8 * 8)
        return max(1, min(rows, n)), vocab
    block = BUDGET_BYTES // (itemsize * MIN_ROWS * (2 if opts.softcap is not None else 1))
    return max(1, min(MIN_ROWS, n)), max(1, min(block, vocab))


# ----------------------------------------------------------------------------
# the row terms (shared by the step and the vocabulary-blocked pass)


def _row_terms(lse: Tensor, x_y: Tensor, sx: Tensor | None, w_y: Tensor | None, w_sum: float | Tensor, vocab: int,
               kept: Tensor, opts: Options, ce_scale: Tensor, z_scale: Tensor,
               row: Tensor | None) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
    """Per-row loss and gradient coefficients, without focal label smoothing.

    The gradient in the (softcapped) logits is ``A p_j - B [j = y] - C w_j`` with ``p`` the softmax and ``w``
    the class weight (1 without): the returned (loss, A, B, C), C None without smoothing; A, B, C already
    multiplied by ``row`` (the kept mask times the backward's row scale), None when ``row`` is None.
    ``sx`` is the sum over classes of w_c x_c (needed with smoothing only); ``w_sum`` that of w_c.
    """
    eps, gamma = opts.label_smoothing, opts.gamma
    lp_y = x_y - lse
    if gamma:
        factor, slope = focal_factor(lp_y, gamma)  # (1 - p_y)^gamma and G = d[(1 - p_y)^gamma log p_y] / d log p_y
        ce = -(factor * lp_y)
        a = slope
    else:
        ce = -lp_y
        a = torch.ones_like(lp_y)
    if w_y is not None:
        ce, a = ce * w_y, a * w_y
    if eps:  # CE only: sum_c w_c (-log p_c) = lse sum_c w_c - sum_c w_c x_c
        ce = (1.0 - eps) * ce + (eps / vocab) * (lse * w_sum - sx)
        a = (1.0 - eps) * a
    loss = ce * ce_scale
    if opts.z_loss:
        loss = loss + (opts.z_loss * z_scale) * lse.square()
    loss = torch.where(kept, loss, torch.zeros_like(loss))
    if row is None:
        return loss, None, None, None
    coef_a = a + (eps / vocab) * w_sum if eps else a
    coef_a = coef_a * ce_scale
    if opts.z_loss:
        coef_a = coef_a + (2.0 * opts.z_loss * z_scale) * lse
    coef_c = (eps / vocab) * ce_scale * row if eps else None
    return loss, coef_a * row, a * ce_scale * row, coef_c


def _apply_gradient(z: Tensor, coef_p: Tensor, target: Tensor | None, coef_b: Tensor, coef_c: Tensor | None,
                    cw: Tensor | None) -> Tensor:
    """In place: z (holding exp(x - m), or p when coef_p is scaled by 1) becomes coef_p e_j - B [j = y] - C w_j;
    ``target`` None: no target class in this block (vocabulary blocks); otherwise local column indices with
    B zeroed where the target lies outside the block."""
    z.mul_(coef_p.unsqueeze(1))
    if target is not None:
        z.scatter_add_(1, target.unsqueeze(1), (-coef_b).unsqueeze(1))
    if coef_c is not None:
        if cw is None:
            z.sub_(coef_c.unsqueeze(1))
        else:
            z.addr_(coef_c, cw, alpha=-1)  # minus the outer product, without a chunk-sized temporary
    return z


def _max_and_correct(z: Tensor, target: Tensor, kept: Tensor, x_y: Tensor) -> tuple[Tensor, Tensor]:
    """Each row's maximum and ``kept & (argmax == target)`` (the first maximum), without an arg-reduction:
    the maximum over the other classes (the target's entry set to -inf for one ``amax``, then restored) is
    below the target's logit exactly when the target is the only maximum; rows where it ties are resolved
    by ``argmax`` on those rows alone. ``torch.max(dim=1)`` with indices took 20 ms on a contiguous
    256 x 65,536 chunk and 147 ms on the loop's transposed one, one ``amax`` 4 to 6 ms."""
    if torch.compiler.is_compiling():  # no data-dependent branch in a traced graph
        m, arg = z.max(dim=1)
        return m, kept & (arg == target)
    idx = target.unsqueeze(1)
    z.scatter_(1, idx, float("-inf"))
    other = z.amax(dim=1)
    z.scatter_(1, idx, x_y.unsqueeze(1))
    correct = kept & (x_y > other)
    tied = kept & (x_y == other)
    if bool(tied.any()):  # rare: the target shares the maximum; the first one counts
        rows = tied.nonzero().squeeze(1)
        correct[rows] = z[rows].argmax(dim=1) == target[rows]
    return torch.maximum(other, x_y), correct


# ----------------------------------------------------------------------------
# the step


def chunk_loss_grad_torch(z: Tensor, target: Tensor, kept: Tensor, *, class_weight: Tensor | None,
                          label_smoothing: float, z_loss: float, softcap: float | None, gamma: float,
                          ce_scale: Tensor, z_scale: Tensor, row_scale: Tensor | None, want_grad: bool,
                          lse_out: Tensor | None = None) -> tuple[Tensor, Tensor | None, Tensor]:
    r"""One chunk's losses and their gradient in the chunk's raw logits, the gradient written into ``z``.

    The contract (shared with the CUDA kernel ``losslab._linear_triton.chunk_loss_grad_``):

    Args:
        z: (n, V) the chunk's RAW logits ``h @ W.T + b`` (before softcap), in the compute dtype (float32 for
            half inputs, else the inputs' dtype): contiguous for the kernel; the CPU loop passes this step a
            transposed view (strides (1, n)). Always overwritten: with the gradient when ``want_grad``, with
            scratch otherwise.
        target: (n,) int64 class indices in [0, V); rows that are not kept hold any valid index (0).
        kept: (n,) bool; rows not kept get loss 0, gradient 0 and correct False.
        class_weight: (V,) in the compute dtype, or None (1 for every class).
        label_smoothing, z_loss, softcap, gamma: the loss's hyperparameters (softcap None: none; gamma 0:
            cross-entropy, > 0: :func:`losslab.softmax_focal_loss`'s focal term).
        ce_scale, z_scale: 0-d tensors in the compute dtype multiplying the focal/cross-entropy term and the
            z-loss term of every row (the reductions' 1 / denominators; 1 for "sum" and "none").
        row_scale: (n,) in the compute dtype or None: multiplies each row's GRADIENT only (the incoming
            gradient of "none"); the returned loss is not scaled by it.
        want_grad: write the gradient.
        lse_out: optional (n,) buffer in the compute dtype; filled with each row's log-sum-exp of the
            softcapped logits (the loop asks for it only for ``return_components``, to report the z-loss term).

    Returns:
        ``(row_loss, grad_z, correct)``: row_loss (n,) in the compute dtype,
        ``kept * (ce_scale * ce_n + z_scale * z_loss * lse_n^2)``; grad_z the tensor ``z`` itself now holding
        d(sum of row_loss * row_scale) / d(raw logits) (None when not ``want_grad``); correct (n,) bool,
        ``kept & (argmax_j softcap(z)_j == target)`` (the first maximum).

    With label smoothing and gamma > 0 each class has its own focal factor: this step then allocates about four
    more chunk-sized tensors; every other option works in ``z`` with O(n) temporaries (softcap: one more
    chunk-sized tensor, 1 - tanh^2).
    """
    n, vocab = z.shape
    opts = Options(class_weight, label_smoothing, z_loss, softcap, gamma)
    cw, eps = class_weight, label_smoothing
    deriv = None
    if softcap is not None:
        z.div_(softcap).tanh_()
        if want_grad:
            deriv = torch.mul(z, z).neg_().add_(1.0)  # d softcap(x) / dx = 1 - tanh^2
        z.mul_(softcap)
    x_y = z.gather(1, target.unsqueeze(1)).squeeze(1)
    m, correct = _max_and_correct(z, target, kept, x_y)
    w_y = None if cw is None else cw[target]
    w_sum = vocab if cw is None else cw.sum()
    row = None
    if want_grad:
        row = kept.to(z.dtype) if row_scale is None else torch.where(kept, row_scale.to(z.dtype), 0.0)
    if gamma and eps:
        loss = _focal_smoothed(z, target, kept, x_y, w_y, opts, ce_scale, z_scale, row, lse_out)
    else:
        sx = None
        if eps:
            sx = z.sum(1) if cw is None else z @ cw
        e = z.sub_(m.unsqueeze(1)).exp_()
        s = e.sum(1)
        lse = m + s.log()
        if lse_out is not None:
            lse_out.copy_(lse)
        loss, coef_a, coef_b, coef_c = _row_terms(lse, x_y, sx, w_y, w_sum, vocab, kept, opts, ce_scale, z_scale,
                                                  row)
        if want_grad:
            _apply_gradient(e, coef_a / s, target, coef_b, coef_c, cw)
    if not want_grad:
        return loss, None, correct
    if deriv is not None:
        z.mul_(deriv)
    return loss, z, correct


def _focal_smoothed(z: Tensor, target: Tensor, kept: Tensor, x_y: Tensor, w_y: Tensor | None, opts: Options,
                    ce_scale: Tensor, z_scale: Tensor, row: Tensor | None, lse_out: Tensor | None) -> Tensor:
    """The focal loss with label smoothing, every class with its own factor:
    ``l = -sum_c a_c (1 - p_c)^gamma log p_c`` with ``a_c = (1 - eps) w_y [c = y] + eps / V w_c``, whose gradient
    is ``p_j S - a_j G_j`` with ``S = sum_c a_c G_c`` (G from :func:`losslab._native.focal_factor`); ``z`` holds
    the softcapped logits and, with ``row``, receives the gradient."""
    n, vocab = z.shape
    eps, cw = opts.label_smoothing, opts.class_weight
    lse = torch.logsumexp(z, dim=1)
    if lse_out is not None:
        lse_out.copy_(lse)
    lp = z.sub_(lse.unsqueeze(1))  # log p, exact where p underflows
    factor, slope = focal_factor(lp, opts.gamma)
    term = factor.mul_(lp).neg_()  # (1 - p_c)^gamma (-log p_c)
    idx = target.unsqueeze(1)
    wy = torch.ones_like(lse) if w_y is None else w_y
    smooth = term.sum(1) if cw is None else term @ cw
    ce = (1.0 - eps) * wy * term.gather(1, idx).squeeze(1) + (eps / vocab) * smooth
    del term, factor
    loss = ce * ce_scale
    if opts.z_loss:
        loss = loss + (opts.z_loss * z_scale) * lse.square()
    loss = torch.where(kept, loss, torch.zeros_like(loss))
    if row is None:
        return loss
    g_y = slope.gather(1, idx).squeeze(1)
    big_s = (1.0 - eps) * wy * g_y + (eps / vocab) * (slope.sum(1) if cw is None else slope @ cw)
    coef_p = big_s * ce_scale
    if opts.z_loss:
        coef_p = coef_p + (2.0 * opts.z_loss * z_scale) * lse
    p = lp.exp_()
    p.mul_((coef_p * row).unsqueeze(1))
    # minus a_j G_j, scaled: eps / V w_j G_j on every class, (1 - eps) w_y G_y on the target
    flat = (eps / vocab) * ce_scale * row
    slope.mul_(flat.unsqueeze(1) if cw is None else flat.unsqueeze(1) * cw.unsqueeze(0))
    p.sub_(slope)
    p.scatter_add_(1, idx, (-(1.0 - eps) * ce_scale * row * wy * g_y).unsqueeze(1))
    return loss


Step = Callable[..., tuple[Tensor, Tensor | None, Tensor]]


def step_for(device: torch.device, dtype: torch.dtype = torch.float32) -> Step:
    """The step of a device and compute dtype: the Triton kernel on CUDA for float32 (half inputs compute in
    float32) where ``losslab._linear_triton`` imports, else torch (CPU, and float64 on CUDA)."""
    if device.type == "cuda" and dtype == torch.float32:
        try:
            from ._linear_triton import chunk_loss_grad_  # type: ignore[attr-defined]
        except ImportError:
            return chunk_loss_grad_torch
        return chunk_loss_grad_
    return chunk_loss_grad_torch


# ----------------------------------------------------------------------------
# the loop


class Result(NamedTuple):
    losses: Tensor  # (n,) per row, or the 0-d sum
    grads: tuple[Tensor | None, Tensor | None, Tensor | None]  # hidden, weight, bias (compute dtype or hidden's)
    correct: Tensor  # 0-d int64: kept rows whose argmax is the target
    z_term: Tensor | None  # (n,) per row, or 0-d sum, of the scaled z-loss term (components only)


def sweep(h2: Tensor, weight: Tensor, bias: Tensor | None, target: Tensor, kept: Tensor, opts: Options, *,
          ce_scale: Tensor, z_scale: Tensor, row_scale: Tensor | None, want: tuple[bool, bool, bool],
          per_row: bool, chunk_size: int | None, components: bool = False, step: Step | None = None) -> Result:
    """One pass over the chunks of rows: the loss (per row, or its sum) and the wanted gradients.

    ``grad_hidden`` comes in hidden's dtype, ``grad_weight`` and ``grad_bias`` in the compute dtype (float32 for
    half inputs: accumulated across chunks in float32; for float32 and float64 they are the output buffers).
    """
    n, d = h2.shape
    vocab = weight.shape[0]
    dev = h2.device
    cdt = torch.float32 if h2.dtype in (torch.float16, torch.bfloat16) else h2.dtype
    w = weight if weight.dtype == cdt else weight.to(cdt)  # half: one float32 copy of the weight
    b = None if bias is None else (bias if bias.dtype == cdt else bias.to(cdt))
    want_h, want_w, want_b = want
    need = want_h or want_w or want_b
    gh = torch.empty((n, d), dtype=h2.dtype, device=dev) if want_h else None
    gw = torch.zeros((vocab, d), dtype=cdt, device=dev) if want_w else None
    gb = torch.zeros((vocab,), dtype=cdt, device=dev) if want_b else None
    losses = torch.zeros((n,) if per_row else (), dtype=cdt, device=dev)
    z_terms = torch.zeros((n,) if per_row else (), dtype=cdt, device=dev) if components else None
    correct = torch.zeros((), dtype=torch.int64, device=dev)
    rows, block = plan(n, vocab, opts, chunk_size, torch.finfo(cdt).bits // 8)
    if n == 0 or vocab == 0:
        return Result(losses, (gh.zero_() if gh is not None else None, gw, gb), correct, z_terms)
    step = step or step_for(dev, cdt)
    # on CPU the chunk's logits are computed transposed, (V, n) = W @ h.T, and the step works on their (n, V)
    # view: MKL took 359 ms for W @ h.T against 517 ms for h @ W.T, and 257 ms against 313 ms for the
    # grad_weight update (256 rows, d = 1,024, V = 65,536, 2 threads)
    # (the torch step only: the kernel's layout is contiguous rows; not traced: the tracer's decompositions
    # view the transposed chunk as flat)
    transposed = step is chunk_loss_grad_torch and dev.type == "cpu" and block == vocab \
        and not torch.compiler.is_compiling()
    flat = torch.empty(rows * block, dtype=cdt, device=dev)
    buf = flat.view(rows, block)
    lse = torch.empty((rows,), dtype=cdt, device=dev) if components else None
    for s in range(0, n, rows):
        e = min(s + rows, n)
        h = h2[s:e] if h2.dtype == cdt else h2[s:e].to(cdt)
        y, k = target[s:e], kept[s:e]
        rs = None if row_scale is None else row_scale[s:e]
        if block < vocab:
            loss, g_h, ok, lse_c = _blocked(h, w, b, y, k, opts, ce_scale, z_scale, rs, buf, block, need,
                                            (gw, gb), want_h)
            if components:
                lse[: e - s].copy_(lse_c)
            if g_h is not None:
                gh[s:e] = g_h
        else:
            if transposed:
                z_t = flat[: vocab * (e - s)].view(vocab, e - s)
                if b is None:
                    torch.mm(w, h.T, out=z_t)
                else:
                    torch.addmm(b.unsqueeze(1), w, h.T, out=z_t)
                z = z_t.T
            else:
                z = buf[: e - s]
                if b is None:
                    torch.mm(h, w.T, out=z)
                else:
                    torch.addmm(b, h, w.T, out=z)
            loss, g, ok = step(z, y, k, class_weight=opts.class_weight, label_smoothing=opts.label_smoothing,
                               z_loss=opts.z_loss, softcap=opts.softcap, gamma=opts.gamma, ce_scale=ce_scale,
                               z_scale=z_scale, row_scale=rs, want_grad=need,
                               **({"lse_out": lse[: e - s]} if components else {}))
            if need:
                if want_h:
                    if gh.dtype == cdt:
                        torch.mm(g, w, out=gh[s:e])
                    else:
                        gh[s:e] = g @ w
                if want_w:
                    gw.addmm_(g.T, h)
                if want_b:
                    gb.add_(g.sum(0))
        correct += ok.sum()
        if per_row:
            losses[s:e] = loss
        else:
            losses += loss.sum()
        if components and opts.z_loss:
            zt = torch.where(k, (opts.z_loss * z_scale) * lse[: e - s].square(), 0.0)
            if per_row:
                z_terms[s:e] = zt
            else:
                z_terms += zt.sum()
    return Result(losses, (gh, gw, gb), correct, z_terms)


def _blocked(h: Tensor, w: Tensor, b: Tensor | None, y: Tensor, k: Tensor, opts: Options, ce_scale: Tensor,
             z_scale: Tensor, row_scale: Tensor | None, buf: Tensor, block: int, need: bool,
             acc: tuple[Tensor | None, Tensor | None], want_h: bool) -> tuple[Tensor, Tensor | None, Tensor, Tensor]:
    """One chunk of rows over vocabulary blocks: pass 1 the online log-sum-exp (with the target logit, the
    weighted logit sum and the argmax), pass 2 each block's gradient into grad_hidden / grad_weight / grad_bias.
    Returns (row loss, grad_hidden rows or None, correct, lse)."""
    n = h.shape[0]
    vocab = w.shape[0]
    cw, c = opts.class_weight, opts.softcap
    m = torch.full((n,), float("-inf"), dtype=buf.dtype, device=buf.device)
    s = torch.zeros_like(m)
    x_y, sx, arg = torch.zeros_like(m), torch.zeros_like(m), torch.zeros(n, dtype=torch.int64, device=buf.device)

    def logits(lo: int, hi: int) -> tuple[Tensor, Tensor | None]:
        z = buf.view(-1)[: n * (hi - lo)].view(n, hi - lo)  # contiguous, for mm's out=
        if b is None:
            torch.mm(h, w[lo:hi].T, out=z)
        else:
            torch.addmm(b[lo:hi], h, w[lo:hi].T, out=z)
        deriv = None
        if c is not None:
            z.div_(c).tanh_()
            deriv = torch.mul(z, z).neg_().add_(1.0) if need else None
            z.mul_(c)
        return z, deriv

    for lo in range(0, vocab, block):
        hi = min(lo + block, vocab)
        z, _ = logits(lo, hi)
        inside = (y >= lo) & (y < hi)
        local = torch.where(inside, y - lo, 0)
        x_y = torch.where(inside, z.gather(1, local.unsqueeze(1)).squeeze(1), x_y)
        if opts.label_smoothing:
            sx += z.sum(1) if cw is None else z @ cw[lo:hi]
        bm, barg = z.max(dim=1)
        better = bm > m  # the first maximum wins, as over the whole row
        arg = torch.where(better, barg + lo, arg)
        m_new = torch.maximum(m, bm)
        s = s * torch.exp(m - m_new) + z.sub_(m_new.unsqueeze(1)).exp_().sum(1)
        m = m_new
    lse = m + s.log()
    correct = k & (arg == y)
    w_y = None if cw is None else cw[y]
    w_sum = vocab if cw is None else cw.sum()
    row = None
    if need:
        row = k.to(buf.dtype) if row_scale is None else torch.where(k, row_scale.to(buf.dtype), 0.0)
    loss, coef_a, coef_b, coef_c = _row_terms(lse, x_y, sx, w_y, w_sum, vocab, k, opts, ce_scale, z_scale, row)
    if not need:
        return loss, None, correct, lse
    gw, gb = acc
    g_h = torch.zeros((n, w.shape[1]), dtype=buf.dtype, device=buf.device) if want_h else None
    for lo in range(0, vocab, block):
        hi = min(lo + block, vocab)
        z, deriv = logits(lo, hi)
        inside = (y >= lo) & (y < hi)
        z.sub_(lse.unsqueeze(1)).exp_()  # p
        _apply_gradient(z, coef_a, torch.where(inside, y - lo, 0), torch.where(inside, coef_b, 0.0), coef_c,
                        None if cw is None else cw[lo:hi])
        if deriv is not None:
            z.mul_(deriv)
        if g_h is not None:
            g_h.addmm_(z, w[lo:hi])
        if gw is not None:
            gw[lo:hi].addmm_(z.T, h)
        if gb is not None:
            gb[lo:hi].add_(z.sum(0))
    return loss, g_h, correct, lse
