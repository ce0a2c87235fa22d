#!/usr/bin/env bash
# The GPU checks of the cuda backend, as one script for a lent GPU machine (../shared/GPU.md):
# the device and driver, the cuda tests without the simulator, the GPU benchmark against
# PyTorch CUDA and JAX, and a kernel-by-kernel profile of the slowest case.  Results go to
# $OUT (or ./gpu-results).  Expects NumPy 2.4.4's wheel in .whl/ (numba-cuda 0.30.4 fails
# with NumPy 2.5).
set -uo pipefail
out=${OUT:-gpu-results}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  python3 -c "import numpy, numba, numba_cuda, torch, jax; print('numpy', numpy.__version__, 'numba', numba.__version__,
'numba-cuda', numba_cuda.__version__, 'torch', torch.__version__, 'jax', jax.__version__, jax.devices())"
} 2>&1 | tee "$out/device.txt"
timeout "${TEST_S:-240}" python3 -m pytest -x -q -p no:cacheprovider tests/test_cuda_backend.py -k "${TESTS:-gpu}" \
  2>&1 | tee "$out/tests.txt"
timeout "${BENCH_S:-240}" python3 scripts/bench.py --device cuda --repeats "${REPEATS:-3}" --json "$out/bench.json" \
  2>&1 | tee "$out/bench.txt"
timeout "${PROFILE_S:-90}" python3 scripts/gpu_profile.py --case "${PROFILE_CASE:-big-gpu}" 2>&1 | tee "$out/profile.txt"
