"""The workloads' matrix products alone: NumPy's BLAS against torch's, same shapes, same threads, one run.

``benchmarks/run.py --products`` prints this table.  A training step of the
MLP or the convolution cannot be faster than its matrix products, so where
torch's BLAS runs the same products faster than NumPy's, that share of the
gap is the BLAS's, not the library's.  Each product is timed in both
libraries in alternating blocks (``run.block_medians``); the ratio is the
median over rounds of neighbouring blocks.
"""
from __future__ import annotations

import statistics
from typing import Dict, List, Tuple

import numpy as np

__all__ = ["convolution_products", "mlp_products", "report_products", "time_products"]

# (label, left shape, right shape, left transposed, right transposed): A @ B with A (m, k), B (k, n)
Product = Tuple[str, Tuple[int, int], Tuple[int, int], bool, bool]


def mlp_products(batch: int) -> List[Product]:
    """The eight products of one 784-512-256-10 training step (no input gradient for the first layer)."""
    products: List[Product] = []
    for i, (fan_in, fan_out) in enumerate(((784, 512), (512, 256), (256, 10))):
        products.append((f"fwd {fan_in}->{fan_out}", (batch, fan_in), (fan_out, fan_in), False, True))  # x @ W.T
        products.append((f"dW {fan_out}x{fan_in}", (batch, fan_out), (batch, fan_in), True, False))  # G.T @ x
        if i:
            products.append((f"dx {fan_in}", (batch, fan_out), (fan_out, fan_in), False, False))  # G @ W
    return products


def convolution_products(columns: int) -> List[Product]:
    """The three products of the 16->32 3x3 convolution for one block of ``columns`` output pixels (145 rows:
    144 kernel taps and the bias's row of ones), as the engine computes them."""
    return [
        ("fwd W @ cols", (32, 145), (145, columns), False, False),
        ("dW cols @ G.T", (145, columns), (32, columns), False, True),
        ("dcols W.T @ G", (32, 144), (32, columns), True, False),
    ]


def _operands(torch, shape_a, shape_b, transpose_a, transpose_b, rng):
    a = rng.standard_normal(shape_a).astype(np.float32)
    b = rng.standard_normal(shape_b).astype(np.float32)
    na, nb = (a.T if transpose_a else a), (b.T if transpose_b else b)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    ta, tb = (ta.T if transpose_a else ta), (tb.T if transpose_b else tb)
    return na, nb, ta, tb


def time_products(torch, products: List[Product], rounds: int, block: int, warmup: int) -> Tuple[float, float, float]:
    """Seconds of all ``products`` once, NumPy and torch, and the median over rounds of NumPy's over torch's."""
    from timing import block_medians, round_ratio  # the benchmarks' one alternating timer

    rng = np.random.default_rng(0)
    operands = [_operands(torch, a, b, ta, tb, rng) for _, a, b, ta, tb in products]

    def ours() -> None:
        for na, nb, _, _ in operands:
            np.matmul(na, nb)

    def theirs() -> None:
        for _, _, ta, tb in operands:
            torch.matmul(ta, tb)

    times, medians = block_medians({"numpy": ours, "torch": theirs}, rounds, block, warmup)
    return statistics.median(times["numpy"]), statistics.median(times["torch"]), round_ratio(medians, "numpy", "torch")


def report_products(torch, rounds: int, block: int, warmup: int) -> None:
    """Print the products of the MLP steps and of one block of the convolution, NumPy against torch."""
    groups: Dict[str, List[Product]] = {f"MLP step's 8 products, batch {b}": mlp_products(b) for b in (32, 128, 1024)}
    groups["Conv2d 16->32: 3 products of a 4-sample block"] = convolution_products(4 * 30 * 30)
    print("\nthe matrix products alone (float32, same shapes and threads; NumPy's BLAS against torch's)")
    header = f"{'products':<48} {'numpy ms':>9} {'torch ms':>9} {'numpy/torch':>11} {'numpy GFLOP/s':>13}"
    print(header)
    print("-" * len(header))
    for name, products in groups.items():
        ours, theirs, ratio = time_products(torch, products, rounds, block, warmup)
        print(f"{name:<48} {ours * 1e3:>9.3f} {theirs * 1e3:>9.3f} {ratio:>11.2f} {_flops(products) / ours / 1e9:>13.0f}")


def _flops(products: List[Product]) -> float:
    """2 m k n summed over ``products``."""
    total = 0.0
    for _, shape_a, shape_b, transpose_a, transpose_b in products:
        m, k = (shape_a[1], shape_a[0]) if transpose_a else shape_a
        n = shape_b[0] if transpose_b else shape_b[1]
        total += 2.0 * m * k * n
    return total
