"""The losses of the multi-process tests (tests/test_dist.py) and the worker each process runs.

Every case builds one global float64 batch, the same on every process, and
cuts it along dim 0 into unequal shards (with 3 processes one shard is
empty); several cases make a shard entirely ignored or without positives.
Each process computes the loss of ``input + theta`` on its shard with
``dist_sync=True``, where ``theta`` (shaped like one example) stands for a
model's shared parameters, and records the loss, theta's gradient averaged
over the processes (what DDP does), and its input gradient divided by the
world size (its share of the averaged gradient).
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

import losslab
from losslab import _dispatch

from .helpers import graph_nodes

N = 11
C = 4
IGNORE = -100


def slices(world: int) -> list[tuple[int, int]]:
    """Unequal shards of N rows: 4 and 7 rows for 2 processes; 6, 0 (empty) and 5 rows for 3."""
    return {1: [(0, N)], 2: [(0, 4), (4, N)], 3: [(0, 6), (6, 6), (6, N)]}[world]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _logits(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=_gen(seed), dtype=torch.float64) * 2


def _indices(*shape: int, high: int = C, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, high, shape, generator=_gen(seed))


def _boxes(n: int, seed: int) -> torch.Tensor:
    g = _gen(seed)
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * 10
    wh = torch.rand(n, 2, generator=g, dtype=torch.float64) * 5 + 0.5
    return torch.cat([xy, xy + wh], dim=1)


def _ignore_first_shard(t: torch.Tensor) -> torch.Tensor:
    """Every element of rows 0..3 ignored: the whole first shard of 2 processes."""
    t = t.clone()
    t[:4] = IGNORE
    return t


@dataclass
class Case:
    """One loss call: the global batch, and how a shard's keyword arguments are made from its target."""

    name: str
    loss: str
    build: Callable[[], tuple[torch.Tensor, Any]]
    kwargs: dict[str, Any] = field(default_factory=dict)
    # keyword arguments that depend on the (local or global) target, e.g. avg_factor = the number of positives
    per_batch: Callable[[Any], dict[str, Any]] = lambda target: {}
    backward_sum: bool = False  # "none" of Dice: backward the sum of the per-class losses


def shard(target: Any, start: int, stop: int) -> Any:
    if isinstance(target, tuple):
        return tuple(t[start:stop] for t in target)
    return target[start:stop]


def _positives_sigmoid(t: torch.Tensor) -> dict[str, Any]:
    return {"avg_factor": (t < C).sum().to(torch.float64)}


def _dense_positives(t: torch.Tensor) -> dict[str, Any]:
    return {"avg_factor": (t > 0).sum().to(torch.float64)}


def _pair_score_sum(t: tuple[torch.Tensor, torch.Tensor]) -> dict[str, Any]:
    labels, scores = t
    return {"avg_factor": torch.where(labels < C, scores, torch.zeros_like(scores)).sum()}


def _box_count(t: torch.Tensor) -> dict[str, Any]:
    return {"avg_factor": float(t.shape[0])}


def _no_positives_in_first_shard(t: torch.Tensor) -> torch.Tensor:
    t = t.clone()
    t[:4] = C  # background: no positive anchor in the first shard of 2 processes
    return t


def _seg_target(seed: int, ignore: bool = True) -> torch.Tensor:
    t = _indices(N, 5, 6, high=3, seed=seed)
    if ignore:
        t[:4] = 255
        t[6, :2] = 255
    return t


def _rare_class_target(seed: int) -> torch.Tensor:
    """Class indices of 3 classes with class 2 only in the last three images, the first four images ignored."""
    t = _seg_target(seed)
    t[:8][t[:8] == 2] = 1
    return t


CASES: list[Case] = [
    # the softmax family: "mean" over kept positions, or over the kept targets' weights
    Case("cross_entropy ignore", "cross_entropy",
         lambda: (_logits(N, C), _ignore_first_shard(_indices(N)))),
    Case("cross_entropy weight ignore", "cross_entropy",
         lambda: (_logits(N, C), _ignore_first_shard(_indices(N))), {"weight": [0.5, 2.0, 1.0, 3.0]}),
    Case("cross_entropy label smoothing, spatial", "cross_entropy",
         lambda: (_logits(N, C, 3), _ignore_first_shard(_indices(N, 3))), {"label_smoothing": 0.1}),
    Case("cross_entropy sum", "cross_entropy", lambda: (_logits(N, C), _indices(N)), {"reduction": "sum"}),
    Case("cross_entropy soft targets", "cross_entropy",
         lambda: (_logits(N, C), torch.softmax(_logits(N, C, seed=5), dim=1))),
    Case("nll_loss weight", "nll_loss",
         lambda: (torch.log_softmax(_logits(N, C), 1), _ignore_first_shard(_indices(N))), {"weight": [1, 2, 3, 4.0]}),
    Case("softmax_focal_loss alpha ignore", "softmax_focal_loss",
         lambda: (_logits(N, C), _ignore_first_shard(_indices(N))), {"alpha": [0.1, 0.2, 0.3, 0.4], "gamma": 2.0}),
    Case("balanced_cross_entropy per-class", "balanced_cross_entropy",
         lambda: (_logits(N, C), _ignore_first_shard(_indices(N))), {"alpha": [0.4, 0.3, 0.2, 0.1]}),
    # the sigmoid family: kept elements, or avg_factor
    Case("binary_cross_entropy dense avg_factor", "binary_cross_entropy",
         lambda: (_logits(N, C), (torch.rand(N, C, generator=_gen(3), dtype=torch.float64) > 0.7).double()),
         per_batch=_dense_positives),
    Case("binary_cross_entropy ignore", "binary_cross_entropy",
         lambda: (_logits(N, C), _ignore_first_shard((torch.rand(N, C, generator=_gen(3)) > 0.5).long())),
         {"ignore_index": IGNORE}),
    Case("sigmoid_focal_loss index ignore", "sigmoid_focal_loss",
         lambda: (_logits(N, C), _ignore_first_shard(_indices(N, high=C + 1))), {"ignore_index": IGNORE}),
    Case("sigmoid_focal_loss avg_factor no positives", "sigmoid_focal_loss",
         lambda: (_logits(N, C), _no_positives_in_first_shard(_indices(N, high=C + 1))),
         {"reduction": "mean"}, per_batch=_positives_sigmoid),
    Case("quality_focal_loss pair avg_factor", "quality_focal_loss",
         lambda: (_logits(N, C), (_no_positives_in_first_shard(_indices(N, high=C + 1)),
                                  torch.rand(N, generator=_gen(4), dtype=torch.float64))),
         per_batch=_pair_score_sum),
    Case("varifocal_loss avg_factor", "varifocal_loss",
         lambda: (_logits(N, C), torch.rand(N, C, generator=_gen(6), dtype=torch.float64)
                  * (torch.rand(N, C, generator=_gen(7)) > 0.6)),
         per_batch=_dense_positives),
    Case("distribution_focal_loss", "distribution_focal_loss",
         lambda: (_logits(N, 8), torch.rand(N, generator=_gen(8), dtype=torch.float64) * 7)),
    # the asymmetric loss and the Poly-1 losses
    Case("asymmetric_loss dense ignore", "asymmetric_loss",
         lambda: (_logits(N, C), _ignore_first_shard((torch.rand(N, C, generator=_gen(30)) > 0.6).double())),
         {"ignore_index": IGNORE, "gamma_pos": 1.0, "clip": 0.05}),
    Case("asymmetric_loss avg_factor", "asymmetric_loss",
         lambda: (_logits(N, C), (torch.rand(N, C, generator=_gen(31), dtype=torch.float64) > 0.7).double()),
         per_batch=_dense_positives),
    Case("poly_cross_entropy weight ignore", "poly_cross_entropy",
         lambda: (_logits(N, C), _ignore_first_shard(_indices(N))),
         {"weight": [0.5, 2.0, 1.0, 3.0], "label_smoothing": 0.1}),
    Case("poly_softmax_focal_loss alpha ignore", "poly_softmax_focal_loss",
         lambda: (_logits(N, C), _ignore_first_shard(_indices(N))), {"alpha": [0.1, 0.2, 0.3, 0.4], "epsilon": 2.0}),
    Case("poly_sigmoid_focal_loss index ignore", "poly_sigmoid_focal_loss",
         lambda: (_logits(N, C), _ignore_first_shard(_indices(N, high=C + 1))),
         {"ignore_index": IGNORE, "alpha": 0.25, "epsilon": -1.0}),
    # boxes and regression: the element count, or avg_factor
    Case("giou_loss avg_factor", "giou_loss", lambda: (_boxes(N, 10), _boxes(N, 11)), per_batch=_box_count),
    Case("ciou_loss mean", "ciou_loss", lambda: (_boxes(N, 10), _boxes(N, 11))),
    Case("iou_loss weighted sum", "iou_loss", lambda: (_boxes(N, 12), _boxes(N, 13)),
         {"reduction": "sum", "mode": "log"}),
    Case("smooth_l1_loss mean", "smooth_l1_loss", lambda: (_logits(N, 4), _logits(N, 4, seed=9)), {"beta": 0.5}),
    # segmentation: per-class sums over the global batch
    Case("dice multiclass ignore", "dice_loss", lambda: (_logits(N, 3, 5, 6), _seg_target(20)),
         {"mode": "multiclass", "ignore_index": 255}),
    Case("dice binary squared", "dice_loss",
         lambda: (_logits(N, 1, 5, 6), (torch.rand(N, 1, 5, 6, generator=_gen(21)) > 0.6).double()),
         {"mode": "binary", "squared": True, "smooth": 0.0}),
    Case("dice multiclass none", "dice_loss", lambda: (_logits(N, 3, 5, 6), _seg_target(22, ignore=False)),
         {"mode": "multiclass", "reduction": "none", "weight": [1.0, 2.0, 0.5]}, backward_sum=True),
    Case("dice per_image mean", "dice_loss", lambda: (_logits(N, 3, 5, 6), _seg_target(23)),
         {"mode": "multiclass", "ignore_index": 255, "per_image": True}),
    Case("jaccard multilabel log", "jaccard_loss",
         lambda: (_logits(N, 3, 5, 6), (torch.rand(N, 3, 5, 6, generator=_gen(24)) > 0.5).double()),
         {"mode": "multilabel", "log_loss": True}),
    Case("tversky focal", "tversky_loss", lambda: (_logits(N, 3, 5, 6), _seg_target(25)),
         {"mode": "multiclass", "ignore_index": 255, "alpha": 0.3, "beta": 0.7, "gamma": 0.75}),
    # generalised Dice: the class volumes, hence the weights, of the global batch (class 2 only in the last shard)
    Case("gdice multiclass ignore", "generalized_dice_loss", lambda: (_logits(N, 3, 5, 6), _rare_class_target(28)),
         {"mode": "multiclass", "ignore_index": 255}),
    Case("gdice multilabel simple none", "generalized_dice_loss",
         lambda: (_logits(N, 3, 5, 6), (torch.rand(N, 3, 5, 6, generator=_gen(29)) > 0.8).double()),
         {"mode": "multilabel", "weight_type": "simple", "reduction": "none", "smooth": 0.0}),
    Case("gdice binary per_image", "generalized_dice_loss",
         lambda: (_logits(N, 1, 5, 6), (torch.rand(N, 1, 5, 6, generator=_gen(30)) > 0.9).double()),
         {"mode": "binary", "per_image": True}),
    Case("dice_ce multiclass", "dice_ce_loss", lambda: (_logits(N, 3, 5, 6), _seg_target(26)),
         {"mode": "multiclass", "ignore_index": 255}),
    # Lovász: per image, each process sorts its own images and the mean over images is global (exact)
    Case("lovasz_softmax per_image ignore", "lovasz_softmax_loss", lambda: (_logits(N, 3, 5, 6), _seg_target(28)),
         {"per_image": True, "ignore_index": 255}),
    Case("lovasz_softmax per_image all classes sum", "lovasz_softmax_loss",
         lambda: (_logits(N, 3, 5, 6), _seg_target(29)), {"per_image": True, "classes": "all", "ignore_index": 255,
                                                         "reduction": "sum"}),
    Case("lovasz_hinge per_image ignore", "lovasz_hinge_loss",
         lambda: (_logits(N, 1, 5, 6), torch.where(_seg_target(30) == 255, 255, _seg_target(30) % 2)[:, None]),
         {"ignore_index": 255}),
    Case("dice_focal binary", "dice_focal_loss",
         lambda: (_logits(N, 1, 5, 6), (torch.rand(N, 1, 5, 6, generator=_gen(27)) > 0.7).double()),
         {"mode": "binary"}),
]

CASES += [
    Case("seesaw_loss ignore", "seesaw_loss", lambda: (_logits(N, C), _ignore_first_shard(_indices(N))),
         {"class_counts": [40.0, 0.0, 7.0, 300.0]}),
    Case("seesaw_loss weight sum", "seesaw_loss", lambda: (_logits(N, C, 2), _indices(N, 2)),
         {"class_counts": [40.0, 1.0, 7.0, 300.0], "weight": [1.0, 2.0, 0.5, 1.0], "reduction": "sum"}),
    Case("eqlv2_loss", "eqlv2_loss", lambda: (_logits(N, C + 1), _indices(N, high=C + 1)),
         {"pos_neg": [100.0, 0.2, 0.9, 0.0]}),
    # the long-tail losses of the softmax family (losslab.longtail): counts as given, cross_entropy's "mean"
    Case("logit_adjusted_cross_entropy weight ignore", "logit_adjusted_cross_entropy",
         lambda: (_logits(N, C), _ignore_first_shard(_indices(N))),
         {"class_counts": [500.0, 0.0, 30.0, 6.0], "weight": [0.5, 2.0, 1.0, 3.0]}),
    Case("logit_adjusted_cross_entropy soft targets", "logit_adjusted_cross_entropy",
         lambda: (_logits(N, C), torch.softmax(_logits(N, C, seed=5), dim=1)), {"class_counts": [5, 4, 3, 2]}),
    Case("ldam_loss ignore, spatial", "ldam_loss", lambda: (_logits(N, C, 3), _ignore_first_shard(_indices(N, 3))),
         {"class_counts": [500.0, 120.0, 30.0, 6.0], "scale": 2.0}),
    Case("vs_loss weight sum", "vs_loss", lambda: (_logits(N, C), _ignore_first_shard(_indices(N))),
         {"class_counts": [500.0, 120.0, 30.0, 6.0], "weight": [0.5, 2.0, 1.0, 3.0], "reduction": "sum"}),
]


def _stateful_batch(name: str, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    if name == "SeesawLoss":
        return _logits(N, C, seed=30 + step), _ignore_first_shard(_indices(N, seed=40 + step))
    return _logits(N, C + 1, seed=30 + step), _indices(N, high=C + 1, seed=40 + step)


STATEFUL = ("SeesawLoss", "EQLv2Loss")


def run_stateful(name: str, start: int, stop: int, world: int, *, dist_sync: bool, steps: int = 3) -> dict:
    """Steps of a module with running statistics on rows start:stop: loss values, input gradients, buffers."""
    module = getattr(losslab, name)(C, dist_sync=dist_sync)
    values, grads = [], []
    for step in range(steps):
        x, target = _stateful_batch(name, step)
        x = x[start:stop].clone().requires_grad_(True)
        loss = module(x, target[start:stop])
        loss.backward()
        values.append(loss.detach().clone())
        grads.append(x.grad / world)
    return {"values": torch.stack(values), "x_grads": grads,
            "state": {n: b.clone() for n, b in module.named_buffers()}}


# Computed without dist_sync, to show that the comparison can fail.
CONTROL = Case("control: cross_entropy ignore without dist_sync", "cross_entropy",
               lambda: (_logits(N, C), _ignore_first_shard(_indices(N))))


def run_case(case: Case, start: int, stop: int, world: int, *, dist_sync: bool,
             nodes: set[str] | None = None) -> dict[str, Any]:
    """The loss on rows start:stop, its theta gradient (summed here, averaged by the caller) and input gradient;
    the names of the loss's autograd nodes are added to ``nodes`` where given."""
    x, target = case.build()
    x = x[start:stop].clone().requires_grad_(True)
    theta = torch.zeros(x.shape[1:], dtype=x.dtype, requires_grad=True)
    local = shard(target, start, stop)
    fn = getattr(losslab, case.loss)
    loss = fn(x + theta, local, **case.kwargs, **case.per_batch(local), dist_sync=dist_sync)
    if nodes is not None:
        nodes.update(graph_nodes(loss))
    (loss.sum() if case.backward_sum else loss).backward()
    return {"value": loss.detach().clone(), "theta_grad": theta.grad.clone(), "x_grad": x.grad / world}


# ----------------------------------------------------------------------------
# linear_cross_entropy: hidden rows sharded, the head's weight and bias shared (DDP averages their gradients)

LINEAR_D, LINEAR_V = 3, 7
_LINEAR_W = [0.5, 2.0, 1.0, 3.0, 0.2, 1.0, 1.5]
LINEAR_CASES: dict[str, dict[str, Any]] = {
    "mean, first shard ignored": {"ignore": True, "chunk_size": 3},
    "mean class_weight label_smoothing": {"ignore": True, "class_weight": _LINEAR_W, "label_smoothing": 0.1},
    "mean focal class_weight z_loss": {"ignore": True, "gamma": 2.0, "class_weight": _LINEAR_W, "z_loss": 0.01,
                                       "chunk_size": 2},
    "sum softcap z_loss": {"reduction": "sum", "softcap": 2.0, "z_loss": 0.01, "chunk_size": 4},
}


def run_linear(name: str, start: int, stop: int, world: int, *, dist_sync: bool) -> dict[str, Any]:
    """linear_cross_entropy on rows start:stop with return_components: the loss and its components, the head's
    gradients (summed here, averaged by the caller) and the hidden rows' gradient divided by the world size."""
    kwargs = dict(LINEAR_CASES[name])
    ignore = kwargs.pop("ignore", False)
    hidden = _logits(N, LINEAR_D, seed=50)
    weight = _logits(LINEAR_V, LINEAR_D, seed=51)
    bias = _logits(LINEAR_V, seed=52)
    target = _indices(N, high=LINEAR_V, seed=53)
    if ignore:
        target = _ignore_first_shard(target)
        target[7] = IGNORE
    if "class_weight" in kwargs:
        kwargs["class_weight"] = torch.tensor(kwargs["class_weight"], dtype=torch.float64)
    h = hidden[start:stop].clone().requires_grad_(True)
    w, b = weight.requires_grad_(True), bias.requires_grad_(True)
    out = losslab.linear_cross_entropy(h, w, target[start:stop], bias=b, dist_sync=dist_sync,
                                       return_components=True, **kwargs)
    out.loss.backward()
    return {"value": out.loss.detach().clone(), "z_loss": out.z_loss, "accuracy": out.accuracy, "count": out.count,
            "w_grad": w.grad.clone(), "b_grad": b.grad.clone(), "x_grad": h.grad / world}


def worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    """One process: every case's result on this rank's shard, and class_counts, saved to out_dir/rank.pt."""
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        start, stop = slices(world)[rank]
        results: dict[str, Any] = {}
        for case, dist_sync in [(c, True) for c in CASES] + [(CONTROL, False)]:
            out = run_case(case, start, stop, world, dist_sync=dist_sync)
            torch.distributed.all_reduce(out["theta_grad"])  # what DDP does with the parameters' gradients
            out["theta_grad"] /= world
            results[case.name] = out
        for case in LOVASZ_SHARDED:
            out = run_case(case, start, stop, world, dist_sync=True)
            torch.distributed.all_reduce(out["theta_grad"])
            out["theta_grad"] /= world
            results[case.name] = out
        for name in STATEFUL:
            results[f"stateful {name}"] = run_stateful(name, start, stop, world, dist_sync=True)
        for name in LINEAR_CASES:
            out = run_linear(name, start, stop, world, dist_sync=True)
            for key in ("w_grad", "b_grad"):
                torch.distributed.all_reduce(out[key])
                out[key] /= world
            results[f"linear {name}"] = out
        target = _ignore_first_shard(_indices(N))[start:stop]
        results["class_counts"] = losslab.class_counts(target, C, ignore_index=IGNORE, dist_sync=True)
        results["class_counts local"] = losslab.class_counts(target, C, ignore_index=IGNORE)
        torch.save(results, os.path.join(out_dir, f"{rank}.pt"))
    finally:
        torch.distributed.destroy_process_group()


# Lovász over the batch (per_image=False): each process sorts its own shard; "mean" over every process's
# counted classes (tests/test_dist.py compares with the shards' losses computed on one process)
LOVASZ_SHARDED = [
    Case("lovasz_softmax batch ignore", "lovasz_softmax_loss", lambda: (_logits(N, 3, 5, 6), _seg_target(31)),
         {"ignore_index": 255}),
    Case("lovasz_hinge batch", "lovasz_hinge_loss",
         lambda: (_logits(N, 1, 5, 6), (_seg_target(32, ignore=False) == 1).double()[:, None]), {"per_image": False}),
]


COMPILED = ["cross_entropy ignore", "sigmoid_focal_loss avg_factor no positives", "dice multiclass ignore",
            "gdice multiclass ignore"]


def compile_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    """torch.compile(fullgraph=True) of a few cases with dist_sync: values and gradients against eager."""
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        start, stop = slices(world)[rank]
        results = {}
        for case in [c for c in CASES if c.name in COMPILED]:
            x, target = case.build()
            local = shard(target, start, stop)
            fn = getattr(losslab, case.loss)
            extra = case.per_batch(local)

            def call(inp: torch.Tensor, fn=fn, case=case, local=local, extra=extra) -> torch.Tensor:
                return fn(inp, local, **case.kwargs, **extra, dist_sync=True)

            out = {}
            for mode, f in (("eager", call), ("compiled", torch.compile(call, fullgraph=True, dynamic=False))):
                inp = x[start:stop].clone().requires_grad_(True)
                value = f(inp)
                value.backward()
                out[mode] = (value.detach().clone(), inp.grad.clone())
            results[case.name] = out
        torch.save(results, os.path.join(out_dir, f"compiled{rank}.pt"))
    finally:
        torch.distributed.destroy_process_group()


# ----------------------------------------------------------------------------
# the fused sweeps under dist_sync: the global denominator is all-reduced before the sweep


def _dense_quality_ignore() -> tuple[torch.Tensor, torch.Tensor]:
    """Dense quality targets in [0, 1], -1 (ignored) on every element of the first shard of 2 processes."""
    y = torch.rand(N, C, generator=_gen(31), dtype=torch.float64) * (torch.rand(N, C, generator=_gen(32)) > 0.5)
    y[:4] = -1.0
    y[6, 1] = -1.0
    return _logits(N, C), y


FUSED_LOSSES = ("sigmoid_focal_loss", "quality_focal_loss", "varifocal_loss")
FUSED_CASES: list[Case] = [c for c in CASES if c.loss in FUSED_LOSSES] + [
    Case("sigmoid_focal_loss dense weight gamma=0.5", "sigmoid_focal_loss",
         lambda: (_logits(N, C), torch.rand(N, C, generator=_gen(33), dtype=torch.float64)),
         {"gamma": 0.5, "weight": [0.5, 1.0, 2.0, 1.5]}),
    Case("sigmoid_focal_loss index sum", "sigmoid_focal_loss",
         lambda: (_logits(N, C), _indices(N, high=C + 1, seed=34)), {"reduction": "sum", "alpha": None}),
    Case("quality_focal_loss dense ignore", "quality_focal_loss", _dense_quality_ignore,
         {"ignore_index": -1, "beta": 1.5}),
    Case("varifocal_loss mean weight", "varifocal_loss",
         lambda: (_logits(N, C), torch.rand(N, C, generator=_gen(35), dtype=torch.float64)
                  * (torch.rand(N, C, generator=_gen(36)) > 0.6)),
         {"weight": [1.0, 0.5, 2.0, 1.0], "gamma": 1.5}),
    Case("varifocal_loss sum", "varifocal_loss",
         lambda: (_logits(N, C), torch.rand(N, C, generator=_gen(37), dtype=torch.float64)
                  * (torch.rand(N, C, generator=_gen(38)) > 0.6)),
         {"reduction": "sum", "iou_weighted": False}),
]
# the eager sweep only: "compiled" runs the same dispatch around another sweep (tests/test_fused.py and
# tests/test_dispatch.py compare the two), and compiling in every spawned process costs 7 to 16 s per run
FUSED_MODES = ("eager",)


def fused_worker(rank: int, world: int, init_file: str, out_dir: str, modes: tuple[str, ...], uneven: bool,
                 timeout_s: float) -> None:
    """Every fused case under each of ``modes`` with dist_sync, saved to out_dir/fused{rank}.pt.

    ``uneven``: "auto" without a compiler and a threshold between the shards' sizes (4 and 7 rows of 4 classes
    with 2 processes), so the larger shard runs the eager sweep where the smaller one does not.
    A collective that waits longer than ``timeout_s`` raises (a mismatch of collectives between the processes
    would otherwise hang).
    """
    torch.set_num_threads(1)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(out_dir, "inductor", str(rank))  # where "compiled" is run
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                                         timeout=datetime.timedelta(seconds=timeout_s))
    try:
        start, stop = slices(world)[rank]
        results: dict[str, Any] = {}
        for mode in modes:
            with contextlib.ExitStack() as stack:
                stack.enter_context(losslab.set_fused(mode))
                if uneven:
                    _dispatch.COMPILE_MIN_NUMEL = 5 * C  # 4 rows below it, 7 rows above it
                    stack.enter_context(_dispatch.without_compiler())
                for case in FUSED_CASES:
                    nodes: set[str] = set()
                    out = run_case(case, start, stop, world, dist_sync=True, nodes=nodes)
                    torch.distributed.all_reduce(out["theta_grad"])
                    out["theta_grad"] /= world
                    out["fused"] = torch.tensor(any("Fused" in name for name in nodes))
                    results[f"{mode}: {case.name}"] = out
        torch.save(results, os.path.join(out_dir, f"fused{rank}.pt"))
    finally:
        torch.distributed.destroy_process_group()
