"""Model files: round trips, resumed training, atomic saves, and hostile files."""
import json
import os
import pickle
import stat
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import scalarbp
from scalarbp.datasets import Standardizer, make_spirals
from scalarbp.persistence import ModelFileError


def trained(optimizer="adam", epochs=2, **kw):
    X, y = make_spirals(200, seed=0)
    net = scalarbp.MLP([2, 16, 8, 3], hidden=["tanh", "relu"], l2=0.001, seed=0, **kw)
    net.standardizer = Standardizer().fit(X)
    net.fit(X, y, epochs=epochs, lr=0.01, optimizer=optimizer, seed=5)
    return net, X, y


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_save_and_load_round_trip_everything(tmp_path, dtype):
    net, X, _ = trained(dtype=dtype)
    path = tmp_path / "model.npz"
    net.save(path)
    back = scalarbp.MLP.load(path)
    assert repr(back) == repr(net)
    assert back.theta.dtype == net.dtype and np.array_equal(back.theta, net.theta)
    assert back.epochs_trained == 2
    assert back.optimizer.name == "adam" and back.optimizer.t == net.optimizer.t
    for key in ("m", "v"):
        assert np.array_equal(back.optimizer.state[key], net.optimizer.state[key])
    np.testing.assert_array_equal(back.standardizer.mean, net.standardizer.mean)
    np.testing.assert_array_equal(back.predict_proba(X), net.predict_proba(X))


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam", "adamw", "rmsprop"])
def test_resumed_training_equals_uninterrupted_training(tmp_path, optimizer):
    straight, X, y = trained(optimizer, epochs=4)
    first, _, _ = trained(optimizer, epochs=2)
    first.save(tmp_path / "half.npz")
    resumed = scalarbp.MLP.load(tmp_path / "half.npz")
    resumed.fit(X, y, epochs=2, lr=0.01, optimizer=optimizer, seed=5)
    assert np.array_equal(resumed.theta, straight.theta)


def test_a_centered_rmsprop_with_momentum_resumes_with_all_three_states(tmp_path):
    from scalarbp.datasets import make_spirals
    from scalarbp.optimizers import RMSprop

    X, y = make_spirals(80, seed=2)
    nets = [scalarbp.MLP([2, 8, 3], seed=1) for _ in range(2)]
    nets[0].fit(X, y, epochs=4, optimizer=RMSprop(0.01, momentum=0.5, centered=True), seed=3)
    nets[1].fit(X, y, epochs=2, optimizer=RMSprop(0.01, momentum=0.5, centered=True), seed=3)
    nets[1].save(tmp_path / "rms.npz")
    back = scalarbp.MLP.load(tmp_path / "rms.npz")
    assert set(back.optimizer.state) == {"square_avg", "momentum_buffer", "grad_avg"}
    back.fit(X, y, epochs=2, optimizer="rmsprop", lr=0.01, seed=3)
    assert np.array_equal(back.theta, nets[0].theta)


def test_a_pickled_and_unpickled_net_keeps_its_views(tmp_path):
    net, X, _ = trained()
    clone = pickle.loads(pickle.dumps(net))
    clone.weights[0][0, 0] += 1.0
    assert clone.theta[0] == net.theta[0] + 1.0
    assert not np.array_equal(clone.predict_proba(X), net.predict_proba(X))


def test_a_failed_save_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    net, _, _ = trained()
    path = tmp_path / "model.npz"
    net.save(path)
    before = path.read_bytes()

    def broken_savez(file, **arrays):
        file.write(b"PK\x03\x04 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    net.weights[0][...] = 0
    with pytest.raises(OSError, match="disk full"):
        net.save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.npz"]  # no temporary file left behind


def good_arrays(tmp_path):
    net, _, _ = trained()
    net.save(tmp_path / "good.npz")
    with np.load(tmp_path / "good.npz") as data:
        return {k: data[k] for k in data.files}


def write_npz(path, arrays):
    np.savez(path, **arrays)
    return path


def hostile_files(tmp_path):
    """(name, path, message) for each damaged, foreign or malicious file."""
    arrays = good_arrays(tmp_path)
    good = (tmp_path / "good.npz").read_bytes()
    config = json.loads(str(arrays["config"]))
    cases = []

    def case(name, message, content=None, **changes):
        path = tmp_path / f"{name}.npz"
        if content is not None:
            path.write_bytes(content)
        else:
            write_npz(path, {**{k: v for k, v in arrays.items() if k not in changes or changes[k] is not None},
                             **{k: v for k, v in changes.items() if v is not None}})
        cases.append((name, path, message))

    case("empty", "not a scalarbp model file \\(empty\\)", content=b"")
    case("truncated", "not a scalarbp model file|damaged", content=good[: len(good) // 2])
    case("text", "not an .npz archive", content=b"hello, world\n")
    case("pickle", "pickled data, which is never loaded", content=pickle.dumps({"theta": [1, 2]}))
    npy = tmp_path / "array.npy"
    np.save(npy, np.zeros(3))
    case("npy", "an .npy array", content=npy.read_bytes())
    path = tmp_path / "foreign.npz"
    write_npz(path, {"X": np.zeros((3, 2)), "y": np.zeros(3)})
    cases.append(("foreign", path, "no 'config' and 'theta' arrays"))
    case("object", "damaged model file|Object arrays", theta=np.array([{"a": 1}, None], dtype=object))
    case("bad-json", "not valid JSON", config=np.array("{sizes: [2, 3"))
    case("config-not-string", "'config' must be a JSON string", config=np.arange(3))
    case("wrong-format", "format 'something-else'", config=np.array(json.dumps({**config, "format": "something-else"})))
    case("future-version", "version 99; this scalarbp reads version 1", config=np.array(json.dumps({**config, "version": 99})))
    case("short-theta", r"array 'theta' has shape \(10,\)", theta=np.zeros(10))
    case("theta-dtype", "needs .* and float64", theta=arrays["theta"].astype(np.float32))
    case("nan-theta", "'theta' holds NaN or inf", theta=np.full_like(arrays["theta"], np.nan))
    case("bad-sizes", "inconsistent model file .*must be positive", config=np.array(json.dumps({**config, "sizes": [2, 0, 8, 3]})))
    case("bad-activation", "unknown hidden activation", config=np.array(json.dumps({**config, "hidden": ["swish", "relu"]})))
    case("missing-key", "'config' lacks dtype", config=np.array(json.dumps({k: v for k, v in config.items() if k != "dtype"})))
    case("bad-optimizer-state", r"'optimizer.m' has shape \(3,\)", **{"optimizer.m": np.zeros(3)})
    case("bad-epochs", r"epochs_trained must be an integer in \[0, ", config=np.array(json.dumps({**config, "epochs_trained": -2})))
    case("bad-standardizer", "standardizer.scale", **{"standardizer.scale": np.zeros(5)})
    return cases


def test_every_hostile_file_raises_a_clear_error(tmp_path):
    cases = hostile_files(tmp_path)
    assert len(cases) == 20
    for name, path, message in cases:
        with pytest.raises(ModelFileError, match=message):
            scalarbp.MLP.load(path)


def test_loading_never_unpickles(tmp_path, monkeypatch):
    """An object array inside the archive is refused before pickle could run."""
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("pickle.loads was called"))
    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("pickle.load was called"))
    arrays = good_arrays(tmp_path)
    path = write_npz(tmp_path / "evil.npz", {**arrays, "theta": np.array([object()], dtype=object)})
    with pytest.raises(ModelFileError):
        scalarbp.MLP.load(path)


def test_a_missing_file_raises_a_model_file_error_naming_it(tmp_path):
    with pytest.raises(ModelFileError, match="nothing.npz: no such file"):
        scalarbp.MLP.load(tmp_path / "nothing.npz")


def test_model_file_is_a_plain_npz(tmp_path):
    net, _, _ = trained()
    net.save(tmp_path / "m.npz")
    with zipfile.ZipFile(tmp_path / "m.npz") as archive:
        names = set(archive.namelist())
    assert names == {"config.npy", "theta.npy", "optimizer.m.npy", "optimizer.v.npy",
                     "standardizer.mean.npy", "standardizer.scale.npy"}


def rewrite(tmp_path, name, arrays, config=None, extra=None):
    """A copy of a good model file with its config replaced and extra raw members added."""
    path = tmp_path / f"{name}.npz"
    arrays = dict(arrays)
    if config is not None:
        arrays["config"] = np.array(config if isinstance(config, str) else json.dumps(config))
    write_npz(path, arrays)
    if extra:
        with zipfile.ZipFile(path, "a") as archive:
            for member, (data, method) in extra.items():
                archive.writestr(zipfile.ZipInfo(member), data, compress_type=method)
    return path


def npy_bytes(array):
    import io
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_a_compressed_member_is_never_expanded_beyond_what_the_configuration_describes(tmp_path):
    """A deflated 256 MiB member (a 'zip bomb') is refused before it is decompressed."""
    import tracemalloc
    arrays = good_arrays(tmp_path)
    path = write_npz(tmp_path / "bomb.npz", arrays)
    header = npy_bytes(np.zeros(0))[:128]
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("junk.npy", "w", force_zip64=True) as member:
            member.write(header)
            zeros = bytes(1 << 20)
            for _ in range(256):
                member.write(zeros)
    assert path.stat().st_size < 2 << 20
    tracemalloc.start()
    with pytest.raises(ModelFileError, match="unknown member"):
        scalarbp.MLP.load(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 16 << 20


def npy_header(shape, descr="<f8"):
    import io
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def test_a_header_claiming_more_than_the_file_holds_is_refused_before_allocating(tmp_path):
    """Sizes promising 2**40 parameters and a theta header that agrees, with no data behind."""
    import tracemalloc
    config = json.loads(str(good_arrays(tmp_path)["config"]))
    config.update(sizes=[2 ** 20, 2 ** 20, 3], hidden=["relu"], optimizer=None)
    P = 2 ** 40 + 2 ** 20 + 3 * 2 ** 20 + 3
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.npy", npy_bytes(np.array(json.dumps(config))))
        archive.writestr("theta.npy", npy_header((P,)) + bytes(64))
    tracemalloc.start()
    with pytest.raises(ModelFileError, match="'theta' is truncated"):
        scalarbp.MLP.load(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 16 << 20


def more_hostile_files(tmp_path):
    """(name, path, message): what an attack found getting through as the wrong error, or
    loading and failing later."""
    arrays = good_arrays(tmp_path)
    config = json.loads(str(arrays["config"]))
    cases = []

    def case(name, message, **kw):
        cases.append((name, rewrite(tmp_path, name, kw.pop("arrays", arrays), **kw), message))

    deep = "[" * 50000 + "]" * 50000
    case("deep-json", "not valid JSON", config=deep)
    long_integer = json.dumps(config).replace('"l2": 0.001', '"l2": ' + "9" * 5000)
    case("long-integer", "not valid JSON|integer", config=long_integer)
    case("huge-step-count", "optimizer step count must be an integer in",
         config={**config, "optimizer": {**config["optimizer"], "t": 10 ** 400}})
    case("string-boolean", "nesterov must be True or False",
         config={**config, "optimizer": {"name": "momentum", "lr": 0.1, "t": 3,
                                         "hyper": {"momentum": 0.9, "nesterov": "false"}}},
         arrays={**{k: v for k, v in arrays.items() if not k.startswith("optimizer.")},
                 "optimizer.velocity": arrays["optimizer.m"]})
    case("negative-second-moment", "'v' holds negative values",
         arrays={**arrays, "optimizer.v": -np.abs(arrays["optimizer.v"]) - 1})
    case("subnormal-scale", "not subnormal",
         arrays={**arrays, "standardizer.scale": np.full_like(arrays["standardizer.scale"], 1e-320)})
    case("scale-without-mean", "needs both",
         arrays={k: v for k, v in arrays.items() if k != "standardizer.mean"})
    case("unknown-member", "unknown member.*evil", arrays={**arrays, "evil": np.zeros(3)})
    case("unknown-key", "unknown key.*plugin", config={**config, "plugin": "os.system"})
    case("zero-d-theta", r"array 'theta' has shape \(\)", arrays={**arrays, "theta": np.array(1.0)})
    case("big-endian-theta", "dtype >f8", arrays={**arrays, "theta": arrays["theta"].astype(">f8")})
    case("bool-sizes", "layer widths must be integers", config={**config, "sizes": [2, True, 8, 3]})
    case("float-l2", "l2 must be finite", config=json.dumps(config).replace('"l2": 0.001', '"l2": NaN'))
    case("truncated-npy-header", "damaged model file",
         extra={"theta.npy": (b"\x93NUMPY\x01\x00\x76\x00{'descr': '<f8', 'fortran_order': False, 'shape': (", 0)},
         arrays={k: v for k, v in arrays.items() if k != "theta"})
    case("bzip2-member", "unsupported compression method",
         extra={"theta.npy": (npy_bytes(arrays["theta"]), zipfile.ZIP_BZIP2)},
         arrays={k: v for k, v in arrays.items() if k != "theta"})
    case("classes-unsorted", "distinct and sorted", arrays={**arrays, "classes": np.array([5, 3, 9])})
    return cases


def test_more_hostile_files_each_raise_a_model_file_error_naming_the_problem(tmp_path):
    for name, path, message in more_hostile_files(tmp_path):
        with pytest.raises(ModelFileError, match=message) as info:
            scalarbp.MLP.load(path)
        assert str(path) in str(info.value), name


def test_an_encrypted_member_is_refused(tmp_path):
    path = tmp_path / "good.npz"
    good_arrays(tmp_path)
    raw = bytearray(path.read_bytes())
    at = raw.find(b"PK\x01\x02")  # the central directory's first entry: set its 'encrypted' flag
    raw[at + 8] |= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(ModelFileError, match="encrypted"):
        scalarbp.MLP.load(path)


# --- saving -----------------------------------------------------------------------------------


def small_net():
    net = scalarbp.MLP([2, 3], seed=0)
    X, y = make_spirals(30, seed=0)
    net.fit(X, y, epochs=1, seed=0, optimizer="adam")
    return net


def test_saving_through_a_symlink_replaces_its_target(tmp_path):
    target = tmp_path / "real.npz"
    target.write_bytes(b"old")
    link = tmp_path / "link.npz"
    link.symlink_to(target)
    small_net().save(link)
    assert link.is_symlink() and scalarbp.MLP.load(target).sizes == (2, 3)


def test_saving_over_a_non_regular_file_or_a_read_only_file_is_refused(tmp_path):
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        small_net().save(fifo)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    locked = tmp_path / "locked.npz"
    locked.write_bytes(b"keep me")
    locked.chmod(0o444)
    with pytest.raises(PermissionError, match="read-only"):
        small_net().save(locked)
    assert locked.read_bytes() == b"keep me"


def test_a_new_file_honours_the_umask_and_a_replaced_one_keeps_its_mode(tmp_path):
    old = os.umask(0o027)
    try:
        small_net().save(tmp_path / "new.npz")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "new.npz").st_mode) == 0o640
    (tmp_path / "new.npz").chmod(0o604)
    small_net().save(tmp_path / "new.npz")
    assert stat.S_IMODE(os.stat(tmp_path / "new.npz").st_mode) == 0o604


def test_temporary_files_of_killed_saves_are_removed_by_the_next_save(tmp_path):
    from scalarbp.fileio import _process_id
    abandoned = tmp_path / ".model.npz.999999999-12345.abc123.tmp"  # no such process
    abandoned.write_bytes(b"x" * 1000)
    live = tmp_path / f".model.npz.{_process_id()}.def456.tmp"  # this process: maybe mid-save
    live.write_bytes(b"y")
    other = tmp_path / ".other.npz.999999999-12345.abc.tmp"  # another file's: not ours to judge
    other.write_bytes(b"z")
    small_net().save(tmp_path / "model.npz")
    assert not abandoned.exists() and live.exists() and other.exists()


def test_kill_9_during_a_save_leaves_the_old_file_and_a_temporary_the_next_save_removes(tmp_path):
    path = tmp_path / "model.npz"
    small_net().save(path)
    before = path.read_bytes()
    code = ("import sys, numpy as np, scalarbp\n"
            "def stall(file, **arrays):\n"
            "    file.write(b'PK partial'); file.flush(); print('writing', flush=True); import time; time.sleep(60)\n"
            "np.savez = stall\n"
            "scalarbp.MLP([2, 3]).save(sys.argv[1])\n")
    child = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "writing"
    child.kill()
    child.wait()
    assert path.read_bytes() == before
    assert len([p for p in os.listdir(tmp_path) if p.endswith(".tmp")]) == 1
    small_net().save(path)
    assert os.listdir(tmp_path) == ["model.npz"]
