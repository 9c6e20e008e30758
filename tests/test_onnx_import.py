"""``from_onnx``: ONNX files written by torch (``torch.onnx.export``, the TorchScript exporter: ``dynamo=False``,
which works offline) come in as Graphs of our nodes, compute torch's numbers and fine-tune.

The torch models are a torchvision-style small CNN and a ResNet basic block,
written into each test by torch itself; torch folds each eval-mode BatchNorm
into its convolution when it exports.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from conftest import required
from nn_from_scratch.containers import Graph
from nn_from_scratch.registry import load_model, save_model


def _torch_models(torch):
    nn = torch.nn

    class SmallCNN(nn.Module):  # torchvision's style: features, then a classifier
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
                                          nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, stride=1, padding=1), nn.ReLU(),
                                          nn.AvgPool2d(2))
            self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(16 * 2 * 2, 32), nn.ReLU(),
                                            nn.Linear(32, 10))

        def forward(self, x):
            return self.classifier(self.features(x))

    class BasicBlock(nn.Module):  # torchvision.models.resnet.BasicBlock with a projection shortcut
        def __init__(self, c_in=4, c_out=8, stride=2):
            super().__init__()
            self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(c_out)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(c_out)
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

        def forward(self, x):
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu(out + self.downsample(x))

    class Head(nn.Module):  # a global pool, a Gemm, a log-softmax
        def __init__(self):
            super().__init__()
            self.block = BasicBlock()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(8, 5)

        def forward(self, x):
            return torch.log_softmax(self.fc(torch.flatten(self.pool(self.block(x)), 1)), dim=1)

    return {"cnn": (SmallCNN, (1, 8, 8)), "block": (BasicBlock, (4, 8, 8)), "resnet_head": (Head, (4, 8, 8))}


def _export(torch, module, sample, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, torch.randn(2, *sample), str(path), dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})


@pytest.mark.parametrize("name", ["cnn", "block", "resnet_head"])
def test_a_torch_export_comes_in_and_matches_torch(name, torch, tmp_path):
    required("onnx", "onnx is not installed (pip install onnx onnxruntime)")
    from nn_from_scratch.export import from_onnx

    torch.manual_seed(0)
    make, sample = _torch_models(torch)[name]
    module = make()
    module.train()
    module(torch.randn(8, *sample))  # running statistics away from their initial values
    module.eval()
    path = tmp_path / f"{name}.onnx"
    _export(torch, module, sample, path)
    model = from_onnx(path)
    assert isinstance(model, Graph)
    model.eval()
    for batch in (1, 5):
        x = np.random.default_rng(batch).normal(size=(batch,) + sample).astype(np.float32)
        with torch.no_grad():
            want = module(torch.from_numpy(x)).numpy()
        got = model.evaluate(x)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_an_imported_model_fine_tunes_saves_and_exports_again(torch, tmp_path):
    required("onnx", "onnx is not installed (pip install onnx onnxruntime)")
    from nn_from_scratch.export import from_onnx, to_onnx
    from nn_from_scratch.losses import CrossEntropyLoss
    from nn_from_scratch.optim import SGD

    torch.manual_seed(0)
    make, sample = _torch_models(torch)["cnn"]
    module = make().eval()
    _export(torch, module, sample, tmp_path / "cnn.onnx")
    model = from_onnx(tmp_path / "cnn.onnx")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16,) + sample).astype(np.float32)
    labels = rng.integers(0, 10, size=16)
    loss, optimizer = CrossEntropyLoss(), SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.train()
    first = None
    for _ in range(40):
        optimizer.zero_grad()
        value = loss.forward(model.forward(x), labels)
        model.backward(loss.backward())
        optimizer.step()
        first = value if first is None else first
    assert float(value) < 0.5 * float(first)  # it trains
    model.eval()
    again = load_model(save_model(tmp_path / "tuned.npz", model))
    again.eval()
    np.testing.assert_array_equal(again.evaluate(x), model.evaluate(x))
    to_onnx(model, tmp_path / "tuned.onnx")  # the Graph's Input gives the shape


def test_an_operator_without_a_node_is_refused_by_name(torch, tmp_path):
    required("onnx", "onnx is not installed (pip install onnx onnxruntime)")
    from nn_from_scratch.export import from_onnx

    class Odd(torch.nn.Module):
        def forward(self, x):
            return torch.cumsum(x, dim=1)

    _export(torch, Odd(), (3,), tmp_path / "odd.onnx")
    with pytest.raises(ValueError, match=r"from_onnx: node .*\(CumSum\): this operator has no node here"):
        from_onnx(tmp_path / "odd.onnx")


def test_a_file_that_is_not_onnx_is_refused(tmp_path):
    required("onnx", "onnx is not installed (pip install onnx onnxruntime)")
    from nn_from_scratch.export import from_onnx

    (tmp_path / "bad.onnx").write_bytes(b"\x08\x07garbage")
    with pytest.raises(ValueError, match="is not a valid ONNX model"):
        from_onnx(tmp_path / "bad.onnx")
