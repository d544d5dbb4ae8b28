"""Running the lab's runs: one callable over a list of picklable jobs, through joblib's backends.

The lab does not manage processes itself. :func:`run_jobs` hands the runs to
joblib: its sequential backend for one job at a time, its loky process pool
for ``n_jobs`` > 1 on this machine, and the Dask (``distributed``) or Ray
cluster backends for a grid spread over many machines. Results come back as
they finish (the progress bar moves with them) and are returned in the order
of the jobs, so the backend never changes the output.
"""

from __future__ import annotations

import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

__all__ = ["BACKENDS", "backend_versions", "check_backend", "require_engine", "run_jobs"]

BACKENDS = ("local", "dask", "ray")
# How long to wait for a scheduler to answer, and for a cluster to have a worker, before saying so.
CONNECT_TIMEOUT = 10.0
_INSTALL = {"dask": "pip install 'losslab[cluster]'", "ray": "pip install 'ray[default]'"}


def check_backend(backend: Any, scheduler: Any, jobs: Any, *, caller: str) -> None:
    """A ValueError for a backend, scheduler or job count that cannot work, before anything starts."""
    if backend not in BACKENDS:
        raise ValueError(f"{caller}: backend must be one of {', '.join(map(repr, BACKENDS))}; got {backend!r}")
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise ValueError(f"{caller}: jobs must be a positive integer; got {jobs!r}")
    if scheduler is not None and backend == "local":
        raise ValueError(f"{caller}: scheduler {scheduler!r} is for a cluster backend (backend 'dask' or 'ray'); "
                         "the local backend runs on this machine's processes (jobs)")
    if scheduler is not None and backend == "ray" and not isinstance(scheduler, str):
        raise ValueError(f"{caller}: scheduler must be the Ray cluster's address (a string); got {scheduler!r}")
    if scheduler is not None and backend == "dask" and not isinstance(scheduler, str) \
            and type(scheduler).__name__ != "Client":
        raise ValueError(f"{caller}: scheduler must be the Dask scheduler's address (e.g. 'tcp://host:8786') or a "
                         f"distributed.Client; got {scheduler!r}")


def require_engine(backend: str, *, caller: str) -> None:
    """An ImportError in one line, naming what to install, when ``backend``'s package is missing."""
    if backend in _INSTALL:
        _import(backend, {"dask": "distributed", "ray": "ray"}[backend], caller=caller)


def backend_versions(backend: str) -> dict[str, str]:
    """The versions of joblib and of the cluster engine that ran the grid."""
    import joblib

    versions = {"joblib": joblib.__version__}
    module = {"dask": "distributed", "ray": "ray"}.get(backend)
    if module is not None and module in sys.modules:
        versions[module] = getattr(sys.modules[module], "__version__", "?")
    return versions


def _import(backend: str, module: str, *, caller: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"{caller}: backend {backend!r} needs {module.split('.')[0]}, which is not installed: "
                          f"{_INSTALL[backend]}") from None


def _ignore_sigint() -> None:
    """Initialiser of each local worker: Ctrl-C is the main process's to handle (it stops the workers)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):  # started with SIGINT blocked (see _sigint_deferred); ignored now
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _call(fn: Callable[[Any, Any], Any], shared: Any, position: int, job: Any) -> tuple[int, Any]:
    return position, fn(shared, job)


@contextmanager
def _dask(scheduler: Any, shared: Any, n_jobs: int | None, *, caller: str) -> Iterator[tuple[dict, int]]:
    distributed = _import("dask", "distributed", caller=caller)
    own = isinstance(scheduler, str)
    if scheduler is None:
        try:
            client = distributed.get_client()  # one this process made already (Python API)
        except ValueError:
            raise ValueError(f"{caller}: backend 'dask' needs the scheduler's address (--scheduler tcp://HOST:8786, "
                             "or scheduler= a distributed.Client)") from None
    elif own:
        try:
            client = distributed.Client(scheduler, timeout=CONNECT_TIMEOUT, set_as_default=False)
        except (OSError, ValueError, TypeError) as error:
            reason = " ".join(str(error).split()) or type(error).__name__
            raise ConnectionError(f"{caller}: cannot reach the Dask scheduler at {scheduler!r} (waited "
                                  f"{CONNECT_TIMEOUT:g} s): {reason}") from None
    else:
        client = scheduler
    try:
        # The data every run shares goes to each worker once, not with every run.
        yield ({"backend": "dask", "client": client, "scatter": [shared],
                "wait_for_workers_timeout": CONNECT_TIMEOUT}, n_jobs or -1)
    finally:
        if own:
            client.close()


@contextmanager
def _ray(scheduler: str | None, n_jobs: int | None, *, caller: str) -> Iterator[tuple[dict, int]]:
    ray = _import("ray", "ray", caller=caller)
    from ray.util.joblib import register_ray

    register_ray()
    own = not ray.is_initialized()
    if own:
        try:
            ray.init(address=scheduler, log_to_driver=False)
        except (ConnectionError, OSError, RuntimeError, ValueError) as error:
            where = f"at {scheduler!r}" if scheduler else "on this machine"
            raise ConnectionError(f"{caller}: cannot start or reach the Ray cluster {where}: "
                                  f"{' '.join(str(error).split())}") from None
    try:
        yield {"backend": "ray"}, n_jobs or -1
    finally:
        if own:
            ray.shutdown()


@contextmanager
def _backend(backend: str, scheduler: Any, shared: Any, n_jobs: int | None, *,
             caller: str) -> Iterator[tuple[dict, int]]:
    """joblib's ``parallel_config`` arguments and ``n_jobs`` for ``backend``, with its cluster connection open."""
    if backend == "dask":
        with _dask(scheduler, shared, n_jobs, caller=caller) as config:
            yield config
    elif backend == "ray":
        with _ray(scheduler, n_jobs, caller=caller) as config:
            yield config
    elif (n_jobs or 1) > 1:
        # One thread per worker (each run sets it too); workers ignore Ctrl-C from their first instruction on.
        yield {"backend": "loky", "inner_max_num_threads": 1, "initializer": _ignore_sigint}, n_jobs
    else:
        yield {"backend": "sequential"}, 1


@contextmanager
def _sigint_deferred(enabled: bool) -> Iterator[list[int]]:
    """While workers are started: SIGINT blocked (they inherit that) and a Ctrl-C noted in the list it yields.

    A KeyboardInterrupt in the middle of starting a pool could leave a
    half-started worker that nobody stops, and a worker interrupted while it
    imports torch prints a traceback. So during the start the signal is
    blocked in this thread (children start with it blocked, and their
    initialiser ignores it), a Ctrl-C that another thread takes is noted, and
    the caller raises KeyboardInterrupt after the start, when joblib can stop them all.
    """
    noted: list[int] = []
    if not (enabled and threading.current_thread() is threading.main_thread()):
        yield noted
        return
    handler = signal.signal(signal.SIGINT, lambda number, frame: noted.append(number))
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT}) if hasattr(signal, "pthread_sigmask") else None
    try:
        yield noted
    finally:
        if mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a pending Ctrl-C arrives now, and is noted
        signal.signal(signal.SIGINT, handler)


def _progress(total: int, enabled: bool, desc: str):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - the lab extra brings it
        return None
    return tqdm(total=total, desc=desc, unit="run", file=sys.stderr, dynamic_ncols=True)


def run_jobs(fn: Callable[[Any, Any], Any], jobs: Sequence[Any], *, shared: Any = None, n_jobs: int | None = None,
             backend: str = "local", scheduler: Any = None, progress: bool = False,
             describe: Callable[[Any], str] | None = None, caller: str = "ablate") -> list[Any]:
    """``[fn(shared, job) for job in jobs]``, computed on ``backend``, in the order of ``jobs``.

    Args:
        fn: a module-level function (workers import it) of the shared data and one job.
        jobs: picklable jobs, one per run.
        shared: what every run reads (the data set): sent to each worker once
            on a cluster (Dask scatters it), memory-mapped by joblib locally.
        n_jobs: runs at a time: local processes (1 or None: one after the
            other, in this process), or a cap on a cluster (None: all its workers).
        backend: ``"local"`` (joblib's loky processes), ``"dask"`` or ``"ray"``.
        scheduler: the cluster's address (``tcp://host:8786`` for Dask), or a
            ``distributed.Client``; None for Dask uses this process's client.
        progress: a tqdm bar on stderr that moves as each result arrives.
        describe: the text shown beside the bar for a finished job.

    Raises:
        ImportError: the backend's package is missing (one line naming the extra).
        ConnectionError: the scheduler cannot be reached.
        KeyboardInterrupt: on Ctrl-C, after every local worker was killed
            and the cluster's pending runs were cancelled (a Dask or Ray run
            already in flight finishes on its worker; its result is dropped).
        Whatever ``fn`` raises, from the first run that fails; the others are stopped.
    """
    import joblib

    check_backend(backend, scheduler, n_jobs, caller=caller)
    items = list(jobs)
    results: list[Any] = [None] * len(items)
    bar = None
    try:
        with _backend(backend, scheduler, shared, n_jobs, caller=caller) as (config, workers):
            bar = _progress(len(items), progress, caller)  # once connected: a failed connection draws no bar
            with joblib.parallel_config(**config):
                parallel = joblib.Parallel(n_jobs=workers, return_as="generator_unordered", pre_dispatch="all",
                                           batch_size=1)
                with _sigint_deferred(backend == "local" and workers > 1) as noted:
                    outputs = parallel(joblib.delayed(_call)(fn, shared, i, job) for i, job in enumerate(items))
                try:
                    if noted:
                        raise KeyboardInterrupt
                    for position, value in outputs:
                        results[position] = value
                        if bar is not None:
                            if describe is not None:
                                bar.set_postfix_str(describe(items[position])[:40], refresh=False)
                            bar.update()
                finally:
                    with warnings.catch_warnings():  # joblib warns that the dropped runs are lost: they are meant to be
                        warnings.simplefilter("ignore")
                        outputs.close()  # after an error: joblib stops the workers and drops the pending runs
    except Exception as error:
        if bar is not None:
            bar.leave = False  # an interrupted or failed grid leaves no half-drawn bar behind
        if type(error).__name__ == "TerminatedWorkerError" and "SIGINT" in str(error):
            # a Ctrl-C that reached a worker before its initialiser ignored it: that is an interruption
            raise KeyboardInterrupt from None
        if isinstance(error, TimeoutError) and "no worker" in str(error):
            raise ConnectionError(f"{caller}: the {backend} cluster has no worker (waited {CONNECT_TIMEOUT:g} s); "
                                  "start workers for its scheduler") from None
        raise
    except BaseException:
        if bar is not None:
            bar.leave = False  # an interrupted or failed grid leaves no half-drawn bar behind
        raise
    finally:
        if bar is not None:
            bar.close()
    return results
