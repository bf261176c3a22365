"""
Option values as GOST reads them from C{metadata} maps (spec-relay.md 13.1).

Keys are case-insensitive; a getter given several alias keys uses the first
alias present.  Values from the command line are strings, values from YAML
may be native booleans and numbers; each getter accepts both, exactly as
GOST's C{mdutil.Get*} do.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

_GO_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_GO_FALSE = {"0", "f", "F", "FALSE", "false", "False"}

_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parseGoDuration(text: str) -> float | None:
    """
    Parse Go's duration syntax (C{"1m30s"}, C{"500ms"}, C{"-2h"}) into
    seconds, or return C{None} when C{text} is not a Go duration.
    """
    s = text.strip()
    if not s:
        return None
    sign = 1.0
    if s[0] in "+-":
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    total = 0.0
    pos = 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if m is None:
            return None
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    return sign * total


def formatGoDuration(seconds: float) -> str:
    """
    Format seconds exactly as Go's C{time.Duration.String} does
    (C{30s}, C{1m30s}, C{1h0m0s}, C{1.5ms}, C{59.123456789s}).
    """
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _fraction(ns, size) + unit
    hours, rest = divmod(ns, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    text = _fraction(rest, 1_000_000_000) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{text}"
    if minutes:
        return f"{sign}{minutes}m{text}"
    return sign + text


def _fraction(value: int, unit: int) -> str:
    whole, frac = divmod(value, unit)
    if not frac:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}.{str(frac).rjust(digits, '0').rstrip('0')}"


_BYTE_UNITS = {
    "": 1, "B": 1,
    "K": 1 << 10, "KB": 1 << 10, "KIB": 1 << 10,
    "M": 1 << 20, "MB": 1 << 20, "MIB": 1 << 20,
    "G": 1 << 30, "GB": 1 << 30, "GIB": 1 << 30,
    "T": 1 << 40, "TB": 1 << 40, "TIB": 1 << 40,
}
_BYTE_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")


def parseByteSize(text: str) -> int | None:
    """
    Bytes from GOST's base-2 sizes (C{512KB}, C{1MB}, C{1MiB}, C{1GB}; a
    bare number is bytes; units in any case); 0 for an empty value,
    C{None} for one that is not a size (GOST reads it as 0, no limit: we
    refuse it, docs/differences.md).
    """
    if not (text or "").strip():
        return 0
    m = _BYTE_SIZE.match(text)
    if m is None:
        return None
    unit = _BYTE_UNITS.get(m.group(2).upper())
    if unit is None:
        return None
    return int(float(m.group(1)) * unit)


_DECIMAL = re.compile(r"^[+-]?[0-9]+$")


def _goAtoi(text: str) -> int | None:
    text = text.strip()
    return int(text) if _DECIMAL.match(text) else None


class Metadata(Mapping[str, Any]):
    """
    A read-only, case-insensitive view of a metadata map with GOST's typed
    getters.  The original keys and values are kept for printing back.
    """

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        self._values: dict[str, Any] = dict(values or {})
        self._lower = {k.lower(): k for k in self._values}

    def __getitem__(self, key: str) -> Any:
        return self._values[self._lower[key.lower()]]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._lower

    def _first(self, keys: tuple[str, ...]) -> tuple[bool, Any]:
        for key in keys:
            if key in self:
                return True, self[key]
        return False, None

    def getString(self, *keys: str, default: str = "") -> str:
        found, value = self._first(keys)
        if not found or value is None:
            return default
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (list, tuple)):
            return ",".join(str(v) for v in value)
        return str(value)

    def getBool(self, *keys: str, default: bool = False) -> bool:
        found, value = self._first(keys)
        if not found:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, int):
            return value != 0
        if isinstance(value, str):
            if value in _GO_TRUE:
                return True
            return False
        return False

    def getInt(self, *keys: str, default: int = 0) -> int:
        found, value = self._first(keys)
        if not found:
            return default
        if isinstance(value, bool):
            return 1 if value else 0
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            parsed = _goAtoi(value)
            return parsed if parsed is not None else 0
        return 0

    def getFloat(self, *keys: str, default: float = 0.0) -> float:
        found, value = self._first(keys)
        if not found:
            return default
        if isinstance(value, bool):
            return 1.0 if value else 0.0
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                return 0.0
        return 0.0

    def getDuration(self, *keys: str, default: float = 0.0) -> float:
        """
        A duration in seconds: integers are seconds, strings Go durations,
        and a string that is not a duration (or is zero) is retried as a
        whole number of seconds.  Anything else is 0.
        """
        found, value = self._first(keys)
        if not found:
            return default
        if isinstance(value, bool):
            return 0.0
        if isinstance(value, int):
            return float(value)
        if isinstance(value, str):
            parsed = parseGoDuration(value)
            if parsed:
                return parsed
            seconds = _goAtoi(value)
            return float(seconds) if seconds is not None else 0.0
        return 0.0

    def getStrings(self, *keys: str) -> list[str]:
        found, value = self._first(keys)
        if not found or value is None:
            return []
        if isinstance(value, (list, tuple)):
            return [str(v) for v in value]
        return [s for s in str(value).split(",") if s]


def isGoBoolString(value: str) -> bool:
    return value in _GO_TRUE or value in _GO_FALSE
