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


class FastLoggerTests(SynchronousTestCase):
    """
    L{logs.Logger} emits what Twisted's L{Logger} emits (issue 20: the
    level is checked against a set instead of the sorted constants).
    """

    def test_sameEvent(self) -> None:
        ours: list[dict] = []
        theirs: list[dict] = []
        logs.Logger(namespace="gostrelay.x", observer=ours.append).info("a {b}", b=1)
        Logger(namespace="gostrelay.x", observer=theirs.append).info("a {b}", b=1)
        self.assertEqual(set(ours[0]), set(theirs[0]))
        for key in ("log_level", "log_namespace", "log_format", "log_source", "b"):
            self.assertEqual(ours[0][key], theirs[0][key])
        self.assertIsInstance(ours[0]["log_logger"], logs.Logger)

    def test_badLevel(self) -> None:
        """
        A level that is not one is reported, as Twisted does.
        """
        events: list[dict] = []
        logs.Logger(namespace="gostrelay.x", observer=events.append).emit("loud", "x")  # type: ignore[arg-type]
        self.assertEqual(events[0]["log_level"], LogLevel.critical)
        self.assertIn("invalidLevel", events[0])

    def test_trace(self) -> None:
        events: list[dict] = []
        logger = logs.Logger(namespace="gostrelay.x", observer=events.append)
        trace: list = []
        logger.info("x", log_trace=trace)
        self.assertEqual(trace, [(logger, events.append)])

    def test_twistedInternalsStillDropped(self) -> None:
        """
        The observer skips the internals check only for gostrelay's own
        namespaces.
        """
        out = io.StringIO()
        observer = logs._LineObserver(out, LogLevel.info)
        Logger(namespace="twisted.internet.protocol", observer=observer).info("Starting factory {f}", f="x")
        logs.Logger(namespace="gostrelay.forward", observer=observer).info("Starting factory {f}", f="x")
        self.assertEqual(out.getvalue().count("Starting factory"), 1)
        self.assertIn("[gostrelay.forward#info]", out.getvalue())

    def test_printableLinesUnchanged(self) -> None:
        """
        A printable line is written as it is; a line with a newline or a
        control character still goes through the escaping.
        """
        when = time.time()
        plain = logs._format({"log_format": "a {b}", "b": "c", "log_time": when, "log_namespace": "n", "log_level": LogLevel.info})
        self.assertTrue(plain is not None and plain.endswith("[n#info] a c\n"))
        odd = logs._format({"log_format": "a {b}", "b": "c\x1b\nd", "log_time": when, "log_namespace": "n", "log_level": LogLevel.info})
        self.assertTrue(odd is not None and odd.endswith("[n#info] a c\\x1b\n\td\n"), odd)
