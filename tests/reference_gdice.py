"""Float64 NumPy reference of generalized_dice_loss, written from Sudre et al.'s formula.

p and t as for every overlap loss (tests/reference.py's ``_seg_inputs``: sigmoid or softmax, one-hot targets,
ignored elements removed); class 0 dropped without the background; per class (per image with per_image) the
sums I = sum p t, P = sum p, T = sum t; the raw weights 1 / T^q (q = 2, 1, 0), an absent class's infinite weight
replaced by the largest finite one, every class weighted alike when none is present; the weights divided by
their sum; loss 1 - (2 sum w I + s) / (sum w (P + T) + s), a 0/0 counted as a perfect match.
"""

from __future__ import annotations

import numpy as np

_POWERS = {"square": 2.0, "simple": 1.0, "uniform": 0.0}


def class_weights(volume: np.ndarray, weight_type: str) -> np.ndarray:
    """Sudre et al.'s weights along the last axis, absent classes at the largest finite weight, summing to 1."""
    q = _POWERS[weight_type]
    volume = np.asarray(volume, dtype=np.float64)
    with np.errstate(divide="ignore"):
        raw = np.where(volume > 0, 1.0 / np.where(volume > 0, volume, 1.0) ** q, np.inf) if q else \
            np.ones_like(volume)
    finite = np.where(np.isfinite(raw), raw, -np.inf)
    largest = np.max(finite, axis=-1, keepdims=True) if raw.shape[-1] else np.zeros(raw.shape[:-1] + (1,))
    largest = np.where(np.isfinite(largest), largest, 1.0)  # no class present: every class alike
    raw = np.where(np.isfinite(raw), raw, largest)
    total = np.sum(raw, axis=-1, keepdims=True)
    return raw / np.where(total > 0, total, 1.0)


def generalized_dice_loss(input, target, *, mode, weight_type="square", from_logits=True, smooth=1e-5, eps=1e-7,
                          ignore_index=None, include_background=True, per_image=False,
                          reduction="mean") -> np.ndarray:
    from .reference import _reduce, _seg_inputs  # (tests/reference.py imports this module at its end)

    p, t, _ = _seg_inputs(input, target, mode, from_logits, ignore_index)
    if not include_background and mode != "binary":
        p, t = p[:, 1:], t[:, 1:]
    axes = tuple(range(2, p.ndim)) if per_image else (0, *range(2, p.ndim))
    intersection, predicted, volume = np.sum(p * t, axis=axes), np.sum(p, axis=axes), np.sum(t, axis=axes)
    w = class_weights(volume, weight_type)
    smooth, eps = float(smooth), float(eps)
    num = 2.0 * np.sum(w * intersection, axis=-1) + smooth
    den = np.sum(w * (predicted + volume), axis=-1) + smooth
    score = np.where(den > 0, num / np.where(den > 0, np.maximum(den, eps), 1.0), 1.0)
    loss = np.asarray(1.0 - score)
    return _reduce(loss, reduction)  # () or (N,): "mean" over images


REFERENCES = {"generalized_dice_loss": generalized_dice_loss}
