"""The engine switch, and the fast paths checked against the textbook paths they replace."""
from __future__ import annotations

import ast
import itertools
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import nn_from_scratch
from nn_from_scratch import engine
from nn_from_scratch.engine import convolution as fast
from nn_from_scratch.nodes import Conv2d, windows

ENGINE_DIR = pathlib.Path(engine.__file__).parent


@pytest.fixture(autouse=True)
def restore_switch():
    previous = engine.fast_enabled()
    yield
    engine.set_fast(previous)


# ------------------------------------------------------------------ the switch
def _fast_in_fresh_process(value):
    env = dict(os.environ)
    env.pop(engine.ENVIRONMENT_VARIABLE, None)
    if value is not None:
        env[engine.ENVIRONMENT_VARIABLE] = value
    code = ("import numpy as np; from nn_from_scratch import engine; from nn_from_scratch.nodes import Conv2d\n"
            "layer = Conv2d(1, 1, 3, padding=1, rng=0); layer.forward(np.ones((1, 1, 4, 4)))\n"
            "print(engine.fast_enabled(), layer.pending.fast is not None)")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=30 * 60)  # a hang guard only


@pytest.mark.parametrize("value, fast_on", [(None, True), ("", True), ("0", True), ("false", True),
                                            ("1", False), ("TRUE", False), (" yes ", False)])
def test_the_environment_variable_is_read_at_import(value, fast_on):
    done = _fast_in_fresh_process(value)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(fast_on), str(fast_on)]  # the setting, and the path Conv2d took


def test_a_bad_environment_value_is_refused_naming_the_variable():
    done = _fast_in_fresh_process("sometimes")
    assert done.returncode != 0
    assert "ValueError" in done.stderr and "NN_FROM_SCRATCH_TEXTBOOK" in done.stderr and "'sometimes'" in done.stderr


def test_set_fast_and_fast_enabled():
    engine.set_fast(False)
    assert engine.fast_enabled() is False
    engine.set_fast(True)
    assert engine.fast_enabled() is True


@pytest.mark.parametrize("bad", [0, 1, "no", None, np.bool_(False)])
def test_set_fast_takes_only_a_bool_and_changes_nothing_otherwise(bad):
    engine.set_fast(True)
    with pytest.raises(TypeError, match="True or False"):
        engine.set_fast(bad)
    assert engine.fast_enabled() is True


@pytest.mark.parametrize("before", [True, False])
def test_textbook_restores_the_previous_setting_also_after_an_error(before):
    engine.set_fast(before)
    with engine.textbook():
        assert engine.fast_enabled() is False
    assert engine.fast_enabled() is before
    with pytest.raises(KeyError):
        with engine.textbook():
            raise KeyError("inside")
    assert engine.fast_enabled() is before


def test_textbook_nests_and_undoes_a_set_fast_inside_it():
    engine.set_fast(True)
    with engine.textbook():
        with engine.textbook():
            assert engine.fast_enabled() is False
        assert engine.fast_enabled() is False  # the inner exit restores the outer block's setting
        engine.set_fast(True)
        assert engine.fast_enabled() is True
        with engine.textbook():
            assert engine.fast_enabled() is False
        assert engine.fast_enabled() is True
    assert engine.fast_enabled() is True


def test_the_engine_imports_only_numpy_the_standard_library_and_itself():
    """Kernels of arrays in, arrays out: no layer, no other part of the library."""
    allowed = set(sys.stdlib_module_names) | {"numpy"}
    optional = {"threads.py": {"threadpoolctl"}}  # the thread policy's optional extra, imported inside try/except
    for path in sorted(ENGINE_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level == 1:  # from . / from .module: the engine's own
                    continue
                assert node.level == 0, f"{path.name}: from {'.' * node.level}{node.module} leaves the engine"
                roots = [node.module.split(".")[0]]
            else:
                continue
            for root in roots:
                assert root in allowed | optional.get(path.name, set()), f"{path.name} imports {root}"


# ------------------------------------------------------------------ fast convolution against the textbook one
def _pass(layer, x, g, *, fast_on, stride_one=True):
    """Output, input gradient and parameter gradients of one pass with the engine on or off."""
    engine.set_fast(fast_on)
    layer.zero_grad()
    y = layer.forward(x)
    assert (layer.pending.fast is not None) == (fast_on and stride_one)  # the path really taken
    dx = layer.backward(g)
    grads = [p.grad.copy() for p in layer.parameters()]
    return [y, dx] + grads


CONFIGS = list(itertools.product([(1, 1), (3, 3), (2, 3)], [0, 1, (1, 2)], [1, 2], [True, False]))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("batch", [1, 5, 64])
@pytest.mark.parametrize("kernel, padding, dilation, bias", CONFIGS,
                         ids=[f"k{k}-p{p}-d{d}-{'bias' if b else 'nobias'}".replace(" ", "") for k, p, d, b in CONFIGS])
def test_the_fast_convolution_agrees_with_the_textbook_one_to_rounding(rng, dtype, batch, kernel, padding, dilation,
                                                                       bias):
    """Same sums in another order: within 100 machine epsilons of each result's largest magnitude."""
    layer = Conv2d(3, 4, kernel, 1, padding, dilation, bias=bias, rng=1, dtype=dtype)
    x = rng.standard_normal((batch, 3, 9, 8)).astype(dtype)
    g = rng.standard_normal((batch, 4) + layer.output_size(9, 8)).astype(dtype)
    textbook = _pass(layer, x, g, fast_on=False)
    ours = _pass(layer, x, g, fast_on=True)
    assert len(ours) == (4 if bias else 3)
    eps = np.finfo(dtype).eps
    for name, a, b in zip(["y", "dx", "dW", "db"], ours, textbook):
        assert a.dtype == b.dtype == dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=0, atol=100 * eps * np.abs(b).max(), err_msg=name)


def test_each_path_repeats_its_own_bits(rng):
    layer = Conv2d(3, 4, 3, padding=1, rng=1)
    x, g = rng.standard_normal((6, 3, 9, 8)), rng.standard_normal((6, 4, 9, 8))
    for fast_on in (True, False):
        first, second = _pass(layer, x, g, fast_on=fast_on), _pass(layer, x, g, fast_on=fast_on)
        for a, b in zip(first, second):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("forward_fast", [True, False])
def test_a_backward_pass_follows_the_path_of_its_forward_pass(rng, forward_fast):
    """The switch may change between the passes: the gradients are still the forward pass's own."""
    layer = Conv2d(3, 4, 3, padding=1, rng=1)
    x, g = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((2, 4, 6, 6))
    reference = _pass(layer, x, g, fast_on=forward_fast)
    engine.set_fast(forward_fast)
    layer.zero_grad()
    layer.forward(x)
    engine.set_fast(not forward_fast)
    dx = layer.backward(g)
    for a, b in zip([dx, layer.weight.grad, layer.bias.grad], reference[1:]):
        np.testing.assert_array_equal(a, b)


def test_other_strides_have_one_path(rng):
    layer = Conv2d(3, 4, 3, stride=2, padding=1, rng=1)
    x, g = rng.standard_normal((2, 3, 7, 7)), rng.standard_normal((2, 4, 4, 4))
    ours = _pass(layer, x, g, fast_on=True, stride_one=False)
    for a, b in zip(ours, _pass(layer, x, g, fast_on=False, stride_one=False)):
        np.testing.assert_array_equal(a, b)


def test_the_engine_functions_work_on_arrays_alone(rng):
    """engine.convolution.forward/backward without a layer: torch-free reference from the textbook helpers."""
    x = rng.standard_normal((3, 2, 6, 5))
    weight, bias = rng.standard_normal((4, 2, 3, 3)), rng.standard_normal(4)
    wide = fast.WideColumns(x.shape, (3, 3), (1, 1), (1, 1))
    y, saved = fast.forward(x, weight, bias, wide)
    cols = windows.im2col(x, 3, 1, 1).reshape(3, 18, 30)
    np.testing.assert_allclose(y, (weight.reshape(4, 18) @ cols + bias[:, None]).reshape(3, 4, 6, 5),
                               rtol=1e-13, atol=1e-13)
    g = rng.standard_normal(y.shape)
    dx, dweight, dbias = fast.backward(g, saved, weight)
    G = g.reshape(3, 4, 30)
    np.testing.assert_allclose(dweight, np.einsum("nol,nkl->ok", G, cols).reshape(weight.shape), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(dbias, G.sum(axis=(0, 2)), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(dx, windows.col2im(weight.reshape(4, 18).T @ G, x.shape, 3, 1, 1),
                               rtol=1e-13, atol=1e-13)
    assert fast.backward(g, saved, weight, input_grad=False)[0] is None
    assert fast.backward(g, saved, weight, parameter_grads=False)[1:] == (None, None)


# ------------------------------------------------------------------ a first gradient written into .grad
def test_add_into_writes_a_fresh_zero_and_adds_otherwise(rng):
    from nn_from_scratch.engine.gradients import add_into
    from nn_from_scratch.parameter import Parameter

    p = Parameter(rng.standard_normal((3, 4)))
    a, b = rng.standard_normal((3, 5)), rng.standard_normal((5, 4))
    outs = []

    def spy(x, y, out=None):
        outs.append(out)
        return np.matmul(x, y, out=out)

    p.zero_grad()
    add_into(p, spy, a, b)  # written straight into grad: exactly the product
    assert outs[-1] is p.grad and not p.fresh_zero
    np.testing.assert_array_equal(p.grad, a @ b)
    add_into(p, spy, a, b)  # the second one adds
    assert outs[-1] is None
    np.testing.assert_allclose(p.grad, 2 * (a @ b), rtol=1e-14, atol=1e-14)
    p.zero_grad()
    p.edit_grad()[0, 0] = 5  # a change announced by edit_grad is added to, not written over
    add_into(p, np.sum, np.ones((7, 3, 4)), axis=0)
    expected = np.full((3, 4), 7.0)
    expected[0, 0] = 12
    np.testing.assert_array_equal(p.grad, expected)


# ------------------------------------------------------------------ the activations' kernels, on arrays alone
def test_the_activation_kernels_work_on_arrays_alone(rng):
    """engine.activations without a layer: each kernel against its formula written with np.where."""
    from nn_from_scratch.engine import activations as kernels

    x = np.concatenate([[0.0, -0.0, np.inf, -np.inf, 30.0, -30.0], rng.standard_normal(1000) * 4])
    g = rng.standard_normal(x.shape)
    with np.errstate(all="ignore"):
        y, keep = kernels.relu(x)
        np.testing.assert_array_equal(y, np.maximum(x, 0))
        np.testing.assert_array_equal(kernels.relu_vjp(g, keep), np.where(x > 0, g, 0))
        for slope in (0.01, 0.0, -0.5, 3.0):
            y, dy = kernels.leaky_relu(x, slope)
            np.testing.assert_array_equal(y, np.where(x > 0, x, slope * x))
            np.testing.assert_array_equal(dy, np.where(x > 0, 1, slope))
        y, dy = kernels.elu(x, 0.7)
        np.testing.assert_array_equal(y, np.where(x > 0, x, 0.7 * np.expm1(np.minimum(x, 0))))
        np.testing.assert_array_equal(dy, np.where(x > 0, 1, 0.7 * np.exp(np.minimum(x, 0))))
        s = kernels.sigmoid(x)
        np.testing.assert_array_equal(s, 1 / (1 + np.exp(-x)))
        np.testing.assert_array_equal(kernels.times_sigmoid_slope(g, s), g * (s * (1 - s)))
        t = np.tanh(x)
        np.testing.assert_array_equal(kernels.times_tanh_slope(g, t), g * (1 - t * t))
        y, dy = kernels.softplus(x, 2.0, 5.0)
        z, e = 2 * x, np.exp(-np.abs(2 * x))
        np.testing.assert_array_equal(y, np.where(z > 5, x, (np.maximum(z, 0) + np.log1p(e)) / 2))
        np.testing.assert_array_equal(dy, np.where(z > 5, 1, np.where(z >= 0, 1, e) / (1 + e)))


def test_pick_is_where_for_finite_branches_and_pick_above_skips_an_unused_branch(rng):
    from nn_from_scratch.engine.elementwise import pick, pick_above

    a, b = rng.standard_normal(100), rng.standard_normal(100)
    mask = rng.random(100) > 0.5
    np.testing.assert_array_equal(pick(mask, a, b), np.where(mask, a, b))
    values = rng.uniform(0, 4, 100)

    def above():
        raise AssertionError("a branch that no element takes was computed")

    assert pick_above(values, 4.0, a, above) is a
    values[3] = 5.0
    np.testing.assert_array_equal(pick_above(values, 4.0, a, lambda: b), np.where(values <= 4, a, b))
