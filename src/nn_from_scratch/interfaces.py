r"""The course's abstract classes: ``Node``, ``Neuron`` and ``Optimizer``, with the course's faces.

The course this library grew from (``docs/course.md``) wrote every layer
against these three.  They are kept here so that code written for the course
runs unchanged: :mod:`nn_from_scratch.neurons` (``Linear``, ``Convolution``,
the course's ``ReLU``), :mod:`nn_from_scratch.optimizers`
(``GradientDescent``) and :mod:`nn_from_scratch.examples.simple_nn`
(``NeuralNetwork``) stand on them, each a thin layer over the library's own
nodes.  A student's own subclass of :class:`Node` gives ``__call__`` (the
function) and ``jacobian`` (in the course's layout, below) and gets
``forward`` and ``backward`` from here.

**The course's shapes.**  A node is built with its input and output sizes (an
int for a vector, a tuple for a matrix or a batch of images) and an *inner*
number of axes: ``forward`` brings its input to that many axes with
:meth:`Node._change_dims` (leading axes of length 1 added or dropped), computes
there, and answers with as many axes as the sizes have.  A course Jacobian is
laid out *input axes first*, ``x.shape + y.shape`` (the library's own is
``y.shape + x.shape``), so that :math:`\partial L/\partial x = \sum_y
J[x, y]\, g[y]`.

Where this layer differs from the course's code on purpose, it says so in
``docs/course.md``; here: the generic ``backward`` contracts the Jacobian with
the gradient over *all* the output's axes (the course's summed over the axes
after the second, right only for inputs of two axes).
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

from .backend import namespace_of
from .context import as_float_array
from .nodes.course import CourseSizes, course_sizes

__all__ = ["NNTypes", "Neuron", "Node", "Optimizer", "contract", "course_layout"]


class NNTypes:
    """The course's type names: sizes of one, two or three axes (or an int), and float arrays."""

    M_DIM = Tuple[int, int]
    T_DIM = Tuple[int, int, int]
    DIM = Union[int, Sequence[int]]
    np_floating = npt.NDArray[np.float64]
    optional_np_floating = Optional[npt.NDArray[np.float64]]


def _shape(a: Any) -> Tuple[int, ...]:
    return tuple(a.shape) if hasattr(a, "shape") else tuple(np.shape(a))


def course_layout(jacobian: Any, y_ndim: int) -> Any:
    """The library's Jacobian ``y.shape + x.shape`` in the course's layout ``x.shape + y.shape``."""
    xp = namespace_of(jacobian)
    axes = tuple(range(y_ndim, jacobian.ndim)) + tuple(range(y_ndim))
    return xp.permute_dims(jacobian, axes)


def contract(jacobian: Any, g: Any) -> Any:
    r""":math:`\partial L/\partial x = \sum_y J[x, y]\, g[y]` for a course Jacobian, ``x.shape + y.shape``."""
    xp = namespace_of(jacobian, g)
    return xp.tensordot(jacobian, g, axes=g.ndim)


class Node(CourseSizes):
    """The course's abstract node: ``__call__`` (the function) and ``jacobian`` given; ``forward``, ``backward`` here.

    ``input_dim`` and ``output_dim`` are the course's sizes (an int or a
    tuple of ints), ``inner_ndim`` the number of axes the node computes with,
    ``is_output_node`` true for a loss (``forward(x, labels)``, and
    ``backward()`` returning the loss's gradient).
    """

    DIM = NNTypes.DIM
    np_floating = NNTypes.np_floating
    optional_np_floating = NNTypes.optional_np_floating

    def __init__(self, input_dim: DIM, output_dim: DIM, inner_ndim: int, is_output_node: bool = False) -> None:
        who = type(self).__name__
        self._input_dim: Tuple[int, ...] = course_sizes(input_dim, who, "input_dim")
        self._input_ndim: int = 1 if isinstance(input_dim, (int, np.integer)) else len(self._input_dim)
        self._output_dim: Tuple[int, ...] = course_sizes(output_dim, who, "output_dim")
        # the course's rule: an int input size means vectors out, whatever the output size
        self._output_ndim: int = 1 if isinstance(input_dim, (int, np.integer)) else len(self._output_dim)
        if isinstance(inner_ndim, (bool, np.bool_)) or not isinstance(inner_ndim, (int, np.integer)) or inner_ndim < 1:
            raise ValueError(f"{who}: inner_ndim must be a positive int, got {inner_ndim!r}")
        self._inner_ndim: int = int(inner_ndim)
        self._is_output_node: bool = bool(is_output_node)
        self.reset()

    def reset(self) -> None:
        """Forget the last pass."""
        self._initialized = False
        self._input_values: Any = None
        self._output_values: Any = None
        self._labels: Any = None

    def __call__(self, x: Any, y: Any = None) -> Any:
        """The function on an input of ``inner_ndim`` axes (and the labels, for a loss); a subclass gives it."""
        raise NotImplementedError(f"{type(self).__name__} must define __call__, the node's function")

    def jacobian(self, x: Any = None, y: Any = None) -> Any:
        """The Jacobian in the course's layout, ``x.shape + y.shape`` (a loss's: its gradient); a subclass gives it."""
        raise NotImplementedError(f"{type(self).__name__} must define jacobian")

    def _change_dims(self, x: Any, ndim: int) -> Any:
        """``x`` with ``ndim`` axes: leading axes of length 1 added, or dropped (the course's shape rule)."""
        xp = namespace_of(x)
        x = xp.asarray(x)
        if x.ndim > ndim:
            if any(d != 1 for d in x.shape[:x.ndim - ndim]):
                raise ValueError(f"{type(self).__name__}: an array of shape {tuple(x.shape)} cannot be taken as "
                                 f"{ndim} axes: only leading axes of length 1 are dropped")
            return xp.reshape(x, tuple(x.shape[x.ndim - ndim:]))
        if x.ndim < ndim:
            return xp.reshape(x, (1,) * (ndim - x.ndim) + tuple(x.shape))
        return x

    def forward(self, input: Any, labels: Any = None) -> Any:
        """The node's output for ``input`` (and ``labels``, for a loss), keeping the pass for ``backward``."""
        if labels is None and self._is_output_node:
            raise ValueError(f"{type(self).__name__}.forward: labels are not provided")
        self._input_values = self._change_dims(as_float_array(input, "input"), self._inner_ndim)
        if self._is_output_node:
            self._labels = self._change_dims(as_float_array(labels, "labels"), self._inner_ndim)
            self._output_values = self(self._input_values, self._labels)
        else:
            self._output_values = self(self._input_values)
        self._initialized = True
        return self._change_dims(self._output_values, self._output_ndim)

    def backward(self, input_pd: Any = None, reset_after: bool = True) -> Any:
        """``dL/dx``: :func:`contract` of the course Jacobian with ``input_pd`` (for a loss: its gradient)."""
        self._require_pass("backward")
        if input_pd is None and not self._is_output_node:
            raise ValueError(f"{type(self).__name__}.backward: partial derivatives are not provided")
        jacobian = self.jacobian(self._input_values)
        if self._is_output_node:
            dx = jacobian
        else:
            g = self._change_dims(as_float_array(input_pd, "input_pd"), jacobian.ndim - self._input_values.ndim)
            dx = contract(jacobian, g)
        if reset_after:
            self.reset()
        return self._change_dims(dx, self._input_ndim)

    def _require_pass(self, what: str) -> None:
        if not self._initialized:
            raise RuntimeError(f"{type(self).__name__}.{what}: forward must run first (the course: 'system not "
                               "initialized')")


class Optimizer:
    """The course's abstract optimizer: ``optimize(targets, gradients)`` returns the updated targets.

    A subclass calls ``super().optimize(...)`` first (it checks the two lists)
    and returns new arrays; ``reset()`` starts an epoch, ``limit_reached()``
    says whether training may stop.
    """

    np_floating = NNTypes.np_floating

    def optimize(self, optimized_target: Sequence[Any], gradients: Sequence[Any]) -> Optional[List[Any]]:
        """Check that there is one gradient of the target's shape per target (a subclass then updates them)."""
        who = type(self).__name__
        if isinstance(optimized_target, (str, bytes)) or not hasattr(optimized_target, "__len__"):
            raise TypeError(f"{who}.optimize takes a list of targets and a list of gradients, got "
                            f"{type(optimized_target).__name__}")
        if isinstance(gradients, (str, bytes)) or not hasattr(gradients, "__len__"):
            raise TypeError(f"{who}.optimize takes a list of gradients, got {type(gradients).__name__}")
        if len(optimized_target) != len(gradients):
            raise ValueError(f"{who}.optimize: lists of targets and gradients are unequal: "
                             f"{len(optimized_target)} != {len(gradients)}")
        for i, (target, grad) in enumerate(zip(optimized_target, gradients)):
            if _shape(target) != _shape(grad):
                raise ValueError(f"{who}.optimize: target {i} has shape {_shape(target)} but its gradient "
                                 f"{_shape(grad)}")
        return None

    def reset(self) -> None:
        """Start a new epoch (nothing to do here)."""

    def limit_reached(self) -> bool:
        """Whether the optimizer has reached its limit, so that training may stop (never, here)."""
        return False


class Neuron(Node):
    """The course's node with weights: ``optimize_weights(optimizer)`` updates them after a backward pass."""

    def optimize_weights(self, optimizer: Optimizer) -> None:
        """Check that a pass was made (a subclass then hands its weights and gradients to ``optimizer``)."""
        if not self._initialized:
            raise RuntimeError(f"{type(self).__name__}.optimize_weights: optimization failed, the system is not "
                               "initialized (forward and backward must run first)")
