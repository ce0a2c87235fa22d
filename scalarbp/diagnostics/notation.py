"""The notes' symbols and the code's, and every place the notes are wrong or ambiguous.

One table of symbols (:data:`SYMBOLS`): the five notes name the same quantities
differently, and the code follows seed 000's column version (``a`` pre-activation, ``h``
activation) everywhere, the literal backend included; comments cite a note's formula in
the code's symbols.
One list of errata (:data:`ERRATA`), each with the test that pins the note's value and
the correct one; ``scalarbp explain --errata`` prints it and docs/notes.md repeats it.
"""
from dataclasses import dataclass

#: ``(quantity, seed 000 columns, seed 000 rows, seed 001, seed 002, seeds 003/004, code)``.
SYMBOLS = (
    ("input", "x = h^(0)", "v = d^(0)", "x = f^0", "x", "X^(0), x", "X, x"),
    ("pre-activation of a layer", "a^(k)", "z^(k)", "h^k", "u, v", "S^(l), y", "a"),
    ("activation of a layer", "h^(k) = f(a^(k))", "d^(k) = g(z^(k))", "f^k = g(h^k)", "h, o", "X^(l) = theta(S^(l))",
     "h = g(a)"),
    ("weights", "W^(k), (out, in)", "U^(k), (in, out)", "w_ij^k: unit j below to unit i above", "W1, W2",
     "W^(l), (in, out)", "W[k], (out, in), W[k][i, j] = w_ij"),
    ("bias", "b^(k)", "c^(k)", "b^k (one scalar per layer as written)", "b1, b2", "b^(l), B", "b[k], one per unit"),
    ("error signal dPhi/da", "grad_a Loss", "grad_z CE", "delta_i^k", "dJ/dv, dJ/du", "delta^(l) (includes 1/N)",
     "delta (includes 1/N)"),
    ("objective", "Loss(y_hat, y)", "CE(o_hat, o)", "Phi(theta)", "J = L + S", "E_in (a mean over N)",
     "J = mean loss + (l2/2) sum ||W||_F^2"),
)


@dataclass(frozen=True)
class Erratum:
    """A place where a note is wrong or ambiguous: what it says, what is right, what the
    code does, and the test that pins it."""

    seed: str
    note: str
    correct: str
    test: str


ERRATA = (
    Erratum("002", "The backward pass starts from dJ/dL = 1.403 (the value of J), so every gradient it "
                   "prints is 1.403 times too large: dJ/dv = (0.163, -0.163).",
            "dJ/dL = 1: dJ/dv = o - y = (0.116, -0.116); every backend and finite differences agree.",
            "test_errata.py::test_seed_002_gradients_are_1403_times_the_true_ones"),
    Erratum("002", "Its dJ/dW1 adds the matrix [[1.703, 1.903, 1.503], [1.603, 2.103, 2.203]], which is "
                   "1.403 + W2: the wrong matrix, added instead of multiplied, of W2's shape (2, 3) where "
                   "dJ/dW1 is (3, 2); the next line then adds 1.403 W1.  Its dJ/dh = (0.016, -0.033, -0.114) "
                   "and dJ/dW1 = [[0.517, 0.75], [0.083, 0.883], [-0.544, 0.219]] carry the factor 1.403.",
            "dJ/dW1 = dJ/du x^T + W1 = [[0.370, 0.535], [0.061, 0.630], [-0.388, 0.156]]; "
            "dJ/dh = W2^T (o - y) = (0.012, -0.023, -0.081).",
            "test_errata.py::test_seed_002_dJ_dW1_adds_1403_plus_W2_where_W1_belongs"),
    Erratum("002", "L = 1/2 sum y (-log o): a stray 1/2 (and 'log_o' for log_e), which its own example drops "
                   "(L = 0.123 = -log 0.884).",
            "L = -sum y log o, cross-entropy without the 1/2, as the example computes it.",
            "test_errata.py::test_seed_002_cross_entropy_has_no_half"),
    Erratum("002", "dJ/dv = dJ/do (element-wise) softmax'(v): softmax's derivative is a matrix, and the "
                   "element-wise product with its diagonal gives (0, -0.116).",
            "A Jacobian-vector product: dJ/dv = J_softmax^T dJ/do = o - y for cross-entropy (seed 003 derives "
            "it with the branching chain rule).",
            "test_errata.py::test_softmax_needs_its_jacobian_not_an_elementwise_product"),
    Erratum("003", "theta'(S) = sign(S) for ReLU: sign gives -1 for S < 0.",
            "The derivative is the step function: 1 for S > 0, 0 otherwise (activations.relu_grad).",
            "test_errata.py::test_relu_derivative_is_the_step_function_not_sign"),
    Erratum("001", "b'(h_i^k) in the recursion and the initialisation, where the activation is g.",
            "g'(h_i^k): delta_i^k = (sum_s delta_s^{k+1} w_si^k) g'(h_i^k).",
            "test_literal_backend.py::test_literal_matches_finite_differences"),
    Erratum("001", "One bias b^k per layer, added to every unit.",
            "One bias per unit, b_i^k, with dPhi/db_i^k = delta_i^{k+1} (every backend, every model file).",
            "test_errata.py::test_biases_are_one_per_unit_each_with_its_own_gradient"),
    Erratum("001", "The gradient's last line, dPhi/dw_ij^e = delta_i^{t+1} f_j^e(x), mixes the indices e "
                   "and t.",
            "dPhi/dw_ij^k = delta_i^{k+1} f_j^k: the weights between layers k and k+1 pair the delta above "
            "with the activation below.",
            "test_errata.py::test_weight_gradient_pairs_the_delta_above_with_the_activation_below"),
    Erratum("001", "h names the pre-activation and f the activation, where seed 000 says a and h.",
            "The code follows seed 000 (a, h) everywhere, the literal backend too; SYMBOLS maps them.",
            "test_errata.py::test_the_symbol_table_covers_every_note"),
    Erratum("003", "'the sensitivity of the i-th datapoint at node j' for delta_nj, 'otimes' for the "
                   "element-wise product, and L for a hidden layer in the backpropagation section while L is "
                   "the output layer elsewhere.",
            "delta_nj is sample n's sensitivity at node j; the product is element-wise; the recursion holds "
            "for every hidden layer l.",
            "test_backends_agree.py::test_every_backend_matches_finite_differences"),
    Erratum("004", "dJ/dB = sum_i (1/N) (dJ/dy^(i))^T puts 1/N in the sum over the batch, and its first "
                   "line reads dJ/dx = dJ/dx for the bias; dJ/dw_i sums over j but ends with dJ/dy_j x.",
            "With J a mean over the batch, 1/N is already in each dJ/dy^(i) (seed 003's delta^L = (X^L - Y)/N): "
            "dJ/db = sum_n delta_n, dJ/dw_i = dJ/dy_i x; dividing again gives 1/N^2.",
            "test_errata.py::test_the_batch_mean_divides_by_N_once"),
    Erratum("000", "The row version writes grad_z^(k)(x), grad_d^(k-1)(x) and o_hat = d^(L+1)(x) where its "
                   "input is v.",
            "Functions of v, the row version's input.",
            "test_backends_agree.py::test_scalar_matches_row_and_column_for_every_activation_and_loss"),
)


def errata_lines():
    """The errata as text, one block per erratum."""
    lines = ["Errata of the notes (scalarbp.notation.ERRATA)"]
    for number, erratum in enumerate(ERRATA, start=1):
        lines += [f"{number:>2}. seed {erratum.seed}: {erratum.note}",
                  f"    right: {erratum.correct}",
                  f"    test:  tests/{erratum.test}"]
    return lines
