"""
Tests for L{gostrelay.logs}: the fast line formatter gives Twisted's
classic text, and the observer filters by level as Twisted's does.
"""

from __future__ import annotations

import io
import time

from twisted.logger import Logger, LogLevel, formatEventAsClassicLogText
from twisted.trial.unittest import SynchronousTestCase

from gostrelay import logs


class FormatTests(SynchronousTestCase):
    EVENTS = [
        {"log_format": "{peer} {command} user={user!r}: closed, {duration:.3f}s", "peer": "1.2.3.4:5",
         "command": "CONNECT", "user": "x", "duration": 0.5},
        {"log_format": "a {b.real} {c[0]} {d}", "b": 3, "c": [9], "d": {"k": 1}},
        {"log_format": "missing {nope}"},
        {"log_format": "call {f()}", "f": lambda: "called"},
        {"log_format": "two\nlines {x}", "x": "and\nmore"},
        {"log_format": "braces {{literal}} {x}", "x": 1},
        {"log_format": "bad spec {x:q}", "x": 1},
    ]

    def test_sameAsTwisted(self) -> None:
        """
        Every kind of event gives the line Twisted's formatter gives.
        """
        for when in (time.time(), 1e9, 1e9 + 0.999):
            for level in (LogLevel.info, LogLevel.warn, None):
                for event in self.EVENTS:
                    event = dict(event, log_time=when, log_namespace="gostrelay.t")
                    if level is not None:
                        event["log_level"] = level
                    expected = formatEventAsClassicLogText(event)
                    self.assertEqual(logs._format(event), logs._escapeUnsafe(expected) if expected else expected, event)

    def test_observerLevel(self) -> None:
        """
        Events below the configured level, or without a level or
        namespace, are not written.
        """
        stream = io.StringIO()
        logs.configure(0, stream)
        self.addCleanup(logs.configure, 0)
        observer = logs.observer()
        log = Logger(observer=observer, namespace="gostrelay.t")
        log.debug("hidden {x}", x=1)
        log.info("shown {x}", x=2)
        log.error("error {x}", x=3)
        observer({"log_format": "no level", "log_namespace": "n", "log_time": 0})
        observer({"log_format": "no namespace", "log_level": LogLevel.info, "log_time": 0})
        lines = stream.getvalue().splitlines()
        self.assertEqual([line.split("] ", 1)[1] for line in lines], ["shown 2", "error 3"])
        logs.configure(1, stream)
        Logger(observer=logs.observer(), namespace="gostrelay.t").debug("now shown")
        self.assertIn("now shown", stream.getvalue())
