"""The composition contract's promises (nn_from_scratch.node): the faces, the context calls and the hooks.

Small test-only nodes stand in for what a later change adds (two-input, two-output nodes); the
derivatives are checked against finite differences, which do not go through the code under test.
"""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from nn_from_scratch import (
    BatchNorm1d,
    Context,
    Conv2d,
    Criterion,
    Linear,
    NeuralNetwork,
    Node,
    Parallel,
    ReLU,
    Sequential,
    Tanh,
)
from nn_from_scratch.gradcheck import assert_gradients, check_node, numerical_jacobian
from nn_from_scratch.losses import CrossEntropyLoss, MSELoss
from nn_from_scratch.optim import SGD

SRC = Path(__file__).resolve().parent.parent / "src" / "nn_from_scratch"


# ------------------------------------------------------------ test-only nodes
class ProductVJP(Node):
    """y = a * b (elementwise) with only a VJP: the base class derives both Jacobians."""

    num_inputs = 2

    def _forward(self, a, b, ctx):
        return a * b

    def _vjp(self, g, ctx):
        a, b = ctx.inputs
        return g * b, g * a


class ProductJacobian(Node):
    """y = a * b with only the two dense Jacobians: the base class derives the VJP."""

    num_inputs = 2

    def _forward(self, a, b, ctx):
        return a * b

    def _jacobian(self, ctx):
        a, b = ctx.inputs
        return np.diag(b.ravel()).reshape(a.shape * 2), np.diag(a.ravel()).reshape(a.shape * 2)


class WrongSecondInput(ProductVJP):
    """The gradient of the second input is wrong (a instead of g * a): gradcheck must see it."""

    def _vjp(self, g, ctx):
        a, b = ctx.inputs
        return g * b, a


class SinAndSquare(Node):
    """Two outputs, (sin x, x**2), with only a VJP that takes a tuple of output gradients."""

    def _forward(self, x, ctx):
        return np.sin(x), x**2

    def _vjp(self, g, ctx):
        g_sin, g_square = g
        return g_sin * np.cos(ctx.x) + g_square * 2 * ctx.x


class Gather(Node):
    """y = x[index] along the last axis; the integer index is a constant input (no gradient)."""

    num_inputs = 2
    constant_inputs = (1,)

    def _forward(self, x, index, ctx):
        return x[..., index]

    def _vjp(self, g, ctx):
        x, index = ctx.inputs
        dx = np.zeros_like(x)
        np.add.at(dx, (..., index), g)
        return dx, None


class Residual(Node):
    """y = x + f(x): a user container written only against the public contract."""

    def __init__(self, inner: Node) -> None:
        super().__init__()
        self.inner = inner

    def children(self):
        return [("inner", self.inner)]

    def _forward(self, x, ctx):
        ctx.step = self.inner.run(x, update_state=ctx.update_state)
        return x + ctx.step.y

    def _backward(self, g, ctx, input_grad):
        dx = self.inner.backward_from(ctx.step, g, input_grad=input_grad)
        return g + dx if input_grad else None

    def _vjp(self, g, ctx):
        return g + self.inner.vjp_from(ctx.step, g)

    def _jacobian(self, ctx):
        x = ctx.x
        return np.eye(x.size, dtype=x.dtype).reshape(x.shape * 2) + self.inner.jacobian_from(ctx.step)


# ------------------------------------------------------------ k = 1: unchanged
def test_one_input_gives_single_arrays_of_the_input_shape_and_dtype(rng):
    layer = Linear(3, 2, rng=rng, dtype=np.float32)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    ctx = layer.run(x)
    assert isinstance(ctx, Context)
    assert ctx.inputs == (ctx.x,) and ctx.x is x
    assert isinstance(ctx.y, np.ndarray) and ctx.y.shape == (4, 2) and ctx.y.dtype == np.float32
    g = rng.standard_normal((4, 2)).astype(np.float32)
    dx = layer.backward_from(ctx, g)
    assert isinstance(dx, np.ndarray) and dx.shape == x.shape and dx.dtype == np.float32
    jac = layer.jacobian_from(ctx)
    assert isinstance(jac, np.ndarray) and jac.shape == (4, 2, 4, 3)
    np.testing.assert_allclose(dx, np.tensordot(g, jac, axes=2), rtol=1e-5, atol=1e-6)
    # the faces agree with the context calls
    layer.zero_grad()
    layer.forward(x)
    np.testing.assert_array_equal(layer.backward(g), dx)


def test_run_leaves_the_pending_pass_alone_and_checks_its_inputs(rng):
    node = Tanh()
    x = rng.standard_normal((2, 3))
    assert node.pending is None
    node.forward(x)
    pending = node.pending
    ctx = node.run(rng.standard_normal((5,)))
    assert node.pending is pending and ctx is not pending
    with pytest.raises(TypeError, match="takes 1 input, got 2"):
        node.run(x, x)
    with pytest.raises(TypeError, match="real numbers"):
        node.run(np.array(["a"]))
    with pytest.raises(ValueError, match="output's shape"):
        node.backward_from(ctx, np.ones(4))
    node.backward(np.ones_like(x))
    assert node.pending is None


def test_pending_is_read_only(rng):
    node = ReLU()
    node.forward(rng.standard_normal(3))
    with pytest.raises(AttributeError):
        node.pending = None
    assert node.pending is not None


def test_vjp_from_leaves_parameter_gradients_untouched(rng):
    layer = Linear(3, 2, rng=rng)
    ctx = layer.run(rng.standard_normal((4, 3)))
    g = rng.standard_normal((4, 2))
    dx = layer.vjp_from(ctx, g)
    assert all(np.all(p.grad == 0) for p in layer.parameters())
    np.testing.assert_allclose(dx, g @ layer.weight.value, rtol=1e-12, atol=1e-12)


def test_input_grad_false_returns_none_and_still_accumulates(rng):
    layer = Linear(3, 2, rng=rng)
    x, g = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    assert layer.backward_from(layer.run(x), g, input_grad=False) is None
    np.testing.assert_allclose(layer.weight.grad, g.T @ x, rtol=1e-12, atol=1e-12)
    layer.forward(x)
    assert layer.backward(g, input_grad=False) is None
    np.testing.assert_allclose(layer.weight.grad, 2 * g.T @ x, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("make, shape", [
    (lambda rng: Linear(3, 2, rng=rng), (4, 3)),
    (lambda rng: BatchNorm1d(3), (5, 3)),
    (lambda rng: Conv2d(2, 3, 3, padding=1, rng=rng), (2, 2, 5, 4)),
    (lambda rng: Conv2d(2, 3, 2, stride=2, rng=rng), (2, 2, 5, 4)),
])
def test_the_fused_backward_equals_accumulate_then_vjp(make, shape, rng):
    """``_backward`` (Conv2d and BatchNorm fuse it) gives what its default gives: the parameter
    gradients of ``input_grad=False`` and the input gradient of ``vjp_from``."""
    node = make(rng)
    x = rng.standard_normal(shape)
    ctx = node.run(x)
    g = rng.standard_normal(ctx.y.shape)
    dx_alone = node.vjp_from(ctx, g)
    assert node.backward_from(ctx, g, input_grad=False) is None
    grads_alone = [p.grad.copy() for p in node.parameters()]
    node.zero_grad()
    dx = node.backward_from(ctx, g)
    np.testing.assert_allclose(dx, dx_alone, rtol=1e-12, atol=1e-12)
    for p, expected in zip(node.parameters(), grads_alone):
        np.testing.assert_allclose(p.grad, expected, rtol=1e-12, atol=1e-12)
    # and the default hook itself is exactly _accumulate_grads then _vjp
    node.zero_grad()
    Node._backward(node, g, ctx, True)
    for p, expected in zip(node.parameters(), grads_alone):
        np.testing.assert_allclose(p.grad, expected, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------ k = 2 and two outputs
@pytest.mark.parametrize("node_type", [ProductVJP, ProductJacobian])
def test_two_inputs_give_tuples_checked_against_finite_differences(node_type, rng):
    node = node_type()
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    ctx = node.run(a, b)
    assert len(ctx.inputs) == 2 and ctx.x is ctx.inputs[0]
    np.testing.assert_array_equal(ctx.y, a * b)
    jac = node.jacobian_from(ctx)
    assert isinstance(jac, tuple) and [j.shape for j in jac] == [(2, 3, 2, 3), (2, 3, 2, 3)]
    np.testing.assert_allclose(jac[0], numerical_jacobian(lambda v: v * b, a), rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(jac[1], numerical_jacobian(lambda v: a * v, b), rtol=1e-7, atol=1e-8)
    g = rng.standard_normal((2, 3))
    da, db = node.backward_from(ctx, g)
    np.testing.assert_allclose(da, g * b, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, g * a, rtol=1e-12, atol=1e-12)
    assert da.shape == a.shape and db.shape == b.shape
    # the faces take both inputs too
    np.testing.assert_array_equal(node.forward(a, b), a * b)
    np.testing.assert_allclose(node.backward(g)[1], g * a, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(node.evaluate(a, b), a * b)
    assert node.jacobian(a, b)[1].shape == (2, 3, 2, 3)
    with pytest.raises(TypeError, match="takes 2 inputs, got 1"):
        node.run(a)
    report = assert_gradients(node, (a, b))
    assert [c.name for c in report.comparisons] == [
        "backward vs Jᵀg (input 0)", "jacobian (input 0) vs finite diff.",
        "backward vs Jᵀg (input 1)", "jacobian (input 1) vs finite diff.",
    ]


def test_gradcheck_checks_every_input(rng):
    a, b = rng.standard_normal(3), rng.standard_normal(3)
    report = check_node(WrongSecondInput(), (a, b))
    assert not report.ok
    assert [c.ok for c in report.comparisons] == [True, True, False, False]
    with pytest.raises(ValueError, match="takes 2 inputs"):
        check_node(ProductVJP(), a)


def test_two_outputs_take_a_tuple_of_gradients(rng):
    node = SinAndSquare()
    x = rng.standard_normal((2, 2))
    ctx = node.run(x)
    assert isinstance(ctx.y, tuple) and len(ctx.y) == 2
    g = (rng.standard_normal(x.shape), rng.standard_normal(x.shape))
    np.testing.assert_allclose(node.backward_from(ctx, g), g[0] * np.cos(x) + g[1] * 2 * x, rtol=1e-12, atol=1e-12)
    # an output the loss ignores may get None
    np.testing.assert_allclose(node.backward_from(ctx, (None, g[1])), g[1] * 2 * x, rtol=1e-12, atol=1e-12)
    jac = node.jacobian_from(ctx)
    np.testing.assert_allclose(jac[0], numerical_jacobian(np.sin, x), rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(jac[1], numerical_jacobian(np.square, x), rtol=1e-7, atol=1e-8)
    with pytest.raises(ValueError, match="tuple of 2 gradients"):
        node.backward_from(ctx, g[0])
    assert_gradients(node, x)


def test_a_constant_input_keeps_its_dtype_and_gets_none(rng):
    node = Gather()
    x, index = rng.standard_normal((2, 4)), np.array([3, 0, 3])
    ctx = node.run(x, index)
    assert ctx.inputs[1].dtype == index.dtype
    dx, dindex = node.backward_from(ctx, np.ones((2, 3)))
    assert dindex is None
    np.testing.assert_array_equal(dx, [[1, 0, 0, 2]] * 2)
    jac = node.jacobian_from(ctx)
    assert jac[1] is None and jac[0].shape == (2, 3, 2, 4)
    assert_gradients(node, (x, index))


# ------------------------------------------------------------ containers and losses
def test_a_user_container_works_inside_sequential_and_fit(rng):
    model = Sequential(Linear(3, 4, rng=rng), Residual(Sequential(Tanh(), Linear(4, 4, rng=rng))), Linear(4, 1, rng=rng))
    x = rng.standard_normal((5, 3))
    assert_gradients(model, x)
    assert [name for name, _ in model.named_parameters()] == [
        "0.weight", "0.bias", "1.inner.1.weight", "1.inner.1.bias", "2.weight", "2.bias"]
    X = rng.standard_normal((64, 3))
    y = np.sin(X[:, :1]) + X[:, 1:2]
    network = NeuralNetwork(model, MSELoss(), SGD(model.parameters(), lr=0.05))
    before = network.evaluate(X, y)["loss"]
    inner_weight = model[1].inner[1].weight.value.copy()
    network.fit(X, y, epochs=20, batch_size=16, rng=0, progress=False)
    assert network.evaluate(X, y)["loss"] < 0.5 * before
    assert not np.array_equal(model[1].inner[1].weight.value, inner_weight)  # the container's child trained


class HalfSquare(Criterion):
    """A test-only criterion: L = ½ Σ (prediction − target)²."""

    def forward(self, prediction, target):
        self.ctx = self.run(prediction, target)
        return self.ctx.y

    def backward(self, dL_dy=1.0, reset_after=True):
        return self.backward_from(self.ctx, dL_dy)

    def value(self, prediction, target=None):
        return self.run(prediction, target, update_state=False).y

    def run(self, prediction, target, *, update_state=True):
        ctx = Context(x=np.asarray(prediction, float), target=np.asarray(target, float), update_state=update_state)
        ctx.inputs, ctx.y = (ctx.x,), 0.5 * float(np.sum((ctx.x - ctx.target) ** 2))
        return ctx

    def backward_from(self, ctx, dL_dy=1.0):
        return dL_dy * (ctx.x - ctx.target)

    def jacobian_from(self, ctx):
        return ctx.x - ctx.target


@pytest.mark.parametrize("loss", [HalfSquare(), CrossEntropyLoss(), MSELoss()], ids=lambda loss: type(loss).__name__)
def test_containers_refuse_a_loss(loss, rng):
    message = "is a loss, not a layer: give it to NeuralNetwork, or call it on the model's output"
    with pytest.raises(TypeError, match=message):
        Sequential(Linear(2, 2, rng=rng), loss)
    with pytest.raises(TypeError, match=message):
        Parallel(Linear(2, 2, rng=rng), loss)
    model = Sequential(Linear(2, 2, rng=rng))
    with pytest.raises(TypeError, match=message):
        model.append(loss)
    assert len(model) == 1
    with pytest.raises(TypeError, match="takes Nodes, got str"):
        Sequential("relu")


def test_gradcheck_checks_a_criterion_with_its_target_held(rng):
    x, t = rng.standard_normal(4), rng.standard_normal(4)
    report = assert_gradients(HalfSquare(), x, target=t)
    assert [c.name for c in report.comparisons] == ["backward vs Jᵀg", "jacobian vs finite diff."]


# ------------------------------------------------------------ no private calls across objects
PRIVATE_MACHINERY = {"_run", "_prepare_input", "_prepare_output_grad", "_backward_ctx", "_ctx", "_forward", "_vjp",
                     "_jacobian", "_backward", "_accumulate_grads", "_check_input", "_require_ctx"}


@pytest.mark.parametrize("path", ["containers/sequential.py", "containers/parallel.py", "gradcheck.py"])
def test_containers_and_gradcheck_use_only_the_public_contract(path):
    """Nothing but ``self`` (or the ``super()`` of it) calls the contract's private hooks and machinery."""
    tree = ast.parse((SRC / path).read_text(encoding="utf-8"))
    offending = [
        f"line {node.lineno}: {ast.unparse(node)}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in PRIVATE_MACHINERY
        and not (isinstance(node.value, ast.Name) and node.value.id == "self")
        and not (isinstance(node.value, ast.Call) and getattr(node.value.func, "id", None) == "super")
    ]
    assert offending == []


# ------------------------------------------------------------ buffers
class Counter(Node):
    """The identity, counting its training passes in a buffer declared with register_buffer."""

    def __init__(self, track: bool = True) -> None:
        super().__init__()
        self.register_buffer("passes", np.zeros((), dtype=np.int64) if track else None)

    def _forward(self, x, ctx):
        if ctx.update_state and self.passes is not None:
            self.passes += 1
        return x

    def _vjp(self, g, ctx):
        return g


def test_register_buffer_declares_state_saved_with_the_model(rng):
    model = Sequential(Counter(), Linear(2, 2, rng=rng), Counter(track=False))
    model.forward(np.ones((1, 2)))
    model.evaluate(np.ones((1, 2)))
    assert [name for name, _ in model.named_buffers()] == ["0.passes"]  # a None buffer is not saved, as torch
    state = model.state_dict()
    assert int(state["0.passes"]) == 1
    twin = Sequential(Counter(), Linear(2, 2, rng=rng), Counter(track=False))
    twin.load_state_dict(state)
    assert int(twin[0].passes) == 1
    assert [name for name, _ in BatchNorm1d(3).named_buffers()] == ["running_mean", "running_var",
                                                                   "num_batches_tracked"]
    assert list(BatchNorm1d(3, track_running_stats=False).named_buffers()) == []
    with pytest.raises(ValueError, match="identifier"):
        Counter().register_buffer("a.b", np.zeros(1))
    with pytest.raises(TypeError, match="must be an array or None"):
        Counter().register_buffer("b", [1.0])
