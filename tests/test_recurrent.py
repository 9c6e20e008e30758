"""The recurrent layers and cells against torch: outputs, input, state and parameter gradients, weights both ways.

Every sequence layer (RNN with tanh and ReLU, LSTM, GRU) over batch_first both ways, one and two layers, one and
two directions, with and without an initial state, lengths (torch's packed sequences) and a boolean mask, on
both engine paths: to 1e-10 in float64 and to float32's rounding in float32.  Then the cells, sequences
without a batch axis, gradcheck (finite differences and the dense Jacobian), the masks torch has no twin for,
dropout between layers (torch's stack rebuilt from one-layer modules with our masks), truncated backpropagation
through time, a cell holding a layer's parameters, and the errors for bad arguments and inputs.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest

import nn_from_scratch.nodes as N
from nn_from_scratch import Graph, Input, engine
from nn_from_scratch.gradcheck import assert_gradients

KINDS = {  # ours, torch's class name, options
    "RNN": (N.RNN, "RNN", {}),
    "RNN[relu]": (N.RNN, "RNN", {"nonlinearity": "relu"}),
    "LSTM": (N.LSTM, "LSTM", {}),
    "GRU": (N.GRU, "GRU", {}),
}
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


def assert_parameter_grads(node, module, dtype, what):
    """Every parameter's gradient against torch's parameter of the same name."""
    theirs = dict(module.named_parameters())
    for pname, p in node.named_parameters():
        assert_close(p.grad, theirs[pname].grad.numpy(), dtype, f"{what} d/d {pname}")


def torch_sequence_pass(torch, module, x, states, lengths, batch_first, gs):
    """Outputs, input and state gradients of torch's module (packed sequences for lengths); ``gs`` per output."""
    tx = torch.from_numpy(x).requires_grad_()
    ts = [torch.from_numpy(s).requires_grad_() for s in states]
    given = tx
    if lengths is not None:
        given = torch.nn.utils.rnn.pack_padded_sequence(tx, torch.from_numpy(np.asarray(lengths)),
                                                        batch_first=batch_first, enforce_sorted=False)
    hx = None if not ts else (ts[0] if len(ts) == 1 else tuple(ts))
    output, final = module(given, hx)
    if lengths is not None:
        output, _ = torch.nn.utils.rnn.pad_packed_sequence(output, batch_first=batch_first,
                                                           total_length=x.shape[1 if batch_first else 0])
    outputs = [output] + (list(final) if isinstance(final, tuple) else [final])
    torch.autograd.backward(outputs, [torch.from_numpy(g) for g in gs])
    return outputs, [tx.grad] + [s.grad for s in ts]


def variants(rng, batch_first, count, states):
    """(name, states given, lengths or mask): none, a state, lengths, None for the state and a boolean mask."""
    lengths = np.array([T, 2, 4])
    prefix = np.arange(T)[None, :] < lengths[:, None]  # (B, T): true up to each length
    mask = prefix if batch_first else prefix.T
    state = [rng.standard_normal((count, B, H)) for _ in range(states)]
    return [("plain", [], None), ("state", state, None), ("state, lengths", state, lengths),
            ("mask", [None] * states, mask)]


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["one way", "bidirectional"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["time first", "batch first"])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_sequence_layer_matches_torch(kind, batch_first, bidirectional, layers, torch, engine_path, rng):
    ours_class, name, options = KINDS[kind]
    options = dict(options, num_layers=layers, batch_first=batch_first, bidirectional=bidirectional)
    count = layers * (2 if bidirectional else 1)
    for dtype in (np.float64, np.float32):
        node = ours_class(I, H, rng=7, dtype=dtype, **options)
        module = twin(torch, name, node, dtype, **options)
        states_count = node.recurrence.states
        x = rng.standard_normal((B, T, I) if batch_first else (T, B, I)).astype(dtype)
        for variant, states, constant in variants(rng, batch_first, count, states_count):
            states = [s if s is None else s.astype(dtype) for s in states]
            node.zero_grad()
            module.zero_grad()
            inputs = (x, *states) + (() if constant is None else (constant,))
            ys = node.forward(*inputs)
            gs = tuple(rng.standard_normal(y.shape).astype(dtype) for y in ys)
            grads = node.backward(gs)
            grads = grads if isinstance(grads, tuple) else (grads,)
            lengths = None if constant is None else (constant if constant.dtype != bool else
                                                     constant.sum(axis=1 if batch_first else 0))
            given = [np.zeros((count, B, H), dtype) if s is None else s for s in states]
            outputs, expected = torch_sequence_pass(torch, module, x, given, lengths, batch_first, gs)
            what = f"{kind} {variant} {np.dtype(dtype)}"
            assert len(ys) == len(outputs) == 1 + states_count
            for o, (y, e) in enumerate(zip(ys, outputs)):
                assert_close(y, e, dtype, f"{what} output {o}")
            assert len(grads) == len(inputs)
            for i, grad in enumerate(grads[:1 + len(states)]):
                assert_close(grad, expected[i].numpy(), dtype, f"{what} gradient of input {i}")
            if constant is not None:
                assert grads[-1] is None
            assert_parameter_grads(node, module, dtype, what)


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
                assert_parameter_grads(node, module, dtype, what)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_one_sequence_without_a_batch_axis_matches_torch(kind, torch, engine_path, rng):
    ours_class, name, options = KINDS[kind]
    options = dict(options, num_layers=2, bidirectional=True)
    node = ours_class(I, H, rng=1, **options)
    module = twin(torch, name, node, np.float64, **options)
    x = rng.standard_normal((T, I))
    states = [rng.standard_normal((4, H)) for _ in range(node.recurrence.states)]
    ys = node.forward(x, *states)
    gs = tuple(rng.standard_normal(y.shape) for y in ys)
    grads = node.backward(gs)
    tx = torch.from_numpy(x).requires_grad_()
    ts = [torch.from_numpy(s).requires_grad_() for s in states]
    output, final = module(tx, ts[0] if len(ts) == 1 else tuple(ts))
    outs = [output] + (list(final) if isinstance(final, tuple) else [final])
    torch.autograd.backward(outs, [torch.from_numpy(g) for g in gs])
    for y, e in zip(ys, outs):
        assert_close(y, e, np.float64, f"{kind} output")
    for grad, t in zip(grads, [tx] + ts):
        assert_close(grad, t.grad.numpy(), np.float64, f"{kind} input gradient")


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_weights_move_both_ways_unchanged(kind, torch):
    ours_class, name, options = KINDS[kind]
    options = dict(options, num_layers=2, bidirectional=True)
    node = ours_class(I, H, rng=5, **options)
    module = getattr(torch.nn, name)(I, H, **options).double()
    assert list(node.state_dict()) == list(module.state_dict())  # torch's names, in torch's order
    for key, value in module.state_dict().items():
        assert node.state_dict()[key].shape == tuple(value.shape)
    node.load_state_dict({k: v.numpy() for k, v in module.state_dict().items()})
    for key, value in module.state_dict().items():
        np.testing.assert_array_equal(node.state_dict()[key], value.numpy())
    other = ours_class(I, H, rng=6, **options)
    module.load_state_dict({k: torch.from_numpy(v) for k, v in other.state_dict().items()})
    for key, value in module.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[key], value.numpy())


@pytest.mark.parametrize("kind", sorted(CELLS))
def test_cell_weights_have_torch_names_and_layouts(kind, torch):
    ours_class, name, options = CELLS[kind]
    node = ours_class(I, H, rng=5, **options)
    module = getattr(torch.nn, name)(I, H, **options)
    assert {k: v.shape for k, v in node.state_dict().items()} == {k: tuple(v.shape) for k, v in
                                                                   module.state_dict().items()}
    assert list(node.state_dict()) == list(module.state_dict())


def test_the_initial_weights_are_uniform_within_one_over_root_hidden_size():
    node = N.LSTM(5, 16, 2, rng=0)
    for _, p in node.named_parameters():
        assert np.all(np.abs(p.value) <= 0.25) and np.abs(p.value).max() > 0.2
    assert N.RNN(3, 4, bias=False).state_dict().keys() == {"weight_ih_l0", "weight_hh_l0"}


# ------------------------------------------------------------------ gradcheck: finite differences and the Jacobian
def _with_inputs(node, count):
    """The node, told to take ``count`` inputs in gradcheck (its state and lengths after ``x``)."""
    node.num_inputs = count
    return node


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_gradcheck_of_the_sequence_layers(kind, engine_path, rng):
    ours_class, _, options = KINDS[kind]
    node = ours_class(2, 3, 2, bidirectional=True, rng=2, **options)
    x = rng.standard_normal((3, 2, 2))
    states = tuple(rng.standard_normal((4, 2, 3)) for _ in range(node.recurrence.states))
    assert_gradients(node, x, rng=rng)
    masked = _with_inputs(ours_class(2, 3, batch_first=True, rng=3, **options), 2 + node.recurrence.states)
    lengths = np.array([3, 1])
    assert_gradients(masked, (rng.standard_normal((2, 3, 2)),) + tuple(s[:1] for s in states) + (lengths,), rng=rng)
    assert_gradients(_with_inputs(node, 1 + node.recurrence.states), (x,) + states, rng=rng)


@pytest.mark.parametrize("kind", sorted(CELLS))
def test_gradcheck_of_the_cells(kind, rng):
    ours_class, _, options = CELLS[kind]
    node = ours_class(3, 2, rng=2, **options)
    states = tuple(rng.standard_normal((4, 2)) for _ in range(node.recurrence.states))
    assert_gradients(node, rng.standard_normal((4, 3)), rng=rng)
    assert_gradients(_with_inputs(node, 1 + len(states)), (rng.standard_normal((4, 3)),) + states, rng=rng)


def test_the_jacobian_has_a_block_per_output_and_input(rng):
    node = N.LSTM(2, 3, rng=0)
    x, h, c = rng.standard_normal((4, 2, 2)), rng.standard_normal((1, 2, 3)), rng.standard_normal((1, 2, 3))
    node.forward(x, (h, c), np.array([4, 2]))
    blocks = node.jacobian()
    assert len(blocks) == 3 and all(len(row) == 4 for row in blocks)
    assert blocks[0][0].shape == (4, 2, 3, 4, 2, 2) and blocks[1][2].shape == (1, 2, 3, 1, 2, 3)
    assert all(row[3] is None for row in blocks)  # the lengths have no gradient
    # the output after a sequence's end is zero, so its rows of the Jacobian are zero
    assert np.all(blocks[0][0][2:, 1] == 0)


# ------------------------------------------------------------------ masks, dropout, truncated BPTT
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_mask_with_holes_carries_the_state_over_the_steps_that_do_not_count(kind, engine_path, rng):
    """A mask torch has no packed twin for: the step loop of the layer's own cell, state carried where false."""
    ours_class, _, options = KINDS[kind]
    node = ours_class(I, H, rng=4, **options)
    cell = node.cell()
    x = rng.standard_normal((T, B, I))
    mask = rng.random((T, B)) < 0.6
    ys = node.forward(x, None, mask) if node.recurrence.states == 1 else node.forward(x, None, None, mask)
    state = tuple(np.zeros((B, H)) for _ in range(node.recurrence.states))
    for t in range(T):
        new = cell.evaluate(x[t], *state)
        new = new if isinstance(new, tuple) else (new,)
        state = tuple(np.where(mask[t][:, None], a, b) for a, b in zip(new, state))
        np.testing.assert_allclose(ys[0][t], np.where(mask[t][:, None], state[0], 0.0), rtol=1e-12, atol=1e-15)
    for final, expected in zip(ys[1:], state):
        np.testing.assert_allclose(final[0], expected, rtol=1e-12, atol=1e-15)
    assert_gradients(_with_inputs(node, 2 + node.recurrence.states),
                     (x,) + tuple(np.zeros((1, B, H)) for _ in state) + (mask,), rng=rng)


def test_dropout_between_layers_is_torchs_stack_with_the_same_masks(torch, engine_path, rng):
    """torch draws its own masks: its two-layer LSTM is rebuilt from one-layer modules with our masks between."""
    node = N.LSTM(I, H, 3, dropout=0.4, bidirectional=True, rng=9)
    x = rng.standard_normal((T, B, I))
    ctx = node.run(x)
    assert len(ctx.dropouts) == 2
    gs = tuple(rng.standard_normal(y.shape) for y in ctx.y)
    node.zero_grad()
    dx = node.backward_from(ctx, gs)
    modules, state = [], node.state_dict()
    for layer in range(3):
        module = torch.nn.LSTM(I if layer == 0 else 2 * H, H, bidirectional=True).double()
        module.load_state_dict({k.replace(f"_l{layer}", "_l0"): torch.from_numpy(v) for k, v in state.items()
                                if f"_l{layer}" in k})
        modules.append(module)
    tx = torch.from_numpy(x).requires_grad_()
    h, finals = tx, []
    for layer, module in enumerate(modules):
        h, (hn, cn) = module(h)
        finals.append((hn, cn))
        if layer < 2:
            h = h * torch.from_numpy(ctx.dropouts[layer].mask_scale)
    hn, cn = torch.cat([f[0] for f in finals]), torch.cat([f[1] for f in finals])
    torch.autograd.backward([h, hn, cn], [torch.from_numpy(g) for g in gs])
    for y, e in zip(ctx.y, (h, hn, cn)):
        assert_close(y, e, np.float64, "output")
    assert_close(dx, tx.grad.numpy(), np.float64, "input gradient")
    for layer, module in enumerate(modules):
        for pname, p in module.named_parameters():
            ours = getattr(node, pname.replace("_l0", f"_l{layer}"))
            assert_close(ours.grad, p.grad.numpy(), np.float64, pname)
    node.eval()
    assert not node.run(x).dropouts  # eval mode: no dropout


def test_dropout_masks_come_from_the_layers_generator_and_evaluate_leaves_it(rng):
    node = N.GRU(I, H, 2, dropout=0.5, rng=3)
    twin_node = copy.deepcopy(node)
    x = rng.standard_normal((T, B, I))
    first = node.evaluate(x)
    np.testing.assert_array_equal(node.forward(x)[0], first[0])  # evaluate drew the next mask, not advancing
    assert not np.array_equal(node.forward(x)[0], first[0])  # the stream moved on
    np.testing.assert_array_equal(twin_node.forward(x)[0], first[0])
    assert dict(node.named_parameters()).keys() == dict(twin_node.named_parameters()).keys()
    assert node.rng is node._dropout.rng


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_truncated_backpropagation_through_time_carries_the_state_as_torchs_detach(kind, torch, rng):
    ours_class, name, options = KINDS[kind]
    node = ours_class(I, H, 2, batch_first=True, rng=8, **options)
    module = twin(torch, name, node, np.float64, num_layers=2, batch_first=True, **options)
    chunks = [rng.standard_normal((B, T, I)) for _ in range(3)]
    targets = [rng.standard_normal((B, T, H)) for _ in range(3)]
    state, hidden = None, None
    for x, target in zip(chunks, targets):
        node.zero_grad()
        module.zero_grad()
        ys = node.forward(x) if state is None else node.forward(x, *state)
        node.backward((2 * (ys[0] - target),) + (None,) * (len(ys) - 1))  # the gradient of the squared error
        state = ys[1:]  # plain arrays: the next chunk's gradient stops here
        output, hidden = module(torch.from_numpy(x), hidden)
        ((output - torch.from_numpy(target)) ** 2).sum().backward()
        hidden = tuple(h.detach() for h in hidden) if isinstance(hidden, tuple) else hidden.detach()
        assert_parameter_grads(node, module, np.float64, "truncated BPTT")


# ------------------------------------------------------------------ the layer's cell, one flag per input
def test_a_layers_cell_holds_its_parameters_and_is_one_step(rng):
    node = N.GRU(I, H, 2, bidirectional=True, rng=0)
    cell = node.cell(1, 1)
    assert cell.weight_hh is node.weight_hh_l1_reverse and cell.input_size == 2 * H
    single = N.GRU(I, H, rng=0)
    x = rng.standard_normal((1, B, I))
    np.testing.assert_allclose(single.cell().evaluate(x[0]), single.evaluate(x)[0][0], rtol=1e-14)
    with pytest.raises(ValueError, match="layers 0..1"):
        node.cell(2)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_input_flags_skip_the_input_gradient_and_keep_the_rest(kind, engine_path, rng):
    ours_class, _, options = KINDS[kind]
    node = ours_class(I, H, 2, rng=0, **options)
    x = rng.standard_normal((T, B, I))
    states = tuple(rng.standard_normal((2, B, H)) for _ in range(node.recurrence.states))
    ctx = node.run(x, *states)
    gs = tuple(rng.standard_normal(y.shape) for y in ctx.y)
    node.zero_grad()
    full = node.backward_from(ctx, gs)
    grads = [p.grad.copy() for p in node.parameters()]
    node.zero_grad()
    flags = (False,) + (True,) * len(states)
    part = node.backward_from(ctx, gs, input_grad=flags)
    assert part[0] is None
    for a, b in zip(part[1:], full[1:]):
        np.testing.assert_array_equal(a, b)
    for p, grad in zip(node.parameters(), grads):
        np.testing.assert_array_equal(p.grad, grad)


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


# ------------------------------------------------------------------ in a Graph; the fast path against the textbook
def test_a_graph_takes_the_outputs_apart(rng):
    x = Input((T, I))
    output, h, c = N.LSTM(I, H, batch_first=True, rng=0)(x)
    model = Graph(x, N.Linear(H, 2, rng=1)(N.Add()(output, N.Transpose(0, 1)(h))))  # h_n (1, N, H) as (N, 1, H)
    xs = rng.standard_normal((B, T, I))
    y = model.forward(xs)
    assert y.shape == (B, T, 2)
    model.backward(np.ones_like(y), input_grad=False)
    assert all(np.any(p.grad != 0) for p in model.parameters())


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_fast_engine_agrees_with_the_textbook_path(kind, rng):
    ours_class, _, options = KINDS[kind]
    node = ours_class(5, 6, 2, bidirectional=True, rng=0, **options)
    x = rng.standard_normal((7, 4, 5))
    lengths = np.array([7, 3, 1, 5])
    results = {}
    for fast in (True, False):
        engine.set_fast(fast)
        try:
            node.zero_grad()
            ctx = node.run(x, *([None] * node.recurrence.states), lengths)
            assert ctx.directions[0].fast is fast
            gs = tuple(np.cos(np.arange(y.size)).reshape(y.shape) for y in ctx.y)
            results[fast] = list(ctx.y) + list(node.backward_from(ctx, gs)[:-1]) + [p.grad.copy() for p in
                                                                                    node.parameters()]
        finally:
            engine.set_fast(True)
    for a, b in zip(results[True], results[False]):
        np.testing.assert_allclose(a, b, rtol=0, atol=100 * np.finfo(np.float64).eps * max(1.0, np.abs(b).max()))


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("make, error, match", [
    (lambda: N.RNN(0, 3), ValueError, "input_size"),
    (lambda: N.RNN(3, 2.5), ValueError, "hidden_size"),
    (lambda: N.LSTM(3, 2, num_layers=0), ValueError, "num_layers"),
    (lambda: N.RNN(3, 2, nonlinearity="sigmoid"), ValueError, "nonlinearity"),
    (lambda: N.GRU(3, 2, dropout=1.5), ValueError, "dropout"),
    (lambda: N.GRU(3, 2, dropout="0.1"), TypeError, "dropout"),
    (lambda: N.LSTM(3, 2, bidirectional="yes"), TypeError, "bidirectional"),
    (lambda: N.LSTM(3, 2, proj_size=2), ValueError, "proj_size"),
    (lambda: N.LSTMCell(3, 2, bias=None), TypeError, "bias"),
    (lambda: N.RNN(3, 2, dtype=np.int32), TypeError, "floating"),
])
def test_bad_arguments_are_refused_with_a_clear_error(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("call, error, match", [
    (lambda n: n.forward(np.zeros((4, 2, 5))), ValueError, r"\(T, N, 3\)"),
    (lambda n: n.forward(np.zeros((4, 2, 3, 1))), ValueError, "expects x"),
    (lambda n: n.forward(np.zeros((0, 2, 3))), ValueError, "at least one time step"),
    (lambda n: n.forward(np.zeros((4, 2, 3)), np.zeros((1, 2, 2))), ValueError, r"h0 must have shape \(2, 2, 2\)"),
    (lambda n: n.forward(np.zeros((4, 2, 3)), np.zeros((2, 2, 2)), np.zeros((2, 2, 3))), ValueError,
     r"c0 must have shape \(2, 2, 2\)"),
    (lambda n: n.forward(np.zeros((4, 2, 3)), (np.zeros((2, 2, 2)),)), ValueError, r"tuple \(h, c\)"),
    (lambda n: n.forward(np.zeros((4, 2, 3)), None, None, np.array([5, 1])), ValueError, r"lie in \[0, 4\]"),
    (lambda n: n.forward(np.zeros((4, 2, 3)), None, None, np.array([1.0, 2.0])), TypeError, "integers"),
    (lambda n: n.forward(np.zeros((4, 2, 3)), None, None, np.array([1, 2, 3])), ValueError, r"shape \(2,\)"),
    (lambda n: n.forward(np.zeros((4, 2, 3)), None, None, np.ones((2, 4), bool)), ValueError, "mask"),
    (lambda n: n.forward(np.zeros((4, 2, 3)), None, None, None, None), TypeError, "takes the inputs"),
    (lambda n: n.forward(np.array([["a"] * 3] * 4)), TypeError, "real numbers"),
])
def test_bad_inputs_are_refused_with_a_clear_error(call, error, match):
    node = N.LSTM(3, 2, 2, rng=0)
    with pytest.raises(error, match=match):
        call(node)
    assert node.pending is None


def test_a_cell_refuses_bad_inputs():
    cell = N.GRUCell(3, 2, rng=0)
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        cell.forward(np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"h must have shape \(2, 2\)"):
        cell.forward(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(TypeError, match="takes the inputs"):
        cell.forward(np.zeros((2, 3)), np.zeros((2, 2)), np.zeros((2, 2)))


def test_the_representation_names_the_options():
    assert repr(N.LSTM(3, 4, 2, batch_first=True)) == "LSTM(3, 4, num_layers=2, batch_first=True)"
    assert repr(N.RNN(3, 4, nonlinearity="relu")) == "RNN(3, 4, nonlinearity='relu')"
    assert repr(N.GRUCell(3, 4, bias=False)) == "GRUCell(3, 4, bias=False)"
