r"""The integer arguments of the nodes of several inputs or outputs, checked in one place: axes and input counts.

An axis (Concat, Stack, Split, Chunk, Sum, Mean) is an integer (a bool is
refused), negative axes count from the end, and an axis out of range for an
input raises ``ValueError`` naming the input's shape.  An input count
(``num_inputs`` of Add, Concat, Stack) is an integer with a lower bound.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = ["AxisArg", "check_axes", "check_axis", "check_count", "normalize_axis"]

AxisArg = Union[None, int, Sequence[int]]


def check_axis(who: str, axis: Any, name: str = "axis") -> int:
    """``axis`` as an int; ``TypeError`` for anything that is not an integer (a bool included)."""
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{who}: {name} must be an integer, got {axis!r}")
    return int(axis)


def normalize_axis(who: str, axis: int, ndim: int, shape: Tuple[int, ...]) -> int:
    """``axis`` in ``[0, ndim)`` from ``[-ndim, ndim)``; ``ValueError`` naming the shape otherwise."""
    if not -ndim <= axis < ndim:
        raise ValueError(
            f"{who}: axis {axis} is out of range for input of shape {shape} "
            f"(expected a value in [{-ndim}, {ndim - 1}])" if ndim else
            f"{who}: an input of shape () has no axis {axis}; give arrays with at least one axis"
        )
    return axis % ndim


def check_axes(who: str, axis: AxisArg) -> Optional[Tuple[int, ...]]:
    """``axis`` as a tuple of distinct ints, or None for every axis; ``TypeError``/``ValueError`` otherwise."""
    if axis is None:
        return None
    if isinstance(axis, (int, np.integer)) and not isinstance(axis, bool):
        return (int(axis),)
    if isinstance(axis, (str, bytes)) or not isinstance(axis, Sequence):
        raise TypeError(f"{who}: axis must be None, an integer or a tuple of integers, got {axis!r}")
    axes = tuple(check_axis(who, a) for a in axis)
    if not axes:
        raise ValueError(f"{who}: axis=() is ambiguous (NumPy reduces no axis, torch every axis); "
                         "give axis=None for every axis")
    if len(set(axes)) != len(axes):
        raise ValueError(f"{who}: axis {axes} repeats an axis")
    return axes


def check_count(who: str, num_inputs: Any, least: int) -> int:
    """``num_inputs`` as an int of at least ``least``; ``TypeError`` for a non-integer, ``ValueError`` below."""
    if isinstance(num_inputs, bool) or not isinstance(num_inputs, (int, np.integer)):
        raise TypeError(f"{who}: num_inputs must be an integer, got {num_inputs!r}")
    if num_inputs < least:
        raise ValueError(f"{who}: num_inputs must be at least {least}, got {num_inputs}")
    return int(num_inputs)
