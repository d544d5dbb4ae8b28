"""What ``losslab ablate`` gives: its result, and what it writes (the ranked table, report.md, results.json, plots)."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._losses import config_label, option_default

COLUMNS = (("balanced_accuracy", "bal. acc. %"), ("macro_f1", "macro-F1 %"), ("accuracy", "acc. %"),
           ("many_shot_accuracy", "many %"), ("medium_shot_accuracy", "medium %"), ("few_shot_accuracy", "few %"),
           ("ece", "ECE %"))
RECALL_PLOT = "per_class_recall.png"
FOREST_PLOT = "forest.png"
GAMMA_PLOT = "gamma.png"


@dataclass
class AblationResult:
    """Every run of an ablation, the ranked summary, and what produced them.

    ``runs`` holds one dict per (loss, seed) with every metric;
    ``summary`` one dict per loss configuration, ranked by mean balanced
    accuracy, with the mean, standard deviation (over seeds, ddof = 1) and
    95 % interval (``ci_low``, ``ci_high``) of each metric, and the paired
    difference of balanced accuracy from the baseline (``vs_baseline``) and
    from the best (``vs_best``) with its interval and verdict;
    ``statistics`` the method and which configurations are distinguishable
    (:func:`losslab.lab._stats.compare`). :meth:`save` writes results.json,
    report.md and the plots.
    """

    settings: dict[str, Any]
    dataset: dict[str, Any]
    runs: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    versions: dict[str, str]
    seconds: float = 0.0
    files: list[Path] = field(default_factory=list)
    # What makes the ranking unreliable (a test set too small to rank), one sentence each; shown above the table.
    warnings: list[str] = field(default_factory=list)
    # The comparison with the baseline and the best (losslab.lab._stats.compare); empty if not computed.
    statistics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"settings": self.settings, "dataset": self.dataset, "warnings": self.warnings,
                "statistics": self.statistics, "summary": self.summary, "runs": self.runs, "versions": self.versions,
                "seconds": round(self.seconds, 3)}

    def table(self, *, markdown: bool = False) -> str:
        """The ranked table: each metric's mean ± 95 % interval over seeds, the difference from the baseline."""
        return ranked_table(self, markdown=markdown)

    def to_markdown(self) -> str:
        """The report: the setup, the ranked table, per-class recall, the plots and the versions."""
        return report_markdown(self)

    def save(self, out: str | os.PathLike, *, plots: bool = True) -> list[Path]:
        """Write results.json, report.md and (with ``plots``) the PNG plots into the folder ``out``."""
        self.files = save(self, Path(out), plots=plots)
        return self.files


def profile_text(rho: float) -> str:
    """How the training set was drawn, in words: the long-tail profile's rho, or the data used as it is."""
    return "used as it is" if rho == 1 else f"long-tailed, rho = {rho:g}"


def _names(names: list[str], members: list[int]) -> str:
    return ", ".join(names[c] for c in members) if members else "none"


def _half(stats: dict[str, Any]) -> float:
    """The half-width of a mean's 95 % interval (NaN: one seed); the std where the interval is missing."""
    if "ci_low" in stats:
        low, high = stats["ci_low"], stats["ci_high"]
        return float("nan") if low is None or high is None else (high - low) / 2
    return stats.get("std", float("nan"))


def _cell(stats: dict[str, Any] | None, *, signed: bool = False) -> str:
    """``mean ± half-width`` in percent (percentage points with ``signed``); the mean alone without an interval."""
    if stats is None or stats.get("mean") is None or not math.isfinite(stats["mean"]):
        return "n/a"
    half = _half(stats)
    value = round(100 * stats["mean"], 1) + 0.0  # + 0.0: no "-0.0"
    mean = f"{value:+.1f}" if signed else f"{value:.1f}"
    return mean if half is None or not math.isfinite(half) else f"{mean} ± {100 * half:.1f}"


def _interval(stats: dict[str, Any], *, signed: bool = True) -> str:
    """``+1.3 pp [95 % CI -0.2, +2.8]`` (the mean alone without an interval)."""
    sign = "+" if signed else ""
    text = f"{round(100 * stats['mean'], 1) + 0.0:{sign}.1f} pp"
    low, high = stats.get("ci_low"), stats.get("ci_high")
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return text
    return text + f" [95 % CI {100 * low:{sign}.1f}, {100 * high:{sign}.1f}]"


def _columns(result: AblationResult) -> list[tuple[str, Any]]:
    """(title, row -> cell) of the ranked table."""
    stats = getattr(result, "statistics", None) or {}
    columns: list[tuple[str, Any]] = [("rank", lambda r: str(r["rank"])), ("loss", lambda r: r["label"]),
                                      (COLUMNS[0][1], lambda r: _cell(r.get(COLUMNS[0][0])))]
    if stats:
        def delta(row: dict[str, Any]) -> str:
            return "—" if row["vs_baseline"]["reference"] is None else _cell(row["vs_baseline"], signed=True)
        columns += [(f"Δ vs {stats['baseline']} pp", delta),
                    (f"vs {stats['baseline']}", lambda r: r["vs_baseline"]["verdict"]),
                    ("vs best", lambda r: r["vs_best"]["verdict"])]
        if stats.get("posthoc"):
            columns.append(("post-hoc LA bal. acc. %",
                            lambda r: _cell((r.get("posthoc") or {}).get(COLUMNS[0][0]))))
    columns += [(title, lambda r, key=key: _cell(r.get(key))) for key, title in COLUMNS[1:]]
    return columns


def ranked_table(result: AblationResult, *, markdown: bool = False) -> str:
    """The configurations ranked by mean balanced accuracy: each metric as mean ± the half-width of its 95 %
    interval over seeds, in percent; the paired difference from the baseline (percentage points) and the
    verdicts against the baseline and the best."""
    columns = _columns(result)
    header = [title for title, _ in columns]
    rows = [[cell(row) for _, cell in columns] for row in result.summary]
    if markdown:
        align = ["---:" if title not in ("loss",) and not title.startswith("vs ") else "---" for title in header]
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    left = [title == "loss" or title.startswith("vs ") for title in header]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if is_left else c.rjust(w)
                         for c, w, is_left in zip(cells, widths, left, strict=True)).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def verdict_sentences(result: AblationResult) -> list[str]:
    """In words: which configurations differ from the baseline and from the best, with their intervals."""
    stats = getattr(result, "statistics", None) or {}
    if not stats:
        return []
    rows = {row["label"]: row for row in result.summary}
    baseline, best, seeds = stats["baseline"], stats["best"], len(stats["seeds"])
    if seeds < 2:
        return [(f"One seed: no interval, so no configuration can be told apart from {baseline} or from the best "
                 "(run more seeds, e.g. 5).")]

    def listed(labels: list[str], key: str) -> str:
        return "; ".join(f"{label} ({_interval(rows[label][key])})" for label in labels) or "none"

    out = [(f"Against the baseline {baseline} ({_cell(rows[baseline]['balanced_accuracy'])} %), balanced accuracy "
            f"paired over the same {seeds} seeds: better: {listed(stats['better_than_baseline'], 'vs_baseline')}; "
            f"worse: {listed(stats['worse_than_baseline'], 'vs_baseline')}; not distinguishable: "
            f"{', '.join(stats['not_distinguishable_from_baseline']) or 'none'}.")]
    same = stats["not_distinguishable_from_best"]
    worse = stats["worse_than_best"]
    if len(rows) == 1:
        versus = "the only configuration."
    elif not same and len(worse) == len(rows) - 1:
        versus = f"every other configuration is distinguishably worse: {', '.join(worse)}."
    else:
        versus = (f"not distinguishable from it: {', '.join(same)}; " if same else "") + \
            (f"distinguishably worse: {', '.join(worse)}." if worse else "none is distinguishably worse.")
    out.append(f"Against the best, {best} ({_cell(rows[best]['balanced_accuracy'])} %): {versus}")
    return out


def statistics_markdown(result: AblationResult) -> list[str]:
    """The report's statistics section: the verdicts in words, then how they were computed."""
    stats = getattr(result, "statistics", None) or {}
    if not stats:
        return []
    vary = result.dataset.get("vary_split")
    return ["## Verdict (95 % intervals over seeds)", "", *[f"- {s}" for s in verdict_sentences(result)], "",
            f"Method: each mean comes with its 95 % Student-t interval over the n = {len(stats['seeds'])} seeds "
            "(mean ± t(0.975, n-1) · s / sqrt(n), s the standard deviation over seeds). The baseline and the best "
            "are compared seed by seed (every configuration trains with the same seeds"
            + (", on the same split per seed" if vary else ", on one split") + "): the paired difference "
            "d_s = x_s - b_s, its 95 % paired-t interval (as scipy.stats.ttest_rel), and the verdict better or "
            "worse where that interval excludes 0, else not distinguishable. "
            + ("With --vary-split the test split and the long-tail subsample change with the seed, so the "
               "intervals cover the choice of training examples too. " if vary else
               "The split is fixed (seed " + str(result.dataset.get("split_seed")) + "): the intervals cover the "
               "initialisation and batch order, not the choice of training examples (--vary-split does). ")
            + _multiplicity(len(result.summary) - 1), ""]


def _multiplicity(comparisons: int) -> str:
    if comparisons < 2:
        return "One comparison: the 95 % holds as stated."
    return (f"No correction for the {comparisons} comparisons with the baseline: where nothing differs, the "
            f"chance of at least one spurious verdict is up to 1 - 0.95^{comparisons} = "
            f"{100 * (1 - 0.95 ** comparisons):.0f} %, so read a lone borderline verdict with care.")


def _class_order(result: AblationResult) -> list[int]:
    counts = result.dataset["train_counts"]
    return sorted(range(len(counts)), key=lambda c: (-counts[c], c))


def recall_table(result: AblationResult) -> str:
    """Mean per-class recall (percent) of each configuration, classes from the most to the least frequent."""
    order = _class_order(result)
    classes, counts = result.dataset["classes"], result.dataset["train_counts"]
    header = ["loss"] + [f"{classes[c]} (n={counts[c]})" for c in order]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * len(order)]
    for row in result.summary:
        recall = row["per_class_recall"]["mean"]
        cells = [row["label"]] + [("n/a" if not math.isfinite(recall[c]) else f"{100 * recall[c]:.0f}") for c in order]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report_markdown(result: AblationResult, *, plots: list[str] | None = None) -> str:
    settings, data = result.settings, result.dataset
    seeds = result.summary[0]["seeds"]
    groups = data["shot_groups"]
    names = data["classes"]
    best = result.summary[0]
    split_seed = "drawn with each run's seed" if data.get("vary_split") else f"seed {data['split_seed']}"
    lines = [
        f"# losslab ablate: {data['name']}",
        "",
        f"{len(result.summary)} loss configurations x {len(seeds)} seeds ({', '.join(map(str, seeds))}), "
        f"{len(result.runs)} runs in {result.seconds:.1f} s. Best by mean balanced accuracy: **{best['label']}** "
        f"({_cell(best['balanced_accuracy'])} %).",
        "",
        "## Setup",
        "",
        f"- Data: {data['name']} ({data.get('source') or 'file'}): {data['examples']} examples, "
        f"{data['features']} features, {len(names)} classes.",
        f"- Split ({split_seed}): a class-balanced test set of {settings['test_per_class']} per class "
        f"({data['test_size']} examples) held out first; "
        + ("the rest is the training set, used as it is" if data["rho"] == 1 else
           "the training set follows the long-tail profile n_c = n_max * rho^(-c/(C-1)) with "
           f"rho = {data['rho']:g}")
        + f": {data['train_size']} examples, per class "
        + ", ".join(f"{names[c]}: {n}" for c, n in enumerate(data["train_counts"])) + ".",
        _model_line(settings, data.get("vary_split", False)),
        f"- Shot groups ({data['shot_rule']}): many-shot classes {_names(names, groups['many'])}; medium-shot "
        f"{_names(names, groups['medium'])}; few-shot {_names(names, groups['few'])}.",
        f"- Calibration: expected calibration error over {settings['bins']} equal-width bins of the top-1 "
        "probability (softmax; the predicted class's sigmoid for one-vs-rest losses).",
        "",
        "## Ranking (mean ± half-width of the 95 % interval over seeds, percent; Δ: paired difference, points)",
        "",
        *[f"> **Warning:** {warning}.\n" for warning in getattr(result, "warnings", [])],
        ranked_table(result, markdown=True),
        "",
        *statistics_markdown(result),
        "## Per-class recall (mean over seeds, percent; classes from most to least frequent in training)",
        "",
        recall_table(result),
        "",
    ]
    if plots:
        lines += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots] + [""]
    lines += ["## Loss configurations", ""]
    for row in result.summary:
        spec = config_label(row["loss"], row["options"])
        lines.append(f"- `{spec}`" if spec == row["label"] else f"- {row['label']}: `{spec}`")
    lines += ["", "## Versions", "", ", ".join(f"{k} {v}" for k, v in result.versions.items()), ""]
    return "\n".join(lines)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value


def _figure(width: float, height: float, **kwargs: Any):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained", **kwargs)
    FigureCanvasAgg(figure)
    return figure


def forest_figure(result: AblationResult):
    """The paired difference of balanced accuracy from the baseline, with its 95 % interval, one row per
    configuration (ranked; the baseline left out) and a vertical line at 0; None without other configurations."""
    stats = getattr(result, "statistics", None) or {}
    rows = [row for row in result.summary if stats and row["vs_baseline"]["reference"] is not None]
    if not rows:
        return None
    colours = {"better": "tab:green", "worse": "tab:red"}
    figure = _figure(5.5 + 0.06 * max(len(r["label"]) for r in rows), 1.9 + 0.3 * len(rows))
    ax = figure.add_subplot()
    for y, row in enumerate(rows):
        d = row["vs_baseline"]
        mean, low, high = (100 * (np.nan if d[k] is None else d[k]) for k in ("mean", "ci_low", "ci_high"))
        colour = colours.get(d["verdict"], "tab:gray")
        if math.isfinite(low) and math.isfinite(high):
            ax.plot([low, high], [y, y], color=colour, linewidth=2, solid_capstyle="butt")
        ax.plot([mean], [y], "o", color=colour, markersize=5)
    ax.axvline(0.0, color="black", linewidth=1)
    ax.set_yticks(range(len(rows)), [r["label"] for r in rows], fontsize=8)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlabel(f"balanced accuracy − {stats['baseline']}'s, points", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(f"Paired difference from {stats['baseline']} on {result.dataset['name']}, 95 % interval over "
                 f"{len(stats['seeds'])} seeds\ngreen: better, red: worse, grey: not distinguishable", fontsize=9)
    return figure


def recall_figure(result: AblationResult):
    """A heat map of mean per-class recall: one row per configuration (ranked), classes by training count."""
    order = _class_order(result)
    classes, counts = result.dataset["classes"], result.dataset["train_counts"]
    matrix = np.array([[row["per_class_recall"]["mean"][c] for c in order] for row in result.summary]) * 100
    labels = [row["label"] for row in result.summary]
    figure = _figure(3.0 + 0.62 * len(order) + 0.055 * max(len(s) for s in labels), 1.6 + 0.42 * len(labels))
    ax = figure.add_subplot()
    image = ax.imshow(matrix, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(len(order)), [f"{classes[c]}\nn={counts[c]}" for c in order], fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("class (training examples), most to least frequent")
    ax.set_title(f"Per-class recall, % (mean over seeds) on {result.dataset['name']}", fontsize=10)
    if len(order) <= 30:
        for i in range(matrix.shape[0]):
            for j in range(matrix.shape[1]):
                value = matrix[i, j]
                if math.isfinite(value):
                    ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=7,
                            color="black" if value > 60 else "white")
    figure.colorbar(image, ax=ax, label="recall %", shrink=0.9)
    return figure


def gamma_series(result: AblationResult) -> list[dict[str, Any]]:
    """The configurations that differ only in gamma, grouped: what the gamma plot draws.

    Plain cross-entropy counts as softmax focal loss at gamma = 0 (they are
    equal), so it starts the softmax focal series without alpha, and that
    series' label says so; a loss that takes gamma but was not given one
    shows at its default. Labels are :func:`~losslab.lab._losses.config_label`
    of the loss and its options other than gamma, as in the table.
    """
    series: dict[str, dict[str, Any]] = {}
    for row in result.summary:
        options = dict(row["options"])
        name = row["loss"]
        from_ce = name == "cross_entropy" and not options
        if from_ce:
            name, options = "softmax_focal_loss", {"gamma": 0.0}
        if "gamma" not in options:
            options["gamma"] = option_default(name, "gamma")  # the loss's own default, as trained
        if not isinstance(options["gamma"], (int, float)) or isinstance(options["gamma"], bool):
            continue
        gamma = float(options.pop("gamma"))
        key = config_label(name, options)
        entry = series.setdefault(key, {"label": key, "gamma": [], "balanced_accuracy": [], "ece": []})
        if from_ce:
            entry["with_ce"] = True
        entry["gamma"].append(gamma)
        entry["balanced_accuracy"].append(row["balanced_accuracy"])
        entry["ece"].append(row["ece"])
    out = []
    for entry in series.values():
        if entry.pop("with_ce", False):
            entry["label"] += " (gamma = 0: cross_entropy)"
        order = np.argsort(entry["gamma"], kind="stable")
        out.append({k: (v if k == "label" else [v[i] for i in order]) for k, v in entry.items()})
    return out


def gamma_figure(result: AblationResult):
    """Balanced accuracy and calibration error against gamma, with one-standard-deviation error bars."""
    series = gamma_series(result)
    if not series:
        return None
    figure = _figure(10.5, 4.4)
    axes = figure.subplots(1, 2)
    series = sorted(series, key=lambda e: -len(e["gamma"]))  # the sweeps first, single points after
    span = max(max(e["gamma"]) for e in series) - min(min(e["gamma"]) for e in series) or 1.0
    for i, entry in enumerate(series):
        shift = (i - (len(series) - 1) / 2) * 0.012 * span  # side by side where series share a gamma
        x = [g + shift for g in entry["gamma"]]
        for ax, metric in zip(axes, ("balanced_accuracy", "ece"), strict=True):
            mean = [100 * s["mean"] for s in entry[metric]]
            std = [100 * s["std"] for s in entry[metric]]
            ax.errorbar(x, mean, yerr=std, marker="o", capsize=3, label=entry["label"],
                        linestyle="-" if len(mean) > 1 else "none")
    axes[0].set_ylabel("balanced accuracy, % (test)")
    axes[1].set_ylabel("expected calibration error, %")
    for ax in axes:  # percentages: no axis past 100 % or below 0 (an error bar may reach past them)
        low, high = ax.get_ylim()
        ax.set_ylim(max(low, 0.0), min(high, 100.0))
    for ax in axes:
        ax.set_xlabel("focusing parameter gamma")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=min(2, len(labels)), fontsize=8, frameon=False)
    figure.suptitle(f"Focal loss on {result.dataset['name']}: mean ± std over {len(result.summary[0]['seeds'])} "
                    "seeds (cross-entropy is gamma = 0)", fontsize=10)
    return figure


def save(result: AblationResult, out: Path, *, plots: bool = True) -> list[Path]:
    """Write results.json, report.md and the plots into ``out``; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    plot_names: list[str] = []
    if plots:
        for name, build in ((FOREST_PLOT, forest_figure), (RECALL_PLOT, recall_figure), (GAMMA_PLOT, gamma_figure)):
            figure = build(result)
            if figure is None:
                continue
            path = out / name
            figure.savefig(path, dpi=130)
            plot_names.append(name)
            written.append(path)
    results = out / "results.json"
    results.write_text(json.dumps(_json_safe(result.to_dict()), indent=1) + "\n", encoding="utf-8")
    report = out / "report.md"
    report.write_text(report_markdown(result, plots=plot_names), encoding="utf-8")
    return [results, report] + written


def _model_line(settings: dict[str, Any], vary_split: bool = False) -> str:
    """The report's line on the model and its training: a built-in model, your factory, or your train_fn."""
    model = settings["model"]
    if model == "train_fn":
        return (f"- Model and training: your train_fn `{settings['train_fn']}`, seeded with each seed (lab settings "
                f"passed to it: {settings['epochs']} epochs, batches of {settings['batch_size']}, lr "
                f"{settings['lr']:g}, weight decay {settings['weight_decay']:g}); the lab scores its test logits.")
    name = {"mlp": f"mlp ({settings['hidden']} hidden units)", "cnn": "cnn (two 3 x 3 convolutions, 16 and 32 "
            "channels, average pooling to 2 x 2, a linear layer)",
            "custom": f"your factory `{settings.get('model_factory')}`"}.get(model, model)
    return (f"- Model: {name}, AdamW (lr {settings['lr']:g}, weight decay {settings['weight_decay']:g}, cosine "
            f"schedule), {settings['epochs']} epochs of batches of {settings['batch_size']}; seeds change the "
            + ("initialisation and the batch order, and the split (--vary-split)." if vary_split else
               "initialisation and the batch order, never the data."))
