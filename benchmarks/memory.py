"""Peak memory of training steps, ours and torch's, each in a fresh process.

tracemalloc sees NumPy's allocations but not torch's, so both are measured
the same way: the resident-set high-water mark (Linux's ``VmHWM``, reset
through ``/proc/self/clear_refs`` once the imports, the data and the model
are made) after a few training steps, minus the resident set at that point.  The figure is what the steps
added at their peak: activations, gradients, optimizer state, scratch.
"""
from __future__ import annotations

import subprocess
import sys
from typing import Dict

__all__ = ["peak_step_memory", "report_memory"]

_CHILD = r"""
import sys
import numpy as np
library, model_name = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(0)
if model_name == "cnn":
    x = rng.standard_normal((64, 1, 28, 28)).astype(np.float32); y = rng.integers(0, 10, 64)
else:
    x = rng.standard_normal((1024, 784)).astype(np.float32); y = rng.integers(0, 10, 1024)
if library == "ours":
    from nn_from_scratch import Sequential
    from nn_from_scratch.losses import CrossEntropyLoss
    from nn_from_scratch.nodes import Conv2d, Flatten, Linear, MaxPool2d, ReLU
    from nn_from_scratch.optim import Adam
    if model_name == "cnn":
        model = Sequential(Conv2d(1, 8, 3, padding=1, rng=0, dtype=np.float32), ReLU(), MaxPool2d(2),
                           Conv2d(8, 16, 3, padding=1, rng=1, dtype=np.float32), ReLU(), MaxPool2d(2),
                           Flatten(), Linear(784, 10, rng=2, dtype=np.float32))
    else:
        model = Sequential(Linear(784, 512, rng=0, dtype=np.float32), ReLU(), Linear(512, 256, rng=1, dtype=np.float32),
                           ReLU(), Linear(256, 10, rng=2, dtype=np.float32))
    loss, optimizer = CrossEntropyLoss(), Adam(model.parameters(), lr=1e-3)
    def step():
        optimizer.zero_grad()
        loss.forward(model.forward(x), y)
        model.backward(loss.backward(), input_grad=False)
        optimizer.step()
else:
    import torch
    torch.set_num_threads(1)
    if model_name == "cnn":
        model = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                    torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                    torch.nn.Flatten(), torch.nn.Linear(784, 10))
    else:
        model = torch.nn.Sequential(torch.nn.Linear(784, 512), torch.nn.ReLU(), torch.nn.Linear(512, 256),
                                    torch.nn.ReLU(), torch.nn.Linear(256, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    def step():
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(tx), ty).backward()
        optimizer.step()
def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])  # KiB
base = status("VmRSS")
with open("/proc/self/clear_refs", "w") as clear:
    clear.write("5")  # resets the high-water mark VmHWM to the current RSS (Linux)
for _ in range(5):
    step()
print(status("VmHWM") - base)
"""


def peak_step_memory(library: str, model: str) -> float:
    """MiB the training steps of ``model`` (``"cnn"``, ``"mlp"``) added to the peak RSS, ``library`` ours or torch."""
    done = subprocess.run([sys.executable, "-c", _CHILD, library, model], capture_output=True, text=True,
                          timeout=600, check=True)
    return int(done.stdout.split()[-1]) / 1024  # ru_maxrss is in KiB on Linux


def report_memory() -> Dict[str, float]:
    """Print and return the peak step memory of both libraries for the LeNet-like CNN (batch 64) and the MLP
    (batch 1024), Adam."""
    print("\npeak memory of 5 training steps (Adam), RSS high-water above the mark after setup, fresh process each")
    print(f"{'model':<34} {'ours MiB':>9} {'torch MiB':>10}")
    figures = {}
    for model, name in (("cnn", "LeNet-like CNN, batch 64"), ("mlp", "MLP 784-512-256-10, batch 1024")):
        ours, theirs = peak_step_memory("ours", model), peak_step_memory("torch", model)
        figures[model] = ours / theirs if theirs else float("nan")
        print(f"{name:<34} {ours:>9.1f} {theirs:>10.1f}")
    return figures
