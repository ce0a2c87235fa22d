"""The scalar-versus-vector comparison table."""
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import problem
from scalarbp.compare import PAIRS, differences, gradients, table


def test_every_layer_and_pair_is_compared_and_agrees():
    net, X, Y = problem([5, 7, 3], "sigmoid", N=11)
    rows = differences(net, gradients(net, X, Y))
    assert [name for name, _ in rows] == ["W[0] (7, 5)", "b[0] (7,)", "W[1] (3, 7)", "b[1] (3,)"]
    for _, cells in rows:
        assert set(cells) == set(PAIRS)
        for (a, b), (abs_diff, rel_diff) in cells.items():
            assert rel_diff < (1e-8 if "finite" in b else 1e-12), (a, b)


def test_a_wrong_gradient_shows_in_the_table():
    net, X, Y = problem([5, 7, 3], N=11)
    grads = gradients(net, X, Y)
    grads["scalar"] = grads["scalar"] * 1.403
    rows = differences(net, grads)
    assert all(cells[("scalar", "row")][1] > 0.4 for _, cells in rows)
    assert all(cells[("row", "column")][1] < 1e-12 for _, cells in rows)


def test_table_has_a_row_per_parameter_array():
    net, X, Y = problem([4, 3, 2], N=5)
    lines = table(differences(net, gradients(net, X, Y))).splitlines()
    assert lines[0].startswith("| parameter | literal vs scalar | scalar vs row")
    assert len(lines) == 2 + 4


def test_compare_script_prints_the_table(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["compare_backends.py", "--sizes", "4", "6", "3",
                                      "--hidden", "relu", "--dtype", "float32", "--batch", "9"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(Path(__file__).parents[1] / "scripts" / "compare_backends.py"), run_name="__main__")
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "MLP(4-6-3" in out and "float32" in out
    assert out.count("\n| ") == 5
    assert np.isfinite([float(c.split("/")[1]) for c in out.splitlines()[-1].split("|")[2:-1]]).all()
