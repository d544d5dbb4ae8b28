"""`losslab bench`: losslab's fused, eager and composite paths against their peers, in one run, on the same inputs.

For every loss and shape it measures forward + backward (median and
interquartile range over torch.utils.benchmark's blocked runs, with a fixed
number of threads; a row whose interquartile range exceeds its median is
flagged unreliable, in the table and in the JSON), the ratio to torch's native loss (binary cross-entropy
with logits for the sigmoid losses, cross_entropy for the softmax ones) and
to the formula as torchvision / fvcore / mmdetection write it, the peak extra
memory during forward + backward in units of the logits' size (from torch's
profiler, allocations only, the gradient included), and the one-time cost of
the first call of the compiled path (a compile, or a load from inductor's
on-disk cache). kornia and MONAI join where installed (``pip install
losslab[bench]``). The ``small`` group (256 x 10, 4,096 x 10, 32 x 1,000: tens of microseconds a call) is
measured interleaved instead (:func:`measure_interleaved`): its ratios are medians of per-round ratios, with
their quartiles. The other groups' compiled row also gets its ratio to torch's loss timed interleaved
(:func:`interleaved_ratio`, 15 rounds of one call each).

The ``lm-head`` group (``--only lm-head``, opt-in: minutes on a small CPU) times a language-model head,
hidden states to loss, against torch's ``F.linear`` + ``F.cross_entropy`` and the fused heads of Cut
Cross-Entropy and Liger-Kernel (:mod:`losslab._bench_lmhead`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

import losslab
from losslab import _bench_lmhead, _dispatch

from ._bench_memory import peak_allocated, quiet_stderr  # noqa: F401  (bench.quiet_stderr, as before)
from ._bench_peers import (
    LONGTAIL,
    authors_formula,
    fvcore_softmax_focal,
    library_peers,
    longtail_counts,
    mmdet_qfl,
    mmdet_vfl,
    one_hot_bg,
    pre_shifted,
    smp_lovasz_softmax,
    tv_sigmoid_focal,
)

# losslab's paths: the compiled sweep, the eager sweep (forced), what "auto" does on a machine without a
# compiler (the eager sweep where it beats the others, torch's kernels elsewhere), torch's kernels (native) and
# the composite. Small inputs: what "auto" runs (native) and the composite.
LOSSLAB_PATHS = (("compiled", "compiled"), ("eager sweep", "eager"), ("without compiler", "fallback"),
                 ("native", "native"), ("composite", "composite"))
SMALL_PATHS = (("auto", "auto"), ("composite", "composite"))
# losses without fused paths: one losslab row (the Lovász loss: one batched sort over every class)
UNFUSED = ("lovasz_softmax_loss",)
_MODES = {"fallback": "auto", "native": "off", "composite": "off"}  # set_fused's mode for each path


@dataclass
class Case:
    loss: str
    workload: str
    shape: tuple[int, ...]
    target: str  # "dense", "index" (softmax), "index-bg" (sigmoid, C = background), "pair", "quality"
    dtype: torch.dtype = torch.float32


CASES = [
    Case("sigmoid_focal_loss", "detection, dense targets", (100_000, 80), "dense"),
    Case("sigmoid_focal_loss", "detection, class indices", (100_000, 80), "index-bg"),
    Case("binary_cross_entropy", "detection, dense targets", (100_000, 80), "dense"),
    Case("quality_focal_loss", "detection, (labels, scores)", (100_000, 80), "pair"),
    Case("varifocal_loss", "detection, IoU targets", (100_000, 80), "quality"),
    Case("softmax_focal_loss", "detection", (100_000, 80), "index"),
    Case("cross_entropy", "detection", (100_000, 80), "index"),
    Case("softmax_focal_loss", "segmentation", (8, 19, 128, 128), "index"),
    Case("cross_entropy", "segmentation", (8, 19, 128, 128), "index"),
    Case("lovasz_softmax_loss", "segmentation", (8, 19, 128, 128), "index"),
    Case("softmax_focal_loss", "classification", (4096, 1000), "index"),
    Case("cross_entropy", "classification", (4096, 1000), "index"),
] + [  # the long-tail losses (cross-entropy of adjusted logits), class counts from LONGTAIL_RHO's profile
    Case(loss, "long-tail", shape, "index")
    for loss in ("logit_adjusted_cross_entropy", "ldam_loss", "vs_loss") for shape in ((100_000, 80), (4096, 1000))
] + [  # the "small" group: the inputs most training loops pass, where the number of operations is the cost
    Case(loss, "small", shape, target)
    for shape in ((256, 10), (4096, 10), (32, 1000))
    for loss, target in (("cross_entropy", "index"), ("binary_cross_entropy", "dense"),
                         ("sigmoid_focal_loss", "dense"), ("softmax_focal_loss", "index"))
]


# On a GPU: the same workloads, and language-model vocabularies for the online-softmax kernel.
GPU_CASES = [case for case in CASES if case.workload != "small"] + [
    Case("cross_entropy", "LM vocabulary 32k", (4096, 32768), "index"),
    Case("softmax_focal_loss", "LM vocabulary 32k", (4096, 32768), "index"),
    Case("cross_entropy", "LM vocabulary 128k, bfloat16", (2048, 131072), "index", torch.bfloat16),
]


def make_inputs(case: Case, shape: tuple[int, ...], seed: int = 0) -> tuple[Tensor, object]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g) * 2
    n, c, rest = shape[0], shape[1], shape[2:]
    if case.target == "dense":
        return x, (torch.rand(*shape, generator=g) < 0.01).float()
    if case.target == "index":
        return x, torch.randint(0, c, (n, *rest), generator=g)
    labels = torch.where(torch.rand(n, *rest, generator=g) < 0.05, torch.randint(0, c, (n, *rest), generator=g),
                         torch.full((n, *rest), c))  # 5% positives, the rest background
    if case.target == "index-bg":
        return x, labels
    scores = torch.rand(n, *rest, generator=g)
    if case.target == "pair":
        return x, (labels, scores)
    dense = torch.zeros(*shape)
    positive = labels < c
    dense[positive.nonzero(as_tuple=True)[0], labels[positive]] = scores[positive]
    return x, dense


def options(name: str, x: Tensor) -> dict[str, object]:
    """The keyword arguments losslab's ``name`` gets beyond its defaults (those of the peers' formulas above)."""
    return {"class_counts": longtail_counts(x.shape[1]).to(x.device)} if name in LONGTAIL else {}


def _losslab(name: str, mode: str) -> Callable:
    function = getattr(losslab, name)
    cached: dict[tuple[int, str], dict[str, object]] = {}

    def call(x: Tensor, t: object) -> Tensor:
        kwargs = cached.get((x.shape[1], x.device.type))
        if kwargs is None:  # built once per class count and device: the timed call is losslab's alone
            kwargs = cached[(x.shape[1], x.device.type)] = options(name, x)
        return function(x, t, **kwargs)

    call.mode = mode  # type: ignore[attr-defined]
    return call


def implementations(case: Case) -> dict[str, Callable]:
    if case.loss in UNFUSED:
        impls: dict[str, Callable] = {"losslab": _losslab(case.loss, "")}
        impls["torch native (cross_entropy, for scale)"] = lambda x, t: F.cross_entropy(x, t)
        impls["smp formula"] = smp_lovasz_softmax
        impls.update(library_peers(case.loss, case.target))
        return impls
    paths = SMALL_PATHS if case.workload == "small" else LOSSLAB_PATHS
    impls = {f"losslab {label}": _losslab(case.loss, mode) for label, mode in paths}
    sigmoid = case.loss in ("sigmoid_focal_loss", "binary_cross_entropy", "quality_focal_loss", "varifocal_loss")
    if sigmoid and case.target in ("dense", "quality"):
        impls["torch native (BCE with logits)"] = lambda x, t: F.binary_cross_entropy_with_logits(x, t)
    elif sigmoid:
        impls["torch native (BCE with logits)"] = lambda x, t: F.binary_cross_entropy_with_logits(
            x, one_hot_bg(t[0] if isinstance(t, tuple) else t, x.shape[1]))
    elif case.loss in LONGTAIL:  # the floor: torch's kernel on logits shifted beforehand (the shift not timed)
        impls["torch native (cross_entropy of pre-shifted logits)"] = pre_shifted(case.loss)
    else:
        impls["torch native (cross_entropy)"] = lambda x, t: F.cross_entropy(x, t)
    if case.loss == "sigmoid_focal_loss":
        impls["torchvision formula"] = (tv_sigmoid_focal if case.target == "dense" else
                                        lambda x, t: tv_sigmoid_focal(x, one_hot_bg(t, x.shape[1])))
    elif case.loss == "softmax_focal_loss":
        impls["fvcore/kornia formula"] = fvcore_softmax_focal
    elif case.loss in LONGTAIL:
        impls["authors' formula"] = authors_formula(case.loss)
    elif case.loss == "quality_focal_loss":
        impls["mmdetection formula"] = mmdet_qfl
    elif case.loss == "varifocal_loss":
        impls["mmdetection formula"] = mmdet_vfl
    impls.update(library_peers(case.loss, case.target))
    return impls


# ----------------------------------------------------------------------------
# measuring


def _forward_backward(fn: Callable, x: Tensor, t: object) -> None:
    leaf = x.detach().requires_grad_(True)
    fn(leaf, t).backward()


def peak_memory(fn: Callable, x: Tensor, t: object) -> float:
    """Peak bytes allocated during one forward + backward (gradient included), over the logits' bytes.

    Every allocation and free the profiler recorded, in time order (not each operator's net change at its
    start: a scope such as an autograd Function would then book its temporaries' frees before their
    allocations, and the peak of the native and fused paths would read too low).
    """
    leaf = x.detach().requires_grad_(True)
    return peak_allocated(lambda: fn(leaf, t).backward()) / (x.numel() * x.element_size())


@contextlib.contextmanager
def _path(mode: str | None) -> Iterator[None]:
    """The settings under which losslab's path ``mode`` runs (None: a peer, nothing to set)."""
    with contextlib.ExitStack() as stack:
        if mode:
            stack.enter_context(losslab.set_fused(_MODES.get(mode, mode)))
        if mode == "fallback":
            stack.enter_context(_dispatch.without_compiler())
        if mode in ("native", "composite"):
            stack.enter_context(_dispatch.forced(mode))
        yield


def measure(case: Case, shape: tuple[int, ...], name: str, fn: Callable, *, min_time: float,
            threads: int) -> dict:
    from torch.utils import benchmark

    x, t = make_inputs(case, shape)
    mode = getattr(fn, "mode", None)
    with _path(mode):
        first = None
        if mode == "compiled":
            torch._dynamo.reset()
            start = time.perf_counter()
            _forward_backward(fn, x, t)
            first = time.perf_counter() - start
        _forward_backward(fn, x, t)  # warm up
        timer = benchmark.Timer("f(fn, x, t)", globals={"f": _forward_backward, "fn": fn, "x": x, "t": t},
                                num_threads=threads)
        m = timer.blocked_autorange(min_run_time=min_time)
        memory = peak_memory(fn, x, t)
    return {"loss": case.loss, "workload": case.workload, "shape": list(shape), "implementation": name,
            "median_ms": m.median * 1e3, "iqr_ms": m.iqr * 1e3, "runs": len(m.times),
            "peak_memory_x_logits": memory, "first_call_s": first}


BLOCK_S = 0.002  # an interleaved block: about 2 ms of calls of one implementation


def measure_interleaved(case: Case, shape: tuple[int, ...], impls: dict[str, Callable], *,
                        min_time: float) -> list[dict]:
    """Every implementation of a case in turns: each round times one block of calls of each (the order reversed
    every other round), so that a slow spell of the machine falls on all of them; per-call times per round, and
    each row's ratios to the native and formula rows are the medians (and quartiles) of per-round ratios. For
    the small group, where one call takes tens of microseconds and a machine's drift is larger than the
    differences measured. About ``min_time`` seconds of calls per implementation."""
    x, t = make_inputs(case, shape)
    names = list(impls)
    blocks: dict[str, int] = {}
    for name in names:
        with _path(getattr(impls[name], "mode", None)):
            for _ in range(3):  # warm up (a compile, at most, happens here)
                _forward_backward(impls[name], x, t)
            start = time.perf_counter()
            _forward_backward(impls[name], x, t)
            blocks[name] = max(1, int(BLOCK_S / max(time.perf_counter() - start, 1e-7)))
    rounds = max(11, int(min_time / BLOCK_S))
    per_call: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            fn, k = impls[name], blocks[name]
            with _path(getattr(fn, "mode", None)):
                start = time.perf_counter()
                for _ in range(k):
                    _forward_backward(fn, x, t)
                per_call[name].append((time.perf_counter() - start) / k)
    native = next(name for name in names if name.startswith("torch native"))
    formula = next((name for name in names if "formula" in name), None)
    rows = []
    for name in names:
        with _path(getattr(impls[name], "mode", None)):
            memory = peak_memory(impls[name], x, t)
        q1, median, q3 = quartiles(per_call[name])
        ratios = quartiles([a / b for a, b in zip(per_call[name], per_call[native])])
        rows.append({"loss": case.loss, "workload": case.workload, "shape": list(shape), "implementation": name,
                     "median_ms": median * 1e3, "iqr_ms": (q3 - q1) * 1e3, "runs": rounds * blocks[name],
                     "peak_memory_x_logits": memory, "first_call_s": None, "interleaved": True,
                     "vs_native": ratios[1], "vs_native_quartiles": [ratios[0], ratios[2]],
                     "vs_formula": None if formula is None else
                     quartiles([a / b for a, b in zip(per_call[name], per_call[formula])])[1]})
    return rows


def interleaved_ratio(case: Case, shape: tuple[int, ...], fn: Callable, native: Callable, *,
                      rounds: int = 15) -> list[float]:
    """The quartiles of ``fn``'s time over ``native``'s, one call of each a round (the order reversed every
    other round): for the large cases' compiled row, whose other figures are timed one implementation after
    the other (on 2 vCPUs, torch's BCE on 100,000 x 80 swung from 48 to 75 ms between runs of one day)."""
    x, t = make_inputs(case, shape)
    pair = (fn, native)
    times: list[list[float]] = [[], []]
    for r in range(rounds + 1):  # round 0 warms up
        for i in ((0, 1) if r % 2 == 0 else (1, 0)):
            with _path(getattr(pair[i], "mode", None)):
                start = time.perf_counter()
                _forward_backward(pair[i], x, t)
                if r:
                    times[i].append(time.perf_counter() - start)
    return list(quartiles([a / b for a, b in zip(*times)]))


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """The first quartile, the median and the third quartile (linear interpolation between order statistics)."""
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, median, q3


def _to(value: object, device: str, dtype: torch.dtype | None = None) -> object:
    if isinstance(value, tuple):
        return tuple(_to(v, device) for v in value)
    value = value.to(device)
    return value.to(dtype) if dtype is not None else value


def measure_gpu(case: Case, shape: tuple[int, ...], name: str, fn: Callable) -> dict:
    """On CUDA: triton.testing.do_bench (median, gradients reset), peak memory from the allocator, and the
    effective bandwidth as a share of a device-to-device copy's, measured now."""
    from triton.testing import do_bench

    x, t = make_inputs(case, shape)
    x, t = _to(x, "cuda", case.dtype), _to(t, "cuda")
    mode = getattr(fn, "mode", None)
    with contextlib.ExitStack() as stack:
        if mode:
            stack.callback(losslab.set_fused, losslab.set_fused(mode))
        leaf = x.detach().requires_grad_(True)

        def step() -> None:
            fn(leaf, t).backward()

        ms = do_bench(step, grad_to_none=[leaf], return_mode="median")
        quantiles = do_bench(step, grad_to_none=[leaf], quantiles=[0.25, 0.75])
        leaf.grad = None
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    copy = torch.empty_like(x)
    copy_ms = do_bench(lambda: copy.copy_(x), return_mode="median")
    target_bytes = sum(v.numel() * v.element_size() for v in (t if isinstance(t, tuple) else (t,)))
    floor_bytes = 2 * x.numel() * x.element_size() + target_bytes  # read logits and targets, write the gradient
    bandwidth = floor_bytes / ms  # bytes per ms
    copy_bandwidth = 2 * x.numel() * x.element_size() / copy_ms
    return {"loss": case.loss, "workload": case.workload, "shape": list(shape), "implementation": name,
            "dtype": str(case.dtype).replace("torch.", ""), "median_ms": ms,
            "iqr_ms": quantiles[1] - quantiles[0], "runs": None,
            "peak_memory_x_logits": peak / (x.numel() * x.element_size()), "first_call_s": None,
            "bandwidth_of_copy": bandwidth / copy_bandwidth}


def run(cases: list[Case], *, quick: bool, min_time: float, threads: int, only: str | None,
        progress: Callable[[str], None] = print, device: str = "cpu") -> list[dict]:
    torch.set_num_threads(threads)
    rows = []
    for case in cases:
        if only and only not in case.loss and only not in case.workload:
            continue
        shape = tuple(max(2, s // 50) if i == 0 else s for i, s in enumerate(case.shape)) if quick else case.shape
        impls = implementations(case)
        if device == "cuda":  # the kernels ("auto" dispatches them) and the composite
            impls = {k: v for k, v in impls.items() if not k.startswith("losslab")}
            impls = {"losslab triton": _losslab(case.loss, "auto"),
                         "losslab composite": _losslab(case.loss, "composite"),
                     **impls}
        elif quick:
            impls.pop("losslab compiled", None)  # compiling takes seconds
        case_rows = []
        if case.workload == "small" and device == "cpu":
            progress(f"{case.loss} {case.workload} {shape}: {', '.join(impls)}, interleaved")
            case_rows = measure_interleaved(case, shape, impls, min_time=min_time)
        for name, fn in impls.items() if not case_rows else ():
            progress(f"{case.loss} {case.workload} {shape}: {name}")
            if device == "cuda":
                case_rows.append(measure_gpu(case, shape, name, fn))
            else:
                case_rows.append(measure(case, shape, name, fn, min_time=min_time, threads=threads))
        if device == "cpu" and not case_rows[0].get("interleaved") and "losslab compiled" in impls:
            low, middle, high = interleaved_ratio(case, shape, impls["losslab compiled"],
                                                  next(f for n, f in impls.items() if n.startswith("torch native")))
            row = next(r for r in case_rows if r["implementation"] == "losslab compiled")
            row.update(vs_native_interleaved=middle, vs_native_interleaved_quartiles=[low, high])
        native = next(r["median_ms"] for r in case_rows if r["implementation"].startswith("torch native"))
        formula = next((r["median_ms"] for r in case_rows if "formula" in r["implementation"]), None)
        for r in case_rows:
            if not r.get("interleaved"):
                r["vs_native"] = r["median_ms"] / native
                r["vs_formula"] = None if formula is None else r["median_ms"] / formula
            r["unreliable"] = unreliable(r)
        rows += case_rows
    return rows


def unreliable(row: dict) -> bool:
    """Whether a measurement is too noisy to compare: its interquartile range exceeds its median."""
    return bool(row["iqr_ms"] > row["median_ms"])


def machine(device: str = "cpu") -> str:
    if device == "cuda":
        return f"{torch.cuda.get_device_name()}, torch {torch.__version__}, Python {platform.python_version()}"
    return (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
            f"torch {torch.__version__}, Python {platform.python_version()}")


def markdown(rows: list[dict]) -> str:
    gpu = any("bandwidth_of_copy" in r for r in rows)
    last = "% of copy bandwidth" if gpu else "first call s"
    out = ["| loss | workload | shape | implementation | median ms (IQR) | vs native | vs formula | "
           f"peak memory (x logits) | {last} |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        formula = "" if r["vs_formula"] is None else f"{r['vs_formula']:.2f}x"
        if gpu:
            extra = f"{100 * r['bandwidth_of_copy']:.0f}%"
        else:
            extra = "" if r["first_call_s"] is None else f"{r['first_call_s']:.1f}"
        flag = " unreliable" if r.get("unreliable") else ""
        ratio, digits = f"{r['vs_native']:.2f}x", 3 if r.get("interleaved") else 2
        if r.get("vs_native_quartiles") and not r["implementation"].startswith("torch native"):
            ratio += " ({:.2f}-{:.2f})".format(*r["vs_native_quartiles"])
        if r.get("vs_native_interleaved") is not None:
            ratio += "; interleaved {:.2f}x ({:.2f}-{:.2f})".format(r["vs_native_interleaved"],
                                                                 *r["vs_native_interleaved_quartiles"])
        out.append(f"| {r['loss']} | {r['workload']} | {'x'.join(map(str, r['shape']))} | {r['implementation']} | "
                   f"{r['median_ms']:.{digits}f} ({r['iqr_ms']:.{digits}f}){flag} | {ratio} | {formula} | "
                   f"{r['peak_memory_x_logits']:.1f} | {extra} |")
    if any(r.get("unreliable") for r in rows):
        out.append("")
        out.append("unreliable: the interquartile range exceeds the median (a busy machine?); measure it again.")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="losslab bench", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return command(parser.parse_args(argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="bench-results", help="folder for results.json and results.md")
    parser.add_argument("--quick", action="store_true", help="batch sizes / 50, no compiled path (a smoke run)")
    parser.add_argument("--min-time", type=float, default=1.0, help="seconds of timed runs per measurement")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--only", help="only losses or workloads containing this text (\"lm-head\": the opt-in "
                        "lm-head group)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cuda: the Triton kernels, timed with triton.testing.do_bench")


def command(args: argparse.Namespace) -> int:
    device = getattr(args, "device", "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        print("losslab bench: --device cuda needs a CUDA device; none is available", file=sys.stderr)
        return 2
    progress = lambda line: print(line, flush=True)  # noqa: E731
    rows = run(GPU_CASES if device == "cuda" else CASES, quick=args.quick, min_time=args.min_time,
               threads=args.threads, only=args.only, progress=progress, device=device)
    lm_rows: list[dict] = []
    lm_notes: list[str] = []
    lm_cases = _bench_lmhead.selected(args.only, _bench_lmhead.LM_GPU_CASES if device == "cuda" else
                                      _bench_lmhead.LM_CASES)
    if lm_cases:
        lm_cases = _bench_lmhead.quick_cases(lm_cases) if args.quick else lm_cases
        lm_rows, lm_notes = _bench_lmhead.run(lm_cases, min_time=args.min_time, threads=args.threads, device=device,
                                              progress=progress)
    elif not args.only:
        lm_notes = ["the lm-head group is opt-in: losslab bench --only lm-head"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = markdown(rows) if rows else ""
    if lm_rows or lm_notes:
        lm_table = _bench_lmhead.markdown(lm_rows, lm_notes) if lm_rows else "\n".join(f"- {n}" for n in lm_notes)
        table = f"{table}\n\n### {_bench_lmhead.GROUP}\n\n{lm_table}".strip()
    (out / "results.md").write_text(f"Machine: {machine(device)}\n\n{table}\n")
    (out / "results.json").write_text(json.dumps({"machine": machine(device), "losslab": losslab.__version__,
                                                  "rows": rows, "lm_head": {"rows": lm_rows, "notes": lm_notes}},
                                                 indent=2, default=str))
    print(table)
    print(f"\nwrote {out / 'results.md'} and {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
