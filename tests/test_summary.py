"""Sequential.summary: a Keras-style table with exact parameter counts that leaves the model untouched."""
from __future__ import annotations

import numpy as np
import pytest

from nn_from_scratch import BatchNorm1d, Dropout, Linear, ReLU, Sequential, SoftMax
from nn_from_scratch.models import mlp


def table_rows(text):
    """The layer rows of the table: the lines between the '-' rule and the closing '=' rule."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if set(line) == {"-"})
    end = next(i for i in range(start + 1, len(lines)) if set(lines[i]) == {"="})
    return lines[start + 1:end]


def test_summary_of_an_mlp_has_exact_counts():
    model = mlp(64, [128, 64], 10, rng=0)
    text = model.summary((32, 64))
    rows = table_rows(text)
    assert len(rows) == 5  # Linear, ReLU, Linear, ReLU, Linear
    expected = [
        ("0", "Linear(in_features=64, out_features=128, bias=True)", "(32, 128)", "8,320"),
        ("1", "ReLU()", "(32, 128)", "0"),
        ("2", "Linear(in_features=128, out_features=64, bias=True)", "(32, 64)", "8,256"),
        ("3", "ReLU()", "(32, 64)", "0"),
        ("4", "Linear(in_features=64, out_features=10, bias=True)", "(32, 10)", "650"),
    ]
    for row, (index, layer, shape, count) in zip(rows, expected):
        assert row.split()[0] == index
        assert layer in row and shape in row
        assert row.endswith(count)
    total = 64 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10
    assert total == sum(p.size for p in model.parameters()) == 17226
    assert "Total params: 17,226" in text
    assert "Trainable params: 17,226" in text
    assert "Non-trainable params: 0" in text
    assert text.splitlines()[0] == "Sequential summary, input shape (32, 64)"
    header = text.splitlines()[2]
    assert header.split()[:2] == ["#", "Layer"] and "Output shape" in header and "Param #" in header


def test_summary_shows_the_batch_as_given_and_none_for_any_batch():
    model = Sequential(Linear(4, 3, rng=0), SoftMax())
    assert "(7, 3)" in model.summary((7, 4))
    text = model.summary((None, 4))
    assert "input shape (None, 4)" in text and all("(None, 3)" in row for row in table_rows(text))
    assert "(3,)" in model.summary(4)  # a single sample without a batch axis


def snapshot(model):
    return {name: np.array(value, copy=True) for name, value in model.state_dict().items()}


def test_summary_leaves_the_model_state_unchanged():
    bn = BatchNorm1d(8)
    dropout = Dropout(0.5, rng=3)
    inner = Sequential(Linear(8, 4, rng=1), ReLU())
    model = Sequential(Linear(5, 8, rng=0), bn, dropout, inner)
    model.forward(np.random.default_rng(0).standard_normal((6, 5)))  # a pending forward pass
    model.backward(np.ones((6, 4)), reset_after=False)
    cached = model.pending
    inner.eval()  # mixed modes must come back as they were
    before = snapshot(model)
    rng_state = dropout.rng.bit_generator.state
    grads = [p.grad.copy() for p in model.parameters()]

    text = model.summary((1, 5))  # a batch of one would fail batch statistics in training mode

    assert "BatchNorm1d(8" in text and "Sequential(Linear, ReLU)" in text
    rows = table_rows(text)
    assert rows[1].endswith("32")  # BatchNorm1d: weight, bias (trainable) + running mean, var
    assert "Total params: 116" in text  # (5*8+8) + (2*8 + 16) + (8*4+4)
    assert "Trainable params: 100" in text and "Non-trainable params: 16" in text
    after = snapshot(model)
    assert before.keys() == after.keys()
    for key in before:
        np.testing.assert_array_equal(before[key], after[key], err_msg=key)
    assert int(bn.num_batches_tracked) == 1
    assert dropout.rng.bit_generator.state == rng_state
    assert model.pending is cached and all(node.pending is None for node in (bn, dropout, inner))
    assert model.training and bn.training and dropout.training and not inner.training
    assert not inner.nodes[0].training
    for p, g in zip(model.parameters(), grads):
        np.testing.assert_array_equal(p.grad, g)


def test_summary_names_the_layer_that_does_not_fit():
    model = Sequential(Linear(4, 3), Linear(5, 2))
    with pytest.raises(ValueError, match=r"layer 1, Linear\(in_features=5.*input of shape \(2, 3\)"):
        model.summary((2, 4))
    with pytest.raises(ValueError, match="None is allowed for the batch axis only"):
        model.summary((2, None))


def test_a_shared_layer_and_a_tied_weight_are_counted_once():
    layer = Linear(3, 3, rng=0)
    text = Sequential(layer, ReLU(), layer).summary((None, 3))
    rows = table_rows(text)
    assert rows[0].endswith(" 12") and rows[2].endswith(" 0")  # counted at its first row only
    assert "Total params: 12" in text and "Trainable params: 12" in text
    encoder = Linear(5, 3, rng=1)
    decoder = Linear.tied_to(encoder.weight, transpose=True)
    model = Sequential(encoder, ReLU(), decoder)
    text = model.summary((None, 5))
    assert sum(p.size for p in model.parameters()) == 23
    assert table_rows(text)[2].endswith(" 5")  # the decoder's own bias; its weight is the encoder's
    assert "Total params: 23" in text and "Trainable params: 23" in text


def test_a_residual_block_is_shown_with_its_paths():
    from nn_from_scratch import Residual
    block = Residual(Sequential(Linear(4, 6, rng=0), ReLU(), Linear(6, 4, rng=1)), Linear(4, 4, rng=2), after=ReLU())
    rows = table_rows(Sequential(block, Linear(4, 2, rng=3)).summary((None, 4)))
    assert "Residual(f=Sequential(Linear, ReLU, Linear), shortcut=Linear, after=ReLU)" in rows[0]
    assert rows[0].endswith(f" {30 + 28 + 20}") and "(None, 4)" in rows[0]


# ------------------------------------------------------------------ how it shows, and without an input shape
def test_the_summary_is_a_string_whose_repr_is_the_table():
    from nn_from_scratch.containers import Summary
    text = mlp(4, [3], 2, rng=0).summary((None, 4))
    assert isinstance(text, str) and isinstance(text, Summary)
    assert repr(text) == str(text) == text and "\n" in repr(text)  # a REPL shows the table, not one escaped line
    assert str(text).splitlines()[0] == "Sequential summary, input shape (None, 4)"


def test_the_summary_in_an_interactive_session_prints_as_a_table():
    import code
    import contextlib
    import io

    console = code.InteractiveConsole({"model": Sequential(Linear(4, 3, rng=0), ReLU())})
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        console.push("model.summary((None, 4))")
    lines = out.getvalue().splitlines()
    assert lines[0] == "Sequential summary, input shape (None, 4)" and "Total params: 15" in lines


def test_without_an_input_shape_the_table_has_no_output_shapes():
    model = Sequential(Linear(4, 3, rng=0), ReLU(), Linear(3, 2, rng=1))
    text = model.summary()
    assert text.splitlines()[0].startswith("Sequential summary (no input shape given")
    header = text.splitlines()[2]
    assert header.split()[:2] == ["#", "Layer"] and "Output shape" not in header and "Param #" in header
    rows = table_rows(text)
    assert len(rows) == 3 and rows[0].split()[0] == "0" and rows[0].endswith("15") and rows[2].endswith("8")
    assert "Total params: 23" in text and "Trainable params: 23" in text
    assert "Total params: 0" in Sequential().summary()


def test_without_an_input_shape_the_first_layers_declared_shape_is_taken():
    from nn_from_scratch import Node

    class Declared(ReLU):
        def __init__(self, shape):
            Node.__init__(self, input_shape=shape)

    model = Sequential(Declared((None, 4)), Linear(4, 3, rng=0))
    assert model.summary() == model.summary((None, 4))
    assert "Output shape" not in Sequential(Declared((None, None)), Linear(4, 3)).summary()
    from nn_from_scratch import Graph, Input
    x = Input(4)
    model = Sequential(Graph(x, ReLU()(x)), Linear(4, 3, rng=0))  # a graph declares its Input's shape
    assert model.summary() == model.summary((None, 4))


def test_a_named_layer_is_shown_under_its_name():
    from collections import OrderedDict
    text = Sequential(OrderedDict(hidden=Linear(4, 3, rng=0), act=ReLU())).summary((2, 4))
    assert [row.split()[0] for row in table_rows(text)] == ["hidden", "act"]
