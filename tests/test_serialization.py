"""Model files: .safetensors and .npz round trips, the PyTorch oracle both ways, validation and atomic writes."""
from __future__ import annotations

import errno
import json
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest

from nn_from_scratch import files as serialization
from nn_from_scratch.files.safetensors_format import _digest
from nn_from_scratch.nodes import BatchNorm1d, Linear, ReLU
from nn_from_scratch.optim import Adam
from nn_from_scratch.containers import Sequential
from nn_from_scratch.files import (
    atomic_write,
    flatten_state,
    load_arrays,
    load_model,
    load_model_state,
    save_arrays,
    save_model,
    unflatten_state,
)

from file_helpers import fill_the_disk

SUFFIXES = [".npz", ".safetensors"]


def make_model(seed=0, dtype=np.float32):
    """Linear -> BatchNorm1d -> ReLU -> Linear: parameters, float buffers and a 0-d int64 buffer."""
    return Sequential(Linear(5, 4, rng=seed, dtype=dtype), BatchNorm1d(4, dtype=dtype), ReLU(),
                      Linear(4, 3, rng=seed + 1, dtype=dtype))


def trained_model(seed=0, dtype=np.float32):
    model = make_model(seed, dtype)
    rng = np.random.default_rng(seed)
    for _ in range(3):  # move the running statistics and num_batches_tracked off their defaults
        model.forward(rng.standard_normal((8, 5)).astype(dtype))
    return model.eval()


def torch_model(torch):
    return torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.BatchNorm1d(4), torch.nn.ReLU(),
                               torch.nn.Linear(4, 3)).eval()


def assert_same_state(a, b):
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, key
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


# ------------------------------------------------------------------ round trips
def test_round_trip_keeps_every_array_dtype_and_the_metadata(tmp_path, suffix):
    model = trained_model()
    metadata = {"model": {"kind": "test", "hidden": [4]}, "history": {"loss": [1.5, 0.25]}, "note": "ünïcode"}
    path = save_model(tmp_path / f"model{suffix}", model, metadata)
    state, loaded_metadata = load_model_state(path)
    assert_same_state(state, model.state_dict())
    assert state["1.num_batches_tracked"].shape == () and state["1.num_batches_tracked"].dtype == np.int64
    assert loaded_metadata == metadata
    fresh = make_model(seed=9)
    assert load_model(path, fresh) == metadata
    assert_same_state(fresh.state_dict(), model.state_dict())
    assert all(v.flags.writeable and v.flags.c_contiguous for v in state.values())


def test_any_named_arrays_round_trip(tmp_path, suffix):
    arrays = {
        "f16": np.array([1.5, -np.inf, np.nan], dtype=np.float16),
        "f64": np.arange(6.0).reshape(2, 3)[:, ::2],  # non-contiguous
        "big_endian": np.arange(4, dtype=">i4"),
        "bool": np.array([[True, False]]),
        "u8": np.arange(3, dtype=np.uint8),
        "empty": np.zeros((0, 3)),
        "scalar": np.array(7, dtype=np.int64),
    }
    save_arrays(tmp_path / f"a{suffix}", arrays)
    loaded, metadata = load_arrays(tmp_path / f"a{suffix}")
    assert metadata == {}
    for key, value in arrays.items():
        assert loaded[key].dtype == value.dtype.newbyteorder("=") and loaded[key].shape == value.shape, key
        np.testing.assert_array_equal(loaded[key], value)


@pytest.mark.parametrize("bad, error", [
    ({"x": np.array(["a"])}, TypeError),
    ({"x": np.array([object()])}, TypeError),
    ({"x": np.array([1j])}, TypeError),
    ({"__metadata__": np.zeros(1)}, ValueError),
    ({3: np.zeros(1)}, TypeError),
])
def test_only_numeric_arrays_under_string_names_are_saved(tmp_path, suffix, bad, error):
    with pytest.raises(error):
        save_arrays(tmp_path / f"a{suffix}", bad)
    assert os.listdir(tmp_path) == []


def test_unknown_suffix_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match=r"unknown model file suffix '.pt'; use .safetensors or .npz"):
        save_model(tmp_path / "model.pt", make_model())
    with pytest.raises(ValueError, match="unknown model file suffix"):
        load_model_state(tmp_path / "model.pkl")
    for suffix in SUFFIXES:
        with pytest.raises(FileNotFoundError, match="no model file at"):
            load_model_state(tmp_path / f"none{suffix}")


def test_metadata_must_be_json(tmp_path, suffix):
    with pytest.raises(TypeError, match="JSON-serialisable"):
        save_model(tmp_path / f"m{suffix}", make_model(), {"x": object()})


# ------------------------------------------------------------------ the PyTorch oracle
def test_file_written_here_loads_into_torch(tmp_path, torch):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    model = trained_model()
    path = save_model(tmp_path / "model.safetensors", model, {"kind": "test"})
    reference = torch_model(torch)
    reference.load_state_dict(safetensors_torch.load_file(str(path)))  # strict: every key, shape
    x = np.random.default_rng(1).standard_normal((6, 5)).astype(np.float32)
    expected = reference(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(model.evaluate(x), expected, rtol=1e-6, atol=1e-6)
    assert int(reference[1].num_batches_tracked) == 3


def test_file_saved_from_torch_loads_here(tmp_path, torch):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    torch.manual_seed(0)
    reference = torch_model(torch)
    reference.train()
    with torch.no_grad():
        for _ in range(2):
            reference(torch.randn(8, 5))
    reference.eval()
    path = tmp_path / "from_torch.safetensors"
    safetensors_torch.save_file(reference.state_dict(), str(path), metadata={"format": "pt"})
    model = make_model(seed=5)
    assert load_model(path, model) == {"format": "pt"}
    model.eval()
    x = np.random.default_rng(2).standard_normal((6, 5)).astype(np.float32)
    np.testing.assert_allclose(model.evaluate(x), reference(torch.from_numpy(x)).detach().numpy(), rtol=1e-6, atol=1e-6)


def test_bfloat16_from_torch_is_refused_clearly(tmp_path, torch):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    path = tmp_path / "bf16.safetensors"
    safetensors_torch.save_file({"w": torch.zeros(2, dtype=torch.bfloat16)}, str(path))
    with pytest.raises(ValueError, match=r"tensor 'w': unsupported dtype 'BF16' \(it has no NumPy equivalent"):
        load_model_state(path)


# ------------------------------------------------------------------ validation on load
def corrupt_states(model):
    good = model.state_dict()
    missing = dict(good)
    del missing["3.bias"]
    unexpected = dict(good, extra=np.zeros(2, dtype=np.float32))
    shape = dict(good, **{"0.weight": np.zeros((4, 6), dtype=np.float32)})
    dtype = dict(good, **{"0.weight": good["0.weight"].astype(np.float64)})
    return [
        (missing, r"missing keys \['3.bias'\]"),
        (unexpected, r"unexpected keys \['extra'\]"),
        (shape, r"'0.weight': expected shape \(4, 5\), got \(4, 6\)"),
        (dtype, r"'0.weight': expected dtype float32, got float64"),
    ]


@pytest.mark.parametrize("case", range(4))
def test_a_file_that_does_not_fit_is_refused_and_changes_nothing(tmp_path, suffix, case):
    model = trained_model()
    state, message = corrupt_states(model)[case]
    path = save_arrays(tmp_path / f"bad{suffix}", state)
    target = make_model(seed=7)
    before = target.state_dict()
    with pytest.raises(ValueError, match=message):
        load_model(path, target)
    assert_same_state(target.state_dict(), before)


def test_truncated_files_are_refused_at_every_length(tmp_path, suffix):
    path = save_model(tmp_path / f"m{suffix}", trained_model(), {"a": 1})
    data = path.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    for length in sorted({0, 1, 7, 8, 9, 20, len(data) // 3, len(data) // 2, len(data) - 8, len(data) - 1}):
        cut.write_bytes(data[:length])
        with pytest.raises(ValueError):
            load_model_state(cut)


def test_flipped_bytes_are_refused(tmp_path, suffix):
    """.npz members carry CRCs and our .safetensors files a SHA-256: a flipped byte never changes what loads."""
    path = save_model(tmp_path / f"m{suffix}", trained_model(), {"history": [0.5, 0.25]})
    good_state, good_metadata = load_model_state(path)
    data = path.read_bytes()
    bad = tmp_path / f"flipped{suffix}"
    refused = 0
    for position in np.random.default_rng(0).permutation(len(data))[:150]:
        corrupted = bytearray(data)
        corrupted[position] ^= 0x01 if position % 2 else 0xFF
        bad.write_bytes(bytes(corrupted))
        try:
            state, metadata = load_model_state(bad)
        except ValueError:
            refused += 1
            continue
        # a flip in a field nothing reads (a zip timestamp, header padding) may pass: what loads is then intact
        assert_same_state(state, good_state)
        assert metadata == good_metadata
    assert refused > 100


def test_not_a_safetensors_file(tmp_path):
    pytest.importorskip("safetensors")
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"PK\x03\x04 this is a zip, or text, anything but safetensors")
    with pytest.raises(ValueError, match=r"is not a safetensors file \(or is truncated\): its header length \d+ is larger"):
        load_model_state(path)
    path.write_bytes(struct.pack("<Q", 2**63) + b"{}")
    with pytest.raises(ValueError, match="header length 9223372036854775808 is larger than the 2 bytes"):
        load_model_state(path)
    path.write_bytes(struct.pack("<Q", 4) + b"[1] ")
    with pytest.raises(ValueError, match="header must be a JSON object"):
        load_model_state(path)
    path.write_bytes(struct.pack("<Q", 3) + b"\xff\xfe{")
    with pytest.raises(ValueError, match="header is not JSON"):
        load_model_state(path)


def safetensors_file(path, header, data=b""):
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


@pytest.mark.parametrize("header, data, message", [
    ({"w": {"dtype": "F32", "shape": [10**6, 10**6], "data_offsets": [0, 4 * 10**12]}}, b"",
     r"reach past the 0 bytes of data"),
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, bytes(4), r"needs 8 bytes, its data_offsets \[0, 4\] span 4"),
    ({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, bytes(8), "cover 4 bytes of data, the file holds 8"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
      "b": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, bytes(8), "overlap or gap"),
    ({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, bytes(4), "non-negative integers"),
    ({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}, bytes(4), "data_offsets must be"),
    ({"w": {"dtype": "X9", "shape": [1], "data_offsets": [0, 4]}}, bytes(4), "unsupported dtype 'X9'"),
    ({"w": {"dtype": "F32", "shape": [1]}}, bytes(4), "expected an entry with dtype, shape and data_offsets"),
    ({"__metadata__": {"a": 1}}, b"", "__metadata__ must map strings to strings"),
    ({"__metadata__": {"nn_from_scratch": "{not json"}}, b"", "says it was written by nn_from_scratch, but its "
                                                                "header has no SHA-256 digest"),
])
def test_lying_safetensors_headers_are_refused_before_loading(tmp_path, header, data, message):
    pytest.importorskip("safetensors")
    with pytest.raises(ValueError, match=message):
        load_model_state(safetensors_file(tmp_path / "m.safetensors", header, data))


def test_metadata_that_is_not_json_is_refused_even_with_a_matching_digest(tmp_path):
    pytest.importorskip("safetensors")
    text = "{not json"
    strings = {"format": "np", "nn_from_scratch": text, "nn_from_scratch.sha256": _digest({}, text)}
    with pytest.raises(ValueError, match="metadata is not valid JSON"):
        load_model_state(safetensors_file(tmp_path / "m.safetensors", {"__metadata__": strings}))


def test_duplicate_safetensors_keys_are_refused(tmp_path):
    pytest.importorskip("safetensors")
    entry = '{"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}'
    text = ('{"w": ' + entry + ', "w": ' + entry + "}").encode()
    path = tmp_path / "dup.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"\x01")
    with pytest.raises(ValueError, match="lists 'w' twice"):
        load_model_state(path)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_npz_never_unpickles(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.npz"
    with zipfile.ZipFile(path, "w") as archive:
        with archive.open("w.npy", "w") as member:
            np.lib.format.write_array(member, np.array([_Exploit(str(marker))], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"'w.npy': dtype object is not allowed \(numeric arrays only"):
        load_model_state(path)
    assert not marker.exists()
    assert pickle  # the exploit above is a real pickle payload


def test_npz_with_a_lying_member_header_is_refused(tmp_path):
    path = tmp_path / "lying.npz"
    header = {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("w.npy", "w") as member:
            np.lib.format.write_array_header_1_0(member, header)
            member.write(bytes(64))
    with pytest.raises(ValueError, match=r"'w.npy': header declares shape \(1000000, 1000000\) of float64 \(8000000000000 bytes\)"):
        load_model_state(path)


def test_npz_fortran_order_member(tmp_path):
    path = tmp_path / "f.npz"
    value = np.asfortranarray(np.arange(6.0).reshape(2, 3))
    with zipfile.ZipFile(path, "w") as archive:
        with archive.open("w.npy", "w") as member:
            np.lib.format.write_array(member, value)
    loaded, _ = load_model_state(path)
    np.testing.assert_array_equal(loaded["w"], value)
    assert loaded["w"].flags.c_contiguous


def test_npz_members_that_are_not_arrays(tmp_path):
    path = tmp_path / "odd.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(ValueError, match="member 'readme.txt' is not an .npy array"):
        load_model_state(path)


# ------------------------------------------------------------------ atomic writes
def leftover_files(directory):
    return sorted(name for name in os.listdir(directory) if name.startswith("."))


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()])
@pytest.mark.parametrize("fraction", [0, 0.1, 0.6])
def test_a_write_that_fails_part_way_keeps_the_old_file(tmp_path, suffix, monkeypatch, error, fraction):
    path = save_model(tmp_path / f"model{suffix}", trained_model(seed=0), {"version": "old"})
    old_bytes = path.read_bytes()
    budget = int(fraction * len(old_bytes))
    fill_the_disk(monkeypatch, budget, error)  # the file object the save writes through fails part way
    with pytest.raises(type(error)):
        save_model(path, trained_model(seed=1), {"version": "new"})
    assert path.read_bytes() == old_bytes
    assert leftover_files(tmp_path) == []
    monkeypatch.undo()
    assert load_model_state(path)[1] == {"version": "old"}


def test_a_full_disk_at_fsync_keeps_the_old_file(tmp_path, suffix, monkeypatch):
    path = save_model(tmp_path / f"model{suffix}", trained_model(seed=0), {"version": "old"})
    old_bytes = path.read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        save_model(path, trained_model(seed=1))
    monkeypatch.undo()
    assert path.read_bytes() == old_bytes
    assert leftover_files(tmp_path) == []


def test_atomic_write_creates_the_directory_and_replaces_whole_files(tmp_path):
    target = tmp_path / "new" / "dir" / "file.bin"
    atomic_write(target, lambda handle: handle.write(b"first"))
    atomic_write(target, lambda handle: handle.write(b"second"))
    assert target.read_bytes() == b"second"
    assert leftover_files(target.parent) == []


# ------------------------------------------------------------------ nested state
def test_flatten_state_round_trips_an_optimizer_state_dict():
    model = make_model()
    optimizer = Adam(model.parameters(), lr=1e-2, betas=(0.8, 0.95))
    for p in model.parameters():
        p.grad[...] = 1
    optimizer.step()
    state = optimizer.state_dict()
    tree, arrays = flatten_state(state, "optimizer/")
    tree = json.loads(json.dumps(tree))
    assert "optimizer/state/0/exp_avg" in arrays
    restored = unflatten_state(tree, arrays)
    assert restored["hyperparameters"] == state["hyperparameters"]
    assert restored["param_shapes"] == state["param_shapes"]
    assert set(restored["state"]) == set(state["state"]) and all(isinstance(k, int) for k in restored["state"])
    other = Adam(make_model(seed=3).parameters(), lr=1.0)
    other.load_state_dict(restored)
    assert other.state_dict()["step_count"] == 1


def test_flatten_state_refuses_what_json_cannot_hold():
    with pytest.raises(TypeError, match="cannot store a set"):
        flatten_state({"a": {1, 2}})
    with pytest.raises(ValueError, match="array 'x' that the file does not hold"):
        unflatten_state({"__array__": "x"}, {})
