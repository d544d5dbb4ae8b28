"""Where a batch's loss comes from, class by class, before and after alpha weighting (``losslab contributions``)."""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._checks import describe, is_number, shape_str
from ._losses import (
    COUNTS_KEY,
    SIGMOID_LOSSES,
    WEIGHT_METHODS,
    accepts,
    build_loss,
    classification_loss,
    count_losses,
    feed,
    input_kind,
    is_focal,
    is_sigmoid,
    parse_counts,
    resolve_class_weights,
    takes_counts,
)

__all__ = ["Contributions", "contributions", "demo_batch"]

FN = "contributions"
COLUMNS = ("class", "count", "share", "loss before", "share before", "loss after", "share after", "mean before",
           "mean after")


@dataclass(frozen=True)
class Contributions:
    """The per-class breakdown of a batch's loss, as plain Python data (see :func:`contributions`).

    Attributes:
        loss: the canonical name of the loss.
        name: the name it was asked for by (an alias, or the canonical name).
        options: what was passed: ``alpha`` (None, a float or a list of C
            floats, after resolving a method name), ``alpha_method`` (the
            method name or mapping, else None), ``alpha_argument`` (the loss's
            keyword that received alpha: "alpha" or "weight", None without
            alpha), ``gamma`` (None for a loss without a focusing gamma), for a
            loss that takes class counts ``class_counts`` (the C counts it
            was given) and ``counts_from`` ("batch" or "option"), and the other
            keyword arguments (tensors as lists).
        classes: one dict per class, in class order: ``class`` (int),
            ``label`` (str; "background" for index C of a sigmoid loss),
            ``count``, ``share`` (of the kept examples), ``sum_before``,
            ``share_before``, ``sum_after``, ``share_after``, ``mean_before``,
            ``mean_after``. A share whose denominator is 0, and the means of a
            class with no examples, are None.
        count: the number of kept examples (not ``ignore_index``).
        ignored: the number of examples left out as ``ignore_index``.
        total_before, total_after: the summed loss over kept examples.
        mean_before, mean_after: total / count (None for no kept examples).
    """

    loss: str
    name: str
    options: dict[str, Any]
    classes: list[dict[str, Any]]
    count: int
    ignored: int
    total_before: float
    total_after: float
    mean_before: float | None
    mean_after: float | None

    def to_dict(self) -> dict[str, Any]:
        """Every field as JSON-serialisable data (a deep copy)."""
        return json.loads(json.dumps({
            "loss": self.loss, "name": self.name, "options": self.options, "classes": self.classes,
            "count": self.count, "ignored": self.ignored, "total_before": self.total_before,
            "total_after": self.total_after, "mean_before": self.mean_before, "mean_after": self.mean_after}))

    def title(self) -> str:
        """One line naming the loss and its alpha and gamma: ``softmax_focal_loss (gamma=2, alpha=inverse)``.

        A loss that takes class counts says where they came from: ``ldam_loss (counts from the batch, no alpha)``.
        """
        parts = [] if self.options.get("gamma") is None else [f"gamma={self.options['gamma']:g}"]
        if self.options.get("counts_from") == "batch":
            parts.append("counts from the batch")
        elif self.options.get("counts_from") == "option":
            parts.append("class_counts=" + ",".join(f"{c:g}" for c in self.options[COUNTS_KEY]))
        alpha, method = self.options.get("alpha"), self.options.get("alpha_method")
        if alpha is None:
            parts.append("no alpha")
        elif method is not None:
            parts.append(f"alpha={method if isinstance(method, str) else json.dumps(method)}")
        else:
            parts.append(f"alpha={_format_alpha(alpha)}")
        name = self.loss if self.name == self.loss else f"{self.loss} (as {self.name!r})"
        return f"{name} ({', '.join(parts)})"

    def _alpha_line(self) -> list[str]:
        alpha = self.options.get("alpha")
        if alpha is None:
            return []
        return [f"alpha: {_format_alpha(alpha)} (passed as {self.options['alpha_argument']})"]

    def _means_line(self) -> str:
        ignored = f", {self.ignored} ignored" if self.ignored else ""
        return (f"mean loss per example ({self.count} examples{ignored}): before {_num(self.mean_before, 4)}, "
                f"after {_num(self.mean_after, 4)} (total {_num(self.total_before, 3)} before, "
                f"{_num(self.total_after, 3)} after)")

    def _cells(self) -> list[list[str]]:
        return [[row["label"], str(row["count"]), _pct(row["share"]), _num(row["sum_before"], 3),
                 _pct(row["share_before"]), _num(row["sum_after"], 3), _pct(row["share_after"]),
                 _num(row["mean_before"], 4), _num(row["mean_after"], 4)] for row in self.classes]

    def to_markdown(self) -> str:
        """A Markdown table, one row per class, with the loss and alpha above it and the overall means below."""
        lines = [f"**{self.title()}**", ""]
        lines += [f"{line[0].upper()}{line[1:]}.\n" for line in self._alpha_line()]
        lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "---:|" * len(COLUMNS)]
        lines += ["| " + " | ".join(cells) + " |" for cells in self._cells()]
        means = self._means_line()
        return "\n".join(lines + ["", f"{means[0].upper()}{means[1:]}."])

    def __str__(self) -> str:
        return "\n".join([self.title(), *self._alpha_line(), _text_table(list(COLUMNS), self._cells()),
                          self._means_line()])


def contributions(
    logits: Tensor | np.ndarray,
    target: Tensor | np.ndarray,
    *,
    loss: str = "cross_entropy",
    alpha: float | Sequence[float] | Tensor | str | Mapping[str, Any] | None = None,
    gamma: float = 2.0,
    class_counts: Sequence[float] | Tensor | np.ndarray | str | None = None,
    **loss_kwargs: Any,
) -> Contributions:
    r"""Split a batch's loss by class: count, summed loss and share, before and after alpha weighting.

    .. math::

        \mathrm{share}_c = \frac{\sum_{n:\, y_n = c} \ell_n}{\sum_n \ell_n}, \qquad
        \mathrm{mean}_c = \frac{1}{|\{n: y_n = c\}|} \sum_{n:\, y_n = c} \ell_n

    where :math:`\ell_n` is the per-example loss (``reduction="none"``) without
    alpha ("before") and with it ("after"); examples whose target is
    ``ignore_index`` are left out of every count and sum. For softmax losses
    with per-class alpha (and no label smoothing),
    :math:`\ell^{\text{after}}_n = \alpha_{y_n} \ell^{\text{before}}_n`.

    Where alpha goes (the trap: losses disagree on what alpha weights):

    * a float: the loss's scalar ``alpha`` (sigmoid_focal_loss: weight of the
      positive terms; softmax_focal_loss: every class alike; balanced_cross_entropy:
      its sigmoid form). A loss without ``alpha`` rejects it.
    * C per-class weights, or a method name ("inverse", "inverse_sqrt",
      "effective_number", "median_frequency", or ``{"method": ..., "beta": ...}``)
      resolved from this batch's class counts with
      :func:`losslab.class_weights` (``normalize="mean"``: the weights average
      1): the ``alpha`` of softmax_focal_loss and balanced_cross_entropy, the
      ``weight`` of cross_entropy and nll_loss, and the ``weight`` along the
      class dimension of the sigmoid losses (binary_cross_entropy,
      sigmoid_focal_loss), where weight c scales class c's binary term of
      every example, not the example's loss as a whole.

    "Before" passes ``alpha=None`` explicitly (sigmoid_focal_loss's default is
    0.25, an alias may preset one); for balanced_cross_entropy, whose alpha is
    required, "before" is cross-entropy (alpha of ones) or, with a float
    alpha, binary cross-entropy (twice alpha = 0.5). Without alpha, before
    equals after.

    Losses that need the examples per class (logit_adjusted_cross_entropy
    and its presets "Balanced Softmax", "BALMS"; ldam_loss; vs_loss;
    seesaw_loss) get ``class_counts``, else this batch's counts of kept
    targets, ``losslab.class_counts(target, C)`` (a class absent from the
    batch counts 0, which these losses count as 1). seesaw_loss is computed
    by its functional with those counts: its module's running counts would
    start from zero and hold only this batch's labels, the same counts.

    Args:
        logits: (N, C) or (N, C, d1, ..., dk) raw scores, finite. Each loss is
            fed the input it declares: these logits, their softmax (or
            sigmoids) for a loss or alias that takes probabilities
            ("BCELoss", ``from_logits=False``), their log-softmax for one that
            takes log-probabilities ("nll_loss"). Dense inputs count every
            position as an example (C moved last, flattened).
        target: integer class indices (N, d1, ..., dk) in [0, C) or
            ``ignore_index``; sigmoid losses also take C (background: no class).
        loss: the name or any alias of a classification or focal loss.
        alpha: None, a float, C per-class weights or a method name (above).
        gamma: focusing parameter, passed to the focal losses; a value
            other than 2.0 for another loss is an error (vs_loss's gamma, the
            exponent of its logit scaling, keeps its default 0.2).
        class_counts: C counts (a sequence, tensor, array, or text
            "500,120,30,6") for the losses that take class counts, in place
            of the batch's; an error for any other loss. Alpha's methods
            ("inverse", ...) still weigh the batch's counts.
        **loss_kwargs: other keyword arguments of the loss (ignore_index,
            label_smoothing, pos_weight, ...); not reduction.

    Returns:
        A :class:`Contributions` with one row per class (and a "background"
        row for sigmoid losses given targets equal to C). Per example, a
        sigmoid loss is summed over its C binary terms; the overall means are
        the totals over the number of kept examples, which is not the loss's
        own "mean" reduction (that divides by N * C for sigmoid losses, by the
        sum of the targets' weights for cross_entropy with weight).

    Raises:
        TypeError: non-floating logits, non-integer targets, sparse or meta
            tensors, alpha of another type.
        ValueError: NaN or infinite logits, a loss that is not a classification loss, a target shape
            that does not match the logits, class indices out of range, alpha
            of the wrong length, an unknown method, gamma for a loss without
            gamma, a float alpha for a loss without alpha, ``reduction`` in
            ``loss_kwargs``, ``weight`` in ``loss_kwargs`` when alpha goes to
            weight, class_counts that are not C non-negative numbers or given
            to a loss without class counts; and the loss's own errors.

    References:
        Lin, Goyal, Girshick, He, Dollar. Focal Loss for Dense Object Detection.
        ICCV 2017, arXiv:1708.02002.
        Cui, Jia, Lin, Song, Belongie. Class-Balanced Loss Based on Effective
        Number of Samples. CVPR 2019, arXiv:1901.05555.

    Example:
        >>> from losslab.lab import contributions, demo_batch
        >>> logits, target = demo_batch(seed=0)
        >>> plain = contributions(logits, target)
        >>> focal = contributions(logits, target, loss="softmax_focal_loss", alpha="inverse", gamma=2.0)
        >>> [row["count"] for row in focal.classes] == [int((target == c).sum()) for c in range(5)]
        True
        >>> round(sum(row["share_after"] for row in focal.classes), 9)
        1.0
        >>> focal.classes[4]["share_after"] > plain.classes[4]["share_after"]  # the rarest class gains
        True

    Numerics: the logits are cast to float64 and nothing keeps a gradient
    (this is an analysis, not a training loss); sums are float64 and reported
    as Python floats.
    """
    spec, _ = classification_loss(loss, caller=FN)
    x, y = _flatten(logits, target)
    num_classes = x.shape[1]
    if "reduction" in loss_kwargs:
        raise ValueError(f"{FN}: reduction is not an option here (the per-example losses are used); "
                         f"got reduction={loss_kwargs['reduction']!r}")
    options = dict(loss_kwargs)
    if is_focal(spec):
        options["gamma"] = gamma
    elif not (is_number(gamma) and gamma == 2.0):
        what = "no focusing gamma" if accepts(spec, "gamma") else "no gamma"
        raise ValueError(f"{FN}: {spec.name} has {what} (a focal loss has); got gamma={gamma!r}")
    counts_from = None
    if takes_counts(spec):
        counts_from = "batch" if class_counts is None else "option"
        if class_counts is not None:
            options[COUNTS_KEY] = parse_counts(class_counts, caller=FN)
            if len(options[COUNTS_KEY]) != num_classes:
                raise ValueError(f"{FN}: class_counts must hold C = {num_classes} counts, one per class of the "
                                 f"logits; got {len(options[COUNTS_KEY])}")
    elif class_counts is not None:
        raise ValueError(f"{FN}: {spec.name} takes no class counts (class_counts is for "
                         f"{', '.join(count_losses())})")
    default_ignore = inspect.signature(spec.function).parameters.get("ignore_index")
    ignore_index = options.get("ignore_index", default_ignore.default if default_ignore is not None else None)

    if isinstance(alpha, (Tensor, np.ndarray)) and alpha.ndim == 0:
        alpha = alpha.item()
    if is_number(alpha):
        alpha = float(alpha)
    sigmoid = is_sigmoid(spec, {"alpha": alpha})
    kind = input_kind(loss, options)
    high = num_classes + 1 if sigmoid else num_classes  # sigmoid losses: index C is background
    kept = y != ignore_index if ignore_index is not None else torch.ones_like(y, dtype=torch.bool)
    bad = kept & ((y < 0) | (y >= high))
    if bool(bad.any()):
        allowed = f"[0, {high})" + (f" (index {num_classes} is background)" if sigmoid else "")
        ignore = f" or ignore_index={ignore_index}" if ignore_index is not None else ""
        raise ValueError(f"{FN}: target class indices must be in {allowed}{ignore}; got {int(y[bad][0])}")
    counts = torch.bincount(y[kept], minlength=high)
    alpha_value, method = _resolve_alpha(alpha, counts[:num_classes], num_classes)

    argument = None
    before_extra: dict[str, Any] = {"alpha": None} if accepts(spec, "alpha") else {}
    after_extra = dict(before_extra)
    if alpha_value is not None:
        if isinstance(alpha_value, float):
            argument = "alpha" if accepts(spec, "alpha") else None
        else:
            argument = "alpha" if accepts(spec, "alpha") and spec.name not in SIGMOID_LOSSES else "weight"
        if argument is None:
            raise ValueError(f"{FN}: {spec.name} has no scalar alpha; give per-class alpha (C numbers or a method "
                             f"name, passed as its weight); got alpha={alpha_value!r}")
        if argument == "weight" and "weight" in options:
            raise ValueError(f"{FN}: alpha goes to {spec.name}'s weight, which loss_kwargs already sets; "
                             "give one of them")
        after_extra[argument] = alpha_value
    scale = 1.0
    if spec.name == "balanced_cross_entropy":  # alpha is required: "before" is (binary) cross-entropy
        before_extra["alpha"], scale = (0.5, 2.0) if sigmoid else ([1.0] * num_classes, 1.0)
        if alpha_value is None:
            after_extra = before_extra

    def per_example(extra: dict[str, Any], factor: float) -> Tensor:
        module, _ = build_loss(loss, {**options, **extra, "reduction": "none"}, counts[:num_classes], caller=FN)
        with torch.no_grad():
            out = module(feed(x, kind, sigmoid=sigmoid), y).to(torch.float64)
        out = out.sum(dim=1) if out.ndim == 2 else out  # sigmoid losses: (M, C) binary terms per example
        return torch.where(kept, out * factor, torch.zeros((), dtype=torch.float64))

    before = per_example(before_extra, scale)
    after = per_example(after_extra, 1.0 if after_extra is not before_extra else scale)
    if counts_from == "batch":
        options[COUNTS_KEY] = [int(c) for c in counts[:num_classes]]
    if counts_from is not None:
        options["counts_from"] = counts_from
    return _result(spec.name, loss, counts, kept, y, before, after, num_classes,
                   _jsonable({**options, "alpha": alpha_value, "alpha_method": method, "alpha_argument": argument,
                              "gamma": gamma if is_focal(spec) else None}))


def demo_batch(seed: int = 0, *, n: int = 64, num_classes: int = 5, ratio: float = 0.7) -> tuple[Tensor, Tensor]:
    r"""A seeded synthetic long-tailed batch: standard normal logits and targets with :math:`P(y = c) \propto r^c`.

    Args:
        seed: an int, the seed of the ``torch.Generator`` that draws the targets, then the logits.
        n: batch size N >= 1.
        num_classes: C >= 1.
        ratio: r in (0, 1]: each class is r times as likely as the one before.

    Returns:
        ``(logits, target)``: float32 (N, C) and int64 (N,), the same for the same arguments.

    Raises:
        TypeError: a seed that is not an int.
        ValueError: n or num_classes below 1, ratio outside (0, 1].

    Example:
        >>> logits, target = demo_batch()
        >>> tuple(logits.shape), target.dtype, int(target.max()) < 5
        ((64, 5), torch.int64, True)
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"demo_batch: seed must be an int; got {describe(seed)}")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"demo_batch: n must be an int >= 1; got {n!r}")
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"demo_batch: num_classes must be an int >= 1; got {num_classes!r}")
    if not is_number(ratio) or not 0 < ratio <= 1:
        raise ValueError(f"demo_batch: ratio must be a number in (0, 1]; got {ratio!r}")
    generator = torch.Generator().manual_seed(seed)
    probabilities = float(ratio) ** torch.arange(num_classes, dtype=torch.float64)
    target = torch.multinomial(probabilities, n, replacement=True, generator=generator)
    logits = torch.randn(n, num_classes, generator=generator, dtype=torch.float32)
    return logits, target


# ----------------------------------------------------------------------------
# helpers of contributions


def _flatten(logits: Any, target: Any) -> tuple[Tensor, Tensor]:
    """(M, C) float64 logits and (M,) int64 targets on the CPU, C moved last for dense inputs."""
    if isinstance(logits, np.ndarray):
        logits = torch.from_numpy(logits)
    if isinstance(target, np.ndarray):
        target = torch.from_numpy(target)
    if not isinstance(logits, Tensor) or not logits.dtype.is_floating_point:
        raise TypeError(f"{FN}: logits must be a floating-point tensor or array; got {describe(logits)}")
    if not isinstance(target, Tensor) or target.dtype.is_floating_point or target.dtype.is_complex \
            or target.dtype == torch.bool:
        raise TypeError(f"{FN}: target must be integer class indices; got {describe(target)} "
                        "(cast integral float labels with .long() or .astype(int))")
    for what, value in (("logits", logits), ("target", target)):
        if value.layout != torch.strided:
            raise TypeError(f"{FN}: {what} must be a dense tensor; got a {str(value.layout).replace('torch.', '')} "
                            "tensor (convert it with .to_dense())")
        if value.device.type == "meta":
            raise TypeError(f"{FN}: {what} must hold values; got a tensor on the meta device (shape only)")
    if logits.ndim < 2:
        raise ValueError(f"{FN}: logits must have shape (N, C) or (N, C, d1, ...); got {shape_str(logits.shape)}")
    expected = (logits.shape[0], *logits.shape[2:])
    if tuple(target.shape) != expected:
        raise ValueError(f"{FN}: target shape {shape_str(target.shape)} does not match logits "
                         f"{shape_str(logits.shape)}; expected {shape_str(expected)}")
    x = logits.detach().to("cpu", torch.float64).movedim(1, -1).reshape(-1, logits.shape[1])
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        bad = x[~finite]
        raise ValueError(f"{FN}: logits must be finite; got {int(bad.numel())} NaN or infinite values "
                         f"(the first is {float(bad[0])})")
    return x, target.detach().to("cpu", torch.int64).reshape(-1)


def _resolve_alpha(alpha: Any, counts: Tensor, num_classes: int) -> tuple[float | list[float] | None, Any]:
    """(alpha as None, a float or a list of C floats; the method it came from, else None)."""
    if alpha is None:
        return None, None
    if isinstance(alpha, (str, Mapping)):
        if isinstance(alpha, str) and alpha not in WEIGHT_METHODS:
            raise ValueError(f"{FN}: alpha must be numbers or one of {', '.join(map(repr, WEIGHT_METHODS))}; "
                             f"got {alpha!r}")
        weights = resolve_class_weights(alpha, counts, caller=FN, key="alpha")
        return [float(w) for w in weights], dict(alpha) if isinstance(alpha, Mapping) else alpha
    if is_number(alpha):
        return float(alpha), None
    if isinstance(alpha, (Tensor, np.ndarray)):
        alpha = alpha.tolist()
    if isinstance(alpha, Sequence) and all(is_number(a) for a in alpha):
        if len(alpha) != num_classes:
            raise ValueError(f"{FN}: per-class alpha must have C = {num_classes} values; got {len(alpha)}")
        return [float(a) for a in alpha], None
    raise TypeError(f"{FN}: alpha must be None, a float, {num_classes} per-class weights or a method name; "
                    f"got {describe(alpha)}")


def _result(loss: str, name: str, counts: Tensor, kept: Tensor, y: Tensor, before: Tensor, after: Tensor,
            num_classes: int, options: dict[str, Any]) -> Contributions:
    size = counts.shape[0]
    sums_before = torch.zeros(size, dtype=torch.float64).index_add_(0, y[kept], before[kept])
    sums_after = torch.zeros(size, dtype=torch.float64).index_add_(0, y[kept], after[kept])
    count, total_before, total_after = int(kept.sum()), float(before.sum()), float(after.sum())
    classes = []
    for c in range(size):
        n_c, s_b, s_a = int(counts[c]), float(sums_before[c]), float(sums_after[c])
        if c == num_classes and n_c == 0:
            break  # the background row appears only where background targets do
        classes.append({
            "class": c, "label": "background" if c == num_classes else str(c), "count": n_c,
            "share": _ratio(n_c, count), "sum_before": s_b, "share_before": _ratio(s_b, total_before),
            "sum_after": s_a, "share_after": _ratio(s_a, total_after),
            "mean_before": _ratio(s_b, n_c), "mean_after": _ratio(s_a, n_c)})
    return Contributions(loss=loss, name=name, options=options, classes=classes, count=count,
                         ignored=int(kept.numel()) - count, total_before=total_before, total_after=total_after,
                         mean_before=_ratio(total_before, count), mean_after=_ratio(total_after, count))


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def _jsonable(value: Any) -> Any:
    if isinstance(value, (Tensor, np.ndarray)):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value + 0.0:.{digits}f}"  # + 0.0: no "-0.000"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value + 0.0:.1f}%"


def _format_alpha(alpha: float | list[float]) -> str:
    return f"{alpha:g}" if isinstance(alpha, float) else "[" + ", ".join(f"{a:.3g}" for a in alpha) + "]"


def _text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(r, widths, strict=True)) for r in [header, *rows])
