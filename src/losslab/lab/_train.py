"""One run of the lab: a small model trained with one loss on one seed, with a fixed budget."""

from __future__ import annotations

import time
from collections.abc import Mapping
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from .._checks import get_checks, set_checks
from ._data import Split
from ._losses import build_loss, is_sigmoid

__all__ = ["build_model", "train"]

MODELS = ("mlp", "logreg")


def build_model(kind: Literal["mlp", "logreg"], in_features: int, num_classes: int, *, hidden: int = 128) -> nn.Module:
    """An MLP (one hidden layer of ``hidden`` ReLU units) or a logistic regression (one linear layer).

    Parameters are drawn from torch's global generator: seed it first (:func:`train` does).
    """
    if kind == "mlp":
        if not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f"build_model: hidden must be a positive integer; got {hidden!r}")
        return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
    if kind == "logreg":
        return nn.Linear(in_features, num_classes)
    raise ValueError(f"build_model: model must be one of {', '.join(map(repr, MODELS))}; got {kind!r}")


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


def train(split: Split, loss: str, options: Mapping[str, Any] | None = None, *, seed: int = 0,
          model: Literal["mlp", "logreg"] = "mlp", hidden: int = 128, epochs: int = 60, batch_size: int = 64,
          lr: float = 3e-3, weight_decay: float = 1e-4) -> dict[str, Any]:
    """Train a model on ``split``'s training set with the loss ``loss`` and return its test predictions.

    AdamW with a cosine learning-rate schedule for ``epochs`` passes over the
    training set in shuffled mini-batches; parameters and batch order depend
    only on ``seed``, so a run is deterministic. Class-weight methods in
    ``options`` ("inverse", "effective_number", ...) are resolved against the
    training counts (:func:`losslab.class_weights`, weights averaging 1).

    Returns:
        ``{"probabilities": (N_test, C) array, "sigmoid": bool, "seconds": float, "final_loss": float}``:
        softmax probabilities, or per-class sigmoids for one-vs-rest losses.
    """
    options = dict(options or {})
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"train: {name} must be a positive integer; got {value!r}")
    for name, value in (("lr", lr), ("weight_decay", weight_decay)):
        if not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
            raise ValueError(f"train: {name} must be a finite non-negative number; got {value!r}")
    counts = split.train_counts()
    criterion, spec = build_loss(loss, options, counts.tolist(), caller="train")
    sigmoid = is_sigmoid(spec, options)
    x = torch.from_numpy(split.x_train)
    y = torch.from_numpy(split.y_train)
    start = time.perf_counter()
    with _one_thread_seeded(seed):
        net = build_model(model, x.shape[1], split.num_classes, hidden=hidden)
        steps = epochs * -(-len(x) // batch_size)
        optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        generator = torch.Generator().manual_seed(seed)
        saved = get_checks()
        last = float("nan")
        try:
            for _ in range(epochs):
                order = torch.randperm(len(x), generator=generator)
                for begin in range(0, len(x), batch_size):
                    batch = order[begin:begin + batch_size]
                    value = criterion(net(x[batch]), y[batch])
                    optimizer.zero_grad(set_to_none=True)
                    value.backward()
                    optimizer.step()
                    schedule.step()
                    set_checks(False)  # the first step checked the values; the data does not change
                last = float(value.detach())
        finally:
            set_checks(saved)
        net.eval()
        with torch.no_grad():
            logits = net(torch.from_numpy(split.x_test)).double()
    probabilities = torch.sigmoid(logits) if sigmoid else torch.softmax(logits, dim=1)
    if not np.isfinite(last):
        raise FloatingPointError(f"train: the loss {loss} {options} became {last} (seed {seed})")
    return {"probabilities": probabilities.numpy(), "sigmoid": sigmoid, "seconds": time.perf_counter() - start,
            "final_loss": last}
