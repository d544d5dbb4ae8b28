"""Shared test fixtures: per-dtype tolerances, Hypothesis profiles, check-mode reset."""

from __future__ import annotations

import os

import torch

# Triton's interpreter runs the GPU kernels on CPU tensors; it must be on before the kernels are defined.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings

import losslab

from .helpers import TOLERANCES

# CI is deterministic (derandomize); HYPOTHESIS_PROFILE=dev explores more, with fresh randomness.
settings.register_profile("ci", derandomize=True, deadline=None, max_examples=60,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

@pytest.fixture
def tol():
    """``tol(dtype)`` -> dict(rtol=..., atol=...) for assert_close against a float64 reference."""
    return lambda dtype: TOLERANCES[dtype]


@pytest.fixture(autouse=True)
def _default_checks():
    """Every test starts and ends with the default value-check mode."""
    previous = losslab.set_checks(None)
    yield
    losslab.set_checks(previous)
