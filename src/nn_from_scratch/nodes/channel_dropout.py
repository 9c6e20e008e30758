r"""Channel dropout, as torch.nn.Dropout2d: whole feature maps zeroed at once."""
from __future__ import annotations

from typing import Any, Dict, Tuple

import numpy as np

from .regularization import Dropout

__all__ = ["Dropout2d"]


class Dropout2d(Dropout):
    r"""Inverted dropout of whole channels, as ``torch.nn.Dropout2d(p, inplace)``: in training each channel of
    each sample is zeroed with probability :math:`p`, the others scaled by :math:`1/(1-p)`.

    For ``x`` ``(N, C, H, W)``, with one mask entry
    :math:`m_{nc} \sim \text{Bernoulli}(1 - p)` per sample and channel, drawn
    at each forward pass from the node's ``rng``,

    .. math::
        y_{nchw} = \frac{m_{nc}\, x_{nchw}}{1 - p}, \qquad
        \frac{\partial y_{nchw}}{\partial x_{n'c'h'w'}} = \delta\,\frac{m_{nc}}{1 - p}, \qquad
        \frac{\partial L}{\partial x} = g \odot \frac{m}{1 - p},

    neighbouring pixels, which are strongly correlated, being dropped
    together.  A 3-d input is taken as torch takes it today, ``(N, C, L)``:
    one mask entry per ``(n, c)`` (torch warns that an unbatched
    ``(C, H, W)`` reading may come); other ranks are refused.  In eval mode
    (and for :math:`p = 0`) it is the identity; :math:`p = 1` zeroes
    everything.  The mask lives on the pass's context (``backward`` and
    ``jacobian()`` use the very mask of their forward pass); ``evaluate`` and
    ``jacobian(x)`` apply the mask the next forward pass would draw without
    advancing the generator, and :meth:`fix_mask` pins an ``(N, C, 1, 1)``
    mask (``(N, C, 1)`` for 3-d input), as :class:`~nn_from_scratch.nodes.Dropout`.
    ``inplace`` is accepted for torch's signature; the input is never
    overwritten.  float16 is computed in float32.
    """

    float16_in_float32 = True  # the scaling in float32, rounded once

    def __init__(self, p: float = 0.5, inplace: bool = False, *, rng: Any = None) -> None:
        super().__init__(p, rng=rng)
        if not isinstance(inplace, (bool, np.bool_)):
            raise TypeError(f"inplace must be a bool, got {inplace!r}")
        self.inplace = bool(inplace)

    def config(self) -> Dict[str, Any]:
        return self._config_of("p", "inplace")

    def _check_input(self, x: Any) -> None:
        if x.ndim not in (3, 4):
            raise ValueError(f"Dropout2d expects 4-d input (N, C, H, W) or 3-d input (N, C, L), got {x.ndim}-d "
                             f"input of shape {tuple(x.shape)}")

    def _draw_mask(self, shape: Tuple[int, ...], update_state: bool) -> np.ndarray:
        """One draw per (sample, channel), from Dropout's generator (or its fixed mask), spread over each map."""
        channels = tuple(shape[:2]) + (1,) * (len(shape) - 2)
        return np.broadcast_to(super()._draw_mask(channels, update_state), shape)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"
