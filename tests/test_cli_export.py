"""``nn-from-scratch export --weights X.npz --onnx X.onnx``: a trained model as an ONNX file onnxruntime runs."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import required
from nn_from_scratch.cli import main
from nn_from_scratch.containers import Graph, Input
from nn_from_scratch.files import load_layout
from nn_from_scratch.models import build_model
from nn_from_scratch.nodes import Linear, ReLU
from nn_from_scratch.registry import load_model as load_described
from nn_from_scratch.registry import save_model


def _runtime(path):
    ort = required("onnxruntime", "onnxruntime is not installed (pip install onnx onnxruntime)")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_export_a_trained_model(model, tmp_path, capsys):
    required("onnx", "onnx is not installed (pip install onnx onnxruntime)")
    weights, onnx_path = tmp_path / "m.npz", tmp_path / "m.onnx"
    assert main(["train", "--model", model, "--epochs", "1", "--no-progress", "--out", str(weights)]) == 0
    assert main(["export", "--weights", str(weights), "--onnx", str(onnx_path)]) == 0
    assert f"wrote {onnx_path}" in capsys.readouterr().out
    metadata = load_layout(weights)[1]
    assert "nn_from_scratch.architecture" in metadata  # train saves the architecture too: load_model(path) works
    config = metadata["model"]
    net = build_model(config, rng=0)
    from nn_from_scratch.files import load_model
    load_model(weights, net)
    net.eval()
    shape = (config["in_features"],) if model == "mlp" else (config["in_channels"], config["image_size"],
                                                             config["image_size"])
    x = np.random.default_rng(0).normal(size=(5,) + shape)
    rebuilt = load_described(weights)  # without the model kind's code
    rebuilt.eval()
    np.testing.assert_array_equal(rebuilt.evaluate(x), net.evaluate(x))
    session = _runtime(onnx_path)
    (got,) = session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})
    want = net.evaluate(x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_export_a_model_saved_with_its_architecture(tmp_path):
    required("onnx", "onnx is not installed (pip install onnx onnxruntime)")
    x = Input(4, name="features")
    model = Graph(x, Linear(4, 2, rng=0)(ReLU()(Linear(4, 4, rng=1)(x))))
    weights = save_model(tmp_path / "g.npz", model)
    assert main(["export", "--weights", str(weights), "--onnx", str(tmp_path / "g.onnx")]) == 0
    session = _runtime(tmp_path / "g.onnx")
    assert [i.name for i in session.get_inputs()] == ["features"]
    value = np.ones((3, 4))
    (got,) = session.run(None, {"features": value.astype(np.float32)})
    np.testing.assert_allclose(got, model.evaluate(value), rtol=1e-5)


def test_export_refuses_a_file_it_cannot_use(tmp_path, capsys):
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(SystemExit):
        main(["export", "--weights", str(tmp_path / "bad.npz"), "--onnx", str(tmp_path / "x.onnx")])
    assert "cannot load" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()


def test_the_command_line_saves_a_model_it_cannot_describe_as_weights_alone(tmp_path):
    """A trained model is never lost to its description: a node without config() saves its weights alone."""
    from nn_from_scratch.cli import common
    from nn_from_scratch.containers import Sequential
    plain = common.save_model(tmp_path / "a.npz", Sequential(Linear(2, 2)), {"note": 1})
    assert "nn_from_scratch.architecture" in load_layout(plain)[1]
    encoder = Linear(2, 3)
    tied = Sequential(encoder, Linear.tied_to(encoder.weight, transpose=True))  # shares a weight: no config()
    weights = common.save_model(tmp_path / "b.npz", tied, {"note": 1})
    assert load_layout(weights)[1] == {"note": 1}
