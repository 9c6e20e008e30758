r"""Building a Graph: from the calls recorded on placeholders to the nodes, constants and names a Graph holds.

:class:`~nn_from_scratch.containers.graph.Graph` asks here for the calls on
a path from its inputs to its outputs (:func:`collect`, without recursion,
in creation order, which is a topological order), for the Constants they
read, for the names of its nodes and constants (the prefixes of its
``state_dict`` keys), and whether a recorded call was left dangling.
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, Optional, Set, Tuple

from ..node import Node
from .placeholders import Placeholder, Use, check_name

__all__ = ["collect", "default_name", "listed", "name_constants", "name_nodes", "refuse_dangling"]


def default_name(node: Node) -> str:
    """``linear`` for Linear, ``batch_norm1d`` for BatchNorm1d (Keras' rule): the stem of a default node name."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", type(node).__name__).lower()


def listed(value: Any, what: str) -> List[Placeholder]:
    """``value`` (a placeholder, or a list or tuple of them) as a non-empty list of placeholders."""
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if not items:
        raise ValueError(f"Graph: {what} must name at least one placeholder")
    for item in items:
        if not isinstance(item, Placeholder):
            raise TypeError(f"Graph: {what} must be placeholders (Input(...) and what nodes called on them return), "
                            f"got {type(item).__name__}")
    return items


def collect(outputs: List[Placeholder], slot_of: Dict[int, int]) -> Tuple[List[Use], List[Placeholder]]:
    """The uses on a path to an output, in topological order (creation order), and the Constants they read.

    Found without recursion; the constants come in order of creation.
    """
    found: Dict[int, Use] = {}
    constants: Dict[int, Placeholder] = {}
    stack: List[Tuple[Placeholder, Optional[Use]]] = [(p, None) for p in outputs]
    while stack:
        p, consumer = stack.pop()
        if p.is_constant:
            constants[id(p)] = p
            continue
        if p.is_input:
            if id(p) not in slot_of:
                who = "an output of the graph" if consumer is None else f"{consumer.node!r}"
                raise ValueError(
                    f"Graph: {who} depends on {p!r}, which is not among the graph's inputs "
                    "(a placeholder of another graph, or an input left out of inputs=)"
                )
            continue
        if id(p.use) not in found:
            found[id(p.use)] = p.use
            stack.extend((q, p.use) for q in p.use.inputs)
    return (sorted(found.values(), key=lambda use: use.serial),
            sorted(constants.values(), key=lambda p: p.serial))


def name_constants(constants: List[Placeholder], node_names: Set[str]) -> List[str]:
    """Each Constant's buffer name: its own, else ``constant_<k>``; ``ValueError`` where two values share one."""
    taken = set(node_names)
    for p in constants:
        if p.name is not None:
            if p.name in taken:
                raise ValueError(f"Graph: the name {p.name!r} of {p!r} is also given to a node or another "
                                 "Constant of the graph")
            taken.add(p.name)
    result, count = [], 0
    for p in constants:
        name = p.name
        while name is None:
            candidate, count = f"constant_{count}", count + 1
            if candidate not in taken:
                name = candidate
                taken.add(name)
        result.append(name)
    return result


def refuse_dangling(inputs: List[Placeholder], uses: List[Use]) -> None:  # inputs: the Inputs and Constants
    """``ValueError`` for a recorded call computed from the graph's values only that reaches no output."""
    values = {id(p) for p in inputs} | {id(p) for use in uses for p in use.made}
    in_graph = {id(use) for use in uses}
    for value in list(inputs) + [p for use in uses for p in use.made]:
        for use in value.consumers:
            if id(use) not in in_graph and all(id(q) in values for q in use.inputs):
                raise ValueError(
                    f"Graph: {use.node!r}{'' if use.name is None else f' (named {use.name!r})'} is computed "
                    f"from {value!r} but its result reaches no output (a dangling branch): use its result, "
                    "or pass allow_dangling=True to leave it out (as for an encoder built from its "
                    "autoencoder's calls)"
                )


def name_nodes(uses: List[Use], names: Optional[Mapping[str, Node]]) -> Dict[Node, str]:
    """Each distinct node's name: given (at the call or in ``names``), else ``<type>_<count>`` by first use."""
    given: Dict[int, str] = {}
    owner: Dict[str, Node] = {}

    def give(node: Node, name: str) -> None:
        if id(node) in given and given[id(node)] != name:
            raise ValueError(f"Graph: {node!r} is given two names, {given[id(node)]!r} and {name!r}")
        if name in owner and owner[name] is not node:
            raise ValueError(f"Graph: the name {name!r} is given to two nodes, {owner[name]!r} and {node!r}")
        given[id(node)], owner[name] = name, node

    in_graph = {id(use.node) for use in uses}
    for name, node in (names or {}).items():
        check_name(name, "a node's name")
        if not isinstance(node, Node) or id(node) not in in_graph:
            raise ValueError(f"Graph: names={{{name!r}: {node!r}}} names a node that is not in the graph")
        give(node, name)
    for use in uses:
        if use.name is not None:
            give(use.node, use.name)
    result: Dict[Node, str] = {}
    counts: Dict[str, int] = {}
    for use in uses:
        node = use.node
        if node in result:
            continue
        if id(node) in given:
            result[node] = given[id(node)]
            continue
        stem = default_name(node)
        while True:
            candidate = f"{stem}_{counts.get(stem, 0)}"
            counts[stem] = counts.get(stem, 0) + 1
            if candidate not in owner:
                break
        owner[candidate] = node
        result[node] = candidate
    return result
