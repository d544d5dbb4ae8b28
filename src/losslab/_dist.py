r"""Global normalisation under data-parallel training: the ``dist_sync`` keyword's machinery.

DistributedDataParallel averages the gradients of P processes. A loss
normalised by a count of its local shard (kept elements, positive anchors,
Dice's per-class sums) then differs from the loss of the global batch. With
``dist_sync=True`` a loss all-reduces those batch-dependent quantities and
returns

.. math:: L_p = L(\text{global batch}), \qquad \nabla_{x_p} L_p = P\, \nabla_{x_p} L(\text{global batch})

on every process p: the value of the loss on the concatenated batch, with a
gradient that flows only through the process's own examples and is scaled by
the world size P, so that DDP's average over processes is exactly the
gradient of the global loss. Collectives run only in forward (the gradient
needs none) and every process makes the same calls in the same order
whatever its shard holds, so an empty or all-ignored shard neither deadlocks
nor gives NaN. Without an initialised process group (or with one process)
nothing is synchronised.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_bool


def world(fn: str, dist_sync: bool) -> int:
    """The number of processes to synchronise over: 1 unless ``dist_sync`` and a default group of several."""
    check_bool(fn, "dist_sync", dist_sync)
    if not dist_sync or not torch.distributed.is_available() or not torch.distributed.is_initialized():
        return 1
    return torch.distributed.get_world_size()


def all_sum(tensor: Tensor) -> Tensor:
    """The sum of ``tensor`` over every process of the default group, detached (no gradient flows)."""
    tensor = tensor.detach()
    if torch.compiler.is_compiling():  # traceable functional collective
        from torch.distributed import _functional_collectives as funcol

        return funcol.all_reduce(tensor, "sum", torch.distributed.group.WORLD)
    out = tensor.clone()
    torch.distributed.all_reduce(out)
    return out


class _Substitute(torch.autograd.Function):
    """Forward: ``replacement``; backward: the gradient goes to ``local`` unchanged (the identity)."""

    @staticmethod
    def forward(local: Tensor, replacement: Tensor) -> Tensor:  # type: ignore[override]
        return replacement.clone()

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # noqa: ANN001
        pass

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # noqa: ANN001
        return grad, None


class _ScaleGrad(torch.autograd.Function):
    """Forward: the identity; backward: the gradient times ``factor``."""

    @staticmethod
    def forward(value: Tensor, factor: int) -> Tensor:  # type: ignore[override]
        return value.clone()

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # noqa: ANN001
        ctx.factor = inputs[1]

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # noqa: ANN001
        return grad * ctx.factor, None


def global_sum(local: Tensor) -> Tensor:
    """The sum of ``local`` over the processes, with the gradient of ``local`` alone."""
    return _Substitute.apply(local, all_sum(local))


def scale_gradient(value: Tensor, processes: int) -> Tensor:
    """``value`` whose gradient is multiplied by the number of processes (DDP divides it again)."""
    return _ScaleGrad.apply(value, processes) if processes > 1 else value


def global_denominator(denominator: Tensor | float, device: torch.device) -> Tensor:
    """A local denominator summed over the processes: a 0-d float64 tensor (one all-reduce)."""
    return all_sum(torch.as_tensor(denominator, dtype=torch.float64, device=device).reshape(()))


def reduce_global(local: Tensor, processes: int) -> Tensor:
    """A local 0-d value (a local sum, or a local sum already divided by the global denominator) summed over
    the processes, float64 on the wire (one all-reduce), with the local value's gradient times ``processes``.

    Every loss makes the same collectives whatever its shard holds or whichever backend computed it: for
    "mean" :func:`global_denominator` first, then this; for "sum" this alone.
    """
    summed = all_sum(local.detach().double().reshape(())).to(local.dtype)
    return scale_gradient(_Substitute.apply(local, summed), processes)
