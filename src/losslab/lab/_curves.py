r"""``losslab plot``: what a classification loss looks like against the probability of the true class.

Three curves per loss, for each focusing parameter gamma: the loss of one
positive example, its modulating factor and its gradient with respect to the
logit, all against :math:`p_t`, the probability the model gives the true class.
This is Figure 1 of the focal-loss paper, extended to every registered
classification loss. A loss that needs the examples per class (logit
adjustment, LDAM, VS, Seesaw) is drawn for a class-count profile, by default
two classes of 100 and 10 examples, with one curve per true class (head and tail).
"""

from __future__ import annotations

import inspect
import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ._losses import (
    COUNTS_KEY,
    accepts,
    build_loss,
    classification_loss,
    count_losses,
    feed,
    input_kind,
    is_focal,
    is_sigmoid,
    parse_counts,
    takes_counts,
)

if TYPE_CHECKING:  # matplotlib is imported inside the functions that draw
    from matplotlib.figure import Figure

__all__ = ["loss_curves", "plot_curves"]

DEFAULT_LOSS = "softmax_focal_loss"
DEFAULT_GAMMAS = (0.0, 0.5, 1.0, 2.0, 5.0)
# The class-count profile of a loss that needs one, unless class_counts is given: a head class of 100
# examples and a tail class of 10 (imbalance ratio 10).
DEFAULT_COUNTS = (100.0, 10.0)
LINESTYLES = ("-", "--", ":", "-.")
FORMATS = (".png", ".svg")
# The loss panel's y range stops here, as in Figure 1 of the focal-loss paper: -log(0.001) = 6.9 would
# flatten every other curve.
LOSS_YMAX = 5.0
# The factor panel's y range stops here: a loss that does not vanish at p_t = 1 (label smoothing) has an
# unbounded loss / (-log p_t) there.
FACTOR_YMAX = 5.0


def default_grid(n: int = 401) -> np.ndarray:
    """``n`` values of p_t from 0.001 to 0.999, denser near 0 and 1 where the curves bend; 0.5 is one of them."""
    u = np.linspace(0.0, 1.0, n)
    grid = 0.001 + 0.998 * (1.0 - np.cos(np.pi * u)) / 2.0
    if n % 2:
        grid[n // 2] = 0.5  # exactly, not 0.5 - 1e-17
    return grid


def loss_curves(loss: str = DEFAULT_LOSS, *, gammas: Sequence[float] | float = DEFAULT_GAMMAS,
                p: Sequence[float] | np.ndarray | None = None, classes: Sequence[int] | int | None = None,
                loss_options: Mapping[str, Any] | None = None, **loss_kwargs: Any) -> dict[str, Any]:
    r"""The loss, modulating factor and gradient of one positive example against :math:`p_t`.

    For focal loss (Lin et al.), with :math:`p_t = \sigma(x)`, where :math:`x`
    is the logit of the true class (two-class softmax or one sigmoid):

    .. math::

        \mathrm{FL}(p_t) = -(1 - p_t)^{\gamma} \log p_t, \qquad
        \frac{\partial \mathrm{FL}}{\partial x} = (1 - p_t)^{\gamma}\,
            \bigl(\gamma\, p_t \log p_t - (1 - p_t)\bigr)

    which for :math:`\gamma = 0` is cross-entropy, with gradient :math:`p_t - 1`.

    How each loss is fed so that :math:`p_t` is exact:

    * softmax losses (cross_entropy, softmax_focal_loss, nll_loss, ...): two
      classes, logits :math:`x = (\log p_t, \log(1 - p_t))`, target class 0; the
      gradient is taken with respect to :math:`x_0`. With two classes it equals
      the sigmoid derivative with respect to :math:`x_0 - x_1`.
    * sigmoid losses (binary_cross_entropy, sigmoid_focal_loss, balanced_cross_entropy
      with a float alpha, see :func:`~losslab.lab._losses.is_sigmoid`): one logit
      :math:`x = \log(p_t / (1 - p_t))`, target 1.
    * a loss or alias that takes probabilities (``"BCELoss"``, ``from_logits=False``)
      gets :math:`\sigma(x)` or :math:`\operatorname{softmax}(x)`, and one that takes
      log-probabilities (``nll_loss``) gets :math:`\operatorname{log\_softmax}(x)`:
      the gradient is still with respect to the logit :math:`x`, through autograd.

    * a loss that needs class counts (logit_adjusted_cross_entropy, "Balanced
      Softmax", "BALMS", ldam_loss, vs_loss, seesaw_loss) gets ``class_counts``,
      by default :data:`DEFAULT_COUNTS` = (100, 10): two classes, a head of 100
      examples and a tail of 10. Its loss depends on the example's class, so it
      has one curve per true class in ``classes``, by default the head (the
      largest count) and the tail (the smallest). With C counts the logits are
      :math:`x_y = \log p_t` for the true class y and
      :math:`\log((1 - p_t)/(C - 1))` for each other class (they share
      :math:`1 - p_t` evenly); with two classes that is the softmax feed above.
      Seesaw is its functional with these counts, fixed.

    The modulating factor is defined for every loss as :math:`\ell(p_t) / (-\log p_t)`,
    the weight the loss gives the example relative to cross-entropy:
    :math:`(1 - p_t)^\gamma` for focal loss, 1 for cross-entropy, and times
    :math:`\alpha` where alpha weights positives (``sigmoid_focal_loss`` keeps its
    default ``alpha=0.25`` unless ``alpha`` is given).

    Args:
        loss: a registered classification loss, by canonical name or alias
            (``"Focal Loss"``, ``"BCELoss"``, ``"torch.nn.CrossEntropyLoss"``).
        gammas: the focusing parameters, one curve each (a number is one gamma).
            A loss without a focusing ``gamma`` (every loss but the focal
            losses; vs_loss's gamma is another parameter, an option here)
            ignores them and gives one curve, labelled with its name.
        p: values of :math:`p_t`, 1-D, strictly inside (0, 1); default
            :func:`default_grid`, 401 points from 0.001 to 0.999.
        classes: for a loss that takes class counts, the true classes to draw,
            one curve each (indices into the counts); default head and tail. An
            error for any other loss.
        **loss_kwargs: the loss's other keyword arguments (``alpha=0.5``,
            ``label_smoothing=0.1``, ``from_logits=False``, ``class_counts=[500, 50, 5]``
            or ``"500,50,5"``); they override what an alias presets. Not
            ``gamma`` of a focal loss (use ``gammas``) nor ``reduction`` (always "none").
        loss_options: the same as a mapping, for an option whose name is one
            of this function's (seesaw_loss's ``p``: ``loss_options={"p": 0.5}``).

    Returns:
        A dict: ``"loss"`` (canonical name), ``"name"`` (as asked), ``"input"``
        ("logits", "probabilities" or "log-probabilities"), ``"form"`` ("softmax"
        or "sigmoid"), ``"options"`` (the fixed keyword arguments, with alpha's
        default where the loss takes alpha), ``"class_counts"`` (the counts as a
        list of floats, None for a loss without), ``"counts_default"`` (whether
        they are :data:`DEFAULT_COUNTS`), ``"p"`` (float64 array of shape (P,))
        and ``"curves"``, a list with one dict per gamma and true class:
        ``"label"`` (``"gamma = 2"``, ``"class 1 (tail, n = 10)"``, or the
        loss's name), ``"gamma"`` (None for a loss without a focusing gamma),
        ``"class"`` and ``"count"`` (None for a loss without class counts),
        and float64 arrays of shape (P,) ``"loss"``, ``"factor"`` and ``"grad"``.

    Raises:
        ValueError: an unknown or non-classification loss (dice_loss), an empty
            or negative gamma, ``p`` outside (0, 1), ``gamma`` or ``reduction`` in
            ``loss_kwargs``, a missing required option (``balanced_cross_entropy``
            needs ``alpha``), class counts that are not at least two numbers >= 0,
            ``classes`` out of range or for a loss without class counts, or a
            hyperparameter the loss rejects.
        TypeError: a keyword argument the loss does not take.

    References:
        Lin, Goyal, Girshick, He, Dollar. Focal Loss for Dense Object Detection.
        ICCV 2017, arXiv:1708.02002 (Figure 1 plots these loss curves).

    Example:
        >>> from losslab.lab import loss_curves
        >>> curves = loss_curves("softmax_focal_loss", gammas=(0, 2), p=[0.5, 0.9])
        >>> [c["label"] for c in curves["curves"]]
        ['gamma = 0', 'gamma = 2']
        >>> curves["curves"][1]["factor"].round(4)  # (1 - p_t)^2
        array([0.25, 0.01])
        >>> curves["curves"][0]["grad"].round(4)  # gamma = 0 is cross-entropy: p_t - 1
        array([-0.5, -0.1])

    Numerics: everything is float64 and the gradient comes from autograd, so
    the curves show what the implementation computes, not a formula.
    """
    fn = "loss_curves"
    spec, alias = classification_loss(loss, caller=fn)
    loss_kwargs = {**dict(loss_options or {}), **loss_kwargs}
    has_gamma = is_focal(spec)
    for key, hint in (("gamma", "pass gammas= (--gamma on the command line)"),
                      ("reduction", "the curves are per example, reduction='none'")):
        if key in loss_kwargs and (key != "gamma" or has_gamma):
            raise ValueError(f"{fn}: {key} is not a loss option here; {hint}")
    counts: list[float] | None = None
    class_list: list[int | None] = [None]
    counts_default = False
    if takes_counts(spec):
        counts_default = COUNTS_KEY not in loss_kwargs
        counts = parse_counts(loss_kwargs.pop(COUNTS_KEY, DEFAULT_COUNTS), caller=fn, loss=spec.name)
        class_list = list(_classes(fn, classes, counts))
    elif classes is not None:
        raise ValueError(f"{fn}: {spec.name} takes no class counts; classes picks the true classes of the losses "
                         f"that do ({', '.join(count_losses())})")
    options = {**(dict(alias.defaults) if alias is not None else {}), **loss_kwargs}
    missing = [name for name, parameter in inspect.signature(spec.function).parameters.items()
               if parameter.kind is parameter.KEYWORD_ONLY and parameter.default is parameter.empty
               and name != COUNTS_KEY and name not in options]
    if missing:
        raise ValueError(f"{fn}: {loss} needs {', '.join(missing)}, which has no default: give it as "
                         f"'{loss} {missing[0]}=...' or --option {missing[0]}=...")
    grid = _grid(fn, p)
    gamma_list: list[float | None] = [float(g) for g in _gammas(fn, gammas)] if has_gamma else [None]
    kind = input_kind(loss, loss_kwargs)  # what ablate and contributions feed the loss too
    sigmoid = is_sigmoid(spec, options)
    shown = dict(loss_kwargs)
    if alias is not None:
        shown = {**{k: v for k, v in alias.defaults.items() if k != "from_logits"}, **shown}
    if accepts(spec, "alpha") and "alpha" not in shown:
        default = _default(spec, "alpha")
        if default is not _MISSING:
            shown["alpha"] = default
    shown.pop("from_logits", None)  # shown as the input kind

    curves = []
    for gamma in gamma_list:
        kwargs = {**loss_kwargs, "reduction": "none", **({"gamma": gamma} if gamma is not None else {})}
        module, _ = build_loss(loss, kwargs, counts, caller=fn)
        for true_class in class_list:
            x, inputs, target = _inputs(grid, sigmoid=sigmoid, kind=kind,
                                        num_classes=2 if counts is None else len(counts), true_class=true_class or 0)
            values = module(inputs, target)
            values.sum().backward()
            grad = x.grad[:, true_class or 0] if x.grad.ndim == 2 else x.grad
            values = values.detach().numpy().astype(np.float64)
            parts = [] if gamma is None else [f"gamma = {gamma:g}"]
            if true_class is not None:
                parts.append(_class_label(true_class, counts))
            curves.append({
                "label": ", ".join(parts) or loss,
                "gamma": gamma,
                "class": true_class,
                "count": None if true_class is None else counts[true_class],
                "loss": values,
                "factor": values / -np.log(grid),
                "grad": grad.detach().numpy().astype(np.float64),
            })
    return {"loss": spec.name, "name": loss, "input": kind, "form": "sigmoid" if sigmoid else "softmax",
            "options": shown, "class_counts": counts, "counts_default": counts_default, "p": grid, "curves": curves}


def _classes(fn: str, classes: Sequence[int] | int | None, counts: list[float]) -> list[int]:
    """The true classes to draw: ``classes`` checked against the counts, else the head and the tail."""
    if classes is None:
        head = max(range(len(counts)), key=lambda c: (counts[c], -c))
        tail = min(range(len(counts)), key=lambda c: (counts[c], -c))
        return [head] if counts[head] == counts[tail] else [head, tail]
    values = [classes] if isinstance(classes, int) and not isinstance(classes, bool) else list(classes)
    if not values:
        raise ValueError(f"{fn}: classes must name at least one class; got none")
    for c in values:
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or not 0 <= c < len(counts):
            raise ValueError(f"{fn}: classes must be class indices in [0, {len(counts)}) (one per class count); "
                             f"got {c!r}")
    if len(set(values)) != len(values):
        raise ValueError(f"{fn}: classes must not repeat a class; got {values}")
    return [int(c) for c in values]


def _class_label(true_class: int, counts: list[float]) -> str:
    """``class 1 (tail, n = 10)``: the class, its role where it is the largest or smallest count, its count."""
    role = ("head, " if counts[true_class] == max(counts) else
            "tail, " if counts[true_class] == min(counts) else "")
    return f"class {true_class} ({role}n = {counts[true_class]:g})"


_MISSING = object()


def _default(spec: Any, argument: str) -> Any:
    parameter = inspect.signature(spec.function).parameters[argument]
    return _MISSING if parameter.default is parameter.empty else parameter.default


def _grid(fn: str, p: Sequence[float] | np.ndarray | None) -> np.ndarray:
    if p is None:
        return default_grid()
    try:
        grid = np.asarray(p, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{fn}: p must be numbers in (0, 1); got {p!r}") from error
    if grid.ndim != 1 or grid.size == 0:
        raise ValueError(f"{fn}: p must be a non-empty 1-D sequence; got shape {grid.shape}")
    if not np.all((grid > 0) & (grid < 1)):
        bad = float(grid[~((grid > 0) & (grid < 1))][0])
        raise ValueError(f"{fn}: p must lie strictly inside (0, 1); got {bad!r}")
    return grid


def _gammas(fn: str, gammas: Sequence[float] | float) -> list[float]:
    values = [gammas] if isinstance(gammas, (int, float)) else list(gammas)
    if not values:
        raise ValueError(f"{fn}: gammas must hold at least one gamma; got {gammas!r}")
    for g in values:
        if isinstance(g, bool) or not isinstance(g, (int, float, np.floating, np.integer)):
            raise ValueError(f"{fn}: gammas must be numbers; got {g!r}")
        if not math.isfinite(g) or g < 0:
            raise ValueError(f"{fn}: every gamma must be a finite number >= 0; got {g!r}")
    return values


def _inputs(p: np.ndarray, *, sigmoid: bool, kind: str, num_classes: int = 2,
            true_class: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""The logit leaf ``x``, what the loss is fed (built from ``x`` with torch ops), and the target.

    Softmax: ``num_classes`` logits, :math:`\log p_t` for ``true_class`` and
    :math:`\log((1 - p_t) / (C - 1))` for the others.
    """
    pt = torch.as_tensor(p, dtype=torch.float64)
    if sigmoid:
        x = (torch.log(pt) - torch.log1p(-pt)).requires_grad_()
        return x, feed(x, kind, sigmoid=True), torch.ones_like(pt)
    x = (torch.log1p(-pt) - math.log(num_classes - 1)).unsqueeze(1).repeat(1, num_classes)
    x[:, true_class] = torch.log(pt)
    x.requires_grad_()
    return x, feed(x, kind, sigmoid=False), torch.full((len(p),), true_class, dtype=torch.long)


# ----------------------------------------------------------------------------
# the figure


def plot_curves(losses: Sequence[str | Mapping[str, Any]] | str = (DEFAULT_LOSS,), *,
                gammas: Sequence[float] | float = DEFAULT_GAMMAS,
                out: str | Path = "loss_curves.png", dpi: int = 150, title: str | None = None,
                class_counts: Sequence[float] | str | None = None, classes: Sequence[int] | int | None = None,
                **loss_kwargs: Any) -> Path:
    r"""Draw loss, modulating factor and gradient against :math:`p_t`, one row per loss, into a PNG or SVG.

    Each row has three panels sharing the x axis :math:`p_t \in [0, 1]`: the
    loss :math:`\ell(p_t)` (clipped at 5, as Figure 1 of the focal-loss paper),
    the modulating factor :math:`\ell(p_t) / (-\log p_t)` and the gradient
    :math:`\partial \ell / \partial x` with respect to the true class's logit,
    one curve per gamma. For focal loss,

    .. math::

        \mathrm{FL}(p_t) = -(1 - p_t)^{\gamma} \log p_t, \qquad
        \frac{\partial \mathrm{FL}}{\partial x} = (1 - p_t)^{\gamma}\,
            \bigl(\gamma\, p_t \log p_t - (1 - p_t)\bigr)

    Each row's title names the loss, how it is fed, and its fixed options
    (alpha included, so ``sigmoid_focal_loss``'s default 0.25 is visible); for
    a loss that takes class counts, the counts (by default 100 and 10, said
    to be the default) and, in the legend, the true class of each curve
    ("class 1 (tail, n = 10)", dashed). The data and their conventions are
    those of :func:`loss_curves`.

    Args:
        losses: one loss or several (one row each): canonical names or aliases,
            or mappings ``{"name": ..., **options}`` whose options go to that
            loss only (``{"name": "sigmoid_focal_loss", "alpha": 0.5}``).
        gammas: focusing parameters, one curve each, for the losses that take gamma.
        out: the file to write; its suffix picks the format, ``.png`` or ``.svg``.
            Its folder must exist (nothing is created but the file).
        dpi: resolution of a PNG.
        title: a title above all rows.
        class_counts: class counts for every loss that takes them (the others
            ignore them; an error if no loss takes them), in place of the
            default (100, 10); a loss's own ``class_counts`` overrides them.
        classes: the true classes drawn for the losses that take class counts
            (default head and tail); an error if no loss takes class counts.
        **loss_kwargs: keyword arguments given to every loss (``alpha=0.5``); a
            loss's own options override them.

    Returns:
        The path written.

    Raises:
        ValueError: an ``out`` suffix other than .png or .svg, a folder of
            ``out`` that does not exist, ``out`` naming a folder, no loss, a
            dpi below 1, and everything :func:`loss_curves` raises.
        ImportError: matplotlib is not installed (``pip install "losslab[lab]"``).

    References:
        Lin, Goyal, Girshick, He, Dollar. Focal Loss for Dense Object Detection.
        ICCV 2017, arXiv:1708.02002.

    Example:
        >>> import pathlib, tempfile
        >>> from losslab.lab import plot_curves
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> path = plot_curves(["cross_entropy", "sigmoid_focal_loss"], gammas=(0, 2), out=folder / "curves.svg")
        >>> path.name, path.stat().st_size > 0
        ('curves.svg', True)
    """
    fn = "plot_curves"
    path = Path(out)
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"{fn}: out must end in {' or '.join(FORMATS)}; got {str(out)!r}")
    if isinstance(dpi, bool) or not isinstance(dpi, int) or dpi < 1:
        raise ValueError(f"{fn}: dpi must be a positive integer; got {dpi!r}")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ValueError(f"{fn}: the folder of out does not exist: {str(folder)!r} (create it first); got "
                         f"out={str(out)!r}")
    if path.is_dir():
        raise ValueError(f"{fn}: out must name a file; {str(out)!r} is a folder")
    figure = _figure(losses, gammas=gammas, title=title, class_counts=class_counts, classes=classes, **loss_kwargs)
    figure.savefig(path, format=path.suffix.lower()[1:], dpi=dpi)
    return path


def _figure(losses: Sequence[str | Mapping[str, Any]] | str = (DEFAULT_LOSS,), *,
            gammas: Sequence[float] | float = DEFAULT_GAMMAS, title: str | None = None,
            class_counts: Sequence[float] | str | None = None, classes: Sequence[int] | int | None = None,
            **loss_kwargs: Any) -> Figure:
    """The matplotlib Figure that :func:`plot_curves` saves (no pyplot: nothing global, no window)."""
    entries = [losses] if isinstance(losses, (str, Mapping)) else list(losses)
    if not entries:
        raise ValueError("plot_curves: losses must name at least one loss; got none")
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("plot_curves: drawing needs matplotlib, which is not installed: "
                          "pip install 'losslab[lab]'") from None
    data = []
    named = []
    for entry in entries:  # errors before any drawing
        if isinstance(entry, Mapping):
            if not isinstance(entry.get("name"), str):
                raise ValueError(f"plot_curves: a loss given as a mapping needs a 'name'; got {dict(entry)!r}")
            named.append((entry["name"], {k: v for k, v in entry.items() if k not in ("name", "label")}))
        elif isinstance(entry, str):
            named.append((entry, {}))
        else:
            raise TypeError(f"plot_curves: each loss must be a name or a mapping with a 'name'; got "
                            f"{type(entry).__name__}")
    with_counts = [takes_counts(classification_loss(name, caller="plot_curves")[0]) for name, _ in named]
    if (class_counts is not None or classes is not None) and not any(with_counts):
        what = "class_counts" if class_counts is not None else "classes"
        raise ValueError(f"plot_curves: {what} is for the losses that take class counts "
                         f"({', '.join(count_losses())}); none of {', '.join(n for n, _ in named)} does")
    for (name, own), counted in zip(named, with_counts, strict=True):
        options = {**loss_kwargs, **own}
        if counted and class_counts is not None and COUNTS_KEY not in own:
            options[COUNTS_KEY] = class_counts
        data.append(loss_curves(name, gammas=gammas, classes=classes if counted else None, loss_options=options))

    figure = Figure(figsize=(13.0, 3.9 * len(data) + (0.4 if title else 0.0)), layout="constrained")
    if title:
        figure.suptitle(title, fontsize="x-large")
    rows = figure.subfigures(len(data), 1, squeeze=False)[:, 0]
    for row, curves in zip(rows, data, strict=True):
        _draw_row(row, curves)
    return figure


def _draw_row(row: Any, data: dict[str, Any]) -> None:
    axes = row.subplots(1, 3, sharex=True)
    row.suptitle(_row_title(data), fontsize="large")
    p = data["p"]
    gammas = [c["gamma"] for c in data["curves"] if c["gamma"] is not None]
    classes = list(dict.fromkeys(c["class"] for c in data["curves"] if c["class"] is not None))
    for i, curve in enumerate(data["curves"]):
        label = curve["label"].replace("gamma =", r"$\gamma$ =")
        style = {"color": f"C{i % 10}", "linewidth": 1.8, "label": label,
                 "linestyle": LINESTYLES[classes.index(curve["class"]) % len(LINESTYLES)] if classes else "-"}
        axes[0].plot(p, curve["loss"], **style)
        axes[1].plot(p, curve["factor"], **style)
        axes[2].plot(p, curve["grad"], **style)
    ymax = max(float(np.nanmax(c["loss"])) for c in data["curves"])
    axes[0].set_ylim(0.0, min(LOSS_YMAX, 1.05 * ymax))
    fmax = max(float(np.nanmax(c["factor"])) for c in data["curves"])
    axes[1].set_ylim(0.0, min(FACTOR_YMAX, 1.05 * fmax) if fmax > 0 else 1.0)
    axes[2].axhline(0.0, color="0.6", linewidth=0.8, zorder=0)
    titles = (r"loss $\ell(p_t)$", r"$\ell(p_t)\,/\,(-\log p_t)$", r"gradient $\partial\ell / \partial x_t$")
    ylabels = ("loss", "modulating factor", "d loss / d logit")
    for ax, panel_title, ylabel in zip(axes, titles, ylabels, strict=True):
        ax.set_xlim(0.0, 1.0)
        ax.set_xlabel("probability of the true class $p_t$")
        ax.set_ylabel(ylabel)
        ax.set_title(panel_title, fontsize="medium")
        ax.grid(True, color="0.9", linewidth=0.8)
        ax.set_axisbelow(True)
    legend_title = ", ".join((["focusing parameter"] if gammas else []) + (["true class"] if classes else [])) or None
    axes[0].legend(loc="upper right", title=legend_title, frameon=True, framealpha=0.9)


def _row_title(data: dict[str, Any]) -> str:
    name = data["name"] if data["name"] == data["loss"] else f"{data['name']} ({data['loss']})"
    counts = data.get("class_counts")
    if data["form"] == "sigmoid":
        feed = "one sigmoid logit, target 1"
    elif counts is not None:
        shown = ", ".join(f"{c:g}" for c in counts)
        feed = (f"class_counts = [{shown}]{' (default)' if data.get('counts_default') else ''}, "
                f"softmax over {len(counts)} classes, a curve per true class")
        if len(counts) > 2:
            feed += ", the other classes share 1 - p_t"
    else:
        feed = "softmax over two classes, target class 0"
    if data["input"] != "logits":
        feed += f", {data['input']} in"
    options = ", ".join(f"{k} = {_format(v)}" for k, v in sorted(data["options"].items()))
    return textwrap.fill(f"{name}: {feed}" + (f"; {options}" if options else ""), width=140)


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    return repr(value) if not isinstance(value, str) else value
