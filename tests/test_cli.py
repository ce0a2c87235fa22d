"""The scalarbp command: output, files it writes, and exit codes (1 for bad input, 2 for
arguments argparse rejects), never a traceback."""
import subprocess
import sys

import numpy as np
import pytest
from conftest import run_cli as run

from scalarbp import datasets
from scalarbp.cli import main


@pytest.fixture
def digits_files(tmp_path):
    (X, y), (X_test, y_test) = datasets.load_digits()
    np.savez(tmp_path / "train.npz", X=X, y=y)
    np.savez(tmp_path / "test.npz", X=X_test, y=y_test)
    np.savetxt(tmp_path / "test.csv", X_test, delimiter=",")
    return tmp_path


def test_train_with_no_arguments_reaches_96_percent_on_the_digits(capsys):
    code, out, err = run(capsys, "train")
    assert code == 0, err
    assert "embedded UCI digits" in out and "epoch  30/30" in out
    accuracy = float(out.strip().splitlines()[-1].split("test accuracy: ")[1])
    assert accuracy >= 0.96


def test_train_save_evaluate_predict_round_trip(capsys, digits_files):
    model = digits_files / "m.npz"
    code, out, _ = run(capsys, "train", "--data", str(digits_files / "train.npz"), "--test-data",
                       str(digits_files / "test.npz"), "--epochs", "5", "--quiet", "--save", str(model),
                       "--optimizer", "momentum", "--nesterov", "--lr", "0.05", "--dtype", "float64")
    assert code == 0 and f"saved model to {model}" in out
    trained_accuracy = float(out.split("test accuracy: ")[1])
    code, out, _ = run(capsys, "evaluate", str(model), "--data", str(digits_files / "test.npz"))
    assert code == 0 and f"accuracy: {trained_accuracy:.4f}" in out
    code, out, _ = run(capsys, "predict", str(model), "--data", str(digits_files / "test.csv"),
                       "--label-column", "none", "--out", str(digits_files / "p.csv"))
    assert code == 0 and "wrote 359 predictions" in out
    predictions = np.loadtxt(digits_files / "p.csv", dtype=int)
    y_test = np.load(digits_files / "test.npz")["y"]
    assert np.mean(predictions == y_test) == pytest.approx(trained_accuracy, abs=1e-4)
    code, _, _ = run(capsys, "predict", str(model), "--data", str(digits_files / "test.npz"), "--proba",
                     "--out", str(digits_files / "p.npy"))
    assert code == 0 and np.load(digits_files / "p.npy").shape == (359, 10)


def test_train_splits_a_single_file_and_accepts_every_option(capsys, digits_files):
    code, out, err = run(capsys, "train", "--data", str(digits_files / "test.npz"), "--test-fraction", "0.25",
                         "--hidden-sizes", "16", "8", "--activation", "tanh", "leaky_relu", "--epochs", "2",
                         "--batch-size", "16", "--backend", "row", "--threads", "1", "--seed", "3",
                         "--l2", "0.001", "--early-stopping", "--patience", "1", "--no-standardize")
    assert code == 0, err
    assert "MLP(64-16-8-10" in out and ": 239 train / 30 validation / 90 test" in out


def test_plot_writes_a_png(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    code, out, _ = run(capsys, "train", "--epochs", "2", "--quiet", "--plot", str(tmp_path / "c.png"))
    assert code == 0 and (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("argv,message", [
    (["train", "--lr", "-1"], "lr must be a positive number"),
    (["train", "--epochs", "1", "--optimizer", "sgd", "--lr", "1e4", "--activation", "identity"], "diverged"),
    (["train", "--threads", "99"], "--threads must lie in"),
    (["train", "--data", "missing.npz"], "missing.npz: no such file"),
    (["train", "--data", "x.bin"], "cannot tell the format"),
    (["evaluate", "missing.npz", "--data", "x.npz"], "missing.npz: no such file"),
    (["predict", "{model}", "--data", "{test}", "--out", "p.txt"], "--out must end in .npy or .csv"),
    (["evaluate", "{test}", "--data", "{test}"], "no 'config' and 'theta' arrays"),
    (["train", "--hidden-sizes", "1000000000"], "the parameters of sizes=[64, 1000000000, 10]: 75,000,000,010 numbers"),
    (["compare", "--sizes", "1000000", "1000000"], "the parameters of sizes=[1000000, 1000000]: 1,000,001,000,000"),
    (["bench", "--repeats", "0"], "--repeats must be at least 1"),
    (["train", "--batch-size", "0"], "--batch-size must be an integer >= 1, got 0"),
    (["train", "--validation-fraction", "2"], "--validation-fraction must lie in (0, 1), got 2.0"),
    (["train", "--seed", "-1"], "--seed must be an integer >= 0, got -1"),
    (["train", "--epochs", "0"], "--epochs must be at least 1, got 0"),
    (["train", "--test-fraction", "0.5"], "--test-fraction needs --data (the embedded digits come with their own"),
    (["train", "--test-data", "{test}"], "--test-data needs --data"),
    (["train", "--data", "{test}", "--test-data", "{test}", "--test-fraction", "0.5"],
     "--test-fraction splits --data; --test-data gives the test set"),
    (["train", "--l2", "-1"], "--l2 must be finite and >= 0"),
    (["train", "--data", "/dev/zero", "--format", "csv"], "/dev/zero: a device, not a data file"),
])
def test_bad_arguments_and_files_exit_1_with_one_line(capsys, digits_files, monkeypatch, argv, message):
    monkeypatch.chdir(digits_files)
    run(capsys, "train", "--epochs", "1", "--quiet", "--save", "m.npz")
    argv = [a.format(model="m.npz", test="test.npz") for a in argv]
    code, _, err = run(capsys, *argv)
    assert code == 1
    assert err.startswith("scalarbp: error:") and message in err and err.count("\n") == 1
    assert "Traceback" not in err


@pytest.mark.parametrize("argv", [["train", "--optimizer", "adagrad"], ["train", "--epochs", "x"], ["fly"], []])
def test_arguments_argparse_rejects_exit_2(capsys, argv):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2


def test_gradcheck_and_compare_report_every_backend(capsys):
    code, out, _ = run(capsys, "gradcheck", "--sizes", "3", "4", "2", "--hidden", "sigmoid")
    assert code == 0
    errors = [float(line.split()[-1]) for line in out.splitlines()[1:]]
    assert len(errors) == 4 and max(errors) < 1e-6
    code, out, _ = run(capsys, "compare", "--sizes", "3", "4", "2", "--output", "sigmoid")
    assert code == 0 and out.count("\n| ") == 5 and "scalar vs finite differences" in out


def test_explain_prints_the_worked_example_with_its_erratum(capsys):
    code, out, _ = run(capsys, "explain")
    assert code == 0
    assert "J              = L + 1 (s1 + s2)" in out and out.count("= 1.4034") == 1
    assert "δ2 = dJ/dv     = o - y " in out and "= [ 0.1161, -0.1161]" in out
    assert "its dJ/dv = (0.163, -0.163) is 1.403 x" in out
    code, out, _ = run(capsys, "explain", "--sizes", "3", "4", "2", "--hidden", "tanh")
    assert code == 0 and "dJ/dh1         = W2^T δ2 " in out and "finite differences" in out


def test_module_entry_point_and_help():
    for command in ([sys.executable, "-m", "scalarbp", "--help"], [sys.executable, "-m", "scalarbp", "train", "--help"]):
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and "usage: scalarbp" in result.stdout
