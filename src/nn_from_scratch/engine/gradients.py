"""A parameter's first gradient of a pass written straight into its ``grad``: no temporary, no addition.

After ``zero_grad`` a parameter's gradient is all zeros, and the first
gradient a backward pass adds to it may as well be written there: a matrix
product lands in ``grad`` through ``out=`` with no temporary array and no
pass adding it to the zeros (measured: 11% of an MLP step at batch 32, whose
weight gradients are a large share of its memory traffic).  The parameter
says whether its gradient is such a *fresh zero* (``fresh_zero``, set by its
``zero_grad`` and ended by any other write); every later gradient is added.
"""
from __future__ import annotations

from typing import Any, Callable

__all__ = ["add_into"]


def add_into(parameter: Any, op: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """``parameter.grad += op(*args, **kwargs)``, written straight into ``grad`` when it is a fresh zero.

    ``op`` is a NumPy function that takes ``out=`` (``np.matmul``, ``np.sum``);
    ``grad`` may have any memory layout.
    """
    if parameter.fresh_zero:
        op(*args, out=parameter.grad, **kwargs)
        parameter.fresh_zero = False
    else:
        parameter.accumulate(op(*args, **kwargs))
