"""Float16: computed in float32 where torch's CPU kernels are, results in float16.

Each case is compared with a float64 reference (the same float16 inputs,
computed in float64) and with torch in float16.  The tolerances are those of
float16 itself: one rounding of a result is a relative error of at most
2**-11 (4.9e-4); 2e-3 allows a few roundings, and nothing coarser is needed
once sums are accumulated in float32.
"""
from __future__ import annotations

import numpy as np
import pytest

from nn_from_scratch import NeuralNetwork, Sequential
from nn_from_scratch.losses import (BCEWithLogitsLoss, CrossEntropyLoss, LocalizationLoss, MSELoss, NLLLoss,
                                    SmoothL1Loss, SoftMaxLoss)
from nn_from_scratch.nodes import (ELU, GELU, BatchNorm1d, LeakyReLU, Linear, LogSoftMax, NormalizedSoftMax, ReLU,
                                   Sigmoid, SoftMax, Softplus, Tanh)
from nn_from_scratch.nodes.softmax import log_softmax, softmax, softmax_with_log_normalizer
from nn_from_scratch.optim import Adam

F16 = np.dtype(np.float16)
RTOL = 2e-3
BIG = 70_000  # more elements than float16's largest number, 65504


def close(actual, expected, rtol=RTOL, atol=0.0):
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64),
                               rtol=rtol, atol=atol)


# ------------------------------------------------------------------ losses
def loss_cases(rng):
    """(name, our loss, float16 prediction, target, torch function of (prediction, target)).

    torch's own float16 cross-entropy and NLL over more than 65504 samples give NaN or 0 (its sample count
    is float16 there too), so for those the oracle is torch in float32 on the same float16 numbers.
    """
    x = (rng.standard_normal(BIG) * 2).astype(F16)
    t = rng.standard_normal(BIG).astype(F16)
    p = rng.random(BIG).astype(F16)
    logits = rng.standard_normal((BIG, 3)).astype(F16)
    labels = rng.integers(0, 3, BIG)
    rows = rng.dirichlet(np.ones(3), BIG).astype(F16)
    rows = (rows / rows.astype(np.float64).sum(axis=1, keepdims=True)).astype(F16)
    boxes = np.column_stack([labels % 2, rng.random((BIG, 4))]).astype(F16)
    return [
        ("mse", MSELoss(), x, t, lambda F, a, b: F.mse_loss(a, b)),
        ("smooth_l1", SmoothL1Loss(), x, t, lambda F, a, b: F.smooth_l1_loss(a, b)),
        ("bce", BCEWithLogitsLoss(), x, p, lambda F, a, b: F.binary_cross_entropy_with_logits(a, b)),
        ("cross_entropy", CrossEntropyLoss(), logits, labels, lambda F, a, b: F.cross_entropy(a, b)),
        ("smoothing", CrossEntropyLoss(label_smoothing=0.1), logits, labels,
         lambda F, a, b: F.cross_entropy(a, b, label_smoothing=0.1)),
        ("probabilities", CrossEntropyLoss(), logits, rows, lambda F, a, b: F.cross_entropy(a, b)),
        ("nll", NLLLoss(), logits, labels, lambda F, a, b: F.nll_loss(a, b)),
        ("softmax_loss", SoftMaxLoss(), logits, labels, None),
        ("localization", LocalizationLoss(2, box_loss="mse"), np.column_stack([logits[:, :2], x[:, None].repeat(4, 1)]),
         boxes, None),
    ]


@pytest.mark.parametrize("index", range(9))
def test_a_mean_loss_over_more_than_65504_elements(torch, index):
    """The count of a 'mean' and the sum are float32: the loss and its gradient are not 0 (nor NaN)."""
    name, loss, x, t, oracle = loss_cases(np.random.default_rng(index))[index]
    value = loss.forward(x, t)
    grad = loss.backward()
    assert grad.dtype == F16 and loss.evaluate(x, t).dtype == F16
    ctx = loss.run(x, t)  # the context calls take the same float32 pass
    assert ctx.y.dtype == F16 and float(ctx.y) == value and loss.value(x, t).dtype == F16
    np.testing.assert_array_equal(loss.backward_from(ctx), grad)
    x64 = x.astype(np.float64)
    t64 = t.astype(np.float64) if t.dtype.kind == "f" else t
    reference = type(loss).__new__(type(loss))
    reference.__dict__.update(loss.__dict__)
    expected = reference.forward(x64, t64)
    expected_grad = reference.backward()
    assert expected != 0 and np.count_nonzero(expected_grad) > BIG // 2
    close(value, expected)
    close(grad, expected_grad, atol=2**-24)  # float16's smallest step: gradients of 1/70000 are subnormal
    if oracle is not None:
        half = name in ("mse", "smooth_l1", "bce")
        a = torch.tensor(x if half else x.astype(np.float32), requires_grad=True)
        b = torch.tensor(t if half or t.dtype.kind != "f" else t.astype(np.float32))
        out = oracle(torch.nn.functional, a, b)
        out.backward()
        assert out.dtype == (torch.float16 if half else torch.float32)
        close(value, out.item())
        close(grad, a.grad.numpy(), atol=2**-24)


def test_sum_and_none_reductions_keep_float16_and_round_once(rng):
    x = (rng.standard_normal(1000) * 3).astype(F16)
    t = rng.standard_normal(1000).astype(F16)
    none = MSELoss(reduction="none").forward(x, t)
    assert none.dtype == F16
    np.testing.assert_array_equal(none, ((x.astype(np.float32) - t) ** 2).astype(F16))
    total = MSELoss(reduction="sum").forward(x, t)
    close(total, np.sum((x.astype(np.float64) - t) ** 2))


# ------------------------------------------------------------------ softmax family
@pytest.mark.parametrize("node_class", [SoftMax, LogSoftMax, NormalizedSoftMax])
def test_softmax_nodes_over_a_row_longer_than_65504(torch, rng, node_class):
    x = rng.standard_normal((2, BIG)).astype(F16)
    x[0] = 0.5  # equal logits: float16 summed their exponentials to inf and gave all zeros
    g = rng.standard_normal((2, BIG)).astype(F16)
    node = node_class()
    y = node.forward(x)
    dx = node.backward(g)
    assert y.dtype == F16 and dx.dtype == F16
    reference = node_class()
    expected = reference.forward(x.astype(np.float64))
    expected_dx = reference.backward(g.astype(np.float64))
    assert np.all(expected != 0)
    close(y, expected, atol=2**-24)
    close(dx, expected_dx, atol=2e-3 * np.abs(expected_dx).max())  # differences of nearly equal terms
    if node_class is not NormalizedSoftMax:
        rows = slice(None) if node_class is SoftMax else slice(1, None)  # torch's float16 log_softmax: -inf on row 0
        a = torch.tensor(x[rows], requires_grad=True)
        out = (torch.softmax if node_class is SoftMax else torch.log_softmax)(a, dim=-1)
        out.backward(torch.tensor(g[rows]))
        close(y[rows], out.detach().numpy(), atol=2**-24)
        close(dx[rows], a.grad.numpy(), atol=2e-3 * np.abs(expected_dx).max())


def test_softmax_functions_keep_float16(rng):
    x = rng.standard_normal((3, BIG)).astype(F16)
    x[1] = -2.0
    expected = softmax(x.astype(np.float64))
    for result in (softmax(x), log_softmax(x, return_softmax=True)[1], softmax_with_log_normalizer(x)[0]):
        assert result.dtype == F16
        close(result, expected, atol=2**-24)
    close(log_softmax(x), log_softmax(x.astype(np.float64)))


# ------------------------------------------------------------------ activations
ACTIVATIONS = [
    (lambda: ReLU(), lambda t: t.nn.ReLU()),
    (lambda: LeakyReLU(0.01), lambda t: t.nn.LeakyReLU(0.01)),
    (lambda: ELU(), lambda t: t.nn.ELU()),
    (lambda: Sigmoid(), lambda t: t.nn.Sigmoid()),
    (lambda: Tanh(), lambda t: t.nn.Tanh()),
    (lambda: GELU(), lambda t: t.nn.GELU()),
    (lambda: GELU(approximate="tanh"), lambda t: t.nn.GELU(approximate="tanh")),
    (lambda: Softplus(), lambda t: t.nn.Softplus()),
]
X = np.array([-60000, -1000, -300, -257, -50, -20, -3, -1, -0.1, 0, 0.1, 1, 3, 20, 50, 257, 300, 1000, 60000])


@pytest.mark.parametrize("index", range(len(ACTIVATIONS)))
def test_activations_in_float16_against_float64_and_torch(torch, index, engine_path):
    """float32 inside: GELU's tanh form has no NaN gradient past |x| = 256 (x^3 overflowed float16),
    ELU and Softplus no 0 * inf where the float16 exponential underflowed."""
    ours, theirs = ACTIVATIONS[index]
    x = X.astype(F16)
    g = np.full_like(x, 0.5)
    node = ours()
    y, dx = node.forward(x), node.backward(g)
    assert y.dtype == F16 and dx.dtype == F16
    reference = ours()
    expected, expected_dx = reference.forward(x.astype(np.float64)), reference.backward(g.astype(np.float64))
    close(y, expected, atol=2**-24)
    close(dx, expected_dx, atol=2**-24)
    a = torch.tensor(x, requires_grad=True)
    out = theirs(torch)(a)
    out.backward(torch.tensor(g))
    close(y, out.detach().numpy(), atol=2**-24)
    if not isinstance(node, (Sigmoid, Tanh)):  # torch takes y (1 - y) and 1 - y^2 of the *rounded* float16 y,
        close(dx, a.grad.numpy(), atol=2**-24)  # which loses the digits near |y| = 1 (0 for sigmoid at x = 10)


@pytest.mark.parametrize("index", range(len(ACTIVATIONS)))
def test_an_infinite_upstream_gradient_in_float16_stays_infinite(torch, index, engine_path):
    """inf times the float32 derivative: infinite wherever that derivative is not 0 (ReLU: 0 where it masks,
    torch's rule).  ELU and Softplus gave NaN at x = -20 and -50, where e^x underflowed in float16."""
    ours, theirs = ACTIVATIONS[index]
    x = np.array([-50, -20, -8, -3, -1, 1, 3, 8, 20], dtype=F16)
    node = ours()
    node.forward(x)
    dx = node.backward(np.full_like(x, np.inf))
    derivative = ours()
    derivative.forward(x.astype(np.float32))
    slope = derivative.backward(np.ones(len(x), dtype=np.float32))
    masked = 0.0 if isinstance(node, ReLU) else np.nan
    expected = np.where(slope == 0, masked, np.inf * np.sign(slope))  # 0 * inf is NaN, anything else infinite
    np.testing.assert_array_equal(dx, expected.astype(F16))
    if isinstance(node, (ReLU, LeakyReLU, ELU, Softplus)) or getattr(node, "approximate", "") == "tanh":
        a = torch.tensor(x, requires_grad=True)
        theirs(torch)(a).backward(torch.full((len(x),), float("inf"), dtype=torch.float16))
        np.testing.assert_array_equal(dx, a.grad.numpy())


# ------------------------------------------------------------------ BatchNorm and a float16 model
def test_batchnorm_float16_statistics_are_float32(torch, rng):
    """Over 70000 values per channel (and with values whose squares overflow float16) the statistics are right."""
    for x in ((rng.standard_normal((BIG, 3)) + 5).astype(F16), (rng.standard_normal((64, 3)) * 300).astype(F16)):
        g = rng.standard_normal(x.shape).astype(F16)
        node, reference = BatchNorm1d(3, dtype=F16), BatchNorm1d(3)
        y, dx = node.forward(x), node.backward(g)
        expected, expected_dx = reference.forward(x.astype(np.float64)), reference.backward(g.astype(np.float64))
        assert y.dtype == F16 and dx.dtype == F16 and node.running_var.dtype == F16
        close(y, expected, atol=2e-3)
        close(dx, expected_dx, atol=2e-3 * np.abs(expected_dx).max())
        close(node.weight.grad, reference.weight.grad, atol=2e-3 * np.abs(reference.weight.grad).max())
        for name in ("running_mean", "running_var"):
            close(getattr(node, name), getattr(reference, name))
        module = torch.nn.BatchNorm1d(3).half()
        out = module(torch.tensor(x))
        close(y, out.detach().numpy(), atol=4e-3)
        close(node.running_mean, module.running_mean.numpy())
        close(node.running_var, module.running_var.numpy())


def test_a_float16_model_trains_in_float16(rng):
    """Every node's input, output and gradients stay float16; the loss goes down."""
    X = rng.standard_normal((256, 8)).astype(F16)
    y = (X.astype(np.float32) @ rng.standard_normal(8) > 0).astype(np.int64)
    model = Sequential(Linear(8, 16, rng=0, dtype=F16), BatchNorm1d(16, dtype=F16), GELU(approximate="tanh"),
                       Linear(16, 16, rng=1, dtype=F16), ELU(), Linear(16, 2, rng=2, dtype=F16))
    network = NeuralNetwork(model, CrossEntropyLoss(), Adam(model.parameters(), lr=1e-2, eps=1e-4))
    history = network.fit(X, y, epochs=5, batch_size=32, rng=0, progress=False)
    assert history["loss"][-1] < 0.7 * history["loss"][0]
    output = model.forward(X[:4])
    assert output.dtype == F16
    assert model.backward(np.ones_like(output)).dtype == F16
    for name, p in model.named_parameters():
        assert p.value.dtype == F16 and p.grad.dtype == F16, name
