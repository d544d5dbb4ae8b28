"""Other frameworks' losses, reproduced: the adapters behind framework-qualified names.

``losslab.get_loss("kornia.FocalLoss", alpha=0.25)`` gives kornia's loss with
kornia's defaults, not losslab's: where a framework's loss differs from
losslab's only by a preset, the alias presets it (:class:`losslab.registry.Alias`);
where it differs by a convention that presets cannot express (a scalar alpha
expanded per class, another denominator for "mean", a smoothing term counted
twice, classes absent from the target dropped), the alias builds one of the
modules here, each a thin function over losslab's own loss; where the
framework's loss is another formula, the name raises and names the closest
losslab loss. One module per family; each registers its aliases on import.
"""

from . import (  # noqa: F401  (registration on import)
    boxes,
    classification,
    detection,
    focal,
    generalized_dice,
    lovasz,
    multilabel,
    segmentation,
    segmentation_monai,
    segmentation_smp,
)
