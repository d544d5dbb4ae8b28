"""Shared test fixtures: per-dtype tolerances, Hypothesis profiles, check-mode reset."""

from __future__ import annotations

import os

import torch

# Triton's interpreter runs the GPU kernels on CPU tensors; it must be on before the kernels are defined.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch._dynamo  # noqa: E402
from hypothesis import HealthCheck, settings
from torch._dynamo.utils import counters  # noqa: E402

import losslab
from losslab import _fused, _standalone

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


@pytest.fixture
def fresh_dynamo(monkeypatch, tmp_path):
    """Reset dynamo and the counters; empty caches of compiled sweeps (torch.compile's and the standalone graphs,
    in memory and on disk); compiling allowed.

    The inductor cache directory is the test's own: what other runs compiled on this machine cannot leak in
    (see test_compiled_sweep_follows_a_changed_hyperparameter).
    """
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    torch._dynamo.reset()
    counters.clear()
    monkeypatch.setattr(_fused, "_compiled", {})
    monkeypatch.setattr(_standalone, "_graphs", {})
    monkeypatch.setattr(_fused, "_failed_signatures", {})
    monkeypatch.delenv("LOSSLAB_COMPILE", raising=False)
    yield
    torch._dynamo.reset()
    counters.clear()


@pytest.fixture
def fused_auto():
    """The test starts in set_fused("auto") and leaves it there (the fused-path test modules use it)."""
    losslab.set_fused("auto")
    yield
    losslab.set_fused("auto")
