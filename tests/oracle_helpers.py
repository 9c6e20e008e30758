"""Test helper: a node of one or several inputs against its torch function, in float64 and in float32."""
from __future__ import annotations

from typing import Any, Callable, Sequence, Tuple

import numpy as np

#: float64 to 1e-10; float32 to float32's rounding (a few roundings of a sum).
TOLERANCES = ((np.float64, dict(rtol=1e-10, atol=0.0)), (np.float32, dict(rtol=2e-6, atol=1e-6)))


def agrees_with_torch(node: Any, xs: Sequence[np.ndarray], reference: Callable[..., Any], torch: Any,
                      rng: np.random.Generator, constant: Tuple[int, ...] = ()) -> None:
    """``node(*xs)`` and each input's gradient against ``reference(*tensors)`` and torch's autograd.

    The floating inputs are cast to float64, then to float32 (the constant ones, ``constant``, stay as
    given and must get None); outputs and gradients must have torch's values and dtypes.
    """
    for dtype, tolerance in TOLERANCES:
        cast = [x if i in constant else x.astype(dtype) for i, x in enumerate(xs)]
        y = node.forward(*cast)
        g = rng.standard_normal(y.shape).astype(y.dtype)
        grads = node.backward(g)
        grads = grads if isinstance(grads, tuple) else (grads,)
        tensors = [torch.tensor(x) if i in constant else torch.tensor(x, requires_grad=True)
                   for i, x in enumerate(cast)]
        expected = reference(*tensors)
        expected.backward(torch.tensor(g))
        assert y.dtype == np.dtype(str(expected.dtype).replace("torch.", "")), (y.dtype, expected.dtype)
        np.testing.assert_allclose(y, expected.detach().numpy(), **tolerance)
        assert len(grads) == len(xs)
        for i, (grad, t) in enumerate(zip(grads, tensors)):
            if i in constant:
                assert grad is None, f"input {i} is constant and must get None"
                continue
            assert grad.shape == cast[i].shape and grad.dtype == cast[i].dtype, (i, grad.shape, grad.dtype)
            np.testing.assert_allclose(grad, t.grad.numpy(), err_msg=f"gradient of input {i}", **tolerance)
