"""Residual: y = x + f(x) (or shortcut(x) + f(x), then an optional node), its fan-out gradient and its Jacobian."""
from __future__ import annotations

from typing import Any, Dict

import numpy as np
import pytest

from nn_from_scratch import (BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Linear, ReLU, Residual, Sequential, Tanh)
from nn_from_scratch.gradcheck import assert_gradients, numerical_jacobian
from nn_from_scratch.losses import CrossEntropyLoss

TIGHT = dict(rtol=1e-10, atol=1e-10)  # the torch oracle in float64
EXACT = dict(rtol=1e-12, atol=1e-12)  # the same sum computed two ways


# ---------------------------------------------------------------- torch twins (shared with test_resnet.py)
_TWINS: Dict[int, type] = {}


def torch_residual(torch) -> type:
    """A torch module written as Residual is: attributes ``f``, ``shortcut`` and ``after``."""
    if id(torch) not in _TWINS:
        class TorchResidual(torch.nn.Module):
            def __init__(self, f, shortcut=None, after=None):
                super().__init__()
                self.f, self.shortcut, self.after = f, shortcut, after

            def forward(self, x):
                total = (x if self.shortcut is None else self.shortcut(x)) + self.f(x)
                return total if self.after is None else self.after(total)

        _TWINS[id(torch)] = TorchResidual
    return _TWINS[id(torch)]


def randomise_batchnorms(model: Any, rng: np.random.Generator) -> None:
    """Give every BatchNorm an affine transform and running statistics away from (1, 0) and (0, 1)."""
    for _, child in model.children():
        randomise_batchnorms(child, rng)
    if isinstance(model, (BatchNorm1d, BatchNorm2d)):
        c = model.num_features
        model.weight.value[...] = rng.uniform(0.5, 1.5, c)
        model.bias.value[...] = rng.standard_normal(c)
        model.running_mean[...] = rng.standard_normal(c)
        model.running_var[...] = rng.uniform(0.5, 2.0, c)


def load_into_torch(torch, ours: Any, theirs: Any) -> None:
    """Load our state dict into the torch module (every key must fit: strict)."""
    theirs.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in ours.state_dict().items()})


def assert_matches_torch(torch, ours: Any, theirs: Any, x: np.ndarray, g: np.ndarray, *, tol=TIGHT) -> None:
    """Outputs, input gradients and every parameter gradient agree; both sides start from zero gradients."""
    ours.zero_grad()
    theirs.zero_grad(set_to_none=False)
    tx = torch.tensor(x, requires_grad=True)
    ty = theirs(tx)
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(ours.forward(x), ty.detach().numpy(), **tol)
    np.testing.assert_allclose(ours.backward(g), tx.grad.numpy(), **tol)
    grads = dict(theirs.named_parameters())
    names = [name for name, _ in ours.named_parameters()]
    assert names == list(grads)
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, grads[name].grad.numpy(), err_msg=name, **tol)
    buffers = dict(theirs.named_buffers())
    assert [name for name, _ in ours.named_buffers()] == list(buffers)
    for name, value in ours.named_buffers():
        np.testing.assert_allclose(value, buffers[name].numpy(), err_msg=name, **tol)


# ---------------------------------------------------------------- the sum and its derivative
def mlp_branch(rng, width: int = 4, hidden: int = 6) -> Sequential:
    return Sequential(Linear(width, hidden, rng=rng), Tanh(), Linear(hidden, width, rng=rng))


def test_the_output_is_the_input_plus_the_branch(rng):
    f = mlp_branch(rng)
    x = rng.standard_normal((3, 4))
    np.testing.assert_allclose(Residual(f).forward(x), x + f.evaluate(x), **EXACT)
    shortcut = Linear(4, 4, rng=rng)
    np.testing.assert_allclose(Residual(f, shortcut).forward(x), shortcut.evaluate(x) + f.evaluate(x), **EXACT)
    np.testing.assert_allclose(Residual(f, shortcut, after=ReLU()).forward(x),
                               np.maximum(shortcut.evaluate(x) + f.evaluate(x), 0), **EXACT)


def test_the_jacobian_is_the_identity_plus_the_branchs(rng):
    f = mlp_branch(rng)
    x = rng.standard_normal((2, 4))
    block = Residual(f)
    jac = block.jacobian(x)
    np.testing.assert_allclose(jac - f.jacobian(x), np.eye(8).reshape(2, 4, 2, 4), **EXACT)
    np.testing.assert_allclose(jac, numerical_jacobian(block.evaluate, x), rtol=1e-7, atol=1e-8)
    shortcut = Linear(4, 4, rng=rng)
    with_shortcut = Residual(f, shortcut)
    np.testing.assert_allclose(with_shortcut.jacobian(x), shortcut.jacobian(x) + f.jacobian(x), **EXACT)
    np.testing.assert_allclose(with_shortcut.jacobian(x), numerical_jacobian(with_shortcut.evaluate, x),
                               rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("build", [
    lambda rng: Residual(mlp_branch(rng)),
    lambda rng: Residual(mlp_branch(rng, 4, 5), Linear(4, 4, rng=rng)),
    lambda rng: Residual(Sequential(Linear(4, 6, rng=rng), Tanh()), Linear(4, 6, rng=rng), after=Tanh()),
    lambda rng: Residual(Sequential(Linear(4, 4, rng=rng), BatchNorm1d(4)), after=Linear(4, 3, rng=rng)),
], ids=["identity", "shortcut", "widening shortcut and after", "batchnorm and a linear after"])
def test_gradcheck_in_float64(build, rng):
    block = build(rng)
    randomise_batchnorms(block, rng)
    x = rng.standard_normal((5, 4))
    assert_gradients(block, x, rng=rng)


def test_gradcheck_of_a_convolutional_block_with_a_projection_shortcut(rng):
    block = basic_block(rng, 2, 3, stride=2)
    randomise_batchnorms(block, rng)
    assert_gradients(block, rng.standard_normal((2, 2, 5, 5)), rng=rng)
    block.eval()
    assert_gradients(block, rng.standard_normal((2, 2, 5, 5)), rng=rng)


def test_backward_is_the_sum_over_both_paths(rng):
    f, shortcut = mlp_branch(rng), Linear(4, 4, rng=rng)
    block = Residual(f, shortcut)
    x, g = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    block.forward(x)
    dx = block.backward(g)
    through_block = {name: p.grad.copy() for name, p in block.named_parameters()}
    block.zero_grad()
    f.forward(x)
    shortcut.forward(x)
    np.testing.assert_allclose(dx, f.backward(g) + shortcut.backward(g), **EXACT)
    for name, p in block.named_parameters():  # each path, run alone, gives the same parameter gradients
        np.testing.assert_allclose(through_block[name], p.grad, err_msg=name, **EXACT)
        assert np.abs(p.grad).max() > 0, name


@pytest.mark.parametrize("after", [None, Linear(4, 4, rng=9)])
def test_input_grad_false_still_gives_both_paths_parameter_gradients(after, rng):
    block = Residual(mlp_branch(rng), Linear(4, 4, rng=rng), after=after)
    x, g = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    block.forward(x)
    block.backward(g)
    expected = {name: p.grad.copy() for name, p in block.named_parameters()}
    block.zero_grad()
    block.forward(x)
    assert block.backward(g, input_grad=False) is None
    assert {name for name, _ in block.named_parameters()} >= {"f.0.weight", "f.2.bias", "shortcut.weight"}
    for name, p in block.named_parameters():
        np.testing.assert_allclose(p.grad, expected[name], err_msg=name, **EXACT)
        assert np.abs(p.grad).max() > 0, name


def test_a_sequential_stopping_at_its_first_residual_still_trains_the_whole_block(rng):
    model = Sequential(Tanh(), Residual(mlp_branch(rng), Linear(4, 4, rng=rng)), Linear(4, 3, rng=rng))
    x, labels = rng.standard_normal((6, 4)), rng.integers(0, 3, 6)
    loss = CrossEntropyLoss()
    grads = []
    for input_grad in (True, False):
        model.zero_grad()
        loss.forward(model.forward(x), labels)
        model.backward(loss.backward(), input_grad=input_grad)
        grads.append({name: p.grad.copy() for name, p in model.named_parameters()})
    for name in grads[0]:
        np.testing.assert_allclose(grads[1][name], grads[0][name], err_msg=name, **EXACT)


def test_vjp_from_leaves_the_parameter_gradients_alone(rng):
    block = Residual(mlp_branch(rng), Linear(4, 4, rng=rng), after=Linear(4, 2, rng=rng))
    x, g = rng.standard_normal((3, 4)), rng.standard_normal((3, 2))
    ctx = block.run(x)
    dx = block.vjp_from(ctx, g)
    assert all(not p.grad.any() for p in block.parameters())
    np.testing.assert_allclose(dx, block.backward_from(ctx, g), **EXACT)
    np.testing.assert_allclose(dx, np.tensordot(g, block.jacobian_from(ctx), axes=2), **EXACT)


# ---------------------------------------------------------------- bad input
def test_branches_of_different_shapes_are_refused_naming_both_shapes(rng):
    with pytest.raises(ValueError, match=r"\(3, 5\).*\(3, 4\)"):
        Residual(Linear(4, 5, rng=rng)).forward(rng.standard_normal((3, 4)))
    with pytest.raises(ValueError, match=r"\(3, 5\).*shortcut.*\(3, 2\)"):
        Residual(Linear(4, 5, rng=rng), Linear(4, 2, rng=rng)).forward(rng.standard_normal((3, 4)))


def test_a_refused_input_leaves_every_running_statistic_and_random_stream_alone(rng):
    f = Sequential(Linear(4, 5, rng=rng), BatchNorm1d(5), Dropout(0.5, rng=3))
    block = Residual(f, Sequential(BatchNorm1d(4), Linear(4, 3, rng=rng)))
    before = {name: np.array(b, copy=True) for name, b in block.named_buffers()}
    stream = f[2].rng.bit_generator.state
    with pytest.raises(ValueError, match=r"\(8, 5\).*\(8, 3\)"):
        block.forward(rng.standard_normal((8, 4)))
    for name, value in block.named_buffers():
        np.testing.assert_array_equal(value, before[name], err_msg=name)
    assert f[2].rng.bit_generator.state == stream
    assert block.pending is None


def test_a_loss_or_a_non_node_is_refused(rng):
    with pytest.raises(TypeError, match="loss"):
        Residual(CrossEntropyLoss())
    with pytest.raises(TypeError, match="Nodes"):
        Residual(Linear(2, 2, rng=rng), shortcut=lambda x: x)
    with pytest.raises(TypeError, match="Nodes"):
        Residual(Linear(2, 2, rng=rng), after="relu")


# ---------------------------------------------------------------- modes, names, state
def basic_block(rng, c_in: int, c_out: int, stride: int = 1, dtype: Any = np.float64) -> Residual:
    """ResNet's basic block: conv3x3-BN-ReLU-conv3x3-BN, a 1x1 projection shortcut when the shape changes, ReLU."""
    f = Sequential(Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False, rng=rng, dtype=dtype),
                   BatchNorm2d(c_out, dtype=dtype), ReLU(),
                   Conv2d(c_out, c_out, 3, padding=1, bias=False, rng=rng, dtype=dtype), BatchNorm2d(c_out, dtype=dtype))
    shortcut = None
    if stride != 1 or c_in != c_out:
        shortcut = Sequential(Conv2d(c_in, c_out, 1, stride=stride, bias=False, rng=rng, dtype=dtype),
                              BatchNorm2d(c_out, dtype=dtype))
    return Residual(f, shortcut, after=ReLU())


def test_train_and_eval_reach_every_path(rng):
    block = basic_block(rng, 2, 3, stride=2)
    block.eval()
    assert all(not node.training for node in (block, block.f, block.f[1], block.shortcut, block.shortcut[1], block.after))
    block.train()
    assert block.f[4].training and block.shortcut[1].training


def test_names_follow_the_attributes_and_the_state_dict_round_trips(rng):
    block = basic_block(rng, 2, 3, stride=2)
    assert [name for name, _ in block.named_parameters()] == [
        "f.0.weight", "f.1.weight", "f.1.bias", "f.3.weight", "f.4.weight", "f.4.bias",
        "shortcut.0.weight", "shortcut.1.weight", "shortcut.1.bias"]
    assert [name for name, _ in block.named_buffers()] == [
        f"{bn}.{buffer}" for bn in ("f.1", "f.4", "shortcut.1")
        for buffer in ("running_mean", "running_var", "num_batches_tracked")]
    randomise_batchnorms(block, rng)
    copy = basic_block(np.random.default_rng(99), 2, 3, stride=2)
    copy.load_state_dict(block.state_dict())
    x = rng.standard_normal((2, 2, 6, 6))
    np.testing.assert_array_equal(copy.eval().evaluate(x), block.eval().evaluate(x))
    identity = basic_block(rng, 3, 3)
    assert identity.shortcut is None and [name for name, _ in identity.children()] == ["f", "after"]
    with pytest.raises(ValueError, match="unexpected keys.*shortcut.0.weight"):
        identity.load_state_dict(block.state_dict())


def test_repr_and_summary_are_readable(rng):
    block = basic_block(rng, 2, 3, stride=2)
    text = repr(block)
    assert text.startswith("Residual(\n  (f): Sequential(\n") and "  (shortcut): Sequential(" in text
    assert "    (0): Conv2d" in text and text.rstrip().endswith("(after): ReLU()\n)")
    table = Sequential(block).summary((None, 2, 8, 8))
    assert "Residual" in table and "(None, 3, 4, 4)" in table


# ---------------------------------------------------------------- dtypes
def test_float32_stays_float32_and_float16_stays_float16(rng):
    for dtype in (np.float32, np.float16):
        block = basic_block(rng, 2, 3, stride=2, dtype=dtype)
        x = rng.standard_normal((4, 2, 6, 6)).astype(dtype)
        y = block.forward(x)
        assert y.dtype == dtype
        dx = block.backward(np.ones_like(y))
        assert dx.dtype == dtype
        for name, p in block.named_parameters():
            assert p.grad.dtype == dtype, name
    # float16 against float64 on the same weights: each add rounds once, the statistics are float32 inside
    half = basic_block(np.random.default_rng(1), 2, 3, stride=2, dtype=np.float16)
    wide = basic_block(np.random.default_rng(1), 2, 3, stride=2)
    wide.load_state_dict({k: v.astype(np.float64) if v.dtype == np.float16 else v for k, v in half.state_dict().items()})
    x = rng.standard_normal((4, 2, 6, 6)).astype(np.float16)
    expected = wide.forward(x.astype(np.float64))
    np.testing.assert_allclose(half.forward(x), expected, rtol=2e-2, atol=2e-2 * np.abs(expected).max())


# ---------------------------------------------------------------- the torch oracle
def test_a_stacked_residual_mlp_agrees_with_torch_both_ways(torch, rng):
    nn = torch.nn
    TorchResidual = torch_residual(torch)
    ours = Sequential(Linear(5, 8, rng=rng),
                      *[Residual(Sequential(Linear(8, 12, rng=rng), ReLU(), Linear(12, 8, rng=rng))) for _ in range(3)],
                      Linear(8, 3, rng=rng))
    theirs = nn.Sequential(nn.Linear(5, 8),
                           *[TorchResidual(nn.Sequential(nn.Linear(8, 12), nn.ReLU(), nn.Linear(12, 8))) for _ in range(3)],
                           nn.Linear(8, 3)).double()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    load_into_torch(torch, ours, theirs)
    x, g = rng.standard_normal((7, 5)), rng.standard_normal((7, 3))
    assert_matches_torch(torch, ours, theirs, x, g)
    # and back: torch's own initial weights loaded into ours
    fresh = nn.Sequential(nn.Linear(5, 8),
                          *[TorchResidual(nn.Sequential(nn.Linear(8, 12), nn.ReLU(), nn.Linear(12, 8))) for _ in range(3)],
                          nn.Linear(8, 3)).double()
    ours.load_state_dict({k: v.numpy() for k, v in fresh.state_dict().items()})
    assert_matches_torch(torch, ours, fresh, x, g)


def torch_basic_block(torch, c_in: int, c_out: int, stride: int) -> Any:
    nn = torch.nn
    f = nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
                      nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out))
    shortcut = None
    if stride != 1 or c_in != c_out:
        shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))
    return torch_residual(torch)(f, shortcut, nn.ReLU()).double()


@pytest.mark.parametrize("stride, c_in, c_out", [(2, 2, 3), (1, 3, 3)], ids=["projection", "identity"])
def test_a_basic_block_agrees_with_torch_in_train_then_eval_mode(torch, rng, engine_path, stride, c_in, c_out):
    ours, theirs = basic_block(rng, c_in, c_out, stride), torch_basic_block(torch, c_in, c_out, stride)
    randomise_batchnorms(ours, rng)
    load_into_torch(torch, ours, theirs)
    shape = (4, c_in, 7, 7)
    out = (4, c_out, 4 if stride == 2 else 7, 4 if stride == 2 else 7)
    for _ in range(2):  # train mode: batch statistics; the running statistics follow torch's after each step
        assert_matches_torch(torch, ours, theirs, rng.standard_normal(shape) * 2 + 1, rng.standard_normal(out))
    assert int(ours.f[1].num_batches_tracked) == 2
    ours.eval()
    theirs.eval()
    assert_matches_torch(torch, ours, theirs, rng.standard_normal(shape), rng.standard_normal(out))
    # a torch state dict loads into ours and gives torch's numbers
    other = torch_basic_block(torch, c_in, c_out, stride)
    other(torch.tensor(rng.standard_normal(shape)))  # running statistics away from their start
    other.eval()
    ours.load_state_dict({k: v.numpy() for k, v in other.state_dict().items()})
    assert_matches_torch(torch, ours, other, rng.standard_normal(shape), rng.standard_normal(out))

