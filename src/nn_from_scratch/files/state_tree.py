"""Nested states (an optimizer's ``state_dict``) as JSON plus named arrays, and back: how checkpoints store them."""
from __future__ import annotations

from typing import Any, Mapping, Tuple

import numpy as np

from .arrays import Arrays

__all__ = ["flatten_state", "unflatten_state"]

_ARRAY, _TUPLE, _ITEMS = "__array__", "__tuple__", "__items__"


def flatten_state(state: Any, prefix: str = "") -> Tuple[Any, Arrays]:
    """Split a nested state (dicts, lists, tuples, scalars, arrays) into JSON and named arrays.

    Every array becomes ``{"__array__": name}`` in the JSON, with ``name``
    its path below ``prefix`` (``"optimizer/state/0/exp_avg"``); tuples
    and dicts whose keys are not plain strings are tagged so that
    :func:`unflatten_state` gives back exactly the same structure (integer
    keys stay integers, tuples stay tuples).  NumPy scalars become Python
    numbers; floats round-trip exactly through JSON.
    """
    arrays: Arrays = {}

    def encode(value: Any, path: Tuple[str, ...]) -> Any:
        if isinstance(value, np.ndarray):
            name = prefix + "/".join(path)
            if name in arrays:
                raise ValueError(f"two entries of the state share the array name {name!r}")
            arrays[name] = np.array(value, copy=True)
            return {_ARRAY: name}
        if isinstance(value, np.generic):
            return encode(value.item(), path)
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, tuple):
            return {_TUPLE: [encode(v, path + (str(i),)) for i, v in enumerate(value)]}
        if isinstance(value, list):
            return [encode(v, path + (str(i),)) for i, v in enumerate(value)]
        if isinstance(value, Mapping):
            if all(isinstance(k, str) and not k.startswith("__") for k in value):
                return {k: encode(v, path + (k,)) for k, v in value.items()}
            return {_ITEMS: [[encode(k, path), encode(v, path + (str(k),))] for k, v in value.items()]}
        raise TypeError(f"cannot store a {type(value).__name__} in a checkpoint (at {'/'.join(path) or 'top level'})")

    return encode(state, ()), arrays


def unflatten_state(tree: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    """Inverse of :func:`flatten_state`; a reference to a missing array raises ``ValueError``."""
    def decode(value: Any) -> Any:
        if isinstance(value, list):
            return [decode(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1 and _ARRAY in value:
            name = value[_ARRAY]
            if not isinstance(name, str) or name not in arrays:
                raise ValueError(f"the state refers to an array {name!r} that the file does not hold")
            return arrays[name]
        if len(value) == 1 and _TUPLE in value and isinstance(value[_TUPLE], list):
            return tuple(decode(v) for v in value[_TUPLE])
        if len(value) == 1 and _ITEMS in value and isinstance(value[_ITEMS], list):
            result = {}
            for item in value[_ITEMS]:
                if not isinstance(item, list) or len(item) != 2:
                    raise ValueError(f"malformed {_ITEMS} entry {item!r:.100}")
                key = decode(item[0])
                try:
                    result[key] = decode(item[1])
                except TypeError:  # an unhashable key
                    raise ValueError(f"malformed {_ITEMS} key {item[0]!r:.100}") from None
            return result
        return {k: decode(v) for k, v in value.items()}

    return decode(tree)

