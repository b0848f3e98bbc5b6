"""Progress lines (frames, fps, ETA) on a terminal; silent when piped or asked."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Rewrites one status line on stderr while work goes on.

    Enabled only when the stream is a terminal and `quiet` is False, so logs
    and pipes stay clean.
    """

    def __init__(self, total: int | None, label: str, quiet: bool = False, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = not quiet and self.stream.isatty()
        self.total, self.label = total, label
        self.done = 0
        self.start = time.monotonic()
        self._last_draw = 0.0

    def update(self, frames: int) -> None:
        self.done += frames
        now = time.monotonic()
        if self.enabled and now - self._last_draw > 0.2:
            self._last_draw = now
            self.stream.write("\r" + self.line() + "\033[K")
            self.stream.flush()

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        fps = self.done / elapsed
        text = f"{self.label}: {self.done}"
        if self.total:
            text += f"/{self.total} frames"
            if fps > 0 and self.done < self.total:
                text += f", {fps:.1f} fps, ETA {(self.total - self.done) / fps:.0f} s"
            else:
                text += f", {fps:.1f} fps"
        else:
            text += f" frames, {fps:.1f} fps"
        return text

    def close(self) -> None:
        """Clear the status line (so an error message starts on a clean line)."""
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
