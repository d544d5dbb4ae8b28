"""The lab's statistics: Student-t quantiles and intervals, paired differences and verdicts, against SciPy."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from losslab.cli import main
from losslab.lab import _report
from losslab.lab._ablate import ablate
from losslab.lab._report import AblationResult
from losslab.lab._stats import compare, find_baseline, mean_interval, paired_difference, t_cdf, t_quantile, verdict

scipy_stats = pytest.importorskip("scipy.stats")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
METRICS = ("balanced_accuracy", "accuracy")


class TestStudentT:
    @pytest.mark.parametrize("df", [1, 2, 3, 4, 5, 6, 9, 10, 19, 30, 99, 1000])
    @pytest.mark.parametrize("p", [0.6, 0.9, 0.95, 0.975, 0.995, 0.9995, 0.025, 0.1])
    def test_quantile_is_scipys(self, df, p):
        assert t_quantile(p, df) == pytest.approx(scipy_stats.t.ppf(p, df), rel=1e-11, abs=1e-12)

    @pytest.mark.parametrize("df", [1, 2, 3, 4, 7, 8, 50, 301])
    @pytest.mark.parametrize("t", [-40.0, -2.5, -0.3, 0.0, 0.7, 2.0, 12.0, 1e8])
    def test_cdf_is_scipys(self, df, t):
        assert t_cdf(t, df) == pytest.approx(scipy_stats.t.cdf(t, df), abs=1e-13)

    def test_median_and_symmetry(self):
        assert t_quantile(0.5, 4) == 0.0 and t_cdf(0.0, 7) == 0.5
        assert t_quantile(0.025, 4) == -t_quantile(0.975, 4)

    @pytest.mark.parametrize("p, df", [(0.0, 4), (1.0, 4), (1.5, 4), (0.975, 0), (0.975, 2.5), (0.975, True)])
    def test_bad_arguments(self, p, df):
        with pytest.raises(ValueError, match="t_quantile: (p|df) must be"):
            t_quantile(p, df)


class TestMeanInterval:
    @pytest.mark.parametrize("n", [2, 3, 5, 10])
    def test_is_the_t_interval(self, n):
        x = np.random.default_rng(n).normal(0.7, 0.05, size=n)
        ci = mean_interval(x)
        low, high = scipy_stats.t.interval(0.95, n - 1, loc=x.mean(), scale=scipy_stats.sem(x))
        assert ci["mean"] == pytest.approx(x.mean()) and ci["n"] == n
        assert (ci["ci_low"], ci["ci_high"]) == pytest.approx((low, high), rel=1e-12)

    def test_one_seed_has_no_interval(self):
        ci = mean_interval([0.8])
        assert ci["mean"] == 0.8 and math.isnan(ci["ci_low"]) and math.isnan(ci["ci_high"]) and ci["n"] == 1

    def test_nan_is_left_out(self):
        assert mean_interval([0.5, float("nan"), 0.7]) == pytest.approx(mean_interval([0.5, 0.7]), nan_ok=True)
        assert math.isnan(mean_interval([float("nan")])["mean"])


class TestPairedDifference:
    @pytest.mark.parametrize("n, shift", [(2, 0.01), (3, 0.0), (5, 0.02), (5, -0.03), (8, 0.004)])
    def test_is_ttest_rel(self, n, shift):
        rng = np.random.default_rng(n)
        b = rng.normal(0.7, 0.05, size=n)
        x = b + shift + rng.normal(0, 0.01, size=n)
        d = paired_difference(x, b)
        reference = scipy_stats.ttest_rel(x, b)
        interval = reference.confidence_interval(0.95)
        assert d["mean"] == pytest.approx(np.mean(x - b))
        assert (d["ci_low"], d["ci_high"]) == pytest.approx((interval.low, interval.high), rel=1e-10)
        assert d["p_value"] == pytest.approx(reference.pvalue, rel=1e-9, abs=1e-14)
        assert d["verdict"] == ("better" if interval.low > 0 else "worse" if interval.high < 0
                                else "not distinguishable")

    def test_verdicts(self):
        base = [0.70, 0.72, 0.71, 0.69, 0.73]
        assert paired_difference([v + 0.02 + 0.001 * i for i, v in enumerate(base)], base)["verdict"] == "better"
        assert paired_difference([v - 0.02 + 0.001 * i for i, v in enumerate(base)], base)["verdict"] == "worse"
        assert paired_difference([0.71, 0.71, 0.70, 0.70, 0.73], base)["verdict"] == "not distinguishable"

    def test_pairing_matters(self):
        # a shift of 1 point, small next to the spread over seeds but the same on every seed: paired, it shows
        base = np.array([0.60, 0.70, 0.80, 0.65, 0.75])
        x = base + 0.01 + np.array([0.001, -0.001, 0.0, 0.002, -0.002])
        assert paired_difference(x, base)["verdict"] == "better"
        assert mean_interval(x)["ci_low"] < mean_interval(base)["ci_high"]  # the unpaired intervals overlap

    def test_equal_differences(self):
        same = paired_difference([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
        assert same["verdict"] == "not distinguishable" and same["ci_low"] == same["ci_high"] == 0.0
        # the same nonzero difference on every seed: no spread to test (a discrete metric's step), no verdict
        assert paired_difference([0.6, 0.7, 0.8], [0.5, 0.6, 0.7])["verdict"] == "not distinguishable"
        assert paired_difference([0.6, 0.71, 0.8], [0.5, 0.6, 0.7])["verdict"] == "better"

    def test_one_seed_and_nan_pairs(self):
        one = paired_difference([0.8], [0.7])
        assert one["verdict"] == "n/a (1 seed)" and math.isnan(one["p_value"])
        dropped = paired_difference([0.8, float("nan"), 0.75, 0.79], [0.7, 0.6, float("nan"), 0.72])
        assert dropped["n"] == 2 and dropped["mean"] == pytest.approx(0.085)

    def test_lengths_must_match(self):
        with pytest.raises(ValueError, match="paired_difference: values and reference must hold one value per seed"):
            paired_difference([0.1, 0.2], [0.1])

    @settings(max_examples=60, deadline=None)
    @given(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=2, max_size=12))
    def test_verdict_agrees_with_the_p_value(self, pairs):
        x, b = (np.array(v) for v in zip(*pairs, strict=True))
        d = paired_difference(x, b)
        assert d["ci_low"] <= d["mean"] <= d["ci_high"]
        if np.ptp(x - b) > 1e-9 and abs(d["p_value"] - 0.05) > 1e-9:
            assert (d["verdict"] != "not distinguishable") == (d["p_value"] < 0.05)

    def test_verdict(self):
        assert verdict(0.1, 0.3) == "better" and verdict(-0.3, -0.1) == "worse"
        assert verdict(-0.1, 0.1) == "not distinguishable" and verdict(0.0, 0.2) == "not distinguishable"
        assert verdict(float("nan"), float("nan")) == "n/a (1 seed)"


GRID = [{"name": "cross_entropy", "label": "cross_entropy"},
        {"name": "softmax_focal_loss", "gamma": 2.0, "label": "softmax_focal_loss gamma=2"},
        {"name": "cross_entropy", "label_smoothing": 0.1, "label": "cross_entropy label_smoothing=0.1"},
        {"name": "logit_adjusted_cross_entropy", "label": "LA"}]


class TestBaseline:
    def test_by_label_then_name(self):
        assert find_baseline(GRID, None) == 0
        assert find_baseline(GRID, "LA") == 3 and find_baseline(GRID, "logit_adjusted_cross_entropy") == 3
        assert find_baseline(GRID, "cross_entropy label_smoothing=0.1") == 2
        assert find_baseline(GRID[1:], "cross_entropy") == 1  # the name's configuration (here with options)
        assert find_baseline(GRID[::-1], "cross_entropy") == 3  # the bare configuration of that name first

    def test_default_without_cross_entropy_is_the_first(self):
        assert find_baseline(GRID[1:2] + GRID[3:], None) == 0

    @pytest.mark.parametrize("baseline, match", [("focal", "baseline 'focal' is not in the grid"),
                                                 ("", "baseline must be"), (3, "baseline must be")])
    def test_errors(self, baseline, match):
        with pytest.raises(ValueError, match=match):
            find_baseline(GRID, baseline)


def synthetic(posthoc: bool, seeds=(0, 1, 2, 3, 4)) -> tuple[list[dict], list[dict]]:
    """Runs of four configurations with known shifts from cross_entropy, and their ranked summary."""
    rng = np.random.default_rng(0)
    base = rng.normal(0.7, 0.04, size=len(seeds))
    shifts = {"cross_entropy": 0.0, "softmax_focal_loss gamma=2": 0.001, "cross_entropy label_smoothing=0.1": -0.03,
              "LA": 0.05}
    runs = []
    for index, (label, shift) in enumerate(shifts.items()):
        for i, seed in enumerate(seeds):
            value = float(base[i] + shift + rng.normal(0, 0.004))
            run = {"index": index, "label": label, "seed": seed,
                   "metrics": {"balanced_accuracy": value, "accuracy": value + 0.05}}
            if posthoc:
                run["posthoc"] = {"balanced_accuracy": value + 0.02, "accuracy": value}
            runs.append(run)
    summary = []
    for label in shifts:
        mine = [r for r in runs if r["label"] == label]
        row = {"label": label, "loss": "cross_entropy", "options": {}, "seeds": list(seeds)}
        for metric in METRICS:
            v = [r["metrics"][metric] for r in mine]
            row[metric] = {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0}
        summary.append(row)
    summary.sort(key=lambda r: -r["balanced_accuracy"]["mean"])
    for rank, row in enumerate(summary, start=1):
        row["rank"] = rank
    return summary, runs


class TestCompare:
    def test_verdicts_against_baseline_and_best(self):
        summary, runs = synthetic(posthoc=False)
        stats = compare(summary, runs, baseline="cross_entropy", metrics=METRICS, primary="balanced_accuracy")
        assert stats["best"] == "LA" and stats["baseline"] == "cross_entropy" and not stats["posthoc"]
        assert stats["better_than_baseline"] == ["LA"]
        assert stats["worse_than_baseline"] == ["cross_entropy label_smoothing=0.1"]
        assert stats["not_distinguishable_from_baseline"] == ["softmax_focal_loss gamma=2"]
        assert sorted(stats["worse_than_best"]) == sorted({r["label"] for r in summary} - {"LA"})
        rows = {r["label"]: r for r in summary}
        assert rows["cross_entropy"]["vs_baseline"]["verdict"] == "baseline"
        assert rows["LA"]["vs_best"]["verdict"] == "best" and rows["LA"]["vs_best"]["reference"] is None
        la = [r["metrics"]["balanced_accuracy"] for r in runs if r["label"] == "LA"]
        ce = [r["metrics"]["balanced_accuracy"] for r in runs if r["label"] == "cross_entropy"]
        expected = scipy_stats.ttest_rel(la, ce).confidence_interval()
        got = rows["LA"]["vs_baseline"]
        assert got["reference"] == "cross_entropy"
        assert (got["ci_low"], got["ci_high"]) == pytest.approx((expected.low, expected.high), rel=1e-10)
        for metric in METRICS:  # every headline metric carries its interval
            values = [r["metrics"][metric] for r in runs if r["label"] == "LA"]
            low, high = scipy_stats.t.interval(0.95, 4, loc=np.mean(values), scale=scipy_stats.sem(values))
            assert (rows["LA"][metric]["ci_low"], rows["LA"][metric]["ci_high"]) == pytest.approx((low, high))
        assert "post-hoc" not in _report.ranked_table(self.result(summary, runs, stats))

    def result(self, summary, runs, stats) -> AblationResult:
        dataset = {"name": "synthetic", "train_counts": [3, 1], "classes": ["a", "b"], "vary_split": False,
                   "split_seed": 0}
        return AblationResult({}, dataset, runs, summary, {}, statistics=stats)

    def test_posthoc_column_when_the_runs_have_it(self):
        summary, runs = synthetic(posthoc=True)
        stats = compare(summary, runs, baseline="cross_entropy", metrics=METRICS, primary="balanced_accuracy")
        assert stats["posthoc"]
        row = next(r for r in summary if r["label"] == "LA")
        values = [r["posthoc"]["balanced_accuracy"] for r in runs if r["label"] == "LA"]
        assert row["posthoc"]["balanced_accuracy"]["mean"] == pytest.approx(np.mean(values))
        assert row["posthoc"]["balanced_accuracy"]["ci_high"] > row["posthoc"]["balanced_accuracy"]["ci_low"]
        table = _report.ranked_table(self.result(summary, runs, stats))
        assert "post-hoc LA bal. acc. %" in table.splitlines()[0]

    def test_table_words_and_forest_plot(self, tmp_path):
        summary, runs = synthetic(posthoc=False)
        result = self.result(summary, runs, compare(summary, runs, baseline="cross_entropy", metrics=METRICS,
                                                    primary="balanced_accuracy"))
        lines = _report.ranked_table(result).splitlines()
        assert lines[0].split()[:2] == ["rank", "loss"] and "Δ vs cross_entropy pp" in lines[0]
        la = next(line for line in lines if " LA " in line)
        assert "better" in la and "best" in la and "±" in la
        assert "—" in next(line for line in lines[2:] if line.split()[1] == "cross_entropy")
        words = " ".join(_report.verdict_sentences(result))
        assert "better: LA (+5.0 pp [95 % CI" in words or "better: LA (+" in words
        assert "not distinguishable: softmax_focal_loss gamma=2" in words
        assert "distinguishably worse: " in words and "Against the best, LA" in words
        figure = _report.forest_figure(result)
        ax = figure.axes[0]
        assert [t.get_text() for t in ax.get_yticklabels()] == [r["label"] for r in summary if r["label"] !=
                                                                  "cross_entropy"]
        assert any(list(line.get_xdata()) == [0.0, 0.0] for line in ax.get_lines())  # the line at 0
        figure.savefig(tmp_path / "forest.png")
        assert (tmp_path / "forest.png").read_bytes()[:8] == PNG_MAGIC

    def test_one_seed(self):
        summary, runs = synthetic(posthoc=False, seeds=(3,))
        stats = compare(summary, runs, baseline="cross_entropy", metrics=METRICS, primary="balanced_accuracy")
        assert {r["vs_baseline"]["verdict"] for r in summary} == {"baseline", "n/a (1 seed)"}
        assert stats["better_than_baseline"] == stats["worse_than_baseline"] == []
        result = self.result(summary, runs, stats)
        assert "One seed: no interval" in _report.verdict_sentences(result)[0]
        assert "±" not in _report.ranked_table(result)


# --------------------------------------------------------------------------------------------- end to end

LOSSES = [{"name": "cross_entropy"}, {"name": "balanced_cross_entropy", "alpha": "inverse"}]
FAST = {"model": "logreg", "epochs": 2, "seeds": 2, "losses": LOSSES}


class TestAblate:
    def test_vary_split_draws_the_split_with_each_runs_seed(self):
        fixed = ablate(**FAST)
        varied = ablate(**FAST, vary_split=True)
        assert varied.dataset["vary_split"] and not fixed.dataset["vary_split"]
        assert varied.dataset["train_counts"] == fixed.dataset["train_counts"]  # the profile is the seed's too
        pairs = list(zip(fixed.runs, varied.runs, strict=True))
        # seed 0 is split_seed 0: the same split, the same numbers; seed 1 draws another split
        assert all(f["metrics"] == v["metrics"] for f, v in pairs if f["seed"] == 0)
        assert all(f["metrics"] != v["metrics"] for f, v in pairs if f["seed"] == 1)
        assert varied.statistics["seeds"] == [0, 1]
        spread = ablate(**FAST, vary_split=True, jobs=2)  # the per-seed splits reach the workers too
        assert [r["metrics"] for r in spread.runs] == [r["metrics"] for r in varied.runs]

    def test_baseline_and_files(self, tmp_path):
        result = ablate(**FAST, baseline="balanced_cross_entropy", out=tmp_path)
        assert result.settings["baseline"] == "balanced_cross_entropy alpha=inverse"
        names = [p.name for p in result.files]
        assert {"forest.png", "per_class_recall.png", "report.md", "results.json"} <= set(names)
        assert (tmp_path / "forest.png").read_bytes()[:8] == PNG_MAGIC
        report = (tmp_path / "report.md").read_text()
        plots = [line for line in report.splitlines() if line.startswith("![")]
        assert plots[0] == "![forest](forest.png)"
        assert "## Verdict (95 % intervals over seeds)" in report and "Student-t interval" in report
        data = json.loads((tmp_path / "results.json").read_text())
        assert data["statistics"]["baseline"] == "balanced_cross_entropy alpha=inverse"
        for row in data["summary"]:
            assert {"reference", "mean", "ci_low", "ci_high", "verdict"} <= set(row["vs_baseline"])
            assert {"ci_low", "ci_high"} <= set(row["balanced_accuracy"])

    def test_unknown_baseline_fails_before_any_run(self):
        with pytest.raises(ValueError, match="ablate: baseline 'focal' is not in the grid"):
            ablate(**{**FAST, "epochs": 10 ** 6}, baseline="focal")
        with pytest.raises(ValueError, match="ablate: vary_split must be True or False"):
            ablate(**FAST, vary_split="yes")

    def test_command(self, tmp_path, capsys):
        argv = ["ablate", "--loss", "cross_entropy", "--loss", "softmax_focal_loss gamma=2", "--seeds", "2",
                "--epochs", "1", "--model", "logreg", "--no-plots", "--no-progress", "--out", str(tmp_path)]
        assert main([*argv, "--baseline", "softmax_focal_loss", "--vary-split"]) == 0
        out = capsys.readouterr().out
        assert "Δ vs softmax_focal_loss gamma=2 pp" in out and "Against the baseline softmax_focal_loss" in out
        data = json.loads((tmp_path / "results.json").read_text())
        assert data["settings"]["vary_split"] is True and data["dataset"]["vary_split"] is True
        assert main([*argv, "--baseline", "dice"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("losslab ablate: baseline 'dice' is not in the grid") and err.count("\n") == 1

    def test_config_keys(self, tmp_path, capsys):
        config = tmp_path / "c.toml"
        config.write_text('seeds = 2\nepochs = 1\nmodel = "logreg"\nvary_split = true\nbaseline = "cross_entropy"\n'
                          '[[losses]]\nname = "cross_entropy"\n[[losses]]\nname = "softmax_focal_loss"\n')
        assert main(["ablate", "--config", str(config), "--no-plots", "--no-progress", "--out",
                     str(tmp_path / "o")]) == 0
        data = json.loads((tmp_path / "o" / "results.json").read_text())
        assert data["settings"]["vary_split"] is True and data["statistics"]["baseline"] == "cross_entropy"


def test_the_same_difference_on_every_seed_gives_no_verdict():
    """A discrete metric can move by the same step on every seed: no spread, no interval width, no verdict."""
    d = paired_difference([0.81, 0.82], [0.80, 0.81])
    assert d["verdict"] == "not distinguishable" and math.isnan(d["p_value"])


def test_repeated_seeds_are_refused():
    """A repeated seed is the same run twice: counted as two seeds it made a zero-width interval and a verdict."""
    with pytest.raises(ValueError, match=r"^ablate: seeds must be distinct .*got \[0, 0\]$"):
        ablate(losses=[{"name": "cross_entropy"}], seeds=[0, 0], epochs=1, dataset="digits-lt", model="logreg")
