"""Progress bars for training: tqdm when it is installed, a plain text bar otherwise."""
from __future__ import annotations

import sys
from typing import Any, Dict, Optional, TextIO

__all__ = ["ProgressBar"]


class ProgressBar:
    """One bar per epoch, ``update()`` once per batch, ``close(**stats)`` at the end.

    Uses tqdm (the optional ``progress`` extra) when it can be imported;
    otherwise writes a plain bar, redrawn in place on a terminal and printed
    once per epoch elsewhere (logs, CI).  ``enabled=False`` prints nothing.
    """

    def __init__(self, total: int, description: str, *, enabled: bool = True, stream: Optional[TextIO] = None) -> None:
        self.total, self.description, self.enabled = total, description, enabled
        self.stream = sys.stderr if stream is None else stream
        self.count = 0
        self._tqdm: Any = None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self._tqdm = tqdm(total=total, desc=description, file=self.stream, leave=True, dynamic_ncols=True)
        self._interactive = enabled and self._tqdm is None and getattr(self.stream, "isatty", lambda: False)()

    def update(self, **stats: float) -> None:
        self.count += 1
        if not self.enabled:
            return
        if self._tqdm is not None:
            self._tqdm.update(1)
            if stats:
                self._tqdm.set_postfix({k: f"{v:.4f}" for k, v in stats.items()}, refresh=False)
        elif self._interactive:
            self.stream.write("\r" + self._line(stats))
            self.stream.flush()

    def close(self, **stats: float) -> None:
        if not self.enabled:
            return
        if self._tqdm is not None:
            if stats:
                self._tqdm.set_postfix({k: f"{v:.4f}" for k, v in stats.items()})
            self._tqdm.close()
            return
        self.stream.write(("\r" if self._interactive else "") + self._line(stats) + "\n")
        self.stream.flush()

    def _line(self, stats: Dict[str, float]) -> str:
        width = 24
        done = int(width * self.count / self.total) if self.total else width
        bar = "=" * done + (">" if done < width else "") + " " * max(width - done - 1, 0)
        text = f"{self.description} [{bar}] {self.count}/{self.total}"
        if stats:
            text += "  " + "  ".join(f"{k} {v:.4f}" for k, v in stats.items())
        return text
