"""Test helpers for a layer and its torch twin: the same weights, then forward, input and parameter gradients."""
from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

#: float64 to 1e-10 (the issue's bar), float32 within float32's tolerance
TOLERANCES = {np.dtype(np.float64): dict(rtol=1e-10, atol=1e-10), np.dtype(np.float32): dict(rtol=2e-5, atol=2e-5)}


def load_into_torch(torch: Any, ours: Any, theirs: Any) -> Any:
    """``theirs`` (a torch module) with our state dict loaded, in our dtype: the weights move unchanged."""
    state = ours.state_dict()
    dtype = next(iter(state.values())).dtype if state else np.float64
    theirs = theirs.double() if dtype == np.float64 else theirs.float()
    theirs.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    return theirs


def assert_like_torch(torch: Any, ours: Any, theirs: Any, x: np.ndarray, g: Optional[np.ndarray] = None,
                      rng: Optional[np.random.Generator] = None, tolerance: Optional[Dict[str, float]] = None,
                      load: bool = True) -> Dict[str, np.ndarray]:
    """Forward, the input gradient and every parameter gradient of ``ours`` equal ``theirs``'s on ``x``.

    ``theirs`` gets our weights first (``load``).  ``g`` defaults to a
    standard normal output gradient; the tolerance to :data:`TOLERANCES` of
    ``x``'s dtype.  Returns ours: ``y``, ``dx`` and ``d/d <name>``.
    """
    if load:
        theirs = load_into_torch(torch, ours, theirs)
    tolerance = tolerance or TOLERANCES[np.dtype(x.dtype)]
    ours.zero_grad()
    theirs.zero_grad()
    y = ours.forward(x)
    if g is None:
        g = (rng or np.random.default_rng(0)).standard_normal(np.shape(y)).astype(x.dtype)
    dx = ours.backward(g)
    tx = torch.from_numpy(np.array(x)).requires_grad_(True)
    ty = theirs(tx)
    ty.backward(torch.from_numpy(np.array(g, dtype=x.dtype)))
    assert y.shape == tuple(ty.shape), (y.shape, tuple(ty.shape))
    assert y.dtype == x.dtype and dx.dtype == x.dtype
    np.testing.assert_allclose(y, ty.detach().numpy(), **tolerance, err_msg="forward")
    np.testing.assert_allclose(dx, tx.grad.numpy(), **tolerance, err_msg="input gradient")
    result = {"y": y, "dx": dx}
    twin = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, twin[name].grad.numpy(), **tolerance, err_msg=f"d/d {name}")
        result[f"d/d {name}"] = p.grad
    assert sorted(dict(ours.named_parameters())) == sorted(twin)
    return result


def assert_state_dict_both_ways(torch: Any, make_ours: Any, theirs: Any, x: np.ndarray) -> None:
    """Our state dict loads into torch and torch's into a fresh layer of ours: the same keys, shapes, outputs."""
    ours = make_ours(1)
    theirs = load_into_torch(torch, ours, theirs)
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict())
    for key, value in theirs.state_dict().items():
        assert tuple(value.shape) == np.shape(ours.state_dict()[key]), key
    np.testing.assert_allclose(ours.forward(x), theirs(torch.from_numpy(x)).detach().numpy(), rtol=1e-12,
                               atol=1e-12)
    other = make_ours(99)
    other.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    for key, value in ours.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[key], value)
