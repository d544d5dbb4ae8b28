"""``import losslab`` and ``import losslab.lab`` stay light: the lab's dependencies load only where used."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("sklearn", "matplotlib", "tqdm", "yaml", "scipy")


def _loaded_after(statement: str) -> list[str]:
    """The heavy modules that ``statement`` loads beyond what ``import torch`` does (torch may load tqdm)."""
    code = (f"import sys, torch; before = set(sys.modules); {statement}; "
            f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules and m not in before))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_import_losslab_is_light():
    assert _loaded_after("import losslab") == []
    code = "import sys, losslab; print('losslab.lab' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() \
        == "False"


def test_import_lab_is_light():
    assert _loaded_after("import losslab.lab") == []


def test_command_line_without_the_lab_running():
    assert _loaded_after("from losslab.cli import build_parser; build_parser()") == []
