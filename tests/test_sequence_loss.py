"""Cross-entropy over sequences, as a language model uses it: logits (N, C, T) as torch takes them, (N, T, C) through
a Permute (or flattened to (N·T, C)), with ignore_index for padding; against torch in float64 and float32."""
from __future__ import annotations

import numpy as np
import pytest

from nn_from_scratch.losses import CrossEntropyLoss
from nn_from_scratch.nodes import Permute


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype, tolerance", [(np.float64, dict(rtol=1e-10, atol=1e-12)),
                                              (np.float32, dict(rtol=2e-5, atol=2e-6))])
def test_logits_over_time_with_padding_agree_with_torch(torch, rng, reduction, dtype, tolerance, engine_path):
    n, c, t = 3, 5, 4
    logits = rng.standard_normal((n, c, t)).astype(dtype)
    target = rng.integers(0, c, (n, t))
    target[0, 2:] = -100  # padding
    target[2, 3] = -100
    loss = CrossEntropyLoss(reduction=reduction, label_smoothing=0.1)
    upstream = np.asarray(1.0, dtype=dtype) if reduction != "none" else rng.standard_normal((n, t)).astype(dtype)
    value = loss.forward(logits, target)
    gradient = loss.backward(upstream)
    tensor = torch.tensor(logits, requires_grad=True)
    expected = torch.nn.functional.cross_entropy(tensor, torch.tensor(target), reduction=reduction,
                                                 label_smoothing=0.1)
    expected.backward(torch.tensor(upstream))
    np.testing.assert_allclose(value, expected.detach().numpy(), **tolerance)
    np.testing.assert_allclose(gradient, tensor.grad.numpy(), **tolerance)
    assert np.all(gradient[0, :, 2:] == 0)  # padding gives nothing


def test_logits_time_major_through_permute_or_flattened(torch, rng):
    n, t, c = 2, 6, 4
    logits = rng.standard_normal((n, t, c))
    target = rng.integers(0, c, (n, t))
    target[1, 4:] = -100
    permute, loss = Permute(0, 2, 1), CrossEntropyLoss()
    value = loss.forward(permute.forward(logits), target)
    gradient = permute.backward(loss.backward())
    flat = CrossEntropyLoss()
    np.testing.assert_allclose(flat.forward(logits.reshape(-1, c), target.reshape(-1)), value, rtol=1e-12)
    np.testing.assert_allclose(flat.backward().reshape(n, t, c), gradient, rtol=1e-12, atol=1e-15)
    tensor = torch.tensor(logits, requires_grad=True)
    expected = torch.nn.functional.cross_entropy(tensor.reshape(-1, c), torch.tensor(target).reshape(-1))
    expected.backward()
    np.testing.assert_allclose(value, expected.item(), rtol=1e-10)
    np.testing.assert_allclose(gradient, tensor.grad.numpy(), rtol=1e-10, atol=1e-12)
