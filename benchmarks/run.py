"""Side-by-side timings of nn_from_scratch and PyTorch on the CPU.

Usage::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/run.py [--quick] [--threads 2]
        [--load K] [--fashion N] [--memory] [--products] [--only TEXT]

``--load K`` measures the MLP, the LeNet-like CNN and the end-to-end row
again with K bounded CPU-bound background processes running
(benchmarks/load.py), next to the idle figures: ours with the thread policy,
ours on one thread and torch, alternated block by block.  ``--fashion N`` (default
10000, 0 to skip) is the end-to-end row: one epoch of the command line's
default CNN on N Fashion-MNIST images (benchmarks/fashion.py), ours with the
thread policy, ours on one thread, and torch at its threads, alternated.
``--memory`` reports the peak memory of a training step, each library in a
fresh process (benchmarks/memory.py).  ``--products`` times the MLP's and the
convolution's matrix products alone, NumPy's BLAS against torch's
(benchmarks/products.py): the share of a gap that is the BLAS's.

Each workload is built in both libraries with the same shapes and the same
float32 weights; one step of each is checked to compute the same numbers,
then the two are timed in alternating blocks in this one process (median
of the repeats, the first calls of every block untimed) so that both see the
same machine state; ours/torch is the median over rounds of the ratio of two
neighbouring blocks.  Needs torch.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from typing import Callable, Dict, List, Tuple

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the benchmarks' own modules (timing, load, memory)

from nn_from_scratch import Sequential
from nn_from_scratch.engine.allocator import keep_freed_memory
from nn_from_scratch.losses import CrossEntropyLoss
from nn_from_scratch.nodes import LSTM, Conv2d, Flatten, LayerNorm, Linear, MaxPool2d, ReLU, SoftMax
from nn_from_scratch.optim import SGD
from timing import PAUSE_S, Workload, block_medians, round_ratio, time_alternately  # noqa: E402


def _torch_sequential(torch, model: Sequential):
    """The torch twin of one of our Sequentials, carrying the same weights."""
    layers = []
    for node in model:
        if isinstance(node, Linear):
            layers.append(torch.nn.Linear(node.in_features, node.out_features))
        elif isinstance(node, Conv2d):
            layers.append(torch.nn.Conv2d(node.in_channels, node.out_channels, node.kernel_size,
                                          stride=node.stride, padding=node.padding, dilation=node.dilation))
        elif isinstance(node, ReLU):
            layers.append(torch.nn.ReLU())
        elif isinstance(node, MaxPool2d):
            layers.append(torch.nn.MaxPool2d(node.kernel_size, node.stride, node.padding))
        elif isinstance(node, Flatten):
            layers.append(torch.nn.Flatten())
        else:
            raise TypeError(f"no torch twin for {node!r}")
    twin = torch.nn.Sequential(*layers)
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    return twin


def training_step_workload(torch, name: str, model: Sequential, x: np.ndarray, y: np.ndarray, flops: float,
                           twin=None) -> Workload:
    """Forward, cross-entropy, backward and an SGD step, in both libraries, checked to agree.

    ``twin``: the torch model with the same weights, its parameters in the same order (default: the
    Sequential's twin)."""
    twin = _torch_sequential(torch, model) if twin is None else twin
    loss, optimizer = CrossEntropyLoss(), SGD(model.parameters(), lr=0.01)
    t_optimizer = torch.optim.SGD(twin.parameters(), lr=0.01)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)

    def ours():
        optimizer.zero_grad()
        value = loss.forward(model.forward(x), y)
        model.backward(loss.backward(), input_grad=False)  # torch computes no input gradient either
        optimizer.step()
        return value

    def theirs():
        t_optimizer.zero_grad()
        value = torch.nn.functional.cross_entropy(twin(tx), ty)
        value.backward()
        t_optimizer.step()
        return value.item()

    # one step each from the same weights must agree (float32 rounding aside)
    first, t_first = ours(), theirs()
    np.testing.assert_allclose(first, t_first, rtol=1e-4, atol=1e-5)
    ours_state, their_state = model.state_dict(), twin.state_dict()
    assert len(ours_state) == len(their_state)
    for (key, value), theirs_value in zip(ours_state.items(), their_state.values()):
        np.testing.assert_allclose(value, theirs_value.numpy(), rtol=1e-3, atol=1e-5, err_msg=key)
    return Workload(name, len(x), ours, theirs, flops)


def mlp_workload(torch, batch: int, rng: np.random.Generator) -> Workload:
    model = Sequential(Linear(784, 512, rng=rng, dtype=np.float32), ReLU(),
                       Linear(512, 256, rng=rng, dtype=np.float32), ReLU(),
                       Linear(256, 10, rng=rng, dtype=np.float32))
    x = rng.standard_normal((batch, 784)).astype(np.float32)
    y = rng.integers(0, 10, batch)
    macs = 784 * 512 + 512 * 256 + 256 * 10
    # forward, weight gradient and input gradient for every layer but the first, whose input
    # gradient neither library computes: three matmuls per layer, two for the first
    return training_step_workload(torch, f"MLP 784-512-256-10 step, batch {batch}", model, x, y,
                                  (6.0 * macs - 2.0 * 784 * 512) * batch)


def cnn_workload(torch, rng: np.random.Generator) -> Workload:
    model = Sequential(Conv2d(1, 8, 3, padding=1, rng=rng, dtype=np.float32), ReLU(), MaxPool2d(2),
                       Conv2d(8, 16, 3, padding=1, rng=rng, dtype=np.float32), ReLU(), MaxPool2d(2),
                       Flatten(), Linear(784, 10, rng=rng, dtype=np.float32))
    x = rng.standard_normal((64, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 64)
    return training_step_workload(torch, "LeNet-like CNN step, batch 64", model, x, y, 0.0)


def layer_workload(torch, name: str, samples: int, node, twin, x: np.ndarray, g: np.ndarray, tolerance: float,
                   flops: float = 0.0) -> Workload:
    """One layer's forward and backward (the input's and the weight's gradients) in both libraries, ``twin`` given
    ``node``'s weights; one pass of each is checked to compute the same numbers (to ``tolerance``)."""
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in node.state_dict().items()})
    tx, tg = torch.from_numpy(x).requires_grad_(), torch.from_numpy(g)

    def ours():
        node.zero_grad()
        node.forward(x)
        return node.backward(g)

    def theirs():
        twin.zero_grad()
        tx.grad = None
        twin(tx).backward(tg)
        return tx.grad

    np.testing.assert_allclose(ours(), theirs().numpy(), rtol=tolerance, atol=tolerance)
    grads = dict(twin.named_parameters())
    for key, value in node.named_parameters():
        np.testing.assert_allclose(value.grad, grads[key].grad.numpy(), rtol=1e-3, atol=1e-2)
    return Workload(name, samples, ours, theirs, flops)


def conv_workload(torch, rng: np.random.Generator) -> Workload:
    conv = Conv2d(16, 32, 3, padding=1, rng=rng, dtype=np.float32)
    x = rng.standard_normal((64, 16, 28, 28)).astype(np.float32)
    g = rng.standard_normal((64, 32, 28, 28)).astype(np.float32)
    macs = 64 * 32 * 28 * 28 * 16 * 9
    return layer_workload(torch, "Conv2d 16->32 3x3 fwd+bwd, batch 64, 28x28", 64, conv,
                          torch.nn.Conv2d(16, 32, 3, padding=1), x, g, 1e-3, 6.0 * macs)


def separable_workload(torch, rng: np.random.Generator, channels: int = 64, out_channels: int = 128) -> Workload:
    """A depthwise-separable block: a depthwise 3x3 convolution (groups = channels), then a pointwise 1x1 one."""
    model = Sequential(Conv2d(channels, channels, 3, padding=1, groups=channels, rng=rng, dtype=np.float32),
                       Conv2d(channels, out_channels, 1, rng=rng, dtype=np.float32))
    twin = torch.nn.Sequential(torch.nn.Conv2d(channels, channels, 3, padding=1, groups=channels),
                               torch.nn.Conv2d(channels, out_channels, 1))
    x = rng.standard_normal((64, channels, 28, 28)).astype(np.float32)
    g = rng.standard_normal((64, out_channels, 28, 28)).astype(np.float32)
    return layer_workload(torch, f"Separable {channels}->{out_channels} (3x3 dw, 1x1) fwd+bwd", 64, model, twin, x, g,
                          1e-3)


def softmax_workload(torch, rng: np.random.Generator) -> Workload:
    x = rng.standard_normal((4096, 1024)).astype(np.float32)
    g = rng.standard_normal((4096, 1024)).astype(np.float32)
    node = SoftMax()
    tx, tg = torch.from_numpy(x).requires_grad_(), torch.from_numpy(g)

    def ours():
        node.forward(x)
        return node.backward(g)

    def theirs():
        tx.grad = None
        torch.softmax(tx, dim=-1).backward(tg)
        return tx.grad

    np.testing.assert_allclose(ours(), theirs().numpy(), rtol=1e-4, atol=1e-6)
    return Workload("SoftMax fwd+bwd, 4096x1024", 4096, ours, theirs)


def cross_entropy_workload(torch, rng: np.random.Generator) -> Workload:
    x = rng.standard_normal((4096, 1000)).astype(np.float32)
    y = rng.integers(0, 1000, 4096)
    loss = CrossEntropyLoss()
    tx, ty = torch.from_numpy(x).requires_grad_(), torch.from_numpy(y)

    def ours():
        loss.forward(x, y)
        return loss.backward()

    def theirs():
        tx.grad = None
        torch.nn.functional.cross_entropy(tx, ty).backward()
        return tx.grad

    np.testing.assert_allclose(ours(), theirs().numpy(), rtol=1e-4, atol=1e-8)
    return Workload("CrossEntropy fwd+bwd, 4096x1000", 4096, ours, theirs)


def layer_norm_workload(torch, rng: np.random.Generator) -> Workload:
    """LayerNorm over the last axis of (64, 128, 512) float32: forward, and backward with both parameters'
    gradients."""
    x = rng.standard_normal((64, 128, 512)).astype(np.float32)
    g = rng.standard_normal((64, 128, 512)).astype(np.float32)
    node = LayerNorm(512, dtype=np.float32)
    node.weight.value[...] = rng.uniform(0.5, 1.5, 512)
    node.bias.value[...] = rng.standard_normal(512)
    return layer_workload(torch, "LayerNorm(512) fwd+bwd, 64x128x512", 64 * 128, node, torch.nn.LayerNorm(512), x, g,
                          1e-4)


def lstm_workload(torch, rng: np.random.Generator) -> Workload:
    """A two-layer LSTM (input 64, hidden 256) over 64 steps of a batch of 32, float32: forward, and backward from
    the output with every parameter's gradient and the input's.  Matrix work: the input products of all steps
    (one product per layer and pass) and the recurrent product of each step."""
    steps, batch, inputs, hidden = 64, 32, 64, 256
    node = LSTM(inputs, hidden, 2, rng=rng, dtype=np.float32)
    twin = torch.nn.LSTM(inputs, hidden, 2)
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in node.state_dict().items()})
    x = rng.standard_normal((steps, batch, inputs)).astype(np.float32)
    g = rng.standard_normal((steps, batch, hidden)).astype(np.float32)
    tx, tg = torch.from_numpy(x).requires_grad_(), torch.from_numpy(g)

    def ours():
        node.zero_grad()
        node.forward(x)
        return node.backward((g, None, None))

    def theirs():
        twin.zero_grad()
        tx.grad = None
        twin(tx)[0].backward(tg)
        return tx.grad

    np.testing.assert_allclose(ours(), theirs().numpy(), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(node.weight_hh_l0.grad, twin.weight_hh_l0.grad.numpy(), rtol=1e-3, atol=1e-3)
    macs = steps * batch * 4 * hidden * ((inputs + hidden) + (hidden + hidden))  # per layer: x W_ihᵀ and h W_hhᵀ
    return Workload("LSTM 64->256 x2 fwd+bwd, batch 32, 64 steps", batch, ours, theirs, 6.0 * macs)


def gemm_gflops(repeats: int) -> float:
    """NumPy's float32 matrix-multiply speed on this machine, in GFLOP/s (2048-square)."""
    a = np.random.default_rng(0).standard_normal((2048, 2048)).astype(np.float32)
    a @ a
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - start)
    return 2 * 2048**3 / statistics.median(times) / 1e9


def cpu_description() -> str:
    """The processor's model name (Linux's /proc/cpuinfo), else what the platform module knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas_description() -> str:
    from nn_from_scratch.engine import blas

    found = blas.libraries()
    if not found:
        return "no BLAS with thread functions found"
    return "; ".join(f"{os.path.basename(lib.path)} ({lib.get()} threads)" for lib in found)


def transformer_workload(torch, rng: np.random.Generator) -> Workload:
    """A training step of a 4-block decoder-only transformer (embed 128, 4 heads, context 64, batch 32, 65 symbols):
    forward, cross-entropy over every position, backward and an SGD step, checked to agree with torch's."""
    from transformer import benchmark_config, torch_twin
    from nn_from_scratch.cli.language import language_model

    config = benchmark_config()
    model = language_model(config, rng)
    x, y = rng.integers(0, 65, (32, 64)), rng.integers(0, 65, (32, 64))
    return training_step_workload(torch, "decoder-only transformer step, 4x128, T 64, batch 32", model, x, y, 0.0,
                                  twin=torch_twin(torch, config, model))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--load", type=int, default=0, metavar="K",
                        help="also measure with K CPU-bound background processes (default 0: idle only)")
    parser.add_argument("--fashion", type=int, default=10000, metavar="N",
                        help="Fashion-MNIST training images of the end-to-end row (0: skip it)")
    parser.add_argument("--memory", action="store_true", help="peak memory of a training step, per library")
    parser.add_argument("--products", action="store_true",
                        help="the workloads' matrix products alone, NumPy's BLAS against torch's")
    parser.add_argument("--only-load", action="store_true", help="skip the idle table (the load figures only)")
    parser.add_argument("--only", metavar="TEXT", default="",
                        help="time only the idle table's workloads whose name contains TEXT (e.g. LSTM)")
    args = parser.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("the benchmarks compare against torch: pip install torch==2.13.0", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    # process-wide, so it serves torch's allocations as much as ours (see nn_from_scratch/allocator.py)
    kept = keep_freed_memory()
    rounds, block, warmup = (2, 3, 2) if args.quick else (12, 5, 3)
    repeats = rounds * block
    rng = np.random.default_rng(0)
    builders: List[Callable[[], Workload]] = [
        lambda: mlp_workload(torch, 32, rng),
        lambda: mlp_workload(torch, 128, rng),
        lambda: mlp_workload(torch, 1024, rng),
        lambda: cnn_workload(torch, rng),
        lambda: conv_workload(torch, rng),
        lambda: separable_workload(torch, rng),
        lambda: softmax_workload(torch, rng),
        lambda: cross_entropy_workload(torch, rng),
        lambda: layer_norm_workload(torch, rng),
        lambda: lstm_workload(torch, rng),
        lambda: transformer_workload(torch, rng),
    ]
    peak = gemm_gflops(repeats)
    variables = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ}
    print(f"machine: {cpu_description()}, {os.cpu_count()} cores; numpy {np.__version__}, "
          f"torch {torch.__version__} ({args.threads} threads)")
    print(f"BLAS: {blas_description()}; OpenBLAS variables: {variables or 'unset'}")
    print(f"malloc keeps freed memory for both libraries: {'yes' if kept else 'no (not glibc)'}")
    print(f"NumPy float32 GEMM: {peak:.0f} GFLOP/s\n")
    header = f"{'workload':<44} {'ours ms':>9} {'torch ms':>9} {'ours/torch':>10} {'samples/s':>11} {'GEMM share':>10}"
    print(header)
    print("-" * len(header))
    results: Dict[str, float] = {}
    for build in ([] if args.only_load else builders):
        workload = build()
        if args.only not in workload.name:
            continue
        ours, theirs, ratio = time_alternately(workload, rounds, block, warmup)
        share = f"{workload.flops / ours / 1e9 / peak:>9.0%}" if workload.flops else f"{'':>9}"
        print(f"{workload.name:<44} {ours * 1e3:>9.2f} {theirs * 1e3:>9.2f} {ratio:>10.2f} "
              f"{workload.samples / ours:>11.0f} {share:>10}")
        results[workload.name] = ratio
    if not args.only_load:
        print(guard_line())
    if args.products:
        from products import report_products
        fresh_guard()  # plain NumPy products never tick the guard: they run at the ceiling
        report_products(torch, rounds, block, warmup)
    if args.load:
        from load import BackgroundLoad
        print(f"\nunder load: {args.load} CPU-bound background process(es) on {os.cpu_count()} cores "
              f"(ours: the thread policy; ours 1t: thread_ceiling(1))")
        header = f"{'workload':<44} {'idle o/t':>9} {'load o/t':>9} {'load/1t':>8} {'ours ms':>9} {'torch ms':>9}"
        print(header)
        print("-" * len(header))
        for build in builders[:4]:
            workload = build()
            _, _, idle_ratio = time_alternately(workload, rounds, block, warmup)
            calls = {"ours": workload.ours, "one": single_threaded(workload).ours, "torch": workload.torch}
            with BackgroundLoad(args.load):  # all three alternated, so each ratio is of neighbouring blocks
                times, medians = block_medians(calls, rounds, block, warmup)
            fresh_guard()
            ours, theirs = statistics.median(times["ours"]), statistics.median(times["torch"])
            print(f"{workload.name:<44} {idle_ratio:>9.2f} {round_ratio(medians, 'ours', 'torch'):>9.2f} "
                  f"{round_ratio(medians, 'ours', 'one'):>8.2f} {ours * 1e3:>9.2f} {theirs * 1e3:>9.2f}")
    if args.fashion:
        fashion_row(torch, args.fashion, args.load, 1 if args.quick else 2)
    if args.memory:
        from memory import report_memory
        report_memory()
    return 0


def guard_line() -> str:
    """What the reading of the room on the machine did so far: how often it lowered the count, the count now."""
    from nn_from_scratch.engine import threads

    if not threads.guard_enabled():
        return "room guard: off"
    guard = threads.guard()
    return f"room guard: lowered the thread count {guard.lowered} time(s) so far, {threads.active_threads()} now"


def fresh_guard() -> None:
    """Start the readings of the room afresh once a loaded section is over: what follows is measured idle (a
    benchmark lets the policy read the machine only inside our steps)."""
    from nn_from_scratch.engine import threads

    threads.set_guard(threads.guard_enabled())


def single_threaded(workload: Workload) -> Workload:
    """The workload with ours on one thread (the thread policy's ceiling at 1 around each call)."""
    from nn_from_scratch.engine import threads

    def ours():
        with threads.thread_ceiling(1):  # then the policy exactly as it was, default BLAS count included
            return workload.ours()

    return Workload(workload.name, workload.samples, ours, workload.torch, workload.flops)


def fashion_row(torch, samples: int, load: int, rounds: int) -> None:
    """One epoch of the default CNN, idle and (with ``load``) under load: ours, ours on one thread, torch."""
    from fashion import FASHION, fashion_epochs
    from load import BackgroundLoad
    from nn_from_scratch.engine import threads

    if not FASHION.is_dir():
        print(f"\n(no Fashion-MNIST in {FASHION}: the end-to-end row is skipped)")
        return
    runs = fashion_epochs(torch, samples)
    def ours_one():
        with threads.thread_ceiling(1):
            return runs["ours"]()

    print(f"\nend to end: one epoch of models.cnn (16, 32 channels, dense 256, float32, Adam, batch 128) on "
          f"{samples} Fashion-MNIST images, then the 10000 test images; median of {rounds} alternated rounds")
    header = (f"{'setting':<22} {'ours s':>7} {'ours 1t s':>9} {'torch s':>8} {'ours/torch':>10} {'ours/1t':>8} "
              f"{'acc ours':>9} {'acc torch':>9}")
    print(header)
    print("-" * len(header))
    for k in ([0, load] if load else [0]):
        times: Dict[str, List[float]] = {"ours": [], "one": [], "torch": []}
        accuracy: Dict[str, float] = {}
        with BackgroundLoad(k):
            entries = [("ours", runs["ours"]), ("one", ours_one), ("torch", runs["torch"])]
            for index in range(rounds):  # the order rotated each round, as in block_medians
                for name, run in entries[index % 3:] + entries[:index % 3]:
                    time.sleep(PAUSE_S)
                    seconds, accuracy[name] = run()
                    times[name].append(seconds)
        fresh_guard()
        ours, one, theirs = (statistics.median(times[n]) for n in ("ours", "one", "torch"))
        setting = "idle" if k == 0 else f"{k} background proc."
        print(f"{setting:<22} {ours:>7.2f} {one:>9.2f} {theirs:>8.2f} {ours / theirs:>10.2f} {ours / one:>8.2f} "
              f"{accuracy['ours']:>9.4f} {accuracy['torch']:>9.4f}")


if __name__ == "__main__":
    sys.exit(main())
