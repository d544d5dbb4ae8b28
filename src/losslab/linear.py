"""Fused linear cross-entropy: the loss of a large-vocabulary head without storing its (N, V) logits.

The forward pass loops over chunks of tokens: for each chunk it computes the chunk's logits
``hidden_chunk @ weight.T + bias`` (softcapped), their loss, and the loss's gradient in the logits (already
scaled by the reduction's denominator), and turns that gradient at once into the chunk's rows of
``grad_hidden`` and its contribution to ``grad_weight`` and ``grad_bias`` (two matmuls). Backward only
scales what was saved by the incoming gradient (Liger-Kernel's approach). Memory: O(chunk * V + V * d).

With ``reduction="none"`` the incoming gradient is one value per token, unknown in forward: forward computes
the losses only, and backward runs the chunk loop a second time with each row scaled by its gradient.

CPU only for now (BLAS matmuls); issue 17 adds the Triton path, the focal ``gamma`` and ``return_components``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from . import _dist
from ._checks import (
    check_class_indices,
    check_common,
    check_input,
    check_number,
    class_vector,
    shape_str,
)

Reduction = Literal["none", "mean", "sum"]

CHUNK_BYTES = 64 << 20  # chunk_size=None: a chunk's float32 logits take at most about this much (64 MiB)


def default_chunk(n: int, vocab: int) -> int:
    """Rows per chunk for ``chunk_size=None``: the chunk's float32 logits fit :data:`CHUNK_BYTES` (a multiple
    of 8 rows, at least 8, at most ``n``). The loop holds about four tensors of that size at once."""
    rows = max(8, (CHUNK_BYTES // (4 * max(vocab, 1))) // 8 * 8)
    return max(1, min(rows, n))


def _sweep(h2: Tensor, weight: Tensor, bias: Tensor | None, target: Tensor, kept: Tensor, ce_scale: Tensor,
           z_scale: Tensor, row_scale: Tensor | None, *, class_weight: Tensor | None, label_smoothing: float,
           z_loss: float, softcap: float | None, chunk: int, want: tuple[bool, bool, bool],
           per_row: bool) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
    """One pass over the token chunks: the loss (per row, or its scaled sum) and the wanted gradients.

    ``ce_scale`` and ``z_scale`` (0-d, compute dtype) divide the cross-entropy and the z-loss terms (the
    reductions' denominators: 1 for "sum" and "none"); ``row_scale`` (n,) multiplies each row's gradient
    (backward of "none"). Gradients accumulate in the compute dtype (float32 for half inputs).
    """
    n, d = h2.shape
    vocab = weight.shape[0]
    cdt = torch.float32 if h2.dtype in (torch.float16, torch.bfloat16) else h2.dtype
    w = weight.to(cdt)
    b = None if bias is None else bias.to(cdt)
    cw = None if class_weight is None else class_weight.to(cdt)
    eps = float(label_smoothing)
    want_h, want_w, want_b = want
    need_grad = want_h or want_w or want_b
    grad_h = torch.zeros((n, d), dtype=h2.dtype, device=h2.device) if want_h else None
    grad_w = torch.zeros((vocab, d), dtype=cdt, device=h2.device) if want_w else None
    grad_b = torch.zeros((vocab,), dtype=cdt, device=h2.device) if want_b else None
    losses = torch.zeros((n,) if per_row else (), dtype=cdt, device=h2.device)
    cw_sum = None if cw is None else cw.sum()
    for s in range(0, n, chunk):
        e = min(s + chunk, n)
        h = h2[s:e].to(cdt)
        y = target[s:e]
        k = kept[s:e]
        z = h @ w.T if b is None else torch.addmm(b, h, w.T)
        if softcap is not None:
            t = torch.tanh(z / softcap)
            z = t * softcap
        lse = torch.logsumexp(z, dim=1)
        log_p = z - lse.unsqueeze(1)
        lp_y = log_p.gather(1, y.unsqueeze(1)).squeeze(1)
        wy = None if cw is None else cw[y]
        nll = -lp_y if wy is None else -wy * lp_y
        loss = (1.0 - eps) * nll
        if eps > 0:
            smooth = -(log_p.sum(1) if cw is None else log_p @ cw)
            loss = loss + (eps / vocab) * smooth
        loss = loss * ce_scale
        if z_loss > 0:
            loss = loss + (z_loss * z_scale) * lse.square()
        loss = torch.where(k, loss, torch.zeros_like(loss))
        if per_row:
            losses[s:e] = loss
        else:
            losses = losses + loss.sum()
        if not need_grad:
            continue
        # d loss_n / d z_j = (1 - eps) w_y (p_j - [j = y]) + eps / V (W p_j - w_j) + 2 z_loss lse p_j
        p = log_p.exp_()
        del log_p
        a = (1.0 - eps) * (torch.ones_like(lse) if wy is None else wy)
        coef_p = a
        if eps > 0:
            coef_p = coef_p + (eps / vocab) * (vocab if cw_sum is None else cw_sum)
        coef_p = coef_p * ce_scale
        if z_loss > 0:
            coef_p = coef_p + (2.0 * z_loss * z_scale) * lse
        row = torch.where(k, torch.ones_like(lse), torch.zeros_like(lse))
        if row_scale is not None:
            row = row * row_scale[s:e].to(cdt)
        g = p.mul_((coef_p * row).unsqueeze(1))
        g.scatter_add_(1, y.unsqueeze(1), (-a * ce_scale * row).unsqueeze(1))
        if eps > 0:
            flat = (eps / vocab) * ce_scale * row
            if cw is None:
                g.sub_(flat.unsqueeze(1))
            else:
                g.sub_(flat.unsqueeze(1) * cw.unsqueeze(0))
        if softcap is not None:
            g.mul_(1.0 - t.square())  # d (c tanh(x / c)) / dx = 1 - tanh^2
        if want_h:
            grad_h[s:e] = (g @ w).to(h2.dtype)
        if want_w:
            grad_w.addmm_(g.T, h)
        if want_b:
            grad_b.add_(g.sum(0))
    return losses, grad_h, grad_w, grad_b


class _LinearCrossEntropy(torch.autograd.Function):
    """Forward computes the loss and (for "mean" and "sum") the gradients; backward scales them."""

    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, bias: Tensor | None, opts: dict) -> Tensor:  # type: ignore[override]
        want = tuple(ctx.needs_input_grad[:3])
        if bias is None:
            want = (want[0], want[1], False)
        per_row = opts["per_row"]
        args = (hidden.detach(), weight.detach(), None if bias is None else bias.detach())
        loss, gh, gw, gb = _sweep(*args, opts["target"], opts["kept"], opts["ce_scale"], opts["z_scale"], None,
                                  want=(False, False, False) if per_row else want, **opts["sweep"],
                                  per_row=per_row)
        ctx.opts, ctx.want, ctx.per_row = opts, want, per_row
        ctx.dtypes = (hidden.dtype, weight.dtype, None if bias is None else bias.dtype)
        if per_row:
            ctx.save_for_backward(*args[:2], *(() if bias is None else (bias.detach(),)))
        else:
            ctx.save_for_backward(*(t for t in (gh, gw, gb) if t is not None))
        return loss.to(hidden.dtype)

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None, None]:  # type: ignore[override]
        if torch.is_grad_enabled():
            raise RuntimeError("linear_cross_entropy: no second derivative (create_graph=True); compute the "
                               "logits with F.linear and use losslab.cross_entropy to differentiate twice")
        opts = ctx.opts
        if ctx.per_row:
            saved = ctx.saved_tensors
            hidden, weight = saved[0], saved[1]
            bias = saved[2] if len(saved) > 2 else None
            _, gh, gw, gb = _sweep(hidden, weight, bias, opts["target"], opts["kept"], opts["ce_scale"],
                                   opts["z_scale"], grad_out, want=ctx.want, **opts["sweep"], per_row=True)
        else:
            it = iter(ctx.saved_tensors)
            gh, gw, gb = (next(it) if w else None for w in ctx.want)
            scale = grad_out.to(torch.float32 if grad_out.dtype in (torch.float16, torch.bfloat16)
                                else grad_out.dtype)
            gh, gw, gb = (None if g is None else g * scale.to(g.dtype) for g in (gh, gw, gb))
        out = tuple(None if g is None else g.to(dt) for g, dt in zip((gh, gw, gb), ctx.dtypes))
        return out[0], out[1], out[2], None


def _denominator(total: Tensor, processes: int) -> Tensor:
    """A (global, under dist_sync) denominator as a 0-d tensor; 0 becomes 1."""
    den = _dist.global_denominator(total, total.device) if processes > 1 else total
    return torch.where(den > 0, den, torch.ones_like(den))


def linear_cross_entropy(
    hidden: Tensor,
    weight: Tensor,
    target: Tensor,
    *,
    bias: Tensor | None = None,
    ignore_index: int | None = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    class_weight: Tensor | None = None,
    z_loss: float = 0.0,
    softcap: float | None = None,
    shift: bool = False,
    chunk_size: int | None = None,
    dist_sync: bool = False,
) -> Tensor:
    r"""Cross-entropy of a linear head's logits, computed chunk by chunk without storing the (N, V) logits.

    .. math::

        x_n = \operatorname{softcap}(W h_n + b), \qquad
        \ell_n = -\sum_{c=1}^{V} w_c\, q_{n,c} \log \operatorname{softmax}(x_n)_c
                 + z\_loss \cdot \operatorname{logsumexp}(x_n)^2,

    with :math:`q_n = (1 - \varepsilon)\,\mathrm{onehot}(y_n) + \varepsilon / V`, :math:`w` = ``class_weight``
    (1 when None) and :math:`\operatorname{softcap}(x) = c \tanh(x / c)` (Gemma 2; identity when ``softcap``
    is None). The cross-entropy term equals
    ``losslab.cross_entropy(softcap(F.linear(hidden, weight, bias)), target, weight=class_weight, ...)``.

    Args:
        hidden: (N, d) or (B, T, d) hidden states, floating point.
        weight: (V, d), as ``nn.Linear`` stores it, same dtype as ``hidden``.
        target: (N,) or (B, T) class indices in [0, V) or ``ignore_index``.
        bias: optional (V,).
        ignore_index: target value whose tokens contribute nothing (loss, gradient, denominators); None
            disables it.
        reduction: "none" | "mean" | "sum".
        label_smoothing: :math:`\varepsilon` in [0, 1].
        class_weight: optional per-vocabulary-entry weights (V,), non-negative; a constant (no gradient).
        z_loss: coefficient of PaLM's z-loss, :math:`\ge 0`.
        softcap: :math:`c > 0`, or None.
        shift: position t predicts target t + 1 (for (B, T) inputs within each sequence): the last position
            of each sequence and the first target are dropped. ``hidden`` is not copied (the last positions
            are masked out inside the loop).
        chunk_size: tokens per chunk; None picks it so that a chunk's float32 logits take at most 64 MiB
            (:func:`default_chunk`; the loop holds about four such tensors).
        dist_sync: all-reduce the denominators of "mean" under torch.distributed, as ``cross_entropy`` does.

    Returns:
        "none": the per-token loss, shaped like ``target`` ((B, T - 1) or (N - 1,) with ``shift``), ignored
        tokens 0. "mean" and "sum": a scalar. In ``hidden``'s dtype.

        "mean" divides the cross-entropy term by :math:`\sum_n w_{y_n}` over kept tokens (PyTorch's weighted
        mean; their number without ``class_weight``) and the z-loss term by the number of kept tokens (the
        mean of :math:`\operatorname{logsumexp}^2` over tokens). A zero denominator divides by 1: an empty or
        all-ignored batch gives 0 with zero gradients.

    Raises:
        TypeError: non-floating ``hidden`` or ``weight``, mismatched dtypes, a float target.
        ValueError: mismatched shapes, a class index out of range, bad hyperparameters.

    References:
        Wijmans et al., "Cut Your Losses in Large-Vocabulary Language Models", ICLR 2025, arXiv:2411.09009.
        Hsu et al., "Liger Kernel: Efficient Triton Kernels for LLM Training", arXiv:2410.10989, 2024.
        Chowdhery et al., "PaLM", arXiv:2204.02311, 2022 (z-loss). Gemma Team, "Gemma 2", arXiv:2408.00118
        (softcapping).

    Example:
        >>> import torch, losslab
        >>> h = torch.randn(6, 4, requires_grad=True); w = torch.randn(10, 4, requires_grad=True)
        >>> loss = losslab.linear_cross_entropy(h, w, torch.tensor([1, 2, 3, 4, 5, 6]), chunk_size=4)
        >>> loss.backward()

    Numerics: logits, log-sum-exp, losses and gradients are computed in float32 for float16/bfloat16 inputs
    (``grad_weight`` accumulates in float32 across chunks); the gradients come back in the inputs' dtypes.
    The loss has no second derivative. Under torch.compile the function is a graph break candidate (it is an
    autograd.Function with a Python loop; not yet tested compiled).
    """
    fn = "linear_cross_entropy"
    check_common(fn, ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing,
                 dist_sync=dist_sync)
    check_input(fn, hidden, name="hidden")
    check_input(fn, weight, name="weight")
    if hidden.ndim not in (2, 3):
        raise ValueError(f"{fn}: hidden must have shape (N, d) or (B, T, d); got {shape_str(hidden.shape)}")
    if weight.ndim != 2 or weight.shape[1] != hidden.shape[-1]:
        raise ValueError(f"{fn}: weight must have shape (V, {hidden.shape[-1]}); got {shape_str(weight.shape)}")
    if weight.dtype != hidden.dtype or weight.device != hidden.device:
        raise TypeError(f"{fn}: weight must have hidden's dtype and device ({hidden.dtype}, {hidden.device}); "
                        f"got {weight.dtype}, {weight.device}")
    vocab = weight.shape[0]
    if bias is not None:
        check_input(fn, bias, name="bias")
        if bias.shape != (vocab,) or bias.device != hidden.device:
            raise ValueError(f"{fn}: bias must have shape ({vocab},) on {hidden.device}; got "
                             f"{shape_str(bias.shape)} on {bias.device}")
    if not isinstance(target, Tensor):
        raise TypeError(f"{fn}: target must be a torch.Tensor; got {type(target).__name__}")
    if target.dtype.is_floating_point or target.dtype.is_complex or target.dtype == torch.bool:
        raise TypeError(f"{fn}: target must hold class indices (an integer dtype); got {target.dtype}")
    if tuple(target.shape) != tuple(hidden.shape[:-1]):
        raise ValueError(f"{fn}: target shape {shape_str(target.shape)} does not match hidden's "
                         f"{shape_str(hidden.shape[:-1])}")
    if target.device != hidden.device:
        raise ValueError(f"{fn}: target must be on hidden's device ({hidden.device}); got {target.device}")
    z_loss = check_number(fn, "z_loss", z_loss, low=0.0)
    if softcap is not None:
        softcap = check_number(fn, "softcap", softcap, low=0.0, low_open=True)
    if not isinstance(shift, bool):
        raise TypeError(f"{fn}: shift must be a bool; got {type(shift).__name__}")
    if chunk_size is not None and (not isinstance(chunk_size, int) or isinstance(chunk_size, bool)
                                   or chunk_size < 1):
        raise ValueError(f"{fn}: chunk_size must be a positive int or None; got {chunk_size!r}")
    cdt = torch.float32 if hidden.dtype in (torch.float16, torch.bfloat16) else hidden.dtype
    cw = None if class_weight is None else class_vector(fn, "class_weight", class_weight, vocab, hidden, cdt)
    if cw is not None:
        cw = cw.detach()

    # flatten: hidden stays a view (no copy for a contiguous input); shift masks the last positions
    d = hidden.shape[-1]
    h2 = hidden.reshape(-1, d)
    t2 = target.reshape(target.shape[0], -1) if target.ndim == 2 else target.reshape(1, -1)
    valid = torch.ones(t2.shape, dtype=torch.bool, device=t2.device)
    if shift:
        if t2.shape[1] > 0:
            t2 = torch.cat([t2[:, 1:], t2[:, :1]], dim=1)  # position t now holds target t + 1
            valid[:, -1] = False
    if ignore_index is not None:
        valid &= t2 != ignore_index
    shifted_target = torch.where(valid, t2, torch.zeros_like(t2)).reshape(-1).long()
    check_class_indices(fn, torch.where(valid, t2, torch.zeros_like(t2)), vocab, None)
    kept = valid.reshape(-1)

    processes = _dist.world(fn, dist_sync)
    one = torch.ones((), dtype=cdt, device=hidden.device)
    if reduction == "mean":
        count = kept.sum().to(torch.float64)
        ce_total = count if cw is None else torch.where(kept, cw[shifted_target], 0).sum().to(torch.float64)
        ce_scale = (1.0 / _denominator(ce_total, processes)).to(cdt)
        z_scale = (1.0 / _denominator(count, processes)).to(cdt)
    else:
        ce_scale = z_scale = one
    per_row = reduction == "none"
    opts = {"target": shifted_target, "kept": kept, "ce_scale": ce_scale, "z_scale": z_scale, "per_row": per_row,
            "sweep": {"class_weight": cw, "label_smoothing": float(label_smoothing), "z_loss": float(z_loss),
                      "softcap": None if softcap is None else float(softcap),
                      "chunk": chunk_size or default_chunk(h2.shape[0], vocab)}}
    loss = _LinearCrossEntropy.apply(hidden.reshape(-1, d), weight, bias, opts)
    if per_row:
        loss = loss.reshape(t2.shape)
        if shift:
            loss = loss[:, :-1]
        return loss.reshape(target.shape[0], -1) if target.ndim == 2 else loss.reshape(-1)
    if processes > 1 and reduction in ("mean", "sum"):
        loss = _dist.reduce_global(loss, processes)
    return loss


class LinearCrossEntropyLoss(nn.Module):
    """Module twin of :func:`linear_cross_entropy`: holds the hyperparameters; the head's ``weight`` (and
    ``bias``) come at call time, ``loss_fn(hidden, weight, target, bias=None)``, because they are the model's
    parameters (as in Liger's ``LigerFusedLinearCrossEntropyLoss`` and Cut Cross-Entropy).

    A plain ``nn.Module`` rather than a :class:`losslab._module.LossModule`: those twins' ``forward`` is
    ``(input, target)``, and this loss takes three tensors and an optional fourth. ``class_weight`` is a buffer
    (``.to(device)`` moves it)."""

    def __init__(self, *, ignore_index: int | None = -100, reduction: Reduction = "mean",
                 label_smoothing: float = 0.0, class_weight: Tensor | None = None, z_loss: float = 0.0,
                 softcap: float | None = None, shift: bool = False, chunk_size: int | None = None,
                 dist_sync: bool = False) -> None:
        super().__init__()
        fn = "LinearCrossEntropyLoss"
        check_common(fn, ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing,
                     dist_sync=dist_sync)
        check_number(fn, "z_loss", z_loss, low=0.0)
        self.ignore_index, self.reduction, self.label_smoothing = ignore_index, reduction, label_smoothing
        self.z_loss, self.softcap, self.shift, self.chunk_size, self.dist_sync = (z_loss, softcap, shift,
                                                                                  chunk_size, dist_sync)
        self.register_buffer("class_weight", None if class_weight is None else torch.as_tensor(class_weight))

    def forward(self, hidden: Tensor, weight: Tensor, target: Tensor, bias: Tensor | None = None) -> Tensor:
        return linear_cross_entropy(hidden, weight, target, bias=bias, ignore_index=self.ignore_index,
                                    reduction=self.reduction, label_smoothing=self.label_smoothing,
                                    class_weight=self.class_weight, z_loss=self.z_loss, softcap=self.softcap,
                                    shift=self.shift, chunk_size=self.chunk_size, dist_sync=self.dist_sync)
