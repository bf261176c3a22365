"""
Log levels for C{-D} and C{-DD}, for twistd and the console script alike.

twisted.logger has no trace level: C{-D} shows debug events, C{-DD} also
turns on L{TRACE}, which protocols check before logging every frame (so the
per-frame cost is one attribute read when tracing is off).
"""

from __future__ import annotations

import sys
from typing import IO

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)

#: Per-frame protocol logging (C{-DD}).
TRACE = False

_level = LogLevel.info
_stream: IO[str] | None = None
_path: str | None = None


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
    return FilteringLogObserver(textFileLogObserver(stream), [predicate])


def start(debug: int, stream: IO[str] | None = None) -> None:
    """
    Begin logging for the console script.
    """
    configure(debug, stream)
    globalLogBeginner.beginLoggingTo([observer()], redirectStandardIO=False)
