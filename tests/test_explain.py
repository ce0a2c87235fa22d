"""`scalarbp explain` in the notes' own symbols: deltas with the recursion step that made
them, the batch form of seeds 003 and 004, the penalty weight, softmax's shift, sigmoid's
derivative from its output, the softmax Jacobian, and the list of errata."""
import re

import numpy as np
import pytest

from scalarbp.cli import main
from scalarbp.notation import ERRATA


def explain(capsys, *argv):
    assert main(["explain", *argv]) == 0
    return capsys.readouterr().out


def value(out, label):
    """The numbers on the line whose label is ``label`` (first line of the value only)."""
    line = next(line for line in out.splitlines() if line.strip().startswith(label + " "))
    return [float(x) for x in re.findall(r"-?\d+\.\d*(?:e-?\d+)?", line.rsplit(" = ", 1)[1])]


def test_seed_002_names_each_delta_and_its_recursion_step(capsys):
    out = explain(capsys)
    assert "δ2 = dJ/dv     = o - y " in out
    assert "δ1 = dJ/du     = (W2^T δ2) * relu'(u) " in out
    assert value(out, "δ2 = dJ/dv") == pytest.approx([0.1161, -0.1161])
    assert value(out, "δ1 = dJ/du") == pytest.approx([0.0116, -0.0232, -0.0813])
    assert value(out, "max v") == [5.31]
    assert "o              = e^(v - max) / sum e^(...)" in out


@pytest.mark.parametrize("l2,J", [("1", 1.4034), ("0", 0.1234), ("0.5", 0.1234 + 0.5 * 1.28)])
def test_the_penalty_weight_is_printed_and_matches_J(capsys, l2, J):
    out = explain(capsys, "--l2", l2)
    assert f"J              = L + {float(l2):g} (s1 + s2)" in out
    assert value(out, "J") == pytest.approx([J], abs=1e-4)


def test_a_batch_shows_seed_003s_batch_form_and_seed_004s_outer_products(capsys):
    out = explain(capsys, "--hidden-sizes", "3", "--batch-size", "3", "--input-size", "2", "--output-size", "2")
    assert "δ2 = dJ/da2    = (h2 - Y) / N (seed 003)" in out
    assert "dJ/dW2         = δ2^T h1 " in out and "dJ/db2         = 1^T δ2 " in out
    assert "δ1 = dJ/da1    = (δ2 W2) * relu'(a1)" in out
    assert "Per sample (seed 004" in out and out.count("δ2_") == 3
    lines = out.splitlines()
    grad = lines.index(next(line for line in lines if line.strip().startswith("dJ/dW2")))
    total = lines.index(next(line for line in lines if line.strip().startswith("sum ")))
    assert lines[grad].split(" = ")[-1] == lines[total].split(" = ")[-1].split("  (=")[0]
    assert re.search(r"scalar backend vs column: largest difference \d\.\de-1[5-9]|0\.0e\+00", out)


def test_sigmoid_derivative_comes_from_its_output(capsys):
    out = explain(capsys, "--hidden-sizes", "3", "--activation", "sigmoid")
    assert "sigmoid'(a1)   = h1 (1 - h1) (seed 000)" in out
    h1, d = np.array(value(out, "h1")), np.array(value(out, "sigmoid'(a1)"))
    assert d == pytest.approx(h1 * (1 - h1), abs=2e-4)


def test_softmax_with_another_loss_takes_its_jacobian(capsys):
    out = explain(capsys, "--hidden-sizes", "3", "--loss", "mse")
    assert "δ2 = dJ/da2    = J_softmax^T dJ/dh2" in out


def test_binary_cross_entropy_is_bracketed(capsys):
    out = explain(capsys, "--hidden-sizes", "3", "--output", "sigmoid")
    assert "-sum [y log h2 + (1-y) log(1-h2)]" in out


def test_errata_lists_every_erratum_with_its_test(capsys):
    out = explain(capsys, "--errata")
    assert out.count("    test:  tests/") == len(ERRATA)
    assert "dJ/dL = 1.403" in out and "sign(S)" in out and "1.403 + W2" in out


def test_plot_draws_the_net_with_the_notes_wrong_deltas_struck(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "seed002.png"
    out = explain(capsys, "--plot", str(path))
    assert f"wrote {path}" in out
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_plot_to_a_missing_folder_fails_before_any_work(capsys, tmp_path):
    assert main(["explain", "--plot", str(tmp_path / "no" / "such.png")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("scalarbp: error:") and "no" in err and err.count("\n") == 1
