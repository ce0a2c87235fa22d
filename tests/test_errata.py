"""Every erratum of the notes (scalarbp.notation.ERRATA): the note's value, pinned, beside
the correct one that the code computes."""
import re
from pathlib import Path

import numpy as np
import pytest

import scalarbp
from conftest import problem
from scalarbp.activations import relu_grad
from scalarbp.explain import seed_002
from scalarbp.notation import ERRATA, SYMBOLS

TESTS = Path(__file__).parent


def test_seed_002_gradients_are_1403_times_the_true_ones():
    net, x, y = seed_002()
    J, dW, db = net.loss_and_grad(x, y)
    assert J == pytest.approx(1.403, abs=5e-4)
    note_dJ_dv = np.array([0.163, -0.163])                          # the note's, seeded with dJ/dL = 1.403
    assert np.allclose(note_dJ_dv, 1.403 * db[1], atol=1e-3)
    assert np.allclose(db[1], [0.116, -0.116], atol=1e-3)           # o - y
    note_dJ_dW2 = np.array([[0.975, 1.273, 0.482], [-0.273, 0.411, 0.78]])
    assert np.allclose(note_dJ_dW2, 1.403 * dW[1], atol=2e-3)


def test_seed_002_dJ_dW1_adds_1403_plus_W2_where_W1_belongs():
    net, x, y = seed_002()
    W1, W2 = net.weights[0].copy(), net.weights[1].copy()
    note_added = np.array([[1.703, 1.903, 1.503], [1.603, 2.103, 2.203]])
    assert np.allclose(note_added, 1.403 + W2, atol=1e-12) and note_added.shape != W1.shape
    assert np.allclose([[0.421, 0.702], [0.281, 0.982], [0.140, 0.561]], 1.403 * W1, atol=1e-3)
    _, dW, db = net.loss_and_grad(x, y)
    note_dJ_dh = np.array([0.016, -0.033, -0.114])
    note_dJ_dW1 = np.array([[0.517, 0.75], [0.083, 0.883], [-0.544, 0.219]])
    assert np.allclose(note_dJ_dh, 1.403 * db[0], atol=1e-3)        # ReLU'(u) = 1: dJ/du = dJ/dh = db1
    assert np.allclose(note_dJ_dW1, 1.403 * dW[0], atol=4e-3)
    assert np.allclose(dW[0], [[0.370, 0.535], [0.061, 0.630], [-0.388, 0.156]], atol=1e-3)
    assert np.allclose(db[0], [0.012, -0.023, -0.081], atol=1e-3)


def test_seed_002_cross_entropy_has_no_half():
    net, x, y = seed_002()
    o = net.forward(x)[0]
    assert 0.5 * -np.log(o[1]) == pytest.approx(0.0616, abs=1e-3)   # the note's formula, 1/2 included
    assert -np.log(o[1]) == pytest.approx(0.123, abs=1e-3)          # its example, and the code
    J, _, _ = net.loss_and_grad(x, y)
    assert J == pytest.approx(0.123 + 1.28, abs=1e-3)


def test_softmax_needs_its_jacobian_not_an_elementwise_product():
    net, x, y = seed_002()
    o, onehot = net.forward(x)[0], np.array([0.0, 1.0])
    dJ_do = -onehot / o
    elementwise = dJ_do * o * (1 - o)                               # dJ/do (.) diag of softmax'
    jacobian = np.diag(o) - np.outer(o, o)
    assert np.allclose(elementwise, [0.0, -(1 - o[1])])
    assert np.allclose(jacobian.T @ dJ_do, o - onehot)
    _, _, db = net.loss_and_grad(x, y)
    assert np.allclose(db[1], jacobian.T @ dJ_do) and not np.allclose(db[1], elementwise)


def test_relu_derivative_is_the_step_function_not_sign():
    S = np.array([-2.0, -0.5, 0.5, 3.0])
    assert np.array_equal(np.sign(S), [-1, -1, 1, 1])
    assert np.array_equal(relu_grad(S, np.maximum(S, 0)), [0, 0, 1, 1])
    net, X, Y = problem([3, 6, 2], "relu", N=8)                     # many negative pre-activations
    assert scalarbp.gradcheck(net, X, Y) < 1e-6


def test_biases_are_one_per_unit_each_with_its_own_gradient():
    net, X, Y = problem([3, 5, 4, 2], "tanh", N=6)
    assert [b.shape for b in net.biases] == [(5,), (4,), (2,)]
    _, _, db = net.loss_and_grad(X, Y)
    assert all(len(set(np.round(g, 12))) == g.size for g in db)     # distinct per unit, not one per layer
    assert scalarbp.gradcheck(net, X, Y) < 1e-6


def test_weight_gradient_pairs_the_delta_above_with_the_activation_below():
    from scalarbp.backends import column

    net, X, Y = problem([3, 5, 4, 2], "sigmoid", N=1)
    trace = column.trace(net, X, np.eye(2)[Y])
    _, dW, _ = net.loss_and_grad(X, Y, backend="literal")
    for k in range(3):                                              # dPhi/dw_ij^k = delta_i^{k+1} f_j^k
        assert np.allclose(dW[k], np.outer(trace["grad_a"][k][:, 0], trace["h"][k][:, 0]), atol=1e-15)


def test_the_batch_mean_divides_by_N_once():
    net, X, Y = problem([3, 4, 2], "tanh", N=8)
    _, dW, db = net.loss_and_grad(X, Y)
    numerical = scalarbp.gradcheck(net, X, Y)
    assert numerical < 1e-6                                         # db = sum_n delta_n, delta with 1/N
    assert not np.allclose(db[1] / 8, db[1])                        # seed 004's extra 1/N would be off by N


def test_the_symbol_table_covers_every_note():
    assert all(len(row) == 7 for row in SYMBOLS)
    assert {row[0] for row in SYMBOLS} >= {"input", "pre-activation of a layer", "activation of a layer",
                                           "weights", "bias", "error signal dPhi/da", "objective"}


@pytest.mark.parametrize("erratum", ERRATA, ids=lambda e: e.test.split("::")[1])
def test_every_erratum_names_a_test_that_exists(erratum):
    path, name = erratum.test.split("::")
    assert re.search(rf"^def {name}\(", (TESTS / path).read_text(), re.M), erratum.test


def test_every_erratum_is_in_the_notes_page():
    notes = (TESTS.parent / "docs" / "notes.md").read_text()
    for erratum in ERRATA:
        assert erratum.test.split("::")[1] in notes


def test_every_test_the_readme_and_docs_name_exists():
    pages = [TESTS.parent / "README.md"] + sorted((TESTS.parent / "docs").glob("*.md"))
    named = set(re.findall(r"`(test_\w+\.py)::(test_\w+)`", "\n".join(page.read_text() for page in pages)))
    assert len(named) >= 20
    for path, name in named:
        assert re.search(rf"^def {name}\(", (TESTS / path).read_text(), re.M), f"{path}::{name}"


def test_every_function_the_notes_equation_table_cites_exists():
    """The table (docs/notes.md) cites ``module.function``, never line numbers: editing a
    kernel cannot leave it pointing at the wrong line, and renaming one fails here."""
    notes = (TESTS.parent / "docs" / "notes.md").read_text()
    table = notes[notes.index("## Where each equation lives"):]
    table = table[:table.index("\n## ", 3)]
    package = TESTS.parent / "scalarbp"
    modules = {path.stem: path for folder in ("", "backends", "definitions", "diagnostics")
               for path in (package / folder).glob("*.py")}
    cited = set(re.findall(r"`(\w+)\.(\w+)`", table))
    cited = {(module, name) for module, name in cited if module in modules}
    assert len(cited) >= 20
    for module, name in cited:
        assert re.search(rf"^\s*(def|class) {name}\b|^{name} = ", modules[module].read_text(), re.M), f"{module}.{name}"
    assert not re.search(r"\(lines? \d+", table)
