"""Helpers shared by the test modules."""

from __future__ import annotations

import numpy as np
import torch

# Tolerances for comparing a loss computed in `dtype` with a float64 reference.
TOLERANCES = {
    torch.float64: {"rtol": 1e-9, "atol": 1e-11},
    torch.float32: {"rtol": 1e-5, "atol": 1e-6},
    torch.float16: {"rtol": 2e-3, "atol": 2e-3},
    torch.bfloat16: {"rtol": 1.6e-2, "atol": 1.6e-2},
}



def assert_close_np(actual: torch.Tensor, expected, dtype: torch.dtype = torch.float64, **kw) -> None:
    """Compare a torch result with a NumPy float64 reference under the dtype's tolerance."""
    tolerances = {**TOLERANCES[dtype], **kw}
    np.testing.assert_allclose(actual.detach().double().cpu().numpy(), np.asarray(expected, dtype=np.float64),
                               **tolerances)
