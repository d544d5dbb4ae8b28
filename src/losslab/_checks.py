"""Argument validation shared by every loss.

Every message names the function, the argument, what was expected and what
was received, e.g. ``sigmoid_focal_loss: target must have shape (8, 4) ...;
got (8, 3)``. Metadata (types, shapes, dtypes, devices, enum values,
hyperparameter ranges) is always checked. Checks that need a tensor's values
(an out-of-range class index, a probability outside [0, 1]) run only where
they cost no device synchronisation: on CPU tensors, or everywhere after
``set_checks(True)``. They never run while torch.compile traces.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:  # typing.Self is Python 3.11+
    pass

from ._switches import get_checks, set_checks, values_checked  # noqa: F401  (re-exported: losslab.set_checks)

REDUCTIONS = ("none", "mean", "sum")

def _outline(value: Any) -> str | None:
    """"a list of shape (3, 2)" for a list, tuple or NumPy array (the shape from the first items); else None."""
    if isinstance(value, np.ndarray):
        return f"a NumPy array of shape {tuple(value.shape)} and dtype {value.dtype}"
    if isinstance(value, (list, tuple)):
        shape, item = [], value
        while isinstance(item, (list, tuple)):
            shape.append(len(item))
            if not item:
                break
            item = item[0]
        return f"a {type(value).__name__} of shape {tuple(shape)}"
    return None


def describe(value: Any) -> str:
    """Short description of a received value for error messages (never longer than about 100 characters).

    Short lists are shown as they are; a long list or tuple and any NumPy array
    are named by type and shape, so a million numbers do not end up in a message.
    """
    if isinstance(value, Tensor):
        return f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    outline = _outline(value)
    if isinstance(value, np.ndarray):
        return outline  # type: ignore[return-value]
    text = repr(value)
    if len(text) > 80:
        return outline or f"a {type(value).__name__} ({text[:60]}...)"
    return f"{text} ({type(value).__name__})"


def describe_data(value: Any) -> str:
    """A received input or target for error messages: type and shape, never its values."""
    return describe(value) if isinstance(value, Tensor) else (_outline(value) or describe(value))


def shape_str(shape: Sequence[int]) -> str:
    return str(tuple(int(s) for s in shape))


def check_reduction(fn: str, reduction: Any) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"{fn}: reduction must be one of 'none', 'mean', 'sum'; got {reduction!r}")


def check_bool(fn: str, name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{fn}: {name} must be a bool; got {describe(value)}")


def is_number(value: Any) -> bool:
    """A real number (Python or NumPy), not a bool. A float or an int answers before the ABC's isinstance (about
    0.5 us a call, several a loss)."""
    kind = type(value)
    if kind is float or kind is int:
        return True
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


TENSOR_LIKE = "a tensor, a NumPy array, a number or a flat sequence of numbers"


def _sequence(value: Any) -> bool:
    """A list or tuple-like sequence; str and bytes are not sequences of numbers here (b"abc" is not [97, 98, 99])."""
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes, bytearray))


def to_tensor(fn: str, name: str, value: Any, input: Tensor, dtype: torch.dtype, expected: str = TENSOR_LIKE) -> Tensor:
    """A tensor, NumPy array, number or sequence of numbers as a tensor on the input's device.

    Tensors keep their dtype (the caller casts); everything else becomes ``dtype``.
    The module twins call this at construction (on a CPU stand-in input), so a
    bad hyperparameter fails there with the same message as in the functional.
    """
    if isinstance(value, Tensor):
        if value.device != input.device:
            raise ValueError(f"{fn}: {name} must be on the input's device ({input.device}); "
                             f"got a tensor on {value.device}")
        if value.dtype.is_complex or value.dtype == torch.bool:
            raise TypeError(f"{fn}: {name} must be a real tensor; got dtype {value.dtype}")
        return value
    if isinstance(value, np.ndarray):
        # torch.compile shows NumPy arrays as tensors whose NumPy dtype it cannot read: check it eagerly only
        if not torch.compiler.is_compiling() and value.dtype.kind not in "iuf":
            raise TypeError(f"{fn}: {name} must be {expected}; got {describe(value)}")
        return torch.as_tensor(value).to(device=input.device, dtype=dtype)
    if is_number(value):
        return torch.tensor(float(value), dtype=dtype, device=input.device)
    if _sequence(value) and all(is_number(v) for v in value):
        return torch.tensor([float(v) for v in value], dtype=dtype, device=input.device)
    raise TypeError(f"{fn}: {name} must be {expected}; got {describe(value)}")


def plain(value: Any) -> Any:
    """NumPy scalars (and 0-d arrays) as Python numbers; everything else as it is.

    Run on every keyword argument before anything else looks at it, so that the
    checks, the computation and torch.compile see Python floats and ints (dynamo
    shows a NumPy scalar as a 0-d array whose dtype it cannot read, which broke
    ``fullgraph=True`` for ``gamma=np.float64(2.0)``). Arrays stay arrays: they
    become tensors on the input's device in :func:`to_tensor`.
    """
    if isinstance(value, np.generic):
        if isinstance(value, np.floating):
            return float(value)
        if isinstance(value, np.integer):
            return int(value)
        return value
    if isinstance(value, np.ndarray) and value.ndim == 0:
        if torch.compiler.is_compiling():
            kind = torch.as_tensor(value).dtype  # the dtype through a tensor, which dynamo can read
            if kind.is_floating_point:
                return float(value)
            if kind != torch.bool and not kind.is_complex:
                return value.tolist()  # dynamo traces tolist() of a NumPy integer, not int()
            return value
        if value.dtype.kind == "f":
            return float(value)
        if value.dtype.kind in "iu":
            return int(value)
    return value


F = TypeVar("F", bound=Callable[..., Any])


def numpy_arguments(function: F) -> F:
    """Decorate a public loss: NumPy scalars among its keyword arguments become Python numbers (:func:`plain`).

    The signature, name and docstring are the function's own (``functools.wraps``).
    """

    @functools.wraps(function)
    def loss(*args: Any, **kwargs: Any) -> Any:
        for name, value in kwargs.items():
            if isinstance(value, (np.generic, np.ndarray)):
                kwargs[name] = plain(value)
        return function(*args, **kwargs)

    return loss  # type: ignore[return-value]


def check_number(fn: str, name: str, value: Any, *, low: float | None = None,
                 high: float | None = None, low_open: bool = False, high_open: bool = False) -> float:
    """A finite real number within [low, high] (ends open where asked); returns it as float."""
    if not is_number(value):
        raise TypeError(f"{fn}: {name} must be a real number; got {describe(value)}")
    value = float(value)
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    finite = -math.inf < value < math.inf  # comparisons, not math.isfinite: they trace under torch.compile
    if not finite or too_low or too_high:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        interval = f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"
        raise ValueError(f"{fn}: {name} must be a finite number in {interval}; got {value!r}")
    return value


def check_gamma(fn: str, gamma: Any) -> float:
    return check_number(fn, "gamma", gamma, low=0.0)


def check_label_smoothing(fn: str, label_smoothing: Any) -> float:
    return check_number(fn, "label_smoothing", label_smoothing, low=0.0, high=1.0)


def check_ignore_index(fn: str, ignore_index: Any) -> None:
    if ignore_index is not None and (not isinstance(ignore_index, int) or isinstance(ignore_index, bool)):
        raise TypeError(f"{fn}: ignore_index must be an int or None; got {describe(ignore_index)}")


def check_common(fn: str, **kwargs: Any) -> None:
    """Validate the hyperparameters whose meaning is the same in every loss.

    Called by each functional and by the module twins at construction, so that
    a bad hyperparameter fails before the first batch.
    """
    if "reduction" in kwargs:
        check_reduction(fn, kwargs["reduction"])
    if "from_logits" in kwargs:
        check_bool(fn, "from_logits", kwargs["from_logits"])
    if "gamma" in kwargs:
        check_gamma(fn, kwargs["gamma"])
    if "label_smoothing" in kwargs:
        check_label_smoothing(fn, kwargs["label_smoothing"])
    if "ignore_index" in kwargs:
        check_ignore_index(fn, kwargs["ignore_index"])
    if "avg_factor" in kwargs:
        check_avg_factor(fn, kwargs["avg_factor"])
    if "dist_sync" in kwargs:
        check_bool(fn, "dist_sync", kwargs["dist_sync"])


def check_input(fn: str, input: Any, *, min_ndim: int = 0, what: str = "", name: str = "input") -> None:
    """``input`` is a floating-point tensor with at least ``min_ndim`` dimensions (``name``: its argument name)."""
    if not isinstance(input, Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor; got {describe_data(input)}")
    if not input.dtype.is_floating_point:
        raise TypeError(
            f"{fn}: {name} must be a floating-point tensor (float16, bfloat16, float32 or float64); "
            f"got dtype {input.dtype}"
        )
    if input.ndim < min_ndim:
        raise ValueError(f"{fn}: {name} must have shape {what}; got {shape_str(input.shape)}")


def check_target_tensor(fn: str, input: Tensor, target: Any, *, name: str = "target",
                        input_name: str = "input") -> None:
    if not isinstance(target, Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor; got {describe_data(target)}")
    if target.device != input.device:
        raise ValueError(
            f"{fn}: {name} must be on the {input_name}'s device ({input.device}); got a tensor on {target.device}"
        )
    if target.dtype.is_complex:
        raise TypeError(f"{fn}: {name} must be a real tensor; got dtype {target.dtype}")


def check_not_bool(fn: str, target: Tensor, *, name: str = "target", holds: str = "values") -> None:
    """A target of numbers (boxes, regression targets, distances): a bool tensor is a mistake, not 0 and 1."""
    if target.dtype == torch.bool:
        raise TypeError(f"{fn}: {name} must hold {holds} (a floating-point or integer tensor); got dtype torch.bool")


def compute_dtype(input: Tensor) -> torch.dtype:
    """float32 for half-precision inputs, the input's own dtype otherwise."""
    return torch.float32 if input.dtype in (torch.float16, torch.bfloat16) else input.dtype


def check_class_indices(fn: str, target: Tensor, num_classes: int, ignore_index: int | None,
                        *, background: bool = False) -> bool:
    """Values check: indices in [0, C) (or [0, C] with a background index C), or ignore_index.

    Returns True when the check proved that no position holds ``ignore_index`` (every value is a class), so
    the caller needs no kept-mask; False when some may (or when values are not checked).
    """
    if not values_checked(target) or target.numel() == 0:
        return False
    high = num_classes + 1 if background else num_classes
    low_value, high_value = (int(v) for v in torch.aminmax(target.detach()))  # one pass
    if low_value >= 0 and high_value < high:
        return ignore_index is None or not low_value <= ignore_index <= high_value
    if ignore_index is not None:  # out of range: perhaps only the ignored positions
        kept = torch.where(target == ignore_index, 0, target.detach())
        low_value, high_value = (int(v) for v in torch.aminmax(kept))
        if low_value >= 0 and high_value < high:
            return False
    bad = (target < 0) | (target >= high)
    if ignore_index is not None:
        bad &= target != ignore_index
    example = int(target[bad].flatten()[0])
    allowed = f"[0, {high})" + (f" (index {num_classes} is background)" if background else "")
    if ignore_index is not None:
        allowed += f" or ignore_index={ignore_index}"
    raise ValueError(f"{fn}: target class indices must be in {allowed}; got {example}")


def check_unit_interval(fn: str, name: str, tensor: Tensor, mask: Tensor | None = None) -> None:
    """Values check: every (unmasked) element lies in [0, 1]."""
    if not values_checked(tensor) or tensor.numel() == 0:
        return
    tensor = tensor.detach()  # reading a value off a tensor that requires grad warns
    kept = tensor if mask is None else torch.where(mask, tensor, 0.5)
    low, high = torch.aminmax(kept)  # one pass; NaN propagates and fails both comparisons
    if not (float(low) >= 0 and float(high) <= 1):
        bad = ~((tensor >= 0) & (tensor <= 1))
        if mask is not None:
            bad &= mask
        example = float(tensor[bad].flatten()[0])
        raise ValueError(f"{fn}: {name} must lie in [0, 1]; got a value of {example!r}")


def class_vector(fn: str, name: str, value: Any, num_classes: int, input: Tensor, dtype: torch.dtype) -> Tensor:
    """A per-class vector (tensor, array or sequence of length C) on the input's device, in ``dtype``.

    Its values must be finite and non-negative (checked where values are checked).
    """
    vec = to_tensor(fn, name, value, input, dtype)
    if vec.shape != (num_classes,):
        raise ValueError(
            f"{fn}: {name} must have shape ({num_classes},), one value per class of the input; "
            f"got {shape_str(vec.shape)}"
        )
    vec = vec.to(dtype)
    check_non_negative(fn, name, vec)
    return vec


def check_non_negative(fn: str, name: str, value: Tensor) -> None:
    """Values check: a weight tensor is finite and non-negative."""
    value = value.detach()
    if values_checked(value) and not bool(((value >= 0) & torch.isfinite(value)).all()):
        shown = value.tolist() if value.numel() <= 16 else f"a tensor of shape {shape_str(value.shape)}"
        raise ValueError(f"{fn}: {name} must be finite and non-negative; got {shown}")


def check_alpha(fn: str, alpha: Any, *, expected: str, per_class: bool, scalar: bool = True,
                negative_disables: bool = False) -> Any:
    """Validate alpha's type, and a scalar alpha's range [0, 1]; returns float, None or the per-class value.

    ``negative_disables``: a negative scalar means "no alpha" (torchvision's -1).
    Per-class values are checked by :func:`class_vector` once C is known.
    """
    if alpha is None:
        return None
    if is_number(alpha) and scalar:
        if negative_disables and alpha < 0:
            return None
        return check_number(fn, "alpha", alpha, low=0.0, high=1.0)
    if per_class and (isinstance(alpha, (Tensor, np.ndarray)) or _sequence(alpha)):
        return alpha
    raise TypeError(f"{fn}: alpha must be {expected}; got {describe(alpha)}")


def along_class_dim(fn: str, name: str, value: Any, input: Tensor, dtype: torch.dtype) -> Tensor:
    """A tensor that multiplies the loss elementwise, as ``weight`` and ``pos_weight`` of the sigmoid losses.

    A 1-D tensor of length C = input.shape[1] applies along the class dimension
    (dim 1) of an (N, C, d1, ...) input; any other shape must broadcast to the
    input's shape without changing it.
    """
    value = to_tensor(fn, name, value, input, dtype)
    if input.ndim >= 2 and value.ndim == 1 and value.shape[0] == input.shape[1]:
        value = value.reshape((-1,) + (1,) * (input.ndim - 2))
    try:
        fits = torch.broadcast_shapes(value.shape, input.shape) == input.shape
    except RuntimeError:
        fits = False
    if not fits:
        classes = f" or ({input.shape[1]},) along the class dimension" if input.ndim >= 2 else ""
        raise ValueError(
            f"{fn}: {name} must broadcast to the input's shape {shape_str(input.shape)}{classes}; "
            f"got {shape_str(value.shape)}"
        )
    value = value.to(dtype)
    check_non_negative(fn, name, value)
    return value


def check_avg_factor(fn: str, avg_factor: Any, input: Tensor | None = None) -> Any:
    """``avg_factor``: None, a finite number >= 0, or a one-element real tensor (on the input's device).

    A tensor's value is checked where values are checked (see :func:`set_checks`).
    """
    if avg_factor is None:
        return None
    if is_number(avg_factor):
        return check_number(fn, "avg_factor", avg_factor, low=0.0)
    if isinstance(avg_factor, Tensor) and avg_factor.dtype == torch.bool:
        raise TypeError(f"{fn}: avg_factor must be None, a number >= 0 or a one-element real tensor; "
                        f"got dtype torch.bool")
    if isinstance(avg_factor, Tensor) and avg_factor.numel() == 1 and not avg_factor.dtype.is_complex:
        if input is not None and avg_factor.device != input.device:
            raise ValueError(f"{fn}: avg_factor must be on the input's device ({input.device}); "
                             f"got a tensor on {avg_factor.device}")
        if values_checked(avg_factor) and not bool(((avg_factor >= 0) & torch.isfinite(avg_factor)).all()):
            raise ValueError(f"{fn}: avg_factor must be a finite number in [0, inf); "
                             f"got {avg_factor.detach().item()!r}")
        return avg_factor
    raise TypeError(f"{fn}: avg_factor must be None, a number >= 0 or a one-element tensor; "
                    f"got {describe(avg_factor)}")


def broadcast_weight(fn: str, name: str, value: Any, shape: Sequence[int], input: Tensor, dtype: torch.dtype,
                     what: str) -> Tensor:
    """A non-negative weight that broadcasts to ``shape`` (``what`` names that shape in errors)."""
    value = to_tensor(fn, name, value, input, dtype)
    try:
        fits = torch.broadcast_shapes(value.shape, tuple(shape)) == tuple(shape)
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(f"{fn}: {name} must broadcast to {what} {shape_str(shape)}; got {shape_str(value.shape)}")
    value = value.to(dtype)
    check_non_negative(fn, name, value)
    return value


def check_same_shape(fn: str, input: Tensor, target: Tensor, *, input_name: str = "input",
                     what: str = "") -> None:
    """``target`` has exactly the input's shape (no broadcasting)."""
    if target.shape != input.shape:
        raise ValueError(f"{fn}: target must have the {input_name}'s shape {shape_str(input.shape)}{what}; "
                         f"got {shape_str(target.shape)}")
