"""The recurrent cells against torch: outputs, input, state and parameter gradients, weights with torch's names.

Each cell (RNNCell with tanh and ReLU, LSTMCell, GRUCell) with and without a batch axis and an initial state, on
both engine paths: to 1e-10 in float64 and to float32's rounding in float32; gradcheck (finite differences and
the dense Jacobian), one input_grad flag per input, and the errors for bad inputs.
"""
from __future__ import annotations

import numpy as np
import pytest

import nn_from_scratch.nodes as N
from nn_from_scratch.gradcheck import assert_gradients

CELLS = {
    "RNNCell": (N.RNNCell, "RNNCell", {}),
    "RNNCell[relu]": (N.RNNCell, "RNNCell", {"nonlinearity": "relu"}),
    "LSTMCell": (N.LSTMCell, "LSTMCell", {}),
    "GRUCell": (N.GRUCell, "GRUCell", {}),
}
TOLERANCE = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=2e-5, atol=2e-6)}
T, B, I, H = 5, 3, 3, 4  # time steps, batch, input size, hidden size


def twin(torch, name, node, dtype, **options):
    """torch's module holding ``node``'s weights (its state dict loaded unchanged), in ``dtype``."""
    module = getattr(torch.nn, name)(node.input_size, node.hidden_size, **options)
    module = module.double() if dtype == np.float64 else module.float()
    module.load_state_dict({k: torch.from_numpy(v) for k, v in node.state_dict().items()})
    return module


def assert_close(ours, theirs, dtype, what):
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else theirs
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype, (what, ours.shape, theirs.shape, ours.dtype)
    np.testing.assert_allclose(ours, theirs, err_msg=what, **TOLERANCE[dtype])


@pytest.mark.parametrize("kind", sorted(CELLS))
def test_a_cell_matches_torch_with_and_without_a_batch(kind, torch, engine_path, rng):
    ours_class, name, options = CELLS[kind]
    for dtype in (np.float64, np.float32):
        node = ours_class(I, H, rng=3, dtype=dtype, **options)
        module = twin(torch, name, node, dtype, **options)
        for batch in ((B,), ()):
            x = rng.standard_normal(batch + (I,)).astype(dtype)
            states = [rng.standard_normal(batch + (H,)).astype(dtype) for _ in range(node.recurrence.states)]
            for given in ([], states):
                node.zero_grad()
                module.zero_grad()
                ys = node.forward(x, *given)
                ys = ys if isinstance(ys, tuple) else (ys,)
                gs = tuple(rng.standard_normal(y.shape).astype(dtype) for y in ys)
                grads = node.backward(gs if len(gs) > 1 else gs[0])
                grads = grads if isinstance(grads, tuple) else (grads,)
                tx = torch.from_numpy(x).requires_grad_()
                ts = [torch.from_numpy(s).requires_grad_() for s in given]
                out = module(tx, None if not ts else (ts[0] if len(ts) == 1 else tuple(ts)))
                outs = list(out) if isinstance(out, tuple) else [out]
                torch.autograd.backward(outs, [torch.from_numpy(g) for g in gs])
                what = f"{kind} batch {batch} {len(given)} state(s) {np.dtype(dtype)}"
                for y, e in zip(ys, outs):
                    assert_close(y, e, dtype, f"{what} output")
                for grad, t in zip(grads, [tx] + ts):
                    assert_close(grad, t.grad.numpy(), dtype, f"{what} input gradient")
                theirs = dict(module.named_parameters())
                for pname, p in node.named_parameters():
                    assert_close(p.grad, theirs[pname].grad.numpy(), dtype, f"{what} d/d {pname}")


@pytest.mark.parametrize("kind", sorted(CELLS))
def test_cell_weights_have_torch_names_and_layouts(kind, torch):
    ours_class, name, options = CELLS[kind]
    node = ours_class(I, H, rng=5, **options)
    module = getattr(torch.nn, name)(I, H, **options)
    assert {k: v.shape for k, v in node.state_dict().items()} == {k: tuple(v.shape) for k, v in
                                                                   module.state_dict().items()}
    assert list(node.state_dict()) == list(module.state_dict())


def _with_inputs(node, count):
    """The node, told to take ``count`` inputs in gradcheck (its state and lengths after ``x``)."""
    node.num_inputs = count
    return node


@pytest.mark.parametrize("kind", sorted(CELLS))
def test_gradcheck_of_the_cells(kind, rng):
    ours_class, _, options = CELLS[kind]
    node = ours_class(3, 2, rng=2, **options)
    states = tuple(rng.standard_normal((4, 2)) for _ in range(node.recurrence.states))
    assert_gradients(node, rng.standard_normal((4, 3)), rng=rng)
    assert_gradients(_with_inputs(node, 1 + len(states)), (rng.standard_normal((4, 3)),) + states, rng=rng)


def test_cells_skip_the_inputs_flagged_false(rng, monkeypatch):
    cell = N.LSTMCell(I, H, rng=0)
    x, h, c = rng.standard_normal((B, I)), rng.standard_normal((B, H)), rng.standard_normal((B, H))
    ctx = cell.run(x, h, c)
    g = (rng.standard_normal((B, H)), rng.standard_normal((B, H)))
    full = cell.vjp_from(ctx, g)
    seen = []
    inner = type(cell)._gradients

    def spy(self, g, ctx, flags, parameters):
        seen.append(flags)
        return inner(self, g, ctx, flags, parameters)

    monkeypatch.setattr(type(cell), "_gradients", spy)
    only_state = cell.backward_from(ctx, g, input_grad=(False, True, True))
    assert seen == [(False, True, True)] and only_state[0] is None
    np.testing.assert_array_equal(only_state[1], full[1])
    np.testing.assert_array_equal(only_state[2], full[2])
    assert cell.backward_from(ctx, g, input_grad=(True, False, False))[1:] == (None, None)


def test_a_cell_refuses_bad_inputs():
    cell = N.GRUCell(3, 2, rng=0)
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        cell.forward(np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"h must have shape \(2, 2\)"):
        cell.forward(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(TypeError, match="takes the inputs"):
        cell.forward(np.zeros((2, 3)), np.zeros((2, 2)), np.zeros((2, 2)))
