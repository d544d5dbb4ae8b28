"""Your own model in the lab: a model factory and a train_fn through ablate, the small CNN, images in a .npz, errors."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from losslab.cli import main
from losslab.lab import ablate, build_model, train
from losslab.lab._data import Dataset, digits_lt, load_npz, split_dataset
from losslab.lab._models import LossFn, SmallCNN

LOSSES = [{"name": "cross_entropy"}, {"name": "softmax_focal_loss", "gamma": 2.0}]
FAST = {"losses": LOSSES, "seeds": 2, "epochs": 2, "dataset": "digits-lt"}


# Top-level, so that they pickle by reference (jobs > 1 sends them to worker processes).
def tiny_net(num_features: int, num_classes: int) -> nn.Module:
    return nn.Sequential(nn.Linear(num_features, 16), nn.ReLU(), nn.Linear(16, num_classes))


def linear_net(num_features: int, num_classes: int) -> nn.Module:
    return nn.Linear(num_features, num_classes)


def not_a_module(num_features: int, num_classes: int):
    return [num_features, num_classes]


def too_narrow(num_features: int, num_classes: int) -> nn.Module:
    return nn.Linear(num_features, num_classes - 1)


CALLS: list[tuple[int, dict]] = []


def full_batch_train(split, loss_fn, seed, settings):
    """A train_fn: logistic regression, full-batch Adam for settings['epochs'] steps; returns the test logits."""
    CALLS.append((seed, dict(settings)))
    x, y = torch.from_numpy(split.x_train), torch.from_numpy(split.y_train)
    net = nn.Linear(x.shape[1], split.num_classes)  # drawn from torch's generator, which the lab seeded
    optimizer = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(settings["epochs"]):
        optimizer.zero_grad()
        loss_fn(net(x), y).backward()
        optimizer.step()
    with torch.no_grad():
        return net(torch.from_numpy(split.x_test)).numpy()


def wrong_logits(split, loss_fn, seed, settings):
    return np.zeros((len(split.y_test), split.num_classes + 1))


@pytest.fixture(scope="module")
def split():
    return split_dataset(digits_lt(), rho=20.0, test_per_class=50, seed=0)


@pytest.fixture(scope="module")
def tabular(tmp_path_factory):
    """A .npz of tabular data: 3 classes, 5 features."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 30)
    path = tmp_path_factory.mktemp("tabular") / "tab.npz"
    np.savez(path, x=rng.normal(size=(90, 5)) + y[:, None], y=y)
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A .npz of 12 x 10 grey-scale images, N x H x W: 3 classes, each a bright row of its own."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 30)
    x = rng.random((90, 12, 10)).astype(np.float32)
    x[np.arange(90), 3 * y + 1, :] += 2.0
    path = tmp_path_factory.mktemp("images") / "img.npz"
    np.savez(path, x=x, y=y)
    return path


class TestFactory:
    def test_end_to_end(self, tmp_path):
        result = ablate(model=tiny_net, **FAST)
        assert len(result.runs) == 4 and sorted(r["rank"] for r in result.summary) == [1, 2]
        assert result.settings["model"] == "custom"
        assert result.settings["model_factory"] == f"{__name__}.tiny_net"
        result.save(tmp_path, plots=False)
        saved = json.loads((tmp_path / "results.json").read_text())
        assert saved["settings"]["model_factory"] == f"{__name__}.tiny_net"
        assert "your factory" in (tmp_path / "report.md").read_text()

    def test_same_loop_and_seeding_as_the_built_in(self, split):
        # a factory building logistic regression trains exactly as model="logreg": same loop, same seeding
        mine = train(split, "cross_entropy", seed=3, epochs=2, model=linear_net)
        built_in = train(split, "cross_entropy", seed=3, epochs=2, model="logreg")
        np.testing.assert_array_equal(mine["probabilities"], built_in["probabilities"])

    def test_top_level_callables_travel_to_workers(self, split):
        # what jobs > 1 does to a run's options (spawning workers here would cost seconds): pickle by reference
        options = pickle.loads(pickle.dumps({"model": tiny_net, "train_fn": full_batch_train}))
        assert options == {"model": tiny_net, "train_fn": full_batch_train}
        # and one real worker process: the same numbers as in-process
        two = ablate(model=tiny_net, losses=LOSSES[:1], seeds=[4], epochs=1, jobs=2)
        one = ablate(model=tiny_net, losses=LOSSES[:1], seeds=[4], epochs=1)
        assert two.runs[0]["metrics"] == one.runs[0]["metrics"]


class TestTrainFn:
    def test_end_to_end(self):
        CALLS.clear()
        result = ablate(train_fn=full_batch_train, **FAST)
        assert len(result.runs) == 4 and result.settings["model"] == "train_fn"
        assert result.settings["train_fn"] == f"{__name__}.full_batch_train"
        assert sorted(seed for seed, _ in CALLS) == [0, 0, 1, 1]
        assert CALLS[0][1] == {"epochs": 2, "batch_size": 64, "lr": 3e-3, "weight_decay": 1e-4, "hidden": 128}
        assert all(np.isfinite(r["final_train_loss"]) for r in result.runs)
        assert result.summary[0]["balanced_accuracy"]["mean"] > 0.3  # it learned something in two steps

    def test_reproducible_and_scored_like_the_lab(self, split):
        first = train(split, "sigmoid_focal_loss", seed=1, epochs=3, train_fn=full_batch_train)
        again = train(split, "sigmoid_focal_loss", seed=1, epochs=3, train_fn=full_batch_train)
        np.testing.assert_array_equal(first["probabilities"], again["probabilities"])
        assert first["sigmoid"] is True  # one-vs-rest: the lab scores per-class sigmoids of the logits
        assert first["probabilities"].shape == (len(split.y_test), 10)
        with pytest.raises(ValueError, match="train: give model= or train_fn=, not both"):
            train(split, "cross_entropy", model="cnn", train_fn=full_batch_train)

    def test_loss_fn_feeds_what_the_loss_declares(self, split):
        seen = []
        criterion = lambda inputs, target: (seen.append(inputs) or inputs.sum())
        loss_fn = LossFn(criterion, "log-probabilities", False, "nll_loss")
        logits = torch.randn(4, 3)
        value = loss_fn(logits, torch.zeros(4, dtype=torch.long))
        torch.testing.assert_close(seen[0], torch.log_softmax(logits, dim=1))
        assert loss_fn.last == float(value)


class TestCNN:
    def test_shapes(self):
        net = build_model("cnn", 64, 10, image_shape=(8, 8))
        assert isinstance(net, SmallCNN) and net(torch.randn(3, 64)).shape == (3, 10)
        assert SmallCNN((28, 28), 10)(torch.randn(2, 784)).shape == (2, 10)

    def test_digits_lt(self, split):
        assert split.image_shape == (8, 8)
        result = ablate(model="cnn", losses=LOSSES[:1], seeds=1, epochs=10)
        assert result.settings["model"] == "cnn"
        assert result.summary[0]["balanced_accuracy"]["mean"] > 0.3

    def test_npz_of_images(self, images, tmp_path):
        data = load_npz(images)
        assert data.image_shape == (12, 10) and data.x.shape == (90, 120)
        np.savez(tmp_path / "chan.npz", x=np.load(images)["x"][:, None], y=np.load(images)["y"])
        assert load_npz(tmp_path / "chan.npz").image_shape == (12, 10)
        result = ablate(data=images, model="cnn", losses=LOSSES[:1], seeds=1, epochs=30)
        assert result.summary[0]["balanced_accuracy"]["mean"] > 0.6
        assert ablate(data=images, model="mlp", losses=LOSSES[:1], seeds=1, epochs=1).runs  # flattened for the MLP

    def test_command(self, images, tmp_path, capsys):
        assert main(["ablate", "--data", str(images), "--model", "cnn", "--loss", "cross_entropy", "--seeds", "1",
                     "--epochs", "1", "--no-plots", "--no-progress", "--out", str(tmp_path)]) == 0
        assert json.loads((tmp_path / "results.json").read_text())["settings"]["model"] == "cnn"
        assert ", cnn," in capsys.readouterr().out


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and message.startswith(("ablate: ", "train: "))
    return message


class TestErrors:
    @pytest.mark.parametrize(("kwargs", "match"), [
        ({"model": tiny_net, "train_fn": full_batch_train}, "give model= or train_fn=, not both"),
        ({"model": "cnn", "train_fn": full_batch_train}, "give model= or train_fn=, not both"),
        ({"model": not_a_module}, r"returned list, not a torch.nn.Module"),
        ({"model": too_narrow}, r"returns shape \(2, 9\) for a batch of shape \(2, 64\); the lab needs logits \(2, 10"),
        ({"model": nn.Linear(64, 10)}, "not a module instance"),
        ({"model": 3}, "model must be one of 'mlp', 'logreg', 'cnn' or a callable"),
        ({"model": "svm"}, "model must be one of 'mlp', 'logreg', 'cnn'"),
        ({"train_fn": "full_batch_train"}, "train_fn must be a callable"),
        ({"model": lambda d, c: nn.Linear(d, c), "jobs": 2}, "cannot be sent to worker processes \\(jobs=2\\)"),
        ({"train_fn": lambda s, f, seed, st: None, "jobs": 2}, "cannot be sent to worker processes"),
        ({"train_fn": wrong_logits}, r"returned shape \(500, 11\); it must return the test logits"),
    ])
    def test_api(self, kwargs, match):
        with pytest.raises(ValueError, match=match) as error:
            ablate(losses=LOSSES[:1], seeds=1, epochs=1, dataset="digits-lt", **kwargs)
        _one_line(error)

    def test_cnn_on_tabular_data(self, tabular):
        with pytest.raises(ValueError, match="model 'cnn' needs images .* tab is tabular, 5 features") as error:
            ablate(data=tabular, model="cnn", losses=LOSSES[:1], seeds=1, epochs=1)
        _one_line(error)
        flat = split_dataset(Dataset(np.eye(6), np.arange(6) % 2, ("a", "b"), "flat"), test_per_class=1)
        with pytest.raises(ValueError, match="train: model 'cnn' needs images") as error:
            train(flat, "cross_entropy", model="cnn", epochs=1)
        _one_line(error)

    def test_lambda_runs_in_process(self):
        assert len(ablate(model=lambda d, c: nn.Linear(d, c), losses=LOSSES[:1], seeds=1, epochs=1).runs) == 1

    @pytest.mark.parametrize(("argv", "match"), [
        (["--model", "cnn", "--data", "TABULAR"], "losslab ablate: model 'cnn' needs images"),
        (["--config", "CONFIG"], "losslab ablate: model must be one of 'mlp', 'logreg', 'cnn'"),
    ])
    def test_command(self, argv, match, tabular, tmp_path, capsys):
        config = tmp_path / "c.yaml"
        config.write_text("model: resnet\n")
        argv = [str(tabular) if a == "TABULAR" else str(config) if a == "CONFIG" else a for a in argv]
        assert main(["ablate", *argv, "--loss", "cross_entropy", "--seeds", "1", "--epochs", "1", "--no-plots",
                     "--no-progress", "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert err.startswith(match) and err.count("\n") == 1
