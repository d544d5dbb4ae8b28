"""Independent float64 NumPy references for every loss, written from the formulas.

Nothing here imports losslab or torch: each function restates the formula of
the loss of the same name (see the docstrings in losslab) in plain NumPy, in
float64, with stable primitives (``logaddexp``, max-shifted log-sum-exp).

``REFERENCES[name](input, target, **kwargs)`` takes exactly the keyword
arguments of ``losslab.<name>`` (same names, same defaults) and returns the
"none"-shaped array, or a 0-d array for "mean" and "sum". Tensor-valued
keyword arguments (weight, pos_weight, alpha) may be NumPy arrays, lists or
anything ``np.asarray`` accepts.

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
  denominator; a zero denominator (empty or all-ignored batch) gives 0;
* "mean" of cross_entropy / nll_loss with class indices divides by the sum of
  weight[target] over kept positions (PyTorch); every other mean is the plain
  mean over kept elements/positions;
* ``from_logits=False``: log of probabilities floored at -100 (PyTorch's
  BCELoss), and the focal weight uses 1 - p computed from p directly.
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


def _reduce(loss: np.ndarray, reduction: str, denominator: float | None = None) -> np.ndarray:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reference: unknown reduction {reduction!r}")
    if reduction == "none":
        return loss
    total = np.sum(loss, dtype=np.float64)
    if reduction == "sum":
        return np.asarray(total)
    denom = float(loss.size) if denominator is None else float(denominator)
    return np.asarray(total / denom if denom > 0 else 0.0)


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
                  ignore_index=None, label_smoothing: float = 0.0, reduction: str = "mean") -> np.ndarray:
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
    return _reduce(loss, reduction, float(np.count_nonzero(valid)))


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
                         reduction="mean", from_logits=True) -> np.ndarray:
    """-w [pos_weight t log p + (1 - t) log(1 - p)], t smoothed towards 1/2; plain mean over kept elements."""
    return _sigmoid_form(input, target, from_logits=from_logits, weight=weight, pos_weight=pos_weight,
                         ignore_index=ignore_index, label_smoothing=label_smoothing, reduction=reduction)


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
                       from_logits=True) -> np.ndarray:
    """alpha_t (1 - p_t)^gamma BCE(x, t) per element; alpha None or negative disables alpha_t."""
    a = None if alpha is None or float(alpha) < 0 else float(alpha)
    return _sigmoid_form(input, target, from_logits=from_logits, alpha=a, gamma=float(gamma),
                         ignore_index=ignore_index, reduction=reduction)


def softmax_focal_loss(input, target, *, alpha=None, gamma=2.0, ignore_index=-100, label_smoothing=0.0,
                       reduction="mean", from_logits=True) -> np.ndarray:
    """-sum_c alpha_c q_c (1 - p_c)^gamma log p_c; scalar alpha scales every class; plain mean."""
    return _softmax_form(input, target, kind="logits" if from_logits else "probabilities", class_weight=alpha,
                         gamma=float(gamma), ignore_index=ignore_index, label_smoothing=label_smoothing,
                         reduction=reduction, weighted_mean=False)


REFERENCES: dict[str, Callable[..., np.ndarray]] = {
    "cross_entropy": cross_entropy,
    "nll_loss": nll_loss,
    "binary_cross_entropy": binary_cross_entropy,
    "balanced_cross_entropy": balanced_cross_entropy,
    "sigmoid_focal_loss": sigmoid_focal_loss,
    "softmax_focal_loss": softmax_focal_loss,
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
