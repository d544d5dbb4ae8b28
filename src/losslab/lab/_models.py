"""Your own model in the lab: a model factory or a whole training loop (``train_fn``), and the small CNN for images.

``ablate(model=factory)`` trains ``factory(num_features, num_classes)`` with the
lab's loop; ``ablate(train_fn=fn)`` hands the loop to ``fn`` and scores the test
logits it returns. Both run once per (loss configuration, seed) and, with
``jobs`` > 1, in other processes: they must then be picklable, that is
importable functions or classes defined at the top level of a module (not a
lambda, not a function defined inside another, not one defined in an
interactive session's ``__main__``).
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from ._data import Split
from ._losses import feed

__all__ = ["CNN_CHANNELS", "LossFn", "SmallCNN", "check_model", "describe", "make_net", "resolve_model",
           "run_train_fn"]

BUILT_IN = ("mlp", "logreg", "cnn")
CNN_CHANNELS = (16, 32)
FACTORY_CONTRACT = "a callable (num_features, num_classes) -> torch.nn.Module"
TRAIN_FN_CONTRACT = "a callable (split, loss_fn, seed, settings) -> test logits (n_test, C)"


def as_tensor(array: np.ndarray) -> Tensor:
    """``torch.from_numpy`` of a run's data, copied where it is read-only (joblib hands large arrays to worker
    processes as read-only memory maps, which torch warns about)."""
    return torch.from_numpy(array if array.flags.writeable else array.copy())


class SmallCNN(nn.Module):
    """Two 3 x 3 convolutions with ReLU, average pooling to 2 x 2 and a linear layer: a CNN for small images.

    Takes the flattened images of the lab's data, ``(N, H * W)``, and returns logits ``(N, num_classes)``.
    The first convolution has stride 2 for images of 16 pixels or more a side (MNIST's 28 x 28 becomes
    14 x 14), the second always, so that a run stays fast on one CPU thread.

    Args:
        image_shape: ``(H, W)`` of the grey-scale images.
        num_classes: the number of logits.
        channels: the channels of the two convolutions.

    Example:
        >>> net = SmallCNN((8, 8), 10)
        >>> net(torch.randn(4, 64)).shape
        torch.Size([4, 10])
    """

    def __init__(self, image_shape: tuple[int, int], num_classes: int,
                 channels: tuple[int, int] = CNN_CHANNELS) -> None:
        super().__init__()
        self.image_shape = (int(image_shape[0]), int(image_shape[1]))
        first_stride = 2 if min(self.image_shape) >= 16 else 1
        self.features = nn.Sequential(
            nn.Conv2d(1, channels[0], 3, stride=first_stride, padding=1), nn.ReLU(),
            nn.Conv2d(channels[0], channels[1], 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.head = nn.Linear(4 * channels[1], num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x.reshape(len(x), 1, *self.image_shape)))


def describe(fn: Any) -> str:
    """``module.qualname`` of a function or class, the type and repr of anything else: what results.json records."""
    module, name = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if module and name:
        return f"{module}.{name}"
    return f"{type(fn).__module__}.{type(fn).__qualname__} instance"


def _check_picklable(fn: Callable, *, what: str, jobs: Any, caller: str) -> None:
    """A ValueError where ``fn`` cannot go to the worker processes that ``jobs`` > 1 starts."""
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs <= 1:
        return
    try:
        pickle.dumps(fn)
    except Exception:  # a lambda, a local function, an object holding a lock...: pickle fails in many ways
        raise ValueError(f"{caller}: {what} {describe(fn)} cannot be sent to worker processes (jobs={jobs}): "
                         f"define it at the top level of an importable module (not a lambda, not a local or "
                         f"__main__ function of an interactive session), or run with jobs=1") from None


def resolve_model(model: Any, train_fn: Any, *, jobs: Any, caller: str) -> dict[str, Any]:
    """Check ``model`` and ``train_fn`` before anything runs; what results.json records of them.

    Returns ``{"model": name}`` for a built-in model (``model`` None is ``"mlp"``),
    ``{"model": "custom", "model_factory": "module.qualname"}`` for a factory and
    ``{"model": "train_fn", "train_fn": "module.qualname"}`` for a training loop.
    """
    if model is not None and train_fn is not None:
        raise ValueError(f"{caller}: give model= or train_fn=, not both (train_fn trains its own model; "
                         f"got model={model if isinstance(model, str) else describe(model)!r} and "
                         f"train_fn={describe(train_fn)!r})")
    if train_fn is not None:
        if not callable(train_fn) or isinstance(train_fn, nn.Module):
            raise ValueError(f"{caller}: train_fn must be {TRAIN_FN_CONTRACT}; got {type(train_fn).__name__}")
        _check_picklable(train_fn, what="train_fn", jobs=jobs, caller=caller)
        return {"model": "train_fn", "train_fn": describe(train_fn)}
    if model is None or isinstance(model, str):
        model = "mlp" if model is None else model
        if model not in BUILT_IN:
            raise ValueError(f"{caller}: model must be one of {', '.join(map(repr, BUILT_IN))} or "
                             f"{FACTORY_CONTRACT}; got {model!r}")
        return {"model": model}
    if isinstance(model, nn.Module):
        raise ValueError(f"{caller}: model must be a factory that builds a fresh {type(model).__name__} for every "
                         f"run, {FACTORY_CONTRACT}, not a module instance (e.g. model=lambda d, c: "
                         f"{type(model).__name__}(...) with jobs=1, or a top-level function)")
    if not callable(model):
        raise ValueError(f"{caller}: model must be one of {', '.join(map(repr, BUILT_IN))} or {FACTORY_CONTRACT}; "
                         f"got {type(model).__name__} {model!r}")
    _check_picklable(model, what="model", jobs=jobs, caller=caller)
    return {"model": "custom", "model_factory": describe(model)}


def _needs_images(split: Split, caller: str) -> tuple[int, int]:
    if split.image_shape is None:
        raise ValueError(f"{caller}: model 'cnn' needs images (Digits-LT, MNIST-LT, or a .npz whose x is N x H x W); "
                         f"{split.name} is tabular, {split.x_train.shape[1]} features per example: use 'mlp' or "
                         "'logreg'")
    return split.image_shape


MODELS = ("mlp", "logreg", "cnn")


def build_model(kind: Literal["mlp", "logreg", "cnn"], in_features: int, num_classes: int, *, hidden: int = 128,
                image_shape: tuple[int, int] | None = None) -> nn.Module:
    """An MLP (one hidden layer of ``hidden`` ReLU units), a logistic regression (one linear layer), or a CNN.

    The CNN (:class:`losslab.lab._models.SmallCNN`) takes images flattened to ``in_features = H * W``
    and needs their ``image_shape`` ``(H, W)``; it ignores ``hidden``.
    Parameters are drawn from torch's global generator: seed it first (:func:`train` does).
    """
    if kind == "cnn":
        if image_shape is None or len(image_shape) != 2 or image_shape[0] * image_shape[1] != in_features:
            raise ValueError(f"build_model: the cnn needs image_shape (H, W) with H * W = in_features "
                             f"({in_features}); got {image_shape!r}")
        return SmallCNN(tuple(image_shape), num_classes)
    if kind == "mlp":
        if not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f"build_model: hidden must be a positive integer; got {hidden!r}")
        return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
    if kind == "logreg":
        return nn.Linear(in_features, num_classes)
    raise ValueError(f"build_model: model must be one of {', '.join(map(repr, MODELS))}; got {kind!r}")


def make_net(model: Any, split: Split, *, hidden: int = 128, caller: str = "train") -> nn.Module:
    """The network of one run: a built-in model by name, or ``model(num_features, num_classes)`` checked.

    A factory's result must be an ``nn.Module`` whose output for a batch ``(B, num_features)`` of float32 rows
    is ``(B, num_classes)``; it is probed once on two training rows in eval mode without gradients (so that
    dropout draws nothing and batch norm keeps its statistics), then put back in training mode.
    """
    num_features, num_classes = split.x_train.shape[1], split.num_classes
    if isinstance(model, str):
        image_shape = _needs_images(split, caller) if model == "cnn" else None
        return build_model(model, num_features, num_classes, hidden=hidden, image_shape=image_shape)
    called = f"model({num_features}, {num_classes}) from {describe(model)}"
    try:
        net = model(num_features, num_classes)
    except Exception as error:
        raise ValueError(f"{caller}: {called} raised {type(error).__name__}: {' '.join(str(error).split())} "
                         f"(model must be {FACTORY_CONTRACT})") from error
    if not isinstance(net, nn.Module):
        raise ValueError(f"{caller}: {called} returned {type(net).__name__}, not a torch.nn.Module "
                         f"(model must be {FACTORY_CONTRACT})")
    probe = as_tensor(split.x_train[:2])
    try:
        net.eval()
        with torch.no_grad():
            out = net(probe)
    except Exception as error:
        raise ValueError(f"{caller}: the module of {called} fails on a batch of shape {tuple(probe.shape)}, "
                         f"float32: {type(error).__name__}: {' '.join(str(error).split())}") from error
    finally:
        net.train()
    if not isinstance(out, Tensor) or out.shape != (len(probe), num_classes):
        got = f"shape {tuple(out.shape)}" if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"{caller}: the module of {called} returns {got} for a batch of shape "
                         f"{tuple(probe.shape)}; the lab needs logits ({len(probe)}, {num_classes}), one per class")
    return net


def check_model(split: Split, model: Any, *, hidden: int, caller: str) -> None:
    """Build the model once on ``split`` before any run (built with torch's generator left as it was)."""
    with torch.random.fork_rng(devices=[]):
        make_net(model, split, hidden=hidden, caller=caller)


class LossFn:
    """The loss a ``train_fn`` trains with: ``loss_fn(logits, targets)`` -> scalar tensor.

    ``logits`` are the model's raw outputs ``(B, C)``, ``targets`` class indices ``(B,)``; the loss is fed
    what it declares (logits, probabilities or log-probabilities), exactly as in the lab's own loop.
    ``sigmoid`` says whether the lab scores the test logits with per-class sigmoids (one-vs-rest losses)
    rather than a softmax; ``last`` is the value of the latest call (the run's ``final_train_loss``).
    A configuration with a schedule (``warmup``, class weights ``from`` an epoch) needs
    ``loss_fn.set_epoch(epoch)`` at the start of every epoch, as ``DistributedSampler.set_epoch``.
    """

    def __init__(self, criterion: Callable, kind: str, sigmoid: bool, label: str,
                 phases: Sequence[tuple[int, Callable, str]] = ()) -> None:
        self.criterion, self.kind, self.sigmoid, self.label = criterion, kind, sigmoid, label
        self.last = float("nan")
        self.phases = list(phases)  # (first epoch, criterion, kind) of each phase of a schedule
        self.epoch: int | None = None

    def set_epoch(self, epoch: int) -> None:
        """Train epoch ``epoch`` (counted from 0) with its phase's loss (a no-op without a schedule)."""
        self.epoch = int(epoch)
        for first, criterion, kind in self.phases:
            if first <= epoch:
                self.criterion, self.kind = criterion, kind

    def __call__(self, logits: Tensor, targets: Tensor) -> Tensor:
        value = self.criterion(feed(logits, self.kind, sigmoid=self.sigmoid), targets)
        self.last = float(value.detach())
        return value

    def __repr__(self) -> str:
        return f"LossFn({self.label}, sigmoid={self.sigmoid})"


def run_train_fn(train_fn: Callable, split: Split, loss_fn: LossFn, *, seed: int, settings: Mapping[str, Any],
                 caller: str = "train") -> dict[str, Any]:
    """Call ``train_fn(split, loss_fn, seed, settings)`` and turn its test logits into :func:`train`'s result.

    The caller has seeded torch's global generator with ``seed`` and set one thread.
    Raises a ValueError for a result that is not logits ``(n_test, C)``, and a
    FloatingPointError for NaN or infinite logits.
    """
    start = time.perf_counter()
    logits = train_fn(split, loss_fn, seed, dict(settings))
    name = describe(train_fn)
    expected = (len(split.y_test), split.num_classes)
    if isinstance(logits, np.ndarray) and logits.dtype.kind in "biuf":
        logits = torch.from_numpy(logits)
    if not isinstance(logits, Tensor) or logits.is_complex():
        raise ValueError(f"{caller}: train_fn {name} returned {type(logits).__name__}; it must return the test "
                         f"logits, a real array or tensor of shape (n_test, C) = {expected}")
    if tuple(logits.shape) != expected:
        raise ValueError(f"{caller}: train_fn {name} returned shape {tuple(logits.shape)}; it must return the test "
                         f"logits, one row per test example of split.x_test and one column per class: {expected}")
    logits = logits.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(logits).all()):
        raise FloatingPointError(f"{caller}: train_fn {name} returned NaN or infinite test logits for "
                                 f"{loss_fn.label} (seed {seed}); the loss was {loss_fn.last} at its last call")
    probabilities = torch.sigmoid(logits) if loss_fn.sigmoid else torch.softmax(logits, dim=1)
    return {"probabilities": probabilities.numpy(), "logits": logits.numpy(), "sigmoid": loss_fn.sigmoid,
            "seconds": time.perf_counter() - start, "final_loss": loss_fn.last}
