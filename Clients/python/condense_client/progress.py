"""Progress display for long embedding calls: a tqdm bar when tqdm is installed, else plain stderr lines.

tqdm is an optional extra (`pip install condense-client[progress]`), never a requirement.
"""
from __future__ import annotations

import sys
import time
from typing import Optional

try:
    from tqdm.auto import tqdm  # picks the notebook widget inside Jupyter
except ImportError:
    tqdm = None


class Progress:
    """Counts finished texts. With tqdm: a bar showing texts and texts/s. Without: one line on stderr at most
    every `interval` seconds, and a final line on close. `enabled=False` only counts."""

    def __init__(self, total: Optional[int], enabled: bool = True, description: str = "Embedding",
                 interval: float = 5.0):
        self.total = total
        self._enabled = enabled
        self.count = 0
        self._description = description
        self._interval = interval
        self._start = time.monotonic()
        self._last_line = self._start
        self._closed = not enabled
        self._bar = tqdm(total=total, unit="texts", desc=description, dynamic_ncols=True) if tqdm and enabled else None

    def update(self, n: int = 1) -> None:
        self.count += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if self._enabled and now - self._last_line >= self._interval:
            self._last_line = now
            self._write_line(now)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        else:
            self._write_line(time.monotonic())

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _write_line(self, now: float) -> None:
        elapsed = now - self._start
        rate = self.count / elapsed if elapsed > 0 else 0.0
        done = f"{self.count}/{self.total}" if self.total is not None else f"{self.count}"
        share = f" ({100 * self.count / self.total:.0f}%)" if self.total else ""
        # Looked up per line so that redirected or captured stderr is honoured.
        print(f"{self._description}: {done} texts{share}, {rate:.1f} texts/s, {elapsed:.1f} s",
              file=sys.stderr, flush=True)
