"""Float64 NumPy references of the Lovász losses (lovasz_softmax_loss, lovasz_hinge_loss), from the formulas.

One class (or image) at a time, ignored pixels removed first, as in Berman et al.'s Algorithm 1: sort the
errors in decreasing order, J_k = 1 - (G - F_k) / (G + k - F_k) with G the foreground count and F_k the
foreground among the first k, and the loss is sum_k m_k (J_k - J_{k-1}). tests/reference.py adds
:data:`REFERENCES` to its own table.
"""

from __future__ import annotations

import numpy as np


def lovasz_extension(errors: np.ndarray, foreground: np.ndarray) -> float:
    """The Lovász extension of the Jaccard loss at ``errors`` (1-D), foreground 0/1 of the same length."""
    if errors.size == 0:
        return 0.0
    order = np.argsort(-errors, kind="stable")
    m, f = errors[order], foreground[order].astype(np.float64)
    total = f.sum()
    loss, previous = 0.0, 0.0
    for k in range(1, m.size + 1):
        fk = f[:k].sum()
        jaccard = 1.0 - (total - fk) / (total + k - fk)
        loss += m[k - 1] * (jaccard - previous)
        previous = jaccard
    return float(loss)


def _softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def lovasz_softmax_loss(input, target, *, classes="present", per_image=False, ignore_index=None, from_logits=True,
                        reduction="mean", dist_sync=False):
    x = np.asarray(input, dtype=np.float64)
    y = np.asarray(target)
    n, c = x.shape[:2]
    pixels = int(np.prod(x.shape[2:]))
    p = (_softmax(x) if from_logits else x).reshape(n, c, pixels)
    y = y.reshape(n, pixels)
    ids = list(range(c)) if isinstance(classes, str) else [int(k) for k in classes]
    groups = [(p[i:i + 1], y[i:i + 1]) for i in range(n)] if per_image else [(p, y)]
    losses = np.zeros((len(groups), len(ids)))
    counted = np.zeros((len(groups), len(ids)), dtype=bool)
    for g, (pg, yg) in enumerate(groups):
        probs = np.moveaxis(pg, 1, -1).reshape(-1, c)  # (pixels, C)
        labels = yg.reshape(-1)
        if ignore_index is not None:
            keep = labels != ignore_index
            probs, labels = probs[keep], labels[keep]
        if labels.size == 0:
            continue  # nothing kept: nothing counts
        for j, k in enumerate(ids):
            fg = (labels == k).astype(np.float64)
            if classes == "present" and fg.sum() == 0:
                continue
            counted[g, j] = True
            losses[g, j] = lovasz_extension(np.abs(fg - probs[:, k]), fg)
    if not per_image:
        losses, counted = losses[0], counted[0]
    if reduction == "none":
        return losses
    if reduction == "sum":
        return np.asarray(losses.sum())
    if not per_image:
        return np.asarray(losses.sum() / max(counted.sum(), 1))
    images = [losses[i].sum() / counted[i].sum() for i in range(n) if counted[i].any()]
    return np.asarray(sum(images) / max(len(images), 1))


def lovasz_hinge_loss(input, target, *, per_image=True, ignore_index=None, reduction="mean", dist_sync=False):
    x = np.asarray(input, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    n = x.shape[0]
    pixels = int(np.prod(x.shape[1:]))
    x, t = x.reshape(n, pixels), t.reshape(n, pixels)
    groups = [(x[i], t[i]) for i in range(n)] if per_image else [(x.reshape(-1), t.reshape(-1))]
    losses, counted = np.zeros(len(groups)), np.zeros(len(groups), dtype=bool)
    for g, (xg, tg) in enumerate(groups):
        if ignore_index is not None:
            keep = tg != ignore_index
            xg, tg = xg[keep], tg[keep]
        if tg.size == 0:
            continue
        counted[g] = True
        losses[g] = lovasz_extension(np.maximum(1.0 - xg * (2.0 * tg - 1.0), 0.0), tg)
    if not per_image:
        losses, counted = losses.reshape(()), counted.reshape(())
    if reduction == "none":
        return losses
    if reduction == "sum":
        return np.asarray(losses.sum())
    return np.asarray(losses.sum() / max(counted.sum(), 1))


REFERENCES = {"lovasz_softmax_loss": lovasz_softmax_loss, "lovasz_hinge_loss": lovasz_hinge_loss}
