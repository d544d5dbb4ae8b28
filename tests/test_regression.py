"""Regression losses: smooth_l1_loss and huber_loss.

Both promise PyTorch's numbers, so they are compared with
torch.nn.functional.smooth_l1_loss / huber_loss (and l1_loss for beta = 0):
values and gradients, every reduction, in float64 (rtol 1e-12) and float32
(values bitwise; gradients may differ from PyTorch's kernels by an ulp, so
they get the float32 tolerance), on residuals that include exactly 0, exactly
+-beta / +-delta, their neighbouring floats and +-1e6. Also: Huber(delta) ==
delta * SmoothL1(beta=delta), weight broadcasting, avg_factor, the module
twins' per-call overrides, target dtypes, half precision and errors; and
Hypothesis invariants (zero iff input == target, symmetry, the L1 bounds).
The reduction/reference/gradcheck/empty/half/saturation basics are in
tests/test_conformance.py.
"""

from __future__ import annotations

import inspect
import re

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given
from hypothesis import strategies as st

import losslab

from .helpers import TOLERANCES, gen, logits, value_and_grad
from .reference import REFERENCES

F64, F32 = torch.float64, torch.float32
REDUCTIONS = ("none", "mean", "sum")
BETAS = (1.0, 0.5, 1 / 9, 0.0)
DELTAS = (1.0, 0.3, 2.5)
EXACT = {"rtol": 1e-12, "atol": 0.0}


# ----------------------------------------------------------------------------
# helpers


def with_edges(threshold: float, dtype: torch.dtype, shape=(3, 17, 9), seed: int = 0):
    """Random (input, target) whose first residuals are the edge cases of a loss with this transition point.

    Residuals (input - target, exact in ``dtype``, on zero targets): 0, +-t, the floats just below and above
    +-t, 0.5 t, +-1e6, with t = ``threshold`` rounded to ``dtype``. The rest are random (scale ~3: both branches).
    """
    x = logits(*shape, seed=seed, dtype=dtype)
    t = logits(*shape, seed=seed + 100, dtype=dtype)
    th = torch.tensor(threshold, dtype=dtype)
    below = torch.nextafter(th, torch.tensor(0.0, dtype=dtype))
    above = torch.nextafter(th, torch.tensor(10.0, dtype=dtype))
    residuals = torch.stack([th * 0, th, -th, below, -below, above, -above, th * 0.5,
                             torch.tensor(1e6, dtype=dtype), torch.tensor(-1e6, dtype=dtype)])
    n = residuals.numel()
    flat_x, flat_t = x.view(-1), t.view(-1)
    flat_t[:n] = 0.0
    flat_x[:n] = residuals
    # the same on targets of +-2 (exact where t has a short mantissa: 1, 0.5, 2.5; rounded neighbours otherwise)
    flat_t[n:2 * n] = torch.where(torch.arange(n) % 2 == 0, 2.0, -2.0).to(dtype)
    flat_x[n:2 * n] = flat_t[n:2 * n] + residuals
    return x, t


def assert_matches_torch(ours, theirs, dtype: torch.dtype) -> None:
    """(value, grad) pairs: float64 within 1e-12; float32 values bitwise, gradients within the float32 tolerance."""
    assert ours[0].dtype == theirs[0].dtype == dtype and ours[0].shape == theirs[0].shape
    if dtype == F64:
        torch.testing.assert_close(ours[0], theirs[0], **EXACT)
        torch.testing.assert_close(ours[1], theirs[1], **EXACT)
    else:
        assert torch.equal(ours[0], theirs[0]), (ours[0] - theirs[0]).abs().max()
        torch.testing.assert_close(ours[1], theirs[1], **TOLERANCES[dtype])


def unit_grad(fn, x: torch.Tensor, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """fn(x, ...) with reduction "none" and its input gradient for an upstream of ones (the derivative itself)."""
    x = x.detach().clone().requires_grad_(True)
    out = fn(x, *args, reduction="none", **kwargs)
    out.sum().backward()
    return out.detach(), x.grad


def reduce_like_spec(elementwise: torch.Tensor, reduction: str) -> torch.Tensor:
    """The spec's reduction without avg_factor: "mean" divides by the element count (weights not counted)."""
    if reduction == "none":
        return elementwise
    total = elementwise.sum()
    return total if reduction == "sum" else total / elementwise.numel()


def check_zero_iff_equal_and_symmetric(fn, param: str, value: float, data, n: int) -> None:
    """fn(x, t) == 0 exactly where x == t; symmetric in (x, t) bitwise, with an odd input gradient."""
    x = data.draw(st.lists(st.floats(-1e6, 1e6), min_size=n, max_size=n))
    t = [data.draw(st.one_of(st.just(xi), st.floats(-1e6, 1e6))) for xi in x]
    # a loss below the smallest float (d^2 underflow) is 0 in PyTorch too: keep residuals above 1e-100
    assume(all(xi == ti or abs(xi - ti) >= 1e-100 for xi, ti in zip(x, t, strict=True)))
    xt, tt = torch.tensor(x, dtype=F64), torch.tensor(t, dtype=F64)
    out, grad = unit_grad(fn, xt, tt, **{param: value})
    assert torch.equal(out == 0, xt == tt), (out, xt - tt)
    assert torch.all(out >= 0)
    assert torch.all(grad[xt == tt] == 0)
    swapped, swapped_grad = unit_grad(fn, tt, xt, **{param: value})
    assert torch.equal(out, swapped)
    assert torch.equal(grad, -swapped_grad)


# ----------------------------------------------------------------------------
# what both losses share, run once per loss by the two classes below


class _ElementwiseLoss:
    name: str
    param: str
    values: tuple[float, ...]
    torch_fn = None

    @property
    def fn(self):
        return getattr(losslab, self.name)

    @property
    def module(self):
        return {"smooth_l1_loss": losslab.SmoothL1Loss, "huber_loss": losslab.HuberLoss}[self.name]

    def kw(self, value: float | None = None) -> dict:
        return {self.param: self.values[1] if value is None else value}

    # weight ---------------------------------------------------------------------

    @pytest.mark.parametrize("form", ["(N, 1)", "(C,)", "list", "scalar", "0-d", "full", "(1, C) float32"])
    @pytest.mark.parametrize("reduction", REDUCTIONS)
    def test_weight_broadcasts_to_the_input(self, form, reduction):
        x, t = logits(6, 4, seed=1), logits(6, 4, seed=2)
        weight = {
            "(N, 1)": torch.linspace(0.0, 2.0, 6, dtype=F64)[:, None],
            "(C,)": torch.tensor([0.5, 1.0, 0.0, 3.0], dtype=F64),
            "list": [0.5, 1.0, 0.0, 3.0],
            "scalar": 2.5,
            "0-d": torch.tensor(0.75, dtype=F64),
            "full": torch.rand(6, 4, generator=gen(3), dtype=F64),
            "(1, C) float32": torch.tensor([[0.5, 1.0, 0.25, 3.0]]),
        }[form]
        dense = torch.as_tensor(weight, dtype=F64).expand(6, 4)
        ours = value_and_grad(self.fn, x, t, **self.kw(), weight=weight, reduction=reduction)
        expected = value_and_grad(
            lambda z: reduce_like_spec(self.torch_fn(z, t, **self.kw(), reduction="none") * dense, reduction), x)
        torch.testing.assert_close(ours[0], expected[0], **EXACT)
        torch.testing.assert_close(ours[1], expected[1], **EXACT)
        # and the float64 NumPy reference agrees
        np_weight = weight.numpy() if isinstance(weight, torch.Tensor) else weight
        ref = REFERENCES[self.name](x.numpy(), t.numpy(), **self.kw(), weight=np_weight, reduction=reduction)
        torch.testing.assert_close(ours[0], torch.from_numpy(ref).to(F64), **EXACT)

    def test_weight_is_not_in_the_mean_denominator(self):
        x, t = logits(5, 3, seed=4), logits(5, 3, seed=5)
        w = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0], dtype=F64)[:, None]
        mean = self.fn(x, t, **self.kw(), weight=w)
        torch.testing.assert_close(mean, self.fn(x, t, **self.kw(), weight=w, reduction="sum") / 15, **EXACT)

    def test_gradient_with_respect_to_a_weight_tensor(self):
        x, t = logits(4, 3, seed=6), logits(4, 3, seed=7)
        w = torch.rand(4, 1, generator=gen(8), dtype=F64).requires_grad_(True)
        self.fn(x, t, **self.kw(), weight=w, reduction="sum").backward()
        per_box = self.torch_fn(x, t, **self.kw(), reduction="none").sum(1, keepdim=True)
        torch.testing.assert_close(w.grad, per_box, **EXACT)

    @pytest.mark.parametrize(("weight", "message"), [
        (-1.0, r"got -1\.0"),
        (torch.tensor([1.0, -0.5, 1.0]), r"got \[1\.0, -0\.5, 1\.0\]"),
        (torch.tensor([1.0, float("nan"), 1.0]), r"got \[1\.0, nan, 1\.0\]"),
        ([1.0, float("inf"), 1.0], r"got \[1\.0, inf, 1\.0\]"),
    ])
    def test_weight_must_be_finite_and_non_negative(self, weight, message):
        x, t = logits(4, 3, seed=9), logits(4, 3, seed=10)
        with pytest.raises(ValueError, match=rf"^{self.name}: weight must be finite and non-negative; {message}"):
            self.fn(x, t, weight=weight)
        if not isinstance(weight, float):  # (a scalar: see the next test)
            with pytest.raises(ValueError, match=rf"^{self.name}: weight must be finite and non-negative"):
                self.module(weight=weight)  # at construction, not at the first batch
        with pytest.raises(ValueError, match=rf"^{self.name}: weight must be finite and non-negative"):
            self.module()(x, t, weight=weight)

    @pytest.mark.parametrize("weight", [-1.0, float("nan")])
    def test_module_rejects_a_bad_scalar_weight_at_construction(self, weight):
        with pytest.raises(ValueError, match=rf"^{self.name}: weight must be finite and non-negative"):
            self.module(weight=weight)

    @pytest.mark.parametrize("shape", [(2, 4, 3), (4, 1, 1), (3, 1), (4,), (12,)])
    def test_weight_that_does_not_broadcast_to_the_input_shape(self, shape):
        x, t = logits(4, 3, seed=11), logits(4, 3, seed=12)
        shown = "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"
        with pytest.raises(ValueError, match=rf"^{self.name}: weight must broadcast to the input's shape \(4, 3\); "
                                             rf"got {re.escape(shown)}$"):
            self.fn(x, t, weight=torch.ones(shape, dtype=F64))

    # avg_factor -----------------------------------------------------------------

    @pytest.mark.parametrize("avg_factor", [3.0, 7, torch.tensor(2.5, dtype=F64), torch.tensor(4),
                                            torch.tensor([5.0]), torch.tensor(3.0)])
    def test_avg_factor_replaces_the_mean_denominator(self, avg_factor):
        x, t = logits(6, 4, seed=13), logits(6, 4, seed=14)
        w = torch.linspace(0.0, 1.0, 6, dtype=F64)[:, None]
        ours = value_and_grad(self.fn, x, t, **self.kw(), weight=w, avg_factor=avg_factor)
        d = float(avg_factor)
        expected = value_and_grad(lambda z: (self.torch_fn(z, t, **self.kw(), reduction="none") * w).sum() / d, x)
        assert ours[0].dtype == F64 and ours[0].shape == ()
        torch.testing.assert_close(ours[0], expected[0], **EXACT)
        torch.testing.assert_close(ours[1], expected[1], **EXACT)

    @pytest.mark.parametrize("zero", [0.0, 0, torch.tensor(0.0, dtype=F64), torch.tensor(0)])
    def test_avg_factor_zero_gives_the_sum(self, zero):
        x, t = logits(5, 4, seed=15), logits(5, 4, seed=16)
        ours = value_and_grad(self.fn, x, t, **self.kw(), avg_factor=zero)
        total = value_and_grad(self.fn, x, t, **self.kw(), reduction="sum")
        assert torch.equal(ours[0], total[0]) and torch.equal(ours[1], total[1])
        assert torch.isfinite(ours[1]).all()

    @pytest.mark.parametrize("reduction", ["none", "sum"])
    def test_avg_factor_is_ignored_by_none_and_sum(self, reduction):
        x, t = logits(5, 4, seed=17), logits(5, 4, seed=18)
        plain = value_and_grad(self.fn, x, t, **self.kw(), reduction=reduction)
        for avg_factor in (3.0, 0.0, torch.tensor(11.0, dtype=F64)):
            ours = value_and_grad(self.fn, x, t, **self.kw(), reduction=reduction, avg_factor=avg_factor)
            assert torch.equal(ours[0], plain[0]) and torch.equal(ours[1], plain[1])

    @pytest.mark.parametrize(("avg_factor", "error", "message"), [
        (-1.0, ValueError, r"avg_factor must be a finite number in \[0, inf\); got -1\.0"),
        (float("nan"), ValueError, r"avg_factor must be a finite number in \[0, inf\); got nan"),
        (torch.tensor(-2.0), ValueError, r"avg_factor must be a finite number in \[0, inf\); got -2\.0"),
        (torch.tensor([1.0, 2.0]), TypeError, r"avg_factor must be None, a number >= 0 or a one-element tensor"),
        (True, TypeError, r"avg_factor must be None, a number >= 0 or a one-element tensor"),
    ])
    def test_bad_avg_factor(self, avg_factor, error, message):
        x, t = logits(4, 3, seed=19), logits(4, 3, seed=20)
        with pytest.raises(error, match=rf"^{self.name}: {message}"):
            self.fn(x, t, avg_factor=avg_factor)

    # the module twin ------------------------------------------------------------

    def test_module_per_call_overrides_equal_the_functional(self):
        x, t = logits(6, 4, seed=21), logits(6, 4, seed=22)
        w = torch.rand(6, 1, generator=gen(23), dtype=F64)
        module = self.module(**self.kw(0.5))
        ours = value_and_grad(module, x, t, weight=w, avg_factor=3.0)
        expected = value_and_grad(self.fn, x, t, **self.kw(0.5), weight=w, avg_factor=3.0)
        assert torch.equal(ours[0], expected[0]) and torch.equal(ours[1], expected[1])
        # the override lasts one call: the stored arguments are unchanged
        assert module.weight is None and module.avg_factor is None
        assert torch.equal(module(x, t), self.fn(x, t, **self.kw(0.5)))
        # a hyperparameter override, and stored per-batch arguments
        assert torch.equal(module(x, t, **self.kw(2.0), reduction="none"),
                           self.fn(x, t, **self.kw(2.0), reduction="none"))
        stored = self.module(**self.kw(0.5), weight=w, avg_factor=torch.tensor(3.0), reduction="sum")
        assert torch.equal(stored(x, t), self.fn(x, t, **self.kw(0.5), weight=w, reduction="sum"))
        assert torch.equal(stored(x, t, reduction="mean"), expected[0])

    def test_module_unknown_override_is_a_type_error(self):
        x, t = logits(4, 3, seed=24), logits(4, 3, seed=25)
        other = "delta" if self.param == "beta" else "beta"
        cls = self.module.__name__
        with pytest.raises(TypeError, match=rf"^{cls}\.forward: unexpected keyword argument\(s\) '{other}'"):
            self.module()(x, t, **{other: 1.0})
        with pytest.raises(TypeError, match=rf"^{cls}: unexpected keyword argument\(s\) '{other}'"):
            self.module(**{other: 1.0})

    def test_module_signature_is_the_functionals(self):
        params = inspect.signature(self.module).parameters
        if self.module is losslab.HuberLoss:  # torch.nn.HuberLoss(reduction='mean', delta=1.0): both positional
            assert list(params) == ["reduction", "delta", "weight", "avg_factor", "dist_sync"]
            assert [params[n].kind for n in ("reduction", "delta")] == [inspect.Parameter.POSITIONAL_OR_KEYWORD] * 2
        else:  # torch.nn.SmoothL1Loss's positional arguments are the deprecated size_average and reduce
            assert list(params) == [self.param, "weight", "reduction", "avg_factor", "dist_sync"]
            assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values())
        assert params[self.param].default == 1.0 and params["reduction"].default == "mean"

    # shapes and dtypes ----------------------------------------------------------

    @pytest.mark.parametrize("target_shape", [(4, 1), (1, 3), (3,), (), (1, 4, 3), (4, 3, 1), (3, 4)])
    def test_target_of_another_shape_is_an_error_not_a_broadcast(self, target_shape):
        x = logits(4, 3, seed=26)
        t = torch.zeros(target_shape, dtype=F64)
        shown = "(" + ", ".join(map(str, target_shape)) + ("," if len(target_shape) == 1 else "") + ")"
        with pytest.raises(ValueError, match=rf"^{self.name}: target must have the input's shape \(4, 3\); "
                                             rf"got {re.escape(shown)}$"):
            self.fn(x, t, **self.kw())

    def test_scalar_input_and_target(self):
        for r in (0.0, 0.2, -3.0):
            x, t = torch.tensor(1.0 + r, dtype=F64), torch.tensor(1.0, dtype=F64)
            for reduction in REDUCTIONS:
                assert_matches_torch(value_and_grad(self.fn, x, t, **self.kw(), reduction=reduction),
                                     value_and_grad(self.torch_fn, x, t, **self.kw(), reduction=reduction), F64)

    @pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8])
    def test_integer_targets_are_cast(self, dtype):
        x = logits(5, 4, seed=27)
        t = torch.randint(0, 3, (5, 4), generator=gen(28)).to(dtype)
        for reduction in REDUCTIONS:
            ours = value_and_grad(self.fn, x, t, **self.kw(), reduction=reduction)
            assert_matches_torch(ours, value_and_grad(self.torch_fn, x, t.to(F64), **self.kw(), reduction=reduction),
                                 F64)

    def test_bool_target_is_an_error(self):
        """Issue 13: a bool tensor of regression targets is a mistake (a mask passed for values), not 0 and 1."""
        x, t = logits(5, 4, seed=27), torch.rand(5, 4, generator=gen(28)) > 0.5
        with pytest.raises(TypeError, match=rf"^{self.name}: target must hold regression targets \(a floating-point "
                                            rf"or integer tensor\); got dtype torch.bool$"):
            self.fn(x, t, **self.kw())
        with pytest.raises(TypeError, match=rf"^{self.name}: avg_factor must be None, a number >= 0 or a one-element "
                                            rf"real tensor; got dtype torch.bool$"):
            self.fn(x, t.double(), **self.kw(), avg_factor=torch.tensor(True))

    def test_target_of_another_floating_dtype(self):
        x64, t32 = logits(5, 4, seed=29), logits(5, 4, seed=30, dtype=F32)
        for reduction in REDUCTIONS:
            # a float32 target with a float64 input: float64 result, the target exactly promoted
            ours = value_and_grad(self.fn, x64, t32, **self.kw(), reduction=reduction)
            assert ours[0].dtype == F64
            assert_matches_torch(ours, value_and_grad(self.torch_fn, x64, t32.double(), **self.kw(),
                                                      reduction=reduction), F64)
            # a float64 target with a float32 input: the input's dtype, the target cast to it
            x32, t64 = x64.float(), t32.double() + 1e-9
            ours = value_and_grad(self.fn, x32, t64, **self.kw(), reduction=reduction)
            assert ours[0].dtype == ours[1].dtype == F32
            assert_matches_torch(ours, value_and_grad(self.torch_fn, x32, t64.float(), **self.kw(),
                                                      reduction=reduction), F32)

    def test_non_floating_input_is_a_type_error(self):
        t = torch.zeros(4, 3)
        for dtype in (torch.int64, torch.int32, torch.bool):
            with pytest.raises(TypeError, match=rf"^{self.name}: input must be a floating-point tensor "
                                                rf".*; got dtype {dtype}$"):
                self.fn(torch.zeros(4, 3, dtype=dtype), t, **self.kw())
        with pytest.raises(TypeError, match=rf"^{self.name}: target must be a real tensor; got dtype torch.complex64"):
            self.fn(torch.zeros(4, 3), torch.zeros(4, 3, dtype=torch.complex64), **self.kw())

    @pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
    def test_half_precision_is_the_float32_result_cast(self, dtype):
        x = logits(6, 5, seed=31, dtype=dtype)
        t = logits(6, 5, seed=32, dtype=dtype)
        t.view(-1)[:4] = x.view(-1)[:4]  # residuals of exactly 0 ...
        x.view(-1)[4:6] = (t.view(-1)[4:6].float() + torch.tensor([1.0, -1.0])).to(dtype)  # ... and about +-1
        w = torch.linspace(0.0, 2.0, 5, dtype=F32)
        fine = t.float() + 1e-4 * torch.rand(6, 5, generator=gen(33))  # a float32 target is not rounded to half
        for kwargs in ({}, {"weight": w}, {"weight": w, "avg_factor": 7.0}):
            for target in (t, t.float(), fine):
                for reduction in REDUCTIONS:
                    half = x.clone().requires_grad_(True)
                    single = x.float().requires_grad_(True)
                    out = self.fn(half, target, **self.kw(), reduction=reduction, **kwargs)
                    ref = self.fn(single, target.float(), **self.kw(), reduction=reduction, **kwargs)
                    assert out.dtype == dtype
                    assert torch.equal(out, ref.to(dtype))
                    # an upstream gradient exact in every dtype: the half gradient is the float32 one, cast
                    upstream = (0.5 + 0.25 * (torch.arange(out.numel()) % 5)).reshape(out.shape)
                    out.backward(upstream.to(dtype))
                    ref.backward(upstream.float())
                    assert half.grad.dtype == dtype
                    assert torch.equal(half.grad, single.grad.to(dtype))

    def test_inputs_are_not_modified_and_targets_get_no_gradient(self):
        x, t = logits(4, 3, seed=33), logits(4, 3, seed=34).requires_grad_(True)
        x0, t0 = x.clone(), t.detach().clone()
        xg = x.requires_grad_(True)
        self.fn(xg, t, **self.kw()).backward()
        assert torch.equal(x, x0) and torch.equal(t.detach(), t0)
        # the target is differentiable too, with the opposite gradient (loss of input - target)
        torch.testing.assert_close(t.grad, -xg.grad, rtol=0, atol=0)


# ----------------------------------------------------------------------------


class TestSmoothL1Loss(_ElementwiseLoss):
    name, param, values = "smooth_l1_loss", "beta", BETAS
    torch_fn = staticmethod(F.smooth_l1_loss)

    @given(data=st.data(), n=st.integers(1, 10), beta=st.one_of(st.sampled_from(BETAS), st.floats(1e-3, 1e3)))
    def test_zero_iff_input_equals_target_and_symmetric(self, data, n, beta):
        check_zero_iff_equal_and_symmetric(losslab.smooth_l1_loss, "beta", beta, data, n)

    @pytest.mark.parametrize("reduction", REDUCTIONS)
    @pytest.mark.parametrize("beta", BETAS, ids=["1", "0.5", "1/9", "0"])
    @pytest.mark.parametrize("dtype", [F64, F32])
    def test_matches_torch(self, dtype, beta, reduction):
        x, t = with_edges(beta, dtype)
        assert_matches_torch(value_and_grad(losslab.smooth_l1_loss, x, t, beta=beta, reduction=reduction),
                             value_and_grad(F.smooth_l1_loss, x, t, beta=beta, reduction=reduction), dtype)

    def test_default_beta_is_one_and_torchs(self):
        x, t = with_edges(1.0, F64, seed=40)
        assert_matches_torch(value_and_grad(losslab.smooth_l1_loss, x, t), value_and_grad(F.smooth_l1_loss, x, t), F64)

    @pytest.mark.parametrize("beta", BETAS, ids=["1", "0.5", "1/9", "0"])
    @pytest.mark.parametrize("dtype", [F64, F32])
    def test_derivative_at_the_edges(self, dtype, beta):
        b = torch.tensor(beta, dtype=dtype).item()  # beta as the dtype holds it
        x = torch.tensor([0.0, b, -b, 1e6, -1e6, 0.5 * b, -0.5 * b], dtype=dtype)
        t = torch.zeros_like(x)
        out, grad = unit_grad(losslab.smooth_l1_loss, x, t, beta=beta)
        theirs = unit_grad(F.smooth_l1_loss, x, t, beta=beta)
        assert_matches_torch((out, grad), theirs, dtype)
        # 0 at d = 0 (also for beta = 0: sign(0) = 0, as PyTorch's L1), sign(d) at |d| >= beta, d / beta inside
        if beta == 0:
            expected = [0.0, 0.0, 0.0, 1.0, -1.0, 0.0, 0.0]
        else:
            expected = [0.0, 1.0, -1.0, 1.0, -1.0, 0.5 * b / beta, -0.5 * b / beta]
        torch.testing.assert_close(grad, torch.tensor(expected, dtype=dtype), **TOLERANCES[dtype])
        # the loss is beta / 2 at d = +-beta (continuous there), |d| - beta / 2 far out
        torch.testing.assert_close(out[1:3].double(), torch.full((2,), 0.5 * b, dtype=F64), **TOLERANCES[dtype])
        torch.testing.assert_close(out[3:5].double(), torch.full((2,), 1e6 - 0.5 * b, dtype=F64), **TOLERANCES[dtype])

    @pytest.mark.parametrize("dtype", [F64, F32])
    def test_huge_residuals_have_finite_gradients(self, dtype):
        # d * d overflows float32 here: the quadratic branch must not leak inf or NaN into the gradient
        big = 1e30 if dtype == F32 else 1e200
        x = torch.tensor([big, -big, 3.0], dtype=dtype)
        t = torch.tensor([0.0, 0.0, 3.0], dtype=dtype)
        for beta in BETAS:
            out, grad = unit_grad(losslab.smooth_l1_loss, x, t, beta=beta)
            assert torch.isfinite(out).all() and torch.equal(grad, torch.tensor([1.0, -1.0, 0.0], dtype=dtype))
            assert_matches_torch((out, grad), unit_grad(F.smooth_l1_loss, x, t, beta=beta), dtype)

    @pytest.mark.parametrize("reduction", REDUCTIONS)
    @pytest.mark.parametrize("dtype", [F64, F32])
    def test_beta_zero_is_l1(self, dtype, reduction):
        x, t = with_edges(0.0, dtype, seed=41)
        ours = value_and_grad(losslab.smooth_l1_loss, x, t, beta=0.0, reduction=reduction)
        assert_matches_torch(ours, value_and_grad(F.l1_loss, x, t, reduction=reduction), dtype)
        assert_matches_torch(ours, value_and_grad(F.smooth_l1_loss, x, t, beta=0.0, reduction=reduction), dtype)

    def test_mmdetection_beta(self):
        # mmdetection's default 1/9 (RPN / Faster R-CNN heads) with a per-box weight and num_pos as avg_factor
        x, t = logits(16, 4, seed=42, scale=0.3), logits(16, 4, seed=43, scale=0.3)
        w = (torch.rand(16, generator=gen(44), dtype=F64) < 0.5).to(F64)[:, None]
        ours = value_and_grad(losslab.smooth_l1_loss, x, t, beta=1 / 9, weight=w, avg_factor=w.sum())
        expected = value_and_grad(lambda z: (F.smooth_l1_loss(z, t, beta=1 / 9, reduction="none") * w).sum() / w.sum(),
                                  x)
        assert_matches_torch(ours, expected, F64)

    @pytest.mark.parametrize("beta", [-1.0, -1e-300, float("nan"), float("inf"), -float("inf")])
    def test_bad_beta_is_a_value_error(self, beta):
        x, t = logits(4, 3, seed=45), logits(4, 3, seed=46)
        message = rf"^smooth_l1_loss: beta must be a finite number in \[0, inf\); got {re.escape(repr(beta))}$"
        with pytest.raises(ValueError, match=message):
            losslab.smooth_l1_loss(x, t, beta=beta)
        with pytest.raises(ValueError, match=message):
            losslab.SmoothL1Loss(beta=beta)
        with pytest.raises(ValueError, match=message):
            losslab.SmoothL1Loss()(x, t, beta=beta)

    @pytest.mark.parametrize("beta", ["1", None, True, torch.tensor(1.0)])
    def test_non_numeric_beta_is_a_type_error(self, beta):
        x, t = logits(4, 3, seed=47), logits(4, 3, seed=48)
        with pytest.raises(TypeError, match=r"^smooth_l1_loss: beta must be a real number; got "):
            losslab.smooth_l1_loss(x, t, beta=beta)

    @given(data=st.data(), n=st.integers(1, 12),
           beta=st.one_of(st.sampled_from(BETAS), st.floats(1e-6, 10.0)))
    def test_between_l1_minus_half_beta_and_l1(self, data, n, beta):
        x = torch.tensor(data.draw(st.lists(st.floats(-1e6, 1e6), min_size=n, max_size=n)), dtype=F64)
        t = torch.tensor(data.draw(st.lists(st.floats(-1e6, 1e6), min_size=n, max_size=n)), dtype=F64)
        out, grad = unit_grad(losslab.smooth_l1_loss, x, t, beta=beta)
        l1 = F.l1_loss(x, t, reduction="none")
        slack = 4 * torch.finfo(F64).eps * l1  # |d| - beta / 2 is rounded once
        assert torch.all(out >= 0) and torch.all(out <= l1)
        assert torch.all(l1 <= out + beta / 2 + slack)
        # the derivative is in [-1, 1]: d / beta inside (rounded), sign(d) outside
        assert torch.all(grad.abs() <= 1 + 4 * torch.finfo(F64).eps)


# ----------------------------------------------------------------------------


class TestHuberLoss(_ElementwiseLoss):
    name, param, values = "huber_loss", "delta", DELTAS
    torch_fn = staticmethod(F.huber_loss)

    @given(data=st.data(), n=st.integers(1, 10), delta=st.one_of(st.sampled_from(DELTAS), st.floats(1e-3, 1e3)))
    def test_zero_iff_input_equals_target_and_symmetric(self, data, n, delta):
        check_zero_iff_equal_and_symmetric(losslab.huber_loss, "delta", delta, data, n)

    @pytest.mark.parametrize("reduction", REDUCTIONS)
    @pytest.mark.parametrize("delta", DELTAS)
    @pytest.mark.parametrize("dtype", [F64, F32])
    def test_matches_torch(self, dtype, delta, reduction):
        x, t = with_edges(delta, dtype, seed=50)
        assert_matches_torch(value_and_grad(losslab.huber_loss, x, t, delta=delta, reduction=reduction),
                             value_and_grad(F.huber_loss, x, t, delta=delta, reduction=reduction), dtype)

    def test_default_delta_is_one_and_torchs(self):
        x, t = with_edges(1.0, F64, seed=51)
        assert_matches_torch(value_and_grad(losslab.huber_loss, x, t), value_and_grad(F.huber_loss, x, t), F64)

    @pytest.mark.parametrize("delta", DELTAS)
    @pytest.mark.parametrize("dtype", [F64, F32])
    def test_derivative_at_the_edges(self, dtype, delta):
        dl = torch.tensor(delta, dtype=dtype).item()
        x = torch.tensor([0.0, dl, -dl, 1e6, -1e6, 0.5 * dl, -0.5 * dl], dtype=dtype)
        t = torch.zeros_like(x)
        out, grad = unit_grad(losslab.huber_loss, x, t, delta=delta)
        assert_matches_torch((out, grad), unit_grad(F.huber_loss, x, t, delta=delta), dtype)
        expected = [0.0, delta, -delta, delta, -delta, 0.5 * dl, -0.5 * dl]
        torch.testing.assert_close(grad, torch.tensor(expected, dtype=dtype), **TOLERANCES[dtype])
        torch.testing.assert_close(out[1:3].double(), torch.full((2,), 0.5 * dl * dl, dtype=F64), **TOLERANCES[dtype])

    @pytest.mark.parametrize("dtype", [F64, F32])
    def test_huge_residuals_have_finite_gradients(self, dtype):
        big = 1e30 if dtype == F32 else 1e200
        x = torch.tensor([big, -big, 3.0], dtype=dtype)
        t = torch.tensor([0.0, 0.0, 3.0], dtype=dtype)
        for delta in DELTAS:
            out, grad = unit_grad(losslab.huber_loss, x, t, delta=delta)
            assert torch.isfinite(out).all() and torch.isfinite(grad).all()
            assert_matches_torch((out, grad), unit_grad(F.huber_loss, x, t, delta=delta), dtype)

    @pytest.mark.parametrize("reduction", REDUCTIONS)
    @pytest.mark.parametrize("delta", DELTAS + (1 / 9, 1e-3, 40.0))
    def test_is_delta_times_smooth_l1(self, delta, reduction):
        x, t = with_edges(delta, F64, seed=52)
        w = torch.rand(17, 9, generator=gen(53), dtype=F64)
        for kwargs in ({}, {"weight": w, "avg_factor": 25.0}):
            huber = value_and_grad(losslab.huber_loss, x, t, delta=delta, reduction=reduction, **kwargs)
            smooth = value_and_grad(losslab.smooth_l1_loss, x, t, beta=delta, reduction=reduction, **kwargs)
            torch.testing.assert_close(huber[0], delta * smooth[0], **EXACT)
            torch.testing.assert_close(huber[1], delta * smooth[1], **EXACT)

    @pytest.mark.parametrize("delta", [0.0, -0.0, -1.0, float("nan"), float("inf")])
    def test_delta_must_be_positive(self, delta):
        x, t = logits(4, 3, seed=54), logits(4, 3, seed=55)
        message = rf"^huber_loss: delta must be a finite number in \(0, inf\); got {re.escape(repr(delta))}$"
        with pytest.raises(ValueError, match=message):
            losslab.huber_loss(x, t, delta=delta)
        with pytest.raises(ValueError, match=message):
            losslab.HuberLoss(delta=delta)
        with pytest.raises(ValueError, match=message):
            losslab.HuberLoss()(x, t, delta=delta)

    @pytest.mark.parametrize("delta", ["1", None, False, torch.tensor(1.0)])
    def test_non_numeric_delta_is_a_type_error(self, delta):
        x, t = logits(4, 3, seed=56), logits(4, 3, seed=57)
        with pytest.raises(TypeError, match=r"^huber_loss: delta must be a real number; got "):
            losslab.huber_loss(x, t, delta=delta)

    @given(data=st.data(), n=st.integers(1, 12), delta=st.one_of(st.sampled_from(DELTAS), st.floats(1e-3, 1e3)))
    def test_between_linear_and_quadratic_bounds(self, data, n, delta):
        x = torch.tensor(data.draw(st.lists(st.floats(-1e6, 1e6), min_size=n, max_size=n)), dtype=F64)
        t = torch.tensor(data.draw(st.lists(st.floats(-1e6, 1e6), min_size=n, max_size=n)), dtype=F64)
        out, grad = unit_grad(losslab.huber_loss, x, t, delta=delta)
        a = (x - t).abs()
        slack = 4 * torch.finfo(F64).eps * (delta * a + 0.5 * a * a)
        assert torch.all(out >= 0)
        assert torch.all(out <= delta * a + slack) and torch.all(out <= 0.5 * a * a + slack)
        assert torch.all(delta * a - 0.5 * delta * delta <= out + slack)
        assert torch.all(grad.abs() <= delta)

