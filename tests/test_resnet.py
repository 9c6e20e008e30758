"""models.resnet: its layout, torchvision's initialisation, the torch oracle, and its configuration as untrusted input."""
from __future__ import annotations

import math

import numpy as np
import pytest

from nn_from_scratch import BatchNorm2d, Conv2d, Linear, Residual, Sequential
from nn_from_scratch.files import load_layout, load_model, save_model
from nn_from_scratch.gradcheck import assert_gradients
from nn_from_scratch.losses import CrossEntropyLoss
from nn_from_scratch.models import build_model, parameter_shapes, resnet, validate_config
from test_residual import TIGHT, assert_matches_torch, load_into_torch, randomise_batchnorms, torch_residual

TINY = dict(input_shape=(3, 6, 6), num_classes=4, channels=(3, 4, 5), blocks=(1, 2, 1))
CONFIG = {"kind": "resnet", "input_shape": [3, 6, 6], "channels": [3, 4, 5], "blocks": [1, 2, 1], "classes": 4}


def torch_resnet(torch, input_channels: int, channels, blocks, classes: int):
    """The same network written in torch: stem, basic blocks (TorchResidual), average pool, Flatten, Linear."""
    nn = torch.nn
    TorchResidual = torch_residual(torch)
    layers = [nn.Conv2d(input_channels, channels[0], 3, padding=1, bias=False), nn.BatchNorm2d(channels[0]), nn.ReLU()]
    previous = channels[0]
    for stage, (width, count) in enumerate(zip(channels, blocks)):
        for block in range(count):
            stride = 2 if stage > 0 and block == 0 else 1
            f = nn.Sequential(nn.Conv2d(previous, width, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(width),
                              nn.ReLU(), nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width))
            shortcut = None
            if stride != 1 or previous != width:
                shortcut = nn.Sequential(nn.Conv2d(previous, width, 1, stride=stride, bias=False), nn.BatchNorm2d(width))
            layers.append(TorchResidual(f, shortcut, nn.ReLU()))
            previous = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(previous, classes)]
    return nn.Sequential(*layers).double()


# ---------------------------------------------------------------- layout
@pytest.mark.parametrize("shape, sides", [((1, 28, 28), (28, 14, 7)), ((3, 32, 32), (32, 16, 8))])
def test_the_stages_halve_the_image_and_the_output_is_the_logits(shape, sides, rng):
    model = resnet(input_shape=shape, seed=0)
    table = model.summary((None,) + shape)
    for width, side in zip((16, 32, 64), sides):
        assert f"(None, {width}, {side}, {side})" in table
    assert model.evaluate(rng.standard_normal((2,) + shape)).shape == (2, 10)
    blocks = [node for node in model if isinstance(node, Residual)]
    assert len(blocks) == 3 and blocks[0].shortcut is None
    assert all(isinstance(block.shortcut[0], Conv2d) and block.shortcut[0].stride == (2, 2) for block in blocks[1:])


def test_the_parameter_count_is_torchs(torch):
    for shape in ((1, 28, 28), (3, 32, 32)):
        ours = resnet(input_shape=shape, seed=0)
        theirs = torch_resnet(torch, shape[0], (16, 32, 64), (1, 1, 1), 10)
        assert sum(p.size for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
        assert sorted(ours.state_dict()) == sorted(theirs.state_dict())


def test_an_image_of_another_shape_is_refused(rng):
    model = resnet(seed=0)
    with pytest.raises(ValueError, match=r"\('any', 1, 28, 28\), got \(2, 1, 32, 32\)"):
        model.forward(rng.standard_normal((2, 1, 32, 32)))
    with pytest.raises(ValueError, match="channels"):
        resnet(channels=(16, 32), blocks=(1, 1, 1))


def test_initialisation_follows_torchvision(rng):
    model = resnet(input_shape=(3, 32, 32), channels=(16, 32, 64), blocks=(2, 2, 2), seed=1)
    convs = [node for node in leaves(model) if isinstance(node, Conv2d)]
    assert convs and all(conv.bias is None for conv in convs)
    big = [conv for conv in convs if conv.weight.size >= 9000]
    assert len(big) >= 4
    for conv in big:  # kaiming_normal_(mode="fan_out", nonlinearity="relu"): N(0, 2 / (C_out kh kw))
        o, _, kh, kw = conv.weight.shape
        std = conv.weight.value.std()
        np.testing.assert_allclose(std, math.sqrt(2 / (o * kh * kw)), rtol=0.05)
        assert abs(conv.weight.value.mean()) < 0.05 * std
    for bn in (node for node in leaves(model) if isinstance(node, BatchNorm2d)):
        np.testing.assert_array_equal(bn.weight.value, 1)
        np.testing.assert_array_equal(bn.bias.value, 0)
    head = model[-1]
    assert isinstance(head, Linear) and np.abs(head.weight.value).max() <= 1 / math.sqrt(64)
    again = resnet(input_shape=(3, 32, 32), channels=(16, 32, 64), blocks=(2, 2, 2), seed=1)
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        np.testing.assert_array_equal(a, b, err_msg=name)
    other = resnet(input_shape=(3, 32, 32), channels=(16, 32, 64), blocks=(2, 2, 2), seed=2)
    assert not np.array_equal(other[0].weight.value, model[0].weight.value)


def leaves(node):
    """The layers at the bottom of the model's tree, in order (the library's own walk)."""
    return [child for _, child in node.named_nodes() if not child.children()]


# ---------------------------------------------------------------- the torch oracle and finite differences
def test_the_whole_resnet_agrees_with_torch_in_train_and_eval_mode(torch, rng, engine_path):
    ours = resnet(**TINY, seed=0)
    randomise_batchnorms(ours, rng)
    theirs = torch_resnet(torch, 3, TINY["channels"], TINY["blocks"], 4)
    load_into_torch(torch, ours, theirs)
    for _ in range(2):  # batch statistics; assert_matches_torch compares the running statistics too
        assert_matches_torch(torch, ours, theirs, rng.standard_normal((5, 3, 6, 6)) * 2 + 0.5,
                             rng.standard_normal((5, 4)))
    ours.eval()
    theirs.eval()
    assert_matches_torch(torch, ours, theirs, rng.standard_normal((3, 3, 6, 6)), rng.standard_normal((3, 4)))
    fresh = torch_resnet(torch, 3, TINY["channels"], TINY["blocks"], 4)
    fresh(torch.tensor(rng.standard_normal((4, 3, 6, 6))))
    fresh.eval()
    ours.load_state_dict({k: v.numpy() for k, v in fresh.state_dict().items()})
    assert_matches_torch(torch, ours, fresh, rng.standard_normal((3, 3, 6, 6)), rng.standard_normal((3, 4)), tol=TIGHT)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_gradcheck_of_a_tiny_resnet(mode, rng):
    model = resnet(input_shape=(1, 4, 4), num_classes=3, channels=(2, 3), blocks=(1, 1), seed=0)
    randomise_batchnorms(model, rng)
    model.train(mode == "train")
    assert_gradients(model, rng.standard_normal((2, 1, 4, 4)), rng=rng)


def test_a_float32_resnet_trains_in_float32(rng):
    model = resnet(**TINY, dtype="float32", seed=0)
    assert resnet(**TINY, dtype=np.float32, seed=0).state_dict()["0.weight"].dtype == np.float32
    seen = []
    for node in leaves(model):
        def backward(g, ctx, input_grad=True, _inner=node._backward, _name=type(node).__name__):
            dx = _inner(g, ctx, input_grad)
            seen.extend([(_name, g.dtype), (_name, ctx.y.dtype)] + ([] if dx is None else [(_name, dx.dtype)]))
            return dx
        node._backward = backward
    loss = CrossEntropyLoss()
    loss.forward(model.forward(rng.standard_normal((4, 3, 6, 6)).astype(np.float32)), rng.integers(0, 4, 4))
    model.backward(loss.backward(), input_grad=False)
    assert len(seen) > 20 and {dtype for _, dtype in seen} == {np.dtype(np.float32)}, sorted(set(seen))
    assert {p.grad.dtype for p in model.parameters()} == {np.dtype(np.float32)}
    half = resnet(**TINY, dtype="float16", seed=0)
    assert half.forward(rng.standard_normal((4, 3, 6, 6)).astype(np.float16)).dtype == np.float16


# ---------------------------------------------------------------- the configuration
def test_the_config_describes_the_model_it_rebuilds(rng):
    normalised = validate_config(CONFIG)
    assert normalised == dict(CONFIG, dtype="float64")
    model = build_model(CONFIG, rng=0)
    state = model.state_dict()
    assert {name: p.value.shape for name, p in model.named_parameters()} == parameter_shapes(normalised)
    assert validate_config(CONFIG, state) == normalised
    for name, value in resnet(**TINY, seed=0).state_dict().items():
        np.testing.assert_array_equal(state[name], value, err_msg=name)


def test_a_saved_resnet_is_rebuilt_from_its_metadata(tmp_path, suffix, rng):
    model = resnet(**TINY, seed=3)
    model.forward(rng.standard_normal((4, 3, 6, 6)))  # running statistics away from their start
    path = save_model(tmp_path / f"resnet{suffix}", model, {"model": CONFIG})
    layout, metadata = load_layout(path)
    config = validate_config(metadata["model"], layout)
    rebuilt = build_model(config, rng=0)
    load_model(path, rebuilt)
    x = rng.standard_normal((2, 3, 6, 6))
    np.testing.assert_array_equal(rebuilt.eval().evaluate(x), model.eval().evaluate(x))


def test_file_tensors_that_do_not_fit_the_config_are_refused():
    state = resnet(**TINY, seed=0).state_dict()
    wrong_shape = dict(state, **{"4.shortcut.0.weight": np.zeros((4, 3, 3, 3))})
    wrong_count = dict(state, **{"3.f.1.num_batches_tracked": np.array(0.0)})
    missing = {k: v for k, v in state.items() if k != "5.f.4.running_var"}
    for tensors, message in [(wrong_shape, r"'4.shortcut.0.weight'.*\(4, 3, 1, 1\)"),
                             (wrong_count, r"'3.f.1.num_batches_tracked'.*int64"), (missing, r"'5.f.4.running_var'")]:
        with pytest.raises(ValueError, match=message):
            validate_config(CONFIG, tensors)


@pytest.mark.parametrize("change, field", [
    ({"input_shape": [3, 6]}, "input_shape"), ({"input_shape": 6}, "input_shape"),
    ({"input_shape": [3, 0, 6]}, r"input_shape\[1\]"), ({"input_shape": [3, 6, 10**5]}, r"input_shape\[2\]"),
    ({"input_shape": [True, 6, 6]}, r"input_shape\[0\]"), ({"channels": []}, "channels"),
    ({"channels": [3, 4.0, 5]}, r"channels\[1\]"), ({"blocks": [1, 1]}, "one count per"),
    ({"blocks": [1, 0, 1]}, r"blocks\[1\]"), ({"blocks": [30, 30, 30]}, "add up to 90"),
    ({"blocks": "111"}, "blocks"), ({"classes": 0}, "classes"), ({"channels": [4000, 4000, 4000]}, "parameters"),
    ({"hidden": 8}, "hidden"), ({"dtype": "int32"}, "dtype"),
])
def test_a_bad_config_names_its_field(change, field):
    config = dict(CONFIG, **change)
    for call in (lambda: validate_config(config), lambda: build_model(config)):
        with pytest.raises(ValueError, match=field):
            call()
    missing = {k: v for k, v in CONFIG.items() if k != "blocks"}
    with pytest.raises(ValueError, match="blocks"):
        validate_config(missing)
