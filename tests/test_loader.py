"""Datasets and the DataLoader: arrays, tuples and dicts batched with a seeded shuffle; fit, evaluate and predict on them."""
from __future__ import annotations

import numpy as np
import pytest

from nn_from_scratch import NeuralNetwork, Sequential
from nn_from_scratch.datasets import (
    ArrayDataset, DataLoader, Dataset, GeneratorDataset, IterableDataset, default_collate, iterate_minibatches,
)
from nn_from_scratch.losses import CrossEntropyLoss
from nn_from_scratch.nodes import Dropout, Linear, ReLU
from nn_from_scratch.optim import Adam
from nn_from_scratch.training import CheckpointError, node_generators


def arrays(n=50, seed=0):
    r = np.random.default_rng(seed)
    X = r.normal(size=(n, 4))
    return X, (X[:, 0] + X[:, 1] > 0).astype(np.int64)


# ------------------------------------------------------------------ datasets
def test_an_array_dataset_hands_out_samples_shaped_as_its_arrays():
    X, y = arrays(6)
    images = np.arange(6 * 2 * 3).reshape(6, 2, 3)
    plain = ArrayDataset(X, y)
    assert len(plain) == 6 and plain.has_targets
    x1, y1 = plain[1]
    np.testing.assert_array_equal(x1, X[1])
    assert y1 == y[1]
    np.testing.assert_array_equal(plain[-1][0], X[5])
    pair = ArrayDataset((X, images), (y, X[:, :1]))
    (xa, xb), (ya, yb) = pair[2]
    np.testing.assert_array_equal(xb, images[2])
    np.testing.assert_array_equal(yb, X[2, :1])
    named = ArrayDataset({"image": images, "meta": X})
    assert not named.has_targets and sorted(named[3]) == ["image", "meta"]
    np.testing.assert_array_equal(named[3]["image"], images[3])
    batch = named.take(np.array([4, 0]))
    np.testing.assert_array_equal(batch["meta"], X[[4, 0]])
    assert ArrayDataset([X, images])[0][1].shape == (2, 3)  # a list of arrays is one array per input too


@pytest.mark.parametrize("X, y, message", [
    ({"a": np.zeros((3, 2)), "b": np.zeros((4, 2))}, None, r"X\['a'\] and X\['b'\] must have the same number of "
                                                           r"samples, got shapes \(3, 2\) and \(4, 2\)"),
    (np.zeros((3, 2)), (np.zeros(3), np.zeros(2)), r"X and y\[1\] must have the same number of samples"),
    (np.float64(1.0), None, "same number of samples"),
    ((), np.zeros(3), "at least one array"),
])
def test_an_array_dataset_refuses_arrays_of_other_lengths(X, y, message):
    with pytest.raises(ValueError, match=message):
        ArrayDataset(X, y)


def test_an_array_dataset_index_is_checked():
    data = ArrayDataset(np.zeros((3, 2)))
    with pytest.raises(IndexError, match="out of range for 3 samples"):
        data[3]
    with pytest.raises(TypeError, match="must be an int"):
        data[1.0]


def test_default_collate_stacks_arrays_tuples_and_dicts():
    samples = [({"a": np.full(2, i), "b": i}, np.float64(i)) for i in range(3)]
    batch = default_collate(samples)
    np.testing.assert_array_equal(batch[0]["a"], [[0, 0], [1, 1], [2, 2]])
    np.testing.assert_array_equal(batch[0]["b"], [0, 1, 2])
    np.testing.assert_array_equal(batch[1], [0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="same keys"):
        default_collate([{"a": 1}, {"b": 1}])
    with pytest.raises(ValueError, match="tuples of 2 parts"):
        default_collate([(1, 2), (1,)])
    with pytest.raises(TypeError, match="stacks arrays, numbers, tuples and dicts"):
        default_collate(["text"])


# ------------------------------------------------------------------ the loader
def test_the_loader_visits_every_sample_once_in_a_seeded_order():
    X, y = arrays(50)
    data = ArrayDataset(X, np.arange(50))
    orders = []
    for _ in range(2):
        loader = DataLoader(data, batch_size=16, shuffle=True, rng=3)
        assert len(loader) == 4
        epoch = [batch[1] for batch in loader]
        assert [len(part) for part in epoch] == [16, 16, 16, 2]
        orders.append(np.concatenate(epoch))
        second = np.concatenate([batch[1] for batch in loader])  # the next pass draws a new order
        assert sorted(second) == list(range(50)) and list(second) != list(orders[-1])
    np.testing.assert_array_equal(orders[0], orders[1])
    assert sorted(orders[0]) == list(range(50))
    same = [xb for xb, _ in iterate_minibatches(X, y, 16, shuffle=True, rng=3)]  # the order fit always drew
    for (xb, _), expected in zip(DataLoader(ArrayDataset(X, y), 16, True, rng=3), same):
        np.testing.assert_array_equal(xb, expected)


def test_drop_last_and_an_unshuffled_order():
    X, _ = arrays(50)
    loader = DataLoader(ArrayDataset(np.arange(50)), batch_size=16, drop_last=True)
    assert len(loader) == 3
    np.testing.assert_array_equal(np.concatenate(list(loader)), np.arange(48))


class Squares(Dataset):
    """A map-style dataset without ``take``: each sample is made on demand, as a dict."""

    def __len__(self):
        return 7

    def __getitem__(self, index):
        return {"x": np.array([index, index ** 2], dtype=float)}, index % 2


def test_a_map_style_dataset_is_collated_sample_by_sample():
    batches = list(DataLoader(Squares(), batch_size=3, shuffle=True, rng=0))
    assert [len(y) for _, y in batches] == [3, 3, 1]
    rows = np.concatenate([x["x"] for x, _ in batches])
    np.testing.assert_array_equal(np.sort(rows[:, 0]), np.arange(7))
    np.testing.assert_array_equal(rows[:, 1], rows[:, 0] ** 2)
    firsts = DataLoader(Squares(), batch_size=4, collate_fn=lambda samples: [s[1] for s in samples])
    assert list(firsts) == [[0, 1, 0, 1], [0, 1, 0]]


def test_a_generator_dataset_gets_the_loader_generator_on_each_pass():
    seen = []

    def make(rng):
        seen.append(rng)
        for i in rng.permutation(10):
            yield np.array([i], dtype=float), i

    loader = DataLoader(GeneratorDataset(make, length=10), batch_size=4, rng=5)
    first = np.concatenate([y for _, y in loader])
    assert seen == [loader.rng] and sorted(first) == list(range(10)) and len(loader) == 3
    np.testing.assert_array_equal(first, np.random.default_rng(5).permutation(10))
    assert [len(y) for _, y in DataLoader(GeneratorDataset(make), batch_size=4, drop_last=True)] == [4, 4]
    with pytest.raises(TypeError, match="has no length"):
        len(DataLoader(GeneratorDataset(make), batch_size=4))
    with pytest.raises(ValueError, match="read in its own order"):
        DataLoader(GeneratorDataset(make), shuffle=True)


@pytest.mark.parametrize("options, error, message", [
    ({"batch_size": 0}, ValueError, "batch_size must be a positive int"),
    ({"shuffle": 1}, TypeError, "shuffle must be a bool"),
    ({"rng": "seed"}, TypeError, "rng must be"),
    ({"collate_fn": 3}, TypeError, "collate_fn must be callable"),
])
def test_bad_loader_options_are_refused(options, error, message):
    with pytest.raises(error, match=message):
        DataLoader(ArrayDataset(np.zeros((4, 2))), **options)
    with pytest.raises(TypeError, match="needs a Dataset"):
        DataLoader(object())


# ------------------------------------------------------------------ fit on a loader
def network(seed=0, dropout=True):
    layers = [Linear(4, 16, rng=seed), ReLU()] + ([Dropout(0.2, rng=seed + 1)] if dropout else []) + \
        [Linear(16, 2, rng=seed + 2)]
    model = Sequential(*layers)
    return NeuralNetwork(model, CrossEntropyLoss(), Adam(model.parameters(), lr=1e-2))


def same_weights(a, b):
    sa, sb = a.model.state_dict(), b.model.state_dict()
    return sorted(sa) == sorted(sb) and all(np.array_equal(sa[k], sb[k]) for k in sa)


def test_fit_on_a_loader_is_fit_on_its_arrays_bit_for_bit():
    X, y = arrays(90)
    Xv, yv = arrays(30, seed=1)
    plain, loaded = network(), network()
    history = plain.fit(X, y, epochs=3, batch_size=16, rng=4, validation_data=(Xv, yv), progress=False)
    loader = DataLoader(ArrayDataset(X, y), batch_size=16, shuffle=True, rng=4)
    validation = DataLoader(ArrayDataset(Xv, yv), batch_size=256)
    assert loaded.fit(loader, epochs=3, validation_data=validation, progress=False) == history
    assert same_weights(plain, loaded)
    assert loaded.evaluate(validation) == plain.evaluate(Xv, yv)
    np.testing.assert_array_equal(loaded.predict(DataLoader(ArrayDataset(Xv), batch_size=7)), plain.predict(Xv))
    np.testing.assert_array_equal(loaded.predict(validation), plain.predict(Xv))  # the targets are left out


def test_fit_on_a_loader_resumes_bit_for_bit(tmp_path):
    X, y = arrays(90)
    straight = network()
    history = straight.fit(DataLoader(ArrayDataset(X, y), 16, True, rng=4), epochs=4, progress=False)
    path = tmp_path / "run.npz"
    network().fit(DataLoader(ArrayDataset(X, y), 16, True, rng=4), epochs=2, progress=False, checkpoint=path)
    resumed = network()
    loader = DataLoader(ArrayDataset(X, y), 16, True, rng=999)  # the checkpoint's generator state wins
    assert resumed.fit(loader, epochs=4, progress=False, resume=path) == history
    assert same_weights(resumed, straight)
    assert [g.bit_generator.state for _, g in node_generators(resumed.model)] == \
        [g.bit_generator.state for _, g in node_generators(straight.model)]
    with pytest.raises(CheckpointError, match="made with batch_size=16, this fit has batch_size=8"):
        network().fit(DataLoader(ArrayDataset(X, y), 8, True), epochs=4, progress=False, resume=path)


def test_a_generator_dataset_trains_and_resumes_bit_for_bit(tmp_path):
    X, y = arrays(60)

    def make(rng):
        for i in rng.permutation(len(X)):
            yield X[i], y[i]

    def loader():
        return DataLoader(GeneratorDataset(make), batch_size=16, rng=2)

    straight = network()
    history = straight.fit(loader(), epochs=3, progress=False)
    path = tmp_path / "run.npz"
    network().fit(loader(), epochs=1, progress=False, checkpoint=path)
    resumed = network()
    assert resumed.fit(loader(), epochs=3, progress=False, resume=path) == history
    assert same_weights(resumed, straight)


def test_a_non_finite_loader_batch_is_refused_before_its_step(tmp_path):
    X, y = arrays(40)
    X[33, 2] = np.nan
    net = network(dropout=False)
    steps = []
    original = net.optimizer.step
    net.optimizer.step = lambda: (steps.append(1), original())
    loader = DataLoader(ArrayDataset(X, y), batch_size=8, shuffle=False)
    with pytest.raises(ValueError, match=r"X holds nan at sample 33 \(row 1 of batch 5\): training needs finite"):
        net.fit(loader, epochs=1, progress=False)
    assert len(steps) == 4  # the four batches before it, and none on it
    shuffled = DataLoader(ArrayDataset(X, y), batch_size=8, shuffle=True, rng=0)
    with pytest.raises(ValueError, match=r"sample 33 \(row \d of batch \d\)"):
        network(dropout=False).fit(shuffled, epochs=1, progress=False)
    Xv, yv = arrays(10, seed=2)
    yv = yv.astype(float)
    yv[3] = np.inf
    validation = DataLoader(ArrayDataset(Xv, yv), batch_size=4)
    with pytest.raises(ValueError, match=r"validation y holds inf at sample 3 \(row 3 of batch 1\)"):
        network(dropout=False).fit(DataLoader(ArrayDataset(X[:32], y[:32])), epochs=1, progress=False,
                                   validation_data=validation)


def test_fit_refuses_loader_options_given_twice():
    X, y = arrays(20)
    loader = DataLoader(ArrayDataset(X, y), batch_size=8)
    for options in ({"batch_size": 8}, {"shuffle": True}, {"rng": 0}, {"validation_split": 0.2}):
        with pytest.raises(ValueError, match="come.? from the loader"):
            network().fit(loader, epochs=1, progress=False, **options)
    with pytest.raises(ValueError, match="come.? from the loader"):
        network().fit(loader, y, epochs=1, progress=False)
    with pytest.raises(TypeError, match="without targets"):
        network().fit(DataLoader(ArrayDataset(X)), epochs=1, progress=False)
    with pytest.raises(ValueError, match="validation DataLoader must not shuffle"):
        network().fit(loader, epochs=1, progress=False, validation_data=DataLoader(ArrayDataset(X, y), shuffle=True))


class Pairs(IterableDataset):
    """An iterable dataset whose samples are not (inputs, targets) pairs."""

    def __iter__(self):
        return iter([np.zeros(4)] * 3)


def test_a_loader_of_other_batches_is_refused_with_its_shape():
    with pytest.raises(TypeError, match=r"must give \(inputs, targets\) batches, got a ndarray"):
        network().fit(DataLoader(Pairs(), batch_size=2), epochs=1, progress=False)
