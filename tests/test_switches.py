"""set_checks and set_fused: plain calls, context managers, and one setting per thread.

The rule under test (README, "Checks"): a call made in the main thread sets the
process-wide default, which every thread that has not set its own value reads;
a call made in any other thread sets that thread's own value only; the ``with``
form restores the previous setting when the block ends, also when it raises.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import torch

import losslab

TIMEOUT = 30  # seconds a thread waits at a barrier before the test fails instead of hanging


@pytest.fixture(autouse=True)
def _auto_fused():
    """Every test starts and ends in set_fused("auto") (conftest does the same for set_checks)."""
    losslab.set_fused("auto")
    yield
    losslab.set_fused("auto")


def _bad_index_raises() -> bool:
    """Whether the value check of a CPU class index out of range runs (one-vs-rest BCE, index 7 for 3 classes:
    unchecked, it is simply negative for every class)."""
    try:
        value = losslab.binary_cross_entropy(torch.zeros(4, 3), torch.tensor([0, 7, 1, 3]))
    except ValueError as error:
        assert "binary_cross_entropy: target class indices must be in [0, 4)" in str(error)
        return True
    assert torch.isfinite(value)
    return False


def _path() -> str:
    """Which implementation a focal loss takes now: "fused" (the fused path's autograd Function) or "composite"."""
    x = torch.randn(8, 5, requires_grad=True)
    loss = losslab.sigmoid_focal_loss(x, torch.randint(0, 2, (8, 5)).float())
    return "fused" if type(loss.grad_fn).__name__ == "_FusedLossBackward" else "composite"


def _start_threads(*targets: Callable[[], None]) -> Callable[[], None]:
    """Start each target in its own thread; returns the function that joins them and re-raises the first failure."""
    errors: list[BaseException] = []

    def wrap(target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as error:  # noqa: BLE001 (handed to the main thread)
                errors.append(error)
        return run

    threads = [threading.Thread(target=wrap(t)) for t in targets]
    for t in threads:
        t.start()

    def join() -> None:
        for t in threads:
            t.join(TIMEOUT * 2)
            assert not t.is_alive(), "a thread did not finish"
        if errors:
            raise errors[0]

    return join


def _run_threads(*targets: Callable[[], None]) -> None:
    _start_threads(*targets)()


# ----------------------------------------------------------------------------
# what the losses use under each setting (the premise of the thread tests below)


def test_the_observables_follow_the_settings():
    assert _bad_index_raises()  # default: CPU values are checked
    losslab.set_checks(False)
    assert not _bad_index_raises()
    losslab.set_checks(True)
    assert _bad_index_raises()
    losslab.set_fused("eager")
    assert _path() == "fused"
    losslab.set_fused("off")
    assert _path() == "composite"


# ----------------------------------------------------------------------------
# plain calls: as before


def test_set_fused_plain_call_returns_the_previous_mode_as_a_str():
    previous = losslab.set_fused("eager")
    assert previous == "auto" and isinstance(previous, str) and repr(previous) == "'auto'"
    assert losslab.get_fused() == "eager"
    assert losslab.set_fused("off") == "eager"
    assert losslab.set_fused(previous) == "off"  # what a call returned restores
    assert losslab.get_fused() == "auto" and type(losslab.get_fused()) is str


def test_set_checks_plain_call_returns_the_previous_setting():
    previous = losslab.set_checks(False)
    assert previous == None and previous.value is None and not previous
    assert repr(previous) == "None"
    assert losslab.get_checks() is False
    assert losslab.set_checks(True).value is False
    again = losslab.set_checks(None)
    assert again == True and again.value is True and again and hash(again) == hash(True)
    assert again != False and again != None
    losslab.set_checks(again)  # what a call returned restores
    assert losslab.get_checks() is True
    losslab.set_checks(previous)
    assert losslab.get_checks() is None


def test_a_rejected_value_changes_nothing_also_in_a_block():
    with losslab.set_checks(False), losslab.set_fused("off"):
        with pytest.raises(TypeError, match=r"set_checks: enabled must be True, False or None; got 1"):
            losslab.set_checks(1)
        with pytest.raises(ValueError, match=r"set_fused: mode must be one of"):
            losslab.set_fused("fast")
        assert losslab.get_checks() is False and losslab.get_fused() == "off"
    assert losslab.get_checks() is None and losslab.get_fused() == "auto"


# ----------------------------------------------------------------------------
# context managers


def test_with_sets_for_the_block_and_restores():
    with losslab.set_checks(False) as previous_checks, losslab.set_fused("eager") as previous_mode:
        assert previous_checks == None and previous_mode == "auto"
        assert losslab.get_checks() is False and losslab.get_fused() == "eager"
        assert not _bad_index_raises()
        assert _path() == "fused"
    assert losslab.get_checks() is None and losslab.get_fused() == "auto"
    assert _bad_index_raises()


def test_with_restores_when_the_block_raises():
    with pytest.raises(KeyError), losslab.set_checks(True), losslab.set_fused("off"):
        assert losslab.get_checks() is True and losslab.get_fused() == "off"
        raise KeyError("boom")
    assert losslab.get_checks() is None and losslab.get_fused() == "auto"


def test_nested_blocks_restore_in_order():
    with losslab.set_fused("eager"):
        with losslab.set_fused("off"):
            assert losslab.get_fused() == "off" and _path() == "composite"
            with losslab.set_fused("compiled"):
                assert losslab.get_fused() == "compiled"
            assert losslab.get_fused() == "off"
        assert losslab.get_fused() == "eager" and _path() == "fused"
    assert losslab.get_fused() == "auto"
    with losslab.set_checks(False):
        with losslab.set_checks(True):
            assert _bad_index_raises()
        assert not _bad_index_raises()
    assert losslab.get_checks() is None


def test_a_plain_call_inside_a_block_lasts_until_the_block_ends():
    with losslab.set_checks(True):
        losslab.set_checks(False)
        assert losslab.get_checks() is False
    assert losslab.get_checks() is None


def test_a_block_inside_a_plain_setting_returns_to_it():
    losslab.set_fused("off")
    with losslab.set_fused("eager"):
        assert losslab.get_fused() == "eager"
    assert losslab.get_fused() == "off"


def test_compile_traces_inside_a_block():
    """The settings are read in Python; tracing reads none of them (one graph, like the plain calls)."""
    x, t = torch.randn(4, 3), torch.tensor([0, 1, 2, 1])
    expected = losslab.cross_entropy(x, t)
    with losslab.set_checks(True), losslab.set_fused("eager"):
        got = torch.compile(lambda x, t: losslab.cross_entropy(x, t), fullgraph=True, backend="eager")(x, t)
        assert _bad_index_raises()  # eager calls still check
    torch.testing.assert_close(got, expected)


# ----------------------------------------------------------------------------
# threads


def test_two_threads_hold_different_settings_at_once():
    inside = threading.Barrier(3, timeout=TIMEOUT)  # both workers in their blocks, and the main thread
    done = threading.Barrier(3, timeout=TIMEOUT)
    seen: dict[str, tuple] = {}

    def worker(name: str, checks: bool, mode: str) -> None:
        with losslab.set_checks(checks), losslab.set_fused(mode):
            inside.wait()  # from here on both threads are inside their blocks
            seen[name] = (losslab.get_checks(), losslab.get_fused(), _bad_index_raises(), _path())
            inside.wait()
            # once more after the other thread has run its losses: still its own setting
            assert (losslab.get_checks(), losslab.get_fused()) == (checks, mode)
            done.wait()
        assert losslab.get_checks() is None and losslab.get_fused() == "auto"  # back to the default

    def main_side() -> None:
        inside.wait()
        inside.wait()
        # meanwhile the default, which this thread reads, has not moved
        assert losslab.get_checks() is None and losslab.get_fused() == "auto" and _bad_index_raises()
        done.wait()

    _run_threads(lambda: worker("unchecked", False, "eager"), lambda: worker("checked", True, "off"), main_side)
    assert seen["unchecked"] == (False, "eager", False, "fused")
    assert seen["checked"] == (True, "off", True, "composite")
    assert losslab.get_checks() is None and losslab.get_fused() == "auto"


def test_a_thread_that_never_set_anything_reads_the_default():
    losslab.set_checks(False)  # plain calls in the main thread: the process-wide default
    losslab.set_fused("off")
    seen = []
    _run_threads(lambda: seen.append((losslab.get_checks(), losslab.get_fused(), _bad_index_raises(), _path())))
    assert seen == [(False, "off", False, "composite")]


def test_the_default_moves_for_threads_without_their_own_value_only():
    """A thread without a value of its own follows the default as the main thread changes it; one with its own
    value keeps it."""
    ready = threading.Barrier(3, timeout=TIMEOUT)
    changed = threading.Barrier(3, timeout=TIMEOUT)
    seen: dict[str, tuple] = {}

    def follower() -> None:
        ready.wait()
        changed.wait()
        seen["follower"] = (losslab.get_checks(), losslab.get_fused(), _bad_index_raises(), _path())

    def own() -> None:
        losslab.set_checks(True)  # plain calls in a worker: this thread's own value
        losslab.set_fused("eager")
        ready.wait()
        changed.wait()
        seen["own"] = (losslab.get_checks(), losslab.get_fused(), _bad_index_raises(), _path())

    join = _start_threads(follower, own)
    try:
        ready.wait()
        losslab.set_checks(False)  # plain calls in the main thread while the workers run
        losslab.set_fused("off")
        changed.wait()
    finally:
        join()
    assert seen["follower"] == (False, "off", False, "composite")
    assert seen["own"] == (True, "eager", True, "fused")


def test_a_worker_plain_call_stays_in_that_worker():
    def worker() -> None:
        assert losslab.set_checks(False).value is None  # returns the value the thread read: the default
        assert losslab.set_fused("off") == "auto"
        assert losslab.get_checks() is False and not _bad_index_raises() and _path() == "composite"

    _run_threads(worker)
    assert losslab.get_checks() is None and losslab.get_fused() == "auto" and _bad_index_raises()
    # and a worker's block restores the worker's own previous value, not the default
    def nested_worker() -> None:
        losslab.set_fused("eager")
        with losslab.set_fused("off"):
            assert losslab.get_fused() == "off"
        assert losslab.get_fused() == "eager"
        losslab.set_fused(losslab.get_fused())

    _run_threads(nested_worker)
    assert losslab.get_fused() == "auto"


def test_a_main_thread_block_is_the_default_while_it_lasts():
    """Documented rule: the main thread's calls, plain or ``with``, set the default; threads with their own
    value are unaffected."""
    started = threading.Event()
    seen: dict[str, tuple] = {}

    def follower() -> None:
        seen["follower"] = (losslab.get_checks(), losslab.get_fused())

    def own() -> None:
        with losslab.set_checks(None), losslab.set_fused("auto"):
            started.set()
            seen["own"] = (losslab.get_checks(), losslab.get_fused())

    with losslab.set_checks(True), losslab.set_fused("eager"):
        _run_threads(follower, own)
    assert started.is_set()
    assert seen == {"follower": (True, "eager"), "own": (None, "auto")}
    assert losslab.get_checks() is None and losslab.get_fused() == "auto"
