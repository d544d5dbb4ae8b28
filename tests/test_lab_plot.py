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


# ----------------------------------------------------------------------------
# the losses that take class counts (issue 15): per true class, for a class-count profile


def count_reference(name, p, true_class, counts):
    """The loss of an example of class ``true_class`` whose softmax gives it p_t, the others (1 - p_t) / (C - 1).

    Written from the papers' formulas: logit adjustment (tau = 1) adds log pi; LDAM scales by s = 30 after
    taking Delta_y = 0.5 (min n / n_y)^(1/4) off the true logit; VS (gamma 0.2, tau 1) takes
    Delta_c x_c + tau log pi_c with Delta_c = (n_c / max n)^gamma; Seesaw (p 0.8, q 2) multiplies each other
    class's exponential by M C, M = min(1, n_j / n_i)^p, C = max(1, sigma_j / max(sigma_i, eps))^q.
    """
    counts = np.asarray(counts, np.float64)
    num = len(counts)
    x = np.tile(np.log((1 - p) / (num - 1))[:, None], (1, num))
    x[:, true_class] = np.log(p)
    pi = counts / counts.sum()
    if name == "logit_adjusted_cross_entropy":
        z = x + np.log(pi)
    elif name == "ldam_loss":
        z = x.copy()
        z[:, true_class] -= 0.5 * (counts.min() / counts[true_class]) ** 0.25
        z = 30.0 * z
    elif name == "vs_loss":
        z = (counts / counts.max()) ** 0.2 * x + np.log(pi)
    elif name == "seesaw_loss":
        sigma = np.exp(x)  # the softmax: x are log-probabilities
        m = np.minimum(1.0, counts / counts[true_class]) ** 0.8
        c = np.maximum(1.0, sigma / np.maximum(sigma[:, [true_class]], 1e-2)) ** 2.0  # eps = 1e-2
        z = x + np.log(m * c)
        z[:, true_class] = x[:, true_class]
    else:
        raise AssertionError(name)
    zmax = z.max(axis=1, keepdims=True)
    return -(z[:, true_class] - zmax[:, 0] - np.log(np.exp(z - zmax).sum(axis=1)))


COUNTED = ["logit_adjusted_cross_entropy", "ldam_loss", "vs_loss", "seesaw_loss"]


class TestClassCounts:
    @pytest.mark.parametrize("name", COUNTED)
    def test_default_profile_head_and_tail(self, name):
        data = loss_curves(name, p=P)
        assert data["class_counts"] == [100.0, 10.0] and data["counts_default"] is True
        assert [(c["class"], c["count"], c["gamma"]) for c in data["curves"]] == [(0, 100.0, None), (1, 10.0, None)]
        assert [c["label"] for c in data["curves"]] == ["class 0 (head, n = 100)", "class 1 (tail, n = 10)"]
        for curve in data["curves"]:
            expected = count_reference(name, P, curve["class"], [100, 10])
            np.testing.assert_allclose(curve["loss"], expected, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(curve["factor"], expected / -np.log(P), rtol=1e-9, atol=1e-12)
            assert np.isfinite(curve["grad"]).all()

    @pytest.mark.parametrize("name", COUNTED)
    def test_given_counts_and_classes(self, name):
        data = loss_curves(name, p=P, class_counts="500,50,5", classes=[2, 1])
        assert data["counts_default"] is False
        assert [c["label"] for c in data["curves"]] == ["class 2 (tail, n = 5)", "class 1 (n = 50)"]
        for curve in data["curves"]:
            np.testing.assert_allclose(curve["loss"], count_reference(name, P, curve["class"], [500, 50, 5]),
                                       rtol=1e-9, atol=1e-12)

    def test_logit_adjustment_gradient_is_adjusted_probability_minus_one(self):
        data = loss_curves("Balanced Softmax", p=P)
        assert data["options"] == {"tau": 1.0}
        for curve, prior in zip(data["curves"], (100 / 110, 10 / 110), strict=True):
            q = P * prior / (P * prior + (1 - P) * (1 - prior))
            np.testing.assert_allclose(curve["grad"], q - 1, rtol=1e-9, atol=1e-12)

    def test_vs_gamma_is_an_option_not_the_focusing_parameter(self):
        data = loss_curves("vs_loss", gammas=(0, 2), p=P, gamma=0.2)
        assert [c["gamma"] for c in data["curves"]] == [None, None]
        assert data["options"] == {"gamma": 0.2}

    def test_seesaw_p_reaches_the_loss(self):
        a = loss_curves("seesaw_loss", p=P, loss_options={"p": 0.0})["curves"][0]["loss"]
        b = loss_curves("seesaw_loss", p=P)["curves"][0]["loss"]
        assert not np.allclose(a, b)

    @pytest.mark.parametrize("kwargs, match", [
        ({"class_counts": [5]}, r"^loss_curves: ldam_loss: class_counts must hold one count per class, at least 2"),
        ({"class_counts": "5,x"}, r"^loss_curves: ldam_loss: class_counts must be comma-separated counts"),
        ({"class_counts": [5, float("nan")]}, r"^loss_curves: ldam_loss: class_counts must be finite numbers >= 0"),
        ({"classes": [2]}, r"^loss_curves: classes must be class indices in \[0, 2\)"),
        ({"classes": [0, 0]}, r"^loss_curves: classes must not repeat a class"),
    ])
    def test_bad_counts_and_classes(self, kwargs, match):
        with pytest.raises(ValueError, match=match):
            loss_curves("ldam_loss", p=P, **kwargs)

    def test_classes_for_a_loss_without_counts_and_a_missing_option(self):
        with pytest.raises(ValueError, match=r"^loss_curves: cross_entropy takes no class counts"):
            loss_curves("cross_entropy", p=P, classes=[0])
        with pytest.raises(ValueError, match=r"^loss_curves: balanced_cross_entropy needs alpha, which has no "
                                             r"default: give it as 'balanced_cross_entropy alpha=\.\.\.'"):
            loss_curves("balanced_cross_entropy", p=P)

    def test_figure_labels_say_the_counts_and_the_class(self, tmp_path):
        out = plot_curves(["cross_entropy", "ldam_loss"], gammas=(0,), out=tmp_path / "c.svg",
                          class_counts=[300, 30])
        text = " ".join(t.text or "" for t in ET.parse(out).iter() if t.tag.endswith("text"))
        svg = out.read_text()
        assert "class_counts = [300, 30], softmax over 2 classes, a curve per true class" in svg + text
        assert "class 1 (tail, n = 30)" in svg + text and "true class" in svg + text


class TestClassCountsCommand:
    @pytest.mark.parametrize("spec", ["logit_adjusted_cross_entropy", "Balanced Softmax", "BALMS", "ldam_loss",
                                      "vs_loss", "seesaw_loss", "mmpretrain.SeesawLoss"])
    def test_each_loss_draws(self, capsys, tmp_path, spec):
        out = tmp_path / "c.svg"
        code, stdout, err = _run(capsys, spec, "--out", str(out))
        assert code == 0 and err == "" and stdout.strip() == str(out)
        assert "class_counts = [100, 10] (default)" in out.read_text()

    @pytest.mark.parametrize("argv", [["ldam_loss scale=1 class_counts=500,50,5"],
                                      ["ldam_loss scale=1", "--class-counts", "500,50,5"],
                                      ["ldam_loss scale=1", "--option", "class_counts=500,50,5"],
                                      ["ldam_loss scale=1 class_counts=[500,50,5]"]])
    def test_counts_from_the_spec_the_flag_or_option(self, capsys, tmp_path, monkeypatch, argv):
        seen = []
        real = loss_curves

        def spy(*args, **kwargs):
            seen.append(real(*args, **kwargs))
            return seen[-1]

        monkeypatch.setattr("losslab.lab._curves.loss_curves", spy)
        out = tmp_path / "c.svg"
        code, _, err = _run(capsys, *argv, "--classes", "0", "2", "--out", str(out))
        assert code == 0 and err == ""
        (data,) = seen
        assert data["class_counts"] == [500.0, 50.0, 5.0]
        assert [c["class"] for c in data["curves"]] == [0, 2]

    @pytest.mark.parametrize("argv, message", [
        (["ldam_loss", "--class-counts", "5,x"], ("losslab plot: loss_curves: ldam_loss: class_counts must be "
                                                 "comma-separated counts, one per class")),
        (["ldam_loss class_counts=5"], ("losslab plot: parse_loss_spec: ldam_loss: class_counts must hold one "
                                       "count per class, at least 2; got [5.0]")),
        (["ldam_loss", "--classes", "3"], "losslab plot: loss_curves: classes must be class indices in [0, 2)"),
        (["cross_entropy", "--class-counts", "5,3"], ("losslab plot: plot_curves: class_counts is for the losses "
                                                     "that take class counts")),
        (["seesaw_loss", "--option", "class_counts=5,5", "--class-counts", "5,5"],
         "losslab plot: --option class_counts=... is not a loss option here; give --class-counts only"),
        (["seesaw_loss", "--option", "dpi=3"], "losslab plot: --option dpi=... is not a loss option here"),
        (["balanced_cross_entropy"], "losslab plot: loss_curves: balanced_cross_entropy needs alpha"),
        (["mmdet.SeesawLoss"], "losslab plot: get_loss: 'mmdet.SeesawLoss' is mmdetection's SeesawLoss"),
    ])
    def test_bad_counts_are_one_line(self, capsys, tmp_path, argv, message):
        code, stdout, err = _run(capsys, *argv, "--out", str(tmp_path / "c.svg"))
        assert code == 2 and stdout == ""
        assert err.count("\n") == 1 and err.startswith(message)
        assert not (tmp_path / "c.svg").exists()

    def test_help(self, capsys):
        with pytest.raises(SystemExit):
            cli_main(["plot", "--help"])
        out = " ".join(capsys.readouterr().out.split())
        assert "--class-counts N0,N1,..." in out and "default 100,10: a head and a tail class" in out
        assert "the head (solid) and the tail (dashed)" in out
