"""Progress of long batched jobs: a dependency-free line (datasets done, rate, time left),
or the user's own callable ``progress(done, total)`` (to drive tqdm, rich, a log ...)."""

from __future__ import annotations

import sys
import time
from typing import Callable, TextIO, Union

#: What ``progress=`` takes: a bool (True writes the progress line) or ``progress(done, total)``.
ProgressArg = Union[bool, Callable[[int, "int | None"], object]]


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


class Callback:
    """Calls ``function(done, total)`` after each finished piece of work.

    ``done`` counts what is finished so far (an int); ``total`` is the count expected, or
    None when unknown. The last call has ``done`` equal to everything fitted.
    """

    def __init__(self, function: Callable, total: int | None):
        self.function, self.total, self.done = function, total, 0

    def update(self, datasets: int) -> None:
        """Counts ``datasets`` more as done and reports the running count."""
        self.done += datasets
        self.function(self.done, self.total)

    def close(self) -> None:
        """Nothing to end: every update was reported."""


def reporter(progress: ProgressArg, total: int | None, *, stream: TextIO | None = None,
             noun: str = "datasets") -> Progress | Callback:
    """The reporter for a public function's ``progress=`` argument.

    Args:
        progress: False (silent), True (the progress line on ``stream``), or a callable
            ``progress(done, total)`` called after each block of work.
        total: the count expected, or None when unknown.
        stream: where the progress line goes (stderr by default).
        noun: what is counted, for the progress line.

    Returns:
        An object with ``update(n)`` and ``close()``.

    Raises:
        TypeError: ``progress`` is neither a bool nor callable.

    Example:
        >>> calls = []
        >>> bar = reporter(lambda done, total: calls.append((done, total)), 10)
        >>> bar.update(4); bar.update(6); bar.close()
        >>> calls
        [(4, 10), (10, 10)]
    """
    if callable(progress):
        return Callback(progress, total)
    if not any(progress is flag or progress == flag for flag in (True, False)):
        raise TypeError(f"progress must be a bool or a callable progress(done, total), "
                        f"got {type(progress).__name__}")
    return Progress(total, enabled=bool(progress), stream=stream, noun=noun)
