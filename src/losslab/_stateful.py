"""The base of the losses whose modules keep running statistics (Seesaw's class counts, EQLv2's gradients).

Such a module is not a twin (:mod:`losslab._module`): its constructor takes the number of classes, not the
statistics, and each training-mode call updates the statistics before (Seesaw) or after (EQLv2) computing the
loss. Its functional takes the statistics explicitly and is pure. The statistics are buffers: saved in the
``state_dict``, moved by ``.to(device)``, and kept in their own dtype under ``.half()`` or ``.to(dtype)``
(class counts in float16 would stop growing at 2048).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from torch import Tensor, nn

from ._module import apply_keeping_dtype, hyperparameter_repr


class StatefulLoss(nn.Module):
    """A loss module with running statistics in buffers; ``state`` names them, ``function`` is its functional."""

    function: ClassVar[Callable[..., Tensor]]
    state: ClassVar[tuple[str, ...]] = ()
    _hyperparameters: tuple[str, ...] = ()

    def _apply(self, fn: Callable[[Tensor], Tensor], *args: Any, **kwargs: Any) -> nn.Module:
        """Moves the statistics with the module but keeps their dtype and values (``.half()`` casts floating
        buffers)."""
        return apply_keeping_dtype(self, self.state, super()._apply, fn, *args, **kwargs)

    def extra_repr(self) -> str:
        return hyperparameter_repr(self, self._hyperparameters)
