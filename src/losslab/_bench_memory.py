"""Peak memory of a call from torch's profiler, for `losslab bench` and its lm-head group.

Every allocation and free of torch's CPU allocator that the profiler recorded, in time order; the profiler's
start / stop lines (written by C++ to file descriptor 2) go to devnull meanwhile. A module of its own so that
:mod:`losslab.bench` and :mod:`losslab._bench_lmhead` both use it without importing each other.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable


@contextlib.contextmanager
def quiet_stderr():
    """Send what C++ code writes to file descriptor 2 (the profiler's start / stop lines) to devnull meanwhile."""
    fd = 2  # C++ writes there, whatever sys.stderr is
    try:
        sys.stderr.flush()
        saved = os.dup(fd)
    except OSError:  # no file descriptor 2: nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)


def peak_allocated(call: Callable[[], None]) -> int:
    """The most bytes torch's CPU allocator held at once during ``call()`` beyond what it held before, from
    every allocation and free the profiler recorded, in time order."""
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    with quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        call()
    changes = []
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        event = stack.pop()
        stack.extend(event.children)
        if event.tag == _EventType.Allocation:
            changes.append((event.start_time_ns, event.extra_fields.alloc_size))
    current = peak = 0
    for _, change in sorted(changes):
        current += change
        peak = max(peak, current)
    return peak
