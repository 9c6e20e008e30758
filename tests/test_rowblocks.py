"""Row blocks: every row visited once, errors surfaced, and the blocked row-wise functions change no bits."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from nn_from_scratch.engine import rowblocks
from nn_from_scratch.losses import CrossEntropyLoss
from nn_from_scratch.engine.softmax import row_dot, row_sum
from nn_from_scratch.nodes.softmax import log_softmax, softmax, softmax_vjp, softmax_with_log_normalizer


@pytest.fixture
def threads():
    """Set the thread count for one test and restore it afterwards."""
    from nn_from_scratch.engine import threads as policy

    before, guarded = rowblocks.num_threads(), policy.guard_enabled()
    policy.set_guard(False)  # a busy machine must not drop the pool to one thread in the middle of a test
    yield rowblocks.set_num_threads
    policy.set_guard(guarded)
    rowblocks.set_num_threads(before)


@pytest.mark.parametrize("rows", [1, 7, 64, 1000, 4099])
@pytest.mark.parametrize("count", [1, 2, 3])
def test_every_row_is_visited_exactly_once(threads, rows, count):
    threads(count)
    hits = np.zeros(rows, dtype=int)
    names = set()

    def work(s):
        hits[s] += 1
        names.add(threading.current_thread().name)

    rowblocks.for_row_blocks(work, rows, row_bytes=4096, block_bytes=1 << 18)  # 64 rows a block; 1000 rows: 4 MiB
    np.testing.assert_array_equal(hits, np.ones(rows, dtype=int))
    if count == 1 or rows * 4096 < rowblocks.PARALLEL_BYTES:
        assert names == {threading.current_thread().name}


def test_several_threads_are_used_for_large_arrays(threads):
    threads(2)
    names = set()
    rowblocks.for_row_blocks(lambda s: names.add(threading.current_thread().name), 4096, row_bytes=4096)
    assert len(names) == 2


def test_an_error_in_a_worker_block_is_raised(threads):
    threads(2)

    def work(s):
        if s.start >= 2048:
            raise ValueError(f"bad block at {s.start}")

    with pytest.raises(ValueError, match="bad block"):
        rowblocks.for_row_blocks(work, 4096, row_bytes=4096)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_set_num_threads_refuses_non_positive_integers(bad):
    with pytest.raises(ValueError, match="positive integer"):
        rowblocks.set_num_threads(bad)


def test_environment_variable_sets_and_checks_the_thread_count(monkeypatch):
    monkeypatch.setenv("NN_FROM_SCRATCH_NUM_THREADS", "3")
    assert rowblocks._default_threads() == 3
    monkeypatch.setenv("NN_FROM_SCRATCH_NUM_THREADS", "many")
    with pytest.raises(ValueError, match="NN_FROM_SCRATCH_NUM_THREADS"):
        rowblocks._default_threads()


def _plain_softmax(x):
    y = x - x.max(axis=-1, keepdims=True)
    np.exp(y, out=y)
    y /= row_sum(y)  # the implementation's sum (a BLAS row dot), over the whole array at once
    return y


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("count", [1, 2, 3])
def test_blocked_softmax_family_is_bit_identical_to_the_whole_array_formulas(threads, rng, dtype, count):
    threads(count)
    x = (rng.standard_normal((9000, 257)) * 5).astype(dtype)  # 9 MiB in float32: several blocks, threaded
    g = rng.standard_normal(x.shape).astype(dtype)
    y = softmax(x)
    np.testing.assert_array_equal(y, _plain_softmax(x.copy()))
    shifted = x - x.max(axis=-1, keepdims=True)
    total = row_sum(np.exp(shifted))
    np.testing.assert_array_equal(log_softmax(x), shifted - np.log(total))
    dot = row_dot(y, g)[..., None]
    np.testing.assert_allclose(dot[..., 0], np.einsum("...i,...i->...", y, g), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(softmax_vjp(y, g), y * (g - dot))
    p, m, log_total, mean_shift = softmax_with_log_normalizer(x, shifted_mean=True)
    np.testing.assert_array_equal(p, y)
    np.testing.assert_array_equal(m, x.max(axis=-1, keepdims=True))
    np.testing.assert_array_equal(log_total, np.log(total))
    np.testing.assert_array_equal(mean_shift, shifted.mean(axis=-1, keepdims=True))


def test_cross_entropy_is_the_same_with_any_thread_count(threads, rng):
    x = rng.standard_normal((4096, 100)).astype(np.float32)
    t = rng.integers(0, 100, 4096)
    results = []
    for count in (1, 2, 4):
        threads(count)
        loss = CrossEntropyLoss(label_smoothing=0.1)
        results.append((loss.forward(x, t), loss.backward()))
    for value, grad in results[1:]:
        assert value == results[0][0]
        np.testing.assert_array_equal(grad, results[0][1])


def test_softmax_of_empty_and_strided_inputs(rng):
    assert softmax(np.zeros((0, 4))).shape == (0, 4)
    x = rng.standard_normal((6, 8, 5))
    view = x.transpose(1, 0, 2)  # not C-contiguous
    np.testing.assert_array_equal(softmax(view), _plain_softmax(np.ascontiguousarray(view)))


def test_calls_from_several_threads_and_nested_calls_work(threads):
    threads(3)
    big, other = np.ones((4096, 1024), np.float32), np.ones((1024, 1024), np.float64)
    errors = []

    def loop(a):
        try:
            for _ in range(20):
                np.testing.assert_allclose(softmax(a), np.full(a.shape, 1 / a.shape[1]), rtol=1e-6, atol=0)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    workers = [threading.Thread(target=loop, args=(a,)) for a in (big, other, big)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert not errors and not any(worker.is_alive() for worker in workers)
    threads(2)  # one pool worker: a nested call queued behind its own caller would wait forever
    done = np.zeros(1024, dtype=int)

    def outer(s):  # a work function that itself runs row-wise work: runs inline in pool threads
        softmax(other)
        done[s] += 1

    rowblocks.for_row_blocks(outer, 1024, 8192)
    np.testing.assert_array_equal(done, np.ones(1024, dtype=int))


def test_softmax_with_log_normalizer_needs_classes():
    with pytest.raises(ValueError, match="at least one entry"):
        softmax_with_log_normalizer(np.zeros((3, 0)))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_row_sum_matches_np_sum_and_does_not_depend_on_the_rows_around_it(rng, dtype):
    a = rng.random((301, 1023)).astype(dtype)
    total = row_sum(a)
    assert total.shape == (301, 1) and total.dtype == dtype
    np.testing.assert_allclose(total, a.astype(np.float64).sum(axis=-1, keepdims=True),
                               rtol=2e-3 if dtype == np.float16 else 1e-5, atol=0)
    for rows in (slice(0, 1), slice(3, 7), slice(5, 301), slice(100, 133)):  # any block of rows: the same bits
        np.testing.assert_array_equal(row_sum(a[rows]), total[rows])
    assert row_sum(np.zeros((2, 0), dtype)).tolist() == [[0], [0]]
