"""torch.compile(fullgraph=True) equals eager, values and gradients, on one case per family.

Each family's case is compiled once (inductor, the default backend) and called
with two batch sizes; the batch dimension is dynamic, so the second size must
reuse the first graph. Compiling is the slow part of the suite (seconds per
function on 2 cores), so there are two inductor compilations in the passing
tests, and the tracing-only checks use backend="eager".
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters

import losslab

from .helpers import TOLERANCES

C = 4
IGNORE = 255
BATCH_SIZES = (6, 9)  # 0 and 1 are specialised by dynamo; these two are not

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()
    counters.clear()


# ----------------------------------------------------------------------------
# the two families


def softmax_family(x, target, weight, alpha):
    ce = losslab.cross_entropy(x, target, weight=weight, ignore_index=IGNORE, label_smoothing=0.1)
    focal = losslab.softmax_focal_loss(x, target, alpha=alpha, gamma=0.5, ignore_index=IGNORE)
    return ce, focal


def softmax_inputs(n: int):
    g = torch.Generator().manual_seed(n)
    x = torch.randn(n, C, 3, generator=g) * 4
    x[0, :, 0] = torch.tensor([1e4, -1e4, 0.0, 30.0])  # saturated position
    target = torch.randint(0, C, (n, 3), generator=g)
    target[0, 1] = IGNORE
    target[n - 1, :] = IGNORE
    weight = torch.rand(C, generator=g) + 0.5
    alpha = torch.rand(C, generator=g)
    return x, target, weight, alpha


def sigmoid_family(x, labels, index_target, pos_weight):
    bce = losslab.binary_cross_entropy(x, labels, pos_weight=pos_weight)
    focal = losslab.sigmoid_focal_loss(x, index_target, ignore_index=-1)
    return bce, focal


def sigmoid_inputs(n: int):
    g = torch.Generator().manual_seed(100 + n)
    x = torch.randn(n, C, 2, generator=g) * 4
    x[0, :, 0] = torch.tensor([1e4, -1e4, 0.0, -30.0])
    labels = torch.rand(n, C, 2, generator=g)
    labels[1] = (labels[1] > 0.5).to(labels.dtype)  # hard labels too
    index_target = torch.randint(0, C + 1, (n, 2), generator=g)  # index C = background
    index_target[0, 1] = -1
    index_target[n - 1, 0] = -1
    pos_weight = torch.rand(C, generator=g) * 3
    return x, labels, index_target, pos_weight


def detection_family(x, labels, scores, target_boxes):
    qfl = losslab.quality_focal_loss(x, (labels, scores), ignore_index=-1, avg_factor=3.0)
    ciou = losslab.ciou_loss(target_boxes + 0.5 * x, target_boxes, box_format="cxcywh")  # x as box offsets too
    return qfl, ciou


def detection_inputs(n: int):
    g = torch.Generator().manual_seed(200 + n)
    x = torch.randn(n, C, generator=g) * 2
    x[0] = torch.tensor([1e4, -1e4, 0.0, -30.0])  # saturated logits; a huge, inverted box
    labels = torch.randint(0, C + 1, (n,), generator=g)
    labels[1] = -1
    scores = torch.rand(n, generator=g)
    centres, sizes = torch.rand(n, 2, generator=g) * 10, torch.rand(n, 2, generator=g) * 4 + 0.5
    sizes[2] = 0.0  # a point box
    return x, labels, scores, torch.cat([centres, sizes], dim=1)


FAMILIES = {
    "softmax": (softmax_family, softmax_inputs),
    "sigmoid": (sigmoid_family, sigmoid_inputs),
    "detection": (detection_family, detection_inputs),
}


def _values_and_grads(fn, inputs, *, mark_dynamic: bool):
    """Both losses, and the input gradient of each (one forward per loss: compiled backwards keep no graph)."""
    values, grads = [], []
    for which in range(2):
        x, *rest = (t.clone() for t in inputs)
        x.requires_grad_(True)
        if mark_dynamic:
            for tensor in (x, *rest):
                if tensor.shape[0] == x.shape[0]:  # the batch tensors; per-class vectors keep their length C
                    torch._dynamo.mark_dynamic(tensor, 0)
        out = fn(x, *rest)[which]
        out.backward()
        values.append(out.detach())
        grads.append(x.grad)
    return values, grads


def _check_compiled_equals_eager(family: str, compiled, *, mark_dynamic: bool) -> None:
    eager, make_inputs = FAMILIES[family]
    for n in BATCH_SIZES:
        inputs = make_inputs(n)
        got_values, got_grads = _values_and_grads(compiled, inputs, mark_dynamic=mark_dynamic)
        want_values, want_grads = _values_and_grads(eager, inputs, mark_dynamic=False)
        for name, got, want in zip(("first loss", "second loss"), got_values, want_values):
            torch.testing.assert_close(got, want, **TOLERANCES[torch.float32], msg=lambda m: f"n={n} {name}: {m}")
        for name, got, want in zip(("first loss", "second loss"), got_grads, want_grads):
            assert torch.isfinite(got).all(), f"n={n} {name}: non-finite compiled gradient"
            torch.testing.assert_close(got, want, **TOLERANCES[torch.float32],
                                       msg=lambda m: f"n={n} {name} gradient: {m}")
    # The second batch size reused the graph of the first: the batch dimension is dynamic.
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])


@pytest.mark.parametrize("family", list(FAMILIES))
def test_compiled_equals_eager_dynamic_batch(family):
    """fullgraph, batch dimension marked dynamic: two batch sizes, one graph, eager's values and gradients."""
    compiled = torch.compile(FAMILIES[family][0], fullgraph=True)
    _check_compiled_equals_eager(family, compiled, mark_dynamic=True)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_compiled_equals_eager_dynamic_true(family):
    """The same with torch.compile(dynamic=True), the usual way to ask for dynamic shapes."""
    compiled = torch.compile(FAMILIES[family][0], fullgraph=True, dynamic=True)
    _check_compiled_equals_eager(family, compiled, mark_dynamic=False)


def test_changing_float_hyperparameter_recompiles_without_graph_break():
    def focal(x, target, gamma):
        return losslab.softmax_focal_loss(x, target, gamma=gamma, label_smoothing=0.0)

    compiled = torch.compile(focal, fullgraph=True, backend="eager")
    x, target = torch.randn(6, C), torch.randint(0, C, (6,))
    for gamma in (0.5, 1.5):
        torch.testing.assert_close(compiled(x, target, gamma), focal(x, target, gamma))


# ----------------------------------------------------------------------------
# value checks stay out of the graph


def _valid_calls():
    """One valid call per loss that reaches every value check it has (indices, probabilities, per-class vectors)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, C, 2, generator=g)
    probs = torch.softmax(x, dim=1)
    index = torch.randint(0, C, (5, 2), generator=g)
    index[0, 0] = -100
    sig_index = torch.randint(0, C + 1, (5, 2), generator=g)
    sig_index[1, 1] = -1
    labels = torch.rand(5, C, 2, generator=g)
    per_class = torch.rand(C, generator=g) + 0.1
    boxes = torch.cat([torch.rand(5, 2, generator=g), torch.rand(5, 2, generator=g) + 1.0], dim=1)  # xyxy
    return {
        "cross_entropy": lambda: losslab.cross_entropy(probs, index, weight=per_class, from_logits=False),
        "nll_loss": lambda: losslab.nll_loss(torch.log_softmax(x, 1), index, weight=per_class),
        "binary_cross_entropy": lambda: losslab.binary_cross_entropy(probs, labels, pos_weight=per_class,
                                                                     from_logits=False),
        "balanced_cross_entropy": lambda: losslab.balanced_cross_entropy(x, index, alpha=per_class),
        "sigmoid_focal_loss": lambda: losslab.sigmoid_focal_loss(x, sig_index, ignore_index=-1, gamma=0.5),
        "softmax_focal_loss": lambda: losslab.softmax_focal_loss(probs, index, alpha=per_class, gamma=0.5,
                                                                 from_logits=False),
        "quality_focal_loss": lambda: losslab.quality_focal_loss(x, (sig_index, labels[:, 0]), ignore_index=-1,
                                                                 weight=per_class, avg_factor=torch.tensor(4.0)),
        "varifocal_loss": lambda: losslab.varifocal_loss(x, labels, avg_factor=torch.tensor(2.0)),
        "distribution_focal_loss": lambda: losslab.distribution_focal_loss(x.transpose(1, 2), labels[:, 0] * 3),
        "smooth_l1_loss": lambda: losslab.smooth_l1_loss(x, labels, beta=0.5, weight=labels),
        "huber_loss": lambda: losslab.huber_loss(x, labels, avg_factor=3),
        **{name: (lambda name=name: getattr(losslab, name)(boxes + x[:, :, 0], boxes, weight=labels[:, :, 0]))
           for name in ("iou_loss", "giou_loss", "diou_loss", "ciou_loss", "eiou_loss", "siou_loss")},
        "dice_loss": lambda: losslab.dice_loss(x, index, mode="multiclass", ignore_index=-100, weight=per_class),
        "jaccard_loss": lambda: losslab.jaccard_loss(probs, labels, mode="multilabel", from_logits=False,
                                                     per_image=True),
        "tversky_loss": lambda: losslab.tversky_loss(x[:, :1], labels[:, :1], mode="binary", gamma=0.75),
        "generalized_dice_loss": lambda: losslab.generalized_dice_loss(x, index, mode="multiclass",
                                                                       ignore_index=-100),
        "generalized_dice_loss-probabilities": lambda: losslab.generalized_dice_loss(
            probs, labels, mode="multilabel", from_logits=False, per_image=True, weight_type="simple"),
        "dice_ce_loss": lambda: losslab.dice_ce_loss(x, index, mode="multiclass", ignore_index=-100,
                                                     weight=per_class),
        "dice_focal_loss": lambda: losslab.dice_focal_loss(x, labels, mode="multilabel", alpha=0.25),
        "logit_adjusted_cross_entropy": lambda: losslab.logit_adjusted_cross_entropy(
            x, index, class_counts=per_class * 100, weight=per_class, label_smoothing=0.1),
        "logit_adjusted_cross_entropy-soft": lambda: losslab.logit_adjusted_cross_entropy(
            x, probs, class_counts=[30, 0, 5, 2]),
        "ldam_loss": lambda: losslab.ldam_loss(x, index, class_counts=per_class * 100, weight=per_class),
        "vs_loss": lambda: losslab.vs_loss(x, index, class_counts=per_class * 100, gamma=0.3),
    }


@pytest.mark.parametrize("loss", list(_valid_calls()))
def test_value_checks_do_not_break_fullgraph(loss):
    """With set_checks(True) every value check is on; tracing must still give one graph (backend eager: dynamo only)."""
    call = _valid_calls()[loss]
    losslab.set_checks(True)
    expected = call()
    got = torch.compile(call, fullgraph=True, backend="eager")()
    torch.testing.assert_close(got, expected)
    assert counters["stats"]["unique_graphs"] == 1


def test_value_checks_still_run_in_eager_after_compiling():
    """Compiling skips the checks only while tracing: eager calls keep raising on an out-of-range index."""
    x = torch.randn(4, 3)
    compiled = torch.compile(lambda x, t: losslab.cross_entropy(x, t), fullgraph=True, backend="eager")
    compiled(x, torch.tensor([0, 1, 2, 1]))
    assert losslab.get_checks() is None
    with pytest.raises(ValueError, match=r"cross_entropy: target class indices must be in \[0, 3\)"):
        losslab.cross_entropy(x, torch.tensor([0, 1, 3, 1]))


# ----------------------------------------------------------------------------
# NumPy arguments, as the docs allow them (issue 13)

NUMPY_CALLS = {
    "cross_entropy-numpy-weight":
        lambda x, t: losslab.cross_entropy(x, t, weight=np.array([0.5, 1.0, 2.0, 1.5])),
    "softmax_focal_loss-numpy-gamma-and-alpha":
        lambda x, t: losslab.softmax_focal_loss(x, t, gamma=np.float64(2.0), alpha=np.array([0.1, 0.2, 0.3, 0.4])),
    "softmax_focal_loss-numpy-scalar-alpha":
        lambda x, t: losslab.softmax_focal_loss(x, t, gamma=np.float32(0.5), alpha=np.float64(0.25)),
    "sigmoid_focal_loss-numpy-gamma-and-alpha":
        lambda x, t: losslab.sigmoid_focal_loss(x, t, gamma=np.float64(2.0), alpha=np.float32(0.25),
                                                ignore_index=np.int64(-1)),
    "SoftmaxFocalLoss-numpy":
        lambda x, t: losslab.SoftmaxFocalLoss(gamma=np.float64(1.5), alpha=np.array([1.0, 2.0, 0.5, 1.0]))(x, t),
}


@pytest.mark.parametrize("name", list(NUMPY_CALLS))
def test_numpy_hyperparameters_trace_in_one_graph(name):
    """A NumPy array weight and NumPy scalar gamma / alpha: fullgraph works and equals eager."""
    call = NUMPY_CALLS[name]
    g = torch.Generator().manual_seed(7)
    x = torch.randn(6, C, generator=g)
    t = torch.randint(0, C, (6,), generator=g)
    expected = call(x, t)
    got = torch.compile(call, fullgraph=True, backend="eager")(x, t)
    torch.testing.assert_close(got, expected)
    assert counters["stats"]["unique_graphs"] == 1


def test_numpy_scalars_passed_into_the_compiled_function():
    """NumPy scalars as arguments of the compiled function (a config's values): one graph, eager's value."""

    def step(x, t, gamma, alpha, ignore_index, weight):
        return (losslab.sigmoid_focal_loss(x, t, gamma=gamma, alpha=alpha, ignore_index=ignore_index)
                + losslab.cross_entropy(x, t.clamp_min(0), weight=weight))

    g = torch.Generator().manual_seed(8)
    x, t = torch.randn(6, C, generator=g), torch.randint(-1, C, (6,), generator=g)
    args = (np.float64(2.0), np.float64(0.25), np.int64(-1), np.array([1.0, 2.0, 0.5, 1.0]))
    expected = step(x, t, 2.0, 0.25, -1, torch.tensor([1.0, 2.0, 0.5, 1.0]))
    torch.testing.assert_close(torch.compile(step, fullgraph=True, backend="eager")(x, t, *args), expected)
    assert counters["stats"]["unique_graphs"] == 1
