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
from nn_from_scratch.engine import pooling as fast_pools
from nn_from_scratch.engine import strided_convolution as fast_strided
from nn_from_scratch.engine import windows as fast_windows
from nn_from_scratch.engine.workspace import Workspace
from nn_from_scratch.nodes import AdaptiveAvgPool2d, AvgPool2d, Conv2d, GlobalAvgPool2d, MaxPool2d, windows

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
            "print(engine.fast_enabled(), layer.pending.fast)")
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
    optional: dict = {}  # per module: optional packages it may import inside try/except (none today)
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
def _pass(layer, x, g, *, fast_on):
    """Output, input gradient and parameter gradients of one pass with the engine on or off."""
    engine.set_fast(fast_on)
    layer.zero_grad()
    y = layer.forward(x)
    assert layer.pending.fast is fast_on  # the path really taken
    assert (getattr(layer.pending, "saved", None) is not None) == (fast_on and layer.stride == (1, 1))
    dx = layer.backward(g)
    grads = [p.grad.copy() for p in layer.parameters()]
    return [y, dx] + grads


def _agree_to_rounding(ours, textbook, dtype):
    """Same sums in another order: within 100 machine epsilons of each result's largest magnitude."""
    eps = np.finfo(dtype).eps
    for name, a, b in zip(["y", "dx", "dW", "db"], ours, textbook):
        assert a.dtype == b.dtype == dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=0, atol=100 * eps * np.abs(b).max(), err_msg=name)


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
    _agree_to_rounding(ours, textbook, dtype)


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


STRIDED = list(itertools.product([2, (2, 1), (1, 3)], [(3, 3), (2, 3)], [0, (1, 2)], [1, 2], [True, False]))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("stride, kernel, padding, dilation, bias", STRIDED,
                         ids=[f"s{s}-k{k}-p{p}-d{d}-{'bias' if b else 'nobias'}".replace(" ", "")
                              for s, k, p, d, b in STRIDED])
def test_the_strided_engine_agrees_with_the_textbook_convolution_to_rounding(rng, dtype, stride, kernel, padding,
                                                                            dilation, bias):
    """Other strides take the columns copied from strided windows and the lattice col2im: rounding apart, the same."""
    layer = Conv2d(3, 4, kernel, stride, padding, dilation, bias=bias, rng=1, dtype=dtype)
    x = rng.standard_normal((5, 3, 9, 8)).astype(dtype)
    g = rng.standard_normal((5, 4) + layer.output_size(9, 8)).astype(dtype)
    _agree_to_rounding(_pass(layer, x, g, fast_on=True), _pass(layer, x, g, fast_on=False), dtype)


# ------------------------------------------------------------------ which kernels a pass runs
KERNEL_MODULES = (fast, fast_strided, fast_windows, fast_pools)
# the kernels a layer calls itself (the ones they call in turn vary with the geometry)
WIDE = {"convolution.WideColumns", "convolution.Saved", "convolution.forward", "convolution.backward"}
STRIDED = {"strided_convolution.forward", "strided_convolution.backward"}
MAX_POOL = {"pooling.max_pool", "pooling.max_pool_backward"}
AVG_POOL = {"pooling.avg_pool", "pooling.avg_pool_backward"}
ADAPTIVE = {"pooling.BinAverage", "pooling.adaptive_avg_pool", "pooling.adaptive_avg_pool_backward"}
ENTRY_POINTS = WIDE | STRIDED | MAX_POOL | AVG_POOL | ADAPTIVE
WINDOW_LAYERS = {
    "Conv2d[stride 1]": (lambda: Conv2d(2, 3, 3, padding=1, rng=0), WIDE),
    "Conv2d[stride 1, dilation]": (lambda: Conv2d(2, 3, (2, 3), padding=(1, 0), dilation=2, rng=0), WIDE),
    "Conv2d[stride 2]": (lambda: Conv2d(2, 3, 3, stride=2, padding=1, rng=0), STRIDED),
    "Conv2d[stride (2, 1), dilation]": (lambda: Conv2d(2, 3, (3, 2), stride=(2, 1), dilation=(1, 2), rng=0),
                                        STRIDED),
    "Conv2d[stride (1, 3), no bias]": (lambda: Conv2d(2, 3, 2, stride=(1, 3), bias=False, rng=0), STRIDED),
    "MaxPool2d": (lambda: MaxPool2d(2), MAX_POOL),
    "MaxPool2d[stride 1, padding]": (lambda: MaxPool2d(3, 1, 1), MAX_POOL),
    "AvgPool2d": (lambda: AvgPool2d(2), AVG_POOL),
    "AvgPool2d[stride 1, padding, exclude]": (lambda: AvgPool2d(3, 1, 1, count_include_pad=False), AVG_POOL),
    "AdaptiveAvgPool2d": (lambda: AdaptiveAvgPool2d((2, 3)), ADAPTIVE),
    "GlobalAvgPool2d": (GlobalAvgPool2d, set()),  # a mean: one path
}


def _spy(original, label, calls, forbid):
    """``original`` (a function or a class) behind a check: raise when ``forbid``, else record ``label``."""
    def check():
        if forbid:
            raise AssertionError(f"{label} ran on the textbook path")
        calls.add(label)

    if isinstance(original, type):  # a class: constructing it is the call (its static methods stay reachable)
        class Spy(original):
            def __init__(self, *args, **kwargs):
                check()
                super().__init__(*args, **kwargs)
        return Spy

    def spy(*args, **kwargs):
        check()
        return original(*args, **kwargs)
    return spy


def _spy_on_kernels(monkeypatch, *, forbid):
    """Replace every kernel of the convolution, window and pool modules: raising (``forbid``), or recording."""
    calls = set()
    for module in KERNEL_MODULES:
        for name in module.__all__:
            original = getattr(module, name)
            if callable(original):
                label = f"{module.__name__.rsplit('.', 1)[1]}.{name}"
                monkeypatch.setattr(module, name, _spy(original, label, calls, forbid))
    if forbid:
        monkeypatch.setattr(Workspace, "take", lambda *a, **k: pytest.fail("scratch taken on the textbook path"))
    return calls


def _every_face(node, x, rng):
    y = node.forward(x)
    node.backward(rng.standard_normal(y.shape), reset_after=False)
    node.jacobian()
    node.evaluate(x)
    node.jacobian(x[:1])
    node.forward(x)
    node.backward(rng.standard_normal(y.shape), input_grad=False)


@pytest.mark.parametrize("name", list(WINDOW_LAYERS))
def test_no_kernel_runs_on_the_textbook_path_and_the_expected_ones_run_on_the_engine(monkeypatch, rng, name):
    """Under engine.textbook() every pass of a convolution or pool is the textbook path's, whatever the stride."""
    make, expected = WINDOW_LAYERS[name]
    x = rng.standard_normal((2, 2, 6, 7))
    with monkeypatch.context() as patch:
        _spy_on_kernels(patch, forbid=True)
        with engine.textbook():
            _every_face(make(), x, rng)
    engine.set_fast(True)
    calls = _spy_on_kernels(monkeypatch, forbid=False)
    _every_face(make(), x, rng)
    assert calls & ENTRY_POINTS == expected
    if expected == STRIDED:  # through the strided windows' copy and the lattice scatter
        assert {"windows.im2col", "windows.col2im", "windows.scatter"} <= calls


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
