r"""The loss of single-object localisation: a class and a box predicted together."""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from ..backend import as_backend_array, namespace_of, to_numpy
from ..context import Context, as_float_array
from .base import Loss
from .classification import CrossEntropyLoss
from .regression import MSELoss, SmoothL1Loss

__all__ = ["LocalizationLoss"]


class LocalizationLoss(Loss):
    r"""Cross-entropy for the class plus a box regression loss, weighted.

    The prediction is ``(N, C + 4)``: ``C`` class logits followed by a box
    ``(x, y, w, h)``.  The target is ``(N, 5)``: the class index (stored as a
    float, it must be a whole number) followed by the true box.  With
    :math:`\mathrm{CE}` the mean cross-entropy and :math:`B` the mean box loss
    (smooth L1 by default, or MSE) over the ``4N`` coordinates:

    .. math::
        L = \lambda_c\,\mathrm{CE}(\hat z, t) + \lambda_b\,B(\hat b, b), \qquad
        \frac{\partial L}{\partial \hat z} = \lambda_c \frac{\partial \mathrm{CE}}{\partial \hat z}, \qquad
        \frac{\partial L}{\partial \hat b} = \lambda_b \frac{\partial B}{\partial \hat b}.

    ``label_smoothing`` :math:`\varepsilon` is passed to the cross-entropy
    (the target row becomes :math:`(1-\varepsilon)\,e_t + \varepsilon/C`);
    ``beta`` is the smooth-L1 threshold (ignored for MSE).

    Only ``reduction='mean'`` is offered: the two terms are means over
    different counts, so a per-sample 'none' would be ambiguous.
    """

    _has_classes = True

    def __init__(self, num_classes: int, *, class_weight: float = 1.0, box_weight: float = 1.0,
                 box_loss: str = "smooth_l1", beta: float = 0.05, label_smoothing: float = 0.0) -> None:
        super().__init__("mean")
        if not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        for name, weight in (("class_weight", class_weight), ("box_weight", box_weight)):
            if not (isinstance(weight, (int, float)) and np.isfinite(weight) and weight >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {weight!r}")
        if box_loss not in ("smooth_l1", "mse"):
            raise ValueError(f"box_loss must be 'smooth_l1' or 'mse', got {box_loss!r}")
        self.num_classes = int(num_classes)
        self.class_weight, self.box_weight = float(class_weight), float(box_weight)
        self.box_loss = box_loss
        self.classification = CrossEntropyLoss(label_smoothing=label_smoothing)
        self.box = SmoothL1Loss(beta=beta) if box_loss == "smooth_l1" else MSELoss()

    def _check_input(self, x: Any) -> None:
        if x.ndim != 2 or x.shape[1] != self.num_classes + 4:
            raise ValueError(
                f"LocalizationLoss expects predictions of shape (N, {self.num_classes + 4}) "
                f"({self.num_classes} class logits and a box), got {tuple(x.shape)}"
            )

    def _prepare_target(self, target: Any, prediction: Any) -> Any:
        xp = namespace_of(prediction)
        t = as_backend_array(as_float_array(target, "target"), xp)
        if tuple(t.shape) != (prediction.shape[0], 5):
            raise ValueError(
                f"LocalizationLoss expects targets of shape ({prediction.shape[0]}, 5) (class, x, y, w, h), "
                f"got {tuple(t.shape)}"
            )
        labels = t[:, 0]
        if not bool(xp.all(labels == xp.round(labels))):
            raise ValueError("LocalizationLoss: the first target column holds class indices and must be whole numbers")
        return t

    def _split(self, x: Any, t: Any, update_state: bool) -> Tuple[Context, Context]:
        """The passes of the two sub-losses, through their public ``run``."""
        xp = namespace_of(x)
        logits, boxes = x[:, : self.num_classes], x[:, self.num_classes:]
        class_ctx = self.classification.run(logits, xp.astype(t[:, 0], xp.int64), update_state=update_state)
        box_ctx = self.box.run(boxes, t[:, 1:], update_state=update_state)
        return class_ctx, box_ctx

    def _forward(self, x: Any, ctx: Context) -> Any:
        ctx.parts = self._split(x, ctx.target, ctx.update_state)
        class_ctx, box_ctx = ctx.parts
        # L = λ_c CE + λ_b B
        return ctx.xp.asarray(self.class_weight * class_ctx.y + self.box_weight * box_ctx.y, dtype=x.dtype)

    def _vjp(self, g: Any, ctx: Context) -> Any:
        class_ctx, box_ctx = ctx.parts
        d_logits = self.classification.vjp_from(class_ctx, g * self.class_weight)  # λ_c dCE/dẑ
        d_boxes = self.box.vjp_from(box_ctx, g * self.box_weight)  # λ_b dB/db̂
        return ctx.xp.concat([d_logits, d_boxes], axis=1)

    def probabilities(self, prediction: Any) -> Any:
        """Class probabilities (softmax of the logits part)."""
        x = self._prepare_input(prediction)
        return self.classification.probabilities(x[:, : self.num_classes])

    def split(self, prediction: Any) -> Tuple[Any, Any]:
        """``(logits, boxes)``: the ``(N, C)`` class logits and the ``(N, 4)`` boxes of a prediction (views)."""
        x = self._prepare_input(prediction)
        return x[:, : self.num_classes], x[:, self.num_classes:]

    def predict_classes(self, prediction: Any) -> Any:
        r"""Predicted class indices, :math:`\arg\max_c \hat z_c` over the logits part only (never the box)."""
        logits = self.split(prediction)[0]
        return namespace_of(logits).argmax(logits, axis=1)

    def count_correct(self, prediction: Any, target: Any) -> Optional[int]:
        """Samples whose predicted class (argmax of the logits part) is the true one (``target[:, 0]``)."""
        predicted = to_numpy(self.predict_classes(prediction))
        return int(np.count_nonzero(predicted == to_numpy(target)[:, 0]))

    def extra_repr(self) -> str:
        smoothing = self.classification.label_smoothing
        return (f"num_classes={self.num_classes}, class_weight={self.class_weight:g}, "
                f"box_weight={self.box_weight:g}, box={self.box!r}"
                + (f", label_smoothing={smoothing:g}" if smoothing else ""))
