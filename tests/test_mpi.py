"""Data-parallel training over MPI, launched with ``mpiexec`` (skipped without mpi4py).

Each test runs ``tests/runners/mpi_fit.py`` on 1, 2 or 4 ranks: the weights after training
are the same bits on every rank and for every rank count; rank 0 alone checkpoints; a
rank that fails, before or during training, stops every rank with a clear error.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("mpi4py")

import scalarbp as sb  # noqa: E402
from scalarbp.distributed import digest  # noqa: E402

RUN = Path(__file__).parent / "runners" / "mpi_fit.py"
ROOT = RUN.parent.parent
MPIEXEC = shutil.which("mpiexec", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
pytestmark = pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec (pip install mpich)")


def mpiexec(ranks, case, folder, timeout=300):
    """``(exit code, the JSON object of every rank that finished, stderr)``: mpiexec's own
    stderr, then each rank's, one after the other (the runner gives each rank a file)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([MPIEXEC, "-n", str(ranks), sys.executable, str(RUN), case, str(folder)], env=env,
                         capture_output=True, text=True, timeout=timeout)
    outputs = [json.loads(path.read_text()) for path in sorted(Path(folder).glob("rank*.json"))]
    ranks_err = [path.read_text() for path in sorted(Path(folder).glob("rank*.err"))]
    return run.returncode, outputs, "".join([run.stderr, *ranks_err])


def test_weights_are_the_same_bits_on_1_2_and_4_ranks_and_rank_0_alone_checkpoints(tmp_path):
    runs = {}
    for ranks in (1, 2, 4):
        folder = tmp_path / str(ranks)
        folder.mkdir()
        code, outputs, err = mpiexec(ranks, "train", folder)
        assert code == 0, err[-3000:]
        assert [out["rank"] for out in outputs] == list(range(ranks))
        assert [out["saves"] for out in outputs] == [6] + [0] * (ranks - 1)  # 2 fits x 3 epochs, rank 0 only
        for dtype in ("float64", "float32"):
            assert all(out[dtype] == outputs[0][dtype] for out in outputs), (ranks, dtype)
            saved = sb.MLP.load(folder / f"{dtype}.npz")
            assert digest(saved.theta) == outputs[0][dtype]["weights"]
        runs[ranks] = outputs[0]
    assert runs[1]["float64"]["steps"] == 3 * 7
    for ranks in (2, 4):
        assert runs[ranks] == {**runs[1], "rank": 0}, ranks


def test_ranks_with_different_weights_refuse_to_train_together(tmp_path):
    code, _, err = mpiexec(2, "disagree", tmp_path, timeout=120)
    assert code != 0
    assert err.count("ValueError: the MPI ranks disagree on weights") == 2


def test_batches_that_the_leaves_do_not_divide_give_the_same_bits_on_1_2_and_4_ranks(tmp_path):
    runs = []
    for ranks in (1, 2, 4):
        folder = tmp_path / str(ranks)
        folder.mkdir()
        code, outputs, err = mpiexec(ranks, "uneven", folder)
        assert code == 0, err[-3000:]
        assert all(out["float64"] == outputs[0]["float64"] for out in outputs)
        runs.append(outputs[0]["float64"])
    assert runs[0]["steps"] == 3 * 7 and runs[1] == runs[0] and runs[2] == runs[0]


@pytest.mark.parametrize("what", ["validation", "clip_norm", "warmup_steps", "schedule", "data", "targets",
                                  "sample_weights", "standardizer"])
def test_ranks_given_different_data_or_fit_arguments_refuse_to_train_together(tmp_path, what):
    """Each of these let the ranks train apart without a word: rank 1 stopping early on its
    own validation data left rank 0 waiting for ever; the others ended with different
    weights, or a blend of two data sets."""
    code, _, err = mpiexec(2, f"differ-{what}", tmp_path, timeout=120)
    assert code != 0
    assert err.count(f"ValueError: the MPI ranks disagree on {what}") == 2, err[-3000:]


def test_a_rank_that_never_reaches_fit_with_comm_stops_every_rank_instead_of_hanging(tmp_path):
    code, _, err = mpiexec(2, "no-comm", tmp_path, timeout=120)
    assert code != 0
    assert "not every rank reached fit(..., comm=...) within 5 s" in err, err[-3000:]


def test_a_rank_that_fails_before_training_stops_every_rank_with_its_error(tmp_path):
    code, _, err = mpiexec(2, "bad-input", tmp_path, timeout=120)
    assert code != 0
    assert "ValueError: X has 5 features per sample, the network expects 6" in err  # rank 1's own error
    assert "RuntimeError: MPI rank 1 failed before training: ValueError: X has 5 features" in err  # rank 0's


def test_a_rank_that_fails_during_training_stops_every_rank_instead_of_hanging(tmp_path):
    code, outputs, err = mpiexec(2, "fail", tmp_path, timeout=120)
    assert code != 0 and outputs == []
    assert "scalarbp: MPI rank 1 of 2 failed during training; stopping all ranks" in err
    assert "OSError: disk full (a test's failure on rank 1)" in err


def test_ctrl_c_on_one_rank_stops_every_rank_at_the_same_step_with_the_same_weights(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.Popen([MPIEXEC, "-n", "2", sys.executable, str(RUN), "interrupt", str(tmp_path)], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "pid1").exists() and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.3)
        os.kill(int((tmp_path / "pid1").read_text()), signal.SIGINT)  # rank 1 alone
        _, err = run.communicate(timeout=60)  # (without agreeing, rank 0 would wait for rank 1 for ever)
    finally:
        run.kill()
    outputs = [json.loads(path.read_text()) for path in sorted(tmp_path.glob("rank*.json"))]
    assert len(outputs) == 2, err[-3000:]
    first, second = (out["interrupted"] for out in outputs)
    assert first == second
    assert first[3].startswith("training interrupted at")
