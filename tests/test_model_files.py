"""Model files as untrusted input: budgets, zip bombs, verification, malformed fields, atomic writes, the CLI.

Every refusal here happens before anything of the claimed size is allocated;
that is checked with ``tracemalloc`` peaks on files whose success path would
need tens of MiB (never gigabytes), so a test fails by its peak bound, fast,
if the check comes too late.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import struct
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

from nn_from_scratch import files as serialization
from nn_from_scratch.cli import main
from nn_from_scratch.models import localizer, mlp
from nn_from_scratch.training import NeuralNetwork
from nn_from_scratch.losses import MSELoss
from nn_from_scratch.nodes import Linear
from nn_from_scratch.optim import Adam
from nn_from_scratch.containers import Sequential
from nn_from_scratch.files.safetensors_format import SAFETENSORS_DIGEST_KEY, SAFETENSORS_JSON_KEY
from nn_from_scratch.files import (
    atomic_write,
    check_model_path,
    load_arrays,
    load_layout,
    load_model,
    load_model_state,
    save_arrays,
    save_model,
)

from file_helpers import NAME_MAX, fill_the_disk, longest_name, peak_while

MiB = 1 << 20





def tiny_model():
    return Sequential(Linear(3, 2, rng=0, dtype=np.float32))


def write_safetensors(path, header, data=b"", *, text=None, sparse_size=None):
    """A safetensors file from a header dict (or raw header ``text``); ``sparse_size`` makes its data a hole."""
    raw = (text if text is not None else json.dumps(header)).encode()
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(raw)) + raw + data)
        if sparse_size is not None:
            handle.truncate(8 + len(raw) + sparse_size)  # a hole: nothing on disk, zeros when read
    return path


def npz_with_zeros(path, name, nbytes):
    """A valid .npz whose one float64 member of ``nbytes`` zeros is written in chunks (never held in memory)."""
    header = {"descr": "<f8", "fortran_order": False, "shape": (nbytes // 8,)}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(member, header)
            chunk = bytes(MiB)
            for _ in range(nbytes // MiB):
                member.write(chunk)
    return path


# ------------------------------------------------------------------ item 2: budgets and bombs
def test_load_model_refuses_an_npz_bomb_larger_than_the_model_before_inflating_it(tmp_path):
    """A member that inflates to 64 MiB (a few dozen KiB on disk) against a model of 32 bytes."""
    path = npz_with_zeros(tmp_path / "bomb.npz", "0.weight", 64 * MiB)
    assert path.stat().st_size < MiB
    model = tiny_model()
    before = model.state_dict()

    def load():
        with pytest.raises(ValueError, match=r"bomb.npz.*more than the 32 bytes of the model"):
            load_model(path, model)

    assert peak_while(load) < 2 * MiB
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key])


def test_load_model_refuses_a_sparse_safetensors_file_larger_than_the_model_before_reading_it(tmp_path):
    pytest.importorskip("safetensors")
    size = 64 * MiB
    header = {"0.weight": {"dtype": "F64", "shape": [size // 8], "data_offsets": [0, size]}}
    path = write_safetensors(tmp_path / "sparse.safetensors", header, sparse_size=size)

    def load():
        with pytest.raises(ValueError, match=r"sparse.safetensors.*more than the 32 bytes of the model"):
            load_model(path, tiny_model())

    assert peak_while(load) < 2 * MiB


@pytest.mark.parametrize("limit", [MiB, 8 * MiB - 1])
def test_load_arrays_refuses_data_over_max_bytes_before_reading(tmp_path, suffix, limit):
    path = save_arrays(tmp_path / f"a{suffix}", {"w": np.zeros(MiB)})  # 8 MiB of float64

    def load():
        with pytest.raises(ValueError, match="max_bytes"):
            load_arrays(path, max_bytes=limit)

    assert peak_while(load) < 2 * MiB


def test_loading_holds_one_copy_of_the_data(tmp_path, suffix):
    """Peak memory while loading 16 MiB of arrays stays below two copies (it was about three)."""
    arrays = {"a": np.arange(MiB, dtype=np.float64), "b": np.ones((512, 2048), dtype=np.float32)}
    nbytes = sum(a.nbytes for a in arrays.values())
    path = save_arrays(tmp_path / f"a{suffix}", arrays, {"note": "x"})
    loaded = {}

    def load():
        loaded["result"] = load_arrays(path)

    peak = peak_while(load)
    assert nbytes <= peak < nbytes + 3 * MiB
    state, metadata = loaded["result"]
    assert metadata == {"note": "x"}
    for key, value in arrays.items():
        np.testing.assert_array_equal(state[key], value)
        assert state[key].flags.c_contiguous and state[key].flags.writeable and state[key].flags.owndata


def test_load_model_budget_is_the_models_own_size(tmp_path, suffix):
    """A file that fits the model loads with the default budget; an explicit smaller max_bytes refuses it."""
    model = tiny_model()
    path = save_model(tmp_path / f"m{suffix}", model, {"a": 1})
    assert load_model(path, tiny_model()) == {"a": 1}
    with pytest.raises(ValueError, match="max_bytes"):
        load_model(path, tiny_model(), max_bytes=16)


def test_metadata_has_its_own_cap(tmp_path, suffix):
    path = save_arrays(tmp_path / f"m{suffix}", {"w": np.zeros(2)}, {"long": "x" * 4096})
    with pytest.raises(ValueError, match="metadata"):
        load_arrays(path, max_metadata_bytes=1024)
    assert load_arrays(path)[1] == {"long": "x" * 4096}


def test_load_layout_reads_shapes_and_metadata_without_the_data(tmp_path, suffix):
    arrays = {"w": np.zeros((4, MiB // 4), dtype=np.float32), "n": np.array(3, dtype=np.int64)}
    path = save_arrays(tmp_path / f"m{suffix}", arrays, {"model": {"kind": "x"}})
    result = {}

    def inspect():
        result["layout"] = load_layout(path)

    assert peak_while(inspect) < MiB // 2
    layout, metadata = result["layout"]
    assert metadata == {"model": {"kind": "x"}}
    assert {k: (v.shape, v.dtype) for k, v in layout.items()} == {
        "w": ((4, MiB // 4), np.dtype(np.float32)), "n": ((), np.dtype(np.int64))}
    assert layout["w"].nbytes == 4 * MiB


# ------------------------------------------------------------------ item 3: files written here verify
def safetensors_parts(data: bytes):
    size = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + size]), data[8 + size:]


def rewritten(path, change):
    """The file at ``path`` with its header passed through ``change(header)`` and re-encoded."""
    header, body = safetensors_parts(path.read_bytes())
    change(header)
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


def flip_last_data_byte(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0x01])


@pytest.mark.parametrize("change", ["rename digest", "drop digest", "rename json", "drop json", "add key"])
def test_a_file_written_here_cannot_switch_its_digest_off(tmp_path, change):
    pytest.importorskip("safetensors")
    path = save_model(tmp_path / "m.safetensors", tiny_model(), {"history": [1.0]})
    digest, text = SAFETENSORS_DIGEST_KEY, SAFETENSORS_JSON_KEY

    def edit(header):
        strings = header["__metadata__"]
        if change == "rename digest":
            strings["nn_from_scratch.sha257"] = strings.pop(digest)
        elif change == "drop digest":
            del strings[digest]
        elif change == "rename json":
            strings["nn_from_scratcx"] = strings.pop(text)
        elif change == "drop json":
            del strings[text]
        else:
            strings["extra"] = "1"

    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(flip_last_data_byte(rewritten(path, edit)))
    with pytest.raises(ValueError, match="bad.safetensors"):
        load_model_state(bad)
    bad.write_bytes(rewritten(path, edit))  # the data intact, the header tampered with: refused too
    with pytest.raises(ValueError, match="bad.safetensors"):
        load_model_state(bad)


def test_every_single_byte_change_is_refused_or_harmless(tmp_path):
    """Each byte of a small file set to a few values, alone and with a flipped data byte."""
    pytest.importorskip("safetensors")
    path = save_model(tmp_path / "m.safetensors", tiny_model(), {"history": [0.5]})
    good_state, good_metadata = load_model_state(path)
    data = path.read_bytes()
    header_end = 8 + int.from_bytes(data[:8], "little")
    bad = tmp_path / "bad.safetensors"
    refused = accepted = 0
    for position in range(len(data)):
        for value in {data[position] ^ 0x01, data[position] ^ 0x20, 0x20, ord("a"), 0xFF}:
            corrupted = bytearray(data)
            corrupted[position] = value
            variants = [bytes(corrupted)]
            if position < header_end:
                variants.append(flip_last_data_byte(bytes(corrupted)))
            for variant in variants:
                if variant == data:
                    continue
                bad.write_bytes(variant)
                try:
                    state, metadata = load_model_state(bad)
                except ValueError:
                    refused += 1
                    continue
                accepted += 1
                assert sorted(state) == sorted(good_state) and metadata == good_metadata, position
                for key, value in good_state.items():
                    assert state[key].dtype == value.dtype and state[key].tobytes() == value.tobytes(), position
    assert refused > 2000 and accepted < refused // 10


def legacy_digest(arrays, text):
    """The digest files of earlier versions carry: each tensor's name, dtype, shape and bytes, then the metadata."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = arrays[name]
        h.update(f"{len(name)}:{name}|{a.dtype.newbyteorder('<').str}|{a.shape}|".encode())
        h.update(a.astype(a.dtype.newbyteorder("<")).tobytes())
    h.update(b"metadata:" + (b"null" if text is None else text.encode()))
    return h.hexdigest()


@pytest.mark.parametrize("metadata", [None, {"a": [1, 2]}])
def test_files_of_earlier_versions_still_load(tmp_path, metadata):
    st = pytest.importorskip("safetensors.numpy")
    arrays = {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}
    text = None if metadata is None else json.dumps(metadata, sort_keys=True)
    header = {"format": "np", "nn_from_scratch.sha256": legacy_digest(arrays, text)}
    if text is not None:
        header["nn_from_scratch"] = text
    path = tmp_path / "old.safetensors"
    path.write_bytes(st.save(arrays, metadata=header))
    state, loaded = load_model_state(path)
    np.testing.assert_array_equal(state["w"], arrays["w"])
    assert loaded == ({} if metadata is None else metadata)
    path.write_bytes(flip_last_data_byte(path.read_bytes()))
    with pytest.raises(ValueError, match="SHA-256"):
        load_model_state(path)


def test_foreign_files_without_our_keys_load_as_they_are(tmp_path):
    pytest.importorskip("safetensors")
    header = {"__metadata__": {"format": "pt", "note": "hello"},
              "w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
    path = write_safetensors(tmp_path / "f.safetensors", header, np.array([1, 2], dtype="<f4").tobytes())
    state, metadata = load_model_state(path)
    assert metadata == {"format": "pt", "note": "hello"}
    np.testing.assert_array_equal(state["w"], [1, 2])


# ------------------------------------------------------------------ item 4: every malformed field is a ValueError
def npz_with_header(path, shape_text, data=bytes(16)):
    text = "{'descr': '<f8', 'fortran_order': False, 'shape': %s, }" % shape_text
    text += " " * (63 - (len(text) + 10) % 64) + "\n"
    with zipfile.ZipFile(path, "w") as archive:
        with archive.open("w.npy", "w") as member:
            member.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode() + data)
    return path


@pytest.mark.parametrize("case", ["dtype list", "dtype dict", "shape 5000 digits", "offset 5000 digits",
                                  "shape float", "shape bool", "name huge"])
def test_malformed_safetensors_fields_are_value_errors_naming_the_file(tmp_path, case):
    pytest.importorskip("safetensors")
    entry = '{"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}'
    name = '"w"'
    if case == "dtype list":
        entry = entry.replace('"F64"', '["F64"]')
    elif case == "dtype dict":
        entry = entry.replace('"F64"', '{"F64": 1}')
    elif case == "shape 5000 digits":
        entry = entry.replace("[1]", "[" + "9" * 5000 + "]")
    elif case == "offset 5000 digits":
        entry = entry.replace("[0, 8]", "[0, " + "9" * 5000 + "]")
    elif case == "shape float":
        entry = entry.replace("[1]", "[1.0]")
    elif case == "shape bool":
        entry = entry.replace("[1]", "[true]")
    else:
        name = '"' + "w" * 100_000 + '"'
        entry = entry.replace('"F64"', '"X64"')
    path = write_safetensors(tmp_path / "bad.safetensors", None, bytes(8), text="{" + name + ": " + entry + "}")
    with pytest.raises(ValueError, match="bad.safetensors") as info:
        load_model_state(path)
    assert len(str(info.value)) < 1000


@pytest.mark.parametrize("shape", ["(True, 2)", "(2, False)", "(" + "9" * 5000 + ",)", "(2.0,)", "(-1,)", "'x'"])
def test_malformed_npy_headers_are_value_errors_naming_the_file(tmp_path, shape):
    path = npz_with_header(tmp_path / "bad.npz", shape)
    with pytest.raises(ValueError, match="bad.npz") as info:
        load_model_state(path)
    assert len(str(info.value)) < 1000
    with pytest.raises(ValueError, match="bad.npz"):
        load_layout(path)


# ------------------------------------------------------------------ item 5: atomic writes
def test_atomic_write_keeps_the_mode_of_the_file_it_replaces(tmp_path):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")
    for mode in (0o644, 0o600, 0o640):
        target.chmod(mode)
        atomic_write(target, lambda handle: handle.write(b"new"))
        assert stat.S_IMODE(target.stat().st_mode) == mode
    assert target.read_bytes() == b"new"


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_write_gives_a_new_file_the_umask_default(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_write(tmp_path / "new.bin", lambda handle: handle.write(b"x"))
        reference = tmp_path / "reference.bin"
        reference.write_bytes(b"x")  # what open() gives under the same umask
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.bin").stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE((tmp_path / "new.bin").stat().st_mode) == stat.S_IMODE(reference.stat().st_mode)


KILLED_WRITER = """
import os, signal, sys
from nn_from_scratch.files import atomic_write

def write(handle):
    handle.write(b"partial")
    handle.flush()
    os.kill(os.getpid(), signal.SIGKILL)

atomic_write(sys.argv[1], write)
"""


def temporaries(directory):
    return sorted(name for name in os.listdir(directory) if name.endswith(".tmp"))


def test_temporaries_of_a_killed_write_are_removed_by_the_next_write_of_that_target(tmp_path):
    target = tmp_path / "model.npz"
    other = tmp_path / "other.npz"
    for path in (target, other):
        process = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(path)], timeout=30 * 60)  # a hang guard only
        assert process.returncode == -signal.SIGKILL
    assert len(temporaries(tmp_path)) == 2  # the bug as reported: what SIGKILL leaves behind
    atomic_write(target, lambda handle: handle.write(b"whole"))
    assert target.read_bytes() == b"whole"
    left = temporaries(tmp_path)
    assert len(left) == 1 and left[0].startswith(".other.npz.")  # only that target's are cleaned


def test_cleanup_spares_live_writers_and_names_that_are_not_ours(tmp_path):
    target = tmp_path / "model.npz"
    live = tmp_path / f".model.npz.{os.getpid()}-0123456789abcdef.tmp"  # a write of this process in progress
    foreign = [tmp_path / ".model.npz.backup.tmp", tmp_path / "model.npz.tmp", tmp_path / ".model.npzx.1-ab.tmp",
               tmp_path / f".model.npz.{os.getpid()}-nothex.tmp"]
    for path in [live, *foreign]:
        path.write_bytes(b"x")
    old = tmp_path / f".model.npz.{os.getpid()}-fedcba9876543210.tmp"  # this pid, but untouched for two days
    old.write_bytes(b"x")
    two_days_ago = time.time() - 2 * 86400
    os.utime(old, (two_days_ago, two_days_ago))
    atomic_write(target, lambda handle: handle.write(b"whole"))
    assert live.exists() and all(path.exists() for path in foreign)
    assert not old.exists()


def test_check_model_path_probes_the_directory_and_leaves_nothing(tmp_path):
    assert check_model_path(tmp_path / "new" / "dir" / "m.npz") == "npz"
    assert (tmp_path / "new" / "dir").is_dir() and os.listdir(tmp_path / "new" / "dir") == []
    blocker = tmp_path / "file"
    blocker.write_bytes(b"x")
    with pytest.raises(ValueError, match=r"cannot write .*file.*m.npz"):
        check_model_path(blocker / "m.npz")
    (tmp_path / "d.npz").mkdir()
    with pytest.raises(ValueError, match="is a directory"):
        check_model_path(tmp_path / "d.npz")


def test_check_model_path_refuses_a_directory_it_cannot_write(tmp_path, monkeypatch):
    directory = tmp_path / "readonly"
    directory.mkdir()
    real_open = os.open

    def refuse(path, flags, *args, **kwargs):
        if os.path.dirname(os.fspath(path)) == str(directory):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)  # root ignores chmod, so the refusal is simulated
    with pytest.raises(ValueError, match=r"cannot write .*readonly.*Permission denied"):
        check_model_path(directory / "m.npz")
    monkeypatch.undo()
    assert os.listdir(directory) == []


def test_the_full_disk_case_needs_no_seam_in_production_code(tmp_path, monkeypatch):
    """A write that fails part way (os.fdopen's file object wrapped to fail) keeps the old file."""
    path = atomic_write(tmp_path / "f.bin", lambda handle: handle.write(b"old"))
    fill_the_disk(monkeypatch, budget=2)
    with pytest.raises(OSError, match="No space left"):
        atomic_write(path, lambda handle: handle.write(b"new data"))
    monkeypatch.undo()
    assert path.read_bytes() == b"old" and temporaries(tmp_path) == []


@pytest.mark.parametrize("char", ["m", "é", "水"])
def test_a_file_name_of_the_longest_length_is_saved_and_loaded(tmp_path, suffix, char):
    """The temporary's name was about 30 bytes longer than the target's: a legal 255-byte name failed."""
    model = tiny_model()
    path = tmp_path / longest_name(suffix, char)
    assert check_model_path(path) == suffix[1:] and os.listdir(tmp_path) == []
    save_model(path, model, {"note": "long"})
    state, metadata = load_model_state(path)
    assert metadata == {"note": "long"} and state.keys() == model.state_dict().keys()
    assert all(np.array_equal(state[k], v) for k, v in model.state_dict().items())
    save_model(path, model)  # replacing it works too
    assert os.listdir(tmp_path) == [path.name]


def test_save_model_takes_the_path_first_or_second_as_torch_save_does(tmp_path, suffix):
    """``save_model(model, path)`` (torch's order) writes the same file as ``save_model(path, model)``."""
    model = tiny_model()
    ours = save_model(tmp_path / f"ours{suffix}", model, {"run": 1})
    torchs = save_model(model, tmp_path / f"torch{suffix}", {"run": 1})
    assert torchs == tmp_path / f"torch{suffix}"
    (a, meta_a), (b, meta_b) = load_model_state(ours), load_model_state(torchs)
    assert meta_a == meta_b == {"run": 1} and a.keys() == b.keys() == model.state_dict().keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    as_text = save_model(model.state_dict(), str(tmp_path / f"text{suffix}"))  # a state dict and a str path
    assert sorted(load_model_state(as_text)[0]) == sorted(a)


@pytest.mark.parametrize("first, second, message", [
    ("a.npz", "b.npz", "two paths"),
    ("model", "model", "two models"),
    ("model", 3, "needs a path"),
    ("a.npz", (1.0, 2.0), "needs a model"),
])
def test_save_model_refuses_two_paths_two_models_or_no_model_before_writing(tmp_path, first, second, message):
    model = tiny_model()
    value = {"model": model, "a.npz": tmp_path / "a.npz", "b.npz": str(tmp_path / "b.npz")}
    with pytest.raises(TypeError, match=message):
        save_model(value.get(first, first), value.get(second, second))
    assert os.listdir(tmp_path) == []


def test_a_file_name_longer_than_the_file_system_takes_is_refused_before_the_work(tmp_path):
    path = tmp_path / ("m" * (NAME_MAX - 3) + ".npz")
    with pytest.raises(ValueError, match="cannot write .*mmm.npz: File name too long"):
        check_model_path(path)
    with pytest.raises(OSError, match="File name too long"):
        save_model(path, tiny_model())
    assert os.listdir(tmp_path) == []


def test_temporaries_of_a_killed_write_of_a_long_name_are_removed_by_the_next_write(tmp_path):
    """Long names get a shortened temporary name; the cleanup finds it, and spares another long target's."""
    target = tmp_path / longest_name(".npz")
    other = tmp_path / (longest_name(".npz")[:-5] + "x.npz")  # the same first 250 bytes
    for path in (target, other):
        process = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(path)], timeout=30 * 60)  # a hang guard only
        assert process.returncode == -signal.SIGKILL
    left = temporaries(tmp_path)
    assert len(left) == 2 and all(len(os.fsencode(name)) <= NAME_MAX for name in left)
    atomic_write(target, lambda handle: handle.write(b"whole"))
    assert target.read_bytes() == b"whole"
    assert len(temporaries(tmp_path)) == 1
    atomic_write(other, lambda handle: handle.write(b"whole"))
    assert temporaries(tmp_path) == []


# ------------------------------------------------------------------ item 6: error messages stay short
def test_key_lists_in_errors_are_capped(tmp_path, suffix):
    model = tiny_model()
    state = dict(model.state_dict(), **{f"extra.{i}.{'x' * 50}": np.zeros(0, dtype=np.float32)
                                        for i in range(3000)})
    del state["0.bias"]
    path = save_arrays(tmp_path / f"many{suffix}", state)
    with pytest.raises(ValueError, match=r"and 2995 more") as info:
        load_model(path, model)
    message = str(info.value)
    assert len(message) < 1000 and "missing keys ['0.bias']" in message


# ------------------------------------------------------------------ items 1 and 16: evaluate on untrusted files
def evaluate(capsys, path, *extra):
    """Run ``evaluate --weights path``; the exit code and stderr."""
    try:
        code = main(["evaluate", "--weights", str(path), *extra])
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def error_line(err):
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


def test_evaluate_refuses_a_huge_model_config_before_building_anything(tmp_path, capsys):
    """A tiny file whose metadata asks for 9 million float64 parameters (72 MB) is refused without building them."""
    config = {"kind": "mlp", "in_features": 64, "hidden": [3000, 3000], "classes": 10, "dtype": "float64"}
    path = save_model(tmp_path / "huge.npz", tiny_model(), {"model": config})
    assert path.stat().st_size < 2000
    result = {}

    def run():
        result["out"] = evaluate(capsys, path)

    assert peak_while(run) < 8 * MiB
    code, _, err = result["out"]
    assert code == 2 and "Traceback" not in err
    assert "does not hold" in error_line(err) or "does not match" in error_line(err)


def test_evaluate_error_for_a_config_with_many_layers_is_short(tmp_path, capsys):
    config = {"kind": "mlp", "in_features": 64, "hidden": [2] * 3000, "classes": 10, "dtype": "float64"}
    path = save_model(tmp_path / "deep.npz", tiny_model(), {"model": config})
    code, _, err = evaluate(capsys, path)
    assert code == 2 and "hidden" in error_line(err) and len(err) < 2000


@pytest.mark.parametrize("field, value", [
    ("in_features", True), ("in_features", 64.0), ("in_features", "64"), ("in_features", 0),
    ("hidden", [[16]]), ("hidden", "16"), ("hidden", [True]), ("classes", None), ("dtype", "int8"),
    ("dtype", ["float64"]), ("kind", "transformer"), ("extra", 1),
])
def test_evaluate_names_the_bad_config_field(tmp_path, capsys, field, value):
    model = mlp(64, [16], 10, rng=0)
    config = {"kind": "mlp", "in_features": 64, "hidden": [16], "classes": 10, "dtype": "float64", field: value}
    path = save_model(tmp_path / "bad.npz", model, {"model": config, "dataset": "digits"})
    code, _, err = evaluate(capsys, path)
    assert code == 2 and "Traceback" not in err
    assert repr(field) in error_line(err) or field in error_line(err)


def tiny_localizer_file(tmp_path, **data_changes):
    model = localizer(16, 10, channels=(4,), hidden=8, rng=0, dtype=np.float32)
    config = {"kind": "localizer", "image_size": 16, "channels": [4], "hidden": 8, "classes": 10,
              "dtype": "float32"}
    data = {"n_train": 20, "n_test": 8, "canvas": 16, "min_size": 6, "max_size": 12, "seed": 0}
    data.update(data_changes)
    loss = {"box_weight": 10.0, "box_loss": "smooth_l1", "label_smoothing": 0.1}
    return save_model(tmp_path / "loc.npz", model, {"model": config, "data": data, "loss": loss,
                                                    "task": "localize", "dataset": "digits"}), model


def test_evaluate_a_localizer_renders_only_the_test_canvases(tmp_path, capsys):
    """20000 training canvases in the metadata: drawn, not rendered (rendering them took 41 MB of float64)."""
    path, _ = tiny_localizer_file(tmp_path, n_train=20000)
    result = {}

    def run():
        result["out"] = evaluate(capsys, path)

    peak = peak_while(run)
    code, out, err = result["out"]
    assert code == 0, err
    assert "8 canvases" in out
    assert peak < 16 * MiB


@pytest.mark.parametrize("changes, field", [
    ({"n_test": True}, "n_test"), ({"seed": -1}, "seed"), ({"canvas": 32}, "canvas"), ({"min_size": 2.5}, "min_size"),
    ({"n_train": None}, "n_train"), ({"n_train": "20"}, "n_train"),
])
def test_evaluate_refuses_bad_localizer_data_settings(tmp_path, capsys, changes, field):
    path, _ = tiny_localizer_file(tmp_path, **changes)
    code, _, err = evaluate(capsys, path)
    assert code == 2 and field in error_line(err) and "Traceback" not in err


CAPPED_EVALUATE = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))  # a late check fails with MemoryError, not the machine
from nn_from_scratch.cli import main
main(["evaluate", "--weights", sys.argv[1]])
"""


@pytest.mark.parametrize("changes, field", [({"n_train": 10**9}, "n_train"), ({"n_test": 10**7}, "n_test"),
                                            ({"n_train": 10**6 + 1}, "n_train")])
def test_evaluate_refuses_localizer_sizes_over_the_bounds(tmp_path, changes, field):
    resource = pytest.importorskip("resource")
    assert resource
    path, _ = tiny_localizer_file(tmp_path, **changes)
    process = subprocess.run([sys.executable, "-c", CAPPED_EVALUATE, str(path)], capture_output=True, text=True,
                             timeout=30 * 60)  # a hang guard only
    assert process.returncode == 2 and field in error_line(process.stderr), process.stderr[-2000:]


@pytest.mark.parametrize("loss, field", [({"box_weight": True}, "box_weight"), ({"box_weight": "1"}, "box_weight"),
                                         ({"box_loss": ["mse"]}, "box_loss"),
                                         ({"label_smoothing": 2.0}, "label_smoothing")])
def test_evaluate_refuses_bad_localizer_loss_settings(tmp_path, capsys, loss, field):
    path, model = tiny_localizer_file(tmp_path)
    _, metadata = load_model_state(path)
    metadata["loss"].update(loss)
    save_model(path, model, metadata)
    code, _, err = evaluate(capsys, path)
    assert code == 2 and field in error_line(err) and "Traceback" not in err


def test_evaluate_refuses_an_unknown_dataset_in_the_metadata(tmp_path, capsys):
    model = mlp(64, [16], 10, rng=0)
    config = {"kind": "mlp", "in_features": 64, "hidden": [16], "classes": 10, "dtype": "float64"}
    path = save_model(tmp_path / "m.npz", model, {"model": config, "dataset": ["digits"]})
    code, _, err = evaluate(capsys, path)
    assert code == 2 and "dataset" in error_line(err)


def test_evaluate_explains_a_checkpoint(tmp_path, capsys):
    model = Sequential(Linear(2, 1, rng=0))
    network = NeuralNetwork(model, MSELoss(), Adam(model.parameters(), lr=1e-2))
    X = np.linspace(-1, 1, 16).reshape(8, 2)
    checkpoint = tmp_path / "run-checkpoint.npz"
    network.fit(X, X[:, :1], epochs=1, batch_size=4, rng=0, progress=False, checkpoint=checkpoint)
    code, _, err = evaluate(capsys, checkpoint)
    line = error_line(err)
    assert code == 2 and "training checkpoint" in line and "--resume" in line and "'model'" not in line


def test_evaluate_explains_a_file_without_metadata(tmp_path, capsys, suffix):
    path = save_model(tmp_path / f"bare{suffix}", tiny_model())
    code, _, err = evaluate(capsys, path)
    line = error_line(err)
    assert code == 2 and "metadata" in line and "'model'" not in line
