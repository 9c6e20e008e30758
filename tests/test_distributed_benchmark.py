"""The model behind benchmarks/distributed.py's scaling table: the ring allreduce's cost and a step's time.

Checked by hand-worked numbers; the benchmark itself (mpiexec, timings) is run by hand, never in the tests.
"""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

import distributed as benchmark  # noqa: E402


def test_one_process_sends_nothing():
    assert benchmark.allreduce_seconds(1e6, 1, bandwidth=1e9, latency=1e-5) == 0.0


@pytest.mark.parametrize("processes, expected", [(2, 2e-5 + 1e-3), (4, 6e-5 + 1.5e-3), (8, 1.4e-4 + 1.75e-3)])
def test_the_ring_allreduce_sends_2_n_minus_1_over_n_of_the_bytes(processes, expected):
    """1 MB at 1 GB/s and 10 us: 2(N-1) latencies and 2(N-1)/N of a millisecond (worked by hand)."""
    np.testing.assert_allclose(benchmark.allreduce_seconds(1e6, processes, bandwidth=1e9, latency=1e-5), expected,
                               rtol=1e-12)


def test_each_bucket_pays_the_latency_once_more():
    one = benchmark.allreduce_seconds(1e6, 4, bandwidth=1e9, latency=1e-5, buckets=1)
    three = benchmark.allreduce_seconds(1e6, 4, bandwidth=1e9, latency=1e-5, buckets=3)
    np.testing.assert_allclose(three - one, 2 * 6e-5, rtol=1e-12)


def test_a_step_is_the_part_s_compute_time_shared_cores_and_the_sum():
    compute = {32: 0.010, 64: 0.016, 128: 0.030}  # one process's step time at each batch
    # 128 over 2 processes: a part of 64 (16 ms), plus 1 MB over 2 processes at 1 GB/s without latency (1 ms)
    np.testing.assert_allclose(benchmark.step_seconds(compute, 128, 2, 1e6, 1e9, 0.0), 0.017, rtol=1e-12)
    # 4 processes on 2 cores: a part of 32 (10 ms) takes twice as long, plus 1.5 ms
    np.testing.assert_allclose(benchmark.step_seconds(compute, 128, 4, 1e6, 1e9, 0.0, cores=2), 0.0215, rtol=1e-12)
    # a part between two measured batches: interpolated (96 lies half-way from 64 to 128)
    np.testing.assert_allclose(benchmark.step_seconds(compute, 96, 1, 1e6, 1e9, 0.0), 0.023, rtol=1e-12)
