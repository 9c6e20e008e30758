"""Graph inputs without a batch axis, Constants baked into a graph, input names, and dtypes kept on the way in."""
from __future__ import annotations

import numpy as np
import pytest

from nn_from_scratch import Graph, Input, Node
from nn_from_scratch.containers import Constant
from nn_from_scratch.gradcheck import assert_gradients
from nn_from_scratch.nodes import Add, Linear, Multiply, Scale
from nn_from_scratch.training.data import input_names


class Picked(Node):
    """``y = where(mask, x, 0)`` with a constant mask input; records the dtypes of the masks it was given."""

    num_inputs = 2
    constant_inputs = (1,)

    def __init__(self):
        super().__init__()
        self.seen = []

    def _forward(self, x, mask, ctx):
        self.seen.append(mask.dtype)
        ctx.mask = np.broadcast_to(mask, np.broadcast_shapes(x.shape, mask.shape)).astype(bool)
        return np.where(ctx.mask, x, 0.0)

    def _vjp(self, g, ctx):
        return np.where(ctx.mask, g, 0.0).sum(axis=0) if ctx.x.ndim < g.ndim else np.where(ctx.mask, g, 0.0), None


# ------------------------------------------------------------------ Constant
def test_a_constant_is_a_buffer_of_the_graph_saved_and_loaded_with_it(tmp_path, rng):
    from nn_from_scratch.files import load_model, save_model

    offset = rng.standard_normal(3)
    x = Input(3)
    model = Graph(x, Add()(Linear(3, 3, rng=0)(x), Constant(offset, name="offset")))
    assert list(model.state_dict()) == ["linear_0.weight", "linear_0.bias", "offset"]
    data = rng.standard_normal((4, 3))
    np.testing.assert_allclose(model.forward(data), model["linear_0"].evaluate(data) + offset, rtol=1e-15)
    assert_gradients(model, data, rng=rng)
    assert all(name != "offset" for name, _ in model.named_parameters())  # never trained
    path = tmp_path / "model.npz"
    save_model(path, model)
    twin = Graph(x, Add()(Linear(3, 3, rng=1)(x), Constant(np.zeros(3), name="offset")))
    load_model(path, twin)
    np.testing.assert_array_equal(twin.forward(data), model.forward(data))


def test_a_constant_keeps_its_dtype_from_the_trial_forward_on(tmp_path):
    from nn_from_scratch.files import load_model, save_model

    picked = Picked()
    x = Input(3)
    model = Graph(x, picked(x, Constant(np.array([True, False, True]))))
    assert picked.seen == [np.bool_, np.bool_]  # the trial forward ran on the mask itself, at two batch sizes
    np.testing.assert_array_equal(model.forward(np.ones((2, 3))), [[1, 0, 1], [1, 0, 1]])
    assert picked.seen[-1] == np.bool_ and model.constant_0.dtype == np.bool_
    pytest.importorskip("safetensors")
    save_model(tmp_path / "masked.safetensors", model)
    load_model(tmp_path / "masked.safetensors", model)
    assert model.state_dict()["constant_0"].dtype == np.bool_


def test_the_graph_keeps_its_own_copy_of_a_constant(rng):
    table = np.ones(3)
    c, x = Constant(table), Input(3)
    first, second = Graph(x, Multiply()(x, c)), Graph(x, Add()(x, c))
    table[...] = 5.0  # the caller's array is not the graph's
    np.testing.assert_array_equal(first.forward(np.full((1, 3), 2.0)), [[2.0, 2.0, 2.0]])
    first.load_state_dict({"constant_0": np.full(3, 3.0)})
    np.testing.assert_array_equal(second.forward(np.zeros((1, 3))), [[1.0, 1.0, 1.0]])  # nor another graph's


def test_constants_are_named_in_order_of_first_use_around_given_names():
    x = Input(2)
    a, b, c = Constant(np.ones(2)), Constant(np.ones(2), name="constant_0"), Constant(np.ones(2))
    model = Graph(x, Add(4)(x, a, b, c))
    assert [key for key in model.state_dict()] == ["constant_1", "constant_0", "constant_2"]
    assert "constants=[constant_1, constant_0, constant_2]" in repr(model)


@pytest.mark.parametrize("name, message", [
    ("names", r"the Constant name 'names' is taken by the Graph's own attribute Graph.names"),
    ("forward", "taken by the Graph's own attribute"),
    ("_plan", "taken by the Graph's own attribute"),
    ("scale_0", r"the name 'scale_0' of Constant\(shape=\(2,\), dtype=float64, name='scale_0'\) is also given"),
])
def test_a_constant_name_that_is_taken_is_refused(name, message):
    x = Input(2)
    with pytest.raises(ValueError, match=message):
        Graph(x, Add()(Scale(2.0)(x), Constant(np.ones(2), name=name)))


def test_bad_constants_are_refused():
    with pytest.raises(TypeError, match="must hold real numbers or booleans, got dtype <U1"):
        Constant(np.array(["a"]))
    with pytest.raises(ValueError, match="a Constant's name must be a Python identifier"):
        Constant(np.ones(2), name="a.b")
    x = Input(2)
    same = Constant(np.ones(2), name="table")
    with pytest.raises(ValueError, match="is also given to a node or another Constant"):
        Graph(x, Add(3)(x, same, Constant(np.ones(2), name="table")))
    with pytest.raises(ValueError, match=r"input 0 is a Constant, not an Input placeholder"):
        Graph(same, Scale(2.0)(same))
    with pytest.raises(ValueError, match="cannot take input of shape"):
        Add()(x, Constant(np.ones(3)))  # refused at the call, as every shape is


def test_a_call_on_a_constant_left_unused_is_a_dangling_branch():
    x, c = Input(2), Constant(np.ones(2))
    y = Add()(x, c)
    Scale(2.0)(c)
    with pytest.raises(ValueError, match="dangling branch"):
        Graph(x, y)
    assert Graph(x, y, allow_dangling=True).forward(np.zeros((1, 2))).shape == (1, 2)


def test_the_summary_lists_a_constant_and_counts_a_floating_one_as_non_trainable():
    x = Input(3)
    model = Graph(x, Picked()(Add()(x, Constant(np.ones(3), name="shift")), Constant(np.ones(3, dtype=bool))))
    text = model.summary()
    assert repr(text) == text
    rows = {line.split()[0]: line for line in text.splitlines()}
    assert "Constant" in rows["shift"] and rows["shift"].endswith(" 3") and rows["constant_0"].endswith(" 0")
    assert "Non-trainable params: 3" in text and "Total params: 3" in text


def test_a_constant_moves_with_the_model():
    strict = pytest.importorskip("array_api_strict")
    from nn_from_scratch.backend import on_backend

    x = Input(2)
    model = Graph(x, Add()(x, Constant(np.array([1.0, 2.0]))))
    with on_backend("array_api_strict", model):
        y = model.forward(strict.asarray(np.zeros((1, 2))))
        np.testing.assert_array_equal(np.asarray(y), [[1.0, 2.0]])
        with pytest.raises(TypeError, match="the Constant constant_0 lives in array_api_strict"):
            model.forward(np.zeros((1, 2)))
    assert isinstance(model.constant_0, np.ndarray)


# ------------------------------------------------------------------ inputs without a batch axis
def test_an_unbatched_input_is_left_out_of_the_batch_size_check(rng):
    x, shift = Input((2, 3)), Input((2, 3), batched=False, name="shift")
    model = Graph([x, shift], Add()(Linear(3, 3, rng=0)(x), Scale(0.5)(shift)))  # (N, 2, 3) + (2, 3)
    assert shift.shape == (2, 3) and repr(shift) == "Input((2, 3), name='shift', batched=False)"
    assert model.forward(rng.standard_normal((5, 2, 3)), rng.standard_normal((2, 3))).shape == (5, 2, 3)
    assert_gradients(model, (rng.standard_normal((3, 2, 3)), rng.standard_normal((2, 3))), rng=rng)
    with pytest.raises(ValueError, match=r"Graph input 1 \(shift\) must have shape \(2, 3\) "
                                         r"\(an input without a batch axis\), got \(1, 2, 3\)"):
        model.forward(np.ones((2, 2, 3)), np.ones((1, 2, 3)))


def test_a_mask_input_keeps_its_booleans_and_gets_no_gradient(rng):
    picked = Picked()
    x, mask = Input(3), Input(3, batched=False, dtype=bool, name="mask")
    model = Graph([x, mask], picked(Scale(2.0)(x), mask))
    assert model.constant_inputs == (1,) and model.input_names == ("input_0", "mask")
    y = model.forward(np.ones((5, 3)), np.array([True, False, True]))  # 5 samples, one mask: no batch clash
    assert picked.seen[-1] == np.bool_
    np.testing.assert_array_equal(y[0], [2.0, 0.0, 2.0])
    dx, dmask = model.backward(np.ones((5, 3)))
    assert dmask is None and dx.shape == (5, 3)
    assert_gradients(model, (rng.standard_normal((2, 3)), np.array([False, True, True])))


def test_batched_inputs_must_still_share_one_batch_size():
    a, b, c = Input(2, name="a"), Input(2, name="b"), Input(2, batched=False, name="c")
    model = Graph([a, b, c], Add(3)(a, b, c))
    with pytest.raises(ValueError, match=r"Graph inputs must share one batch size, got a: 2, b: 3$"):
        model.forward(np.ones((2, 2)), np.ones((3, 2)), np.ones(2))


def test_bad_unbatched_inputs_are_refused():
    with pytest.raises(TypeError, match="batched must be True or False"):
        Input(3, batched="no")
    with pytest.raises(ValueError, match=r"shape must hold positive ints \(the whole input\)"):
        Input((0, 2), batched=False)
    assert Input((), batched=False).shape == ()


# ------------------------------------------------------------------ input names
def test_input_names_are_public_and_read_only():
    image, extra = Input(4, name="image"), Input(2)
    model = Graph([image, extra], Add()(Linear(4, 2)(image), extra))
    assert model.input_names == ("image", "input_1") == input_names(model)
    with pytest.raises(AttributeError):
        model.input_names = ("a", "b")
