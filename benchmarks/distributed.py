"""Data-parallel scaling: samples per second at 1, 2 and 4 processes, the share spent communicating, and a model.

Usage (needs ``pip install mpi4py mpich``; Fashion-MNIST from ``apt-get install dataset-fashion-mnist``, else
random images of its shape)::

    python benchmarks/distributed.py                      # MLP and CNN at 1, 2, 4 processes, global batch 128
    python benchmarks/distributed.py --processes 1,2,4,8 --blocks 9 --json scaling.json

For each model (the command line's Fashion-MNIST MLP 784-256-128-10 and CNN, float32, Adam, batch 128 over
all processes, one thread per process) it starts ``mpiexec -n P`` and times blocks of ``--steps`` training
steps after a warm-up (the median block): the samples per second, and the share of each process's time spent
in collectives
(waiting for the gradient sums and for the other processes).  It also measures this machine's MPI: the time of
an allreduce of 8 bytes (the latency ``a``) and of the model's gradient (the bandwidth ``b``), and one
process's step time at each per-process batch.

The model of a step on ``N`` processes of a global batch ``B``, the gradient of ``S`` bytes in ``k`` buckets::

    compute(B / N) * max(1, N / cores)  +  k * 2 (N - 1) a  +  2 (N - 1) / N * S / b

(the ring allreduce: each process sends and receives ``2 (N - 1) / N`` times the gradient; the sums are
assumed not to overlap the backward pass, so it is an upper bound on the time).  It is checked against the
measured 2- and 4-process figures with this machine's ``a`` and ``b``, then evaluated for ``N`` machines of
this machine's speed joined by a network (``--bandwidth`` in Gbit/s, ``--latency`` in microseconds).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

FASHION = Path("/usr/share/datasets/fashion-mnist")
MODELS = {
    "mlp": {"kind": "mlp", "in_features": 784, "hidden": [256, 128], "classes": 10, "dtype": "float32"},
    "cnn": {"kind": "cnn", "in_channels": 1, "image_size": 28, "channels": [16, 32], "hidden": 256, "classes": 10,
            "dtype": "float32"},
}
#: Steps per timed block: about a second of one process's training each.
STEPS = {"mlp": 100, "cnn": 20}
THREADS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "NN_FROM_SCRATCH_NUM_THREADS": "1", "NN_FROM_SCRATCH_THREAD_GUARD": "0"}


# ------------------------------------------------------------------ the model of a step
def allreduce_seconds(nbytes: float, processes: int, bandwidth: float, latency: float, buckets: int = 1) -> float:
    """A ring allreduce of ``nbytes`` in ``buckets`` messages: ``buckets 2(N-1) a + 2(N-1)/N S / b`` seconds."""
    if processes <= 1:
        return 0.0
    return buckets * 2 * (processes - 1) * latency + 2 * (processes - 1) / processes * nbytes / bandwidth


def step_seconds(compute: Dict[int, float], batch: int, processes: int, nbytes: float, bandwidth: float,
                 latency: float, buckets: int = 1, cores: Optional[int] = None) -> float:
    """The model's step time: one process's ``compute[batch / N]`` (shared cores when ``N > cores``) plus the sum.

    ``compute`` maps a per-process batch to one process's step time; a batch
    between two measured ones is interpolated linearly.
    """
    part = batch / processes
    sizes = sorted(compute)
    seconds = float(np.interp(part, sizes, [compute[s] for s in sizes]))
    if cores is not None:
        seconds *= max(1.0, processes / cores)
    return seconds + allreduce_seconds(nbytes, processes, bandwidth, latency, buckets)


# ------------------------------------------------------------------ one mpiexec run (the worker)
def _data(samples: int, model: str):
    try:
        from nn_from_scratch.datasets.mnist import read_mnist
        images, labels = read_mnist(FASHION, "train")
        images, labels, source = images[:samples], labels[:samples], "Fashion-MNIST"
    except (OSError, ValueError):
        rng = np.random.default_rng(0)
        images, labels = rng.integers(0, 256, (samples, 28, 28), dtype=np.uint8), rng.integers(0, 10, samples)
        source = "random images"
    x = images.astype(np.float32) / 255
    x = (x - x.mean()) / x.std()
    return (x.reshape(samples, -1) if model == "mlp" else x[:, None]), labels.astype(np.int64), source


def _network(model: str, reduction: Any = None, comm: Any = None):
    from nn_from_scratch import NeuralNetwork, models
    from nn_from_scratch.distributed import DataParallel
    from nn_from_scratch.losses import CrossEntropyLoss
    from nn_from_scratch.optim import Adam

    net = models.build_model(MODELS[model], rng=0)
    optimizer = Adam(net.parameters(), lr=3e-3)
    parallel = DataParallel(net, optimizer, comm=comm) if reduction else None
    return NeuralNetwork(net, CrossEntropyLoss(label_smoothing=0.1), optimizer, reduction=parallel), parallel


def _timed_fit(network: Any, X: np.ndarray, y: np.ndarray, batch: int, barrier: Any = None) -> float:
    if barrier is not None:
        barrier()
    start = time.perf_counter()
    network.fit(X, y, epochs=1, batch_size=batch, rng=0, progress=False, shuffle=False)
    if barrier is not None:
        barrier()
    return time.perf_counter() - start


def worker(args: argparse.Namespace) -> None:
    """Inside ``mpiexec -n P``: time the data-parallel steps and this MPI's allreduce; process 0 prints JSON.

    ``--blocks`` blocks of ``--steps`` steps each; the block of median time is reported, with the share of
    it each process spent in collectives.
    """
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    batch = args.batch * size if args.per_process else args.batch
    X, y, source = _data(batch * (args.steps + args.warmup), args.model)
    network, parallel = _network(args.model, reduction=True, comm=comm)
    warm = slice(0, batch * args.warmup)
    _timed_fit(network, X[warm], y[warm], batch, comm.Barrier)
    timed = slice(batch * args.warmup, None)
    blocks = []
    for _ in range(args.blocks):
        parallel.communicator.waited = 0.0
        seconds = _timed_fit(network, X[timed], y[timed], batch, comm.Barrier)
        blocks.append((seconds, comm.gather(parallel.communicator.waited, root=0)))
    seconds, waited = sorted(blocks, key=lambda block: block[0])[len(blocks) // 2]
    nbytes = sum(b.nbytes for b in parallel.buckets.buckets)
    probe = {}
    for label, size_bytes in (("latency", 8), ("gradient", nbytes)):
        buffer = np.ones(max(1, size_bytes // 4), dtype=np.float32)
        comm.Barrier()
        start = time.perf_counter()
        for _ in range(args.repeats):
            comm.Allreduce(MPI.IN_PLACE, buffer)
        probe[label] = (time.perf_counter() - start) / args.repeats
    if rank == 0:
        print(json.dumps({"model": args.model, "processes": size, "batch": batch, "steps": args.steps,
                          "samples_per_second": batch * args.steps / seconds, "seconds": seconds,
                          "communication_share": [w / seconds for w in waited], "gradient_bytes": nbytes,
                          "buckets": len(parallel.buckets.buckets), "allreduce_8_bytes": probe["latency"],
                          "allreduce_gradient": probe["gradient"], "data": source}))


def single(args: argparse.Namespace) -> None:
    """One process, no MPI: samples per second at the batch, and the step time at each per-process batch.

    Each batch's time is the median of ``--blocks`` blocks of ``--steps`` steps.
    """
    X, y, source = _data(args.batch * (args.steps + args.warmup), args.model)
    compute = {}
    for part in sorted({max(1, args.batch // d) for d in (1, 2, 4, 8, 16, 32)}):
        network, _ = _network(args.model)
        _timed_fit(network, X[:part * args.warmup], y[:part * args.warmup], part)
        times = sorted(_timed_fit(network, X[:part * args.steps], y[:part * args.steps], part)
                       for _ in range(args.blocks))
        compute[part] = times[len(times) // 2] / args.steps
    print(json.dumps({"model": args.model, "processes": 1, "batch": args.batch, "steps": args.steps,
                      "samples_per_second": args.batch / compute[args.batch], "compute": compute, "data": source}))


# ------------------------------------------------------------------ the launcher
def _mpiexec() -> List[str]:
    beside = Path(sys.executable).parent / "mpiexec"
    found = str(beside) if beside.exists() else shutil.which("mpiexec")
    if found is None:
        sys.exit("mpiexec not found beside this Python nor on PATH: pip install mpi4py mpich")
    version = subprocess.run([found, "--version"], capture_output=True, text=True).stdout
    return [found] + (["--oversubscribe"] if "Open MPI" in version else [])


def _run(command: Sequence[str]) -> Dict[str, Any]:
    env = {**os.environ, **THREADS}
    done = subprocess.run(list(command), capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(results: List[Dict[str, Any]], cores: int, bandwidth: float, latency: float) -> str:
    """The measured table, the model checked against it, and the model for machines on a network (Markdown)."""
    lines = ["| model | processes | global batch | samples/s | speed-up | in collectives (mean, max) | "
             "model's samples/s |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    extra = []
    for model in dict.fromkeys(r["model"] for r in results):
        rows = [r for r in results if r["model"] == model]
        one = next(r for r in rows if r["processes"] == 1)
        compute = {int(k): v for k, v in one["compute"].items()}
        for r in sorted(rows, key=lambda r: r["processes"]):
            p = r["processes"]
            if p == 1:
                share, modelled = "", ""
            else:
                a = r["allreduce_8_bytes"] / (2 * (p - 1))
                b = 2 * (p - 1) / p * r["gradient_bytes"] / max(r["allreduce_gradient"] - 2 * (p - 1) * a, 1e-9)
                seconds = step_seconds(compute, r["batch"], p, r["gradient_bytes"], b, a, r["buckets"], cores)
                modelled = f"{r['batch'] / seconds:.0f}"
                share = f"{100 * np.mean(r['communication_share']):.0f}%, {100 * max(r['communication_share']):.0f}%"
            lines.append(f"| {model} | {p} | {r['batch']} | {r['samples_per_second']:.0f} | "
                         f"{r['samples_per_second'] / one['samples_per_second']:.2f} | {share} | {modelled} |")
        nbytes = next((r["gradient_bytes"] for r in rows if "gradient_bytes" in r), None)
        if nbytes is None:
            continue
        buckets = next(r["buckets"] for r in rows if "buckets" in r)
        predicted = []
        for n in (1, 2, 4, 8, 16, 32):
            seconds = step_seconds(compute, one["batch"], n, nbytes, bandwidth * 1e9 / 8, latency * 1e-6, buckets)
            weak = step_seconds(compute, one["batch"] * n, n, nbytes, bandwidth * 1e9 / 8, latency * 1e-6, buckets)
            summing = allreduce_seconds(nbytes, n, bandwidth * 1e9 / 8, latency * 1e-6, buckets)
            predicted.append(f"| {model} | {n} | {one['batch'] / seconds:.0f} | {100 * summing / seconds:.0f}% | "
                             f"{one['batch'] * n / weak:.0f} |")
        extra += [f"\n{model}: gradient {nbytes / 2**20:.2f} MiB in {buckets} bucket(s); N machines like this one "
                  f"(one process each), {bandwidth:g} Gbit/s, {latency:g} us:\n",
                  f"| model | machines | samples/s at global batch {one['batch']} | in the allreduce | "
                  f"samples/s at {one['batch']} per machine |", "| --- | ---: | ---: | ---: | ---: |", *predicted]
    return "\n".join(lines + extra)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", default="1,2,4", help="process counts to measure (default 1,2,4)")
    parser.add_argument("--models", default="mlp,cnn")
    parser.add_argument("--batch", type=int, default=128, help="the global batch (default 128)")
    parser.add_argument("--per-process", action="store_true", help="--batch per process instead (weak scaling)")
    parser.add_argument("--steps", type=int, help="steps per timed block (default 100 for the MLP, 20 for the CNN)")
    parser.add_argument("--blocks", type=int, default=5, help="timed blocks; the median one is reported")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=50, help="allreduces timed per probe")
    parser.add_argument("--bandwidth", type=float, default=10.0, help="the network of the model, Gbit/s")
    parser.add_argument("--latency", type=float, default=20.0, help="the network's latency, microseconds")
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    parser.add_argument("--worker", choices=("mpi", "single"), help=argparse.SUPPRESS)
    parser.add_argument("--model", choices=tuple(MODELS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker == "mpi":
        worker(args)
        return 0
    if args.worker == "single":
        single(args)
        return 0
    mpiexec, here = _mpiexec(), str(Path(__file__).resolve())
    load = os.getloadavg()[0]  # other work on the machine makes every figure noisy: said with them
    results = []
    for model in args.models.split(","):
        steps = args.steps or STEPS[model]
        common = ["--batch", str(args.batch), "--steps", str(steps), "--warmup", str(args.warmup),
                  "--repeats", str(args.repeats), "--blocks", str(args.blocks)] + \
            (["--per-process"] if args.per_process else [])
        results.append(_run([sys.executable, here, "--worker", "single", "--model", model, *common]))
        for count in (int(p) for p in args.processes.split(",") if int(p) > 1):
            results.append(_run([*mpiexec, "-n", str(count), sys.executable, here, "--worker", "mpi",
                                 "--model", model, *common]))
        print(f"measured {model}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(f"{os.cpu_count()} cores, load average {load:.1f} before and {os.getloadavg()[0]:.1f} after, "
          f"data: {results[0]['data']}, one thread per process\n")
    print(report(results, os.cpu_count() or 1, args.bandwidth, args.latency))
    return 0


if __name__ == "__main__":
    sys.exit(main())
