"""Per-batch conversion and augmentation of images kept as uint8: the data stay small, each batch is made float.

A :class:`BatchPipeline` is what ``NeuralNetwork.fit(..., transform=...)``
calls on every batch it draws: ``pipeline(batch, rng)`` while training
(the augmentation steps draw from ``rng``), ``pipeline(batch)`` to evaluate
(no augmentation).  Each step works on the whole batch at once, with no
Python loop over the images, and never writes into the batch it is given
(an unshuffled batch is a view of the data):

* :class:`RandomCrop` -- pad by ``padding`` zeros on every side, cut back to
  the original size at a random offset per image (a shift of up to
  ``padding`` pixels);
* :class:`HorizontalFlip` -- mirror each image left-right with probability ``p``;
* :class:`RandomErasing` -- with probability ``p``, fill one random
  rectangle per image (``scale`` of the area, aspect ``ratio``) with
  ``value`` (Zhong et al., 2017);
* :class:`Normalize` -- ``x' = (x / scale - mean) / std`` in the pipeline's
  float dtype, the last step; :func:`image_statistics` computes ``mean``
  and ``std`` of a training split chunk by chunk, without a float copy of it.

Every random draw comes from the generator passed in, in a fixed order and
number per batch, so a seed gives the same batches bit for bit; ``fit``
passes its shuffling generator, which checkpoints save and restore, so a
resumed run draws the same augmentations as one never stopped.
"""
from __future__ import annotations

import numbers
from typing import Any, Optional, Sequence, Tuple

import numpy as np

__all__ = ["BatchPipeline", "HorizontalFlip", "Normalize", "RandomCrop", "RandomErasing", "image_statistics"]

Shape = Tuple[int, int, int]


def _probability(name: str, p: Any) -> float:
    if isinstance(p, (bool, np.bool_)) or not isinstance(p, numbers.Real) or not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
    return float(p)


def _check_images(batch: np.ndarray, what: str) -> None:
    if batch.ndim != 4:
        raise ValueError(f"{what} works on batches of images (N, C, H, W), got shape {batch.shape}")


def _check_generator(rng: Any, what: str) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{what} draws from a numpy.random.Generator, got {type(rng).__name__}")
    return rng


class RandomCrop:
    """Shift each image by up to ``padding`` pixels: zero-pad, then crop the original size at a random offset.

    Offsets ``(dy, dx)`` are drawn uniformly from ``{0, ..., 2 * padding}``,
    one pair per image, as torchvision's ``RandomCrop(size, padding)``
    does; pixels shifted in are zeros (the black background of MNIST).
    """

    def __init__(self, padding: int = 2) -> None:
        if isinstance(padding, (bool, np.bool_)) or not isinstance(padding, numbers.Integral) or padding < 0:
            raise ValueError(f"padding must be an integer >= 0, got {padding!r}")
        self.padding = int(padding)

    def __call__(self, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A new batch of the same shape and dtype, each image shifted at random."""
        _check_images(batch, "RandomCrop")
        rng = _check_generator(rng, "RandomCrop")
        n, _, height, width = batch.shape
        p = self.padding
        offsets = rng.integers(0, 2 * p + 1, size=(n, 2))
        if p == 0:
            return batch.copy()
        padded = np.pad(batch, ((0, 0), (0, 0), (p, p), (p, p)))
        rows = offsets[:, 0, None] + np.arange(height)  # (N, H)
        cols = offsets[:, 1, None] + np.arange(width)  # (N, W)
        images = np.arange(n)[:, None, None, None]
        channels = np.arange(batch.shape[1])[None, :, None, None]
        return padded[images, channels, rows[:, None, :, None], cols[:, None, None, :]]

    def __repr__(self) -> str:
        return f"RandomCrop(padding={self.padding})"


class HorizontalFlip:
    """Mirror each image left-right with probability ``p`` (one uniform draw per image)."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = _probability("p", p)

    def __call__(self, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A new batch with the chosen images mirrored."""
        _check_images(batch, "HorizontalFlip")
        flip = _check_generator(rng, "HorizontalFlip").random(len(batch)) < self.p
        return np.where(flip[:, None, None, None], batch[..., ::-1], batch)

    def __repr__(self) -> str:
        return f"HorizontalFlip(p={self.p:g})"


class RandomErasing:
    """With probability ``p`` per image, fill one random rectangle with ``value``.

    Per image, five uniform draws in a fixed order: whether to erase, the
    share of the area ``s`` in ``scale``, the aspect ``r`` in ``ratio``
    (log-uniform, as torchvision draws it), and the top-left corner.  The
    rectangle is ``round(sqrt(s * H * W * r))`` high and
    ``round(sqrt(s * H * W / r))`` wide, cut to the image.
    """

    def __init__(self, p: float = 0.5, scale: Tuple[float, float] = (0.02, 0.2),
                 ratio: Tuple[float, float] = (0.3, 3.3), value: float = 0.0) -> None:
        self.p = _probability("p", p)
        low, high = (float(v) for v in scale)
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(f"scale must be (low, high) with 0 < low <= high <= 1, got {scale!r}")
        r_low, r_high = (float(v) for v in ratio)
        if not 0.0 < r_low <= r_high or not np.isfinite(r_high):
            raise ValueError(f"ratio must be (low, high) with 0 < low <= high, finite, got {ratio!r}")
        if not np.isfinite(float(value)):
            raise ValueError(f"value must be finite, got {value!r}")
        self.scale, self.ratio, self.value = (low, high), (r_low, r_high), float(value)

    def __call__(self, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A new batch with one rectangle of the chosen images set to ``value`` (in the batch's dtype).

        ``value`` must be one the batch's dtype holds exactly (a whole number
        from 0 to 255 for uint8 pixels); anything else is a ``ValueError``.
        """
        _check_images(batch, "RandomErasing")
        rng = _check_generator(rng, "RandomErasing")
        fill = _fill_value(self.value, batch.dtype)  # checked before anything is drawn
        n, _, height, width = batch.shape
        draws = rng.random((5, n))
        erase = draws[0] < self.p
        area = height * width * (self.scale[0] + draws[1] * (self.scale[1] - self.scale[0]))
        log_low, log_high = np.log(self.ratio[0]), np.log(self.ratio[1])
        aspect = np.exp(log_low + draws[2] * (log_high - log_low))
        h = np.clip(np.rint(np.sqrt(area * aspect)), 1, height).astype(np.int64)
        w = np.clip(np.rint(np.sqrt(area / aspect)), 1, width).astype(np.int64)
        top = np.floor(draws[3] * (height - h + 1)).astype(np.int64)
        left = np.floor(draws[4] * (width - w + 1)).astype(np.int64)
        rows, cols = np.arange(height), np.arange(width)
        inside_rows = (rows >= top[:, None]) & (rows < (top + h)[:, None])  # (N, H)
        inside_cols = (cols >= left[:, None]) & (cols < (left + w)[:, None])  # (N, W)
        mask = erase[:, None, None] & inside_rows[:, :, None] & inside_cols[:, None, :]
        return np.where(mask[:, None], fill, batch)

    def __repr__(self) -> str:
        return f"RandomErasing(p={self.p:g}, scale={self.scale}, ratio={self.ratio}, value={self.value:g})"


def _fill_value(value: float, dtype: np.dtype) -> np.ndarray:
    """``value`` as a 0-d array of ``dtype``; ValueError when an integer dtype cannot hold it exactly (300 in uint8)."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        if value != int(value) or not info.min <= value <= info.max:
            raise ValueError(f"RandomErasing's value {value:g} cannot be stored as {np.dtype(dtype).name} "
                             f"(whole numbers {info.min} to {info.max}): give it in the stored pixels' units")
    return np.asarray(value).astype(dtype)


def image_statistics(images: Any, scale: float = 255.0, chunk: int = 4096) -> Tuple[float, float]:
    """``(mean, std)`` of all pixels of ``images`` divided by ``scale``, summed in float64 ``chunk`` images at a time.

    No float copy of the whole set is made: at most ``chunk`` images are
    converted at once.  Two passes (the mean, then the squared deviations
    from it), so the variance does not lose digits to cancellation.
    """
    array = np.asarray(images)
    if array.ndim == 0 or array.size == 0:
        raise ValueError(f"image_statistics needs a non-empty array, got shape {array.shape}")
    total = 0.0
    for start in range(0, len(array), chunk):
        total += float(np.sum(array[start:start + chunk], dtype=np.float64))
    mean = total / array.size
    squares = 0.0
    for start in range(0, len(array), chunk):
        part = array[start:start + chunk].astype(np.float64) - mean
        squares += float(np.dot(part.ravel(), part.ravel()))
    return mean / scale, float(np.sqrt(squares / array.size)) / scale


class Normalize:
    """``x' = (x / scale - mean) / std``, computed as ``x * a + b`` in the target dtype (``a = 1 / (scale std)``)."""

    def __init__(self, mean: float, std: float, scale: float = 255.0) -> None:
        mean, std, scale = float(mean), float(std), float(scale)
        if not (np.isfinite(mean) and np.isfinite(std) and std > 0 and np.isfinite(scale) and scale > 0):
            raise ValueError(f"Normalize needs a finite mean and a finite std and scale > 0, "
                             f"got mean={mean!r}, std={std!r}, scale={scale!r}")
        self.mean, self.std, self.scale = mean, std, scale

    def __call__(self, batch: np.ndarray, dtype: Any) -> np.ndarray:
        """The batch as ``dtype``, normalised (a new array)."""
        dtype = np.dtype(dtype)
        out = batch.astype(dtype)
        out *= dtype.type(1.0 / (self.scale * self.std))
        out += dtype.type(-self.mean / self.std)
        return out

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean:.6g}, std={self.std:.6g}, scale={self.scale:g})"


class BatchPipeline:
    """Make a drawn batch ready for the model: augment it (training only), convert it to ``dtype``, normalise it.

    Args:
        dtype: the floating dtype of the batches handed to the model.
        augment: steps such as :class:`RandomCrop`, :class:`HorizontalFlip`
            and :class:`RandomErasing`, applied in order while training on
            the batch in its stored dtype (uint8 pixels), each called as
            ``step(images, rng)`` on images ``(N, C, H, W)``.
        normalize: a :class:`Normalize`, or None to convert only.
        image_shape: ``(C, H, W)`` of one image; needed by the augmentation
            steps when the stored batches are flat or ``(N, H, W)``.
        flatten: whether the model takes flat rows ``(N, C*H*W)`` (an MLP)
            instead of ``(N, C, H, W)`` (a CNN).  Without ``image_shape`` the
            batch keeps its own shape.

    ``pipeline(batch, rng)`` augments with draws from the Generator ``rng``;
    ``pipeline(batch)`` (``rng=None``) only converts and normalises, which is
    how validation and test batches are made.
    """

    def __init__(self, dtype: Any = np.float32, augment: Sequence[Any] = (), normalize: Optional[Normalize] = None,
                 image_shape: Optional[Sequence[int]] = None, flatten: bool = False) -> None:
        self.dtype = np.dtype(dtype)
        if self.dtype.kind != "f":
            raise TypeError(f"dtype must be a floating dtype, got {self.dtype}")
        self.augment = tuple(augment)
        if not all(callable(step) for step in self.augment):
            raise TypeError("augment takes callables step(images, rng), such as RandomCrop(2)")
        if normalize is not None and not isinstance(normalize, Normalize):
            raise TypeError(f"normalize must be a Normalize or None, got {type(normalize).__name__}")
        self.normalize = normalize
        self.image_shape: Optional[Shape] = None
        if image_shape is not None:
            shape = tuple(int(d) for d in image_shape)
            if len(shape) != 3 or min(shape) < 1:
                raise ValueError(f"image_shape must be (C, H, W) of positive sizes, got {image_shape!r}")
            self.image_shape = shape  # type: ignore[assignment]
        if self.augment and self.image_shape is None:
            raise ValueError("augmentation steps need image_shape=(C, H, W)")
        self.flatten = bool(flatten)

    def __call__(self, batch: Any, rng: Optional[np.random.Generator] = None) -> np.ndarray:
        """The batch ready for the model; augmented only when a Generator ``rng`` is given."""
        batch = np.asarray(batch)
        n = len(batch)
        if self.image_shape is not None:
            if int(np.prod(batch.shape[1:])) != int(np.prod(self.image_shape)):
                raise ValueError(f"a batch of shape {batch.shape} does not hold images of shape {self.image_shape}")
            batch = batch.reshape((n, *self.image_shape))
        if rng is not None:
            rng = _check_generator(rng, "BatchPipeline")
            for step in self.augment:
                batch = step(batch, rng)
        if self.normalize is not None:
            out = self.normalize(batch, self.dtype)
        else:
            out = batch.astype(self.dtype)
        if self.image_shape is not None and self.flatten:
            out = out.reshape(n, -1)
        return out

    def __repr__(self) -> str:
        return (f"BatchPipeline(dtype={self.dtype.name}, augment={list(self.augment)}, normalize={self.normalize}, "
                f"image_shape={self.image_shape}, flatten={self.flatten})")
