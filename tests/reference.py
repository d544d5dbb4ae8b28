"""Independent float64 NumPy references for every loss, written from the formulas.

Nothing here imports losslab or torch: each function restates the formula of
the loss of the same name (see the docstrings in losslab) in plain NumPy, in
float64, with stable primitives (``logaddexp``, max-shifted log-sum-exp).

``REFERENCES[name](input, target, **kwargs)`` takes exactly the keyword
arguments of ``losslab.<name>`` (same names, same defaults) and returns the
"none"-shaped array, or a 0-d array for "mean" and "sum". Tensor-valued
keyword arguments (weight, pos_weight, alpha, avg_factor) may be NumPy arrays,
lists or anything ``np.asarray`` accepts (avg_factor: one element).

Conventions restated here:

* softmax losses: class axis 1 of an (N, C, d1, ..., dk) input; targets are
  class indices of shape (N, d1, ..., dk) or probabilities shaped like the
  input; label smoothing mixes the target with the uniform distribution,
  q = (1 - eps) y + eps / C (PyTorch);
* sigmoid losses: every element is its own binary problem; targets shaped
  like the input, or class indices of shape (N, d1, ..., dk) one-hot encoded
  over the C classes with index C = background (all zeros); ignored index
  positions drop all C elements; label smoothing is Keras' t (1 - eps) + eps / 2;
* ``ignore_index`` positions contribute 0 and are left out of the mean's
  denominator;
* "mean" of cross_entropy / nll_loss with class indices divides by the sum of
  weight[target] over kept positions (PyTorch); every other mean is the plain
  mean over kept elements/positions (boxes for the box losses);
* ``avg_factor`` (detection losses, binary_cross_entropy, sigmoid_focal_loss):
  "mean" divides the sum by avg_factor instead; "none" and "sum" ignore it;
  a zero denominator (empty or all-ignored batch, avg_factor 0) divides by 1,
  so the mean is the sum (0 when nothing contributes);
* ``weight`` multiplies the per-element loss and never enters the denominator;
* ``from_logits=False``: log of probabilities floored at -100 (PyTorch's
  BCELoss), and the focal weight uses 1 - p computed from p directly;
* quality_focal_loss / varifocal_loss targets: dense (shaped like the input)
  or a (labels, scores) pair, labels (N, d1, ..., dk) with C = background;
* distribution_focal_loss: bins on the last axis, target = input.shape[:-1];
* box losses: boxes (..., 4) converted to xyxy from box_format; widths and
  heights max(x2 - x1, 0); IoU = I / (U + eps), enclosing box (cw, ch),
  c2 = cw^2 + ch^2 + eps; one loss per box; a weight of pred's shape (..., 4)
  is averaged over the last axis first, any other weight broadcasts to the
  per-box shape.
* segmentation losses (dice, jaccard, tversky; dice_ce, dice_focal): p and t
  are (N, C, d1, ..., dk): binary sigmoid(x) with the channel axis inserted
  when missing, multiclass softmax(x) over axis 1 and the one-hot of the
  indices, multilabel sigmoid(x); ignored elements (multiclass: positions)
  drop out of every sum; per-class sums over N and space (or space only,
  per_image); scores are ratio(num, den) = num / max(den, eps), 0/0 -> 1;
  "mean" divides the weighted per-class losses by the sum of the weights
  over the entries (the entry count without weight).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

LOG_FLOOR = -100.0
REDUCTIONS = ("none", "mean", "sum")


# ----------------------------------------------------------------------------
# small helpers


def _f64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def _floored_log(p: np.ndarray) -> np.ndarray:
    """max(log p, -100), with log 0 = -inf floored to -100."""
    with np.errstate(divide="ignore"):
        return np.maximum(np.log(p), LOG_FLOOR)


def _log_softmax_last(z: np.ndarray) -> np.ndarray:
    """log softmax over the last axis: max-shifted, with log1p over the non-maximal terms.

    log sum_c exp(z_c - m) = log1p(sum over every class but one argmax of exp(z_c - m)),
    which keeps log p of a dominant class accurate when it is tiny (-1e-13, say).
    """
    if z.size == 0:
        return z.copy()
    m = np.max(z, axis=-1, keepdims=True)
    shifted = z - m
    rest = np.exp(shifted)
    np.put_along_axis(rest, np.argmax(z, axis=-1)[..., None], 0.0, axis=-1)  # exp(0) = 1 of one argmax
    return shifted - np.log1p(np.sum(rest, axis=-1, keepdims=True))


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    """log(1 / (1 + exp(-x))) = -log(1 + exp(-x)), stable for any x."""
    return -np.logaddexp(0.0, -x)


def _avg_factor(avg_factor) -> float | None:
    """None, or the single number of a Python number, list or array with one element."""
    if avg_factor is None:
        return None
    a = _f64(avg_factor)
    if a.size != 1:
        raise ValueError(f"reference: avg_factor must have one element; got shape {a.shape}")
    return float(a.reshape(()))


def _reduce(loss: np.ndarray, reduction: str, denominator: float | None = None, avg_factor=None) -> np.ndarray:
    """Reduce: "none" -> loss, "sum" -> its sum, "mean" -> sum / D.

    D = avg_factor if given, else ``denominator``, else the element count; "none" and
    "sum" ignore avg_factor; D == 0 divides by 1 (the mean is then the sum).
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reference: unknown reduction {reduction!r}")
    if reduction == "none":
        return loss
    total = np.sum(loss, dtype=np.float64)
    if reduction == "sum":
        return np.asarray(total)
    factor = _avg_factor(avg_factor)
    if factor is not None:
        denom = factor
    elif denominator is not None:
        denom = float(denominator)
    else:
        denom = float(loss.size)
    return np.asarray(total / (denom if denom != 0 else 1.0))


def _class_last(x: np.ndarray) -> np.ndarray:
    """(N, C, d1, ..., dk) -> (N, d1, ..., dk, C)."""
    return np.moveaxis(x, 1, -1)


def _along_class_dim(value, x: np.ndarray) -> np.ndarray:
    """weight / pos_weight of the sigmoid losses: 1-D length C applies along dim 1, else broadcast."""
    v = _f64(value)
    if x.ndim >= 2 and v.ndim == 1 and v.shape[0] == x.shape[1]:
        v = v.reshape((-1,) + (1,) * (x.ndim - 2))
    return np.broadcast_to(v, x.shape)


# ----------------------------------------------------------------------------
# softmax form


def _softmax_form(x, t, *, kind: str, class_weight, gamma: float, ignore_index, label_smoothing: float,
                  reduction: str, weighted_mean: bool) -> np.ndarray:
    """-sum_c w_c q_c (1 - p_c)^gamma log p_c over dim 1, then the reduction.

    kind: "logits" (p = softmax x), "probabilities" (x = p, log floored at -100)
    or "log-probabilities" (x = log p).
    """
    x = _f64(x)
    t = np.asarray(t)
    if x.ndim < 2:
        raise ValueError("reference: softmax losses need an (N, C, ...) input")
    num_classes = x.shape[1]
    z = _class_last(x)  # (N, d..., C)
    if kind == "logits":
        log_p = _log_softmax_last(z)
        one_minus_p = -np.expm1(log_p)
    elif kind == "probabilities":
        log_p = _floored_log(z)
        one_minus_p = 1.0 - z
    elif kind == "log-probabilities":
        log_p = z
        one_minus_p = -np.expm1(z)
    else:
        raise ValueError(kind)
    w = np.ones(num_classes) if class_weight is None else _f64(class_weight)
    if w.ndim == 0:  # a scalar: the same factor for every class
        w = np.full(num_classes, float(w))
    if w.shape != (num_classes,):
        raise ValueError(f"reference: per-class weights must have shape ({num_classes},); got {w.shape}")
    focal = np.ones_like(log_p) if not gamma else np.power(one_minus_p, gamma)
    term = -w * focal * log_p  # (N, d..., C): loss of putting all target mass on class c

    position_shape = x.shape[:1] + x.shape[2:]
    eps = float(label_smoothing)
    if t.shape == position_shape:  # class indices
        idx = t.astype(np.int64)
        valid = np.ones(position_shape, dtype=bool) if ignore_index is None else idx != ignore_index
        safe = np.where(valid, idx, 0)
        if np.any((safe < 0) | (safe >= num_classes)):
            raise ValueError("reference: class index out of range")
        one_hot = safe[..., None] == np.arange(num_classes)
        q = one_hot * (1.0 - eps) + eps / num_classes
        loss = np.sum(np.where(q > 0, q * term, 0.0), axis=-1)
        loss = np.where(valid, loss, 0.0)
        if weighted_mean and class_weight is not None:
            denominator = float(np.sum(np.where(valid, w[safe], 0.0)))
        else:
            denominator = float(np.count_nonzero(valid))
        return _reduce(loss, reduction, denominator)
    if t.shape == x.shape:  # class probabilities (ignore_index does not apply)
        q = _class_last(_f64(t)) * (1.0 - eps) + eps / num_classes
        loss = np.sum(np.where(q > 0, q * term, 0.0), axis=-1)
        return _reduce(loss, reduction, None)
    raise ValueError(f"reference: target shape {t.shape} fits neither form for input {x.shape}")


# ----------------------------------------------------------------------------
# sigmoid form


def _sigmoid_form(x, t, *, from_logits: bool, alpha=None, gamma: float = 0.0, weight=None, pos_weight=None,
                  ignore_index=None, label_smoothing: float = 0.0, reduction: str = "mean",
                  avg_factor=None) -> np.ndarray:
    """-w alpha_t (1 - p_t)^gamma [pos_weight t log p + (1 - t) log(1 - p)] per element, then the reduction."""
    x = _f64(x)
    t = np.asarray(t)
    if t.shape == x.shape:  # dense labels (hard, soft or multi-label)
        tf = _f64(t)
        valid = np.ones(x.shape, dtype=bool) if ignore_index is None else tf != ignore_index
        tf = np.where(valid, tf, 0.0)
    elif x.ndim >= 2 and t.shape == x.shape[:1] + x.shape[2:]:  # class indices, index C = background
        num_classes = x.shape[1]
        idx = t.astype(np.int64)
        keep = np.ones(t.shape, dtype=bool) if ignore_index is None else idx != ignore_index
        classes = np.arange(num_classes).reshape((1, num_classes) + (1,) * (x.ndim - 2))
        tf = (np.expand_dims(idx, 1) == classes).astype(np.float64)
        valid = np.broadcast_to(np.expand_dims(keep, 1), x.shape)
        tf = np.where(valid, tf, 0.0)
    else:
        raise ValueError(f"reference: target shape {t.shape} fits neither form for input {x.shape}")

    eps = float(label_smoothing)
    if eps:
        tf = tf * (1.0 - eps) + eps / 2.0
    if from_logits:
        log_p, log_1mp = _log_sigmoid(x), _log_sigmoid(-x)
        p, one_minus_p = np.exp(log_p), np.exp(log_1mp)
    else:
        log_p, log_1mp = _floored_log(x), _floored_log(1.0 - x)
        p, one_minus_p = x, 1.0 - x
    pw = 1.0 if pos_weight is None else _along_class_dim(pos_weight, x)
    loss = -(pw * tf * log_p + (1.0 - tf) * log_1mp)
    if gamma:
        one_minus_pt = p * (1.0 - tf) + one_minus_p * tf
        loss = loss * np.power(one_minus_pt, gamma)
    if alpha is not None:
        loss = loss * (alpha * tf + (1.0 - alpha) * (1.0 - tf))
    if weight is not None:
        loss = loss * _along_class_dim(weight, x)
    loss = np.where(valid, loss, 0.0)
    return _reduce(loss, reduction, float(np.count_nonzero(valid)), avg_factor)


# ----------------------------------------------------------------------------
# the losses, with the signatures of losslab's functions


def cross_entropy(input, target, *, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0,
                  from_logits=True) -> np.ndarray:
    """-sum_c w_c q_c log softmax(x)_c; PyTorch's weighted mean for class indices."""
    return _softmax_form(input, target, kind="logits" if from_logits else "probabilities", class_weight=weight,
                         gamma=0.0, ignore_index=ignore_index, label_smoothing=label_smoothing,
                         reduction=reduction, weighted_mean=True)


def nll_loss(input, target, *, weight=None, ignore_index=-100, reduction="mean") -> np.ndarray:
    """-sum_c w_c y_c x_c with x log-probabilities; PyTorch's weighted mean."""
    return _softmax_form(input, target, kind="log-probabilities", class_weight=weight, gamma=0.0,
                         ignore_index=ignore_index, label_smoothing=0.0, reduction=reduction, weighted_mean=True)


def binary_cross_entropy(input, target, *, weight=None, pos_weight=None, ignore_index=None, label_smoothing=0.0,
                         reduction="mean", from_logits=True, avg_factor=None) -> np.ndarray:
    """-w [pos_weight t log p + (1 - t) log(1 - p)], t smoothed towards 1/2; mean over kept elements or avg_factor."""
    return _sigmoid_form(input, target, from_logits=from_logits, weight=weight, pos_weight=pos_weight,
                         ignore_index=ignore_index, label_smoothing=label_smoothing, reduction=reduction,
                         avg_factor=avg_factor)


def _is_scalar(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) or (
        isinstance(value, np.ndarray) and value.ndim == 0)


def balanced_cross_entropy(input, target, *, alpha, ignore_index=-100, label_smoothing=0.0, reduction="mean",
                           from_logits=True) -> np.ndarray:
    """-alpha_t log p_t: float alpha -> sigmoid form, per-class alpha -> softmax form; plain mean."""
    if _is_scalar(alpha):
        return _sigmoid_form(input, target, from_logits=from_logits, alpha=float(alpha), ignore_index=ignore_index,
                             label_smoothing=label_smoothing, reduction=reduction)
    return _softmax_form(input, target, kind="logits" if from_logits else "probabilities", class_weight=alpha,
                         gamma=0.0, ignore_index=ignore_index, label_smoothing=label_smoothing,
                         reduction=reduction, weighted_mean=False)


def sigmoid_focal_loss(input, target, *, alpha=0.25, gamma=2.0, ignore_index=None, reduction="mean",
                       from_logits=True, weight=None, avg_factor=None) -> np.ndarray:
    """w alpha_t (1 - p_t)^gamma BCE(x, t) per element; alpha None or negative disables alpha_t."""
    a = None if alpha is None or float(alpha) < 0 else float(alpha)
    return _sigmoid_form(input, target, from_logits=from_logits, alpha=a, gamma=float(gamma), weight=weight,
                         ignore_index=ignore_index, reduction=reduction, avg_factor=avg_factor)


def softmax_focal_loss(input, target, *, alpha=None, gamma=2.0, ignore_index=-100, label_smoothing=0.0,
                       reduction="mean", from_logits=True) -> np.ndarray:
    """-sum_c alpha_c q_c (1 - p_c)^gamma log p_c; scalar alpha scales every class; plain mean."""
    return _softmax_form(input, target, kind="logits" if from_logits else "probabilities", class_weight=alpha,
                         gamma=float(gamma), ignore_index=ignore_index, label_smoothing=label_smoothing,
                         reduction=reduction, weighted_mean=False)


# ----------------------------------------------------------------------------
# detection losses: quality / varifocal / distribution focal losses


def _broadcast_weight(loss: np.ndarray, weight) -> np.ndarray:
    """loss * weight, the weight broadcast to the loss's shape (never the other way round)."""
    if weight is None:
        return loss
    return loss * np.broadcast_to(_f64(weight), loss.shape)


def _score_target(x: np.ndarray, target, ignore_index) -> tuple[np.ndarray, np.ndarray]:
    """Dense y shaped like x, or y[n, c, ...] = scores[n, ...] where labels[n, ...] == c (C = background).

    Returns (y, valid); ignored elements (dense: y == ignore_index; pair: all C elements of a position whose
    label is ignore_index) have y = 0 and valid = False.
    """
    if isinstance(target, tuple):
        if len(target) != 2:
            raise ValueError("reference: a pair target is (labels, scores)")
        if x.ndim < 2:
            raise ValueError("reference: a (labels, scores) target needs an (N, C, ...) input")
        labels, scores = np.asarray(target[0]), _f64(target[1])
        position_shape = x.shape[:1] + x.shape[2:]
        if labels.shape != position_shape or scores.shape != position_shape:
            raise ValueError(f"reference: labels {labels.shape} and scores {scores.shape} must have shape "
                             f"{position_shape} for input {x.shape}")
        num_classes = x.shape[1]
        idx = labels.astype(np.int64)
        keep = np.ones(position_shape, dtype=bool) if ignore_index is None else idx != ignore_index
        if np.any(keep & ((idx < 0) | (idx > num_classes))):
            raise ValueError("reference: label out of range [0, C]")
        classes = np.arange(num_classes).reshape((1, num_classes) + (1,) * (x.ndim - 2))
        y = np.where(np.expand_dims(idx, 1) == classes, np.expand_dims(scores, 1), 0.0)
        valid = np.broadcast_to(np.expand_dims(keep, 1), x.shape)
        return np.where(valid, y, 0.0), valid
    y = _f64(target)
    if y.shape != x.shape:
        raise ValueError(f"reference: dense target shape {y.shape} differs from input {x.shape}")
    valid = np.ones(x.shape, dtype=bool) if ignore_index is None else y != ignore_index
    return np.where(valid, y, 0.0), valid


def quality_focal_loss(input, target, *, beta=2.0, ignore_index=None, weight=None, reduction="mean",
                       avg_factor=None) -> np.ndarray:
    """-|y - sigma|^beta [(1 - y) log(1 - sigma) + y log sigma] per element (Li et al. 2020)."""
    x = _f64(input)
    y, valid = _score_target(x, target, ignore_index)
    log_s = -np.logaddexp(0.0, -x)  # log sigma
    log_1ms = -np.logaddexp(0.0, x)  # log(1 - sigma)
    sigma = np.exp(log_s)
    modulator = np.power(np.abs(y - sigma), float(beta))  # 0^0 = 1
    loss = -modulator * ((1.0 - y) * log_1ms + y * log_s)
    if weight is not None:
        loss = loss * _along_class_dim(weight, x)
    loss = np.where(valid, loss, 0.0)
    return _reduce(loss, reduction, float(np.count_nonzero(valid)), avg_factor)


def varifocal_loss(input, target, *, alpha=0.75, gamma=2.0, iou_weighted=True, weight=None, reduction="mean",
                   avg_factor=None) -> np.ndarray:
    """q > 0: -qw [q log p + (1 - q) log(1 - p)]; q == 0: -alpha p^gamma log(1 - p) (Zhang et al. 2021)."""
    x = _f64(input)
    q, _ = _score_target(x, target, None)
    log_p = -np.logaddexp(0.0, -x)
    log_1mp = -np.logaddexp(0.0, x)
    p = np.exp(log_p)
    qw = q if iou_weighted else np.ones_like(q)
    positive = -qw * (q * log_p + (1.0 - q) * log_1mp)
    negative = -float(alpha) * np.power(p, float(gamma)) * log_1mp
    loss = np.where(q > 0, positive, negative)
    if weight is not None:
        loss = loss * _along_class_dim(weight, x)
    return _reduce(loss, reduction, None, avg_factor)


def distribution_focal_loss(input, target, *, weight=None, reduction="mean", avg_factor=None) -> np.ndarray:
    """-[(y_r - y) log S[y_l] + (y - y_l) log S[y_r]], S = softmax over the last axis, y_l = min(floor y, n - 2)."""
    x = _f64(input)
    y = _f64(target)
    if x.ndim < 1 or x.shape[-1] < 2:
        raise ValueError("reference: distribution_focal_loss needs (..., n_bins) logits with n_bins >= 2")
    if y.shape != x.shape[:-1]:
        raise ValueError(f"reference: target shape {y.shape} must be input.shape[:-1] = {x.shape[:-1]}")
    n_bins = x.shape[-1]
    if np.any((y < 0) | (y > n_bins - 1)):
        raise ValueError("reference: target out of range [0, n_bins - 1]")
    log_s = _log_softmax_last(x)
    y_l = np.minimum(np.floor(y), n_bins - 2).astype(np.int64)
    y_r = y_l + 1
    log_s_l = np.take_along_axis(log_s, y_l[..., None], axis=-1)[..., 0]
    log_s_r = np.take_along_axis(log_s, y_r[..., None], axis=-1)[..., 0]
    loss = -((y_r - y) * log_s_l + (y - y_l) * log_s_r)
    loss = _broadcast_weight(loss, weight)
    return _reduce(loss, reduction, None, avg_factor)


# ----------------------------------------------------------------------------
# regression losses


def _difference(input, target) -> np.ndarray:
    x, t = _f64(input), _f64(target)
    if x.shape != t.shape:
        raise ValueError(f"reference: input {x.shape} and target {t.shape} must have the same shape")
    return x - t


def smooth_l1_loss(input, target, *, beta=1.0, weight=None, reduction="mean", avg_factor=None) -> np.ndarray:
    """|d| < beta: 0.5 d^2 / beta, else |d| - 0.5 beta; beta = 0: |d| (torch.nn.functional.smooth_l1_loss)."""
    beta = float(beta)
    if beta < 0:
        raise ValueError("reference: beta must be >= 0")
    d = _difference(input, target)
    ad = np.abs(d)
    if beta == 0:
        loss = ad
    else:
        loss = np.where(ad < beta, 0.5 * d * d / beta, ad - 0.5 * beta)
    loss = _broadcast_weight(loss, weight)
    return _reduce(loss, reduction, None, avg_factor)


def huber_loss(input, target, *, delta=1.0, weight=None, reduction="mean", avg_factor=None) -> np.ndarray:
    """|d| < delta: 0.5 d^2, else delta (|d| - 0.5 delta) (torch.nn.functional.huber_loss)."""
    delta = float(delta)
    if not delta > 0:
        raise ValueError("reference: delta must be > 0")
    d = _difference(input, target)
    ad = np.abs(d)
    loss = np.where(ad < delta, 0.5 * d * d, delta * (ad - 0.5 * delta))
    loss = _broadcast_weight(loss, weight)
    return _reduce(loss, reduction, None, avg_factor)


# ----------------------------------------------------------------------------
# box losses


def _to_xyxy(boxes: np.ndarray, box_format: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    a, b, c, d = boxes[..., 0], boxes[..., 1], boxes[..., 2], boxes[..., 3]
    if box_format == "xyxy":
        return a, b, c, d
    if box_format == "xywh":  # (x1, y1, w, h)
        return a, b, a + c, b + d
    if box_format == "cxcywh":  # (cx, cy, w, h)
        return a - c / 2, b - d / 2, a + c / 2, b + d / 2
    raise ValueError(f"reference: unknown box_format {box_format!r}")


class _BoxGeometry:
    """Every quantity of the box losses, per box, from pred and target in xyxy."""

    def __init__(self, pred, target, box_format: str, eps: float):
        p, g = _f64(pred), _f64(target)
        if p.shape != g.shape or p.ndim < 1 or p.shape[-1] != 4:
            raise ValueError(f"reference: pred {p.shape} and target {g.shape} must both be (..., 4)")
        x1p, y1p, x2p, y2p = _to_xyxy(p, box_format)
        x1g, y1g, x2g, y2g = _to_xyxy(g, box_format)
        self.wp, self.hp = np.maximum(x2p - x1p, 0.0), np.maximum(y2p - y1p, 0.0)
        self.wg, self.hg = np.maximum(x2g - x1g, 0.0), np.maximum(y2g - y1g, 0.0)
        inter_w = np.maximum(np.minimum(x2p, x2g) - np.maximum(x1p, x1g), 0.0)
        inter_h = np.maximum(np.minimum(y2p, y2g) - np.maximum(y1p, y1g), 0.0)
        self.inter = inter_w * inter_h
        self.union = self.wp * self.hp + self.wg * self.hg - self.inter
        self.iou = self.inter / (self.union + eps)
        self.cw = np.maximum(np.maximum(x2p, x2g) - np.minimum(x1p, x1g), 0.0)
        self.ch = np.maximum(np.maximum(y2p, y2g) - np.minimum(y1p, y1g), 0.0)
        self.enclosing = self.cw * self.ch
        self.cxp, self.cyp = (x1p + x2p) / 2, (y1p + y2p) / 2
        self.cxg, self.cyg = (x1g + x2g) / 2, (y1g + y2g) / 2
        self.rho2 = (self.cxp - self.cxg) ** 2 + (self.cyp - self.cyg) ** 2
        self.c2 = self.cw ** 2 + self.ch ** 2 + eps


def _box_reduce(loss: np.ndarray, pred, weight, reduction: str, avg_factor) -> np.ndarray:
    """Weight (pred's shape (..., 4): averaged over the last axis first) times the per-box loss, then reduce."""
    if weight is not None:
        w = _f64(weight)
        if w.shape == np.shape(pred):
            w = np.mean(w, axis=-1)
        loss = loss * np.broadcast_to(w, loss.shape)
    return _reduce(loss, reduction, None, avg_factor)


def iou_loss(pred, target, *, mode="linear", box_format="xyxy", eps=1e-7, weight=None, reduction="mean",
             avg_factor=None) -> np.ndarray:
    """linear 1 - IoU, square 1 - IoU^2, log -log(max(IoU, eps))."""
    eps = float(eps)
    geo = _BoxGeometry(pred, target, box_format, eps)
    if mode == "linear":
        loss = 1.0 - geo.iou
    elif mode == "square":
        loss = 1.0 - geo.iou ** 2
    elif mode == "log":
        with np.errstate(divide="ignore"):
            loss = -np.log(np.maximum(geo.iou, eps))
    else:
        raise ValueError(f"reference: unknown mode {mode!r}")
    return _box_reduce(loss, pred, weight, reduction, avg_factor)


def giou_loss(pred, target, *, box_format="xyxy", eps=1e-7, weight=None, reduction="mean",
              avg_factor=None) -> np.ndarray:
    """1 - IoU + (C - U) / (C + eps) (torchvision.ops.generalized_box_iou_loss)."""
    eps = float(eps)
    geo = _BoxGeometry(pred, target, box_format, eps)
    loss = 1.0 - geo.iou + (geo.enclosing - geo.union) / (geo.enclosing + eps)
    return _box_reduce(loss, pred, weight, reduction, avg_factor)


def diou_loss(pred, target, *, box_format="xyxy", eps=1e-7, weight=None, reduction="mean",
              avg_factor=None) -> np.ndarray:
    """1 - IoU + rho2 / c2 (torchvision.ops.distance_box_iou_loss)."""
    geo = _BoxGeometry(pred, target, box_format, float(eps))
    loss = 1.0 - geo.iou + geo.rho2 / geo.c2
    return _box_reduce(loss, pred, weight, reduction, avg_factor)


def ciou_loss(pred, target, *, box_format="xyxy", eps=1e-7, weight=None, reduction="mean",
              avg_factor=None) -> np.ndarray:
    """diou + a v, v = 4/pi^2 (atan(w_g'/h_g') - atan(w_p'/h_p'))^2, a = v / (1 - IoU + v + eps)."""
    eps = float(eps)
    geo = _BoxGeometry(pred, target, box_format, eps)
    wp, hp = np.maximum(geo.wp, eps), np.maximum(geo.hp, eps)
    wg, hg = np.maximum(geo.wg, eps), np.maximum(geo.hg, eps)
    with np.errstate(divide="ignore", invalid="ignore"):
        v = (4.0 / np.pi ** 2) * (np.arctan(wg / hg) - np.arctan(wp / hp)) ** 2
    a = v / (1.0 - geo.iou + v + eps)
    loss = 1.0 - geo.iou + geo.rho2 / geo.c2 + a * v
    return _box_reduce(loss, pred, weight, reduction, avg_factor)


def eiou_loss(pred, target, *, box_format="xyxy", eps=1e-7, weight=None, reduction="mean",
              avg_factor=None) -> np.ndarray:
    """1 - IoU + rho2 / c2 + (w_p - w_g)^2 / (cw^2 + eps) + (h_p - h_g)^2 / (ch^2 + eps) (Zhang et al. 2022)."""
    eps = float(eps)
    geo = _BoxGeometry(pred, target, box_format, eps)
    loss = (1.0 - geo.iou + geo.rho2 / geo.c2 + (geo.wp - geo.wg) ** 2 / (geo.cw ** 2 + eps)
            + (geo.hp - geo.hg) ** 2 / (geo.ch ** 2 + eps))
    return _box_reduce(loss, pred, weight, reduction, avg_factor)


def siou_loss(pred, target, *, box_format="xyxy", eps=1e-7, weight=None, reduction="mean",
              avg_factor=None) -> np.ndarray:
    """1 - IoU + (distance cost D + shape cost O) / 2, the angle cost in D's gamma (Gevorgyan 2022)."""
    eps = float(eps)
    geo = _BoxGeometry(pred, target, box_format, eps)
    dx = geo.cxg - geo.cxp
    dy = geo.cyg - geo.cyp
    angle = 2.0 * np.abs(dx) * np.abs(dy) / (dx ** 2 + dy ** 2 + eps)
    g = 2.0 - angle
    distance = (1.0 - np.exp(-g * (dx / (geo.cw + eps)) ** 2)) + (1.0 - np.exp(-g * (dy / (geo.ch + eps)) ** 2))
    shape = ((1.0 - np.exp(-np.abs(geo.wp - geo.wg) / (np.maximum(geo.wp, geo.wg) + eps))) ** 4
             + (1.0 - np.exp(-np.abs(geo.hp - geo.hg) / (np.maximum(geo.hp, geo.hg) + eps))) ** 4)
    loss = 1.0 - geo.iou + (distance + shape) / 2.0
    return _box_reduce(loss, pred, weight, reduction, avg_factor)


# ----------------------------------------------------------------------------
# segmentation losses: Dice / Jaccard / Tversky and the compound Dice + CE / focal losses


SEGMENTATION_MODES = ("binary", "multiclass", "multilabel")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)), written with exp(-|x|) so that nothing overflows."""
    z = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + z), z / (1.0 + z))


def _softmax_axis1(x: np.ndarray) -> np.ndarray:
    """softmax over the class axis 1, max-shifted."""
    e = np.exp(x - np.max(x, axis=1, keepdims=True))
    return e / np.sum(e, axis=1, keepdims=True)


def _seg_channel_first(input, target, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """input and target as arrays; "binary": (N, *) -> (N, 1, *) for both when input.ndim < 2 or input.shape[1] != 1."""
    if mode not in SEGMENTATION_MODES:
        raise ValueError(f"reference: unknown mode {mode!r}")
    x = _f64(input)
    y = np.asarray(target)
    if mode != "binary":
        return x, y
    if x.ndim < 1:
        raise ValueError("reference: a binary input needs a batch axis")
    if y.shape != x.shape:
        raise ValueError(f"reference: binary target shape {y.shape} differs from input {x.shape}")
    if x.ndim < 2 or x.shape[1] != 1:
        x, y = x[:, None], y[:, None]
    return x, y


def _seg_inputs(input, target, mode: str, from_logits: bool,
                ignore_index) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(p, t, keep), each (N, C, *spatial): probabilities, targets, 1.0 where the element is kept and 0.0 where not.

    binary/multilabel: p = sigmoid(x) (or x), t = target, elements with target == ignore_index removed;
    multiclass: p = softmax(x, axis=1) (or x), t = one-hot of the indices on axis 1, positions with
    target == ignore_index removed for every class. Removed elements have p = t = 0.
    """
    x, y = _seg_channel_first(input, target, mode)
    if mode == "multiclass":
        if x.ndim < 2 or x.shape[1] < 1:
            raise ValueError("reference: a multiclass input must be (N, C, ...) with C >= 1")
        num_classes = x.shape[1]
        if y.shape != x.shape[:1] + x.shape[2:]:
            raise ValueError(f"reference: multiclass target shape {y.shape} must be {x.shape[:1] + x.shape[2:]}")
        idx = y.astype(np.int64)
        kept_position = np.ones(idx.shape, dtype=bool) if ignore_index is None else idx != ignore_index
        if np.any(kept_position & ((idx < 0) | (idx >= num_classes))):
            raise ValueError("reference: class index out of range")
        safe = np.where(kept_position, idx, 0)
        t = np.moveaxis(np.eye(num_classes)[safe], -1, 1)  # (N, *, C) -> (N, C, *)
        keep = np.broadcast_to(kept_position[:, None], x.shape)
        p = _softmax_axis1(x) if from_logits else x
    else:
        if x.ndim < 2:
            raise ValueError("reference: a multilabel input must be (N, C, ...)")
        t = _f64(y)
        if t.shape != x.shape:
            raise ValueError(f"reference: target shape {t.shape} differs from input {x.shape}")
        keep = np.ones(x.shape, dtype=bool) if ignore_index is None else t != ignore_index
        p = _sigmoid(x) if from_logits else x
    p = np.where(keep, p, 0.0)
    t = np.where(keep, t, 0.0)
    return p, t, keep.astype(np.float64)


def _seg_sum(a: np.ndarray, per_image: bool) -> np.ndarray:
    """Per-class sums: over axis 0 and the spatial axes -> (C,), or (per_image) over the spatial axes -> (N, C)."""
    spatial = tuple(range(2, a.ndim))
    if per_image:
        return np.sum(a, axis=spatial)
    return np.sum(a, axis=(0,) + spatial)


def _ratio(num: np.ndarray, den: np.ndarray, eps: float) -> np.ndarray:
    """num / max(den, eps) where den > 0, else 1.0 (0/0: empty against empty is a perfect match)."""
    safe_den = np.where(den > 0, np.maximum(den, eps), 1.0)
    return np.where(den > 0, num / safe_den, 1.0)


def _score_loss(score: np.ndarray, log_loss: bool, eps: float) -> np.ndarray:
    """1 - score, or -log(max(score, eps))."""
    if log_loss:
        with np.errstate(divide="ignore"):
            return -np.log(np.maximum(score, eps))
    return 1.0 - score


def _seg_reduce(loss: np.ndarray, mode: str, weight, include_background: bool, reduction: str) -> np.ndarray:
    """Drop class 0 (multiclass/multilabel without background), w_c * loss_c, then reduce.

    "mean" divides by the sum of the weights over the entries of the "none" array (the entry count without
    weight); 0 divides by 1.
    """
    num_classes = loss.shape[-1]
    w = np.ones(num_classes) if weight is None else _f64(weight)
    if w.shape != (num_classes,):
        raise ValueError(f"reference: weight must have shape ({num_classes},); got {w.shape}")
    if np.any(w < 0):
        raise ValueError("reference: weight must be non-negative")
    if not include_background and mode != "binary":
        loss, w = loss[..., 1:], w[1:]
    w_entries = np.broadcast_to(w, loss.shape)
    return _reduce(w_entries * loss, reduction, float(np.sum(w_entries)))


def dice_loss(input, target, *, mode, from_logits=True, smooth=1.0, eps=1e-7, weight=None, ignore_index=None,
              include_background=True, per_image=False, squared=False, log_loss=False,
              reduction="mean") -> np.ndarray:
    """1 - ratio(2 I + smooth, P + T + smooth) per class, I = sum p t, P = sum p (or p^2), T = sum t (or t^2)."""
    p, t, _ = _seg_inputs(input, target, mode, from_logits, ignore_index)
    intersection = _seg_sum(p * t, per_image)
    if squared:
        p_sum, t_sum = _seg_sum(p * p, per_image), _seg_sum(t * t, per_image)
    else:
        p_sum, t_sum = _seg_sum(p, per_image), _seg_sum(t, per_image)
    smooth, eps = float(smooth), float(eps)
    score = _ratio(2.0 * intersection + smooth, p_sum + t_sum + smooth, eps)
    return _seg_reduce(_score_loss(score, log_loss, eps), mode, weight, include_background, reduction)


def jaccard_loss(input, target, *, mode, from_logits=True, smooth=1.0, eps=1e-7, weight=None, ignore_index=None,
                 include_background=True, per_image=False, squared=False, log_loss=False,
                 reduction="mean") -> np.ndarray:
    """1 - ratio(I + smooth, P + T - I + smooth) per class, the sums of dice_loss."""
    p, t, _ = _seg_inputs(input, target, mode, from_logits, ignore_index)
    intersection = _seg_sum(p * t, per_image)
    if squared:
        p_sum, t_sum = _seg_sum(p * p, per_image), _seg_sum(t * t, per_image)
    else:
        p_sum, t_sum = _seg_sum(p, per_image), _seg_sum(t, per_image)
    smooth, eps = float(smooth), float(eps)
    score = _ratio(intersection + smooth, p_sum + t_sum - intersection + smooth, eps)
    return _seg_reduce(_score_loss(score, log_loss, eps), mode, weight, include_background, reduction)


def tversky_loss(input, target, *, mode, from_logits=True, alpha=0.5, beta=0.5, gamma=1.0, smooth=1.0, eps=1e-7,
                 weight=None, ignore_index=None, include_background=True, per_image=False,
                 reduction="mean") -> np.ndarray:
    """(1 - ratio(TP + smooth, TP + alpha FP + beta FN + smooth)) ** gamma per class (alpha: FP, beta: FN)."""
    p, t, keep = _seg_inputs(input, target, mode, from_logits, ignore_index)
    tp = _seg_sum(keep * p * t, per_image)
    fp = _seg_sum(keep * p * (1.0 - t), per_image)
    fn = _seg_sum(keep * (1.0 - p) * t, per_image)
    smooth = float(smooth)
    score = _ratio(tp + smooth, tp + float(alpha) * fp + float(beta) * fn + smooth, float(eps))
    loss = np.power(1.0 - score, float(gamma))
    return _seg_reduce(loss, mode, weight, include_background, reduction)


def _compound_reduction(reduction: str) -> None:
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reference: the compound segmentation losses support 'mean' and 'sum'; got {reduction!r}")


def dice_ce_loss(input, target, *, mode, from_logits=True, smooth=1.0, eps=1e-7, weight=None, ignore_index=None,
                 include_background=True, per_image=False, squared=False, log_loss=False, label_smoothing=0.0,
                 lambda_dice=1.0, lambda_ce=1.0, reduction="mean") -> np.ndarray:
    """lambda_dice dice_loss + lambda_ce CE: cross_entropy (multiclass), binary_cross_entropy (binary/multilabel)."""
    _compound_reduction(reduction)
    dice = dice_loss(input, target, mode=mode, from_logits=from_logits, smooth=smooth, eps=eps, weight=weight,
                     ignore_index=ignore_index, include_background=include_background, per_image=per_image,
                     squared=squared, log_loss=log_loss, reduction=reduction)
    x, y = _seg_channel_first(input, target, mode)
    if mode == "multiclass":
        ce = cross_entropy(x, y, weight=weight, ignore_index=ignore_index, reduction=reduction,
                           label_smoothing=label_smoothing, from_logits=from_logits)
    else:
        ce = binary_cross_entropy(x, y, weight=weight, ignore_index=ignore_index, label_smoothing=label_smoothing,
                                  reduction=reduction, from_logits=from_logits)
    return np.asarray(float(lambda_dice) * dice + float(lambda_ce) * ce)


def dice_focal_loss(input, target, *, mode, from_logits=True, smooth=1.0, eps=1e-7, weight=None, ignore_index=None,
                    include_background=True, per_image=False, squared=False, log_loss=False, gamma=2.0, alpha=None,
                    lambda_dice=1.0, lambda_focal=1.0, reduction="mean") -> np.ndarray:
    """lambda_dice dice_loss + lambda_focal focal: softmax_focal_loss (multiclass, alpha_c = weight_c alpha),
    sigmoid_focal_loss (binary/multilabel, weight along axis 1)."""
    _compound_reduction(reduction)
    dice = dice_loss(input, target, mode=mode, from_logits=from_logits, smooth=smooth, eps=eps, weight=weight,
                     ignore_index=ignore_index, include_background=include_background, per_image=per_image,
                     squared=squared, log_loss=log_loss, reduction=reduction)
    x, y = _seg_channel_first(input, target, mode)
    if mode == "multiclass":
        if weight is not None:
            focal_alpha = _f64(weight) * (1.0 if alpha is None else _f64(alpha))
        else:
            focal_alpha = alpha
        focal = softmax_focal_loss(x, y, alpha=focal_alpha, gamma=gamma, ignore_index=ignore_index,
                                   reduction=reduction, from_logits=from_logits)
    else:
        focal = sigmoid_focal_loss(x, y, alpha=alpha, gamma=gamma, ignore_index=ignore_index, reduction=reduction,
                                   from_logits=from_logits, weight=weight)
    return np.asarray(float(lambda_dice) * dice + float(lambda_focal) * focal)


REFERENCES: dict[str, Callable[..., np.ndarray]] = {
    "cross_entropy": cross_entropy,
    "nll_loss": nll_loss,
    "binary_cross_entropy": binary_cross_entropy,
    "balanced_cross_entropy": balanced_cross_entropy,
    "sigmoid_focal_loss": sigmoid_focal_loss,
    "softmax_focal_loss": softmax_focal_loss,
    "quality_focal_loss": quality_focal_loss,
    "varifocal_loss": varifocal_loss,
    "distribution_focal_loss": distribution_focal_loss,
    "smooth_l1_loss": smooth_l1_loss,
    "huber_loss": huber_loss,
    "iou_loss": iou_loss,
    "giou_loss": giou_loss,
    "diou_loss": diou_loss,
    "ciou_loss": ciou_loss,
    "eiou_loss": eiou_loss,
    "siou_loss": siou_loss,
    "dice_loss": dice_loss,
    "jaccard_loss": jaccard_loss,
    "tversky_loss": tversky_loss,
    "dice_ce_loss": dice_ce_loss,
    "dice_focal_loss": dice_focal_loss,
}


# ----------------------------------------------------------------------------
# class weights


def ref_class_weights(counts, method: str = "inverse", beta: float = 0.999, normalize: str | None = "sum"
                      ) -> np.ndarray:
    """Per-class weights from counts n_c (zero counts count as 1), then normalised.

    inverse 1/n, inverse_sqrt 1/sqrt(n), effective_number (1 - beta)/(1 - beta^n)
    (Cui et al. 2019), median_frequency median(n)/n (Eigen and Fergus 2015).
    """
    n = np.maximum(_f64(counts), 1.0)
    if method == "inverse":
        w = 1.0 / n
    elif method == "inverse_sqrt":
        w = 1.0 / np.sqrt(n)
    elif method == "effective_number":
        w = (1.0 - beta) / (1.0 - np.power(beta, n))
    elif method == "median_frequency":
        w = np.median(n) / n
    else:
        raise ValueError(method)
    if normalize == "sum":
        w = w / w.sum()
    elif normalize == "mean":
        w = w / w.mean()
    elif normalize is not None:
        raise ValueError(normalize)
    return w


from . import reference_longtail as _longtail  # noqa: E402  (logit adjustment, LDAM, VS)
from .reference_multilabel import REFERENCES as _MULTILABEL  # noqa: E402  (asymmetric and Poly-1)
from .reference_gdice import REFERENCES as _GDICE  # noqa: E402  (generalized_dice_loss)
from .reference_seesaw import REFERENCES as _SEESAW  # noqa: E402  (seesaw_loss, eqlv2_loss)
from .reference_lovasz import REFERENCES as _LOVASZ  # noqa: E402  (lovasz_softmax_loss, lovasz_hinge_loss)

for _references in (_longtail.REFERENCES, _MULTILABEL, _SEESAW, _LOVASZ, _GDICE):
    REFERENCES.update(_references)
