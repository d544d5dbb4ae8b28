"""losslab._standalone: compiled sweeps called without dynamo, one graph per argument layout.

* A sweep compiled this way serves every batch size of a layout (dynamo compiles nothing), a batch of one
  gets a graph of its own (sizes of 1 are specialised), and the values are the composite's.
* A sum longer than inductor's block (4,096 float32 values) gets a graph of its own, summed in blocks: one
  compiled for a small input (summed straight) never serves it.
* A layout the key does not tell apart (strides of a transposed input) raises inside the graph before any
  kernel runs: that key goes to torch.compile, with the right values.
* A function whose trace puts a condition on the sizes gets no graph; nor does an argument that is neither a
  tensor nor a structural constant.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch._dynamo.utils import counters

import losslab
from losslab import _fused, _standalone

from .helpers import TOLERANCES, gen

C = 4


def _value_and_grad(fn, x, *args, **kwargs):
    leaf = x.clone().requires_grad_(True)
    out = fn(leaf, *args, **kwargs)
    out.backward()
    return out.detach(), leaf.grad


def test_a_sweep_runs_without_dynamo_for_every_batch_size(fresh_dynamo):
    g = gen(1201)
    for n, graphs in ((6, 1), (9, 1), (1, 2)):  # 6 and 9 share one graph; a batch of one has its own
        x = torch.randn(n, C, generator=g) * 3
        t = (torch.rand(n, C, generator=g) < 0.3).float()
        with losslab.set_fused("compiled"):
            got = _value_and_grad(losslab.sigmoid_focal_loss, x, t, gamma=1.5, alpha=0.25)
        with losslab.set_fused("off"):
            want = _value_and_grad(losslab.sigmoid_focal_loss, x, t, gamma=1.5, alpha=0.25)
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, **TOLERANCES[torch.float32])
        assert counters["losslab"]["graphs"] == graphs, n
    assert counters["stats"]["unique_graphs"] == 0  # dynamo never ran
    assert not _fused._compiled


def test_a_long_sum_gets_its_own_graph_and_keeps_its_digits(fresh_dynamo):
    """Inductor sums more than 4,096 float32 values in blocks and fewer straight, choosing by the sizes it
    compiles for: a graph compiled for a small input must not serve a large one (its loss summed straight lost
    4 digits on 2,000,000 x 4), nor may inductor's on-disk cache hand it back."""
    g = gen(1203)
    for n, graphs in ((8, 1), (300_000, 2)):
        x = torch.randn(n, C, generator=g, dtype=torch.float64) * 2
        t = torch.rand(n, C, generator=g, dtype=torch.float64)
        with losslab.set_fused("compiled"):
            got = losslab.sigmoid_focal_loss(x.float().requires_grad_(True), t.float(), reduction="sum")
        want = losslab.sigmoid_focal_loss(x, t, reduction="sum")
        assert abs(float(got) - float(want)) <= 1e-6 * float(want), n
        assert counters["losslab"]["graphs"] == graphs, n
    assert _standalone.key(_scaled, (x, t))[1][-1] == (True, True, True, False)  # 1.2M elements, 300,000 rows


def _scaled(x: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return (x * s).sum(), x * s


def test_a_layout_the_key_does_not_tell_apart_goes_to_torch_compile(fresh_dynamo):
    g = gen(1202)
    s = torch.tensor(0.5)
    x = torch.randn(5, 3, generator=g)
    assert _standalone.call(_scaled, _scaled, (x, s)) is not NotImplemented
    transposed = torch.randn(3, 5, generator=g).t()  # the same key (no size 1, no zero stride), other strides
    assert _standalone.key(_scaled, (transposed, s)) == _standalone.key(_scaled, (x, s))
    assert _standalone.call(_scaled, _scaled, (transposed, s)) is NotImplemented
    assert _standalone._graphs[_standalone.key(_scaled, (x, s))] is None  # torch.compile from now on
    got = _fused._compiled_call(_scaled, _scaled, (transposed, s))
    for a, b in zip(got, _scaled(transposed, s), strict=True):
        torch.testing.assert_close(a, b)


def _size_dependent(x: torch.Tensor) -> torch.Tensor:
    return x * 2 if x.shape[0] > 3 else x * 3


def test_no_graph_where_the_trace_conditions_on_sizes_or_an_argument_is_not_a_constant(fresh_dynamo):
    x = torch.randn(5, 2)
    assert _standalone.call(_size_dependent, _size_dependent, (x,)) is NotImplemented
    assert _standalone._graphs[_standalone.key(_size_dependent, (x,))] is None
    assert _standalone.key(_scaled, (x, 3)) is None  # an integer: a hyperparameter reaches sweeps as a tensor
    assert counters["losslab"]["graphs"] == 0


@pytest.mark.parametrize("gamma", [3, 5, 1])
def test_integer_hyperparameters_reach_the_graph_as_tensors(gamma):
    value = _fused._hyperparameter(gamma)
    assert isinstance(value, torch.Tensor) and value.dtype == torch.float64 and float(value) == gamma
    assert _fused._hyperparameter(0) == 0 and _fused._hyperparameter(True) is True


@pytest.mark.parametrize("two", [2, 2.0, np.float32(2.0), np.int64(2)], ids=["int", "float", "np.float32", "np.int64"])
def test_two_reaches_the_graph_as_the_number_two(two):
    """The one value a graph is specialised on (a square, not exp(2 log m)): a float, keyed by value."""
    value = _fused._hyperparameter(two)
    assert type(value) is float and value == 2.0
    x = torch.randn(3, 2)
    assert _standalone.key(_scaled, (x, value)) == _standalone.key(_scaled, (x, 2.0))
    assert _standalone.key(_scaled, (x, value)) != _standalone.key(_scaled, (x, _fused._hyperparameter(2.5)))


def test_the_memo_of_exact_layouts_gives_each_call_its_key(monkeypatch):
    """_key_of looks the key up by exact sizes and strides: the same key as computing it, for contiguous,
    transposed, broadcast, empty and one-row inputs, for constants by type and value, and None for an argument
    that is neither (an unhashable list too)."""
    monkeypatch.setattr(_standalone, "_keys", {})
    x = torch.randn(6, 5)
    layouts = [(x, 2.0), (x.t(), 2.0), (x[:1], 2.0), (x[:0], 2.0), (torch.randn(5).expand(6, 5), 2.0),
               (torch.randn(9000, 2), 2.0), (x, 2), (x, True), (x, None), (x, 0.0), (x.double(), 2.0)]
    for _ in range(2):  # computed, then remembered
        for args in layouts:
            assert _standalone._key_of(_scaled, args) == _standalone.key(_scaled, args), args
    assert len({_standalone._key_of(_scaled, args) for args in layouts}) == len(layouts) - 1  # 2 is no constant
    assert _standalone._key_of(_scaled, (x, [1.0])) is None
    monkeypatch.setattr(_standalone, "KEYS", 3)
    monkeypatch.setattr(_standalone, "_keys", {})
    for args in layouts:
        assert _standalone._key_of(_scaled, args) == _standalone.key(_scaled, args)
    assert len(_standalone._keys) <= 3


def _summed(x: torch.Tensor) -> torch.Tensor:
    return (x * 2).sum()


def _negated(out: object) -> object:
    return tuple(-t for t in out) if isinstance(out, (list, tuple)) else -out


def test_a_graph_is_called_through_its_inner_graph_with_the_artifacts_outputs(fresh_dynamo):
    """The artifact's wrappers are skipped: the inductor graph inside serves the call, with the artifact's outputs
    (a tuple, or the one tensor the artifact unpacks); under autocast the artifact serves it; an artifact without
    an inner graph, or whose inner graph gives other outputs, is called as it is."""
    g = gen(1204)
    s = torch.tensor(0.5)
    x = torch.randn(7, 3, generator=g)
    for fn, args in ((_scaled, (x, s)), (_summed, (x,))):
        _standalone.call(fn, fn, args)
        layout = _standalone.key(fn, args)
        positions, artifact, inner = _standalone._graphs[layout]
        assert inner is not None, fn
        used: list[str] = []
        _standalone._graphs[layout] = (positions, lambda *a: used.append("artifact") or artifact(*a),
                                       lambda a: used.append("inner") or inner(a))
        got = _standalone.call(fn, fn, args)
        with torch.autocast("cpu"):
            under = _standalone.call(fn, fn, args)
        assert used == ["inner", "artifact"], fn
        want = fn(*args)
        for result in (got, under):
            assert type(result) is type(want)
            torch.testing.assert_close(result, want)
        examples = [args[i] for i in positions]
        assert _standalone._inner(artifact, examples) is not None
        assert _standalone._inner(fn, examples) is None  # a plain function: no inductor graph inside
        negated = _standalone._inner(lambda *a: _negated(artifact(*a)), examples)  # the graph inside, other outputs
        assert negated is None, fn
    assert counters["losslab"]["graphs"] == 2


def test_arguments_that_are_one_tensor_at_the_first_call_keep_their_own_inputs(fresh_dynamo):
    """A graph first traced where two hyperparameters were one cached tensor (float64: the scale of "sum" and
    gamma = 1; alpha = gamma = 0.5) serves later calls with other values rightly: make_fx traces every use of
    one tensor object onto one input, which the graph would then read for both (a review found the loss of
    gamma = 3 computed with gamma = 1)."""
    g = gen(1205)
    x = torch.randn(9, C, generator=g, dtype=torch.float64) * 3
    t = torch.rand(9, C, generator=g, dtype=torch.float64)
    for kwargs in ({"gamma": 1.0, "alpha": None, "reduction": "sum"}, {"gamma": 3.0, "alpha": None, "reduction": "sum"},
                   {"gamma": 0.5, "alpha": 0.5}, {"gamma": 0.5, "alpha": 0.25}):
        with losslab.set_fused("compiled"):
            got = _value_and_grad(losslab.sigmoid_focal_loss, x, t, **kwargs)
        with losslab.set_fused("off"):
            want = _value_and_grad(losslab.sigmoid_focal_loss, x, t, **kwargs)
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, **TOLERANCES[torch.float64], msg=str(kwargs))
    assert counters["losslab"]["graphs"] == 2
    scale = _fused._hyperparameter(0.5)
    copies = _standalone._distinct([x, scale, scale, x[1:]])
    assert copies[0] is x and copies[1] is scale and copies[2] is not scale and copies[3] is not x
    assert torch.equal(copies[2], scale) and torch.equal(copies[3], x[1:])
