"""One run of the lab: a small model trained with one loss on one seed, with a fixed budget."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from .._checks import get_checks, set_checks
from ._data import Split
from ._losses import build_loss, check_training_options, classification_loss, config_label, feed, input_kind, is_sigmoid
from ._models import MODELS, LossFn, as_tensor, build_model, make_net, run_train_fn  # noqa: F401  (re-exported)
from ._schedule import at_epochs, phases

__all__ = ["build_model", "check_budget", "check_loss", "posthoc_probabilities", "train"]



@contextmanager
def _one_thread_seeded(seed: int):
    """Run on one intra-op thread with torch's global generator seeded, restoring both afterwards.

    One thread makes a run's arithmetic, and so its numbers, independent of the
    machine's core count and of how many runs share it (``--jobs``).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield
    finally:
        torch.set_num_threads(threads)


def check_budget(*, caller: str, epochs: Any, batch_size: Any, lr: Any, weight_decay: Any, hidden: Any = 128) -> None:
    """A ValueError for a training budget that cannot run: what :func:`train` checks, callable before any run."""
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("hidden", hidden)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{caller}: {name} must be a positive integer; got {value!r}")
    for name, value in (("lr", lr), ("weight_decay", weight_decay)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
            raise ValueError(f"{caller}: {name} must be a finite non-negative number; got {value!r}")


def check_loss(split: Split, loss: str, options: Mapping[str, Any] | None = None, *, caller: str,
               label: str | None = None, epochs: int | None = None) -> None:
    """Build the loss and compute it once on a few training examples with random logits, before any run.

    Every phase of a schedule (``warmup``, class weights ``from`` an epoch;
    :mod:`losslab.lab._schedule`) is checked. Raises what building or calling
    the loss raises (ValueError, TypeError), and a ValueError for an option
    that breaks training, a bad schedule, or a loss that is not a finite
    scalar, so that a bad configuration fails before the first run.
    """
    options = dict(options or {})
    label = label or loss
    check_training_options(options, caller=caller, label=label)
    sigmoid = is_sigmoid(classification_loss(loss, caller=caller)[0], options)
    y = as_tensor(split.y_train[:8])
    logits = torch.randn(len(y), split.num_classes, generator=torch.Generator().manual_seed(0))
    plan = phases(loss, options, sigmoid=sigmoid, caller=caller, label=label)
    if epochs is not None and len(at_epochs(plan, epochs)) < len(plan):  # a phase would silently vanish
        starts = ", ".join(f"{start:g}" for start, _, _ in plan[1:])
        raise ValueError(f"{caller}: {label}: with {epochs} epochs a phase of its schedule (starting at "
                         f"{starts} of the epochs) gets no epoch; give more epochs or move the switch")
    for _, name, phase_options in plan:
        criterion, _ = build_loss(name, phase_options, split.train_counts().tolist(), caller=caller, running=True)
        value = criterion(feed(logits, input_kind(name, phase_options), sigmoid=sigmoid), y)
        if value.ndim != 0 or not bool(torch.isfinite(value)):
            raise ValueError(f"{caller}: {label}: the loss of a random batch is {shape_or_value(value)}; training "
                             "needs a finite scalar")


def posthoc_probabilities(logits: np.ndarray, train_counts: np.ndarray, *, sigmoid: bool,
                          tau: float = 1.0) -> np.ndarray:
    """A run's test scores after post-hoc logit adjustment: :func:`losslab.logit_adjust` (tau 1), then softmax.

    Menon et al.'s correction of a model's predictions for the balanced error
    (ICLR 2021, arXiv:2007.07314): the logits minus tau times the log of the
    training prior, then a softmax (per-class sigmoids for a one-vs-rest
    loss). Free for every trained model; for one trained with a loss that
    adjusts its logits already (logit_adjusted_cross_entropy, vs_loss), it
    adjusts twice.
    """
    from ..weights import logit_adjust

    adjusted = logit_adjust(torch.as_tensor(logits, dtype=torch.float64), torch.as_tensor(train_counts), tau=tau)
    return (torch.sigmoid(adjusted) if sigmoid else torch.softmax(adjusted, dim=1)).numpy()


def shape_or_value(value: torch.Tensor) -> str:
    return f"a tensor of shape {tuple(value.shape)}" if value.ndim else f"{float(value)}"


def train(split: Split, loss: str, options: Mapping[str, Any] | None = None, *, seed: int = 0,
          model: Literal["mlp", "logreg", "cnn"] | Callable[[int, int], nn.Module] = "mlp", hidden: int = 128,
          epochs: int = 60, batch_size: int = 64, lr: float = 3e-3, weight_decay: float = 1e-4,
          train_fn: Callable[..., Any] | None = None) -> dict[str, Any]:
    """Train a model on ``split``'s training set with the loss ``loss`` and return its test predictions.

    AdamW with a cosine learning-rate schedule for ``epochs`` passes over the
    training set in shuffled mini-batches; parameters and batch order depend
    only on ``seed``, so a run is deterministic. Class-weight methods in
    ``options`` ("inverse", "effective_number", ...) are resolved against the
    training counts (:func:`losslab.class_weights`, weights averaging 1). A
    loss that takes ``class_counts`` gets the training counts unless
    ``options`` gives them; ``seesaw_loss`` without them is its module
    (``SeesawLoss(num_classes=C)``), which counts each batch's labels as it trains.

    A schedule changes the loss at epoch boundaries (:mod:`losslab.lab._schedule`):
    ``warmup=0.2`` trains the first 20 % of the epochs with plain cross-entropy,
    a class weight ``{"method": ..., "from": 0.8}`` is switched on at 80 % of
    the epochs (deferred re-weighting); the optimizer and its learning-rate
    schedule run on across the switch.

    Returns:
        ``{"probabilities": (N_test, C) array, "logits": (N_test, C) float64 array, "sigmoid": bool,
        "seconds": float, "final_loss": float, "schedule": [{"epoch", "loss", "options"}, ...]}``:
        softmax probabilities, or per-class sigmoids for one-vs-rest losses; the
        phases of training, each with its first epoch (one phase without a schedule).

    Each loss is fed the input it declares (:func:`losslab.lab._losses.input_kind`):
    the model's logits, their softmax (or sigmoids) for a loss or alias that
    takes probabilities (``"BCELoss"``, ``from_logits=False``), their
    log-softmax for one that takes log-probabilities (``nll_loss``).

    ``model`` is "mlp", "logreg", "cnn" (images only: ``split.image_shape``) or a factory
    ``model(num_features, num_classes) -> nn.Module`` trained by this loop. ``train_fn``
    replaces the loop: ``train_fn(split, loss_fn, seed, settings)`` returns the test
    logits ``(n_test, C)`` for ``split.x_test``, trained with ``loss_fn(logits, targets)``
    (:class:`losslab.lab._models.LossFn`); ``settings`` holds epochs, batch_size, lr,
    weight_decay and hidden. It runs with torch's global generator seeded with ``seed``
    on one thread, like the lab's loop.

    Raises:
        ValueError: a bad budget, an option that breaks training (``reduction``,
            ``dist_sync``, ``avg_factor``), and the loss's own errors.
        FloatingPointError: the loss became NaN or infinite (with a hint to
            lower the learning rate).
    """
    options = dict(options or {})
    if train_fn is not None and not (isinstance(model, str) and model == "mlp"):  # "mlp" is the default
        raise ValueError(f"train: give model= or train_fn=, not both (train_fn trains its own model); got "
                         f"model={model!r}")
    check_budget(caller="train", epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                 hidden=hidden if model == "mlp" else 128)
    check_training_options(options, caller="train", label=loss)
    counts = split.train_counts()
    sigmoid = is_sigmoid(classification_loss(loss, caller="train")[0], options)
    plan = at_epochs(phases(loss, options, sigmoid=sigmoid, caller="train"), epochs)
    criteria = [(build_loss(p["loss"], p["options"], counts.tolist(), caller="train", running=True)[0],
                 input_kind(p["loss"], p["options"])) for p in plan]
    x = as_tensor(split.x_train)
    y = as_tensor(split.y_train)
    start = time.perf_counter()
    with _one_thread_seeded(seed):
        if train_fn is not None:  # the user's loop: the lab seeds it and scores the test logits it returns
            budget = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
                      "hidden": hidden}
            loss_fn = LossFn(*criteria[0], sigmoid, loss, [(p["epoch"], *c) for p, c in zip(plan, criteria)])
            out = run_train_fn(train_fn, split, loss_fn, seed=seed, settings=budget)
            if len(plan) > 1 and loss_fn.epoch is None:
                raise ValueError(f"train: {config_label(loss, options)} changes its loss at epochs "
                                 f"{[p['epoch'] for p in plan[1:]]} of {epochs}; train_fn must call "
                                 "loss_fn.set_epoch(epoch) at the start of every epoch")
            return {**out, "schedule": plan}
        net = make_net(model, split, hidden=hidden, caller="train")
        steps = epochs * -(-len(x) // batch_size)
        optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        generator = torch.Generator().manual_seed(seed)
        saved = get_checks()
        last = float("nan")
        try:
            phase = 0
            for epoch in range(epochs):
                while phase + 1 < len(plan) and plan[phase + 1]["epoch"] <= epoch:
                    phase += 1
                criterion, kind = criteria[phase]
                order = torch.randperm(len(x), generator=generator)
                for begin in range(0, len(x), batch_size):
                    batch = order[begin:begin + batch_size]
                    value = criterion(feed(net(x[batch]), kind, sigmoid=sigmoid), y[batch])
                    optimizer.zero_grad(set_to_none=True)
                    value.backward()
                    optimizer.step()
                    schedule.step()
                    set_checks(False)  # the first step checked the values; the data does not change
                last = float(value.detach())
                if not np.isfinite(last):
                    break  # nothing after a NaN is worth computing
        finally:
            set_checks(saved)
        net.eval()
        with torch.no_grad():
            logits = net(as_tensor(split.x_test)).double()
    probabilities = torch.sigmoid(logits) if sigmoid else torch.softmax(logits, dim=1)
    if not np.isfinite(last) or not bool(torch.isfinite(probabilities).all()):
        what = f"the loss became {last}" if not np.isfinite(last) else "the model's outputs became NaN or infinite"
        shown = " ".join([loss] + [f"{k}={v}" for k, v in options.items()])
        raise FloatingPointError(f"train: {what} while training {shown} (seed {seed}, lr {lr:g}); the learning "
                                 f"rate is probably too large: try a smaller one "
                                 f"(--lr, e.g. {3e-3 if lr > 3e-3 else lr / 10:g})")
    return {"probabilities": probabilities.numpy(), "logits": logits.numpy(), "sigmoid": sigmoid,
            "seconds": time.perf_counter() - start, "final_loss": last, "schedule": plan}
