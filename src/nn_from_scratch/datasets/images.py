"""The image datasets the command line knows by name (Fashion-MNIST, MNIST): where their files are, their classes.

Fashion-MNIST is packaged by Debian and Ubuntu (``apt-get install
dataset-fashion-mnist`` puts the four IDX files in
:data:`DEBIAN_FASHION_MNIST`); MNIST has no such package, so its folder is
always given.  :func:`find_image_dataset` says how to get the files when
they are missing; :func:`holdout` takes a validation split from the
training set.
"""
from __future__ import annotations

import numbers
import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np

from ..random import as_generator
from .mnist import read_mnist

__all__ = ["CLASS_NAMES", "DEBIAN_FASHION_MNIST", "IMAGE_DATASETS", "IMAGE_SHAPES", "find_image_dataset", "holdout",
           "load_image_dataset"]

PathLike = Union[str, "os.PathLike[str]"]

#: Where Debian's package ``dataset-fashion-mnist`` installs the IDX files.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
#: The image datasets by name: the folder looked in when none is given (None: it must be given).
IMAGE_DATASETS: Dict[str, Optional[Path]] = {"fashion-mnist": DEBIAN_FASHION_MNIST, "mnist": None}
#: The class names of each dataset, by label.
CLASS_NAMES: Dict[str, Tuple[str, ...]] = {
    "fashion-mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot"),
    "mnist": tuple(str(digit) for digit in range(10)),
    "digits": tuple(str(digit) for digit in range(10)),
}
#: The size of the images of each IDX dataset, ``(rows, cols)``: a folder of other images is not that dataset.
IMAGE_SHAPES: Dict[str, Tuple[int, int]] = {"fashion-mnist": (28, 28), "mnist": (28, 28)}
_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_HOW_TO_GET = {
    "fashion-mnist": ("install Debian's package with 'apt-get install dataset-fashion-mnist' (it puts them in "
                      f"{DEBIAN_FASHION_MNIST}), or give --data-dir, the folder where you keep them"),
    "mnist": ("Debian has no MNIST package: get the four MNIST IDX files from the MNIST database, put them in "
              "one folder and give it as --data-dir"),
}


def find_image_dataset(name: str, data_dir: Optional[PathLike] = None) -> Path:
    """The folder with the IDX files of dataset ``name``: ``data_dir`` if given, else its usual place.

    Only that the folder exists and names the four files (raw or ``.gz``)
    is checked here; :func:`~nn_from_scratch.datasets.read_mnist` checks the
    files themselves.

    Raises:
        ValueError: for a name not in :data:`IMAGE_DATASETS`.
        FileNotFoundError: when no folder is given and the dataset has no
            usual place, or a file is missing; the message says how to get them.
    """
    if name not in IMAGE_DATASETS:
        raise ValueError(f"unknown image dataset {name!r}; known: {', '.join(sorted(IMAGE_DATASETS))}")
    folder = Path(data_dir) if data_dir is not None else IMAGE_DATASETS[name]
    if folder is None:
        raise FileNotFoundError(f"--dataset {name} needs --data-dir, the folder with the IDX files "
                                f"({', '.join(_FILES)}, raw or .gz): {_HOW_TO_GET[name]}")
    if folder.is_dir():
        missing = [stem for stem in _FILES
                   if not any((folder / f"{stem}{ext}").is_file() for ext in ("", ".gz"))
                   and not any((folder / f"{stem.replace('-idx', '.idx')}{ext}").is_file() for ext in ("", ".gz"))]
        if not missing:
            return folder
        problem = f"{folder} lacks {', '.join(missing)} (raw or .gz)"
    elif folder.exists():
        return folder  # a file: the reader says it is not a folder
    else:
        problem = f"{folder} does not exist"
    raise FileNotFoundError(f"{name} IDX files not found: {problem}; {_HOW_TO_GET[name]}")


def load_image_dataset(name: str, data_dir: Optional[PathLike] = None
                       ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(X_train, y_train, X_test, y_test)`` of dataset ``name`` as stored: uint8 images ``(N, rows, cols)``.

    The folder is found by :func:`find_image_dataset`; both splits are read
    by :func:`~nn_from_scratch.datasets.read_mnist` and must hold images of
    the dataset's size (:data:`IMAGE_SHAPES`) and labels of its classes
    (:data:`CLASS_NAMES`).

    Raises:
        FileNotFoundError: as :func:`find_image_dataset` (the message says how to get the files).
        ValueError: an unknown name, a malformed or corrupt file, images of
            another size or labels past the last class (each naming the file).
    """
    folder = find_image_dataset(name, data_dir)
    expected = {"image_shape": IMAGE_SHAPES[name], "classes": len(CLASS_NAMES[name]), "name": name}
    X_train, y_train = read_mnist(folder, "train", **expected)
    X_test, y_test = read_mnist(folder, "test", **expected)
    return X_train, y_train, X_test, y_test


def holdout(X: Any, y: Any, count: int, rng: Any = 0) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split ``count`` random samples off ``(X, y)``: ``(X_train, y_train, X_validation, y_validation)``.

    The samples are drawn with ``rng`` (a seed or a Generator; the default
    seed 0 gives the same split whatever seed the model is trained with),
    and each part keeps the original order.  The parts are copies in the
    dtype of ``X`` (uint8 images stay uint8).

    Raises:
        TypeError: for a ``count`` that is not an integer.
        ValueError: for ``len(X) != len(y)``, or a ``count`` that leaves no
            training sample or is negative.
    """
    X, y = np.asarray(X), np.asarray(y)
    if X.ndim == 0 or y.ndim == 0 or len(X) != len(y):
        raise ValueError(f"X and y must have the same number of samples, got shapes {X.shape} and {y.shape}")
    if isinstance(count, (bool, np.bool_)) or not isinstance(count, numbers.Integral):
        raise TypeError(f"count must be an int, got {type(count).__name__} {count!r}")
    if not 0 <= count < len(X):
        raise ValueError(f"a validation split of {count} samples needs at least {count + 1} training samples "
                         f"and a count >= 0; there are {len(X)}")
    chosen = np.zeros(len(X), dtype=bool)
    chosen[as_generator(rng).permutation(len(X))[:count]] = True
    return X[~chosen], y[~chosen], X[chosen], y[chosen]
