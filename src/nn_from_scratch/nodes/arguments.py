r"""The arguments of the nodes that move entries, checked in one place: axes, input counts, indices and masks.

An axis (Concat, Stack, Split, Chunk, Sum, Mean; the ``dim`` of Permute,
Transpose, Squeeze, Unsqueeze, Gather, IndexSelect) is an integer (a bool is
refused), negative axes count from the end, and an axis out of range for an
input raises ``ValueError`` naming the input's shape.  An input count
(``num_inputs`` of Add, Concat, Stack) is an integer with a lower bound.

The constant inputs (an index of Gather and IndexSelect, a mask of Where and
MaskedFill) are checked here too: an index holds integers, a mask booleans,
as torch asks; anything else is a ``TypeError`` naming the dtype.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = ["AxisArg", "check_axes", "check_axis", "check_count", "check_index", "check_mask", "normalize_axis"]

AxisArg = Union[None, int, Sequence[int]]


def check_axis(who: str, axis: Any, name: str = "axis") -> int:
    """``axis`` as an int; ``TypeError`` for anything that is not an integer (a bool included)."""
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{who}: {name} must be an integer, got {axis!r}")
    return int(axis)


def normalize_axis(who: str, axis: int, ndim: int, shape: Tuple[int, ...], name: str = "axis") -> int:
    """``axis`` in ``[0, ndim)`` from ``[-ndim, ndim)``; ``ValueError`` naming the shape otherwise."""
    if not -ndim <= axis < ndim:
        raise ValueError(
            f"{who}: {name} {axis} is out of range for input of shape {shape} "
            f"(expected a value in [{-ndim}, {ndim - 1}])" if ndim else
            f"{who}: an input of shape () has no axis {axis}; give arrays with at least one axis"
        )
    return axis % ndim


def check_axes(who: str, axis: AxisArg, name: str = "axis") -> Optional[Tuple[int, ...]]:
    """``axis`` as a tuple of distinct ints, or None for every axis; ``TypeError``/``ValueError`` otherwise."""
    if axis is None:
        return None
    if isinstance(axis, (int, np.integer)) and not isinstance(axis, bool):
        return (int(axis),)
    if isinstance(axis, (str, bytes)) or not isinstance(axis, Sequence):
        raise TypeError(f"{who}: {name} must be None, an integer or a tuple of integers, got {axis!r}")
    axes = tuple(check_axis(who, a, name) for a in axis)
    if not axes:
        raise ValueError(f"{who}: {name}=() is ambiguous (NumPy reduces no axis, torch every axis); "
                         f"give {name}=None for every axis")
    if len(set(axes)) != len(axes):
        raise ValueError(f"{who}: {name} {axes} repeats an axis")
    return axes


def check_count(who: str, num_inputs: Any, least: int) -> int:
    """``num_inputs`` as an int of at least ``least``; ``TypeError`` for a non-integer, ``ValueError`` below."""
    if isinstance(num_inputs, bool) or not isinstance(num_inputs, (int, np.integer)):
        raise TypeError(f"{who}: num_inputs must be an integer, got {num_inputs!r}")
    if num_inputs < least:
        raise ValueError(f"{who}: num_inputs must be at least {least}, got {num_inputs}")
    return int(num_inputs)


def check_index(who: str, index: Any, xp: Any) -> None:
    """``TypeError`` unless the constant input ``index`` holds integers (torch takes int64 and int32 indices)."""
    if not xp.isdtype(index.dtype, "integral"):
        raise TypeError(f"{who}: the index must hold integers, got dtype {index.dtype}")


def check_mask(who: str, mask: Any, xp: Any, what: str = "mask") -> None:
    """``TypeError`` unless the constant input ``mask`` holds booleans (torch refuses other masks)."""
    if not xp.isdtype(mask.dtype, "bool"):
        raise TypeError(f"{who}: the {what} must hold booleans (True where it applies), got dtype {mask.dtype}; "
                        "compare to make one (x > 0), or give a graph Input dtype=bool")
