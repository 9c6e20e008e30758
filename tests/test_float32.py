"""Float32 end to end: a float32 model computes, and trains, in float32 with no silent upcast.

Every leaf node of each model is watched during a training step: its input,
output, output gradient and input gradient, its parameter gradients, the
loss gradient, the parameters after each optimizer's step and the
optimizer's state buffers must all be float32.
"""
from __future__ import annotations

from typing import List, Tuple

import numpy as np
import pytest

from nn_from_scratch import Sequential
from nn_from_scratch.losses import (BCEWithLogitsLoss, CrossEntropyLoss, LocalizationLoss, MSELoss, NLLLoss,
                                    SmoothL1Loss, SoftMaxLoss)
from nn_from_scratch.models import localizer
from nn_from_scratch.nodes import (ELU, GELU, AdaptiveAvgPool2d, AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Dropout,
                                   Flatten, GlobalAvgPool2d, LeakyReLU, Linear, LogSoftMax, MaxPool2d,
                                   NormalizedSoftMax, ReLU, Sigmoid, SoftMax, Softplus, Tanh)
from nn_from_scratch.optim import SGD, Adam, AdamW, RMSProp

F32 = np.dtype(np.float32)


def leaves(node):
    children = node.children()
    if not children:
        yield node
    for _, child in children:
        yield from leaves(child)


def watch(model) -> List[Tuple[str, str, np.dtype]]:
    """Record the dtype of every array entering and leaving each leaf node's forward and backward."""
    seen: List[Tuple[str, str, np.dtype]] = []
    for node in leaves(model):
        name = type(node).__name__

        def forward(x, ctx, _node=node, _name=name, _inner=node._forward):
            y = _inner(x, ctx)
            seen.extend([(_name, "input", x.dtype), (_name, "output", y.dtype)])
            return y

        def backward(g, ctx, input_grad=True, _name=name, _inner=node._backward):
            dx = _inner(g, ctx, input_grad)
            seen.append((_name, "output gradient", g.dtype))
            if dx is not None:
                seen.append((_name, "input gradient", dx.dtype))
            return dx

        node._forward, node._backward = forward, backward
    return seen


def mlp32(rng):
    layers = [Linear(12, 16, rng=rng, dtype=F32), BatchNorm1d(16, dtype=F32), ReLU(), Dropout(0.2, rng=rng),
              Linear(16, 16, rng=rng, dtype=F32)]
    for activation in (LeakyReLU(), ELU(), GELU(), Sigmoid(), Tanh(), Softplus()):
        layers += [activation, Linear(16, 16, rng=rng, dtype=F32)]
    return Sequential(*layers, Linear(16, 5, rng=rng, dtype=F32)), (8, 12)


def cnn32(rng):
    return Sequential(
        Conv2d(2, 4, 3, padding=1, rng=rng, dtype=F32), BatchNorm2d(4, dtype=F32), ReLU(), MaxPool2d(2),
        Conv2d(4, 6, 3, stride=2, padding=1, dilation=1, rng=rng, dtype=F32), AvgPool2d(2, stride=1),
        Conv2d(6, 6, (2, 1), padding=(1, 0), dilation=(1, 1), rng=rng, dtype=F32), AdaptiveAvgPool2d((3, 2)),
        Conv2d(6, 5, 1, rng=rng, dtype=F32), GlobalAvgPool2d(), Flatten(),
    ), (4, 2, 12, 12)


@pytest.mark.parametrize("build", [mlp32, cnn32])
@pytest.mark.parametrize("loss_name", ["cross_entropy", "smoothing", "probabilities", "nll", "softmax_loss",
                                       "mse", "smooth_l1", "bce"])
def test_a_float32_model_trains_in_float32(build, loss_name, rng):
    model, shape = build(rng)
    classes = 5
    batch = shape[0]
    if loss_name == "nll":
        model = Sequential(*model.nodes, LogSoftMax())
    elif loss_name == "softmax_loss":
        model = Sequential(*model.nodes)
    loss, target = {
        "cross_entropy": (CrossEntropyLoss(), rng.integers(0, classes, batch)),
        "smoothing": (CrossEntropyLoss(label_smoothing=0.1), rng.integers(0, classes, batch)),
        "probabilities": (CrossEntropyLoss(), rng.dirichlet(np.ones(classes), batch).astype(F32)),
        "nll": (NLLLoss(), rng.integers(0, classes, batch)),
        "softmax_loss": (SoftMaxLoss(), rng.integers(0, classes, batch)),
        "mse": (MSELoss(), rng.standard_normal((batch, classes)).astype(F32)),
        "smooth_l1": (SmoothL1Loss(), rng.standard_normal((batch, classes)).astype(F32)),
        "bce": (BCEWithLogitsLoss(), rng.integers(0, 2, (batch, classes)).astype(F32)),
    }[loss_name]
    seen = watch(model)
    x = rng.standard_normal(shape).astype(F32)
    optimizers = [SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4), Adam(model.parameters(), lr=1e-3),
                  AdamW(model.parameters(), lr=1e-3), RMSProp(model.parameters(), lr=1e-3, centered=True, momentum=0.5)]
    for optimizer in optimizers:
        optimizer.zero_grad()
        prediction = model.forward(x)
        loss.forward(prediction, target)  # a Python float; the array behind it:
        assert loss.evaluate(prediction).dtype == F32, f"{loss_name}: loss value is {loss.evaluate(prediction).dtype}"
        g = loss.backward()
        assert g.dtype == F32, f"{loss_name}: loss gradient is {g.dtype}"
        assert model.backward(g).dtype == F32
        for name, p in model.named_parameters():
            assert p.grad.dtype == F32, f"gradient of {name} is {p.grad.dtype}"
        optimizer.step()
        optimizer.step()
        for name, p in model.named_parameters():
            assert p.value.dtype == F32, f"{type(optimizer).__name__} turned {name} into {p.value.dtype}"
        for state in optimizer.state:
            for key, buffer in state.items():
                if isinstance(buffer, np.ndarray) and buffer.ndim:
                    assert buffer.dtype == F32, f"{type(optimizer).__name__} state {key} is {buffer.dtype}"
    upcasts = sorted({(node, what, str(dtype)) for node, what, dtype in seen if dtype != F32})
    assert not upcasts, f"arrays that left float32: {upcasts}"
    assert len(seen) > 0
    for name, buffer in model.named_buffers():
        if np.asarray(buffer).dtype.kind == "f":
            assert np.asarray(buffer).dtype == F32, f"buffer {name} is {np.asarray(buffer).dtype}"


def test_the_activations_stay_float32_on_the_textbook_path(rng):
    """The activations' textbook formulas (engine off) keep float32 too: the MLP of every activation trains."""
    from nn_from_scratch import engine

    with engine.textbook():
        test_a_float32_model_trains_in_float32(mlp32, "cross_entropy", rng)


def test_the_softmax_nodes_and_the_localizer_stay_float32(rng):
    for node in (SoftMax(), NormalizedSoftMax(), LogSoftMax()):
        x = rng.standard_normal((3, 4)).astype(F32)
        assert node.forward(x).dtype == F32
        assert node.backward(np.ones((3, 4), dtype=F32)).dtype == F32
    model = localizer(16, 10, channels=(4, 4), hidden=8, rng=rng, dtype=F32)
    seen = watch(model)
    loss = LocalizationLoss(10)
    x = rng.standard_normal((3, 1, 16, 16)).astype(F32)
    target = np.column_stack([rng.integers(0, 10, 3), rng.uniform(0.2, 0.8, (3, 4))]).astype(F32)
    loss.forward(model.forward(x), target)
    model.backward(loss.backward(), input_grad=False)
    upcasts = sorted({(node, what, str(dtype)) for node, what, dtype in seen if dtype != F32})
    assert not upcasts, f"arrays that left float32: {upcasts}"
    for name, p in model.named_parameters():
        assert p.grad.dtype == F32, f"gradient of {name} is {p.grad.dtype}"
