"""Fuzzing the file readers: random, truncated and mutated bytes give a clear ValueError, quickly, in bounded memory.

Readers: ``read_idx`` (raw and gzip IDX), the model-file loader
(``load_model_state`` for ``.npz`` and ``.safetensors``) and resuming from a
checkpoint.  Every example has a generous limit (a Hypothesis deadline of two
minutes, where a normal example takes milliseconds): a reader that runs away
for minutes fails, a slow, busy machine does not (a deadline is measured when
an example returns, so a reader stuck forever hangs the run rather than
failing it); headers that claim 10^12 items are refused before anything of that
size is allocated (``tracemalloc`` peak below a few MiB).
"""
from __future__ import annotations

import gzip
import json
import struct
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from idx_helpers import idx_header, make_idx
from nn_from_scratch import NeuralNetwork, Sequential
from nn_from_scratch.datasets import read_idx
from nn_from_scratch.losses import MSELoss
from nn_from_scratch.training import CheckpointError
from nn_from_scratch.nodes import BatchNorm1d, Dropout, Linear
from nn_from_scratch.optim import Adam
from nn_from_scratch.files import load_layout, load_model_state, safetensors_available, save_model

from file_helpers import peak_while

IDX_EXAMPLES = 300
MODEL_FILE_EXAMPLES = 200
#: Mutations of files written here that must either be refused or load exactly what was saved.
INTACT_EXAMPLES = 1500
CHECKPOINT_EXAMPLES = 60
PEAK_LIMIT = 8 << 20  # bytes
#: A guard against runaways, not a speed check: examples take milliseconds even on a busy machine.
RUNAWAY_MS = 120_000

FUZZ = dict(deadline=RUNAWAY_MS, derandomize=True, database=None, phases=[Phase.explicit, Phase.generate],
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                   HealthCheck.data_too_large])


def mutations(seed: bytes, random_bytes: bool = True) -> st.SearchStrategy:
    """``seed`` truncated, extended, with bytes flipped or overwritten, or spliced; or random bytes."""
    def mutate(ops):
        data = bytearray(seed)
        for kind, position, value in ops:
            position = position % (len(data) + 1)
            if kind == "flip" and data:
                data[position % len(data)] ^= value or 1
            elif kind == "set" and data:
                data[position % len(data)] = value
            elif kind == "cut":
                del data[position:]
            elif kind == "insert":
                data[position:position] = bytes([value]) * (value % 7 + 1)
            elif kind == "big":  # a huge little/big-endian number where a length or a dimension may be
                data[position:position + 4] = b"\xff\xff\xff\x7f"
        return bytes(data)

    op = st.tuples(st.sampled_from(["flip", "set", "cut", "insert", "big"]), st.integers(0, 10**6), st.integers(0, 255))
    mutated = st.lists(op, min_size=1, max_size=4).map(mutate)
    return st.one_of(mutated, st.binary(max_size=300)) if random_bytes else mutated


def reader_refuses_clearly(read):
    """Run ``read()``; it may succeed, or raise ValueError - nothing else."""
    try:
        return read()
    except ValueError as error:
        assert str(error), "a ValueError without a message"
        return None





# --------------------------------------------------------------------------- IDX
IDX_SEEDS = [
    make_idx(np.arange(24, dtype=np.uint8).reshape(2, 3, 4)),
    make_idx(np.linspace(-1, 1, 6).astype(">f8").reshape(3, 2)),
    make_idx(np.arange(5, dtype=">i4")),
]


@settings(max_examples=IDX_EXAMPLES, **FUZZ)
@given(seed=st.sampled_from(IDX_SEEDS), data=st.data(), compress=st.booleans())
def test_read_idx_on_mutated_bytes(seed, data, compress):
    blob = data.draw(mutations(seed))
    if compress:
        blob = gzip.compress(blob, mtime=0)
        blob = data.draw(st.sampled_from([blob, blob[: len(blob) // 2], blob[:-4] + b"\x00\x00\x00\x00"]))
    result = reader_refuses_clearly(lambda: read_idx(blob))
    if result is not None:
        assert isinstance(result, np.ndarray) and result.dtype.isnative and result.flags.writeable


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_header_claiming_a_trillion_items_allocates_nothing(compress):
    blob = idx_header(0x08, (10**4, 10**4, 10**4)) + bytes(100)  # 10^12 uint8 items claimed
    if compress:
        blob = gzip.compress(blob)

    def read():
        with pytest.raises(ValueError, match="IDX"):
            read_idx(blob, max_bytes=None)

    assert peak_while(read) < PEAK_LIMIT


def test_read_idx_gzip_bomb_stops_at_the_declared_size():
    blob = gzip.compress(idx_header(0x08, (1000,)) + bytes(30 << 20), compresslevel=9)  # 30 MiB of zeros inside

    def read():
        with pytest.raises(ValueError, match="trailing bytes"):
            read_idx(blob)

    assert peak_while(read) < PEAK_LIMIT


# --------------------------------------------------------------------------- model files
SEED_METADATA = {"history": {"loss": [0.5]}}


def seed_model():
    return Sequential(Linear(3, 2, rng=0, dtype=np.float32), BatchNorm1d(2, dtype=np.float32))


def model_seed_files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("seeds")
    seeds = {}
    for suffix in (".npz", ".safetensors"):
        if suffix == ".safetensors" and not safetensors_available():
            continue
        path = save_model(directory / f"m{suffix}", seed_model(), SEED_METADATA)
        seeds[suffix] = path.read_bytes()
    return seeds


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    return model_seed_files(tmp_path_factory)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@settings(max_examples=MODEL_FILE_EXAMPLES, **FUZZ)
@given(data=st.data())
def test_model_file_loader_on_mutated_bytes(seeds, fuzz_dir, data):
    suffix = data.draw(st.sampled_from(sorted(seeds)))
    blob = data.draw(mutations(seeds[suffix]))
    path = fuzz_dir / f"fuzzed{suffix}"
    path.write_bytes(blob)
    result = reader_refuses_clearly(lambda: load_model_state(path))
    if result is not None:
        state, metadata = result
        assert isinstance(metadata, dict)
        assert all(isinstance(k, str) and isinstance(v, np.ndarray) and v.dtype.kind in "biuf" for k, v in state.items())


def assert_intact(state, metadata):
    """What loaded is exactly what was saved: the same names, dtypes, shapes, bytes and metadata."""
    expected = seed_model().state_dict()
    assert sorted(state) == sorted(expected)
    for name, value in expected.items():
        assert state[name].dtype == value.dtype and state[name].shape == value.shape, name
        assert state[name].tobytes() == value.tobytes(), name
    assert metadata == SEED_METADATA


@settings(max_examples=INTACT_EXAMPLES, **FUZZ)
@given(data=st.data())
def test_a_mutated_file_written_here_is_refused_or_loads_exactly_what_was_saved(seeds, fuzz_dir, data):
    """A file that says it was written here verifies or is refused: no mutation loads other tensors or metadata."""
    suffix = data.draw(st.sampled_from(sorted(seeds)))
    blob = data.draw(mutations(seeds[suffix], random_bytes=False))
    path = fuzz_dir / f"intact{suffix}"
    path.write_bytes(blob)
    result = reader_refuses_clearly(lambda: load_model_state(path))
    if result is not None:
        assert_intact(*result)


def test_every_run_of_ten_zeroed_bytes_is_refused_or_loads_exactly_what_was_saved(seeds, fuzz_dir):
    """Exhaustive where Hypothesis is sparse: ten bytes of the zip's end record zeroed once loaded as ({}, {})."""
    for suffix, seed in sorted(seeds.items()):
        path = fuzz_dir / f"zeroed{suffix}"
        for start in range(len(seed)):
            blob = bytearray(seed)
            blob[start:start + 10] = bytes(len(blob[start:start + 10]))
            path.write_bytes(bytes(blob))
            try:
                result = load_model_state(path)
            except ValueError as error:
                assert str(path) in str(error), (start, str(error))
                continue
            assert_intact(*result)


def npz_end_record(blob):
    """``(where, fields)`` of a zip's end-of-central-directory record: its offset and its eight fields."""
    where = blob.rfind(b"PK\x05\x06")
    return where, list(struct.unpack("<4s4H2LH", blob[where:where + 22]))


@pytest.mark.parametrize("field, value, problem", [
    (3, 0, "members"),  # the count on this disk
    (4, 0, "members"),  # the total count
    (5, 0, "central directory"),  # the directory's size
    (6, 0, "central directory"),  # where it starts
    (1, 1, "disk"),  # a multi-disk archive
])
def test_an_npz_end_record_that_does_not_match_the_file_is_refused(seeds, tmp_path, field, value, problem):
    blob = seeds[".npz"]
    where, fields = npz_end_record(blob)
    fields[field] = value
    path = tmp_path / "damaged.npz"
    path.write_bytes(blob[:where] + struct.pack("<4s4H2LH", *fields) + blob[where + 22:])
    with pytest.raises(ValueError, match=f"{path}.*{problem}"):
        load_model_state(path)


def test_a_zip64_npz_is_read_through_its_zip64_end_record(tmp_path, monkeypatch):
    """Large archives keep their counts and offsets in the zip64 record; it is checked the same way."""
    monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 1)  # what more than 65535 members would do
    path = save_model(tmp_path / "m.npz", seed_model(), SEED_METADATA)
    monkeypatch.undo()
    blob = path.read_bytes()
    where = blob.find(b"PK\x06\x06")
    assert 0 < where < npz_end_record(blob)[0]
    assert_intact(*load_model_state(path))
    # the counts on this disk and in all, the directory's size and start (8 bytes each), the two disk numbers
    changes = [(24, struct.pack("<Q", 0)), (32, struct.pack("<Q", 0)), (40, struct.pack("<Q", 0)),
               (48, struct.pack("<Q", 0)), (16, struct.pack("<L", 1)), (20, struct.pack("<L", 1))]
    for offset, value in changes:
        damaged = tmp_path / f"damaged-{offset}.npz"
        at = where + offset
        damaged.write_bytes(blob[:at] + value + blob[at + len(value):])
        with pytest.raises(ValueError, match=str(damaged)):
            load_model_state(damaged)


def test_an_empty_zip_is_refused_as_a_model_file(tmp_path):
    path = tmp_path / "empty.npz"
    with zipfile.ZipFile(path, "w"):
        pass
    with pytest.raises(ValueError, match=f"{path}.*no members"):
        load_model_state(path)


def test_a_model_without_arrays_or_metadata_still_round_trips(tmp_path):
    """The library never writes an empty archive (it would be refused): an empty state keeps its metadata member."""
    path = save_model(tmp_path / "nothing.npz", {})
    assert zipfile.ZipFile(path).namelist() == ["__metadata__.npy"]
    assert load_model_state(path) == ({}, {})


def test_safetensors_header_claiming_a_trillion_items_allocates_nothing(tmp_path):
    pytest.importorskip("safetensors")
    header = json.dumps({"w": {"dtype": "F64", "shape": [10**6, 10**6], "data_offsets": [0, 8 * 10**12]}}).encode()
    path = tmp_path / "huge.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(64))
    lying_length = tmp_path / "length.safetensors"
    lying_length.write_bytes(struct.pack("<Q", 10**12) + b"{}")

    def read():
        for p in (path, lying_length):
            with pytest.raises(ValueError, match="reach past|larger than"):
                load_model_state(p)

    assert peak_while(read) < PEAK_LIMIT


def test_npz_member_claiming_a_trillion_items_allocates_nothing(tmp_path):
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("w.npy", "w") as member:
            np.lib.format.write_array_header_1_0(member, {"descr": "<f8", "fortran_order": False,
                                                          "shape": (10**6, 10**6)})
            member.write(bytes(64))

    def read():
        with pytest.raises(ValueError, match="header declares shape"):
            load_model_state(path)

    assert peak_while(read) < PEAK_LIMIT


def empty_tensor_files(tmp_path, shape):
    """A ``.safetensors`` and an ``.npz`` file, each with one float64 tensor ``w`` of ``shape`` and no data."""
    header = json.dumps({"w": {"dtype": "F64", "shape": list(shape), "data_offsets": [0, 0]}}).encode()
    safetensors = tmp_path / "shaped.safetensors"
    safetensors.write_bytes(struct.pack("<Q", len(header)) + header)
    npz = tmp_path / "shaped.npz"
    with zipfile.ZipFile(npz, "w") as archive:
        with archive.open("w.npy", "w") as member:
            np.lib.format.write_array_header_1_0(member, {"descr": "<f8", "fortran_order": False,
                                                          "shape": tuple(shape)})
    return safetensors, npz


@pytest.mark.parametrize("shape, problem", [
    ((0, 2**70), "dimension 1180591620717411303424"),  # more than NumPy can index
    ((0, 2**62, 2**62), "bytes"),  # each dimension fits, their product does not
    ((1,) * 100, "100 axes"),  # more than NumPy's 64
    ((1,) * 33, "33 axes"),  # more than the 32 read here
])
def test_a_shape_numpy_cannot_make_is_refused_naming_the_file_and_the_tensor(tmp_path, shape, problem):
    """An empty tensor's shape is not bounded by the data: it once reached NumPy, whose message named no file."""
    for path in empty_tensor_files(tmp_path, shape):
        for read in (load_model_state, load_layout):
            with pytest.raises(ValueError, match=problem) as info:
                read(path)
            message = str(info.value)
            assert str(path) in message and "'w" in message and len(message) < 1000


@pytest.mark.parametrize("shape", [(0, 2**40), (0,) * 32, (1,) * 31 + (0,), (2**40, 0, 3)])
def test_an_empty_tensor_of_a_shape_within_the_bounds_loads(tmp_path, shape):
    for path in empty_tensor_files(tmp_path, shape):
        state, _ = load_model_state(path)
        assert state["w"].shape == shape and state["w"].dtype == np.float64
        assert load_layout(path)[0]["w"].shape == shape


def test_npz_zip_bombs_are_refused_before_inflating(tmp_path):
    """A member that inflates to 30 MiB: over max_bytes, or with a directory entry that lies about its size."""
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("w.npy", "w") as member:
            np.lib.format.write_array(member, np.zeros(30 << 17))  # 30 MiB of zeros, about 30 KiB compressed
    lying = tmp_path / "lying.npz"
    data = bytearray(path.read_bytes())
    directory = data.rindex(b"PK\x01\x02")
    data[directory + 24:directory + 28] = struct.pack("<I", 200)  # the central directory's uncompressed size
    lying.write_bytes(bytes(data))

    def read():
        with pytest.raises(ValueError, match="exceed the limit max_bytes"):
            load_model_state(path, max_bytes=1 << 20)
        with pytest.raises(ValueError, match="is not a readable .npz model file"):  # the CRC or the size check
            load_model_state(lying)

    assert peak_while(read) < PEAK_LIMIT


# --------------------------------------------------------------------------- checkpoints
def tiny_network():
    model = Sequential(Linear(2, 3, rng=0), Dropout(0.2, rng=1), Linear(3, 1, rng=2))
    return NeuralNetwork(model, MSELoss(), Adam(model.parameters(), lr=1e-2))


@pytest.fixture(scope="module")
def checkpoint_seed(tmp_path_factory):
    path = tmp_path_factory.mktemp("ck") / "seed.npz"
    X = np.linspace(-1, 1, 16).reshape(8, 2)
    tiny_network().fit(X, X[:, :1], epochs=1, batch_size=4, rng=0, progress=False, checkpoint=path)
    return path.read_bytes()


@settings(max_examples=CHECKPOINT_EXAMPLES, **FUZZ)
@given(data=st.data())
def test_resume_from_mutated_checkpoints(checkpoint_seed, fuzz_dir, data):
    path = fuzz_dir / "fuzzed-checkpoint.npz"
    path.write_bytes(data.draw(mutations(checkpoint_seed)))
    network = tiny_network()
    before = network.model.state_dict()
    X = np.linspace(-1, 1, 16).reshape(8, 2)
    try:
        network.fit(X, X[:, :1], epochs=2, batch_size=4, rng=0, progress=False, resume=path)
    except CheckpointError as error:
        assert str(error)
        for key, value in network.model.state_dict().items():
            np.testing.assert_array_equal(value, before[key])


def test_example_counts_are_recorded():
    """The counts quoted in docs/reliability.md; change both together."""
    assert (IDX_EXAMPLES, MODEL_FILE_EXAMPLES, CHECKPOINT_EXAMPLES) == (300, 200, 60)


# --------------------------------------------------------------------------- architecture records
# A model file that carries its architecture (nn_from_scratch.registry.save_model): the record is untrusted input.
# Mutated records are refused with a ValueError or build a model that the file's weights fit, in bounded memory.
from nn_from_scratch.containers import Graph, Input  # noqa: E402
from nn_from_scratch.nodes import Add, Conv2d, MaxPool2d, ReLU, Reshape  # noqa: E402
from nn_from_scratch.registry import ARCHITECTURE_KEY, describe  # noqa: E402
from nn_from_scratch.registry import load_model as load_described_model  # noqa: E402
from nn_from_scratch.files import save_arrays  # noqa: E402

RECORD_EXAMPLES = 250
RECORD_PEAK_LIMIT = 64 << 20  # bytes: the record may build at most 16 times the file's data, which is small here

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.sampled_from([0, 1, 2, -1, 3, 2 ** 31, 2 ** 40])
    | st.floats() | st.text(max_size=12) | st.sampled_from(["Linear", "Graph", "Sequential", "float64", "input_0"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


def _record_seed_model():
    x = Input((1, 4, 4))
    h = Conv2d(1, 2, 3, padding=1, rng=0)(x)
    y = Add()(ReLU()(h), h)
    return Sequential(Graph(x, MaxPool2d(2)(y)), Reshape(-1), Linear(8, 3, rng=0), BatchNorm1d(3))


def _paths(value, path=()):
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, path + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _paths(item, path + (i,))


def _mutated_record(data, record):
    record = json.loads(json.dumps(record))
    for _ in range(data.draw(st.integers(1, 3))):
        paths = [p for p in _paths(record) if p]
        path = data.draw(st.sampled_from(paths))
        parent = record
        for key in path[:-1]:
            parent = parent[key]
        kind = data.draw(st.sampled_from(["replace", "replace", "delete", "copy"]))
        if kind == "replace":
            parent[path[-1]] = data.draw(JSON_VALUES)
        elif kind == "delete":
            del parent[path[-1]]
        else:  # a subtree copied over another place: deep nesting, shared names, wrong kinds of node
            source = data.draw(st.sampled_from(paths))
            value = record
            for key in source:
                value = value[key]
            parent[path[-1]] = json.loads(json.dumps(value))
    return record


@pytest.fixture(scope="module")
def record_seed():
    model = _record_seed_model()
    return describe(model), {name: np.asarray(value) for name, value in model.state_dict().items()}


@settings(max_examples=RECORD_EXAMPLES, **FUZZ)
@given(data=st.data())
def test_a_hostile_architecture_record_is_refused_clearly_in_bounded_memory(record_seed, fuzz_dir, data):
    record, state = record_seed
    path = fuzz_dir / "record.npz"
    save_arrays(path, state, {ARCHITECTURE_KEY: _mutated_record(data, record)})
    loaded = []
    peak = peak_while(lambda: loaded.append(reader_refuses_clearly(lambda: load_described_model(path))))
    assert peak < RECORD_PEAK_LIMIT, f"{peak} bytes traced while loading a record"
    if loaded[0] is not None:
        assert sorted(loaded[0].state_dict()) == sorted(state)
