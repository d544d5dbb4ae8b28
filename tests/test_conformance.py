"""The conformance battery: one set of checks run over every registered loss and its sample cases.

A loss gets all of this by registering (losslab.registry.register); it also
needs its sample inputs and error cases in tests/samples/ (SAMPLES and ERRORS)
and a float64 NumPy reference in tests/reference.py, both under its canonical
name.
"""

from __future__ import annotations

import inspect
import re
import subprocess
import sys

import pytest
import torch

import losslab
from losslab._stateful import StatefulLoss
from losslab.registry import LossSpec, specs

from .helpers import TOLERANCES, assert_close_np
from .reference import REFERENCES
from .samples import ERRORS as ERROR_CASES
from .samples import SAMPLES, Case

SPECS = specs()
CASES = [(spec, case) for spec in SPECS for case in SAMPLES.get(spec.name, list)()]
CASE_IDS = [f"{spec.name}-{case.id}" for spec, case in CASES]
REGULAR = [(s, c) for s, c in CASES if not c.tags]
REGULAR_IDS = [f"{s.name}-{c.id}" for s, c in REGULAR]
REDUCTIONS = ("none", "mean", "sum")


def _tensors(value):
    """Tensors inside a target or kwargs value (a tensor, a tuple/list of them, or a dict)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    return []


def _map(value, f):
    """Apply ``f`` to every tensor inside a target or kwargs value."""
    if isinstance(value, torch.Tensor):
        return f(value)
    if isinstance(value, tuple):
        return tuple(_map(v, f) for v in value)
    if isinstance(value, list):
        return [_map(v, f) for v in value]
    if isinstance(value, dict):
        return {k: _map(v, f) for k, v in value.items()}
    return value


def _call(spec: LossSpec, input, target, kwargs, **override):
    return spec.function(input, target, **{**kwargs, **override})


def _finest(spec: LossSpec) -> str:
    """"none" where the loss has it (every element's loss), else "sum" (combinations of terms)."""
    return "none" if "none" in spec.reductions else "sum"


def _supported(spec: LossSpec, reduction: str) -> None:
    if reduction not in spec.reductions:
        pytest.skip(f"{spec.name} has no reduction {reduction!r}")


def _loss_and_grad(spec: LossSpec, case: Case, input=None, target=None, **override):
    x = (case.input if input is None else input).detach().clone().requires_grad_(True)
    out = _call(spec, x, case.target if target is None else target, case.kwargs, **override)
    out.sum().backward()
    return out, x.grad


def _numpy(value):
    return _map(value, lambda t: t.detach().cpu().numpy())


def test_every_loss_has_a_reference_and_is_exported():
    assert SPECS, "no loss registered"
    for spec in SPECS:
        assert spec.name in REFERENCES, f"{spec.name} has no float64 NumPy reference in tests/reference.py"
        assert getattr(losslab, spec.name) is spec.function
        assert getattr(losslab, spec.module.__name__) is spec.module


def test_every_loss_has_samples_and_error_cases():
    """A registered loss cannot skip the battery: tests/samples/ holds its cases, and only registered losses'."""
    names = {spec.name for spec in SPECS}
    for spec in SPECS:
        assert spec.name in SAMPLES, f"{spec.name} has no sample cases in tests/samples/ (SAMPLES)"
        assert spec.name in ERROR_CASES, f"{spec.name} has no error cases in tests/samples/ (ERRORS)"
        assert SAMPLES[spec.name](), f"{spec.name}: SAMPLES gives no case"
    assert not SAMPLES.keys() - names, f"samples of unregistered losses: {sorted(SAMPLES.keys() - names)}"
    assert not ERROR_CASES.keys() - names, f"error cases of unregistered losses: {sorted(ERROR_CASES.keys() - names)}"


_IMPORT_BUILDS_NOTHING = """
import traceback

import torch
from torch.utils._python_dispatch import TorchDispatchMode


class Record(TorchDispatchMode):
    calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        Record.calls.append((str(func), "".join(traceback.format_stack(limit=8)[:-1])))
        return func(*args, **(kwargs or {}))


with Record():
    import losslab

assert losslab.registry.specs(), "no loss registered"
if Record.calls:
    op, where = Record.calls[0]
    raise SystemExit(f"import losslab ran {len(Record.calls)} tensor ops, the first {op} at\\n{where}")
"""


def test_importing_losslab_builds_no_tensors():
    """Module-level code creates no tensor (sample data lives in tests/samples/); run in a fresh interpreter.

    Every tensor factory (torch.empty, torch.tensor, torch.zeros, ...) reaches an ATen op, which the
    dispatch mode records.
    """
    result = subprocess.run([sys.executable, "-c", _IMPORT_BUILDS_NOTHING], capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr + result.stdout


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_special_cases_are_registered(spec):
    tags = [c.tags for c in SAMPLES[spec.name]()]
    assert any("empty" in t for t in tags), f"{spec.name}: no 'empty' sample case"
    if "ignore_index" in inspect.signature(spec.function).parameters:
        assert any("all_ignored" in t for t in tags), f"{spec.name}: no 'all_ignored' sample case"


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_docstring_follows_the_conventions(spec):
    doc = inspect.getdoc(spec.function) or ""
    for part in (".. math::", "Args:", "Returns:", "Raises:", "Example:", ".backward()"):
        assert part in doc, f"{spec.name}: docstring lacks {part!r}"
    params = inspect.signature(spec.function).parameters
    for name, p in params.items():
        if p.kind is p.KEYWORD_ONLY:
            assert re.search(rf"^\s+{name}:", doc, re.M), f"{spec.name}: argument {name!r} is not documented"
        else:
            assert name in ("input", "pred", "target"), f"{spec.name}: {name} should be keyword-only"
    assert params["reduction"].default == "mean"


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("spec", "case"), CASES, ids=CASE_IDS)
def test_matches_float64_reference(spec, case, reduction):
    _supported(spec, reduction)
    out = _call(spec, case.input, case.target, case.kwargs, reduction=reduction)
    expected = REFERENCES[spec.name](_numpy(case.input), _numpy(case.target), **_numpy(case.kwargs),
                                     reduction=reduction)
    assert out.dtype == case.input.dtype
    assert tuple(out.shape) == tuple(getattr(expected, "shape", ()))
    assert_close_np(out, expected)


@pytest.mark.parametrize(("spec", "case"), CASES, ids=CASE_IDS)
def test_reductions_agree(spec, case):
    total = _call(spec, case.input, case.target, case.kwargs, reduction="sum")
    mean = _call(spec, case.input, case.target, case.kwargs, reduction="mean")
    assert total.shape == () and mean.shape == ()
    assert torch.isfinite(mean) and torch.isfinite(total)
    assert _call(spec, case.input, case.target, case.kwargs).equal(mean), "reduction must default to 'mean'"
    if "none" not in spec.reductions:
        with pytest.raises(ValueError, match=rf"^{spec.name}: reduction must be one of 'mean', 'sum'; got 'none'"):
            _call(spec, case.input, case.target, case.kwargs, reduction="none")
        return
    none = _call(spec, case.input, case.target, case.kwargs, reduction="none")
    torch.testing.assert_close(total, none.sum())
    assert torch.isfinite(none).all()


@pytest.mark.parametrize(("spec", "case"), REGULAR, ids=REGULAR_IDS)
def test_gradcheck(spec, case):
    if not spec.exact_gradient:
        pytest.skip(f"{spec.name} stops the gradient through part of its formula; its family tests check it")
    x = case.input.detach().clone().requires_grad_(True)
    reduction = _finest(spec)
    # A combination's terms are gradchecked in full on their own; its sum gets the fast (projected) check.
    assert torch.autograd.gradcheck(lambda inp: _call(spec, inp, case.target, case.kwargs, reduction=reduction), (x,),
                                    eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=reduction != "none")


def _module(spec: LossSpec, kwargs: dict) -> torch.nn.Module:
    """The loss's module with ``kwargs``. A module with running statistics (StatefulLoss: seesaw_loss's class
    counts, eqlv2_loss's gradient ratios) takes the number of classes: it is built in eval mode (no update)
    with its buffers set to the functional's statistics, which share their names."""
    if not issubclass(spec.module, StatefulLoss):
        return spec.module(**kwargs)
    stats = {name: kwargs[name] for name in spec.module.state if name in kwargs}
    rest = {k: v for k, v in kwargs.items() if k not in stats}
    module = spec.module(len(next(iter(stats.values()))), **rest).eval()
    for name, value in stats.items():
        buffer = getattr(module, name)
        buffer.copy_(torch.as_tensor(value, dtype=buffer.dtype))
    return module


@pytest.mark.parametrize(("spec", "case"), CASES, ids=CASE_IDS)
def test_module_equals_functional(spec, case):
    module = _module(spec, case.kwargs)
    x1 = case.input.detach().clone().requires_grad_(True)
    x2 = case.input.detach().clone().requires_grad_(True)
    a, b = module(x1, case.target), _call(spec, x2, case.target, case.kwargs)
    a.backward()
    b.backward()
    assert torch.equal(a, b)
    assert torch.equal(x1.grad, x2.grad)


def _special(tag):
    picked = [(s, c) for s, c in CASES if tag in c.tags]
    return pytest.mark.parametrize(("spec", "case"), picked, ids=[f"{s.name}-{c.id}" for s, c in picked])


@_special("empty")
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_empty_batch_gives_zero_connected_to_the_graph(spec, case, reduction):
    assert case.input.shape[0] == 0
    out, grad = _loss_and_grad(spec, case, reduction=reduction)
    assert out.grad_fn is not None
    assert out.item() == 0.0
    assert grad.shape == case.input.shape
    none = _call(spec, case.input, case.target, case.kwargs, reduction=_finest(spec))
    assert torch.equal(none, torch.zeros_like(none))  # no elements, or per-class losses of 0 (overlap losses)


@_special("all_ignored")
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_all_ignored_gives_zero_and_zero_gradients(spec, case, reduction):
    _supported(spec, reduction)
    out, grad = _loss_and_grad(spec, case, reduction=reduction)
    assert out.grad_fn is not None
    assert torch.equal(out, torch.zeros_like(out))
    assert torch.equal(grad, torch.zeros_like(grad))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize(("spec", "case"), CASES, ids=CASE_IDS)
def test_half_precision_is_computed_in_float32(spec, case, dtype):
    half = case.input.to(dtype)
    for reduction in spec.reductions:
        out = _call(spec, half, case.target, case.kwargs, reduction=reduction)
        assert out.dtype == dtype
        ref = _call(spec, half.float(), case.target, case.kwargs, reduction=reduction)
        torch.testing.assert_close(out.float(), ref.to(dtype).float(), **TOLERANCES[dtype])
    x = half.clone().requires_grad_(True)
    _call(spec, x, case.target, case.kwargs).backward()
    assert x.grad.dtype == dtype and torch.isfinite(x.grad).all()


def _saturate(case: Case, dtype: torch.dtype) -> torch.Tensor:
    # float16 holds logits up to 65504, but a loss of twice that does not fit the float16 result:
    # 5e3 keeps every registered case's loss (per-class weights up to 3) representable.
    big = 5e3 if dtype == torch.float16 else 1e4
    x = case.input
    if case.domain == "logits":
        return torch.where(x >= 0, big, -big).to(dtype)
    if case.domain == "probabilities":
        return (x > 0.5).to(dtype)
    if case.domain == "log-probabilities":
        return torch.log_softmax(torch.where(x >= x.mean(), big, -big).double(), dim=1).to(dtype)
    if case.domain == "values":  # regression: residuals of +-big
        return (case.target + torch.where(x >= 0, big, -big)).to(dtype)
    if case.domain == "boxes":  # boxes far away (corners near +-big), inverted, or of zero width and height
        far = torch.where(x >= x.mean(), big, -big)
        far[..., 0, :] = case.target[..., 0, :].flip(-1)  # inverted: x2 < x1 and y2 < y1 (for xyxy)
        corner = case.target[..., -1, :2]
        far[..., -1, :] = torch.cat([corner, corner], dim=-1)  # a point in xyxy
        return far.to(dtype)
    pytest.skip(f"no saturation rule for domain {case.domain!r}")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize(("spec", "case"), REGULAR, ids=REGULAR_IDS)
def test_saturated_inputs_give_finite_losses_and_gradients(spec, case, dtype):
    sat = _saturate(case, dtype)
    for reduction in [r for r in ("none", "mean") if r in spec.reductions]:  # a float16 "sum" may overflow
        out, grad = _loss_and_grad(spec, case, input=sat, reduction=reduction)
        assert torch.isfinite(out.float()).all(), f"non-finite loss {out}"
        assert torch.isfinite(grad.float()).all(), f"non-finite gradient {grad}"


def _strided(t):
    """The same values in a non-contiguous tensor (every other element of a twice-as-long last dimension)."""
    if t.ndim == 0:
        return t
    wide = torch.zeros(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype)
    wide[..., ::2] = t
    out = wide[..., ::2]
    assert not out.is_contiguous() or t.numel() <= 1
    return out


@pytest.mark.parametrize(("spec", "case"), REGULAR, ids=REGULAR_IDS)
def test_non_contiguous_inputs(spec, case):
    want, want_grad = _loss_and_grad(spec, case, reduction=_finest(spec))
    got, got_grad = _loss_and_grad(spec, case, input=_strided(case.input), target=_map(case.target, _strided),
                                   reduction=_finest(spec))
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(("spec", "case"), CASES, ids=CASE_IDS)
def test_inputs_are_not_modified(spec, case):
    x = case.input.detach().clone().requires_grad_(True)
    before = [t.clone() for t in [x.detach(), *_tensors(case.target), *_tensors(case.kwargs)]]
    versions = [t._version for t in [x, *_tensors(case.target), *_tensors(case.kwargs)]]
    _call(spec, x, case.target, case.kwargs).backward()
    after = [x.detach(), *_tensors(case.target), *_tensors(case.kwargs)]
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    assert versions == [t._version for t in [x, *_tensors(case.target), *_tensors(case.kwargs)]]


@pytest.mark.parametrize(("spec", "case"), REGULAR, ids=REGULAR_IDS)
def test_no_value_reads_off_the_cpu(spec, case):
    """On a non-CPU device the default check mode reads no values (no host-device sync).

    The meta device has no values at all: any read (``.item()``, ``bool(tensor)``)
    raises there, so running on it proves the hot path never syncs.
    """
    out = _call(spec, case.input.to("meta"), _map(case.target, lambda t: t.to("meta")),
                _map(case.kwargs, lambda t: t.to("meta")))
    assert out.device.type == "meta"


def _base_case(spec: LossSpec) -> Case:
    return next(c for s, c in REGULAR if s is spec and isinstance(c.target, torch.Tensor))


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_generic_errors_name_the_function_and_argument(spec):
    case, fn = _base_case(spec), spec.name
    first = next(iter(inspect.signature(spec.function).parameters))  # "input", or "pred" for boxes
    allowed = ", ".join(f"'{r}'" for r in spec.reductions)
    with pytest.raises(ValueError, match=rf"^{fn}: reduction must be one of {allowed}; got 'avg'"):
        _call(spec, case.input, case.target, case.kwargs, reduction="avg")
    with pytest.raises(TypeError, match=rf"^{fn}: {first} must be a floating-point tensor .*; got dtype torch.int64"):
        _call(spec, case.input.long(), case.target, case.kwargs)
    with pytest.raises(TypeError, match=rf"^{fn}: {first} must be a torch.Tensor; got a list of shape \(2,\)$"):
        _call(spec, [1.0, 2.0], case.target, case.kwargs)
    longer = torch.cat([case.target, case.target[:1]])
    with pytest.raises(ValueError, match=rf"^{fn}: target must have .*; got \({longer.shape[0]},"):
        _call(spec, case.input, longer, case.kwargs)
    with pytest.raises(TypeError, match=rf"^{fn}: target must be a torch.Tensor; got"):
        _call(spec, case.input, case.target.tolist(), case.kwargs)


ERRORS = [(spec, err) for spec in SPECS for err in ERROR_CASES.get(spec.name, list)()]


@pytest.mark.parametrize(("spec", "err"), ERRORS, ids=[f"{s.name}-{i}" for i, (s, _) in enumerate(ERRORS)])
def test_registered_errors(spec, err):
    with pytest.raises(err.error, match=err.match):
        spec.function(err.input, err.target, **err.kwargs)


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_every_loss_registers_error_cases(spec):
    assert len(ERROR_CASES[spec.name]()) >= 3, f"{spec.name}: give at least three loss-specific error cases"
