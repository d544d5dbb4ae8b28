"""The ``lm-head`` group of `losslab bench`: a language-model head's loss, hidden states to loss, fused or not.

``losslab bench --only lm-head`` (opt-in: on a 2-core CPU the group takes several minutes, each torch
forward + backward of the largest case tens of seconds). For every case it runs forward + backward
(gradients of hidden and weight, float32, mean over tokens with about 3 % ignored) of

* ``torch F.linear + F.cross_entropy``: the baseline, which stores the (tokens, V) logits;
* ``losslab linear_cross_entropy``: the chunked fused loss (default ``chunk_size``);
* ``cut-cross-entropy torch_compile`` where the package imports (its ``torch.compile`` fallback; on CUDA
  also its own kernel, ``cce``), and ``Liger-Kernel fused linear CE`` on CUDA where it imports.

It reports the median time with its interquartile range, the time against torch's in the same run, and the
peak memory allocated during forward + backward beyond what existed before (the inputs are not counted; the
gradients of hidden and weight are): in MiB, in units of the float32 logits' size, and against torch's.

How the memory is measured: on CPU with torch's profiler (``losslab._bench_memory.peak_allocated``, which the other
groups' ``peak_memory`` uses too: every allocation and free of torch's CPU allocator in time order). Its
event count grows with the number of operators (a few per chunk), not with the logits' size, so it fits these
sizes, and the profiled call doubles as the first call. It does not see memory that BLAS or glibc keep outside
torch's allocator and is exact for everything torch allocates (a subprocess's peak RSS would add the
allocator's caching and the interpreter, and be noisier).
On CUDA: ``torch.cuda.max_memory_allocated`` over one step.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

import losslab

from ._bench_memory import peak_allocated
from ._bench_peers import IGNORE_INDEX, lm_head_peers, torch_linear_cross_entropy

GROUP = "lm-head"
TORCH = "torch F.linear + F.cross_entropy"
LOSSLAB = "losslab linear_cross_entropy"
IGNORED_SHARE = 0.03  # tokens whose target is ignore_index (padding)


@dataclass
class LMCase:
    workload: str
    n: int  # tokens (B * T for a (B, T) case)
    d: int
    vocab: int
    batch: int | None = None  # (B, T) inputs with B = batch, T = n // batch
    shift: bool = False
    chunk_size: int | None = None  # losslab's chunk_size (None: its default)
    dtype: torch.dtype = torch.float32  # of hidden and weight (the losses compute in float32)

    def shape(self) -> str:
        tokens = f"{self.n}" if self.batch is None else f"{self.batch}x{self.n // self.batch}"
        dtype = "" if self.dtype == torch.float32 else f", {str(self.dtype).replace('torch.', '')}"
        return f"{tokens}x{self.d}, V {self.vocab}{dtype}"


LM_CASES = [
    LMCase("N 8192, d 1024, V 65536", 8192, 1024, 65536),
    LMCase("N 8192, d 1024, V 32768", 8192, 1024, 32768),
    LMCase("N 4096, d 1024, V 65536", 4096, 1024, 65536),
    LMCase("(B, T) = (4, 2048), shift, V 65536", 8192, 1024, 65536, batch=4, shift=True),
]
# --device cuda: the same, and a bfloat16 head of a 128k vocabulary (hidden and weight in bfloat16)
LM_GPU_CASES = LM_CASES + [
    LMCase("(B, T) = (4, 2048), shift, d 2048, V 131072, bfloat16", 8192, 2048, 131072, batch=4, shift=True,
           dtype=torch.bfloat16),
]


def selected(only: str | None, cases: list[LMCase] | None = None) -> list[LMCase]:
    """The cases ``--only`` asks for: all of them for "lm-head" (or "linear_cross_entropy"), the cases whose
    workload contains the text otherwise, none without ``--only`` (the group is opt-in)."""
    cases = LM_CASES if cases is None else cases
    if not only:
        return []
    if any(only in text for text in (GROUP, "linear_cross_entropy")):
        return list(cases)
    return [case for case in cases if only in case.workload]


def quick_cases(cases: list[LMCase]) -> list[LMCase]:
    """--quick: tokens and vocabulary / 32, width / 8 (a smoke run)."""
    return [LMCase(c.workload, max(8, c.n // 32), max(8, c.d // 8), max(64, c.vocab // 32), c.batch, c.shift,
                   c.chunk_size, c.dtype) for c in cases]


def make_inputs(case: LMCase, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """hidden (N, d) or (B, T, d) ~ N(0, 1), weight (V, d) ~ N(0, 1 / d) (logits of unit scale), targets
    with :data:`IGNORED_SHARE` of ignore_index."""
    g = torch.Generator().manual_seed(seed)
    lead = (case.n,) if case.batch is None else (case.batch, case.n // case.batch)
    hidden = torch.randn(*lead, case.d, generator=g)
    weight = torch.randn(case.vocab, case.d, generator=g) / case.d ** 0.5
    target = torch.randint(0, case.vocab, lead, generator=g)
    target = torch.where(torch.rand(lead, generator=g) < IGNORED_SHARE, torch.full_like(target, IGNORE_INDEX),
                         target)
    return hidden.to(case.dtype), weight.to(case.dtype), target


def implementations(case: LMCase, device: str = "cpu") -> tuple[dict[str, Callable], list[str]]:
    """{name: fn(hidden, weight, target, shift) -> mean loss}, and notes on the peers not measured."""
    impls: dict[str, Callable] = {
        TORCH: torch_linear_cross_entropy,
        LOSSLAB: lambda h, w, t, shift: losslab.linear_cross_entropy(h, w, t, ignore_index=IGNORE_INDEX,
                                                                     shift=shift, chunk_size=case.chunk_size),
    }
    peers, notes = lm_head_peers(device)
    impls.update(peers)
    return impls, notes


def _step(fn: Callable, hidden: Tensor, weight: Tensor, target: Tensor, shift: bool) -> None:
    h = hidden.detach().requires_grad_(True)
    w = weight.detach().requires_grad_(True)
    fn(h, w, target, shift).backward()


def _peak_bytes(fn: Callable, args: tuple) -> int:
    """Peak bytes torch's CPU allocator held during one forward + backward beyond what it held before."""
    return peak_allocated(lambda: _step(fn, *args))


def _spread(times: list[float]) -> tuple[float, float]:
    """Median and interquartile range (0 for fewer than two runs)."""
    if len(times) < 2:
        return times[0], 0.0
    q = statistics.quantiles(times, n=4, method="inclusive")
    return statistics.median(times), q[2] - q[0]


def measure(case: LMCase, name: str, fn: Callable, *, min_time: float, threads: int, device: str = "cpu") -> dict:
    """One row: the first call, the peak memory, then timed runs until ``min_time`` seconds have passed (at
    least two, or one where one run alone takes longer). The first call is the profiled one, except for a
    compiled peer (``fn.compiled``), whose first call (the compile) runs before and outside the profiler:
    a forward + backward of the largest case takes tens of seconds on 2 cores, so each one counts."""
    hidden, weight, target = make_inputs(case)
    row = {"group": GROUP, "workload": case.workload, "shape": case.shape(), "implementation": name,
           "tokens": case.n - (case.batch or 1) * case.shift}
    if device == "cuda":
        return {**row, **_measure_cuda(fn, (hidden.cuda(), weight.cuda(), target.cuda(), case.shift))}
    args = (hidden, weight, target, case.shift)
    torch.set_num_threads(threads)
    start = time.perf_counter()
    if getattr(fn, "compiled", False):
        _step(fn, *args)
        first = time.perf_counter() - start
        peak = _peak_bytes(fn, args)
    else:
        peak = _peak_bytes(fn, args)
        first = time.perf_counter() - start
    from torch.utils import benchmark

    timer = benchmark.Timer("step(fn, *args)", globals={"step": _step, "fn": fn, "args": args}, num_threads=threads)
    times: list[float] = []
    began = time.perf_counter()
    while not times or time.perf_counter() - began < min_time or (len(times) < 2 and times[0] < min_time):
        times.append(timer.timeit(1).median)
    median, iqr = _spread(times)
    return {**row, "median_s": median, "iqr_s": iqr, "runs": len(times), "peak_bytes": peak, "first_call_s": first}


def _measure_cuda(fn: Callable, args: tuple) -> dict:
    from triton.testing import do_bench

    hidden, weight, target, shift = args
    h = hidden.detach().requires_grad_(True)
    w = weight.detach().requires_grad_(True)

    def step() -> None:
        fn(h, w, target, shift).backward()

    start = time.perf_counter()
    step()
    torch.cuda.synchronize()
    first = time.perf_counter() - start
    q1, median, q3 = do_bench(step, grad_to_none=[h, w], quantiles=[0.25, 0.5, 0.75])
    h.grad = w.grad = None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    step()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    return {"median_s": median / 1e3, "iqr_s": (q3 - q1) / 1e3, "runs": None, "peak_bytes": peak,
            "first_call_s": first}


def run(cases: list[LMCase], *, min_time: float, threads: int, device: str = "cpu",
        progress: Callable[[str], None] = print) -> tuple[list[dict], list[str]]:
    """Rows of every case (the ratios against torch's row of the same case filled in), and the notes."""
    rows: list[dict] = []
    notes: list[str] = []
    for case in cases:
        impls, case_notes = implementations(case, device)
        notes += [note for note in case_notes if note not in notes]
        case_rows = []
        for name, fn in impls.items():
            progress(f"{GROUP} {case.workload} ({case.shape()}): {name}")
            try:
                case_rows.append(measure(case, name, fn, min_time=min_time, threads=threads, device=device))
            except Exception as error:  # a peer that fails here is reported, not fatal
                note = f"{name} failed on {case.workload}: {type(error).__name__}: {str(error).splitlines()[0]}"
                notes.append(note[:300])
        base = next((r for r in case_rows if r["implementation"] == TORCH), None)
        logits_bytes = 4 * (case_rows[0]["tokens"] if case_rows else case.n) * case.vocab
        for r in case_rows:
            r["peak_x_logits"] = r["peak_bytes"] / logits_bytes
            r["time_vs_torch"] = None if base is None else r["median_s"] / base["median_s"]
            r["memory_vs_torch"] = None if base is None or not base["peak_bytes"] else \
                r["peak_bytes"] / base["peak_bytes"]
            r["unreliable"] = bool(r["iqr_s"] > r["median_s"])
        rows += case_rows
    return rows, notes


def markdown(rows: list[dict], notes: list[str]) -> str:
    out = ["| workload | shape | implementation | median s (IQR) | time vs torch | peak extra MiB | x logits | "
           "memory vs torch | first call s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        time_ratio = "" if r["time_vs_torch"] is None else f"{r['time_vs_torch']:.2f}x"
        memory_ratio = "" if r["memory_vs_torch"] is None else f"{100 * r['memory_vs_torch']:.1f}%"
        flag = " unreliable" if r["unreliable"] else ""
        out.append(f"| {r['workload']} | {r['shape']} | {r['implementation']} | {r['median_s']:.3f} "
                   f"({r['iqr_s']:.3f}){flag} | {time_ratio} | {r['peak_bytes'] / 2 ** 20:.0f} | "
                   f"{r['peak_x_logits']:.2f} | {memory_ratio} | {r['first_call_s']:.1f} |")
    out += [""] + [f"- {note}" for note in notes]
    return "\n".join(out)
