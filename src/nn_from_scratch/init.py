r"""Weight initialisers, as ``torch.nn.init``: fill a Parameter (or an array) in place, from a Generator or a seed.

Each function takes a :class:`~nn_from_scratch.parameter.Parameter`
(its ``value`` is filled) or an array (NumPy's, or another array API
library's), writes into it in place keeping its dtype, and returns what it
was given, as torch's return the tensor.  The random ones take
``generator``: a ``numpy.random.Generator`` (advanced), an integer seed (the
same seed, the same numbers) or None; they draw in float64 with NumPy and
round to the target's dtype (so a float32 uniform may reach its upper bound,
which torch's draw in float32 excludes).

The fans of a weight of shape :math:`(n_\text{out}, n_\text{in}, k_1, \dots)`
(torch's layouts: Linear's ``(out, in)``, Conv2d's ``(out, in, kh, kw)``)
are :math:`\text{fan\_in} = n_\text{in} \prod k_i` and
:math:`\text{fan\_out} = n_\text{out} \prod k_i`.  With the gain :math:`g`
of :func:`calculate_gain`:

=====================  =========================================================================
xavier_uniform_        :math:`U(-a, a)`, :math:`a = g\sqrt{6/(\text{fan\_in} + \text{fan\_out})}`
xavier_normal_         :math:`\mathcal N(0, \sigma^2)`, :math:`\sigma = g\sqrt{2/(\text{fan\_in} + \text{fan\_out})}`
kaiming_uniform_       :math:`U(-b, b)`, :math:`b = g\sqrt{3/\text{fan}}` (``mode``: fan_in or fan_out)
kaiming_normal_        :math:`\mathcal N(0, \sigma^2)`, :math:`\sigma = g/\sqrt{\text{fan}}`
orthogonal_            :math:`g\,Q`, :math:`Q` orthonormal rows or columns (QR of a Gaussian matrix, signs fixed)
=====================  =========================================================================
"""
from __future__ import annotations

import math
import numbers
from types import ModuleType
from typing import Any, Optional, Tuple, Union

import numpy as np

from .backend import as_backend_array, namespace_of
from .parameter import Parameter
from .random import as_generator

__all__ = ["calculate_gain", "constant_", "fan_in_and_fan_out", "kaiming_normal_", "kaiming_uniform_", "normal_",
           "ones_", "orthogonal_", "uniform_", "xavier_normal_", "xavier_uniform_", "zeros_"]

Tensor = Any  # a Parameter, or an array of any array API namespace
Generator = Union[np.random.Generator, int, None]

_LINEAR = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d")


def _target(tensor: Tensor, what: str) -> Tuple[Any, ModuleType]:
    """The array to fill (a Parameter's value), and its namespace; refused when it cannot take floats in place."""
    array = tensor.value if isinstance(tensor, Parameter) else tensor
    if not hasattr(array, "shape") or not hasattr(array, "dtype") or isinstance(array, np.generic):
        raise TypeError(f"{what} fills a Parameter or an array, got {type(tensor).__name__}")
    xp = namespace_of(array)
    if not xp.isdtype(array.dtype, "real floating"):
        raise TypeError(f"{what} fills floating-point arrays, got dtype {array.dtype}")
    if isinstance(array, np.ndarray) and not array.flags.writeable:
        raise ValueError(f"{what}: the array is read-only")
    return array, xp


def _number(name: str, value: Any, *, positive: bool = False) -> float:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}: {value!r}")
    value = float(value)
    if not math.isfinite(value) or (positive and value < 0):
        raise ValueError(f"Invalid {name}: {value!r} (must be finite{' and >= 0' if positive else ''})")
    return value


def _fill(tensor: Tensor, array: Any, xp: ModuleType, values: np.ndarray) -> Tensor:
    """Write NumPy ``values`` (float64) into ``array`` in place, in its dtype; return what was given."""
    array[...] = xp.astype(as_backend_array(np.asarray(values, dtype=np.float64), xp), array.dtype)
    return tensor


def calculate_gain(nonlinearity: str, param: Optional[float] = None) -> float:
    r"""The gain that keeps the variance of activations through ``nonlinearity``, as torch's (1 for linear layers).

    ============================  ====================================================
    linear, conv*, sigmoid        :math:`1`
    tanh                          :math:`5/3`
    relu                          :math:`\sqrt 2`
    leaky_relu                    :math:`\sqrt{2/(1 + s^2)}`, ``param`` the slope :math:`s` (0.01)
    selu                          :math:`3/4`
    ============================  ====================================================
    """
    if nonlinearity in _LINEAR or nonlinearity == "sigmoid":
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif not isinstance(param, bool) and isinstance(param, (int, float)):
            slope = param
        else:
            raise ValueError(f"negative_slope {param} not a valid number")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"Unsupported nonlinearity {nonlinearity}")


def fan_in_and_fan_out(shape: Tuple[int, ...]) -> Tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight of ``shape`` (torch's ``_calculate_fan_in_and_fan_out``); 2 axes at least."""
    if len(shape) < 2:
        raise ValueError("Fan in and fan out can not be computed for tensor with fewer than 2 dimensions")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _fan(shape: Tuple[int, ...], mode: str) -> int:
    mode = mode.lower() if isinstance(mode, str) else mode
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"Mode {mode} not supported, please use one of ['fan_in', 'fan_out']")
    fan_in, fan_out = fan_in_and_fan_out(shape)
    return fan_in if mode == "fan_in" else fan_out


def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0, generator: Generator = None) -> Tensor:
    r"""Fill with draws of :math:`U(a, b)`."""
    array, xp = _target(tensor, "uniform_")
    low, high = _number("a", a), _number("b", b)
    if high < low:
        raise ValueError(f"uniform_ expects a <= b, got a={low!r}, b={high!r}")
    return _fill(tensor, array, xp, as_generator(generator).uniform(low, high, size=tuple(array.shape)))


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, generator: Generator = None) -> Tensor:
    r"""Fill with draws of :math:`\mathcal N(\text{mean}, \text{std}^2)`."""
    array, xp = _target(tensor, "normal_")
    mean, std = _number("mean", mean), _number("std", std, positive=True)
    return _fill(tensor, array, xp, as_generator(generator).normal(mean, std, size=tuple(array.shape)))


def constant_(tensor: Tensor, val: float) -> Tensor:
    """Fill with ``val`` (any real number, as torch's ``fill_``)."""
    array, xp = _target(tensor, "constant_")
    value = val.item() if isinstance(val, np.generic) else val
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"val must be a real number, got {type(val).__name__}: {val!r}")
    return _fill(tensor, array, xp, np.full(tuple(array.shape), float(value)))


def ones_(tensor: Tensor) -> Tensor:
    """Fill with ones."""
    return constant_(tensor, 1.0)


def zeros_(tensor: Tensor) -> Tensor:
    """Fill with zeros."""
    return constant_(tensor, 0.0)


def xavier_uniform_(tensor: Tensor, gain: float = 1.0, generator: Generator = None) -> Tensor:
    r"""Glorot and Bengio's (2010) uniform: :math:`U(-a, a)`, :math:`a = g\sqrt{6/(\text{fan\_in}+\text{fan\_out})}`."""
    array, _ = _target(tensor, "xavier_uniform_")
    fan_in, fan_out = fan_in_and_fan_out(tuple(array.shape))
    std = _number("gain", gain) * math.sqrt(2.0 / float(fan_in + fan_out))
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound, generator)


def xavier_normal_(tensor: Tensor, gain: float = 1.0, generator: Generator = None) -> Tensor:
    r"""Glorot and Bengio's (2010) normal: :math:`\mathcal N(0, \sigma^2)`,
    :math:`\sigma = g\sqrt{2/(\text{fan\_in} + \text{fan\_out})}`."""
    array, _ = _target(tensor, "xavier_normal_")
    fan_in, fan_out = fan_in_and_fan_out(tuple(array.shape))
    std = _number("gain", gain) * math.sqrt(2.0 / float(fan_in + fan_out))
    return normal_(tensor, 0.0, std, generator)


def _kaiming_std(array: Any, a: float, mode: str, nonlinearity: str) -> float:
    return calculate_gain(nonlinearity, a) / math.sqrt(_fan(tuple(array.shape), mode))


def kaiming_uniform_(tensor: Tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                     generator: Generator = None) -> Tensor:
    r"""He et al.'s (2015) uniform: :math:`U(-b, b)`, :math:`b = g\sqrt{3/\text{fan}}` (``a``: leaky_relu's slope).

    A weight with no numbers is left as it is (torch warns).
    """
    array, _ = _target(tensor, "kaiming_uniform_")
    if 0 in tuple(array.shape):
        return tensor
    bound = math.sqrt(3.0) * _kaiming_std(array, a, mode, nonlinearity)
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(tensor: Tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                    generator: Generator = None) -> Tensor:
    r"""He et al.'s (2015) normal: :math:`\mathcal N(0, \sigma^2)`, :math:`\sigma = g/\sqrt{\text{fan}}`.

    A weight with no numbers is left as it is (torch warns).
    """
    array, _ = _target(tensor, "kaiming_normal_")
    if 0 in tuple(array.shape):
        return tensor
    return normal_(tensor, 0.0, _kaiming_std(array, a, mode, nonlinearity), generator)


def orthogonal_(tensor: Tensor, gain: float = 1, generator: Generator = None) -> Tensor:
    r"""Saxe et al.'s (2013) orthogonal matrix times ``gain``, the weight seen as ``(rows, numel / rows)``.

    :math:`Q R = A` of a Gaussian :math:`A` (transposed when it is wide),
    with :math:`Q`'s columns multiplied by the signs of :math:`R`'s
    diagonal, so that :math:`Q` is uniformly (Haar) distributed; the rows
    of a wide weight, the columns of a tall one, are orthonormal.
    """
    array, xp = _target(tensor, "orthogonal_")
    shape = tuple(array.shape)
    if len(shape) < 2:
        raise ValueError("Only tensors with 2 or more dimensions are supported")
    gain = _number("gain", gain)
    if math.prod(shape) == 0:
        return tensor
    rows = shape[0]
    cols = math.prod(shape) // rows
    flattened = as_generator(generator).normal(0.0, 1.0, size=(rows, cols))
    if rows < cols:
        flattened = flattened.T
    q, r = np.linalg.qr(flattened)
    q = q * np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return _fill(tensor, array, xp, gain * q.reshape(shape))
