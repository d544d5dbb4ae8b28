"""dist_sync under real torch.distributed: 2 and 3 gloo processes against one process on the global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

import losslab
from tests import dist_worker as W

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="needs torch.distributed with gloo")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", params=[2, 3], ids=["2 processes", "3 processes"])
def world(request, tmp_path_factory):
    """Spawn the processes once per world size; every rank's results, by rank."""
    size = request.param
    folder = tmp_path_factory.mktemp(f"dist{size}")
    mp.start_processes(W.worker, args=(size, str(folder / "init"), str(folder)), nprocs=size, join=True,
                       start_method="spawn")
    return size, [torch.load(folder / f"{rank}.pt", weights_only=True) for rank in range(size)]


def single(case: W.Case) -> dict:
    """The loss of the whole batch on one process, without dist_sync."""
    return W.run_case(case, 0, W.N, 1, dist_sync=False)


@pytest.mark.parametrize("case", W.CASES, ids=[c.name for c in W.CASES])
def test_averaged_gradient_is_the_global_gradient(world, case):
    size, ranks = world
    expected = single(case)
    for rank, results in enumerate(ranks):
        got = results[case.name]
        # every process returns the global loss
        torch.testing.assert_close(got["value"], expected["value"], rtol=1e-12, atol=1e-12)
        # DDP's average of the parameters' gradients is the global gradient
        torch.testing.assert_close(got["theta_grad"], expected["theta_grad"], rtol=1e-10, atol=1e-12)
        # and each process's share of it is the global gradient of its examples
        start, stop = W.slices(size)[rank]
        torch.testing.assert_close(got["x_grad"], expected["x_grad"][start:stop], rtol=1e-10, atol=1e-12)
        assert torch.isfinite(got["value"]).all() and torch.isfinite(got["theta_grad"]).all()


@pytest.mark.parametrize("case", W.LOVASZ_SHARDED, ids=lambda c: c.name)
def test_lovasz_over_the_batch_is_the_mean_of_the_shards_terms(world, case):
    """per_image=False: each process sorts its own shard; the value is every shard's summed terms over the global
    count of counted terms, the gradient (averaged by DDP) that of this value."""
    size, ranks = world
    x, target = case.build()
    fn = getattr(losslab, case.loss)
    theta = torch.zeros(x.shape[1:], dtype=x.dtype, requires_grad=True)
    leaf = x.clone().requires_grad_(True)
    sums, count = [], 0
    for start, stop in W.slices(size):
        local = W.shard(target, start, stop)
        sums.append(fn(leaf[start:stop] + theta, local, **{**case.kwargs, "reduction": "sum"}))
        if case.loss == "lovasz_softmax_loss":
            kept = local[local != 255]
            count += len(set(kept.tolist()))
        else:
            count += int(local.numel() > 0)
    value = sum(sums) / count
    value.backward()
    for rank, results in enumerate(ranks):
        got = results[case.name]
        torch.testing.assert_close(got["value"], value.detach(), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(got["theta_grad"], theta.grad, rtol=1e-10, atol=1e-12)
        start, stop = W.slices(size)[rank]
        torch.testing.assert_close(got["x_grad"], leaf.grad[start:stop], rtol=1e-10, atol=1e-12)


def test_without_dist_sync_the_gradients_differ(world):
    """The control: local normalisation with an all-ignored shard is not the global gradient."""
    _, ranks = world
    expected = single(W.CONTROL)
    got = ranks[0][W.CONTROL.name]
    assert not torch.allclose(got["theta_grad"], expected["theta_grad"], rtol=1e-3)


def test_empty_and_ignored_shards_are_finite(world):
    size, ranks = world
    empty = [r for r, (a, b) in enumerate(W.slices(size)) if a == b]
    assert size == 2 or empty == [1]
    for results in ranks:
        for name, out in results.items():
            if isinstance(out, dict) and "value" in out:
                assert torch.isfinite(out["value"]).all(), name
                assert torch.isfinite(out["x_grad"]).all(), name
            elif isinstance(out, dict):  # a stateful module's steps
                assert torch.isfinite(out["values"]).all(), name
                assert all(torch.isfinite(g).all() for g in out["x_grads"]), name


@pytest.mark.parametrize("name", W.STATEFUL)
def test_stateful_modules_hold_the_global_statistics_on_every_rank(world, name):
    """Seesaw's counts and EQLv2's gradient statistics, all-reduced at each step (unequal, empty and all-ignored
    shards): every rank holds the single-process module's buffers and gets its global loss at every step."""
    size, ranks = world
    expected = W.run_stateful(name, 0, W.N, 1, dist_sync=False)
    for rank, results in enumerate(ranks):
        got = results[f"stateful {name}"]
        torch.testing.assert_close(got["values"], expected["values"], rtol=1e-12, atol=1e-12)
        assert got["state"].keys() == expected["state"].keys()
        for key, value in expected["state"].items():
            torch.testing.assert_close(got["state"][key], value, rtol=1e-12, atol=1e-12)
        start, stop = W.slices(size)[rank]
        for g, e in zip(got["x_grads"], expected["x_grads"], strict=True):
            torch.testing.assert_close(g, e[start:stop], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", list(W.LINEAR_CASES))
def test_linear_cross_entropy_is_the_global_loss(world, name):
    """linear_cross_entropy with dist_sync on unequal shards of hidden rows (with 3 processes one is empty; some
    cases ignore the whole first shard): every rank gets the single-process loss of the concatenated batch and its
    components; DDP's average of the head's gradients is the global one; each rank's hidden gradient is world
    size x the global gradient of its rows."""
    size, ranks = world
    expected = W.run_linear(name, 0, W.N, 1, dist_sync=False)
    for rank, results in enumerate(ranks):
        got = results[f"linear {name}"]
        for key in ("value", "z_loss", "accuracy"):
            torch.testing.assert_close(got[key], expected[key], rtol=1e-12, atol=1e-12)
        assert got["count"].item() == expected["count"].item()
        for key in ("w_grad", "b_grad"):
            torch.testing.assert_close(got[key], expected[key], rtol=1e-10, atol=1e-12)
        start, stop = W.slices(size)[rank]
        torch.testing.assert_close(got["x_grad"], expected["x_grad"][start:stop], rtol=1e-10, atol=1e-12)
        assert got["x_grad"].shape == (stop - start, W.LINEAR_D)


def test_class_counts(world):
    size, ranks = world
    expected = losslab.class_counts(W._ignore_first_shard(W._indices(W.N)), W.C, ignore_index=W.IGNORE)
    for results in ranks:
        torch.testing.assert_close(results["class_counts"], expected)
    assert sum(r["class_counts local"] for r in ranks).tolist() == expected.tolist()
    torch.testing.assert_close(losslab.class_weights(ranks[-1]["class_counts"]), losslab.class_weights(expected))


@pytest.mark.parametrize("case", W.CASES[:3] + W.CASES[-3:], ids=lambda c: c.name)
def test_without_a_process_group_nothing_changes(case):
    assert not torch.distributed.is_initialized()
    plain = single(case)
    synced = W.run_case(case, 0, W.N, 1, dist_sync=True)
    for key in plain:
        assert torch.equal(plain[key], synced[key])


def test_dist_sync_is_checked():
    with pytest.raises(TypeError, match="cross_entropy: dist_sync must be a bool"):
        losslab.cross_entropy(torch.zeros(2, 3), torch.tensor([0, 1]), dist_sync="yes")


@pytest.mark.parametrize("name", ["CrossEntropyLoss", "DiceLoss", "GIoULoss", "SigmoidFocalLoss"])
def test_modules_take_it(name):
    module = getattr(losslab, name)
    assert module(**({"mode": "binary"} if name == "DiceLoss" else {}), dist_sync=True).dist_sync is True


def test_ddp_example_trains_with_torchrun(tmp_path):
    """examples/ddp_train.py under torchrun, 2 CPU processes: the global loss on both, and the same model."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), *sys.path])}
    out = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
         str(ROOT / "examples" / "ddp_train.py"), "--steps", "30", "--out", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    logs = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert logs[0]["losses"] == logs[1]["losses"]  # dist_sync: every rank sees the global loss
    assert logs[0]["losses"][-1] < 0.7 * logs[0]["losses"][0]
    for a, b in zip(logs[0]["state"].values(), logs[1]["state"].values(), strict=True):
        torch.testing.assert_close(a, b)


def test_under_torch_compile(tmp_path):
    """fullgraph=True traces the all-reduce (a functional collective): the same values and gradients."""
    mp.start_processes(W.compile_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True,
                       start_method="spawn")
    for rank in range(2):
        results = torch.load(tmp_path / f"compiled{rank}.pt", weights_only=True)
        assert sorted(results) == sorted(W.COMPILED)
        for out in results.values():
            torch.testing.assert_close(out["compiled"][0], out["eager"][0], rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(out["compiled"][1], out["eager"][1], rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------
# the fused sweeps under dist_sync (the global denominator is all-reduced before the sweep)


def spawn_fused(folder: Path, size: int, modes: tuple[str, ...], *, uneven: bool = False,
                timeout_s: float = 180.0) -> list[dict]:
    """Run W.fused_worker on ``size`` processes; every rank's results, by rank."""
    mp.start_processes(W.fused_worker, args=(size, str(folder / "init"), str(folder), modes, uneven, timeout_s),
                       nprocs=size, join=True, start_method="spawn")
    return [torch.load(folder / f"fused{rank}.pt", weights_only=True) for rank in range(size)]


@pytest.fixture(scope="module")
def fused_world(tmp_path_factory):
    """2 processes, every fused case under each of W.FUSED_MODES."""
    return spawn_fused(tmp_path_factory.mktemp("fused2"), 2, W.FUSED_MODES)


def assert_global(size: int, rank: int, got: dict, expected: dict) -> None:
    """The global loss on every process; the averaged theta gradient is the global one; the input gradient of
    a process is world size x the global loss's gradient of its shard."""
    torch.testing.assert_close(got["value"], expected["value"], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got["theta_grad"], expected["theta_grad"], rtol=1e-10, atol=1e-12)
    start, stop = W.slices(size)[rank]
    torch.testing.assert_close(got["x_grad"] * size, size * expected["x_grad"][start:stop], rtol=1e-10, atol=1e-12)
    assert torch.isfinite(got["value"]).all() and torch.isfinite(got["x_grad"]).all()


@pytest.mark.parametrize("mode", W.FUSED_MODES)
@pytest.mark.parametrize("case", W.FUSED_CASES, ids=lambda c: c.name)
def test_fused_sweep_under_dist_sync_is_the_global_loss(fused_world, mode, case):
    expected = single(case)
    for rank, results in enumerate(fused_world):
        got = results[f"{mode}: {case.name}"]
        assert bool(got["fused"]), (mode, case.name, rank)  # the fused node ran, not native or the composite
        assert_global(2, rank, got, expected)


def test_fused_and_unfused_processes_agree_with_an_empty_shard(tmp_path):
    """3 processes under set_fused("eager"): the empty shard cannot run a sweep (native or the composite
    instead) while the others do; every process must still make the same collectives and get the global loss."""
    ranks = spawn_fused(tmp_path, 3, ("eager",), timeout_s=10.0)
    for case in W.FUSED_CASES:
        expected = single(case)
        for rank, results in enumerate(ranks):
            got = results[f"eager: {case.name}"]
            assert bool(got["fused"]) == (rank != 1), (case.name, rank)
            assert_global(3, rank, got, expected)


def test_fused_and_unfused_processes_agree_with_uneven_shards(tmp_path):
    """2 processes under "auto" without a compiler, the eager-sweep threshold between the shards' sizes: the
    larger shard runs the eager sweep where a loss's eager sweep pays, the smaller one does not; the collectives
    still match and every process gets the global loss."""
    ranks = spawn_fused(tmp_path, 2, ("auto",), uneven=True, timeout_s=10.0)
    routes = {case.name: [bool(r[f"auto: {case.name}"]["fused"]) for r in ranks] for case in W.FUSED_CASES}
    assert routes["quality_focal_loss dense ignore"] == [False, True], routes
    for case in W.FUSED_CASES:
        expected = single(case)
        for rank, results in enumerate(ranks):
            assert_global(2, rank, results[f"auto: {case.name}"], expected)
