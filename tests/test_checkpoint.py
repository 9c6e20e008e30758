"""Checkpoints: exact resume (Adam, cosine schedule, shuffling, Dropout), Ctrl-C, refusals, and the command line."""
from __future__ import annotations

import os
import shlex

import numpy as np
import pytest

from nn_from_scratch import NeuralNetwork, Sequential, TrainingDiverged
from nn_from_scratch import files as serialization
from nn_from_scratch.cli import main
from nn_from_scratch.datasets import load_digits
from nn_from_scratch.losses import CrossEntropyLoss, MSELoss
from nn_from_scratch.training import CheckpointError, TrainingInterrupted, node_generators
from nn_from_scratch.nodes import BatchNorm1d, Dropout, Linear, ReLU
from nn_from_scratch.optim import SGD, Adam, CosineAnnealingLR, RMSProp
from nn_from_scratch.files import load_arrays, load_model_state, save_model

from file_helpers import NAME_MAX, fill_the_disk, longest_name



@pytest.fixture(scope="module")
def data():
    X, y, X_test, y_test = load_digits()
    return X[:240], y[:240], X_test[:100], y_test[:100]


def make_network(hidden=24, optimizer=Adam, scheduler=True, dropout_seed=11, epochs=4):
    model = Sequential(Linear(64, hidden, rng=1), BatchNorm1d(hidden), ReLU(), Dropout(0.25, rng=dropout_seed),
                       Linear(hidden, 10, rng=2))
    opt = optimizer(model.parameters(), lr=1e-2)
    sched = CosineAnnealingLR(opt, T_max=epochs) if scheduler else None
    return NeuralNetwork(model, CrossEntropyLoss(), opt, sched)


def fit(network, data, **kwargs):
    X, y, X_test, y_test = data
    options = dict(epochs=4, batch_size=32, validation_data=(X_test, y_test), rng=7, progress=False)
    options.update(kwargs)
    return network.fit(X, y, **options)


def assert_bit_identical(a, b):
    """Same weights, buffers, optimizer state, scheduler state and generators, bit for bit."""
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sorted(sa) == sorted(sb)
    for key in sa:
        np.testing.assert_array_equal(sa[key], sb[key], err_msg=key)
    oa, ob = a.optimizer.state_dict(), b.optimizer.state_dict()
    assert oa["hyperparameters"] == ob["hyperparameters"] and oa["step_count"] == ob["step_count"]
    for index in oa["state"]:
        for key, value in oa["state"][index].items():
            np.testing.assert_array_equal(value, ob["state"][index][key])
    if a.scheduler is not None:
        assert a.scheduler.state_dict() == b.scheduler.state_dict()
    assert [(k, g.bit_generator.state) for k, g in node_generators(a.model)] == \
        [(k, g.bit_generator.state) for k, g in node_generators(b.model)]


# ------------------------------------------------------------------ exact resume
def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path, data, suffix):
    reference = make_network()
    history = fit(reference, data)
    path = tmp_path / f"run{suffix}"
    first = make_network()
    partial = fit(first, data, epochs=2, checkpoint=path)
    assert partial == {key: values[:2] for key, values in history.items()}
    arrays, metadata = load_arrays(path)
    assert metadata["epoch"] == 2 and metadata["history"] == partial
    assert "model/1.running_mean" in arrays and "optimizer/state/0/exp_avg" in arrays
    assert set(metadata["rng"]) == {"shuffle", "node/3.rng"}

    resumed = make_network(dropout_seed=999)  # a new model, optimizer and scheduler; another Dropout seed
    resumed_history = fit(resumed, data, rng=12345, resume=path)  # the checkpoint's generator state wins
    assert resumed_history == history  # floats compared with ==: bit for bit
    assert_bit_identical(resumed, reference)


def test_a_checkpoint_with_a_name_of_the_longest_length_is_written_and_resumed(tmp_path, data, suffix):
    """A 255-byte name is legal; the atomic write's temporary once made it too long to write."""
    reference = make_network()
    history = fit(reference, data)
    path = tmp_path / longest_name(suffix, "é")
    fit(make_network(), data, epochs=2, checkpoint=path)
    assert load_arrays(path)[1]["epoch"] == 2 and os.listdir(tmp_path) == [path.name]
    resumed = make_network()
    assert fit(resumed, data, resume=path, checkpoint=path) == history
    assert_bit_identical(resumed, reference)


def test_resume_with_a_generator_and_checkpointing_on(tmp_path, data):
    """rng may be a Generator (it is set to the saved state); resume and checkpoint may name the same file."""
    reference = make_network(optimizer=RMSProp, scheduler=False)
    history = fit(reference, data, epochs=5)
    path = tmp_path / "run.npz"
    fit(make_network(optimizer=RMSProp, scheduler=False), data, epochs=3, checkpoint=path)
    generator = np.random.default_rng(0)
    resumed = make_network(optimizer=RMSProp, scheduler=False)
    assert fit(resumed, data, epochs=5, rng=generator, resume=path, checkpoint=path) == history
    assert_bit_identical(resumed, reference)
    assert load_arrays(path)[1]["epoch"] == 5


def test_checkpoint_every(tmp_path, data, monkeypatch):
    written = []
    original = serialization.save_arrays

    def spy(path, arrays, metadata=None):
        written.append(metadata["epoch"])
        return original(path, arrays, metadata)

    monkeypatch.setattr("nn_from_scratch.training.checkpoint.save_arrays", spy)  # the checkpoint writer
    fit(make_network(epochs=7), data, epochs=7, checkpoint=tmp_path / "c.npz", checkpoint_every=3)
    assert written == [3, 6, 7]
    written.clear()
    fit(make_network(), data, epochs=2, checkpoint=tmp_path / "d.npz", checkpoint_every=None)
    assert written == [] and not (tmp_path / "d.npz").exists()
    with pytest.raises(ValueError, match="checkpoint_every must be a positive integer or None"):
        fit(make_network(), data, checkpoint=tmp_path / "e.npz", checkpoint_every=0)
    with pytest.raises(ValueError, match="unknown model file suffix"):
        fit(make_network(), data, checkpoint=tmp_path / "e.ckpt")


def test_resuming_a_finished_run_trains_nothing(tmp_path, data):
    path = tmp_path / "done.npz"
    network = make_network()
    history = fit(network, data, epochs=2, checkpoint=path)
    again = make_network()
    assert fit(again, data, epochs=2, resume=path) == history
    assert_bit_identical(again, network)
    fresh = make_network()
    before = snapshot(fresh)
    with pytest.raises(CheckpointError, match="holds 2 finished epochs, more than epochs=1"):
        fit(fresh, data, epochs=1, resume=path)
    assert_unchanged(fresh, before)


# ------------------------------------------------------------------ Ctrl-C
class Interrupter:
    """Wraps optimizer.step to raise KeyboardInterrupt on its ``at``-th call (counting from 1)."""

    def __init__(self, monkeypatch, cls, at):
        self.calls, self.at = 0, at
        original = cls.step

        def step(optimizer):
            self.calls += 1
            if self.calls == self.at:
                raise KeyboardInterrupt
            return original(optimizer)

        monkeypatch.setattr(cls, "step", step)


def test_ctrl_c_saves_the_last_finished_epoch_and_resume_is_exact(tmp_path, data, monkeypatch, suffix):
    reference = make_network()
    history = fit(reference, data)
    path = tmp_path / f"interrupted{suffix}"
    batches_per_epoch = 240 // 32 + 1
    Interrupter(monkeypatch, Adam, at=2 * batches_per_epoch + 3)  # in the middle of epoch 3
    with pytest.raises(TrainingInterrupted) as info:
        fit(make_network(), data, checkpoint=path, checkpoint_every=None)
    assert isinstance(info.value, KeyboardInterrupt)
    assert (info.value.epoch, info.value.interrupted_epoch, info.value.checkpoint) == (2, 3, path)
    assert "resume=" in str(info.value) and str(path) in str(info.value)
    assert load_arrays(path)[1]["epoch"] == 2
    monkeypatch.undo()
    resumed = make_network()
    assert fit(resumed, data, resume=path) == history
    assert_bit_identical(resumed, reference)


def test_ctrl_c_in_the_first_epoch_saves_the_initial_state(tmp_path, data, monkeypatch):
    reference = make_network()
    history = fit(reference, data, epochs=2)
    path = tmp_path / "early.npz"
    Interrupter(monkeypatch, Adam, at=2)
    with pytest.raises(TrainingInterrupted) as info:
        fit(make_network(), data, epochs=2, checkpoint=path)
    assert info.value.epoch == 0
    monkeypatch.undo()
    resumed = make_network()
    assert fit(resumed, data, epochs=2, resume=path) == history
    assert_bit_identical(resumed, reference)


def test_ctrl_c_without_a_checkpoint_is_a_plain_keyboard_interrupt(data, monkeypatch):
    Interrupter(monkeypatch, Adam, at=1)
    with pytest.raises(KeyboardInterrupt) as info:
        fit(make_network(), data)
    assert not isinstance(info.value, TrainingInterrupted)


def test_resume_with_epochs_none_finishes_the_run_the_checkpoint_was_made_for(tmp_path, data, monkeypatch):
    reference = make_network()
    history = fit(reference, data)  # 4 epochs
    path = tmp_path / "interrupted.npz"
    Interrupter(monkeypatch, Adam, at=2 * (240 // 32 + 1) + 3)  # in epoch 3 of 4
    with pytest.raises(TrainingInterrupted):
        fit(make_network(), data, checkpoint=path, checkpoint_every=None)
    monkeypatch.undo()
    assert load_arrays(path)[1]["epochs"] == 4
    resumed = make_network()
    assert fit(resumed, data, epochs=None, resume=path) == history
    assert_bit_identical(resumed, reference)
    # a checkpoint written before the total was recorded: epochs=None is refused, an explicit count works
    arrays, metadata = load_arrays(path)
    del metadata["epochs"]
    old = tmp_path / "old.npz"
    serialization.save_arrays(old, arrays, metadata)
    fresh = make_network()
    before = snapshot(fresh)
    with pytest.raises(CheckpointError, match="does not record how many epochs its run asked for; pass epochs="):
        fit(fresh, data, epochs=None, resume=old)
    assert_unchanged(fresh, before)
    assert fit(fresh, data, epochs=4, resume=old) == history


# ------------------------------------------------------------------ failures keep the last good file
def test_a_failed_checkpoint_write_keeps_the_previous_one(tmp_path, data, monkeypatch):
    path = tmp_path / "run.npz"
    fit(make_network(), data, epochs=1, checkpoint=path)
    good = path.read_bytes()
    fill_the_disk(monkeypatch, budget=10)  # the disk fills up at the first write
    with pytest.raises(OSError, match="No space left"):
        fit(make_network(), data, epochs=2, checkpoint=path)
    assert path.read_bytes() == good
    assert [name for name in os.listdir(tmp_path) if name.startswith(".")] == []


def test_divergence_keeps_the_last_finite_weights_and_the_last_checkpoint(tmp_path, rng):
    X = rng.standard_normal((64, 3)) * 10
    y = X @ np.array([[1.0], [-2.0], [0.5]])
    model = Sequential(Linear(3, 1, rng=0))
    network = NeuralNetwork(model, MSELoss(), SGD(model.parameters(), lr=10.0))
    path = tmp_path / "run.npz"
    with pytest.raises(TrainingDiverged, match=r"at epoch (\d+), batch \d+; try a smaller learning rate") as info:
        network.fit(X, y, epochs=100, batch_size=16, rng=0, progress=False, checkpoint=path)
    assert all(np.all(np.isfinite(p.value)) for p in model.parameters())
    epoch = int(str(info.value).split("at epoch ")[1].split(",")[0])
    arrays, metadata = load_arrays(path)  # the last epoch that finished, untouched by the diverging one
    assert metadata["epoch"] == epoch - 1
    assert all(np.all(np.isfinite(v)) for v in arrays.values())


# ------------------------------------------------------------------ refusals change nothing
def snapshot(network):
    return ({k: v.copy() for k, v in network.model.state_dict().items()}, network.optimizer.state_dict(),
            network.scheduler.state_dict() if network.scheduler else None,
            [(k, g.bit_generator.state) for k, g in node_generators(network.model)])


def assert_unchanged(network, before):
    after = snapshot(network)
    for key in before[0]:
        np.testing.assert_array_equal(before[0][key], after[0][key])
    assert before[1]["hyperparameters"] == after[1]["hyperparameters"]
    assert before[1]["step_count"] == after[1]["step_count"] and set(before[1]["state"]) == set(after[1]["state"])
    assert before[2] == after[2] and before[3] == after[3]


@pytest.mark.parametrize("build, fit_options, message", [
    (lambda: make_network(hidden=16), {}, r"'0.weight': expected shape \(16, 64\), got \(24, 64\)"),
    (lambda: make_network(optimizer=RMSProp), {}, "state_dict is for optimizer 'Adam', cannot load it into RMSProp"),
    (lambda: make_network(scheduler=False), {}, "saved with a learning-rate scheduler, this network has none"),
    (make_network, {"batch_size": 16}, "made with batch_size=32, this fit has batch_size=16"),
    (make_network, {"shuffle": False}, "made with shuffle=True, this fit has shuffle=False"),
])
def test_a_checkpoint_that_does_not_fit_is_refused_and_changes_nothing(tmp_path, data, build, fit_options, message):
    path = tmp_path / "run.npz"
    fit(make_network(), data, epochs=1, checkpoint=path)
    network = build()
    fit(network, data, epochs=1)  # some state of its own, with optimizer buffers
    before = snapshot(network)
    with pytest.raises(CheckpointError, match=message):
        fit(network, data, epochs=3, resume=path, **fit_options)
    assert_unchanged(network, before)


def test_a_late_failure_rolls_back_what_was_already_loaded(tmp_path, data):
    """The model loads, then the optimizer refuses: the model is put back as it was."""
    path = tmp_path / "run.npz"
    fit(make_network(), data, epochs=1, checkpoint=path)
    arrays, metadata = load_arrays(path)
    arrays["optimizer/state/0/exp_avg"] = arrays["optimizer/state/0/exp_avg"].astype(np.float32)
    serialization.save_arrays(path, arrays, metadata)
    network = make_network()
    fit(network, data, epochs=1, rng=3)
    before = snapshot(network)
    with pytest.raises(CheckpointError, match="buffer 'exp_avg' has shape .* and dtype float32"):
        fit(network, data, resume=path)
    assert_unchanged(network, before)


def test_files_that_are_not_checkpoints(tmp_path, data):
    model_file = save_model(tmp_path / "model.npz", make_network().model)
    with pytest.raises(CheckpointError, match="not a training checkpoint"):
        fit(make_network(), data, resume=model_file)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="not an .npz model file"):
        fit(make_network(), data, resume=garbage)
    with pytest.raises(FileNotFoundError):
        fit(make_network(), data, resume=tmp_path / "none.npz")


# ------------------------------------------------------------------ fuzzed checkpoints: refused whole, or resumed
BIT_GENERATORS = ["PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64"]


def same_state(a, b):
    """Bit-for-bit equality of nested states (dicts, lists, tuples, arrays, numbers; NaN equals NaN)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype
                and a.shape == b.shape and a.tobytes() == b.tobytes())
    if isinstance(a, dict):
        return isinstance(b, dict) and sorted(a, key=repr) == sorted(b, key=repr) and all(
            same_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same_state(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return np.float64(a).tobytes() == np.float64(b).tobytes()
    return type(a) is type(b) and a == b


def full_state(network, shuffle):
    """Every piece of state a resume may change: model (parameters and buffers), optimizer (buffers included),
    scheduler, the generators of the nodes and the shuffling generator."""
    return (network.model.state_dict(), network.optimizer.state_dict(), network.scheduler.state_dict(),
            [(k, g.bit_generator.state) for k, g in node_generators(network.model)], shuffle.bit_generator.state)


def small_network(kind):
    model = Sequential(Linear(4, 6, rng=1), BatchNorm1d(6), ReLU(),
                       Dropout(0.25, rng=np.random.Generator(getattr(np.random, kind)(11))), Linear(6, 3, rng=2))
    opt = Adam(model.parameters(), lr=1e-2)
    return NeuralNetwork(model, CrossEntropyLoss(), opt, CosineAnnealingLR(opt, T_max=3))


def leaf_paths(tree, path=()):
    """Paths to every node of a JSON tree (containers too), the root excluded."""
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else ()
    for key, value in items:
        yield path + (key,)
        yield from leaf_paths(value, path + (key,))


def replacements(value, r):
    """Hostile stand-ins for one value of the metadata tree."""
    common = [None, "x", 1.5, -3, True, [], {}, [1, 2], {"a": 1}, float("nan")]
    if isinstance(value, bool):
        return [not value, 0, 1] + common
    if isinstance(value, int):
        return [-1, 0, 1, 2, 3, 4, 624, 625, 2**32, 2**63, 2**64 - 1, 2**64, 2**128, 2**200, -2**200,
                value + 1, value - 1, value ^ (1 << 127), value * 3, float(value)] + common
    if isinstance(value, float):
        return [float("nan"), float("inf"), -float("inf"), 0.0, -1.0, 1e308, 2.0, value * 3, int(value)] + common
    if isinstance(value, str):
        return ["", value + "x", "PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64", "Generator", "__array__",
                "model/0.weight", "rng/node/3.rng/state/key"] + common
    if isinstance(value, dict):
        keys = list(value)
        out = [dict(value, extra=1), []] + common
        if keys:
            drop = keys[int(r.integers(len(keys)))]
            out.append({k: v for k, v in value.items() if k != drop})
        return out
    if isinstance(value, list):
        return [value[:-1], value + value[-1:], [], value[::-1]] + common
    return common


def mutate_array(array, r):
    """A hostile variant of one saved array (or None: drop it)."""
    a = np.array(array, copy=True)
    choice = int(r.integers(9))
    if choice == 0 and a.size:
        special = ([np.nan, np.inf, -np.inf, 1e300] if a.dtype.kind == "f"
                   else [-1, 0, 1, np.iinfo(a.dtype).max, np.iinfo(a.dtype).min] if a.dtype.kind in "iu" else [True])
        flat = a.reshape(-1)
        with np.errstate(all="ignore"):
            flat[int(r.integers(a.size))] = np.asarray(special[int(r.integers(len(special)))]).astype(a.dtype)
        return a
    if choice == 1:
        others = [np.float64, np.float32, np.float16, np.int64, np.uint64, np.int32, np.uint32, np.uint8, np.bool_]
        with np.errstate(all="ignore"):
            return a.astype(others[int(r.integers(len(others)))])
    if choice == 2 and a.dtype.itemsize == 8:
        return a.view(np.int64 if a.dtype != np.int64 else np.uint64)
    if choice == 3:
        return a.reshape(-1)[:-1] if a.size else np.zeros(3, a.dtype)
    if choice == 4:
        return a[None]
    if choice == 5:
        return np.asarray(a.reshape(-1)[0]) if a.size else a
    if choice == 6:
        return None
    if choice == 7:
        return np.concatenate([a.reshape(-1), a.reshape(-1)[:1]])
    with np.errstate(all="ignore"):  # -1 wraps to the largest value of an unsigned dtype
        return np.full_like(a, np.asarray(-1 if a.dtype.kind in "iu" else np.nan).astype(a.dtype))


def mutated_checkpoints(arrays, metadata, count, seed):
    """``count`` variants of a checkpoint, each with one value of its metadata or one of its arrays changed."""
    import copy
    r = np.random.default_rng(seed)
    rng_paths = [p for p in leaf_paths(metadata) if p[0] == "rng"]
    paths = list(leaf_paths(metadata))
    rng_arrays = sorted(name for name in arrays if name.startswith("rng/"))
    names = sorted(arrays)
    for i in range(count):
        new_arrays, new_metadata = dict(arrays), copy.deepcopy(metadata)
        kind = i % 4
        if kind in (0, 1):  # a value of the metadata tree; half of them in the generators' states
            path = (rng_paths if kind == 0 else paths)[int(r.integers(len(rng_paths if kind == 0 else paths)))]
            parent = new_metadata
            for key in path[:-1]:
                parent = parent[key]
            options = replacements(parent[path[-1]], r)
            parent[path[-1]] = options[int(r.integers(len(options)))]
            what = f"metadata {'/'.join(map(str, path))} = {parent[path[-1]]!r:.60}"
        else:  # an array; half of them the generators' arrays (MT19937 key, Philox counter, SFC64 state)
            pool = rng_arrays if kind == 2 and rng_arrays else names
            name = pool[int(r.integers(len(pool)))]
            value = mutate_array(arrays[name], r)
            if value is None:
                del new_arrays[name]
                what = f"array {name} removed"
            else:
                new_arrays[name] = value
                what = f"array {name} -> {value.dtype}{value.shape}"
        yield what, new_arrays, new_metadata


def checkpointed_run(tmp_path, kind):
    """Data, and the checkpoint of one epoch of ``small_network(kind)`` shuffled by a ``kind`` generator."""
    r = np.random.default_rng(0)
    X, y = r.standard_normal((16, 4)), r.integers(0, 3, 16)
    path = tmp_path / "run.npz"
    small_network(kind).fit(X, y, epochs=1, batch_size=8, rng=np.random.Generator(getattr(np.random, kind)(7)),
                            progress=False, checkpoint=path)
    return X, y, path


@pytest.mark.parametrize("kind", BIT_GENERATORS)
def test_fuzzed_checkpoints_are_refused_whole_or_resumed(tmp_path, kind):
    """Each mutated checkpoint is either refused with CheckpointError, leaving every piece of state
    bit-identical, or resumed; no other error, and nothing half loaded."""
    X, y, path = checkpointed_run(tmp_path, kind)
    arrays, metadata = load_arrays(path)
    assert metadata["rng"]["shuffle"]["bit_generator"] == kind
    network = small_network(kind)
    shuffle = np.random.Generator(getattr(np.random, kind)(5))
    network.fit(X, y, epochs=1, batch_size=8, rng=shuffle, progress=False)  # state of its own, Adam buffers too
    problems, refused, resumed = [], 0, 0
    for index, (what, new_arrays, new_metadata) in enumerate(
            mutated_checkpoints(arrays, metadata, 120, seed=BIT_GENERATORS.index(kind))):
        mutated = tmp_path / f"mutated{index}.npz"
        try:
            serialization.save_arrays(mutated, new_arrays, new_metadata)
        except (TypeError, ValueError):
            continue  # not storable at all (an array of a dtype no file holds)
        before = full_state(network, shuffle)
        seed_instead = index % 3 == 0  # a seed makes fit build the shuffling generator from the file's kind
        try:
            network.fit(X, y, epochs=2, batch_size=8, rng=3 if seed_instead else shuffle, progress=False,
                        resume=mutated)
            resumed += 1
        except CheckpointError:
            refused += 1
            if not same_state(full_state(network, shuffle), before):
                problems.append(f"{what}: refused, but the network's state changed")
        except TrainingDiverged:
            resumed += 1  # it resumed (non-finite weights load), then training stopped
        except Exception as error:  # noqa: BLE001 - any other error is the bug this test looks for
            problems.append(f"{what}: {type(error).__name__}: {error}")
    assert problems == [], f"{len(problems)} bad outcomes, e.g. {problems[:5]}"
    assert refused > 30 and resumed > 5  # the fuzzing reaches both outcomes


@pytest.mark.parametrize("kind, where, value", [
    ("PCG64", ("state", "inc"), -1),
    ("PCG64", ("state", "inc"), 2**200),
    ("PCG64", ("state", "inc"), 2),  # even: no PCG state has it
    ("PCG64DXSM", ("state", "state"), 2**128),
    ("PCG64", ("has_uint32",), 2),
    ("SFC64", ("uinteger",), 2**32),
    ("MT19937", ("state", "pos"), 10**6),  # NumPy would read past the key (a crash)
    ("MT19937", ("state", "pos"), -1),
    ("Philox", ("buffer_pos",), -1),  # NumPy would return garbage
    ("Philox", ("buffer_pos",), 5),
    ("Philox", ("bit_generator",), "PCG64"),
])
def test_out_of_range_generator_states_are_refused_and_change_nothing(tmp_path, kind, where, value):
    X, y, path = checkpointed_run(tmp_path, kind)
    arrays, metadata = load_arrays(path)
    for key in ("shuffle", "node/3.rng"):
        arrays2, metadata2 = dict(arrays), __import__("copy").deepcopy(metadata)
        parent = metadata2["rng"][key]
        for step in where[:-1]:
            parent = parent[step]
        parent[where[-1]] = value
        serialization.save_arrays(tmp_path / "bad.npz", arrays2, metadata2)
        network = small_network(kind)
        shuffle = np.random.Generator(getattr(np.random, kind)(5))
        network.fit(X, y, epochs=1, batch_size=8, rng=shuffle, progress=False)
        before = full_state(network, shuffle)
        with pytest.raises(CheckpointError, match=f"generator '{key}'"):
            network.fit(X, y, epochs=2, batch_size=8, rng=shuffle, progress=False, resume=tmp_path / "bad.npz")
        assert same_state(full_state(network, shuffle), before)


# ------------------------------------------------------------------ command line
def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_ctrl_c_saves_a_checkpoint_and_the_printed_command_resumes_exactly(tmp_path, capsys, monkeypatch):
    common = ["train", "--hidden", "16", "--epochs", "3", "--no-progress", "--optimizer", "adam"]
    code, _, _ = run(capsys, *common, "--out", str(tmp_path / "straight.npz"))
    assert code == 0
    out = tmp_path / "stopped.safetensors" if serialization.safetensors_available() else tmp_path / "stopped.npz"
    batches = -(-1437 // 32)  # the digits training set: 1437 samples
    Interrupter(monkeypatch, Adam, at=batches + 5)  # in epoch 2
    code, _, err = run(capsys, *common, "--out", str(out))
    assert code == 130
    checkpoint = out.with_name(f"stopped-checkpoint{out.suffix}")
    assert f"interrupted during epoch 2: the training state after epoch 1 is saved in {checkpoint}" in err
    command = err.split("resume with: ", 1)[1].strip()
    assert command.startswith("nn-from-scratch train") and command.endswith(f"--resume {shlex.quote(str(checkpoint))}")
    assert not out.exists()
    monkeypatch.undo()
    code, stdout, _ = run(capsys, *shlex.split(command)[1:])
    assert code == 0 and f"resuming from {checkpoint}" in stdout
    straight, straight_meta = load_model_state(tmp_path / "straight.npz")
    resumed, resumed_meta = load_model_state(out)
    assert straight_meta["history"] == resumed_meta["history"]
    for key in straight:
        np.testing.assert_array_equal(straight[key], resumed[key])


def test_cli_checkpoint_option_and_resume(tmp_path, capsys):
    checkpoint = tmp_path / "ck.npz"
    args = ["train", "--hidden", "8", "--epochs", "2", "--no-progress", "--schedule", "constant",
            "--out", str(tmp_path / "m.npz"), "--checkpoint", str(checkpoint)]
    code, stdout, _ = run(capsys, *args)
    assert code == 0 and f"checkpoint saved to {checkpoint}" in stdout
    assert load_arrays(checkpoint)[1]["epoch"] == 2
    code, _, err = run(capsys, *args[:4], "3", *args[5:], "--resume", str(checkpoint))
    assert code == 0
    assert load_arrays(checkpoint)[1]["epoch"] == 3


def test_cli_out_with_a_name_of_the_longest_length(tmp_path, capsys, monkeypatch):
    """--out refused a legal 255-byte name before training; the names made from it (the checkpoint that Ctrl-C
    writes, the pictures, the fallback file) are shortened to fit."""
    from nn_from_scratch.cli import default_checkpoint

    out = tmp_path / longest_name(".npz")
    checkpoint = default_checkpoint(out)
    assert checkpoint.parent == tmp_path and len(os.fsencode(checkpoint.name)) <= NAME_MAX
    assert checkpoint.name.endswith("-checkpoint.npz") and checkpoint.name[:200] == out.name[:200]
    Interrupter(monkeypatch, Adam, at=-(-1437 // 32) + 5)  # in epoch 2 of the digits
    code, _, err = run(capsys, "train", "--hidden", "8", "--epochs", "3", "--no-progress", "--out", str(out))
    assert code == 130 and str(checkpoint) in err
    monkeypatch.undo()
    code, stdout, _ = run(capsys, "train", "--hidden", "8", "--epochs", "3", "--no-progress", "--out", str(out),
                          "--resume", str(checkpoint))
    assert code == 0 and f"weights saved to {out}" in stdout
    assert len(load_model_state(out)[1]["history"]["loss"]) == 3
    assert all(len(os.fsencode(name)) <= NAME_MAX for name in os.listdir(tmp_path))


@pytest.mark.parametrize("extra, message", [
    (["--resume", "nowhere.npz"], "--resume: no checkpoint at nowhere.npz"),
    (["--checkpoint", "x.bin"], "--checkpoint: x.bin: unknown model file suffix '.bin'"),
    (["--out", "m.pt"], "--out: m.pt: unknown model file suffix '.pt'"),
    (["--checkpoint-every", "0"], "--checkpoint-every must be positive"),
])
def test_cli_checkpoint_errors_are_argparse_errors(capsys, extra, message):
    with pytest.raises(SystemExit) as info:
        main(["train", "--epochs", "1", "--no-progress", *extra])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cli_resume_from_a_checkpoint_of_another_model(tmp_path, capsys):
    checkpoint = tmp_path / "ck.npz"
    code, _, _ = run(capsys, "train", "--hidden", "8", "--epochs", "1", "--no-progress", "--out",
                     str(tmp_path / "m.npz"), "--checkpoint", str(checkpoint))
    assert code == 0
    with pytest.raises(SystemExit) as info:
        main(["train", "--hidden", "9", "--epochs", "2", "--no-progress", "--out", str(tmp_path / "n.npz"),
              "--resume", str(checkpoint)])
    assert info.value.code == 2
    assert "does not fit this network" in capsys.readouterr().err


def test_cli_safetensors_weights_evaluate(tmp_path, capsys):
    pytest.importorskip("safetensors")
    out = tmp_path / "m.safetensors"
    code, stdout, _ = run(capsys, "train", "--hidden", "8", "--epochs", "1", "--no-progress", "--out", str(out))
    assert code == 0 and f"weights saved to {out}" in stdout
    code, stdout, _ = run(capsys, "evaluate", "--weights", str(out))
    assert code == 0 and "test accuracy" in stdout


# ------------------------------------------------------------------ recorded metadata
def test_checkpoint_metadata_is_recorded_and_read_back(tmp_path, data, suffix):
    from nn_from_scratch.training import read_checkpoint, read_checkpoint_metadata
    path = tmp_path / f"run{suffix}"
    recorded = {"command_line": {"lr": 0.01, "hidden": [12]}, "note": "first run"}
    history = fit(make_network(), data, epochs=2, checkpoint=path, checkpoint_metadata=recorded)
    assert read_checkpoint_metadata(path) == recorded
    info = read_checkpoint(path)
    assert (info.epoch, info.epochs, info.history, info.metadata) == (2, 2, history, recorded)
    # a checkpoint written without it records nothing
    fit(make_network(), data, epochs=1, checkpoint=tmp_path / f"plain{suffix}")
    assert read_checkpoint_metadata(tmp_path / f"plain{suffix}") == {}


@pytest.mark.parametrize("bad, message", [(["not", "a", "mapping"], "mapping with string keys"),
                                          ({1: "x"}, "mapping with string keys"),
                                          ({"a": object()}, "JSON-serialisable")])
def test_checkpoint_metadata_that_cannot_be_recorded_is_refused_before_training(tmp_path, data, bad, message):
    network = make_network()
    before = {k: v.copy() for k, v in network.model.state_dict().items()}
    with pytest.raises(TypeError, match=message):
        fit(network, data, epochs=1, checkpoint=tmp_path / "run.npz", checkpoint_metadata=bad)
    for key, value in network.model.state_dict().items():
        np.testing.assert_array_equal(value, before[key])
    assert not (tmp_path / "run.npz").exists()


def test_read_checkpoint_metadata_refuses_what_is_not_a_checkpoint(tmp_path, data):
    from nn_from_scratch.training import read_checkpoint_metadata
    model_file = save_model(tmp_path / "weights.npz", make_network().model)
    with pytest.raises(CheckpointError, match="not a training checkpoint"):
        read_checkpoint_metadata(model_file)
    path = tmp_path / "run.npz"
    fit(make_network(), data, epochs=1, checkpoint=path, checkpoint_metadata={"a": 1})
    arrays, metadata = load_arrays(path)
    for field, value in (("checkpoint_metadata", ["a", 1]), ("epoch", -1), ("history", "none")):
        serialization.save_arrays(tmp_path / "bad.npz", arrays, dict(metadata, **{field: value}))
        with pytest.raises(CheckpointError, match="is not a usable checkpoint"):
            read_checkpoint_metadata(tmp_path / "bad.npz")
    with pytest.raises(FileNotFoundError):
        read_checkpoint_metadata(tmp_path / "missing.npz")
    # the trainer refuses a malformed record on resume too, and changes nothing
    serialization.save_arrays(tmp_path / "bad.npz", arrays, dict(metadata, checkpoint_metadata=["a", 1]))
    network = make_network()
    before = network.optimizer.state_dict()["step_count"]
    with pytest.raises(CheckpointError, match="'checkpoint_metadata' must be a JSON object"):
        fit(network, data, epochs=2, resume=tmp_path / "bad.npz")
    assert network.optimizer.state_dict()["step_count"] == before


# ------------------------------------------------------------------ several inputs and outputs
def named_inputs_network():
    """A Graph of two named Inputs with Dropout and two outputs (classes and a value), trained by Adam."""
    from nn_from_scratch import Graph, Input
    from nn_from_scratch.nodes import Concat
    image, meta = Input(8, name="image"), Input(3, name="meta")
    trunk = Dropout(0.2, rng=5)(ReLU()(Concat(axis=-1)(Linear(8, 8, rng=1)(image), Linear(3, 4, rng=2)(meta))))
    model = Graph([image, meta], [Linear(12, 4, rng=3)(trunk), Linear(12, 1, rng=4)(trunk)])
    return NeuralNetwork(model, [CrossEntropyLoss(), MSELoss()], Adam(model.parameters(), lr=1e-2),
                         loss_weights=[1.0, 0.3])


def test_a_graph_with_a_dict_of_inputs_and_two_outputs_resumes_bit_for_bit(tmp_path):
    r = np.random.default_rng(2)
    X = {"image": r.normal(size=(90, 8)), "meta": r.normal(size=(90, 3))}
    y = (r.integers(0, 4, 90), r.normal(size=(90, 1)))
    options = dict(batch_size=16, rng=3, validation_split=0.2, progress=False)
    reference = named_inputs_network()
    history = reference.fit(X, y, epochs=4, **options)
    path = tmp_path / "run.npz"
    named_inputs_network().fit(X, y, epochs=2, checkpoint=path, **options)
    resumed = named_inputs_network()
    assert resumed.fit(X, y, epochs=4, resume=path, **options) == history
    assert resumed.history == history
    for key, value in reference.model.state_dict().items():
        np.testing.assert_array_equal(resumed.model.state_dict()[key], value)
    assert [g.bit_generator.state for _, g in node_generators(resumed.model)] == \
        [g.bit_generator.state for _, g in node_generators(reference.model)]
