r"""Shape nodes: Flatten (alias Vectorization), Reshape, Unsqueeze and Squeeze.

They only move entries around, :math:`y = P x` for a permutation that is the
identity on the flat memory order, so

.. math::
    \frac{\partial y_i}{\partial x_j} = \delta_{ij} \quad\text{(flat indices)}, \qquad
    J^\top g = \operatorname{reshape}(g, \text{x.shape}).
"""
from __future__ import annotations

import math
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..context import Context
from ..node import Node
from .arguments import check_axes, check_axis, normalize_axis
from .broadcasting import identity_jacobian
from .course import course_size

__all__ = ["Flatten", "Reshape", "Squeeze", "Unsqueeze", "Vectorization"]


class _ReshapeNode(Node):
    """Shared derivative of the shape nodes: the backward pass reshapes back, the Jacobian is an identity."""

    def _output_shape(self, x: Any) -> Tuple[int, ...]:
        raise NotImplementedError

    def _forward(self, x: Any, ctx: Context) -> Any:
        return ctx.xp.reshape(x, self._output_shape(x))

    def _vjp(self, g: Any, ctx: Context) -> Any:
        return ctx.xp.reshape(g, tuple(ctx.x.shape))

    def _jacobian(self, ctx: Context) -> Any:
        return identity_jacobian(ctx.xp, ctx.x.shape, ctx.x.dtype, ctx.y.shape)


def _check_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    return int(value)


class Flatten(_ReshapeNode):
    r"""Merge the axes ``start_dim`` … ``end_dim`` (inclusive) into one, like ``torch.nn.Flatten``.

    The default ``Flatten()`` keeps the batch axis and flattens each sample:
    ``(N, C, H, W) -> (N, C·H·W)``; ``(N, D)`` stays ``(N, D)``.  Negative
    axes count from the end of each input.

    .. math::
        y = \operatorname{reshape}(x), \qquad
        \frac{\partial y_i}{\partial x_j} = \delta_{ij}, \qquad
        J^\top g = \operatorname{reshape}(g, \text{x.shape}).

    The output is a view of the input (no copy), as with torch.
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim = _check_int("start_dim", start_dim)
        self.end_dim = _check_int("end_dim", end_dim)

    def config(self) -> Dict[str, Any]:
        return self._config_of("start_dim", "end_dim")

    def _axis(self, name: str, dim: int, ndim: int) -> int:
        rank = max(ndim, 1)  # torch treats a 0-d input as 1-d here
        if not -rank <= dim < rank:
            raise ValueError(
                f"{type(self).__name__}: {name}={dim} is out of range for a {ndim}-d input "
                f"(expected a value in [{-rank}, {rank - 1}])"
            )
        return dim % rank

    def _output_shape(self, x: Any) -> Tuple[int, ...]:
        start = self._axis("start_dim", self.start_dim, x.ndim)
        end = self._axis("end_dim", self.end_dim, x.ndim)
        if start > end:
            raise ValueError(
                f"{type(self).__name__}: start_dim={self.start_dim} comes after end_dim={self.end_dim} "
                f"for input of shape {x.shape}"
            )
        shape = x.shape if x.ndim else (1,)
        return shape[:start] + (math.prod(shape[start:end + 1]),) + shape[end + 1:]

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Vectorization(Flatten):
    r"""The course module's name for :class:`Flatten`: each sample becomes a vector.

    ``Vectorization()`` is ``Flatten(start_dim=1, end_dim=-1)``, so an image
    batch ``(N, C, H, W)`` becomes ``(N, C·H·W)``:

    .. math::
        y_{n,\,k} = x_{n,\,c,\,h,\,w}, \quad k = (c H + h) W + w, \qquad
        \frac{\partial y_i}{\partial x_j} = \delta_{ij}, \qquad
        J^\top g = \operatorname{reshape}(g, \text{x.shape}).

    ``Vectorization((N, C, H, W))`` is the course's form (``docs/course.md``):
    the input size, of two or more axes, which the input must have (the batch
    ``N`` may differ); ``_input_dim`` and ``_output_dim`` ``(N, C·H·W)`` are
    the course's attributes.
    """

    def __init__(self, input_dim: Optional[Sequence[int]] = None) -> None:
        super().__init__()
        shape = course_size(input_dim, "Vectorization")
        if shape is not None and len(shape) < 2:
            raise ValueError(f"Vectorization flattens each sample of a batch: its input size needs two or more axes "
                             f"(N, ...), got {input_dim!r}")
        self.input_shape = shape
        self._input_dim: Optional[Tuple[int, ...]] = None if shape is None else tuple(int(d) for d in input_dim)
        self._output_dim: Optional[Tuple[int, int]] = (
            None if self._input_dim is None else (self._input_dim[0], math.prod(self._input_dim[1:])))

    def config(self) -> Dict[str, Any]:
        return {} if self._input_dim is None else self._config_of(input_dim=self._input_dim)

    def extra_repr(self) -> str:
        return super().extra_repr() if self._input_dim is None else f"input_dim={self._input_dim}"


ShapeArg = Union[int, Sequence[int]]


class Reshape(_ReshapeNode):
    r"""Reshape every sample, keeping the batch axis 0: ``(N, ...) -> (N, *shape)``.

    ``Reshape(3, 4)`` and ``Reshape((3, 4))`` both turn ``(N, 12)`` (or
    ``(N, 2, 6)``) into ``(N, 3, 4)``; one entry may be ``-1``, inferred from
    the sample size.  A shape that does not hold the sample's entries raises
    ``ValueError`` naming both shapes.

    .. math::
        y = \operatorname{reshape}(x), \qquad
        \frac{\partial y_i}{\partial x_j} = \delta_{ij}, \qquad
        J^\top g = \operatorname{reshape}(g, \text{x.shape}).
    """

    def __init__(self, *shape: ShapeArg) -> None:
        super().__init__()
        if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)):
            shape = tuple(shape[0])
        dims = tuple(_check_int("every entry of shape", d) for d in shape)
        if any(d < -1 or d == 0 for d in dims) or dims.count(-1) > 1:
            raise ValueError(
                f"Reshape: shape entries must be positive, with at most one -1 to infer, got {dims}"
            )
        self.shape: Tuple[int, ...] = dims

    def config(self) -> Dict[str, Any]:
        return self._config_of("shape")

    @classmethod
    def from_config(cls, config: Mapping[str, Any], children: Sequence[Any] = ()) -> "Reshape":
        """``Reshape(*config["shape"])``: the sizes are the constructor's positional arguments."""
        return cls._from_positional(config, children, "shape")

    def _output_shape(self, x: Any) -> Tuple[int, ...]:
        if x.ndim == 0:
            raise ValueError("Reshape keeps the batch axis 0 and needs an input with at least one axis, got shape ()")
        sample = math.prod(x.shape[1:])
        known = math.prod(d for d in self.shape if d != -1)
        target = self.shape
        if -1 in target:
            if sample % known:
                raise ValueError(
                    f"Reshape cannot reshape input of shape {x.shape} to {(x.shape[0],) + target}: "
                    f"a sample has {sample} entries, not a multiple of {known}"
                )
            target = tuple(sample // known if d == -1 else d for d in target)
        elif known != sample:
            raise ValueError(
                f"Reshape cannot reshape input of shape {x.shape} to {(x.shape[0],) + target}: "
                f"a sample has {sample} entries, the target shape {target} holds {known}"
            )
        return (x.shape[0],) + target

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


class Unsqueeze(_ReshapeNode):
    r"""Insert an axis of size 1 at ``dim``, as ``torch.unsqueeze``: ``Unsqueeze(1)`` makes ``(N, D)`` ``(N, 1, D)``.

    ``dim`` counts in the output, so for a :math:`d`-dimensional input it
    lies in ``[-(d+1), d]`` (``-1`` appends the axis).  The entries keep their
    flat order:

    .. math::
        y = \operatorname{reshape}(x), \qquad
        \frac{\partial y_i}{\partial x_j} = \delta_{ij}, \qquad
        J^\top g = \operatorname{reshape}(g, \text{x.shape}).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = check_axis("Unsqueeze", dim, "dim")

    def config(self) -> Dict[str, Any]:
        return self._config_of("dim")

    def _output_shape(self, x: Any) -> Tuple[int, ...]:
        dim = normalize_axis("Unsqueeze", self.dim, x.ndim + 1, tuple(x.shape), "dim")
        return tuple(x.shape[:dim]) + (1,) + tuple(x.shape[dim:])

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Squeeze(_ReshapeNode):
    r"""Remove axes of size 1, as ``torch.squeeze``: every one (``dim=None``), or those of ``dim`` (an int or a tuple).

    As in torch, an axis named in ``dim`` whose size is not 1 stays (no
    error), a 0-d input counts as 1-d for the range of ``dim``, and an axis
    out of range raises ``ValueError`` naming the input's shape.

    .. math::
        y = \operatorname{reshape}(x), \qquad
        \frac{\partial y_i}{\partial x_j} = \delta_{ij}, \qquad
        J^\top g = \operatorname{reshape}(g, \text{x.shape}).
    """

    def __init__(self, dim: Union[None, int, Sequence[int]] = None) -> None:
        super().__init__()
        self.dim: Optional[Union[int, Tuple[int, ...]]] = dim if dim is None else (
            check_axis("Squeeze", dim, "dim") if isinstance(dim, (int, np.integer)) and not isinstance(dim, bool)
            else check_axes("Squeeze", dim, "dim"))

    def config(self) -> Dict[str, Any]:
        return self._config_of("dim")

    def _output_shape(self, x: Any) -> Tuple[int, ...]:
        shape = tuple(x.shape)
        if self.dim is None:
            return tuple(n for n in shape if n != 1)
        dims = (self.dim,) if isinstance(self.dim, int) else self.dim
        rank = max(x.ndim, 1)  # torch treats a 0-d input as 1-d here
        axes = {normalize_axis("Squeeze", d, rank, shape, "dim") for d in dims}
        if len(axes) != len(dims):
            raise ValueError(f"Squeeze: dim {self.dim} names one axis twice for input of shape {shape}")
        return tuple(n for a, n in enumerate(shape) if not (a in axes and n == 1))

    def extra_repr(self) -> str:
        return "" if self.dim is None else f"dim={self.dim}"
