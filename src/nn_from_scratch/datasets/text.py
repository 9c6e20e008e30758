"""The character-level language corpus shipped with the package, its characters as integers, and its windows.

``words.txt`` holds about 16 000 English words, one a line, from Debian's
``wamerican`` word list (SCOWL, Kevin Atkinson; licence in
``WORDS_LICENSE.txt`` beside it), extracted once by
``tools/extract_words.py``.  Its 27 characters are the newline and
``a``-``z``.  The split is fixed: the first 90% of the words train, the
last 10% validate (the file's order is already shuffled).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Tuple

import numpy as np

__all__ = ["TextSplit", "decode", "encode", "load_words", "sequence_windows"]

_DATA = Path(__file__).resolve().parent / "data"
#: The share of the words that validates.
VALIDATION_SHARE = 0.1


@dataclass
class TextSplit:
    """A corpus as integer codes: the training and validation text, and the characters the codes stand for."""

    train: np.ndarray
    validation: np.ndarray
    vocabulary: str


def encode(text: str, vocabulary: str) -> np.ndarray:
    """The codes of ``text`` (int64), each character's index in ``vocabulary``; ``ValueError`` for any other."""
    index = {c: i for i, c in enumerate(vocabulary)}
    unknown = sorted(set(text) - set(index))
    if unknown:
        raise ValueError(f"characters {''.join(unknown)!r} are not in the vocabulary {vocabulary!r}")
    return np.array([index[c] for c in text], dtype=np.int64)


def decode(codes: Sequence[int], vocabulary: str) -> str:
    """The text of ``codes``; ``ValueError`` for a code outside the vocabulary."""
    codes = np.asarray(codes)
    if codes.size and (codes.min() < 0 or codes.max() >= len(vocabulary)):
        raise ValueError(f"codes must lie in [0, {len(vocabulary)}), got {codes.min()}..{codes.max()}")
    return "".join(vocabulary[int(c)] for c in codes)


def load_words() -> TextSplit:
    """The shipped word corpus, split 90/10 by words, as codes over its sorted characters (newline first)."""
    text = (_DATA / "words.txt").read_text(encoding="ascii")
    words = text.splitlines(keepends=True)
    cut = len(words) - int(round(len(words) * VALIDATION_SHARE))
    vocabulary = "".join(sorted(set(text)))
    return TextSplit(encode("".join(words[:cut]), vocabulary), encode("".join(words[cut:]), vocabulary), vocabulary)


def sequence_windows(codes: np.ndarray, context: int, step: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Inputs and next-character targets, ``(N, context)`` each: ``X[i] = codes[s:s+T]``, ``Y[i] = codes[s+1:s+T+1]``.

    Windows start every ``step`` characters (``context`` by default: no
    overlap); the tail that fills no window is left out.
    """
    step = step or context
    if context < 1 or step < 1:
        raise ValueError(f"context and step must be positive, got {context} and {step}")
    starts = np.arange(0, len(codes) - context, step)
    offsets = starts[:, None] + np.arange(context)[None, :]
    return codes[offsets], codes[offsets + 1]
