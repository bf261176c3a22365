"""
Log levels for C{-D} and C{-DD}, for twistd and the console script alike.

twisted.logger has no trace level: C{-D} shows debug events (per
connection: the route through the chain, the node chosen, how long the
dial took, why it failed), C{-DD} also turns on L{TRACE}, which protocols
check before logging every frame (so the per-frame cost is one attribute
read when tracing is off).

Twisted's own chatter about its internals (C{Foo starting on 45862},
C{(TCP Port 8420 Closed)}, C{Scheduling retry 1 to connect <... object at
0x...>}, C{Starting factory ...}) says nothing an operator can act on; the
observer shows it only from C{-D} on (L{TwistedInternals}).
"""

from __future__ import annotations

import re
import sys
from time import time
from typing import IO, Any

from twisted.logger import (
    ILogFilterPredicate,
    ILogObserver,
    LogLevel,
    PredicateResult,
    formatEventAsClassicLogText,
    formatTime,
    globalLogBeginner,
)
from twisted.logger import Logger as _TwistedLogger
from twisted.python.logfile import LogFile
from zope.interface import implementer

#: Per-frame protocol logging (C{-DD}).
TRACE = False

#: A service speaks over standard output (C{--listen stdio:}): log lines
#: written to the standard streams go to standard error instead.
STDOUT_TAKEN = False

_level = LogLevel.info
_stream: IO[str] | None = None
_path: str | None = None


#: Every valid level, for a membership test (Twisted's L{Logger.emit} walks
#: the level constants on every event).
_LEVELS = frozenset(LogLevel.iterconstants())


class Logger(_TwistedLogger):
    """
    Twisted's L{Logger}, emitting the same events at less cost: a level is
    checked against a set, not by walking C{LogLevel.iterconstants()} (a
    service logs two lines per connection in each process; issue 20).
    """

    def emit(self, level: LogLevel, format: str | None = None, **kwargs: object) -> None:
        if level not in _LEVELS:
            super().emit(level, format, **kwargs)  # Twisted reports the bad level
            return
        kwargs["log_logger"] = self
        kwargs["log_level"] = level
        kwargs["log_namespace"] = self.namespace
        kwargs["log_source"] = self.source
        kwargs["log_format"] = format
        kwargs["log_time"] = time()
        if "log_trace" in kwargs:
            kwargs["log_trace"].append((self, self.observer))  # type: ignore[attr-defined]
        self.observer(kwargs)


def escape(text: Any) -> str:
    """
    A peer-supplied string (a target name, a user name, a reason quoting
    one) as it may appear in a log line: unchanged when every character is
    printable, else its C{repr} (C{'evil\\nname'}, C{'\\x1b[2J'},
    C{'\\udcff'}), so that no peer writes a fake log line, a terminal
    escape or bytes a strict UTF-8 log cannot take.
    """
    text = str(text)
    return text if text.isprintable() else repr(text)


#: Characters no log line carries raw: C0/C1 controls but newline and tab
#: (tracebacks), DEL, lone surrogates (undecodable bytes), bidi controls.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")


def _escapeUnsafe(line: str) -> str:
    return _UNSAFE.sub(lambda m: repr(m.group())[1:-1], line)


#: The last second formatted, and its text (log lines carry whole seconds).
_stamp: tuple[int, str] = (-1, "")


def _timestamp(when: float) -> str:
    global _stamp
    second = int(when)
    if _stamp[0] != second:
        _stamp = (second, formatTime(second))
    return _stamp[1]


def _format(event: dict[str, Any]) -> str | None:
    """
    One event as Twisted's classic log line.  Every connection logs two
    lines in each process, and Twisted's formatter (C{string.Formatter} in
    Python, a C{strftime} per line) cost ~120 µs a line, more than the rest
    of a short connection's life: plain events (a format string, no
    traceback, no call syntax) are formatted with C{str.format_map} and a
    timestamp cached per second, to the same text; anything else goes to
    Twisted's formatter.
    """
    fmt = event.get("log_format")
    when = event.get("log_time")
    if (
        type(fmt) is str
        and when is not None
        and "log_failure" not in event
        and "log_flattened" not in event
        and "log_system" not in event
        and "()" not in fmt
    ):
        try:
            text = fmt.format_map(event)
        except Exception:  # noqa: BLE001 - Twisted's formatter says what is wrong
            text = ""
        if text:
            level = event.get("log_level")
            line = f"{_timestamp(when)} [{event.get('log_namespace', '-')}#{level.name if level is not None else '-'}] {text}"
            if line.isprintable():
                # Most lines: no newline to indent, nothing to escape.
                return line + "\n"
            line = line.replace("\n", "\n\t") + "\n"
            return _escapeUnsafe(line) if _UNSAFE.search(line) else line
    classic = formatEventAsClassicLogText(event)
    return _escapeUnsafe(classic) if classic else classic


@implementer(ILogObserver)
class _LineObserver:
    """
    Twisted's C{FilteringLogObserver(LogLevelFilterPredicate(level),
    FileLogObserver(stream, _format))}, in one call: events without a level
    or namespace, or below C{level}, are dropped; the rest are written as
    one line each and flushed.  (Twisted's level predicate looks the
    namespace's level up and sorts the level constants on every event:
    a fifth of a log line's cost.)
    """

    def __init__(self, stream: IO[str], level: LogLevel) -> None:
        self.stream = stream
        self.allowed = frozenset(lv for lv in LogLevel.iterconstants() if lv >= level)
        self.internals = TwistedInternals(level)

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("log_level") not in self.allowed:
            return
        namespace = event.get("log_namespace")
        if not namespace:
            return
        if (type(namespace) is not str or not namespace.startswith("gostrelay.")) and self.internals(event) is PredicateResult.no:
            return
        line = _format(event)
        if line:
            self.stream.write(line)
            self.stream.flush()


def configure(debug: int, stream: IO[str] | None = None, path: str | None = None) -> None:
    """
    Record the verbosity chosen on the command line: 0 info, 1 debug,
    2 and more debug plus per-frame tracing; and where to write (a stream,
    or a file path such as twistd's C{--logfile}).
    """
    global TRACE, _level, _stream, _path
    _level = LogLevel.debug if debug >= 1 else LogLevel.info
    TRACE = debug >= 2
    _stream = stream
    _path = path


def keepOffStandardOutput() -> None:
    """
    Standard output carries a service's bytes (C{stdio:}): from now on
    log lines meant for it go to standard error.
    """
    global STDOUT_TAKEN
    STDOUT_TAKEN = True


class _StandardOutput:
    """
    Standard output, or standard error once L{keepOffStandardOutput} was
    called (possibly after the observer was made: the console script starts
    logging before it builds its services).  The streams are the ones of
    the moment the observer is made, before twistd redirects C{sys.stdout}
    into the log.
    """

    def __init__(self) -> None:
        self.out = sys.stdout
        self.err = sys.stderr

    def _target(self) -> IO[str]:
        return self.err if STDOUT_TAKEN else self.out

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        self._target().flush()
#: Legacy (C{log.msg}) lines Twisted writes about its ports and factories.
_LEGACY_INTERNALS = re.compile(
    r"^(?:.* starting on (?:\d+|'.*'|b'.*')|\((?:TCP|UDP|UNIX|Unix) Port \S+ Closed\)|Starting factory .*|Stopping factory .*)$",
    re.DOTALL,
)

#: Formats of Twisted's new-style events about its internals.
_FORMAT_INTERNALS = ("Scheduling retry ", "Starting factory ", "Stopping factory ", "Stopping protocol ")


@implementer(ILogFilterPredicate)
class TwistedInternals:
    """
    Drops Twisted's informational lines about its own machinery (ports
    starting and closing, factories, ClientService retries), which the
    services' own lines already say better; from C{-D} on they pass.
    Warnings and errors always pass.
    """

    def __init__(self, level: LogLevel = LogLevel.info) -> None:
        self.level = level

    def __call__(self, event: dict[str, Any]) -> PredicateResult:
        if self.level <= LogLevel.debug:
            return PredicateResult.maybe
        if event.get("log_failure") is not None or event.get("isError"):
            return PredicateResult.maybe
        level = event.get("log_level")
        if level is not None and level > LogLevel.info:
            return PredicateResult.maybe
        namespace = str(event.get("log_namespace", ""))
        if namespace == "log_legacy":
            text = str(event.get("log_text", ""))
            if _LEGACY_INTERNALS.match(text):
                return PredicateResult.no
        elif namespace.startswith("twisted."):
            fmt = str(event.get("log_format", ""))
            if fmt.startswith(_FORMAT_INTERNALS):
                return PredicateResult.no
        return PredicateResult.maybe


def observer() -> ILogObserver:
    """
    The observer for the configured level.  twistd's C{--logger} takes this
    function's name (L{gostrelay.tap.Options} sets it), so that C{-D}
    works under twistd as it does in the console script.
    """
    stream: IO[str] = _stream or _StandardOutput()  # type: ignore[assignment]
    if _path is not None:
        stream = LogFile.fromFullPath(_path)  # type: ignore[assignment]
    # The safety net under L{escape}: whatever reaches a line, no control
    # character, terminal escape or undecodable byte is written raw.
    return _LineObserver(stream, _level)


def start(debug: int, stream: IO[str] | None = None) -> None:
    """
    Begin logging for the console script.
    """
    configure(debug, stream)
    globalLogBeginner.beginLoggingTo([observer()], redirectStandardIO=False)
