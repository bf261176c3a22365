"""
Which option keys each part of a service or node reads, so that a typo in
a URL query (C{?bnid=true}) is pointed out and a value that is not of the
option's kind (C{bind=yes}, C{readTimeout=soon}) is refused, instead of
being read as false or zero as GOST does (docs/differences.md).

Types declare their own keys (L{gostrelay.registry.TypePlugin}'s
C{options}); the keys read by the service, the node and the command line
itself are listed here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from gostrelay import registry
from gostrelay.config.listen import didYouMean
from gostrelay.config.metadata import _goAtoi, isGoBoolString, parseByteSize, parseGoDuration

#: Service metadata we read (build, router, tracking).
SERVICE_OPTIONS: dict[str, str] = {
    "dialTimeout": "duration",
    "gracePeriod": "duration",
    "maxConns": "int",
    "maxConnsPerIP": "int",
    "ignoreChain": "bool",
    # Turned into limiters by the command line (config/url.py); GOST reads
    # a value it cannot parse as no limit, we refuse it.
    "limiter.in": "rate",
    "limiter.out": "rate",
    "limiter.conn.in": "rate",
    "limiter.conn.out": "rate",
    "climiter": "int",
    "rlimiter": "float",
}

#: Node metadata we read (the selector).
NODE_OPTIONS: dict[str, str] = {
    "weight": "int",
    "backup": "bool",
    "maxFails": "int",
    "failTimeout": "duration",
}

#: GOST keys we know and refuse by name when set (build.py): not typos.
REFUSED_KEYS = frozenset(
    """
    interface so_mark netns netns.out proxyProtocol sniffing mitm.certFile
    mitm.keyFile skipauth probeResist knock dns
    """.split()
)

#: Keys the command line turns into configuration objects (config/url.py).
SERVICE_URL_KEYS = frozenset(
    """
    retries strategy maxFails max_fails failTimeout fail_timeout bypass
    admission resolver hosts limiter.in limiter.out limiter.conn.in
    limiter.conn.out climiter rlimiter auth tls.certFile certFile cert
    tls.keyFile keyFile key tls.caFile caFile ca
    """.split()
)
NODE_URL_KEYS = frozenset(
    """
    strategy maxFails max_fails failTimeout fail_timeout bypass resolver hosts
    interface so_mark proxyProtocol auth tls.certFile certFile cert
    tls.keyFile keyFile key tls.caFile caFile ca tls.secure secure
    tls.serverName serverName
    """.split()
)


def typeOptions(kind: str, name: str) -> dict[str, str] | None:
    """
    The options type C{kind} C{name} declares, or C{None} when it is not
    implemented or declares none (then nothing is checked for it).
    """
    plugin = registry.lookup(kind, name)
    options = getattr(plugin, "options", None) if plugin is not None else None
    return dict(options) if options is not None else None


def _lower(keys: Iterable[str]) -> dict[str, str]:
    return {k.lower(): k for k in keys}


def unknownOptions(
    where: str,
    query: Mapping[str, Any],
    scopes: Mapping[str, dict[str, str] | None],
    shared: Iterable[str],
) -> list[str]:
    """
    One warning line per key of C{query} that nothing reads.

    @param scopes: prefix (C{"handler"}, ...) to the options that scope
        reads (C{None}: unknown, anything goes).  An un-prefixed key goes to
        every scope, so it is known when any scope reads it.
    @param shared: keys known regardless of scope.
    """
    sharedKeys = set(shared) | REFUSED_KEYS
    warnings = []
    for key in query:
        prefix, dot, rest = key.partition(".")
        if dot and prefix in scopes:
            options = scopes[prefix]
            if options is None:
                continue
            candidates = set(options) | sharedKeys
            name = rest
        else:
            if any(options is None for options in scopes.values()):
                continue
            candidates = set(sharedKeys)
            for options in scopes.values():
                candidates |= set(options or {})
            name = key
        if name.lower() in _lower(candidates):
            continue
        lowered = _lower(candidates)
        hint = didYouMean(name, set(lowered), n=1)
        if hint:
            close = hint[len(" (did you mean ") : -2].split(" or ")
            hint = " (did you mean " + " or ".join(lowered[c] for c in close) + "?)"
        warnings.append(f"{where}: unknown option {key!r}, ignored{hint}")
    return warnings


def badValue(kind: str, value: Any) -> bool:
    """
    Whether C{value} cannot be read as C{kind}.
    """
    if value is None or kind in ("string", "any"):
        return False
    if isinstance(value, bool):
        return kind not in ("bool", "int")
    if isinstance(value, (int, float)):
        return kind == "bool" and value not in (0, 1) or (kind == "int" and not isinstance(value, int))
    if not isinstance(value, str):
        return True
    text = value.strip()
    if kind == "bool":
        return not isGoBoolString(text)
    if kind == "int":
        return _goAtoi(text) is None
    if kind == "float":
        try:
            float(text)
        except ValueError:
            return True
        return False
    if kind == "duration":
        return parseGoDuration(text) is None and _goAtoi(text) is None
    if kind == "rate":
        return parseByteSize(text) is None
    return False


_KIND_TEXT = {
    "bool": "true or false",
    "int": "a whole number",
    "float": "a number",
    "duration": 'a duration like "10s"',
    "rate": "a rate like 512KB or 1MB (bytes per second, base 2)",
}


def badValues(where: str, metadata: Mapping[str, Any], options: dict[str, str] | None) -> list[str]:
    """
    One line per key of C{metadata} whose value is not of the kind
    C{options} gives it.
    """
    if not options:
        return []
    kinds = {k.lower(): kind for k, kind in options.items()}
    problems = []
    for key, value in metadata.items():
        kind = kinds.get(str(key).lower())
        if kind is not None and badValue(kind, value):
            problems.append(f"{where}: option {key}={value!r} is not {_KIND_TEXT[kind]}")
    return problems
