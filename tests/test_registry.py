"""Names, aliases and lookup (losslab.get_loss), registration, the module twins, and set_checks."""

from __future__ import annotations

import ast
import inspect
import itertools
import warnings
from pathlib import Path

import pytest
import torch

import losslab
from losslab import registry
from losslab._stateful import StatefulLoss
from losslab.registry import SOURCE_PREFIXES, Alias, LossSpec

from .samples import SAMPLES

FAMILY = ("cross_entropy", "nll_loss", "binary_cross_entropy", "balanced_cross_entropy",
          "sigmoid_focal_loss", "softmax_focal_loss")


def _spec_alias_pairs():
    return [(spec, alias) for spec in registry.specs() for alias in spec.aliases]


def _lookup_name(alias: Alias) -> str:
    """How a user reaches the alias: its bare name, or "<prefix>.<name>" when it is qualified."""
    if not alias.qualified:
        return alias.name
    prefix = next(k for k, v in SOURCE_PREFIXES.items() if v == alias.source)
    return f"{prefix}.{alias.name}"


def _functional_defaults(spec: LossSpec) -> dict:
    params = inspect.signature(spec.function).parameters.values()
    return {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY and p.default is not p.empty}


def _required(spec: LossSpec) -> dict:
    """Values for required hyperparameters (balanced_cross_entropy's alpha, the segmentation losses' mode):
    those of the loss's first sample case."""
    params = inspect.signature(spec.function).parameters.values()
    first = SAMPLES[spec.name]()[0].kwargs
    if issubclass(spec.module, StatefulLoss):  # its module takes num_classes instead of the statistics
        return {"num_classes": len(next(first[name] for name in spec.module.state if name in first))}
    return {p.name: first[p.name] for p in params if p.kind is p.KEYWORD_ONLY and p.default is p.empty}


def _assert_hyperparameters(module: torch.nn.Module, spec: LossSpec, expected_overrides: dict) -> None:
    expected = {**_functional_defaults(spec), **expected_overrides}
    for name, value in expected.items():
        got = getattr(module, name)
        if isinstance(value, torch.Tensor):  # a required tensor (the long-tail losses' class_counts): a buffer
            assert isinstance(got, torch.Tensor) and torch.equal(got, value), f"{type(module).__name__}.{name}"
            continue
        assert got == value, f"{type(module).__name__}.{name}: {got!r} != {value!r}"


# ----------------------------------------------------------------------------
# every canonical name and every alias


def test_the_family_is_registered():
    names = [spec.name for spec in registry.specs()]
    assert set(FAMILY) <= set(names)
    assert len(names) == len(set(names))
    for spec in registry.specs():
        assert getattr(losslab, spec.name) is spec.function, spec.name
        assert issubclass(spec.module, torch.nn.Module)


@pytest.mark.parametrize("spec", registry.specs(), ids=lambda s: s.name)
def test_canonical_name(spec):
    module = losslab.get_loss(spec.name, **_required(spec))
    assert type(module) is spec.module
    _assert_hyperparameters(module, spec, _required(spec))
    assert registry.lookup(spec.name) == (spec, None)


@pytest.mark.parametrize(("spec", "alias"), _spec_alias_pairs(),
                         ids=[f"{s.name}:{a.source}:{a.name}" for s, a in _spec_alias_pairs()])
def test_alias(spec, alias):
    name = _lookup_name(alias)
    kwargs = {k: v for k, v in _required(spec).items() if k not in alias.defaults}
    if alias.unsupported:  # another formula: the name refuses and points to losslab's closest loss
        with pytest.raises(ValueError, match=r"closest losslab loss is \w+"):
            losslab.get_loss(name, **kwargs)
        return
    if alias.build is not None:  # an adapter that reproduces the framework (tests/test_frameworks*.py)
        params = inspect.signature(alias.build).parameters
        required = {k: v for k, v in kwargs.items() if k in params}
        for param, value in (("alpha", 0.25), ("beta", 0.5), ("mode", "multiclass")):  # required there too
            if param in params and params[param].default is inspect.Parameter.empty:
                required[param] = value
        module = losslab.get_loss(name, **required)
        assert type(module) is alias.build
        return
    module = losslab.get_loss(name, **kwargs)
    assert type(module) is spec.module, f"{name!r} gave {type(module).__name__}, not {spec.module.__name__}"
    _assert_hyperparameters(module, spec, {**kwargs, **alias.defaults})
    # The input semantics that the alias announces are the ones its presets give.
    takes_from_logits = "from_logits" in inspect.signature(spec.function).parameters
    if alias.input == "probabilities":
        assert module.from_logits is False, name
    elif alias.input == "logits":
        assert not takes_from_logits or module.from_logits is True, name
    elif alias.input == "log-probabilities":
        assert spec.name == "nll_loss", name
    else:  # regression values or boxes: no logits involved
        assert alias.input in ("values", "boxes") and alias.input == spec.input and not takes_from_logits, name


@pytest.mark.parametrize(("spec", "alias"), [(s, a) for s, a in _spec_alias_pairs() if a.source in
                                             SOURCE_PREFIXES.values()],
                         ids=lambda v: getattr(v, "name", None))
def test_alias_with_every_prefix_of_its_framework(spec, alias):
    """ "torch.nn.BCELoss", "keras:binary_crossentropy", "tf.keras.losses.X": the framework word picks its meaning."""
    for prefix in [k for k, v in SOURCE_PREFIXES.items() if v == alias.source]:
        for name in (f"{prefix}.{alias.name}", f"{prefix}.losses.{alias.name}", f"{prefix}:{alias.name}"):
            found, found_alias = registry.lookup(name)
            assert found is spec, name
            assert found_alias is not None and dict(found_alias.defaults) == dict(alias.defaults), name


@pytest.mark.parametrize(("spec", "alias"), [(s, a) for s, a in _spec_alias_pairs()
                                             if a.qualified and not a.unsupported],
                         ids=lambda v: getattr(v, "name", None))
def test_qualified_alias_bare_name_means_something_else(spec, alias):
    """A qualified alias exists because its bare name already means another loss or other presets."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bare Keras spellings warn that they mean losslab's loss
        bare_spec, bare_alias = registry.lookup(alias.name)
    assert registry._meaning((bare_spec, bare_alias)) != registry._meaning((spec, alias))


@pytest.mark.parametrize(("spec", "alias"), [(s, a) for s, a in _spec_alias_pairs() if a.unsupported],
                         ids=lambda v: getattr(v, "name", None))
def test_refused_names_name_the_closest_loss(spec, alias):
    prefix = next(k for k, v in SOURCE_PREFIXES.items() if v == alias.source)
    with pytest.raises(ValueError, match=r"the closest losslab loss is \w+"):
        losslab.get_loss(f"{prefix}.{alias.name}")


def test_names_table_has_one_row_per_name_and_every_lookup_works():
    rows = registry.names_table()
    assert len(rows) == sum(1 + len(spec.aliases) for spec in registry.specs())
    for row in rows:
        spec, alias = registry.lookup(row["lookup"])
        assert spec.name == row["canonical"], row
        assert (dict(alias.defaults) if alias else {}) == row["defaults"], row
        assert row["formula"] == spec.formula
        assert row["input"] in ("logits", "probabilities", "log-probabilities", "values", "boxes")


# The names the issue asks for, with the loss and input semantics each must carry.
ISSUE_NAMES = [
    ("Logistic Loss", "binary_cross_entropy", True),
    ("Multinomial Logistic Loss", "cross_entropy", False),
    ("Softmax Loss", "cross_entropy", True),
    ("Categorical Cross-Entropy", "cross_entropy", False),
    ("Sigmoid Cross-Entropy", "binary_cross_entropy", True),
    ("Binary Cross-Entropy", "binary_cross_entropy", True),
    ("SoftmaxWithLoss", "cross_entropy", True),
    ("MultinomialLogisticLoss", "cross_entropy", False),
    ("SigmoidCrossEntropyLoss", "binary_cross_entropy", True),
    ("CrossEntropyLoss", "cross_entropy", True),
    ("BCEWithLogitsLoss", "binary_cross_entropy", True),
    ("BCELoss", "binary_cross_entropy", False),
    ("torch.nn.BCELoss", "binary_cross_entropy", False),
    ("torch.nn.functional.binary_cross_entropy", "binary_cross_entropy", False),
    ("NLLLoss", "nll_loss", None),
    ("softmax_cross_entropy", "cross_entropy", True),
    ("sigmoid_cross_entropy", "binary_cross_entropy", True),
    ("log_loss", "binary_cross_entropy", False),
    ("categorical_crossentropy", "cross_entropy", False),
    ("sparse_categorical_crossentropy", "cross_entropy", False),
    ("keras.losses.binary_crossentropy", "binary_cross_entropy", False),
    ("tf.keras.losses.BinaryCrossentropy", "binary_cross_entropy", False),
    ("keras.CategoricalFocalCrossentropy", "softmax_focal_loss", False),
    ("CategoricalFocalCrossentropy", "softmax_focal_loss", False),
    ("BinaryFocalCrossentropy", "sigmoid_focal_loss", False),
    ("tf.keras.losses.BinaryFocalCrossentropy", "sigmoid_focal_loss", False),
    ("sigmoid_focal_loss", "sigmoid_focal_loss", True),
    ("torchvision.ops.sigmoid_focal_loss", "sigmoid_focal_loss", True),
]


@pytest.mark.parametrize(("name", "canonical", "from_logits"), ISSUE_NAMES, ids=[n for n, _, _ in ISSUE_NAMES])
def test_issue_names(name, canonical, from_logits):
    module = losslab.get_loss(name)
    spec, alias = registry.lookup(name)
    assert spec.name == canonical
    assert type(module) is (alias.build if alias is not None and alias.build is not None else spec.module)
    if from_logits is None:
        assert "from_logits" not in inspect.signature(type(module)).parameters
    elif "from_logits" not in inspect.signature(type(module)).parameters:  # an adapter of a logits-only framework
        assert from_logits is True and alias is not None and alias.input == "logits"
    else:
        assert module.from_logits is from_logits


def test_bare_binary_crossentropy_takes_logits_and_keras_prefix_probabilities():
    """The bare name collides with losslab's binary_cross_entropy (logits); keras. gives Keras' probabilities."""
    with pytest.warns(UserWarning, match=r"get_loss: 'binary_crossentropy' is losslab's binary_cross_entropy "
                                         r"\(logits in\); Keras's binary_crossentropy expects probabilities: "
                                         r"ask for 'keras.binary_crossentropy'"):
        assert losslab.get_loss("binary_crossentropy").from_logits is True
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning for the canonical spelling or a prefixed name
        assert losslab.get_loss("keras.binary_crossentropy").from_logits is False
        assert losslab.get_loss("binary_cross_entropy").from_logits is True
        assert losslab.get_loss("torch.binary_cross_entropy").from_logits is False
    # Keras' class name, and any other spelling of the same key, warn too (issue 13)
    for spelling in ("BinaryCrossentropy", "BinaryCrossEntropy", "binary-crossentropy", "Binary Cross-Entropy"):
        with pytest.warns(UserWarning, match=rf"get_loss: '{spelling}' is losslab's binary_cross_entropy \(logits "
                                             r"in\);.*Keras's binary_crossentropy expects probabilities: "
                                             r"ask for 'keras.binary_crossentropy'"):
            assert losslab.get_loss(spelling).from_logits is True


def test_kornia_focal_loss_is_the_softmax_form_only_with_its_prefix():
    from losslab.frameworks.focal import KorniaFocalLoss

    assert type(losslab.get_loss("kornia.focal_loss", alpha=0.5)) is KorniaFocalLoss
    assert type(losslab.get_loss("kornia.FocalLoss", alpha=None)) is KorniaFocalLoss
    assert registry.get_spec("kornia.FocalLoss").name == "softmax_focal_loss"
    with pytest.raises(TypeError, match="KorniaFocalLoss: missing required keyword argument.*'alpha'"):
        losslab.get_loss("kornia.FocalLoss")  # kornia has no default alpha either
    assert type(losslab.get_loss("focal_loss")) is losslab.SigmoidFocalLoss
    assert type(losslab.get_loss("Focal Loss")) is losslab.SigmoidFocalLoss


# ----------------------------------------------------------------------------
# aliases compute what their frameworks compute


def _logits_and_indices(seed=0, n=7, c=4):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g, dtype=torch.float64) * 3, torch.randint(0, c, (n,), generator=g)


def test_nll_loss_alias_takes_log_probabilities():
    x, t = _logits_and_indices()
    weight = torch.tensor([0.5, 1.0, 2.0, 0.25], dtype=torch.float64)
    for kwargs in ({}, {"weight": weight}, {"reduction": "sum"}, {"reduction": "none"}):
        a = torch.log_softmax(x, 1).requires_grad_()
        b = a.detach().clone().requires_grad_()
        got = losslab.get_loss("NLLLoss", **kwargs)(a, t)
        want = torch.nn.NLLLoss(**kwargs)(b, t)
        torch.testing.assert_close(got, want)
        got.sum().backward()
        want.sum().backward()
        torch.testing.assert_close(a.grad, b.grad)


def test_bceloss_alias_takes_probabilities():
    g = torch.Generator().manual_seed(1)
    p = torch.rand(6, 3, generator=g, dtype=torch.float64) * 0.98 + 0.01
    t = (torch.rand(6, 3, generator=g) < 0.5).to(torch.float64)
    for name in ("BCELoss", "torch.nn.BCELoss", "log_loss"):
        for reduction in ("mean", "sum", "none"):
            torch.testing.assert_close(losslab.get_loss(name, reduction=reduction)(p, t),
                                       torch.nn.BCELoss(reduction=reduction)(p, t), msg=name)
    # and with exact 0 / 1 probabilities, where PyTorch floors the log at -100
    p0 = torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=torch.float64)
    t0 = torch.tensor([1.0, 0.0, 0.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(losslab.get_loss("BCELoss", reduction="none")(p0, t0),
                               torch.nn.BCELoss(reduction="none")(p0, t0))


def test_bce_with_logits_alias_takes_logits():
    x, _ = _logits_and_indices(2)
    t = (x.sin() > 0).to(x.dtype)
    pos_weight = torch.tensor([1.0, 2.0, 0.5, 3.0], dtype=torch.float64)
    torch.testing.assert_close(losslab.get_loss("BCEWithLogitsLoss", pos_weight=pos_weight)(x, t),
                               torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)(x, t))


def test_cross_entropy_loss_alias_equals_torch():
    x, t = _logits_and_indices(3)
    t[2] = -100
    weight = torch.tensor([0.5, 1.0, 2.0, 0.25], dtype=torch.float64)
    for kwargs in ({}, {"weight": weight}, {"label_smoothing": 0.2}, {"weight": weight, "label_smoothing": 0.1,
                                                                       "reduction": "sum"}):
        a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
        got = losslab.get_loss("CrossEntropyLoss", **kwargs)(a, t)
        want = torch.nn.CrossEntropyLoss(**kwargs)(b, t)
        torch.testing.assert_close(got, want)
        got.backward()
        want.backward()
        torch.testing.assert_close(a.grad, b.grad)


def test_keras_categorical_focal_crossentropy_doc_example():
    """keras.losses.categorical_focal_crossentropy's docstring example (alpha=0.25, gamma=2, probabilities)."""
    y_true = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    y_pred = torch.tensor([[0.05, 0.9, 0.05], [0.1, 0.85, 0.05]])
    loss = losslab.get_loss("keras.CategoricalFocalCrossentropy", reduction="none")(y_pred, y_true)
    torch.testing.assert_close(loss, torch.tensor([2.63401289e-04, 6.75912094e-01]), rtol=1e-6, atol=1e-9)


def test_keras_binary_focal_crossentropy_doc_example():
    """keras.losses.BinaryFocalCrossentropy's docstring: 0.691, and 0.51 with apply_class_balancing (alpha=0.25)."""
    y_true = torch.tensor([0.0, 1.0, 0.0, 0.0])
    y_pred = torch.tensor([-18.6, 0.51, 2.94, -12.8])
    plain = losslab.get_loss("keras.BinaryFocalCrossentropy", gamma=2.0, from_logits=True)
    balanced = losslab.get_loss("keras.BinaryFocalCrossentropy", gamma=2.0, from_logits=True, alpha=0.25)
    torch.testing.assert_close(plain(y_pred, y_true), torch.tensor(0.691), rtol=0, atol=5e-4)
    torch.testing.assert_close(balanced(y_pred, y_true), torch.tensor(0.51), rtol=0, atol=5e-3)


def test_keras_binary_crossentropy_alias():
    """keras.losses.binary_crossentropy takes probabilities; Keras clips them at 1e-7, so compare away from 0 and 1."""
    y_true = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    y_pred = torch.tensor([[0.6, 0.4], [0.4, 0.6]])
    loss = losslab.get_loss("tf.keras.losses.BinaryCrossentropy", reduction="mean")(y_pred, y_true)
    torch.testing.assert_close(loss, torch.tensor(0.81492424), rtol=1e-6, atol=1e-7)  # Keras docs: 0.815


# ----------------------------------------------------------------------------
# lookup: normalisation, keyword arguments, unknown names


@pytest.mark.parametrize("name", ["Sigmoid Focal-Loss", "SIGMOID_focal_loss", "  sigmoid focal loss ",
                                  "sigmoid--focal__loss", "SigmoidFocalLoss", "sigmoid\tfocal\nloss"])
def test_lookup_ignores_case_spaces_hyphens_underscores(name):
    assert type(losslab.get_loss(name)) is losslab.SigmoidFocalLoss


@pytest.mark.parametrize("name", ["bce-with-logits-loss", "BCE WITH LOGITS LOSS", "bce_with_logits_loss"])
def test_lookup_normalises_aliases_too(name):
    module = losslab.get_loss(name)
    assert type(module) is losslab.BinaryCrossEntropyLoss and module.from_logits is True


def test_keyword_arguments_override_alias_defaults():
    assert losslab.get_loss("BCELoss", from_logits=True).from_logits is True
    assert losslab.get_loss("BCELoss", reduction="sum").from_logits is False
    focal = losslab.get_loss("keras.CategoricalFocalCrossentropy", alpha=None, gamma=1.0)
    assert focal.alpha is None and focal.gamma == 1.0 and focal.from_logits is False
    binary_focal = losslab.get_loss("BinaryFocalCrossentropy", alpha=0.5)
    assert binary_focal.alpha == 0.5 and binary_focal.from_logits is False
    assert losslab.get_loss("cross_entropy", label_smoothing=0.3).label_smoothing == 0.3


def test_get_loss_rejects_unknown_keyword():
    with pytest.raises(TypeError, match=r"SigmoidFocalLoss: unexpected keyword argument\(s\) 'gama'"):
        losslab.get_loss("sigmoid_focal_loss", gama=2.0)


@pytest.mark.parametrize(("name", "suggestion"), [
    ("sigmoid_focal_los", "sigmoid_focal_loss"),
    ("BCELos", "BCELoss"),
    ("softmax_focal", "softmax_focal_loss"),
    ("crossentropyloss2", "CrossEntropyLoss"),
    ("FocalLos", "kornia.FocalLoss"),  # qualified names are suggested with their prefix
])
def test_unknown_name_suggests_close_names(name, suggestion):
    with pytest.raises(ValueError) as info:
        losslab.get_loss(name)
    message = str(info.value)
    assert message.startswith("get_loss:"), message
    assert repr(name) in message, message
    assert "did you mean" in message and repr(suggestion) in message, message
    assert "losslab names" in message


def test_unknown_name_without_close_match():
    with pytest.raises(ValueError, match=r"get_loss: unknown loss name 'qwertyuiop'\.") as info:
        losslab.get_loss("qwertyuiop")
    assert "did you mean" not in str(info.value)


@pytest.mark.parametrize("name", ["", "   ", ".", "keras."])
def test_empty_name(name):
    with pytest.raises(ValueError, match=r"get_loss"):
        losslab.get_loss(name)


@pytest.mark.parametrize("name", [None, 3, torch.nn.BCELoss])
def test_non_string_name(name):
    with pytest.raises(TypeError, match=r"get_loss: name must be a str"):
        losslab.get_loss(name)


# ----------------------------------------------------------------------------
# registration


@pytest.fixture
def isolated_registry():
    """Snapshot the registry's private dicts and restore them after the test, whatever it did."""
    saved = (dict(registry._SPECS), dict(registry._BARE), dict(registry._QUALIFIED))
    yield
    for target, copy in zip((registry._SPECS, registry._BARE, registry._QUALIFIED), saved):
        target.clear()
        target.update(copy)


def _throwaway(name="throwaway_test_loss", aliases=()):
    return LossSpec(name=name, function=losslab.binary_cross_entropy, module=losslab.BinaryCrossEntropyLoss,
                    family="test", formula="-", aliases=tuple(aliases))


def _state():
    return dict(registry._SPECS), dict(registry._BARE), dict(registry._QUALIFIED)


@pytest.mark.parametrize(("aliases", "match"), [
    ((Alias("BCELoss", "PyTorch"),), r"register: name 'bceloss' of 'throwaway_test_loss' already means "
                                     r"'binary_cross_entropy' via alias 'BCELoss'"),
    ((Alias("Cross Entropy Loss", "paper"),), r"already means 'cross_entropy'"),
    ((Alias("sigmoid_focal_loss", "paper"),), r"already means 'sigmoid_focal_loss'"),
    ((Alias("new_unique_name", "paper"), Alias("binary_crossentropy", "Keras", qualified=True)),
     r"register: keras.binary_crossentropy already means 'binary_cross_entropy'"),
    ((Alias("new_unique_name", "nowhere", qualified=True),), r"qualified alias 'new_unique_name' needs a source"),
])
def test_register_conflicting_alias_raises_and_changes_nothing(isolated_registry, aliases, match):
    before = _state()
    with pytest.raises(ValueError, match=match):
        registry.register(_throwaway(aliases=aliases))
    assert _state() == before
    with pytest.raises(ValueError, match="unknown loss name"):
        losslab.get_loss("throwaway_test_loss")


def test_register_duplicate_canonical_name_raises(isolated_registry):
    before = _state()
    with pytest.raises(ValueError, match=r"register: a loss named 'binary_cross_entropy' is already registered"):
        registry.register(_throwaway(name="binary_cross_entropy"))
    assert _state() == before


def test_register_new_loss_then_restore(isolated_registry):
    spec = registry.register(_throwaway(aliases=(Alias("Throwaway Alias", "PyTorch", "probabilities",
                                                       {"from_logits": False}),)))
    assert registry.specs()[-1] is spec
    assert losslab.get_loss("throwaway-test-loss").from_logits is True
    assert losslab.get_loss("throwaway_alias").from_logits is False
    assert losslab.get_loss("torch.ThrowawayAlias").from_logits is False
    # the fixture restores the registry; check the restoration itself in the next test


def test_registry_was_restored():
    assert "throwaway_test_loss" not in [s.name for s in registry.specs()]
    with pytest.raises(ValueError):
        losslab.get_loss("throwaway alias")


# ----------------------------------------------------------------------------
# module twins


TWIN_SPECS = [s for s in registry.specs() if not issubclass(s.module, StatefulLoss)]  # tests/test_seesaw.py: others


@pytest.mark.parametrize("spec", TWIN_SPECS, ids=lambda s: s.name)
def test_module_signature_matches_functional(spec):
    functional = [p for p in inspect.signature(spec.function).parameters.values() if p.kind is p.KEYWORD_ONLY]
    # PyTorch's own modules' leading positional arguments (CrossEntropyLoss(weight)) come first, positionally
    positional = spec.module._positional
    by_name = {p.name: p for p in functional}
    functional = [by_name[n].replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in positional] + \
                 [p for p in functional if p.name not in positional]
    module = list(inspect.signature(spec.module).parameters.values())
    assert [(p.name, p.kind, p.default, p.annotation) for p in module] == \
           [(p.name, p.kind, p.default, p.annotation) for p in functional]


@pytest.mark.parametrize("spec", TWIN_SPECS, ids=lambda s: s.name)
def test_module_rejects_unknown_keyword_and_positional_arguments(spec):
    with pytest.raises(TypeError, match=rf"{spec.module.__name__}: unexpected keyword argument\(s\) 'not_an_arg'"):
        spec.module(not_an_arg=1, **_required(spec))
    with pytest.raises(TypeError):
        spec.module(*(["mean"] * (len(spec.module._positional) + 1)))  # one more than it takes positionally


def test_module_missing_required_keyword():
    with pytest.raises(TypeError, match=r"BalancedCrossEntropyLoss: missing required keyword argument\(s\) 'alpha'"):
        losslab.BalancedCrossEntropyLoss()


@pytest.mark.parametrize(("module", "kwargs", "error", "match"), [
    (losslab.SigmoidFocalLoss, {"gamma": -1.0}, ValueError, r"sigmoid_focal_loss: gamma must be a finite number"),
    (losslab.SoftmaxFocalLoss, {"gamma": -0.5}, ValueError, r"softmax_focal_loss: gamma must be a finite number"),
    (losslab.SoftmaxFocalLoss, {"gamma": float("nan")}, ValueError, r"softmax_focal_loss: gamma"),
    (losslab.SigmoidFocalLoss, {"gamma": "2"}, TypeError, r"sigmoid_focal_loss: gamma must be a real number"),
    (losslab.CrossEntropyLoss, {"reduction": "avg"}, ValueError, r"cross_entropy: reduction must be one of"),
    (losslab.CrossEntropyLoss, {"label_smoothing": 1.5}, ValueError, r"cross_entropy: label_smoothing"),
    (losslab.BinaryCrossEntropyLoss, {"from_logits": "yes"}, TypeError, r"binary_cross_entropy: from_logits"),
    (losslab.NLLLoss, {"ignore_index": 1.5}, TypeError, r"nll_loss: ignore_index must be an int or None"),
    (losslab.SigmoidFocalLoss, {"alpha": 1.5}, ValueError, r"sigmoid_focal_loss: alpha must be a finite number"),
    (losslab.SigmoidFocalLoss, {"alpha": [0.2, 0.3]}, TypeError, r"sigmoid_focal_loss: alpha must be a float"),
    (losslab.SoftmaxFocalLoss, {"alpha": 2.0}, ValueError, r"softmax_focal_loss: alpha must be a finite number"),
    (losslab.SoftmaxFocalLoss, {"alpha": [0.5, -0.5]}, ValueError,
     r"softmax_focal_loss: alpha must be finite and non-negative; got \[0.5, -0.5\]"),
    (losslab.BalancedCrossEntropyLoss, {"alpha": 1.5}, ValueError, r"balanced_cross_entropy: alpha must be a finite"),
    (losslab.BalancedCrossEntropyLoss, {"alpha": "inverse"}, TypeError, r"balanced_cross_entropy: alpha must be a"),
    (losslab.BalancedCrossEntropyLoss, {"alpha": None}, TypeError, r"balanced_cross_entropy: alpha .*; got None"),
    (losslab.CrossEntropyLoss, {"weight": [-1.0, 1.0]}, ValueError,
     r"cross_entropy: weight must be finite and non-negative; got \[-1.0, 1.0\]"),
    (losslab.BinaryCrossEntropyLoss, {"pos_weight": torch.tensor([1.0, float("inf")])}, ValueError,
     r"binary_cross_entropy: pos_weight must be finite and non-negative"),
])
def test_module_validates_hyperparameters_at_construction(module, kwargs, error, match):
    with pytest.raises(error, match=match):
        module(**kwargs)


TENSOR_HYPERPARAMETERS = [
    (losslab.CrossEntropyLoss, "weight"),
    (losslab.NLLLoss, "weight"),
    (losslab.BinaryCrossEntropyLoss, "weight"),
    (losslab.BinaryCrossEntropyLoss, "pos_weight"),
    (losslab.BalancedCrossEntropyLoss, "alpha"),
    (losslab.SoftmaxFocalLoss, "alpha"),
]


@pytest.mark.parametrize(("module_cls", "name"), TENSOR_HYPERPARAMETERS,
                         ids=[f"{m.__name__}.{n}" for m, n in TENSOR_HYPERPARAMETERS])
def test_tensor_hyperparameters_are_buffers(module_cls, name):
    value = torch.tensor([0.5, 1.0, 0.25], dtype=torch.float32)
    module = module_cls(**{name: value})
    assert dict(module.named_buffers())[name] is getattr(module, name)
    assert name in module.state_dict()
    torch.testing.assert_close(module.state_dict()[name], value)
    module.to(torch.float64)
    assert getattr(module, name).dtype == torch.float64
    assert value.dtype == torch.float32  # the caller's tensor is not changed by .to()


@pytest.mark.parametrize(("module_cls", "name"), TENSOR_HYPERPARAMETERS,
                         ids=[f"{m.__name__}.{n}" for m, n in TENSOR_HYPERPARAMETERS])
def test_list_hyperparameters_become_buffers(module_cls, name):
    module = module_cls(**{name: [0.5, 1.0, 0.25]})
    buffer = dict(module.named_buffers())[name]
    assert isinstance(buffer, torch.Tensor)
    torch.testing.assert_close(buffer, torch.tensor([0.5, 1.0, 0.25], dtype=torch.float64))
    assert name in module.state_dict()
    # and the module computes what the functional computes with the list
    g = torch.Generator().manual_seed(4)
    x = torch.randn(5, 3, generator=g)
    t = torch.randint(0, 3, (5,), generator=g)
    fn = module_cls.function
    x_in = torch.log_softmax(x, 1) if module_cls is losslab.NLLLoss else x
    torch.testing.assert_close(module(x_in, t), fn(x_in, t, **{name: [0.5, 1.0, 0.25]}))


def test_state_dict_round_trip_changes_the_loss():
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(5))
    t = torch.tensor([0, 1, 2, 0, 1, 2])
    source = losslab.CrossEntropyLoss(weight=torch.tensor([3.0, 1.0, 0.2]), reduction="sum")
    target = losslab.CrossEntropyLoss(weight=torch.ones(3), reduction="sum")
    assert not torch.allclose(source(x, t), target(x, t))
    target.load_state_dict(source.state_dict())
    torch.testing.assert_close(target(x, t), source(x, t))


def test_scalar_hyperparameters_are_attributes_not_buffers():
    module = losslab.SoftmaxFocalLoss(alpha=0.25, gamma=0.5)
    assert module.alpha == 0.25 and module.gamma == 0.5
    assert dict(module.named_buffers()) == {}
    assert module.state_dict() == {}
    assert "gamma=0.5" in repr(module)


# ----------------------------------------------------------------------------
# set_checks


def _out_of_range_call():
    """One-vs-rest BCE with class index 7 for 3 classes: only the value check can catch it."""
    return losslab.binary_cross_entropy(torch.zeros(4, 3), torch.tensor([0, 7, 1, 3]))


def test_value_checks_default_on_cpu():
    assert losslab.get_checks() is None
    with pytest.raises(ValueError, match=r"binary_cross_entropy: target class indices must be in \[0, 4\)"):
        _out_of_range_call()


def test_set_checks_false_disables_value_checks_and_true_or_none_restore():
    assert losslab.set_checks(False).value is None  # the previous setting (a context manager too)
    assert losslab.get_checks() is False
    value = _out_of_range_call()  # no check: index 7 is simply negative for every class
    assert torch.isfinite(value)
    losslab.binary_cross_entropy(torch.zeros(2, 3), torch.full((2, 3), 3.0))  # target outside [0, 1]: unchecked
    # metadata is always checked
    with pytest.raises(ValueError, match=r"binary_cross_entropy: target must have the input's shape"):
        losslab.binary_cross_entropy(torch.zeros(4, 3), torch.zeros(4, 2))

    assert losslab.set_checks(True).value is False
    with pytest.raises(ValueError, match=r"target class indices must be in"):
        _out_of_range_call()
    with pytest.raises(ValueError, match=r"cross_entropy: target class indices must be in \[0, 3\)"):
        losslab.cross_entropy(torch.zeros(4, 3), torch.tensor([0, 1, 2, 3]))

    assert losslab.set_checks(False).value is True
    assert losslab.set_checks(None).value is False
    with pytest.raises(ValueError, match=r"target class indices must be in"):
        _out_of_range_call()


@pytest.mark.parametrize("value", [1, 0, "yes", "False", 1.0, torch.tensor(True)])
def test_set_checks_rejects_non_bool(value):
    losslab.set_checks(True)
    with pytest.raises(TypeError, match=r"set_checks: enabled must be True, False or None"):
        losslab.set_checks(value)
    assert losslab.get_checks() is True  # unchanged by the failed call


DETECTION_NAMES = [
    ("QFL", "quality_focal_loss"), ("Quality Focal Loss", "quality_focal_loss"),
    ("DFL", "distribution_focal_loss"), ("DistributionFocalLoss", "distribution_focal_loss"),
    ("VFL", "varifocal_loss"), ("VarifocalLoss", "varifocal_loss"), ("varifocal loss", "varifocal_loss"),
    ("SmoothL1Loss", "smooth_l1_loss"), ("torch.nn.SmoothL1Loss", "smooth_l1_loss"), ("smooth-l1", "smooth_l1_loss"),
    ("HuberLoss", "huber_loss"), ("keras.losses.Huber", "huber_loss"), ("optax.huber_loss", "huber_loss"),
    ("IoU", "iou_loss"), ("UnitBox", "iou_loss"),
    ("GIoU", "giou_loss"), ("torchvision.ops.generalized_box_iou_loss", "giou_loss"),
    ("DIoU", "diou_loss"), ("distance_box_iou_loss", "diou_loss"),
    ("CIoU", "ciou_loss"), ("complete_box_iou_loss", "ciou_loss"),
    ("EIoU", "eiou_loss"), ("SIoU", "siou_loss"), ("SCYLLA-IoU", "siou_loss"),
]


@pytest.mark.parametrize(("name", "canonical"), DETECTION_NAMES, ids=[n for n, _ in DETECTION_NAMES])
def test_detection_names(name, canonical):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        module = losslab.get_loss(name)
    assert type(module) is registry.get_spec(canonical).module


def test_bare_iouloss_is_linear_and_warns_that_mmdetection_means_log():
    with pytest.warns(UserWarning, match=r"get_loss: 'IoULoss' is losslab's iou_loss \(boxes in\); mmdetection's "
                                         r"IoULoss differs \(-log IoU by default, the IoU clamped at eps = 1e-6\): "
                                         r"ask for 'mmdet.IoULoss'"):
        assert losslab.get_loss("IoULoss").mode == "linear"
    assert losslab.get_loss("mmdet.IoULoss").mode == "log"
    assert losslab.get_loss("UnitBox").mode == "log"
    assert losslab.get_loss("mmdet.IoULoss", mode="square").mode == "square"  # the caller overrides the preset


def test_module_forward_overrides_per_call():
    loss_fn = losslab.get_loss("GIoU")
    pred = torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 4.0]])
    target = torch.tensor([[1.0, 0.0, 3.0, 2.0], [1.0, 1.0, 3.0, 3.0]])
    assert torch.equal(loss_fn(pred, target, avg_factor=4.0), losslab.giou_loss(pred, target, avg_factor=4.0))
    assert torch.equal(loss_fn(pred, target), losslab.giou_loss(pred, target))  # the override did not stick
    with pytest.raises(TypeError, match=r"GIoULoss.forward: unexpected keyword argument\(s\) 'gamma'"):
        loss_fn(pred, target, gamma=2.0)


SEGMENTATION_NAMES = [
    ("Soft Dice", "dice_loss", {}), ("dice", "dice_loss", {}), ("DiceLoss", "dice_loss", {}),
    ("Jaccard", "jaccard_loss", {}), ("Soft IoU", "jaccard_loss", {}), ("soft-iou-loss", "jaccard_loss", {}),
    ("Tversky", "tversky_loss", {}), ("Focal Tversky", "tversky_loss", {"gamma": 0.75}),
    ("dice_ce", "dice_ce_loss", {}), ("DiceCELoss", "dice_ce_loss", {}),
    ("dice_focal", "dice_focal_loss", {}), ("DiceFocalLoss", "dice_focal_loss", {}),
]


@pytest.mark.parametrize(("name", "canonical", "presets"), SEGMENTATION_NAMES,
                         ids=[n for n, _, _ in SEGMENTATION_NAMES])
def test_segmentation_names(name, canonical, presets):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bare "DiceLoss" warns that smp presets smooth=0
        module = losslab.get_loss(name, mode="multiclass")
    assert type(module) is registry.get_spec(canonical).module
    assert module.mode == "multiclass"
    for key, value in presets.items():
        assert getattr(module, key) == value


def test_iou_loss_names_the_box_loss_and_soft_iou_the_mask_loss():
    assert type(losslab.get_loss("IoU")) is losslab.IoULoss
    assert type(losslab.get_loss("Soft IoU", mode="binary")) is losslab.JaccardLoss


def test_bare_diceloss_warns_that_the_frameworks_differ():
    with pytest.warns(UserWarning, match=r"get_loss: 'DiceLoss' is losslab's dice_loss \(logits in\); "
                                         r"(MONAI|segmentation_models_pytorch|kornia)'s DiceLoss differs"):
        assert losslab.get_loss("DiceLoss", mode="binary").smooth == 1.0


# ----------------------------------------------------------------------------
# the package's imports: no cycle, and the registry a leaf


def _import_graph() -> dict[str, dict[str, int]]:
    """module -> {losslab module it imports: line}, from every import statement of every module under losslab/.

    Imports inside functions and under ``if TYPE_CHECKING:`` count too: a
    lazy import that dodges a cycle is still a cycle. ``from . import x``
    is an edge to the module ``x`` where there is one, else to the package.
    """
    root = Path(losslab.__file__).parent
    paths = {}
    for path in sorted(root.rglob("*.py")):
        parts = ("losslab",) + path.relative_to(root).with_suffix("").parts
        paths[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, dict[str, int]] = {}
    for module, path in paths.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        edges = graph.setdefault(module, {})
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    words = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(words + ([node.module] if node.module else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in paths else base for alias in node.names]
            else:
                continue
            for target in targets:
                if target in paths and target != module:
                    edges.setdefault(target, node.lineno)
    return graph


def _find_cycle(graph: dict[str, dict[str, int]]) -> list[str]:
    """One cycle of the graph as [a, b, ..., a], or [] when it has none (a depth-first search)."""
    state: dict[str, str] = {}  # "open" while on the path, "done" after
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph.get(node, {})):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = "done"
        return []

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return []


def test_import_graph_is_read():
    graph = _import_graph()
    assert {"losslab", "losslab.registry", "losslab.config", "losslab.combined", "losslab.lab._ablate"} <= set(graph)
    assert "losslab.registry" in graph["losslab.combined"]  # module-level "from .registry import ..."
    assert "losslab._gpu" in graph["losslab._fused"]  # a function's "from . import _gpu"
    assert "losslab.lab._commands" in graph["losslab.cli"]  # "from .lab import _commands"
    assert _find_cycle({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b": 1}, "b": {}, "c": {"a": 1, "b": 1}}) == []


def test_no_import_cycle_in_the_package():
    graph = _import_graph()
    cycle = _find_cycle(graph)
    where = [f"{a} imports {b} (line {graph[a][b]})" for a, b in itertools.pairwise(cycle)]
    assert not cycle, "import cycle: " + "; ".join(where)


def test_registry_is_a_leaf():
    assert _import_graph()["losslab.registry"] == {}


def test_registry_build_is_get_loss_for_a_name():
    assert losslab.get_loss is losslab.config.get_loss
    for name, kwargs in [("BCELoss", {}), ("kornia.FocalLoss", {"alpha": 0.5}), ("dice", {"mode": "binary"})]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            built, got = registry.build(name, **kwargs), losslab.get_loss(name, **kwargs)
        assert type(built) is type(got)
        assert repr(built) == repr(got)
    with pytest.raises(ValueError, match=r"get_loss: unknown loss name 'qwertyuiop'\."):
        registry.build("qwertyuiop")


def test_name_warning_points_at_the_callers_line_whichever_way_the_name_came():
    """A name that frameworks spell otherwise warns at the user's line: by name, in a config, in a combination."""
    builds = [lambda: losslab.get_loss("binary_crossentropy"),
              lambda: losslab.get_loss({"name": "binary_crossentropy"}),
              lambda: losslab.get_loss([{"name": "binary_crossentropy", "loss_weight": 0.5}]),
              lambda: losslab.combine(["binary_crossentropy"]),
              lambda: registry.build("binary_crossentropy"),
              lambda: registry.get_spec("binary_crossentropy")]
    for build in builds:
        with pytest.warns(UserWarning, match=r"get_loss: 'binary_crossentropy' is losslab's") as record:
            build()
        assert [w.filename for w in record] == [__file__]
