"""losslab: losses for imbalanced classification, dense detection and segmentation, and a lab to study them.

Every loss is a function ``losslab.<name>(input, target, *, ...)`` with an
nn.Module twin taking the same keyword arguments, and is registered by name:
``losslab.get_loss("BCEWithLogitsLoss")``. ``losslab names`` lists them.
"""

# ruff: noqa: I001
# Imports in registration order: `losslab names` lists the losses in it (classification first).
from ._checks import get_checks, set_checks
from ._fused import get_fused, set_fused
from .classification import (
    BalancedCrossEntropyLoss,
    BinaryCrossEntropyLoss,
    CrossEntropyLoss,
    NLLLoss,
    balanced_cross_entropy,
    binary_cross_entropy,
    cross_entropy,
    nll_loss,
)
from .focal import SigmoidFocalLoss, SoftmaxFocalLoss, sigmoid_focal_loss, softmax_focal_loss
from .longtail import LDAMLoss, LogitAdjustedCrossEntropyLoss, VSLoss, ldam_loss, logit_adjusted_cross_entropy, vs_loss
from .seesaw import SeesawLoss, seesaw_loss
from .eqlv2 import EQLv2Loss, eqlv2_loss
from .asymmetric import AsymmetricLoss, asymmetric_loss
from .poly import (
    PolyCrossEntropyLoss,
    PolySigmoidFocalLoss,
    PolySoftmaxFocalLoss,
    poly_cross_entropy,
    poly_sigmoid_focal_loss,
    poly_softmax_focal_loss,
)
from .detection import (
    DistributionFocalLoss,
    QualityFocalLoss,
    VarifocalLoss,
    distribution_focal_loss,
    quality_focal_loss,
    varifocal_loss,
)
from .regression import HuberLoss, SmoothL1Loss, huber_loss, smooth_l1_loss
from ._box_modules import CIoULoss, DIoULoss, EIoULoss, GIoULoss, IoULoss, SIoULoss
from .boxes import (
    ciou_loss,
    diou_loss,
    eiou_loss,
    giou_loss,
    iou_loss,
    siou_loss,
)
from .segmentation import DiceLoss, JaccardLoss, TverskyLoss, dice_loss, jaccard_loss, tversky_loss
from .generalized_dice import GeneralizedDiceLoss, generalized_dice_loss
from .lovasz import LovaszHingeLoss, LovaszSoftmaxLoss, lovasz_hinge_loss, lovasz_softmax_loss
from .combined import DiceCELoss, DiceFocalLoss, dice_ce_loss, dice_focal_loss
from . import frameworks  # noqa: F401  (registers the frameworks' names: "kornia.FocalLoss")
from .config import CombinedLoss, combine, get_loss
from .linear import LinearCrossEntropyLoss, linear_cross_entropy  # not registered: three tensors in (README)
from .weights import class_counts, class_weights, deferred_class_weights, logit_adjust

__version__ = "0.1.0"

__all__ = [
    "cross_entropy", "nll_loss", "binary_cross_entropy", "balanced_cross_entropy",
    "sigmoid_focal_loss", "softmax_focal_loss",
    "CrossEntropyLoss", "NLLLoss", "BinaryCrossEntropyLoss", "BalancedCrossEntropyLoss",
    "SigmoidFocalLoss", "SoftmaxFocalLoss",
    "logit_adjusted_cross_entropy", "ldam_loss", "vs_loss", "LogitAdjustedCrossEntropyLoss", "LDAMLoss", "VSLoss",
    "logit_adjust", "deferred_class_weights",
    "seesaw_loss", "SeesawLoss", "eqlv2_loss", "EQLv2Loss",
    "asymmetric_loss", "poly_cross_entropy", "poly_softmax_focal_loss", "poly_sigmoid_focal_loss",
    "AsymmetricLoss", "PolyCrossEntropyLoss", "PolySoftmaxFocalLoss", "PolySigmoidFocalLoss",
    "quality_focal_loss", "distribution_focal_loss", "varifocal_loss",
    "QualityFocalLoss", "DistributionFocalLoss", "VarifocalLoss",
    "smooth_l1_loss", "huber_loss", "SmoothL1Loss", "HuberLoss",
    "iou_loss", "giou_loss", "diou_loss", "ciou_loss", "eiou_loss", "siou_loss",
    "IoULoss", "GIoULoss", "DIoULoss", "CIoULoss", "EIoULoss", "SIoULoss",
    "dice_loss", "jaccard_loss", "tversky_loss", "DiceLoss", "JaccardLoss", "TverskyLoss",
    "lovasz_softmax_loss", "lovasz_hinge_loss", "LovaszSoftmaxLoss", "LovaszHingeLoss",
    "generalized_dice_loss", "GeneralizedDiceLoss",
    "dice_ce_loss", "dice_focal_loss", "DiceCELoss", "DiceFocalLoss", "combine", "CombinedLoss",
    "class_weights", "class_counts", "linear_cross_entropy", "LinearCrossEntropyLoss",
    "get_loss", "set_checks", "get_checks", "set_fused", "get_fused",
    "__version__",
]
