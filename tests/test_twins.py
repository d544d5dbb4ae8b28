"""The module twins: constructors written out as their functionals' signatures, and one validator per loss.

Every twin (every :class:`losslab._module.LossModule` subclass that ``losslab`` and
``losslab.frameworks`` define) writes its ``__init__`` in its own class body, so that
IDEs and type checkers see its arguments; these tests keep that signature equal to the
functional's keyword-only parameters. A bad hyperparameter fails with the same
message from the functional's call and from the twin's constructor, because both call
the loss's one validator.
"""

from __future__ import annotations

import inspect
import typing
import warnings

import pytest
import torch

import losslab
import losslab.frameworks  # defines the adapters' twins
from losslab import registry
from losslab._module import LossModule
from losslab._stateful import StatefulLoss


def _subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


TWINS = sorted({cls for cls in _subclasses(LossModule) if cls.__module__.startswith("losslab.")},
               key=lambda cls: (cls.__module__, cls.__qualname__))


def _expected_parameters(cls: type[LossModule]) -> list[inspect.Parameter]:
    """The functional's keyword-only parameters; the ones ``positional`` names first, positional-or-keyword."""
    keyword = [p for p in inspect.signature(cls.function).parameters.values() if p.kind is p.KEYWORD_ONLY]
    by_name = {p.name: p for p in keyword}
    return [by_name[n].replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in cls._positional] + \
           [p for p in keyword if p.name not in cls._positional]


def test_every_registered_module_and_adapter_is_a_twin_here():
    builds = {alias.build for spec in registry.specs() for alias in spec.aliases if alias.build is not None}
    # the modules with running statistics take num_classes, not the statistics: tests/test_seesaw.py checks them
    twins = {spec.module for spec in registry.specs() if not issubclass(spec.module, StatefulLoss)}
    assert twins | builds <= set(TWINS)
    assert len(TWINS) >= 40


@pytest.mark.parametrize("cls", TWINS, ids=lambda cls: cls.__name__)
def test_constructor_is_written_in_the_class_body(cls):
    assert "__init__" in vars(cls), f"{cls.__name__} inherits its __init__: write it out in the class body"
    init = vars(cls)["__init__"]
    assert init.__qualname__ == f"{cls.__qualname__}.__init__"
    assert "__signature__" not in vars(init) and not hasattr(init, "__wrapped__")  # the def's own signature


@pytest.mark.parametrize("cls", TWINS, ids=lambda cls: cls.__name__)
def test_constructor_signature_is_the_functional_keyword_arguments(cls):
    self_, *params = inspect.signature(vars(cls)["__init__"]).parameters.values()
    assert self_.name == "self"
    expected = _expected_parameters(cls)
    assert [(p.name, p.kind) for p in params] == [(p.name, p.kind) for p in expected]
    assert [(type(p.default), p.default) for p in params] == [(type(p.default), p.default) for p in expected]
    assert [p.annotation for p in params] == [p.annotation for p in expected]  # the same text
    hints = typing.get_type_hints(vars(cls)["__init__"])
    function_hints = typing.get_type_hints(inspect.unwrap(cls.function))
    assert {p.name: hints[p.name] for p in params} == {p.name: function_hints[p.name] for p in expected}
    assert inspect.signature(cls).parameters == dict(zip([p.name for p in params], params))  # what help() shows


def _twin(name: str) -> type[LossModule]:
    spec, alias = registry.lookup(name)
    return alias.build if alias is not None and alias.build is not None else spec.module


# (loss name, the arguments it requires, a bad hyperparameter): one row at least for every loss and adapter,
# and one for each hyperparameter a loss checks beyond the common ones
BAD = [
    ("cross_entropy", {}, {"label_smoothing": 1.5}),
    ("cross_entropy", {}, {"reduction": "avg"}),
    ("nll_loss", {}, {"ignore_index": 1.5}),
    ("binary_cross_entropy", {}, {"from_logits": 1}),
    ("binary_cross_entropy", {}, {"avg_factor": -1.0}),
    ("balanced_cross_entropy", {}, {"alpha": None}),
    ("balanced_cross_entropy", {}, {"alpha": 1.5}),
    ("sigmoid_focal_loss", {}, {"gamma": -1.0}),
    ("sigmoid_focal_loss", {}, {"alpha": "0.25"}),
    ("softmax_focal_loss", {}, {"alpha": 1.5}),
    ("softmax_focal_loss", {}, {"label_smoothing": -0.1}),
    ("logit_adjusted_cross_entropy", {"class_counts": [3, 2, 1]}, {"tau": -1.0}),
    ("logit_adjusted_cross_entropy", {}, {"class_counts": "counts"}),
    ("ldam_loss", {"class_counts": [3, 2, 1]}, {"scale": 0.0}),
    ("ldam_loss", {"class_counts": [3, 2, 1]}, {"max_margin": -1.0}),
    ("vs_loss", {"class_counts": [3, 2, 1]}, {"gamma": -0.5}),
    ("vs_loss", {"class_counts": [3, 2, 1]}, {"reduction": "avg"}),
    ("quality_focal_loss", {}, {"beta": -1.0}),
    ("varifocal_loss", {}, {"alpha": -0.5}),
    ("varifocal_loss", {}, {"iou_weighted": 1}),
    ("distribution_focal_loss", {}, {"reduction": "avg"}),
    ("smooth_l1_loss", {}, {"beta": -1.0}),
    ("huber_loss", {}, {"delta": 0.0}),
    ("iou_loss", {}, {"mode": "cubic"}),
    ("iou_loss", {}, {"box_format": "yxyx"}),
    ("giou_loss", {}, {"eps": 0.0}),
    ("diou_loss", {}, {"box_format": "xyz"}),
    ("ciou_loss", {}, {"reduction": "avg"}),
    ("eiou_loss", {}, {"eps": -1.0}),
    ("siou_loss", {}, {"avg_factor": "n"}),
    ("dice_loss", {"mode": "binary"}, {"smooth": -1.0}),
    ("dice_loss", {"mode": "binary"}, {"squared": 1}),
    ("dice_loss", {}, {"mode": "multi"}),
    ("jaccard_loss", {"mode": "binary"}, {"log_loss": "yes"}),
    ("jaccard_loss", {"mode": "binary"}, {"eps": 0.0}),
    ("tversky_loss", {"mode": "binary"}, {"gamma": 0.0}),
    ("tversky_loss", {"mode": "binary"}, {"alpha": -1.0}),
    ("tversky_loss", {"mode": "binary"}, {"per_image": 1}),
    ("generalized_dice_loss", {"mode": "binary"}, {"weight_type": "cube"}),
    ("generalized_dice_loss", {"mode": "binary"}, {"smooth": -1.0}),
    ("monai.GeneralizedDiceLoss", {}, {"w_type": "cube"}),
    ("monai.GeneralizedDiceLoss", {}, {"batch": 1}),
    ("monai.GeneralizedDiceLoss", {}, {"smooth_dr": -1.0}),
    ("optax.multiclass_generalized_dice_loss", {}, {"smooth": -1.0}),
    ("optax.multiclass_generalized_dice_loss", {}, {"apply_softmax": 1}),
    ("dice_ce_loss", {"mode": "binary"}, {"reduction": "none"}),
    ("dice_ce_loss", {"mode": "binary"}, {"lambda_ce": -1.0}),
    ("dice_ce_loss", {"mode": "binary"}, {"label_smoothing": 2.0}),
    ("dice_focal_loss", {"mode": "binary"}, {"alpha": 2.0}),
    ("dice_focal_loss", {"mode": "binary"}, {"lambda_focal": -1.0}),
    ("dice_focal_loss", {"mode": "binary"}, {"include_background": 0}),
    ("kornia.FocalLoss", {"alpha": 0.25}, {"alpha": 2.0}),
    ("kornia.FocalLoss", {"alpha": 0.25}, {"gamma": -1.0}),
    ("kornia.binary_focal_loss_with_logits", {}, {"alpha": "x"}),
    ("monai.FocalLoss", {}, {"to_onehot_y": 1}),
    ("monai.FocalLoss", {}, {"gamma": -1.0}),
    ("smp.FocalLoss", {"mode": "binary"}, {"mode": "multi"}),
    ("smp.FocalLoss", {"mode": "binary"}, {"alpha": 2.0}),
    ("tfa.SigmoidFocalCrossEntropy", {}, {"gamma": -1.0}),
    ("mmcv.sigmoid_focal_loss", {}, {"alpha": 2.0}),
    ("keras.categorical_crossentropy", {}, {"label_smoothing": 2.0}),
    ("keras.sparse_categorical_crossentropy", {}, {"from_logits": "no"}),
    ("keras.CategoricalFocalCrossentropy", {}, {"gamma": -1.0}),  # (its alpha is checked when it is called)
    ("caffe.SigmoidCrossEntropyLoss", {}, {"reduction": "avg"}),
    ("kornia.DiceLoss", {}, {"average": "weighted"}),
    ("kornia.DiceLoss", {}, {"eps": -1.0}),
    ("kornia.TverskyLoss", {"alpha": 0.5, "beta": 0.5}, {"alpha": -1.0}),
    ("kornia.TverskyLoss", {"alpha": 0.5, "beta": 0.5}, {"alpha": 0.0, "beta": 0.0}),
    ("keras.Dice", {}, {"reduction": "avg"}),
    ("keras.Tversky", {}, {"beta": -1.0}),
    ("keras.Tversky", {}, {"reduction": "avg"}),
    ("monai.DiceLoss", {}, {"soft_label": True}),
    ("monai.DiceLoss", {}, {"sigmoid": True, "softmax": True}),
    ("monai.DiceLoss", {}, {"smooth_nr": -1.0}),
    ("monai.DiceCELoss", {}, {"reduction": "none"}),
    ("monai.DiceCELoss", {}, {"lambda_ce": -1.0}),
    ("monai.DiceFocalLoss", {}, {"lambda_focal": -1.0}),
    ("monai.DiceFocalLoss", {}, {"to_onehot_y": "yes"}),
    ("smp.DiceLoss", {"mode": "binary"}, {"smooth": -1.0}),
    ("smp.JaccardLoss", {"mode": "binary"}, {"from_logits": 1}),
    ("smp.TverskyLoss", {"mode": "binary"}, {"gamma": -1.0}),
    ("smp.TverskyLoss", {"mode": "binary"}, {"log_loss": 1}),
    ("mmdet.IoULoss", {}, {"mode": "cubic"}),
    ("mmdet.IoULoss", {}, {"eps": 0.0}),
    ("mmdet.QualityFocalLoss", {}, {"beta": -1.0}),
    ("asymmetric_loss", {}, {"clip": 2.0}),
    ("poly_cross_entropy", {}, {"epsilon": "2"}),
    ("poly_softmax_focal_loss", {}, {"alpha": 2.0}),
    ("poly_sigmoid_focal_loss", {}, {"gamma": -1.0}),
    ("timm.AsymmetricLossMultiLabel", {}, {"reduction": "avg"}),
    ("mmpretrain.AsymmetricLoss", {}, {"eps": 0.0}),
    ("timm.PolyBinaryCrossEntropy", {}, {"smoothing": 1.0}),
    ("lovasz_softmax_loss", {}, {"classes": "some"}),
    ("lovasz_softmax_loss", {}, {"classes": [1, 1]}),
    ("lovasz_softmax_loss", {}, {"per_image": 1}),
    ("lovasz_hinge_loss", {}, {"per_image": "yes"}),
    ("smp.LovaszLoss", {"mode": "binary"}, {"mode": "multi"}),
    ("smp.LovaszLoss", {"mode": "binary"}, {"per_image": 1}),
    ("kornia.LovaszSoftmaxLoss", {}, {"weight": [1.0, 2.0]}),
]


def _error(call) -> tuple[type[Exception], str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # keras.Tversky warns about Keras' alpha when built
        with pytest.raises((TypeError, ValueError)) as info:
            call()
    return info.type, str(info.value)


@pytest.mark.parametrize(("name", "required", "bad"), BAD, ids=[f"{n}-{next(iter(b))}" for n, _, b in BAD])
def test_a_bad_hyperparameter_fails_alike_in_the_functional_and_the_twin(name, required, bad):
    twin = _twin(name)
    kwargs = {**required, **bad}
    x = torch.zeros(2, 3, 4, 4)  # any input: the hyperparameters are checked first
    from_function = _error(lambda: twin.function(x, x.clone(), **kwargs))
    from_twin = _error(lambda: twin(**kwargs))
    # kornia's DiceLoss and TverskyLoss name themselves so in construction errors, their functions
    # kornia.dice_loss and kornia.tversky_loss: the rest of the message is the same
    names = {twin.loss_name or twin.function.__name__, from_function[1].split(": ", 1)[0]}
    assert from_twin[1].split(": ", 1)[0] in names
    assert (from_twin[0], from_twin[1].split(": ", 1)[1]) == (from_function[0], from_function[1].split(": ", 1)[1])


def test_the_table_covers_every_loss_and_adapter():
    assert {_twin(name) for name, _, _ in BAD} == set(TWINS)


def test_a_call_with_arguments_the_twin_does_not_take_names_the_twin():
    with pytest.raises(TypeError, match=r"^HuberLoss: takes at most 2 positional argument\(s\) \(reduction, delta\)"):
        losslab.HuberLoss("sum", 0.5, None)
    with pytest.raises(TypeError, match=r"^HuberLoss: got multiple values for argument 'delta'$"):
        losslab.HuberLoss("sum", 0.5, delta=0.5)
    with pytest.raises(TypeError, match=r"^TverskyLoss: missing required keyword argument\(s\) 'mode'$"):
        losslab.TverskyLoss()
    assert losslab.HuberLoss("sum", 0.5).delta == 0.5


def test_twins_copy_and_pickle_without_calling_their_constructor_again():
    import copy
    import pickle

    loss_fn = losslab.get_loss("kornia.TverskyLoss", alpha=0.3, beta=0.7)  # no defaults for alpha and beta
    for clone in (copy.deepcopy(loss_fn), pickle.loads(pickle.dumps(loss_fn))):
        assert type(clone) is type(loss_fn) and (clone.alpha, clone.beta) == (0.3, 0.7)
