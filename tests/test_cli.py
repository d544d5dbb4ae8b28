"""The command line: `losslab names` in-process, through `python -m losslab`, and through the console script."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import losslab
from losslab import cli, registry

ROWS = registry.names_table()


def _run_main(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _subprocess(*command: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


def _console_script() -> Path:
    """The `losslab` script installed beside the interpreter that runs the tests."""
    bindir = Path(sys.executable).parent
    for name in ("losslab", "losslab.exe"):
        if (bindir / name).exists():
            return bindir / name
    pytest.skip(f"no losslab console script in {bindir} (package not installed with its scripts)")


# ----------------------------------------------------------------------------
# text (the default)


def test_names_text_lists_every_name_source_input_and_formula(capsys):
    code, out, err = _run_main(capsys, "names")
    assert code == 0 and err == ""
    for spec in registry.specs():
        assert spec.name in out
        assert spec.formula in out
        for alias in spec.aliases:
            assert alias.name in out, alias.name
            assert alias.source in out, alias.source
    for row in ROWS:
        assert row["lookup"] in out, row["lookup"]
    for kind in ("logits", "probabilities", "log-probabilities"):
        assert kind in out
    # presets are shown where an alias has them, e.g. BCELoss takes probabilities
    bce_line = next(line for line in out.splitlines() if line.split()[:1] == ["BCELoss"])
    assert "PyTorch" in bce_line and "probabilities" in bce_line and "from_logits=False" in bce_line


def test_names_text_rows_are_grouped_under_their_canonical_name(capsys):
    _, out, _ = _run_main(capsys, "names")
    lines = out.splitlines()
    headers = [i for i, line in enumerate(lines) if line in {spec.name for spec in registry.specs()}]
    assert [lines[i] for i in headers] == [spec.name for spec in registry.specs()]
    # the formula is the line after each canonical header
    for i, spec in zip(headers, registry.specs()):
        assert lines[i + 1].strip() == spec.formula


# ----------------------------------------------------------------------------
# json and markdown


def test_names_json_has_one_row_per_name(capsys):
    code, out, _ = _run_main(capsys, "names", "--format", "json")
    assert code == 0
    rows = json.loads(out)
    assert len(rows) == sum(1 + len(spec.aliases) for spec in registry.specs())
    assert rows == json.loads(json.dumps(ROWS))
    keys = {"canonical", "name", "source", "input", "defaults", "lookup", "formula", "note"}
    assert all(keys <= set(row) for row in rows)
    pairs = {(row["canonical"], row["name"], row["source"]) for row in rows}
    for spec in registry.specs():
        assert (spec.name, spec.name, "losslab") in pairs
        for alias in spec.aliases:
            assert (spec.name, alias.name, alias.source) in pairs
    # every lookup string of the table works with get_loss
    for row in rows:
        assert registry.get_spec(row["lookup"]).name == row["canonical"]


def test_names_markdown_is_a_table_with_one_row_per_name(capsys):
    code, out, _ = _run_main(capsys, "names", "--format", "markdown")
    assert code == 0
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines[0].startswith("| canonical | name | source | input |") and "formula" in lines[0]
    assert set(lines[1].replace("|", "")) == {"-"}
    body = lines[2:]
    assert len(body) == len(ROWS)
    columns = lines[0].count("|")
    separator = re.compile(r"(?<!\\)\|")  # a pipe not escaped with a backslash
    for line, row in zip(body, ROWS):
        assert line.startswith("| ") and line.endswith("|")
        assert len(separator.findall(line)) == columns, line  # pipes inside a cell are escaped
        cells = [cell.strip() for cell in separator.split(line.strip("|"))]
        assert cells[:4] == [row["canonical"], row["lookup"], row["source"], row["input"]]
        assert row["formula"] in cells[-1].replace("\\|", "|")


# ----------------------------------------------------------------------------
# query filter


def test_names_query_keeps_only_matching_losses(capsys):
    code, out, _ = _run_main(capsys, "names", "focal", "--format", "json")
    assert code == 0
    rows = json.loads(out)
    focal = {"sigmoid_focal_loss", "softmax_focal_loss", "quality_focal_loss", "distribution_focal_loss",
             "varifocal_loss", "dice_focal_loss", "tversky_loss",  # tversky: its alias "Focal Tversky"
             "poly_softmax_focal_loss", "poly_sigmoid_focal_loss"}
    assert {row["canonical"] for row in rows} == focal
    # whole groups are kept: every alias of a matching loss is listed
    expected = sum(1 + len(registry.get_spec(n).aliases) for n in focal)
    assert len(rows) == expected


def test_names_query_text(capsys):
    code, out, _ = _run_main(capsys, "names", "focal")
    assert code == 0
    assert "sigmoid_focal_loss" in out and "softmax_focal_loss" in out
    assert "BCEWithLogitsLoss" not in out and "NLLLoss" not in out


@pytest.mark.parametrize(("query", "canonicals"), [
    ("Focal-Loss", {"sigmoid_focal_loss", "softmax_focal_loss", "quality_focal_loss", "distribution_focal_loss",
                    "varifocal_loss", "dice_focal_loss", "poly_softmax_focal_loss",
                    "poly_sigmoid_focal_loss"}),  # normalised like get_loss
    ("keras", {"cross_entropy", "binary_cross_entropy", "sigmoid_focal_loss", "softmax_focal_loss", "huber_loss",
               "dice_loss", "tversky_loss"}),
    ("boxes", {"iou_loss", "giou_loss", "diou_loss", "ciou_loss", "eiou_loss", "siou_loss"}),
    ("torchvision", {"sigmoid_focal_loss", "giou_loss", "diou_loss", "ciou_loss"}),
    ("log-probabilities", {"nll_loss"}),
    ("BCELoss", {"binary_cross_entropy"}),
])
def test_names_query_matches_names_sources_and_inputs(capsys, query, canonicals):
    code, out, _ = _run_main(capsys, "names", query, "--format", "json")
    assert code == 0
    assert {row["canonical"] for row in json.loads(out)} == canonicals


def test_names_unknown_query_fails(capsys):
    code, out, err = _run_main(capsys, "names", "no-such-loss-anywhere")
    assert code != 0
    assert out == ""
    assert "no-such-loss-anywhere" in err


def test_names_misspelt_query_suggests_close_words(capsys):
    code, out, err = _run_main(capsys, "names", "focl")
    assert (code, out) == (2, "")
    assert err.strip().startswith("losslab names: no loss matches 'focl'; did you mean 'focal'")
    assert len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------
# the parser


def test_no_command_prints_help_and_exits_2(capsys):
    code, out, err = _run_main(capsys)
    assert code == 2
    assert "usage: losslab" in out + err and "names" in out + err


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    out, _ = capsys.readouterr()
    assert out.strip() == f"losslab {losslab.__version__}"


@pytest.mark.parametrize("argv", [["names", "--format", "yaml"], ["frobnicate"]])
def test_bad_arguments_exit_2(capsys, argv):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert "usage: losslab" in capsys.readouterr().err


# ----------------------------------------------------------------------------
# the same through a process: `python -m losslab` and the console script


def test_python_m_losslab_names():
    result = _subprocess(sys.executable, "-m", "losslab", "names", "--format", "json")
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)) == len(ROWS)


def test_python_m_losslab_exit_codes():
    assert _subprocess(sys.executable, "-m", "losslab", "names", "no-such-loss-anywhere").returncode == 2
    bare = _subprocess(sys.executable, "-m", "losslab")
    assert bare.returncode == 2 and "usage: losslab" in bare.stdout + bare.stderr


def test_console_script_names():
    script = str(_console_script())
    result = _subprocess(script, "names")
    assert result.returncode == 0, result.stderr
    for row in ROWS:
        assert row["lookup"] in result.stdout
    version = _subprocess(script, "--version")
    assert version.returncode == 0 and version.stdout.strip() == f"losslab {losslab.__version__}"
    assert _subprocess(script, "names", "no-such-loss-anywhere").returncode == 2


# ----------------------------------------------------------------------------
# issue 13: a failing command is one line, a closed pipe ends quietly


def test_closed_pipe_ends_quietly():
    # regression: `losslab names | head` ended in a BrokenPipeError traceback
    read, write = os.pipe()
    os.close(read)  # the reader is gone before a byte is written: every write fails with EPIPE
    try:
        result = subprocess.run([sys.executable, "-m", "losslab", "names", "--format", "json"], stdout=write,
                                stderr=subprocess.PIPE, text=True, timeout=120,
                                env={**os.environ, "PYTHONWARNINGS": "ignore"})
    finally:
        os.close(write)
    assert result.returncode == 1 and result.stderr == ""


def test_broken_pipe_in_process(monkeypatch, capsys):
    class Closed:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", Closed())
    assert cli.main(["names"]) == 1
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("error, code, message", [
    (RuntimeError("something\nunexpected"), 2, "losslab names: RuntimeError: something unexpected "
                                               "(LOSSLAB_TRACEBACK=1 shows where)\n"),
    (KeyboardInterrupt(), 130, "losslab names: interrupted\n"),
])
def test_any_failure_is_one_line(monkeypatch, capsys, error, code, message):
    def handler(args):
        raise error

    monkeypatch.setattr(cli, "cmd_names", handler)
    monkeypatch.delenv("LOSSLAB_TRACEBACK", raising=False)
    assert cli.main(["names"]) == code
    out, err = capsys.readouterr()
    assert out == "" and err == message
    monkeypatch.setenv("LOSSLAB_TRACEBACK", "1")
    if code == 2:
        with pytest.raises(RuntimeError):
            cli.main(["names"])
