"""Where the lab's runs go: joblib's sequential and loky backends, a Dask cluster, and the errors of each."""

from __future__ import annotations

import json
import socket
import sys

import pytest

from losslab.cli import main
from losslab.lab import _executor
from losslab.lab._ablate import ablate
from losslab.lab._executor import run_jobs

LOSSES = [{"name": "cross_entropy"}, {"name": "softmax_focal_loss", "gamma": 2.0}]
FAST = {"model": "logreg", "epochs": 1, "seeds": 1}
TINY_CLI = ["ablate", "--loss", "cross_entropy", "--seeds", "1", "--epochs", "1", "--model", "logreg", "--no-plots",
            "--no-progress"]


def _power(exponent: int, job: int) -> int:
    return job ** exponent


def _fail_on_three(shared: None, job: int) -> int:
    if job == 3:
        raise FloatingPointError(f"run {job} failed")
    return job


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("losslab ablate: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def local():
    return ablate(losses=LOSSES, **FAST)


# --------------------------------------------------------------------------------------------- the executor


class TestRunJobs:
    def test_sequential_keeps_the_order(self):
        assert run_jobs(_power, range(5), shared=2) == [0, 1, 4, 9, 16]

    def test_processes_keep_the_order(self):
        # results arrive as they end (generator_unordered) and are put back in the jobs' order
        assert run_jobs(_power, list(range(7)), shared=3, n_jobs=2) == [j ** 3 for j in range(7)]

    def test_empty(self):
        assert run_jobs(_power, [], shared=2) == []

    @pytest.mark.parametrize("n_jobs", [1, 2])
    def test_a_failed_run_raises_its_own_error(self, n_jobs):
        with pytest.raises(FloatingPointError, match="^run 3 failed$"):
            run_jobs(_fail_on_three, range(6), n_jobs=n_jobs)

    def test_progress_bar_moves_per_result(self, capsys):
        run_jobs(_power, range(3), shared=1, progress=True, describe=lambda job: f"job {job}", caller="grid")
        err = capsys.readouterr().err
        assert "grid: 100%" in err and "3/3" in err and "job 2" in err

    @pytest.mark.parametrize("kwargs, match", [
        ({"backend": "spark"}, r"^t: backend must be one of 'local', 'dask', 'ray'; got 'spark'$"),
        ({"n_jobs": 0}, r"^t: jobs must be a positive integer; got 0$"),
        ({"scheduler": "tcp://h:8786"}, r"^t: scheduler 'tcp://h:8786' is for a cluster backend"),
        ({"backend": "dask", "scheduler": 8786}, r"^t: scheduler must be the Dask scheduler's address"),
    ])
    def test_bad_arguments(self, kwargs, match):
        with pytest.raises(ValueError, match=match):
            run_jobs(_power, [1], shared=1, caller="t", **kwargs)


# --------------------------------------------------------------------------------------------- errors, one line


class TestBackendErrors:
    def test_missing_dask(self, monkeypatch, tmp_path, capsys):
        monkeypatch.setattr("losslab.lab._ablate.load_dataset", lambda *a, **k: pytest.fail("data loaded"))
        monkeypatch.setitem(sys.modules, "distributed", None)  # import fails
        assert main([*TINY_CLI, "--backend", "dask", "--scheduler", "tcp://127.0.0.1:8786",
                     "--out", str(tmp_path)]) == 2
        assert "backend 'dask' needs distributed, which is not installed: pip install 'losslab[cluster]'" \
            in _one_line(capsys)

    def test_missing_ray(self, monkeypatch, tmp_path, capsys):
        monkeypatch.setattr("losslab.lab._ablate.load_dataset", lambda *a, **k: pytest.fail("data loaded"))
        monkeypatch.setitem(sys.modules, "ray", None)
        assert main([*TINY_CLI, "--backend", "ray", "--out", str(tmp_path)]) == 2
        assert "backend 'ray' needs ray, which is not installed" in _one_line(capsys)

    def test_unreachable_scheduler(self, monkeypatch, tmp_path, capsys):
        pytest.importorskip("distributed")
        monkeypatch.setattr(_executor, "CONNECT_TIMEOUT", 1.0)
        with socket.socket() as probe:  # a port nobody listens on
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        assert main([*TINY_CLI, "--backend", "dask", "--scheduler", f"tcp://127.0.0.1:{port}",
                     "--out", str(tmp_path / "o")]) == 2
        assert f"cannot reach the Dask scheduler at 'tcp://127.0.0.1:{port}' (waited 1 s)" in _one_line(capsys)
        assert not (tmp_path / "o" / "results.json").exists()

    def test_dask_without_a_scheduler(self, tmp_path, capsys):
        pytest.importorskip("distributed")
        assert main([*TINY_CLI, "--backend", "dask", "--out", str(tmp_path)]) == 2
        assert "backend 'dask' needs the scheduler's address (--scheduler tcp://HOST:8786" in _one_line(capsys)

    def test_scheduler_without_a_cluster_backend(self, tmp_path, capsys):
        assert main([*TINY_CLI, "--scheduler", "tcp://127.0.0.1:8786", "--out", str(tmp_path)]) == 2
        assert "is for a cluster backend" in _one_line(capsys)

    def test_python_api_checks_before_any_run(self, monkeypatch):
        monkeypatch.setattr("losslab.lab._ablate.train", lambda *a, **k: pytest.fail("a run started"))
        with pytest.raises(ValueError, match=r"^ablate: backend must be one of 'local', 'dask', 'ray'; got 'mpi'$"):
            ablate(losses=LOSSES, backend="mpi", **FAST)


# --------------------------------------------------------------------------------------------- a Dask cluster


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed", reason="the cluster backend's test needs dask[distributed]")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=50) as local_cluster:
        yield local_cluster


class TestDask:
    def test_results_json_numbers_match_the_local_run(self, cluster, local, tmp_path, capsys):
        argv = ["ablate", "--model", "logreg", "--epochs", "1", "--seeds", "1", "--no-plots",
                "--loss", "cross_entropy", "--loss", "softmax_focal_loss gamma=2",
                "--backend", "dask", "--scheduler", cluster.scheduler_address, "--out", str(tmp_path)]
        assert main(argv) == 0
        err = capsys.readouterr().err
        assert "ablate: 100%" in err and "2/2" in err  # the bar moved as the cluster's results arrived
        data = json.loads((tmp_path / "results.json").read_text())
        assert [(r["label"], r["seed"]) for r in data["runs"]] == [(r["label"], r["seed"]) for r in local.runs]
        assert [r["metrics"] for r in data["runs"]] == json.loads(json.dumps([r["metrics"] for r in local.runs]))
        assert data["settings"]["backend"] == "dask" and data["settings"]["scheduler"] == cluster.scheduler_address
        assert "distributed" in data["versions"] and "joblib" in data["versions"]

    def test_a_client_from_python(self, cluster, local):
        from distributed import Client

        with Client(cluster) as client:
            spread = ablate(losses=LOSSES, backend="dask", scheduler=client, jobs=1, **FAST)
        assert [r["metrics"] for r in spread.runs] == [r["metrics"] for r in local.runs]
        assert spread.settings["scheduler"].startswith("<Client")

    def test_a_failed_run_on_the_cluster_raises_its_error(self, cluster):
        with pytest.raises(FloatingPointError, match="^run 3 failed$"):
            run_jobs(_fail_on_three, range(5), backend="dask", scheduler=cluster.scheduler_address)
