"""The cuda backend: against the row reference and the scalar training loop, in Numba's
CUDA simulator (tiny shapes: it is slow) or on a real GPU when one is present; and its
one-line error where there is no GPU."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import scalarbp
from scalarbp.cli import main

RUN = Path(__file__).parent / "runners" / "cuda_simulator.py"
PTX = Path(__file__).parent / "runners" / "cuda_ptx.py"


def gpu_present():
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return False
    from numba import cuda

    return cuda.is_available()


def child_env(simulator):
    """The environment of a child Python: this checkout importable, the simulator on or off."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    if simulator:
        # One CPU thread: the simulator runs each CUDA thread as a Python thread and polls
        # them, and the scalar backend's OpenMP workers spinning after each parallel loop
        # took the cores from it (its DP-SGD runs: 45 s on two threads, 2.5 s on one).
        env["NUMBA_ENABLE_CUDASIM"], env["NUMBA_NUM_THREADS"] = "1", "1"
    env["PYTHONPATH"] = os.pathsep.join([str(RUN.parents[1]), env.get("PYTHONPATH", "")])
    return env


def run_checks(simulator):
    out = subprocess.run([sys.executable, str(RUN)], env=child_env(simulator), capture_output=True, text=True,
                         timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def check(results):
    assert len(results["agreement"]) == 11  # (5 hidden activations with softmax, 6 other output/loss pairs)
    for name, (J, grads, forward) in results["agreement"].items():
        assert J < 1e-12 and grads < 1e-12 and forward < 1e-12, name
    assert results["blocks"] < 1e-12
    J32, grads32 = results["float32"]
    assert J32 < 1e-5 and grads32 < 1e-4
    assert max(results["per_example"]) < 1e-12 and results["dp_sgd"] < 1e-12
    training = results["training"]
    assert training["weights"] < 1e-12 and training["losses"] < 1e-12 and training["loss_falls"]
    assert training["steps"][0] == training["steps"][1] == 9
    assert set(results["optimizers"]) == {"momentum", "adamw", "rmsprop"}
    assert all(difference < 1e-12 for difference in results["optimizers"].values()), results["optimizers"]
    diverged = results["diverged"]
    assert "diverged at epoch" in diverged["message"]
    assert diverged["finite"] and diverged["same_as_twin"]
    overflow = results["update_overflow"]
    assert "the update gave NaN or inf weights" in overflow["message"]
    assert overflow["finite"] and overflow["same_as_cpu"]


def test_cuda_backend_matches_the_references_in_the_simulator():
    check(run_checks(simulator=True))


@pytest.mark.skipif(not gpu_present(), reason="no CUDA GPU on this machine")
def test_cuda_backend_matches_the_references_on_a_gpu():
    check(run_checks(simulator=False))


def test_every_cuda_kernel_compiles_for_an_h100():
    """PTX for sm_90 without a GPU, where numba-cuda, NVVM and NVRTC are installed."""
    out = subprocess.run([sys.executable, str(PTX)], env=child_env(False), capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    if out.stdout.startswith("SKIP"):
        pytest.skip(out.stdout.strip())
    assert out.stdout.count(" ok") == 20


@pytest.mark.skipif(gpu_present(), reason="a CUDA GPU is present")
def test_without_a_gpu_the_cuda_backend_says_what_is_missing(capsys):
    net = scalarbp.MLP([3, 2])
    with pytest.raises(RuntimeError, match="backend 'cuda' needs an NVIDIA GPU"):
        net.forward(np.ones((1, 3)), backend="cuda")
    assert main(["train", "--backend", "cuda", "--epochs", "1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("scalarbp: error: --backend 'cuda' needs an NVIDIA GPU") and err.count("\n") == 1


def test_nothing_imports_numba_cuda_unless_asked():
    code = "import sys, scalarbp, scalarbp.cli, scalarbp.training; print('numba.cuda' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
