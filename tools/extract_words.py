"""One-off script: extract the small English word corpus of the language task into ``datasets/data/words.txt``.

The words come from Debian's ``wamerican`` package (SCOWL, the Spell Checker
Oriented Word Lists of Kevin Atkinson; ``apt-get install wamerican`` puts
them in ``/usr/share/dict/american-english`` and the licence in
``/usr/share/doc/wamerican/copyright``).  This script was run once; the
library itself never reads the system's word list.

What it keeps: the words of lowercase ASCII letters only (no capitals, no
apostrophes, no accents), every fourth of them in the list's order, then
shuffled with a fixed seed so that neighbouring words are unrelated (the
list is alphabetical).  One word a line, 27 characters in all (``a``-``z``
and the newline); about 16 000 words, 150 KB.  The licence is copied beside
it as ``WORDS_LICENSE.txt``.

Usage (the wamerican package needed only here)::

    python tools/extract_words.py [OUTPUT_FOLDER]
"""
from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import numpy as np

SOURCE = Path("/usr/share/dict/american-english")
LICENSE = Path("/usr/share/doc/wamerican/copyright")
DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "src" / "nn_from_scratch" / "datasets" / "data"
EVERY = 4
SEED = 0


def extract(folder: Path) -> None:
    """Select, shuffle and write the words, copy the licence, and check what was written."""
    if not SOURCE.is_file():
        raise SystemExit(f"{SOURCE} is missing: apt-get install wamerican")
    words = [w for w in SOURCE.read_text(encoding="utf-8").split("\n") if re.fullmatch("[a-z]+", w)][::EVERY]
    order = np.random.default_rng(SEED).permutation(len(words))
    text = "".join(words[i] + "\n" for i in order)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "words.txt").write_text(text, encoding="ascii")
    shutil.copyfile(LICENSE, folder / "WORDS_LICENSE.txt")
    again = (folder / "words.txt").read_text(encoding="ascii")
    if again != text or set(again) != set("abcdefghijklmnopqrstuvwxyz\n"):
        raise SystemExit("the corpus did not read back as written")
    print(f"{len(words)} words, {len(text)} characters -> {folder / 'words.txt'}")


if __name__ == "__main__":
    extract(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUTPUT)
