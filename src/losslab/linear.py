"""Fused linear cross-entropy: the loss of a large-vocabulary head without storing its (N, V) logits.

The forward pass loops over chunks of tokens: for each chunk it computes the chunk's logits
``hidden_chunk @ weight.T + bias`` (softcapped), their loss, and the loss's gradient in the logits (already
scaled by the reduction's denominator), and turns that gradient at once into the chunk's rows of
``grad_hidden`` and its contribution to ``grad_weight`` and ``grad_bias`` (two matmuls). Backward only
scales what was saved by the incoming gradient (Liger-Kernel's approach). Memory: O(chunk * V + V * d).

With ``reduction="none"`` the incoming gradient is one value per token, unknown in forward: forward computes
the losses only, and backward runs the chunk loop a second time with each row scaled by its gradient.

The loop and the per-chunk step live in :mod:`losslab._linear_chunk`: BLAS matmuls and the torch step on CPU;
on CUDA the step is the Triton kernel of ``losslab._linear_triton`` where that module exists (same contract).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from . import _dist
from . import _linear_chunk as _chunk
from ._checks import (
    check_class_indices,
    check_common,
    check_input,
    check_number,
    class_vector,
    shape_str,
)

Reduction = Literal["none", "mean", "sum"]

class LinearCrossEntropyOutput(NamedTuple):
    """What :func:`linear_cross_entropy` returns with ``return_components=True``. Only ``loss`` carries a
    gradient."""

    loss: Tensor  # the loss, as without return_components
    z_loss: Tensor  # its z-loss term (included in loss): per token for "none", else reduced like loss
    accuracy: Tensor  # 0-d float: the fraction of kept tokens whose argmax logit is the target (0 when none)
    count: Tensor  # 0-d int64: the number of kept tokens


def default_chunk(n: int, vocab: int) -> int:
    """Rows per chunk for ``chunk_size=None`` with the default options: the chunk's float32 logits fit
    :data:`losslab._linear_chunk.BUDGET_BYTES` (a multiple of 8 rows, at least 16, at most ``n``); the vocabulary
    is cut into blocks where 16 rows do not fit."""
    return _chunk.plan(n, vocab, _chunk.Options(None, 0.0, 0.0, None, 0.0), None)[0]


class _LinearCrossEntropy(torch.autograd.Function):
    """Forward computes the loss and (for "mean" and "sum") the gradients; backward scales them in place.

    Outputs: the loss, the z-loss term and the number of correct tokens (the last two without gradient)."""

    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, bias: Tensor | None,  # type: ignore[override]
                opts: dict) -> tuple[Tensor, Tensor, Tensor]:
        want = tuple(ctx.needs_input_grad[:3])
        if bias is None:
            want = (want[0], want[1], False)
        per_row = opts["per_row"]
        args = (hidden.detach(), weight.detach(), None if bias is None else bias.detach())
        res = _chunk.sweep(*args, opts["target"], opts["kept"], opts["options"], ce_scale=opts["ce_scale"],
                           z_scale=opts["z_scale"], row_scale=None, want=(False, False, False) if per_row else want,
                           per_row=per_row, chunk_size=opts["chunk_size"], components=opts["components"])
        ctx.opts, ctx.want, ctx.per_row = opts, want, per_row
        ctx.dtypes = (hidden.dtype, weight.dtype, None if bias is None else bias.dtype)
        ctx.save_for_backward(*args[:2], *(() if bias is None else (args[2],)))  # for "none", retain_graph
        # not save_for_backward: the first backward scales them in place and hands them over (no copy)
        ctx.grads = None if per_row else res.grads
        z_term = res.z_term if res.z_term is not None else res.losses.new_zeros(())
        ctx.mark_non_differentiable(z_term, res.correct)
        return res.losses.to(hidden.dtype), z_term.to(hidden.dtype), res.correct

    @staticmethod
    def backward(ctx, grad_out: Tensor,  # type: ignore[override]
                 *_: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None, None]:
        if torch.is_grad_enabled():
            raise RuntimeError("linear_cross_entropy: no second derivative (create_graph=True); compute the "
                               "logits with F.linear and use losslab.cross_entropy to differentiate twice")
        opts = ctx.opts
        if ctx.grads is None:  # "none", or a second backward (retain_graph=True): recompute the chunks
            saved = ctx.saved_tensors
            hidden, weight = saved[0], saved[1]
            bias = saved[2] if len(saved) > 2 else None
            scale = grad_out if ctx.per_row else grad_out.expand(hidden.shape[0])
            grads = _chunk.sweep(hidden, weight, bias, opts["target"], opts["kept"], opts["options"],
                                 ce_scale=opts["ce_scale"], z_scale=opts["z_scale"], row_scale=scale,
                                 want=ctx.want, per_row=True, chunk_size=opts["chunk_size"]).grads
        else:
            grads, ctx.grads = ctx.grads, None  # no reference left here: autograd takes them as .grad uncopied
            for g in grads:
                if g is not None:
                    g.mul_(grad_out.to(g.dtype))
        out = tuple(None if g is None else (g if g.dtype == dt else g.to(dt)) for g, dt in zip(grads, ctx.dtypes))
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
    gamma: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    shift: bool = False,
    chunk_size: int | None = None,
    dist_sync: bool = False,
    return_components: bool = False,
) -> Tensor | LinearCrossEntropyOutput:
    r"""Cross-entropy (or softmax focal loss) of a linear head's logits, computed chunk by chunk without storing
    the (N, V) logits.

    .. math::

        x_n = \operatorname{softcap}(W h_n + b), \qquad p_n = \operatorname{softmax}(x_n), \qquad
        \ell_n = -\sum_{c=1}^{V} w_c\, q_{n,c}\, (1 - p_{n,c})^{\gamma} \log p_{n,c}
                 + z\_loss \cdot \operatorname{logsumexp}(x_n)^2,

    with :math:`q_n = (1 - \varepsilon)\,\mathrm{onehot}(y_n) + \varepsilon / V`, :math:`w` = ``class_weight``
    (1 when None), :math:`\gamma` = ``gamma`` and :math:`\operatorname{softcap}(x) = c \tanh(x / c)` (Gemma 2;
    identity when ``softcap`` is None). With ``gamma=0`` the first term equals
    ``losslab.cross_entropy(softcap(F.linear(hidden, weight, bias)), target, weight=class_weight, ...)``; with
    ``gamma > 0`` it equals ``losslab.softmax_focal_loss(softcap(F.linear(...)), target, alpha=class_weight,
    gamma=gamma, label_smoothing=...)`` (with smoothing every class has its own focal factor, as there).

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
        gamma: focusing parameter :math:`\ge 0`; 0 gives cross-entropy.
        z_loss: coefficient of PaLM's z-loss, :math:`\ge 0`.
        softcap: :math:`c > 0`, or None.
        shift: position t predicts target t + 1 (for (B, T) inputs within each sequence): the last position
            of each sequence and the first target are dropped. ``hidden`` is not copied (the last positions
            are masked out inside the loop).
        chunk_size: tokens per chunk (the whole vocabulary at once); None picks the chunk from a memory budget
            (:data:`losslab._linear_chunk.BUDGET_BYTES`, 64 MiB of chunk-sized buffers: 256 rows of a 65,536
            vocabulary in float32), and cuts the vocabulary into blocks (two passes: an online log-sum-exp,
            then the gradient) where 16 rows of the whole vocabulary do not fit.
        dist_sync: all-reduce the denominators of "mean" (and the sums of "mean" and "sum") under
            torch.distributed, as ``cross_entropy`` does: every process gets the loss of the global batch.
        return_components: return a :class:`LinearCrossEntropyOutput` ``(loss, z_loss, accuracy, count)``:
            the loss, its z-loss term (reduced like the loss; per token for "none"), the fraction of kept tokens
            whose argmax logit (after softcap; the first maximum) is the target, and the number of kept tokens;
            under ``dist_sync`` the last three are global (one more all-reduce). Only ``loss`` has a gradient.

    Returns:
        "none": the per-token loss, shaped like ``target`` ((B, T - 1) or (N - 1,) with ``shift``), ignored
        tokens 0. "mean" and "sum": a scalar. In ``hidden``'s dtype.

        "mean" divides the z-loss term by the number of kept tokens and the first term: with ``gamma=0`` by
        :math:`\sum_n w_{y_n}` over kept tokens (PyTorch's weighted mean of cross_entropy; their number without
        ``class_weight``), with ``gamma > 0`` by the number of kept tokens (softmax_focal_loss's plain mean,
        ``class_weight`` is not in the denominator). So with a class weight, "mean" is not continuous at
        gamma = 0. A zero denominator divides by 1: an empty or all-ignored batch gives 0 with zero gradients.

    Raises:
        TypeError: non-floating ``hidden`` or ``weight``, mismatched dtypes, a float target.
        ValueError: mismatched shapes, a class index out of range, bad hyperparameters.

    References:
        Wijmans et al., "Cut Your Losses in Large-Vocabulary Language Models", ICLR 2025, arXiv:2411.09009.
        Hsu et al., "Liger Kernel: Efficient Triton Kernels for LLM Training", arXiv:2410.10989, 2024.
        Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017, arXiv:1708.02002.
        Chowdhery et al., "PaLM", arXiv:2204.02311, 2022 (z-loss). Gemma Team, "Gemma 2", arXiv:2408.00118
        (softcapping).

    Example:
        >>> import torch, losslab
        >>> h = torch.randn(6, 4, requires_grad=True); w = torch.randn(10, 4, requires_grad=True)
        >>> out = losslab.linear_cross_entropy(h, w, torch.tensor([1, 2, 3, 4, 5, 6]), z_loss=1e-4,
        ...                                    chunk_size=4, return_components=True)
        >>> out.loss.backward()
        >>> int(out.count)
        6

    Memory and numerics: forward computes each chunk's logits into one preallocated buffer, their loss and
    their gradient in place (:func:`losslab._linear_chunk.chunk_loss_grad_torch`), and accumulates
    ``grad_weight`` straight into its output buffer; backward scales the saved gradients in place ("none"
    instead recomputes the chunks with each row's incoming gradient). Logits, log-sum-exp, losses and gradients
    are float32 for float16/bfloat16 inputs (a float32 copy of the weight, ``grad_weight`` accumulated in
    float32); the gradients come back in the inputs' dtypes. The loss has no second derivative.

    torch.compile: dynamo traces the autograd.Function and its Python chunk loop (torch 2.13: no graph break,
    ``fullgraph=True`` works; tested with ``backend="aot_eager"``, values and gradients equal to eager). The loop
    is unrolled into the graph, so another number of chunks (another batch size) traces again. The memory
    figures above are eager's; inductor may schedule the traced operations differently (not measured). Should
    a future torch break the graph here, the model's graph is compiled around the loss.
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
    gamma = check_number(fn, "gamma", gamma, low=0.0)
    if softcap is not None:
        softcap = check_number(fn, "softcap", softcap, low=0.0, low_open=True)
    for name, flag in (("shift", shift), ("return_components", return_components)):
        if not isinstance(flag, bool):
            raise TypeError(f"{fn}: {name} must be a bool; got {type(flag).__name__}")
    if chunk_size is not None and (not isinstance(chunk_size, int) or isinstance(chunk_size, bool)
                                   or chunk_size < 1):
        raise ValueError(f"{fn}: chunk_size must be a positive int or None; got {chunk_size!r}")
    cdt = torch.float32 if hidden.dtype in (torch.float16, torch.bfloat16) else hidden.dtype
    cw = None if class_weight is None else class_vector(fn, "class_weight", class_weight, vocab, hidden, cdt)
    if cw is not None:
        cw = cw.detach()

    # flatten: hidden stays a view (no copy for a contiguous input); shift masks the last positions
    d = hidden.shape[-1]
    t2 = target.reshape(target.shape[0], -1) if target.ndim == 2 else target.reshape(1, -1)
    valid = torch.ones(t2.shape, dtype=torch.bool, device=t2.device)
    if shift and t2.shape[1] > 0:
        t2 = torch.roll(t2, -1, dims=1)  # position t now holds target t + 1
        valid[:, -1] = False
    if ignore_index is not None:
        valid &= t2 != ignore_index
    safe = torch.where(valid, t2, torch.zeros_like(t2))
    check_class_indices(fn, safe, vocab, None)
    shifted_target = safe.reshape(-1).long()
    kept = valid.reshape(-1)

    processes = _dist.world(fn, dist_sync)
    count = kept.sum()
    if reduction == "mean":
        n_kept = count.to(torch.float64)
        weighted = cw is not None and not gamma  # cross_entropy's weighted mean; the focal loss's plain mean
        ce_total = torch.where(kept, cw[shifted_target], 0).sum().to(torch.float64) if weighted else n_kept
        ce_scale = (1.0 / _denominator(ce_total, processes)).to(cdt)
        z_scale = (1.0 / _denominator(n_kept, processes)).to(cdt)
    else:
        ce_scale = z_scale = torch.ones((), dtype=cdt, device=hidden.device)
    per_row = reduction == "none"
    options = _chunk.Options(cw, float(label_smoothing), float(z_loss), None if softcap is None else float(softcap),
                             float(gamma))
    opts = {"target": shifted_target, "kept": kept, "ce_scale": ce_scale, "z_scale": z_scale, "per_row": per_row,
            "options": options, "chunk_size": chunk_size, "components": return_components}
    loss, z_term, correct = _LinearCrossEntropy.apply(hidden.reshape(-1, d), weight, bias, opts)
    if per_row:
        shape = (target.shape[0], -1) if target.ndim == 2 else (-1,)
        loss = _unflatten(loss, t2.shape, shift, shape)
        z_term = _unflatten(z_term, t2.shape, shift, shape) if return_components and z_loss else z_term
    elif processes > 1:
        loss = _dist.reduce_global(loss, processes)
    if not return_components:
        return loss
    if processes > 1:  # one more all-reduce, for the components only
        local = [correct.double(), count.double()] + ([] if per_row else [z_term.double()])
        total = _dist.all_sum(torch.stack(local))
        correct, count = total[0], total[1].to(torch.int64)
        z_term = z_term if per_row else total[2].to(z_term.dtype)
    if per_row and not z_loss:
        z_term = torch.zeros_like(loss)
    accuracy = correct.double() / count.clamp_min(1)
    return LinearCrossEntropyOutput(loss, z_term, accuracy.to(torch.float32), count)


def _unflatten(values: Tensor, shape: torch.Size, shift: bool, out_shape: tuple[int, ...]) -> Tensor:
    """Per-token values of the flattened rows back to the target's shape (less the last position with shift)."""
    values = values.reshape(shape)
    if shift:
        values = values[:, :-1]
    return values.reshape(out_shape)


class LinearCrossEntropyLoss(nn.Module):
    """Module twin of :func:`linear_cross_entropy`: holds the hyperparameters; the head's ``weight`` (and
    ``bias``) come at call time, ``loss_fn(hidden, weight, target, bias=None)``, because they are the model's
    parameters (as in Liger's ``LigerFusedLinearCrossEntropyLoss`` and Cut Cross-Entropy).

    A plain ``nn.Module`` rather than a :class:`losslab._module.LossModule`: those twins' ``forward`` is
    ``(input, target)``, and this loss takes three tensors and an optional fourth. ``class_weight`` is a buffer
    (``.to(device)`` moves it)."""

    def __init__(self, *, ignore_index: int | None = -100, reduction: Reduction = "mean",
                 label_smoothing: float = 0.0, class_weight: Tensor | None = None, gamma: float = 0.0,
                 z_loss: float = 0.0, softcap: float | None = None, shift: bool = False,
                 chunk_size: int | None = None, dist_sync: bool = False, return_components: bool = False) -> None:
        super().__init__()
        fn = "LinearCrossEntropyLoss"
        check_common(fn, ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing,
                     dist_sync=dist_sync)
        check_number(fn, "z_loss", z_loss, low=0.0)
        check_number(fn, "gamma", gamma, low=0.0)
        self.gamma, self.return_components = gamma, return_components
        self.ignore_index, self.reduction, self.label_smoothing = ignore_index, reduction, label_smoothing
        self.z_loss, self.softcap, self.shift, self.chunk_size, self.dist_sync = (z_loss, softcap, shift,
                                                                                  chunk_size, dist_sync)
        self.register_buffer("class_weight", None if class_weight is None else torch.as_tensor(class_weight))

    def forward(self, hidden: Tensor, weight: Tensor, target: Tensor,
                bias: Tensor | None = None) -> Tensor | LinearCrossEntropyOutput:
        return linear_cross_entropy(hidden, weight, target, bias=bias, ignore_index=self.ignore_index,
                                    reduction=self.reduction, label_smoothing=self.label_smoothing,
                                    class_weight=self.class_weight, gamma=self.gamma, z_loss=self.z_loss,
                                    softcap=self.softcap, shift=self.shift, chunk_size=self.chunk_size,
                                    dist_sync=self.dist_sync, return_components=self.return_components)
