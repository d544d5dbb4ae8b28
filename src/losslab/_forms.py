"""The sigmoid and softmax forms through the dispatcher: prepare a Call, and each backend of the two forms.

:func:`sigmoid_loss` and :func:`softmax_loss` validate and normalise a call
once (:mod:`losslab._core` holds the target forms and the elementwise
formulas) and hand it to :func:`losslab._dispatch.run`, which computes it on
one of the backends registered here and finishes it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _dispatch, _dist, _fused, _native
from ._checks import (
    along_class_dim,
    check_avg_factor,
    check_input,
    check_unit_interval,
    class_vector,
    compute_dtype,
    shape_str,
    values_checked,
)
from ._core import (
    SoftmaxTarget,
    count,
    index_weight_sum,
    sigmoid_elementwise,
    sigmoid_index,
    softmax_elementwise,
    softmax_target,
    upcast,
)
from ._dispatch import Backends, Call


def _scaled(loss: Tensor, reduce: bool, scale: float | Tensor) -> Tensor:
    """A per-element loss summed and multiplied by ``scale`` (the composite of a "scaled" result), or as it is."""
    if not reduce:
        return loss
    total = loss.sum()
    return total if isinstance(scale, float) and scale == 1.0 else total * scale


# ----------------------------------------------------------------------------
# sigmoid form


def sigmoid_loss(fn: str, input: Tensor, target: Tensor, *, reduction: str, from_logits: bool,
                 ignore_index: int | None, alpha: float | None = None, gamma: float = 0.0,
                 weight: object = None, pos_weight: object = None, label_smoothing: float = 0.0,
                 avg_factor: object = None, dist_sync: bool = False) -> Tensor:
    """A sigmoid-form loss; "mean" divides by the number of kept elements (or by ``avg_factor``)."""
    if ignore_index is None and weight is None and pos_weight is None and not label_smoothing \
            and avg_factor is None and not dist_sync and from_logits and (alpha is None or isinstance(alpha, float)):
        plain = _plain_sigmoid(fn, input, target, reduction, alpha, gamma)
        if plain is not None:
            return plain
    check_input(fn, input)
    avg_factor = check_avg_factor(fn, avg_factor, input)
    processes = _dist.world(fn, dist_sync)
    dtype = compute_dtype(input)
    w = None if weight is None else along_class_dim(fn, "weight", weight, input, dtype)
    pw = None if pos_weight is None else along_class_dim(fn, "pos_weight", pos_weight, input, dtype)
    index = sigmoid_index(fn, input, target, ignore_index)
    binary = False
    if index is None:
        valid = None if ignore_index is None else target != ignore_index
        binary = valid is None and from_logits and _binary_sweep_candidate(input, target, gamma, label_smoothing) \
            and _fused.binary(target)
        if not binary:  # 0s and 1s lie in [0, 1]: the one pass that found them is the value check
            check_unit_interval(fn, "target", target.to(dtype), valid)
        kept = None if valid is None else valid.sum().to(dtype)
        tensors = {"target": target, "valid": valid}
    else:
        indices, kept_positions = index
        kept = None if kept_positions is None else kept_positions.sum().to(dtype) * input.shape[1]
        tensors = {"index": indices, "kept": kept_positions}
    if not from_logits:
        check_unit_interval(fn, "input (probabilities, from_logits=False)", input)
    denominator = avg_factor if avg_factor is not None else (kept if kept is not None else float(input.numel()))
    tensors.update(w=w, pw=pw, avg_factor=avg_factor if isinstance(avg_factor, Tensor) else None)
    call = Call(fn, "sigmoid", input, reduction, denominator, processes, tensors,
                {"alpha": alpha, "gamma": gamma, "smoothing": label_smoothing, "from_logits": from_logits,
                 "binary": binary},
                fusable=from_logits)
    return _dispatch.run(call)


def _plain_sigmoid(fn: str, input: Any, target: Any, reduction: str, alpha: float | None,
                   gamma: float) -> Tensor | None:
    """The plain call of the sigmoid form on a small CPU input, without building a Call: logits in float32 or
    float64, a dense target of the same shape and dtype with values in [0, 1] (not requiring a gradient), at
    most alpha and gamma. The dispatcher would prepare it and run it native (:func:`_sigmoid_native`), or from
    the sweep's size (:func:`_sigmoid_threshold`) on the compiled sweep: this is that same node after the same
    value check (one aminmax), or that same sweep with the value check in its loop
    (:func:`losslab._sweeps.sigmoid_dense_checked`, called by :func:`losslab._fused.direct`), values and
    gradients identical. Anything else returns None and takes the general path (which validates and explains)."""
    if not (isinstance(input, Tensor) and isinstance(target, Tensor) and input.dtype in _PLAIN_DTYPES
            and target.dtype == input.dtype and target.shape == input.shape and not target.requires_grad
            and input.numel() > 0 and _dispatch.small_native(input, target)):
        return None
    if input.numel() >= _sigmoid_threshold(gamma):  # the sweep's size: its compiled graph, else the general path
        if not (_dispatch.compiler_available() and _dispatch.applies(input, target)):
            return None
        # the target's values are checked inside the graph
        return _fused.direct(fn, input, _fused.sigmoid_dense_checked, (target, None, None, None),
                             (alpha, gamma, 0.0), reduction, float(input.numel()))
    low, high = torch.aminmax(target)
    if not (float(low) >= 0 and float(high) <= 1):  # NaN fails both
        return None
    multiplier = None if alpha is None else _alpha_t(target, alpha)
    reduce = reduction != "none"
    scale = 1.0 / input.numel() if reduction == "mean" else 1.0

    def composite(xx: Tensor) -> Tensor:  # create_graph: the composite formula, as the prepared node's
        return _scaled(sigmoid_elementwise(xx, target, None, from_logits=True, alpha=alpha, gamma=gamma),
                       reduce, scale)

    return _native.sigmoid_form(input, target, multiplier, gamma, scale, reduce, composite)


def _alpha_t(t: Tensor, alpha: float) -> Tensor:
    """alpha t + (1 - alpha)(1 - t) per element, exact at t = 0 and 1 even for a tiny alpha."""
    return torch.add((_native.number(1.0, t) - t) * _native.number(1.0 - alpha, t), t, alpha=alpha)


def _sigmoid_dense(call: Call) -> tuple[Tensor, Tensor | None]:
    """The dense target in the compute dtype (0 where not kept) and the per-element kept mask."""
    tensors, x = call.tensors, call.input
    if "index" in tensors:
        classes = torch.arange(x.shape[1], device=x.device).view((1, x.shape[1]) + (1,) * (x.ndim - 2))
        dense = (tensors["index"].unsqueeze(1) == classes).to(call.dtype)
        kept = tensors["kept"]
        return dense, None if kept is None else kept.unsqueeze(1).expand(x.shape)
    dense, valid = tensors["target"].to(call.dtype), tensors["valid"]
    return (dense if valid is None else torch.where(valid, dense, torch.zeros_like(dense))), valid


def _sigmoid_composite_of(call: Call, x: Tensor) -> Tensor:
    """The composite per-element loss of ``x`` (the input in the compute dtype)."""
    t, valid = _sigmoid_dense(call)
    o, tensors = call.options, call.tensors
    return sigmoid_elementwise(x, t, valid, from_logits=o["from_logits"], alpha=o["alpha"], gamma=o["gamma"],
                               weight=tensors["w"], pos_weight=tensors["pw"], label_smoothing=o["smoothing"])


def _sigmoid_composite(call: Call) -> tuple[Tensor, str]:
    return _sigmoid_composite_of(call, upcast(call.input, call.dtype)), "elements"


def _sigmoid_native(call: Call) -> tuple[Tensor, str] | None:
    """The sigmoid form as one node: loss and derivative from torch's kernels."""
    o, tensors = call.options, call.tensors
    if not o["from_logits"]:
        return None
    t, valid = _sigmoid_dense(call)
    x = upcast(call.input, call.dtype)
    smoothing, w, reduce = o["smoothing"], tensors["w"], call.reduction != "none"
    if smoothing:
        t = t * (1.0 - smoothing) + 0.5 * smoothing
    alpha, multiplier = o["alpha"], w
    if alpha is not None:
        alpha_t = _alpha_t(t, alpha)
        multiplier = alpha_t if w is None else alpha_t * w
    if valid is not None:
        multiplier = valid.to(x.dtype) if multiplier is None else torch.where(valid, multiplier, 0.0)
    if multiplier is not None and multiplier.shape != x.shape:
        multiplier = multiplier.expand(x.shape)
    scale = _dispatch.scale(call)

    def composite(xx: Tensor) -> Tensor:
        return _scaled(_sigmoid_composite_of(call, xx), reduce, scale)

    return _native.sigmoid_form(x, t, multiplier, o["gamma"], scale, reduce, composite, tensors["pw"]), "scaled"


def _sigmoid_sweep(call: Call) -> tuple[Callable, tuple, tuple]:
    tensors, o, x = call.tensors, call.options, call.input
    spread = _fused.spread
    weights = (spread(tensors["w"], x), spread(tensors["pw"], x))
    shared = (o["alpha"], o["gamma"], o["smoothing"])
    if "index" in tensors:
        return _fused.sigmoid_index_sweep, (tensors["index"], tensors["kept"], *weights), shared
    sweep = _fused.sigmoid_binary_sweep if o.get("binary") else _fused.sigmoid_dense_sweep
    return sweep, (tensors["target"], tensors["valid"], *weights), shared


def _binary_sweep_candidate(x: Tensor, target: Tensor, gamma: float, smoothing: float) -> bool:
    """Whether a dense target of 0s and 1s would take the binary sweep: a large focal input needing a gradient
    on CPU under "auto" with a compiler, no smoothing, values checked. One compiled pass over the target then
    pays for itself (2 ms against 14 on 100,000 x 80) and replaces the value check (:func:`_fused.binary`)."""
    return bool(gamma) and not smoothing and x.is_cpu and x.numel() >= _dispatch.COMPILE_MIN_NUMEL \
        and target.dtype.is_floating_point and values_checked(target) and _fused.get_fused() == "auto" \
        and _dispatch.applies(x, target) and _dispatch.compiler_available()


def _sigmoid_compile_from(call: Call) -> int:
    return _sigmoid_threshold(call.options["gamma"])


def _sigmoid_threshold(gamma: float) -> int:
    """The native sigmoid form is one node of about twenty elementwise kernels with a focal factor (eight
    without): on 2 CPU threads one compiled loop, its graph called directly by a plain call
    (:func:`losslab._fused.direct`), beat it from about 8,000 elements (16,000 for BCE). Measured interleaved,
    forward and backward against torch's BCE, OMP_WAIT_POLICY=PASSIVE: focal on 64 x 128 2.27x native, 1.59x
    compiled; BCE on 128 x 128 1.68x and 1.48x, on 96 x 128 1.45x and 1.50x, on 32 x 1,000 1.62x and 1.30x."""
    return _dispatch.COMPILE_MIN_NUMEL >> (5 if gamma else 4)


_dispatch.register("sigmoid", Backends(composite=_sigmoid_composite, native=_sigmoid_native, sweep=_sigmoid_sweep,
                                       eager_pays=lambda call: bool(call.options["gamma"]),
                                       compile_from=_sigmoid_compile_from))


# ----------------------------------------------------------------------------
# softmax form


def softmax_loss(fn: str, input: Tensor, target: Tensor, *, reduction: str, input_kind: str,
                 ignore_index: int | None, class_weight: object = None, gamma: float = 0.0,
                 label_smoothing: float = 0.0, weighted_mean: bool = False, dist_sync: bool = False,
                 logit_scale: Tensor | None = None, logit_offset: Tensor | None = None,
                 target_margin: Tensor | None = None, kind: str = "softmax",
                 options: dict[str, Any] | None = None) -> Tensor:
    """A softmax-form loss over dim 1 of an (N, C, d1, ...) input.

    "mean" divides by the number of kept positions, or, with ``weighted_mean``
    (PyTorch's cross_entropy and nll_loss), by the sum of ``class_weight[target]``
    over kept positions for class-index targets.

    The long-tail losses (:mod:`losslab.longtail`) compute it on adjusted logits
    z_c = a_c x_c + b_c - m_y [c = y]: ``logit_scale`` a, ``logit_offset`` b and
    ``target_margin`` m are (C,) vectors in the compute dtype (None: 1, 0, 0); the
    margin needs class-index targets. Every backend applies the same adjustment
    (:func:`adjusted`); the sweeps and the Triton kernel inside, without storing z.

    ``kind`` names another row of the dispatcher's table computed from the same prepared call (Poly-1:
    "poly_softmax"), whose hyperparameters come in ``options``.
    """
    if kind == "softmax" and input_kind == "logits" and class_weight is None and not label_smoothing \
            and logit_scale is None and logit_offset is None and target_margin is None and not dist_sync \
            and options is None:
        plain = _plain_softmax(input, target, reduction, ignore_index, gamma)
        if plain is not None:
            return plain
    check_input(fn, input, min_ndim=2, what="(N, C) or (N, C, d1, ..., dk)")
    if input.shape[1] < 1:
        raise ValueError(f"{fn}: input must have at least one class along dim 1; got shape {shape_str(input.shape)}")
    processes = _dist.world(fn, dist_sync)
    dtype = compute_dtype(input)
    tgt = softmax_target(fn, input, target, ignore_index, dtype)
    if input_kind == "probabilities":
        check_unit_interval(fn, "input (probabilities, from_logits=False)", input)
    w = None
    if class_weight is not None:
        w = class_vector(fn, "weight" if weighted_mean else "alpha", class_weight, input.shape[1], input, dtype)
    denominator = None
    if tgt.indices is not None and (tgt.valid is not None or (weighted_mean and w is not None)):
        like = input.new_empty(0, dtype=dtype)
        denominator = index_weight_sum(tgt, w, like) if weighted_mean else count(tgt.valid, like)
    # torch's own "mean" divides by the same: every position, none ignored, no class weight in the denominator
    torch_mean = denominator is None and (tgt.indices is None or w is None) and processes == 1 \
        and input.numel() > 0
    if denominator is None:
        denominator = float(input.numel() // input.shape[1])
    if target_margin is not None and tgt.indices is None:
        raise ValueError(f"{fn}: the target margin needs class-index targets; got probabilities of shape "
                         f"{shape_str(target.shape)}")
    call = Call(fn, kind, input, reduction, denominator, processes,
                {"target": target, "indices": tgt.indices, "valid": tgt.valid, "probs": tgt.probs, "w": w,
                 "a": logit_scale, "b": logit_offset, "m": target_margin},
                {"input_kind": input_kind, "gamma": gamma, "smoothing": label_smoothing,
                 "ignore_index": ignore_index, "torch_mean": torch_mean, **(options or {})},
                fusable=input_kind == "logits", per_position=True)
    return _dispatch.run(call)


_PLAIN_DTYPES = (torch.float32, torch.float64)


def _plain_softmax(input: Any, target: Any, reduction: str, ignore_index: int | None,
                   gamma: float) -> Tensor | None:
    """The plain call on a small CPU input, without building a Call: logits in float32 or float64, int64 class
    indices in [0, C) or ``ignore_index`` (not all ignored), no weight, smoothing or adjustment. The dispatcher
    would prepare it and run it native (:func:`_softmax_native`): this is that same computation, values and
    gradients identical (to rounding where some are ignored: torch's mean, not the sum over the count):
    ``F.cross_entropy``, or (``gamma`` > 0, none ignored) the softmax focal node scaled by 1 / positions.
    Anything else, a bad value included, returns None and takes the general path, which validates and explains.

    The value check is torch's own, not a pass over the target: ``F.cross_entropy`` raises IndexError for an
    index outside [0, C) that is not ``ignore_index``, and ignores that one as losslab does; the focal node's
    ``gather`` raises RuntimeError for any index outside [0, C). Either error sends the call to the general path
    (which words it, or, for the focal loss with ignored positions, computes it). What torch's kernels cannot
    tell: an all-ignored batch, where torch's mean is 0 / 0 (a NaN loss, read back: losslab's is 0), -100 where
    ``ignore_index`` is None (torch's default ignores it; one min), and an ``ignore_index`` inside [0, C) for the
    focal loss (one comparison). Measured on 256 x 10, one thread (timeit), forward: ``losslab.cross_entropy``
    took 63 to 83 us through the prepared call, 41 us here with an aminmax, 25 us here without one; 14 us for
    ``F.cross_entropy`` alone."""
    if not (isinstance(input, Tensor) and isinstance(target, Tensor) and input.dtype in _PLAIN_DTYPES
            and target.dtype == torch.int64):
        return None
    shape, target_shape = input.shape, target.shape
    if not (len(shape) >= 2 and len(target_shape) == len(shape) - 1 and target_shape[0] == shape[0]
            and (len(shape) == 2 or target_shape[1:] == shape[2:]) and input.numel() > 0
            and _dispatch.small_native(input, target)):
        return None
    classes = input.shape[1]
    if not gamma:
        if ignore_index is None and int(target.min()) < 0:
            return None  # -100, which torch's kernel ignores (any other value out of range raises there)
        try:
            loss = F.cross_entropy(input, target, ignore_index=-100 if ignore_index is None else ignore_index,
                                   reduction=reduction)
        except IndexError:  # an index out of range: the general path's message says which
            return None
        if reduction == "mean":
            if math.isnan(loss.item()):  # every position ignored (losslab's mean is 0), or a NaN logit
                return None
        return loss
    if ignore_index is not None and 0 <= ignore_index < classes and bool((target == ignore_index).any()):
        return None  # an ignored position, which gather would take for a class
    reduce = reduction != "none"
    scale = 1.0 / (input.numel() // classes) if reduction == "mean" else 1.0

    def composite(xx: Tensor) -> Tensor:  # create_graph: the composite formula, as the prepared node's
        return _scaled(softmax_elementwise(xx, SoftmaxTarget(indices=target), gamma=gamma), reduce, scale)

    try:
        return _native.softmax_focal(input, target, None, gamma, scale, reduce, composite)
    except RuntimeError:  # gather: an index outside [0, C), ignore_index's included (the general path's)
        return None


def _softmax_target(call: Call) -> SoftmaxTarget:
    tensors = call.tensors
    return SoftmaxTarget(indices=tensors["indices"], valid=tensors["valid"], probs=tensors["probs"])


def adjusted(x: Tensor, indices: Tensor | None, a: Tensor | None, b: Tensor | None, m: Tensor | None) -> Tensor:
    """z = a x + b - m_y onehot(y) over dim 1 of x, for (C,) vectors a, b, m (None: 1, 0, 0): the logits the
    long-tail losses take the softmax of (on an ignored position, whose index is 0, the margin is harmless:
    its loss and gradient are masked)."""
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    if a is not None:
        x = x * a.view(shape)
    if b is not None:
        x = x + b.view(shape)
    if m is not None:
        idx = indices.unsqueeze(1)
        x = x - torch.zeros_like(x).scatter(1, idx, m[idx])
    return x


def _adjusted(call: Call, x: Tensor) -> Tensor:
    tensors = call.tensors
    return adjusted(x, tensors["indices"], tensors["a"], tensors["b"], tensors["m"])


def _softmax_composite_of(call: Call, x: Tensor) -> Tensor:
    """The composite per-position loss of ``x``: the adjusted logits in the compute dtype."""
    o = call.options
    return softmax_elementwise(x, _softmax_target(call), input_kind=o["input_kind"], class_weight=call.tensors["w"],
                               gamma=o["gamma"], label_smoothing=o["smoothing"])


def _softmax_composite(call: Call) -> tuple[Tensor, str]:
    return _softmax_composite_of(call, _adjusted(call, upcast(call.input, call.dtype))), "elements"


def _softmax_native(call: Call) -> tuple[Tensor, str] | None:
    """F.cross_entropy / F.nll_loss summed; the focal form as one node over log_softmax."""
    o, tensors = call.options, call.tensors
    kind, gamma, smoothing, w = o["input_kind"], o["gamma"], o["smoothing"], tensors["w"]
    if kind == "probabilities":
        return None
    reduce = call.reduction != "none"
    x = _adjusted(call, upcast(call.input, call.dtype))
    indices = tensors["indices"]
    if not gamma:
        how = "sum" if reduce else "none"
        if call.reduction == "mean" and o["torch_mean"]:
            how = "mean"
        ignore = -100 if o["ignore_index"] is None else o["ignore_index"]
        if indices is not None:
            target = tensors["indices"] if tensors["valid"] is None else tensors["target"].long()
            if kind == "logits":
                loss = F.cross_entropy(x, target, weight=w, ignore_index=ignore, reduction=how,
                                       label_smoothing=smoothing)
            elif not smoothing:
                loss = F.nll_loss(x, target, weight=w, ignore_index=ignore, reduction=how)
            else:
                return None
        elif kind == "logits":
            loss = F.cross_entropy(x, tensors["probs"], weight=w, reduction=how, label_smoothing=smoothing)
        else:
            return None
        return loss, {"none": "elements", "sum": "total", "mean": "mean"}[how]
    if kind != "logits" or indices is None or smoothing:
        return None
    valid = tensors["valid"]
    multiplier = None if w is None else w[indices]
    if valid is not None:
        multiplier = valid.to(x.dtype) if multiplier is None else torch.where(valid, multiplier, 0.0)
    scale = _dispatch.scale(call)

    def composite(xx: Tensor) -> Tensor:
        return _scaled(_softmax_composite_of(call, xx), reduce, scale)

    return _native.softmax_focal(x, indices, multiplier, gamma, scale, reduce, composite), "scaled"


def _softmax_sweep(call: Call) -> tuple[Callable, tuple, tuple] | None:
    """softmax_loss through the fused sweep: the index sweep, or the dense one with the smoothed target
    (None, for the native path, where a target margin meets label smoothing)."""
    tensors, o, x = call.tensors, call.options, call.input
    w, gamma, smoothing = tensors["w"], o["gamma"], o["smoothing"]
    a, b, m = tensors["a"], tensors["b"], tensors["m"]
    num_classes = x.shape[1]
    indices, valid, q = tensors["indices"], tensors["valid"], tensors["probs"]
    if indices is not None:
        if not smoothing:  # the margin per position, gathered once (the sweep's loop stays elementwise)
            return _fused.softmax_index_sweep, (indices, valid, None if m is None else m[indices]), (w, gamma, a, b)
        if m is not None:
            return None
        classes = torch.arange(num_classes, device=x.device).view((1, num_classes) + (1,) * (x.ndim - 2))
        q = (indices.unsqueeze(1) == classes).to(call.dtype) * (1.0 - smoothing) + smoothing / num_classes
        if valid is not None:
            q = torch.where(valid.unsqueeze(1), q, torch.zeros_like(q))
    elif smoothing:
        q = q * (1.0 - smoothing) + smoothing / num_classes
    return _fused.softmax_dense_sweep, (q,), (w, gamma, a, b)


_dispatch.register("softmax", Backends(composite=_softmax_composite, native=_softmax_native, sweep=_softmax_sweep,
                                       eager=False))
