"""nn_from_scratch.init against torch.nn.init: the gains, fans, bounds and standard deviations of torch's formulas,
and the distributions checked statistically, with bounds derived from the sample size (five standard errors)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import required
from nn_from_scratch import init
from nn_from_scratch.backend import on_backend, to_numpy
from nn_from_scratch.parameter import Parameter

N_SHAPE = (400, 250)  # 100 000 draws
Z = 5.0  # standard errors allowed: a chance of about 6e-7 per check of a correct draw failing


def assert_uniform(x, low, high):
    """Mean and variance of U(low, high) within Z standard errors; every draw within the bounds, the extremes near."""
    x = np.asarray(x, dtype=np.float64).ravel()
    n, width = x.size, high - low
    mean, var = (low + high) / 2, width**2 / 12
    assert abs(x.mean() - mean) <= Z * math.sqrt(var / n), (x.mean(), mean)
    var_se = math.sqrt((width**4 / 80 - var**2) / n)  # fourth central moment of a uniform: width**4 / 80
    assert abs(x.var() - var) <= Z * var_se, (x.var(), var)
    assert low <= x.min() and x.max() <= high
    assert x.min() - low <= width * 20 / n and high - x.max() <= width * 20 / n  # P(gap > 20/n) = e^-20


def assert_normal(x, mean, std):
    x = np.asarray(x, dtype=np.float64).ravel()
    n = x.size
    assert abs(x.mean() - mean) <= Z * std / math.sqrt(n), (x.mean(), mean)
    assert abs(x.var() - std**2) <= Z * std**2 * math.sqrt(2 / (n - 1)), (x.std(), std)
    kurtosis = np.mean((x - x.mean()) ** 4) / x.var() ** 2
    assert abs(kurtosis - 3) <= Z * math.sqrt(24 / n)


NONLINEARITIES = [("linear", None), ("conv2d", None), ("conv_transpose3d", None), ("sigmoid", None),
                  ("tanh", None), ("relu", None), ("leaky_relu", None), ("leaky_relu", 0.2), ("leaky_relu", 3),
                  ("leaky_relu", math.sqrt(5)), ("selu", None)]


@pytest.mark.parametrize("nonlinearity, param", NONLINEARITIES)
def test_gains_are_torchs(torch, nonlinearity, param):
    assert init.calculate_gain(nonlinearity, param) == torch.nn.init.calculate_gain(nonlinearity, param)


@pytest.mark.parametrize("shape", [(3, 4), (7, 5, 3), (4, 2, 3, 5), (2, 1, 1, 1, 6)])
def test_fans_are_torchs(torch, shape):
    assert init.fan_in_and_fan_out(shape) == torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))


def _torch_kaiming_std(torch, shape, a, mode, nonlinearity):
    fan = torch.nn.init._calculate_correct_fan(torch.empty(shape), mode)
    return torch.nn.init.calculate_gain(nonlinearity, a) / math.sqrt(fan)


@pytest.mark.parametrize("a, mode, nonlinearity", [(0, "fan_in", "leaky_relu"), (math.sqrt(5), "fan_in", "leaky_relu"),
                                                   (0, "fan_out", "relu"), (0.1, "FAN_OUT", "leaky_relu"),
                                                   (0, "fan_in", "tanh")])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_kaiming_draws_from_torchs_distributions(torch, a, mode, nonlinearity, dtype):
    shape = (250, 80, 5)
    std = _torch_kaiming_std(torch, shape, a, mode.lower(), nonlinearity)
    p = Parameter(np.zeros(shape, dtype=dtype))
    assert init.kaiming_uniform_(p, a, mode, nonlinearity, generator=0) is p
    assert p.value.dtype == dtype
    assert_uniform(p.value, -math.sqrt(3) * std, math.sqrt(3) * std)
    array = np.zeros(shape, dtype=dtype)
    assert init.kaiming_normal_(array, a=a, mode=mode, nonlinearity=nonlinearity, generator=1) is array
    assert_normal(array, 0.0, std)


@pytest.mark.parametrize("gain", [1.0, 0.5, 5.0 / 3])
def test_xavier_draws_from_torchs_distributions(torch, gain):
    shape = (300, 120, 3)
    fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    uniform = init.xavier_uniform_(np.empty(shape), gain=gain, generator=np.random.default_rng(2))
    assert_uniform(uniform, -math.sqrt(3) * std, math.sqrt(3) * std)
    normal = init.xavier_normal_(Parameter(np.empty(shape, dtype=np.float32)), gain=gain, generator=3)
    assert_normal(normal.value, 0.0, std)


def test_uniform_normal_and_constants(rng):
    assert_uniform(init.uniform_(np.empty(N_SHAPE), -0.3, 0.7, generator=4), -0.3, 0.7)
    assert_uniform(init.uniform_(np.empty(N_SHAPE), generator=5), 0.0, 1.0)
    assert_normal(init.normal_(np.empty(N_SHAPE), 2.0, 0.5, generator=6), 2.0, 0.5)
    assert_normal(init.normal_(np.empty(N_SHAPE), generator=7), 0.0, 1.0)
    p = Parameter(rng.normal(size=(3, 4)).astype(np.float32))
    held = p.value
    for fill, expected in ((init.zeros_, 0.0), (init.ones_, 1.0), (lambda t: init.constant_(t, -2.5), -2.5),
                           (lambda t: init.constant_(t, np.float32(np.inf)), np.inf)):
        assert fill(p) is p and p.value is held and p.value.dtype == np.float32
        np.testing.assert_array_equal(p.value, np.full((3, 4), expected, dtype=np.float32))


@pytest.mark.parametrize("shape", [(6, 6), (3, 8), (8, 3), (4, 2, 3), (2, 3, 2, 2)])
def test_orthogonal_rows_or_columns_are_orthonormal_and_haar(torch, shape):
    x = init.orthogonal_(np.empty(shape), gain=2.0, generator=8)
    rows = shape[0]
    flat = x.reshape(rows, -1) / 2.0
    small = min(flat.shape)
    gram = flat @ flat.T if rows <= flat.shape[1] else flat.T @ flat
    np.testing.assert_allclose(gram, np.eye(small), atol=1e-12)
    # torch's, given the same Gaussian matrix, is the same matrix
    rng = np.random.default_rng(8)
    gaussian = torch.tensor(rng.normal(0.0, 1.0, size=(rows, flat.shape[1])))
    if rows < flat.shape[1]:
        gaussian = gaussian.t()
    q, r = torch.linalg.qr(gaussian)
    q = q * torch.diag(r, 0).sign()
    if rows < flat.shape[1]:
        q = q.t()
    np.testing.assert_allclose(flat, q.numpy(), atol=1e-12)


def test_orthogonal_matrices_are_uniformly_distributed():
    """Haar: each entry of a random n x n orthogonal matrix has mean 0 and variance 1/n."""
    n, draws = 8, 4000
    generator = np.random.default_rng(9)
    entries = np.stack([init.orthogonal_(np.empty((n, n)), generator=generator)[0, 0] for _ in range(draws)])
    assert abs(entries.mean()) <= Z * math.sqrt(1 / n / draws)
    assert abs(entries.var() - 1 / n) <= Z * math.sqrt(2 * (1 / n) ** 2 / draws) * 1.5


def test_seeds_and_generators_reproduce():
    a = init.kaiming_uniform_(np.empty((5, 4)), generator=11)
    b = init.kaiming_uniform_(np.empty((5, 4)), generator=11)
    np.testing.assert_array_equal(a, b)
    generator = np.random.default_rng(11)
    c = init.kaiming_uniform_(np.empty((5, 4)), generator=generator)
    d = init.kaiming_uniform_(np.empty((5, 4)), generator=generator)
    np.testing.assert_array_equal(a, c)
    assert not np.array_equal(c, d)  # the generator advanced


def test_initialisers_fill_array_api_strict_arrays_in_place():
    xp = required("array_api_strict", "array-api-strict is not installed (pip install array-api-strict)")
    from nn_from_scratch import Sequential
    from nn_from_scratch.nodes import Linear

    model = Sequential(Linear(30, 20, rng=0))
    with on_backend("array_api_strict", model):
        weight = model.parameters()[0]
        init.xavier_uniform_(weight, generator=12)
        init.zeros_(model.parameters()[1])
        assert type(weight.value).__module__.startswith("array_api_strict")
        values, bias = to_numpy(weight.value), to_numpy(model.parameters()[1].value)
    expected = init.xavier_uniform_(np.empty((20, 30)), generator=12)
    np.testing.assert_array_equal(values, expected)
    np.testing.assert_array_equal(bias, np.zeros(20))
    array = xp.zeros((4, 3), dtype=xp.float32)
    assert init.orthogonal_(array, generator=1) is array and array.dtype == xp.float32


@pytest.mark.parametrize("call, error, message", [
    (lambda: init.calculate_gain("swish"), ValueError, "Unsupported nonlinearity swish"),
    (lambda: init.calculate_gain("leaky_relu", "0.1"), ValueError, "negative_slope 0.1 not a valid number"),
    (lambda: init.kaiming_uniform_(np.empty(5)), ValueError, "fewer than 2 dimensions"),
    (lambda: init.kaiming_normal_(np.empty((3, 4)), mode="fan_avg"), ValueError, "Mode fan_avg not supported"),
    (lambda: init.xavier_normal_(np.empty(3)), ValueError, "fewer than 2 dimensions"),
    (lambda: init.orthogonal_(np.empty(3)), ValueError, "2 or more dimensions"),
    (lambda: init.uniform_(np.empty(3), 1.0, 0.0), ValueError, "a <= b"),
    (lambda: init.normal_(np.empty(3), std=-1.0), ValueError, "std"),
    (lambda: init.normal_(np.empty(3), mean=float("nan")), ValueError, "mean"),
    (lambda: init.zeros_(np.zeros(3, dtype=np.int64)), TypeError, "floating-point"),
    (lambda: init.ones_([1.0, 2.0]), TypeError, "a Parameter or an array"),
    (lambda: init.constant_(np.empty(3), "1"), TypeError, "real number"),
    (lambda: init.uniform_(np.empty(3), generator="seed"), TypeError, "rng must be"),
    (lambda: init.zeros_(np.broadcast_to(np.ones(3), (2, 3))), ValueError, "read-only"),
])
def test_bad_arguments_are_refused(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_a_weight_of_no_numbers_is_left_as_it_is():
    empty = np.empty((0, 3))
    assert init.kaiming_uniform_(empty) is empty and init.kaiming_normal_(empty) is empty
    assert init.orthogonal_(np.empty((3, 0))).shape == (3, 0)


def test_functions_and_signatures_are_torchs(torch):
    import inspect

    for name in init.__all__:
        if name == "fan_in_and_fan_out":
            continue
        ours = list(inspect.signature(getattr(init, name)).parameters.items())
        theirs = list(inspect.signature(getattr(torch.nn.init, name)).parameters.items())
        assert [n for n, _ in ours][1:] == [n for n, _ in theirs][1:], name
        assert [p.default for _, p in ours][1:] == [p.default for _, p in theirs][1:], name
