r"""Criterion: a loss, a function :math:`L(\hat y, t)` of a prediction and a target that ends a model.

Kept apart from :class:`~nn_from_scratch.node.Node`, as Torch7 keeps
``Criterion`` apart from ``Module``: containers refuse a criterion, the target
has no gradient, and the trainer drives one through its faces.  The faces
mirror a node's (``docs/architecture.md``, "The Node contract") with the
target as a second argument; the machinery under them, float16 computed in
float32 included, is :class:`~nn_from_scratch.function.Function`'s.
:class:`~nn_from_scratch.losses.Loss` is the library's criterion.
"""
from __future__ import annotations

from typing import Any, Tuple, Union

from .context import Context
from .function import Function

__all__ = ["Criterion"]


class Criterion(Function):
    r"""A loss :math:`L(\hat y, t)`: the prediction is its one differentiable input, the target rides on the context.

    A subclass defines ``_prepare_inputs``, returning the prediction as the one
    input and ``{"target": ...}``, ``_forward(prediction, ctx)`` (using
    ``ctx.target``) and ``_vjp(g, ctx)`` (``dL/dprediction`` for an upstream
    ``g`` of the loss value's shape).
    """

    _kind = "loss"
    num_inputs = 2  # run(prediction, target)
    float16_in_float32 = True

    def forward(self, prediction: Any, target: Any) -> Union[float, Any]:
        """The loss of ``prediction`` against ``target`` (a float for a 0-d loss); keeps the pass for ``backward``."""
        ctx = self._keep(lambda: self.run(prediction, target))
        return float(ctx.y) if ctx.y.ndim == 0 else ctx.y

    def __call__(self, prediction: Any, target: Any) -> Union[float, Any]:
        return self.forward(prediction, target)

    def backward(self, dL_dy: Any = 1.0, reset_after: bool = True) -> Any:
        """``dL/dprediction`` of the last forward, times ``dL_dy`` (1 for a loss at the end of the model).

        ``reset_after=False`` keeps the pass so that backward can run again.
        """
        dx = self.backward_from(self._require_ctx("backward"), dL_dy)
        if reset_after:
            self.reset()
        return dx

    def jacobian(self, prediction: Any = None, target: Any = None) -> Any:
        """``∂L/∂prediction`` as a dense array, ``loss.shape + prediction.shape``, at the kept pass or at the arguments.

        An omitted argument is taken from the kept pass, which is never disturbed.
        """
        if prediction is None and target is None:
            return self.jacobian_from(self._require_ctx("jacobian"))
        if prediction is None:
            prediction = self._require_ctx("jacobian").x
        return self.jacobian_from(self.run(prediction, self._target_or_kept(target, "jacobian"), update_state=False))

    def value(self, prediction: Any, target: Any = None) -> Any:
        """The loss as an array (0-d for 'mean' and 'sum'), keeping nothing; ``target`` defaults to the kept pass's."""
        return self.run(prediction, self._target_or_kept(target, "value"), update_state=False).y

    def backward_from(self, ctx: Context, dL_dy: Any = 1.0, *, input_grad: bool = True) -> Any:
        """``dL/dprediction`` for the pass ``ctx``, times ``dL_dy`` (a criterion has no parameters)."""
        return super().backward_from(ctx, dL_dy, input_grad=input_grad)

    def vjp_from(self, ctx: Context, dL_dy: Any = 1.0) -> Any:
        """The same as :meth:`backward_from`: a criterion has no parameters to leave untouched."""
        return super().vjp_from(ctx, dL_dy)

    def _target_or_kept(self, target: Any, what: str) -> Any:
        return self._require_ctx(what).target if target is None else target

    def _prepare_inputs(self, inputs: Tuple[Any, ...]) -> Tuple[Tuple[Any, ...], dict]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    def extra_repr(self) -> str:
        return ""
