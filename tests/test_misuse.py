"""Issue 13, "Faithful names and clear failures": misuses that gave silent wrong numbers or unclear errors.

One test (or one parametrised family) per item; each fails on the code before the fix.
"""

from __future__ import annotations

import inspect
import re
import warnings

import numpy as np
import pytest
import torch

import losslab
from losslab._stateful import StatefulLoss
from losslab.registry import specs

from .samples import SAMPLES

F64 = torch.float64

# ----------------------------------------------------------------------------
# one class with integer labels: the index form with C = 1 reads label 1 as background

ONE_CLASS_FIX = re.escape("pass labels shaped like the input, e.g. target.float().unsqueeze(1)")

SIGMOID_CALLS = {
    "binary_cross_entropy": lambda x, t: losslab.binary_cross_entropy(x, t),
    "sigmoid_focal_loss": lambda x, t: losslab.sigmoid_focal_loss(x, t),
    "balanced_cross_entropy": lambda x, t: losslab.balanced_cross_entropy(x, t, alpha=0.25),
    "quality_focal_loss": lambda x, t: losslab.quality_focal_loss(x, t),
    "varifocal_loss": lambda x, t: losslab.varifocal_loss(x, t),
    "BCEWithLogitsLoss": lambda x, t: losslab.get_loss("BCEWithLogitsLoss")(x, t),
    "SigmoidFocalLoss": lambda x, t: losslab.SigmoidFocalLoss()(x, t),
}


@pytest.mark.parametrize("name", list(SIGMOID_CALLS))
@pytest.mark.parametrize("shape", [(4, 1), (2, 1, 3, 3)], ids=["N1", "N1HW"])
def test_one_class_integer_target_is_an_error_that_shows_the_fix(name, shape):
    x = torch.full(shape, 3.0)
    t = torch.ones(shape[:1] + shape[2:], dtype=torch.long)
    fn = name if name.islower() else r"\w+"
    with pytest.raises(ValueError, match=rf"^{fn}: a target of shape .* \(one class\) would be read as class indices "
                                         rf"with index 1 = background.*; {ONE_CLASS_FIX}$"):
        SIGMOID_CALLS[name](x, t)
    if name.islower():  # the suggested fix gives the loss of confident correct predictions
        value = SIGMOID_CALLS[name](x, t.float().unsqueeze(1))
        assert float(value) < 0.06


def test_one_class_integer_target_raises_on_the_fused_path_too():
    x = torch.full((64, 1), 3.0, requires_grad=True)
    previous = losslab.set_fused("eager")
    try:
        with pytest.raises(ValueError, match=rf"^sigmoid_focal_loss: .*{ONE_CLASS_FIX}$"):
            losslab.sigmoid_focal_loss(x, torch.ones(64, dtype=torch.long))
    finally:
        losslab.set_fused(previous)


def test_bce_of_perfect_one_class_predictions_is_small_with_the_fix():
    """The issue's figure: logits +-3 matching 0/1 labels give BCE 0.049 (3.05 when label 1 was background)."""
    labels = torch.tensor([1, 0, 1, 0])
    x = (labels.float() * 6 - 3).unsqueeze(1)
    value = losslab.binary_cross_entropy(x, labels.float().unsqueeze(1))
    expected = torch.nn.functional.binary_cross_entropy_with_logits(x, labels.float().unsqueeze(1))
    torch.testing.assert_close(value, expected)
    assert float(value) == pytest.approx(0.0486, abs=1e-4)


def test_one_class_pair_target_keeps_mmdetections_single_class_convention():
    """(labels, scores) is mmdetection's format: label 0 is the object and 1 = C the background, even for C = 1."""
    x = torch.tensor([[2.0], [-1.0], [0.5]])
    labels, scores = torch.tensor([0, 1, 0]), torch.tensor([0.9, 0.0, 0.3])
    dense = torch.tensor([[0.9], [0.0], [0.3]])
    for fn in (losslab.quality_focal_loss, losslab.varifocal_loss):
        torch.testing.assert_close(fn(x, (labels, scores)), fn(x, dense))


def test_several_classes_keep_the_index_form():
    x, t = torch.randn(4, 3), torch.tensor([0, 3, 2, 1])
    torch.testing.assert_close(losslab.binary_cross_entropy(x, t),
                               losslab.binary_cross_entropy(x, torch.nn.functional.one_hot(t, 4)[:, :3].float()))


# ----------------------------------------------------------------------------
# bytes are not a sequence of numbers; bool tensors are not numbers


@pytest.mark.parametrize("call", [
    lambda: losslab.cross_entropy(torch.randn(3, 3), torch.tensor([0, 1, 2]), weight=b"abc"),
    lambda: losslab.softmax_focal_loss(torch.randn(3, 3), torch.tensor([0, 1, 2]), alpha=b"abc"),
    lambda: losslab.balanced_cross_entropy(torch.randn(3, 3), torch.tensor([0, 1, 2]), alpha=b"abc"),
    lambda: losslab.binary_cross_entropy(torch.randn(3, 3), torch.rand(3, 3), pos_weight=bytearray(b"abc")),
    lambda: losslab.dice_loss(torch.randn(2, 3, 4), torch.zeros(2, 4, dtype=torch.long), mode="multiclass",
                              weight=b"abc"),
    lambda: losslab.CrossEntropyLoss(weight=b"abc"),
    lambda: losslab.SoftmaxFocalLoss(alpha=b"abc"),
], ids=["ce-weight", "softmax-focal-alpha", "balanced-alpha", "bce-pos_weight", "dice-weight", "module-weight",
        "module-alpha"])
def test_bytes_are_not_per_class_weights(call):
    with pytest.raises(TypeError, match=r"^\w+: (weight|alpha|pos_weight) must be .*; got (b'abc'|bytearray\(b'abc'\))"):
        call()


BOXES = torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 4.0]])
BOX_LOSSES = ["iou_loss", "giou_loss", "diou_loss", "ciou_loss", "eiou_loss", "siou_loss"]


@pytest.mark.parametrize("name", BOX_LOSSES)
def test_bool_box_target_is_an_error(name):
    with pytest.raises(TypeError, match=rf"^{name}: target must hold box coordinates .*; got dtype torch.bool$"):
        getattr(losslab, name)(BOXES, BOXES > 1)


def test_bool_distribution_target_is_an_error():
    with pytest.raises(TypeError, match=r"^distribution_focal_loss: target must hold distances in bins .*"
                                        r"got dtype torch.bool$"):
        losslab.distribution_focal_loss(torch.randn(3, 5), torch.tensor([True, False, True]))


@pytest.mark.parametrize("call", [
    lambda f: losslab.giou_loss(BOXES, BOXES, avg_factor=f),
    lambda f: losslab.smooth_l1_loss(torch.randn(3), torch.randn(3), avg_factor=f),
    lambda f: losslab.distribution_focal_loss(torch.randn(3, 5), torch.rand(3), avg_factor=f),
    lambda f: losslab.quality_focal_loss(torch.randn(3, 2), torch.rand(3, 2), avg_factor=f),
    lambda f: losslab.sigmoid_focal_loss(torch.randn(3, 2), torch.rand(3, 2), avg_factor=f),
], ids=["giou", "smooth_l1", "dfl", "qfl", "sigmoid_focal"])
def test_bool_avg_factor_is_an_error(call):
    with pytest.raises(TypeError, match=r"^\w+: avg_factor must be None, a number >= 0 or a one-element real tensor; "
                                        r"got dtype torch.bool$"):
        call(torch.tensor(True))


# ----------------------------------------------------------------------------
# boxes: non-finite pred boxes are the target's error; far-apart finite boxes give no NaN


@pytest.mark.parametrize("name", BOX_LOSSES)
@pytest.mark.parametrize("bad", [float("inf"), float("nan"), -float("inf")])
def test_non_finite_pred_box_is_the_same_error_as_a_non_finite_target_box(name, bad):
    broken = BOXES.clone()
    broken[1, 2] = bad
    loss = getattr(losslab, name)
    with pytest.raises(ValueError, match=rf"^{name}: pred boxes must be finite; got {re.escape(repr(bad))}$"):
        loss(broken, BOXES)
    with pytest.raises(ValueError, match=rf"^{name}: target boxes must be finite; got {re.escape(repr(bad))}$"):
        loss(BOXES, broken)


FAR = [
    ("1e20-apart", [[0.0, 0.0, 1.0, 1.0]], [[1e20, 1e20, 1e20 + 1e14, 1e20 + 1e14]]),
    ("1e20-apart-points", [[0.0, 0.0, 0.0, 0.0]], [[1e20, -1e20, 1e20, -1e20]]),
    ("huge-boxes", [[-1e20, -1e20, 1e20, 1e20]], [[0.0, -2e20, 3e20, 1e20]]),
    ("huge-and-tiny", [[-1e20, -3e19, 1e20, 1e20]], [[5.0, 5.0, 6.0, 7.0]]),
]


@pytest.mark.parametrize("name", BOX_LOSSES)
@pytest.mark.parametrize("layout,pred,target", FAR, ids=[f[0] for f in FAR])
def test_finite_float32_boxes_far_apart_give_finite_values_and_gradients(name, layout, pred, target):
    p = torch.tensor(pred, requires_grad=True)
    t = torch.tensor(target)
    loss = getattr(losslab, name)(p, t, reduction="sum")
    loss.backward()
    assert bool(torch.isfinite(loss)), f"{name} {layout}: loss {loss}"
    assert bool(torch.isfinite(p.grad).all()), f"{name} {layout}: gradient {p.grad}"
    assert 0.0 <= float(loss) <= 4.0
    # the same boxes in float64, where nothing overflows, give the same loss
    reference = getattr(losslab, name)(p.detach().double(), t.double(), reduction="sum")
    assert float(loss) == pytest.approx(float(reference), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("name", BOX_LOSSES)
def test_disjoint_boxes_1e20_apart_have_the_far_limit(name):
    """Unit boxes 1e20 apart along the diagonal: IoU 0, and the DIoU and GIoU penalties at their limit 1."""
    p = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    t = torch.tensor([[1e20, 1e20, 1e20 + 1.0, 1e20 + 1.0]])
    value = float(getattr(losslab, name)(p, t))
    expected = {"iou_loss": 1.0, "giou_loss": 2.0, "diou_loss": 2.0, "ciou_loss": 2.0, "eiou_loss": 2.0}
    if name in expected:
        assert value == pytest.approx(expected[name], abs=1e-6)


def test_readme_says_finite_inputs_for_no_nan():
    readme = " ".join(open(__file__.replace("tests/test_misuse.py", "README.md"), encoding="utf-8").read().split())
    assert "never returns NaN" not in readme or "never returns NaN for finite inputs" in readme
    assert "Finite boxes never give NaN" in " ".join(losslab.giou_loss.__doc__.split())


# ----------------------------------------------------------------------------
# module twins validate every hyperparameter at construction, with the functional's message

BAD_VALUES = ["x", b"ab", [[1.0, 2.0], [3.0, 4.0]], ["a", "b"], np.array(["a", "b"]), {"a": 1}, -1.0, float("nan"),
              True]
SPECS = [s for s in specs() if not issubclass(s.module, StatefulLoss)]  # the others: tests/test_seesaw.py


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_module_construction_raises_the_functionals_error_for_every_hyperparameter(spec):
    case = next(c for c in SAMPLES[spec.name]() if not c.tags)
    checked = 0
    for name in spec.module._parameters_of_function:
        for bad in BAD_VALUES:
            kwargs = {**case.kwargs, name: bad}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    spec.function(case.input, case.target, **kwargs)
                    continue
                except (TypeError, ValueError) as error:
                    expected = error
            message = str(expected)
            if not message.startswith(f"{spec.name}: {name} must") or "one value per class" in message:
                continue  # an error about the input, or a length only the input gives
            with pytest.raises(type(expected)) as raised:
                spec.module(**kwargs)
            assert str(raised.value) == message, f"{name}={bad!r}"
            checked += 1
    assert checked > 0


def test_numpy_string_array_gives_the_losss_message_not_numpys():
    with pytest.raises(TypeError, match=r"^softmax_focal_loss: alpha must be a tensor, a NumPy array, a number or a "
                                        r"flat sequence of numbers; got a NumPy array of shape \(2,\) and dtype <U1$"):
        losslab.SoftmaxFocalLoss(alpha=np.array(["a", "b"]))


@pytest.mark.parametrize("bad", [[[1.0, 2.0], [3.0, 4.0]], ["a", "b", "c"]], ids=["nested", "strings"])
def test_nested_and_string_lists_fail_at_construction(bad):
    with pytest.raises(TypeError, match=r"^cross_entropy: weight must be a tensor, a NumPy array"):
        losslab.CrossEntropyLoss(weight=bad)
    with pytest.raises(TypeError, match=r"^dice_ce_loss: weight must be a tensor, a NumPy array"):
        losslab.DiceCELoss(mode="multiclass", weight=bad)


def test_dice_pairs_check_their_overlap_hyperparameters_at_construction():
    with pytest.raises(TypeError, match=r"^dice_ce_loss: squared must be a bool; got 'yes' \(str\)$"):
        losslab.DiceCELoss(mode="binary", squared="yes")
    with pytest.raises(ValueError, match=r"^dice_focal_loss: smooth must be a finite number in \[0, inf\); got -1.0$"):
        losslab.DiceFocalLoss(mode="binary", smooth=-1.0)
    with pytest.raises(TypeError, match=r"^dice_ce_loss: dist_sync must be a bool; got 1 \(int\)$"):
        losslab.DiceCELoss(mode="binary", dist_sync=1)


def test_module_stores_numpy_scalars_as_python_numbers():
    module = losslab.SigmoidFocalLoss(gamma=np.float64(1.5), alpha=np.float32(0.5))
    assert type(module.gamma) is float and type(module.alpha) is float
    assert "gamma=1.5" in repr(module)


# ----------------------------------------------------------------------------
# short messages, no warnings from value checks, C = 0, reserved labels


@pytest.mark.parametrize("big", [np.random.default_rng(0).random(10**6).tolist(),
                                 np.random.default_rng(0).random((1000, 1000)),
                                 tuple(range(10**5))], ids=["list", "array", "tuple"])
def test_a_big_list_or_array_input_is_named_by_type_and_shape(big):
    x, t = torch.randn(4, 3), torch.tensor([0, 1, 2, 1])
    shape = re.escape(str(np.shape(big)))
    kind = type(big).__name__ if not isinstance(big, np.ndarray) else "NumPy array"
    with pytest.raises(TypeError) as raised:
        losslab.cross_entropy(big, t)
    assert re.fullmatch(rf"cross_entropy: input must be a torch.Tensor; got a {kind} of shape {shape}.*",
                        str(raised.value))
    assert len(str(raised.value)) < 150
    with pytest.raises(TypeError) as raised:
        losslab.cross_entropy(x, big)
    assert len(str(raised.value)) < 150 and f"of shape {np.shape(big)}" in str(raised.value)
    with pytest.raises((TypeError, ValueError)) as raised:  # the wrong length, or not numbers
        losslab.cross_entropy(x, t, weight=big if not isinstance(big, tuple) else [str(v) for v in big])
    assert len(str(raised.value)) < 200


@pytest.mark.parametrize("call", [
    lambda p: losslab.binary_cross_entropy(p, torch.rand(4, 3), from_logits=False),
    lambda p: losslab.cross_entropy(p, torch.tensor([0, 1, 2, 0]), from_logits=False),
    lambda p: losslab.sigmoid_focal_loss(p, torch.rand(4, 3), from_logits=False),
    lambda p: losslab.dice_loss(p, torch.rand(4, 3), mode="multilabel", from_logits=False),
    lambda p: losslab.binary_cross_entropy(torch.randn(4, 3), p),
], ids=["bce", "ce", "focal", "dice", "target"])
def test_unit_interval_check_does_not_warn_on_a_tensor_that_requires_grad(call):
    """Each call in a fresh state: torch warns once per process, so the first call of the suite decides."""
    probabilities = torch.rand(4, 3) * 0.5
    probabilities[1, 2] = 1.5
    probabilities.requires_grad_(True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"must lie in \[0, 1\]; got a value of 1.5$"):
            call(probabilities)


def test_value_checks_read_no_value_of_a_tensor_that_requires_grad(monkeypatch):
    """Not order-dependent: fail if any value check calls float()/item() on a tensor that requires grad."""
    for method in ("__float__", "item", "tolist"):
        original = getattr(torch.Tensor, method)

        def guarded(self, *args, _original=original, **kwargs):
            assert not self.requires_grad, "a value read off a tensor that requires grad"
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, method, guarded)
    bad = (torch.rand(4, 3) * 2).requires_grad_(True)
    for call in (lambda: losslab.binary_cross_entropy(bad, torch.rand(4, 3), from_logits=False),
                 lambda: losslab.binary_cross_entropy(torch.randn(4, 3), bad),
                 lambda: losslab.giou_loss(BOXES.clone().fill_(float("nan")).requires_grad_(True), BOXES),
                 lambda: losslab.distribution_focal_loss(torch.randn(4, 3), (bad[:, 0] * 9).detach()
                                                         .requires_grad_(True)),
                 lambda: losslab.smooth_l1_loss(torch.randn(3), torch.randn(3),
                                                avg_factor=torch.tensor(-1.0, requires_grad=True)),
                 lambda: losslab.cross_entropy(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]),
                                               weight=torch.tensor([1.0, -1.0, 1.0], requires_grad=True))):
        with pytest.raises(ValueError):
            call()


@pytest.mark.parametrize("name", ["dice_loss", "jaccard_loss", "tversky_loss", "dice_ce_loss", "dice_focal_loss"])
@pytest.mark.parametrize("mode", ["multiclass", "multilabel"])
def test_overlap_losses_with_no_class_say_so(name, mode):
    x = torch.randn(2, 0, 3, 3)
    t = torch.zeros(2, 3, 3, dtype=torch.long) if mode == "multiclass" else torch.zeros(2, 0, 3, 3)
    with pytest.raises(ValueError, match=rf"^{name}: input must have at least one class along dim 1 in mode "
                                         rf"'{mode}'; got shape \(2, 0, 3, 3\)$"):
        getattr(losslab, name)(x, t, mode=mode)


@pytest.mark.parametrize("label", ["training", "forward", "_modules", "train"])
def test_combine_rejects_a_label_that_is_a_module_attribute(label):
    with pytest.raises(ValueError, match=rf"^combine: '{label}' cannot label a term: .*not a module attribute name$"):
        losslab.combine({label: losslab.DiceLoss(mode="binary")})


def test_combine_accepts_ordinary_labels():
    loss = losslab.combine({"terms": losslab.DiceLoss(mode="binary"), "bce": "BCEWithLogitsLoss"})
    assert sorted(loss.terms) == ["bce", "terms"]


# ----------------------------------------------------------------------------
# module twins of PyTorch's losses take PyTorch's first positional argument(s)


def _value_and_grad(module, x, t):
    x = x.detach().clone().requires_grad_(True)
    value = module(x, t)
    value.sum().backward()
    return value.detach(), x.grad


@pytest.mark.parametrize("ours,theirs,make", [
    (losslab.CrossEntropyLoss, torch.nn.CrossEntropyLoss,
     lambda g: (torch.randn(6, 3, generator=g, dtype=F64), torch.randint(0, 3, (6,), generator=g))),
    (losslab.NLLLoss, torch.nn.NLLLoss,
     lambda g: (torch.log_softmax(torch.randn(6, 3, generator=g, dtype=F64), 1), torch.randint(0, 3, (6,), generator=g))),
    (losslab.BinaryCrossEntropyLoss, torch.nn.BCEWithLogitsLoss,
     lambda g: (torch.randn(6, 3, generator=g, dtype=F64), torch.rand(6, 3, generator=g, dtype=F64))),
], ids=["CrossEntropyLoss", "NLLLoss", "BinaryCrossEntropyLoss"])
def test_weight_is_the_first_positional_argument_as_in_torch(ours, theirs, make):
    g = torch.Generator().manual_seed(3)
    x, t = make(g)
    weight = torch.tensor([0.5, 2.0, 1.0], dtype=F64)
    assert list(inspect.signature(ours).parameters)[0] == "weight"
    assert inspect.signature(ours).parameters["weight"].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    for a, b in zip(_value_and_grad(ours(weight), x, t), _value_and_grad(theirs(weight), x, t)):
        torch.testing.assert_close(a, b)
    with pytest.raises(TypeError, match=rf"^{ours.__name__}: takes at most 1 positional argument\(s\) \(weight\); "
                                        rf"got 2: pass the others by keyword$"):
        ours(weight, None)
    with pytest.raises(TypeError, match=rf"^{ours.__name__}: got multiple values for argument 'weight'$"):
        ours(weight, weight=weight)


def test_huber_loss_takes_reduction_then_delta_positionally_as_in_torch():
    g = torch.Generator().manual_seed(4)
    x, t = torch.randn(5, 4, generator=g, dtype=F64) * 2, torch.randn(5, 4, generator=g, dtype=F64)
    params = inspect.signature(losslab.HuberLoss).parameters
    assert list(params)[:2] == ["reduction", "delta"]
    for args in (("sum", 0.5), ("none",), ()):
        for a, b in zip(_value_and_grad(losslab.HuberLoss(*args), x, t),
                        _value_and_grad(torch.nn.HuberLoss(*args), x, t)):
            torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match=r"^huber_loss: reduction must be one of 'none', 'mean', 'sum'; got 'avg'$"):
        losslab.HuberLoss("avg")


def test_smooth_l1_loss_takes_keyword_arguments_only():
    """torch.nn.SmoothL1Loss's positional arguments are the deprecated size_average and reduce."""
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in inspect.signature(losslab.SmoothL1Loss).parameters
               .values())
    with pytest.raises(TypeError, match=r"^SmoothL1Loss: takes keyword arguments only; got 1 positional argument"):
        losslab.SmoothL1Loss("sum")


@pytest.mark.parametrize("name", ["binary_cross_entropy", "sigmoid_focal_loss"])
def test_half_precision_probability_gradients_saturate_instead_of_overflowing(name):
    """float16 probabilities below ~1.5e-5 have 1/p beyond float16's range: the gradient saturates, never inf.

    The value is unchanged: torch's binary_cross_entropy of the same float16 input gives the same loss.
    """
    p = torch.tensor([[1e-7, 0.5]], dtype=torch.float16, requires_grad=True)
    target = torch.tensor([[1.0, 0.0]], dtype=torch.float16)
    kwargs = {"from_logits": False, **({"alpha": None, "gamma": 0.0} if name == "sigmoid_focal_loss" else {})}
    loss = getattr(losslab, name)(p, target, reduction="sum", **kwargs)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(p.grad).all(), p.grad
    assert float(p.grad[0, 0]) == -torch.finfo(torch.float16).max
    expected = torch.nn.functional.binary_cross_entropy(p.detach().float(), target.float(), reduction="sum")
    assert abs(float(loss) - float(expected)) < 0.05
