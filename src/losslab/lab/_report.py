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
GAMMA_PLOT = "gamma.png"


@dataclass
class AblationResult:
    """Every run of an ablation, the ranked summary, and what produced them.

    ``runs`` holds one dict per (loss, seed) with every metric;
    ``summary`` one dict per loss configuration, ranked by mean balanced
    accuracy, with the mean and standard deviation (over seeds, ddof = 1) of
    each metric. :meth:`save` writes results.json, report.md and the plots.
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

    def to_dict(self) -> dict[str, Any]:
        return {"settings": self.settings, "dataset": self.dataset, "warnings": self.warnings,
                "summary": self.summary, "runs": self.runs, "versions": self.versions,
                "seconds": round(self.seconds, 3)}

    def table(self, *, markdown: bool = False) -> str:
        """The ranked table: mean +- standard deviation over seeds of each metric."""
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


def _cell(stats: dict[str, float] | None) -> str:
    if stats is None or not math.isfinite(stats["mean"]):
        return "n/a"
    return f"{100 * stats['mean']:.1f} ± {100 * stats['std']:.1f}"


def ranked_table(result: AblationResult, *, markdown: bool = False) -> str:
    """The configurations ranked by mean balanced accuracy, each metric as mean ± std over seeds, in percent."""
    header = ["rank", "loss"] + [title for _, title in COLUMNS]
    rows = [[str(row["rank"]), row["label"]] + [_cell(row.get(key)) for key, _ in COLUMNS] for row in result.summary]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---:|" + "---|" + "---:|" * len(COLUMNS)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 1 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths,
                                                                                              strict=True))).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


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
        f"- Split (seed {data['split_seed']}): a class-balanced test set of {settings['test_per_class']} per class "
        f"({data['test_size']} examples) held out first; "
        + ("the rest is the training set, used as it is" if data["rho"] == 1 else
           "the training set follows the long-tail profile n_c = n_max * rho^(-c/(C-1)) with "
           f"rho = {data['rho']:g}")
        + f": {data['train_size']} examples, per class "
        + ", ".join(f"{names[c]}: {n}" for c, n in enumerate(data["train_counts"])) + ".",
        _model_line(settings),
        f"- Shot groups ({data['shot_rule']}): many-shot classes {_names(names, groups['many'])}; medium-shot "
        f"{_names(names, groups['medium'])}; few-shot {_names(names, groups['few'])}.",
        f"- Calibration: expected calibration error over {settings['bins']} equal-width bins of the top-1 "
        "probability (softmax; the predicted class's sigmoid for one-vs-rest losses).",
        "",
        "## Ranking (mean ± standard deviation over seeds, percent)",
        "",
        *[f"> **Warning:** {warning}.\n" for warning in getattr(result, "warnings", [])],
        ranked_table(result, markdown=True),
        "",
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
        for name, build in ((RECALL_PLOT, recall_figure), (GAMMA_PLOT, gamma_figure)):
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


def _model_line(settings: dict[str, Any]) -> str:
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
            "initialisation and the batch order, never the data.")
