"""The benchmarks' own logic (benchmarks/timing.py, run.py, products.py, thread_policy.py): what they alternate,
what they divide, and that the products timed are the workloads' products.  Nothing here is timed against a limit."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

import products  # noqa: E402
import run  # noqa: E402
import timing  # noqa: E402


def test_block_medians_alternates_blocks_in_rotated_order_and_leaves_the_warmup_untimed(monkeypatch):
    monkeypatch.setattr(timing, "PAUSE_S", 0.0)
    calls = []
    entries = {name: (lambda name=name: calls.append(name)) for name in ("ours", "one", "torch")}
    times, medians = timing.block_medians(entries, rounds=4, block=4, warmup=2)
    orders = [["ours", "one", "torch"], ["one", "torch", "ours"], ["torch", "ours", "one"], ["ours", "one", "torch"]]
    assert calls == [name for order in orders for name in order for _ in range(6)]  # a block: 2 untimed, 4 timed
    assert all(len(times[name]) == 16 and len(medians[name]) == 4 for name in entries)


def test_round_ratio_is_the_median_of_the_ratios_of_neighbouring_blocks():
    medians = {"ours": [2.0, 30.0, 1.0], "torch": [1.0, 10.0, 1.0]}  # a slow spell in round two cancels out
    assert timing.round_ratio(medians, "ours", "torch") == 2.0
    assert timing.round_ratio(medians, "torch", "ours") == 0.5


@pytest.mark.parametrize("batch", [32, 128, 1024])
def test_the_mlp_products_are_the_steps_products(batch):
    """Eight products whose work is what the MLP workload counts, each of compatible shapes."""
    listed = products.mlp_products(batch)
    assert len(listed) == 8
    macs = 784 * 512 + 512 * 256 + 256 * 10
    assert products._flops(listed) == (6.0 * macs - 2.0 * 784 * 512) * batch
    for _, a, b, transpose_a, transpose_b in listed:
        inner_a = a[0] if transpose_a else a[1]
        inner_b = b[1] if transpose_b else b[0]
        assert inner_a == inner_b


def test_the_convolution_products_match_the_engine_block(torch):
    """The three products of one block give the forward, weight and column gradients' shapes, and both
    libraries compute the same numbers from the same operands."""
    listed = products.convolution_products(100)
    rng = np.random.default_rng(0)
    shapes = []
    for _, a, b, transpose_a, transpose_b in listed:
        na, nb, ta, tb = products._operands(torch, a, b, transpose_a, transpose_b, rng)
        ours = np.matmul(na, nb)
        np.testing.assert_allclose(ours, torch.matmul(ta, tb).numpy(), rtol=1e-4, atol=1e-4)
        shapes.append(ours.shape)
    assert shapes == [(32, 100), (145, 32), (144, 100)]


def test_the_thread_policy_benchmark_alternates_the_settings_and_divides_neighbouring_runs(monkeypatch):
    import thread_policy

    calls = []

    def fake(mode, setting, samples, dtype):
        calls.append(setting)
        return {"default": 3.0, "one thread": 2.0}[setting] * (1 + len(calls))  # every run slower than the last

    monkeypatch.setattr(thread_policy, "run", fake)
    seconds, ratios = thread_policy.measure("loop", 100, "float32", rounds=3)
    assert calls == ["default", "one thread", "one thread", "default", "default", "one thread"]
    assert seconds["default"] == [6.0, 15.0, 18.0] and seconds["one thread"] == [6.0, 8.0, 14.0]
    assert ratios == [1.0, 15.0 / 8.0, 18.0 / 14.0]


def test_the_lstm_workload_agrees_with_torch_and_counts_its_products(torch):
    """Building the LSTM row checks one pass of each library against the other; its matrix work is the input and
    recurrent products of both layers, forward (one product each) and backward (two)."""
    workload = run.lstm_workload(torch, np.random.default_rng(0))
    assert workload.samples == 32
    assert workload.flops == 6.0 * 64 * 32 * (4 * 256) * ((64 + 256) + (256 + 256))
    assert workload.ours().shape == workload.torch().shape == (64, 32, 64)
