"""Models saved with their architecture: ``load_model(path)`` rebuilds them without their code, in a fresh process.

The architecture record is checked as untrusted input (the fuzzing of
hostile records is in test_fuzz_files.py); here: the round trips (Graph,
Residual, the ready-made models, a user's registered node; npz and
safetensors), the fresh process, and a few refusals by name.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nn_from_scratch import models
from nn_from_scratch.containers import Constant, Graph, Input, Residual, Sequential
from nn_from_scratch.files import load_layout, save_arrays
from nn_from_scratch.files import save_model as save_weights
from nn_from_scratch.nodes import Add, BatchNorm2d, Conv2d, Linear, MatMul, ReLU, Split, Concat
from nn_from_scratch.nodes import (GELU, GRU, LSTM, FirstOutput, LayerNorm, LearnedPositionalEmbedding,
                                   MultiheadAttention, SinusoidalPositionalEncoding, TransformerDecoderBlock,
                                   TransformerEncoderLayer)
from nn_from_scratch.registry import ARCHITECTURE_KEY, describe, load_model, save_model

SRC = Path(__file__).resolve().parents[1] / "src"
TESTS = Path(__file__).resolve().parent  # user_nodes.py: a node of a user's own, outside the library


def _graph():
    x = Input((1, 6, 6), name="image")
    h = Conv2d(1, 4, 3, padding=1, rng=0)(x, name="stem")
    a, b = Split([2, 2], axis=1)(ReLU()(h))
    y = Concat(axis=1)(b, a)
    return Graph(x, Add()(y, h))


MODELS = {
    "mlp": (lambda: models.mlp(4, [5], 3, rng=0), (2, 4)),
    "cnn": (lambda: models.cnn(1, 8, 3, rng=0), (2, 1, 8, 8)),
    "localizer": (lambda: models.localizer(8, 3, rng=0), (2, 1, 8, 8)),
    "resnet": (lambda: models.resnet((1, 8, 8), 3, channels=(4, 8), blocks=(1, 1)), (2, 1, 8, 8)),
    "residual": (lambda: Residual(Sequential(Conv2d(2, 2, 3, padding=1, rng=0), BatchNorm2d(2)),
                                  Conv2d(2, 2, 1, rng=1), after=ReLU()), (2, 2, 4, 4)),
    "graph": (_graph, (2, 1, 6, 6)),
    "lstm": (lambda: Sequential(LSTM(3, 4, 2, batch_first=True, bidirectional=True, rng=0), FirstOutput(3),
                                Linear(8, 2, rng=1)), (2, 5, 3)),
    "gru": (lambda: Sequential(GRU(3, 4, dropout=0.5, num_layers=2, rng=0), FirstOutput(2), Linear(4, 2, rng=1)),
            (5, 2, 3)),
    "transformer": (lambda: Sequential(
        SinusoidalPositionalEncoding(4, max_len=16),
        TransformerEncoderLayer(4, 2, 8, 0.0, activation=GELU(approximate="tanh"), batch_first=True, rng=0),
        TransformerDecoderBlock(4, 2, 8, 0.0, rng=1), LearnedPositionalEmbedding(6, 4, rng=2), LayerNorm(4),
        Linear(4, 3, rng=3)), (2, 5, 4)),
}


def _trained_a_little(model, shape):
    """Running statistics that differ from the initial ones, so that loading them is seen."""
    model.train()
    model.forward(np.random.default_rng(2).normal(size=shape))
    model.reset()
    model.eval()
    return model


def _outputs(model, x):
    y = model.evaluate(x)
    return y if isinstance(y, tuple) else (y,)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_model_loads_without_its_code(name, suffix, tmp_path):
    make, shape = MODELS[name]
    model = _trained_a_little(make(), shape)
    path = save_model(tmp_path / f"model{suffix}", model, {"epoch": 3})
    loaded = load_model(path)
    assert type(loaded) is type(model) and describe(loaded) == describe(model)
    loaded.eval()
    x = np.random.default_rng(0).normal(size=shape)
    for a, b in zip(_outputs(model, x), _outputs(loaded, x)):
        np.testing.assert_array_equal(a, b)
    assert load_layout(path)[1]["epoch"] == 3


def test_with_a_model_load_model_loads_the_weights_and_returns_the_metadata(tmp_path):
    model = models.mlp(4, [5], 3, rng=0)
    path = save_model(tmp_path / "m.npz", model, {"note": "x"})
    other = models.mlp(4, [5], 3, rng=1)
    metadata = load_model(path, other)
    assert metadata["note"] == "x" and ARCHITECTURE_KEY in metadata
    np.testing.assert_array_equal(other[0].weight.value, model[0].weight.value)


FRESH = """
import sys, json, numpy as np
from nn_from_scratch.registry import load_model
model = load_model(sys.argv[1])
model.eval()
x = np.load(sys.argv[2])
y = model.evaluate(x)
np.save(sys.argv[3], y[0] if isinstance(y, tuple) else y)
print(type(model).__name__)
"""


@pytest.mark.parametrize("name", ["resnet", "graph", "lstm", "transformer"])
def test_a_fresh_process_rebuilds_the_model_from_the_library_alone(name, suffix, tmp_path):
    make, shape = MODELS[name]
    model = _trained_a_little(make(), shape)
    path = save_model(tmp_path / f"model{suffix}", model)
    x = np.random.default_rng(0).normal(size=shape)
    np.save(tmp_path / "x.npy", x)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run([sys.executable, "-c", FRESH, str(path), str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
                          env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == type(model).__name__
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), _outputs(model, x)[0])


def test_a_users_registered_node_round_trips_in_a_fresh_process(tmp_path):
    script = ("import sys; sys.path.insert(0, sys.argv[2]); import numpy as np, user_nodes\n"
              "from nn_from_scratch.containers import Sequential\nfrom nn_from_scratch.nodes import Linear\n"
              "from nn_from_scratch.registry import save_model, load_model\n"
              "if sys.argv[1] == 'save':\n"
              "    save_model(sys.argv[3], Sequential(Linear(2, 2, rng=0), user_nodes.Shift(1.5)))\n"
              "else:\n"
              "    m = load_model(sys.argv[3]); print(type(m[1]).__name__, m[1].amount, m.evaluate(np.ones((1, 2))).tolist())\n")
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    path = str(tmp_path / "m.npz")
    for step in ("save", "load"):
        done = subprocess.run([sys.executable, "-c", script, step, str(TESTS), path], env=env,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    expected = Linear(2, 2, rng=0).evaluate(np.ones((1, 2))) + 1.5
    name, amount, values = done.stdout.split(" ", 2)
    assert (name, float(amount)) == ("Shift", 1.5)
    np.testing.assert_allclose(json.loads(values), expected, rtol=0, atol=0)
    # without the user's module the class is unknown: refused by name, nothing built
    done = subprocess.run([sys.executable, "-c", "import sys; from nn_from_scratch.registry import load_model; "
                           "load_model(sys.argv[1])", path], env=env, capture_output=True, text=True)
    assert "model.children[1][1].class: 'Shift' is not a registered node class" in done.stderr


def test_weights_without_an_architecture_ask_for_the_model(tmp_path):
    path = save_weights(tmp_path / "w.npz", models.mlp(4, [5], 3, rng=0))
    with pytest.raises(ValueError, match="without an architecture: build the model in code"):
        load_model(path)


def test_a_model_that_cannot_describe_itself_is_refused_before_writing(tmp_path):
    encoder = Linear(4, 2, rng=0)
    model = Sequential(encoder, Linear.tied_to(encoder.weight, transpose=True))
    with pytest.raises(ValueError, match=r"model\.1: Linear"):
        save_model(tmp_path / "m.npz", model)
    assert not (tmp_path / "m.npz").exists()


def _file_with(tmp_path, record, arrays=None):
    path = tmp_path / "hostile.npz"
    save_arrays(path, arrays if arrays is not None else {}, {ARCHITECTURE_KEY: record})
    return path


@pytest.mark.parametrize("mutate, problem", [
    (lambda r: r.update(version=2), "is not format"),
    (lambda r: r["model"].update({"class": "os.system"}), r"model\.class: 'os\.system' is not a registered"),
    (lambda r: r["model"]["children"][0][1].update(config={"in_features": 10 ** 6, "out_features": 10 ** 6}),
     r"model\.children\[0\]\[1\]\.config: sizes whose product"),
    (lambda r: r["model"]["children"][0][1]["config"].update(in_features=2 ** 40), "is beyond"),
    (lambda r: r["model"]["children"][0][1]["config"].update(stride=3), r"model\.children\[0\]\[1\] \(Linear\): "
                                                                       "TypeError: .*unexpected keyword"),
    (lambda r: r["model"]["children"][0][1]["config"].update(in_features="four"), "must be a positive integer"),
    (lambda r: r["model"]["children"][1][1].update(children=[[None, {"class": "ReLU", "config": {}}]]),
     r"model\.children\[1\]\[1\]\.children: ReLU holds no nodes"),
    (lambda r: r["model"]["children"].append(["x", {"class": "ReLU"}]), r"must be an object with class, config"),
], ids=["version", "class", "huge", "integer", "argument", "type", "children", "fields"])
def test_hostile_records_are_refused_naming_the_field(tmp_path, mutate, problem):
    model = models.mlp(4, [5], 3, rng=0)
    record = json.loads(json.dumps(describe(model)))
    mutate(record)
    path = _file_with(tmp_path, record, dict(model.state_dict()))
    with pytest.raises(ValueError, match=problem):
        load_model(path)


def test_a_large_scale_factor_is_refused_before_building(tmp_path):
    from nn_from_scratch.nodes import Upsample

    model = Sequential(Upsample(scale_factor=2.0))
    record = json.loads(json.dumps(describe(model)))
    record["model"]["children"][0][1]["config"]["scale_factor"] = [3000.0, 3000.0]
    with pytest.raises(ValueError, match=r"model\.children\[0\]\[1\]\.config: sizes whose product 9000000"):
        load_model(_file_with(tmp_path, record))


@pytest.mark.parametrize("layer, sizes", [
    (LSTM(2, 3), {"input_size": 1, "hidden_size": 100_000}),  # 4 H (I + H): the product I H alone is small
    (GRU(2, 3), {"hidden_size": 300, "num_layers": 20, "bidirectional": True}),
    (MultiheadAttention(4, 2), {"embed_dim": 20_000, "num_heads": 1}),
    (TransformerEncoderLayer(4, 2, 6), {"d_model": 20_000, "nhead": 1, "dim_feedforward": 1}),
    (TransformerDecoderBlock(4, 2, 6), {"d_model": 8, "nhead": 1, "dim_feedforward": 10 ** 6}),
    (SinusoidalPositionalEncoding(4), {"max_len": 10 ** 7}),
    (LearnedPositionalEmbedding(5, 4), {"num_positions": 10 ** 6, "embedding_dim": 100}),
], ids=["lstm", "gru", "attention", "encoder", "decoder", "sinusoids", "positions"])
def test_the_sequence_layers_sizes_are_bounded_before_building(tmp_path, layer, sizes):
    record = json.loads(json.dumps(describe(Sequential(layer))))
    record["model"]["children"][0][1]["config"].update(sizes)
    with pytest.raises(ValueError, match=r"model\.children\[0\]\[1\]\.config: sizes whose product \d+ exceeds"):
        load_model(_file_with(tmp_path, record))


def test_a_transformer_layers_activation_record_is_checked_as_a_node(tmp_path):
    layer = TransformerEncoderLayer(4, 2, 6, 0.0, activation=GELU(), rng=0)
    record = json.loads(json.dumps(describe(Sequential(layer))))
    field = r"model\.children\[0\]\[1\]\.config\.activation"
    for activation, problem in [
            ({"class": "os.system", "config": {}}, rf"{field}\.class: 'os\.system' is not a registered"),
            ({"class": "Linear", "config": {"in_features": 10 ** 5, "out_features": 10 ** 5}},
             rf"{field}\.config: sizes whose product"),
            ({"class": "GELU", "config": {"approximate": "tanh"},
              "children": [[None, {"class": "ReLU", "config": {}}]]},
             rf"{field}\.children: GELU holds no nodes"),
            ("sigmoid", r"activation must be 'relu', 'gelu' or a Node")]:
        record["model"]["children"][0][1]["config"]["activation"] = activation
        with pytest.raises(ValueError, match=problem):
            load_model(_file_with(tmp_path, record, dict(layer.state_dict())))


def test_deep_nesting_is_refused_before_building(tmp_path):
    node = {"class": "ReLU", "config": {}}
    for _ in range(200):
        node = {"class": "Sequential", "config": {}, "children": [[None, node]]}
    path = _file_with(tmp_path, {"format": "nn_from_scratch.architecture", "version": 1, "model": node})
    with pytest.raises(ValueError, match="nested deeper than 64"):
        load_model(path)


def test_a_graph_record_that_reads_an_unmade_value_is_refused(tmp_path):
    x = Input(3)
    model = Graph(x, MatMul()(Linear(3, 3, rng=0)(x), Constant(np.eye(3), name="table")))
    record = json.loads(json.dumps(describe(model)))
    record["model"]["config"]["calls"][1]["inputs"] = ["nowhere", "table"]
    with pytest.raises(ValueError, match=r"reads \['nowhere'\], made by no earlier call"):
        load_model(_file_with(tmp_path, record, dict(model.state_dict())))


def test_an_architecture_whose_weights_do_not_fit_is_refused(tmp_path):
    model = models.mlp(4, [5], 3, rng=0)
    record = describe(models.mlp(4, [6], 3, rng=0))
    with pytest.raises(ValueError, match="does not fit the Sequential"):
        load_model(_file_with(tmp_path, record, dict(model.state_dict())))


def test_a_synchronised_batch_norm_saves_as_its_batch_norm(tmp_path):
    """A data-parallel run's model (its BatchNorms synchronised) saves as the plain model: one process reads it."""
    from types import SimpleNamespace

    from nn_from_scratch.distributed import SyncBatchNorm1d, convert_sync_batchnorm
    from nn_from_scratch.nodes import BatchNorm1d

    model = Sequential(Linear(3, 4, rng=0), BatchNorm1d(4), ReLU())
    assert convert_sync_batchnorm(model, SimpleNamespace(rank=0, size=1)) == 1
    assert isinstance(model[1], SyncBatchNorm1d)
    loaded = load_model(save_model(tmp_path / "m.npz", model))
    assert type(loaded[1]) is BatchNorm1d
    model.eval()
    loaded.eval()
    x = np.random.default_rng(0).normal(size=(5, 3))
    np.testing.assert_array_equal(loaded.evaluate(x), model.evaluate(x))
