"""Float64 NumPy references of the long-tail losses (losslab.longtail), written from the papers' formulas.

Each adjusts the logits as its paper does, then takes the cross-entropy of
tests/reference.py (an independent NumPy softmax cross-entropy).
"""

from __future__ import annotations

import numpy as np


def _counts(class_counts) -> np.ndarray:
    return np.maximum(np.asarray(class_counts, dtype=np.float64), 1.0)  # a zero count counts as 1


def _class_shape(x: np.ndarray) -> tuple[int, ...]:
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


def _ce(z, target, *, weight, ignore_index, reduction, label_smoothing) -> np.ndarray:
    from .reference import cross_entropy

    return cross_entropy(z, target, weight=weight, ignore_index=ignore_index, reduction=reduction,
                         label_smoothing=label_smoothing)


def logit_adjusted_cross_entropy(input, target, *, class_counts, tau=1.0, weight=None, ignore_index=-100,
                                 reduction="mean", label_smoothing=0.0) -> np.ndarray:
    """Menon et al.: CE(x + tau log pi)."""
    x = np.asarray(input, dtype=np.float64)
    n = _counts(class_counts)
    z = x + tau * np.log(n / n.sum()).reshape(_class_shape(x))
    return _ce(z, target, weight=weight, ignore_index=ignore_index, reduction=reduction,
               label_smoothing=label_smoothing)


def ldam_loss(input, target, *, class_counts, max_margin=0.5, scale=30.0, weight=None, ignore_index=-100,
              reduction="mean", label_smoothing=0.0) -> np.ndarray:
    """Cao et al.: m_c = 1 / n_c^(1/4), rescaled to a largest margin of max_margin; CE(s (x - m_y onehot(y)))."""
    x = np.asarray(input, dtype=np.float64)
    t = np.asarray(target)
    m = 1.0 / np.sqrt(np.sqrt(_counts(class_counts)))
    m = m * (max_margin / np.max(m))
    safe = np.where(t == ignore_index, 0, t) if ignore_index is not None else t
    onehot = np.moveaxis(safe[..., None] == np.arange(x.shape[1]), -1, 1)
    z = scale * (x - onehot * np.expand_dims(m[safe], 1))
    return _ce(z, target, weight=weight, ignore_index=ignore_index, reduction=reduction,
               label_smoothing=label_smoothing)


def vs_loss(input, target, *, class_counts, gamma=0.2, tau=1.0, weight=None, ignore_index=-100,
            reduction="mean", label_smoothing=0.0) -> np.ndarray:
    """Kini et al.'s code: x / Delta + iota, Delta_c = (n_max / n_c)^gamma, iota_c = tau log pi_c."""
    x = np.asarray(input, dtype=np.float64)
    n = _counts(class_counts)
    delta = (1.0 / n) ** gamma
    delta = delta / np.min(delta)
    iota = tau * np.log(n / n.sum())
    z = x / delta.reshape(_class_shape(x)) + iota.reshape(_class_shape(x))
    return _ce(z, target, weight=weight, ignore_index=ignore_index, reduction=reduction,
               label_smoothing=label_smoothing)


REFERENCES = {
    "logit_adjusted_cross_entropy": logit_adjusted_cross_entropy,
    "ldam_loss": ldam_loss,
    "vs_loss": vs_loss,
}
