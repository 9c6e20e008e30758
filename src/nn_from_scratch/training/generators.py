"""The random generators a model owns (Dropout's ``rng``), found by walking its nodes.

A checkpoint saves the state of each of them, under the names given here,
so that a resumed run draws the same masks as one that was never stopped.
"""
from __future__ import annotations

from typing import Iterator, Tuple

import numpy as np

from ..node import Node

__all__ = ["node_generators"]


def node_generators(model: Node, prefix: str = "") -> Iterator[Tuple[str, np.random.Generator]]:
    """``(name, generator)`` for every ``numpy.random.Generator`` a node of ``model`` keeps as an attribute.

    Names are the node's path as in ``state_dict`` keys plus the attribute:
    ``"2.rng"`` for the ``rng`` of a Dropout at index 2 of a Sequential.
    """
    seen = set()
    for path, node in model.named_nodes(prefix):
        for attribute, value in sorted(vars(node).items()):
            if isinstance(value, np.random.Generator) and id(value) not in seen:
                seen.add(id(value))
                yield path + attribute, value
