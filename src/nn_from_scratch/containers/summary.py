"""What the containers' ``summary()`` tables share: counting each array once, a node in one line, the table itself.

A Parameter shared by two rows (a node used twice, a weight tied between two
layers) is counted at the first row that reaches it, so the footer's totals
equal ``sum(p.size for p in model.parameters())`` and the buffers'.

The table is a :class:`Summary`: a string (``print`` it, search it, write
it to a file) whose ``repr`` is the table itself, so that a REPL or a
notebook cell that ends in ``model.summary()`` shows the table, not one
escaped line.
"""
from __future__ import annotations

import math
from typing import List, Sequence, Set, Tuple

from ..backend import namespace_of
from ..node import Node

__all__ = ["Summary", "brief", "count_once", "render_table"]


class Summary(str):
    """A summary table: a ``str`` (``str(summary)`` is the text) whose ``repr`` is the table, lines and all."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)


def count_once(node: Node, seen: Set[int]) -> Tuple[int, int]:
    """``(trainable, buffered)`` entry counts of ``node``'s Parameters and floating buffers not in ``seen``.

    The arrays counted are added to ``seen``.  Integer buffers (BatchNorm's
    batch counter) are not counted, as Keras counts none.
    """
    trainable = buffered = 0
    for _, p in node.named_parameters():
        if id(p) not in seen:
            seen.add(id(p))
            trainable += p.size
    for _, b in node.named_buffers():
        if id(b) not in seen and namespace_of(b).isdtype(b.dtype, "real floating"):
            seen.add(id(b))
            buffered += math.prod(b.shape)
    return trainable, buffered


def brief(node: Node) -> str:
    """``node`` in one line: its type, and for a container its children the same way.

    ``Residual(f=Sequential(Conv2d, BatchNorm2d, ReLU), shortcut=Conv2d, after=ReLU)``:
    children named by an index are listed in order, others as ``name=``.  A
    container met again inside itself is shown as ``...``.
    """
    def walk(current: Node, above: frozenset) -> str:
        children = current.children()
        if not children:
            return type(current).__name__
        if id(current) in above:
            return "..."
        inside = above | {id(current)}
        parts = [walk(child, inside) if name.isdigit() else f"{name}={walk(child, inside)}"
                 for name, child in children]
        return f"{type(current).__name__}({', '.join(parts)})"

    return walk(node, frozenset())


def render_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]], trainable: int,
                 buffered: int) -> Summary:
    """The summary table: a title, the header, one line per row (the last column right-aligned), the totals."""
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    last = len(header) - 1

    def line(r: Sequence[str]) -> str:
        return "  ".join(f"{v:>{w}}" if c == last else f"{v:<{w}}" for c, (v, w) in enumerate(zip(r, widths))).rstrip()

    rule = sum(widths) + 2 * last
    text: List[str] = [title, "=" * rule, line(header), "-" * rule]
    text += [line(r) for r in rows]
    text += ["=" * rule, f"Total params: {trainable + buffered:,}", f"Trainable params: {trainable:,}",
             f"Non-trainable params: {buffered:,}"]
    return Summary("\n".join(text))
