"""The lab's data (long-tail profile, Digits-LT split, .npz/.csv loaders) and metrics, against independent references.

References are written here from the formulas and the docstrings: the long-tail profile in 60-digit decimal
arithmetic, the calibration error with explicit bin edges, the classification metrics from scikit-learn.
Known defects are ``xfail(strict=True)`` with the reason spelled out, so that a fix turns them into failures
that ask for the marker to be removed.
"""

from __future__ import annotations

import math
import re
import warnings
from decimal import Decimal, localcontext

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("sklearn")

from sklearn.metrics import (  # noqa: E402
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    recall_score,
)

from losslab.lab._data import (  # noqa: E402
    DataError,
    Dataset,
    Split,
    digits_lt,
    load_csv,
    load_dataset,
    load_npz,
    long_tail_counts,
    split_dataset,
)
from losslab.lab._metrics import (  # noqa: E402
    SCALAR_METRICS,
    evaluate,
    expected_calibration_error,
    shot_groups,
)

# ----------------------------------------------------------------------------
# independent references


def long_tail_reference(n_max: int, num_classes: int, rho: float) -> list[tuple[int, ...]]:
    """The admissible values of each n_c = floor(n_max * rho^(-c/(C-1))), computed in 60-digit decimals.

    Where the exact value is an integer k the decimal power may land a hair below k, so both k - 1 and k
    are admissible within 1e-6 of an integer; elsewhere the floor is the only answer.
    """
    if num_classes == 1:
        return [(n_max,)]
    out = []
    with localcontext() as ctx:
        ctx.prec = 60
        for c in range(num_classes):
            value = Decimal(n_max) * Decimal(rho) ** (Decimal(-c) / Decimal(num_classes - 1))
            nearest = int(value.to_integral_value())
            if abs(value - nearest) < Decimal("1e-6"):
                options = {max(1, nearest - 1), max(1, nearest)} if value < nearest else {max(1, nearest)}
            else:
                options = {max(1, math.floor(value))}
            out.append(tuple(sorted(options)))
    return out


def ece_reference(confidence, correct, bins: int = 15) -> float:
    """ECE with the bins ((b-1)/bins, b/bins] found by comparison against the edges k/bins (first bin closed)."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    if len(confidence) == 0:
        return 0.0
    edges = np.array([k / bins for k in range(bins + 1)])
    total = 0.0
    for b in range(1, bins + 1):
        lower, upper = edges[b - 1], edges[b]
        member = (confidence > lower) & (confidence <= upper)
        if b == 1:
            member |= confidence == 0.0
        if member.any():
            total += member.sum() / len(confidence) * abs(correct[member].mean() - confidence[member].mean())
    return total


def indexed_dataset(counts, *, seed: int = 0, extra_features: int = 2, name: str = "synthetic") -> Dataset:
    """A Dataset whose first feature is the row index (exact in float32), shuffled labels with the given counts."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.repeat(np.arange(len(counts)), counts)).astype(np.int64)
    n = len(y)
    x = np.column_stack([np.arange(n, dtype=np.float64), rng.normal(size=(n, extra_features)) * 3 + 5])
    return Dataset(x, y, tuple(f"c{c}" for c in range(len(counts))), name, "test")


def rows_of(split: Split) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the training and test examples of a split of an indexed_dataset, standardize=False."""
    return split.x_train[:, 0].astype(np.int64), split.x_test[:, 0].astype(np.int64)


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return digits_lt()


# ----------------------------------------------------------------------------
# long_tail_counts


class TestLongTailCounts:
    def test_cifar_lt_profile(self):
        # floor(124 * 20^(-c/9)): 124, 88.89, 63.72, 45.68, 32.75, 23.48, 16.83, 12.06, 8.65, 6.2
        assert long_tail_counts(124, 10, 20.0) == [124, 88, 63, 45, 32, 23, 16, 12, 8, 6]
        # CIFAR-10-LT with imbalance 100: 5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50
        assert long_tail_counts(5000, 10, 100.0) == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]

    def test_exact_integer_values_are_not_floored_down(self):
        # 100 * 8^(-1/3) = 50 and 100 * 8^(-2/3) = 25 exactly; the float power lands a hair below.
        assert long_tail_counts(100, 4, 8.0) == [100, 50, 25, 12]
        assert long_tail_counts(81, 5, 81.0) == [81, 27, 9, 3, 1]

    @given(n_max=st.integers(1, 20_000), num_classes=st.integers(1, 40),
           rho=st.floats(1.0, 1000.0, allow_nan=False, allow_infinity=False))
    def test_against_decimal_reference(self, n_max, num_classes, rho):
        counts = long_tail_counts(n_max, num_classes, rho)
        assert len(counts) == num_classes
        assert all(type(n) is int for n in counts)
        for got, admissible in zip(counts, long_tail_reference(n_max, num_classes, rho), strict=True):
            assert got in admissible

    @given(n_max=st.integers(1, 20_000), num_classes=st.integers(1, 40),
           rho=st.floats(1.0, 1000.0, allow_nan=False, allow_infinity=False))
    def test_shape_of_the_profile(self, n_max, num_classes, rho):
        counts = long_tail_counts(n_max, num_classes, rho)
        assert counts[0] == n_max
        assert all(a >= b for a, b in zip(counts[:-1], counts[1:], strict=True))
        assert min(counts) >= 1

    @given(n_max=st.integers(2, 20_000), num_classes=st.integers(2, 40), rho=st.floats(1.0, 500.0))
    def test_head_to_tail_ratio_is_about_rho(self, n_max, num_classes, rho):
        counts = long_tail_counts(n_max, num_classes, rho)
        ratio = counts[0] / counts[-1]
        if n_max / rho >= 2:  # the tail is floor(n_max / rho): rho <= ratio <= n_max / (n_max / rho - 1)
            assert rho * (1 - 1e-9) <= ratio <= n_max / (n_max / rho - 1) * (1 + 1e-9)
        else:  # the tail is floor(n_max / rho) clamped to one example (two when n_max / rho rounds up to 2)
            assert counts[-1] in (1, 2) and ratio < 2 * rho * (1 + 1e-9)

    @pytest.mark.parametrize("num_classes", [1, 2, 5, 10])
    def test_rho_one_is_balanced(self, num_classes):
        assert long_tail_counts(37, num_classes, 1.0) == [37] * num_classes
        assert long_tail_counts(37, num_classes, 1) == [37] * num_classes

    def test_one_class(self):
        assert long_tail_counts(7, 1, 50.0) == [7]

    def test_every_class_keeps_one_example(self):
        assert long_tail_counts(3, 6, 1000.0) == [3, 1, 1, 1, 1, 1]

    @pytest.mark.parametrize("rho", [0.999, 0.0, -2.0, float("nan"), float("inf"), -float("inf"), "20", None])
    def test_bad_rho(self, rho):
        with pytest.raises(ValueError, match=r"^long_tail_counts: rho must be a finite number >= 1"):
            long_tail_counts(10, 4, rho)

    @pytest.mark.parametrize("num_classes", [0, -1])
    def test_bad_num_classes(self, num_classes):
        message = rf"^long_tail_counts: num_classes must be a positive integer; got {num_classes}$"
        with pytest.raises(ValueError, match=message):
            long_tail_counts(10, num_classes, 2.0)

    @pytest.mark.parametrize("rho", [np.float32(20.0), np.int64(20)])
    def test_numpy_scalar_rho(self, rho):
        assert long_tail_counts(124, 10, rho) == [124, 88, 63, 45, 32, 23, 16, 12, 8, 6]

    @pytest.mark.parametrize(("n_max", "num_classes"), [(0, 3), (0, 1), (-5, 3)])
    def test_bad_n_max(self, n_max, num_classes):
        with pytest.raises(ValueError, match="long_tail_counts: n_max"):
            long_tail_counts(n_max, num_classes, 2.0)


# ----------------------------------------------------------------------------
# digits_lt and split_dataset


class TestDigits:
    def test_the_data_set(self, digits):
        assert digits.x.shape == (1797, 64) and digits.x.dtype == np.float64
        assert digits.y.shape == (1797,) and digits.y.dtype == np.int64
        assert digits.class_names == tuple(str(c) for c in range(10))
        assert digits.num_classes == 10
        assert digits.name == "Digits-LT"
        np.testing.assert_array_equal(digits.counts(), [178, 182, 177, 183, 181, 182, 181, 179, 174, 180])

    def test_default_split(self, digits):
        split = split_dataset(digits)
        rarest = int(digits.counts().min())
        test_per_class = min(50, rarest // 4)  # 43
        assert split.test_per_class == test_per_class == 43
        np.testing.assert_array_equal(split.test_counts(), [test_per_class] * 10)
        np.testing.assert_array_equal(split.train_counts(), long_tail_counts(rarest - test_per_class, 10, 20.0))
        assert split.rho == 20.0 and split.seed == 0 and split.name == "Digits-LT"
        assert split.x_train.dtype == split.x_test.dtype == np.float32
        assert split.y_train.dtype == split.y_test.dtype == np.int64
        assert split.x_train.shape == (len(split.y_train), 64) and split.x_test.shape == (430, 64)
        assert split.info == {"source": "sklearn.datasets.load_digits", "examples": 1797, "features": 64}

    @pytest.mark.parametrize(("rho", "test_per_class"), [(20.0, 50), (100.0, 30), (10, 1), (1.5, 80)])
    def test_train_counts_follow_the_profile(self, digits, rho, test_per_class):
        split = split_dataset(digits, rho=rho, test_per_class=test_per_class, seed=3)
        pool = digits.counts() - test_per_class
        np.testing.assert_array_equal(split.test_counts(), [test_per_class] * 10)
        np.testing.assert_array_equal(split.train_counts(), long_tail_counts(int(pool.min()), 10, rho))

    def test_no_overlap_by_row_identity(self, digits):
        tagged = Dataset(np.column_stack([digits.x, np.arange(len(digits.y))]), digits.y, digits.class_names,
                         digits.name, digits.source)
        split = split_dataset(tagged, seed=5, standardize=False)
        train, test = split.x_train[:, -1].astype(np.int64), split.x_test[:, -1].astype(np.int64)
        assert len(np.unique(train)) == len(train) and len(np.unique(test)) == len(test)
        assert not set(train) & set(test)
        np.testing.assert_array_equal(split.y_train, digits.y[train])
        np.testing.assert_array_equal(split.y_test, digits.y[test])
        np.testing.assert_array_equal(split.x_train[:, :-1], digits.x[train])
        np.testing.assert_array_equal(split.x_test[:, :-1], digits.x[test])

    def test_standardised_with_training_statistics_only(self, digits):
        raw = split_dataset(digits, seed=2, standardize=False)
        split = split_dataset(digits, seed=2)
        mean = raw.x_train.astype(np.float64).mean(axis=0)
        std = raw.x_train.astype(np.float64).std(axis=0)
        constant = std <= 1e-12
        assert constant.any()  # digits' blank corners
        np.testing.assert_allclose(split.x_train.mean(axis=0), 0.0, atol=1e-5)
        np.testing.assert_allclose(split.x_train.std(axis=0)[~constant], 1.0, rtol=1e-4)
        np.testing.assert_array_equal(split.x_train[:, constant], 0.0)
        assert np.isfinite(split.x_train).all() and np.isfinite(split.x_test).all()
        expected_test = (raw.x_test - mean) / np.where(constant, 1.0, std)
        np.testing.assert_allclose(split.x_test, expected_test, rtol=1e-5, atol=1e-5)
        # the test set's own statistics are not the ones used
        full = np.concatenate([raw.x_train, raw.x_test]).astype(np.float64)
        assert not np.allclose(split.x_test, (raw.x_test - full.mean(0)) / np.where(constant, 1.0, full.std(0)),
                               atol=1e-3)

    def test_determinism(self, digits):
        a, b = split_dataset(digits, seed=11), split_dataset(digits, seed=11)
        for name in ("x_train", "y_train", "x_test", "y_test"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        c = split_dataset(digits, seed=12)
        assert not np.array_equal(a.y_train, c.y_train)
        assert not np.array_equal(a.x_test, c.x_test)

    def test_rho_one_keeps_the_whole_pool(self, digits):
        tagged = Dataset(np.column_stack([digits.x, np.arange(len(digits.y))]), digits.y, digits.class_names,
                         digits.name)
        split = split_dataset(tagged, rho=1, test_per_class=20, standardize=False)
        np.testing.assert_array_equal(split.train_counts(), digits.counts() - 20)
        rows = np.concatenate([split.x_train[:, -1], split.x_test[:, -1]]).astype(np.int64)
        np.testing.assert_array_equal(np.sort(rows), np.arange(len(digits.y)))

    def test_test_per_class_too_large(self, digits):
        # the rarest class is '8' with 174 examples
        split_dataset(digits, test_per_class=173)
        with pytest.raises(DataError, match=r"^split_dataset: class '8' has 174 examples; holding out 174 per class "
                           r".*needs at least 175"):
            split_dataset(digits, test_per_class=174)

    @pytest.mark.parametrize("test_per_class", [0, -3, True, False, 5.0, "5", np.float64(5)])
    def test_bad_test_per_class(self, digits, test_per_class):
        with pytest.raises(DataError, match=r"^split_dataset: test_per_class must be a positive integer; "
                           "got " + re.escape(repr(test_per_class)) + "$"):
            split_dataset(digits, test_per_class=test_per_class)

    def test_numpy_integer_test_per_class(self, digits):
        split = split_dataset(digits, test_per_class=np.int64(10))
        assert split.test_per_class == 10 and type(split.test_per_class) is int

    @pytest.mark.parametrize("rho", [0.5, float("nan"), float("inf")])
    def test_bad_rho(self, digits, rho):
        with pytest.raises(ValueError, match="rho must be a finite number >= 1"):
            split_dataset(digits, rho=rho)

    def test_bad_rho_message_names_split_dataset(self, digits):
        with pytest.raises(ValueError, match=r"^split_dataset: rho"):
            split_dataset(digits, rho=0.5)


class TestSplitSynthetic:
    @given(counts=st.lists(st.integers(2, 40), min_size=1, max_size=6), data=st.data(),
           rho=st.one_of(st.just(1.0), st.floats(1.0, 50.0)), seed=st.integers(0, 2**32 - 1))
    def test_invariants(self, counts, data, rho, seed):
        test_per_class = data.draw(st.integers(1, min(counts) - 1))
        dataset = indexed_dataset(counts, seed=seed % 1000)
        split = split_dataset(dataset, rho=rho, test_per_class=test_per_class, seed=seed, standardize=False)
        train, test = rows_of(split)
        pool = np.array(counts) - test_per_class
        expected = pool if rho == 1 else long_tail_counts(int(pool.min()), len(counts), rho)
        np.testing.assert_array_equal(split.train_counts(), expected)
        np.testing.assert_array_equal(split.test_counts(), [test_per_class] * len(counts))
        assert len(set(train)) == len(train) and len(set(test)) == len(test) and not set(train) & set(test)
        np.testing.assert_array_equal(split.y_train, dataset.y[train])
        np.testing.assert_array_equal(split.y_test, dataset.y[test])
        np.testing.assert_array_equal(split.x_train, dataset.x[train].astype(np.float32))

    def test_constant_features_stay_finite(self):
        dataset = indexed_dataset([12, 9, 15])
        x = np.column_stack([dataset.x, np.full(len(dataset.y), 7.0), np.zeros(len(dataset.y))])
        split = split_dataset(Dataset(x, dataset.y, dataset.class_names, "c"), rho=2.0, test_per_class=3)
        assert np.isfinite(split.x_train).all() and np.isfinite(split.x_test).all()
        np.testing.assert_array_equal(split.x_train[:, -2:], 0.0)
        np.testing.assert_array_equal(split.x_test[:, -2:], 0.0)

    def test_default_test_per_class_is_a_quarter_of_the_rarest(self):
        split = split_dataset(indexed_dataset([40, 23, 60]), rho=2.0)
        assert split.test_per_class == 23 // 4
        split = split_dataset(indexed_dataset([400, 230, 600]), rho=2.0)
        assert split.test_per_class == 50

    def test_string_class_names_are_kept(self):
        dataset = indexed_dataset([10, 10])
        dataset = Dataset(dataset.x, dataset.y, ("cat", "dog"), "pets", "here")
        split = split_dataset(dataset, test_per_class=2)
        assert split.class_names == ("cat", "dog") and split.num_classes == 2 and split.name == "pets"

    def test_default_test_per_class_with_a_tiny_class(self):
        split = split_dataset(indexed_dataset([20, 3, 20]), rho=1)  # 3 // 4 = 0: the default is at least 1
        assert split.test_per_class == 1 and split.train_counts().tolist() == [19, 2, 19]
        with pytest.raises(DataError, match=r"class 'c1' has 1 example; .* needs at least 2 \(even one test example "
                                            r"per class is too many: give that class more examples or leave it out\)$"):
            split_dataset(indexed_dataset([20, 1, 20]))  # regression: it said "lower test_per_class", already 1
        with pytest.raises(DataError, match=r"class 'c1' has 3 examples; .* needs at least 4 \(lower test_per_class\)"):
            split_dataset(indexed_dataset([20, 3, 20]), test_per_class=3)


# ----------------------------------------------------------------------------
# load_npz


class TestLoadNpz:
    def test_good_file(self, tmp_path):
        rng = np.random.default_rng(0)
        x, y = rng.normal(size=(6, 3)).astype(np.float32), np.array([0, 1, 2, 1, 0, 2])
        path = tmp_path / "mine.npz"
        np.savez(path, x=x, y=y)
        data = load_npz(path)
        assert data.x.dtype == np.float64 and data.y.dtype == np.int64
        np.testing.assert_array_equal(data.x, x.astype(np.float64))
        np.testing.assert_array_equal(data.y, y)
        assert data.class_names == ("0", "1", "2") and data.name == "mine" and data.source == str(path)
        assert load_npz(str(path)).name == "mine"

    def test_images_are_flattened(self, tmp_path):
        x = np.arange(4 * 2 * 3, dtype=np.int16).reshape(4, 2, 3)
        np.savez(tmp_path / "img.npz", x=x, y=np.array([1, 0, 1, 0]))
        data = load_npz(tmp_path / "img.npz")
        assert data.x.shape == (4, 6)
        np.testing.assert_array_equal(data.x, x.reshape(4, 6))

    def test_integer_valued_float_labels(self, tmp_path):
        np.savez(tmp_path / "f.npz", x=np.ones((4, 2)), y=np.array([1.0, 0.0, 2.0, 1.0]))
        data = load_npz(tmp_path / "f.npz")
        assert data.y.dtype == np.int64
        np.testing.assert_array_equal(data.y, [1, 0, 2, 1])

    def test_string_labels_map_to_sorted_names(self, tmp_path):
        np.savez(tmp_path / "s.npz", x=np.ones((5, 2)), y=np.array(["cat", "ant", "bee", "cat", "ant"]))
        data = load_npz(tmp_path / "s.npz")
        assert data.class_names == ("ant", "bee", "cat")
        np.testing.assert_array_equal(data.y, [2, 0, 1, 2, 0])
        assert data.y.dtype == np.int64

    def test_custom_keys(self, tmp_path):
        np.savez(tmp_path / "k.npz", features=np.eye(3), labels=np.array([2, 0, 1]))
        data = load_npz(tmp_path / "k.npz", x_key="features", y_key="labels")
        np.testing.assert_array_equal(data.x, np.eye(3))
        np.testing.assert_array_equal(data.y, [2, 0, 1])

    def test_data_error_is_a_value_error(self):
        assert issubclass(DataError, ValueError)

    def test_missing_file(self, tmp_path):
        with pytest.raises(DataError, match=r"^load_npz: no such file: .*nope\.npz$"):
            load_npz(tmp_path / "nope.npz")

    def test_a_directory_is_not_a_file(self, tmp_path):
        with pytest.raises(DataError, match=r"^load_npz: no such file"):
            load_npz(tmp_path)

    @pytest.mark.parametrize("content", [b"garbage bytes\x00\x01\x02 not a zip", b"", b"PK\x03\x04 truncated zip"])
    def test_unreadable_file(self, tmp_path, content):
        path = tmp_path / "bad.npz"
        path.write_bytes(content)
        with pytest.raises(DataError, match=r"^load_npz: cannot read .*bad\.npz as a \.npz archive \("):
            load_npz(path)

    def test_a_plain_npy_file(self, tmp_path):
        path = tmp_path / "plain.npz"
        with open(path, "wb") as handle:
            np.save(handle, np.ones((3, 2)))
        with pytest.raises(DataError, match=r"^load_npz: cannot read .* as a \.npz archive"):
            load_npz(path)

    def test_missing_key_lists_the_keys(self, tmp_path):
        np.savez(tmp_path / "m.npz", x=np.ones((2, 2)), labels=np.array([0, 1]))
        with pytest.raises(DataError, match=r"^load_npz: .*m\.npz has no array 'y'; it holds \['labels', 'x'\]$"):
            load_npz(tmp_path / "m.npz")
        np.savez(tmp_path / "m2.npz", X=np.ones((2, 2)), y=np.array([0, 1]))
        with pytest.raises(DataError, match=r"has no array 'x'; it holds \['X', 'y'\]$"):
            load_npz(tmp_path / "m2.npz")

    @pytest.mark.parametrize(("x", "y", "message"), [
        (np.ones((5, 2)), np.array([0, 1, 0, 1]), r"labels must have shape \(5,\), one per row of the features; "
                                                   r"got shape \(4,\)"),
        (np.ones((4, 2)), np.array([[0], [1], [0], [1]]), r"labels must have shape \(4,\).*got shape \(4, 1\)"),
        (np.ones(4), np.array([0, 1, 0, 1]), r"features must have one row per example, shape \(N, D\); "
                                              r"got shape \(4,\)"),
        (np.array([["a", "b"], ["c", "d"]]), np.array([0, 1]), r"features must be real numbers; got dtype <U1"),
        (np.ones((2, 2), dtype=np.complex128), np.array([0, 1]), r"features must be real numbers; got dtype complex"),
        (np.array([[1.0, 2.0], [np.nan, 0.0], [1.0, np.inf]]), np.array([0, 1, 1]),
         r"features must be finite; rows \[1, 2\] hold NaN or inf"),
        (np.ones((3, 2)), np.array([0.0, 0.5, 1.0]), r"labels must be integers or names; got non-integer values "
                                                      r"such as \[0\.5\]"),
        (np.ones((3, 2)), np.array([0.0, np.nan, 1.0]), r"labels must be integers or names; got non-integer"),
        (np.ones((3, 2)), np.array([0, -1, 1]), r"integer labels must be class indices 0\.\.C-1; got -1$"),
        (np.ones((4, 2)), np.array([0, 1, 3, 1]), r"class 2 has no examples \(labels run 0\.\.3, and classes \[2\] "
                                                   r"never occur\)"),
        (np.ones((3, 2)), np.array([1, 2, 2]), r"class 0 has no examples"),
    ], ids=["y-length", "y-2d", "x-1d", "x-strings", "x-complex", "x-nan-inf", "y-fraction", "y-nan", "y-negative",
            "y-gap", "y-from-one"])
    def test_bad_arrays(self, tmp_path, x, y, message):
        np.savez(tmp_path / "bad.npz", x=x, y=y)
        with pytest.raises(DataError, match=r"^load_npz: " + message):
            load_npz(tmp_path / "bad.npz")

    def test_empty_one_dimensional_arrays(self, tmp_path):
        np.savez(tmp_path / "e.npz", x=np.empty(0), y=np.empty(0, dtype=np.int64))
        with pytest.raises(DataError, match=r"^load_npz: features must have one row per example"):
            load_npz(tmp_path / "e.npz")

    def test_empty_arrays(self, tmp_path):
        np.savez(tmp_path / "e.npz", x=np.empty((0, 3)), y=np.empty(0, dtype=np.int64))
        with pytest.raises(DataError, match=r"^load_npz: the data set is empty"):
            load_npz(tmp_path / "e.npz")


# ----------------------------------------------------------------------------
# load_csv


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


class TestLoadCsv:
    def test_numeric_labels(self, tmp_path):
        path = write(tmp_path / "num.csv", "f1,f2,label\n1.5,2,1\n-3,4e2,0\n0.25,  7 ,2\n")
        data = load_csv(path)
        np.testing.assert_array_equal(data.x, [[1.5, 2.0], [-3.0, 400.0], [0.25, 7.0]])
        np.testing.assert_array_equal(data.y, [1, 0, 2])
        assert data.x.dtype == np.float64 and data.y.dtype == np.int64
        assert data.class_names == ("0", "1", "2") and data.name == "num" and data.source == str(path)

    def test_float_written_integer_labels(self, tmp_path):
        data = load_csv(write(tmp_path / "f.csv", "a,label\n1,1.0\n2,0.0\n"))
        np.testing.assert_array_equal(data.y, [1, 0])
        assert data.class_names == ("0", "1")

    def test_string_labels(self, tmp_path):
        data = load_csv(write(tmp_path / "s.csv", "a,b,label\n1,2,dog\n3,4,cat\n5,6, dog \n7,8,emu\n"))
        assert data.class_names == ("cat", "dog", "emu")
        np.testing.assert_array_equal(data.y, [1, 0, 1, 2])

    def test_label_column_option(self, tmp_path):
        path = write(tmp_path / "t.csv", "target,a,label\n1,5,9\n0,6,8\n")
        data = load_csv(path, label_column="target")
        np.testing.assert_array_equal(data.y, [1, 0])
        np.testing.assert_array_equal(data.x, [[5, 9], [6, 8]])  # 'label' is an ordinary feature here

    def test_features_in_any_column_order(self, tmp_path):
        first = load_csv(write(tmp_path / "a.csv", "label,b,a\n0,1,2\n1,3,4\n"))
        middle = load_csv(write(tmp_path / "b.csv", "b,label,a\n1,0,2\n3,1,4\n"))
        last = load_csv(write(tmp_path / "c.csv", "b,a,label\n1,2,0\n3,4,1\n"))
        for data in (first, middle, last):
            np.testing.assert_array_equal(data.x, [[1, 2], [3, 4]])  # the header's order, the label left out
            np.testing.assert_array_equal(data.y, [0, 1])

    def test_header_cells_are_stripped(self, tmp_path):
        data = load_csv(write(tmp_path / "h.csv", " a , label \n1,0\n2,1\n"))
        np.testing.assert_array_equal(data.y, [0, 1])

    def test_blank_lines_are_ignored(self, tmp_path):
        data = load_csv(write(tmp_path / "b.csv", "\n\na,label\n\n1,0\n   \n,\n2,1\n\n"))
        np.testing.assert_array_equal(data.x, [[1], [2]])
        np.testing.assert_array_equal(data.y, [0, 1])

    def test_quoted_fields(self, tmp_path):
        data = load_csv(write(tmp_path / "q.csv", 'a,"b",label\n"1","2","big cat"\n3,4,dog\n'))
        np.testing.assert_array_equal(data.x, [[1, 2], [3, 4]])
        assert data.class_names == ("big cat", "dog")

    def test_missing_file(self, tmp_path):
        with pytest.raises(DataError, match=r"^load_csv: no such file: .*none\.csv$"):
            load_csv(tmp_path / "none.csv")

    def test_missing_label_column_lists_the_columns(self, tmp_path):
        path = write(tmp_path / "m.csv", "a,b,class\n1,2,0\n")
        with pytest.raises(DataError, match=r"^load_csv: .*m\.csv has no column 'label' \(the label column, "
                           r"--label-column\); its columns are \['a', 'b', 'class'\]$"):
            load_csv(path)
        with pytest.raises(DataError, match=r"has no column 'target'"):
            load_csv(path, label_column="target")

    def test_non_numeric_feature_names_column_and_line(self, tmp_path):
        path = write(tmp_path / "n.csv", "a,b,label\n1,2,0\n3,x7,1\n5,6,0\n")
        with pytest.raises(DataError, match=r"^load_csv: column 'b' is not numeric: line 3 holds 'x7'; every column "
                           r"but the label must be a number$"):
            load_csv(path)

    def test_empty_feature_cell(self, tmp_path):
        with pytest.raises(DataError, match=r"column 'a' is not numeric: line 2 holds ''"):
            load_csv(write(tmp_path / "e.csv", "a,b,label\n,2,0\n"))

    @pytest.mark.parametrize("cell", ["nan", "inf", "-inf"])
    def test_non_finite_feature(self, tmp_path, cell):
        with pytest.raises(DataError, match=r"^load_csv: features must be finite; rows \[1\]"):
            load_csv(write(tmp_path / "f.csv", f"a,label\n1,0\n{cell},1\n"))

    @pytest.mark.parametrize(("text", "line", "fields"), [
        ("a,b,label\n1,2,0\n3,4\n", 3, 2),
        ("a,b,label\n1,2,0,9\n3,4,1\n", 2, 4),
    ])
    def test_ragged_rows(self, tmp_path, text, line, fields):
        with pytest.raises(DataError, match=rf"^load_csv: .*r\.csv line {line} has {fields} fields; the header has 3$"):
            load_csv(write(tmp_path / "r.csv", text))

    @pytest.mark.parametrize(("text", "message"), [
        ("a,b,label\n\n\n1,2,0\nx,3,1\n", r"line 5 holds 'x'"),
        ("a,b,label\n\n1,2,0\n3,1\n", r"line 4 has 2 fields"),
    ], ids=["non-numeric", "ragged"])
    def test_line_numbers_count_blank_lines(self, tmp_path, text, message):
        with pytest.raises(DataError, match=message):
            load_csv(write(tmp_path / "l.csv", text))

    @pytest.mark.parametrize("text", ["", "\n\n", " , \n\n"])
    def test_empty_file(self, tmp_path, text):
        with pytest.raises(DataError, match=r"^load_csv: .*empty\.csv is empty$"):
            load_csv(write(tmp_path / "empty.csv", text))

    def test_only_a_label_column(self, tmp_path):
        with pytest.raises(DataError, match=r"^load_csv: .*o\.csv has no feature columns besides 'label'$"):
            load_csv(write(tmp_path / "o.csv", "label\n0\n1\n"))

    @pytest.mark.parametrize("content", [b"\xff\xfe\x00a\x00,\x00l\x00\n", b"a,label\n1,\xe9t\xe9\n"])
    def test_not_utf8(self, tmp_path, content):
        path = tmp_path / "latin.csv"
        path.write_bytes(content)
        with pytest.raises(DataError, match=r"^load_csv: cannot read .*latin\.csv as CSV \(UnicodeDecodeError: "):
            load_csv(path)

    def test_label_errors_pass_through(self, tmp_path):
        with pytest.raises(DataError, match=r"^load_csv: class 1 has no examples"):
            load_csv(write(tmp_path / "g.csv", "a,label\n1,0\n2,2\n"))
        with pytest.raises(DataError, match=r"^load_csv: integer labels must be class indices 0\.\.C-1; got -1$"):
            load_csv(write(tmp_path / "n.csv", "a,label\n1,0\n2,-1\n"))

    def test_header_only(self, tmp_path):
        with pytest.raises(DataError, match=r"^load_csv: .*h.csv has a header and no rows: the data set is empty"):
            load_csv(write(tmp_path / "h.csv", "a,b,label\n"))

    def test_utf8_byte_order_mark(self, tmp_path):
        path = tmp_path / "excel.csv"
        path.write_text("label,a\n0,1\n1,2\n", encoding="utf-8-sig")
        np.testing.assert_array_equal(load_csv(path).y, [0, 1])

    def test_questionable_labels_are_treated_as_in_a_npz(self, tmp_path):
        # regression: 'NaN' became a class and 0.5 / 1.5 became class names, where a .npz rejects them
        with pytest.raises(DataError, match=r"line 3 has an empty 'label'; every row needs a label"):
            load_csv(write(tmp_path / "a.csv", "a,label\n1,0\n2,\n"))
        for text, match in (("a,label\n1,nan\n2,1\n", r"^load_csv: label 'nan' is not a class \(a missing value\?\)"),
                            ("a,label\n1,NaN\n2,cat\n", r"^load_csv: label 'NaN' is not a class"),
                            ("a,label\n1,inf\n2,0\n", r"label 'inf' is not a class"),
                            ("a,label\n1,0.5\n2,1.5\n", r"^load_csv: labels must be integers or names; got non-integer"),
                            ("a,label\n1,0.5\n2,1\n", r"non-integer values such as \[0\.5\]")):
            with pytest.raises(DataError, match=match):
                load_csv(write(tmp_path / "q.csv", text))
        for labels, match in ((np.array(["nan", "1"]), r"^load_npz: label 'nan' is not a class"),
                              (np.array([0.5, 1.5]), r"^load_npz: labels must be integers or names; got non-integer"),
                              (np.array(["0.5", "1"]), r"^load_npz: labels must be integers or names; got non-integer")):
            np.savez(tmp_path / "q.npz", x=np.ones((2, 1)), y=labels)
            with pytest.raises(DataError, match=match):
                load_npz(tmp_path / "q.npz")
        # numbers written as text are numbers in both loaders: class indices 0..C-1
        np.savez(tmp_path / "t.npz", x=np.ones((2, 1)), y=np.array(["1", "0"]))
        assert load_npz(tmp_path / "t.npz").class_names == ("0", "1")
        assert load_csv(write(tmp_path / "t.csv", "a,label\n1,1\n2,0.0\n")).class_names == ("0", "1")
        assert load_csv(write(tmp_path / "n.csv", "a,label\n1,cat\n2,dog\n")).class_names == ("cat", "dog")


# ----------------------------------------------------------------------------
# load_dataset


class TestLoadDataset:
    def test_npz(self, tmp_path):
        np.savez(tmp_path / "d.npz", x=np.eye(2), y=np.array([1, 0]))
        data = load_dataset(tmp_path / "d.npz")
        np.testing.assert_array_equal(data.y, [1, 0])
        np.savez(tmp_path / "k.npz", a=np.eye(2), b=np.array([0, 1]))
        np.testing.assert_array_equal(load_dataset(str(tmp_path / "k.npz"), x_key="a", y_key="b").y, [0, 1])

    def test_csv(self, tmp_path):
        data = load_dataset(write(tmp_path / "d.csv", "a,label\n1,0\n2,1\n"))
        np.testing.assert_array_equal(data.y, [0, 1])
        data = load_dataset(write(tmp_path / "t.csv", "a,kind\n1,x\n2,y\n"), label_column="kind")
        assert data.class_names == ("x", "y")

    def test_upper_case_suffixes(self, tmp_path):
        np.savez(tmp_path / "tmp.npz", x=np.eye(2), y=np.array([1, 0]))
        (tmp_path / "tmp.npz").rename(tmp_path / "UP.NPZ")
        assert load_dataset(tmp_path / "UP.NPZ").name == "UP"
        assert load_dataset(write(tmp_path / "UP.CsV", "a,label\n1,0\n2,1\n")).num_classes == 2

    def test_digits_by_name(self, digits):
        data = load_dataset(None, dataset="digits-lt")
        assert data.name == "Digits-LT" and data.image_shape == (8, 8)
        np.testing.assert_array_equal(data.x, digits.x)
        np.testing.assert_array_equal(data.y, digits.y)
        assert load_dataset().name == "MNIST-LT"  # the default data set (tests/test_lab_grid.py)

    @pytest.mark.parametrize(("name", "suffix"), [("d.txt", "'.txt'"), ("d", r"'\(none\)'"), ("d.npy", "'.npy'")])
    def test_unknown_suffix(self, tmp_path, name, suffix):
        with pytest.raises(DataError, match=rf"^load_dataset: .*must be a \.npz \(arrays 'x', 'y'\) or a \.csv file; "
                           rf"got suffix {suffix}$"):
            load_dataset(tmp_path / name)

    def test_missing_files_are_reported_by_the_loader(self, tmp_path):
        with pytest.raises(DataError, match=r"^load_npz: no such file"):
            load_dataset(tmp_path / "x.npz")
        with pytest.raises(DataError, match=r"^load_csv: no such file"):
            load_dataset(tmp_path / "x.csv")


# ----------------------------------------------------------------------------
# expected_calibration_error

unit = st.floats(0.0, 1.0, allow_nan=False)


class TestExpectedCalibrationError:
    def test_docstring_example(self):
        assert expected_calibration_error(np.array([0.9, 0.9, 0.6, 0.6]), np.array([1, 1, 1, 0])) == 0.1

    @given(pairs=st.lists(st.tuples(unit, st.booleans()), max_size=60), bins=st.integers(1, 30))
    def test_against_reference(self, pairs, bins):
        confidence = np.array([p for p, _ in pairs], dtype=np.float64)
        correct = np.array([c for _, c in pairs], dtype=bool)
        got = expected_calibration_error(confidence, correct, bins=bins)
        assert isinstance(got, float)
        assert got == pytest.approx(ece_reference(confidence, correct, bins), abs=1e-11)

    @pytest.mark.parametrize("seed", range(5))
    def test_against_reference_random(self, seed):
        rng = np.random.default_rng(seed)
        confidence = rng.uniform(0, 1, 500) ** 0.3
        correct = rng.uniform(size=500) < confidence * 0.9
        for bins in (1, 10, 15, 50):
            assert expected_calibration_error(confidence, correct, bins=bins) == pytest.approx(
                ece_reference(confidence, correct, bins), abs=1e-11)

    def test_perfect_calibration(self):
        # in every bin the accuracy equals the mean confidence
        assert expected_calibration_error(np.full(4, 0.75), np.array([1, 1, 1, 0])) == 0.0
        assert expected_calibration_error(np.array([1.0, 1.0]), np.array([True, True])) == 0.0
        assert expected_calibration_error(np.array([0.0, 0.0]), np.array([0, 0])) == 0.0
        assert expected_calibration_error(np.array([0.5, 0.5, 0.9] * 10), np.array([1, 0, 1] * 9 + [1, 0, 0])) == \
            pytest.approx(0.0, abs=1e-12)

    def test_within_a_bin_only_the_means_count(self):
        # 0.61 and 0.66 share the bin (0.6, 0.6667]: mean confidence 0.635 against accuracy 0.5
        assert expected_calibration_error(np.array([0.61, 0.66]), np.array([1, 0])) == pytest.approx(0.135)

    @pytest.mark.parametrize("bins", [15, 10, 7, 3])
    def test_confidence_on_the_edges(self, bins):
        # k / bins sits in the bin that it closes, ((k-1)/bins, k/bins]; 0 joins the first bin
        for k in range(bins + 1):
            edge = k / bins
            # an edge alone: one example, correct -> |1 - edge|, wrong -> edge
            assert expected_calibration_error(np.array([edge]), np.array([1]), bins=bins) == pytest.approx(1 - edge)
            if k >= 1:
                # an edge shares its bin with a value just below it, not with one just above
                below, above = edge - 0.4 / bins, min(edge + 0.4 / bins, 1.0)
                together = abs(0.5 - (edge + below) / 2)
                assert expected_calibration_error(np.array([edge, below]), np.array([1, 0]), bins=bins) == \
                    pytest.approx(together)
                if k < bins:
                    apart = (abs(1 - edge) + abs(0 - above)) / 2
                    assert expected_calibration_error(np.array([edge, above]), np.array([1, 0]), bins=bins) == \
                        pytest.approx(apart)

    def test_zero_and_tiny_share_the_first_bin(self):
        assert expected_calibration_error(np.array([0.0, 0.05]), np.array([1, 0])) == pytest.approx(0.475)

    def test_multiples_of_one_fifteenth(self):
        confidence = np.arange(16) / 15
        correct = np.arange(16) % 2 == 0
        # bin k (1..15) holds k/15 alone, the first bin also holds 0
        first = 2 * abs(0.5 - (0 + 1 / 15) / 2)
        expected = (first + sum(abs(c - k / 15) for k, c in enumerate(correct) if k >= 2)) / 16
        assert expected_calibration_error(confidence, correct) == pytest.approx(expected)
        assert expected_calibration_error(confidence, correct) == pytest.approx(ece_reference(confidence, correct))

    def test_empty(self):
        assert expected_calibration_error(np.array([]), np.array([])) == 0.0

    @pytest.mark.parametrize(("confidence", "correct"), [
        (np.ones(3), np.ones(4)), (np.ones((2, 2)), np.ones((2, 2))), (np.float64(0.5), np.float64(1.0)),
    ])
    def test_shape_mismatch(self, confidence, correct):
        with pytest.raises(ValueError, match=r"^expected_calibration_error: confidence and correct must be 1-D of one "
                           r"shape"):
            expected_calibration_error(confidence, correct)

    @pytest.mark.parametrize("bins", [0, -1, 2.0, "15", None])
    def test_bad_bins(self, bins):
        with pytest.raises(ValueError, match=r"^expected_calibration_error: bins must be a positive integer; got"):
            expected_calibration_error(np.array([0.5]), np.array([1]), bins=bins)

    def test_lists_are_accepted(self):
        assert expected_calibration_error([0.9, 0.9, 0.6, 0.6], [True, True, True, False]) == 0.1


# ----------------------------------------------------------------------------
# shot_groups


class TestShotGroups:
    def test_docstring_example(self):
        assert shot_groups([124, 88, 63, 45, 32, 23, 16, 11, 8, 6]) == {
            "many": [0, 1, 2], "medium": [3, 4, 5, 6], "few": [7, 8, 9]}

    @pytest.mark.parametrize(("n", "sizes"), [(0, (0, 0, 0)), (1, (1, 0, 0)), (2, (1, 0, 1)), (3, (1, 1, 1)),
                                              (4, (1, 2, 1)), (5, (2, 1, 2)), (6, (2, 2, 2)), (10, (3, 4, 3)),
                                              (100, (33, 34, 33))])
    def test_thirds(self, n, sizes):
        # round(C / 3) classes many-shot and as many few-shot; two classes: head and tail; one class: many.
        groups = shot_groups(list(range(n, 0, -1)))
        assert tuple(len(groups[k]) for k in ("many", "medium", "few")) == sizes
        assert groups["many"] == list(range(sizes[0]))
        assert groups["few"] == list(range(n - sizes[2], n))

    def test_three_classes_in_any_order(self):
        assert shot_groups([5, 50, 20]) == {"many": [1], "medium": [2], "few": [0]}

    def test_ties_are_broken_by_class_index(self):
        assert shot_groups([5] * 6) == {"many": [0, 1], "medium": [2, 3], "few": [4, 5]}
        # order by (-count, index): 1, 2, 4 (7), 0, 5 (3), 3 (1)
        assert shot_groups([3, 7, 7, 1, 7, 3]) == {"many": [1, 2], "medium": [0, 4], "few": [3, 5]}

    def test_thresholds(self):
        counts = [101, 100, 20, 19, 0, 500, 57]
        assert shot_groups(counts, (100, 20)) == {"many": [0, 5], "medium": [1, 2, 6], "few": [3, 4]}
        assert shot_groups(np.array(counts), (100, 20)) == shot_groups(counts, (100, 20))
        assert shot_groups([5, 5], (5, 5)) == {"many": [], "medium": [0, 1], "few": []}

    @given(counts=st.lists(st.integers(0, 1000), max_size=40), many=st.integers(0, 500), gap=st.integers(0, 500),
           use_thresholds=st.booleans())
    def test_groups_partition_the_classes(self, counts, many, gap, use_thresholds):
        groups = shot_groups(counts, (many, max(0, many - gap)) if use_thresholds else None)
        assert set(groups) == {"many", "medium", "few"}
        members = groups["many"] + groups["medium"] + groups["few"]
        assert sorted(members) == list(range(len(counts)))
        for group in groups.values():
            assert group == sorted(group) and all(type(c) is int for c in group)
        # more frequent groups hold the more frequent classes
        for upper, lower in (("many", "medium"), ("medium", "few"), ("many", "few")):
            if groups[upper] and groups[lower]:
                assert min(counts[c] for c in groups[upper]) >= max(counts[c] for c in groups[lower])

    def test_inverted_thresholds(self):
        try:
            groups = shot_groups([30, 5, 200], (10, 50))
        except ValueError:
            return
        assert sorted(groups["many"] + groups["medium"] + groups["few"]) == [0, 1, 2]


# ----------------------------------------------------------------------------
# evaluate


def random_case(seed: int, n: int = 80, num_classes: int = 6, *, absent: tuple[int, ...] = ()):
    rng = np.random.default_rng(seed)
    present = [c for c in range(num_classes) if c not in absent]
    y = np.concatenate([present, rng.choice(present, n - len(present))])
    rng.shuffle(y)
    logits = rng.normal(size=(n, num_classes)) * 2
    logits[np.arange(n), y] += rng.uniform(0, 3, n)  # better than chance, not perfect
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return probabilities, y


class TestEvaluate:
    @pytest.mark.parametrize("seed", range(8))
    def test_against_sklearn(self, seed):
        probabilities, y = random_case(seed, num_classes=3 + seed % 5)
        pred = probabilities.argmax(1)
        metrics = evaluate(probabilities, y)
        assert metrics["accuracy"] == pytest.approx(accuracy_score(y, pred), abs=1e-12)
        assert metrics["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred), abs=1e-12)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a class never predicted: precision 0/0 -> 0, as evaluate takes it
            assert metrics["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"), abs=1e-12)
        np.testing.assert_allclose(metrics["per_class_recall"], recall_score(y, pred, average=None), atol=1e-12)
        assert set(metrics) == {"accuracy", "balanced_accuracy", "macro_f1", "macro_auroc", "macro_average_precision",
                                "ece", "per_class_recall", "confusion_matrix"}
        assert all(type(metrics[k]) is float for k in ("accuracy", "balanced_accuracy", "macro_f1", "ece"))

    def test_a_class_never_predicted(self):
        probabilities = np.eye(3)[[0, 0, 1, 1, 0, 1]]
        y = np.array([0, 1, 1, 1, 2, 2])
        metrics = evaluate(probabilities, y)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert metrics["macro_f1"] == pytest.approx(f1_score(y, [0, 0, 1, 1, 0, 1], average="macro"))
        assert metrics["per_class_recall"] == [1.0, 2 / 3, 0.0]

    @pytest.mark.parametrize("seed", range(5))
    def test_shot_accuracies(self, seed):
        probabilities, y = random_case(seed, n=120, num_classes=9)
        groups = shot_groups(long_tail_counts(90, 9, 10.0))
        metrics = evaluate(probabilities, y, groups=groups)
        correct = probabilities.argmax(1) == y
        for name, members in groups.items():
            expected = np.mean([correct[i] for i in range(len(y)) if y[i] in members])
            assert metrics[f"{name}_shot_accuracy"] == pytest.approx(expected, abs=1e-12)
        assert set(SCALAR_METRICS) <= set(metrics)

    def test_empty_group_is_nan(self):
        probabilities, y = random_case(0, num_classes=4, absent=(3,))
        metrics = evaluate(probabilities, y, groups={"many": [0, 1], "medium": [], "few": [3]})
        assert math.isnan(metrics["medium_shot_accuracy"]) and math.isnan(metrics["few_shot_accuracy"])
        assert not math.isnan(metrics["many_shot_accuracy"])

    def test_no_groups_no_shot_keys(self):
        # Pinned: without groups the *_shot_accuracy keys are absent rather than NaN, although SCALAR_METRICS
        # lists them.
        metrics = evaluate(*random_case(1))
        assert not any(k.endswith("_shot_accuracy") for k in metrics)

    @pytest.mark.parametrize("seed", range(4))
    def test_ece_uses_the_predicted_class_probability(self, seed):
        probabilities, y = random_case(seed, n=200, num_classes=5)
        pred = probabilities.argmax(1)
        confidence = probabilities[np.arange(len(y)), pred]
        for bins in (15, 4):
            assert evaluate(probabilities, y, bins=bins)["ece"] == pytest.approx(
                ece_reference(confidence, pred == y, bins), abs=1e-11)

    def test_ece_with_unnormalised_scores(self):
        # per-class sigmoids need not sum to one: the confidence is the predicted class's own value
        scores = np.array([[0.2, 0.9, 0.7], [0.6, 0.1, 0.05]])
        assert evaluate(scores, np.array([1, 0]), bins=10)["ece"] == pytest.approx(((1 - 0.9) + (1 - 0.6)) / 2)
        assert evaluate(scores[:1], np.array([2]), bins=10)["ece"] == pytest.approx(0.9)

    def test_ties_go_to_the_lower_class(self):
        metrics = evaluate(np.array([[0.5, 0.5], [0.5, 0.5]]), np.array([0, 1]))
        assert metrics["per_class_recall"] == [1.0, 0.0]

    @pytest.mark.parametrize("seed", range(4))
    def test_absent_class(self, seed):
        num_classes, absent = 5, 2
        probabilities, y = random_case(seed, n=60, num_classes=num_classes, absent=(absent,))
        probabilities[:6, absent] = 1.0  # predicted, though no test example has it
        pred = probabilities.argmax(1)
        present = [c for c in range(num_classes) if c != absent]
        metrics = evaluate(probabilities, y)
        recall = metrics["per_class_recall"]
        assert len(recall) == num_classes and math.isnan(recall[absent])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # recall: sklearn gives 0 for a class without true examples unless zero_division=nan
            np.testing.assert_allclose(recall, recall_score(y, pred, average=None, labels=range(num_classes),
                                                            zero_division=np.nan), atol=1e-12)
            # balanced accuracy: sklearn also drops the class (with a warning), so the two agree
            assert metrics["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred), abs=1e-12)
            assert metrics["balanced_accuracy"] == pytest.approx(np.mean([recall[c] for c in present]), abs=1e-12)
            # macro-F1: sklearn's default averages over every label in y_true or y_pred, so the predicted-but-absent
            # class enters with F1 = 0 and lowers the mean; evaluate leaves it out, which is sklearn with
            # labels=<classes present in y_true>.
            assert metrics["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro", labels=present), abs=1e-12)
            assert metrics["macro_f1"] > f1_score(y, pred, average="macro")
        assert metrics["accuracy"] == pytest.approx(accuracy_score(y, pred), abs=1e-12)

    def test_perfect_predictions(self):
        metrics = evaluate(np.eye(4)[[0, 1, 2, 3, 3]], np.array([0, 1, 2, 3, 3]), groups=shot_groups([9, 5, 3, 1]))
        assert metrics == {"accuracy": 1.0, "balanced_accuracy": 1.0, "macro_f1": 1.0, "many_shot_accuracy": 1.0,
                           "medium_shot_accuracy": 1.0, "few_shot_accuracy": 1.0, "ece": 0.0,
                           "macro_auroc": 1.0, "macro_average_precision": 1.0, "per_class_recall": [1.0] * 4,
                           "confusion_matrix": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 2]]}

    def test_empty_input(self):
        # Pinned: the accuracies are NaN but the calibration error of no prediction is 0.
        metrics = evaluate(np.zeros((0, 3)), np.zeros(0, dtype=np.int64), groups={"many": [0]})
        assert all(math.isnan(metrics[k]) for k in ("accuracy", "balanced_accuracy", "macro_f1",
                                                    "many_shot_accuracy"))
        assert metrics["ece"] == 0.0
        assert all(math.isnan(r) for r in metrics["per_class_recall"])

    @pytest.mark.parametrize("y_true", [np.array([0, 1, 2]), np.array([0, 1, 3, 0])], ids=["length", "range"])
    def test_bad_y_true(self, y_true):
        with pytest.raises(ValueError, match=r"^evaluate: "):
            evaluate(np.eye(3)[[0, 1, 2, 0]], y_true)


# ----------------------------------------------------------------------------
# issue 13: values the metrics must not score


def test_evaluate_rejects_nan_and_out_of_range_probabilities():
    # regression: NaN probabilities were scored as correct class-0 predictions
    probabilities = np.array([[np.nan, np.nan], [0.2, 0.8]])
    with pytest.raises(ValueError, match=r"^evaluate: probabilities must lie in \[0, 1\]; got nan at row 0, class 0$"):
        evaluate(probabilities, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"got 1\.5 at row 1, class 1"):
        evaluate(np.array([[0.5, 0.5], [0.1, 1.5]]), np.array([0, 1]))


@pytest.mark.parametrize("bad", [1.2, -0.1, float("nan")])
def test_ece_rejects_confidences_outside_zero_one(bad):
    with pytest.raises(ValueError, match=r"^expected_calibration_error: confidence must be probabilities in \[0, 1\]; "
                                         r"got .* at index 1$"):
        expected_calibration_error(np.array([0.5, bad]), np.array([1, 0]))
