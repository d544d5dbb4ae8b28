"""`losslab plot`: the curves against float64 NumPy formulas, the figure it draws, and the command."""

from __future__ import annotations

import argparse
import re
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("matplotlib")

from losslab.cli import main as cli_main
from losslab.lab._commands import add_plot_arguments as add_arguments  # noqa: E402
from losslab.lab._commands import parse_options  # noqa: E402
from losslab.lab._curves import (  # noqa: E402
    DEFAULT_GAMMAS,
    _figure,
    default_grid,
    loss_curves,
    plot_curves,
)

P = np.array([0.001, 0.01, 0.05, 0.2, 0.5, 0.7, 0.9, 0.99, 0.999])
CLOSE = {"rtol": 1e-9, "atol": 1e-12}


# ----------------------------------------------------------------------------
# independent float64 references, written from the formulas


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def focal(p, gamma):
    """FL(p_t) = -(1 - p_t)^gamma log p_t."""
    return -((1.0 - p) ** gamma) * np.log(p)


def focal_grad(p, gamma):
    """d FL / d x with p = sigmoid(x): dFL/dp = gamma (1-p)^(gamma-1) log p - (1-p)^gamma / p, dp/dx = p (1-p)."""
    return (1.0 - p) ** gamma * (gamma * p * np.log(p) - (1.0 - p))


def finite_difference(f, x, h=1e-6):
    return (f(x + h) - f(x - h)) / (2.0 * h)


def logit(p):
    return np.log(p) - np.log1p(-p)


# ----------------------------------------------------------------------------
# the data


class TestReferences:
    """The test's own closed form is right before anything is compared with it."""

    @pytest.mark.parametrize("gamma", DEFAULT_GAMMAS)
    def test_focal_gradient_closed_form_matches_finite_differences(self, gamma):
        x = logit(P[1:-1])
        numeric = finite_difference(lambda z: focal(sigmoid(z), gamma), x)
        np.testing.assert_allclose(focal_grad(P[1:-1], gamma), numeric, rtol=1e-6, atol=1e-9)


class TestCrossEntropy:
    @pytest.mark.parametrize("name", ["cross_entropy", "binary_cross_entropy", "CrossEntropyLoss",
                                      "BCEWithLogitsLoss"])
    def test_loss_is_minus_log_p_and_gradient_p_minus_one(self, name):
        data = loss_curves(name, p=P)
        assert len(data["curves"]) == 1  # no gamma: one curve, the default gammas ignored
        (curve,) = data["curves"]
        assert curve["gamma"] is None and curve["label"] == name
        np.testing.assert_allclose(curve["loss"], -np.log(P), **CLOSE)
        np.testing.assert_allclose(curve["factor"], np.ones_like(P), **CLOSE)
        np.testing.assert_allclose(curve["grad"], P - 1.0, **CLOSE)

    def test_gammas_are_ignored_by_a_loss_without_gamma(self):
        data = loss_curves("cross_entropy", gammas=(1, 3), p=P)
        assert [c["gamma"] for c in data["curves"]] == [None]

    def test_forms(self):
        assert loss_curves("cross_entropy", p=P)["form"] == "softmax"
        assert loss_curves("binary_cross_entropy", p=P)["form"] == "sigmoid"

    def test_bceloss_alias_takes_probabilities_and_gives_the_same_curves(self):
        probs, logits = loss_curves("BCELoss", p=P), loss_curves("binary_cross_entropy", p=P)
        assert probs["input"] == "probabilities" and logits["input"] == "logits"
        assert probs["loss"] == "binary_cross_entropy"
        for key in ("loss", "factor", "grad"):
            np.testing.assert_allclose(probs["curves"][0][key], logits["curves"][0][key], rtol=1e-8, atol=1e-12)

    def test_from_logits_false_on_a_softmax_loss(self):
        data = loss_curves("cross_entropy", p=P, from_logits=False)
        assert data["input"] == "probabilities"
        np.testing.assert_allclose(data["curves"][0]["grad"], P - 1.0, rtol=1e-8, atol=1e-12)

    def test_nll_loss_takes_log_probabilities(self):
        data = loss_curves("nll_loss", p=P)
        assert data["input"] == "log-probabilities" and data["form"] == "softmax"
        (curve,) = data["curves"]
        np.testing.assert_allclose(curve["loss"], -np.log(P), **CLOSE)
        np.testing.assert_allclose(curve["grad"], P - 1.0, **CLOSE)


class TestSoftmaxFocalLoss:
    def test_default_curves_are_the_default_gammas(self):
        data = loss_curves()
        assert data["loss"] == "softmax_focal_loss"
        assert [c["gamma"] for c in data["curves"]] == [0.0, 0.5, 1.0, 2.0, 5.0]
        assert [c["label"] for c in data["curves"]] == ["gamma = 0", "gamma = 0.5", "gamma = 1", "gamma = 2",
                                                          "gamma = 5"]
        p = data["p"]
        assert p.dtype == np.float64 and p.ndim == 1 and 200 <= p.size <= 2000
        assert p.min() == pytest.approx(0.001) and p.max() == pytest.approx(0.999)
        assert np.all(np.diff(p) > 0) and 0.5 in p
        np.testing.assert_array_equal(p, default_grid())

    @pytest.mark.parametrize("gamma", DEFAULT_GAMMAS)
    def test_loss_factor_and_gradient(self, gamma):
        (curve,) = loss_curves("softmax_focal_loss", gammas=(gamma,), p=P)["curves"]
        np.testing.assert_allclose(curve["loss"], focal(P, gamma), **CLOSE)
        np.testing.assert_allclose(curve["factor"], (1.0 - P) ** gamma, **CLOSE)
        np.testing.assert_allclose(curve["grad"], focal_grad(P, gamma), rtol=1e-8, atol=1e-12)

    def test_gradient_is_the_derivative_of_the_loss_curve(self):
        # finite differences through loss_curves itself: autograd agrees with the values it reports
        x, h = logit(P[1:-1]), 1e-6
        for gamma in DEFAULT_GAMMAS:
            up = loss_curves(gammas=(gamma,), p=sigmoid(x + h))["curves"][0]["loss"]
            down = loss_curves(gammas=(gamma,), p=sigmoid(x - h))["curves"][0]["loss"]
            grad = loss_curves(gammas=(gamma,), p=P[1:-1])["curves"][0]["grad"]
            np.testing.assert_allclose(grad, (up - down) / (2 * h), rtol=1e-5, atol=1e-9)

    def test_gamma_zero_is_cross_entropy(self):
        focal0 = loss_curves(gammas=(0,), p=P)["curves"][0]
        ce = loss_curves("cross_entropy", p=P)["curves"][0]
        for key in ("loss", "factor", "grad"):
            np.testing.assert_allclose(focal0[key], ce[key], **CLOSE)

    def test_focal_gradient_vanishes_for_well_classified_examples(self):
        (curve,) = loss_curves(gammas=(2,), p=[0.999])["curves"]
        assert abs(curve["grad"][0]) < 1e-6

    @settings(max_examples=20)
    @given(gamma=st.floats(0.0, 6.0), p=st.floats(0.001, 0.999))
    def test_factor_is_one_minus_p_to_the_gamma(self, gamma, p):
        (curve,) = loss_curves(gammas=(gamma,), p=[p])["curves"]
        assert curve["factor"][0] == pytest.approx((1.0 - p) ** gamma, rel=1e-9, abs=1e-300)
        assert np.isfinite(curve["grad"][0])

    def test_doc_example(self):
        curves = loss_curves(gammas=(2,), p=[0.5])["curves"]
        assert curves[0]["factor"][0] == pytest.approx(0.25)


class TestSigmoidFocalLoss:
    @pytest.mark.parametrize("gamma", DEFAULT_GAMMAS)
    def test_default_alpha_quarter_scales_every_curve(self, gamma):
        data = loss_curves("sigmoid_focal_loss", gammas=(gamma,), p=P)
        assert data["form"] == "sigmoid" and data["options"] == {"alpha": 0.25}
        (curve,) = data["curves"]
        np.testing.assert_allclose(curve["loss"], 0.25 * focal(P, gamma), **CLOSE)
        np.testing.assert_allclose(curve["factor"], 0.25 * (1.0 - P) ** gamma, **CLOSE)
        np.testing.assert_allclose(curve["grad"], 0.25 * focal_grad(P, gamma), rtol=1e-8, atol=1e-12)

    def test_alpha_none_equals_the_softmax_form(self):
        sig = loss_curves("sigmoid_focal_loss", alpha=None, p=P)
        soft = loss_curves("softmax_focal_loss", p=P)
        assert sig["options"] == {"alpha": None}
        for a, b in zip(sig["curves"], soft["curves"], strict=True):
            for key in ("loss", "factor", "grad"):
                np.testing.assert_allclose(a[key], b[key], rtol=1e-8, atol=1e-12)

    def test_alias_presets_are_reported(self):
        data = loss_curves("BinaryFocalCrossentropy", gammas=(2,), p=P)  # Keras: probabilities, alpha None
        assert data["input"] == "probabilities" and data["options"] == {"alpha": None}
        np.testing.assert_allclose(data["curves"][0]["loss"], focal(P, 2.0), rtol=1e-8, atol=1e-12)


class TestErrors:
    @pytest.mark.parametrize("name, match", [
        ("dice_loss", r"loss_curves: 'dice_loss' is a segmentation loss"),
        ("smooth_l1_loss", r"loss_curves: 'smooth_l1_loss' is a regression loss"),
        ("no_such_loss", r"unknown loss name 'no_such_loss'"),
    ])
    def test_not_a_classification_loss(self, name, match):
        with pytest.raises(ValueError, match=match):
            loss_curves(name)

    @pytest.mark.parametrize("p, match", [
        ([0.0, 0.5], r"loss_curves: p must lie strictly inside \(0, 1\); got 0.0"),
        ([0.5, 1.0], r"loss_curves: p must lie strictly inside \(0, 1\); got 1.0"),
        ([], r"loss_curves: p must be a non-empty 1-D sequence"),
        ([[0.5]], r"loss_curves: p must be a non-empty 1-D sequence"),
    ])
    def test_bad_p(self, p, match):
        with pytest.raises(ValueError, match=match):
            loss_curves(p=p)

    @pytest.mark.parametrize("gammas, match", [
        ((), r"loss_curves: gammas must hold at least one gamma"),
        ((1, -1), r"loss_curves: every gamma must be a finite number >= 0; got -1"),
        ((float("nan"),), r"loss_curves: every gamma must be a finite number >= 0"),
        (("2",), r"loss_curves: gammas must be numbers; got '2'"),
    ])
    def test_bad_gammas(self, gammas, match):
        with pytest.raises(ValueError, match=match):
            loss_curves(gammas=gammas, p=P)

    def test_a_number_is_one_gamma(self):
        assert [c["gamma"] for c in loss_curves(gammas=2, p=P)["curves"]] == [2.0]

    @pytest.mark.parametrize("key", ["gamma", "reduction"])
    def test_gamma_and_reduction_are_not_options(self, key):
        with pytest.raises(ValueError, match=rf"loss_curves: {key} is not a loss option here"):
            loss_curves(p=P, **{key: 2.0})

    def test_the_loss_checks_its_options(self):
        with pytest.raises(ValueError, match=r"sigmoid_focal_loss: alpha must be a finite number in \[0, 1\]"):
            loss_curves("sigmoid_focal_loss", alpha=1.5, p=P)
        with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) 'alpha'"):
            loss_curves("cross_entropy", alpha=0.5, p=P)

    @pytest.mark.parametrize("out", ["curves.pdf", "curves", "curves.png.txt"])
    def test_bad_suffix(self, tmp_path, out):
        with pytest.raises(ValueError, match=r"plot_curves: out must end in \.png or \.svg; got '.*'"):
            plot_curves(out=tmp_path / out)
        assert not any(tmp_path.iterdir())

    def test_no_loss_and_bad_dpi(self, tmp_path):
        with pytest.raises(ValueError, match="plot_curves: losses must name at least one loss"):
            plot_curves([], out=tmp_path / "a.png")
        with pytest.raises(ValueError, match="plot_curves: dpi must be a positive integer; got 0"):
            plot_curves(out=tmp_path / "a.png", dpi=0)


# ----------------------------------------------------------------------------
# the figure


class TestFigure:
    def test_png_is_written(self, tmp_path):
        out = tmp_path / "curves.png"
        path = plot_curves(gammas=(0, 2), out=out, dpi=30)
        assert path == out and out.stat().st_size > 1000
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    def test_missing_folder_is_an_error_and_nothing_is_created(self, tmp_path):
        # regression: folders were created silently, even at the file system's root
        out = tmp_path / "a" / "b" / "curves.png"
        with pytest.raises(ValueError, match=r"^plot_curves: the folder of out does not exist: '.*a/b' \(create"):
            plot_curves(gammas=(0, 2), out=out, dpi=30)
        assert not (tmp_path / "a").exists()
        (tmp_path / "dir.png").mkdir()
        with pytest.raises(ValueError, match=r"^plot_curves: out must name a file; .* is a folder"):
            plot_curves(out=tmp_path / "dir.png")

    def test_svg_is_xml_with_an_svg_root(self, tmp_path):
        path = plot_curves("cross_entropy", out=str(tmp_path / "curves.SVG"))
        root = ET.parse(path).getroot()
        assert root.tag.rsplit("}", 1)[-1] == "svg"

    def test_two_losses_make_two_rows_of_three_panels(self):
        figure = _figure(["cross_entropy", "sigmoid_focal_loss"])
        axes = figure.axes
        assert len(axes) == 6
        assert [ax.get_ylabel() for ax in axes] == ["loss", "modulating factor", "d loss / d logit"] * 2
        assert all(ax.get_xlabel() == "probability of the true class $p_t$" for ax in axes)
        assert all(ax.get_xlim() == (0.0, 1.0) for ax in axes)
        # a legend per row, in the loss panel
        assert [ax.get_legend() is not None for ax in axes] == [True, False, False] * 2
        ce_legend = [t.get_text() for t in axes[0].get_legend().get_texts()]
        focal_legend = [t.get_text() for t in axes[3].get_legend().get_texts()]
        assert ce_legend == ["cross_entropy"]
        assert focal_legend == [rf"$\gamma$ = {g:g}" for g in DEFAULT_GAMMAS]
        # the loss panel is clipped as in the paper's Figure 1; the rows say what they plot
        assert axes[0].get_ylim() == (0.0, 5.0)
        assert 0 < axes[3].get_ylim()[1] <= 5.0
        titles = [row._suptitle.get_text() for row in figure.subfigs]
        assert titles[0].startswith("cross_entropy:")
        assert titles[1].startswith("sigmoid_focal_loss:") and "alpha = 0.25" in titles[1]
        assert [len(ax.get_lines()) for ax in axes[3:]] == [5, 5, 6]  # 5 gammas; the gradient panel adds y = 0

    def test_title_and_alias_in_row_title(self):
        figure = _figure("BCELoss", title="Curves")
        assert figure._suptitle.get_text() == "Curves"
        assert figure.subfigs[0]._suptitle.get_text().startswith("BCELoss (binary_cross_entropy): ")
        assert "probabilities in" in figure.subfigs[0]._suptitle.get_text()

    def test_errors_come_before_drawing(self):
        with pytest.raises(ValueError, match="dice_loss"):
            _figure(["cross_entropy", "dice_loss"])


# ----------------------------------------------------------------------------
# the command


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli_main(["plot", *argv])
    out, err = capsys.readouterr()
    return code, out, err


class TestCommand:
    def test_defaults(self):
        parser = argparse.ArgumentParser()
        add_arguments(parser)
        args = parser.parse_args([])
        assert args.losses == ["softmax_focal_loss"] and args.gamma == [0, 0.5, 1, 2, 5]
        assert args.out == "loss_curves.png" and args.dpi == 150 and args.option == []

    def test_writes_and_prints_the_path(self, capsys, tmp_path):
        out = tmp_path / "curves.png"
        code, stdout, err = _run(capsys, "--out", str(out), "--dpi", "30", "--gamma", "0", "2")
        assert code == 0 and err == ""
        assert stdout.strip() == str(out) and out.read_bytes()[:4] == b"\x89PNG"

    def test_several_losses_and_options(self, capsys, tmp_path, monkeypatch):
        seen = {}

        def fake_plot(losses, **kwargs):
            seen.update(losses=losses, **kwargs)
            return tmp_path / "x.svg"

        monkeypatch.setattr("losslab.lab._commands.plot_curves", fake_plot)
        code, stdout, err = _run(capsys, "cross_entropy", "sigmoid_focal_loss", "--option", "alpha=0.5",
                                 "--option", "ignore_index=null", "--out", "x.svg", "--title", "T")
        assert code == 0 and err == "" and stdout.strip().endswith("x.svg")
        assert seen == {"losses": [{"name": "cross_entropy"}, {"name": "sigmoid_focal_loss"}],
                        "gammas": [0, 0.5, 1, 2, 5],
                        "out": "x.svg", "dpi": 150, "title": "T", "class_counts": None, "classes": None,
                        "alpha": 0.5, "ignore_index": None}

    def test_option_reaches_the_loss(self, capsys, tmp_path):
        out = tmp_path / "curves.svg"
        code, _, err = _run(capsys, "sigmoid_focal_loss", "--option", "alpha=0.5", "--gamma", "2", "--out", str(out))
        assert code == 0 and err == ""
        assert "alpha = 0.5" in out.read_text()  # the row title, as SVG text

    def test_parse_options(self):
        assert parse_options(["alpha=0.25", "alpha2=[0.3, 0.7]", "mode=binary", "flag=true", "s="],
                             caller="c") == {"alpha": 0.25, "alpha2": [0.3, 0.7], "mode": "binary",
                                             "flag": True, "s": ""}
        for bad in ("alpha", "=1", "two words=1"):
            with pytest.raises(ValueError, match=r"c: --option must be KEY=VALUE"):
                parse_options([bad], caller="c")

    @pytest.mark.parametrize("argv, match", [
        (["dice_loss"], "is a segmentation loss"),
        (["no_such_loss"], "unknown loss name"),
        (["--out", "curves.pdf"], r"out must end in \.png or \.svg"),
        (["--option", "alpha"], "--option must be KEY=VALUE"),
        (["cross_entropy", "--option", "alpha=0.5"], "unexpected keyword argument"),
        (["--option", "alpha=2"], "alpha must be a finite number"),
        (["--gamma", "-1"], "every gamma must be a finite number >= 0"),
    ])
    def test_errors_exit_2_with_a_message(self, capsys, tmp_path, argv, match):
        if "--out" not in argv:
            argv = [*argv, "--out", str(tmp_path / "x.png")]
        code, stdout, err = _run(capsys, *argv)
        assert code == 2 and stdout == ""
        assert err.startswith("losslab plot: ") and err.count("losslab plot:") == 1
        assert re.search(match, err)
        assert not (tmp_path / "x.png").exists()

    def test_through_losslab_main(self, capsys, tmp_path):
        try:
            import losslab.lab  # noqa: F401
            from losslab import cli
        except ImportError as error:
            pytest.skip(f"losslab.lab does not import yet: {error}")
        out = tmp_path / "curves.svg"
        assert cli.main(["plot", "cross_entropy", "--out", str(out)]) == 0
        assert capsys.readouterr().out.strip() == str(out) and out.exists()
        assert cli.main(["plot", "dice_loss", "--out", str(out)]) == 2
        assert capsys.readouterr().err.startswith("losslab plot: ")


# ----------------------------------------------------------------------------
# issue 13: options for one loss, names with spaces, failures in one line


def test_per_loss_specs_target_one_loss(capsys, tmp_path, monkeypatch):
    seen = {}

    def fake_plot(losses, **kwargs):
        seen.update(losses=losses, **kwargs)
        return tmp_path / "x.png"

    monkeypatch.setattr("losslab.lab._commands.plot_curves", fake_plot)
    code, _, err = _run(capsys, "softmax_focal_loss", "sigmoid_focal_loss alpha=0.5", "Multi-Class Focal Loss",
                        "--out", "x.png")
    assert code == 0 and err == ""
    assert seen["losses"] == [{"name": "softmax_focal_loss"}, {"name": "sigmoid_focal_loss", "alpha": 0.5},
                              {"name": "Multi-Class Focal Loss"}]


def test_a_mapping_gives_options_to_its_loss_only():
    figure = _figure([{"name": "sigmoid_focal_loss", "alpha": 0.5}, "sigmoid_focal_loss"], gammas=(2,))
    titles = [sub._suptitle.get_text() for sub in figure.subfigs]
    assert "alpha = 0.5" in titles[0] and "alpha = 0.25" in titles[1]


def test_command_failures_are_one_line(capsys, tmp_path, monkeypatch):
    code, out, err = _run(capsys, "--out", str(tmp_path / "missing" / "x.png"))
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("losslab plot: plot_curves: the folder of out does not exist")
    assert not (tmp_path / "missing").exists()
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    code, out, err = _run(capsys, "--out", str(tmp_path / "x.png"))
    assert code == 2 and err == ("losslab plot: plot_curves: drawing needs matplotlib, which is not installed: "
                                 "pip install 'losslab[lab]'\n")
