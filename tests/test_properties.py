"""Hypothesis property tests for the cross-entropy and focal-loss family.

Every property runs over every loss of the family (cross_entropy, nll_loss,
binary_cross_entropy, balanced_cross_entropy, sigmoid_focal_loss,
softmax_focal_loss) on inputs drawn from a domain that includes saturated
logits (+-1e4, +-100, +-30, 0), exact 0 / 1 probabilities, empty batches,
hard, soft and class-index targets and ignored positions. The number of
examples comes from the Hypothesis profile of tests/conftest.py.

nll_loss takes log-probabilities: its leaf is a tensor of logits and its input
``log_softmax(leaf, 1)``, so gradients are checked through log_softmax too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import find, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import losslab
from losslab import registry

from .helpers import TOLERANCES

F16, BF16, F32, F64 = torch.float16, torch.bfloat16, torch.float32, torch.float64
FULL = (F32, F64)
ALL_DTYPES = (F16, BF16, F32, F64)

LOSSES = ("cross_entropy", "nll_loss", "binary_cross_entropy", "balanced_cross_entropy",
          "sigmoid_focal_loss", "softmax_focal_loss")
SOFTMAX_LOSSES = ("cross_entropy", "nll_loss", "softmax_focal_loss")
SIGMOID_LOSSES = ("binary_cross_entropy", "sigmoid_focal_loss")
PROBABILITY_LOSSES = tuple(name for name in LOSSES if name != "nll_loss")  # those with from_logits

# ----------------------------------------------------------------------------
# strategies

LOGIT_SPECIALS = (1e4, -1e4, 100.0, -100.0, 30.0, -30.0, 0.0)
logit_values = st.one_of(st.sampled_from(LOGIT_SPECIALS), st.floats(-20.0, 20.0, width=32))
probability_values = st.one_of(st.sampled_from((0.0, 1.0)), st.floats(0.0, 1.0, width=32))
# Probabilities at and next to saturation only (float32's smallest normal number, one ulp from 1).
saturated_probability_values = st.sampled_from((0.0, 1.0, 1e-38, 1e-30, 1e-8, 1.0 - 2.0**-24, 0.5))
gammas = st.one_of(st.sampled_from((0.0, 0.1, 0.5, 1.0, 2.0, 5.0)), st.floats(0.0, 5.0))
unit_values = st.one_of(st.sampled_from((0.0, 0.25, 1.0)), st.floats(0.0, 1.0))
smoothings = st.one_of(st.just(0.0), unit_values)


def per_class(num_classes: int, high: float = 3.0):
    """A list of C non-negative per-class values (weights or alphas)."""
    values = st.one_of(st.sampled_from((0.0, 1.0, high)), st.floats(0.0, high))
    return st.lists(values, min_size=num_classes, max_size=num_classes)


@dataclass
class Problem:
    """One call of a loss: the raw input values, the target and the keyword arguments.

    ``x`` holds logits, or probabilities when ``kwargs["from_logits"]`` is False.
    ``ignored`` is True where the target is ignored: per position (softmax form
    and class-index sigmoid targets, shape (N, d...)) or per element (dense
    sigmoid targets, the input's shape); None when nothing can be ignored.
    """

    loss: str
    x: np.ndarray
    target: torch.Tensor
    kwargs: dict[str, Any] = field(default_factory=dict)
    dtype: torch.dtype = F64
    form: str = "softmax"
    index_target: bool = True
    ignored: torch.Tensor | None = None

    @property
    def num_classes(self) -> int:
        return self.x.shape[1]

    def leaf(self) -> torch.Tensor:
        return torch.tensor(self.x, dtype=self.dtype, requires_grad=True)

    def prepare(self, leaf: torch.Tensor) -> torch.Tensor:
        """The loss's input from the leaf: log_softmax for nll_loss, the leaf itself otherwise."""
        return torch.log_softmax(leaf, dim=1) if self.loss == "nll_loss" else leaf

    def call(self, leaf: torch.Tensor | None = None, loss: str | None = None, **override: Any) -> torch.Tensor:
        leaf = self.leaf() if leaf is None else leaf
        return getattr(losslab, loss or self.loss)(self.prepare(leaf), self.target, **{**self.kwargs, **override})


@st.composite
def problems(draw, loss: str, *, dtypes=FULL, ignore: bool | None = None, probabilities: bool | None = None,
             probability_elements=probability_values, index_target: bool | None = None) -> Problem:
    """A random call of ``loss``.

    ignore: True puts ignored targets in (class-index or dense), False never,
        None either. Probability (soft) softmax targets cannot be ignored.
    probabilities: True forces from_logits=False, False logits, None either.
    index_target: True forces class-index targets, False dense / probability
        targets, None either.
    """
    n = draw(st.integers(0, 6))
    c = draw(st.integers(1, 5))
    d = draw(st.one_of(st.none(), st.integers(1, 3)))
    shape = (n, c) if d is None else (n, c, d)
    position_shape = (n,) if d is None else (n, d)
    dtype = draw(st.sampled_from(dtypes))
    kwargs: dict[str, Any] = {}

    if loss == "balanced_cross_entropy":
        per_class_alpha = draw(st.booleans())
        form = "softmax" if per_class_alpha else "sigmoid"
        kwargs["alpha"] = draw(per_class(c)) if per_class_alpha else draw(unit_values)
    else:
        form = "softmax" if loss in SOFTMAX_LOSSES else "sigmoid"

    if loss == "nll_loss":
        from_logits = True  # leaf of logits, input log_softmax(leaf)
    else:
        from_logits = draw(st.booleans()) if probabilities is None else not probabilities
        kwargs["from_logits"] = from_logits
    x = draw(hnp.arrays(np.float64, shape, elements=logit_values if from_logits else probability_elements))

    if loss in ("cross_entropy", "nll_loss", "binary_cross_entropy"):
        kwargs["weight"] = draw(st.one_of(st.none(), per_class(c)))
    if loss == "binary_cross_entropy":
        kwargs["pos_weight"] = draw(st.one_of(st.none(), per_class(c)))
    if loss in ("cross_entropy", "binary_cross_entropy", "balanced_cross_entropy", "softmax_focal_loss"):
        kwargs["label_smoothing"] = draw(smoothings)
    if loss in ("sigmoid_focal_loss", "softmax_focal_loss"):
        kwargs["gamma"] = draw(gammas)
    if loss == "sigmoid_focal_loss":
        kwargs["alpha"] = draw(st.one_of(st.none(), st.just(-1.0), unit_values))
    if loss == "softmax_focal_loss":
        kwargs["alpha"] = draw(st.one_of(st.none(), unit_values, per_class(c, high=1.0)))

    use_ignore = draw(st.booleans()) if ignore is None else ignore
    ignored = None
    if form == "softmax":
        use_index = draw(st.booleans()) if index_target is None else index_target
        use_index = use_index or use_ignore
        if use_index:
            classes = st.integers(0, c - 1)
            if use_ignore:
                ignore_index = draw(st.sampled_from((-100, -1, 255, 0)))
                kwargs["ignore_index"] = ignore_index
                classes = st.one_of(classes, st.just(ignore_index))
            target = torch.from_numpy(draw(hnp.arrays(np.int64, position_shape, elements=classes)))
            if use_ignore:
                ignored = target == kwargs["ignore_index"]
        else:
            if draw(st.booleans()):  # one-hot: exact 0 and 1
                hot = draw(hnp.arrays(np.int64, position_shape, elements=st.integers(0, c - 1)))
                q = np.moveaxis(np.eye(c)[hot], -1, 1)
            else:
                raw = draw(hnp.arrays(np.float64, shape, elements=probability_values))
                total = raw.sum(axis=1, keepdims=True)
                q = np.where(total > 0, raw / np.where(total > 0, total, 1.0), 1.0 / c)
            target = torch.tensor(q, dtype=dtype)
    else:
        choices = ["hard", "soft", "index"] if index_target is None else (["index"] if index_target else
                                                                          ["hard", "soft"])
        kind = draw(st.sampled_from(choices))
        if c == 1 and kind == "index":  # one class: class indices are an error (label 1 = background), issue 13
            kind = "hard"
        use_index = kind == "index"
        if use_index:
            values = st.integers(0, c)  # index c = background
        else:
            values = st.integers(0, 1).map(float) if kind == "hard" else probability_values
        if use_ignore:
            ignore_index = draw(st.sampled_from((-1, 255)) if use_index else st.sampled_from((-1, 2, 255)))
            kwargs["ignore_index"] = ignore_index
            values = st.one_of(values, st.just(ignore_index if use_index else float(ignore_index)))
        if use_index:
            target = torch.from_numpy(draw(hnp.arrays(np.int64, position_shape, elements=values)))
        else:
            target = torch.tensor(draw(hnp.arrays(np.float64, shape, elements=values)), dtype=dtype)
        if use_ignore:
            ignored = target == kwargs["ignore_index"]
    return Problem(loss, x, target, kwargs, dtype, form, use_index, ignored)


def _tolerance(dtype: torch.dtype) -> dict[str, float]:
    return TOLERANCES[dtype]


def _slack(dtype: torch.dtype) -> float:
    """Relative slack for inequalities between two computations in ``dtype`` (a few ulps)."""
    return 16 * torch.finfo(dtype).eps


def _assert_le(smaller: torch.Tensor, larger: torch.Tensor, dtype: torch.dtype, what: str) -> None:
    smaller, larger = smaller.detach().double(), larger.detach().double()
    bound = larger * (1 + _slack(dtype)) + torch.finfo(dtype).tiny
    bad = ~(smaller <= bound)
    assert not bool(bad.any()), (
        f"{what}: {smaller[bad].tolist()[:5]} > {larger[bad].tolist()[:5]}"
    )


def _grad(loss: torch.Tensor, leaf: torch.Tensor) -> torch.Tensor:
    (grad,) = torch.autograd.grad(loss.sum(), leaf, allow_unused=True)
    return torch.zeros_like(leaf) if grad is None else grad


# ----------------------------------------------------------------------------
# loss >= 0


@pytest.mark.parametrize("loss", LOSSES)
@given(data=st.data())
def test_loss_is_nonnegative(loss, data):
    problem = data.draw(problems(loss))
    value = problem.call(reduction="none").detach()
    # Exactly non-negative in exact arithmetic; allow a rounding error of one ulp of the loss's scale.
    floor = -torch.finfo(problem.dtype).eps * (1.0 + value.abs())
    assert bool((value >= floor).all()), f"negative loss: {value[value < floor].tolist()[:5]}"


# ----------------------------------------------------------------------------
# finiteness of values and input gradients


@pytest.mark.parametrize("loss", LOSSES)
@given(data=st.data())
def test_loss_and_input_gradient_are_finite(loss, data):
    """Saturated logits, exact 0/1 probabilities, every dtype (half precision included)."""
    problem = data.draw(problems(loss, dtypes=ALL_DTYPES))
    reduction = data.draw(st.sampled_from(("none", "mean", "sum")))
    leaf = problem.leaf()
    value = problem.call(leaf, reduction=reduction)
    assert value.dtype == problem.dtype
    assert bool(torch.isfinite(value).all()), f"non-finite loss {value}"
    grad = _grad(value, leaf)
    assert bool(torch.isfinite(grad).all()), f"non-finite gradient {grad}"


@pytest.mark.parametrize("loss", PROBABILITY_LOSSES)
@given(data=st.data())
def test_finite_at_saturated_probabilities(loss, data):
    """from_logits=False with probabilities at exactly 0 and 1 (and next to them): finite loss and gradient."""
    problem = data.draw(problems(loss, dtypes=ALL_DTYPES, probabilities=True,
                                 probability_elements=saturated_probability_values))
    leaf = problem.leaf()
    value = problem.call(leaf, reduction="none")
    assert bool(torch.isfinite(value).all()), f"non-finite loss {value}"
    grad = _grad(value, leaf)
    assert bool(torch.isfinite(grad).all()), f"non-finite gradient {grad}"


# ----------------------------------------------------------------------------
# focal <= cross-entropy, and focal is non-increasing in gamma


def _unfocused(problem: Problem) -> tuple[str, dict[str, Any]]:
    """The cross-entropy that a focal problem reduces to at gamma = 0 (same alpha, same options)."""
    kwargs = {k: v for k, v in problem.kwargs.items() if k != "gamma"}
    alpha = kwargs.pop("alpha", None)
    if problem.loss == "sigmoid_focal_loss":
        if alpha is None or alpha < 0:
            return "binary_cross_entropy", kwargs
        return "balanced_cross_entropy", {**kwargs, "alpha": alpha, "ignore_index": kwargs.get("ignore_index")}
    if alpha is None:
        return "cross_entropy", kwargs
    if isinstance(alpha, float):
        alpha = [alpha] * problem.num_classes  # a scalar alpha scales every class
    return "balanced_cross_entropy", {**kwargs, "alpha": alpha}


@pytest.mark.parametrize("loss", ("sigmoid_focal_loss", "softmax_focal_loss"))
@given(data=st.data())
def test_focal_is_at_most_cross_entropy(loss, data):
    """Elementwise: sigmoid focal (alpha=None) <= BCE, softmax focal <= CE; with alpha, <= balanced CE."""
    problem = data.draw(problems(loss))
    focal = problem.call(reduction="none")
    name, kwargs = _unfocused(problem)
    ce = getattr(losslab, name)(problem.leaf(), problem.target, **{**kwargs, "reduction": "none"})
    assert focal.shape == ce.shape
    _assert_le(focal, ce, problem.dtype, f"{loss} > {name}")


@pytest.mark.parametrize("loss", ("sigmoid_focal_loss", "softmax_focal_loss"))
@given(data=st.data())
def test_focal_is_nonincreasing_in_gamma(loss, data):
    problem = data.draw(problems(loss))
    low, high = sorted(data.draw(st.lists(gammas, min_size=2, max_size=2)))
    at_low = problem.call(reduction="none", gamma=low)
    at_high = problem.call(reduction="none", gamma=high)
    _assert_le(at_high, at_low, problem.dtype, f"{loss}(gamma={high}) > {loss}(gamma={low})")


def test_focal_properties_reach_saturated_gamma_below_one():
    """A fixed example of the properties above at the known NaN spot: p_t = 1, gamma < 1."""
    for gamma in (0.0, 0.1, 0.5, 0.99):
        x = torch.tensor([[1e4, -1e4, 0.0], [30.0, -30.0, 100.0]], requires_grad=True)
        for fn, target, ce in (
            (losslab.sigmoid_focal_loss, torch.tensor([[1.0, 0.0, 1.0], [1.0, 0.0, 1.0]]),
             losslab.binary_cross_entropy),
            (losslab.softmax_focal_loss, torch.tensor([0, 2]), losslab.cross_entropy),
        ):
            kwargs = {"alpha": None} if fn is losslab.sigmoid_focal_loss else {}
            loss = fn(x, target, gamma=gamma, reduction="none", **kwargs)
            (grad,) = torch.autograd.grad(loss.sum(), x)
            assert torch.isfinite(loss).all() and torch.isfinite(grad).all(), (fn.__name__, gamma, loss, grad)
            _assert_le(loss, ce(x, target, reduction="none"), torch.float32, fn.__name__)


# ----------------------------------------------------------------------------
# ignore_index is the same as dropping the ignored positions


def _dropped(problem: Problem, leaf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any], torch.Tensor]:
    """(input, target, kwargs, kept) of the same problem with the ignored positions removed.

    Positions (softmax form, class-index sigmoid targets): the class dimension
    moves last and the kept rows form an (K, C) input with (K,) targets.
    Elements (dense sigmoid targets): a 1-D input of the kept elements; per-class
    weights are expanded to the input's shape and selected the same way.
    """
    kwargs = dict(problem.kwargs)
    x = problem.prepare(leaf)
    c = problem.num_classes
    if problem.index_target:
        kept = ~problem.ignored.reshape(-1)
        rows = x.movedim(1, -1).reshape(-1, c)[kept]
        return rows, problem.target.reshape(-1)[kept], kwargs, kept
    kept = ~problem.ignored
    for name in ("weight", "pos_weight"):
        if kwargs.get(name) is not None:
            per_class_values = torch.tensor(kwargs[name], dtype=torch.float64)
            kwargs[name] = per_class_values.view((1, c) + (1,) * (x.ndim - 2)).expand(x.shape)[kept]
    return x[kept], problem.target[kept], kwargs, kept


@pytest.mark.parametrize("loss", LOSSES)
@given(data=st.data())
def test_ignore_index_equals_dropping_positions(loss, data):
    problem = data.draw(problems(loss, ignore=True))
    tol = _tolerance(problem.dtype)
    for reduction in ("sum", "mean"):
        leaf = problem.leaf()
        full = problem.call(leaf, reduction=reduction)
        grad = _grad(full, leaf)

        kept_leaf = problem.leaf()
        x, target, kwargs, kept = _dropped(problem, kept_leaf)
        dropped = getattr(losslab, loss)(x, target, **{**kwargs, "reduction": reduction})
        kept_grad = _grad(dropped, kept_leaf)

        torch.testing.assert_close(full, dropped, **tol, msg=lambda m: f"{reduction}: {m}")
        # Ignored positions get exactly zero gradient; kept ones the gradient of the dropped problem.
        if problem.index_target:
            by_position = grad.movedim(1, -1).reshape(-1, problem.num_classes)
            assert bool((by_position[~kept] == 0).all()), f"{reduction}: gradient at ignored positions"
        else:
            assert bool((grad[~kept] == 0).all()), f"{reduction}: gradient at ignored elements"
        torch.testing.assert_close(grad, kept_grad, **tol, msg=lambda m: f"{reduction} gradient: {m}")


# ----------------------------------------------------------------------------
# reductions and module twins


@pytest.mark.parametrize("loss", LOSSES)
@given(data=st.data())
def test_sum_equals_sum_of_none(loss, data):
    problem = data.draw(problems(loss))
    total = problem.call(reduction="sum")
    elementwise = problem.call(reduction="none")
    assert total.shape == ()
    # "none" is cast to the input dtype before summing: compare at that dtype's resolution.
    torch.testing.assert_close(total, elementwise.sum(), rtol=_slack(problem.dtype) * max(elementwise.numel(), 1),
                               atol=torch.finfo(problem.dtype).tiny)


@pytest.mark.parametrize("loss", LOSSES)
@given(data=st.data())
def test_module_twin_equals_functional(loss, data):
    problem = data.draw(problems(loss))
    reduction = data.draw(st.sampled_from(("none", "mean", "sum")))
    kwargs = {**problem.kwargs, "reduction": reduction}
    module = registry.get_spec(loss).module(**kwargs)
    assert isinstance(module, torch.nn.Module)

    leaf_f, leaf_m = problem.leaf(), problem.leaf()
    by_function = getattr(losslab, loss)(problem.prepare(leaf_f), problem.target, **kwargs)
    by_module = module(problem.prepare(leaf_m), problem.target)
    torch.testing.assert_close(by_module, by_function, rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(_grad(by_module, leaf_m), _grad(by_function, leaf_f), rtol=0, atol=0,
                               equal_nan=True)


def test_problem_strategy_covers_the_domain():
    """Guard the strategies themselves: the values they promise can be drawn (so the properties can fail)."""
    assert find(logit_values, lambda v: v == 1e4) == 1e4
    assert find(logit_values, lambda v: v == -1e4) == -1e4
    assert find(probability_values, lambda v: v == 1.0) == 1.0
    assert find(gammas, lambda g: 0 < g < 1) < 1
    ignored = find(problems("cross_entropy", ignore=True), lambda p: p.ignored is not None and bool(p.ignored.any()))
    assert ignored.kwargs["ignore_index"] in (-100, -1, 255, 0)
    empty = find(problems("sigmoid_focal_loss"), lambda p: p.x.shape[0] == 0)
    assert empty.x.shape[0] == 0
