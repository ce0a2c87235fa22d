"""The embedded digits, the file loaders (good and bad files), synthetic data, preprocessing."""
import gzip
import struct

import numpy as np
import pytest

from scalarbp import datasets
from scalarbp.datasets import DataError, Standardizer, files


def test_digits_are_embedded_with_a_fixed_stratified_split():
    (X, y), (X_test, y_test) = datasets.load_digits()
    assert X.shape == (1438, 64) and X_test.shape == (359, 64)
    assert X.dtype == np.float64 and y.dtype == np.int64
    assert X.min() == 0 and X.max() == 1 and (X * 16 == np.round(X * 16)).all()
    counts, test_counts = np.bincount(y), np.bincount(y_test)
    assert len(counts) == 10 and counts.sum() + test_counts.sum() == 1797
    np.testing.assert_allclose(test_counts / (counts + test_counts), 0.2, atol=0.01)
    (X2, _), _ = datasets.load_digits()
    assert np.array_equal(X, X2)


def idx_bytes(array, type_code=0x08):
    header = struct.pack(">BBBB", 0, 0, type_code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def test_idx_images_and_labels_load_plain_and_gzipped(tmp_path):
    images = np.arange(5 * 3 * 4, dtype=np.uint8).reshape(5, 3, 4)
    labels = np.array([0, 1, 2, 1, 0], np.uint8)
    (tmp_path / "img-idx3-ubyte").write_bytes(idx_bytes(images))
    (tmp_path / "lab-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    X, y = datasets.load(tmp_path / "img-idx3-ubyte", labels=tmp_path / "lab-idx1-ubyte.gz")
    assert X.shape == (5, 12) and np.array_equal(X[1], images[1].ravel())
    assert np.array_equal(y, labels)
    floats = np.linspace(0, 1, 6).reshape(2, 3)
    (tmp_path / "f.idx").write_bytes(idx_bytes(floats, 0x0E))
    assert np.array_equal(datasets.files.read_idx(tmp_path / "f.idx"), floats)


@pytest.mark.parametrize("content,message", [
    (b"\x01\x00\x08\x01" + struct.pack(">I", 2) + b"ab", "first two bytes must be zero"),
    (b"\x00\x00\x07\x01" + struct.pack(">I", 2) + b"ab", "unknown IDX data type 0x07"),
    (b"\x00\x00\x08\x02" + struct.pack(">I", 2), "header truncated"),
    (b"\x00\x00\x08\x01" + struct.pack(">I", 5) + b"ab", r"shape \(5,\) \(5 bytes of data\) but the file holds 2"),
    (gzip.compress(b"\x00\x00\x08\x01" + struct.pack(">I", 2) + b"ab")[:-6], "damaged IDX or gzip file"),
])
def test_a_bad_idx_file_is_named_with_its_problem(tmp_path, content, message):
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        datasets.files.read_idx(path)


def test_csv_with_header_label_by_name_and_other_delimiter(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a;label;b\n1;0;2\n3;1;4\n5;2;6\n")
    X, y = datasets.load_csv(path, label_column="label", delimiter=";")
    assert np.array_equal(X, [[1, 2], [3, 4], [5, 6]]) and np.array_equal(y, [0, 1, 2])
    assert y.dtype == np.int64


def test_csv_without_header_and_real_targets(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("1,2,0.5\n3,4,1.5\n")
    X, y = datasets.load(path)
    assert X.shape == (2, 2) and y.dtype == np.float64 and np.array_equal(y, [0.5, 1.5])
    X_only, none = datasets.load(path, label_column=None)
    assert X_only.shape == (2, 3) and none is None


@pytest.mark.parametrize("text,kwargs,message", [
    ("", {}, "empty file"),
    ("a,b,c\n", {}, "a header but no data"),
    ("1,2,3\n4,5\n", {}, "line 2: 2 fields, expected 3"),
    ("1,2,3\n4,x,6\n", {}, "line 2, column 2: 'x' is not a number"),
    ("1,2\n", {"label_column": 5}, "label column 5 out of range for 2 columns"),
    ("a,b\n1,2\n", {"label_column": "y"}, "no column named 'y'; columns are a, b"),
    ("1,2\n", {"label_column": "y"}, "the file has no header"),
    ("1\n2\n", {}, "needs at least 2 columns"),
    ("1,nan\n2,3\n", {}, "y holds NaN or inf"),
    ("1,2,0,\n3,4,1,\n", {}, "line 1: the label \\(column 4\\) is empty; every line ends with the delimiter ','"),
    ("1,2,a\n1,3,\n2,2,b\n", {}, "line 2: the label \\(column 3\\) is empty$"),
    ("1,2,0\n1_000,3,1\n", {}, "line 2, column 1: '1_000' is not a number"),
])
def test_a_bad_csv_file_is_named_with_its_problem(tmp_path, text, kwargs, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        datasets.load_csv(path, **kwargs)


def test_npz_and_npy_files(tmp_path):
    X, y = np.arange(12.0).reshape(4, 3), np.array([0, 1, 1, 0])
    np.savez(tmp_path / "d.npz", X=X, y=y)
    X2, y2 = datasets.load(tmp_path / "d.npz")
    assert np.array_equal(X2, X) and np.array_equal(y2, y)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y.astype(float))
    X3, y3 = datasets.load(tmp_path / "X.npy", labels=tmp_path / "y.npy")
    assert np.array_equal(X3, X) and y3.dtype == np.int64
    np.savez(tmp_path / "x-only.npz", X=X)
    assert datasets.load(tmp_path / "x-only.npz")[1] is None


@pytest.mark.parametrize("arrays,message", [
    ({"X": np.zeros((3, 2))}, None),
    ({"X": np.zeros((3, 2)), "y": np.zeros(4)}, "X has 3 samples but y has 4"),
    ({"X": np.array(["a", "b"]), "y": np.zeros(2)}, "X must be numeric"),
    ({"X": np.zeros((2, 2)), "y": np.array([0, np.inf])}, "y holds NaN or inf"),
    ({"X": np.full((2, 2), np.nan), "y": np.zeros(2)}, "X holds NaN or inf"),
    ({"X": np.zeros((0, 2)), "y": np.zeros(0)}, "no samples"),
    ({"features": np.zeros((2, 2))}, "no array 'X' or 'y'; it holds features"),
    ({"X": np.array([None, 1], dtype=object), "y": np.zeros(2)}, "Object arrays cannot be loaded"),
])
def test_a_bad_npz_file_is_named_with_its_problem(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    if message is None:
        assert datasets.load_npz(path, y_key=None)[1] is None
        return
    with pytest.raises(DataError, match=message):
        datasets.load_npz(path)


def test_unreadable_and_unknown_files(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(DataError, match="cannot read as .npz|pickled"):
        datasets.load(tmp_path / "junk.npz")
    with pytest.raises(DataError, match="no such file"):
        datasets.load(tmp_path / "missing.npz")
    with pytest.raises(DataError, match="cannot tell the format"):
        datasets.load(tmp_path / "data.bin")
    with pytest.raises(DataError, match="unknown data format 'parquet'"):
        datasets.load(tmp_path / "x.npz", format="parquet")


@pytest.mark.parametrize("format", ["npz", "csv", "npy", "idx"])
def test_a_device_or_folder_given_as_data_is_refused_not_read_for_ever(tmp_path, format):
    with pytest.raises(DataError, match="/dev/zero: a device, not a data file"):
        datasets.load("/dev/zero", format=format)
    with pytest.raises(DataError, match="a folder, not a data file"):
        datasets.load(tmp_path, format=format)


def test_values_too_large_to_standardize_are_named_not_called_nan():
    X = np.ones((5, 3))
    X[:, 1] = [1e200, -1e200, 3, 4, 5]
    with pytest.raises(ValueError, match="column 1 holds values too large to standardize \\(up to 1e\\+200"):
        datasets.Standardizer().fit(X)
    X[2, 2] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf \(first at index \(2, 2\)\)"):
        datasets.Standardizer().fit(X)


def test_synthetic_generators_are_seeded_and_balanced():
    X, y = datasets.make_spirals(301, n_classes=3, seed=4)
    X2, y2 = datasets.make_spirals(301, n_classes=3, seed=4)
    assert X.shape == (301, 2) and np.array_equal(X, X2) and np.array_equal(y, y2)
    assert np.bincount(y).tolist() == [101, 100, 100]
    Xb, yb = datasets.make_blobs(100, n_features=5, centers=4, seed=1)
    assert Xb.shape == (100, 5) and set(yb) == {0, 1, 2, 3}
    with pytest.raises(ValueError):
        datasets.make_blobs(0)


def test_standardizer_is_fitted_on_training_data_only():
    rng = np.random.default_rng(0)
    train = rng.normal(5.0, 3.0, (1000, 4))
    train[:, 3] = 7.0  # a constant feature
    s = Standardizer().fit(train)
    Z = s.transform(train)
    np.testing.assert_allclose(Z[:, :3].mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(Z[:, :3].std(axis=0), 1, rtol=1e-12)
    assert np.array_equal(Z[:, 3], np.zeros(1000))
    test = rng.normal(5.0, 3.0, (10, 4))
    np.testing.assert_allclose(s.transform(test), (test - s.mean) / s.scale)
    with pytest.raises(ValueError, match="not fitted"):
        Standardizer().transform(test)
    with pytest.raises(ValueError, match="fitted on 4 features"):
        s.transform(test[:, :2])


def test_standardizer_fits_a_memmap_in_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.preprocessing, "CHUNK", 7)
    X = np.random.default_rng(1).normal(1e6, 2.0, (100, 3))  # large mean: shifted sums keep precision
    disk = np.memmap(tmp_path / "X.dat", dtype=np.float64, mode="w+", shape=X.shape)
    disk[...] = X
    s = Standardizer().fit(disk)
    np.testing.assert_allclose(s.mean, X.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(s.scale, X.std(axis=0), rtol=1e-9)


def test_train_test_split_is_stratified_and_seeded():
    y = np.repeat(np.arange(4), [10, 20, 30, 40])
    X = np.arange(100.0)[:, None]
    (X_tr, y_tr), (X_te, y_te) = datasets.train_test_split(X, y, 0.2, seed=3)
    assert np.bincount(y_te).tolist() == [2, 4, 6, 8]
    assert sorted(np.concatenate([X_tr, X_te])[:, 0].tolist()) == list(range(100))
    (_, _), (X_te2, _) = datasets.train_test_split(X, y, 0.2, seed=3)
    assert np.array_equal(X_te, X_te2)


def idx_file(type_code, shape, body):
    return bytes([0, 0, type_code, len(shape)]) + b"".join(d.to_bytes(4, "big") for d in shape) + body


def test_a_gzip_idx_file_is_read_no_further_than_its_header_declares(tmp_path):
    """A 256 MiB stream behind a header declaring 10 bytes: refused after reading 11."""
    import gzip
    import tracemalloc
    path = tmp_path / "bomb-idx1-ubyte.gz"
    with gzip.open(path, "wb", compresslevel=1) as file:
        file.write(idx_file(0x08, (10,), b""))
        zeros = bytes(1 << 20)
        for _ in range(256):
            file.write(zeros)
    assert path.stat().st_size < 2 << 20
    tracemalloc.start()
    with pytest.raises(DataError, match="but the file holds more"):
        files.read_idx(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 16 << 20


@pytest.mark.parametrize("content, message", [
    (idx_file(0x08, (3340214413, 2761311370, 2), bytes(4)), r"shape \(3340214413, 2761311370, 2\)"),
    (idx_file(0x08, (0, 28, 28), b""), r"no samples \(X has shape \(0, 28, 28\)\)"),
    (bytes([0, 0, 0x08, 255]) + bytes(4 * 255), "declares 255 dimensions"),
    (bytes([0, 0, 0x08, 3, 0, 0]), "IDX header truncated"),
])
def test_an_idx_header_is_checked_before_anything_is_read(tmp_path, content, message):
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        files.load_idx(path)
    gz = tmp_path / "x-idx3-ubyte.gz"
    import gzip
    gz.write_bytes(gzip.compress(content))
    with pytest.raises(DataError, match=message):
        files.load_idx(gz)


def test_a_corrupt_gzip_file_is_a_data_error(tmp_path):
    import gzip
    raw = bytearray(gzip.compress(idx_file(0x08, (100,), bytes(range(100)))))
    raw[12:20] = b"\xff" * 8
    path = tmp_path / "labels-idx1-ubyte.gz"
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="labels-idx1-ubyte.gz: damaged IDX or gzip file"):
        files.read_idx(path)


def test_npy_files_that_lie_about_their_size_or_hold_one_number_are_data_errors(tmp_path):
    import io
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f8", "fortran_order": False, "shape": (10 ** 9, 10 ** 9)})
    (tmp_path / "huge.npy").write_bytes(buffer.getvalue() + bytes(80))
    with pytest.raises(DataError, match="huge.npy: the header says shape"):
        files.load_npy(tmp_path / "huge.npy")
    np.save(tmp_path / "scalar.npy", np.float64(3))
    with pytest.raises(DataError, match="scalar.npy: X is a single number"):
        files.load_npy(tmp_path / "scalar.npy")
    (tmp_path / "cut.npy").write_bytes(b"\x93NUMPY\x01\x00\x76\x00{'descr': '<f8', 'fortran_order': False, 'shape': (")
    with pytest.raises(DataError, match="cut.npy: cannot read as .npy"):
        files.load_npy(tmp_path / "cut.npy")


def test_an_npz_member_declaring_more_than_the_limit_is_refused_before_it_is_read(tmp_path, monkeypatch):
    import tracemalloc
    import zipfile
    monkeypatch.setattr(files, "MAX_DATA_BYTES", 8 << 20)
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("X.npy", "w", force_zip64=True) as member:
            zeros = bytes(1 << 20)
            for _ in range(64):
                member.write(zeros)
    tracemalloc.start()
    with pytest.raises(DataError, match="bomb.npz: member X.npy declares 67108864 bytes, more than the limit"):
        files.load_npz(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 4 << 20


@pytest.mark.parametrize("first_line", ["\ufeff0.5,1,0", "0x10,1,0", "2O,1,0"])
def test_a_malformed_or_marked_first_row_is_never_taken_for_a_header(tmp_path, first_line):
    rows = [first_line] + [f"{n / 10},{n % 3},{n % 2}" for n in range(1, 20)]
    path = tmp_path / "data.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    if first_line.startswith("\ufeff"):  # a byte-order mark is not part of the first field
        X, y = files.load_csv(path)
        assert len(X) == 20 and X[0, 0] == 0.5
    else:
        with pytest.raises(DataError, match=f"line 1, column 1: '{first_line[:2]}"):
            files.load_csv(path)


def test_a_text_header_is_still_detected_and_can_be_forced(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a,b,label\n1,2,0\n3,4,1\n")
    X, y = files.load_csv(path)
    assert X.shape == (2, 2)
    with pytest.raises(DataError, match="line 1, column 1: 'a' is not a number"):
        files.load_csv(path, header=False)


@pytest.mark.parametrize("content, kwargs, message", [
    ("caf\xe9,1\n".encode("latin-1"), {}, "data.csv: not UTF-8 text"),
    (b"1," + b"9" * 200000 + b"\n", {}, "data.csv, line 1: field larger than field limit"),
    (b"1,2\n", {"label_column": 1.5}, "data.csv: label_column must be a column index or name, got 1.5"),
])
def test_csv_failures_of_decoding_parsing_and_arguments_are_data_errors(tmp_path, content, kwargs, message):
    path = tmp_path / "data.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        files.load_csv(path, **kwargs)


def test_whole_number_float_labels_beyond_2_to_the_53_stay_floats(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.zeros((3, 2)), y=np.array([1e20, 0.0, 1.0]))
    _, y = files.load_npz(tmp_path / "d.npz")
    assert y.dtype == np.float64 and y[0] == 1e20


def test_csv_class_names_quoted_fields_and_dropped_columns(tmp_path):
    path = tmp_path / "iris.csv"
    path.write_text('id,sepal,petal,"species"\n1,5.1,1.4,setosa\n2,"7.0",4.7, versicolor\n3,6.3,6.0,virginica\n')
    X, y = files.load_csv(path, label_column="species", drop_columns=["id"])
    np.testing.assert_array_equal(X, [[5.1, 1.4], [7.0, 4.7], [6.3, 6.0]])
    assert y.tolist() == ["setosa", "versicolor", "virginica"]
    X, y = files.load_csv(path, label_column=-1, drop_columns=[0, "petal"])
    assert X.shape == (3, 1) and y.dtype.kind == "U"


def test_the_vectorised_csv_parser_reads_what_the_field_by_field_one_would(tmp_path):
    rng = np.random.default_rng(0)
    data = np.column_stack([rng.normal(size=(500, 6)), rng.integers(0, 4, 500)])
    path = tmp_path / "d.csv"
    np.savetxt(path, data, delimiter=",", fmt="%.17g", header="a,b,c,d,e,f,label", comments="")
    X, y = files.load_csv(path)
    np.testing.assert_array_equal(X, data[:, :6])
    assert y.dtype == np.int64 and np.array_equal(y, data[:, 6])
