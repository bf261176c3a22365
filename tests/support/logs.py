"""
Capturing log events while a test runs: the events and their formatted
lines, for tests that check what an operator would read.
"""

from __future__ import annotations

import re
from typing import Any

from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest


class LogCapture:
    """
    Every log event while installed, as formatted text (and the events).
    """

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self._observe)

    def _observe(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def stop(self) -> None:
        globalLogPublisher.removeObserver(self._observe)

    @property
    def lines(self) -> list[str]:
        return [formatEvent(e) or "" for e in self.events]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def matching(self, pattern: str) -> list[str]:
        regex = re.compile(pattern)
        return [line for line in self.lines if regex.search(line)]


def captureLogs(case: unittest.SynchronousTestCase) -> LogCapture:
    """
    A L{LogCapture} installed for the rest of C{case}.
    """
    capture = LogCapture()
    case.addCleanup(capture.stop)
    return capture
