r"""Statistics of ``losslab ablate``: intervals over seeds, paired differences and a verdict per configuration.

Every configuration trains with the same seeds (the same initialisation seed,
batch order and, with ``vary_split``, the same split), so two configurations
are compared seed by seed. For a metric with per-seed values x_1..x_n:

* the **mean and its 95 % interval**: the Student-t interval
  :math:`\bar x \pm t_{0.975,\,n-1}\, s / \sqrt{n}` with s the standard
  deviation over seeds (ddof = 1);
* the **paired difference** from a reference configuration (the baseline, or
  the best): d_s = x_s - b_s per seed, and the paired-t interval
  :math:`\bar d \pm t_{0.975,\,n-1}\, s_d / \sqrt{n}` (the interval of
  ``scipy.stats.ttest_rel``), with its two-sided p-value;
* the **verdict**: ``"better"`` where the interval lies above 0, ``"worse"``
  where it lies below, ``"not distinguishable"`` where it holds 0. With one
  seed there is no interval and no verdict.

The Student-t distribution function is computed here from its closed form for
an integer number of degrees of freedom (Abramowitz and Stegun 26.7.3-4), and
its quantile by bisection on it; no SciPy is needed. Seeds where either value
is NaN are left out of a comparison. No correction is made for comparing many
configurations at 95 % each: where nothing differs, nine comparisons with a
baseline give at least one spurious "better" or "worse" up to 1 - 0.95^9 = 37 %
of the time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["LEVEL", "METHOD", "compare", "find_baseline", "mean_interval", "paired_difference", "t_cdf",
           "t_quantile", "verdict"]

LEVEL = 0.95
METHOD = ("95 % Student-t interval over seeds (mean ± t(0.975, n-1) s / sqrt(n)); paired differences seed by seed "
          "with the paired-t interval (as scipy.stats.ttest_rel); a verdict where the interval excludes 0")
BETTER, WORSE, SAME = "better", "worse", "not distinguishable"
NO_INTERVAL = "n/a (1 seed)"


def _two_sided(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with ``df`` (integer) degrees of freedom, t >= 0 (A&S 26.7.3-4)."""
    if math.isinf(t):
        return 1.0
    theta = math.atan(t / math.sqrt(df))
    c2, s = math.cos(theta) ** 2, math.sin(theta)
    if df % 2:  # odd: (2/pi) (theta + sin cos (1 + 2/3 cos^2 + 2*4/(3*5) cos^4 + ...)), the sum up to cos^(df-2)
        term, total = 1.0, 1.0 if df > 1 else 0.0
        for k in range(1, (df - 1) // 2):
            term *= c2 * (2 * k) / (2 * k + 1)
            total += term
        return min(1.0, 2 / math.pi * (theta + s * math.cos(theta) * total))
    # even: sin (1 + 1/2 cos^2 + 1*3/(2*4) cos^4 + ...), the sum up to cos^(df-2)
    term, total = 1.0, 1.0
    for k in range(1, df // 2):
        term *= c2 * (2 * k - 1) / (2 * k)
        total += term
    return min(1.0, s * total)


def _check_df(df: object, caller: str) -> int:
    if isinstance(df, bool) or not isinstance(df, (int, np.integer)) or df < 1:
        raise ValueError(f"{caller}: df must be a positive integer (seeds - 1); got {df!r}")
    return int(df)


def t_cdf(t: float, df: int) -> float:
    r"""The distribution function P(T <= t) of Student's t with ``df`` (a positive integer) degrees of freedom.

    .. math:: P(T \le t) = \tfrac{1}{2}\left(1 + \operatorname{sign}(t)\, A(|t| \mid \nu)\right)

    with A the closed form of P(|T| <= t) for integer :math:`\nu` (Abramowitz and
    Stegun, Handbook of Mathematical Functions, 1964, 26.7.3 and 26.7.4).

    Example:
        >>> round(t_cdf(2.776445105197793, 4), 6)
        0.975
    """
    df = _check_df(df, "t_cdf")
    if math.isnan(t):
        return float("nan")
    a = _two_sided(abs(t), df)
    return 0.5 * (1 + a) if t >= 0 else 0.5 * (1 - a)


def t_quantile(p: float, df: int) -> float:
    """The quantile of Student's t: the t with P(T <= t) = ``p``, for 0 < p < 1 and integer ``df`` >= 1.

    Found by bisection on theta = atan(t / sqrt(df)) in (-pi/2, pi/2), on which
    the distribution function is monotone, to full double precision.

    Example:
        >>> round(t_quantile(0.975, 4), 6)
        2.776445
    """
    df = _check_df(df, "t_quantile")
    if not (isinstance(p, (int, float)) and 0 < p < 1):
        raise ValueError(f"t_quantile: p must be a probability strictly between 0 and 1; got {p!r}")
    if p == 0.5:
        return 0.0
    target = abs(2 * p - 1)  # P(|T| <= t) for the upper quantile
    low, high = 0.0, math.pi / 2
    for _ in range(200):
        middle = 0.5 * (low + high)
        if middle in (low, high):
            break
        if _two_sided(math.sqrt(df) * math.tan(middle), df) < target:
            low = middle
        else:
            high = middle
    t = math.sqrt(df) * math.tan(0.5 * (low + high))
    return t if p > 0.5 else -t


def _finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    return array[~np.isnan(array)]


def mean_interval(values: Sequence[float] | np.ndarray, *, level: float = LEVEL) -> dict[str, Any]:
    r"""The mean of ``values`` (one per seed, NaN left out) and its Student-t interval.

    .. math:: \bar x \pm t_{(1 + \mathrm{level})/2,\; n - 1} \, \frac{s}{\sqrt n}, \qquad
        s^2 = \frac{1}{n - 1} \sum_s (x_s - \bar x)^2

    Returns:
        ``{"mean", "ci_low", "ci_high", "n"}``; the bounds are NaN with fewer
        than two values (one seed gives no interval), all NaN with none.

    Example:
        >>> ci = mean_interval([0.70, 0.72, 0.71])
        >>> round(ci["mean"], 3), round(ci["ci_low"], 4), round(ci["ci_high"], 4)
        (0.71, 0.6852, 0.7348)
    """
    x = _finite(values)
    n = len(x)
    mean = float(x.mean()) if n else float("nan")
    if n < 2:
        return {"mean": mean, "ci_low": float("nan"), "ci_high": float("nan"), "n": n}
    half = t_quantile(0.5 + level / 2, n - 1) * float(x.std(ddof=1)) / math.sqrt(n)
    return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half, "n": n}


def verdict(low: float, high: float) -> str:
    """``"better"`` if the interval [low, high] of a difference lies above 0, ``"worse"`` below, else
    ``"not distinguishable"``; ``"n/a (1 seed)"`` without an interval (NaN bounds)."""
    if math.isnan(low) or math.isnan(high):
        return NO_INTERVAL
    if low > 0:
        return BETTER
    if high < 0:
        return WORSE
    return SAME


def paired_difference(values: Sequence[float] | np.ndarray, reference: Sequence[float] | np.ndarray, *,
                      level: float = LEVEL) -> dict[str, Any]:
    r"""The paired difference ``values - reference`` over the same seeds: its mean, interval, p-value and verdict.

    .. math:: d_s = x_s - b_s, \qquad \bar d \pm t_{(1 + \mathrm{level})/2,\; n - 1}\, \frac{s_d}{\sqrt n},
        \qquad t = \frac{\bar d}{s_d / \sqrt n}

    the paired t-test of ``scipy.stats.ttest_rel(values, reference)``. Seeds
    where either value is NaN are left out. Where every difference is equal
    (s_d = 0) the interval is that one value.

    Returns:
        ``{"mean", "ci_low", "ci_high", "n", "p_value", "verdict"}``.

    Raises:
        ValueError: ``values`` and ``reference`` of different lengths.

    Example:
        >>> d = paired_difference([0.74, 0.75, 0.73], [0.70, 0.72, 0.71])
        >>> round(d["mean"], 3), d["verdict"]
        (0.03, 'better')
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    b = np.asarray(reference, dtype=np.float64).ravel()
    if x.shape != b.shape:
        raise ValueError(f"paired_difference: values and reference must hold one value per seed each; got "
                         f"{len(x)} and {len(b)}")
    d = x - b
    out = mean_interval(d, level=level)
    n = out["n"]
    if n < 2:
        p_value = float("nan")
    else:
        sd = float(_finite(d).std(ddof=1))
        scale = max(1.0, float(np.nanmax(np.abs(np.concatenate([x, b])))))
        if sd <= 1e-12 * scale:  # the same difference on every seed (a step of a discrete metric, up to rounding):
            return {**out, "p_value": float("nan"), "verdict": SAME}  # no spread to test, so no verdict either way
        p_value = 1.0 - _two_sided(abs(out["mean"]) / (sd / math.sqrt(n)), n - 1)
    return {**out, "p_value": p_value, "verdict": verdict(out["ci_low"], out["ci_high"])}


def find_baseline(losses: Sequence[Mapping[str, Any]], baseline: str | None, *, caller: str = "ablate") -> int:
    """The index in ``losses`` (labelled configurations) of the baseline the others are compared with.

    ``baseline`` is matched by label, then by loss name (the configuration of
    that name without options first). ``None`` means ``cross_entropy`` where
    the grid has it, else the first configuration.

    Raises:
        ValueError: ``baseline`` given and not in the grid (the message lists the labels).
    """
    if baseline is not None and (not isinstance(baseline, str) or not baseline.strip()):
        raise ValueError(f"{caller}: baseline must be the label or loss name of a configuration in the grid; "
                         f"got {baseline!r}")
    wanted = "cross_entropy" if baseline is None else baseline.strip()
    labels = [c["label"] for c in losses]
    if wanted in labels:
        return labels.index(wanted)
    named = [i for i, c in enumerate(losses) if c["name"] == wanted]
    if named:
        bare = [i for i in named if not any(k not in ("name", "label") for k in losses[i])]
        return (bare or named)[0]
    if baseline is None:
        return 0
    raise ValueError(f"{caller}: baseline {wanted!r} is not in the grid; give the label or loss name of one of "
                     f"{', '.join(map(repr, labels))}")


def _per_seed(runs: Sequence[Mapping[str, Any]], label: str, seeds: Sequence[int], metric: str,
              posthoc: bool = False) -> np.ndarray:
    """One value of ``metric`` per seed of the configuration ``label`` (NaN where a run lacks it)."""
    by_seed = {}
    for run in runs:
        if run["label"] != label:
            continue
        metrics = run.get("metrics", {})
        if posthoc:
            metrics = run.get("posthoc") or {}
            metrics = metrics.get("metrics", metrics)
        value = metrics.get(metric)
        by_seed[run["seed"]] = float("nan") if value is None else float(value)
    return np.array([by_seed.get(seed, float("nan")) for seed in seeds], dtype=np.float64)


def compare(summary: list[dict[str, Any]], runs: Sequence[Mapping[str, Any]], *, baseline: str,
            metrics: Sequence[str], primary: str, level: float = LEVEL) -> dict[str, Any]:
    """Add intervals, paired differences and verdicts to the ranked ``summary`` rows; the statistics block.

    Each row's ``metrics`` entries (dicts with ``mean``, ``std``) gain
    ``ci_low`` and ``ci_high`` (:func:`mean_interval`); each row gains
    ``vs_baseline`` and ``vs_best``: the :func:`paired_difference` of
    ``primary`` to the baseline (the row labelled ``baseline``) and to the
    best row (``summary[0]``), with ``"reference"`` naming it (``None`` for the
    reference itself, whose verdict is ``"baseline"`` or ``"best"``). Where the runs
    carry post-hoc logit-adjusted metrics (a ``posthoc`` dict), ``posthoc``
    holds ``primary``'s mean, std and interval for them. The returned dict
    says in plain data which rows are better, worse or not distinguishable.
    """
    seeds = summary[0]["seeds"]
    best = summary[0]
    reference = {"vs_baseline": next(r for r in summary if r["label"] == baseline), "vs_best": best}
    has_posthoc = any(isinstance(run.get("posthoc"), Mapping) for run in runs)
    values = {row["label"]: _per_seed(runs, row["label"], seeds, primary) for row in summary}
    for row in summary:
        for metric in metrics:
            if isinstance(row.get(metric), dict):
                ci = mean_interval(_per_seed(runs, row["label"], seeds, metric), level=level)
                row[metric].update(ci_low=ci["ci_low"], ci_high=ci["ci_high"])
        for key, ref in reference.items():
            if ref is row:
                row[key] = {"reference": None, "mean": 0.0, "ci_low": 0.0, "ci_high": 0.0, "n": len(seeds),
                            "p_value": float("nan"), "verdict": "baseline" if key == "vs_baseline" else "best"}
            else:
                row[key] = {"reference": ref["label"], **paired_difference(values[row["label"]],
                                                                           values[ref["label"]], level=level)}
        if has_posthoc:
            adjusted = _per_seed(runs, row["label"], seeds, primary, posthoc=True)
            ci = mean_interval(adjusted, level=level)
            std = float(_finite(adjusted).std(ddof=1)) if ci["n"] > 1 else (0.0 if ci["n"] else float("nan"))
            row["posthoc"] = {primary: {"mean": ci["mean"], "std": std, "ci_low": ci["ci_low"],
                                        "ci_high": ci["ci_high"]}}

    def labelled(key: str, word: str) -> list[str]:
        return [r["label"] for r in summary if r[key]["verdict"] == word]

    return {
        "method": METHOD, "level": level, "metric": primary, "seeds": list(seeds), "baseline": baseline,
        "best": best["label"], "better_than_baseline": labelled("vs_baseline", BETTER),
        "worse_than_baseline": labelled("vs_baseline", WORSE),
        "not_distinguishable_from_baseline": labelled("vs_baseline", SAME),
        "worse_than_best": labelled("vs_best", WORSE), "not_distinguishable_from_best": labelled("vs_best", SAME),
        "posthoc": has_posthoc,
    }
