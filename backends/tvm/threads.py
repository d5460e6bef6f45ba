"""How many threads a step model runs on, chosen from its own measured call times.

A decode step is a few hundred kernels, each parallel one a fork and a join of TVM's
thread pool. On an idle machine two threads beat one for SmolLM2; when another process takes
a core, every join waits for the thread that lost its core (a time slice, milliseconds) and
two threads become many times slower than one, which then runs on the free core at its own
speed. Neither the model's size nor a look at the machine when the artifact loads says which
is faster *now*, so :class:`ThreadChooser` measures: the first windows of calls try every
candidate count, then it keeps the fastest; when the current count's window median becomes
clearly slower than its best, or every ``interval`` windows while it runs on fewer threads
than it may, it tries the other count for one window and keeps whichever was faster (a
failed try doubles the interval, so a lasting load costs little).

The count applies through ``TVM_NUM_THREADS``, which TVM's runtime reads at every parallel
launch (``threading::MaxConcurrency``); at 1 a launch runs inline on the calling thread,
with no barrier at all.
"""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass, field

#: Calls per measurement window (decode steps: ~40 ms for SmolLM2 on 2 cores), and per
#: trial of another count (shorter: a trial of the wrong count is the costly part).
WINDOW, TRIAL = 8, 4
#: A window this much slower than the count's best means the machine changed: try the other.
SLOWER = 1.3
#: Windows between tries of more threads while running on fewer (doubled after a failed try).
FIRST_INTERVAL, MAX_INTERVAL = 8, 256


_MOST: list[int] = []


def candidate_threads() -> tuple[int, ...]:
    """1 and the thread count the process started with (``TVM_NUM_THREADS``, which
    ``backends.tvm.build.configure_threads`` defaults to the cores this process may use);
    that count alone when ``TAPEOUT_ADAPT_THREADS=0``."""
    if not _MOST:
        from backends.tvm.build import host_cores

        _MOST.append(max(1, int(os.environ.get("TVM_NUM_THREADS") or host_cores())))
    if os.environ.get("TAPEOUT_ADAPT_THREADS") == "0":
        return (_MOST[0],)
    return tuple(sorted({1, _MOST[0]}))


def set_threads(count: int) -> None:
    """The thread count of the following parallel launches of TVM kernels in this process."""
    if os.environ.get("TVM_NUM_THREADS") != str(count):
        os.environ["TVM_NUM_THREADS"] = str(count)


@dataclass
class ThreadChooser:
    """Which of ``candidates`` thread counts the next call uses (see the module docstring)."""

    candidates: tuple[int, ...]
    current: int = 0
    best: dict[int, float] = field(default_factory=dict)
    times: list[float] = field(default_factory=list)
    trying: int | None = None  # the count under trial; ``back`` is the one before it
    back: int = 0
    last: dict[int, float] = field(default_factory=dict)
    interval: int = FIRST_INTERVAL
    windows: int = 0  # since the last trial

    def __post_init__(self) -> None:
        self.current = self.current or max(self.candidates)

    def observe(self, seconds: float) -> None:
        """Record one call's time; at the end of a window, maybe change ``current``."""
        if len(self.candidates) < 2:
            return
        self.times.append(seconds)
        if len(self.times) < (WINDOW if self.trying is None else TRIAL):
            return
        median = statistics.median(self.times)
        self.times.clear()
        count = self.current
        self.last[count] = median
        self.best[count] = min(self.best.get(count, median), median)
        self.windows += 1
        untried = [c for c in self.candidates if c not in self.best]
        if untried:  # the first windows measure every candidate once
            self._try(untried[0])
        elif self.trying is not None:
            self._settle()
        elif median > SLOWER * self.best[count]:  # slower than it can be: the machine changed
            self._try(self._other(count))
        elif count < max(self.candidates) and self.windows >= self.interval:
            self._try(max(self.candidates))  # the load that made fewer threads win may be gone

    def _other(self, count: int) -> int:
        return min(self.candidates) if count == max(self.candidates) else max(self.candidates)

    def _try(self, count: int) -> None:
        self.trying, self.back, self.current = count, self.current, count
        self.windows = 0

    def _settle(self) -> None:
        """After a trial window: keep the faster of the tried count and the one before."""
        assert self.trying is not None
        tried, before = self.trying, self.back
        won = self.last[tried] < self.last.get(before, float("inf"))
        self.current = tried if won else before
        # A failed try of more threads waits longer before the next one.
        if not won and tried > before:
            self.interval = min(2 * self.interval, MAX_INTERVAL)
        elif won and tried > before:
            self.interval = FIRST_INTERVAL
        self.trying = None
        self.windows = 0
