"""The conformance battery's sample inputs and error cases, keyed by each loss's canonical name.

``SAMPLES[name]()`` builds the sample calls (:class:`Case`) of the registered
loss ``name``, ``ERRORS[name]()`` its bad calls and the errors they must raise
(:class:`ErrorCase`): small, deterministic float64 CPU tensors, built only
when a test asks for them. They live here, not beside the losses, so that
importing losslab builds no test data; tests/test_conformance.py checks that
every registered loss has both.
"""

from __future__ import annotations

from collections.abc import Callable

from . import (
    boxes,
    classification,
    detection,
    longtail,
    longtail_detection,
    longtail_multilabel,
    lovasz,
    regression,
    segmentation,
)
from .cases import Case, ErrorCase

__all__ = ["ERRORS", "SAMPLES", "Case", "ErrorCase"]

_FAMILIES = (classification, longtail, longtail_multilabel, longtail_detection, detection, regression, boxes,
             segmentation, lovasz)

SAMPLES: dict[str, Callable[[], list[Case]]] = {}
ERRORS: dict[str, Callable[[], list[ErrorCase]]] = {}
for _family in _FAMILIES:
    for _table, _entries in ((SAMPLES, _family.SAMPLES), (ERRORS, _family.ERRORS)):
        _clash = _table.keys() & _entries.keys()
        if _clash:
            raise ValueError(f"tests.samples: {sorted(_clash)} defined in two families")
        _table.update(_entries)
