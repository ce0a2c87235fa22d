"""Bad input is refused with a clear exception before any kernel runs; convertible
input is converted and gives the same answer."""
import numpy as np
import pytest

import scalarbp
from conftest import BACKENDS, problem, spirals_net
from scalarbp.datasets import make_spirals
from scalarbp.optimizers import Momentum


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(sizes=[3]), ValueError, "at least two layer widths"),
    (dict(sizes=[3, 0, 2]), ValueError, "must be positive"),
    (dict(sizes=[3, -1, 2]), ValueError, "must be positive"),
    (dict(sizes=[3, 2.5, 2]), TypeError, "must be integers"),
    (dict(sizes=5), TypeError, "sequence of layer widths"),
    (dict(sizes=[3, 4, 2], hidden="softplus"), ValueError, "unknown hidden activation 'softplus'"),
    (dict(sizes=[3, 4, 4, 2], hidden=["relu"]), ValueError, "list of 2"),
    (dict(sizes=[3, 2], output="relu"), ValueError, "unknown output activation 'relu'"),
    (dict(sizes=[3, 2], loss="hinge"), ValueError, "unknown loss 'hinge'"),
    (dict(sizes=[3, 2], output="identity", loss="cross_entropy"), ValueError, "needs output softmax"),
    (dict(sizes=[3, 2], output="softmax", loss="binary_cross_entropy"), ValueError, "needs output sigmoid"),
    (dict(sizes=[3, 2], l2=-0.1), ValueError, "l2 must be finite and >= 0"),
    (dict(sizes=[3, 2], l2=float("nan")), ValueError, "l2 must be finite"),
    (dict(sizes=[3, 2], l2="big"), TypeError, "l2 must be a real number"),
    (dict(sizes=[3, 2], dtype="float16"), ValueError, "unknown dtype"),
    (dict(sizes=[3, 2], dtype="int32"), ValueError, "unknown dtype"),
])
def test_a_bad_architecture_names_the_problem(kwargs, error, message):
    with pytest.raises(error, match=message):
        scalarbp.MLP(**kwargs)


X_ok = np.ones((4, 3))


@pytest.mark.parametrize("X,Y,error,message", [
    (np.ones((4, 5)), [0, 1, 0, 1], ValueError, "X has 5 features per sample, the network expects 3"),
    (np.ones(3), [0], ValueError, "X must be 2-D"),
    (np.ones((2, 4, 3)), [0, 1], ValueError, "X must be 2-D"),
    (np.ones((0, 3)), [], ValueError, "empty batch"),
    (X_ok, [0, 1, 0], ValueError, "Y has 3 rows but X has 4 samples"),
    (X_ok, [0, 1, 2, 1], ValueError, r"labels must lie in \[0, 2\), got values from 0 to 2"),
    (X_ok, [0, -1, 0, 1], ValueError, r"labels must lie in \[0, 2\)"),
    (X_ok, [0, 0.5, 1, 1], ValueError, "labels must be integers"),
    (X_ok, np.ones((4, 3)), ValueError, "Y has 3 target columns, the network has 2 outputs"),
    (X_ok, np.ones((4, 2, 1)), ValueError, "Y must be labels"),
    (np.where(np.eye(4, 3) > 0, np.nan, 1.0), [0, 1, 0, 1], ValueError, r"X holds NaN or inf \(first at index \(0, 0\)\)"),
    (np.full((4, 3), np.inf), [0, 1, 0, 1], ValueError, "X holds NaN or inf"),
    (X_ok, np.array([[1, 0], [0, 1], [np.nan, 0], [0, 1.0]]), ValueError, "Y holds NaN or inf"),
    (X_ok, np.array([[1, 0], [0, 1], [-1, 2], [0, 1.0]]), ValueError, "targets must be >= 0"),
    (np.array([["a"] * 3] * 4), [0, 1, 0, 1], TypeError, "X must hold real numbers"),
    ([[1, 2, 3], [4, 5]], [0, 1], TypeError, "X must be a numeric array"),
    (X_ok, ["a", "b", "a", "b"], TypeError, "Y must hold real numbers"),
])
def test_bad_data_names_the_problem(X, Y, error, message):
    net = scalarbp.MLP([3, 4, 2])
    for backend in BACKENDS:
        with pytest.raises(error, match=message):
            net.loss_and_grad(X, Y, backend=backend)


def test_binary_cross_entropy_targets_must_be_probabilities():
    net = scalarbp.MLP([3, 2], output="sigmoid")
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        net.loss_and_grad(X_ok, np.full((4, 2), 2.0))


def test_forward_checks_its_input_too():
    net = scalarbp.MLP([3, 4, 2])
    with pytest.raises(ValueError, match="expects 3"):
        net.forward(np.ones((2, 2)))


def test_an_unknown_backend_names_the_choices():
    net = scalarbp.MLP([3, 2])
    with pytest.raises(ValueError, match="unknown backend 'gpu'; expected one of scalar, literal, row, column"):
        net.forward(X_ok, backend="gpu")
    with pytest.raises(ValueError, match="unknown backend"):
        scalarbp.gradcheck(net, X_ok, [0, 1, 0, 1], backend="numpy")


def test_a_replaced_weight_of_the_wrong_shape_is_refused():
    net = scalarbp.MLP([3, 4, 2])
    with pytest.raises(ValueError, match=r"net.weights\[1\] must have shape \(2, 4\), got \(4, 2\)"):
        net.weights[1] = np.ones((4, 2))
    with pytest.raises(ValueError, match="net.biases needs 2 arrays, got 1"):
        net.biases = [np.zeros(4)]
    with pytest.raises(ValueError, match=r"theta has shape \(3,\), expected \(26,\)"):
        net.theta = np.zeros(3)


def test_replaced_and_modified_weights_are_used_by_every_backend():
    net, X, Y = problem([3, 4, 2], N=5)
    W = np.arange(8.0).reshape(2, 4) / 10
    net.weights[1] = W.tolist()     # replaced, as a list
    net.biases[0] += 1.0            # modified in place
    expected = scalarbp.MLP([3, 4, 2])
    expected.theta[...] = net.theta
    assert np.array_equal(expected.weights[1], W)
    for backend in BACKENDS:
        np.testing.assert_allclose(net.forward(X, backend=backend), expected.forward(X, backend="row"), rtol=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
def test_convertible_input_gives_the_same_answer(backend):
    net, X, y = problem([6, 5, 3], N=8)
    X = X.astype(np.float32).astype(np.float64)  # exactly representable in float32
    J, dW, db = net.loss_and_grad(X, y, backend=backend)
    variants = [
        (X.tolist(), y.tolist()),
        (X.astype(np.float32), y.astype(np.int32)),
        (np.asfortranarray(X), y.astype(np.uint8)),
        (np.repeat(X, 2, axis=0)[::2], np.repeat(y, 3)[::3]),           # strided
        (np.repeat(X, 2, axis=1)[:, ::2], y.astype(np.float64)),          # strided, float labels
        (X, np.eye(3)[y]),                                                # one-hot targets
        (X, np.eye(3, dtype=np.int64)[y]),                                # integer one-hot
    ]
    for X2, y2 in variants:
        J2, dW2, db2 = net.loss_and_grad(X2, y2, backend=backend)
        assert J2 == J
        for a, b in zip(dW + db, dW2 + db2):
            assert np.array_equal(a, b)


def test_float32_net_accepts_float64_data_and_returns_float32():
    net, X, y = problem([6, 5, 3], N=8, dtype=np.float32)
    assert net.forward(X).dtype == np.float32
    _, dW, db = net.loss_and_grad(X, y)
    assert {g.dtype for g in dW + db} == {np.dtype(np.float32)}


def test_one_output_unit_takes_a_flat_target_vector():
    net, X, _ = problem([3, 4, 1], output="identity", N=6)
    y = np.linspace(-1, 1, 6)
    assert net.loss_and_grad(X, y)[0] == net.loss_and_grad(X, y[:, None])[0]


# --- numbers and booleans ------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(shuffle="no"), TypeError, "shuffle must be True or False, got 'no'"),
    (dict(early_stopping="yes"), TypeError, "early_stopping must be True or False"),
    (dict(epochs=2.0), TypeError, "epochs must be an integer, got 2.0"),
    (dict(batch_size=True), TypeError, "batch_size must be an integer, got True"),
    (dict(seed=-1), ValueError, "seed must be an integer >= 0"),
    (dict(optimizer=Momentum), TypeError, "unknown optimizer|must be"),
])
def test_fit_refuses_arguments_that_would_be_misread(kwargs, error, message):
    X, y = make_spirals(30, seed=0)
    with pytest.raises((error, ValueError), match=message):
        scalarbp.MLP([2, 3], seed=0).fit(X, y, **kwargs)


def test_string_booleans_in_optimizers_are_refused():
    with pytest.raises(TypeError, match="nesterov must be True or False, got 'no'"):
        Momentum(0.1, nesterov="no")
    with pytest.raises(TypeError, match="centered must be True or False"):
        scalarbp.optimizers.make("rmsprop", 0.01, centered="false")


def test_huge_and_numpy_integer_batch_sizes_work():
    X, y = make_spirals(40, seed=0)
    a, b, c = (scalarbp.MLP([2, 3], seed=0) for _ in range(3))
    a.fit(X, y, epochs=1, batch_size=2 ** 63, seed=0)
    b.fit(X, y, epochs=1, batch_size=np.uint64(80), seed=0)
    c.fit(X, y, epochs=1, batch_size=40, seed=0)
    assert np.array_equal(a.theta, c.theta) and np.array_equal(b.theta, c.theta)


def test_float_labels_too_large_for_int64_are_refused_not_wrapped():
    X, _ = make_spirals(3, seed=0)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\), got values from 0 to 1e\+20"):
        scalarbp.MLP([2, 3]).fit(X[:3], np.array([0.0, 1.0, 1e20]), epochs=1)


def test_a_float32_net_says_when_a_value_is_too_large_for_float32():
    net = scalarbp.MLP([2, 3], dtype="float32")
    with pytest.raises(ValueError, match=r"X holds a value too large for float32 \(1e\+40 at index \(1, 0\)"):
        net.predict(np.array([[0.0, 1.0], [1e40, 2.0]]))


@pytest.mark.parametrize("y, error, message", [
    (np.array(["a", "b", "c", "d"]), TypeError, "must hold real numbers"),
    (np.zeros((4, 5)), ValueError, "Y has 5 target columns, the network has 3 outputs"),
    (np.array([0.5, 1, 2, 0]), ValueError, "labels must be integers"),
    (np.array([0, 1, 2]), ValueError, "Y has 3 rows but X has 4 samples"),
    (np.array([0, 1, 2, 7]), ValueError, r"labels must lie in \[0, 3\)"),
])
def test_score_checks_y_as_fit_does(y, error, message):
    net = scalarbp.MLP([2, 3], seed=0)
    X, _ = make_spirals(4, seed=0)
    with pytest.raises(error, match=message):
        net.score(X[:4], y)


@pytest.mark.parametrize("kwargs,message", [
    (dict(epochs=-1), "epochs must be an integer >= 0"),
    (dict(batch_size=0), "batch_size must be an integer >= 1"),
    (dict(lr=0), "lr must be a positive number"),
    (dict(optimizer="adagrad"), "unknown optimizer 'adagrad'"),
    (dict(backend="gpu"), "unknown backend 'gpu'"),
    (dict(validation_fraction=1.5), r"validation_fraction must lie in \[0, 1\)"),
    (dict(validation_fraction=0.2, validation_data=([[0, 0]], [0])), "not both"),
])
def test_bad_training_options_are_refused(kwargs, message):
    net, X, y = spirals_net()
    with pytest.raises(ValueError, match=message):
        net.fit(X, y, **kwargs)
