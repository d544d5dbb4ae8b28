"""The base of the nn.Module twins.

A twin names its functional and the loss's validator, and writes its constructor out, so that IDEs and type
checkers see its arguments::

    class SigmoidFocalLoss(LossModule, function=sigmoid_focal_loss, validate=_check_sigmoid_focal):
        def __init__(self, *, alpha: float | None = 0.25, gamma: float = 2.0, ...) -> None:
            super().__init__(alpha=alpha, gamma=gamma, ...)

The constructor takes exactly the functional's keyword-only arguments, with the same defaults and annotations
(tests/test_twins.py checks every twin), and passes all of them on by name; the twins of PyTorch's modules also
take PyTorch's first positional argument(s), e.g. ``CrossEntropyLoss(weight)``, declared with
``positional=("weight",)``. A call with arguments the constructor does not take fails with losslab's message
(``SigmoidFocalLoss: unexpected keyword argument(s) 'gama'; expected some of ...``), not Python's.

:meth:`LossModule.__init__` validates the hyperparameters at once with the loss's validator, the function its
functional calls first, so a bad value fails with the same message at construction as in a call. It is called as
``validate(fn, **hyperparameters)`` with the hyperparameters it names (all of them if it takes ``**kwargs``);
:func:`losslab._checks.check_common` for a loss without checks of its own. Weights go through the functional's
own conversion (:func:`losslab._checks.to_tensor`), tensor hyperparameters become buffers (so ``.to(device)``
moves them), and ``forward(input, target)`` is one call of the functional; keyword arguments of ``forward``
override the stored ones for that call (``loss_fn(pred, target, avg_factor=num_pos)``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn

from ._checks import check_common, check_non_negative, is_number, plain, to_tensor

_T = TypeVar("_T")


def _cpu_stand_in() -> Tensor:
    """The stand-in input of construction-time checks: built at construction (importing builds no tensor), on
    the CPU whatever device context is current, as the module's tensors are until ``.to()``."""
    return torch.empty(0, dtype=torch.float64, device="cpu")


class _TwinType(type):
    """The type of the twins: a call is checked against the twin's arguments first, with losslab's messages.

    Python's own ``TypeError`` for a bad call (``__init__() got an unexpected keyword argument``) names neither
    the loss nor the arguments it takes. The constructor itself is the twin's own ``__init__``.
    """

    def __call__(cls: type[_T], *args: Any, **kwargs: Any) -> _T:
        if getattr(cls, "function", None) is not None:
            cls._check_call(args, kwargs)  # type: ignore[attr-defined]
        return super().__call__(*args, **kwargs)  # type: ignore[misc]

    @property
    def __signature__(cls) -> inspect.Signature:
        """The constructor's signature without ``self``: what ``inspect.signature(cls)`` reads (it would otherwise
        read ``__call__`` above, which takes anything)."""
        signature = inspect.signature(cls.__init__)  # type: ignore[misc]
        return signature.replace(parameters=list(signature.parameters.values())[1:])


class LossModule(nn.Module, metaclass=_TwinType):
    """nn.Module twin of a functional loss: same keyword arguments, forward is one call."""

    function: ClassVar[Callable[..., Tensor]]
    validate: ClassVar[Callable[..., Any]]
    _validated: ClassVar[frozenset[str] | None]  # the hyperparameters ``validate`` takes; None: all of them
    _parameters_of_function: ClassVar[dict[str, inspect.Parameter]]
    _positional: ClassVar[tuple[str, ...]] = ()
    # the name that messages give (a framework adapter's "monai.FocalLoss"); default: the functional's name
    loss_name: ClassVar[str] = ""
    WEIGHTS: ClassVar[tuple[str, ...]] = ("weight", "pos_weight", "alpha")
    # buffers that keep their dtype under .half() / .to(dtype) (class counts: float16 would round them)
    KEEP_DTYPE: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, function: Callable[..., Tensor] | None = None,
                          validate: Callable[..., Any] | None = None,
                          positional: tuple[str, ...] = (), **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if function is None:
            return
        cls.function = staticmethod(function)
        cls.validate = staticmethod(validate or check_common)
        takes = list(inspect.signature(cls.validate).parameters.values())[1:]  # after fn
        cls._validated = None if any(p.kind is p.VAR_KEYWORD for p in takes) else frozenset(p.name for p in takes)
        params = [p for p in inspect.signature(function).parameters.values() if p.kind is p.KEYWORD_ONLY]
        cls._parameters_of_function = {p.name: p for p in params}
        unknown = [name for name in positional if name not in cls._parameters_of_function]
        if unknown:
            raise TypeError(f"{cls.__name__}: positional names {unknown} are not arguments of {function.__name__}")
        cls._positional = tuple(positional)
        if not cls.__doc__:
            cls.__doc__ = (f"Module form of :func:`losslab.{function.__name__}`: takes the same keyword "
                           f"arguments; ``forward(input, target)`` calls it.")

    @classmethod
    def _check_call(cls, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """The arguments of a call of the twin fit its constructor (the functional's keyword arguments)."""
        params = cls._parameters_of_function
        if len(args) > len(cls._positional):
            if cls._positional:
                raise TypeError(f"{cls.__name__}: takes at most {len(cls._positional)} positional argument(s) "
                                f"({', '.join(cls._positional)}); got {len(args)}: pass the others by keyword")
            raise TypeError(f"{cls.__name__}: takes keyword arguments only; got {len(args)} positional argument(s)")
        given = set(kwargs)
        for name in cls._positional[:len(args)]:
            if name in given:
                raise TypeError(f"{cls.__name__}: got multiple values for argument {name!r}")
            given.add(name)
        unknown = sorted(given - set(params))
        if unknown:
            raise TypeError(f"{cls.__name__}: unexpected keyword argument(s) {', '.join(map(repr, unknown))}; "
                            f"expected some of {', '.join(params)}")
        missing = [n for n, p in params.items() if p.default is p.empty and n not in given]
        if missing:
            raise TypeError(f"{cls.__name__}: missing required keyword argument(s) {', '.join(map(repr, missing))}")

    def __init__(self, **hyperparameters: Any) -> None:
        """Validate and store the hyperparameters, every argument of the functional by name (a twin's
        ``__init__`` passes all of its own on)."""
        super().__init__()
        cls = type(self)
        if hyperparameters.keys() != cls._parameters_of_function.keys():
            raise TypeError(f"{cls.__name__}.__init__ must pass every keyword argument of {cls.function.__name__} "
                            f"on by name: {', '.join(cls._parameters_of_function)}; got {', '.join(hyperparameters)}")
        values = {n: plain(hyperparameters[n]) for n in cls._parameters_of_function}
        fn = cls.loss_name or cls.function.__name__
        cls.validate(fn, **{n: v for n, v in values.items() if cls._validated is None or n in cls._validated})
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

    def _apply(self, fn: Callable[[Tensor], Tensor], *args: Any, **kwargs: Any) -> nn.Module:
        return apply_keeping_dtype(self, self.KEEP_DTYPE, super()._apply, fn, *args, **kwargs)

    def extra_repr(self) -> str:
        return hyperparameter_repr(self, self._hyperparameters)


def apply_keeping_dtype(module: nn.Module, names: tuple[str, ...], apply: Callable[..., nn.Module],
                        fn: Callable[[Tensor], Tensor], *args: Any, **kwargs: Any) -> nn.Module:
    """``nn.Module._apply`` that moves the buffers ``names`` with the module but keeps their dtype and values
    (``.half()`` casts floating buffers): each takes only the device of what ``fn`` made of it."""
    saved = {name: module._buffers.get(name) for name in names}
    out = apply(fn, *args, **kwargs)
    for name, original in saved.items():
        moved = module._buffers.get(name)
        if moved is not None and original is not None and moved.dtype != original.dtype:
            module._buffers[name] = original.to(moved.device)
    return out


def hyperparameter_repr(module: nn.Module, names: tuple[str, ...]) -> str:
    """``name=value`` for each hyperparameter, a tensor by its shape: a loss module's ``extra_repr``."""
    parts = []
    for name in names:
        value = getattr(module, name)
        parts.append(f"{name}={tuple(value.shape) if isinstance(value, Tensor) else repr(value)}")
    return ", ".join(parts)
