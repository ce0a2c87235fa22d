"""The benchmark harness, apart from the core: timings side by side with PyTorch, JAX and
scikit-learn in one process (:mod:`.timing`, what ``scalarbp bench`` runs) and the
profiling runs' cases and measurements (:mod:`.runs`, what ``scripts/bench.py`` prints)."""
