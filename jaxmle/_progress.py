"""A dependency-free progress line for long batched jobs: datasets done, rate, time left."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Reports ``done / total`` datasets on one line of ``stream`` (stderr by default).

    On a terminal the line is redrawn in place at most ``interval`` seconds apart; on a
    file or pipe (logs, CI) one line is written per ``interval`` and one at the end.

    Args:
        total: datasets expected, or None when unknown (no percentage or time left).
        enabled: False makes every method a no-op.
        stream: where to write.
        interval: seconds between updates (the last one is always written).
        noun: what is counted (``"datasets"``, ``"groups"``).
    """

    def __init__(self, total: int | None, *, enabled: bool = True, stream: TextIO | None = None,
                 interval: float | None = None, noun: str = "datasets"):
        self.total, self.enabled, self.noun = total, enabled, noun
        self.stream = sys.stderr if stream is None else stream
        self.in_place = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = (0.2 if self.in_place else 5.0) if interval is None else interval
        self.done = 0
        self.started = time.perf_counter()
        self.last_written = -float("inf")
        self.written_done = None  # the count on the last line written

    def update(self, datasets: int) -> None:
        """Counts ``datasets`` more as done and redraws the line when it is time to."""
        self.done += datasets
        now = time.perf_counter()
        if self.enabled and now - self.last_written >= self.interval:
            self._write(now)

    def close(self) -> None:
        """Writes the final line (unless the last line written already says it) and ends it."""
        if self.enabled:
            if self.written_done != self.done:
                self._write(time.perf_counter())
            if self.in_place:
                self.stream.write("\n")
            self.stream.flush()

    def line(self, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        text = f"fitted {self.done:,}"
        if self.total:
            left = (self.total - self.done) / rate if rate > 0 else float("inf")
            text += f" / {self.total:,} {self.noun} ({self.done / self.total:.0%}), {left:,.0f} s left"
        else:
            text += f" {self.noun}"
        return f"{text}, {rate:,.0f} fits/s, {elapsed:,.1f} s"

    def _write(self, now: float) -> None:
        self.last_written, self.written_done = now, self.done
        if self.in_place:
            self.stream.write("\r" + self.line(now).ljust(79))
        else:
            self.stream.write(self.line(now) + "\n")
        self.stream.flush()
