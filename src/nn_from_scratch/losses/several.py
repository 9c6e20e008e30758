r"""Losses of several predictions: the prediction is a tuple, and so is its gradient.

torch's ``CosineEmbeddingLoss(x1, x2, y)``, ``MarginRankingLoss(x1, x2, y)``,
``TripletMarginLoss(anchor, positive, negative)`` and
``GaussianNLLLoss(input, target, var)`` differentiate two or three arrays.
Under the criterion's contract (``docs/architecture.md``, "The Node
contract") these are one prediction that is a tuple: the pass runs on
several inputs, which :class:`~nn_from_scratch.function.Function` already
serves, so

* ``forward((x1, x2), y)`` returns the loss, ``backward()`` the tuple
  ``(dL/dx1, dL/dx2)``, ``jacobian()`` one block per prediction,
  ``loss.shape + x_i.shape``; ``value``, ``evaluate`` and the context calls
  take the same tuple;
* ``forward`` also takes torch's order, ``forward(x1, x2, y)`` (three
  arguments), so a torch call reads the same here.

The predictions are computed in their common dtype (torch's promotion) and
their gradients come in it.  A loss without a target (the triplet loss)
takes ``forward((a, p, n))`` or ``forward(a, p, n)``.
"""
from __future__ import annotations

from typing import Any, Tuple, Union

from ..backend import namespace_of
from ..context import as_float_array
from .base import Loss

__all__ = ["SeveralPredictionsLoss"]


class SeveralPredictionsLoss(Loss):
    """A loss whose prediction is a tuple of arrays (``prediction_names``), each with a gradient.

    A subclass names its predictions and torch's forward arguments
    (``torch_order``, which holds ``"target"`` unless ``has_target`` is
    false), checks the predictions in ``_check_predictions(parts)`` and the
    target in ``_prepare_target(target, parts)``, and writes
    ``_forward(*parts, ctx)`` and ``_vjp(g, ctx)``, which returns one
    gradient per prediction.
    """

    prediction_names: Tuple[str, ...] = ()
    torch_order: Tuple[str, ...] = ()
    has_target = True

    # ------------------------------------------------------------ the faces, in either order
    def forward(self, *arguments: Any) -> Union[float, Any]:  # type: ignore[override]
        """The loss of ``(predictions, target)``, or of torch's arguments in torch's order; keeps the pass."""
        prediction, target = self._contract_arguments(arguments)
        return super().forward(prediction, target)

    def __call__(self, *arguments: Any) -> Union[float, Any]:  # type: ignore[override]
        return self.forward(*arguments)

    def jacobian(self, prediction: Any = None, target: Any = None) -> Any:
        """One dense block per prediction, ``loss.shape + x_i.shape``, at the kept pass or at the arguments."""
        if prediction is None and target is not None:
            prediction = self._require_ctx("jacobian").inputs
        return super().jacobian(prediction, target)

    def _contract_arguments(self, arguments: Tuple[Any, ...]) -> Tuple[Any, Any]:
        if len(arguments) == len(self.torch_order):
            named = dict(zip(self.torch_order, arguments))
            return tuple(named[name] for name in self.prediction_names), named.get("target")
        if len(arguments) in ((1, 2) if not self.has_target else (2,)):
            return arguments[0], arguments[1] if len(arguments) == 2 else None
        target = ", target" if self.has_target else ""
        raise TypeError(f"{type(self).__name__}.forward takes ({', '.join(self.prediction_names)}){target} or torch's "
                        f"{', '.join(self.torch_order)}; got {len(arguments)} arguments")

    def _target_or_kept(self, target: Any, what: str) -> Any:
        return super()._target_or_kept(target, what) if self.has_target else target

    # ------------------------------------------------------------ the inputs
    def _prepare_inputs(self, inputs: Tuple[Any, ...]) -> Tuple[Tuple[Any, ...], dict]:
        prediction, target = inputs
        parts = self._prepare_predictions(prediction)
        if not self.has_target:
            if target is not None:
                raise TypeError(f"{type(self).__name__} takes no target, got {type(target).__name__}")
            return parts, {"target": None}
        return parts, {"target": self._prepare_target(target, parts)}

    def _prepare_predictions(self, prediction: Any) -> Tuple[Any, ...]:
        """The predictions as float arrays of one namespace in their common dtype, checked."""
        names, who = self.prediction_names, type(self).__name__
        if not isinstance(prediction, (tuple, list)) or len(prediction) != len(names):
            target = ", target" if self.has_target else ""
            raise TypeError(f"{who} takes {len(names)} predictions as a tuple, forward(({', '.join(names)}){target}) "
                            f"(or torch's order, forward({', '.join(self.torch_order)})); got a prediction of "
                            f"{type(prediction).__name__}")
        parts = [as_float_array(part, name) for part, name in zip(prediction, names)]
        xp = namespace_of(*parts)
        dtype = xp.result_type(*(part.dtype for part in parts))
        parts = tuple(xp.astype(part, dtype, copy=False) for part in parts)
        self._check_predictions(parts)
        return parts

    def _check_predictions(self, parts: Tuple[Any, ...]) -> None:
        """Raise ``ValueError`` for predictions this loss cannot take."""

    def _same_shapes(self, parts: Tuple[Any, ...], ndims: Tuple[int, ...] = ()) -> None:
        """``ValueError`` unless every prediction has the first one's shape (and, when given, one of ``ndims`` axes)."""
        shapes = [tuple(part.shape) for part in parts]
        named = ", ".join(f"{name} {shape}" for name, shape in zip(self.prediction_names, shapes))
        if len(set(shapes)) != 1:
            raise ValueError(f"{type(self).__name__}: the predictions must have one shape, got {named}")
        if ndims and len(shapes[0]) not in ndims:
            axes = " or ".join(("(N, D)", "(D,)")[2 - n] for n in sorted(ndims, reverse=True))
            raise ValueError(f"{type(self).__name__}: the predictions must have shape {axes}, got {named}")

