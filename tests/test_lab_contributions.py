"""The lab's `contributions`: per-class loss shares against a float64 NumPy reference, and `losslab contributions`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from losslab.cli import main as cli_main
from losslab.lab._contributions import Contributions, contributions, demo_batch

C = 4


def batch(seed: int = 0, n: int = 40, num_classes: int = C) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of scale 2 and long-tailed targets (class 0 most frequent), every class present."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, num_classes, generator=g, dtype=torch.float64) * 2
    y = torch.multinomial(0.5 ** torch.arange(num_classes, dtype=torch.float64), n, replacement=True, generator=g)
    y[:num_classes] = torch.arange(num_classes)
    return x, y


# ----------------------------------------------------------------------------
# the float64 NumPy reference, from the formulas


def ref_softmax(x, y, *, gamma=0.0, alpha=None):
    """-alpha_y (1 - p_y)^gamma log p_y, p = softmax(x)."""
    x, y = np.asarray(x, np.float64), np.asarray(y)
    z = x - x.max(axis=1, keepdims=True)
    log_p = (z - np.log(np.exp(z).sum(axis=1, keepdims=True)))[np.arange(len(y)), y]
    loss = -((1 - np.exp(log_p)) ** gamma) * log_p
    return loss if alpha is None else loss * np.asarray(alpha, np.float64)[y]


def ref_sigmoid(x, y, *, gamma=0.0, alpha=None, weight=None):
    """One-vs-rest: sum over classes c of alpha_t (1 - p_t)^gamma BCE, t = [y == c] (y = C: background)."""
    x, y = np.asarray(x, np.float64), np.asarray(y)
    t = (y[:, None] == np.arange(x.shape[1])[None, :]).astype(np.float64)
    bce = t * np.logaddexp(0, -x) + (1 - t) * np.logaddexp(0, x)
    p = 1 / (1 + np.exp(-x))
    p_t = p * t + (1 - p) * (1 - t)
    loss = (1 - p_t) ** gamma * bce
    if alpha is not None:
        loss = loss * (alpha * t + (1 - alpha) * (1 - t))
    if weight is not None:
        loss = loss * np.asarray(weight, np.float64)[None, :]
    return loss.sum(axis=1)


def ref_table(before, after, y, num_rows):
    """Per-class count, sums and shares of per-example losses (the examples given are the kept ones)."""
    y = np.asarray(y)
    rows = []
    for c in range(num_rows):
        m = y == c
        rows.append({"count": int(m.sum()), "share": m.sum() / len(y), "sum_before": before[m].sum(),
                     "share_before": before[m].sum() / before.sum(), "sum_after": after[m].sum(),
                     "share_after": after[m].sum() / after.sum()})
    return rows


def inverse_weights(y, num_classes):
    """Inverse frequency, averaging 1 (a zero count counts as 1)."""
    w = 1 / np.maximum(np.bincount(np.asarray(y), minlength=num_classes)[:num_classes], 1)
    return w / w.mean()


def assert_matches(result: Contributions, before, after, y, num_rows=None):
    expected = ref_table(before, after, y, num_rows or len(result.classes))
    assert [r["count"] for r in result.classes] == [e["count"] for e in expected]
    for key in ("share", "sum_before", "share_before", "sum_after", "share_after"):
        np.testing.assert_allclose([r[key] for r in result.classes], [e[key] for e in expected], rtol=1e-9,
                                   atol=1e-12, err_msg=key)
    assert result.count == len(y)
    np.testing.assert_allclose([result.total_before, result.total_after], [before.sum(), after.sum()], rtol=1e-9)
    np.testing.assert_allclose([result.mean_before, result.mean_after], [before.mean(), after.mean()], rtol=1e-9)


# ----------------------------------------------------------------------------
# the function


class TestContributions:
    def test_cross_entropy_matches_reference_and_shares_sum_to_one(self):
        x, y = batch()
        result = contributions(x, y)
        loss = ref_softmax(x, y)
        assert_matches(result, loss, loss, y)
        for key in ("share", "share_before", "share_after"):
            assert sum(r[key] for r in result.classes) == pytest.approx(1.0, abs=1e-12)
        for r in result.classes:
            assert r["mean_before"] == pytest.approx(r["sum_before"] / r["count"], rel=1e-12)
        assert result.loss == "cross_entropy" and result.options["alpha"] is None and result.ignored == 0

    def test_inverse_alpha_goes_to_cross_entropy_weight(self):
        x, y = batch(1)
        result = contributions(x, y, alpha="inverse")
        alpha = inverse_weights(y, C)
        np.testing.assert_allclose(result.options["alpha"], alpha, rtol=1e-6)  # class_weights returns float32
        assert result.options["alpha_argument"] == "weight" and result.options["alpha_method"] == "inverse"
        before = ref_softmax(x, y)
        assert_matches(result, before, before * np.asarray(result.options["alpha"])[np.asarray(y)], y)
        for r, a in zip(result.classes, result.options["alpha"], strict=True):
            assert r["sum_after"] == pytest.approx(a * r["sum_before"], rel=1e-12)

    def test_softmax_focal_with_inverse_alpha(self):
        x, y = batch(2)
        result = contributions(x, y, loss="softmax_focal_loss", alpha="inverse", gamma=2.0)
        alpha = np.asarray(result.options["alpha"])
        np.testing.assert_allclose(alpha, inverse_weights(y, C), rtol=1e-6)
        before = ref_softmax(x, y, gamma=2.0)
        assert_matches(result, before, ref_softmax(x, y, gamma=2.0, alpha=alpha), y)
        assert result.options["alpha_argument"] == "alpha" and result.options["gamma"] == 2.0

    def test_explicit_per_class_alpha_as_tensor(self):
        x, y = batch(3)
        alpha = [0.5, 1.0, 2.0, 4.0]
        result = contributions(x, y, loss="softmax_focal_loss", alpha=torch.tensor(alpha), gamma=0.5)
        assert result.options["alpha"] == alpha and result.options["alpha_method"] is None
        assert_matches(result, ref_softmax(x, y, gamma=0.5), ref_softmax(x, y, gamma=0.5, alpha=alpha), y)

    def test_sigmoid_focal_is_one_vs_rest_summed_over_classes(self):
        x, y = batch(4)
        y[-3:] = C  # background: negative for every class
        plain = contributions(x, y, loss="sigmoid_focal_loss")  # before: alpha=None, not the default 0.25
        before = ref_sigmoid(x, y, gamma=2.0)
        assert_matches(plain, before, before, y, num_rows=C + 1)
        assert plain.classes[-1]["label"] == "background" and plain.classes[-1]["count"] == 3
        balanced = contributions(x, y, loss="sigmoid_focal_loss", alpha=0.25, gamma=1.0)
        assert_matches(balanced, ref_sigmoid(x, y, gamma=1.0), ref_sigmoid(x, y, gamma=1.0, alpha=0.25), y)

    def test_sigmoid_per_class_alpha_weights_each_class_column(self):
        x, y = batch(5)
        result = contributions(x, y, loss="binary_cross_entropy", alpha=[1.0, 2.0, 3.0, 4.0])
        assert result.options["alpha_argument"] == "weight" and len(result.classes) == C  # no background row
        assert_matches(result, ref_sigmoid(x, y), ref_sigmoid(x, y, weight=[1.0, 2.0, 3.0, 4.0]), y)

    def test_balanced_cross_entropy_before_is_cross_entropy(self):
        x, y = batch(6)
        alpha = [0.1, 0.2, 0.3, 0.4]
        result = contributions(x, y, loss="balanced_cross_entropy", alpha=alpha)
        assert_matches(result, ref_softmax(x, y), ref_softmax(x, y, alpha=alpha), y)
        sigmoid = contributions(x, y, loss="balanced_cross_entropy", alpha=0.25)  # float alpha: sigmoid form
        assert_matches(sigmoid, ref_sigmoid(x, y), ref_sigmoid(x, y, alpha=0.25), y)

    def test_ignore_index_is_left_out(self):
        x, y = batch(7)
        y[::5] = -100
        result = contributions(x, y, alpha="inverse")
        keep = np.asarray(y) != -100
        np.testing.assert_allclose(result.options["alpha"], inverse_weights(np.asarray(y)[keep], C), rtol=1e-6)
        before = ref_softmax(x[keep], y[keep])
        assert_matches(result, before, before * np.asarray(result.options["alpha"])[np.asarray(y)[keep]], y[keep])
        assert result.ignored == int((~keep).sum()) and result.count == int(keep.sum())
        custom = contributions(x, torch.where(y == -100, torch.tensor(7), y), loss="softmax_focal_loss",
                               ignore_index=7)
        assert custom.count == result.count and custom.ignored == result.ignored

    def test_dense_input_moves_classes_last(self):
        x, y = batch(8, n=24)
        dense_x = x.reshape(4, 6, C).permute(0, 2, 1)  # (N, C, d): position (i, j) is example 6 i + j
        dense = contributions(dense_x, y.reshape(4, 6), loss="softmax_focal_loss")
        flat = contributions(x, y, loss="softmax_focal_loss")
        assert dense.classes == flat.classes

    def test_empty_class_has_no_mean(self):
        x, y = batch(9)
        y[y == 2] = 0
        row = contributions(x, y).classes[2]
        assert row["count"] == 0 and row["sum_before"] == 0.0 and row["share_before"] == 0.0
        assert row["mean_before"] is None and row["mean_after"] is None

    def test_empty_and_all_ignored_batches(self):
        empty = (torch.zeros(0, C), torch.zeros(0, dtype=torch.long))
        for x, y in (empty, (torch.randn(5, C), torch.full((5,), -100))):
            result = contributions(x, y, loss="softmax_focal_loss", alpha="inverse")
            assert result.count == 0 and result.ignored == len(y) and result.total_before == 0.0
            assert result.mean_before is None and all(r["share_before"] is None for r in result.classes)
            assert "-" in result.to_markdown() and json.dumps(result.to_dict())

    @pytest.mark.parametrize(("alias", "canonical"), [
        ("CrossEntropyLoss", "cross_entropy"), ("focal loss", "sigmoid_focal_loss"),
        ("Categorical Focal Loss", "softmax_focal_loss"), ("NLLLoss", "nll_loss"),
    ])
    def test_aliases(self, alias, canonical):
        x, y = batch(10)
        if canonical == "nll_loss":
            x = torch.log_softmax(x, dim=1)
        result = contributions(x, y, loss=alias)
        assert result.loss == canonical and result.name == alias
        assert result.classes == contributions(x, y, loss=canonical).classes

    def test_input_is_not_modified_and_float32_works(self):
        x, y = batch(11)
        x32, y_copy = x.float().requires_grad_(), y.clone()
        result = contributions(x32, y, alpha="inverse")
        assert x32.grad is None and torch.equal(y, y_copy)
        assert result.total_before == pytest.approx(ref_softmax(x32.detach().double(), y).sum(), rel=1e-9)

    @pytest.mark.parametrize(("kwargs", "error", "match"), [
        ({"loss": "dice_loss"}, ValueError, r"contributions: 'dice_loss' is a segmentation loss"),
        ({"loss": "cross_entropy", "gamma": 1.0}, ValueError, r"contributions: cross_entropy has no gamma"),
        ({"alpha": [1.0, 2.0]}, ValueError, r"contributions: per-class alpha must have C = 4 values; got 2"),
        ({"alpha": "inverse_frequency"}, ValueError, r"contributions: alpha must be numbers or one of 'inverse'"),
        ({"alpha": {"method": "inverse", "bogus": 1}}, ValueError, r"contributions: alpha=.* has unknown keys"),
        ({"alpha": 0.25}, ValueError, r"contributions: cross_entropy has no scalar alpha"),
        ({"alpha": True}, TypeError, r"contributions: alpha must be None, a float"),
        ({"alpha": "inverse", "weight": [1.0] * 4}, ValueError, r"alpha goes to cross_entropy's weight"),
        ({"reduction": "sum"}, ValueError, r"contributions: reduction is not an option here"),
        ({"loss": "no_such_loss"}, ValueError, r"unknown loss name 'no_such_loss'"),
    ])
    def test_errors(self, kwargs, error, match):
        x, y = batch()
        with pytest.raises(error, match=match):
            contributions(x, y, **kwargs)

    def test_input_errors(self):
        x, y = batch()
        with pytest.raises(TypeError, match=r"contributions: target must be integer class indices"):
            contributions(x, y.double())
        with pytest.raises(TypeError, match=r"contributions: logits must be a floating-point"):
            contributions(y[:, None].repeat(1, C), y)
        with pytest.raises(ValueError, match=r"contributions: target shape \(39,\) does not match logits \(40, 4\)"):
            contributions(x, y[1:])
        with pytest.raises(ValueError, match=r"contributions: target class indices must be in \[0, 4\)"):
            contributions(x, torch.where(y == 0, torch.tensor(C), y))  # C is background for sigmoid losses only


# ----------------------------------------------------------------------------
# the demo batch and the result's formats


class TestDemo:
    def test_demo_batch_is_deterministic(self):
        logits, target = demo_batch()
        assert logits.shape == (64, 5) and logits.dtype == torch.float32 and target.dtype == torch.int64
        again = demo_batch(0)
        assert torch.equal(logits, again[0]) and torch.equal(target, again[1])
        other = demo_batch(1)
        assert not torch.equal(logits, other[0])
        assert int(target.min()) >= 0 and int(target.max()) < 5
        small = demo_batch(3, n=10, num_classes=3, ratio=0.5)
        assert small[0].shape == (10, 3)
        with pytest.raises(ValueError, match=r"demo_batch: ratio must be a number in \(0, 1\]"):
            demo_batch(ratio=1.5)

    def test_demo_frequent_class_dominates_ce_and_alpha_focal_moves_share_to_rare_classes(self):
        logits, target = demo_batch()
        counts = torch.bincount(target, minlength=5)
        assert int(counts.argmax()) == 0
        plain = contributions(logits, target)
        focal = contributions(logits, target, loss="softmax_focal_loss", alpha="inverse", gamma=2.0)
        shares = [r["share_before"] for r in plain.classes]
        assert max(shares) == shares[0]
        rare = [c for c in range(5) if counts[c] < counts.double().mean()]
        assert rare  # the long tail
        for c in rare:
            assert focal.classes[c]["share_after"] > plain.classes[c]["share_after"], c
        assert focal.classes[0]["share_after"] < plain.classes[0]["share_after"]

    def test_markdown_text_and_dict(self):
        logits, target = demo_batch()
        result = contributions(logits, target, loss="softmax_focal_loss", alpha="inverse")
        md = result.to_markdown().splitlines()
        header = ("| class | count | share | loss before | share before | loss after | share after | mean before "
                  "| mean after |")
        assert header in md
        rows = [line for line in md if line.startswith("| ") and line != header]
        assert [row.split(" | ")[0] for row in rows] == [f"| {c}" for c in range(5)]
        assert rows[0].split(" | ")[1] == str(result.classes[0]["count"])
        assert any(line.startswith("Mean loss per example") for line in md)
        assert "softmax_focal_loss (gamma=2, alpha=inverse)" in md[0]
        text = str(result)
        assert "share before" in text and "mean loss per example" in text and len(text.splitlines()) == 5 + 4
        data = result.to_dict()
        assert json.loads(json.dumps(data)) == data
        assert data["loss"] == "softmax_focal_loss" and len(data["classes"]) == 5
        assert isinstance(data["classes"][0]["count"], int) and isinstance(data["total_after"], float)


# ----------------------------------------------------------------------------
# the command


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli_main(["contributions", *argv])
    out, err = capsys.readouterr()
    return code, out, err


class TestCommand:
    def test_demo_text(self, capsys):
        code, out, err = run(capsys, "--demo")
        assert code == 0 and err == ""
        assert "== cross_entropy (no alpha) ==" in out
        assert "== softmax_focal_loss (gamma=2, alpha=inverse) ==" in out
        assert "== Share of the loss after weighting, per class ==" in out
        assert out.count("mean loss per example") == 2

    def test_demo_markdown(self, capsys):
        code, out, _ = run(capsys, "--demo", "--format", "markdown")
        assert code == 0
        assert out.count("| class | count | share | loss before |") == 2
        comparison = "| class | count | share | cross_entropy (no alpha) | softmax_focal_loss (gamma=2, alpha=inverse) "
        assert comparison + "|" in out

    def test_demo_json_matches_the_function(self, capsys):
        code, out, _ = run(capsys, "--demo", "--format", "json", "--seed", "3")
        assert code == 0
        data = json.loads(out)
        assert [r["loss"] for r in data["results"]] == ["cross_entropy", "softmax_focal_loss"]
        logits, target = demo_batch(3)
        assert data["results"][1] == contributions(logits, target, loss="softmax_focal_loss", alpha="inverse",
                                                   gamma=2.0).to_dict()

    def test_demo_options(self, capsys):
        code, out, _ = run(capsys, "--demo", "--loss", "sigmoid_focal_loss", "--alpha", "0.25", "--gamma", "1",
                           "--format", "json")
        assert code == 0
        (result,) = json.loads(out)["results"]
        assert result["options"]["alpha"] == 0.25 and result["options"]["gamma"] == 1.0
        code, out, _ = run(capsys, "--demo", "--alpha", "effective_number:0.9", "--format", "json")
        assert code == 0
        assert [r["options"]["alpha_method"] for r in json.loads(out)["results"]] == [
            {"method": "effective_number", "beta": 0.9}] * 2

    def test_npz_file(self, capsys, tmp_path):
        x, y = batch()
        path = tmp_path / "batch.npz"
        np.savez(path, logits=x.numpy(), labels=y.numpy())  # 'labels' is a fallback name for the targets
        code, out, err = run(capsys, str(path), "--loss", "cross_entropy", "--loss", "softmax_focal_loss",
                             "--alpha", "1,2,3,4", "--format", "json")
        assert code == 0 and err == ""
        results = json.loads(out)["results"]
        assert results[0]["options"]["alpha_argument"] == "weight"
        assert_matches(contributions(x, y, alpha=[1.0, 2.0, 3.0, 4.0]), ref_softmax(x, y),
                       ref_softmax(x, y, alpha=[1, 2, 3, 4]), y)
        assert results[0] == contributions(x, y, alpha=[1.0, 2.0, 3.0, 4.0]).to_dict()
        code, out, _ = run(capsys, str(path))
        assert code == 0 and "cross_entropy (no alpha)" in out and "Share of the loss" not in out

    def test_pt_file_dict_and_tuple(self, capsys, tmp_path):
        x, y = batch()
        torch.save({"scores": x, "y": y}, tmp_path / "batch.pt")
        torch.save((x, y), tmp_path / "pair.pt")
        code, out, _ = run(capsys, str(tmp_path / "batch.pt"), "--logits-key", "scores", "--format", "json")
        assert code == 0
        expected = contributions(x, y).to_dict()
        assert json.loads(out)["results"] == [expected]
        code, out, _ = run(capsys, str(tmp_path / "pair.pt"), "--format", "json")
        assert code == 0 and json.loads(out)["results"] == [expected]

    def test_file_errors(self, capsys, tmp_path):
        x, y = batch()
        garbage = tmp_path / "garbage.npz"
        garbage.write_bytes(b"not a zip file")
        np.savez(tmp_path / "keys.npz", scores=x.numpy(), y=y.numpy())
        np.savez(tmp_path / "float.npz", logits=x.numpy(), target=y.double().numpy())
        np.savez(tmp_path / "shapes.npz", logits=x.numpy(), target=y[:-1].numpy())
        (tmp_path / "batch.csv").write_text("1,2\n")
        cases = [
            ([str(tmp_path / "missing.npz")], "no such file"),
            ([str(garbage)], "cannot read"),
            ([str(tmp_path / "batch.csv")], "unknown file type '.csv'; expected .npz or .pt"),
            ([str(tmp_path / "keys.npz")], "has no 'logits' (--logits-key); keys present: scores, y"),
            ([str(tmp_path / "keys.npz"), "--logits-key", "scores", "--target-key", "t"], "keys present: scores, y"),
            ([str(tmp_path / "float.npz")], "targets must be integer class indices; got dtype torch.float64"),
            ([str(tmp_path / "shapes.npz")], "target shape (39,) does not match logits (40, 4)"),
            ([], "give a FILE (.npz or .pt with logits and targets) or --demo"),
            (["--demo", str(tmp_path / "keys.npz")], "not both"),
            (["--demo", "--alpha", "inverse_freq"], "--alpha must be none"),
            (["--demo", "--loss", "dice_loss"], "'dice_loss' is a segmentation loss"),
        ]
        for argv, message in cases:
            code, out, err = run(capsys, *argv)
            assert code == 2 and out == "", argv
            assert err.startswith("losslab contributions: ") and message in err, (argv, err)


def test_through_losslab_cli_main(capsys):
    try:
        from losslab import cli

        cli.build_parser()
    except ImportError as error:  # the rest of the lab may not exist yet
        pytest.skip(f"losslab.cli cannot build its parser: {error}")
    assert cli.main(["contributions", "--demo", "--format", "json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert [r["loss"] for r in results] == ["cross_entropy", "softmax_focal_loss"]
    assert cli.main(["contributions"]) == 2
    assert capsys.readouterr().err.startswith("losslab contributions: ")


# ----------------------------------------------------------------------------
# issue 13: declared input kinds, bad values, files the command cannot use


def test_nll_loss_and_probability_aliases_get_their_declared_input():
    # regression: nll_loss and BCELoss were fed the raw logits
    x, y = batch(12)
    ce = contributions(x, y, loss="cross_entropy")
    nll = contributions(x, y, loss="nll_loss")
    assert nll.total_before > 0 and nll.total_before == pytest.approx(ce.total_before, rel=1e-9)
    assert [r["share_before"] for r in nll.classes] == pytest.approx([r["share_before"] for r in ce.classes])
    bce = contributions(x, y, loss="BCELoss")
    with_logits = contributions(x, y, loss="binary_cross_entropy")
    assert bce.total_before == pytest.approx(with_logits.total_before, rel=1e-6)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_logits_are_an_error(value, capsys, tmp_path):
    # regression: NaN logits printed "nan%" and exited 0
    x, y = batch(13)
    x[3, 1] = value
    with pytest.raises(ValueError, match=r"^contributions: logits must be finite; got 1 NaN or infinite values"):
        contributions(x, y)
    np.savez(tmp_path / "b.npz", logits=x.numpy(), target=y.numpy())
    code, out, err = run(capsys, str(tmp_path / "b.npz"))
    assert code == 2 and out == "" and err.count("\n") == 1 and "logits must be finite" in err


def test_sparse_meta_and_corrupt_files_are_one_line(capsys, tmp_path):
    # regression: a sparse or meta tensor in a .pt printed a traceback; a corrupt .npz relayed allow_pickle advice
    x, y = batch(14)
    torch.save({"logits": x.to_sparse(), "target": y}, tmp_path / "sparse.pt")
    torch.save({"logits": torch.empty(4, 3, device="meta"), "target": y[:4]}, tmp_path / "meta.pt")
    (tmp_path / "corrupt.npz").write_bytes(b"this is not an archive")
    for name, message in (("sparse.pt", "logits must be a dense tensor; got a sparse_coo tensor"),
                          ("meta.pt", "logits must hold values; got a tensor on the meta device"),
                          ("corrupt.npz", "(not a NumPy .npz archive)")):
        code, out, err = run(capsys, str(tmp_path / name))
        assert code == 2 and out == "" and err.count("\n") == 1, err
        assert err.startswith("losslab contributions: ") and message in err and "pickle" not in err, err


def test_demo_batch_seed_must_be_an_int():
    with pytest.raises(TypeError, match=r"^demo_batch: seed must be an int; got 'a' \(str\)$"):
        demo_batch(seed="a")


# ----------------------------------------------------------------------------
# the losses that take class counts (issue 15)

COUNT_LOSSES = ["logit_adjusted_cross_entropy", "ldam_loss", "vs_loss", "seesaw_loss"]
# (name asked for, canonical functional, what the name presets)
COUNT_NAMES = [(name, name, {}) for name in COUNT_LOSSES] + [
    ("Balanced Softmax", "logit_adjusted_cross_entropy", {"tau": 1.0}),
    ("BALMS", "logit_adjusted_cross_entropy", {"tau": 1.0}),
    ("mmpretrain.SeesawLoss", "seesaw_loss", {}),  # its preset num_classes=1000 gives way to the data's C
]


def functional_losses(canonical, x, y, counts, **kwargs):
    import losslab

    return getattr(losslab, canonical)(x, y, class_counts=counts, reduction="none", **kwargs).numpy()


class TestClassCounts:
    @pytest.mark.parametrize("name, canonical, presets", COUNT_NAMES)
    def test_counts_from_the_batch(self, name, canonical, presets):
        import losslab

        x, y = batch()
        y[-3:] = 1  # uneven
        result = contributions(x, y, loss=name)
        counts = losslab.class_counts(y, C)
        expected = functional_losses(canonical, x, y, counts, **presets)
        assert_matches(result, expected, expected, y)
        assert result.options["class_counts"] == counts.tolist()
        assert result.options["counts_from"] == "batch" and result.options["gamma"] is None
        assert "counts from the batch" in result.title()

    @pytest.mark.parametrize("name, canonical, presets", COUNT_NAMES)
    @pytest.mark.parametrize("given", [[500, 120, 30, 6], "500,120,30,6", torch.tensor([500, 120, 30, 6]),
                                       np.array([500.0, 120.0, 30.0, 6.0])])
    def test_counts_from_the_option(self, name, canonical, presets, given):
        x, y = batch(1)
        result = contributions(x, y, loss=name, class_counts=given)
        expected = functional_losses(canonical, x, y, [500.0, 120.0, 30.0, 6.0], **presets)
        assert_matches(result, expected, expected, y)
        assert result.options["class_counts"] == [500.0, 120.0, 30.0, 6.0]
        assert result.options["counts_from"] == "option"
        assert "class_counts=500,120,30,6" in result.title()

    @pytest.mark.parametrize("name", COUNT_LOSSES)
    def test_per_class_alpha_goes_to_weight(self, name):
        x, y = batch(2)
        result = contributions(x, y, loss=name, alpha="inverse")
        before = functional_losses(name, x, y, torch.bincount(y, minlength=C))
        weights = np.asarray(result.options["alpha"])  # float32 class weights, as the loss gets them
        np.testing.assert_allclose(weights, inverse_weights(y, C), rtol=1e-6)
        assert_matches(result, before, before * weights[y.numpy()], y)
        assert result.options["alpha_argument"] == "weight"

    def test_ignored_targets_are_not_counted(self):
        x, y = batch(3)
        y[:5] = -100
        result = contributions(x, y, loss="ldam_loss")
        assert result.options["class_counts"] == torch.bincount(y[5:], minlength=C).tolist()
        assert result.ignored == 5

    def test_seesaw_keeps_no_state_and_vs_keeps_its_own_gamma(self):
        x, y = batch(4)
        a = contributions(x, y, loss="seesaw_loss")
        b = contributions(x, y, loss="seesaw_loss")
        assert a.to_dict() == b.to_dict()
        vs = contributions(x, y, loss="vs_loss")  # gamma=2.0 is the focal default: vs_loss keeps 0.2
        expected = functional_losses("vs_loss", x, y, torch.bincount(y, minlength=C), gamma=0.2)
        assert_matches(vs, expected, expected, y)

    @pytest.mark.parametrize("kwargs, error, match", [
        ({"loss": "ldam_loss", "class_counts": [1, 2, 3]}, ValueError,
         r"^contributions: class_counts must hold C = 4 counts, one per class of the logits; got 3$"),
        ({"loss": "ldam_loss", "class_counts": "5,x,1,1"}, ValueError,
         (r"^contributions: class_counts must be comma-separated counts, one per class, as in "
         r"class_counts=500,120,30,6; got '5,x,1,1'$")),
        ({"loss": "seesaw_loss", "class_counts": [5, -1, 1, 1]}, ValueError,
         r"^contributions: class_counts must be finite numbers >= 0; got -1"),
        ({"loss": "vs_loss", "class_counts": 5}, ValueError, r"^contributions: class_counts must be counts"),
        ({"loss": "cross_entropy", "class_counts": [1, 2, 3, 4]}, ValueError,
         (r"^contributions: cross_entropy takes no class counts \(class_counts is for logit_adjusted_cross_entropy, "
         r"ldam_loss, vs_loss, seesaw_loss\)$")),
        ({"loss": "vs_loss", "gamma": 0.5}, ValueError,
         r"^contributions: vs_loss has no focusing gamma \(a focal loss has\); got gamma=0.5$"),
        ({"loss": "seesaw_loss", "q": -1.0}, ValueError, r"seesaw_loss: q must be"),
        ({"loss": "seesaw_loss", "nope": 1}, TypeError,
         r"^contributions: seesaw_loss: unexpected keyword argument\(s\) 'nope'; expected some of class_counts"),
        ({"loss": "mmpretrain.SeesawLoss", "num_classes": 3}, ValueError,
         r"^contributions: seesaw_loss: num_classes=3 does not match the 4 class counts"),
        ({"loss": "mmdet.SeesawLoss"}, ValueError, r"^get_loss: 'mmdet.SeesawLoss' is mmdetection's SeesawLoss"),
    ])
    def test_errors(self, kwargs, error, match):
        x, y = batch()
        with pytest.raises(error, match=match):
            contributions(x, y, **kwargs)


class TestClassCountsCommand:
    @pytest.mark.parametrize("name", ["logit_adjusted_cross_entropy", "Balanced Softmax", "BALMS", "ldam_loss",
                                      "vs_loss", "seesaw_loss"])
    def test_demo_counts_from_the_batch(self, capsys, name):
        code, out, err = run(capsys, "--demo", "--loss", name, "--format", "json")
        assert code == 0 and err == ""
        (result,) = json.loads(out)["results"]
        logits, target = demo_batch(0)
        assert result == contributions(logits, target, loss=name).to_dict()
        assert result["options"]["counts_from"] == "batch"

    def test_counts_from_the_option_go_to_the_losses_that_take_them(self, capsys):
        code, out, err = run(capsys, "--demo", "--loss", "seesaw_loss", "--loss", "cross_entropy", "--loss",
                             "BALMS", "--class-counts", "500,120,30,6,2", "--alpha", "inverse")
        assert code == 0 and err == ""
        assert "== seesaw_loss (class_counts=500,120,30,6,2, alpha=inverse) ==" in out
        assert "== cross_entropy (alpha=inverse) ==" in out
        assert "== logit_adjusted_cross_entropy (as 'BALMS') (class_counts=500,120,30,6,2, alpha=inverse) ==" in out

    def test_npz_file(self, capsys, tmp_path):
        x, y = batch(5)
        np.savez(tmp_path / "b.npz", logits=x.numpy(), target=y.numpy())
        code, out, err = run(capsys, str(tmp_path / "b.npz"), "--loss", "ldam_loss", "--class-counts", "9,3,2,1",
                             "--format", "json")
        assert code == 0 and err == ""
        (result,) = json.loads(out)["results"]
        expected = functional_losses("ldam_loss", x, y, [9.0, 3.0, 2.0, 1.0])
        np.testing.assert_allclose(result["total_after"], expected.sum(), rtol=1e-9)

    @pytest.mark.parametrize("argv, message", [
        (["--loss", "ldam_loss", "--class-counts", "500,x"],
         ("losslab contributions: --class-counts must be comma-separated counts, one per class, as in "
         "--class-counts=500,120,30,6; got '500,x'")),
        (["--loss", "ldam_loss", "--class-counts", "500,120"],
         "losslab contributions: class_counts must hold C = 5 counts, one per class of the logits; got 2"),
        (["--loss", "ldam_loss", "--class-counts", "5,4,3,2,-1"],
         "losslab contributions: --class-counts must be finite numbers >= 0; got -1 in --class-counts=5,4,3,2,-1"),
        (["--class-counts", "5,4,3,2,1"],
         ("losslab contributions: --class-counts is for the losses that take class counts "
         "(logit_adjusted_cross_entropy, ldam_loss, vs_loss, seesaw_loss); none of cross_entropy, "
         "softmax_focal_loss does")),
        (["--loss", "mmdet.SeesawLoss"], "losslab contributions: get_loss: 'mmdet.SeesawLoss' is mmdetection's"),
    ])
    def test_bad_counts_are_one_line(self, capsys, argv, message):
        code, out, err = run(capsys, "--demo", *argv)
        assert code == 2 and out == ""
        assert err.count("\n") == 1 and err.startswith(message)

    def test_help_names_the_option(self, capsys):
        with pytest.raises(SystemExit):
            cli_main(["contributions", "--help"])
        out = " ".join(capsys.readouterr().out.split())
        assert "--class-counts N0,N1,..." in out and "default: the batch's counts" in out
        assert "seesaw_loss is computed by its functional with those counts" in out
