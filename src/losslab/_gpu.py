"""Host side of the Triton kernels: the same sweeps as :mod:`losslab._fused`, one launch each.

Every function here takes the arguments of the CPU sweep of the same name
(``x, *batched, scale, *shared, reduce``) and returns ``(loss, grad)`` the
same way: the summed loss (already multiplied by ``scale``) or the
per-element / per-position loss, and the gradient scaled by ``scale`` in the
input's dtype. Per-class weights are (C,) vectors; the dispatcher sends any
other weight shape to the composite.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from . import _triton as K

BLOCK = 1024


def _layout(x: Tensor) -> tuple[int, int]:
    """C and S of an (N, C, *spatial) input (C = S = 1 for 1-D)."""
    if x.ndim < 2:
        return 1, 1
    return x.shape[1], math.prod(x.shape[2:])


def _flag(t: Tensor | None, like: Tensor) -> Tensor:
    """A placeholder pointer for an absent optional tensor."""
    return like if t is None else t


def _elementwise_out(x: Tensor, reduce: bool) -> tuple[Tensor, Tensor, int]:
    blocks = max(1, -(-x.numel() // BLOCK))
    grad = torch.empty_like(x, memory_format=torch.contiguous_format)
    loss = torch.empty(blocks if reduce else x.numel(), dtype=torch.float32, device=x.device)
    return grad, loss, blocks


def _finish(loss: Tensor, shape: tuple[int, ...], reduce: bool) -> Tensor:
    return loss.sum() if reduce else loss.reshape(shape)


def sigmoid(x: Tensor, target: Tensor, valid: Tensor | None, weight: Tensor | None, pos_weight: Tensor | None,
            scale: Tensor, alpha: float | None, gamma: float, smoothing: float, reduce: bool, *,
            index: bool) -> tuple[Tensor, Tensor]:
    """Sigmoid BCE / focal of every element; ``index``: ``target`` holds class indices per position."""
    x = x.contiguous()
    C, S = _layout(x)
    grad, loss, blocks = _elementwise_out(x, reduce)
    target = target.contiguous()
    valid_u8 = None if valid is None else valid.contiguous().view(torch.uint8)
    K.sigmoid_kernel[(blocks,)](
        x, target, _flag(valid_u8, x), _flag(weight, x), _flag(pos_weight, x), scale, grad, loss,
        x.numel(), C, S, 0.0 if alpha is None else float(alpha), float(gamma), float(smoothing),
        INDEX=index, HAS_VALID=valid is not None, HAS_W=weight is not None, HAS_PW=pos_weight is not None,
        HAS_ALPHA=alpha is not None, FOCAL=bool(gamma), REDUCE=reduce, BLOCK=BLOCK)
    return _finish(loss, tuple(x.shape), reduce), grad


def softmax(x: Tensor, index: Tensor, valid: Tensor | None, margin: Tensor | None, scale: Tensor,
            class_weight: Tensor | None, gamma: float, a: Tensor | None, b: Tensor | None,
            reduce: bool) -> tuple[Tensor, Tensor]:
    """Cross-entropy / focal over dim 1 with class indices: one program per position; the logits adjusted to
    z = a x + b - m_y onehot(y) inside the kernel where a, b (per-class vectors) and ``margin`` (m_y per
    position) are given."""
    x = x.contiguous()
    C, S = _layout(x)
    positions = x.numel() // max(C, 1)
    grad = torch.empty_like(x, memory_format=torch.contiguous_format)
    loss = torch.empty(positions, dtype=torch.float32, device=x.device)
    valid_u8 = None if valid is None else valid.contiguous().view(torch.uint8)
    block_c = min(triton_next_power_of_2(C), 4096)
    vectors = [None if v is None else v.to(torch.float32).contiguous() for v in (a, b, margin)]
    if positions:
        K.softmax_kernel[(positions,)](
            x, index.contiguous(), _flag(valid_u8, x), _flag(class_weight, x), *(_flag(v, x) for v in vectors),
            scale, grad, loss, C, S, float(gamma), HAS_VALID=valid is not None, HAS_W=class_weight is not None,
            HAS_A=a is not None, HAS_B=b is not None, HAS_M=margin is not None, FOCAL=bool(gamma), BLOCK_C=block_c)
    shape = tuple(x.shape[:1]) + tuple(x.shape[2:])
    return ((loss.sum() * scale) if reduce else loss.reshape(shape)), grad


def quality(x: Tensor, y: Tensor, valid: Tensor | None, weight: Tensor | None, scale: Tensor, beta: float,
            reduce: bool) -> tuple[Tensor, Tensor]:
    x = x.contiguous()
    C, S = _layout(x)
    grad, loss, blocks = _elementwise_out(x, reduce)
    valid_u8 = None if valid is None else valid.contiguous().view(torch.uint8)
    K.quality_kernel[(blocks,)](
        x, y.contiguous(), _flag(valid_u8, x), _flag(weight, x), scale, grad, loss, x.numel(), C, S, float(beta),
        HAS_VALID=valid is not None, HAS_W=weight is not None, FOCAL=bool(beta), REDUCE=reduce, BLOCK=BLOCK)
    return _finish(loss, tuple(x.shape), reduce), grad


def varifocal(x: Tensor, q: Tensor, weight: Tensor | None, scale: Tensor, alpha: float, gamma: float,
              iou_weighted: bool, reduce: bool) -> tuple[Tensor, Tensor]:
    x = x.contiguous()
    C, S = _layout(x)
    grad, loss, blocks = _elementwise_out(x, reduce)
    K.varifocal_kernel[(blocks,)](
        x, q.contiguous(), _flag(weight, x), scale, grad, loss, x.numel(), C, S, float(alpha), float(gamma),
        IOU_WEIGHTED=bool(iou_weighted), HAS_W=weight is not None, FOCAL=bool(gamma), REDUCE=reduce, BLOCK=BLOCK)
    return _finish(loss, tuple(x.shape), reduce), grad


def triton_next_power_of_2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())
