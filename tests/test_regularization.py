"""Dropout, BatchNorm1d and BatchNorm2d: masks, modes, gradients, running statistics and the torch oracle.

The BatchNorm checks that take ``engine_path`` run on the fast per-channel sums and on the textbook ones."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from nn_from_scratch import engine
from nn_from_scratch.engine import channels
from nn_from_scratch.gradcheck import assert_gradients
from nn_from_scratch.nodes import BatchNorm1d, Dropout
from nn_from_scratch.nodes.regularization import BatchNorm2d


# ===================================================================== Dropout
@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan"), float("inf")])
def test_dropout_rejects_p_outside_the_unit_interval(p):
    with pytest.raises(ValueError, match=rf"p must be in \[0, 1\], got {p}"):
        Dropout(p)


def test_dropout_rejects_non_numbers():
    with pytest.raises(TypeError, match="must be a real number"):
        Dropout("0.5")
    with pytest.raises(TypeError, match="must be a real number"):
        Dropout(True)


def test_dropout_eval_is_the_identity(rng):
    x = rng.standard_normal((4, 5))
    node = Dropout(0.5, rng=0).eval()
    np.testing.assert_array_equal(node.forward(x), x)
    g = rng.standard_normal((4, 5))
    np.testing.assert_array_equal(node.backward(g, reset_after=False), g)
    np.testing.assert_array_equal(node.jacobian().reshape(20, 20), np.eye(20))
    assert_gradients(node, x, atol=1e-8, rtol=1e-7)


def test_dropout_train_backward_and_jacobian_use_the_cached_mask(rng):
    p = 0.3
    x = rng.standard_normal((6, 7))
    g = rng.standard_normal((6, 7))
    node = Dropout(p, rng=1)
    y = node.forward(x)
    kept = y != 0
    assert 0 < kept.sum() < x.size
    np.testing.assert_allclose(y, np.where(kept, x / (1 - p), 0.0), rtol=1e-15, atol=0)
    scaling = kept / (1 - p)
    np.testing.assert_allclose(node.backward(g, reset_after=False), g * scaling, rtol=1e-15, atol=0)
    np.testing.assert_allclose(node.jacobian().reshape(x.size, x.size), np.diag(scaling.ravel()), rtol=1e-15, atol=0)
    # a second backward on the same forward uses the same mask
    np.testing.assert_allclose(node.backward(2 * g), 2 * g * scaling, rtol=1e-15, atol=0)


def test_dropout_agrees_with_torch_given_the_mask(torch, rng):
    p = 0.25
    x = rng.standard_normal((5, 8))
    g = rng.standard_normal((5, 8))
    node = Dropout(p, rng=3)
    y = node.forward(x)
    mask = torch.tensor((y != 0).astype(np.float64))
    tx = torch.tensor(x, requires_grad=True)
    ty = tx * mask / (1 - p)
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-15, atol=0)
    np.testing.assert_allclose(node.backward(g), tx.grad.numpy(), rtol=1e-15, atol=0)
    # torch's own dropout uses the same inverted scaling, and is the identity in eval mode
    t_out = torch.nn.functional.dropout(torch.tensor(x), p=p, training=True).numpy()
    nonzero = t_out != 0
    np.testing.assert_allclose(t_out[nonzero], x[nonzero] / (1 - p), rtol=1e-15, atol=0)
    t_eval = torch.nn.Dropout(p).eval()(torch.tensor(x)).numpy()
    np.testing.assert_allclose(Dropout(p).eval().forward(x), t_eval, rtol=0, atol=0)


def test_dropout_same_seed_same_masks_bit_for_bit(rng):
    x = rng.standard_normal((10, 10))
    a, b = Dropout(0.5, rng=42), Dropout(0.5, rng=42)
    for _ in range(3):
        np.testing.assert_array_equal(a.forward(x), b.forward(x))
    c = Dropout(0.5, rng=43)
    assert not np.array_equal(c.forward(x), Dropout(0.5, rng=42).forward(x))
    shared = np.random.default_rng(5)
    d = Dropout(0.5, rng=shared)
    first = d.forward(x)
    assert not np.array_equal(d.forward(x), first)  # a Generator's state advances


def test_dropout_evaluate_and_jacobian_do_not_advance_the_generator(rng):
    x = rng.standard_normal((4, 6))
    node = Dropout(0.5, rng=9)
    preview = node.evaluate(x)
    np.testing.assert_array_equal(node.evaluate(x), preview)
    node.jacobian(x)
    np.testing.assert_array_equal(node.forward(x), preview)  # the next forward draws that very mask
    np.testing.assert_array_equal(Dropout(0.5, rng=9).forward(x), preview)
    assert not np.array_equal(node.forward(x), preview)  # and forward does advance it


def test_dropout_fixed_mask_passes_gradcheck_in_training(rng):
    x = rng.standard_normal((3, 5))
    mask = rng.random((3, 5)) > 0.4
    node = Dropout(0.4, rng=0)
    node.fix_mask(mask)
    np.testing.assert_allclose(node.forward(x), np.where(mask, x / 0.6, 0.0), rtol=1e-15, atol=0)
    assert_gradients(node, x, atol=1e-8, rtol=1e-7)
    with pytest.raises(ValueError, match=r"fixed mask has shape \(3, 5\), the input \(2, 5\)"):
        node.forward(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="must hold booleans"):
        node.fix_mask(np.full((3, 5), 0.5))
    node.fix_mask(None)
    assert node.forward(np.ones((2, 5))).shape == (2, 5)


def test_dropout_p_one_gives_zeros_without_warnings_and_p_zero_the_identity(rng):
    x = rng.standard_normal((3, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        node = Dropout(1.0, rng=0)
        np.testing.assert_array_equal(node.forward(x), np.zeros((3, 4)))
        np.testing.assert_array_equal(node.backward(np.ones((3, 4))), np.zeros((3, 4)))
        identity = Dropout(0.0, rng=0)
        np.testing.assert_array_equal(identity.forward(x), x)
        np.testing.assert_array_equal(identity.backward(np.ones((3, 4))), np.ones((3, 4)))


def test_dropout_drops_a_fraction_p_and_keeps_the_mean():
    x = np.ones((400, 500))
    y = Dropout(0.3, rng=0).forward(x)
    np.testing.assert_allclose((y == 0).mean(), 0.3, rtol=0, atol=5e-3)
    np.testing.assert_allclose(y.mean(), 1.0, rtol=0, atol=1e-2)


def test_dropout_float32(rng):
    x = rng.standard_normal((4, 5)).astype(np.float32)
    node = Dropout(0.5, rng=0)
    y = node.forward(x)
    dx = node.backward(np.ones_like(y), reset_after=False)
    assert y.dtype == np.float32 and dx.dtype == np.float32 and node.jacobian().dtype == np.float32
    np.testing.assert_allclose(y, np.where(y != 0, 2 * x, 0), rtol=1e-7, atol=0)


# ================================================================= BatchNorm1d
def randomised(rng, node: BatchNorm1d) -> BatchNorm1d:
    c = node.num_features
    node.weight.value[...] = rng.uniform(0.5, 1.5, c)
    node.bias.value[...] = rng.standard_normal(c)
    return node


@pytest.mark.parametrize("shape", [(5, 3), (4, 3, 6)])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_batchnorm_gradients_in_train_and_eval(engine_path, rng, shape, mode):
    node = randomised(rng, BatchNorm1d(3))
    node.running_mean[...] = rng.standard_normal(3)
    node.running_var[...] = rng.uniform(0.5, 2.0, 3)
    node.train(mode == "train")
    report = assert_gradients(node, rng.standard_normal(shape) * 2 + 1, atol=1e-7, rtol=1e-6)
    names = [c.name for c in report.comparisons]
    assert "d/d weight vs finite diff." in names and "d/d bias vs finite diff." in names


@pytest.mark.parametrize("kwargs", [{"affine": False}, {"track_running_stats": False}, {"momentum": None}])
def test_batchnorm_variants_pass_gradcheck(rng, kwargs):
    node = BatchNorm1d(4, **kwargs)
    assert_gradients(node, rng.standard_normal((6, 4)), atol=1e-7, rtol=1e-6)
    assert_gradients(node.eval(), rng.standard_normal((3, 4, 2)), atol=1e-7, rtol=1e-6)


def make_pair(torch, rng, c, **kwargs):
    ours = BatchNorm1d(c, **kwargs)
    theirs = torch.nn.BatchNorm1d(c, **kwargs).double()
    if ours.affine:
        randomised(rng, ours)
        with torch.no_grad():
            theirs.weight.copy_(torch.from_numpy(ours.weight.value))
            theirs.bias.copy_(torch.from_numpy(ours.bias.value))
    return ours, theirs


@pytest.mark.parametrize("shape", [(8, 3), (4, 3, 5)])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_batchnorm_agrees_with_torch_over_three_steps_then_eval(engine_path, torch, rng, shape, momentum):
    ours, theirs = make_pair(torch, rng, 3, momentum=momentum)
    for _ in range(3):
        x = rng.standard_normal(shape) * 3 + 2
        g = rng.standard_normal(shape)
        tx = torch.tensor(x, requires_grad=True)
        ty = theirs(tx)
        ty.backward(torch.tensor(g))
        np.testing.assert_allclose(ours.forward(x), ty.detach().numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(ours.backward(g), tx.grad.numpy(), rtol=1e-12, atol=1e-12)
        # neither side zeroes gradients: both accumulate
        np.testing.assert_allclose(ours.weight.grad, theirs.weight.grad.numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(ours.bias.grad, theirs.bias.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ours.running_mean, theirs.running_mean.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ours.running_var, theirs.running_var.numpy(), rtol=1e-12, atol=1e-12)
    assert int(ours.num_batches_tracked) == int(theirs.num_batches_tracked) == 3
    ours.eval()
    theirs.eval()
    x = rng.standard_normal(shape)
    g = rng.standard_normal(shape)
    tx = torch.tensor(x, requires_grad=True)
    ty = theirs(tx)
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(ours.forward(x), ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ours.backward(g), tx.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ours.weight.grad, theirs.weight.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ours.bias.grad, theirs.bias.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ours.running_mean, theirs.running_mean.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kwargs", [{"affine": False}, {"track_running_stats": False}])
def test_batchnorm_variants_agree_with_torch(engine_path, torch, rng, kwargs):
    ours, theirs = make_pair(torch, rng, 4, **kwargs)
    for mode in (True, False):
        ours.train(mode)
        theirs.train(mode)
        x = rng.standard_normal((5, 4, 3))
        g = rng.standard_normal((5, 4, 3))
        tx = torch.tensor(x, requires_grad=True)
        ty = theirs(tx)
        ty.backward(torch.tensor(g))
        np.testing.assert_allclose(ours.forward(x), ty.detach().numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(ours.backward(g), tx.grad.numpy(), rtol=1e-12, atol=1e-12)
    assert list(ours.state_dict()) == list(theirs.state_dict())


def test_batchnorm_state_dict_matches_torch_both_ways(torch, rng):
    ours, theirs = make_pair(torch, rng, 3)
    for _ in range(2):
        x = rng.standard_normal((6, 3))
        ours.forward(x)
        theirs(torch.tensor(x))
    state = ours.state_dict()
    assert list(state) == list(theirs.state_dict()) == [
        "weight", "bias", "running_mean", "running_var", "num_batches_tracked"
    ]
    assert state["num_batches_tracked"].dtype == np.int64 and state["num_batches_tracked"].shape == ()
    fresh = torch.nn.BatchNorm1d(3).double()
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    for key, value in fresh.state_dict().items():
        np.testing.assert_allclose(value.numpy(), state[key], rtol=1e-12, atol=1e-12)
    back = BatchNorm1d(3)
    back.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    for key, value in theirs.state_dict().items():
        np.testing.assert_allclose(back.state_dict()[key], value.numpy(), rtol=1e-12, atol=1e-12)
    x = rng.standard_normal((4, 3))
    np.testing.assert_allclose(
        back.eval().forward(x), theirs.eval()(torch.tensor(x)).detach().numpy(), rtol=1e-12, atol=1e-12
    )


def test_batchnorm_jacobian_and_evaluate_leave_running_stats_alone(rng):
    node = BatchNorm1d(3)
    x = rng.standard_normal((5, 3))
    node.evaluate(x)
    node.jacobian(x)
    np.testing.assert_array_equal(node.running_mean, np.zeros(3))
    np.testing.assert_array_equal(node.running_var, np.ones(3))
    assert int(node.num_batches_tracked) == 0
    node.forward(x)
    assert int(node.num_batches_tracked) == 1
    node.eval().forward(x)
    assert int(node.num_batches_tracked) == 1


def test_batchnorm_jacobian_of_the_cached_pass_matches_backward(engine_path, rng):
    node = randomised(rng, BatchNorm1d(2))
    x = rng.standard_normal((3, 2, 4))
    g = rng.standard_normal((3, 2, 4))
    node.forward(x)
    dx = node.backward(g, reset_after=False)
    jac = node.jacobian()
    assert jac.shape == x.shape + x.shape
    np.testing.assert_allclose(dx, np.tensordot(g, jac, axes=3), rtol=1e-12, atol=1e-12)
    # channels do not mix
    np.testing.assert_array_equal(jac[:, 0, :, :, 1, :], np.zeros((3, 4, 3, 4)))


def test_batchnorm_parameter_gradients_accumulate_over_two_backwards(rng):
    node = randomised(rng, BatchNorm1d(3))
    x = rng.standard_normal((5, 3))
    g1, g2 = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    node.forward(x)
    node.backward(g1)
    first_w, first_b = node.weight.grad.copy(), node.bias.grad.copy()
    node.forward(x)
    node.backward(g2)
    x_hat = (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5)
    np.testing.assert_allclose(first_w, (g1 * x_hat).sum(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(node.weight.grad, ((g1 + g2) * x_hat).sum(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(node.bias.grad, first_b + g2.sum(0), rtol=1e-12, atol=1e-12)
    node.zero_grad()
    np.testing.assert_array_equal(node.weight.grad, np.zeros(3))


def test_batchnorm_rejects_a_single_value_per_channel_in_training(torch):
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        torch.nn.BatchNorm1d(3)(torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"Expected more than 1 value per channel when training, got input size \(1, 3\)"):
        BatchNorm1d(3).forward(np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"got input size \(1, 3, 1\)"):
        BatchNorm1d(3).forward(np.zeros((1, 3, 1)))
    # one sample is fine in eval mode, and (1, C, L) with L > 1 in training
    assert BatchNorm1d(3).eval().forward(np.zeros((1, 3))).shape == (1, 3)
    assert BatchNorm1d(3).forward(np.arange(6.0).reshape(1, 3, 2)).shape == (1, 3, 2)


def test_batchnorm_rejects_the_wrong_feature_count():
    with pytest.raises(ValueError, match=r"BatchNorm1d\(5\) expects 5 features on axis 1, got 3 \(input shape \(4, 3\)\)"):
        BatchNorm1d(5).forward(np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"\(N, 5\) or \(N, 5, L\), got 4-d input"):
        BatchNorm1d(5).forward(np.zeros((2, 5, 1, 1)))
    with pytest.raises(ValueError, match="num_features must be a positive integer, got 0"):
        BatchNorm1d(0)


def test_batchnorm_float32(engine_path, rng):
    node = BatchNorm1d(3, dtype=np.float32)
    x = rng.standard_normal((6, 3)).astype(np.float32)
    g = rng.standard_normal((6, 3)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = node.forward(x)
        dx = node.backward(g, reset_after=False)
        jac = node.jacobian()
    assert y.dtype == dx.dtype == jac.dtype == np.float32
    assert node.weight.grad.dtype == node.running_mean.dtype == np.float32
    reference = BatchNorm1d(3)
    np.testing.assert_allclose(y, reference.forward(x.astype(np.float64)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx, reference.backward(g.astype(np.float64)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(node.weight.grad, reference.weight.grad, rtol=1e-4, atol=1e-5)


# ================================================================= BatchNorm2d
BN2D_TOL = {"rtol": 1e-10, "atol": 1e-10}


def make_pair_2d(torch, rng, c, **kwargs):
    ours = BatchNorm2d(c, **kwargs)
    theirs = torch.nn.BatchNorm2d(c, **kwargs).double()
    if ours.affine:
        randomised(rng, ours)
        with torch.no_grad():
            theirs.weight.copy_(torch.from_numpy(ours.weight.value))
            theirs.bias.copy_(torch.from_numpy(ours.bias.value))
    return ours, theirs


def step_both(torch, ours, theirs, x, g):
    tx = torch.tensor(x, requires_grad=True)
    ty = theirs(tx)
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(ours.forward(x), ty.detach().numpy(), **BN2D_TOL)
    np.testing.assert_allclose(ours.backward(g), tx.grad.numpy(), **BN2D_TOL)
    if ours.affine:
        np.testing.assert_allclose(ours.weight.grad, theirs.weight.grad.numpy(), **BN2D_TOL)
        np.testing.assert_allclose(ours.bias.grad, theirs.bias.grad.numpy(), **BN2D_TOL)


def test_batchnorm1d_and_2d_share_one_implementation():
    for name in ("_forward", "_vjp", "_accumulate_grads", "_jacobian", "_check_input", "_update_running_stats"):
        assert getattr(BatchNorm2d, name) is getattr(BatchNorm1d, name)


@pytest.mark.parametrize("shape", [(3, 2, 3, 4), (2, 3, 1, 1), (1, 2, 2, 3)])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_batchnorm2d_gradients_in_train_and_eval(engine_path, rng, shape, mode):
    c = shape[1]
    node = randomised(rng, BatchNorm2d(c))
    node.running_mean[...] = rng.standard_normal(c)
    node.running_var[...] = rng.uniform(0.5, 2.0, c)
    node.train(mode == "train")
    report = assert_gradients(node, rng.standard_normal(shape) * 2 + 1, atol=1e-7, rtol=1e-6)
    names = [c.name for c in report.comparisons]
    assert "d/d weight vs finite diff." in names and "d/d bias vs finite diff." in names


@pytest.mark.parametrize("kwargs", [{"affine": False}, {"track_running_stats": False}, {"momentum": None}])
def test_batchnorm2d_variants_pass_gradcheck(rng, kwargs):
    node = BatchNorm2d(3, **kwargs)
    assert_gradients(node, rng.standard_normal((2, 3, 2, 3)), atol=1e-7, rtol=1e-6)
    assert_gradients(node.eval(), rng.standard_normal((2, 3, 3, 2)), atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (2, 3, 1, 7), (6, 3, 1, 1)])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_batchnorm2d_agrees_with_torch_over_three_steps_then_eval(engine_path, torch, rng, shape, momentum):
    ours, theirs = make_pair_2d(torch, rng, 3, momentum=momentum)
    for _ in range(3):
        step_both(torch, ours, theirs, rng.standard_normal(shape) * 3 + 2, rng.standard_normal(shape))
    np.testing.assert_allclose(ours.running_mean, theirs.running_mean.numpy(), **BN2D_TOL)
    np.testing.assert_allclose(ours.running_var, theirs.running_var.numpy(), **BN2D_TOL)
    assert int(ours.num_batches_tracked) == int(theirs.num_batches_tracked) == 3
    ours.eval()
    theirs.eval()
    step_both(torch, ours, theirs, rng.standard_normal(shape), rng.standard_normal(shape))
    np.testing.assert_allclose(ours.running_mean, theirs.running_mean.numpy(), **BN2D_TOL)
    assert int(ours.num_batches_tracked) == 3


@pytest.mark.parametrize("kwargs", [{"affine": False}, {"track_running_stats": False}, {"eps": 1e-3, "momentum": 0.3}])
def test_batchnorm2d_variants_agree_with_torch(engine_path, torch, rng, kwargs):
    ours, theirs = make_pair_2d(torch, rng, 4, **kwargs)
    for mode in (True, True, False):
        ours.train(mode)
        theirs.train(mode)
        step_both(torch, ours, theirs, rng.standard_normal((3, 4, 3, 5)), rng.standard_normal((3, 4, 3, 5)))
    assert list(ours.state_dict()) == list(theirs.state_dict())
    if ours.track_running_stats:
        np.testing.assert_allclose(ours.running_var, theirs.running_var.numpy(), **BN2D_TOL)


def test_batchnorm2d_state_dict_loads_into_torch_and_back(torch, rng):
    ours, theirs = make_pair_2d(torch, rng, 3)
    for _ in range(2):
        x = rng.standard_normal((4, 3, 2, 5))
        ours.forward(x)
        theirs(torch.tensor(x))
    state = ours.state_dict()
    assert list(state) == list(theirs.state_dict()) == [
        "weight", "bias", "running_mean", "running_var", "num_batches_tracked"
    ]
    fresh = torch.nn.BatchNorm2d(3).double()
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    for key, value in fresh.state_dict().items():
        np.testing.assert_allclose(value.numpy(), state[key], **BN2D_TOL)
    back = BatchNorm2d(3)
    back.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    x = rng.standard_normal((2, 3, 4, 4))
    np.testing.assert_allclose(
        back.eval().forward(x), fresh.eval()(torch.tensor(x)).detach().numpy(), **BN2D_TOL
    )


def test_batchnorm2d_is_batchnorm1d_on_flattened_pixels(engine_path, rng):
    x = rng.standard_normal((3, 4, 5, 6)) * 2 - 1
    g = rng.standard_normal(x.shape)
    bn2, bn1 = randomised(rng, BatchNorm2d(4)), BatchNorm1d(4)
    bn1.load_state_dict(bn2.state_dict())
    for _ in range(2):
        y2, y1 = bn2.forward(x), bn1.forward(x.reshape(3, 4, 30))
        np.testing.assert_allclose(y2.reshape(3, 4, 30), y1, rtol=1e-14, atol=1e-14)
        dx2, dx1 = bn2.backward(g), bn1.backward(g.reshape(3, 4, 30))
        np.testing.assert_allclose(dx2.reshape(3, 4, 30), dx1, rtol=1e-14, atol=1e-14)
    for key, value in bn1.state_dict().items():
        np.testing.assert_allclose(bn2.state_dict()[key], value, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(bn2.weight.grad, bn1.weight.grad, rtol=1e-14, atol=1e-14)


def test_batchnorm2d_jacobian_of_the_cached_pass_matches_backward(engine_path, rng):
    node = randomised(rng, BatchNorm2d(2))
    x = rng.standard_normal((2, 2, 3, 2))
    g = rng.standard_normal(x.shape)
    node.forward(x)
    dx = node.backward(g, reset_after=False)
    jac = node.jacobian()
    assert jac.shape == x.shape + x.shape
    np.testing.assert_allclose(dx, np.tensordot(g, jac, axes=4), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(jac[:, 0, :, :, :, 1], np.zeros((2, 3, 2, 2, 3, 2)))


def test_batchnorm2d_rejects_bad_input(torch):
    expected = r"BatchNorm2d expects input of shape \(N, 3, H, W\), got 3-d input of shape \(2, 3, 4\)"
    with pytest.raises(ValueError, match=expected):
        BatchNorm2d(3).forward(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"got 2-d input"):
        BatchNorm2d(3).forward(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"BatchNorm2d\(3\) expects 3 features on axis 1, got 4"):
        BatchNorm2d(3).forward(np.zeros((2, 4, 2, 2)))
    with pytest.raises(ValueError, match="expected 4D input"):
        torch.nn.BatchNorm2d(3)(torch.zeros(2, 3, 4))
    expected = r"Expected more than 1 value per channel when training, got input size \(1, 3, 1, 1\)"
    with pytest.raises(ValueError, match=expected):
        BatchNorm2d(3).forward(np.zeros((1, 3, 1, 1)))
    assert BatchNorm2d(3).forward(np.arange(6.0).reshape(1, 3, 2, 1)).shape == (1, 3, 2, 1)
    assert BatchNorm2d(3).eval().forward(np.zeros((1, 3, 1, 1))).shape == (1, 3, 1, 1)
    assert repr(BatchNorm2d(3)) == "BatchNorm2d(3, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)"


def test_batchnorm2d_evaluate_and_jacobian_leave_running_stats_alone(rng):
    node = BatchNorm2d(2)
    x = rng.standard_normal((2, 2, 2, 2))
    node.evaluate(x)
    node.jacobian(x)
    np.testing.assert_array_equal(node.running_mean, np.zeros(2))
    np.testing.assert_array_equal(node.running_var, np.ones(2))
    assert int(node.num_batches_tracked) == 0


def test_batchnorm2d_float32(engine_path, rng):
    node = randomised(rng, BatchNorm2d(3, dtype=np.float32))
    reference = BatchNorm2d(3)
    reference.load_state_dict(
        {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in node.state_dict().items()}
    )
    x = (rng.standard_normal((8, 3, 10, 12)) * 2 + 1).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = node.forward(x)
        dx = node.backward(g)
    assert y.dtype == dx.dtype == np.float32
    assert node.weight.grad.dtype == node.running_mean.dtype == node.running_var.dtype == np.float32
    np.testing.assert_allclose(y, reference.forward(x.astype(np.float64)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx, reference.backward(g.astype(np.float64)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(node.weight.grad, reference.weight.grad, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(node.bias.grad, reference.bias.grad, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(node.running_var, reference.running_var, rtol=1e-5, atol=1e-6)
    # a float64 input to a float32 layer computes in float32 and returns the gradient in float64
    node.forward(x.astype(np.float64))
    assert node.backward(g).dtype == np.float64


# ============================================================ BatchNorm's two paths
def _batchnorm_step(node, x, g, fast_on):
    """Output, input gradient, parameter gradients and running statistics of one training step on one path."""
    previous = engine.fast_enabled()
    engine.set_fast(fast_on)
    try:
        node.zero_grad()
        y = node.forward(x)
        dx = node.backward(g)
    finally:
        engine.set_fast(previous)
    return [y, dx] + [p.grad.copy() for p in node.parameters()] + [node.running_mean.copy(), node.running_var.copy()]


@pytest.mark.parametrize("make, shape", [(lambda dtype: BatchNorm1d(6, dtype=dtype), (32, 6)),
                                         (lambda dtype: BatchNorm1d(6, dtype=dtype), (8, 6, 20)),
                                         (lambda dtype: BatchNorm2d(6, dtype=dtype), (4, 6, 7, 9))])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_batchnorm_fast_sums_agree_with_the_textbook_ones_to_rounding(rng, make, shape, dtype):
    """The same per-channel sums in another order: within 100 machine epsilons of each result's largest magnitude."""
    fast_node, textbook_node = randomised(rng, make(dtype)), make(dtype)
    textbook_node.load_state_dict(fast_node.state_dict())
    eps = np.finfo(dtype).eps
    for _ in range(2):
        x = (rng.standard_normal(shape) * 3 + 2).astype(dtype)
        g = rng.standard_normal(shape).astype(dtype)
        for name, a, b in zip(["y", "dx", "dweight", "dbias", "running_mean", "running_var"],
                              _batchnorm_step(fast_node, x, g, True), _batchnorm_step(textbook_node, x, g, False)):
            assert a.dtype == b.dtype == dtype and a.shape == b.shape
            np.testing.assert_allclose(a, b, rtol=0, atol=100 * eps * np.abs(b).max(), err_msg=name)


@pytest.mark.parametrize("shape", [(5, 3), (4, 3, 6), (2, 3, 4, 5)])
def test_batchnorm_under_textbook_runs_no_engine_kernel(rng, monkeypatch, shape):
    """engine.textbook(): the per-channel sums are xp.sum; no function of engine.channels runs."""
    calls = []
    for name in channels.__all__:
        kernel = getattr(channels, name)
        monkeypatch.setattr(channels, name, lambda *args, kernel=kernel, name=name: calls.append(name) or kernel(*args))
    node = randomised(rng, (BatchNorm2d if len(shape) == 4 else BatchNorm1d)(3))
    x, g = rng.standard_normal(shape), rng.standard_normal(shape)
    with engine.textbook():
        node.forward(x)
        node.backward(g, reset_after=False)
        node.jacobian()
        node.eval().forward(x)
        node.backward(g)
    assert calls == []
    node.train().forward(x)  # the spies are in place: the fast path does call them
    node.backward(g)
    assert set(calls) == {"channel_sum", "channel_dot"}
