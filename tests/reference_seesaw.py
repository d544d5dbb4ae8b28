"""Float64 NumPy references of the long-tail losses with statistics (seesaw_loss, eqlv2_loss), from the papers.

Nothing here imports losslab or torch. Seesaw is written as the paper's ratio form (the probabilities
reweighted in the denominator), not the log-space shift losslab uses; EQLv2 elementwise from its weights.
tests/reference.py adds :data:`REFERENCES` to its own table.
"""

from __future__ import annotations

import numpy as np


def _reduce(loss: np.ndarray, reduction: str, denominator: float) -> np.ndarray:
    if reduction == "none":
        return loss
    total = loss.sum()
    if reduction == "sum":
        return np.asarray(total)
    return np.asarray(total / (denominator if denominator > 0 else 1.0))


def seesaw_loss(input, target, *, class_counts, p=0.8, q=2.0, eps=1e-2, weight=None, ignore_index=-100,
                reduction="mean", dist_sync=False) -> np.ndarray:
    """-log( e^{x_i} / (e^{x_i} + sum_{j != i} M_ij C_ij e^{x_j}) ), M = min(1, N_j/N_i)^p,
    C = max(1, s_j / max(s_i, eps))^q, s = softmax(x); weighted mean by weight[target] over kept positions."""
    x = np.moveaxis(np.asarray(input, dtype=np.float64), 1, -1)  # (..., C)
    c = x.shape[-1]
    x = x.reshape(-1, c)
    t = np.asarray(target).reshape(-1)
    n = np.maximum(np.asarray(class_counts, dtype=np.float64), 1.0)
    w = np.ones(c) if weight is None else np.asarray(weight, dtype=np.float64)
    loss = np.zeros(len(t))
    den = 0.0
    for k in range(len(t)):
        i = int(t[k])
        if ignore_index is not None and i == ignore_index:
            continue
        z = x[k] - x[k].max()
        e = np.exp(z)
        s = e / e.sum()
        factor = np.ones(c)
        for j in range(c):
            if j == i:
                continue
            mitigation = min(1.0, n[j] / n[i]) ** p
            compensation = max(1.0, s[j] / max(s[i], eps)) ** q
            factor[j] = mitigation * compensation
        # e^{x_i} / sum_j factor_j e^{x_j}, in the max-shifted scale
        loss[k] = w[i] * -(z[i] - np.log(np.sum(factor * e)))
        den += w[i]
    shape = np.asarray(target).shape
    return _reduce(loss.reshape(shape), reduction, den)


def eqlv2_loss(input, target, *, pos_neg, gamma=12.0, mu=0.8, alpha=4.0, reduction="mean",
               dist_sync=False) -> np.ndarray:
    """w_nj BCE(x_nj, t_nj), w = t w+ + (1 - t) w-, w- = sigmoid(gamma (g - mu)), w+ = 1 + alpha (1 - w-),
    both 1 on the background (last) column; "mean" divides by N."""
    x = np.asarray(input, dtype=np.float64)
    n, c1 = x.shape
    t = np.zeros((n, c1))
    t[np.arange(n), np.asarray(target).astype(int)] = 1.0
    g = np.asarray(pos_neg, dtype=np.float64)
    neg = np.concatenate([1.0 / (1.0 + np.exp(-gamma * (g - mu))), [1.0]])
    pos = 1.0 + alpha * (1.0 - neg)
    w = t * pos + (1.0 - t) * neg
    bce = np.logaddexp(0.0, x) - t * x  # -t log s(x) - (1 - t) log(1 - s(x))
    return _reduce(w * bce, reduction, float(n))


REFERENCES = {"seesaw_loss": seesaw_loss, "eqlv2_loss": eqlv2_loss}
