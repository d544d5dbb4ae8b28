"""Float64 NumPy references of the asymmetric loss and the Poly-1 losses, written from the papers' formulas.

Nothing here imports losslab, torch or tests.reference: the helpers are restated, so that these references
stay independent. Conventions (those of tests/reference.py):

* sigmoid losses (asymmetric_loss, poly_sigmoid_focal_loss): the target is shaped like the input, or class
  indices (N, d1, ...) one-hot over C classes with index C = background; ignored elements (dense) or
  positions (all C elements) give 0 and leave the denominator; "mean" divides by the kept elements, or
  by avg_factor; a 1-D weight of length C applies along axis 1;
* softmax losses: class axis 1; class indices or probabilities; smoothing q = (1 - s) y + s / C; "mean"
  divides by sum_n w[y_n] over kept positions (poly_cross_entropy with class indices), else by the kept
  positions (probability targets: every position);
* a zero denominator divides by 1.

ASL (Ridnik et al. 2021):  -[t (1 - p)^g+ log p + (1 - t) p_m^g- log(1 - p_m)],  p_m = max(p - clip, 0).
Poly-1 (Leng et al. 2022): CE + eps (1 - p_t); focal: FL + eps (1 - p_t)^(gamma + 1).
"""

from __future__ import annotations

import numpy as np


def _f64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)) without overflow: exp(-logaddexp(0, -x))."""
    return np.exp(-np.logaddexp(0.0, -x))


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -x)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    """log softmax over axis 1, max-shifted."""
    if x.size == 0:
        return x.copy()
    m = np.max(x, axis=1, keepdims=True)
    return x - m - np.log(np.sum(np.exp(x - m), axis=1, keepdims=True))


def _reduce(loss: np.ndarray, reduction: str, denominator: float, avg_factor=None) -> np.ndarray:
    if reduction == "none":
        return loss
    total = np.sum(loss, dtype=np.float64)
    if reduction == "sum":
        return np.asarray(total)
    if reduction != "mean":
        raise ValueError(reduction)
    d = float(_f64(avg_factor).reshape(())) if avg_factor is not None else float(denominator)
    return np.asarray(total / (d if d != 0 else 1.0))


def _per_class(value, x: np.ndarray) -> np.ndarray:
    v = _f64(value)
    if x.ndim >= 2 and v.ndim == 1 and v.shape[0] == x.shape[1]:
        v = v.reshape((-1,) + (1,) * (x.ndim - 2))
    return np.broadcast_to(v, x.shape)


def _dense_target(x: np.ndarray, target, ignore_index) -> tuple[np.ndarray, np.ndarray]:
    """(t, kept) shaped like x: dense labels, or one-hot class indices with index C = background."""
    t = np.asarray(target)
    if t.shape == x.shape:
        kept = np.ones(x.shape, bool) if ignore_index is None else t != ignore_index
        return np.where(kept, _f64(t), 0.0), kept
    c = x.shape[1]
    idx = t.astype(np.int64)
    keep = np.ones(t.shape, bool) if ignore_index is None else idx != ignore_index
    one_hot = (np.expand_dims(idx, 1) == np.arange(c).reshape((1, c) + (1,) * (x.ndim - 2))).astype(np.float64)
    kept = np.broadcast_to(np.expand_dims(keep, 1), x.shape)
    return np.where(kept, one_hot, 0.0), kept


def asymmetric_loss(input, target, *, gamma_pos=0.0, gamma_neg=4.0, clip=0.05, weight=None, ignore_index=None,
                    reduction="mean", avg_factor=None) -> np.ndarray:
    """-[t (1 - p)^gamma_pos log p + (1 - t) p_m^gamma_neg log(1 - p_m)], p_m = max(p - clip, 0)."""
    x = _f64(input)
    t, kept = _dense_target(x, target, ignore_index)
    p, one_minus_p = _sigmoid(x), _sigmoid(-x)
    p_m = np.maximum(p - clip, 0.0)
    log_1m_pm = np.log(np.minimum(one_minus_p + clip, 1.0))  # log(1 - p_m)
    positive = -np.power(one_minus_p, gamma_pos) * _log_sigmoid(x)
    negative = -np.power(p_m, gamma_neg) * log_1m_pm
    loss = t * positive + (1.0 - t) * negative
    if weight is not None:
        loss = loss * _per_class(weight, x)
    loss = np.where(kept, loss, 0.0)
    return _reduce(loss, reduction, float(np.count_nonzero(kept)), avg_factor)


def poly_sigmoid_focal_loss(input, target, *, epsilon=1.0, gamma=2.0, alpha=None, ignore_index=None, weight=None,
                            reduction="mean", avg_factor=None) -> np.ndarray:
    """w [alpha_t (1 - p_t)^gamma BCE + epsilon (1 - p_t)^(gamma + 1)], 1 - p_t = p (1 - t) + (1 - p) t."""
    x = _f64(input)
    t, kept = _dense_target(x, target, ignore_index)
    bce = -(t * _log_sigmoid(x) + (1.0 - t) * _log_sigmoid(-x))
    one_minus_pt = _sigmoid(x) * (1.0 - t) + _sigmoid(-x) * t
    a = None if alpha is None or float(alpha) < 0 else float(alpha)
    alpha_t = 1.0 if a is None else a * t + (1.0 - a) * (1.0 - t)
    loss = alpha_t * np.power(one_minus_pt, gamma) * bce + epsilon * np.power(one_minus_pt, gamma + 1.0)
    if weight is not None:
        loss = loss * _per_class(weight, x)
    loss = np.where(kept, loss, 0.0)
    return _reduce(loss, reduction, float(np.count_nonzero(kept)), avg_factor)


def _poly_softmax(x, target, *, epsilon, gamma, class_weight, ignore_index, label_smoothing, reduction,
                  weighted_mean) -> np.ndarray:
    """sum_c w_c q_c [(1 - p_c)^gamma (-log p_c) + epsilon (1 - p_c)^(gamma + 1)] per position."""
    x = _f64(x)
    c = x.shape[1]
    t = np.asarray(target)
    log_p = _log_softmax(x)
    one_minus_p = -np.expm1(log_p)
    term = np.power(one_minus_p, gamma) * (-log_p) + epsilon * np.power(one_minus_p, gamma + 1.0)
    w = np.ones(c) if class_weight is None else _f64(class_weight)
    w_axis = w.reshape((c,) + (1,) * (x.ndim - 2))
    if t.shape == x.shape:  # probabilities
        q = _f64(t)
        kept = np.ones(x.shape[:1] + x.shape[2:], bool)
        denominator = float(kept.size)
    else:
        idx = t.astype(np.int64)
        kept = np.ones(t.shape, bool) if ignore_index is None else idx != ignore_index
        safe = np.where(kept, idx, 0)
        q = (np.expand_dims(safe, 1) == np.arange(c).reshape((1, c) + (1,) * (x.ndim - 2))).astype(np.float64)
        denominator = float(np.sum(np.where(kept, w[safe], 0.0))) if weighted_mean else float(np.count_nonzero(kept))
    if label_smoothing:
        q = q * (1.0 - label_smoothing) + label_smoothing / c
    loss = np.where(kept, np.sum(q * w_axis * term, axis=1), 0.0)
    return _reduce(loss, reduction, denominator)


def poly_cross_entropy(input, target, *, epsilon=2.0, weight=None, ignore_index=-100, reduction="mean",
                       label_smoothing=0.0) -> np.ndarray:
    """sum_c w_c q_c [-log p_c + epsilon (1 - p_c)]; PyTorch's weighted mean with class indices."""
    return _poly_softmax(input, target, epsilon=epsilon, gamma=0.0, class_weight=weight, ignore_index=ignore_index,
                         label_smoothing=label_smoothing, reduction=reduction, weighted_mean=True)


def poly_softmax_focal_loss(input, target, *, epsilon=1.0, gamma=2.0, alpha=None, ignore_index=-100,
                            label_smoothing=0.0, reduction="mean") -> np.ndarray:
    """sum_c alpha_c q_c [FL_c + epsilon (1 - p_c)^(gamma + 1)]; a scalar alpha scales every class; plain mean."""
    x = _f64(input)
    if alpha is not None and np.ndim(alpha) == 0:
        alpha = np.full(x.shape[1], float(alpha))
    return _poly_softmax(x, target, epsilon=epsilon, gamma=gamma, class_weight=alpha, ignore_index=ignore_index,
                         label_smoothing=label_smoothing, reduction=reduction, weighted_mean=False)


REFERENCES = {
    "asymmetric_loss": asymmetric_loss,
    "poly_cross_entropy": poly_cross_entropy,
    "poly_softmax_focal_loss": poly_softmax_focal_loss,
    "poly_sigmoid_focal_loss": poly_sigmoid_focal_loss,
}
