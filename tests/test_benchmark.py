"""The profiling-run machinery (never its timings: tests do not assert on time)."""
import numpy as np

from scalarbp.bench import runs as benchmark, timing
from scalarbp.cli import main


tiny = timing.Case("tiny", (8, 6, 3), 40, 16)


def test_flops_count_forward_weight_gradient_and_delta_sums():
    # layer 1: 8*6 MACs forward + weight gradient; layer 2: 6*3 forward + gradient + delta
    assert tiny.flops() == 2 * 40 * (8 * 6 * 2 + 6 * 3 * 3)
    assert tiny.steps == 3


def test_run_case_times_every_requested_implementation(monkeypatch):
    monkeypatch.setattr(timing, "PAUSE", 0.0)
    times = timing.run_case(tiny, repeats=2, threads=1, competitors=("row", "products"))
    assert set(times) == {"scalarbp", "numpy row", "blas products"}
    assert all(t > 0 for t in times.values())
    times = {**times, "pytorch": 2 * times["scalarbp"], "blas products": times["scalarbp"] / 2}
    lines = timing.table([(tiny, times)], peak=100.0).splitlines()
    assert lines[2].startswith("| tiny | 8-6-3 | 40 | 16 |")
    header = [cell.strip() for cell in lines[0].split("|")]
    row = [cell.strip() for cell in lines[2].split("|")]
    assert row[header.index("scalarbp / PyTorch")] == "0.50"
    assert row[header.index("floor / PyTorch")] == "0.25"


def test_blas_floor_runs_every_product_of_an_epoch(monkeypatch):
    calls = []
    real_dot = np.dot
    monkeypatch.setattr(timing.np, "dot",
                        lambda a, b, out: calls.append((a.shape, b.shape)) or real_dot(a, b, out=out))
    X, _ = timing.data(tiny)
    timing.products_epoch(tiny, X)()
    # 3 steps (batches 16, 16, 8) x (2 forward + 2 weight-gradient + 1 delta sums)
    assert len(calls) == 3 * 5
    assert calls[:5] == [((16, 8), (8, 6)), ((16, 6), (6, 3)), ((3, 16), (16, 6)), ((16, 3), (3, 6)), ((6, 16), (16, 8))]
    assert calls[-5][0] == (8, 8)


def test_phases_split_an_epoch():
    result = benchmark.phases(tiny, repeats=1)
    assert set(result) == {"forward", "backward", "forward+backward", "update"}
    assert result["forward+backward"] > 0


def test_expected_memory_counts_data_parameters_and_buffers():
    parts = benchmark.expected_memory(tiny)
    assert parts["data"] == 40 * 8 * 4 + 40 * 8
    assert parts["parameters"] == (8 * 6 + 6 + 6 * 3 + 3) * 4 == parts["gradient"]
    assert parts["optimizer state"] == 0 and parts["work buffers"] > 0


def test_sweep_covers_batch_depth_width_and_float64():
    names = [case.name for case in benchmark.sweep_cases()]
    assert "batch 1" in names and "batch 1024" in names and "depth 8" in names
    assert "width 2048" in names and "mnist float64" in names


def test_bench_command_prints_a_table(capsys, monkeypatch):
    monkeypatch.setattr(timing, "PAUSE", 0.0)
    monkeypatch.setitem(timing.QUICK_CASES, "digits", timing.Case("digits", (64, 16, 10), 200, 32))
    assert main(["bench", "--cases", "digits", "--repeats", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "| digits | 64-16-10 | 200 | 32 |" in out and np.isfinite(float(out.split("|")[-2].rstrip("% ")))


def test_busy_mode_times_a_quiet_one_thread_epoch_then_epochs_beside_a_job_it_stops(monkeypatch):
    monkeypatch.setattr(timing, "BUSY_JOB", "import time\nwhile True: time.sleep(0.01)\n")
    started = []
    real_popen = timing.subprocess.Popen
    monkeypatch.setattr(timing.subprocess, "Popen", lambda *a, **k: started.append(real_popen(*a, **k)) or started[-1])
    monkeypatch.setattr(timing.time, "sleep", lambda s: None)
    quiet, busy = timing.busy_ratios(tiny, epochs=2)
    assert quiet > 0 and busy > 0
    assert len(started) == 1 and started[0].poll() is not None  # the job was stopped


def test_the_machine_line_names_the_cpu_and_its_vector_instructions():
    line = timing.machine()
    assert "LLVM target" in line and "cores" in line and "Numba" in line
