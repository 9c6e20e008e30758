"""How the benchmarks time: the two libraries' calls in alternating blocks, compared as ratios of neighbours.

Every benchmark script times through these functions, so that a ratio means
the same thing in each of them.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Tuple


@dataclass
class Workload:
    name: str
    samples: int
    ours: Callable[[], object]
    torch: Callable[[], object]
    flops: float = 0.0  # multiply-adds x 2 of the matmuls, when known


PAUSE_S = 0.2


def block_medians(calls: Dict[str, Callable[[], object]], rounds: int, block: int,
                  warmup: int) -> Tuple[Dict[str, List[float]], Dict[str, List[float]]]:
    """Every call's seconds, and the median of each of its blocks, timed in alternating blocks.

    Each round runs a block of calls of each entry of ``calls`` in turn, the
    order rotated by one each round, so that no entry always follows the
    same other one (whose worker threads may still be winding down).  The
    first ``warmup`` calls of every block are not timed: both libraries keep
    their worker threads spinning for a while after a parallel region, and
    those threads would otherwise steal the cores from the first calls of
    the other library (timing single calls in strict alternation made both
    libraries look two to three times slower than they are).  Blocks next to
    each other in time see the same state of a shared machine, so a ratio of
    two entries' block medians in one round has the machine's slow spells
    cancelled out of it (on a virtual machine whose speed drifts by a third
    from minute to minute, the ratio of overall medians did not).
    """
    times: Dict[str, List[float]] = {name: [] for name in calls}
    medians: Dict[str, List[float]] = {name: [] for name in calls}
    entries = list(calls.items())
    for index in range(rounds):
        shift = index % len(entries)
        for name, call in entries[shift:] + entries[:shift]:
            time.sleep(PAUSE_S)  # let the other library's worker threads stop spinning and sleep
            for _ in range(warmup):
                call()
            samples = []
            for _ in range(block):
                start = time.perf_counter()
                call()
                samples.append(time.perf_counter() - start)
            times[name] += samples
            medians[name].append(statistics.median(samples))
    return times, medians


def round_ratio(medians: Dict[str, List[float]], numerator: str, denominator: str) -> float:
    """The median over rounds of ``numerator``'s block median over ``denominator``'s, from :func:`block_medians`."""
    return statistics.median(a / b for a, b in zip(medians[numerator], medians[denominator]))


def time_alternately(workload: Workload, rounds: int, block: int, warmup: int) -> Tuple[float, float, float]:
    """Median seconds per call of ours and torch's, timed in alternating blocks, and the median ratio of
    neighbouring blocks (see :func:`block_medians`)."""
    times, medians = block_medians({"ours": workload.ours, "torch": workload.torch}, rounds, block, warmup)
    return statistics.median(times["ours"]), statistics.median(times["torch"]), round_ratio(medians, "ours", "torch")
