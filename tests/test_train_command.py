"""The train command as a practitioner meets it: three roles for the data, the task said,
nothing lost (output paths checked first, Ctrl-C, checkpoints, resume), class names."""
import csv
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import run_cli as run

import scalarbp
from scalarbp import datasets
from scalarbp.datasets import make_blobs
from scalarbp.cli import main


@pytest.fixture
def files(tmp_path):
    (X, y), (X_test, y_test) = datasets.load_digits()
    np.savez(tmp_path / "train.npz", X=X, y=y)
    np.savez(tmp_path / "test.npz", X=X_test, y=y_test)
    np.savez(tmp_path / "test-unlabelled.npz", X=X_test)
    return tmp_path


def test_validation_never_touches_the_test_set_which_is_scored_once(capsys, files, monkeypatch):
    test_X = np.load(files / "test.npz")["X"]
    seen = {"validation": [], "scored": []}
    fit, score = scalarbp.MLP.fit, scalarbp.MLP.score

    def spy_fit(self, X, y, **kw):
        if kw.get("validation_data") is not None and len(X) > 2:
            seen["validation"].append(np.asarray(kw["validation_data"][0]))
            seen["train"] = np.asarray(X)
        return fit(self, X, y, **kw)

    def spy_score(self, X, y, **kw):
        seen["scored"].append(np.asarray(X))
        return score(self, X, y, **kw)

    monkeypatch.setattr(scalarbp.MLP, "fit", spy_fit)
    monkeypatch.setattr(scalarbp.MLP, "score", spy_score)
    code, out, err = run(capsys, "train", "--data", files / "train.npz", "--test-data", files / "test.npz",
                         "--epochs", "3", "--early-stopping", "--quiet")
    assert code == 0, err
    (validation,) = seen["validation"]
    assert len(validation) == 143 and len(seen["train"]) == 1438 - 143  # 10% of each class held out
    rows = {row.tobytes() for row in test_X}
    assert not any(row.tobytes() in rows for row in validation)
    assert len(seen["scored"]) == 1 and seen["scored"][0].shape == test_X.shape
    assert ": 1295 train / 143 validation / 359 test" in out


def test_test_data_without_labels_is_refused_before_training(capsys, files):
    code, out, err = run(capsys, "train", "--data", files / "train.npz", "--test-data",
                         files / "test-unlabelled.npz")
    assert code == 1 and "the test set needs labels" in err and "epoch" not in out


def test_many_integer_values_are_a_regression_unless_told(capsys, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 3))
    y = np.round(100 * X[:, 0] + 50 * X[:, 1]).astype(int)  # ~347 distinct integers
    np.savez(tmp_path / "r.npz", X=X, y=y)
    code, out, err = run(capsys, "train", "--data", tmp_path / "r.npz", "--epochs", "40", "--quiet",
                         "--lr", "0.01")
    assert code == 0, err
    assert "training a regression; give --task classification" in err
    assert "task: regression (inferred:" in out and "identity" in out
    r2, rmse = out.split("test R^2: ")[1].split(", RMSE: ")
    assert float(r2) > 0.9 and float(rmse) < 30
    code, out, err = run(capsys, "train", "--data", tmp_path / "r.npz", "--epochs", "1", "--quiet", "--task",
                         "classification")
    assert code == 0 and "task: classification (as told by --task)" in out and "softmax" in out


def test_class_names_are_stored_and_written_back(capsys, tmp_path):
    X, y = datasets.make_blobs(240, n_features=3, centers=3, seed=0)
    names = np.array(["setosa", "versi,color", "virginica"])[y]
    with open(tmp_path / "iris.csv", "w") as file:
        file.write("a,b,c,species\n")
        for row, name in zip(X, names):
            file.write(",".join(f"{v:.6f}" for v in row) + f',"{name}"\n')
    model = tmp_path / "m.npz"
    code, out, err = run(capsys, "train", "--data", tmp_path / "iris.csv", "--epochs", "20", "--quiet",
                         "--save", model)
    assert code == 0, err
    assert "task: classification (3 class names)" in out
    net = scalarbp.MLP.load(model)
    assert net.classes.tolist() == ["setosa", "versi,color", "virginica"]
    code, out, err = run(capsys, "predict", model, "--data", tmp_path / "iris.csv", "--label-column", "species",
                         "--out", tmp_path / "p.csv")
    assert code == 0, err
    with open(tmp_path / "p.csv", newline="") as file:
        written = list(csv.reader(file))  # one field a row: a name holding the delimiter is quoted
    assert len(written) == 240 and all(len(row) == 1 for row in written)
    assert {row[0] for row in written} <= {"setosa", "versi,color", "virginica"}
    code, out, err = run(capsys, "predict", model, "--data", tmp_path / "iris.csv", "--label-column", "species",
                         "--proba", "--out", tmp_path / "q.csv")
    header = (tmp_path / "q.csv").read_text().splitlines()[0]
    assert header == 'setosa,"versi,color",virginica'


@pytest.mark.parametrize("option", ["--save", "--plot"])
def test_an_unwritable_output_path_is_refused_before_training(capsys, files, option):
    path = files / "no-such-folder" / "out.npz"
    code, out, err = run(capsys, "train", "--epochs", "1", option, path)
    assert code == 1 and str(path) in err and "epoch" not in out


@pytest.mark.parametrize("where", ["a folder", "/dev/null", "a name too long for its temporary file"])
def test_a_save_path_the_save_would_fail_on_is_refused_before_training(capsys, files, where):
    """Checked as the save writes: the target must be a regular file or absent, and its
    temporary sibling (the name plus a process id and a random part) must be creatable."""
    path = {"a folder": files, "/dev/null": "/dev/null",
            "a name too long for its temporary file": files / ("m" * 230 + ".npz")}[where]
    code, out, err = run(capsys, "train", "--epochs", "1", "--save", path)
    assert code == 1 and str(path) in err and "cannot save there" in err and "epoch" not in out
    assert os.path.isdir(files) and os.path.exists("/dev/null")


def test_a_checkpoint_every_zero_is_refused(capsys, files):
    code, out, err = run(capsys, "train", "--epochs", "1", "--save", files / "m.npz", "--checkpoint-every", "0")
    assert code == 1 and "--checkpoint-every must be at least 1" in err and "epoch" not in out


def test_a_plot_path_without_an_extension_is_named_as_matplotlib_writes_it(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    code, out, _ = run(capsys, "train", "--epochs", "1", "--quiet", "--plot", tmp_path / "curves")
    assert code == 0 and f"saved curves to {tmp_path / 'curves.png'}" in out
    assert os.listdir(tmp_path) == ["curves.png"]


def test_a_checkpoint_to_an_unwritable_path_is_refused_when_made():
    from scalarbp.training import Checkpoint

    with pytest.raises(OSError, match="not a regular file"):
        Checkpoint("/dev/null")


def test_a_feature_only_file_read_with_a_label_column_gets_a_hint(capsys, files, tmp_path):
    model = tmp_path / "m.npz"
    run(capsys, "train", "--epochs", "1", "--quiet", "--save", model)
    X_test = np.load(files / "test.npz")["X"]
    np.savetxt(tmp_path / "features.csv", X_test, delimiter=",")
    code, out, err = run(capsys, "predict", model, "--data", tmp_path / "features.csv", "--out", tmp_path / "p.csv")
    assert code == 1 and "give --label-column none for a file of features only" in err


def test_resume_continues_bit_for_bit_and_checkpoints_are_written(capsys, files, tmp_path):
    common = ["--data", files / "train.npz", "--test-data", files / "test.npz", "--quiet", "--seed", "4",
              "--dtype", "float64"]
    straight, first = tmp_path / "straight.npz", tmp_path / "first.npz"
    assert run(capsys, "train", *common, "--epochs", "4", "--save", straight)[0] == 0
    code, out, _ = run(capsys, "train", *common, "--epochs", "2", "--save", first, "--checkpoint-every", "1")
    assert code == 0 and "checkpoint: epoch 1 saved" in out and "checkpoint: epoch 2 saved" in out
    code, out, _ = run(capsys, "train", *common, "--epochs", "2", "--resume", first, "--save", first)
    assert code == 0 and "(continued)" in out and f"from {first}: 2 epochs trained" in out
    a, b = scalarbp.MLP.load(straight), scalarbp.MLP.load(first)
    assert a.epochs_trained == b.epochs_trained == 4 and a.optimizer.t == b.optimizer.t
    assert np.array_equal(a.theta, b.theta)
    code, _, err = run(capsys, "train", *common, "--resume", first, "--hidden-sizes", "8")
    assert code == 1 and "drop --hidden-sizes" in err


def test_early_stopping_says_where_it_stopped_and_what_it_restored(capsys, files):
    code, out, err = run(capsys, "train", "--data", files / "train.npz", "--test-data", files / "test.npz",
                         "--epochs", "200", "--early-stopping", "--patience", "2", "--lr", "0.01", "--quiet")
    assert code == 0, err
    assert "stopped early after epoch" in out and "restored the weights of epoch" in out


def test_help_shows_every_default(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for shown in ("(default: 0.1)", "(default: 30)", "(default: 32)", "(default: float32)", "(default: 0.2)"):
        assert shown in text


def test_a_first_run_that_compiles_says_so_once(capsys, monkeypatch):
    from scalarbp import cli
    slow = scalarbp.MLP.fit

    def compiling(self, X, y, **kw):
        if len(X) == 2:
            time.sleep(1.5)  # the warm-up fit: as long as compiling would take
        return slow(self, X, y, **kw)

    monkeypatch.setattr(scalarbp.MLP, "fit", compiling)
    code, out, err = run(capsys, "train", "--epochs", "1", "--quiet")
    assert code == 0 and err.count(f"compiling kernels for float32, first run only, ~{cli.COMPILE_SECONDS} s") == 1


CHILD = [sys.executable, "-m", "scalarbp", "train", "--epochs", "100000", "--batch-size", "4"]


@pytest.mark.parametrize("received, code, said", [(signal.SIGINT, 130, "interrupted"),
                                                   (signal.SIGTERM, 143, "terminated")])
def test_ctrl_c_or_sigterm_saves_the_trained_model_and_exits_as_a_signal(tmp_path, received, code, said):
    """Ctrl-C, and SIGTERM (what kill, systemd, Slurm and Kubernetes send), stop at a step
    boundary and save: exit 128 + the signal's number, as a shell reports it."""
    model = tmp_path / "m.npz"
    child = subprocess.Popen(CHILD + ["--save", str(model)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, cwd=tmp_path)
    try:
        for line in child.stdout:  # once training runs (after any compiling), an epoch line a few ms
            if line.startswith("epoch"):
                break
        time.sleep(0.5)
        child.send_signal(received)
        out, err = child.communicate(timeout=120)
    finally:
        child.kill()  # (never left running, whatever failed)
    assert child.returncode == code, err
    assert f"{said} at epoch" in out and f"saved model to {model}" in out
    net = scalarbp.MLP.load(model)
    assert net.optimizer.t == net.epochs_trained * 324 + net.epoch_steps > 0  # 1,295 samples in 4s
    assert os.listdir(tmp_path) == ["m.npz"]


def test_the_train_command_encodes_the_labels_that_occur(tmp_path, capsys):
    from scalarbp.cli import main
    X, y = make_blobs(300, n_features=4, centers=3, seed=0)
    labels = np.array([7, 10 ** 9, 2_000_000])[y]
    np.savez(tmp_path / "d.npz", X=X, y=labels)
    model = tmp_path / "m.npz"
    assert main(["train", "--data", str(tmp_path / "d.npz"), "--epochs", "5", "--quiet", "--save", str(model),
                 "--task", "classification"]) == 0
    net = scalarbp.MLP.load(model)
    assert net.sizes[-1] == 3 and net.classes.tolist() == [7, 2_000_000, 10 ** 9]
    assert set(net.predict(X).tolist()) <= {7, 2_000_000, 10 ** 9}
    assert net.score(X, labels) > 0.9
    np.savez(tmp_path / "many.npz", X=np.zeros((20001, 1)), y=np.arange(20001))
    capsys.readouterr()
    many = str(tmp_path / "many.npz")
    assert main(["train", "--data", many, "--test-data", many, "--epochs", "1", "--quiet", "--task",
                 "classification"]) == 1
    assert "more than 10000 classes for a softmax" in capsys.readouterr().err
