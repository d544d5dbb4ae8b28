"""Per-class weights: class_weights and class_counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import losslab

from .helpers import assert_close_np
from .reference import ref_class_weights

F64 = torch.float64
METHODS = ("inverse", "inverse_sqrt", "effective_number", "median_frequency")
NORMALIZE = ("sum", "mean", None)

COUNTS = {
    "imbalanced": [900, 90, 10],
    "with-zeros": [0, 5, 120, 0, 33],
    "even-C": [4, 1, 7, 2],
    "single": [17],
    "large": [10**6, 3 * 10**5, 12, 1],
    "fractional": [2.5, 0.5, 10.25],
}


class TestClassWeights:
    @pytest.mark.parametrize("normalize", NORMALIZE)
    @pytest.mark.parametrize("method", METHODS)
    @pytest.mark.parametrize("counts", list(COUNTS), ids=list(COUNTS))
    @pytest.mark.parametrize("beta", [0.9, 0.999])
    def test_matches_reference(self, counts, method, normalize, beta):
        n = COUNTS[counts]
        expected = ref_class_weights(n, method, beta, normalize)
        got = losslab.class_weights(torch.tensor(n, dtype=F64), method=method, beta=beta, normalize=normalize)
        assert got.dtype == F64 and got.shape == (len(n),)
        assert_close_np(got, expected, F64)
        # a sequence gives the same values (in the default dtype)
        got_list = losslab.class_weights(n, method=method, beta=beta, normalize=normalize)
        assert got_list.dtype == torch.get_default_dtype()
        assert_close_np(got_list, expected, torch.float32)

    def test_known_values(self):
        # the docstring's examples, and the formulas by hand
        inverse = torch.tensor([1 / 900, 1 / 90, 1 / 10])
        torch.testing.assert_close(losslab.class_weights(torch.tensor([900, 90, 10])), inverse / inverse.mean())
        torch.testing.assert_close(losslab.class_weights(torch.tensor([900, 90, 10]), normalize="sum"),
                                   inverse / inverse.sum())
        torch.testing.assert_close(
            losslab.class_weights([900, 90, 10], method="effective_number", beta=0.99, normalize="mean"),
            torch.tensor([0.2284, 0.3836, 2.3880]), atol=1e-4, rtol=0)
        torch.testing.assert_close(
            losslab.class_weights(torch.tensor([4.0, 1.0, 16.0], dtype=F64), method="inverse_sqrt", normalize=None),
            torch.tensor([0.5, 1.0, 0.25], dtype=F64))
        # median of an even C is the mean of the two middle counts: median(1, 2, 4, 7) = 3
        torch.testing.assert_close(
            losslab.class_weights(torch.tensor([4.0, 1.0, 7.0, 2.0], dtype=F64), method="median_frequency",
                                  normalize=None),
            torch.tensor([3 / 4, 3.0, 3 / 7, 3 / 2], dtype=F64))

    @pytest.mark.parametrize("method", METHODS)
    def test_normalisations(self, method):
        n = torch.tensor([50.0, 3.0, 700.0, 21.0], dtype=F64)
        raw = losslab.class_weights(n, method=method, normalize=None)
        by_sum = losslab.class_weights(n, method=method, normalize="sum")
        by_mean = losslab.class_weights(n, method=method, normalize="mean")
        torch.testing.assert_close(by_sum.sum(), torch.tensor(1.0, dtype=F64))
        torch.testing.assert_close(by_mean.mean(), torch.tensor(1.0, dtype=F64))
        torch.testing.assert_close(by_sum, raw / raw.sum())
        torch.testing.assert_close(by_mean, by_sum * 4)
        # rarer classes never get less weight
        order = torch.argsort(n)
        assert torch.all(raw[order][:-1] >= raw[order][1:])

    @pytest.mark.parametrize("method", METHODS)
    def test_zero_count_is_treated_as_one(self, method):
        zero = losslab.class_weights(torch.tensor([0, 5, 40, 0]), method=method, normalize=None)
        one = losslab.class_weights(torch.tensor([1, 5, 40, 1]), method=method, normalize=None)
        assert torch.isfinite(zero).all()
        torch.testing.assert_close(zero, one)

    def test_beta_edge_cases(self):
        n = torch.tensor([1000.0, 10.0, 1.0], dtype=F64)
        # beta = 0: every effective number is 1, so the weights are uniform
        torch.testing.assert_close(losslab.class_weights(n, method="effective_number", beta=0.0),
                                   torch.ones(3, dtype=F64))
        torch.testing.assert_close(losslab.class_weights(n, method="effective_number", beta=0.0, normalize="sum"),
                                   torch.full((3,), 1 / 3, dtype=F64))
        torch.testing.assert_close(losslab.class_weights(n, method="effective_number", beta=0.0, normalize=None),
                                   torch.ones(3, dtype=F64))
        # beta -> 1: tends to inverse frequency (accurate with beta very close to 1)
        near_one = losslab.class_weights(n, method="effective_number", beta=1 - 1e-12)
        torch.testing.assert_close(near_one, losslab.class_weights(n, method="inverse"), rtol=1e-6, atol=0)
        # count 1: (1 - beta) / (1 - beta) = 1 whatever beta
        assert losslab.class_weights(torch.tensor([1.0], dtype=F64), method="effective_number", beta=0.5,
                                     normalize=None).item() == pytest.approx(1.0)

    def test_dtypes_and_no_mutation(self):
        ints = torch.tensor([3, 0, 9])
        before = ints.clone()
        assert losslab.class_weights(ints).dtype == torch.get_default_dtype()
        assert torch.equal(ints, before)
        assert losslab.class_weights(torch.tensor([3.0, 1.0], dtype=torch.float64)).dtype == torch.float64
        assert losslab.class_weights(torch.tensor([3.0, 1.0], dtype=torch.float16)).dtype == torch.float16

    def test_usable_as_alpha(self):
        target = torch.tensor([0, 0, 0, 0, 1, 2, 2, 0])
        alpha = losslab.class_weights(losslab.class_counts(target, 3))
        torch.testing.assert_close(alpha, torch.tensor([1 / 5, 1 / 1, 1 / 2]) / ((1 / 5 + 1 + 1 / 2) / 3))
        x = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
        loss = losslab.balanced_cross_entropy(x, target, alpha=alpha)
        assert torch.isfinite(loss)

    # errors -------------------------------------------------------------------

    @pytest.mark.parametrize("counts, kwargs, error, match", [
        ([3, -1, 2], {}, ValueError, r"class_weights: counts must be finite and non-negative; got \[3.0, -1.0, 2.0\]"),
        ([3.0, float("nan")], {}, ValueError, r"class_weights: counts must be finite and non-negative"),
        ([3.0, float("inf")], {}, ValueError, r"class_weights: counts must be finite and non-negative"),
        ([3, 2], {"method": "inverse_log"}, ValueError,
         r"class_weights: method must be one of 'inverse', 'inverse_sqrt', 'effective_number', "
         r"'median_frequency'; got 'inverse_log'"),
        ([3, 2], {"normalize": "max"}, ValueError,
         r"class_weights: normalize must be 'sum', 'mean' or None; got 'max'"),
        ([3, 2], {"method": "effective_number", "beta": 1.0}, ValueError,
         r"class_weights: beta must be a finite number in \[0, 1\); got 1.0"),
        ([3, 2], {"method": "effective_number", "beta": -0.1}, ValueError,
         r"class_weights: beta must be a finite number in \[0, 1\); got -0.1"),
        ([3, 2], {"method": "effective_number", "beta": "0.9"}, TypeError,
         r"class_weights: beta must be a real number"),
        ([], {}, ValueError, r"class_weights: counts must have shape \(C,\) with C >= 1; got \(0,\)"),
        ("abc", {}, TypeError, r"class_weights: counts must be a tensor, an array or a sequence of numbers"),
        ([1, "2"], {}, TypeError, r"class_weights: counts must be a tensor, an array or a sequence of numbers"),
        (None, {}, TypeError, r"class_weights: counts must be a tensor, an array or a sequence of numbers"),
    ])
    def test_errors(self, counts, kwargs, error, match):
        with pytest.raises(error, match=match):
            losslab.class_weights(counts, **kwargs)

    def test_tensor_errors(self):
        with pytest.raises(ValueError, match=r"class_weights: counts must have shape \(C,\) with C >= 1; got \(2, 2\)"):
            losslab.class_weights(torch.ones(2, 2))
        with pytest.raises(ValueError, match=r"class_weights: counts must have shape \(C,\) with C >= 1; got \(\)"):
            losslab.class_weights(torch.tensor(3.0))
        with pytest.raises(ValueError, match=r"class_weights: counts must be finite and non-negative"):
            losslab.class_weights(torch.tensor([1, -2, 3]))
        with pytest.raises(TypeError, match=r"class_weights: counts must be a real tensor; got dtype torch.bool"):
            losslab.class_weights(torch.tensor([True, False]))


def test_default_weights_average_one_as_the_lab_uses_them():
    # regression: class_weights() summed to 1 while the lab averaged to 1; one default now, the other an option
    from losslab.lab._losses import resolve_class_weights

    counts = [500, 200, 50, 20, 5]
    weights = losslab.class_weights(counts)
    assert float(weights.mean()) == pytest.approx(1.0)
    assert float(losslab.class_weights(counts, normalize="sum").sum()) == pytest.approx(1.0)
    torch.testing.assert_close(resolve_class_weights("inverse", counts, caller="t", key="alpha"), weights)
    # the mean of 1 keeps a weighted loss on cross-entropy's scale: equal counts give cross-entropy itself
    x, y = torch.randn(6, 3, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 0, 1, 2])
    torch.testing.assert_close(losslab.cross_entropy(x, y, weight=losslab.class_weights([4, 4, 4])),
                               losslab.cross_entropy(x, y))


@pytest.mark.parametrize("make", [lambda: torch.empty(3, device="meta"),
                                  lambda: torch.tensor([3.0, 0.0, 1.0]).to_sparse()], ids=["meta", "sparse"])
def test_class_weights_of_a_tensor_without_values(make):
    with pytest.raises(TypeError, match=r"^class_weights: counts must (hold values; got a tensor on the meta device"
                                        r"|be a dense tensor; got layout sparse_coo)"):
        losslab.class_weights(make())


@pytest.mark.parametrize("make", [lambda: torch.zeros(4, dtype=torch.long, device="meta"),
                                  lambda: torch.tensor([0, 1, 1, 0]).to_sparse()], ids=["meta", "sparse"])
def test_class_counts_of_a_tensor_without_values(make):
    with pytest.raises(TypeError, match=r"^class_counts: target must (hold values; got a tensor on the meta device"
                                        r"|be a dense tensor; got layout sparse_coo)"):
        losslab.class_counts(make(), 2)


class TestClassCounts:
    def test_counts(self):
        t = torch.tensor([[0, 2, 2], [3, 2, 0]])
        counts = losslab.class_counts(t, 5)
        assert counts.dtype == torch.int64
        assert torch.equal(counts, torch.tensor([2, 0, 3, 1, 0]))
        assert int(counts.sum()) == t.numel()

    @pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8])
    def test_integer_dtypes(self, dtype):
        t = torch.tensor([1, 1, 0, 3], dtype=dtype)
        assert torch.equal(losslab.class_counts(t, 4), torch.tensor([1, 2, 0, 1]))

    def test_ignore_index(self):
        t = torch.tensor([0, 0, 2, -100, 2, 2])
        assert torch.equal(losslab.class_counts(t, 4, ignore_index=-100), torch.tensor([2, 0, 3, 0]))
        # an ignore_index that is a class drops that class
        assert torch.equal(losslab.class_counts(torch.tensor([0, 1, 1, 2]), 3, ignore_index=1),
                           torch.tensor([1, 0, 1]))
        # everything ignored, or nothing to count
        assert torch.equal(losslab.class_counts(torch.full((3,), 255), 2, ignore_index=255),
                           torch.zeros(2, dtype=torch.long))
        assert torch.equal(losslab.class_counts(torch.zeros(0, dtype=torch.long), 3), torch.zeros(3, dtype=torch.long))

    def test_agrees_with_numpy(self):
        t = torch.randint(0, 6, (7, 5, 3), generator=torch.Generator().manual_seed(3))
        t[0, 0] = -1
        expected = np.bincount(t.numpy()[t.numpy() != -1], minlength=6)
        np.testing.assert_array_equal(losslab.class_counts(t, 6, ignore_index=-1).numpy(), expected)

    @pytest.mark.parametrize("target, num_classes, kwargs, error, match", [
        (torch.tensor([0, 5, 1]), 3, {}, ValueError, r"class_counts: target class indices must be in \[0, 3\); got 5"),
        (torch.tensor([0, -1, 1]), 3, {}, ValueError,
         r"class_counts: target class indices must be in \[0, 3\); got -1"),
        (torch.tensor([0, -100, 3]), 3, {"ignore_index": -100}, ValueError,
         r"class_counts: target class indices must be in \[0, 3\); got 3"),
        (torch.tensor([0.0, 1.0]), 3, {}, TypeError,
         r"class_counts: target must be an integer tensor of class indices"),
        (torch.tensor([True]), 3, {}, TypeError, r"class_counts: target must be an integer tensor"),
        ([0, 1], 3, {}, TypeError, r"class_counts: target must be an integer tensor"),
        (torch.tensor([0]), 0, {}, ValueError, r"class_counts: num_classes must be >= 1; got 0"),
        (torch.tensor([0]), 2.0, {}, TypeError, r"class_counts: num_classes must be an int"),
        (torch.tensor([0]), True, {}, TypeError, r"class_counts: num_classes must be an int"),
        (torch.tensor([0]), 2, {"ignore_index": 1.5}, TypeError, r"class_counts: ignore_index must be an int or None"),
    ])
    def test_errors(self, target, num_classes, kwargs, error, match):
        with pytest.raises(error, match=match):
            losslab.class_counts(target, num_classes, **kwargs)

    def test_range_is_checked_even_with_checks_off(self):
        # counting reads the values anyway, so set_checks(False) does not skip the range check
        losslab.set_checks(False)
        with pytest.raises(ValueError, match=r"class_counts: target class indices must be in \[0, 3\); got 5"):
            losslab.class_counts(torch.tensor([0, 5]), 3)


class TestClassWeightsInputs:
    def test_beta_is_only_checked_where_it_is_used(self):
        np.testing.assert_allclose(losslab.class_weights([4, 1], beta=1.0).numpy(), [0.4, 1.6], rtol=1e-6)

    def test_numpy_counts(self):
        from_numpy = losslab.class_weights(np.array([900, 90, 10]), method="inverse_sqrt")
        from_list = losslab.class_weights([900, 90, 10], method="inverse_sqrt")
        assert from_numpy.dtype == torch.get_default_dtype()
        torch.testing.assert_close(from_numpy, from_list)


def test_bytes_are_not_counts():
    with pytest.raises(TypeError, match=r"class_weights: counts must be"):
        losslab.class_weights(b"abc")
