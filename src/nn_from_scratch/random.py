"""Random generators: every random thing in the library takes a Generator or a seed.

:func:`check_generator_state` vets a saved ``bit_generator.state`` (from a
checkpoint) before it is handed to NumPy, whose setters trust their input: an
MT19937 position past its key reads memory out of bounds (and can crash the
process), a Philox buffer position of -1 returns garbage, and an
out-of-range integer raises ``OverflowError`` half-way.
"""
from __future__ import annotations

from typing import Any, Dict, Tuple

import numpy as np

__all__ = ["BIT_GENERATORS", "as_generator", "check_generator_state", "generator_from_state"]

#: Bit generators a saved state may name (a whitelist: nothing else is looked up).
BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")

_U32, _U64, _U128 = 1 << 32, 1 << 64, 1 << 128
#: Per kind: the inner ``state`` entries and the outer entries besides ``bit_generator`` and ``state``.
#: An integer entry is given by its bounds ``(low, high)`` (high exclusive), an array by ``(dtype, shape)``.
_LAYOUTS: Dict[str, Tuple[Dict[str, Any], Dict[str, Any]]] = {
    "PCG64": ({"state": (0, _U128), "inc": (0, _U128)}, {"has_uint32": (0, 2), "uinteger": (0, _U32)}),
    "PCG64DXSM": ({"state": (0, _U128), "inc": (0, _U128)}, {"has_uint32": (0, 2), "uinteger": (0, _U32)}),
    "MT19937": ({"key": (np.uint32, (624,)), "pos": (0, 625)}, {}),
    "Philox": ({"counter": (np.uint64, (4,)), "key": (np.uint64, (2,))},
               {"buffer": (np.uint64, (4,)), "buffer_pos": (0, 5), "has_uint32": (0, 2), "uinteger": (0, _U32)}),
    "SFC64": ({"state": (np.uint64, (4,))}, {"has_uint32": (0, 2), "uinteger": (0, _U32)}),
}


def as_generator(rng: Any = None) -> np.random.Generator:
    """Return a ``numpy.random.Generator`` for ``rng``.

    A Generator is used as it is (shared, so its state advances); an integer
    seeds a new one, so the same seed gives the same numbers bit for bit;
    ``None`` gives a freshly seeded, non-reproducible one.
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        if rng < 0:
            raise ValueError(f"a seed must be a non-negative integer, got {rng}")
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be a numpy.random.Generator, an integer seed or None, got {type(rng).__name__}")


def _check_entry(where: str, value: Any, spec: Any) -> None:
    if isinstance(spec[0], int):
        low, high = spec
        if type(value) is not int or not low <= value < high:  # bool is not an int here
            raise ValueError(f"{where} must be an integer in [{low}, {high}), got {value!r:.80}")
        return
    dtype, shape = spec
    if not isinstance(value, np.ndarray) or value.dtype != np.dtype(dtype) or value.shape != shape:
        described = f"{value.dtype} array of shape {value.shape}" if isinstance(value, np.ndarray) else repr(value)[:80]
        raise ValueError(f"{where} must be a {np.dtype(dtype)} array of shape {shape}, got {described}")


def check_generator_state(state: Any, kind: Any = None) -> str:
    """Check a saved ``bit_generator.state`` completely; return its kind, or raise ``ValueError``.

    The kind must be one of :data:`BIT_GENERATORS` (and equal ``kind`` when
    given); every entry must be there, no other, each an integer in the range
    its generator has or an array of the exact dtype and shape.  A state that
    passes can be set without NumPy failing, crashing or reading garbage.
    PCG increments must be odd, as every real PCG state has them.
    """
    name = state.get("bit_generator") if isinstance(state, dict) else None
    if not isinstance(name, str) or name not in _LAYOUTS:
        raise ValueError(f"unknown bit generator {name!r:.80}; known are {', '.join(BIT_GENERATORS)}")
    if kind is not None and name != kind:
        raise ValueError(f"it was saved as {name}, this generator is {kind}")
    inner, outer = _LAYOUTS[name]
    for where, mapping, layout in (("", state, {"bit_generator": None, "state": None, **outer}),
                                   ("state", state.get("state"), inner)):
        if not isinstance(mapping, dict) or set(mapping) != set(layout):
            keys = sorted(mapping, key=str) if isinstance(mapping, dict) else mapping
            raise ValueError(f"{name} {where or 'the'} state must have the entries {sorted(layout)}, got {keys!r:.120}")
        for key, spec in layout.items():
            if spec is not None:
                _check_entry(f"{name} {where + '/' if where else ''}{key}", mapping[key], spec)
    if name.startswith("PCG64") and state["state"]["inc"] % 2 == 0:
        raise ValueError(f"{name} state/inc must be odd, got {state['state']['inc']}")
    return name


def generator_from_state(state: Any, kind: Any = None) -> np.random.Generator:
    """A new Generator in a saved state, checked first by :func:`check_generator_state` (``ValueError``)."""
    name = check_generator_state(state, kind)
    generator = np.random.Generator(getattr(np.random, name)())
    generator.bit_generator.state = state
    return generator
