"""ONNX export checked by a runtime nobody here wrote: onnx.checker passes and onnxruntime gives our numbers.

Every node of the completeness table (tests/test_describe.py) is exported
alone, or refused by name where it has no ONNX form here (NO_ONNX); the
ready-made models and the containers are exported whole.  onnxruntime runs
each file at the trial batch size and at another one (the batch axis is
dynamic) and its float32 outputs must equal ours within 1e-5 of their
largest magnitude.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

from conftest import required
from nn_from_scratch import models
from nn_from_scratch.containers import Constant, Graph, Input, Parallel, Residual, Sequential
from nn_from_scratch.nodes import (
    Add, BatchNorm1d, BatchNorm2d, Concat, Conv2d, Dropout, Flatten, Linear, MatMul, MaxPool2d, ReLU, SoftMax, Split,
)
from test_describe import CASES

#: The table's cases without an ONNX form here: refused, naming the node.
NO_ONNX = {
    "Embedding", "Embedding[float32]", "Bilinear", "Where", "MaskedFill", "Gather", "IndexSelect", "NormalizedSoftMax",
    "MaxPool2d[indices, ceil]", "AvgPool2d[options]",
    "BatchNorm2d[no stats]", "InstanceNorm2d", "AdaptiveMaxPool2d",
}
#: The sequence layers without an ONNX form here: the cells, attention, the transformer layers; and the sequence
#: layers alone, whose several outputs a Graph must wire (the table's RNN, LSTM and GRU are wired so, and export).
NO_ONNX |= {
    "RNNCell", "RNNCell[relu]", "LSTM[options]", "RNN[relu]", "GRU[no bias]", "LSTMCell", "LSTMCell[float32]",
    "GRUCell", "MultiheadAttention", "ScaledDotProductAttention",
    "LearnedPositionalEmbedding", "LearnedPositionalEmbedding[float32]", "SinusoidalPositionalEncoding",
    "SinusoidalPositionalEncoding[time first]", "TransformerEncoderLayer", "TransformerEncoderLayer[options]",
    "TransformerEncoderLayer[a node as activation]", "TransformerDecoderBlock", "TransformerDecoderBlock[options]",
}


def _session(path):
    ort = required("onnxruntime", "onnxruntime is not installed (pip install onnx onnxruntime)")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _assert_runtime_agrees(model, path, xs):
    session = _session(path)
    names = [i.name for i in session.get_inputs()]
    got = session.run(None, {name: np.asarray(x, dtype=np.float32) for name, x in zip(names, xs)})
    want = model.evaluate(*xs)
    want = want if isinstance(want, tuple) else (want,)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        scale = max(float(np.max(np.abs(w))) if w.size else 0.0, 1e-30)
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5 * scale)


def _batched_again(x, times=3):
    return np.concatenate([x] * times, axis=0) + np.random.default_rng(9).normal(size=(x.shape[0] * times,)
                                                                                 + x.shape[1:]) * 0.1


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_layer_exports_and_runs_in_onnxruntime(name, tmp_path):
    onnx = required("onnx", "onnx is not installed (pip install onnx onnxruntime)")
    from nn_from_scratch.export import to_onnx

    make, inputs = CASES[name]
    node = make()
    node.eval()
    xs = inputs(np.random.default_rng(0))
    if any(np.asarray(x).dtype.kind != "f" for x in xs):
        assert name in NO_ONNX, f"{name} takes integer or boolean inputs: list it in NO_ONNX"
    path = tmp_path / "node.onnx"
    if name in NO_ONNX:
        with pytest.raises(ValueError, match="to_onnx: "):
            to_onnx(node, path, [tuple(np.shape(x)[1:]) for x in xs])
        return
    batched = [i == 0 or (np.ndim(x) == np.ndim(xs[0]) and np.shape(x)[0] == np.shape(xs[0])[0])
               for i, x in enumerate(xs)]
    if len(xs) > 1 or name.startswith(("Split", "Chunk")):  # several inputs or outputs: wired in a Graph
        placeholders = [Input(np.shape(x)[1:]) if b else Input(np.shape(x), batched=False)
                        for x, b in zip(xs, batched)]
        made = node(*placeholders)
        node = Graph(placeholders, list(made) if isinstance(made, tuple) else made)
        to_onnx(node, path)  # a Graph knows its inputs' shapes
    else:
        to_onnx(node, path, np.shape(xs[0])[1:])
    onnx.checker.check_model(str(path), full_check=True)
    _assert_runtime_agrees(node, path, xs)
    if np.shape(xs[0])[0] > 0 and not name.startswith(("Permute", "Transpose", "Mean", "Sum[axes]")):
        _assert_runtime_agrees(node, path, [_batched_again(x) if b else x for x, b in zip(xs, batched)])


def _graph():
    x = Input((2, 6, 6), name="image")
    h = Conv2d(2, 4, 3, padding=1, rng=0)(x, name="stem")
    a, b = Split([1, 3], axis=1)(ReLU()(h))
    y = Add()(Concat(axis=1)(b, a), h)
    flat = Flatten()(MaxPool2d(2)(y))
    scores = Linear(36, 5, rng=1)(flat)
    return Graph(x, [SoftMax()(scores), MatMul()(scores, Constant(np.eye(5)[:, :2] * 3, name="project"))])


MODELS = {
    "mlp": (lambda: models.mlp(4, [5, 6], 3, rng=0), (4,)),
    "cnn": (lambda: models.cnn(1, 8, 3, rng=0), (1, 8, 8)),
    "localizer": (lambda: models.localizer(8, 3, rng=0), (1, 8, 8)),
    "resnet": (lambda: models.resnet((1, 8, 8), 3, channels=(4, 8), blocks=(1, 1)), (1, 8, 8)),
    "graph": (_graph, (2, 6, 6)),
    "nested": (lambda: Sequential(Residual(Sequential(Linear(4, 4, rng=0), BatchNorm1d(4)), Linear(4, 4, rng=1),
                                           after=ReLU()),
                                  Parallel(OrderedDict(a=Linear(4, 2, rng=2), b=Sequential(Dropout(0.3), Linear(4, 1)))),
                                  ), (4,)),
    "bn2d": (lambda: Sequential(Conv2d(3, 4, 3, stride=2, rng=0), BatchNorm2d(4), ReLU()), (3, 9, 9)),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_models_export_and_onnxruntime_agrees_at_any_batch_size(name, tmp_path):
    onnx = required("onnx", "onnx is not installed (pip install onnx onnxruntime)")
    from nn_from_scratch.export import to_onnx

    make, sample = MODELS[name]
    model = make()
    rng = np.random.default_rng(0)
    model.train()
    model.forward(rng.normal(size=(6,) + sample))  # running statistics away from their initial values
    model.reset()
    model.eval()
    path = to_onnx(model, tmp_path / f"{name}.onnx", sample)
    onnx.checker.check_model(str(path), full_check=True)
    for batch in (1, 2, 7):
        _assert_runtime_agrees(model, path, [rng.normal(size=(batch,) + sample)])


def test_batchnorm_in_training_mode_is_refused_by_name(tmp_path):
    required("onnx", "onnx is not installed (pip install onnx onnxruntime)")
    from nn_from_scratch.export import to_onnx

    model = Sequential(Linear(3, 3), BatchNorm1d(3))
    with pytest.raises(ValueError, match=r"to_onnx: 1 \(BatchNorm1d\): BatchNorm exports in eval mode"):
        to_onnx(model, tmp_path / "m.onnx", (3,))
    assert not (tmp_path / "m.onnx").exists()


def test_opset_is_checked(tmp_path):
    required("onnx", "onnx is not installed (pip install onnx onnxruntime)")
    from nn_from_scratch.export import to_onnx

    with pytest.raises(ValueError, match="opset must be an int from 17 to 21"):
        to_onnx(Sequential(ReLU()), tmp_path / "m.onnx", (3,), opset=9)
    path = to_onnx(Sequential(Linear(3, 2), ReLU()).eval(), tmp_path / "m.onnx", (3,), opset=20)
    assert path.exists()


def test_recurrent_layers_export_with_their_final_states(tmp_path):
    """ONNX's LSTM, GRU (linear_before_reset) and RNN nodes, one per layer, gates in ONNX's order: outputs and the
    final states h_n, c_n of stacked and bidirectional layers, batch first or time first, agree with onnxruntime."""
    required("onnx", "onnx is not installed (pip install onnx onnxruntime)")
    from nn_from_scratch.export import to_onnx
    from nn_from_scratch.nodes import GRU, LSTM, RNN, FirstOutput

    x = Input((5, 3))
    out, h, c = LSTM(3, 4, 2, batch_first=True, bidirectional=True, rng=0)(x)
    out2, h2 = GRU(8, 3, bias=False, rng=1)(FirstOutput(3)(out, h, c))  # time first: the batch axis is time here
    out3, h3 = RNN(3, 2, 3, nonlinearity="relu", batch_first=True, bidirectional=True, rng=2)(out2)
    model = Graph(x, [out3, h, c, h2, h3])
    model.eval()
    path = to_onnx(model, tmp_path / "recurrent.onnx")
    xs = [np.random.default_rng(3).normal(size=(2, 5, 3))]
    _assert_runtime_agrees(model, path, xs)
    _assert_runtime_agrees(model, path, [_batched_again(xs[0])])


def test_a_recurrent_layer_given_its_state_is_refused_by_name(tmp_path):
    required("onnx", "onnx is not installed (pip install onnx onnxruntime)")
    from nn_from_scratch.export import to_onnx
    from nn_from_scratch.nodes import GRU

    x, h0 = Input((2, 3)), Input((1, 2, 4), batched=False)  # time first: (T, N, I) and (1, N, H)
    model = Graph([x, h0], GRU(3, 4, rng=0)(x, h0)[0])
    with pytest.raises(ValueError, match=r"to_onnx: .*\(GRU\): initial states and lengths have no ONNX form"):
        to_onnx(model, tmp_path / "gru.onnx")
