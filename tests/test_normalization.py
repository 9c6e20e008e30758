"""LayerNorm, RMSNorm, GroupNorm and InstanceNorm2d: gradient checks, the torch oracle, state dicts, bad arguments.

The oracle tests run on both paths (the ``engine_path`` fixture): LayerNorm and RMSNorm have an engine kernel
(``nn_from_scratch.engine.normalization``); the last section holds the two paths against each other."""
from __future__ import annotations

import numpy as np
import pytest

from nn_from_scratch import engine
from nn_from_scratch.gradcheck import assert_gradients
from nn_from_scratch.nodes import BatchNorm1d, GroupNorm, InstanceNorm2d, LayerNorm, RMSNorm


def randomised(node, rng):
    """Weights away from 1 and biases away from 0, so that a gradient that ignores them fails."""
    for name, p in node.named_parameters():
        p.value[...] = rng.uniform(0.5, 1.5, p.shape) if name == "weight" else rng.standard_normal(p.shape)
    return node


# name -> (our node, given keyword arguments such as the dtype; the torch module; an input shape)
CASES = {
    "LayerNorm": (lambda **kw: LayerNorm(5, **kw), lambda nn: nn.LayerNorm(5), (4, 5)),
    "LayerNorm[2 axes]": (lambda **kw: LayerNorm((3, 4), **kw), lambda nn: nn.LayerNorm((3, 4)), (2, 2, 3, 4)),
    "LayerNorm[no bias]": (lambda **kw: LayerNorm(4, bias=False, **kw), lambda nn: nn.LayerNorm(4, bias=False),
                           (3, 4)),
    "LayerNorm[no affine]": (lambda **kw: LayerNorm([4], 1e-3, False, **kw),
                             lambda nn: nn.LayerNorm([4], 1e-3, False), (3, 4)),
    "RMSNorm": (lambda **kw: RMSNorm(6, **kw), lambda nn: nn.RMSNorm(6), (2, 3, 6)),
    "RMSNorm[eps, 2 axes]": (lambda **kw: RMSNorm((2, 3), eps=1e-3, **kw),
                             lambda nn: nn.RMSNorm((2, 3), eps=1e-3), (4, 2, 3)),
    "RMSNorm[no affine]": (lambda **kw: RMSNorm(4, None, False, **kw), lambda nn: nn.RMSNorm(4, None, False),
                           (3, 4)),
    "GroupNorm": (lambda **kw: GroupNorm(2, 4, **kw), lambda nn: nn.GroupNorm(2, 4), (3, 4, 2, 3)),
    "GroupNorm[2-d input]": (lambda **kw: GroupNorm(3, 6, **kw), lambda nn: nn.GroupNorm(3, 6), (5, 6)),
    "GroupNorm[1 group, no bias]": (lambda **kw: GroupNorm(1, 3, bias=False, **kw),
                                    lambda nn: nn.GroupNorm(1, 3, bias=False), (2, 3, 4)),
    "GroupNorm[no affine]": (lambda **kw: GroupNorm(4, 4, 1e-3, False, **kw),
                             lambda nn: nn.GroupNorm(4, 4, 1e-3, False), (2, 4, 5)),
    "InstanceNorm2d": (lambda **kw: InstanceNorm2d(3, **kw), lambda nn: nn.InstanceNorm2d(3), (2, 3, 4, 5)),
    "InstanceNorm2d[affine]": (lambda **kw: InstanceNorm2d(3, affine=True, **kw),
                               lambda nn: nn.InstanceNorm2d(3, affine=True), (2, 3, 3, 3)),
    "InstanceNorm2d[unbatched]": (lambda **kw: InstanceNorm2d(2, affine=True, **kw),
                                  lambda nn: nn.InstanceNorm2d(2, affine=True), (2, 3, 4)),
    "InstanceNorm2d[tracked]": (lambda **kw: InstanceNorm2d(3, 1e-3, 0.3, True, True, **kw),
                                lambda nn: nn.InstanceNorm2d(3, 1e-3, 0.3, True, True), (4, 3, 2, 3)),
}
NAMES = sorted(CASES)


def torch_twin(torch, name, ours):
    """The torch module of the case, in float64, with our parameters and buffers."""
    theirs = CASES[name][1](torch.nn).double()
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    return theirs


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_gradients_in_float64(rng, name, mode, engine_path):
    make, _, shape = CASES[name]
    node = randomised(make(), rng)
    if getattr(node, "track_running_stats", False):
        node.running_mean[...] = rng.standard_normal(node.num_features)
        node.running_var[...] = rng.uniform(0.5, 2.0, node.num_features)
    node.train(mode == "train")
    report = assert_gradients(node, rng.standard_normal(shape) * 2 + 1, atol=1e-7, rtol=1e-6)
    assert len(report.comparisons) == 2 + len(list(node.parameters()))


@pytest.mark.parametrize("name", NAMES)
def test_agrees_with_torch_in_float64_over_three_steps_then_eval(torch, rng, name, engine_path):
    """Forward, input gradient and every parameter gradient (accumulated over the steps) to 1e-10; the running
    statistics of a tracking InstanceNorm2d too; then one pass in eval mode."""
    make, _, shape = CASES[name]
    ours = randomised(make(), rng)
    theirs = torch_twin(torch, name, ours)
    for step in range(4):
        if step == 3:
            ours.eval()
            theirs.eval()
        x = rng.standard_normal(shape) * 3 + 2
        g = rng.standard_normal(shape)
        tx = torch.tensor(x, requires_grad=True)
        ty = theirs(tx)
        ty.backward(torch.tensor(g))
        np.testing.assert_allclose(ours.forward(x), ty.detach().numpy(), rtol=1e-10, atol=1e-10,
                                   err_msg=f"{name} forward, step {step}")
        np.testing.assert_allclose(ours.backward(g), tx.grad.numpy(), rtol=1e-10, atol=1e-10, err_msg=f"{name} dx")
        for key, p in ours.named_parameters():
            np.testing.assert_allclose(p.grad, getattr(theirs, key).grad.numpy(), rtol=1e-10, atol=1e-10,
                                       err_msg=f"{name} d/d {key}, step {step}")
        for key, value in theirs.state_dict().items():
            np.testing.assert_allclose(ours.state_dict()[key], value.numpy(), rtol=1e-10, atol=1e-12,
                                       err_msg=f"{name} {key}, step {step}")


@pytest.mark.parametrize("name", NAMES)
def test_agrees_with_torch_in_float32(torch, rng, name, engine_path):
    make, build, shape = CASES[name]
    ours = randomised(make(dtype=np.float32), rng)
    theirs = build(torch.nn)
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    x = (rng.standard_normal(shape) * 3 + 2).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    tx = torch.tensor(x, requires_grad=True)
    ty = theirs(tx)
    ty.backward(torch.tensor(g))
    y, dx = ours.forward(x), ours.backward(g)
    assert y.dtype == dx.dtype == np.float32
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=2e-5, atol=2e-5)
    for key, p in ours.named_parameters():
        assert p.grad.dtype == np.float32
        np.testing.assert_allclose(p.grad, getattr(theirs, key).grad.numpy(), rtol=2e-5, atol=1e-4)


# ================================================================= state dicts, modes and state
@pytest.mark.parametrize("name", NAMES)
def test_state_dict_keys_and_layouts_are_torchs_and_weights_move_both_ways(torch, rng, name):
    make, build, shape = CASES[name]
    theirs = build(torch.nn).double()
    with torch.no_grad():
        for value in theirs.state_dict().values():
            if value.dtype == torch.float64:
                value.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, tuple(value.shape))))
    ours = make()
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})  # torch -> ours
    assert list(ours.state_dict()) == list(theirs.state_dict())
    again = build(torch.nn).double()
    again.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})  # ours -> torch
    for key, value in theirs.state_dict().items():
        np.testing.assert_array_equal(again.state_dict()[key].numpy(), value.numpy())
    x = rng.standard_normal(shape)
    np.testing.assert_allclose(ours.forward(x), again(torch.tensor(x)).detach().numpy(), rtol=1e-10, atol=1e-10)


def test_the_default_parameters_and_keys():
    assert [(k, v.shape) for k, v in LayerNorm((2, 3)).state_dict().items()] == [("weight", (2, 3)), ("bias", (2, 3))]
    assert list(LayerNorm(3, elementwise_affine=False).state_dict()) == []
    assert list(RMSNorm(3).state_dict()) == ["weight"] and RMSNorm(3).eps is None
    assert list(GroupNorm(2, 4, affine=False).state_dict()) == []
    assert list(InstanceNorm2d(3).state_dict()) == []
    assert list(InstanceNorm2d(3, affine=True, bias=False).state_dict()) == ["weight"]
    node = InstanceNorm2d(3, track_running_stats=True)
    assert list(node.state_dict()) == ["running_mean", "running_var", "num_batches_tracked"]
    np.testing.assert_array_equal(LayerNorm(4).weight.value, np.ones(4))
    np.testing.assert_array_equal(GroupNorm(2, 4).bias.value, np.zeros(4))


def test_rmsnorm_eps_none_is_the_machine_epsilon_of_its_dtype(torch, rng):
    x = rng.standard_normal((3, 4)) * 1e-9  # so small that eps matters
    for dtype, eps in ((np.float64, np.finfo(np.float64).eps), (np.float32, np.finfo(np.float32).eps)):
        np.testing.assert_allclose(RMSNorm(4, dtype=dtype).forward(x.astype(dtype)),
                                   RMSNorm(4, eps=float(eps), dtype=dtype).forward(x.astype(dtype)), rtol=0, atol=0)
    tx = torch.tensor(x)
    np.testing.assert_allclose(RMSNorm(4).forward(x), torch.nn.RMSNorm(4).double()(tx).detach().numpy(), rtol=1e-10)


def test_instancenorm_running_statistics_follow_torch_and_momentum_none_keeps_them(torch, rng):
    for momentum in (0.1, None):
        ours = InstanceNorm2d(2, momentum=momentum, track_running_stats=True)
        theirs = torch.nn.InstanceNorm2d(2, momentum=momentum, track_running_stats=True).double()
        for _ in range(3):
            x = rng.standard_normal((3, 2, 4, 4)) * 2 + 1
            ours.forward(x)
            theirs(torch.tensor(x))
        for key, value in theirs.state_dict().items():
            np.testing.assert_allclose(ours.state_dict()[key], value.numpy(), rtol=1e-12, atol=1e-14)
        assert int(ours.num_batches_tracked) == 0  # torch's InstanceNorm never counts


def test_evaluate_and_jacobian_leave_the_running_statistics_alone(rng):
    node = InstanceNorm2d(2, track_running_stats=True)
    x = rng.standard_normal((2, 2, 3, 3))
    node.evaluate(x)
    node.jacobian(x)
    assert list(node.running_mean) == [0, 0] and list(node.running_var) == [1, 1]
    node.forward(x)
    assert not np.array_equal(node.running_mean, [0, 0])


def test_a_refused_call_puts_the_running_statistics_back(rng):
    from nn_from_scratch import Sequential
    from nn_from_scratch.nodes import Linear, Flatten

    node = InstanceNorm2d(2, track_running_stats=True)
    model = Sequential(node, Flatten(), Linear(5, 2, rng=0))  # 2 * 3 * 3 = 18 features, not 5: refused
    with pytest.raises(ValueError):
        model.forward(rng.standard_normal((2, 2, 3, 3)))
    assert list(node.running_mean) == [0, 0] and list(node.running_var) == [1, 1]


@pytest.mark.parametrize("name", NAMES)
def test_the_jacobian_of_the_kept_pass_is_the_backward_pass(rng, name, engine_path):
    make, _, shape = CASES[name]
    node = randomised(make(), rng)
    x, g = rng.standard_normal(shape), rng.standard_normal(shape)
    node.forward(x)
    dx = node.backward(g, reset_after=False)
    jacobian = node.jacobian()
    assert jacobian.shape == shape + shape
    np.testing.assert_allclose(dx, np.tensordot(g, jacobian, axes=g.ndim), rtol=1e-10, atol=1e-12)


def test_layernorm_over_no_axes_and_empty_inputs(torch, rng):
    node = LayerNorm(())  # every value alone: x_hat = 0, y = beta
    node.bias.value[...] = 0.5
    np.testing.assert_array_equal(node.forward(rng.standard_normal((2, 3))), np.full((2, 3), 0.5))
    np.testing.assert_array_equal(node.backward(np.ones((2, 3))), np.zeros((2, 3)))
    for node, shape in ((LayerNorm(4), (0, 4)), (GroupNorm(2, 4), (2, 4, 0)), (InstanceNorm2d(3), (0, 3, 2, 2))):
        with np.errstate(all="raise"):
            y = node.forward(np.zeros(shape))
            assert y.shape == shape and node.backward(np.ones(shape)).shape == shape


def test_a_float16_layer_computes_in_float32(torch, rng):
    x = (rng.standard_normal((4, 300)) * 200).astype(np.float16)  # squares past float16's range
    node = LayerNorm(300, dtype=np.float16)
    y = node.forward(x)
    dx = node.backward(np.ones_like(y))
    assert y.dtype == dx.dtype == node.weight.grad.dtype == np.float16
    expected = torch.nn.functional.layer_norm(torch.tensor(x.astype(np.float32)), (300,)).numpy()
    np.testing.assert_allclose(y, expected, rtol=2e-3, atol=2e-3)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx))


def test_gradients_accumulate_over_two_backward_passes(rng):
    node = randomised(GroupNorm(2, 4), rng)
    x, g = rng.standard_normal((3, 4, 5)), rng.standard_normal((3, 4, 5))
    node.forward(x)
    node.backward(g)
    once = node.weight.grad.copy()
    node.forward(x)
    node.backward(g)
    np.testing.assert_allclose(node.weight.grad, 2 * once, rtol=1e-14)


# ================================================================= bad arguments and bad input
@pytest.mark.parametrize("make, error, match", [
    (lambda: LayerNorm(0), ValueError, "normalized_shape"),
    (lambda: LayerNorm((3, -1)), ValueError, "normalized_shape"),
    (lambda: LayerNorm("3"), ValueError, "normalized_shape"),
    (lambda: LayerNorm(3.5), TypeError, "normalized_shape"),
    (lambda: LayerNorm(3, eps=-1.0), ValueError, "eps"),
    (lambda: LayerNorm(3, eps=float("nan")), ValueError, "eps"),
    (lambda: LayerNorm(3, dtype=np.int32), TypeError, "dtype"),
    (lambda: RMSNorm(3, eps="small"), ValueError, "eps"),
    (lambda: GroupNorm(3, 4), ValueError, "divisible"),
    (lambda: GroupNorm(0, 4), ValueError, "num_groups"),
    (lambda: GroupNorm(2, True), ValueError, "num_channels"),
    (lambda: InstanceNorm2d(0), ValueError, "num_features"),
    (lambda: InstanceNorm2d(3, momentum="0.1"), TypeError, "momentum"),
])
def test_bad_arguments_are_refused(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("node, shape, match", [
    (LayerNorm((3, 4)), (2, 4, 3), r"normalized_shape=\[3, 4\]"),
    (LayerNorm(4), (), "normalized_shape"),
    (RMSNorm(4), (4, 3), "normalized_shape"),
    (GroupNorm(2, 4), (4,), "at least 2 axes"),
    (GroupNorm(2, 4), (2, 6, 3), "4 channels"),
    (InstanceNorm2d(3), (2, 3, 4), "3 channels"),
    (InstanceNorm2d(3), (2, 3, 4, 4, 1), "H, W"),
    (InstanceNorm2d(3), (2, 3, 1, 1), "more than 1 spatial element"),
])
def test_bad_input_is_refused(node, shape, match):
    with pytest.raises(ValueError, match=match):
        node.forward(np.zeros(shape))


def test_instancenorm_in_eval_with_running_statistics_takes_one_pixel(rng):
    node = InstanceNorm2d(3, track_running_stats=True).eval()
    assert node.forward(rng.standard_normal((2, 3, 1, 1))).shape == (2, 3, 1, 1)


def test_the_normalisations_share_batchnorms_math(rng):
    """GroupNorm with one channel per group over (1, C, L) is BatchNorm1d over (L, C) in training, transposed."""
    x, g = rng.standard_normal((1, 3, 6)), rng.standard_normal((1, 3, 6))
    group, batch = randomised(GroupNorm(3, 3), rng), BatchNorm1d(3)
    batch.weight.value[...], batch.bias.value[...] = group.weight.value, group.bias.value
    np.testing.assert_allclose(group.forward(x)[0].T, batch.forward(x[0].T), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(group.backward(g)[0].T, batch.backward(g[0].T), rtol=1e-12, atol=1e-14)


# ================================================================= the two paths
def _every_face(node, x, g):
    node.zero_grad()
    y = node.forward(x)
    dx = node.backward(g, reset_after=False)
    grads = [p.grad.copy() for p in node.parameters()]
    vjp = node.vjp_from(node.pending, g)
    node.zero_grad()
    node.backward(g, input_grad=False)
    samples = x.reshape((-1,) + tuple(node.normalized_shape))
    return y, dx, vjp, grads, [p.grad.copy() for p in node.parameters()], node.jacobian(samples[:2])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("make", [lambda dtype: LayerNorm(700, dtype=dtype), lambda dtype: LayerNorm(
    (5, 7), bias=False, dtype=dtype), lambda dtype: LayerNorm(9, elementwise_affine=False, dtype=dtype),
    lambda dtype: RMSNorm(700, dtype=dtype), lambda dtype: RMSNorm((5, 7), elementwise_affine=False, dtype=dtype)])
def test_the_fast_path_gives_the_textbook_bits(rng, make, dtype):
    """The engine's row blocks (several blocks, on the thread pool) give the textbook's output and input gradient
    bit for bit; the parameter gradients, summed over the rows in another order, to rounding."""
    node = randomised(make(dtype), rng)
    shape = (3, 311) + tuple(node.normalized_shape)  # 933 rows: several blocks (on threads), the last one short
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    fast = _every_face(node, x, g)
    with engine.textbook():
        textbook = _every_face(node, x, g)
    for what, a, b in zip(("y", "dx", "vjp"), fast, textbook):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b, err_msg=what)
    for a, b in zip(fast[3] + fast[4], textbook[3] + textbook[4]):
        np.testing.assert_allclose(a, b, rtol=50 * np.finfo(dtype).eps, atol=50 * np.finfo(dtype).eps * np.abs(b).max())
    np.testing.assert_array_equal(fast[5], textbook[5])


def test_the_engine_kernels_run_on_the_fast_path_only(rng, monkeypatch):
    import nn_from_scratch.engine.normalization as kernels

    called = []
    for name in kernels.__all__:
        if callable(getattr(kernels, name)):
            original = getattr(kernels, name)
            monkeypatch.setattr(kernels, name, lambda *a, _f=original, _n=name, **k: called.append(_n) or _f(*a, **k))
    x = rng.standard_normal((4, 6))
    with engine.textbook():
        _every_face(LayerNorm(6), x, x)
    assert called == []
    _every_face(RMSNorm(6), x, x)
    assert set(called) == {"standardize_rows", "standardized_rows_backward", "standardized_rows"}
