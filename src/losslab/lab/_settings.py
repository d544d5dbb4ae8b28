"""Settings of ``losslab ablate``: the defaults, the default grid, ``--loss`` specs and YAML/TOML configs."""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..registry import lookup
from ._losses import COUNTS_KEY, WEIGHT_METHODS, config_label, format_value, parse_counts

__all__ = ["DEFAULTS", "QUICK", "default_grid", "load_config", "parse_loss_spec", "require"]

# What a run does unless a flag or the config file says otherwise.
DEFAULTS: dict[str, Any] = {
    "data": None, "dataset": None,  # a file, or a built-in data set by name (neither: DEFAULT_DATASET)
    "label_column": "label", "x_key": "x", "y_key": "y",
    "rho": None,  # 20 for Digits-LT, 100 for MNIST-LT, 1 (keep the data as it is) for --data
    "test_per_class": None,  # 50 for Digits-LT, 100 for MNIST-LT; min(50, rarest class // 4) for --data
    "split_seed": 0, "seeds": 5,
    "model": "mlp", "hidden": 128, "batch_size": 64, "lr": 3e-3, "weight_decay": 1e-4,
    "epochs": None,  # 20 for MNIST-LT, 60 for Digits-LT and --data (lab._data.default_epochs)
    "shot_thresholds": None, "bins": 15, "jobs": None, "backend": "local", "scheduler": None,
    "out": "losslab-ablate", "losses": None,
    "baseline": None,  # cross_entropy, or the first configuration where the grid has none
    "vary_split": False,  # True: the split (test set and long-tail subsample) drawn with each run's seed
}
QUICK = {"seeds": 2, "epochs": None}  # None: the data set's quick epochs, 5 for MNIST-LT, 20 for the others

def require(module: str, *, caller: str, purpose: str, alternative: str = "") -> None:
    """An ImportError in one line, naming the extra to install, when the optional ``module`` is missing."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError:
        package = {"sklearn": "scikit-learn", "yaml": "PyYAML"}.get(module, module)
        raise ImportError(f"{caller}: {purpose} needs {package}, which is not installed: "
                          f"pip install 'losslab[lab]'{alternative}") from None


# LDAM's logit scale for the lab's ordinary linear head (see default_grid).
LDAM_SCALE = 2.0


def default_grid() -> list[dict[str, Any]]:
    """The losses ``losslab ablate`` compares unless told otherwise: one dict per configuration.

    The families a practitioner should compare on long-tailed data:
    cross-entropy; focal loss (gamma 2, no alpha); class-balanced weights,
    inverse frequency and effective number (beta 0.99, Cui et al.);
    class-balanced focal (Cui et al.'s effective-number alpha with gamma 2);
    logit adjustment (tau 1, the same loss as Balanced Softmax); LDAM with
    deferred re-weighting (effective-number weights, beta 0.9999, from 80 %
    of the epochs, as Cao et al.); VS (gamma 0.2, tau 1); label smoothing 0.1.
    Every run is also scored after post-hoc logit adjustment (``run["posthoc"]``).

    LDAM's ``scale`` is :data:`LDAM_SCALE` (2), not Cao et al.'s 30: their last
    layer computes cosine similarities in [-1, 1], which a scale of 30 stretches
    to logits of useful size; the lab's head is an ordinary linear layer
    whose logits grow freely, so 30 would only multiply the loss's curvature
    (and, under Adam, the step in logit space) by 30 and make training
    unstable. A small scale keeps the loss near cross-entropy's size while the
    margins (scale x 0.5 for the rarest class) stay visible to the model.
    """
    effective = {"method": "effective_number", "beta": 0.99}
    grid: list[dict[str, Any]] = [
        {"name": "cross_entropy"},
        {"name": "softmax_focal_loss", "gamma": 2.0},
        {"name": "balanced_cross_entropy", "alpha": "inverse"},
        {"name": "balanced_cross_entropy", "alpha": effective},
        {"name": "softmax_focal_loss", "gamma": 2.0, "alpha": effective},
        {"name": "logit_adjusted_cross_entropy"},
        {"name": "ldam_loss", "scale": LDAM_SCALE,
         "weight": {"method": "effective_number", "beta": 0.9999, "from": 0.8}},
        {"name": "vs_loss"},
        {"name": "cross_entropy", "label_smoothing": 0.1},
    ]
    return [{**config, "label": _describe(config["name"], {k: v for k, v in config.items() if k != "name"})}
            for config in grid]


_METHOD_CALL = re.compile(r"^(\w+)\((.*)\)$")


def _parse_value(text: str) -> Any:
    """A spec's value: JSON where it parses, ``method(key=value,...)`` as a class-weight mapping, else the text."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    call = _METHOD_CALL.match(text)
    if call and call.group(1) in WEIGHT_METHODS:
        options: dict[str, Any] = {"method": call.group(1)}
        for item in filter(None, call.group(2).split(",")):
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"parse_loss_spec: {item!r} in {text!r} is not key=value")
            options[key.strip()] = _parse_value(value.strip())
        return options
    return text


def _describe(name: str, options: Mapping[str, Any]) -> str:
    return config_label(name, options)


def _expand(entry: Mapping[str, Any], *, caller: str) -> list[dict[str, Any]]:
    """One config entry, with its ``grid`` mapping (key -> list of values) expanded into configurations."""
    if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
        raise ValueError(f"{caller}: each loss must be a mapping with a 'name' (a registered loss); got {entry!r}")
    entry = dict(entry)
    grid = entry.pop("grid", {}) or {}
    if not isinstance(grid, Mapping) or not all(isinstance(v, list) and v for v in grid.values()):
        raise ValueError(f"{caller}: 'grid' of {entry['name']!r} must map option names to non-empty lists; "
                         f"got {grid!r}")
    label = entry.pop("label", None)
    out = []
    for values in itertools.product(*grid.values()):
        config = {**entry, **dict(zip(grid, values, strict=True))}
        options = {k: v for k, v in config.items() if k != "name"}
        if label is None:
            config["label"] = _describe(config["name"], options)
        else:
            config["label"] = label if not grid else f"{label} " + " ".join(
                f"{k}={format_value(v)}" for k, v in zip(grid, values, strict=True))
        out.append(config)
    return out


def parse_loss_spec(text: str) -> list[dict[str, Any]]:
    """Configurations from a command-line spec ``"NAME key=value key=v1,v2 ... [label=TEXT]"``.

    The spec is split into words as a shell does (quotes group words); the
    loss's name is every word before the first ``key=value`` word, so names
    with spaces work quoted or not (``"Multi-Class Focal Loss gamma=2"``,
    ``"'Focal Loss' alpha=0.5"``), and every word after it must be
    ``key=value``. Values are read as JSON where they parse (numbers, true,
    null, lists), ``method(key=value,...)`` as a class-weight method with its
    parameters (``alpha=effective_number(beta=0.99)``), else as strings; a
    comma-separated value expands into a grid, one configuration per
    combination, except ``class_counts=500,120,30,6``: the counts of one
    configuration (the losses that need class counts; the lab's commands
    otherwise take them from the data).

    Example:
        >>> [c["label"] for c in parse_loss_spec("softmax_focal_loss gamma=1,2 alpha=inverse")]
        ['softmax_focal_loss gamma=1 alpha=inverse', 'softmax_focal_loss gamma=2 alpha=inverse']
        >>> parse_loss_spec("Multi-Class Focal Loss gamma=2")[0]["name"]
        'Multi-Class Focal Loss'
    """
    try:
        words = shlex.split(text)
    except ValueError as error:
        raise ValueError(f"parse_loss_spec: cannot split {text!r} into words ({error})") from None
    first = next((i for i, word in enumerate(words) if "=" in word), len(words))
    if first == 0:
        raise ValueError(f"parse_loss_spec: a loss spec starts with a loss name, as in 'softmax_focal_loss "
                         f"gamma=2'; got {text!r}")
    name, label = " ".join(words[:first]), None
    if first > 1:  # a name of several words: say how the spec was read where it names no loss
        try:
            lookup(name)
        except ValueError as error:
            raise ValueError(f"parse_loss_spec: {name!r} (every word before the first key=value in {text!r}) is "
                             f"not a loss name; {error}") from None
    choices: dict[str, list[Any]] = {}
    for word in words[first:]:
        key, sep, value = word.partition("=")
        if not sep or not key or not value:
            raise ValueError(f"parse_loss_spec: {word!r} in {text!r} is not key=value (the name comes first, "
                             "then key=value words only)")
        if key == "label":
            label = value
        elif key == COUNTS_KEY:  # one vector of counts, never a grid: class_counts=500,120,30,6
            choices[key] = [parse_counts(value, caller="parse_loss_spec", loss=name)]
        elif "," in value and not value.startswith(("[", "{")) and "(" not in value:
            choices[key] = [_parse_value(v) for v in value.split(",")]
        else:
            choices[key] = [_parse_value(value)]
    varied = [k for k, v in choices.items() if len(v) > 1]
    configs = []
    for values in itertools.product(*choices.values()):
        options = dict(zip(choices, values, strict=True))
        text_label = _describe(name, options) if label is None else label + "".join(
            f" {k}={format_value(options[k])}" for k in varied)
        configs.append({"name": name, **options, "label": text_label})
    return configs


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Settings from a YAML (.yaml, .yml) or TOML (.toml) file: any of ``losslab ablate``'s options.

    ``losses`` is a list of mappings with a ``name`` (as :func:`losslab.get_loss`
    takes), the loss's options, an optional ``label``, and an optional ``grid``
    mapping options to lists of values to expand; the other keys are the
    flags' names with underscores (``seeds``, ``rho``, ``epochs``, ``model``, ...).
    A relative ``data`` path is read from the config file's folder, not the
    current directory.
    """
    path = Path(path)
    caller = "load_config"
    if not path.is_file():
        raise ValueError(f"{caller}: no such file: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix in (".yaml", ".yml"):
            require("yaml", caller=caller, purpose=f"reading {path.name}", alternative=" (or write it as .toml)")
            import yaml

            config = yaml.safe_load(path.read_text(encoding="utf-8"))
        elif suffix == ".toml":
            if sys.version_info >= (3, 11):
                import tomllib
            else:  # pragma: no cover
                import tomli as tomllib
            config = tomllib.loads(path.read_text(encoding="utf-8"))
        else:
            raise ValueError(f"{caller}: {path} must be .yaml, .yml or .toml; got suffix {suffix or '(none)'!r}")
    except (ValueError, ImportError):
        raise
    except Exception as error:
        detail = " ".join(str(error).split())
        raise ValueError(f"{caller}: cannot parse {path} ({type(error).__name__}: {detail})") from error
    config = {} if config is None else config
    if not isinstance(config, Mapping):
        raise ValueError(f"{caller}: {path} must hold a mapping of settings; got {type(config).__name__}")
    config = {str(k).replace("-", "_"): v for k, v in config.items()}
    unknown = sorted(set(config) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"{caller}: {path} has unknown settings {unknown}; known: {sorted(DEFAULTS)}")
    if config.get("losses") is not None:
        if not isinstance(config["losses"], list) or not config["losses"]:
            raise ValueError(f"{caller}: 'losses' in {path} must be a non-empty list of mappings with a 'name'")
        config["losses"] = [c for entry in config["losses"] for c in _expand(entry, caller=caller)]
    if isinstance(config.get("data"), str):  # a relative path is relative to the config's folder
        data = Path(config["data"]).expanduser()
        config["data"] = str(data if data.is_absolute() else path.parent / data)
    return config
