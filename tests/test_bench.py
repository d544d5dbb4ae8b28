"""`losslab bench`: it runs, measures every implementation on the same inputs, and writes its table and JSON.

No timing is asserted (the benchmark reports speed; tests check correctness). Memory is deterministic,
so the fused path's peak is checked against the composite's.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import losslab
from losslab import _fused, bench


@pytest.fixture(autouse=True)
def _restore_fused():
    previous = losslab.set_fused("auto")
    threads = torch.get_num_threads()
    yield
    losslab.set_fused(previous)
    torch.set_num_threads(threads)


def test_every_case_has_a_native_reference_and_the_peers_compute_the_same_loss():
    for case in bench.CASES:
        x, t = bench.make_inputs(case, tuple(max(2, s // 1000) if i == 0 else s for i, s in enumerate(case.shape)))
        impls = bench.implementations(case)
        assert sum(name.startswith("torch native") for name in impls) == 1
        paths = {"losslab auto", "losslab composite"} if case.workload == "small" else \
            {"losslab compiled", "losslab eager sweep", "losslab without compiler", "losslab native",
             "losslab composite"}
        if case.loss in bench.UNFUSED:
            paths = {"losslab"}
        assert paths <= set(impls)
        want = getattr(losslab, case.loss)(x, t, **bench.options(case.loss, x))
        for name, fn in impls.items():
            if name.startswith("kornia (per image"):
                continue  # another loss (per image, every class), timed for scale
            if name == "kornia" and x.ndim > 2:
                continue  # kornia 0.9's reduced softmax focal path averages (N, C, H, W) inputs differently
            if "formula" in name or name in ("kornia", "MONAI") or name.startswith("losslab"):
                if name == "losslab compiled":
                    continue  # compiling takes seconds; test_fused covers the compiled path
                expected = want
                if name in ("kornia", "MONAI") and case.loss == "softmax_focal_loss":
                    expected = want / x.shape[1]  # their softmax focal "mean" also averages over the classes
                torch.testing.assert_close(fn(x, t).float(), expected.float(), rtol=1e-4, atol=1e-5, msg=name)


def test_quick_run_writes_table_and_json(tmp_path, capsys):
    assert bench.main(["--quick", "--only", "small", "--min-time", "0.01", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "results.json").read_text())
    rows = data["rows"]
    assert {r["loss"] for r in rows} == {"sigmoid_focal_loss", "cross_entropy", "binary_cross_entropy",
                                         "softmax_focal_loss"}
    assert {tuple(r["shape"]) for r in rows} == {(5, 10), (81, 10), (2, 1000)}  # --quick: batch sizes / 50
    for r in rows:
        assert r["median_ms"] > 0 and r["iqr_ms"] >= 0 and r["runs"] >= 1
        assert r["unreliable"] == (r["iqr_ms"] > r["median_ms"])  # flagged in the JSON too
        assert r["peak_memory_x_logits"] >= 0
        assert r["vs_native"] > 0
        # the small group is interleaved: ratios are medians of per-round ratios, with their quartiles
        assert r["interleaved"] and r["runs"] >= 11
        low, high = r["vs_native_quartiles"]
        assert low <= r["vs_native"] <= high
        if r["implementation"].startswith("torch native"):
            assert r["vs_native"] == low == high == 1.0
    table = (tmp_path / "results.md").read_text()
    assert table.startswith("Machine: ")
    assert table.count("\n| ") == len(rows) + 1  # header and one row per measurement
    assert "results.md" in capsys.readouterr().out


def test_quartiles_interpolate_between_order_statistics():
    assert bench.quartiles([4.0, 1.0, 3.0, 2.0, 5.0]) == (2.0, 3.0, 4.0)
    assert bench.quartiles([1.0, 2.0]) == (1.25, 1.5, 1.75)


def test_cli_has_the_bench_command(tmp_path):
    from losslab.cli import build_parser

    args = build_parser().parse_args(["bench", "--quick", "--only", "small", "--out", str(tmp_path)])
    assert args.quick and args.only == "small" and args.handler is bench.command


def test_peak_memory_counts_the_gradient_and_the_fused_path_keeps_fewer_intermediates(monkeypatch):
    x = torch.randn(2000, 40)
    t = (torch.rand(2000, 40) < 0.05).float()
    native = bench.peak_memory(lambda a, b: F.binary_cross_entropy_with_logits(a, b), x, t)
    assert native == pytest.approx(2.0, abs=0.05)  # the gradient and one temporary of torch's backward
    with losslab._dispatch.forced("composite"):
        composite = bench.peak_memory(losslab.sigmoid_focal_loss, x, t)
    monkeypatch.setattr(_fused, "CHUNK_NUMEL", 4096)  # chunks of 1/20 of the input: the eager sweep's bound
    losslab.set_fused("eager")
    fused = bench.peak_memory(losslab.sigmoid_focal_loss, x, t)
    assert fused <= 2.0 < 10.0 < composite  # the temporaries of the autograd Function are counted too


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given without a GPU")
def test_cuda_bench_without_a_gpu_says_so(tmp_path, capsys):
    assert bench.main(["--device", "cuda", "--out", str(tmp_path)]) == 2
    assert "--device cuda needs a CUDA device" in capsys.readouterr().err


def test_gpu_rows_show_the_share_of_copy_bandwidth():
    row = {"loss": "cross_entropy", "workload": "LM vocabulary 32k", "shape": [4096, 32768],
           "implementation": "losslab triton", "median_ms": 1.0, "iqr_ms": 0.01, "vs_native": 0.5, "vs_formula": None,
           "peak_memory_x_logits": 1.0, "first_call_s": None, "bandwidth_of_copy": 0.83}
    table = bench.markdown([row])
    assert "% of copy bandwidth" in table and "| 83% |" in table
    assert any(case.dtype == torch.bfloat16 and case.shape[1] >= 131072 for case in bench.GPU_CASES)


def test_profiler_is_silent_on_stderr(capfd):
    # regression: every peak-memory measurement printed the profiler's start / stop lines (120 lines a run)
    x = torch.randn(8, 5)
    t = torch.randint(0, 5, (8,))
    for _ in range(3):
        assert bench.peak_memory(lambda a, b: F.cross_entropy(a, b), x, t) > 0
    captured = capfd.readouterr()
    assert captured.err == ""
    import sys

    print("still here", file=sys.stderr)  # stderr is given back afterwards
    assert capfd.readouterr().err == "still here\n"


def test_the_compiled_rows_interleaved_ratio_is_measured_and_shown():
    """A large case's compiled row also gets its ratio to torch's loss timed interleaved: quartiles in order,
    positive, for the same inputs (here: one of the small cases' callables on a tiny shape), and in the table."""
    case = next(c for c in bench.CASES if c.loss == "binary_cross_entropy" and c.workload != "small")
    impls = bench.implementations(case)
    native = next(f for n, f in impls.items() if n.startswith("torch native"))
    low, middle, high = bench.interleaved_ratio(case, (6, case.shape[1]), impls["losslab native"], native, rounds=5)
    assert 0 < low <= middle <= high
    row = {"loss": case.loss, "workload": case.workload, "shape": [6, case.shape[1]],
           "implementation": "losslab compiled", "median_ms": 1.0, "iqr_ms": 0.1, "vs_native": 0.62,
           "vs_formula": None, "peak_memory_x_logits": 1.0, "first_call_s": 2.0, "vs_native_interleaved": 0.55,
           "vs_native_interleaved_quartiles": [0.52, 0.59]}
    assert "| 0.62x; interleaved 0.55x (0.52-0.59) |" in bench.markdown([row])


def test_a_row_whose_iqr_exceeds_its_median_is_flagged_unreliable():
    rows = [{"loss": "cross_entropy", "workload": "small", "shape": [4, 3], "implementation": name,
             "median_ms": 1.0, "iqr_ms": iqr, "runs": 5, "peak_memory_x_logits": 1.0, "first_call_s": None,
             "vs_native": 1.0, "vs_formula": None} for name, iqr in (("steady", 0.2), ("noisy", 1.5))]
    for row in rows:
        row["unreliable"] = bench.unreliable(row)
    assert [r["unreliable"] for r in rows] == [False, True]
    table = bench.markdown(rows)
    steady, noisy = (line for line in table.splitlines() if line.startswith("| cross_entropy"))
    assert "unreliable" not in steady and "1.00 (1.50) unreliable" in noisy
    assert "unreliable: the interquartile range exceeds the median" in table


# ----------------------------------------------------------------------------
# the lm-head group

TINY_LM = [bench._bench_lmhead.LMCase("tiny", 96, 16, 300, chunk_size=32),
           bench._bench_lmhead.LMCase("tiny (B, T), shift", 96, 16, 300, batch=4, shift=True, chunk_size=32)]


def test_lm_head_implementations_compute_the_same_loss_and_gradients():
    lm = bench._bench_lmhead
    for case in TINY_LM:
        hidden, weight, target = lm.make_inputs(case)
        assert (target == lm.IGNORE_INDEX).any() or case.n < 50
        impls, _ = lm.implementations(case)
        assert {lm.TORCH, lm.LOSSLAB} <= set(impls)
        results = {}
        for name, fn in impls.items():
            h, w = hidden.clone().requires_grad_(True), weight.clone().requires_grad_(True)
            loss = fn(h, w, target, case.shift)
            loss.backward()
            results[name] = (loss.detach(), h.grad, w.grad)
        for name, got in results.items():
            for a, b in zip(got, results[lm.TORCH], strict=True):
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)


def test_lm_head_group_runs_on_tiny_sizes_and_the_chunked_loss_keeps_less_memory(tmp_path):
    lm = bench._bench_lmhead
    rows, notes = lm.run(TINY_LM, min_time=0.0, threads=1, progress=lambda line: None)
    assert {(r["workload"], r["implementation"]) for r in rows} >= {(c.workload, name) for c in TINY_LM
                                                                     for name in (lm.TORCH, lm.LOSSLAB)}
    for r in rows:
        assert r["median_s"] > 0 and r["iqr_s"] >= 0 and r["runs"] >= 1 and r["peak_bytes"] > 0
        assert r["time_vs_torch"] > 0 and r["memory_vs_torch"] > 0
    assert {r["tokens"] for r in rows} == {96, 92}  # shift drops the last position of each of 4 sequences
    for case in TINY_LM:
        torch_row = next(r for r in rows if r["workload"] == case.workload and r["implementation"] == lm.TORCH)
        ours = next(r for r in rows if r["workload"] == case.workload and r["implementation"] == lm.LOSSLAB)
        assert torch_row["memory_vs_torch"] == 1.0 and torch_row["peak_x_logits"] >= 2.0  # logits and gradient
        assert ours["memory_vs_torch"] < 0.8  # chunks of 32 of 96 tokens (memory is deterministic)
    table = lm.markdown(rows, notes)
    assert ("\n" + table).count("\n| ") == len(rows) + 1  # the header and one line per row
    assert all(f"- {note}" in table for note in notes)


def test_lm_head_group_is_opt_in(tmp_path, monkeypatch):
    lm = bench._bench_lmhead
    assert lm.selected("lm-head") == lm.selected("linear_cross_entropy") == lm.LM_CASES
    assert lm.selected("shift") == [c for c in lm.LM_CASES if c.shift] != []  # one case, by its workload
    assert lm.selected(None) == lm.selected("small") == lm.selected("cross_entropy ") == []
    monkeypatch.setattr(lm, "LM_CASES", TINY_LM[:1])
    assert bench.main(["--quick", "--only", "lm-head", "--min-time", "0.01", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["rows"] == [] and {r["implementation"] for r in data["lm_head"]["rows"]} >= {lm.TORCH, lm.LOSSLAB}
    assert "### lm-head" in (tmp_path / "results.md").read_text()
    assert bench.main(["--quick", "--only", "small", "--min-time", "0.01", "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "results.json").read_text())["lm_head"]["rows"] == []
