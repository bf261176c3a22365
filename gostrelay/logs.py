"""
Log levels for C{-D} and C{-DD}, for twistd and the console script alike.

twisted.logger has no trace level: C{-D} shows debug events, C{-DD} also
turns on L{TRACE}, which protocols check before logging every frame (so the
per-frame cost is one attribute read when tracing is off).
"""

from __future__ import annotations

import re
import sys
from typing import IO, Any

from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    formatEventAsClassicLogText,
    globalLogBeginner,
)

#: Per-frame protocol logging (C{-DD}).
TRACE = False

_level = LogLevel.info
_stream: IO[str] | None = None
_path: str | None = None


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


def _format(event: dict[str, Any]) -> str | None:
    line = formatEventAsClassicLogText(event)
    return _escapeUnsafe(line) if line else line


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


def observer() -> ILogObserver:
    """
    The observer for the configured level.  twistd's C{--logger} takes this
    function's name (L{gostrelay.tap.Options} sets it), so that C{-D}
    works under twistd as it does in the console script.
    """
    predicate = LogLevelFilterPredicate(defaultLogLevel=_level)
    stream: IO[str] = _stream or sys.stdout
    if _path is not None:
        from twisted.python.logfile import LogFile

        stream = LogFile.fromFullPath(_path)  # type: ignore[assignment]
    # The safety net under L{escape}: whatever reaches a line, no control
    # character, terminal escape or undecodable byte is written raw.
    return FilteringLogObserver(FileLogObserver(stream, _format), [predicate])


def start(debug: int, stream: IO[str] | None = None) -> None:
    """
    Begin logging for the console script.
    """
    configure(debug, stream)
    globalLogBeginner.beginLoggingTo([observer()], redirectStandardIO=False)
