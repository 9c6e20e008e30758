r"""Parameters as one flat vector and back, as ``torch.nn.utils.parameters_to_vector`` / ``vector_to_parameters``.

A model's parameters :math:`\theta_1, \dots, \theta_k` (any shapes) are
the one vector :math:`\mathrm{vec}(\theta) = (\mathrm{vec}\,\theta_1, \dots,
\mathrm{vec}\,\theta_k)`, each flattened in C order; L-BFGS works on that
vector (its gradient and its steps), and so can any method of the whole
parameter vector.  Everything is written with the arrays' namespace, so it
runs on NumPy and ``array_api_strict`` alike.
"""
from __future__ import annotations

import math
from types import ModuleType
from typing import Any, Iterable, List, Sequence, Union

from ..backend import namespace_of
from ..parameter import Parameter

__all__ = ["parameters_to_vector", "vector_to_parameters"]

Parameters = Union[Parameter, Iterable[Parameter]]


def parameter_list(parameters: Parameters, what: str) -> List[Parameter]:
    """``parameters`` (a Parameter or an iterable of them, as torch takes a tensor or tensors) as a list."""
    if isinstance(parameters, Parameter):
        return [parameters]
    try:
        listed = list(parameters)
    except TypeError:
        raise TypeError(f"{what} takes a Parameter or an iterable of Parameters, got "
                        f"{type(parameters).__name__}") from None
    for i, p in enumerate(listed):
        if not isinstance(p, Parameter):
            raise TypeError(f"{what} takes Parameters, got {type(p).__name__} at index {i}")
    return listed


def common_namespace(arrays: Sequence[Any], what: str) -> ModuleType:
    """The one array namespace of ``arrays``; ``TypeError`` when they live in several libraries."""
    spaces = [namespace_of(a) for a in arrays]
    if any(xp is not spaces[0] for xp in spaces[1:]):
        names = sorted({xp.__name__ for xp in spaces})
        raise TypeError(f"{what}: the parameters live in several array libraries ({', '.join(names)}); move them "
                        "together (nn_from_scratch.backend.set_backend)")
    return spaces[0]


def flatten(arrays: Sequence[Any], xp: ModuleType) -> Any:
    r""":math:`(\mathrm{vec}\,a_1, \dots, \mathrm{vec}\,a_k)`: a new 1-D array (dtypes promoted as ``concat`` does)."""
    return xp.concat([xp.reshape(a, (-1,)) for a in arrays])


def parameters_to_vector(parameters: Parameters) -> Any:
    """Every parameter's value flattened, one after another, as one new 1-D array of their namespace.

    Mixed dtypes are promoted (float32 and float64 give float64), as
    ``concat`` (and ``torch.cat``) does.
    """
    params = parameter_list(parameters, "parameters_to_vector")
    if not params:
        raise ValueError("parameters_to_vector got no parameters")
    values = [p.value for p in params]
    return flatten(values, common_namespace(values, "parameters_to_vector"))


def vector_to_parameters(vec: Any, parameters: Parameters) -> None:
    """Write the consecutive pieces of the 1-D array ``vec`` into the parameters' values, in place.

    ``vec`` must hold exactly as many numbers as the parameters, in their
    namespace; each piece is cast to its parameter's dtype, so a vector
    from :func:`parameters_to_vector` (promoted to float64) gives float32
    parameters back their own values.  Torch instead points each parameter
    at a view of ``vec``; here each parameter keeps its own array, which
    the optimizers and layers hold.
    """
    params = parameter_list(parameters, "vector_to_parameters")
    if not hasattr(vec, "shape") or not hasattr(vec, "dtype"):
        raise TypeError(f"expected an array, but got: {type(vec).__name__}")
    values = [p.value for p in params]
    xp = common_namespace(values + [vec], "vector_to_parameters")
    total = sum(math.prod(v.shape) for v in values)
    if tuple(vec.shape) != (total,):
        raise ValueError(f"vector_to_parameters: the vector has shape {tuple(vec.shape)}, the parameters hold {total} "
                         f"numbers: give a 1-D array of shape ({total},)")
    if not xp.isdtype(vec.dtype, "real floating"):
        raise TypeError(f"vector_to_parameters: the vector's dtype is {vec.dtype}, not a floating type")
    start = 0
    pieces = []
    for value in values:
        size = math.prod(value.shape)
        pieces.append(xp.astype(xp.reshape(vec[start:start + size], tuple(value.shape)), value.dtype))
        start += size
    for p, piece in zip(params, pieces):  # everything cut and cast before any parameter changes
        p.value[...] = piece
