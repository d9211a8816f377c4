"""A one-line progress bar for the host loop over chunks: generations done, chain-generations per
second, time left. Silent when the stream is not a terminal, so CI logs stay readable."""
from __future__ import annotations

import sys
import time


def _rate(value: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.1f}{unit}"
    return f"{value:.0f}"


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class Progress:
    """update(generations_done) between chunks; close() ends the line.

    The speed is measured from the first update on (the first chunk carries the compile time).
    """

    def __init__(self, total: int, n_chains: int, label: str = "", stream=None, enabled: bool | None = None,
                 width: int = 28):
        self.stream = sys.stderr if stream is None else stream
        self.enabled = _is_terminal(self.stream) if enabled is None else enabled
        self.total, self.n_chains, self.label, self.width = total, n_chains, label, width
        self._first = None  # (time, generations) at the first update
        self._shown = False

    def line(self, done: int, now: float | None = None) -> str:
        now = time.perf_counter() if now is None else now
        if self._first is None:
            self._first = (now, done)
        t0, g0 = self._first
        filled = int(self.width * done / max(self.total, 1))
        bar = "#" * filled + "-" * (self.width - filled)
        text = f"{self.label + ' ' if self.label else ''}[{bar}] gen {done}/{self.total}"
        if now > t0 and done > g0:
            per_second = (done - g0) / (now - t0)
            text += f"  {_rate(per_second * self.n_chains)} chain-gen/s  {_duration((self.total - done) / per_second)} left"
        return text

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        self.stream.write("\r\033[K" + self.line(done))
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        if self.enabled and self._shown:
            self.stream.write("\n")
            self.stream.flush()


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
