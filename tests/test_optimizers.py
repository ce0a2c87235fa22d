"""Every optimiser follows PyTorch's update formulas and defaults, worked by hand; each is
selectable by name in fit, the command line and the estimators; and adding one did not
touch the compiled interface the others share."""
import math

import numpy as np
import pytest

import scalarbp
from scalarbp.cli import main
from scalarbp.datasets import make_spirals
from scalarbp.optimizers import OPTIMIZERS, SGD, Adam, AdamW, Momentum, RMSprop, make


def steps(opt, theta, grads):
    theta = np.array(theta, dtype=np.float64)
    for g in grads:
        opt.step(theta, np.array(g, dtype=np.float64))
    return theta


def test_rmsprop_two_steps_worked_by_hand():
    # lr 0.01, alpha 0.99, eps 1e-8 (PyTorch's defaults but lr); theta 0.5, g = 0.2 then -0.1:
    # s1 = 0.01 * 0.2^2 = 0.0004;  theta1 = 0.5 - 0.01 * 0.2 / (sqrt(0.0004) + 1e-8) = 0.40000004999997507
    # s2 = 0.99 * 0.0004 + 0.01 * 0.01 = 0.000496;  theta2 = theta1 + 0.01 * 0.1 / (0.022271057... + 1e-8)
    opt = RMSprop(0.01)
    assert opt.hyper == {"alpha": 0.99, "eps": 1e-8, "momentum": 0.0, "centered": False}
    theta = np.array([0.5])
    opt.step(theta, np.array([0.2]))
    assert theta[0] == pytest.approx(0.40000004999997507, rel=1e-15)
    assert opt.state["square_avg"][0] == pytest.approx(0.0004, rel=1e-15)
    opt.step(theta, np.array([-0.1]))
    assert theta[0] == pytest.approx(0.4449013553453875, rel=1e-15)
    assert opt.state_names == ("square_avg",)


def rmsprop_by_the_formulas(theta, grads, lr, alpha=0.99, eps=1e-8, momentum=0.0, centered=False):
    """torch.optim.RMSprop's algorithm, transcribed for one float."""
    square = mean = buf = 0.0
    for g in grads:
        square = alpha * square + (1 - alpha) * (g * g)
        if centered:
            mean = mean + (1 - alpha) * (g - mean)  # torch: grad_avg.lerp_(grad, 1 - alpha)
            avg = math.sqrt(square - mean * mean) + eps
        else:
            avg = math.sqrt(square) + eps
        if momentum > 0:
            buf = momentum * buf + g / avg
            theta -= lr * buf
        else:
            theta -= lr * g / avg
    return theta


@pytest.mark.parametrize("options", [dict(momentum=0.9), dict(centered=True), dict(momentum=0.5, centered=True)])
def test_rmsprop_momentum_and_centered_follow_the_formulas(options):
    grads = [0.2, -0.1, 0.35, 0.05]
    opt = RMSprop(0.01, **options)
    theta = steps(opt, [0.5], [[g] for g in grads])
    assert theta[0] == pytest.approx(rmsprop_by_the_formulas(0.5, grads, 0.01, **options), rel=1e-14)
    assert ("momentum_buffer" in opt.state) == bool(options.get("momentum"))
    assert ("grad_avg" in opt.state) == bool(options.get("centered"))


def test_adamw_two_steps_worked_by_hand():
    # lr 0.001, betas 0.9 / 0.999, eps 1e-8, weight_decay 0.01 (PyTorch's defaults); theta 0.5, g = 0.2:
    # decay: 0.5 (1 - 0.001 * 0.01) = 0.499995; m = 0.02, v = 0.00004;
    # theta1 = 0.499995 - 0.001 / 0.1 * 0.02 / (sqrt(0.00004 / 0.001) + 1e-8) = 0.49899500005
    opt = AdamW()
    assert opt.lr == 0.001 and opt.hyper == {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01}
    theta = np.array([0.5])
    opt.step(theta, np.array([0.2]))
    assert theta[0] == pytest.approx(0.49899500005, rel=1e-14)
    opt.step(theta, np.array([-0.1]))  # m = 0.008, v = 4.996e-05 at t = 2
    assert theta[0] == pytest.approx(0.4987236730771863, rel=1e-14)
    assert opt.state["m"][0] == pytest.approx(0.008, rel=1e-14)


def test_adamw_rounds_the_decay_on_its_own_as_torchs_mul_then_addcdiv():
    # PyTorch: theta.mul_(1 - lr wd), then theta.addcdiv_(m, denom, -lr / (1 - b1^t)): two
    # roundings.  NumPy's element-wise operations below round each one; a compiled loop that
    # fused the decay's product into the subtraction would differ in the last bit somewhere.
    rng = np.random.default_rng(0)
    theta0, g = rng.normal(size=4096), rng.normal(size=4096)
    opt = AdamW(0.3, weight_decay=0.7)
    theta = theta0.copy()
    opt.step(theta, g)
    m, v = (1 - 0.9) * g, (1 - 0.999) * g * g  # (the first step, from zero moments)
    denom = np.sqrt(v / (1 - 0.999)) + 1e-8
    expected = theta0 * (1 - 0.3 * 0.7) - (0.3 / (1 - 0.9)) * m / denom
    assert np.array_equal(theta, expected)


def test_adamw_without_weight_decay_is_adam():
    grads = np.random.default_rng(0).normal(size=(4, 6))
    theta0 = np.random.default_rng(1).normal(size=6)
    assert np.array_equal(steps(AdamW(0.01, weight_decay=0.0), theta0, grads), steps(make("adam", 0.01), theta0, grads))


@pytest.mark.parametrize("name,options", [("rmsprop", {}), ("rmsprop", dict(momentum=0.9, centered=True)),
                                          ("adamw", {}), ("adamw", dict(weight_decay=0.1))])
def test_new_optimizers_match_torch_optim(name, options):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    theta0, grads = rng.normal(size=7), rng.normal(size=(6, 7))
    ours = steps(make(name, 0.01, **options), theta0, grads)
    p = torch.nn.Parameter(torch.tensor(theta0))
    cls = {"rmsprop": torch.optim.RMSprop, "adamw": torch.optim.AdamW}[name]
    opt = cls([p], lr=0.01, **options)
    for g in grads:
        p.grad = torch.tensor(g)
        opt.step()
    np.testing.assert_allclose(ours, p.detach().numpy(), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_trains_by_name_in_float32_and_float64(name):
    for dtype in ("float32", "float64"):
        X, y = make_spirals(120, seed=0)
        net = scalarbp.MLP([2, 16, 3], dtype=dtype, seed=0)
        history = net.fit(X, y, epochs=15, batch_size=16, lr=0.01, optimizer=name, seed=0)
        assert history.loss[-1] < history.loss[0], (name, dtype)
        assert net.optimizer.name == name and net.optimizer.t == 15 * 8


@pytest.mark.parametrize("argv", [["--optimizer", "rmsprop", "--centered", "--momentum", "0.5", "--lr", "0.001"],
                                  ["--optimizer", "adamw", "--weight-decay", "0.05"]])
def test_the_command_line_trains_with_the_new_optimizers(capsys, argv):
    assert main(["train", "--epochs", "2", "--quiet", *argv]) == 0
    out = capsys.readouterr().out
    assert "centered=True" in out or "weight_decay=0.05" in out
    assert float(out.split("test accuracy:")[1]) > 0.8


def test_the_command_line_refuses_options_an_optimizer_does_not_take(capsys):
    assert main(["train", "--optimizer", "adam", "--centered", "--epochs", "1"]) == 1
    assert "--optimizer adam takes no --centered" in capsys.readouterr().err


def test_the_estimators_take_the_new_optimizers_by_name():
    pytest.importorskip("sklearn")
    from scalarbp.sklearn import ScalarMLPClassifier

    X, y = make_spirals(90, seed=1)
    for name in ("rmsprop", "adamw"):
        model = ScalarMLPClassifier(hidden_layer_sizes=(12,), solver=name, learning_rate_init=0.01, max_iter=100,
                                    n_iter_no_change=100, random_state=0).fit(X, y)  # (90 samples: one step an epoch)
        assert model.net_.optimizer.name == name and model.score(X, y) > 0.5


def test_optimizers_follow_pytorchs_formulas():
    rng = np.random.default_rng(0)
    theta0, grads = rng.normal(size=5), rng.normal(size=(3, 5))
    lr, mu, b1, b2, eps = 0.1, 0.9, 0.9, 0.999, 1e-8
    expected = {"sgd": theta0.copy(), "momentum": theta0.copy(), "nesterov": theta0.copy(), "adam": theta0.copy()}
    v = np.zeros(5)
    m1, m2 = np.zeros(5), np.zeros(5)
    for t, g in enumerate(grads, start=1):
        expected["sgd"] -= lr * g
        v = mu * v + g
        expected["momentum"] -= lr * v
        expected["nesterov"] -= lr * (g + mu * v)
        m1, m2 = b1 * m1 + (1 - b1) * g, b2 * m2 + (1 - b2) * g * g
        expected["adam"] -= lr / (1 - b1 ** t) * m1 / (np.sqrt(m2 / (1 - b2 ** t)) + eps)
    optimizers = {"sgd": SGD(lr), "momentum": Momentum(lr, momentum=mu), "nesterov": Momentum(lr, nesterov=True),
                  "adam": Adam(lr)}
    for name, opt in optimizers.items():
        theta = theta0.copy()
        for g in grads:
            opt.step(theta, g)
        np.testing.assert_allclose(theta, expected[name], rtol=1e-12, err_msg=name)


def test_bad_optimizer_hyperparameters_are_refused():
    with pytest.raises(ValueError, match=r"momentum must lie in \[0, 1\)"):
        Momentum(0.1, momentum=1.5)
    with pytest.raises(ValueError, match="unknown adam option"):
        Adam(0.1, betas=(0.9, 0.99))
