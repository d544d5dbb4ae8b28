"""The switches :func:`set_checks` and :func:`set_fused`: a process-wide default and one setting per thread.

Both return the previous setting and work as context managers
(``with losslab.set_fused("off"): ...``), restoring it when the block ends,
also when it raises. :mod:`losslab._checks` and :mod:`losslab._fused` read
them (re-exported there).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:  # typing.Self is Python 3.11+
    from typing_extensions import Self

MODES = ("auto", "compiled", "eager", "off")  # the modes of set_fused

# The switches (set_checks, set_fused): a process-wide default, set by calls made in the main
# thread, and a value of its own for each other thread that has called the switch (a threading.local attribute;
# absent until then). Readers take the thread's own value, else the default: one dict lookup in the thread's
# __dict__, no lock (a getattr that misses raises and catches AttributeError inside: 0.6 us against 0.07). A `with`
# block restores what its call set; the call cannot know whether a `with` follows it, so a block in the main
# thread sets the default too (anything else would let other threads see the value between call and block).
_default: dict[str, Any] = {"checks": None, "fused": "auto"}  # the process-wide defaults
_own = threading.local()  # .checks, .fused: the calling thread's own settings, where it has them
_UNSET = object()


def in_main_thread() -> bool:
    """Whether a switch set now sets the process-wide default (see :func:`set_checks`)."""
    return threading.current_thread() is threading.main_thread()


class Restores:
    """What :func:`set_checks` and ``set_fused`` return: the previous setting; as a context manager, it puts
    that setting back when the block ends (also when the block raises)."""

    _undo: Callable[[], None] | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        undo, self._undo = self._undo, None
        if undo is not None:
            undo()


def _set(key: str, value: Any) -> Callable[[], None]:
    """Set switch ``key``: the default from the main thread, the thread's own value elsewhere; returns the undo."""
    if in_main_thread():
        previous_default = _default[key]
        _default[key] = value
        return lambda: _default.__setitem__(key, previous_default)
    previous = _own.__dict__.get(key, _UNSET)
    setattr(_own, key, value)

    def undo() -> None:
        if previous is _UNSET:
            _own.__dict__.pop(key, None)
        else:
            setattr(_own, key, previous)

    return undo


class PreviousChecks(Restores):
    """The value-check setting before a :func:`set_checks` call (``.value``), ``==`` to it and as true or false."""

    def __init__(self, value: bool | None, undo: Callable[[], None]) -> None:
        self.value, self._undo = value, undo

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PreviousChecks):
            other = other.value
        return other is self.value if other is None or self.value is None else self.value == other

    def __hash__(self) -> int:
        return hash(self.value)

    def __bool__(self) -> bool:
        return bool(self.value)

    def __repr__(self) -> str:
        return repr(self.value)


def set_checks(enabled: bool | None | PreviousChecks) -> PreviousChecks:
    """Choose when checks that read tensor values run; usable as a context manager.

    A call made in the main thread sets the process-wide default, which every
    thread that has not set its own value reads; a call made in any other
    thread sets that thread's own value only. Used as ``with
    losslab.set_checks(False): ...``, the call also restores the previous
    setting when the block ends, also when it raises.

    Args:
        enabled: ``None`` (the default) checks values on CPU tensors only, so
            that CUDA code never waits for the device; ``True`` checks every
            tensor (a device sync per check on CUDA); ``False`` checks none.
            What an earlier call returned is taken too (it restores).

    Returns:
        The previous setting (as the calling thread read it): it compares equal
        to ``True``, ``False`` or ``None`` (``==``, not ``is``; its ``.value``
        is the plain value, as :func:`get_checks` returns), and restores it as a
        context manager or when passed back to ``set_checks``.

    Raises:
        TypeError: ``enabled`` is not True, False or None (the setting is unchanged).

    Example:
        >>> import losslab
        >>> with losslab.set_checks(True):  # every value check, on any device, in this block
        ...     pass
        >>> previous = losslab.set_checks(False)
        >>> _ = losslab.set_checks(previous)
    """
    if isinstance(enabled, PreviousChecks):  # passed back to restore
        enabled = enabled.value
    if enabled is not None and not isinstance(enabled, bool):
        raise TypeError(f"set_checks: enabled must be True, False or None; got {enabled!r}")
    current = get_checks()
    return PreviousChecks(current, _set("checks", enabled))


def get_checks() -> bool | None:
    """The value-check setting the calling thread uses now (see :func:`set_checks`)."""
    return _own.__dict__.get("checks", _default["checks"])


def auto_and_checked() -> bool:
    """Whether the calling thread runs set_fused "auto" with value checks on for CPU tensors (the setting None or
    True): what a plain call (:mod:`losslab._forms`) needs of the switches, read from one thread-local dict."""
    own = _own.__dict__
    return own.get("fused", _default["fused"]) == "auto" and own.get("checks", _default["checks"]) is not False


def values_checked(tensor: Tensor) -> bool:
    """Whether a check that reads ``tensor``'s values should run now."""
    if torch.compiler.is_compiling():
        return False
    enabled = _own.__dict__.get("checks", _default["checks"])
    if enabled is None:
        return tensor.is_cpu
    return enabled





class PreviousMode(Restores, str):
    """The mode before a :func:`set_fused` call: a str equal to it, and a context manager that restores it."""

    def __new__(cls, mode: str, undo: Callable[[], None]) -> Self:
        self = super().__new__(cls, mode)
        self._undo = undo
        return self


def set_fused(mode: str) -> PreviousMode:
    """Choose the implementation of the fused losses; returns the previous mode; usable as a context manager.

    A call made in the main thread sets the process-wide default, which every
    thread that has not set its own mode reads; a call made in any other
    thread sets that thread's own mode only. Used as ``with
    losslab.set_fused("off"): ...``, the call also restores the previous mode
    when the block ends, also when it raises.

    Args:
        mode: "auto" (default), "compiled", "eager" or "off" (the composite
            implementation everywhere; use it for ``create_graph=True``).

    Returns:
        The previous mode (as the calling thread read it), a ``str``; as a
        context manager it restores that mode at the end of the block.

    Raises:
        ValueError: ``mode`` is not one of the four (the mode is unchanged).

    Example:
        >>> import losslab
        >>> with losslab.set_fused("off"):  # the composite implementation in this block
        ...     pass
        >>> previous = losslab.set_fused("eager")
        >>> _ = losslab.set_fused(previous)
    """
    if mode not in MODES:
        raise ValueError(f"set_fused: mode must be one of 'auto', 'compiled', 'eager', 'off'; got {mode!r}")
    mode = str(mode)  # a PreviousMode passed back is stored as the plain str
    current = get_fused()
    return PreviousMode(current, _set("fused", mode))


def get_fused() -> str:
    """The mode of :func:`set_fused` that the calling thread uses now."""
    return _own.__dict__.get("fused", _default["fused"])
