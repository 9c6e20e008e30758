"""A node of a user's own, registered so that a model holding it saves with its architecture (outside the library)."""
from __future__ import annotations

from typing import Any, Dict

from nn_from_scratch.nodes import ElementwiseNode
from nn_from_scratch.registry import register_node


@register_node
class Shift(ElementwiseNode):
    """``y = x + amount``."""

    def __init__(self, amount: float = 0.0) -> None:
        super().__init__()
        self.amount = float(amount)

    def config(self) -> Dict[str, Any]:
        return self._config_of("amount")

    def _forward(self, x: Any, ctx: Any) -> Any:
        return x + self.amount

    def _derivative(self, ctx: Any) -> Any:
        return ctx.xp.ones_like(ctx.x)
