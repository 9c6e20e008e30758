"""End to end: one epoch of the command line's default CNN on Fashion-MNIST, ours and torch's, time and accuracy.

The model is ``models.cnn`` with the defaults ``nn-from-scratch train --model cnn --dataset mnist`` uses
(channels 16, 32, a dense layer of 256, float32), Adam at 3e-3, cross-entropy with label smoothing 0.1,
batch 128, the same initial weights and the same batch order in torch.  Pixels are scaled to [0, 1] and
standardised with the training split's mean and deviation.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Dict, Tuple

import numpy as np

from nn_from_scratch import models
from nn_from_scratch.datasets.mnist import read_mnist
from nn_from_scratch.losses import CrossEntropyLoss
from nn_from_scratch.optim import Adam

FASHION = Path("/usr/share/datasets/fashion-mnist")
BATCH, LR, SMOOTHING = 128, 3e-3, 0.1

__all__ = ["FASHION", "fashion_epochs", "load_fashion"]


def load_fashion(samples: int, directory: Path = FASHION) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``samples`` training images and the 10000 test images as standardised float32 ``(N, 1, 28, 28)``."""
    images, labels = read_mnist(directory, "train")
    test_images, test_labels = read_mnist(directory, "test")
    x = images[:samples].astype(np.float32) / 255
    mean, std = x.mean(), x.std()
    test = (test_images.astype(np.float32) / 255 - mean) / std
    return ((x - mean) / std)[:, None], labels[:samples], test[:, None], test_labels


def _torch_twin(torch, model):
    layers = []
    for node in model:
        name = type(node).__name__
        if name == "Conv2d":
            layers.append(torch.nn.Conv2d(node.in_channels, node.out_channels, node.kernel_size, padding=node.padding))
        elif name == "Linear":
            layers.append(torch.nn.Linear(node.in_features, node.out_features))
        elif name == "ReLU":
            layers.append(torch.nn.ReLU())
        elif name == "MaxPool2d":
            layers.append(torch.nn.MaxPool2d(node.kernel_size))
        elif name == "Flatten":
            layers.append(torch.nn.Flatten())
        else:
            raise TypeError(f"no torch twin for {name}")
    twin = torch.nn.Sequential(*layers)
    twin.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in model.state_dict().items()})
    return twin


def fashion_epochs(torch, samples: int) -> Dict[str, Callable[[], Tuple[float, float]]]:
    """``{"ours": run, "torch": run}``: each call trains one epoch from the same fresh weights and returns
    ``(seconds, test accuracy)``; the seconds are the epoch's alone."""
    x, y, x_test, y_test = load_fashion(samples)
    order = np.random.default_rng(0).permutation(len(x))
    batches = [order[i:i + BATCH] for i in range(0, len(x), BATCH)]

    def fresh():
        return models.cnn(1, 28, 10, channels=(16, 32), hidden=256, rng=0, dtype=np.float32)

    def ours() -> Tuple[float, float]:
        model = fresh()
        loss, optimizer = CrossEntropyLoss(label_smoothing=SMOOTHING), Adam(model.parameters(), lr=LR)
        start = time.perf_counter()
        for index in batches:
            optimizer.zero_grad()
            loss.forward(model.forward(x[index]), y[index])
            model.backward(loss.backward(), input_grad=False)
            optimizer.step()
        seconds = time.perf_counter() - start
        scores = np.concatenate([model.evaluate(x_test[i:i + 1000]) for i in range(0, len(x_test), 1000)])
        return seconds, float((scores.argmax(1) == y_test).mean())

    def theirs() -> Tuple[float, float]:
        twin = _torch_twin(torch, fresh())
        optimizer = torch.optim.Adam(twin.parameters(), lr=LR)
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        start = time.perf_counter()
        for index in batches:
            i = torch.from_numpy(index)
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(twin(tx[i]), ty[i], label_smoothing=SMOOTHING).backward()
            optimizer.step()
        seconds = time.perf_counter() - start
        with torch.no_grad():
            scores = twin(torch.from_numpy(x_test)).numpy()
        return seconds, float((scores.argmax(1) == y_test).mean())

    return {"ours": ours, "torch": theirs}
