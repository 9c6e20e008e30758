"""Tests for nn_from_scratch.datasets: digits, IDX/MNIST reading, mini-batching."""
from __future__ import annotations

import gzip
import io
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nn_from_scratch.datasets import (
    DatasetSplit,
    iterate_minibatches,
    load_digits,
    load_mnist,
    num_batches,
    read_idx,
)

from idx_helpers import idx_header, make_idx

DIGIT_CLASS_COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
# ----------------------------------------------------------------------------- digits


def test_digits_shapes_dtypes_ranges_and_counts():
    split = load_digits()
    assert isinstance(split, DatasetSplit)
    X_train, y_train, X_test, y_test = split
    assert X_train.shape == (1438, 64)
    assert X_test.shape == (359, 64)
    assert y_train.shape == (1438,)
    assert y_test.shape == (359,)
    assert X_train.dtype == np.float64 and X_test.dtype == np.float64
    assert y_train.dtype == np.int64 and y_test.dtype == np.int64
    X_all = np.concatenate([X_train, X_test])
    np.testing.assert_array_equal([X_all.min(), X_all.max()], [0.0, 1.0])
    # Pixels are k/16 for integers k in 0..16, exactly.
    np.testing.assert_array_equal(X_all * 16, np.round(X_all * 16))
    counts = np.bincount(np.concatenate([y_train, y_test]), minlength=10)
    np.testing.assert_array_equal(counts, DIGIT_CLASS_COUNTS)
    assert int(counts.sum()) == 1797


def test_digits_split_is_stratified():
    _, y_train, _, y_test = load_digits(test_fraction=0.25, seed=3)
    assert y_test.size == round(0.25 * 1797)
    test_counts = np.bincount(y_test, minlength=10)
    expected = 0.25 * np.array(DIGIT_CLASS_COUNTS)
    np.testing.assert_allclose(test_counts, expected, atol=1.0)
    np.testing.assert_array_equal(
        test_counts + np.bincount(y_train, minlength=10), DIGIT_CLASS_COUNTS
    )


def test_digits_same_seed_identical_different_seed_different():
    a, b, c = load_digits(seed=7), load_digits(seed=7), load_digits(seed=8)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
        assert x.dtype == y.dtype
    assert not np.array_equal(a.y_test, c.y_test)
    assert not np.array_equal(a.X_train, c.X_train)


def test_digits_flatten_false_and_dtype():
    flat = load_digits(seed=1)
    img = load_digits(seed=1, flatten=False, dtype=np.float32)
    assert img.X_train.shape == (1438, 1, 8, 8)
    assert img.X_test.shape == (359, 1, 8, 8)
    assert img.X_train.dtype == np.float32
    np.testing.assert_array_equal(img.X_train.reshape(-1, 64), flat.X_train.astype(np.float32))
    np.testing.assert_array_equal(img.y_test, flat.y_test)


def test_digits_arrays_are_fresh_copies():
    a = load_digits()
    a.X_train[:] = -1.0
    b = load_digits()
    np.testing.assert_array_equal([b.X_train.min()], [0.0])


@pytest.mark.parametrize("bad", [0, 1, 0.0, 1.0, -0.1, 1.5, float("nan"), float("inf")])
def test_digits_rejects_test_fraction_outside_open_interval(bad):
    with pytest.raises(ValueError, match=r"test_fraction must lie strictly in \(0, 1\), got"):
        load_digits(test_fraction=bad)


@pytest.mark.parametrize(
    "kwargs, exc, pattern",
    [
        ({"test_fraction": "0.2"}, TypeError, "test_fraction must be a real number.*str"),
        ({"test_fraction": True}, TypeError, "test_fraction must be a real number.*bool"),
        ({"dtype": np.int32}, TypeError, "floating dtype.*int32"),
        ({"dtype": "no-such-dtype"}, TypeError, "floating dtype.*no-such-dtype"),
        ({"seed": -1}, ValueError, "seed must be a non-negative int, got -1"),
        ({"seed": 1.5}, TypeError, "seed must be a non-negative int, got float"),
        ({"flatten": "yes"}, TypeError, "flatten must be a bool, got str"),
    ],
)
def test_digits_argument_errors(kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        load_digits(**kwargs)


# ----------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("dtype", ["u1", "i1", ">i2", ">i4", ">f4", ">f8"])
@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trip_all_dtypes(tmp_path, dtype, compress):
    rng = np.random.default_rng(0)
    array = (rng.standard_normal((3, 4, 5)) * 100).astype(np.dtype(dtype).newbyteorder("="))
    data = make_idx(array)
    if compress:
        data = gzip.compress(data)
    path = tmp_path / ("x.idx.gz" if compress else "x.idx")
    path.write_bytes(data)
    for source in (path, str(path), data, bytearray(data)):
        out = read_idx(source)
        assert out.dtype == array.dtype and out.dtype.isnative
        assert out.shape == array.shape
        assert out.flags.writeable
        np.testing.assert_array_equal(out, array)


@pytest.mark.parametrize("shape", [(7,), (2, 3), (2, 3, 4), (1, 2, 3, 4)])
def test_read_idx_dimensions(shape):
    array = np.arange(int(np.prod(shape)), dtype=np.uint8).reshape(shape)
    np.testing.assert_array_equal(read_idx(make_idx(array)), array)


def test_read_idx_bad_magic():
    good = make_idx(np.zeros(4, np.uint8))
    with pytest.raises(ValueError, match="bad magic number 0x01000801"):
        read_idx(b"\x01" + good[1:])
    with pytest.raises(ValueError, match="unknown dtype code 0x0A"):
        read_idx(good[:2] + b"\x0a" + good[3:])
    with pytest.raises(ValueError, match="expected 1 to 4 dimensions, header says 0"):
        read_idx(b"\x00\x00\x08\x00")
    with pytest.raises(ValueError, match="expected 1 to 4 dimensions, header says 5"):
        read_idx(idx_header(0x08, (1, 1, 1, 1, 1)) + b"\x00")
    with pytest.raises(ValueError, match="4-byte magic number, got only 2 bytes"):
        read_idx(b"\x00\x00")
    with pytest.raises(ValueError, match="only 4 bytes of dimensions follow"):
        read_idx(b"\x00\x00\x08\x02" + b"\x00\x00\x00\x01")
    with pytest.raises(ValueError, match=r"every dimension must be positive, header says \(3, 0\)"):
        read_idx(idx_header(0x08, (3, 0)))


@pytest.mark.parametrize(
    "compress, kind, change, actual",
    [
        (False, "truncated", lambda d: d[:-3], "the file holds 45"),
        (False, "trailing bytes", lambda d: d + b"\x00\x01", "the file holds 50"),
        (True, "truncated", lambda d: d[:-3], "the decompressed data hold 45"),
        (True, "trailing bytes", lambda d: d + b"\x00\x01", "the decompressed data hold more than 48"),
    ],
)
def test_read_idx_truncated_and_trailing(tmp_path, compress, kind, change, actual):
    data = change(make_idx(np.arange(24, dtype=">i2").reshape(4, 6)))  # 48 payload bytes
    blob = gzip.compress(data) if compress else data
    pattern = rf"\({kind}\): shape \(4, 6\) of int16 needs 48 payload bytes, but {actual}$"
    with pytest.raises(ValueError, match=pattern):
        read_idx(blob)
    path = tmp_path / ("f.gz" if compress else "f")
    path.write_bytes(blob)
    with pytest.raises(ValueError, match=rf"{path.name}: IDX {pattern}"):
        read_idx(path)


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_rejects_absurd_item_count_without_allocating(tmp_path, compress):
    # 10^6 x 10^6 uint8 = 10^12 bytes declared, a few bytes present.
    data = idx_header(0x08, (10**6, 10**6)) + b"\x00" * 16
    blob = gzip.compress(data) if compress else data
    path = tmp_path / ("huge.gz" if compress else "huge")
    path.write_bytes(blob)
    tracemalloc.start()  # memory, not time: a slow machine must not fail this test
    try:
        for source in (blob, path):
            with pytest.raises(ValueError, match=r"1000000000000 payload bytes, but (the file holds 16|\d+ bytes of gzip data cannot inflate)"):
                read_idx(source, max_bytes=None)
            with pytest.raises(ValueError, match="above the limit max_bytes="):
                read_idx(source)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2**20, f"peak traced memory {peak} bytes"


def test_read_idx_gzip_bomb_stops_early():
    # Header declares 16 bytes; the stream inflates to 64 MiB. Reading must
    # stop just past the declared size instead of inflating everything.
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9) as gz:
        gz.write(idx_header(0x08, (16,)))
        zeros = bytes(2**20)
        for _ in range(64):
            gz.write(zeros)
    bomb = buf.getvalue()
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"\(trailing bytes\).*needs 16 payload bytes"):
            read_idx(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20, f"peak traced memory {peak} bytes"


def test_read_idx_corrupt_gzip(tmp_path):
    good = gzip.compress(make_idx(np.arange(200, dtype=np.uint8)))
    flipped = bytearray(good)
    flipped[len(flipped) // 2] ^= 0xFF
    bad_crc = bytearray(good)
    bad_crc[-8] ^= 0xFF  # the CRC32 in the gzip trailer
    for blob in (good[:-10], bytes(flipped), bytes(bad_crc), good[:12]):
        with pytest.raises(ValueError, match="corrupt or truncated gzip data|IDX"):
            read_idx(blob)
    with pytest.raises(ValueError, match="corrupt or truncated gzip data"):
        read_idx(bytes(bad_crc))
    path = tmp_path / "not-gzip.gz"
    path.write_bytes(make_idx(np.zeros(3, np.uint8)))
    with pytest.raises(ValueError, match="ends in .gz but is not gzip data"):
        read_idx(path)


def test_read_idx_argument_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "missing")
    with pytest.raises(TypeError, match="path .* or bytes-like contents, got int"):
        read_idx(123)
    with pytest.raises(TypeError, match="max_bytes must be an int or None"):
        read_idx(b"", max_bytes=1.5)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_read_idx_fuzz_random_bytes_only_value_error(data):
    try:
        out = read_idx(data)
    except ValueError:
        return
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal([len(make_idx(out))], [len(data)])


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([False, True]),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4),
    st.integers(0, 10_000),
)
def test_read_idx_fuzz_mutated_files_only_value_error(compress, flips, cut):
    data = make_idx(np.arange(60, dtype=">i2").reshape(3, 4, 5))
    blob = bytearray(gzip.compress(data) if compress else data)
    for pos, value in flips:
        blob[pos % len(blob)] = value
    blob = bytes(blob[: max(cut, len(blob) // 2)])
    try:
        read_idx(blob)
    except ValueError:
        pass


# ----------------------------------------------------------------------------- MNIST


def write_mnist(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray, *,
                compress: bool = False, sep: str = "-") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr, idx in (("images", images, "idx3"), ("labels", labels, "idx1")):
        data = make_idx(arr)
        path = folder / f"{prefix}-{name}{sep}{idx}-ubyte"
        if compress:
            path = path.with_name(path.name + ".gz")
            data = gzip.compress(data)
        path.write_bytes(data)


@pytest.fixture
def fake_mnist():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(5, 4, 3), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255
    labels = rng.integers(0, 10, size=5, dtype=np.uint8)
    return images, labels


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("kind, prefix", [("train", "train"), ("test", "t10k")])
def test_load_mnist(tmp_path, fake_mnist, compress, kind, prefix):
    images, labels = fake_mnist
    write_mnist(tmp_path, prefix, images, labels, compress=compress)
    X, y = load_mnist(tmp_path, kind)
    assert X.shape == (5, 12) and X.dtype == np.float64
    assert y.dtype == np.int64
    np.testing.assert_allclose(X, images.reshape(5, 12) / 255.0, rtol=1e-15, atol=0)
    np.testing.assert_array_equal(y, labels)
    X4, _ = load_mnist(str(tmp_path), kind, flatten=False, dtype=np.float32)
    assert X4.shape == (5, 1, 4, 3) and X4.dtype == np.float32
    np.testing.assert_allclose(X4[:, 0], images / np.float32(255), rtol=1e-6, atol=0)
    np.testing.assert_array_equal([X.min(), X.max()], [0.0, 1.0])


def test_load_mnist_dot_names_and_raw_preferred(tmp_path, fake_mnist):
    images, labels = fake_mnist
    write_mnist(tmp_path, "train", images, labels, sep=".")
    np.testing.assert_array_equal(load_mnist(tmp_path)[1], labels)
    # With both raw and .gz present, the raw file wins.
    write_mnist(tmp_path, "train", images, labels)
    write_mnist(tmp_path, "train", images[::-1], labels[::-1], compress=True)
    np.testing.assert_array_equal(load_mnist(tmp_path)[1], labels)


def test_load_mnist_missing_files(tmp_path, fake_mnist):
    with pytest.raises(FileNotFoundError, match="MNIST directory not found"):
        load_mnist(tmp_path / "nope")
    (tmp_path / "a-file").write_bytes(b"")
    with pytest.raises(NotADirectoryError, match="a-file is a file, not a folder"):
        load_mnist(tmp_path / "a-file")
    images, labels = fake_mnist
    write_mnist(tmp_path, "train", images, labels)
    (tmp_path / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(tmp_path)
    message = str(info.value)
    for name in ("train-labels-idx1-ubyte", "train-labels-idx1-ubyte.gz",
                 "train-labels.idx1-ubyte", "train-labels.idx1-ubyte.gz"):
        assert str(tmp_path / name) in message
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte"):
        load_mnist(tmp_path, "test")


def test_load_mnist_content_errors(tmp_path, fake_mnist):
    images, labels = fake_mnist
    write_mnist(tmp_path / "a", "train", images, labels[:4])
    with pytest.raises(ValueError, match="holds 5 images but .* holds 4 labels"):
        load_mnist(tmp_path / "a")
    write_mnist(tmp_path / "b", "train", images.astype(np.int16), labels)
    with pytest.raises(ValueError, match="expected 3-D uint8 images, got 3-D int16"):
        load_mnist(tmp_path / "b")
    write_mnist(tmp_path / "c", "train", images, labels.reshape(5, 1))
    with pytest.raises(ValueError, match="expected 1-D uint8 labels, got 2-D uint8"):
        load_mnist(tmp_path / "c")
    with pytest.raises(ValueError, match="kind must be 'train' or 'test', got 'val'"):
        load_mnist(tmp_path / "a", "val")
    with pytest.raises(TypeError, match="floating dtype"):
        load_mnist(tmp_path / "a", dtype=np.uint8)


# ----------------------------------------------------------------------------- batching


def test_minibatches_cover_all_indices_once_and_keep_last_partial():
    X = np.arange(103)
    batches = list(iterate_minibatches(X, batch_size=32, rng=0))
    np.testing.assert_array_equal([len(b) for b in batches], [32, 32, 32, 7])
    seen = np.concatenate(batches)
    np.testing.assert_array_equal(np.sort(seen), X)
    assert not np.array_equal(seen, X)  # really shuffled
    assert len(batches) == num_batches(103, 32)


def test_minibatches_pairs_stay_aligned_and_unshuffled_order():
    X = np.arange(50).reshape(25, 2)
    y = X[:, 0] * 10
    for X_b, y_b in iterate_minibatches(X, y, batch_size=4, rng=np.random.default_rng(3)):
        np.testing.assert_array_equal(y_b, X_b[:, 0] * 10)
    ordered = list(iterate_minibatches(X, y, 10, shuffle=False))
    np.testing.assert_array_equal([len(b[0]) for b in ordered], [10, 10, 5])
    np.testing.assert_array_equal(np.concatenate([b[1] for b in ordered]), y)


def test_minibatches_deterministic_with_seed():
    X = np.arange(40)
    run = lambda rng: np.concatenate(list(iterate_minibatches(X, batch_size=6, rng=rng)))  # noqa: E731
    np.testing.assert_array_equal(run(11), run(11))
    np.testing.assert_array_equal(run(np.random.default_rng(11)), run(11))
    assert not np.array_equal(run(11), run(12))
    gen = np.random.default_rng(5)
    assert not np.array_equal(run(gen), run(gen))  # a shared Generator moves on
    np.testing.assert_array_equal(np.sort(run(None)), X)


def test_minibatches_errors_are_eager():
    X = np.zeros((5, 2))
    with pytest.raises(ValueError, match=r"len\(X\)=5 and len\(y\)=4"):
        iterate_minibatches(X, np.zeros(4))
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        iterate_minibatches(X, batch_size=0)
    with pytest.raises(TypeError, match="batch_size must be a positive int, got float"):
        iterate_minibatches(X, batch_size=2.5)
    with pytest.raises(TypeError, match="batch_size must be a positive int, got bool"):
        iterate_minibatches(X, batch_size=True)
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator"):
        iterate_minibatches(X, rng="seed")
    with pytest.raises(TypeError, match="X must have at least one dimension"):
        iterate_minibatches(np.float64(1.0))


def test_minibatches_empty_and_num_batches():
    np.testing.assert_array_equal(len(list(iterate_minibatches(np.zeros((0, 3)), batch_size=4))), 0)
    np.testing.assert_array_equal(
        [num_batches(0, 5), num_batches(1, 5), num_batches(5, 5), num_batches(6, 5)],
        [0, 1, 1, 2],
    )
    with pytest.raises(ValueError, match="n must be a non-negative int, got -1"):
        num_batches(-1, 5)
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        num_batches(5, 0)


# ------------------------------------------------ uint8 images, image datasets, holdout
def test_read_mnist_keeps_the_uint8_pixels_that_load_mnist_scales(tmp_path, rng):
    from nn_from_scratch.datasets import read_mnist

    images = rng.integers(0, 256, size=(7, 5, 4), dtype=np.uint8)
    labels = rng.integers(0, 10, size=7, dtype=np.uint8)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(make_idx(images))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(make_idx(labels))
    X, y = read_mnist(tmp_path, "train")
    assert X.dtype == np.uint8 and X.shape == (7, 5, 4) and np.array_equal(X, images)
    assert y.dtype == np.int64 and np.array_equal(y, labels)
    X_float, _ = load_mnist(tmp_path, "train")
    np.testing.assert_allclose(X_float, images.reshape(7, 20) / 255, rtol=0, atol=0)


def test_image_datasets_say_how_to_get_their_files(tmp_path):
    from nn_from_scratch.datasets import find_image_dataset

    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        find_image_dataset("fashion-mnist", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="lacks train-images-idx3-ubyte") as info:
        find_image_dataset("fashion-mnist", tmp_path)
    assert "apt-get install dataset-fashion-mnist" in str(info.value)
    with pytest.raises(FileNotFoundError, match="needs --data-dir") as info:
        find_image_dataset("mnist")
    assert "Debian has no MNIST package" in str(info.value) and "http" not in str(info.value)
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte.gz"):
        (tmp_path / stem).write_bytes(b"")
    assert find_image_dataset("mnist", tmp_path) == tmp_path  # the files are read (and checked) later
    with pytest.raises(ValueError, match="unknown image dataset"):
        find_image_dataset("cifar")


def test_holdout_splits_off_a_seeded_disjoint_validation_set():
    from nn_from_scratch.datasets import holdout

    X = np.arange(100, dtype=np.uint8).reshape(50, 2)
    y = np.arange(50)
    X_train, y_train, X_valid, y_valid = holdout(X, y, 10)
    assert X_train.dtype == np.uint8 and len(X_train) == 40 and len(X_valid) == 10
    assert sorted(np.concatenate([y_train, y_valid]).tolist()) == list(range(50))
    assert np.array_equal(X_train[:, 0] // 2, y_train) and np.array_equal(X_valid[:, 0] // 2, y_valid)
    assert np.all(np.diff(y_train) > 0) and np.all(np.diff(y_valid) > 0)  # the original order is kept
    assert np.array_equal(holdout(X, y, 10)[3], y_valid) and not np.array_equal(holdout(X, y, 10, rng=1)[3], y_valid)
    with pytest.raises(ValueError, match="needs at least 51"):
        holdout(X, y, 50)
    with pytest.raises(TypeError):
        holdout(X, y, 2.0)


def test_a_named_image_dataset_checks_the_image_size_and_the_labels(tmp_path, rng):
    """--dataset mnist on a folder of 10x10 images, or of labels past 9, is refused naming the file."""
    from nn_from_scratch.datasets import load_image_dataset, read_mnist

    def write(size, labels):
        for kind, n in (("train", 12), ("t10k", 6)):
            (tmp_path / f"{kind}-images-idx3-ubyte").write_bytes(
                make_idx(rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)))
            (tmp_path / f"{kind}-labels-idx1-ubyte").write_bytes(make_idx(np.arange(n, dtype=np.uint8) % labels))

    write(10, 10)
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte: mnist images are 28x28 pixels; it holds 10x10"):
        load_image_dataset("mnist", tmp_path)
    X, _ = read_mnist(tmp_path, "train", image_shape=(10, 10), classes=10)  # the reader itself takes any size
    assert X.shape == (12, 10, 10)
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte: .* 8x8 pixels; it holds 10x10"):
        read_mnist(tmp_path, "test", image_shape=(8, 8))
    write(28, 12)
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte: fashion-mnist has labels 0 to 9; it holds 11"):
        load_image_dataset("fashion-mnist", tmp_path)
    write(28, 10)
    X_train, y_train, X_test, y_test = load_image_dataset("mnist", tmp_path)
    assert X_train.shape == (12, 28, 28) and X_train.dtype == np.uint8 and X_test.shape == (6, 28, 28)
    assert y_train.max() == 9 and y_test.dtype == np.int64


def test_the_data_page_runs_as_written(tmp_path, monkeypatch, capsys):
    import re
    from pathlib import Path

    page = Path(__file__).resolve().parent.parent / "docs" / "data.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S)
    assert blocks
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__data_page__"}
    for index, block in enumerate(blocks, 1):
        exec(compile(block, f"docs/data.md block {index}", "exec"), namespace)
    assert "EarlyStop(best_epoch=" in capsys.readouterr().out
