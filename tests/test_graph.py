"""The functional Graph: building by calling nodes on placeholders, the passes, refusals, names, torch, training."""
from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

from nn_from_scratch import Graph, Input, NeuralNetwork, Node, Sequential
from nn_from_scratch.containers import Placeholder
from nn_from_scratch.datasets import load_digits
from nn_from_scratch.gradcheck import assert_gradients, numerical_jacobian
from nn_from_scratch.losses import CrossEntropyLoss
from nn_from_scratch.training import node_generators
from nn_from_scratch.nodes import Add, BatchNorm1d, Chunk, Dropout, Identity, Linear, Multiply, ReLU, Split, Tanh
from nn_from_scratch.optim import Adam
from nn_from_scratch.files import load_model, save_model


class Halves(Node):
    r"""Two outputs: :math:`y = (x_{:, :k}, x_{:, k:})`, :math:`k` half the last axis; :math:`J^\top g = [g_1, g_2]`."""

    def _forward(self, x, ctx):
        k = x.shape[-1] // 2
        return x[..., :k], x[..., k:]

    def _vjp(self, g, ctx):
        return np.concatenate(g, axis=-1)


class Recording(Linear):
    """A Linear that records the ``input_grad`` each backward is asked for."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.asked = []

    def backward_from(self, ctx, dL_dy, *, input_grad=True):
        self.asked.append(input_grad)
        return super().backward_from(ctx, dL_dy, input_grad=input_grad)


def residual_graph(seed=0):
    x = Input(4, name="x")
    shared = Linear(4, 4, rng=seed)
    h = shared(Tanh()(shared(x)))           # one node used twice
    y = Add()(Linear(4, 4, rng=seed + 1)(h), x)  # x fans out to the first use and to Add
    return Graph(x, y), shared


def two_in_two_out(seed=0):
    a, b = Input(3, name="a"), Input(2, name="b")
    ha = Tanh()(Linear(3, 4, rng=seed)(a))
    hb = Linear(2, 4, rng=seed + 1)(b)
    first, second = Halves()(Multiply()(ha, hb))
    y1 = Linear(2, 2, rng=seed + 2)(Add()(first, second))
    return Graph([a, b], [y1, Add()(ha, hb)])


# ---------------------------------------------------------------- building and the passes
def test_a_node_called_on_placeholders_records_and_on_arrays_computes(rng):
    layer = Linear(3, 2, rng=0)
    x = rng.standard_normal((5, 3))
    np.testing.assert_allclose(layer(x), x @ layer.weight.value.T + layer.bias.value, rtol=1e-15, atol=0)
    p = layer(Input(3))
    assert isinstance(p, Placeholder) and p.shape == (None, 2) and p.dtype == np.float64
    assert layer.pending is not None  # the array call kept its pass; the placeholder call kept nothing new
    with pytest.raises(TypeError, match="name= is taken only"):
        layer(x, name="fc")


def test_forward_is_the_composition_and_a_shared_node_is_listed_once(rng):
    model, shared = residual_graph()
    x = rng.standard_normal((5, 4))
    other = model["linear_1"]
    W, b = shared.weight.value, shared.bias.value
    expected = np.tanh(x @ W.T + b) @ W.T + b
    expected = expected @ other.weight.value.T + other.bias.value + x
    np.testing.assert_allclose(model.forward(x), expected, rtol=1e-13, atol=1e-13)
    assert model.names == ["linear_0", "tanh_0", "linear_1", "add_0"]
    assert list(dict(model.named_parameters())) == ["linear_0.weight", "linear_0.bias", "linear_1.weight",
                                                    "linear_1.bias"]
    assert len(model.parameters()) == 4 and sorted(model.state_dict()) == sorted(dict(model.named_parameters()))


def test_gradients_sum_over_uses_and_fan_out_against_finite_differences(rng):
    model, _ = residual_graph()
    assert_gradients(model, rng.standard_normal((3, 4)), rng=rng)


def test_several_inputs_and_outputs_gradients_and_jacobian_blocks(rng):
    model = two_in_two_out()
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((2, 2))
    y1, y2 = model.forward(a, b)
    assert y1.shape == (2, 2) and y2.shape == (2, 4)
    assert_gradients(model, (a, b), rng=rng)
    J = model.jacobian(a, b)
    for o in range(2):
        for i, x in enumerate((a, b)):
            def f(v, o=o, i=i):
                args = [a, b]
                args[i] = v
                return model.evaluate(*args)[o]
            np.testing.assert_allclose(J[o][i], numerical_jacobian(f, x), rtol=1e-6, atol=1e-8)
    ga, gb = model.backward((np.ones_like(y1), None))  # None: the loss ignores that output
    model.forward(a, b)
    ga2, gb2 = model.backward((np.ones_like(y1), np.zeros_like(y2)))
    np.testing.assert_allclose(ga, ga2, rtol=0, atol=0)
    np.testing.assert_allclose(gb, gb2, rtol=0, atol=0)


def test_input_grad_false_gives_the_same_parameter_gradients_and_skips_the_first_layers_input_gradient(rng):
    x = Input(4)
    first = Recording(4, 3, rng=0)
    y = Linear(3, 2, rng=1)(ReLU()(first(x)))
    model = Graph(x, y)
    data, g = rng.standard_normal((6, 4)), rng.standard_normal((6, 2))
    model.forward(data)
    assert model.backward(g, input_grad=False) is None
    grads = [p.grad.copy() for p in model.parameters()]
    assert first.asked == [False]
    model.zero_grad()
    model.forward(data)
    model.backward(g)
    assert first.asked == [False, True]
    for p, saved in zip(model.parameters(), grads):
        np.testing.assert_allclose(p.grad, saved, rtol=1e-15, atol=1e-15)


def test_backward_follows_the_last_forward_and_reset_after_false_adds_each_call(rng):
    model, shared = residual_graph()
    first, last, g = rng.standard_normal((3, 4)), rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    model.forward(last)
    expected_dx = model.backward(g)
    expected = [p.grad.copy() for p in model.parameters()]
    model.zero_grad()
    model.forward(first)
    model.forward(last)  # a second forward before backward replaces the kept pass
    np.testing.assert_array_equal(model.backward(g, reset_after=False), expected_dx)
    np.testing.assert_array_equal(model.backward(g, reset_after=False), expected_dx)
    for p, once in zip(model.parameters(), expected):
        np.testing.assert_allclose(p.grad, 2 * once, rtol=1e-15, atol=0)  # two backward calls add twice
    assert model.pending is not None
    model.backward(g)
    assert model.pending is None


def test_input_grad_false_with_a_parameter_free_first_node_and_the_upstream_gradient_left_as_given(rng):
    x = Input(4)
    y = Linear(4, 2, rng=0)(Tanh()(x))
    model = Graph(x, Add()(y, Identity()(y)))
    data, g = rng.standard_normal((3, 4)), rng.standard_normal((3, 2))
    kept = g.copy()
    model.forward(data)
    assert model.backward(g, input_grad=False) is None
    np.testing.assert_array_equal(g, kept)  # Add hands g on as it is; nothing downstream writes into it
    layer = model["linear_0"]
    np.testing.assert_allclose(layer.bias.grad, 2 * g.sum(axis=0), rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(layer.weight.grad, 2 * g.T @ np.tanh(data), rtol=1e-14, atol=1e-14)


def test_vjp_from_leaves_parameter_gradients_alone(rng):
    model, shared = residual_graph()
    ctx = model.run(rng.standard_normal((2, 4)))
    dx = model.vjp_from(ctx, np.ones((2, 4)))
    assert dx.shape == (2, 4)
    assert all(not p.grad.any() for p in model.parameters())


def test_a_5000_node_chain_runs_without_recursion(rng):
    h = x = Input(2)
    for _ in range(5000):
        h = Tanh()(h)
    model = Graph(x, h)
    data = rng.standard_normal((3, 2))
    y = model.forward(data)
    expected = data
    for _ in range(5000):
        expected = np.tanh(expected)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-15)
    dx = model.backward(np.ones_like(y))
    expected_dx, h = np.ones_like(data), data
    for _ in range(5000):  # the chain rule one tanh at a time: dx = prod(1 - tanh(h)^2)
        h = np.tanh(h)
        expected_dx *= 1 - h ** 2
    np.testing.assert_allclose(dx, expected_dx, rtol=1e-10, atol=0)
    copied = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(copied.evaluate(data), y)


def test_a_graph_is_a_node_inside_a_graph_and_in_a_sequential(rng):
    inner, shared = residual_graph()
    x = Input(4)
    outer = Graph(x, inner(inner(x)))  # a graph used twice, on its own output: a node, not a cycle
    data = rng.standard_normal((2, 4))
    np.testing.assert_allclose(outer.forward(data), inner.evaluate(inner.evaluate(data)), rtol=1e-14, atol=1e-14)
    assert list(dict(outer.named_parameters())) == ["graph_0.linear_0.weight", "graph_0.linear_0.bias",
                                                    "graph_0.linear_1.weight", "graph_0.linear_1.bias"]
    assert_gradients(Sequential(outer, ReLU()), data + 2.0, rng=rng)


def test_a_graph_inside_a_sequential_inside_a_graph(rng):
    inner, _ = residual_graph()
    x = Input(4)
    outer = Graph(x, Add()(Sequential(inner, Tanh())(x), x))
    assert list(dict(outer.named_parameters()))[0] == "sequential_0.0.linear_0.weight"
    assert_gradients(outer, rng.standard_normal((2, 4)), rng=rng)


def test_modes_reach_every_node_and_the_trial_forward_changes_nothing():
    x = Input(3)
    norm, drop = BatchNorm1d(3), Dropout(0.5, rng=4)
    state = drop.rng.bit_generator.state
    model = Graph(x, drop(norm(x)))
    np.testing.assert_array_equal(norm.running_mean, np.zeros(3))
    assert norm.num_batches_tracked == 0 and drop.rng.bit_generator.state == state
    assert model.eval() is model and not norm.training and not drop.training
    model.train()
    assert norm.training and drop.training
    assert [name for name, _ in node_generators(model)] == ["dropout_0.rng"]


def test_summary_lists_each_use_with_its_inputs_and_shape():
    model, _ = residual_graph()
    text = model.summary()
    lines = text.splitlines()
    row = next(line for line in lines if line.startswith("linear_0#2"))
    assert "Linear (again)" in row and "tanh_0" in row and "(None, 4)" in row
    assert any(line.startswith("add_0") and "linear_1, x" in line for line in lines)
    assert "Trainable params: 40" in text


def test_float32_stays_float32(rng):
    x = Input(4, dtype=np.float32)
    y = Add()(Linear(4, 4, rng=0, dtype=np.float32)(x), x)
    model = Graph(x, y)
    out = model.forward(rng.standard_normal((2, 4)).astype(np.float32))
    assert out.dtype == np.float32 and y.dtype == np.float32
    assert model.backward(np.ones_like(out)).dtype == np.float32


def test_float16_stays_float16_and_follows_float64(rng):
    def build(dtype):
        x = Input(4, dtype=dtype)
        encoder = Linear(4, 4, rng=0, dtype=dtype)
        h = Add()(encoder(x), x)
        return Graph(x, Linear.tied_to(encoder.weight, transpose=True, rng=1)(Tanh()(h)))
    half, full = build(np.float16), build(np.float64)
    data, g = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    out = half.forward(data.astype(np.float16))
    dx = half.backward(g.astype(np.float16))
    assert out.dtype == dx.dtype == np.float16 and all(p.grad.dtype == np.float16 for p in half.parameters())
    np.testing.assert_allclose(out, full.forward(data), rtol=1e-2, atol=1e-2)
    np.testing.assert_allclose(dx, full.backward(g), rtol=1e-2, atol=1e-2)


# ---------------------------------------------------------------- refused when built
def test_shape_mismatches_are_refused_at_the_call_naming_the_node():
    x = Input(3)
    with pytest.raises(ValueError, match=r"Linear\(in_features=4.*\(None, 3\)"):
        Linear(4, 2)(x)
    with pytest.raises(ValueError, match=r"Add.*\(None, 3\), \(None, 2\)"):
        Add()(x, Linear(3, 2)(x))


@pytest.mark.parametrize("case, message", [
    ("other", r"Tanh.*depends on Input\(\(3,\), name='other'\).*not among the graph's inputs"),
    ("unused", r"input 1 \(Input\(\(2,\), name='spare'\)\) is not used"),
    ("not-input", r"input 0 is the output of Tanh"),
    ("twice", r"listed twice"),
    ("two-names", r"given two names"),
    ("name-taken", r"the name 'fc' is given to two nodes"),
    ("not-in-graph", r"names a node that is not in the graph"),
])
def test_bad_graphs_are_refused_naming_the_node(case, message):
    x, other, spare = Input(3, name="x"), Input(3, name="other"), Input(2, name="spare")
    h = Tanh()(x)
    with pytest.raises(ValueError, match=message):
        if case == "other":
            Graph(x, Add()(h, Tanh()(other)))
        elif case == "unused":
            Graph([x, spare], h)
        elif case == "not-input":
            Graph(h, Tanh()(h))
        elif case == "twice":
            Graph([x, x], h)
        elif case == "two-names":
            layer = Linear(3, 3)
            Graph(x, layer(layer(x, name="a"), name="b"))
        elif case == "name-taken":
            Graph(x, Linear(3, 3)(Linear(3, 3)(x, name="fc"), name="fc"))
        elif case == "not-in-graph":
            Graph(x, h, names={"lonely": Linear(3, 3)})


def test_arrays_and_placeholders_do_not_mix_and_outputs_must_be_placeholders(rng):
    x = Input(3)
    with pytest.raises(TypeError, match="every input of a node is a placeholder"):
        Add()(x, rng.standard_normal((2, 3)))
    with pytest.raises(TypeError, match="outputs must be placeholders"):
        Graph(x, rng.standard_normal((2, 3)))


def test_a_dangling_branch_is_refused_naming_its_node(rng):
    x = Input(4)
    h = Tanh()(Linear(4, 4, rng=0)(x))
    Linear(4, 3, rng=1)(h, name="forgotten")  # its result is never used
    with pytest.raises(ValueError, match=r"Linear\(in_features=4, out_features=3.*\(named 'forgotten'\) is "
                                         r"computed from .* reaches no output \(a dangling branch\)"):
        Graph(x, h)
    assert Graph(x, h, allow_dangling=True).names == ["linear_0", "tanh_0"]
    with pytest.raises(TypeError, match="allow_dangling"):
        Graph(x, h, allow_dangling="yes")


def test_a_call_that_mixes_in_another_graphs_input_is_not_dangling_here(rng):
    x, other = Input(3), Input(3)
    h = Tanh()(x)
    Add()(h, other)  # belongs to a graph over both inputs, not to one over x alone
    assert Graph(x, h).names == ["tanh_0"]


def test_a_dangling_branch_left_out_lets_subgraphs_share_placeholders(rng):
    x = Input(4)
    code = Linear(4, 2, rng=0)(x, name="encoder")
    decoded = Linear(2, 4, rng=1)(code, name="decoder")
    encoder, autoencoder = Graph(x, code, allow_dangling=True), Graph(x, decoded)
    assert encoder.names == ["encoder"] and autoencoder.names == ["encoder", "decoder"]
    assert encoder["encoder"] is autoencoder["encoder"]
    data = rng.standard_normal((3, 4))
    np.testing.assert_allclose(autoencoder["decoder"].evaluate(encoder.evaluate(data)), autoencoder.evaluate(data),
                               rtol=1e-15, atol=0)


def test_a_container_made_to_contain_itself_is_refused():
    x = Input(3)
    chain = Sequential(Tanh())
    model = Graph(x, chain(x))
    chain.append(model)  # only a mutation after building can make a cycle
    with pytest.raises(ValueError, match="contains itself"):
        model.parameters()


def test_a_container_that_contains_itself_is_refused_when_called_on_placeholders():
    x = Input(3)
    chain = Sequential(Tanh())
    model = Graph(x, chain(x))
    chain.append(model)
    with pytest.raises(ValueError, match=r"Sequential called on placeholders is a cycle: Sequential at "
                                         r"1\.sequential_0 contains itself"):
        chain(Input(3))  # the cycle is refused at the call, before a trial forward runs it forever


def test_summary_and_train_refuse_a_container_that_contains_itself_naming_the_cycle():
    x = Input(3)
    chain = Sequential(Linear(3, 3, rng=0))
    model = Graph(x, chain(x))
    network = NeuralNetwork(model, CrossEntropyLoss(), Adam(model.parameters()))
    chain.append(model)
    with pytest.raises(ValueError, match="contains itself"):
        model.summary()
    with pytest.raises(ValueError, match="contains itself"):
        chain.summary((2, 3))
    modes = [chain.training, model.training]
    with pytest.raises(ValueError, match="contains itself"):
        model.eval()
    assert [chain.training, model.training] == modes  # refused before any mode changed
    with pytest.raises(ValueError, match="contains itself"):
        network.fit(np.zeros((4, 3)), np.zeros(4, dtype=int), epochs=1)


@pytest.mark.parametrize("part", [lambda: Chunk(1, axis=-1), lambda: Split([3], axis=-1)], ids=["Chunk(1)", "Split([n])"])
def test_jacobian_through_a_one_part_split_or_chunk(part, rng):
    """A node with a one-part tuple output: its Jacobian is a one-part tuple too, whether it feeds another node
    or is the graph's output."""
    x = Input((2, 3))
    inner = Tanh()(part()(Linear(3, 3, rng=0)(x))[0])
    feeding, ending = Graph(x, inner), Graph(x, part()(Linear(3, 3, rng=0)(x)))
    data = rng.standard_normal((2, 2, 3))
    for model in (feeding, ending):
        jac = model.jacobian(data)
        assert isinstance(jac, np.ndarray) and jac.shape == (2, 2, 3, 2, 2, 3)
        np.testing.assert_allclose(jac, numerical_jacobian(model.evaluate, data), rtol=1e-6, atol=1e-8)


def test_a_shared_input_keeps_no_deleted_model_alive():
    """One Input shared by many models (docs/graphs.md's encoder and autoencoder): the placeholder held every
    recorded call, so every model ever built from it stayed in memory."""
    import gc
    import weakref

    x = Input(64)
    kept = []
    for seed in range(20):
        layer = Linear(64, 64, rng=seed)
        kept.append(weakref.ref(layer))
        graph = Graph(x, Tanh()(layer(x)))
        del graph, layer
    gc.collect()
    assert sum(ref() is not None for ref in kept) == 0
    forgotten = Linear(64, 3, rng=0)(Tanh()(x))  # a call in no graph yet is still held: it may be dangling
    with pytest.raises(ValueError, match="dangling"):
        Graph(x, Tanh()(x))
    del forgotten


def test_summary_counts_a_tied_weight_once():
    x = Input(5)
    encoder = Linear(5, 3, rng=0)
    model = Graph(x, Linear.tied_to(encoder.weight, transpose=True)(Tanh()(encoder(x))))
    assert sum(p.size for p in model.parameters()) == 23
    text = model.summary()
    assert "Total params: 23" in text and "Trainable params: 23" in text


def test_run_checks_every_input_shape(rng):
    model = two_in_two_out()
    with pytest.raises(ValueError, match=r"Graph input 1 \(b\) must have shape \(None, 2\)"):
        model.forward(rng.standard_normal((2, 3)), rng.standard_normal((2, 3)))
    with pytest.raises(TypeError, match="takes 2 inputs"):
        model.forward(rng.standard_normal((2, 3)))


# ---------------------------------------------------------------- torch, files, training
class _TorchTwoInput:
    @staticmethod
    def build(torch):
        class TwoInput(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.linear_0, self.linear_1 = torch.nn.Linear(3, 4), torch.nn.Linear(2, 4)
                self.linear_2 = torch.nn.Linear(2, 2)

            def forward(self, a, b):
                ha, hb = torch.tanh(self.linear_0(a)), self.linear_1(b)
                m = ha * hb
                return self.linear_2(m[:, :2] + m[:, 2:]), ha + hb
        return TwoInput().double()


def _residual_mlp(seed=0):
    x = Input(6)
    h = ReLU()(Linear(6, 6, rng=seed)(x, name="fc1"))
    h = Add()(Linear(6, 6, rng=seed + 1)(h, name="fc2"), x)
    return Graph(x, Linear(6, 3, rng=seed + 2)(h, name="head"))


def _torch_residual_mlp(torch):
    class ResidualMLP(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2, self.head = torch.nn.Linear(6, 6), torch.nn.Linear(6, 6), torch.nn.Linear(6, 3)

        def forward(self, x):
            return self.head(self.fc2(torch.relu(self.fc1(x))) + x)
    return ResidualMLP().double()


@pytest.mark.parametrize("kind", ["two-input", "residual-mlp"])
def test_matches_the_torch_module_with_the_same_attribute_names(torch, rng, kind):
    if kind == "two-input":
        model, ref, shapes = two_in_two_out(), _TorchTwoInput.build(torch), [(5, 3), (5, 2)]
    else:
        model, ref, shapes = _residual_mlp(), _torch_residual_mlp(torch), [(5, 6)]
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    xs = [rng.standard_normal(s) for s in shapes]
    ys = model.forward(*xs)
    ys = ys if isinstance(ys, tuple) else (ys,)
    gs = [rng.standard_normal(y.shape) for y in ys]
    dxs = model.backward(tuple(gs) if len(gs) > 1 else gs[0])
    dxs = dxs if isinstance(dxs, tuple) else (dxs,)
    txs = [torch.tensor(x, requires_grad=True) for x in xs]
    tys = ref(*txs)
    tys = tys if isinstance(tys, tuple) else (tys,)
    torch.autograd.backward(tys, [torch.tensor(g) for g in gs])
    for y, ty in zip(ys, tys):
        np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-10)
    for dx, tx in zip(dxs, txs):
        np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-10)
    named = dict(ref.named_parameters())
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, named[name].grad.numpy(), rtol=1e-10, atol=1e-10, err_msg=name)
    with torch.no_grad():
        for p in ref.parameters():
            p.mul_(0.5)
    fresh = two_in_two_out(seed=7) if kind == "two-input" else _residual_mlp(seed=7)
    fresh.load_state_dict({k: v.numpy() for k, v in ref.state_dict().items()})
    for name, value in fresh.state_dict().items():
        np.testing.assert_array_equal(value, ref.state_dict()[name].numpy())


def test_saves_and_loads_like_any_model(tmp_path, suffix, rng):
    model = _residual_mlp(seed=0)
    path = save_model(tmp_path / f"model{suffix}", model)
    rebuilt = _residual_mlp(seed=5)  # a graph is code: rebuild it, then load its weights
    load_model(path, rebuilt)
    data = rng.standard_normal((4, 6))
    np.testing.assert_array_equal(rebuilt.evaluate(data), model.evaluate(data))
    with pytest.raises(ValueError, match="missing keys"):
        load_model(path, residual_graph()[0])


def _network(dropout_seed=11):
    x = Input(64)
    h = Dropout(0.25, rng=dropout_seed)(ReLU()(BatchNorm1d(24)(Linear(64, 24, rng=1)(x))))
    h = Add()(Linear(24, 24, rng=3)(h), h)
    model = Graph(x, Linear(24, 10, rng=2)(h))
    return NeuralNetwork(model, CrossEntropyLoss(), Adam(model.parameters(), lr=1e-2))


def test_trains_and_resumes_from_a_checkpoint_bit_identically(tmp_path):
    X, y, X_test, y_test = load_digits()
    options = dict(batch_size=32, validation_data=(X_test[:100], y_test[:100]), rng=7, progress=False)
    reference = _network()
    history = reference.fit(X[:240], y[:240], epochs=4, **options)
    assert history["loss"][-1] < history["loss"][0]
    path = tmp_path / "run.npz"
    _network().fit(X[:240], y[:240], epochs=2, checkpoint=path, **options)
    resumed = _network(dropout_seed=999)
    assert resumed.fit(X[:240], y[:240], epochs=4, resume=path, **options) == history
    for key, value in reference.model.state_dict().items():
        np.testing.assert_array_equal(resumed.model.state_dict()[key], value, err_msg=key)
    assert [g.bit_generator.state for _, g in node_generators(resumed.model)] == \
        [g.bit_generator.state for _, g in node_generators(reference.model)]


def test_deepcopy_keeps_sharing_inside_the_copy(rng):
    model, _ = residual_graph()
    twin = copy.deepcopy(model)
    assert len(twin.parameters()) == 4
    assert not {id(p) for p in twin.parameters()} & {id(p) for p in model.parameters()}
    assert_gradients(twin, rng.standard_normal((2, 4)), rng=rng)  # the copy's shared node still sums both uses
    data = rng.standard_normal((2, 4))
    np.testing.assert_array_equal(twin.evaluate(data), model.evaluate(data))


def test_the_graphs_page_code_runs_in_order(tmp_path, monkeypatch, capsys):
    import re
    from pathlib import Path

    page = Path(__file__).resolve().parent.parent / "docs" / "graphs.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) >= 5
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__graphs_page__"}
    for index, block in enumerate(blocks, 1):
        exec(compile(block, f"docs/graphs.md block {index}", "exec"), namespace)
    assert "Graph summary" in capsys.readouterr().out
