"""Fuzzing the readers: whatever the bytes, ``MLP.load`` raises only ModelFileError and the
data loaders only DataError (or return data), each naming the file.

Hypothesis mutates good files (flipped, overwritten, inserted and cut bytes) and writes
configurations of arbitrary JSON.  Where atheris is installed, ``python tests/test_fuzz.py
--atheris`` runs the same checks under coverage-guided fuzzing for longer.
"""
import gzip
import io
import json
import sys

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

import scalarbp  # noqa: E402
from scalarbp.datasets import DataError, files  # noqa: E402
from scalarbp.persistence import ModelFileError  # noqa: E402

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def model_bytes():
    """A small model file with every kind of member: optimiser state, standardizer, classes."""
    import os
    import tempfile
    net = scalarbp.MLP([3, 4, 2], seed=0)
    net.optimizer = scalarbp.optimizers.make("adam", 0.01)
    net.optimizer.init_state(net.theta)
    net.standardizer = scalarbp.datasets.Standardizer.from_arrays(np.zeros(3), np.ones(3))
    net.classes = [3, 8]
    with tempfile.TemporaryDirectory() as folder:
        net.save(os.path.join(folder, "m.npz"))
        with open(os.path.join(folder, "m.npz"), "rb") as file:
            return file.read()


GOOD_MODEL = model_bytes()
GOOD_IDX = bytes([0, 0, 0x08, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2]) + bytes(range(8))
GOOD_CSV = b"a,b,label\n1,2,0\n3.5,4,1\n-1e3,0,0\n"


def mutations(good):
    """Edits of ``good``: each a list of (position, replacement bytes, bytes removed)."""
    edit = st.tuples(st.integers(0, len(good)), st.binary(min_size=0, max_size=8), st.integers(0, 8))
    return st.lists(edit, min_size=1, max_size=6)


def mutate(good, edits):
    data = bytearray(good)
    for at, new, cut in edits:
        at = min(at, len(data))
        data[at:at + cut] = new
    return bytes(data)


@SETTINGS
@given(edits=mutations(GOOD_MODEL))
def test_a_mutated_model_file_loads_or_raises_a_model_file_error(tmp_path, edits):
    path = tmp_path / "m.npz"
    path.write_bytes(mutate(GOOD_MODEL, edits))
    try:
        scalarbp.MLP.load(path)
    except ModelFileError as err:
        assert str(path) in str(err)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=20)
CONFIG = json.loads(str(np.load(io.BytesIO(GOOD_MODEL))["config"]))


@SETTINGS
@given(key=st.sampled_from(sorted(CONFIG)), value=JSON)
def test_a_model_file_with_any_json_in_any_field_loads_or_raises_a_model_file_error(tmp_path, key, value):
    with np.load(io.BytesIO(GOOD_MODEL)) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["config"] = np.array(json.dumps({**CONFIG, key: value}))
    path = tmp_path / "m.npz"
    np.savez(path, **arrays)
    try:
        scalarbp.MLP.load(path)
    except ModelFileError as err:
        assert str(path) in str(err)


@SETTINGS
@given(edits=mutations(GOOD_IDX), compressed=st.booleans())
def test_a_mutated_idx_file_loads_or_raises_a_data_error(tmp_path, edits, compressed):
    data = mutate(gzip.compress(GOOD_IDX) if compressed else GOOD_IDX, edits)
    path = tmp_path / ("x-idx3-ubyte.gz" if compressed else "x-idx3-ubyte")
    path.write_bytes(data)
    try:
        files.load_idx(path)
    except DataError as err:
        assert str(path) in str(err)


@SETTINGS
@given(edits=mutations(GOOD_CSV), header=st.sampled_from([None, True, False]),
       label_column=st.sampled_from([-1, 0, 2, 5, "label", "zz", None]))
def test_a_mutated_csv_file_loads_or_raises_a_data_error(tmp_path, edits, header, label_column):
    path = tmp_path / "d.csv"
    path.write_bytes(mutate(GOOD_CSV, edits))
    try:
        files.load_csv(path, header=header, label_column=label_column)
    except DataError as err:
        assert str(path) in str(err)


def _atheris():  # pragma: no cover - a longer run by hand, where atheris is installed
    import atheris
    import tempfile

    folder = tempfile.mkdtemp()

    def one(data):
        for name, load, error in (("m.npz", scalarbp.MLP.load, ModelFileError), ("x-idx3-ubyte", files.load_idx,
                                  DataError), ("d.csv", files.load_csv, DataError)):
            path = f"{folder}/{name}"
            with open(path, "wb") as file:
                file.write(data)
            try:
                load(path)
            except error:
                pass

    atheris.Setup(sys.argv[:1] + sys.argv[2:], one)
    atheris.Fuzz()


if __name__ == "__main__" and "--atheris" in sys.argv:
    _atheris()
