"""L-BFGS against torch.optim.LBFGS: iterations, line search, its state and checkpoints, and its refusals."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from nn_from_scratch.files import flatten_state, unflatten_state
from nn_from_scratch.optim import LBFGS
from nn_from_scratch.parameter import Parameter
from test_optim import _coefficients, _initial_values, _numpy_grads, _torch_loss

CONFIGS = [
    dict(),
    dict(lr=0.5, max_iter=7),
    dict(history_size=2, max_iter=12),
    dict(line_search_fn="strong_wolfe"),
    dict(line_search_fn="strong_wolfe", history_size=3, max_iter=9, max_eval=11),
    dict(lr=0.1, max_iter=1),
    dict(tolerance_change=1e-3, tolerance_grad=1e-3),
]


def _ours_closure(params, coefficients, losses=None):
    def closure():
        for p in params:
            p.zero_grad()
        values = [p.value for p in params]
        for p, g in zip(params, _numpy_grads(values, coefficients)):
            p.grad += g
        loss = sum(float(np.sum(0.5 * c * v * v + np.sin(a * v))) for v, (c, a) in zip(values, coefficients))
        if losses is not None:
            losses.append(loss)
        return loss
    return closure


def _torch_closure(torch, optimizer, tensors, coefficients):
    def closure():
        optimizer.zero_grad()
        loss = _torch_loss(torch, tensors, coefficients)
        loss.backward()
        return loss
    return closure


@pytest.mark.parametrize("kwargs", CONFIGS, ids=str)
def test_lbfgs_follows_torch_step_by_step(torch, rng, kwargs):
    coefficients, values = _coefficients(rng), _initial_values(rng)
    params = [Parameter(v) for v in values]
    tensors = [torch.tensor(v, requires_grad=True) for v in values]
    ours, theirs = LBFGS(params, **kwargs), torch.optim.LBFGS(tensors, **kwargs)
    closure, reference = _ours_closure(params, coefficients), _torch_closure(torch, theirs, tensors, coefficients)
    for call in range(3):
        loss, torch_loss = ours.step(closure), theirs.step(reference)
        assert loss == pytest.approx(float(torch_loss.detach()), rel=1e-10, abs=1e-12), call
        for p, t in zip(params, tensors):
            np.testing.assert_allclose(p.value, t.detach().numpy(), rtol=1e-10, atol=1e-10, err_msg=f"call {call}")
        state, torch_state = ours.state[0], theirs.state[tensors[0]]
        assert (state["func_evals"], state["n_iter"]) == (torch_state["func_evals"], torch_state["n_iter"]), call
        np.testing.assert_allclose(state["d"], torch_state["d"].numpy(), rtol=1e-9, atol=1e-12)
        assert len(torch_state["old_dirs"]) == state["old_dirs"].shape[0]
        for mine, theirs_dir in zip(state["old_dirs"], torch_state["old_dirs"]):
            np.testing.assert_allclose(mine, theirs_dir.numpy(), rtol=1e-9, atol=1e-12)
        assert state["t"] == pytest.approx(float(torch_state["t"]), rel=1e-9)
    assert not np.allclose(params[0].value, values[0])


def test_lbfgs_in_float32_stays_float32_and_matches_torch(torch, rng):
    coefficients = [(c.astype(np.float32), a.astype(np.float32)) for c, a in _coefficients(rng)]
    values = _initial_values(rng, np.float32)
    params = [Parameter(v) for v in values]
    tensors = [torch.tensor(v, requires_grad=True) for v in values]
    ours, theirs = LBFGS(params, max_iter=5, history_size=4), torch.optim.LBFGS(tensors, max_iter=5, history_size=4)
    for _ in range(2):
        ours.step(_ours_closure(params, coefficients))
        theirs.step(_torch_closure(torch, theirs, tensors, coefficients))
    for p, t in zip(params, tensors):
        assert p.value.dtype == np.float32
        np.testing.assert_allclose(p.value, t.detach().numpy(), rtol=1e-4, atol=1e-5)
    assert all(ours.state[0][k].dtype == np.float32 for k in ("d", "old_dirs", "ro", "prev_flat_grad"))


def test_strong_wolfe_finds_the_minimum_of_rosenbrock():
    p = Parameter(np.array([-1.5, 2.0]))

    def closure():
        p.zero_grad()
        x, y = p.value
        p.grad += [-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)]
        return (1 - x) ** 2 + 100 * (y - x * x) ** 2

    optimizer = LBFGS([p], line_search_fn="strong_wolfe", max_iter=200, tolerance_grad=1e-12, tolerance_change=0)
    optimizer.step(closure)
    np.testing.assert_allclose(p.value, [1.0, 1.0], atol=1e-8)


@pytest.mark.parametrize("kwargs", [dict(), dict(line_search_fn="strong_wolfe", history_size=2)], ids=str)
def test_a_run_resumes_exactly_through_a_checkpoint(rng, kwargs):
    coefficients, values = _coefficients(rng), _initial_values(rng)
    reference = [Parameter(v) for v in values]
    optimizer = LBFGS(reference, max_iter=4, **kwargs)
    for _ in range(4):
        optimizer.step(_ours_closure(reference, coefficients))
    first = [Parameter(v) for v in values]
    interrupted = LBFGS(first, max_iter=4, **kwargs)
    for _ in range(2):
        interrupted.step(_ours_closure(first, coefficients))
    tree, arrays = flatten_state(interrupted.state_dict(), "optimizer/")
    saved = unflatten_state(json.loads(json.dumps(tree)), arrays)
    resumed_params = [Parameter(p.value) for p in first]
    resumed = LBFGS(resumed_params, max_iter=4, lr=0.3, **kwargs)
    resumed.load_state_dict(saved)
    assert resumed.lr == 1.0 and set(resumed.state[0]) == set(interrupted.state[0])
    for _ in range(2):
        resumed.step(_ours_closure(resumed_params, coefficients))
    for p, q in zip(resumed_params, reference):
        np.testing.assert_array_equal(p.value, q.value)


def test_a_bad_state_is_refused_and_changes_nothing(rng):
    coefficients, values = _coefficients(rng), _initial_values(rng)
    params = [Parameter(v) for v in values]
    optimizer = LBFGS(params, max_iter=3, history_size=5)
    optimizer.step(_ours_closure(params, coefficients))
    good = optimizer.state_dict()
    before = copy.deepcopy(good)
    n = sum(v.size for v in values)
    corruptions = [("d", np.zeros(n + 1)), ("old_dirs", np.zeros((7, n))), ("ro", np.zeros((2, 2))),
                   ("t", "x"), ("t", float("nan")), ("prev_loss", [1.0]), ("n_iter", -1), ("H_diag", None),
                   ("prev_flat_grad", np.zeros(n, dtype=np.float32))]
    for key, junk in corruptions:
        bad = copy.deepcopy(good)
        bad["state"][0][key] = junk
        with pytest.raises((TypeError, ValueError)):
            optimizer.load_state_dict(bad)
    bad = copy.deepcopy(good)
    bad["state"][1] = bad["state"].pop(0)
    with pytest.raises(ValueError, match="first parameter"):
        optimizer.load_state_dict(bad)
    bad = copy.deepcopy(good)
    del bad["state"][0]["old_stps"]
    with pytest.raises(ValueError, match="entries"):
        optimizer.load_state_dict(bad)
    after = optimizer.state_dict()
    for key, value in before["state"][0].items():
        np.testing.assert_array_equal(after["state"][0][key], value) if isinstance(value, np.ndarray) \
            else (value == after["state"][0][key]) or pytest.fail(key)


def test_step_without_a_closure_takes_one_iteration_from_the_gradients(torch, rng):
    """With max_iter=1 and no line search, the gradients in .grad are the closure's one evaluation: the same step as
    torch's with a closure that returns the loss of those gradients; fit can drive it so."""
    coefficients, values = _coefficients(rng), _initial_values(rng)
    params = [Parameter(v) for v in values]
    tensors = [torch.tensor(v, requires_grad=True) for v in values]
    ours, theirs = LBFGS(params, lr=0.5, max_iter=1), torch.optim.LBFGS(tensors, lr=0.5, max_iter=1)
    for _ in range(4):
        _ours_closure(params, coefficients)()
        assert ours.step() is None
        theirs.step(_torch_closure(torch, theirs, tensors, coefficients))
        for p, t in zip(params, tensors):
            np.testing.assert_allclose(p.value, t.detach().numpy(), rtol=1e-10, atol=1e-10)
    assert ours.state[0]["prev_loss"] is None and ours.step_count == 4
    for kwargs in (dict(), dict(max_iter=1, line_search_fn="strong_wolfe")):
        with pytest.raises(TypeError, match="needs a closure"):
            LBFGS(params, **kwargs).step()


def test_fit_drives_lbfgs_one_iteration_per_batch():
    from nn_from_scratch import Sequential
    from nn_from_scratch.losses import MSELoss
    from nn_from_scratch.nodes import Linear, Tanh
    from nn_from_scratch.training import NeuralNetwork

    r = np.random.default_rng(0)
    X = r.normal(size=(64, 3))
    y = X @ np.array([[1.0], [-2.0], [0.5]]) + 0.1
    model = Sequential(Linear(3, 8, rng=0), Tanh(), Linear(8, 1, rng=1))
    network = NeuralNetwork(model, MSELoss(), LBFGS(model.parameters(), lr=0.2, max_iter=1, history_size=10))
    history = network.fit(X, y, epochs=6, batch_size=64, progress=False, shuffle=False)
    assert history["loss"][-1] < 0.5 * history["loss"][0]


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(max_iter=0), ValueError, "max_iter"),
    (dict(max_eval=0), ValueError, "max_eval"),
    (dict(history_size=0), ValueError, "history_size"),
    (dict(line_search_fn="armijo"), ValueError, "only 'strong_wolfe'"),
    (dict(tolerance_grad=-1.0), ValueError, "tolerance_grad"),
    (dict(lr=-1.0), ValueError, "learning rate"),
    (dict(max_iter=2.5), TypeError, "max_iter"),
])
def test_bad_arguments_are_refused(kwargs, error, message):
    with pytest.raises(error, match=message):
        LBFGS([Parameter(np.zeros(2))], **kwargs)


def test_one_group_and_parameters_of_several_dtypes():
    """One group, as torch; parameters of several dtypes share a vector of the widest, each step cast back."""
    a, b = Parameter(np.array([1.0, -1.0])), Parameter(np.array([0.5, 2.0, -3.0], dtype=np.float32))

    def closure():
        for p in (a, b):
            p.zero_grad()
        a.grad += 2 * a.value
        b.grad += 2 * b.value
        return float(np.sum(a.value**2) + np.sum(b.value.astype(np.float64) ** 2))

    optimizer = LBFGS([a, b], line_search_fn="strong_wolfe")
    optimizer.step(closure)
    assert a.value.dtype == np.float64 and b.value.dtype == np.float32
    assert optimizer.state[0]["d"].dtype == np.float64
    np.testing.assert_allclose(np.concatenate([a.value, b.value]), 0.0, atol=1e-6)
    with pytest.raises(ValueError, match="parameter groups"):
        LBFGS([{"params": [a]}, {"params": [Parameter(np.ones(2))]}])
    with pytest.raises(ValueError, match="parameter groups"):
        optimizer.add_param_group({"params": [Parameter(np.ones(2))]})
    assert LBFGS([a]).max_eval == 25 and optimizer.param_groups[0]["line_search_fn"] == "strong_wolfe"


def test_constructor_arguments_are_torchs(torch):
    import inspect

    ours = [(n, p.default) for n, p in inspect.signature(LBFGS).parameters.items()]
    theirs = [(n, p.default) for n, p in inspect.signature(torch.optim.LBFGS).parameters.items()]
    assert ours == theirs
