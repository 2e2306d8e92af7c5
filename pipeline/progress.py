"""Progress a person can watch: each stage's start and end, and for the long loops (language,
embeddings, model scores, signatures) how far along they are, at what rate, and the time left.

Stages count through a `Progress` (`deps.progress(name)`). Counts go to the stage's logger (the
Prefect run logger in a flow) every `every` seconds, and to the process's reporter when one is
installed: the CLI installs a rich display when it runs in a terminal, and none otherwise.
"""

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class Reporter(Protocol):
    def started(self, stage: str) -> None: ...

    def advanced(self, stage: str, done: int, total: int, unit: str) -> None: ...

    def finished(self, stage: str, summary: str) -> None: ...


_reporter: Reporter | None = None


@contextmanager
def reporting(reporter: Reporter) -> Iterator[Reporter]:
    """Send every stage's progress in this process to `reporter` while the block runs."""
    global _reporter
    previous, _reporter = _reporter, reporter
    try:
        yield reporter
    finally:
        _reporter = previous


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    """Counts one long loop of a stage."""

    def __init__(self, stage: str, log: logging.Logger | None = None, every: float = 15.0):
        self.stage, self.log, self.every = stage, log, every
        self.done, self.total, self.unit = 0, 0, "rows"
        self.began = self.last = time.monotonic()

    def start(self, total: int, unit: str = "rows") -> "Progress":
        self.done, self.total, self.unit = 0, total, unit
        self.began = self.last = time.monotonic()
        if _reporter:
            _reporter.advanced(self.stage, 0, total, unit)
        return self

    def advance(self, n: int) -> None:
        self.done += n
        if _reporter:
            _reporter.advanced(self.stage, self.done, self.total, self.unit)
        now = time.monotonic()
        if self.log and (now - self.last >= self.every or self.done >= self.total):
            self.last = now
            self.log.info("%s: %s", self.stage, self.line())

    def line(self) -> str:
        """'12,000 of 104,000 texts (12%), 610/s, 2m14s left'."""
        elapsed = max(time.monotonic() - self.began, 1e-9)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate else 0.0
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        return f"{self.done:,} of {self.total:,} {self.unit}{share}, {rate:,.0f}/s, {duration(left)} left"


def started(stage: str, log: logging.Logger) -> None:
    log.info("%s: started", stage)
    if _reporter:
        _reporter.started(stage)


def finished(stage: str, summary: str, log: logging.Logger) -> None:
    log.info("%s: %s", stage, summary)
    if _reporter:
        _reporter.finished(stage, summary)
