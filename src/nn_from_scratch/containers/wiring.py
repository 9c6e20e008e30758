r"""The public description of a container's wiring, one form for every container, and the walk over nested ones.

Every container (Graph, Sequential, Parallel, Residual) answers ``wiring``,
a :class:`Wiring`: the labels of its inputs, its constants (label to array),
its calls in an order that runs (each a :class:`Call`: the use's name, the
node, the labels it reads, the labels it makes) and the labels of its
outputs.  A value is named once, by the call or input that makes it, so the
wiring is a directed acyclic graph written as a list::

    for call in model.wiring.calls:
        print(call.outputs, "=", call.name, call.inputs)

:func:`flat_wiring` opens every nested container in place (its labels
prefixed with the call's name and ``/``) until only leaf nodes remain: the
one walk that an exporter needs, whatever the nesting.  The Add of a
Residual and the Concat of a Parallel appear as calls of nodes made for the
description (``Add()``, ``Concat(axis=-1)``): they hold no parameters.

A node of a Sequential that gives several outputs (Split, Chunk) hands them
on as one value under its label, the next layer taking them as its inputs.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Tuple

from ..node import Node

__all__ = ["Call", "Wiring", "flat_wiring", "wiring_of"]


class Call(NamedTuple):
    """One use of a node: its name (``linear_0``; ``linear_0#2`` for a second use), the node, the labels in and out."""

    name: str
    node: Node
    inputs: Tuple[str, ...]
    outputs: Tuple[str, ...]


class Wiring(NamedTuple):
    """A container's inputs, constants (label to array), calls in an order that runs, and outputs."""

    inputs: Tuple[str, ...]
    constants: Mapping[str, Any]
    calls: Tuple[Call, ...]
    outputs: Tuple[str, ...]


def wiring_of(node: Node) -> Optional[Wiring]:
    """``node.wiring`` for a container, None for a leaf node."""
    wiring = getattr(type(node), "wiring", None)
    return node.wiring if isinstance(wiring, property) else None


def chain(pairs: List[Tuple[str, Node]], source: str = "input") -> Wiring:
    """The wiring of nodes applied one after another (a Sequential): each reads the value the previous one made."""
    calls, last = [], source
    for key, node in pairs:
        calls.append(Call(key, node, (last,), (key,)))
        last = key
    return Wiring((source,), {}, tuple(calls), (last,))


def flat_wiring(model: Node, *, max_depth: int = 256) -> Wiring:
    """``model``'s wiring with every nested container opened in place, down to leaf nodes.

    A nested container's labels are prefixed with its call's name and
    ``/`` (``block/f``); its inputs and outputs are the labels of the call
    that uses it.  A leaf ``model`` gives one call.  Nesting deeper than
    ``max_depth`` (a container made to contain itself) raises ``ValueError``.
    """
    outer = wiring_of(model)
    if outer is None:  # a leaf alone: one call on the model's inputs
        count = getattr(model, "num_inputs", 1)
        inputs = ("input",) if count == 1 else tuple(f"input_{i}" for i in range(count))
        return Wiring(inputs, {}, (Call(type(model).__name__.lower(), model, inputs, ("output",)),), ("output",))
    calls: List[Call] = []
    constants: Dict[str, Any] = dict(outer.constants)
    # (prefix, wiring, label map) of containers still to open; a stack of iterators keeps the calls in order
    stack: List[Tuple[str, Wiring, Dict[str, str], int]] = [("", outer, {}, 0)]
    position = [0]
    while stack:
        prefix, wiring, renamed, depth = stack[-1]
        index = position[-1]
        if index == len(wiring.calls):
            stack.pop()
            position.pop()
            continue
        position[-1] += 1
        call = wiring.calls[index]

        def label(name: str) -> str:
            return renamed.get(name, prefix + name)

        inputs = tuple(label(name) for name in call.inputs)
        outputs = tuple(label(name) for name in call.outputs)
        inner = wiring_of(call.node)
        if inner is None:
            calls.append(Call(prefix + call.name, call.node, inputs, outputs))
            continue
        if depth + 1 > max_depth:
            raise ValueError(f"flat_wiring: containers nested deeper than {max_depth} at {prefix + call.name}")
        if len(inner.inputs) != len(inputs) or len(inner.outputs) != len(outputs):
            raise ValueError(f"flat_wiring: {prefix + call.name} is called on {len(inputs)} values and makes "
                             f"{len(outputs)}, but its wiring takes {len(inner.inputs)} and makes {len(inner.outputs)}")
        inner_prefix = f"{prefix}{call.name}/"
        mapping = dict(zip(inner.inputs, inputs))
        mapping.update(zip(inner.outputs, outputs))
        constants.update({inner_prefix + name: value for name, value in inner.constants.items()})
        stack.append((inner_prefix, inner, mapping, depth + 1))
        position.append(0)
    return Wiring(outer.inputs, constants, tuple(calls), outer.outputs)
