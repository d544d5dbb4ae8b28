"""Peak extra memory and time of linear_cross_entropy against F.linear + F.cross_entropy (issue 17's targets).

Every measurement runs in a fresh process (one forward + backward after a small warm-up), interleaved by round
with the order alternating, so that peak RSS is not shared between implementations and a drift of the shared
machine hits both:

    OMP_WAIT_POLICY=PASSIVE PYTHONPATH=src python benchmarks/lm_head_memory.py --rounds 3 --out lm_head.json

Extra memory = the process's peak RSS during the call (VmHWM, reset through /proc/self/clear_refs just before)
minus its RSS before the call (inputs allocated) minus the returned gradients (grad_hidden and grad_weight, which
both implementations return). Linux only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CASES = {
    "N=8192 d=1024 V=65536": {"shape": (8192,), "d": 1024, "vocab": 65536, "shift": False},
    "N=8192 d=1024 V=32768": {"shape": (8192,), "d": 1024, "vocab": 32768, "shift": False},
    "N=4096 d=1024 V=65536": {"shape": (4096,), "d": 1024, "vocab": 65536, "shift": False},
    "B=4 T=2048 d=1024 V=65536 shift": {"shape": (4, 2048), "d": 1024, "vocab": 65536, "shift": True},
}
IMPLS = ("torch", "losslab")


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def child(impl: str, case: str, threads: int) -> dict:
    import torch
    import torch.nn.functional as F

    from losslab import linear_cross_entropy

    torch.set_num_threads(threads)
    spec = CASES[case]
    g = torch.Generator().manual_seed(0)
    shape, d, vocab = spec["shape"], spec["d"], spec["vocab"]
    hidden = torch.randn(*shape, d, generator=g).requires_grad_()
    weight = (torch.randn(vocab, d, generator=g) * 0.02).requires_grad_()
    target = torch.randint(0, vocab, shape, generator=g)

    def run(h: torch.Tensor, w: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if impl == "losslab":
            loss = linear_cross_entropy(h, w, y, shift=spec["shift"])
        elif spec["shift"]:
            logits = F.linear(h[:, :-1], w)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y[:, 1:].reshape(-1))
        else:
            loss = F.cross_entropy(F.linear(h, w), y)
        loss.backward()
        return loss.detach()

    small = [t.detach()[..., :64].clone().requires_grad_() if t.is_floating_point() else t for t in
             (hidden[:8] if hidden.ndim == 2 else hidden[:1, :8], weight[:512], target[:8] % 512
              if target.ndim == 1 else target[:1, :8] % 512)]
    run(*small)  # warm-up: thread pools, BLAS, lazy initialisation
    before = _status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    start = time.perf_counter()
    loss = run(hidden, weight, target)
    seconds = time.perf_counter() - start
    peak = _status("VmHWM")
    grads = sum(t.grad.numel() * t.grad.element_size() for t in (hidden, weight))
    logits = hidden.shape[:-1].numel() * vocab * 4
    return {"impl": impl, "case": case, "seconds": seconds, "extra_bytes": peak - before - grads,
            "logits_bytes": logits, "loss": loss.item()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cases", nargs="*", default=list(CASES))
    ap.add_argument("--first-round", type=int, default=0, help="round index of the first round (order parity)")
    ap.add_argument("--out", default="lm_head_memory.json")
    ap.add_argument("--child", nargs=2, metavar=("IMPL", "CASE"))
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args.threads)))
        return
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    rows = []
    for r in range(args.first_round, args.first_round + args.rounds):
        for case in args.cases:
            for impl in (IMPLS if r % 2 == 0 else IMPLS[::-1]):
                out = subprocess.run([sys.executable, __file__, "--threads", str(args.threads), "--child", impl,
                                      case], capture_output=True, text=True, env=env, check=True)
                row = json.loads(out.stdout.strip().splitlines()[-1])
                row["round"] = r
                rows.append(row)
                print(json.dumps(row), flush=True)
                with open(args.out, "w") as f:
                    json.dump({"rows": rows, "summary": summarise(rows)}, f, indent=1)
    for line in table(summarise(rows)):
        print(line)


def summarise(rows: list[dict]) -> dict:
    out = {}
    for case in dict.fromkeys(r["case"] for r in rows):
        med = {}
        for impl in IMPLS:
            rs = [r for r in rows if r["case"] == case and r["impl"] == impl]
            if rs:
                med[impl] = {"seconds": statistics.median(r["seconds"] for r in rs),
                             "extra_MiB": statistics.median(r["extra_bytes"] for r in rs) / 2**20, "runs": len(rs),
                             "logits_MiB": rs[0]["logits_bytes"] / 2**20}
        if len(med) == 2:
            med["time_ratio"] = med["losslab"]["seconds"] / med["torch"]["seconds"]
            med["memory_ratio"] = med["losslab"]["extra_MiB"] / med["torch"]["extra_MiB"]
        out[case] = med
    return out


def table(summary: dict) -> list[str]:
    lines = ["| case | torch s | losslab s | time ratio | torch extra MiB | losslab extra MiB | memory ratio |",
             "|---|---|---|---|---|---|---|"]
    for case, m in summary.items():
        if "time_ratio" in m:
            lines.append(f"| {case} | {m['torch']['seconds']:.2f} | {m['losslab']['seconds']:.2f} | "
                         f"{m['time_ratio']:.2f}x | {m['torch']['extra_MiB']:.0f} | {m['losslab']['extra_MiB']:.0f} | "
                         f"{m['memory_ratio']:.3f} |")
    return lines


if __name__ == "__main__":
    main()
