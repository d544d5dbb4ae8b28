"""The base of the nn.Module twins.

A twin is declared in one line, ``class SigmoidFocalLoss(LossModule, function=sigmoid_focal_loss)``:
its constructor takes exactly the functional's keyword-only arguments (with
the same defaults, visible to ``inspect.signature`` and ``help``; the twins of
PyTorch's modules also take PyTorch's first positional argument(s), e.g.
``CrossEntropyLoss(weight)``, declared with ``positional=("weight",)``), validates
the hyperparameters at once with the functional's own messages (the common
ones, the loss's own ``checks``, and weights through the functional's own
conversion, :func:`losslab._checks.to_tensor`), registers tensor hyperparameters as
buffers (so ``.to(device)`` moves them), and ``forward(input, target)`` is one
call of the functional; keyword arguments of ``forward`` override the stored
ones for that call (``loss_fn(pred, target, avg_factor=num_pos)``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ._checks import check_common, check_non_negative, is_number, plain, to_tensor


def _cpu_stand_in() -> Tensor:
    """The stand-in input of construction-time checks: built at construction (importing builds no tensor), on
    the CPU whatever device context is current, as the module's tensors are until ``.to()``."""
    return torch.empty(0, dtype=torch.float64, device="cpu")


class LossModule(nn.Module):
    """nn.Module twin of a functional loss: same keyword arguments, forward is one call."""

    function: ClassVar[Callable[..., Tensor]]
    _parameters_of_function: ClassVar[dict[str, inspect.Parameter]]
    _checks: ClassVar[dict[str, Callable[[Any], Any]]]
    _positional: ClassVar[tuple[str, ...]] = ()
    # the name that messages give (a framework adapter's "monai.FocalLoss"); default: the functional's name
    loss_name: ClassVar[str] = ""

    @staticmethod
    def check_arguments(values: dict[str, Any]) -> None:
        """Construction-time checks that relate several hyperparameters; none by default."""
    WEIGHTS: ClassVar[tuple[str, ...]] = ("weight", "pos_weight", "alpha")

    def __init_subclass__(cls, function: Callable[..., Tensor] | None = None,
                          checks: dict[str, Callable[[Any], Any]] | None = None,
                          positional: tuple[str, ...] = (), **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if function is None:
            return
        cls.function = staticmethod(function)
        cls._checks = dict(checks or {})
        params = [p for p in inspect.signature(function).parameters.values() if p.kind is p.KEYWORD_ONLY]
        cls._parameters_of_function = {p.name: p for p in params}
        unknown = [name for name in positional if name not in cls._parameters_of_function]
        if unknown:
            raise TypeError(f"{cls.__name__}: positional names {unknown} are not arguments of {function.__name__}")
        cls._positional = tuple(positional)

        def __init__(self: LossModule, *args: Any, **kwargs: Any) -> None:
            LossModule.__init__(self, *args, **kwargs)

        this = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
        by_name = cls._parameters_of_function
        first = [by_name[name].replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in positional]
        rest = [p for p in params if p.name not in positional]
        __init__.__signature__ = inspect.Signature([this, *first, *rest])  # type: ignore[attr-defined]
        __init__.__doc__ = f"Store the keyword arguments of :func:`losslab.{function.__name__}`."
        __init__.__qualname__ = f"{cls.__qualname__}.__init__"
        cls.__init__ = __init__  # type: ignore[method-assign]
        if not cls.__doc__:
            cls.__doc__ = (f"Module form of :func:`losslab.{function.__name__}`: takes the same keyword "
                           f"arguments; ``forward(input, target)`` calls it.")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        cls = type(self)
        params = cls._parameters_of_function
        if len(args) > len(cls._positional):
            if cls._positional:
                raise TypeError(f"{cls.__name__}: takes at most {len(cls._positional)} positional argument(s) "
                                f"({', '.join(cls._positional)}); got {len(args)}: pass the others by keyword")
            raise TypeError(f"{cls.__name__}: takes keyword arguments only; got {len(args)} positional argument(s)")
        for name, value in zip(cls._positional, args):
            if name in kwargs:
                raise TypeError(f"{cls.__name__}: got multiple values for argument {name!r}")
            kwargs[name] = value
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            raise TypeError(f"{cls.__name__}: unexpected keyword argument(s) {', '.join(map(repr, unknown))}; "
                            f"expected some of {', '.join(params)}")
        missing = [n for n, p in params.items() if p.default is p.empty and n not in kwargs]
        if missing:
            raise TypeError(f"{cls.__name__}: missing required keyword argument(s) {', '.join(map(repr, missing))}")
        values = {n: plain(kwargs.get(n, p.default)) for n, p in params.items()}
        fn = cls.loss_name or cls.function.__name__
        for name, check in cls._checks.items():  # the loss's own checks first: they may narrow the common ones
            check(values[name])
        check_common(fn, **values)
        cls.check_arguments(values)  # checks that relate several arguments (an adapter's)
        self._hyperparameters = tuple(values)
        for name, value in values.items():
            if name in self.WEIGHTS and value is not None and not is_number(value):
                # the functional's own conversion and message; cast to the compute dtype at use
                value = to_tensor(fn, name, value, value if isinstance(value, Tensor) else _cpu_stand_in(),
                                  torch.float64)
            if name in self.WEIGHTS and (isinstance(value, Tensor) or (is_number(value) and name != "alpha")):
                # a scalar alpha may be negative (sigmoid_focal_loss: disabled); a scalar weight may not
                check_non_negative(fn, name, torch.as_tensor(value, dtype=torch.float64))
            if isinstance(value, Tensor):
                self.register_buffer(name, value)
            else:
                setattr(self, name, value)

    def forward(self, input: Tensor, target: Any, **overrides: Any) -> Tensor:
        """The loss of ``input`` against ``target``.

        Keyword arguments override the stored hyperparameters for this call only:
        per-batch values such as ``avg_factor`` (the number of positive anchors) or
        a ``weight`` tensor, as mmdetection's losses take them in ``forward``.
        """
        unknown = sorted(set(overrides) - set(self._hyperparameters))
        if unknown:
            raise TypeError(f"{type(self).__name__}.forward: unexpected keyword argument(s) "
                            f"{', '.join(map(repr, unknown))}; expected some of {', '.join(self._hyperparameters)}")
        kwargs = {n: getattr(self, n) for n in self._hyperparameters}
        kwargs.update(overrides)
        return type(self).function(input, target, **kwargs)

    def extra_repr(self) -> str:
        parts = []
        for name in self._hyperparameters:
            value = getattr(self, name)
            parts.append(f"{name}={tuple(value.shape) if isinstance(value, Tensor) else repr(value)}")
        return ", ".join(parts)
