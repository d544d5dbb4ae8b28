"""The base of the nn.Module twins.

A twin is declared in one line, ``class SigmoidFocalLoss(LossModule, function=sigmoid_focal_loss)``:
its constructor takes exactly the functional's keyword-only arguments (with
the same defaults, visible to ``inspect.signature`` and ``help``), validates
the common hyperparameters at once, registers tensor hyperparameters as
buffers (so ``.to(device)`` moves them), and ``forward(input, target)`` is one
call of the functional.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ._checks import check_common


def _is_number_sequence(value: Any) -> bool:
    return (isinstance(value, (list, tuple)) and len(value) > 0
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value))


class LossModule(nn.Module):
    """nn.Module twin of a functional loss: same keyword arguments, forward is one call."""

    function: ClassVar[Callable[..., Tensor]]
    _parameters_of_function: ClassVar[dict[str, inspect.Parameter]]

    def __init_subclass__(cls, function: Callable[..., Tensor] | None = None, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if function is None:
            return
        cls.function = staticmethod(function)
        params = [p for p in inspect.signature(function).parameters.values() if p.kind is p.KEYWORD_ONLY]
        cls._parameters_of_function = {p.name: p for p in params}

        def __init__(self: LossModule, **kwargs: Any) -> None:
            LossModule.__init__(self, **kwargs)

        this = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
        __init__.__signature__ = inspect.Signature([this, *params])  # type: ignore[attr-defined]
        __init__.__doc__ = f"Store the keyword arguments of :func:`losslab.{function.__name__}`."
        __init__.__qualname__ = f"{cls.__qualname__}.__init__"
        cls.__init__ = __init__  # type: ignore[method-assign]
        if not cls.__doc__:
            cls.__doc__ = (f"Module form of :func:`losslab.{function.__name__}`: takes the same keyword "
                           f"arguments; ``forward(input, target)`` calls it.")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        cls = type(self)
        params = cls._parameters_of_function
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            raise TypeError(f"{cls.__name__}: unexpected keyword argument(s) {', '.join(map(repr, unknown))}; "
                            f"expected some of {', '.join(params)}")
        missing = [n for n, p in params.items() if p.default is p.empty and n not in kwargs]
        if missing:
            raise TypeError(f"{cls.__name__}: missing required keyword argument(s) {', '.join(map(repr, missing))}")
        values = {n: kwargs.get(n, p.default) for n, p in params.items()}
        check_common(cls.function.__name__, **values)
        self._hyperparameters = tuple(values)
        for name, value in values.items():
            if _is_number_sequence(value):
                value = torch.tensor(value, dtype=torch.float64)  # cast to the compute dtype at use
            if isinstance(value, Tensor):
                self.register_buffer(name, value)
            else:
                setattr(self, name, value)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return type(self).function(input, target, **{n: getattr(self, n) for n in self._hyperparameters})

    def extra_repr(self) -> str:
        parts = []
        for name in self._hyperparameters:
            value = getattr(self, name)
            parts.append(f"{name}={tuple(value.shape) if isinstance(value, Tensor) else repr(value)}")
        return ", ".join(parts)
